"""Depthwise convolution (one filter per channel) forward and backward on every backend, against
a float64 numpy oracle written here, finite differences, and torch's grouped convolution
(``groups=C``) when torch is installed; the fast cpu forward against the readable loop; the
``DepthwiseConv2D`` and ``SeparableConv2D`` layers."""

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
from conftest import is_slow
from nbcnn.checks import Window
from nbcnn.kernels import depthwise as kernels
from nbcnn.kernels.fast import depthwise as fast


# --------------------------------------------------------------------------- the oracle


def same_pads(size, f, stride):
    """Keras 'same': output ceil(size / stride), the odd extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + f - size, 0)
    return total // 2, total - total // 2


def resolve(pad, hw, f_hw, stride):
    """(top, bottom, left, right) for the pad forms the op takes."""
    s = (stride, stride) if isinstance(stride, int) else stride
    if pad == "valid":
        return 0, 0, 0, 0
    if pad == "same":
        return (*same_pads(hw[0], f_hw[0], s[0]), *same_pads(hw[1], f_hw[1], s[1]))
    if isinstance(pad, int):
        return pad, pad, pad, pad
    if isinstance(pad[0], tuple):
        return (*pad[0], *pad[1])
    return pad[0], pad[0], pad[1], pad[1]


def oracle_forward(x, W, b, stride, pads):
    """Explicit zero padding and window slices, every channel at once: z = sum(window * W) + b."""
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64).reshape(W.shape[:3])
    b = np.zeros(W.shape[2]) if b is None else np.asarray(b, np.float64)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    f_h, f_w, C = W.shape
    OH, OW = (xp.shape[1] - f_h) // sh + 1, (xp.shape[2] - f_w) // sw + 1
    z = np.zeros((x.shape[0], OH, OW, C))
    for h in range(OH):
        for w in range(OW):
            window = xp[:, h * sh:h * sh + f_h, w * sw:w * sw + f_w, :]  # (N, f_h, f_w, C)
            z[:, h, w, :] = (window * W).sum(axis=(1, 2)) + b
    return z


def oracle_backward(dz, x, W, stride, pads):
    """Scatter form, as the course's notebook: each output's gradient is added to its window."""
    dz, x = np.asarray(dz, np.float64), np.asarray(x, np.float64)
    W = np.asarray(W, np.float64).reshape(W.shape[:3])
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    dxp, dW = np.zeros_like(xp), np.zeros_like(W)
    f_h, f_w, _ = W.shape
    for h in range(dz.shape[1]):
        for w in range(dz.shape[2]):
            g = dz[:, h, w, None, None, :]  # (N, 1, 1, C)
            dxp[:, h * sh:h * sh + f_h, w * sw:w * sw + f_w, :] += g * W
            dW += (xp[:, h * sh:h * sh + f_h, w * sw:w * sw + f_w, :] * g).sum(axis=0)
    H, Wd = x.shape[1:3]
    return dxp[:, top:top + H, left:left + Wd, :], dW, dz.sum(axis=(0, 1, 2))


# --------------------------------------------------------------------------- the lecture's example


def test_each_channel_sees_only_its_own_filter(backend):
    # channel 0 holds a vertical edge, channel 1 a horizontal one; filter 0 finds vertical edges,
    # filter 1 horizontal ones: each lights up on its own channel's edge only
    image = np.zeros((1, 6, 6, 2), np.float32)
    image[0, :, :3, 0] = 10
    image[0, :3, :, 1] = 10
    W = np.zeros((3, 3, 2), np.float32)
    W[:, :, 0] = [[1, 0, -1]] * 3
    W[:, :, 1] = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]])
    z = nbcnn.depthwise_conv2d(image, W)
    np.testing.assert_array_equal(z[0, :, :, 0], [[0, 30, 30, 0]] * 4)
    np.testing.assert_array_equal(z[0, :, :, 1], [[0] * 4, [30] * 4, [30] * 4, [0] * 4])


# --------------------------------------------------------------------------- forward


PADS = [(1, 0), (1, 1), (2, 1), (2, "same"), (1, "same"), (2, "valid"), ((1, 2), (2, 0)), (2, ((0, 2), (1, 0)))]


@pytest.mark.parametrize("stride,pad", PADS)
def test_forward_matches_numpy_oracle(backend, rng, stride, pad):
    N, H, W, C = (2, 6, 5, 3) if is_slow(backend) else (3, 11, 9, 20)
    f = (3, 2) if is_slow(backend) else (3, 3)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    Wt = rng.standard_normal((*f, C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    z = nbcnn.depthwise_conv2d(x, Wt, b, stride=stride, pad=pad)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, oracle_forward(x, Wt, b, stride, resolve(pad, (H, W), f, stride)),
                               rtol=1e-5, atol=1e-5)


def test_float64_is_kept_and_exact_and_no_bias_means_zero(backend, rng):
    x = rng.standard_normal((2, 5, 6, 3))
    Wt = rng.standard_normal((2, 3, 3))
    z = nbcnn.depthwise_conv2d(x, Wt, stride=(2, 1), pad=(1, 0))
    assert z.dtype == np.float64
    np.testing.assert_allclose(z, oracle_forward(x, Wt, None, (2, 1), (1, 1, 0, 0)), rtol=1e-12, atol=1e-12)


def test_tensorflow_filter_layout_is_accepted(backend, rng):
    # TensorFlow stores depthwise filters as (f_h, f_w, C, channel_multiplier); multiplier 1 is the same filters
    x = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(nbcnn.depthwise_conv2d(x, Wt[..., None], pad=1),
                                  nbcnn.depthwise_conv2d(x, Wt, pad=1))
    dz = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    _, dW4, _ = nbcnn.depthwise_conv2d_backward(dz, x, Wt[..., None], pad=1)
    _, dW3, _ = nbcnn.depthwise_conv2d_backward(dz, x, Wt, pad=1)
    assert dW4.shape == (3, 3, 4, 1) and dW3.shape == (3, 3, 4)  # the caller's layout comes back
    np.testing.assert_array_equal(dW4[..., 0], dW3)


# --------------------------------------------------------------------------- backward


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0), (2, "same"), ((2, 1), ((1, 0), (0, 2)))])
def test_backward_matches_scatter_oracle(backend, rng, stride, pad):
    N, H, W, C = (1, 5, 6, 2) if is_slow(backend) else (2, 9, 8, 17)
    f = (3, 3)
    x = rng.standard_normal((N, H, W, C))
    Wt = rng.standard_normal((*f, C))
    pads = resolve(pad, (H, W), f, stride)
    dz = rng.standard_normal(oracle_forward(x, Wt, None, stride, pads).shape)
    dx, dW, db = nbcnn.depthwise_conv2d_backward(dz, x, Wt, stride=stride, pad=pad)
    for got, want in zip((dx, dW, db), oracle_backward(dz, x, Wt, stride, pads)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_backward_float32_and_need_dx(backend, rng):
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 3)).astype(np.float32)
    dz = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    dx, dW, db = nbcnn.depthwise_conv2d_backward(dz, x, Wt, stride=2, pad=1, need_dx=False)
    assert dx is None and dW.dtype == np.float32 and db.dtype == np.float32
    _, eW, eb = oracle_backward(dz, x, Wt, 2, (1, 1, 1, 1))
    np.testing.assert_allclose(dW, eW, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, eb, rtol=1e-5, atol=1e-5)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of a (changed in place)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        keep = a[idx]
        a[idx] = keep + eps
        plus = f()
        a[idx] = keep - eps
        minus = f()
        a[idx] = keep
        g[idx] = (plus - minus) / (2 * eps)
    return g


@pytest.mark.parametrize("stride,pad", [(1, "same"), (2, 1)])
def test_backward_matches_finite_differences(backend, rng, stride, pad):
    x = rng.standard_normal((1, 4, 5, 2))
    Wt = rng.standard_normal((3, 3, 2))
    b = rng.standard_normal(2)
    g = rng.standard_normal(nbcnn.depthwise_conv2d(x, Wt, b, stride, pad).shape)

    def loss():
        return float(np.sum(nbcnn.depthwise_conv2d(x, Wt, b, stride, pad) * g))

    dx, dW, db = nbcnn.depthwise_conv2d_backward(g, x, Wt, stride, pad)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dW, numeric_grad(loss, Wt), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- torch as a second oracle


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0), (2, 1)])
def test_matches_torch_grouped_convolution(rng, stride, pad):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 10, 9, 6))
    Wt = rng.standard_normal((3, 3, 6))
    b = rng.standard_normal(6)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(Wt.transpose(2, 0, 1)[:, None], requires_grad=True)  # (C, 1, f_h, f_w)
    bt = torch.tensor(b, requires_grad=True)
    zt = F.conv2d(xt, wt, bt, stride=stride, padding=pad, groups=6)
    dz = rng.standard_normal(zt.shape)
    zt.backward(torch.tensor(dz))
    with nbcnn.use_backend("cpu"):
        z = nbcnn.depthwise_conv2d(x, Wt, b, stride, pad)
        dx, dW, db = nbcnn.depthwise_conv2d_backward(dz.transpose(0, 2, 3, 1), x, Wt, stride, pad)
    np.testing.assert_allclose(z, zt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dW, wt.grad.numpy()[:, 0].transpose(1, 2, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- the fast cpu forward


@pytest.mark.parametrize("shape,f,stride,pads", [
    ((2, 13, 11, 16), (3, 3), (1, 1), (1, 1)),
    ((1, 12, 15, 37), (3, 3), (2, 2), (0, 1)),
    ((3, 7, 9, 5), (5, 3), (2, 1), (2, 0)),
    ((1, 9, 8, 64), (2, 4), (3, 2), (0, 3)),
    ((1, 4, 4, 8), (3, 3), (1, 1), (2, 2)),  # padding wider than reach: whole rows and columns of zeros
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_forward_matches_the_readable_loop(rng, shape, f, stride, pads, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    Wt = rng.standard_normal((*f, shape[3])).astype(dtype)
    b = rng.standard_normal(shape[3]).astype(dtype)
    win = Window(*f, *stride, *pads)
    H_out = (shape[1] + 2 * pads[0] - f[0]) // stride[0] + 1
    W_out = (shape[2] + 2 * pads[1] - f[1]) // stride[1] + 1
    want = np.full((shape[0], H_out, W_out, shape[3]), np.nan, dtype)
    got = want.copy()
    kernels.depthwise_forward(x, Wt, b, win, want)  # the readable source, as the python backend runs it
    fast.depthwise_forward(x, Wt, b, win, got)
    tol = 1e-6 if dtype == np.float32 else 1e-13  # the fast one may fuse multiply-adds
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

    # the gradients: the same products summed in another order
    dz = rng.standard_normal(want.shape).astype(dtype)
    want_dx, got_dx = np.full_like(x, np.nan), np.full_like(x, np.nan)
    want_dW, got_dW = np.full_like(Wt, np.nan), np.full_like(Wt, np.nan)
    kernels.BACKWARD_INPUT.naive_cpu(dz, Wt, win, want_dx)  # compiled readable loop (python: too slow here)
    kernels.BACKWARD_FILTER.naive_cpu(x, dz, win, want_dW)
    fast.depthwise_backward_input(dz, Wt, win, got_dx)
    fast.depthwise_backward_filter(x, dz, win, got_dW)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got_dx, want_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_dW, want_dW, rtol=tol, atol=tol)


def test_fast_filter_gradient_is_the_same_bits_every_run(rng):
    x = rng.standard_normal((4, 33, 20, 24)).astype(np.float32)
    dz = rng.standard_normal((4, 33, 20, 24)).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    runs = []
    for threads in (1, 2):
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            dW = np.empty((3, 3, 24), np.float32)
            fast.depthwise_backward_filter(x, dz, win, dW)
            runs.append(dW)
        finally:
            numba.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_cpu_backend_runs_the_fast_kernels_and_naive_switch(rng, monkeypatch):
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 16)).astype(np.float32)
    dz = rng.standard_normal((2, 4, 4, 16)).astype(np.float32)
    assert kernels.FORWARD.fast_cpu is fast.depthwise_forward
    assert kernels.BACKWARD_INPUT.fast_cpu is fast.depthwise_backward_input
    assert kernels.BACKWARD_FILTER.fast_cpu is fast.depthwise_backward_filter
    with nbcnn.use_backend("cpu"):
        fast_run = [nbcnn.depthwise_conv2d(x, Wt, pad=1, stride=2),
                    *nbcnn.depthwise_conv2d_backward(dz, x, Wt, pad=1, stride=2)]
        monkeypatch.setenv("NBCNN_FAST", "0")
        naive_run = [nbcnn.depthwise_conv2d(x, Wt, pad=1, stride=2),
                     *nbcnn.depthwise_conv2d_backward(dz, x, Wt, pad=1, stride=2)]
    for got, want in zip(fast_run, naive_run):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("x_shape,W_shape,b_shape,match", [
    ((1, 5, 5, 3), (3, 3, 4), None, "channel mismatch"),
    ((1, 5, 5, 3), (3, 3, 3, 2), None, r"\(f_h, f_w, C\) or \(f_h, f_w, C, 1\)"),
    ((1, 5, 5, 3), (3, 3), None, r"\(f_h, f_w, C\)"),
    ((1, 5, 5, 3), (3, 3, 3), (4,), r"b must have shape \(3,\)"),
    ((5, 5, 3), (3, 3, 3), None, "4 dimensions"),
    ((1, 2, 2, 3), (3, 3, 3), None, "larger than the padded input"),
])
def test_bad_shapes_are_refused_with_the_shapes_named(x_shape, W_shape, b_shape, match):
    b = None if b_shape is None else np.zeros(b_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        nbcnn.depthwise_conv2d(np.zeros(x_shape, np.float32), np.zeros(W_shape, np.float32), b)


def test_bad_dtypes_and_gradients_are_refused():
    x, Wt = np.zeros((1, 5, 5, 3), np.float32), np.zeros((3, 3, 3), np.float32)
    with pytest.raises(TypeError, match="int64"):
        nbcnn.depthwise_conv2d(x.astype(np.int64), Wt)
    with pytest.raises(TypeError, match="W"):
        nbcnn.depthwise_conv2d(x, "filters")
    with pytest.raises(ValueError, match=r"dz has shape \(1, 5, 5, 3\).*\(1, 3, 3, 3\)"):
        nbcnn.depthwise_conv2d_backward(np.zeros((1, 5, 5, 3), np.float32), x, Wt)
    with pytest.raises(ValueError, match="stride"):
        nbcnn.depthwise_conv2d(x, Wt, stride=0)
    with pytest.raises(ValueError, match="pad"):
        nbcnn.depthwise_conv2d(x, Wt, pad="full")


# --------------------------------------------------------------------------- layers


def test_depthwise_layer_forward_backward_and_parameters(rng):
    layer = nbcnn.DepthwiseConv2D(3, strides=2, padding="same")
    assert layer.build((7, 6, 4), rng) == (4, 3, 4)
    assert layer.params["W"].shape == (3, 3, 4) and layer.params["b"].shape == (4,)
    assert layer.count_params() == 3 * 3 * 4 + 4 and layer.macs() == 4 * 3 * 4 * 9
    layer.params["b"] = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((2, 7, 6, 4)).astype(np.float32)
    pads = resolve("same", (7, 6), (3, 3), 2)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, oracle_forward(x, layer.params["W"], layer.params["b"], 2, pads), atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    ex, eW, eb = oracle_backward(dy, x, layer.params["W"], 2, pads)
    np.testing.assert_allclose(dx, ex, atol=1e-5)
    np.testing.assert_allclose(layer.grads["W"], eW, atol=1e-4)
    np.testing.assert_allclose(layer.grads["b"], eb, atol=1e-4)


def test_separable_layer_is_depthwise_then_pointwise(rng):
    layer = nbcnn.SeparableConv2D(5, 3, padding=1, use_bias=True)
    assert layer.build((6, 6, 3), rng) == (6, 6, 5)
    assert layer.count_params() == 3 * 3 * 3 + 3 * 5 + 5
    layer.params["b"] = rng.standard_normal(5).astype(np.float32)
    x = rng.standard_normal((2, 6, 6, 3))
    Wd, Wp, b = (layer.params[k].astype(np.float64) for k in ("depthwise_W", "pointwise_W", "b"))
    mid = oracle_forward(x, Wd, None, 1, (1, 1, 1, 1))
    want = mid @ Wp[0, 0] + b
    layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)

    def loss():
        return float(np.sum(layer.forward(x) * g))

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    for key in ("depthwise_W", "pointwise_W", "b"):
        np.testing.assert_allclose(layer.grads[key], numeric_grad(loss, layer.params[key]), rtol=1e-6, atol=1e-7)


def test_layers_round_trip_through_save_and_load(tmp_path, rng):
    model = nbcnn.Sequential([nbcnn.SeparableConv2D(4, 3, padding="same"), nbcnn.DepthwiseConv2D(3, strides=2),
                              nbcnn.DepthwiseConv2D((1, 2), use_bias=False)], input_shape=(9, 9, 2))
    x = rng.standard_normal((1, 9, 9, 2)).astype(np.float32)
    before = model.predict(x)
    model.save(tmp_path / "sep.nbcnn")
    again = nbcnn.load_model(tmp_path / "sep.nbcnn")
    assert [type(l).__name__ for l in again.layers] == ["SeparableConv2D", "DepthwiseConv2D", "DepthwiseConv2D"]
    assert again.layers[1].strides == 2 and "b" not in again.layers[2].params
    np.testing.assert_array_equal(again.predict(x), before)


def test_layer_arguments_are_checked():
    with pytest.raises(TypeError):
        nbcnn.DepthwiseConv2D(2.5)
    with pytest.raises(ValueError):
        nbcnn.DepthwiseConv2D(3, strides=0)
    with pytest.raises(ValueError, match="larger than its input"):
        nbcnn.Sequential([nbcnn.DepthwiseConv2D(5)], input_shape=(3, 3, 2))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        nbcnn.DepthwiseConv2D(3).build((9, 9), np.random.default_rng(0))
    for layer in (nbcnn.DepthwiseConv2D(3), nbcnn.SeparableConv2D(2, 3)):
        layer.build((5, 5, 2), np.random.default_rng(0))
        with pytest.raises(nbcnn.layers.BackwardBeforeForwardError, match="forward"):
            layer.backward(np.zeros((1, 3, 3, layer.output_shape[2]), np.float32))


# --------------------------------------------------------------------------- random geometry (hypothesis)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(1, 2), H=st.integers(1, 9), W=st.integers(1, 9), C=st.integers(1, 19),
       f_h=st.integers(1, 4), f_w=st.integers(1, 4), s_h=st.integers(1, 3), s_w=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 4)] * 4), seed=st.integers(0, 2**16))
def test_random_geometry_on_cpu_matches_the_oracle(N, H, W, C, f_h, f_w, s_h, s_w, pads, seed):
    """The cpu backend (its fast kernels, whose per-tap column ranges are the fiddly part) on
    random sizes, strides and uneven paddings; windows larger than the padded input are refused."""
    rng = np.random.default_rng(seed)
    top, bottom, left, right = pads
    x, Wt, b = rng.standard_normal((N, H, W, C)), rng.standard_normal((f_h, f_w, C)), rng.standard_normal(C)
    pad = ((top, bottom), (left, right))
    with nbcnn.use_backend("cpu"):
        if f_h > H + top + bottom or f_w > W + left + right:
            with pytest.raises(ValueError, match="larger than the padded input"):
                nbcnn.depthwise_conv2d(x, Wt, b, (s_h, s_w), pad)
            return
        z = nbcnn.depthwise_conv2d(x, Wt, b, (s_h, s_w), pad)
        dz = rng.standard_normal(z.shape)
        grads = nbcnn.depthwise_conv2d_backward(dz, x, Wt, (s_h, s_w), pad)
    np.testing.assert_allclose(z, oracle_forward(x, Wt, b, (s_h, s_w), pads), rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, oracle_backward(dz, x, Wt, (s_h, s_w), pads)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
