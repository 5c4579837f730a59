"""The dense (fully connected) layer: ``y = x @ W + b``, forward and backward.

Shapes: ``x (N, D)``, ``W (D, M)``, ``b (M,)``, ``y (N, M)``.

    forward   y[n, m]  = b[m] + sum_d x[n, d] * W[d, m]
    backward  dx[n, d] = sum_m dy[n, m] * W[d, m]        (dy @ W.T)
              dW[d, m] = sum_n x[n, d] * dy[n, m]        (x.T @ dy)
              db[m]    = sum_n dy[n, m]                  (kernels/bias.py)

Every output cell is a gather owned by one iteration, as in the conv kernels.

What runs here: the python and cuda backends run these loop nests; the cpu backend runs them
compiled only with ``NBCNN_FAST=0``. By default it runs ``kernels/fast/dense.py``: a small
float32 layer on the direct convolution's register tile, everything else as BLAS products.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

from .indexing import unravel_2d

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def dense_forward_cell(x, W, b, n, m):
    y = b[m]
    for d in range(x.shape[1]):
        y += x[n, d] * W[d, m]
    return y


def dense_forward(x, W, b, y):
    """``for n, m: y[n, m] = b[m] + x[n, :] . W[:, m]``"""
    for n in prange(y.shape[0]):
        for m in range(y.shape[1]):
            y[n, m] = dense_forward_cell(x, W, b, n, m)


@register_jitable
def dense_backward_input_cell(dy, W, n, d):
    dx = dy.dtype.type(0)
    for m in range(dy.shape[1]):
        dx += dy[n, m] * W[d, m]
    return dx


def dense_backward_input(dy, W, dx):
    """``for n, d: dx[n, d] = dy[n, :] . W[d, :]``"""
    for n in prange(dx.shape[0]):
        for d in range(dx.shape[1]):
            dx[n, d] = dense_backward_input_cell(dy, W, n, d)


@register_jitable
def dense_backward_weight_cell(x, dy, d, m):
    dw = dy.dtype.type(0)
    for n in range(x.shape[0]):
        dw += x[n, d] * dy[n, m]
    return dw


def dense_backward_weight(x, dy, dW):
    """``for d, m: dW[d, m] = x[:, d] . dy[:, m]``"""
    for d in prange(dW.shape[0]):
        for m in range(dW.shape[1]):
            dW[d, m] = dense_backward_weight_cell(x, dy, d, m)


@cuda_kernels
def _cuda_kernels():
    @cuda.jit
    def forward(x, W, b, y):
        t = cuda.grid(1)
        if t < y.size:
            n, m = unravel_2d(t, y.shape)
            y[n, m] = dense_forward_cell(x, W, b, n, m)

    @cuda.jit
    def backward_input(dy, W, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, d = unravel_2d(t, dx.shape)
            dx[n, d] = dense_backward_input_cell(dy, W, n, d)

    @cuda.jit
    def backward_weight(x, dy, dW):
        t = cuda.grid(1)
        if t < dW.size:
            d, m = unravel_2d(t, dW.shape)
            dW[d, m] = dense_backward_weight_cell(x, dy, d, m)

    return {"forward": forward, "backward_input": backward_input, "backward_weight": backward_weight}


FORWARD = Kernel("dense_forward", dense_forward, cuda=lambda: _cuda_kernels()["forward"])
BACKWARD_INPUT = Kernel("dense_backward_input", dense_backward_input, cuda=lambda: _cuda_kernels()["backward_input"])
BACKWARD_WEIGHT = Kernel("dense_backward_weight", dense_backward_weight,
                         cuda=lambda: _cuda_kernels()["backward_weight"])
