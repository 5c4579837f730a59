"""Depthwise convolution, forward and backward: one filter per channel, channels kept apart.

Shapes (NHWC; channel multiplier 1, as MobileNet's and the tiny face detector's layers):

    x  (N, H, W, C)           the input volume
    W  (f_h, f_w, C)          one f_h x f_w filter per channel
    b  (C,)                   one bias per channel
    z  (N, H_out, W_out, C)   with  H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1
                                    W_out = (W + pad_left + pad_right - f_w) // stride_w + 1

A plain convolution mixes every input channel into every output; a depthwise one slides
filter c over channel c only::

    z[n, h_out, w_out, c] = b[c] + sum over (i, j) of x[n, h_in, w_in, c] * W[i, j, c]

with ``h_in = h_out * stride_h - pad_top + i`` (and ``w_in`` likewise). That is f_h * f_w
multiply-adds per output instead of f_h * f_w * C_in: followed by a 1x1 convolution that mixes
the channels (a "depthwise-separable" convolution, MobileNet's block) it costs about 1/9 of a
3x3 convolution for the same output. Geometry arrives as a ``Window`` tuple (f_h, f_w,
stride_h, stride_w, pad_top, pad_left), as in ``conv.py``; the padding is never copied (a read
outside ``x`` is a zero, skipped).

Each ``*_cell`` function computes one output number and is ``@register_jitable``: plain Python
on the python backend, compiled into the ``@njit`` loop nest on cpu and into the ``@cuda.jit``
kernel (one thread per output) on cuda. Backward kernels are gathers: each cell of dX or dW
sums everything that flows into it, so no two parallel iterations write the same number.
The bias gradient is ``kernels/bias.py``'s (``db[c] = sum of dz[..., c]``).

What runs here: the python and cuda backends run these loop nests, always. The cpu backend
runs them compiled only with ``NBCNN_FAST=0``; by default it runs ``kernels/fast/depthwise.py``
(whole rows, each tap added over the C contiguous channels, which vectorises: ~20x this loop
forward on the tiny face detector's layers, ~50x backward on (8, 56, 56, 64)), tested against
this one in ``tests/test_depthwise.py``.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

from .indexing import unravel_4d, windows_covering

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def unravel_3d(t, shape):
    """Flat C-order index ``t`` -> (i, j, c) in an array of 3-D ``shape`` (dW's cells)."""
    c = t % shape[2]
    t = t // shape[2]
    return t // shape[1], t % shape[1], c


# --------------------------------------------------------------------------- forward


@register_jitable
def depthwise_forward_cell(x, W, b, n, h_out, w_out, c, win):
    """``z[n, h_out, w_out, c] = b[c] + sum over (i, j) of x[n, h_in, w_in, c] * W[i, j, c]``:
    filter c laid on channel c under the window of output (h_out, w_out), plus bias."""
    z = b[c]
    for i in range(win.f_h):
        h_in = h_out * win.stride_h - win.pad_top + i
        if h_in < 0 or h_in >= x.shape[1]:
            continue  # a row of zero padding adds nothing
        for j in range(win.f_w):
            w_in = w_out * win.stride_w - win.pad_left + j
            if w_in < 0 or w_in >= x.shape[2]:
                continue
            z += x[n, h_in, w_in, c] * W[i, j, c]
    return z


def depthwise_forward(x, W, b, win, z):
    """The loop nest::

        for (n, h_out) in every image's every output row   # in parallel on cpu
            for w_out in range(W_out):
                for c in range(C):                         # every channel, on its own
                    z[n, h_out, w_out, c] = depthwise_forward_cell(...)

    The parallel loop runs over image rows rather than images, so one photo (N = 1, the
    detector's case) still keeps every core busy.
    """
    N, H_out, W_out, C = z.shape
    for row in prange(N * H_out):
        n = row // H_out
        h_out = row % H_out
        for w_out in range(W_out):
            for c in range(C):
                z[n, h_out, w_out, c] = depthwise_forward_cell(x, W, b, n, h_out, w_out, c, win)


# --------------------------------------------------------------------------- backward


@register_jitable
def depthwise_backward_input_cell(dz, W, n, h_in, w_in, c, win):
    """``dx[n, h_in, w_in, c]``: every output of channel c whose window covered (h_in, w_in)
    sends back ``dz[n, h_out, w_out, c] * W[i, j, c]``, (i, j) being where that window put it.
    Other channels send nothing: channel c's filter never saw them."""
    dx = dz.dtype.type(0)
    h_first, h_stop = windows_covering(h_in, win.pad_top, win.f_h, win.stride_h, dz.shape[1])
    w_first, w_stop = windows_covering(w_in, win.pad_left, win.f_w, win.stride_w, dz.shape[2])
    for h_out in range(h_first, h_stop):
        i = h_in + win.pad_top - h_out * win.stride_h  # the filter row that touched h_in
        for w_out in range(w_first, w_stop):
            j = w_in + win.pad_left - w_out * win.stride_w
            dx += dz[n, h_out, w_out, c] * W[i, j, c]
    return dx


def depthwise_backward_input(dz, W, win, dx):
    """dX as a gather: ``for (n, h_in), w_in, c: dx[n, h_in, w_in, c] = depthwise_backward_input_cell(...)``"""
    N, H, W_in, C = dx.shape
    for row in prange(N * H):
        n = row // H
        h_in = row % H
        for w_in in range(W_in):
            for c in range(C):
                dx[n, h_in, w_in, c] = depthwise_backward_input_cell(dz, W, n, h_in, w_in, c, win)


@register_jitable
def depthwise_backward_filter_cell(x, dz, i, j, c, win):
    """``dW[i, j, c] = sum over (n, h_out, w_out) of x[n, h_in, w_in, c] * dz[n, h_out, w_out, c]``

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
                dw += x[n, h_in, w_in, c] * dz[n, h_out, w_out, c]
    return dw


def depthwise_backward_filter(x, dz, win, dW):
    """dW as a gather: ``for i, j, c: dW[i, j, c] = depthwise_backward_filter_cell(...)``.

    The parallel loop runs over all f_h * f_w * C cells at once: f_h alone (3) would leave
    cores idle.
    """
    f_h, f_w, C = dW.shape
    for t in prange(f_h * f_w * C):
        i, j, c = unravel_3d(t, dW.shape)
        dW[i, j, c] = depthwise_backward_filter_cell(x, dz, i, j, c, win)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """The ``@cuda.jit`` forms: one GPU thread per output number, each calling the cell above."""
    @cuda.jit
    def forward(x, W, b, win, z):
        t = cuda.grid(1)
        if t < z.size:
            n, h_out, w_out, c = unravel_4d(t, z.shape)
            z[n, h_out, w_out, c] = depthwise_forward_cell(x, W, b, n, h_out, w_out, c, win)

    @cuda.jit
    def backward_input(dz, W, win, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h_in, w_in, c = unravel_4d(t, dx.shape)
            dx[n, h_in, w_in, c] = depthwise_backward_input_cell(dz, W, n, h_in, w_in, c, win)

    @cuda.jit
    def backward_filter(x, dz, win, dW):
        t = cuda.grid(1)
        if t < dW.size:
            i, j, c = unravel_3d(t, dW.shape)
            dW[i, j, c] = depthwise_backward_filter_cell(x, dz, i, j, c, win)

    return {"forward": forward, "backward_input": backward_input, "backward_filter": backward_filter}


FORWARD = Kernel("depthwise_conv2d_forward", depthwise_forward, cuda=lambda: _cuda_kernels()["forward"])
BACKWARD_INPUT = Kernel("depthwise_conv2d_backward_input", depthwise_backward_input,
                        cuda=lambda: _cuda_kernels()["backward_input"])
BACKWARD_FILTER = Kernel("depthwise_conv2d_backward_filter", depthwise_backward_filter,
                         cuda=lambda: _cuda_kernels()["backward_filter"])
