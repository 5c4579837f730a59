"""nbcnn.course against the notebook it mirrors (Course 4, week 1, "Convolutional Model: Step by Step").

The oracles below are the notebook's own naive numpy loops, float64, written out again here
(they share no code with nbcnn), and the published "expected output" numbers are asserted
only where the naive loops reproduce them too.
"""

import numpy as np
import pytest

import nbcnn
from nbcnn import backend as nbcnn_backend
from nbcnn import course
from conftest import is_slow

TOL = dict(rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the notebook's loops


def nb_zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=(0, 0))


def nb_conv_single_step(a_slice_prev, W, b):
    s = np.multiply(a_slice_prev, W)
    Z = np.sum(s)
    return Z + float(np.asarray(b).reshape(-1)[0])


def nb_conv_forward(A_prev, W, b, hparameters):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    n_H = int((n_H_prev - f + 2 * pad) / stride) + 1
    n_W = int((n_W_prev - f + 2 * pad) / stride) + 1
    Z = np.zeros((m, n_H, n_W, n_C))
    A_prev_pad = nb_zero_pad(A_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        for h in range(n_H):
            vert_start = h * stride
            vert_end = vert_start + f
            for w in range(n_W):
                horiz_start = w * stride
                horiz_end = horiz_start + f
                for c in range(n_C):
                    a_slice_prev = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                    Z[i, h, w, c] = nb_conv_single_step(a_slice_prev, W[:, :, :, c], b[:, :, :, c])
    return Z, (A_prev, W, b, hparameters)


def nb_conv_backward(dZ, cache):
    (A_prev, W, b, hparameters) = cache
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    (f, f, n_C_prev, n_C) = W.shape
    stride, pad = hparameters["stride"], hparameters["pad"]
    (m, n_H, n_W, n_C) = dZ.shape
    dA_prev = np.zeros((m, n_H_prev, n_W_prev, n_C_prev))
    dW = np.zeros((f, f, n_C_prev, n_C))
    db = np.zeros((1, 1, 1, n_C))
    A_prev_pad = nb_zero_pad(A_prev, pad)
    dA_prev_pad = nb_zero_pad(dA_prev, pad)
    for i in range(m):
        a_prev_pad = A_prev_pad[i]
        da_prev_pad = dA_prev_pad[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vert_start, horiz_start = h * stride, w * stride
                    vert_end, horiz_end = vert_start + f, horiz_start + f
                    a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                    da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += W[:, :, :, c] * dZ[i, h, w, c]
                    dW[:, :, :, c] += a_slice * dZ[i, h, w, c]
                    db[:, :, :, c] += dZ[i, h, w, c]
        # the notebook writes [pad:-pad, pad:-pad], which is empty for pad = 0
        dA_prev[i, :, :, :] = da_prev_pad[pad:pad + n_H_prev, pad:pad + n_W_prev, :]
    return dA_prev, dW, db


def nb_pool_forward(A_prev, hparameters, mode="max"):
    (m, n_H_prev, n_W_prev, n_C_prev) = A_prev.shape
    f, stride = hparameters["f"], hparameters["stride"]
    n_H = int(1 + (n_H_prev - f) / stride)
    n_W = int(1 + (n_W_prev - f) / stride)
    A = np.zeros((m, n_H, n_W, n_C_prev))
    for i in range(m):
        for h in range(n_H):
            vert_start = h * stride
            for w in range(n_W):
                horiz_start = w * stride
                for c in range(n_C_prev):
                    a_prev_slice = A_prev[i, vert_start:vert_start + f, horiz_start:horiz_start + f, c]
                    if mode == "max":
                        A[i, h, w, c] = np.max(a_prev_slice)
                    elif mode == "average":
                        A[i, h, w, c] = np.mean(a_prev_slice)
    return A, (A_prev, hparameters)


def nb_create_mask_from_window(x):
    return x == np.max(x)


def nb_distribute_value(dz, shape):
    (n_H, n_W) = shape
    return np.ones(shape) * (dz / (n_H * n_W))


def nb_pool_backward(dA, cache, mode="max"):
    (A_prev, hparameters) = cache
    f, stride = hparameters["f"], hparameters["stride"]
    m, n_H, n_W, n_C = dA.shape
    dA_prev = np.zeros(A_prev.shape)
    for i in range(m):
        a_prev = A_prev[i]
        for h in range(n_H):
            for w in range(n_W):
                for c in range(n_C):
                    vs, hs = h * stride, w * stride
                    if mode == "max":
                        mask = nb_create_mask_from_window(a_prev[vs:vs + f, hs:hs + f, c])
                        dA_prev[i, vs:vs + f, hs:hs + f, c] += np.multiply(mask, dA[i, h, w, c])
                    elif mode == "average":
                        dA_prev[i, vs:vs + f, hs:hs + f, c] += nb_distribute_value(dA[i, h, w, c], (f, f))
    return dA_prev


# --------------------------------------------------------------------------- zero_pad


def test_zero_pad_notebook_example():
    np.random.seed(1)
    x = np.random.randn(4, 3, 3, 2)
    x_pad = course.zero_pad(x, 3)
    assert x_pad.shape == (4, 9, 9, 2)  # 3 + 2 * 3
    np.testing.assert_allclose(x[1, 1], [[0.90085595, -0.68372786], [-0.12289023, -0.93576943],
                                         [-0.26788808, 0.53035547]], atol=1e-8)
    assert np.all(x_pad[1, 1] == 0)
    np.testing.assert_array_equal(x_pad[:, 3:6, 3:6, :], x)
    np.testing.assert_array_equal(x_pad, nb_zero_pad(x, 3))
    np.testing.assert_array_equal(course.zero_pad(x, 0), x)


# --------------------------------------------------------------------------- conv


def test_conv_single_step_notebook_example(backend):
    np.random.seed(1)
    a_slice_prev = np.random.randn(4, 4, 3)
    W = np.random.randn(4, 4, 3)
    b = np.random.randn(1, 1, 1)
    expected = -6.999089450680221  # the notebook's published Z
    assert nb_conv_single_step(a_slice_prev, W, b) == pytest.approx(expected, rel=1e-14)
    Z = course.conv_single_step(a_slice_prev, W, b)
    assert isinstance(Z, float) and np.ndim(Z) == 0
    assert Z == pytest.approx(expected, rel=1e-13)


def test_conv_forward_notebook_examples(backend):
    # the two published versions of the notebook's conv_forward check
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    hparameters = {"pad": 2, "stride": 2}
    Z, cache = course.conv_forward(A_prev, W, b, hparameters)
    Z_nb, _ = nb_conv_forward(A_prev, W, b, hparameters)
    np.testing.assert_allclose(Z, Z_nb, **TOL)
    assert Z.shape == (10, 4, 4, 8)
    assert np.mean(Z) == pytest.approx(0.048995203528855794, rel=1e-10)
    np.testing.assert_allclose(Z[3, 2, 1], [-0.61490741, -6.7439236, -2.55153897, 1.75698377,
                                            3.56208902, 0.53036437, 5.18531798, 8.75898442], atol=1e-8)
    np.testing.assert_allclose(cache[0][1][2][3], [-0.20075807, 0.18656139, 0.41005165], atol=1e-8)
    assert cache[0] is A_prev and cache[1] is W and cache[2] is b and cache[3] is hparameters

    # the notebook's conv_backward check runs on that Z and cache
    np.random.seed(1)
    dA, dW, db = course.conv_backward(Z, cache)
    assert (dA.shape, dW.shape, db.shape) == (A_prev.shape, W.shape, (1, 1, 1, 8))
    assert np.mean(dA) == pytest.approx(1.4524377775388075, rel=1e-10)
    assert np.mean(dW) == pytest.approx(1.7269914583139097, rel=1e-10)
    assert np.mean(db) == pytest.approx(7.839232564616838, rel=1e-10)

    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z, cache = course.conv_forward(A_prev, W, b, {"pad": 1, "stride": 2})
    assert Z.shape == (2, 3, 4, 8)
    assert np.mean(Z) == pytest.approx(0.5511276474566768, rel=1e-10)
    np.testing.assert_allclose(Z[0, 2, 1], [-2.17796037, 8.07171329, -0.5772704, 3.36286738,
                                            4.48113645, -2.89198428, 10.99288867, 3.03171932], atol=1e-8)
    np.testing.assert_allclose(cache[0][1][2][3], [-1.1191154, 1.9560789, -0.3264995, -1.34267579], atol=1e-8)


@pytest.mark.parametrize("stride, pad", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_conv_forward_and_backward_match_notebook_loops(backend, stride, pad):
    rng = np.random.default_rng(stride * 10 + pad)
    m, H, W_in, C, f, n_C = (2, 5, 6, 3, 3, 4) if is_slow(backend) else (4, 9, 8, 5, 3, 6)
    A_prev = rng.standard_normal((m, H, W_in, C))
    W = rng.standard_normal((f, f, C, n_C))
    b = rng.standard_normal((1, 1, 1, n_C))
    hparameters = {"stride": stride, "pad": pad}

    Z, cache = course.conv_forward(A_prev, W, b, hparameters)
    Z_nb, cache_nb = nb_conv_forward(A_prev, W, b, hparameters)
    assert Z.dtype == np.float64 and Z.shape == Z_nb.shape
    np.testing.assert_allclose(Z, Z_nb, **TOL)

    dZ = rng.standard_normal(Z.shape)
    for got, want in zip(course.conv_backward(dZ, cache), nb_conv_backward(dZ, cache_nb)):
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOL)


def test_conv_single_step_matches_notebook(backend):
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 1), (3, 3, 2), (5, 5, 4)]:
        a, W, b = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal((1, 1, 1))
        assert course.conv_single_step(a, W, b) == pytest.approx(nb_conv_single_step(a, W, b), rel=1e-12)


