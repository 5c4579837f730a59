"""ops.batch_norm / batch_norm_backward (training and frozen statistics) on every backend, against
a float64 numpy oracle written here and against finite differences."""

import numpy as np
import pytest

import nbcnn
import oracles
from conftest import is_slow
from nbcnn import ops
from nbcnn.kernels import batchnorm as kernels


def reference(x, gamma, beta, epsilon, mean=None, variance=None):
    """The textbook formulas in float64: (y, x_hat, inv_std)."""
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    if mean is None:
        mean, variance = x.mean(axis=axes), x.var(axis=axes)
    inv_std = 1 / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, x_hat, inv_std


def shapes(backend):
    # more rows than one block (ROWS_PER_BLOCK) and a last block that is not full, on the fast ones
    if is_slow(backend):
        return [(2, 3, 3, 4), (1, 1, 1, 3)]
    return [(2, 3, 3, 4), (3, 11, 13, 7), (5, 9, 9, 33), (1, 1, 1, 3)]


def inputs(rng, shape, dtype=np.float32):
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    gamma = rng.uniform(0.5, 2, shape[-1]).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    return x, gamma, beta


def test_batch_statistics_forward_matches_the_formulas(backend, rng):
    for shape in shapes(backend):
        x, gamma, beta = inputs(rng, shape)
        y, cache = ops.batch_norm(x, gamma, beta, epsilon=1e-3)
        y_ref, x_hat_ref, inv_std_ref = reference(x, gamma, beta, 1e-3)
        np.testing.assert_allclose(nbcnn.to_host(y), y_ref, atol=2e-5)
        np.testing.assert_allclose(nbcnn.to_host(cache.x_hat), x_hat_ref, atol=2e-5)
        np.testing.assert_allclose(cache.mean, x.astype(np.float64).mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cache.variance, x.astype(np.float64).var(axis=(0, 1, 2)), rtol=1e-5)
        assert cache.batch_statistics and y.dtype == np.float32


def test_frozen_statistics_forward(backend, rng):
    x, gamma, beta = inputs(rng, (2, 3, 3, 4))
    mean, variance = rng.standard_normal(4), rng.uniform(0.1, 4, 4)
    y, cache = ops.batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3)
    np.testing.assert_allclose(nbcnn.to_host(y), reference(x, gamma, beta, 1e-3, mean, variance)[0], atol=2e-5)
    assert not cache.batch_statistics


@pytest.mark.parametrize("frozen", [False, True])
def test_backward_matches_finite_differences(backend, rng, frozen):
    shape = (2, 2, 3, 3) if is_slow(backend) else (3, 5, 4, 6)
    x, gamma, beta = inputs(rng, shape, np.float64)
    probe = rng.standard_normal(shape)
    stats = (rng.standard_normal(shape[-1]), rng.uniform(0.5, 2, shape[-1])) if frozen else (None, None)

    def loss(x_=x, gamma_=gamma, beta_=beta):
        return float(np.sum(probe * nbcnn.to_host(ops.batch_norm(x_, gamma_, beta_, *stats, epsilon=1e-3)[0])))

    _, cache = ops.batch_norm(x, gamma, beta, *stats, epsilon=1e-3)
    dx, dgamma, dbeta = ops.batch_norm_backward(probe, cache, gamma)
    only = oracles.sample_indices(x.size, 10) if is_slow(backend) else None
    oracles.assert_grad_close(nbcnn.to_host(dx), lambda v: loss(x_=v), x, only, 1e-5, 1e-8, "dx")
    oracles.assert_grad_close(dgamma, lambda v: loss(gamma_=v), gamma, None, 1e-5, 1e-8, "dgamma")
    oracles.assert_grad_close(dbeta, lambda v: loss(beta_=v), beta, None, 1e-5, 1e-8, "dbeta")


