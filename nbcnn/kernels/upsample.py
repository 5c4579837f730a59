"""Nearest-neighbour upsampling by an integer factor, forward and backward (one source, three backends).

Shapes (NHWC): ``x (N, H, W, C)`` -> ``y (N, H * s, W * s, C)``: every input cell is copied
into an ``s x s`` block of the output (YOLOv3's ``[upsample] stride=2``, Keras'
``UpSampling2D``)::

    y[n, h, w, c] = x[n, h // s, w // s, c]

Backward, written as a gather (each cell of dx owned by one iteration): a cell of x was
copied to ``s * s`` cells of y, so its gradient is the sum of theirs::

    dx[n, h, w, c] = sum over i, j < s of dy[n, h * s + i, w * s + j, c]

What runs here: this loop nest on every backend (it only moves numbers; no fast variant).
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

from .indexing import unravel_4d

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def upsample_nearest_cell(x, n, h, w, c, s):
    """``y[n, h, w, c] = x[n, h // s, w // s, c]``"""
    return x[n, h // s, w // s, c]


@register_jitable
def upsample_nearest_backward_cell(dy, n, h, w, c, s):
    """``dx[n, h, w, c] = sum of dy over the s x s block that (h, w) was copied to``"""
    total = dy.dtype.type(0)
    for i in range(s):
        for j in range(s):
            total += dy[n, h * s + i, w * s + j, c]
    return total


def upsample_nearest(x, s, y):
    """``for n, h, w, c: y[n, h, w, c] = x[n, h // s, w // s, c]`` (prange over n)."""
    N, H_out, W_out, C = y.shape
    for n in prange(N):
        for h in range(H_out):
            for w in range(W_out):
                for c in range(C):
                    y[n, h, w, c] = upsample_nearest_cell(x, n, h, w, c, s)


def upsample_nearest_backward(dy, s, dx):
    """``for n, h, w, c: dx[n, h, w, c] = sum of dy[n, h*s:h*s+s, w*s:w*s+s, c]``"""
    N, H, W, C = dx.shape
    for n in prange(N):
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = upsample_nearest_backward_cell(dy, n, h, w, c, s)


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per output number, each calling the cell above."""
    @cuda.jit
    def forward(x, s, y):
        t = cuda.grid(1)
        if t < y.size:
            n, h, w, c = unravel_4d(t, y.shape)
            y[n, h, w, c] = upsample_nearest_cell(x, n, h, w, c, s)

    @cuda.jit
    def backward(dy, s, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h, w, c = unravel_4d(t, dx.shape)
            dx[n, h, w, c] = upsample_nearest_backward_cell(dy, n, h, w, c, s)

    return {"forward": forward, "backward": backward}


FORWARD = Kernel("upsample_nearest", upsample_nearest, cuda=lambda: _cuda_kernels()["forward"])
BACKWARD = Kernel("upsample_nearest_backward", upsample_nearest_backward, cuda=lambda: _cuda_kernels()["backward"])
