"""Convolution forward and backward on every backend, against float64 numpy oracles and
finite differences. Reads like the lecture: first the 6x6 edge example, then the rest."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
import oracles
from conftest import ALL_BACKENDS, is_slow


def tf_same_pads(size, f, stride):
    """Keras 'same': output ceil(size / stride), the odd extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + f - size, 0)
    return total // 2, total - total // 2


def test_vertical_edge_example_from_the_lecture(backend):
    # a 6x6 image, bright (10) on the left half and dark (0) on the right
    image = np.zeros((1, 6, 6, 1), np.float32)
    image[0, :, :3, 0] = 10
    vertical = np.array([[1, 0, -1]] * 3, np.float32).reshape(3, 3, 1, 1)
    z = nbcnn.conv2d(image, vertical, np.zeros(1, np.float32))
    # gives a 4x4 whose middle columns light up at the edge
    expected = np.array([[0, 30, 30, 0]] * 4, np.float32)
    np.testing.assert_array_equal(z[0, :, :, 0], expected)


def test_horizontal_edge_example(backend):
    image = np.zeros((1, 6, 6, 1), np.float32)
    image[0, :3, :, 0] = 10
    horizontal = np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], np.float32).reshape(3, 3, 1, 1)
    z = nbcnn.conv2d(image, horizontal, [0.0])
    np.testing.assert_array_equal(z[0, :, :, 0], np.array([[0] * 4, [30] * 4, [30] * 4, [0] * 4]))


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), ((1, 2), (2, 0)), (3, "same"), (1, "valid"), (2, ((0, 2), (1, 0)))])
def test_forward_matches_numpy_oracle(backend, rng, stride, pad):
    N, H, W, C, K, f = (2, 7, 6, 3, 4, 3) if is_slow(backend) else (3, 11, 9, 5, 7, 3)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    Wt = rng.standard_normal((f, f, C, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    pads = resolve(pad, (H, W), (f, f), stride)
    z = nbcnn.conv2d(x, Wt, b, stride=stride, pad=pad)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, oracles.conv_forward(x, Wt, b, pair(stride), pads), rtol=1e-5, atol=1e-4)


def test_float64_is_kept_and_exact(backend, rng):
    x = rng.standard_normal((2, 6, 5, 3))
    Wt = rng.standard_normal((3, 2, 3, 4))
    b = rng.standard_normal(4)
    z = nbcnn.conv2d(x, Wt, b, stride=(2, 1), pad=(1, 2))
    assert z.dtype == np.float64
    np.testing.assert_allclose(z, oracles.conv_forward(x, Wt, b, (2, 1), (1, 1, 2, 2)), rtol=1e-12, atol=1e-12)


def test_mixed_dtypes_promote_to_float64(backend, rng):
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    z = nbcnn.conv2d(x, rng.standard_normal((3, 3, 2, 1)), np.zeros(1))
    assert z.dtype == np.float64


def test_backward_matches_scatter_oracle(backend, rng):
    N, H, W, C, K = (1, 6, 5, 2, 3) if is_slow(backend) else (2, 9, 8, 4, 5)
    x = rng.standard_normal((N, H, W, C))
    Wt = rng.standard_normal((3, 4, C, K))
    stride, pads = (2, 1), (1, 1, 2, 2)
    dz = rng.standard_normal(oracles.conv_forward(x, Wt, np.zeros(K), stride, pads).shape)
    dx, dW, db = nbcnn.conv2d_backward(dz, x, Wt, stride=stride, pad=(1, 2))
    ex, eW, eb = oracles.conv_backward(dz, x, Wt, stride, pads)
    for got, want in ((dx, ex), (dW, eW), (db, eb)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0), (3, "same")])