# --------------------------------------------------------------------------- pooling


def test_pool_forward_notebook_example(backend):
    np.random.seed(1)
    A_prev = np.random.randn(2, 4, 4, 3)
    hparameters = {"stride": 2, "f": 3}
    A, cache = course.pool_forward(A_prev, hparameters)
    assert A.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(A.ravel(), [1.74481176, 0.86540763, 1.13376944,
                                           1.13162939, 1.51981682, 2.18557541], atol=1e-8)
    np.testing.assert_allclose(A, nb_pool_forward(A_prev, hparameters)[0], **TOL)
    assert cache[0] is A_prev and cache[1] is hparameters

    A, _ = course.pool_forward(A_prev, hparameters, mode="average")
    np.testing.assert_allclose(A.ravel(), [0.02105773, -0.20328806, -0.40389855,
                                           -0.22154621, 0.51716526, 0.48155844], atol=1e-8)
    np.testing.assert_allclose(A, nb_pool_forward(A_prev, hparameters, "average")[0], **TOL)


def test_pool_backward_notebook_example(backend):
    np.random.seed(1)
    A_prev = np.random.randn(5, 5, 3, 2)
    hparameters = {"stride": 1, "f": 2}
    A, cache = course.pool_forward(A_prev, hparameters)
    dA = np.random.randn(5, 4, 2, 2)
    assert np.mean(dA) == pytest.approx(0.14571390272918056, rel=1e-12)

    dA_prev = course.pool_backward(dA, cache, mode="max")
    np.testing.assert_allclose(dA_prev[1, 1], [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]], atol=1e-8)
    np.testing.assert_allclose(dA_prev, nb_pool_backward(dA, cache, "max"), **TOL)

    dA_prev = course.pool_backward(dA, cache, mode="average")
    np.testing.assert_allclose(dA_prev[1, 1], [[0.08485462, 0.2787552], [1.26461098, -0.25749373],
                                               [1.17975636, -0.53624893]], atol=1e-8)
    np.testing.assert_allclose(dA_prev, nb_pool_backward(dA, cache, "average"), **TOL)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("f, stride", [(2, 2), (3, 1), (3, 2)])  # tiling, overlapping, not tiling
