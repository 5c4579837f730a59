"""Convolution, forward and backward: the lecture's loop nests, one source for three backends.

Shapes (NHWC, as in the course's ``A_prev``):

    x  (N, H, W, C_in)          the input volume
    W  (f_h, f_w, C_in, C_out)  C_out filters, each f_h x f_w x C_in
    b  (C_out,)                 one bias per filter
    z  (N, H_out, W_out, C_out) with  H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1
                                      W_out = (W + pad_left + pad_right - f_w) // stride_w + 1

The padding is never copied: a read outside ``x`` is a zero of the padding, so it is
skipped. Window geometry arrives as a ``Window`` tuple (f_h, f_w, stride_h, stride_w,
pad_top, pad_left); see ``nbcnn/checks.py``.

Each ``*_cell`` function computes one output number. It is ``@register_jitable``: plain
Python when the python backend calls it (set a breakpoint in it and pdb stops there),
compiled into the cpu loop nest by ``@njit`` and into the GPU kernel by ``@cuda.jit``.
The loop nests below call the cell for every output: the python backend runs them as
written, the cpu backend runs them compiled with ``prange`` over the outer loop, and the
cuda kernels give each output to its own GPU thread.

Backward kernels are *gathers*: each cell of dX or dW sums everything that flows into it,
so no two parallel iterations ever write the same number (no races, and the same result
on every run).

What runs here: the python backend runs these loop nests, always. The cpu and cuda backends
run them compiled only with ``NBCNN_FAST=0``; by default they run restructured kernels
registered in ``kernels/fast/__init__.py`` and tested against these: on cpu the router
``fast/conv.py`` (float32: the register-tiled direct convolution ``fast/direct.py`` or
Winograd ``fast/winograd.py``; float64: im2col + BLAS ``fast/im2col.py``), on cuda the tiled
implicit GEMM of ``fast/cuda_conv.py``. ``NBCNN_DEBUG=1`` prints which one ran.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

from .indexing import unravel_4d, windows_covering

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


# --------------------------------------------------------------------------- forward


@register_jitable
def conv2d_forward_cell(x, W, b, n, h_out, w_out, k, win):
    """``z[n, h_out, w_out, k] = b[k] + sum over (i, j, c) of x[n, h_in, w_in, c] * W[i, j, c, k]``

    where ``h_in = h_out * stride_h - pad_top + i`` (and ``w_in`` likewise): the filter k laid
    on the window of output (h_out, w_out), multiplied element by element, summed, plus bias.
    """
    z = b[k]
    for i in range(win.f_h):
        h_in = h_out * win.stride_h - win.pad_top + i
        if h_in < 0 or h_in >= x.shape[1]:
            continue  # a row of zero padding adds nothing
        for j in range(win.f_w):
            w_in = w_out * win.stride_w - win.pad_left + j
            if w_in < 0 or w_in >= x.shape[2]:
                continue
            for c in range(x.shape[3]):
                z += x[n, h_in, w_in, c] * W[i, j, c, k]
    return z


def conv2d_forward(x, W, b, win, z):
    """The lecture's loop nest::

        for n in range(N):                       # every image (in parallel on cpu)
            for h_out in range(H_out):           # every output row
                for w_out in range(W_out):       # every output column
                    for k in range(C_out):       # every filter
                        z[n, h_out, w_out, k] = conv2d_forward_cell(...)
    """
    N, H_out, W_out, C_out = z.shape
    for n in prange(N):
        for h_out in range(H_out):
            for w_out in range(W_out):
                for k in range(C_out):
                    z[n, h_out, w_out, k] = conv2d_forward_cell(x, W, b, n, h_out, w_out, k, win)


@register_jitable
def conv2d_forward_relu_cell(x, W, b, n, h_out, w_out, k, win):
    """``relu(conv2d_forward_cell(...))`` with ``relu_cell``'s rule: 0 if below 0, so a NaN stays NaN."""
    v = conv2d_forward_cell(x, W, b, n, h_out, w_out, k, win)
    return x.dtype.type(0) if v < 0 else v


def conv2d_forward_relu(x, W, b, win, z):
    """``conv2d_forward`` with a ReLU on each number as it is stored: a Conv2D followed by ReLU
    in one pass over z, not two."""
    N, H_out, W_out, C_out = z.shape
    for n in prange(N):
        for h_out in range(H_out):
            for w_out in range(W_out):
                for k in range(C_out):
                    z[n, h_out, w_out, k] = conv2d_forward_relu_cell(x, W, b, n, h_out, w_out, k, win)


# --------------------------------------------------------------------------- backward


