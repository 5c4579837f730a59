"""The fast CPU pooling kernels (nbcnn/kernels/fast/pool.py) give the readable kernels' results,
bit for bit: same ties (the first maximum in row-major order), same NaN rule, same sums."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
from nbcnn import checks
from nbcnn.kernels import pool
from nbcnn.kernels.fast import avg_pool, max_pool

MANY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outputs(x, f, stride, pad):
    win, (H_out, W_out) = checks.pool_window(x.shape, f, stride, pad, "test")
    return win, (x.shape[0], H_out, W_out, x.shape[3])


def _both(kernel, fast, args, out_shape, dtype):
    """Run the readable compiled loop nest and the fast kernel; return both outputs."""
    want = np.full(out_shape, np.nan, dtype)  # garbage the kernels must overwrite
    got = np.full(out_shape, -7.0, dtype)
    kernel.naive_cpu(*args, want)
    fast(*args, got)
    return want, got


def _check_all_four(x, f, stride, pad, dp):
    win, p_shape = _outputs(x, f, stride, pad)
    dt = x.dtype
    for kernel, fast in [(pool.MAX_FORWARD, max_pool.max_pool2d_forward),
                         (pool.AVG_FORWARD, avg_pool.avg_pool2d_forward)]:
        want, got = _both(kernel, fast, (x, win), p_shape, dt)
        np.testing.assert_array_equal(got, want, err_msg=kernel.name)
    dp = dp(p_shape)
    want, got = _both(pool.MAX_BACKWARD, max_pool.max_pool2d_backward, (dp, x, win), x.shape, dt)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg="max backward bits")
    want, got = _both(pool.AVG_BACKWARD, avg_pool.avg_pool2d_backward, (dp, win), x.shape, dt)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg="avg backward bits")


@st.composite
def pool_cases(draw):
    """A small NHWC input, window, stride and padding; small-integer data (many ties) half the time."""
    N = draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    C = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 17, 33, 64]))
    fh = draw(st.integers(1, min(H, 4)))
    fw = draw(st.integers(1, min(W, 4)))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))  # stride < f: overlapping windows
    pad = draw(st.sampled_from(["valid", "same", 0, 1, (1, 0), ((0, 1), (1, 0))]))
    try:
        checks.pool_window((N, H, W, C), (fh, fw), (sh, sw), pad, "test")
    except ValueError:
        pad = "valid"  # padding as large as the window: the op rejects it
    seed = draw(st.integers(0, 2**32 - 1))
    ties = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (N, H, W, C), (fh, fw), (sh, sw), pad, seed, ties, dtype


@MANY
@given(pool_cases())
def test_fast_pooling_equals_the_readable_kernels(case):
    shape, f, stride, pad, seed, ties, dtype = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    # integer gradients too when ties: sums then hit exact values, and -0.0 shows up
    dp = (lambda s: rng.integers(-3, 4, s).astype(dtype)) if ties else (lambda s: rng.standard_normal(s).astype(dtype))
    _check_all_four(x, f, stride, pad, dp)


@MANY
@given(st.integers(0, 2**32 - 1), st.sampled_from([(2, 2), (3, 2), (3, 1), (2, 1)]), st.sampled_from([9, 16, 32]))
def test_nan_and_signed_zero_follow_the_readable_rule(seed, f_stride, C):
    """A NaN wins its window and stays; -0.0 and +0.0 tie, the first one wins. C = 16, 32:
    whole vectors of 8 and 16 lanes (the explicit-vector route, simd.take_max)."""
    f, stride = f_stride
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([np.nan, -0.0, 0.0, 1.0, -np.inf, np.inf], np.float32), size=(2, 6, 7, C))
    win, p_shape = _outputs(x, f, stride, 0)
    for kernel, fast in [(pool.MAX_FORWARD, max_pool.max_pool2d_forward)]:
        want, got = _both(kernel, fast, (x, win), p_shape, x.dtype)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    dp = rng.standard_normal(p_shape).astype(np.float32)
    want, got = _both(pool.MAX_BACKWARD, max_pool.max_pool2d_backward, (dp, x, win), x.shape, x.dtype)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_ties_send_the_gradient_to_the_first_maximum():
    # a 3x3 window of equal values with stride 1 on a 4x4 image: 4 windows, all tie everywhere;
    # each window's gradient goes to its own top-left cell
    x = np.full((1, 4, 4, 8), 5.0, np.float32)
    win, p_shape = _outputs(x, 3, 1, 0)
    dx = np.empty_like(x)
    max_pool.max_pool2d_backward(np.ones(p_shape, np.float32), x, win, dx)
    np.testing.assert_array_equal(dx[0, :, :, 3], [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("shape,f,stride", [((3, 32, 32, 16), 2, 2), ((2, 23, 21, 64), 3, 2)])
def test_bench_like_shapes_match(shape, f, stride):
    """Channel counts that fill whole vectors (16, 64), as the benchmark's pooling shapes."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    _check_all_four(x, f, stride, 0, lambda s: rng.standard_normal(s).astype(np.float32))


