"""The BLAS dense kernels against the readable ones and a float64 oracle."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbcnn.kernels import dense


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 70), d=st.integers(1, 70), m=st.integers(1, 70), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_fast_dense_equals_readable_and_oracle(n, d, m, seed, dtype):
    r = np.random.default_rng(seed)
    x, W, b, dy = (r.standard_normal(s).astype(dtype) for s in ((n, d), (d, m), (m,), (n, m)))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for kernel, args, shape, want in (
        (dense.FORWARD, (x, W, b), (n, m), x.astype(np.float64) @ W + b),
        (dense.BACKWARD_INPUT, (dy, W), (n, d), dy.astype(np.float64) @ W.T),
        (dense.BACKWARD_WEIGHT, (x, dy), (d, m), x.astype(np.float64).T @ dy),
    ):
        fast, readable = np.empty(shape, dtype), np.empty(shape, dtype)
        kernel.fast_cpu(*args, fast)
        kernel.naive_cpu(*args, readable)
        np.testing.assert_allclose(fast, want, rtol=tol, atol=tol)
        np.testing.assert_allclose(fast, readable, rtol=tol, atol=tol)


def test_fast_dense_is_installed():
    assert dense.FORWARD.fast_cpu is not None and dense.BACKWARD_WEIGHT.fast_cpu is not None


@pytest.mark.parametrize("n, d, m", [(64, 400, 120), (64, 120, 84), (64, 84, 10), (5, 33, 7), (9, 17, 16), (3, 1, 1),
                                     (2, 700, 200)])
def test_dense_forward_on_the_conv_tile(n, d, m, rng):
    """Small float32 layers run on conv_direct's tile (M of 16 or not, 8 or fewer: the
    narrow tile); a W past DIRECT_MAX_W_BYTES (700 x 200) goes to BLAS. Both against float64."""
    from nbcnn.kernels.fast import dense as dense_fast

    x, W, b = (rng.standard_normal(s).astype(np.float32) for s in ((n, d), (d, m), (m,)))
    y = np.full((n, m), np.nan, np.float32)
    assert dense_fast._direct_ok(x, W, y) == (W.nbytes <= dense_fast.DIRECT_MAX_W_BYTES)
    dense_fast.forward(x, W, b, y)
    np.testing.assert_allclose(y, x.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n, d, m", [(1, 1203, 1500), (3, 700, 513), (8, 1027, 300), (1, 3, 50000), (2, 6, 30000)])
def test_few_rows_stream_w_once(n, d, m, rng):
    """A few rows under a W past DIRECT_MAX_W_BYTES (VGG's classifier on one image) take
    few_rows_forward: D not a multiple of its 4-row step, M not of its column block; against
    float64, and the same bits on 1 thread or 2."""
    import numba

    from nbcnn.kernels.fast import dense as dense_fast

    x, W, b = (rng.standard_normal(s).astype(np.float32) for s in ((n, d), (d, m), (m,)))
    y = np.full((n, m), np.nan, np.float32)
    assert dense_fast._few_rows_ok(x, W, y) and not dense_fast._direct_ok(x, W, y)
    dense_fast.forward(x, W, b, y)
    np.testing.assert_allclose(y, x.astype(np.float64) @ W + b, rtol=1e-4, atol=1e-3)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        again = np.full((n, m), np.nan, np.float32)
        dense_fast.forward(x, W, b, again)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(again, y)