def test_backward_matches_finite_differences(backend, rng, stride, pad):
    x = rng.standard_normal((1, 5, 4, 2))
    Wt = rng.standard_normal((3, 2, 2, 2))
    b = rng.standard_normal(2)
    probe = rng.standard_normal(nbcnn.conv2d(x, Wt, b, stride, pad).shape)  # loss = sum(probe * z)

    def loss(x_, W_, b_):
        return float(np.sum(probe * nbcnn.conv2d(x_, W_, b_, stride, pad)))

    dx, dW, db = nbcnn.conv2d_backward(probe, x, Wt, stride, pad)
    np.testing.assert_allclose(dx, oracles.numeric_grad(lambda v: loss(v, Wt, b), x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dW, oracles.numeric_grad(lambda v: loss(x, v, b), Wt), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, oracles.numeric_grad(lambda v: loss(x, Wt, v), b), rtol=1e-6, atol=1e-7)


def test_cpu_results_are_bit_identical_run_to_run(rng):
    x = rng.standard_normal((4, 16, 16, 8)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    dz = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        first = [nbcnn.conv2d(x, Wt, np.zeros(16, np.float32), pad=1), *nbcnn.conv2d_backward(dz, x, Wt, pad=1)]
        again = [nbcnn.conv2d(x, Wt, np.zeros(16, np.float32), pad=1), *nbcnn.conv2d_backward(dz, x, Wt, pad=1)]
    for a, b in zip(first, again):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------- properties


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def resolve(pad, size_hw, f_hw, stride):
    """(top, bottom, left, right), computed here independently of nbcnn.checks."""
    sh, sw = pair(stride)
    if pad == "valid":
        return (0, 0, 0, 0)
    if pad == "same":
        return (*tf_same_pads(size_hw[0], f_hw[0], sh), *tf_same_pads(size_hw[1], f_hw[1], sw))
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if isinstance(pad[0], (tuple, list)):
        return (*pad[0], *pad[1])
    return (pad[0], pad[0], pad[1], pad[1])


@st.composite
def conv_cases(draw, tiny):
    big = 3 if tiny else 9
    N = draw(st.integers(1, 1 if tiny else 3))
    H, W = draw(st.integers(1, big + 1)), draw(st.integers(1, big + 1))
    C, K = draw(st.integers(1, 2 if tiny else 5)), draw(st.integers(1, 2 if tiny else 6))
    f_h, f_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    pad = draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"]),
                         st.tuples(st.integers(0, 2), st.integers(0, 2))))
    top, bottom, left, right = resolve(pad, (H, W), (f_h, f_w), stride)
    if f_h > H + top + bottom or f_w > W + left + right:
        pad = (f_h, f_w)  # enough padding that the window always fits
    seed = draw(st.integers(0, 2**31 - 1))
    return N, H, W, C, K, f_h, f_w, stride, pad, seed


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_conv_forward_and_backward_over_random_shapes(backend_name):
    tiny = is_slow(backend_name)

    @settings(max_examples=25 if tiny else 300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(conv_cases(tiny))
    def check(case):
        N, H, W, C, K, f_h, f_w, stride, pad, seed = case
        r = np.random.default_rng(seed)
        x, Wt, b = r.standard_normal((N, H, W, C)), r.standard_normal((f_h, f_w, C, K)), r.standard_normal(K)
        pads = resolve(pad, (H, W), (f_h, f_w), stride)
        want = oracles.conv_forward(x, Wt, b, pair(stride), pads)
        z = nbcnn.conv2d(x, Wt, b, stride=stride, pad=pad)
        np.testing.assert_allclose(z, want, rtol=1e-10, atol=1e-10)
        dz = r.standard_normal(want.shape)
        for got, expected in zip(nbcnn.conv2d_backward(dz, x, Wt, stride=stride, pad=pad),
                                 oracles.conv_backward(dz, x, Wt, pair(stride), pads)):
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)

    with nbcnn.use_backend(backend_name):
        check()


def test_backward_can_skip_the_input_gradient(backend, rng):
    x, Wt = rng.standard_normal((1, 5, 5, 2)), rng.standard_normal((3, 3, 2, 2))
    dz = rng.standard_normal((1, 3, 3, 2))
    dx, dW, db = nbcnn.conv2d_backward(dz, x, Wt, need_dx=False)
    assert dx is None
    _, eW, eb = oracles.conv_backward(dz, x, Wt, (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(dW, eW, rtol=1e-10)
    np.testing.assert_allclose(db, eb, rtol=1e-10)