def test_pool_forward_and_backward_match_notebook_loops(backend, mode, f, stride):
    rng = np.random.default_rng(f * 10 + stride)
    shape = (2, 5, 6, 2) if is_slow(backend) else (4, 11, 9, 5)
    A_prev = rng.standard_normal(shape)  # continuous values: no ties, so the masks agree
    hparameters = {"f": f, "stride": stride}

    A, cache = course.pool_forward(A_prev, hparameters, mode=mode)
    A_nb, cache_nb = nb_pool_forward(A_prev, hparameters, mode)
    assert A.dtype == np.float64 and A.shape == A_nb.shape
    np.testing.assert_allclose(A, A_nb, **TOL)

    dA = rng.standard_normal(A.shape)
    dA_prev = course.pool_backward(dA, cache, mode=mode)
    assert dA_prev.dtype == np.float64 and dA_prev.shape == A_prev.shape
    np.testing.assert_allclose(dA_prev, nb_pool_backward(dA, cache_nb, mode), **TOL)


def test_pool_backward_max_tie_goes_to_first_maximum(backend):
    # the documented difference: a window of equal values passes its gradient on once, not 4 times
    A_prev = np.ones((1, 2, 2, 1))
    cache = (A_prev, {"f": 2, "stride": 2})
    dA = np.full((1, 1, 1, 1), 3.0)
    np.testing.assert_array_equal(course.pool_backward(dA, cache, "max")[0, :, :, 0], [[3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(nb_pool_backward(dA, cache, "max")[0, :, :, 0], [[3.0, 3.0], [3.0, 3.0]])


# --------------------------------------------------------------------------- mask and distribute


def test_create_mask_from_window_notebook_example(backend):
    np.random.seed(1)
    x = np.random.randn(2, 3)
    np.testing.assert_allclose(x, [[1.62434536, -0.61175641, -0.52817175],
                                   [-1.07296862, 0.86540763, -2.3015387]], atol=1e-8)
    mask = course.create_mask_from_window(x)
    assert mask.dtype == np.bool_ and mask.shape == (2, 3)
    np.testing.assert_array_equal(mask, [[True, False, False], [False, False, False]])
    np.testing.assert_array_equal(mask, nb_create_mask_from_window(x))


def test_create_mask_from_window_matches_notebook_without_ties(backend):
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (2, 2), (3, 3), (2, 5), (4, 1)]:
        x = rng.standard_normal(shape)
        np.testing.assert_array_equal(course.create_mask_from_window(x), nb_create_mask_from_window(x))


@pytest.mark.parametrize("x, first", [
    ([[1.0, 5.0], [5.0, 2.0]], (0, 1)),                   # tie across rows: the earlier row wins
    ([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], (0, 0)),         # all equal: the very first cell
    ([[-3.0, -1.0, -1.0], [-1.0, -2.0, -5.0]], (0, 1)),   # negative maximum, three ties
    ([[2.0, 7.0, 1.0], [7.0, 0.0, 7.0]], (0, 1)),
])
def test_create_mask_from_window_ties_mark_only_the_first_maximum(backend, x, first):
    x = np.array(x)
    mask = course.create_mask_from_window(x)
    assert mask.sum() == 1, "exactly one True, unlike the notebook's x == np.max(x)"
    assert mask[first]
    assert np.argwhere(mask).tolist() == [list(first)] == [list(np.unravel_index(np.argmax(x), x.shape))]
    assert nb_create_mask_from_window(x).sum() > 1  # the notebook marks every tie


def test_distribute_value_notebook_example(backend):
    a = course.distribute_value(2, (2, 2))
    np.testing.assert_array_equal(a, [[0.5, 0.5], [0.5, 0.5]])
    assert a.dtype == np.float64


@pytest.mark.parametrize("dz, shape", [(1.0, (1, 1)), (-3.5, (3, 4)), (7, (2, 5)), (np.float64(0.3), (3, 3))])
def test_distribute_value_matches_notebook(backend, dz, shape):
    a = course.distribute_value(dz, shape)
    assert a.shape == shape and a.dtype == np.float64
    np.testing.assert_allclose(a, nb_distribute_value(dz, shape), **TOL)
    assert a.sum() == pytest.approx(dz, rel=1e-12)


# --------------------------------------------------------------------------- dtypes, kernels


def test_results_are_float64_even_from_float32_or_int_inputs():
    rng = np.random.default_rng(5)
    A32 = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    W32 = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    b = np.zeros((1, 1, 1, 3), dtype=np.int64)
    Z, cache = course.conv_forward(A32, W32, b, {"stride": 1, "pad": 0})
    assert Z.dtype == np.float64
    np.testing.assert_allclose(Z, nb_conv_forward(A32.astype(np.float64), W32.astype(np.float64), b, cache[3])[0],
                               **TOL)
    assert all(g.dtype == np.float64 for g in course.conv_backward(np.ones_like(Z), cache))
    A, cache = course.pool_forward(A32, {"f": 2, "stride": 2})
    assert A.dtype == np.float64 and course.pool_backward(np.ones_like(A), cache).dtype == np.float64
    assert isinstance(course.conv_single_step(np.ones((2, 2, 1), np.float32), np.ones((2, 2, 1), np.int32), 1), float)


def test_every_function_runs_on_the_dispatcher_kernels(monkeypatch):
    launched = []
    real_launch = nbcnn_backend.launch

    def recording_launch(kernel, *args, backend=None):
        launched.append(kernel.name)
        return real_launch(kernel, *args, backend=backend)

    monkeypatch.setattr(nbcnn_backend, "launch", recording_launch)
    # plain numpy inputs on cpu skip launch for the kernel itself (backend.cpu_runners): off
    # here, so that every kernel passes the spy
    monkeypatch.setattr(nbcnn_backend, "cpu_runners", lambda *kernels, **chosen: None)

    def kernels_of(call):
        launched.clear()
        call()
        return set(launched)

    A, W, b = np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 2)), np.zeros((1, 1, 1, 2))
    hp_conv, hp_pool = {"stride": 1, "pad": 0}, {"f": 2, "stride": 1}
    Z, conv_cache = course.conv_forward(A, W, b, hp_conv)
    P, pool_cache = course.pool_forward(A, hp_pool)
    with nbcnn.use_backend("cpu"):
        assert kernels_of(lambda: course.conv_single_step(A[0, :2, :2], W[..., 0], 1.0)) == {"conv2d_forward"}
        assert kernels_of(lambda: course.conv_forward(A, W, b, hp_conv)) == {"conv2d_forward"}
        assert {"conv2d_backward_input", "conv2d_backward_filter"} <= kernels_of(
            lambda: course.conv_backward(Z, conv_cache))
        assert kernels_of(lambda: course.pool_forward(A, hp_pool)) == {"max_pool2d_forward"}
        assert kernels_of(lambda: course.pool_forward(A, hp_pool, "average")) == {"avg_pool2d_forward"}
        assert kernels_of(lambda: course.pool_backward(P, pool_cache)) == {"max_pool2d_backward"}
        assert kernels_of(lambda: course.pool_backward(P, pool_cache, "average")) == {"avg_pool2d_backward"}
        assert kernels_of(lambda: course.create_mask_from_window(A[0, :, :, 0])) == {"max_pool2d_backward"}
        assert kernels_of(lambda: course.distribute_value(1.0, (2, 2))) == {"avg_pool2d_backward"}
        assert kernels_of(lambda: course.zero_pad(A, 1)) == set()  # plain np.pad, no kernel