@pytest.mark.parametrize("C", [6, 16, 24, 64])
@pytest.mark.parametrize("f,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 0)])
def test_every_thread_chunk_matches(monkeypatch, C, f, stride, pad):
    """Calls this small run on one thread (config.POOL_SERIAL_BELOW_ELEMENTS); with the threshold
    at 0 they split into one chunk per thread, each with its own scratch rows and cached
    average shares, whose edges must give the same bits. C = 24: a whole and a half vector
    of 16 lanes (8 + 8 + 8 with 8), C = 6 the flat rows."""
    from nbcnn import config

    monkeypatch.setattr(config, "POOL_SERIAL_BELOW_ELEMENTS", 0)
    rng = np.random.default_rng(C * 10 + f)
    x = rng.standard_normal((3, 11, 9, C)).astype(np.float32)
    _check_all_four(x, f, stride, pad, lambda s: rng.standard_normal(s).astype(np.float32))


def test_runs_are_bit_identical():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (4, 30, 30, 16)).astype(np.float32)
    dp = rng.standard_normal((4, 28, 28, 16)).astype(np.float32)
    win, _ = _outputs(x, 3, 1, 0)
    outs = []
    for _ in range(3):
        dx = np.empty_like(x)
        max_pool.max_pool2d_backward(dp, x, win, dx)
        outs.append(dx.tobytes())
    assert outs[0] == outs[1] == outs[2]


def test_cpu_backend_runs_the_fast_kernels():
    assert pool.MAX_FORWARD.fast_cpu is max_pool.max_pool2d_forward
    assert pool.MAX_BACKWARD.fast_cpu is max_pool.max_pool2d_backward
    assert pool.AVG_FORWARD.fast_cpu is avg_pool.avg_pool2d_forward
    assert pool.AVG_BACKWARD.fast_cpu is avg_pool.avg_pool2d_backward
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    with nbcnn.use_backend("cpu"):
        np.testing.assert_array_equal(nbcnn.max_pool2d(x, 2), x.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)))


def _take_readable(best, arg, v, k):
    """The readable rule, one lane: keep (best, arg) if best is NaN or v <= best, else take (v, k)."""
    keep = (best != best) | (v <= best)
    return np.where(keep, best, v), np.where(keep, arg, k)


def test_take_max_is_the_readable_step_at_both_widths():
    """simd.take_max on 8 and on simd.LANES lanes: ties keep the first, a NaN already there
    stays, a new NaN wins, -0.0 and +0.0 tie; the cell numbers ride as float32 bits."""
    from numba import njit

    from nbcnn.kernels.fast import simd

    @njit
    def step8(best, arg, v, k, out_b, out_a):
        b, a = simd.take_max(simd.load8(best, 0), simd.load8(arg, 0), simd.load8(v, 0), simd.load8(k, 0))
        simd.store8(out_b, 0, b)
        simd.store8(out_a, 0, a)

    @njit
    def stepv(best, arg, v, k, out_b, out_a):
        b, a = simd.take_max(simd.loadv(best, 0), simd.loadv(arg, 0), simd.loadv(v, 0), simd.loadv(k, 0))
        simd.storev(out_b, 0, b)
        simd.storev(out_a, 0, a)

    rng = np.random.default_rng(5)
    values = np.array([np.nan, -0.0, 0.0, 1.0, -1.0, np.inf, -np.inf], np.float32)
    for step, lanes in ((step8, 8), (stepv, simd.LANES)):
        for _ in range(20):
            best, v = rng.choice(values, lanes), rng.choice(values, lanes)
            arg, k = rng.integers(0, 9, lanes).astype(np.int32), np.full(lanes, 7, np.int32)
            out_b, out_a = np.empty(lanes, np.float32), np.empty(lanes, np.int32)
            step(best, arg.view(np.float32), v, k.view(np.float32), out_b, out_a.view(np.float32))
            want_b, want_a = _take_readable(best, arg, v, k)
            np.testing.assert_array_equal(out_b.view(np.int32), want_b.view(np.int32))
            np.testing.assert_array_equal(out_a, want_a)
