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

from ...backend import note_route
from . import blas, direct

DIRECT_MAX_W_BYTES = 512 << 10
"""Small float32 layers whose W fits in an L2 cache run on the direct conv tile
(``direct.dense_forward``): every tile of rows streams all of W, which must stay cached."""


def _direct_ok(x, W, y):
    return (x.dtype == W.dtype == y.dtype == np.float32 and W.nbytes <= DIRECT_MAX_W_BYTES
            and x.flags.c_contiguous and W.flags.c_contiguous and y.flags.c_contiguous
            and blas.is_small(x.shape[0], x.shape[1], W.shape[1]))


def forward(x, W, b, y):
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