# --------------------------------------------------------------------------- bad input

A4 = np.zeros((1, 4, 4, 2))
W4 = np.zeros((2, 2, 2, 3))
B4 = np.zeros((1, 1, 1, 3))
CONV_CACHE = (A4, W4, B4, {"stride": 1, "pad": 0})
POOL_CACHE = (A4, {"f": 2, "stride": 2})


@pytest.mark.parametrize("call, error, words", [
    (lambda: course.pool_forward(A4, {"f": 2, "stride": 2}, mode="mean"), ValueError, "'max' or 'average'"),
    (lambda: course.pool_forward(A4, {"f": 2, "stride": 2}, mode="MAX"), ValueError, "'max' or 'average'"),
    (lambda: course.pool_backward(np.zeros((1, 2, 2, 2)), POOL_CACHE, mode="avg"), ValueError, "mode"),
    (lambda: course.pool_forward(A4, {"f": 2}), ValueError, "missing ['stride']"),
    (lambda: course.pool_forward(A4, [2, 2]), TypeError, "must be a dict"),
    (lambda: course.conv_forward(A4, W4, B4, {"stride": 1}), ValueError, "missing ['pad']"),
    (lambda: course.conv_forward(A4, W4, B4, {}), ValueError, "missing ['stride', 'pad']"),
    (lambda: course.conv_backward(np.zeros((1, 3, 3, 3)), (A4, W4, B4, {"pad": 0})), ValueError, "missing"),
    (lambda: course.conv_forward(A4[0], W4, B4, {"stride": 1, "pad": 0}), ValueError, "A_prev must have 4"),
    (lambda: course.conv_forward(A4, W4[0], B4, {"stride": 1, "pad": 0}), ValueError, "W must have 4"),
    (lambda: course.conv_forward(A4, W4, np.zeros(4), {"stride": 1, "pad": 0}), ValueError, "b has shape"),
    (lambda: course.conv_forward(A4, W4, B4, {"stride": 0, "pad": 0}), ValueError, "stride"),
    (lambda: course.conv_forward(A4, W4, B4, {"stride": 1.5, "pad": 0}), TypeError, "stride"),
    (lambda: course.conv_forward(A4, np.zeros((2, 2, 5, 3)), B4, {"stride": 1, "pad": 0}), ValueError, "channel"),
    (lambda: course.conv_backward(np.zeros((1, 3, 3)), CONV_CACHE), ValueError, "dZ must have 4"),
    (lambda: course.conv_backward(np.zeros((1, 2, 2, 3)), CONV_CACHE), ValueError, "shape"),
    (lambda: course.conv_backward(np.zeros((1, 3, 3, 3)), (A4, W4)), TypeError, "cache"),
    (lambda: course.pool_backward(np.zeros((1, 2, 2, 2)), (A4,)), TypeError, "cache"),
    (lambda: course.pool_backward(np.zeros((2, 2, 2)), POOL_CACHE), ValueError, "dA must have 4"),
    (lambda: course.pool_forward(np.zeros((4, 4)), {"f": 2, "stride": 2}), ValueError, "A_prev must have 4"),
    (lambda: course.pool_forward(A4, {"f": 5, "stride": 1}), ValueError, "larger"),
    (lambda: course.conv_single_step(np.zeros((3, 3, 2)), np.zeros((2, 2, 2)), 0.0), ValueError, "equal"),
    (lambda: course.conv_single_step(np.zeros((3, 3)), np.zeros((3, 3)), 0.0), ValueError, "3 dimensions"),
    (lambda: course.conv_single_step(np.zeros((2, 2, 1)), np.zeros((2, 2, 1)), np.zeros(2)), ValueError, "one value"),
    (lambda: course.create_mask_from_window(np.zeros((2, 2, 1))), ValueError, "2 dimensions"),
    (lambda: course.create_mask_from_window("abc"), TypeError, "real numbers"),
    (lambda: course.create_mask_from_window(np.array([[True, False]])), TypeError, "real numbers"),
    (lambda: course.distribute_value(1.0, (2,)), ValueError, "(n_H, n_W)"),
    (lambda: course.distribute_value(1.0, (0, 2)), ValueError, "(n_H, n_W)"),
    (lambda: course.distribute_value(np.ones(2), (2, 2)), ValueError, "single number"),
    (lambda: course.zero_pad(A4, -1), TypeError, "pad"),
    (lambda: course.zero_pad(A4, 1.5), TypeError, "pad"),
    (lambda: course.zero_pad(A4[0], 1), ValueError, "X must have 4"),
])
def test_bad_input_raises_a_clear_error(call, error, words):
    with nbcnn.use_backend("python"):
        with pytest.raises(error) as info:
            call()
    assert words in str(info.value)


