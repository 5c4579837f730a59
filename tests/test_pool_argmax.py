"""Max pooling that keeps the forward's argmax, and the backward that routes the gradient by it
(``max_pool2d(..., return_argmax=True)``, ``max_pool2d_backward(..., argmax=)``), on every backend."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
import oracles
from conftest import ALL_BACKENDS, is_slow
from nbcnn import checks, layers as L
from nbcnn.kernels import pool
from nbcnn.kernels.fast import max_pool
from test_conv import pair, resolve


def argmax_oracle(x, f, stride, pads):
    """For each window (plain loops over Python floats): its real cells in row-major order, the
    first NaN if there is one, else the first maximum; returned as ``i * f_w + j`` inside the
    window, with that cell's value (p, x's dtype and bits)."""
    (fh, fw), (sh, sw) = f, stride
    top, bottom, left, right = pads
    N, H, W, C = x.shape
    OH, OW = oracles.out_size(H, fh, sh, top, bottom), oracles.out_size(W, fw, sw, left, right)
    out, value = np.empty((N, OH, OW, C), np.int64), np.empty((N, OH, OW, C), x.dtype)
    for n in range(N):
        for a in range(OH):
            for b in range(OW):
                for c in range(C):
                    cells = [(i * fw + j, x[n, a * sh - top + i, b * sw - left + j, c])
                             for i in range(fh) for j in range(fw)
                             if 0 <= a * sh - top + i < H and 0 <= b * sw - left + j < W]
                    nans = [(k, v) for k, v in cells if np.isnan(v)]
                    if nans:
                        out[n, a, b, c], value[n, a, b, c] = nans[0]
                    else:
                        best = max(float(v) for _, v in cells)
                        out[n, a, b, c], value[n, a, b, c] = next((k, v) for k, v in cells if v == best)
    return out, value


def gradient(rng, shape, dtype):
    """Small integers (exact sums, in any order) and signed zeros: -0.0 + 0 must give +0.0."""
    return rng.choice(np.array([-0.0, 0.0, 1.0, -1.0, 2.0, -3.0]), size=shape).astype(dtype)


def bits(a):
    a = np.asarray(nbcnn.to_host(a))
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def check_case(x, f, stride, pad, dp_seed=0):
    """p and argmax against the oracles, the argmax backward against the oracle and, bit for bit,
    against the backward that searches x."""
    pads = resolve(pad, x.shape[1:3], pair(f), pair(stride))
    p, argmax = nbcnn.max_pool2d(x, f, stride, pad, return_argmax=True)
    assert argmax.dtype == np.int32 and argmax.shape == p.shape
    want_argmax, want_p = argmax_oracle(x, pair(f), pair(stride), pads)
    np.testing.assert_array_equal(argmax, want_argmax)
    np.testing.assert_array_equal(bits(p), bits(want_p))  # -0.0 vs 0.0 and NaN too
    np.testing.assert_array_equal(bits(p), bits(nbcnn.max_pool2d(x, f, stride, pad)))
    if not np.isnan(x).any():  # np.nanmax skips NaN
        np.testing.assert_array_equal(p, oracles.pool_forward(x, pair(f), pair(stride), pads, "max"))
    dp = gradient(np.random.default_rng(dp_seed), p.shape, x.dtype)
    dx = nbcnn.max_pool2d_backward(dp, x, f, stride, pad, argmax=argmax)
    np.testing.assert_array_equal(bits(dx), bits(nbcnn.max_pool2d_backward(dp, x, f, stride, pad)))
    # the scatter oracle's np.argmax sees padding as -inf: no NaN there, and no -inf in x either
    # (a window of padding and a real -inf gives the oracle's gradient to the padding; nbcnn's,
    # like the argmax oracle above, to the real cell)
    if not np.isnan(x).any() and not np.isneginf(x).any():
        np.testing.assert_array_equal(dx, oracles.pool_backward(dp, x, pair(f), pair(stride), pads, "max"))


def test_a_4x4_keeps_where_each_quadrant_max_sits(backend):
    x = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], np.float32).reshape(1, 4, 4, 1)
    p, argmax = nbcnn.max_pool2d(x, f=2, stride=2, return_argmax=True)
    np.testing.assert_array_equal(p[0, :, :, 0], [[9, 2], [6, 3]])
    # 9 and 6 are the bottom-right of their windows (1 * 2 + 1), 2 the top-left (0), 3 the top-right (1)
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[3, 0], [3, 1]])
    dx = nbcnn.max_pool2d_backward(np.ones_like(p), x, 2, 2, argmax=argmax)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]])


def test_padding_rows_and_columns_count_in_the_cell_number(backend):
    # 3x3 windows, pad 1: the top-left window starts on a padding row and column, so the input's
    # top-left cell is cell (1, 1) of it: 1 * 3 + 1 = 4
    x = np.array([[9.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 2, 1)
    p, argmax = nbcnn.max_pool2d(x, 3, 1, 1, return_argmax=True)
    np.testing.assert_array_equal(argmax[0, :, :, 0], [[4, 3], [1, 0]])
    np.testing.assert_array_equal(p[0, :, :, 0], np.full((2, 2), 9.0))


def test_ties_and_nan_follow_the_search_rule(backend):
    x = np.full((1, 2, 2, 1), 7.0)  # all tie: the first cell
    assert nbcnn.max_pool2d(x, 2, return_argmax=True)[1][0, 0, 0, 0] == 0
    x = np.array([[1.0, 0.0], [4.0, 4.0]]).reshape(1, 2, 2, 1)  # a tie on the second row
    assert nbcnn.max_pool2d(x, 2, return_argmax=True)[1][0, 0, 0, 0] == 2
    x = np.array([[1.0, 5.0], [np.nan, np.nan]]).reshape(1, 2, 2, 1)  # the first NaN wins
    p, argmax = nbcnn.max_pool2d(x, 2, return_argmax=True)
    assert np.isnan(p[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 2
    x = np.array([[-0.0, 0.0], [0.0, -1.0]], np.float32).reshape(1, 2, 2, 1)  # -0 and +0 tie: the first
    p, argmax = nbcnn.max_pool2d(x, 2, return_argmax=True)
    assert argmax[0, 0, 0, 0] == 0 and np.signbit(p[0, 0, 0, 0])


@pytest.mark.parametrize("f,stride,pad", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 1, "same"), ((2, 3), (1, 2), 1),
                                          (3, 3, "valid"), ((3, 1), (1, 1), ((1, 0), (0, 0)))])
def test_match_the_oracles_and_the_search(backend, rng, f, stride, pad):
    shape = (1, 5, 7, 2) if is_slow(backend) else (3, 9, 10, 5)
    check_case(rng.integers(0, 3, shape).astype(np.float64), f, stride, pad)  # many ties
    check_case(rng.standard_normal(shape).astype(np.float32), f, stride, pad)


@st.composite
def cases(draw, tiny):
    big = 4 if tiny else 9
    N, C = draw(st.integers(1, 1 if tiny else 3)), draw(st.sampled_from([1, 2] if tiny else [1, 2, 3, 6, 8, 16, 17, 33, 64]))
    H, W = draw(st.integers(1, big)), draw(st.integers(1, big))
    f = (draw(st.integers(1, min(H, 4))), draw(st.integers(1, min(W, 4))))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))  # stride < f: overlapping windows
    pad = draw(st.sampled_from(["valid", "same", 0, 1, (1, 0), ((0, 1), (1, 0))]))
    try:
        checks.pool_window((N, H, W, C), f, stride, pad, "test")
    except ValueError:
        pad = 0
    values = draw(st.sampled_from(["normal", "ties", "nan"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (N, H, W, C), f, stride, pad, values, dtype, draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_random_shapes_windows_ties_and_nans(backend_name):
    tiny = is_slow(backend_name)

    @settings(max_examples=20 if tiny else 200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases(tiny))
    def check(case):
        shape, f, stride, pad, values, dtype, seed = case
        r = np.random.default_rng(seed)
        if values == "normal":
            x = r.standard_normal(shape)
        elif values == "ties":
            x = r.integers(-1, 2, shape).astype(np.float64)
        else:
            x = r.choice(np.array([np.nan, -0.0, 0.0, 1.0, -np.inf]), size=shape)
        check_case(x.astype(dtype), f, stride, pad, seed)

    with nbcnn.use_backend(backend_name):
        check()


# --------------------------------------------------------------------------- the kernels themselves


def kernel_outputs(x, f, stride, pad, dp):
    """Every cpu form of the two kernels (compiled readable loops, fast), on the same inputs."""
    win, (H_out, W_out) = checks.pool_window(x.shape, f, stride, pad, "test")
    shape = (x.shape[0], H_out, W_out, x.shape[3])
    out = {}
    for name, fn in [("naive", pool.MAX_ARGMAX.naive_cpu), ("fast", max_pool.max_pool2d_forward_argmax)]:
        p, a = np.full(shape, np.nan, x.dtype), np.full(shape, -5, np.int32)  # garbage to overwrite
        fn(x, win, p, a)
        out[name] = (p, a)
    arg = out["naive"][1]
    dp = dp(shape).astype(x.dtype)
    for name, fn in [("naive", pool.MAX_BACKWARD_ARGMAX.naive_cpu), ("fast", max_pool.max_pool2d_backward_argmax)]:
        dx = np.full(x.shape, np.nan, x.dtype)
        fn(dp, arg, win, dx)
        out[name] += (dx,)
    searched = np.full(x.shape, np.nan, x.dtype)
    pool.MAX_BACKWARD.naive_cpu(dp, x, win, searched)
    return out, searched


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(False))
def test_fast_cpu_kernels_equal_the_readable_ones(case):
    shape, f, stride, pad, values, dtype, seed = case
    r = np.random.default_rng(seed)
    x = {"normal": lambda: r.standard_normal(shape), "ties": lambda: r.integers(-1, 2, shape),
         "nan": lambda: r.choice(np.array([np.nan, -0.0, 0.0, 1.0, -np.inf]), size=shape)}[values]().astype(dtype)
    out, searched = kernel_outputs(x, f, stride, pad, lambda s: gradient(r, s, dtype))
    (p0, a0, dx0), (p1, a1, dx1) = out["naive"], out["fast"]
    np.testing.assert_array_equal(bits(p1), bits(p0))
    np.testing.assert_array_equal(a1, a0)
    np.testing.assert_array_equal(bits(dx1), bits(dx0))
    np.testing.assert_array_equal(bits(dx0), bits(searched))


@pytest.mark.parametrize("shape,f,stride", [((3, 32, 32, 16), 2, 2), ((2, 23, 21, 64), 3, 2), ((4, 28, 28, 6), 2, 2),
                                            ((4, 10, 10, 16), 2, 2), ((2, 13, 12, 6), 3, 3), ((2, 9, 8, 8), 2, 1)])
def test_fast_kernels_on_bench_like_shapes(shape, f, stride):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    out, searched = kernel_outputs(x, f, stride, 0, lambda s: rng.standard_normal(s))
    for k in range(3):
        np.testing.assert_array_equal(out["fast"][k].view(np.uint32), out["naive"][k].view(np.uint32))
    np.testing.assert_array_equal(out["naive"][2].view(np.uint32), searched.view(np.uint32))


def test_the_cpu_backend_runs_the_fast_kernels():
    assert pool.MAX_ARGMAX.fast_cpu is max_pool.max_pool2d_forward_argmax
    assert pool.MAX_BACKWARD_ARGMAX.fast_cpu is max_pool.max_pool2d_backward_argmax


# --------------------------------------------------------------------------- bad argmax


@pytest.fixture
def pooled(rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    p, argmax = nbcnn.max_pool2d(x, 3, 2, return_argmax=True)
    return x, np.ones_like(p), argmax


@pytest.mark.parametrize("bad,error,words", [
    (lambda a: a.astype(np.float32), TypeError, "integer array"),
    (lambda a: a > 0, TypeError, "integer array"),
    (lambda a: "argmax", TypeError, "int32 array"),
    (lambda a: a[:, :1], ValueError, "argmax has shape (2, 1, 2, 3) but dp"),
    (lambda a: a.reshape(-1), ValueError, "argmax has shape (24,)"),
    (lambda a: np.where(a == a.max(), -1, a), ValueError, "[0, 9)"),
    (lambda a: a + 9, ValueError, "must lie in [0, 9)"),
    (lambda a: a.astype(np.int64) + 2**40, ValueError, "[0, 9)"),
])
def test_a_bad_argmax_is_rejected_with_the_reason(pooled, bad, error, words):
    x, dp, argmax = pooled
    with pytest.raises(error) as info:
        nbcnn.max_pool2d_backward(dp, x, 3, 2, argmax=bad(argmax))
    assert words in str(info.value)


def test_integer_argmax_of_other_types_is_accepted(pooled):
    x, dp, argmax = pooled
    want = nbcnn.max_pool2d_backward(dp, x, 3, 2)
    for a in (argmax.astype(np.int64), argmax.astype(np.uint8), argmax.tolist(), np.asfortranarray(argmax)):
        np.testing.assert_array_equal(nbcnn.max_pool2d_backward(dp, x, 3, 2, argmax=a), want)


def test_an_argmax_of_another_window_is_out_of_range(rng):
    # 3x3 windows, stride 3, and 2x2 windows, stride 3, give the same output shape on a 6x6;
    # the first window's max sits in its centre, cell 4: no cell of a 2x2 window
    x = rng.standard_normal((1, 6, 6, 2)).astype(np.float32)
    x[0, 1, 1, :] = 100.0
    p, argmax = nbcnn.max_pool2d(x, 3, 3, return_argmax=True)
    assert argmax[0, 0, 0, 0] == 4
    with pytest.raises(ValueError, match=r"\[0, 4\) \(cell i \* f_w \+ j of the 2x2 window\)"):
        nbcnn.max_pool2d_backward(np.ones_like(p), x, 2, 3, argmax=argmax)


def test_gpu_arrays_stay_on_the_gpu(rng):
    if not nbcnn.available_backends()["cuda"]:
        pytest.skip("no cuda backend here")
    from numba import cuda

    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    with nbcnn.use_backend("cuda"):
        p, argmax = nbcnn.max_pool2d(cuda.to_device(x), 2, return_argmax=True)
        assert nbcnn.backend.is_device_array(argmax) and argmax.dtype == np.int32
        dp = cuda.to_device(np.ones(p.shape, np.float32))
        dx = nbcnn.max_pool2d_backward(dp, cuda.to_device(x), 2, argmax=argmax)
        np.testing.assert_array_equal(nbcnn.to_host(dx), nbcnn.max_pool2d_backward(np.ones(p.shape, np.float32), x, 2))
        with pytest.raises(TypeError, match="int32"):
            nbcnn.max_pool2d_backward(dp, x, 2, argmax=cuda.to_device(argmax.copy_to_host().astype(np.int64)))
    with nbcnn.use_backend("cpu"):  # a GPU argmax on the cpu backend comes back and is checked
        np.testing.assert_array_equal(nbcnn.max_pool2d_backward(np.ones(p.shape, np.float32), x, 2, argmax=argmax),
                                      nbcnn.max_pool2d_backward(np.ones(p.shape, np.float32), x, 2))


# --------------------------------------------------------------------------- the layer


def test_layer_routes_the_gradient_with_the_training_forwards_argmax(backend, rng):
    layer = L.MaxPooling2D(2)
    x = rng.permutation(2 * 4 * 4 * 3).reshape(2, 4, 4, 3).astype(np.float64)
    p = np.asarray(nbcnn.to_host(layer.forward(x, training=True)))
    want = nbcnn.max_pool2d_backward(np.ones_like(p), x, 2)
    x[...] = -x  # the backward must not look at x again: the argmax of the forward decides
    np.testing.assert_array_equal(nbcnn.to_host(layer.backward(np.ones_like(p))), want)
    # an inference forward keeps no argmax: the backward searches (the now negated) x
    layer.forward(x, training=False)
    np.testing.assert_array_equal(nbcnn.to_host(layer.backward(np.ones_like(p))),
                                  nbcnn.max_pool2d_backward(np.ones_like(p), x, 2))


def test_layer_gradient_check_with_the_kept_argmax(backend, rng):
    layer = L.MaxPooling2D(3, strides=2, padding="same")
    x = (rng.permutation(2 * 5 * 5 * 2) + rng.uniform(-0.1, 0.1, 2 * 5 * 5 * 2)).reshape(2, 5, 5, 2)
    p = np.asarray(nbcnn.to_host(layer.forward(x, training=True)))
    probe = rng.standard_normal(p.shape)
    dx = np.asarray(nbcnn.to_host(layer.backward(probe)))
    assert layer._argmax is not None
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * nbcnn.to_host(layer.forward(v)))), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-7)