@register_jitable
def conv2d_backward_input_cell(dz, W, n, h_in, w_in, c, win):
    """``dx[n, h_in, w_in, c]``: every output whose window covered (h_in, w_in) sends back
    ``dz[n, h_out, w_out, k] * W[i, j, c, k]``, where (i, j) is where that window put x[h_in, w_in].
    """
    dx = dz.dtype.type(0)
    h_first, h_stop = windows_covering(h_in, win.pad_top, win.f_h, win.stride_h, dz.shape[1])
    w_first, w_stop = windows_covering(w_in, win.pad_left, win.f_w, win.stride_w, dz.shape[2])
    for h_out in range(h_first, h_stop):
        i = h_in + win.pad_top - h_out * win.stride_h  # the filter row that touched h_in
        for w_out in range(w_first, w_stop):
            j = w_in + win.pad_left - w_out * win.stride_w
            for k in range(dz.shape[3]):
                dx += dz[n, h_out, w_out, k] * W[i, j, c, k]
    return dx


def conv2d_backward_input(dz, W, win, dx):
    """dX as a gather: ``for n, h_in, w_in, c: dx[n, h_in, w_in, c] = conv2d_backward_input_cell(...)``"""
    N, H, W_in, C_in = dx.shape
    for n in prange(N):
        for h_in in range(H):
            for w_in in range(W_in):
                for c in range(C_in):
                    dx[n, h_in, w_in, c] = conv2d_backward_input_cell(dz, W, n, h_in, w_in, c, win)


@register_jitable
def conv2d_backward_filter_cell(x, dz, i, j, c, k, win):
    """``dW[i, j, c, k] = sum over (n, h_out, w_out) of x[n, h_in, w_in, c] * dz[n, h_out, w_out, k]``

    with (h_in, w_in) the input under tap (i, j) of the window of (h_out, w_out).
    """
    dw = dz.dtype.type(0)
    for n in range(dz.shape[0]):
        for h_out in range(dz.shape[1]):
            h_in = h_out * win.stride_h - win.pad_top + i
            if h_in < 0 or h_in >= x.shape[1]:
                continue  # this tap sat on padding: zero input, zero gradient
            for w_out in range(dz.shape[2]):
                w_in = w_out * win.stride_w - win.pad_left + j
                if w_in < 0 or w_in >= x.shape[2]:
                    continue
                dw += x[n, h_in, w_in, c] * dz[n, h_out, w_out, k]
    return dw


def conv2d_backward_filter(x, dz, win, dW):
    """dW as a gather: ``for i, j, c, k: dW[i, j, c, k] = conv2d_backward_filter_cell(...)``"""
    f_h, f_w, C_in, C_out = dW.shape
    for i in prange(f_h):
        for j in range(f_w):
            for c in range(C_in):
                for k in range(C_out):
                    dW[i, j, c, k] = conv2d_backward_filter_cell(x, dz, i, j, c, k, win)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """The ``@cuda.jit`` forms: one GPU thread per output number, each calling the cell above."""
    @cuda.jit
    def forward(x, W, b, win, z):
        t = cuda.grid(1)
        if t < z.size:
            n, h_out, w_out, k = unravel_4d(t, z.shape)
            z[n, h_out, w_out, k] = conv2d_forward_cell(x, W, b, n, h_out, w_out, k, win)

    @cuda.jit
    def forward_relu(x, W, b, win, z):
        t = cuda.grid(1)
        if t < z.size:
            n, h_out, w_out, k = unravel_4d(t, z.shape)
            z[n, h_out, w_out, k] = conv2d_forward_relu_cell(x, W, b, n, h_out, w_out, k, win)

    @cuda.jit
    def backward_input(dz, W, win, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h_in, w_in, c = unravel_4d(t, dx.shape)
            dx[n, h_in, w_in, c] = conv2d_backward_input_cell(dz, W, n, h_in, w_in, c, win)

    @cuda.jit
    def backward_filter(x, dz, win, dW):
        t = cuda.grid(1)
        if t < dW.size:
            i, j, c, k = unravel_4d(t, dW.shape)
            dW[i, j, c, k] = conv2d_backward_filter_cell(x, dz, i, j, c, k, win)

    return {"forward": forward, "forward_relu": forward_relu, "backward_input": backward_input,
            "backward_filter": backward_filter}


FORWARD = Kernel("conv2d_forward", conv2d_forward, cuda=lambda: _cuda_kernels()["forward"])
FORWARD_RELU = Kernel("conv2d_forward_relu", conv2d_forward_relu, cuda=lambda: _cuda_kernels()["forward_relu"])
BACKWARD_INPUT = Kernel("conv2d_backward_input", conv2d_backward_input, cuda=lambda: _cuda_kernels()["backward_input"])
BACKWARD_FILTER = Kernel("conv2d_backward_filter", conv2d_backward_filter, cuda=lambda: _cuda_kernels()["backward_filter"])
