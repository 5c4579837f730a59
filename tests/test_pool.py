"""Max and average pooling, forward and backward, on every backend."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
import oracles
from conftest import ALL_BACKENDS, is_slow
from test_conv import pair, resolve

POOLS = {
    "max": (nbcnn.max_pool2d, nbcnn.max_pool2d_backward),
    "avg": (nbcnn.avg_pool2d, nbcnn.avg_pool2d_backward),
}


def test_max_pool_of_a_4x4_picks_each_quadrant_max(backend):
    x = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(nbcnn.max_pool2d(x, f=2, stride=2)[0, :, :, 0], [[9, 2], [6, 3]])
    np.testing.assert_array_equal(nbcnn.avg_pool2d(x, f=2, stride=2)[0, :, :, 0], [[3.75, 1.25], [3.75, 2.0]])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("f,stride,pad", [(2, 2, 0), (3, 2, 0), (3, 1, "same"), ((2, 3), (1, 2), 1), (3, 3, "valid")])
def test_forward_and_backward_match_oracle(backend, rng, mode, f, stride, pad):
    N, H, W, C = (1, 5, 7, 2) if is_slow(backend) else (3, 9, 10, 4)
    forward, backward = POOLS[mode]
    x = rng.standard_normal((N, H, W, C))
    pads = resolve(pad, (H, W), pair(f), stride)
    want = oracles.pool_forward(x, pair(f), pair(stride), pads, mode)
    p = forward(x, f, stride, pad)
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=1e-12)
    dp = rng.standard_normal(p.shape)
    np.testing.assert_allclose(backward(dp, x, f, stride, pad),
                               oracles.pool_backward(dp, x, pair(f), pair(stride), pads, mode), rtol=1e-12, atol=1e-12)


def test_float32_in_float32_out(backend, rng):
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    for forward, backward in POOLS.values():
        p = forward(x, 2)
        assert p.dtype == np.float32
        assert backward(np.ones_like(p), x, 2).dtype == np.float32


def test_max_ties_route_the_gradient_to_the_first_maximum_only(backend):
    # every cell of the 2x2 window is 7: the gradient goes to the top-left one, once
    x = np.full((1, 2, 2, 1), 7.0)
    dx = nbcnn.max_pool2d_backward(np.array([[[[5.0]]]]), x, f=2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[5.0, 0.0], [0.0, 0.0]])
    # a tie on the second row: the earlier column wins
    x = np.array([[1.0, 0.0], [4.0, 4.0]]).reshape(1, 2, 2, 1)
    dx = nbcnn.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, f=2)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 0.0], [1.0, 0.0]])


def test_max_ties_everywhere_match_the_argmax_oracle(backend, rng):
    x = rng.integers(0, 3, size=(1, 6, 5, 2)).astype(np.float64)  # small integers: many ties
    dp = rng.standard_normal(nbcnn.max_pool2d(x, 3, 1).shape)
    np.testing.assert_array_equal(nbcnn.max_pool2d_backward(dp, x, 3, 1),
                                  oracles.pool_backward(dp, x, (3, 3), (1, 1), (0, 0, 0, 0), "max"))


def test_overlapping_windows_add_their_gradients(backend):
    # one big value shared by every 2x2 window of a 3x3 input, stride 1: it gets all four gradients
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 1.0
    dx = nbcnn.max_pool2d_backward(np.ones((1, 2, 2, 1)), x, f=2, stride=1)
    assert dx[0, 1, 1, 0] == 4.0 and dx.sum() == 4.0


def test_nan_propagates_through_max_pool(backend):
    x = np.array([[1.0, np.nan], [3.0, 2.0]]).reshape(1, 2, 2, 1)
    assert np.isnan(nbcnn.max_pool2d(x, 2)[0, 0, 0, 0])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_backward_matches_finite_differences(backend, rng, mode):
    forward, backward = POOLS[mode]
    # distinct, well separated values so a small nudge never changes which cell is the max
    x = rng.permutation(30).astype(np.float64).reshape(1, 5, 3, 2) + rng.uniform(-0.1, 0.1, (1, 5, 3, 2))
    probe = rng.standard_normal(forward(x, (3, 2), (2, 1), 1).shape)
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * forward(v, (3, 2), (2, 1), 1))), x)
    np.testing.assert_allclose(backward(probe, x, (3, 2), (2, 1), 1), numeric, rtol=1e-6, atol=1e-7)


@st.composite
def pool_cases(draw, tiny):
    big = 4 if tiny else 10
    N, C = draw(st.integers(1, 1 if tiny else 3)), draw(st.integers(1, 2 if tiny else 4))
    H, W = draw(st.integers(1, big)), draw(st.integers(1, big))
    f = (draw(st.integers(1, min(H, 4))), draw(st.integers(1, min(W, 4))))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = draw(st.sampled_from(["valid", "same", 0, 1]))
    top, bottom, left, right = resolve(pad, (H, W), f, stride)
    if max(top, bottom) >= f[0] or max(left, right) >= f[1]:
        pad = 0  # padding must stay smaller than the window
    mode = draw(st.sampled_from(["max", "avg"]))
    return N, H, W, C, f, stride, pad, mode, draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_pooling_over_random_shapes(backend_name):
    tiny = is_slow(backend_name)

    @settings(max_examples=25 if tiny else 300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pool_cases(tiny))
    def check(case):
        N, H, W, C, f, stride, pad, mode, seed = case
        r = np.random.default_rng(seed)
        x = r.standard_normal((N, H, W, C))
        forward, backward = POOLS[mode]
        pads = resolve(pad, (H, W), f, stride)
        want = oracles.pool_forward(x, f, stride, pads, mode)
        np.testing.assert_allclose(forward(x, f, stride, pad), want, rtol=1e-12, atol=1e-12)
        dp = r.standard_normal(want.shape)
        np.testing.assert_allclose(backward(dp, x, f, stride, pad),
                                   oracles.pool_backward(dp, x, f, stride, pads, mode), rtol=1e-12, atol=1e-12)

    with nbcnn.use_backend(backend_name):
        check()