# --------------------------------------------------------------------------- week 3: car detection with YOLO
#
# The notebook's iou exercise and naive loops written out here; the notebook's own test values
# come from tf.random seeds that numpy cannot reproduce, so the checks are hand-computed cases
# and these loops.


def nb_iou(box1, box2):
    (box1_x1, box1_y1, box1_x2, box1_y2) = box1
    (box2_x1, box2_y1, box2_x2, box2_y2) = box2
    xi1, yi1 = max(box1_x1, box2_x1), max(box1_y1, box2_y1)
    xi2, yi2 = min(box1_x2, box2_x2), min(box1_y2, box2_y2)
    inter_area = max(xi2 - xi1, 0) * max(yi2 - yi1, 0)
    box1_area = (box1_x2 - box1_x1) * (box1_y2 - box1_y1)
    box2_area = (box2_x2 - box2_x1) * (box2_y2 - box2_y1)
    union_area = box1_area + box2_area - inter_area
    return inter_area / union_area if inter_area > 0 else 0.0


def nb_filter_boxes(boxes, box_confidence, box_class_probs, threshold):
    """Cell by cell, in row-major order (what tf.boolean_mask gives)."""
    scores, kept, classes = [], [], []
    for index in np.ndindex(*boxes.shape[:-1]):
        box_scores = box_confidence[index][0] * box_class_probs[index]
        best = int(np.argmax(box_scores))
        if box_scores[best] >= threshold:
            scores.append(box_scores[best])
            kept.append(boxes[index])
            classes.append(best)
    return np.array(scores), np.array(kept).reshape(-1, 4), np.array(classes, np.int64)


