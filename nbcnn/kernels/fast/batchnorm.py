"""Fast cpu batch norm sums: the readable block sums (``kernels/batchnorm.py``) with their loops
turned around.

The readable kernels sum each (block, channel) cell on its own::

    for b in range(B):                      # in parallel
        for k in range(C):
            for r in block b's rows:        # x[r, k]: C numbers apart, one serial sum
                partial[b, k] += x[r, k]

so the innermost loop strides through memory and every add waits for the previous one (a
float sum is not reordered without permission). Here the rows run outside and the channels
inside::

    for b in range(B):                      # in parallel
        for r in block b's rows:            # x[r, :]: one contiguous row
            for k in range(C):              # C independent sums: one vector add per 8-16 channels
                partial[b, k] += x[r, k]

Each cell still adds its rows in the same order, starting from the same zero, with a plain
multiply then add (no fused multiply-add: these are compiled without fastmath), so the sums
are the readable kernel's bits, not just close to them (``tests/test_batchnorm.py``); what
changes is that the channel loop runs in vectors over contiguous memory. The triplet
encoder's training step (96 x 20 x 20 x 32 and smaller maps): the three sums 7.4 -> 2.5 ms
of its 43 (2 threads, Sapphire Rapids).
"""

import numpy as np
from numba import njit, prange

from ..batchnorm import ROWS_PER_BLOCK


@njit(parallel=True, cache=True)
def channel_block_sums(x, partial):
    """``kernels.batchnorm.channel_block_sums``: x (M, C) -> partial (B, C), each block's rows
    summed per channel, rows outside, channels inside."""
    M, C = x.shape
    for b in prange(partial.shape[0]):
        total = np.zeros(C, x.dtype)
        for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, M)):
            row = x[r]
            for k in range(C):
                total[k] += row[k]
        partial[b] = total


@njit(parallel=True, cache=True)
def channel_block_centred_squares(x, mean, partial):
    """``kernels.batchnorm.channel_block_centred_squares``: per block, ``sum of (x[r, k] -
    mean[k]) ** 2``, rows outside, channels inside."""
    M, C = x.shape
    for b in prange(partial.shape[0]):
        total = np.zeros(C, x.dtype)
        for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, M)):
            row = x[r]
            for k in range(C):
                d = row[k] - mean[k]
                total[k] += d * d
        partial[b] = total


@njit(parallel=True, cache=True)
def channel_block_gradient_sums(dy, x_hat, partial):
    """``kernels.batchnorm.channel_block_gradient_sums``: per block, ``sum dy`` and ``sum dy *
    x_hat`` (partial (B, 2, C)), rows outside, channels inside."""
    M, C = dy.shape
    for b in prange(partial.shape[0]):
        sums = np.zeros(C, dy.dtype)
        products = np.zeros(C, dy.dtype)
        for r in range(b * ROWS_PER_BLOCK, min((b + 1) * ROWS_PER_BLOCK, M)):
            g, h = dy[r], x_hat[r]
            for k in range(C):
                sums[k] += g[k]
                products[k] += g[k] * h[k]
        partial[b, 0] = sums
        partial[b, 1] = products
