"""Fast dense layer: the three products of ``kernels/dense.py``, on the conv tile or BLAS.

    forward   y  = x @ W + b
    backward  dx = dy @ W.T,   dW = x.T @ dy          (db: kernels/bias.py)

The readable kernels compute each output as a Python-style dot product (about 1 GFLOP/s
compiled). Here the forward of a small float32 layer (LeNet's) is a 1x1 convolution of
one-pixel images on the register tile of ``direct`` (``dense_forward``: both cores
through Numba's threads); everything else is a BLAS product, which
blocks for cache and registers (about 100 GFLOP/s here on fc4096). Same arguments and
outputs as the readable kernels, tested against them.
"""

import numpy as np
from numba import njit, prange

from ...backend import note_route
from . import blas, direct

DIRECT_MAX_W_BYTES = 512 << 10
"""Small float32 layers whose W fits in an L2 cache run on the direct conv tile
(``direct.dense_forward``): every tile of rows streams all of W, which must stay cached."""


def _direct_ok(x, W, y):
    return (x.dtype == W.dtype == y.dtype == np.float32 and W.nbytes <= DIRECT_MAX_W_BYTES
            and x.flags.c_contiguous and W.flags.c_contiguous and y.flags.c_contiguous
            and blas.is_small(x.shape[0], x.shape[1], W.shape[1]))


FEW_ROWS = 8
"""A float32 product of at most this many rows (VGG's classifier on one image) runs on
``few_rows_forward``: it is memory-bound on W (400 MB for VGG's first dense layer), which
BLAS streams no faster, and BLAS's threads keep spinning after it: the convolutions of the
next image then ran on one core (VGG-16 forward, 2 threads: 0.21 -> 0.13 s with both fixed,
this and the Winograd filter transform)."""
COLUMN_BLOCK = 512
"""Columns of W per task of ``few_rows_forward`` (the sums of ``FEW_ROWS`` rows: 16 KB)."""


def _few_rows_ok(x, W, y):
    return (x.dtype == W.dtype == y.dtype == np.float32 and x.shape[0] <= FEW_ROWS
            and x.flags.c_contiguous and W.flags.c_contiguous and y.flags.c_contiguous)


@njit(parallel=True, cache=True, fastmath={"contract"})
def few_rows_forward(x, W, b, y):
    """``y = x @ W + b`` for a few rows of x: each task owns ``COLUMN_BLOCK`` columns and walks
    down W four rows (d) at a time, adding ``x[n, d] * W[d, block]`` to the sums of every row
    n, so W crosses from memory once, in order. The sums run over d in the same order on any thread
    count (the same bits)."""
    N, D = x.shape
    M = W.shape[1]
    for block in prange((M + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        m0 = block * COLUMN_BLOCK
        width = min(COLUMN_BLOCK, M - m0)
        sums = np.zeros((N, width), np.float32)
        for d in range(0, D - 3, 4):  # four rows of W at a time: each sum is loaded and stored once for 4
            w0, w1, w2, w3 = W[d, m0:], W[d + 1, m0:], W[d + 2, m0:], W[d + 3, m0:]
            for n in range(N):
                x0, x1, x2, x3 = x[n, d], x[n, d + 1], x[n, d + 2], x[n, d + 3]
                row = sums[n]
                for m in range(width):
                    row[m] += x0 * w0[m] + x1 * w1[m] + x2 * w2[m] + x3 * w3[m]
        for d in range(D - D % 4, D):  # the last rows
            w = W[d, m0:]
            for n in range(N):
                xd = x[n, d]
                row = sums[n]
                for m in range(width):
                    row[m] += xd * w[m]
        for n in range(N):
            for m in range(width):
                y[n, m0 + m] = sums[n, m] + b[m0 + m]


def forward(x, W, b, y):
    if _few_rows_ok(x, W, y) and not _direct_ok(x, W, y):
        note_route("few rows: W streamed once")
        few_rows_forward(x, W, b, y)
        return
    if _direct_ok(x, W, y):
        # both cores through Numba's threads: single-threaded BLAS (blas.py) was 0.5x torch on
        # LeNet's 64 x 400 x 120, and BLAS's own threads would spin against Numba's afterwards
        note_route(direct.tile_name(W.shape[1]))
        direct.dense_forward(x, W, b, y)
        return
    note_route("BLAS")
    blas.matmul(x, W, out=y)
    y += b


def backward_input(dy, W, dx):
    note_route("BLAS")
    blas.matmul(dy, W.T, out=dx)


def backward_weight(x, dy, dW):
    note_route("BLAS")
    blas.matmul(x.T, dy, out=dW)
