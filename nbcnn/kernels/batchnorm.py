"""Batch norm's kernels: training (batch statistics) and darknet's inference form (one source,
three backends each).

The op layer hands every kernel here ``x`` as rows of C channels, ``(M, C)`` with
``M = N * H * W`` (channels-last: a reshape, no copy).

**Training (Keras' form, ``ops.batch_norm`` and ``ops.batch_norm_backward``)**::

    mean[k]     = (1 / M) * sum over r of x[r, k]
    var[k]      = (1 / M) * sum over r of (x[r, k] - mean[k]) ** 2       (two passes: stable)
    x_hat[r, k] = (x[r, k] - mean[k]) * inv_std[k]      inv_std = 1 / sqrt(var + epsilon)
    y[r, k]     = gamma[k] * x_hat[r, k] + beta[k]

backward, given ``dy`` (with ``m = M``; every x moves the mean and the variance)::

    dbeta[k]  = sum over r of dy[r, k]
    dgamma[k] = sum over r of dy[r, k] * x_hat[r, k]
    dx[r, k]  = gamma[k] * inv_std[k] * (dy[r, k] - dbeta[k] / M - x_hat[r, k] * dgamma[k] / M)

(with frozen statistics, ``training=False``, the mean and variance are constants and
``dx = gamma * inv_std * dy``: the same kernel with both sums passed as 0).

A sum over all M rows would be one long serial loop per channel, so the sums are taken in
blocks: ``partial[b, k]`` sums the rows ``b * R ... (b + 1) * R - 1`` (``R = ROWS_PER_BLOCK``),
one block and channel per iteration (one GPU thread), and the op adds the few partial rows
on the host in float64. The same blocks on every backend and thread count: the sums do not
depend on how many threads ran them.

**Darknet's inference form** (``ops.darknet_batch_norm``), with the frozen per-channel
statistics and parameters::

    x_hat[r, k] = (x[r, k] - mean[k]) / denominator[k]      denominator = sqrt(var) + epsilon
    v           = x_hat[r, k] * gamma[k] + beta[k]
    y[r, k]     = v if v > 0 else slope * v                  (slope 1: y = v, batch norm alone)

in darknet's arithmetic: ``x - mean`` in x's dtype, the division in float64 (``denominator``
is float64: C's ``sqrt`` returns a double), rounded back to x's dtype, then the scale and
shift in x's dtype. ``x_hat`` is kept for the backward (``dgamma = sum(dy * x_hat)``). The
``slope`` applies the leaky ReLU that follows batch norm in darknet's layers in the same pass
(``ops.darknet_batch_norm(..., leaky_slope=)``: YOLOv3-tiny's activations are not written and
read again); with slope 1 the last line is ``y = v`` to the bit (``1 * v`` is v, NaN and -0
included), the batch norm alone.

What runs here: these loops on every backend, except the three block sums on cpu, which run
as ``fast/batchnorm.py`` (the same sums with the rows outside and the channels inside, so the
channel loop runs in vectors: the same bits, 4-6x faster); the other kernels are one pass
over memory each, no fast variant.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels
from .activations import leaky_of
from .indexing import unravel_2d

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


ROWS_PER_BLOCK = 128  # rows summed by one iteration: enough to amortise the loop, few partial rows


# --------------------------------------------------------------------------- training: cells


@register_jitable
def block_sum_cell(x, b, k):
    """``sum of x[r, k]`` over the rows of block b."""
    total = x.dtype.type(0)
    for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, x.shape[0])):
        total += x[r, k]
    return total


@register_jitable
def block_centred_square_cell(x, mean, b, k):
    """``sum of (x[r, k] - mean[k]) ** 2`` over the rows of block b."""
    total = x.dtype.type(0)
    for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, x.shape[0])):
        d = x[r, k] - mean[k]
        total += d * d
    return total


@register_jitable
def block_gradient_sum_cell(dy, x_hat, b, j, k):
    """j = 0: ``sum of dy[r, k]``; j = 1: ``sum of dy[r, k] * x_hat[r, k]``, over block b's rows."""
    total = dy.dtype.type(0)
    for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, dy.shape[0])):
        total += dy[r, k] if j == 0 else dy[r, k] * x_hat[r, k]
    return total


@register_jitable
def batch_norm_cell(x, mean, inv_std, gamma, beta, r, k, x_hat, y):
    """``x_hat[r, k]`` and ``y[r, k]`` for one number."""
    h = (x[r, k] - mean[k]) * inv_std[k]
    x_hat[r, k] = h
    y[r, k] = gamma[k] * h + beta[k]


@register_jitable
def batch_norm_backward_cell(dy, x_hat, scale, mean_dy, mean_dy_x_hat, r, k):
    """``dx[r, k] = scale[k] * (dy - mean(dy) - x_hat * mean(dy * x_hat))`` (scale = gamma * inv_std)."""
    return scale[k] * (dy[r, k] - mean_dy[k] - x_hat[r, k] * mean_dy_x_hat[k])


# --------------------------------------------------------------------------- training: loop nests


def channel_block_sums(x, partial):
    """x (M, C) -> partial (B, C), B = ceil(M / ROWS_PER_BLOCK)::

        for b in range(B):                    # in parallel on cpu
            for k in range(C):
                partial[b, k] = sum of x[r, k] over block b's rows
    """
    for b in prange(partial.shape[0]):
        for k in range(partial.shape[1]):
            partial[b, k] = block_sum_cell(x, b, k)


