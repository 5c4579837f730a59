"""Pooling, max and average, forward and backward (one source, three backends).

Shapes (NHWC): ``x (N, H, W, C)`` -> ``p (N, H_out, W_out, C)``, each channel pooled on its own,

    H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1     (W_out likewise)

Windows may overlap (stride < f) and need not tile the input (the last rows/columns are
left out, as in the formula). Padding is optional (Keras' ``padding="same"``); a padded cell
is not a value: max ignores it and average divides by the number of real cells only
(TensorFlow's rule; torch's ``count_include_pad=True`` differs).

Ties in max pooling: the gradient of a window goes to exactly one cell, the *first*
maximum in row-major order (smallest row, then smallest column), like ``np.argmax``.
A NaN counts as the maximum (it propagates, like ``np.max``).

The forward can also say where each maximum sits, ``argmax[n, h_out, w_out, c] = i * f_w + j``
(row i, column j inside the window, padding rows/columns counted), as PyTorch keeps its
``indices``: the backward then routes the gradient with it instead of searching x again.

What runs here: the python backend and the cuda backend run these loop nests; the cpu backend
runs them compiled only with ``NBCNN_FAST=0``. By default it runs the vectorised kernels of
``kernels/fast/`` (registered in ``kernels/fast/__init__.py``), which give these results bit
for bit. ``NBCNN_DEBUG=1`` prints which one ran.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

from .indexing import unravel_4d, windows_covering

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def window_argmax(x, n, h_out, w_out, c, win):
    """(h, w) of the largest ``x[n, h, w, c]`` in the window of output (h_out, w_out)."""
    best_h = -1
    best_w = -1
    best = x[n, 0, 0, c]
    top, h_stop = window_rows(h_out, x.shape, win)  # padding never wins: only real cells are read
    left, w_stop = window_cols(w_out, x.shape, win)
    for h in range(top, h_stop):
        for w in range(left, w_stop):
            v = x[n, h, w, c]
            # strictly greater keeps the first maximum on ties; the first NaN wins and stays
            if best_h < 0 or v > best or (v != v and best == best):
                best, best_h, best_w = v, h, w
    return best_h, best_w


@register_jitable
def window_rows(h_out, x_shape, win):
    """``range(first, stop)`` of the image rows under the window of output row h_out: the rows
    ``h_out * stride_h - pad_top + i`` for ``i < f_h`` that are not padding. Looping over these
    (not over all f_h rows, skipping padding) keeps the work proportional to the real cells,
    however large the padding."""
    top = h_out * win.stride_h - win.pad_top
    return max(top, 0), min(top + win.f_h, x_shape[1])


@register_jitable
def window_cols(w_out, x_shape, win):
    """The same for the columns under the window of output column w_out."""
    left = w_out * win.stride_w - win.pad_left
    return max(left, 0), min(left + win.f_w, x_shape[2])


@register_jitable
def window_count(h_out, w_out, x_shape, win):
    """How many real (not padding) cells the window of (h_out, w_out) covers."""
    top, h_stop = window_rows(h_out, x_shape, win)
    left, w_stop = window_cols(w_out, x_shape, win)
    return (h_stop - top) * (w_stop - left)


# --------------------------------------------------------------------------- max


@register_jitable
def max_pool2d_forward_cell(x, n, h_out, w_out, c, win):
    """``p[n, h_out, w_out, c] = max of x[n, window, c]``"""
    h, w = window_argmax(x, n, h_out, w_out, c, win)
    return x[n, h, w, c]


def max_pool2d_forward(x, win, p):
    """``for n, h_out, w_out, c: p[n, h_out, w_out, c] = max over the window`` (prange over n)."""
    N, H_out, W_out, C = p.shape
    for n in prange(N):
        for h_out in range(H_out):
            for w_out in range(W_out):
                for c in range(C):
                    p[n, h_out, w_out, c] = max_pool2d_forward_cell(x, n, h_out, w_out, c, win)


@register_jitable
def max_pool2d_backward_cell(dp, x, n, h, w, c, win):
    """``dx[n, h, w, c]``: the sum of ``dp`` over the windows covering (h, w) whose max is (h, w).

    A gather: the window's argmax is recomputed here rather than scattered from the window,
    so each dx cell is written by one iteration only.
    """
    dx = dp.dtype.type(0)
    h_first, h_stop = windows_covering(h, win.pad_top, win.f_h, win.stride_h, dp.shape[1])
    w_first, w_stop = windows_covering(w, win.pad_left, win.f_w, win.stride_w, dp.shape[2])
    for h_out in range(h_first, h_stop):
        for w_out in range(w_first, w_stop):
            best_h, best_w = window_argmax(x, n, h_out, w_out, c, win)
            if best_h == h and best_w == w:
                dx += dp[n, h_out, w_out, c]
    return dx


def max_pool2d_backward(dp, x, win, dx):
    """``for n, h, w, c: dx[n, h, w, c] = max_pool2d_backward_cell(...)``"""
    N, H, W, C = dx.shape
    for n in prange(N):
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = max_pool2d_backward_cell(dp, x, n, h, w, c, win)


# --------------------------------------------------------------------------- max, keeping the argmax


@register_jitable
def max_pool2d_argmax_cell(x, n, h_out, w_out, c, win):
    """``(p, argmax)`` of output (n, h_out, w_out, c): the window's max and the cell it came
    from as ``i * f_w + j`` (row i, column j of the window, padding rows/columns counted)."""
    h, w = window_argmax(x, n, h_out, w_out, c, win)
    i = h - (h_out * win.stride_h - win.pad_top)
    j = w - (w_out * win.stride_w - win.pad_left)
    return x[n, h, w, c], i * win.f_w + j


def max_pool2d_forward_argmax(x, win, p, argmax):
    """``for n, h_out, w_out, c: p[...], argmax[...] = max_pool2d_argmax_cell(...)``"""
    N, H_out, W_out, C = p.shape
    for n in prange(N):
        for h_out in range(H_out):
            for w_out in range(W_out):
                for c in range(C):
                    v, k = max_pool2d_argmax_cell(x, n, h_out, w_out, c, win)
                    p[n, h_out, w_out, c] = v
                    argmax[n, h_out, w_out, c] = k


@register_jitable
def max_pool2d_backward_argmax_cell(dp, argmax, n, h, w, c, win):
    """``dx[n, h, w, c]``: the sum of ``dp`` over the windows covering (h, w) whose argmax is (h, w).

    The same gather as ``max_pool2d_backward_cell``, with the forward's argmax read instead
    of recomputed: no search of x, and the same sums in the same order (the same bits).
    """
    dx = dp.dtype.type(0)
    h_first, h_stop = windows_covering(h, win.pad_top, win.f_h, win.stride_h, dp.shape[1])
    w_first, w_stop = windows_covering(w, win.pad_left, win.f_w, win.stride_w, dp.shape[2])
    for h_out in range(h_first, h_stop):
        i = h - (h_out * win.stride_h - win.pad_top)  # (h, w) is cell (i, j) of this window
        for w_out in range(w_first, w_stop):
            j = w - (w_out * win.stride_w - win.pad_left)
            if argmax[n, h_out, w_out, c] == i * win.f_w + j:
                dx += dp[n, h_out, w_out, c]
    return dx


def max_pool2d_backward_argmax(dp, argmax, win, dx):
    """``for n, h, w, c: dx[n, h, w, c] = max_pool2d_backward_argmax_cell(...)``"""
    N, H, W, C = dx.shape
    for n in prange(N):
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = max_pool2d_backward_argmax_cell(dp, argmax, n, h, w, c, win)


# --------------------------------------------------------------------------- average


@register_jitable
def avg_pool2d_forward_cell(x, n, h_out, w_out, c, win):
    """``p[n, h_out, w_out, c] = mean of the real cells of x[n, window, c]``"""
    total = x.dtype.type(0)
    top, h_stop = window_rows(h_out, x.shape, win)
    left, w_stop = window_cols(w_out, x.shape, win)
    for h in range(top, h_stop):
        for w in range(left, w_stop):
            total += x[n, h, w, c]
    # cast the count: an int in the division would promote float32 math to float64
    return total / x.dtype.type(window_count(h_out, w_out, x.shape, win))


def avg_pool2d_forward(x, win, p):
    """``for n, h_out, w_out, c: p[n, h_out, w_out, c] = mean over the window`` (prange over n)."""
    N, H_out, W_out, C = p.shape
    for n in prange(N):
        for h_out in range(H_out):
            for w_out in range(W_out):
                for c in range(C):
                    p[n, h_out, w_out, c] = avg_pool2d_forward_cell(x, n, h_out, w_out, c, win)


@register_jitable
def avg_pool2d_backward_cell(dp, x_shape, n, h, w, c, win):
    """``dx[n, h, w, c] = sum over the windows covering (h, w) of dp / (cells in that window)``

    Each window spreads its gradient evenly over the cells it averaged (the course's
    ``distribute_value``).
    """
    dx = dp.dtype.type(0)
    h_first, h_stop = windows_covering(h, win.pad_top, win.f_h, win.stride_h, dp.shape[1])
    w_first, w_stop = windows_covering(w, win.pad_left, win.f_w, win.stride_w, dp.shape[2])
    for h_out in range(h_first, h_stop):
        for w_out in range(w_first, w_stop):
            dx += dp[n, h_out, w_out, c] / dp.dtype.type(window_count(h_out, w_out, x_shape, win))
    return dx


def avg_pool2d_backward(dp, win, dx):
    """``for n, h, w, c: dx[n, h, w, c] = avg_pool2d_backward_cell(...)`` (needs only x's shape: dx's)."""
    N, H, W, C = dx.shape
    for n in prange(N):
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = avg_pool2d_backward_cell(dp, dx.shape, n, h, w, c, win)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per output number, each calling the cell above."""
    @cuda.jit
    def max_forward(x, win, p):
        t = cuda.grid(1)
        if t < p.size:
            n, h_out, w_out, c = unravel_4d(t, p.shape)
            p[n, h_out, w_out, c] = max_pool2d_forward_cell(x, n, h_out, w_out, c, win)

    @cuda.jit
    def max_backward(dp, x, win, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h, w, c = unravel_4d(t, dx.shape)
            dx[n, h, w, c] = max_pool2d_backward_cell(dp, x, n, h, w, c, win)

    @cuda.jit
    def max_forward_argmax(x, win, p, argmax):
        t = cuda.grid(1)
        if t < p.size:
            n, h_out, w_out, c = unravel_4d(t, p.shape)
            v, k = max_pool2d_argmax_cell(x, n, h_out, w_out, c, win)
            p[n, h_out, w_out, c] = v
            argmax[n, h_out, w_out, c] = k

    @cuda.jit
    def max_backward_argmax(dp, argmax, win, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h, w, c = unravel_4d(t, dx.shape)
            dx[n, h, w, c] = max_pool2d_backward_argmax_cell(dp, argmax, n, h, w, c, win)

    @cuda.jit
    def avg_forward(x, win, p):
        t = cuda.grid(1)
        if t < p.size:
            n, h_out, w_out, c = unravel_4d(t, p.shape)
            p[n, h_out, w_out, c] = avg_pool2d_forward_cell(x, n, h_out, w_out, c, win)

    @cuda.jit
    def avg_backward(dp, win, dx):
        t = cuda.grid(1)
        if t < dx.size:
            n, h, w, c = unravel_4d(t, dx.shape)
            dx[n, h, w, c] = avg_pool2d_backward_cell(dp, dx.shape, n, h, w, c, win)

    return {"max_forward": max_forward, "max_backward": max_backward,
            "max_forward_argmax": max_forward_argmax, "max_backward_argmax": max_backward_argmax,
            "avg_forward": avg_forward, "avg_backward": avg_backward}


MAX_FORWARD = Kernel("max_pool2d_forward", max_pool2d_forward, cuda=lambda: _cuda_kernels()["max_forward"])
MAX_BACKWARD = Kernel("max_pool2d_backward", max_pool2d_backward, cuda=lambda: _cuda_kernels()["max_backward"])
# x -> (p, argmax): two outputs, argmax last (one thread per element of it, as of p)
MAX_ARGMAX = Kernel("max_pool2d_forward_argmax", max_pool2d_forward_argmax,
                    cuda=lambda: _cuda_kernels()["max_forward_argmax"])
MAX_BACKWARD_ARGMAX = Kernel("max_pool2d_backward_argmax", max_pool2d_backward_argmax,
                             cuda=lambda: _cuda_kernels()["max_backward_argmax"])
AVG_FORWARD = Kernel("avg_pool2d_forward", avg_pool2d_forward, cuda=lambda: _cuda_kernels()["avg_forward"])
AVG_BACKWARD = Kernel("avg_pool2d_backward", avg_pool2d_backward, cuda=lambda: _cuda_kernels()["avg_backward"])