def nb_non_max_suppression(scores, boxes, max_boxes, iou_threshold):
    """tf.image.non_max_suppression as a greedy loop: boxes (y1, x1, y2, x2), best first, ties
    by index, suppress when IoU > threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    as_xyxy = [(b[1], b[0], b[3], b[2]) for b in boxes]
    selected = []
    for i in order:
        if len(selected) == max_boxes:
            break
        if all(nb_iou(as_xyxy[s], as_xyxy[i]) <= iou_threshold for s in selected):
            selected.append(i)
    return selected


def nb_yolo_eval(box_xy, box_wh, box_confidence, box_class_probs, image_shape, max_boxes, score_threshold,
                 iou_threshold):
    mins, maxes = box_xy - box_wh / 2, box_xy + box_wh / 2
    corners = np.stack([mins[..., 1], mins[..., 0], maxes[..., 1], maxes[..., 0]], axis=-1)
    scores, boxes, classes = nb_filter_boxes(corners, box_confidence, box_class_probs, score_threshold)
    h, w = image_shape
    boxes = boxes * np.array([h, w, h, w])
    keep = nb_non_max_suppression(scores, boxes, max_boxes, iou_threshold)
    return scores[keep], boxes[keep], classes[keep]


@pytest.mark.parametrize("box1, box2, expected", [
    ((2, 1, 4, 3), (1, 2, 3, 4), 0.14285714285714285),  # the notebook's "intersecting boxes"
    ((1, 2, 3, 4), (5, 6, 7, 8), 0.0),                  # "non-intersecting boxes"
    ((1, 1, 2, 2), (2, 1, 3, 2), 0.0),                  # "boxes intersect at vertices only"... an edge
    ((1, 1, 2, 2), (2, 2, 3, 3), 0.0),                  # ... and a corner
    ((1, 1, 3, 3), (1, 1, 3, 3), 1.0),
    ((0, 0, 4, 4), (1, 1, 3, 3), 0.25),
])
def test_iou_notebook_examples(backend, box1, box2, expected):
    got = course.iou(box1, box2)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    assert got == pytest.approx(nb_iou(box1, box2), rel=1e-15, abs=0)
    assert course.iou(np.array(box1, np.float32), list(box2)) == pytest.approx(expected, rel=1e-15)


def test_yolo_boxes_to_corners_by_hand():
    box_xy = np.array([[10.0, 20.0], [0.5, 0.5]])
    box_wh = np.array([[4.0, 8.0], [1.0, 0.2]])
    # x 10 +- 2, y 20 +- 4  ->  (y_min, x_min, y_max, x_max) = (16, 8, 24, 12)
    np.testing.assert_allclose(course.yolo_boxes_to_corners(box_xy, box_wh), [[16, 8, 24, 12], [0.4, 0, 0.6, 1]],
                               **TOL)
    grid = course.yolo_boxes_to_corners(np.ones((19, 19, 5, 2)), np.ones((19, 19, 5, 2)))
    assert grid.shape == (19, 19, 5, 4)
    np.testing.assert_allclose(grid[3, 4, 2], [0.5, 0.5, 1.5, 1.5], **TOL)


def test_yolo_filter_boxes_by_hand():
    boxes = np.arange(2 * 2 * 4, dtype=np.float64).reshape(2, 2, 1, 4)
    box_confidence = np.array([0.9, 0.5, 1.0, 0.2]).reshape(2, 2, 1, 1)
    box_class_probs = np.array([[0.1, 0.8, 0.1],   # best: class 1, 0.72 -> kept
                                [0.6, 0.2, 0.2],   # class 0, 0.30 -> dropped
                                [0.3, 0.3, 0.4],   # class 2, 0.40 -> dropped at .6
                                [0.0, 0.0, 1.0]]).reshape(2, 2, 1, 3)  # 0.2 -> dropped
    scores, kept, classes = course.yolo_filter_boxes(boxes, box_confidence, box_class_probs, threshold=0.6)
    np.testing.assert_allclose(scores, [0.72], **TOL)
    np.testing.assert_array_equal(kept, [[0, 1, 2, 3]])
    assert classes.tolist() == [1] and classes.dtype == np.int64
    scores, kept, classes = course.yolo_filter_boxes(boxes, box_confidence, box_class_probs, threshold=0.3)
    np.testing.assert_allclose(scores, [0.72, 0.3, 0.4], **TOL)  # >= threshold: 0.3 itself is kept
    assert classes.tolist() == [1, 0, 2]
    np.testing.assert_array_equal(kept, boxes.reshape(4, 4)[:3])


def test_yolo_filter_boxes_matches_notebook_loop_on_the_notebook_shapes():
    rng = np.random.default_rng(1)
    boxes = rng.normal(1, 4, (19, 19, 5, 4))
    box_confidence = rng.normal(1, 4, (19, 19, 5, 1))
    box_class_probs = rng.normal(1, 4, (19, 19, 5, 80))
    got = course.yolo_filter_boxes(boxes, box_confidence, box_class_probs, threshold=0.5)
    expected = nb_filter_boxes(boxes, box_confidence, box_class_probs, 0.5)
    assert got[0].shape[0] > 100
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, **TOL)


def test_yolo_non_max_suppression_by_hand(backend):
    # (y1, x1, y2, x2)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 10]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([2, 2, 7, 2])
    s, b, c = course.yolo_non_max_suppression(scores, boxes, classes, max_boxes=10, iou_threshold=0.5)
    # 1 overlaps 0 by 81/119 = .68: gone; 3 overlaps 0 by exactly .5: not > .5, kept
    np.testing.assert_array_equal(s, [0.9, 0.7, 0.6])
    np.testing.assert_array_equal(b, boxes[[0, 2, 3]])
    assert c.tolist() == [2, 7, 2]
    s, b, c = course.yolo_non_max_suppression(scores, boxes, classes, max_boxes=2)
    assert s.tolist() == [0.9, 0.7] and c.tolist() == [2, 7]
    # class-agnostic, as the notebook's tf.image.non_max_suppression: other classes suppress too
    s, _, _ = course.yolo_non_max_suppression(scores, boxes, np.array([0, 1, 2, 3]), iou_threshold=0.5)
    assert s.tolist() == [0.9, 0.7, 0.6]


def test_yolo_non_max_suppression_accepts_any_diagonal_pair_of_corners():
    boxes = np.array([[0, 0, 10, 10], [11, 11, 1, 1], [30, 20, 20, 30]], np.float64)  # flipped pairs
    s, b, _ = course.yolo_non_max_suppression(np.array([0.9, 0.8, 0.7]), boxes, np.zeros(3, np.int64))
    assert s.tolist() == [0.9, 0.7]
    np.testing.assert_array_equal(b, boxes[[0, 2]])  # returned as given, as tf.gather does


def test_scale_boxes_by_hand():
    boxes = np.array([[0.1, 0.2, 0.5, 0.6]])
    np.testing.assert_allclose(course.scale_boxes(boxes, (720, 1280)), [[72, 256, 360, 768]], **TOL)
    np.testing.assert_allclose(course.scale_boxes(boxes, (720.0, 1280.0, 3)), [[72, 256, 360, 768]], **TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yolo_eval_matches_the_notebook_pipeline(backend, seed):
    rng = np.random.default_rng(seed)
    shape = (4, 4, 5) if is_slow(backend) else (19, 19, 5)
    box_xy = rng.uniform(0, 1, shape + (2,))
    box_wh = rng.uniform(0.05, 0.4, shape + (2,))
    box_confidence = rng.uniform(0, 1, shape + (1,))
    box_class_probs = rng.dirichlet(np.ones(3) * 0.3, shape)  # peaked: many boxes pass .6
    got = course.yolo_eval((box_xy, box_wh, box_confidence, box_class_probs), (720, 1280), max_boxes=10,
                           score_threshold=0.6, iou_threshold=0.5)
    expected = nb_yolo_eval(box_xy, box_wh, box_confidence, box_class_probs, (720, 1280), 10, 0.6, 0.5)
    assert 1 <= got[0].shape[0] <= 10
    assert got[1].shape == (got[0].shape[0], 4) and got[2].dtype == np.int64
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, **TOL)


def test_yolo_eval_with_no_box_above_the_threshold():
    shape = (2, 2, 5)
    outputs = (np.full(shape + (2,), 0.5), np.full(shape + (2,), 0.1), np.full(shape + (1,), 0.1),
               np.full(shape + (3,), 1 / 3))
    scores, boxes, classes = course.yolo_eval(outputs)
    assert scores.shape == (0,) and boxes.shape == (0, 4) and classes.shape == (0,)


def test_week3_runs_on_the_box_kernels(monkeypatch):
    launched = []
    real_launch = nbcnn_backend.launch

    def recording_launch(kernel, *args, backend=None):
        launched.append(kernel.name)
        return real_launch(kernel, *args, backend=backend)

    monkeypatch.setattr(nbcnn_backend, "launch", recording_launch)
    monkeypatch.setattr(nbcnn_backend, "cpu_runners", lambda *kernels, **chosen: None)  # every kernel through launch
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float64)
    with nbcnn.use_backend("cpu"):
        course.iou((0, 0, 1, 1), (0, 0, 2, 2))
        assert launched == ["box_iou"]
        launched.clear()
        course.yolo_non_max_suppression(np.array([0.5, 0.6]), boxes, np.array([0, 0]))
        assert launched == ["nms"]


@pytest.mark.parametrize("call, error, words", [
    (lambda: course.iou((0, 0, 1), (0, 0, 1, 1)), ValueError, "box1 must be 4 numbers"),
    (lambda: course.iou((0, 0, 1, 1), (2, 2, 1, 1)), ValueError, "x2 < x1"),
    (lambda: course.iou("abcd", (0, 0, 1, 1)), TypeError, "real numbers"),
    (lambda: course.yolo_boxes_to_corners(np.ones((3, 2)), np.ones((4, 2))), ValueError, "must match"),
    (lambda: course.yolo_boxes_to_corners(np.ones((3, 3)), np.ones((3, 3))), ValueError, "box_xy must have shape"),
    (lambda: course.yolo_filter_boxes(np.ones((2, 4)), np.ones((3, 1)), np.ones((2, 5))), ValueError, "leading shape"),
    (lambda: course.yolo_filter_boxes(np.ones((2, 4)), np.ones((2, 2)), np.ones((2, 5))), ValueError,
     "box_confidence must have shape"),
    (lambda: course.yolo_non_max_suppression(np.ones(2), np.ones((3, 4)), np.ones(2)), ValueError, "boxes must"),
    (lambda: course.yolo_non_max_suppression(np.ones(2), np.ones((2, 4)), np.ones(3)), ValueError, "classes"),
    (lambda: course.yolo_non_max_suppression(np.array([np.nan, 1]), np.ones((2, 4)), np.ones(2)), ValueError,
     "NaN"),
    (lambda: course.yolo_non_max_suppression(np.ones(2), np.ones((2, 4)), np.ones(2), max_boxes=-1), ValueError,
     "max_boxes"),
    (lambda: course.scale_boxes(np.ones((2, 4)), (720,)), ValueError, "(height, width)"),
    (lambda: course.yolo_eval((np.ones((2, 2)),)), TypeError, "yolo_outputs"),
])
def test_week3_bad_input_raises_a_clear_error(call, error, words):
    with nbcnn.use_backend("python"):
        with pytest.raises(error) as info:
            call()
    assert words in str(info.value)


# --------------------------------------------------------------------------- week 4: neural style transfer
# The TF2 notebook's functions, written out again here in numpy as the notebook writes them
# (reshape to (m, -1, n_C) / (n_H * n_W, n_C) then transpose, A A^T), sharing no code with nbcnn.


def nb_compute_content_cost(a_C, a_G):
    m, n_H, n_W, n_C = a_G.shape
    a_C_unrolled = np.reshape(a_C, (m, -1, n_C))
    a_G_unrolled = np.reshape(a_G, (m, -1, n_C))
    return np.sum(np.square(a_C_unrolled - a_G_unrolled)) / (4.0 * n_H * n_W * n_C)


def nb_gram_matrix(A):
    return np.matmul(A, np.transpose(A))


def nb_compute_layer_style_cost(a_S, a_G):
    m, n_H, n_W, n_C = a_G.shape
    a_S = np.transpose(np.reshape(a_S, (n_H * n_W, n_C)))
    a_G = np.transpose(np.reshape(a_G, (n_H * n_W, n_C)))
    GS, GG = nb_gram_matrix(a_S), nb_gram_matrix(a_G)
    return np.sum(np.square(GS - GG)) / (4.0 * ((n_H * n_W * n_C) ** 2))


@pytest.fixture
def week4_activations(backend):
    rng = np.random.default_rng(1)
    shape = (1, 4, 4, 3) if is_slow(backend) else (1, 7, 5, 16)
    return rng.normal(1, 4, shape), rng.normal(1, 4, shape)  # the notebook's mean=1, stddev=4


def test_compute_content_cost_against_the_notebook(week4_activations):
    a_C, a_G = week4_activations
    J = course.compute_content_cost(a_C, a_G)
    assert isinstance(J, float)
    np.testing.assert_allclose(J, nb_compute_content_cost(a_C, a_G), **TOL)
    assert course.compute_content_cost(a_C, a_C) == 0.0
    # by hand: ones against zeros, 2 x 2 x 3 -> 12 / (4 * 12)
    assert course.compute_content_cost(np.ones((1, 2, 2, 3)), np.zeros((1, 2, 2, 3))) == 0.25


def test_gram_matrix_is_a_a_transpose(backend):
    """A = [[1, 2], [3, 4]] (n_C = 2, n_H * n_W = 2) -> [[5, 11], [11, 25]]; and the notebook's
    3 x 2 random A."""
    np.testing.assert_array_equal(course.gram_matrix([[1, 2], [3, 4]]), [[5.0, 11.0], [11.0, 25.0]])
    A = np.random.default_rng(1).normal(1, 4, (3, 2))
    GA = course.gram_matrix(A)
    assert GA.shape == (3, 3) and GA.dtype == np.float64
    np.testing.assert_allclose(GA, nb_gram_matrix(A), **TOL)


def test_compute_layer_style_cost_against_the_notebook(week4_activations):
    a_S, a_G = week4_activations
    J = course.compute_layer_style_cost(a_S, a_G)
    np.testing.assert_allclose(J, nb_compute_layer_style_cost(a_S, a_G), rtol=1e-12)
    assert course.compute_layer_style_cost(a_S, a_S) == 0.0 and J > 0


def test_compute_layer_style_cost_unrolls_channels_last():
    """The notebook reshapes (1, n_H, n_W, n_C) to (n_H * n_W, n_C) and transposes; reshaping straight
    to (n_C, n_H * n_W) would mix positions and channels and give another number."""
    rng = np.random.default_rng(2)
    a_S, a_G = rng.normal(size=(1, 2, 3, 4)), rng.normal(size=(1, 2, 3, 4))
    wrong = np.sum(np.square(nb_gram_matrix(a_S.reshape(4, 6)) - nb_gram_matrix(a_G.reshape(4, 6)))) / (4.0 * 24 ** 2)
    assert not np.isclose(course.compute_layer_style_cost(a_S, a_G), wrong)
    # the style cost ignores where things are: positions shuffled, the same channels -> 0
    shuffled = a_S.reshape(6, 4)[rng.permutation(6)].reshape(1, 2, 3, 4)
    assert course.compute_layer_style_cost(a_S, shuffled) == pytest.approx(0.0, abs=1e-12)


def test_total_cost_published_value():
    """The notebook's test: np.random.seed(3), J_content and J_style from randn -> J = 35.34667875478276."""
    np.random.seed(3)
    J_content, J_style = np.random.randn(), np.random.randn()
    assert course.total_cost(J_content, J_style) == pytest.approx(35.34667875478276, rel=1e-12)
    assert course.total_cost(0.2, 0.8, alpha=1, beta=1) == pytest.approx(1.0)