def channel_block_centred_squares(x, mean, partial):
    """x (M, C), mean (C,) -> partial (B, C): ``sum of (x[r, k] - mean[k]) ** 2`` per block."""
    for b in prange(partial.shape[0]):
        for k in range(partial.shape[1]):
            partial[b, k] = block_centred_square_cell(x, mean, b, k)


def channel_block_gradient_sums(dy, x_hat, partial):
    """dy, x_hat (M, C) -> partial (B, 2, C): per block, ``sum dy`` and ``sum dy * x_hat``."""
    for b in prange(partial.shape[0]):
        for j in range(2):
            for k in range(partial.shape[2]):
                partial[b, j, k] = block_gradient_sum_cell(dy, x_hat, b, j, k)


def batch_norm(x, mean, inv_std, gamma, beta, x_hat, y):
    """``for r, k: batch_norm_cell(...)`` (prange over rows): x_hat and y (M, C)."""
    for r in prange(y.shape[0]):
        for k in range(y.shape[1]):
            batch_norm_cell(x, mean, inv_std, gamma, beta, r, k, x_hat, y)


def batch_norm_backward(dy, x_hat, scale, mean_dy, mean_dy_x_hat, dx):
    """``for r, k: dx[r, k] = batch_norm_backward_cell(...)`` (prange over rows)."""
    for r in prange(dx.shape[0]):
        for k in range(dx.shape[1]):
            dx[r, k] = batch_norm_backward_cell(dy, x_hat, scale, mean_dy, mean_dy_x_hat, r, k)


# --------------------------------------------------------------------------- darknet's inference form


@register_jitable
def darknet_batch_norm_cell(x, mean, denominator, gamma, beta, slope, r, k, x_hat, y):
    """``x_hat[r, k]`` and ``y[r, k]`` for one number (see the module docstring), the leaky
    ReLU by ``activations.leaky_of``."""
    h = x.dtype.type((x[r, k] - mean[k]) / denominator[k])
    x_hat[r, k] = h
    y[r, k] = leaky_of(h * gamma[k] + beta[k], slope)


def darknet_batch_norm(x, mean, denominator, gamma, beta, slope, x_hat, y):
    """``for r, k: darknet_batch_norm_cell(...)`` (prange over rows)."""
    for r in prange(y.shape[0]):
        for k in range(y.shape[1]):
            darknet_batch_norm_cell(x, mean, denominator, gamma, beta, slope, r, k, x_hat, y)


@cuda_kernels
def _cuda_training_kernels():
    """One GPU thread per (block, channel) for the sums, per number for the rest, calling the cells."""
    @cuda.jit
    def sums(x, partial):
        t = cuda.grid(1)
        if t < partial.size:
            b, k = unravel_2d(t, partial.shape)
            partial[b, k] = block_sum_cell(x, b, k)

    @cuda.jit
    def centred_squares(x, mean, partial):
        t = cuda.grid(1)
        if t < partial.size:
            b, k = unravel_2d(t, partial.shape)
            partial[b, k] = block_centred_square_cell(x, mean, b, k)

    @cuda.jit
    def gradient_sums(dy, x_hat, partial):
        t = cuda.grid(1)
        if t < partial.size:
            C = partial.shape[2]
            b, j, k = t // (2 * C), (t // C) % 2, t % C
            partial[b, j, k] = block_gradient_sum_cell(dy, x_hat, b, j, k)

    @cuda.jit
    def forward(x, mean, inv_std, gamma, beta, x_hat, y):
        t = cuda.grid(1)
        if t < y.size:
            r, k = unravel_2d(t, y.shape)
            batch_norm_cell(x, mean, inv_std, gamma, beta, r, k, x_hat, y)

    @cuda.jit
    def backward(dy, x_hat, scale, mean_dy, mean_dy_x_hat, dx):
        t = cuda.grid(1)
        if t < dx.size:
            r, k = unravel_2d(t, dx.shape)
            dx[r, k] = batch_norm_backward_cell(dy, x_hat, scale, mean_dy, mean_dy_x_hat, r, k)

    return sums, centred_squares, gradient_sums, forward, backward


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per number, calling the cell above."""
    @cuda.jit
    def forward(x, mean, denominator, gamma, beta, slope, x_hat, y):
        t = cuda.grid(1)
        if t < y.size:
            r, k = unravel_2d(t, y.shape)
            darknet_batch_norm_cell(x, mean, denominator, gamma, beta, slope, r, k, x_hat, y)

    return forward


CHANNEL_SUMS = Kernel("batch_norm_channel_sums", channel_block_sums, cuda=lambda: _cuda_training_kernels()[0])
CHANNEL_CENTRED_SQUARES = Kernel("batch_norm_centred_squares", channel_block_centred_squares,
                                 cuda=lambda: _cuda_training_kernels()[1])
GRADIENT_SUMS = Kernel("batch_norm_gradient_sums", channel_block_gradient_sums,
                       cuda=lambda: _cuda_training_kernels()[2])
FORWARD = Kernel("batch_norm", batch_norm, cuda=lambda: _cuda_training_kernels()[3])
BACKWARD = Kernel("batch_norm_backward", batch_norm_backward, cuda=lambda: _cuda_training_kernels()[4])
DARKNET_FORWARD = Kernel("darknet_batch_norm", darknet_batch_norm, cuda=_cuda_kernels)
