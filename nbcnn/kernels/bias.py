"""The bias gradient: ``db[k] = sum of dz[..., k]`` over every position of every image.

A bias is added to every output of its channel (conv) or column (dense), so its gradient
is the sum of those outputs' gradients. The op layer hands this kernel ``dz`` viewed as
2-D, ``(positions, K)`` (for conv: ``N * H_out * W_out`` rows), so one kernel serves both.

What runs here: the python and cuda backends run this loop nest; the cpu backend runs it
compiled only with ``NBCNN_FAST=0``, and by default ``kernels/fast/bias.py`` (rows summed
as whole vectors in 16 fixed slices).
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def bias_backward_cell(dz, k):
    """``db[k] = sum over rows r of dz[r, k]``"""
    db = dz.dtype.type(0)
    for r in range(dz.shape[0]):
        db += dz[r, k]
    return db


def bias_backward(dz, db):
    """``for k in range(K): db[k] = bias_backward_cell(dz, k)`` (each k owned by one iteration)."""
    for k in prange(db.shape[0]):
        db[k] = bias_backward_cell(dz, k)


@cuda_kernels
def _cuda_kernels():
    @cuda.jit
    def backward(dz, db):
        k = cuda.grid(1)
        if k < db.size:
            db[k] = bias_backward_cell(dz, k)

    return backward


BACKWARD = Kernel("bias_backward", bias_backward, cuda=_cuda_kernels)