@pytest.mark.parametrize("call, error, words", [
    (lambda: course.compute_content_cost(np.ones((1, 2, 2, 3)), np.ones((1, 2, 3, 3))), ValueError, "must match"),
    (lambda: course.compute_content_cost(np.ones((2, 2, 3)), np.ones((2, 2, 3))), ValueError, "4 dimensions"),
    (lambda: course.gram_matrix(np.ones(3)), ValueError, "2 dimensions"),
    (lambda: course.compute_layer_style_cost(np.ones((2, 2, 2, 3)), np.ones((2, 2, 2, 3))), ValueError,
     "(1, n_H, n_W, n_C)"),
])
def test_week4_bad_input_raises_a_clear_error(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# --------------------------------------------------------------------------- week 4: "Face Recognition" (triplet loss)


def nb_triplet_loss(y_true, y_pred, alpha=0.2):
    """The notebook's solution, in numpy (tf.reduce_sum / tf.square / tf.maximum)."""
    anchor, positive, negative = (np.asarray(v, np.float64) for v in y_pred)
    pos_dist = np.sum(np.square(anchor - positive), axis=-1)
    neg_dist = np.sum(np.square(anchor - negative), axis=-1)
    basic_loss = pos_dist - neg_dist + alpha
    return np.sum(np.maximum(basic_loss, 0.0))


@pytest.mark.parametrize("y_pred, alpha, expected", [
    # the notebook's own checks, with the messages they guard against
    (([1., 1.], [1., 1.], [1., 1.]), 5, 5.0),                    # "Did you add the alpha to basic_loss?"
    (([1., 1.], [1., 1.], [0., 0.]), 3, 1.0),                    # pos_dist = 0 and neg_dist = 2
    (([1., 1.], [0., 0.], [1., 1.]), 0, 2.0),                    # pos_dist = 2 and neg_dist = 0
    (([0., 0.], [0., 0.], [0., 0.]), -2, 0.0),                   # the maximum with 0
    (([[1., 0.], [1., 0.]], [[1., 0.], [1., 0.]], [[0., 1.], [0., 1.]]), 3, 2.0),   # reduce_sum over the batch
    (([[1., 1.], [2., 0.]], [[0., 3.], [1., 1.]], [[1., 0.], [0., 1.]]), 1, 5.0),   # axis=-1 (4 without it)
])
def test_triplet_loss_notebook_checks(backend, y_pred, alpha, expected):
    y_true = (None, None, None)  # not used, as in the notebook
    assert course.triplet_loss(y_true, y_pred, alpha) == expected


def test_triplet_loss_matches_the_notebook_on_its_shapes(backend):
    """The notebook's random case has (3, 128) encodings (mean 6 / 1 / 3, stddev 0.1 / 1 / 4); TF's random
    numbers cannot be drawn here, so numpy's stand in, against the notebook's formula."""
    rng = np.random.default_rng(1)
    y_pred = (rng.normal(6, 0.1, (3, 128)), rng.normal(1, 1, (3, 128)), rng.normal(3, 4, (3, 128)))
    assert course.triplet_loss(None, y_pred) == pytest.approx(nb_triplet_loss(None, y_pred), rel=1e-12)
    y32 = tuple(v.astype(np.float32) for v in y_pred)
    assert course.triplet_loss(None, y32) == pytest.approx(nb_triplet_loss(None, y_pred), rel=1e-5)


def test_triplet_loss_runs_on_the_kernel(monkeypatch):
    calls = []
    real = nbcnn_backend.launch

    def spy(kernel, *args, **kwargs):
        calls.append(kernel.name)
        return real(kernel, *args, **kwargs)

    monkeypatch.setattr(nbcnn_backend, "launch", spy)
    monkeypatch.setattr(nbcnn_backend, "cpu_runners", lambda *kernels, **chosen: None)  # every kernel through launch
    course.triplet_loss(None, ([1., 1.], [1., 1.], [0., 0.]), 3)
    assert calls == ["triplet_loss"]


@pytest.mark.parametrize("y_pred, error, words", [
    (([1., 1.], [1., 1.]), TypeError, "(anchor, positive, negative)"),
    (([1., 1.], [1., 1., 1.], [1., 1.]), ValueError, "positive has shape (3,) but anchor has shape (2,)"),
    ((["a", "b"], [1., 1.], [1., 1.]), TypeError, "real numbers"),
    (([], [], []), ValueError, "(m, d) or (d,)"),
])
def test_triplet_loss_bad_input_raises_a_clear_error(y_pred, error, words):
    with pytest.raises(error) as info:
        course.triplet_loss(None, y_pred)
    assert words in str(info.value)