def test_backward_float32_matches_float64_formulas(backend, rng):
    shape = (2, 3, 3, 4) if is_slow(backend) else (4, 17, 9, 12)
    x, gamma, beta = inputs(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    _, cache = ops.batch_norm(x, gamma, beta, epsilon=1e-3)
    dx, dgamma, dbeta = ops.batch_norm_backward(dy, cache, gamma)
    _, x_hat, inv_std = reference(x, gamma, beta, 1e-3)
    d = dy.astype(np.float64)
    M = x.size // shape[-1]
    sum_dy, sum_dy_x_hat = d.sum(axis=(0, 1, 2)), (d * x_hat).sum(axis=(0, 1, 2))
    dx_ref = gamma * inv_std * (d - sum_dy / M - x_hat * sum_dy_x_hat / M)
    np.testing.assert_allclose(nbcnn.to_host(dx), dx_ref, atol=2e-5)
    np.testing.assert_allclose(dgamma, sum_dy_x_hat, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dbeta, sum_dy, rtol=1e-4, atol=1e-3)


def test_the_sums_do_not_depend_on_the_thread_count(rng):
    import numba

    x, gamma, beta = inputs(rng, (4, 40, 40, 8))
    with nbcnn.use_backend("cpu"):
        first = ops.batch_norm(x, gamma, beta)[1]
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            second = ops.batch_norm(x, gamma, beta)[1]
        finally:
            numba.set_num_threads(threads)
    assert np.array_equal(first.mean, second.mean) and np.array_equal(first.variance, second.variance)
    assert kernels.ROWS_PER_BLOCK < 4 * 40 * 40


@pytest.mark.parametrize("M, C, dtype", [(1, 1, np.float32), (127, 3, np.float32), (128, 16, np.float32),
                                           (1000, 33, np.float32), (4000, 64, np.float32), (300, 7, np.float64)])
def test_fast_block_sums_are_the_readable_bits(rng, M, C, dtype):
    """The cpu block sums (``fast/batchnorm.py``: rows outside, channels inside) add each cell's
    rows in the readable kernels' order: the same bits, inf and NaN included; and near a float64
    numpy sum of each block."""
    from nbcnn.kernels.fast import batchnorm as fast

    x = (rng.standard_normal((M, C)) * 3 + 2).astype(dtype)
    dy = rng.standard_normal((M, C)).astype(dtype)
    if M > 2 and C > 2:
        x[1, 2], dy[2, 1] = np.inf, np.nan
    mean = rng.standard_normal(C).astype(dtype)
    B = -(-M // kernels.ROWS_PER_BLOCK)
    for readable, restructured, args, shape in (
            (kernels.CHANNEL_SUMS, fast.channel_block_sums, (x,), (B, C)),
            (kernels.CHANNEL_CENTRED_SQUARES, fast.channel_block_centred_squares, (x, mean), (B, C)),
            (kernels.GRADIENT_SUMS, fast.channel_block_gradient_sums, (dy, x), (B, 2, C))):
        want, got = np.full(shape, -1, dtype), np.full(shape, -1, dtype)
        readable.naive_cpu(*args, want)
        restructured(*args, got)
        np.testing.assert_array_equal(got, want)
        assert readable.fast_cpu is restructured
    # against float64 numpy, finite cells only
    blocks = [slice(b * kernels.ROWS_PER_BLOCK, (b + 1) * kernels.ROWS_PER_BLOCK) for b in range(B)]
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    oracle = np.stack([(dy64[s] * x64[s]).sum(axis=0) for s in blocks])
    got = np.empty((B, 2, C), dtype)
    fast.channel_block_gradient_sums(dy, x, got)
    finite = np.isfinite(oracle)
    np.testing.assert_allclose(got[:, 1][finite], oracle[finite], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(fast_sums(fast, x), np.stack([x64[s].sum(axis=0) for s in blocks]), rtol=1e-4, atol=1e-2)


def fast_sums(fast, x):
    out = np.empty((-(-x.shape[0] // kernels.ROWS_PER_BLOCK), x.shape[1]), x.dtype)
    fast.channel_block_sums(x, out)
    return out


@pytest.mark.parametrize("bad, message", [
    (dict(gamma=np.ones(3)), "gamma has shape"),
    (dict(beta=np.ones((4, 1))), "beta must have 1 dimensions"),
    (dict(mean=np.zeros(4)), "give both mean and variance"),
    (dict(mean=np.zeros(4), variance=-np.ones(4)), "variance must not be negative"),
    (dict(mean=np.zeros(4), variance=np.full(4, np.nan)), "variance must be finite"),
    (dict(epsilon=0.0), "epsilon must be a finite number > 0"),
    (dict(x=np.ones((2, 2), np.int64)), "x has dtype int64"),
])
def test_bad_input_is_refused(rng, bad, message):
    args = dict(x=np.ones((2, 3, 3, 4), np.float32), gamma=np.ones(4), beta=np.zeros(4))
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=message):
        ops.batch_norm(**args)


def test_backward_refuses_a_dy_of_another_shape(rng):
    x, gamma, beta = inputs(rng, (2, 3, 3, 4))
    _, cache = ops.batch_norm(x, gamma, beta)
    with pytest.raises(ValueError, match="dy has shape"):
        ops.batch_norm_backward(np.ones((2, 3, 4, 4), np.float32), cache, gamma)
