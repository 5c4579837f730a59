"""Fast CPU pooling: the results of pool.py's loop nests, bit for bit, restructured for speed.

Pooling does about one comparison or addition per number it moves, so it is memory-bound:
the time goes into reading x and writing the output, and the fast kernels below move each
number as few times as they can. What they change against the readable kernels:

1. ``prange`` over output *rows* ``(n, h_out)``: N*H_out tasks instead of N, so both cores
   stay busy even with N = 1.
2. The channel loop innermost. In NHWC the C values of one pixel are contiguous, so each
   window cell is one run of vector loads, compares (or adds) and stores across the channels.
3. A max window's argmax is found once. The readable backward recomputes it for every dx cell
   the window covers (f_h * f_w times); here the backward finds it once per window and then
   hands the window's gradient to the winning cell, with no search.

Same results as the readable kernels, exactly: the same float operations in the same order
per output number (no ``fastmath``), ties go to the *first* maximum in row-major order, a
NaN wins and stays, and a dx cell that several windows send gradient to sums it in the
readable order (window rows, then columns, ascending). No two prange iterations ever write
the same cell (Numba has no CPU atomics), so every run gives the same bits.

Arrays are C-contiguous NHWC (``checks.as_array`` makes them so); ``win`` is the
``checks.Window`` tuple (f_h, f_w, stride_h, stride_w, pad_top, pad_left), as in pool.py.
"""

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from .indexing import windows_covering


# --------------------------------------------------------------------------- max


# Why two buffers ("ping-pong") below: written as ``best[c] = v if v > best[c] else best[c]``,
# LLVM sees that the else-branch stores back what it loaded, drops that store, and vectorises
# the rest as a *masked* store (vmaskmovps), which AMD Zen runs in microcode: 3-4x slower than
# the average pool. Reading one buffer and writing the other keeps every store a plain one.
# (Choosing the buffers through a variable, ``dst = a if odd else b``, stops the vectoriser
# instead: each step below names its arrays.)


@register_jitable
def max_step(cell, src, dst):
    """``dst = max(src, cell)`` over the channels. Keeps ``src`` on ties and when it is NaN
    already; a new NaN wins: the first maximum in row-major order, as ``pool.window_argmax``."""
    for c in range(dst.shape[0]):  # vectorised over the contiguous channels
        v, best = cell[c], src[c]
        dst[c] = best if (best != best) | (v <= best) else v


@register_jitable
def max_arg_step(cell, k, src, src_arg, dst, dst_arg):
    """``max_step`` that also keeps where the max came from: ``k`` is this cell's number."""
    for c in range(dst.shape[0]):
        v, best, arg = cell[c], src[c], src_arg[c]  # every load and store unconditional:
        keep = (best != best) | (v <= best)         # a select inside a branch vectorises
        new_best = best if keep else v              # into masked loads and stores
        new_arg = arg if keep else k
        dst[c] = new_best
        dst_arg[c] = new_arg


@register_jitable
def window_max(x, n, h0, h1, w0, w1, buf_a, buf_b, out):
    """``out[:] = max of x[n, h, w, :]`` over rows h0..h1-1 and columns w0..w1-1, cell by cell
    in row-major order (the window's cell q sits at row h0 + q // width, column w0 + q % width)."""
    width = w1 - w0
    cells = (h1 - h0) * width
    first = x[n, h0, w0]
    for c in range(out.shape[0]):
        buf_a[c] = first[c]
    for q in range(1, cells, 2):
        max_step(x[n, h0 + q // width, w0 + q % width], buf_a, buf_b)
        if q + 1 < cells:
            max_step(x[n, h0 + (q + 1) // width, w0 + (q + 1) % width], buf_b, buf_a)
    last = buf_a if cells % 2 == 1 else buf_b
    for c in range(out.shape[0]):
        out[c] = last[c]


@register_jitable
def window_argmax(x, n, top, h0, h1, left, w0, w1, f_w, buf_a, buf_b, arg_a, arg_b, arg_out):
    """Like ``window_max``, but finds where the max is: ``arg_out[c] = i * f_w + j``, the
    winning cell's row i and column j inside the window (padding rows/columns counted)."""
    width = w1 - w0
    cells = (h1 - h0) * width
    first = x[n, h0, w0]
    k0 = np.int32((h0 - top) * f_w + (w0 - left))  # int32 like arg: no 64-bit lanes
    for c in range(arg_out.shape[0]):
        buf_a[c] = first[c]
        arg_a[c] = k0
    for q in range(1, cells, 2):
        h, w = h0 + q // width, w0 + q % width
        max_arg_step(x[n, h, w], np.int32((h - top) * f_w + (w - left)), buf_a, arg_a, buf_b, arg_b)
        if q + 1 < cells:
            h, w = h0 + (q + 1) // width, w0 + (q + 1) % width
            max_arg_step(x[n, h, w], np.int32((h - top) * f_w + (w - left)), buf_b, arg_b, buf_a, arg_a)
    last = arg_a if cells % 2 == 1 else arg_b
    for c in range(arg_out.shape[0]):
        arg_out[c] = last[c]


@njit(parallel=True, cache=True)
def max_forward_rows(x, win, p):
    """``p[n, h_out, w_out, :] = max over the window``, one output row per prange task."""
    N, H_out, W_out, C = p.shape
    H, W = x.shape[1], x.shape[2]
    for t in prange(N * H_out):
        n, h_out = t // H_out, t % H_out
        top = h_out * win.stride_h - win.pad_top
        h0, h1 = max(top, 0), min(top + win.f_h, H)  # the window's real rows (padding never wins)
        buf_a, buf_b = np.empty(C, x.dtype), np.empty(C, x.dtype)
        for w_out in range(W_out):
            left = w_out * win.stride_w - win.pad_left
            w0, w1 = max(left, 0), min(left + win.f_w, W)
            window_max(x, n, h0, h1, w0, w1, buf_a, buf_b, p[n, h_out, w_out])


def max_pool2d_forward(x, win, p):
    max_forward_rows(x, win, p)


@njit(parallel=True, cache=True)
def max_argmax_rows(x, win, arg):
    """``arg[n, h_out, w_out, c]`` = the winning cell of the window, as ``i * f_w + j``."""
    N, H_out, W_out, C = arg.shape
    H, W = x.shape[1], x.shape[2]
    for t in prange(N * H_out):
        n, h_out = t // H_out, t % H_out
        top = h_out * win.stride_h - win.pad_top
        h0, h1 = max(top, 0), min(top + win.f_h, H)
        buf_a, buf_b = np.empty(C, x.dtype), np.empty(C, x.dtype)
        arg_a, arg_b = np.empty(C, arg.dtype), np.empty(C, arg.dtype)
        for w_out in range(W_out):
            left = w_out * win.stride_w - win.pad_left
            w0, w1 = max(left, 0), min(left + win.f_w, W)
            window_argmax(x, n, top, h0, h1, left, w0, w1, win.f_w, buf_a, buf_b, arg_a, arg_b,
                              arg[n, h_out, w_out])


@njit(parallel=True, cache=True)
def max_backward_gather_rows(dp, arg, win, dx):
    """Each dx row ``(n, h)`` is one prange task: it sums the gradient of every window covering
    row h whose winner sits in that row (windows in ascending order, as the readable kernel)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    zero = dx.dtype.type(0)
    for t in prange(N * H):
        n, h = t // H, t % H
        for w in range(W):
            for c in range(C):
                dx[n, h, w, c] = zero
        h_first, h_stop = windows_covering(h, win.pad_top, win.f_h, win.stride_h, H_out)
        for h_out in range(h_first, h_stop):
            i = h - (h_out * win.stride_h - win.pad_top)  # row h is row i of this window
            for w_out in range(W_out):
                left = w_out * win.stride_w - win.pad_left
                a = arg[n, h_out, w_out]
                g = dp[n, h_out, w_out]
                for j in range(win.f_w):
                    w = left + j
                    if w < 0 or w >= W:
                        continue
                    k = np.int32(i * win.f_w + j)
                    d = dx[n, h, w]
                    for c in range(C):  # adding an exact +0 elsewhere keeps the bits (sums are never -0)
                        gc = g[c]  # loaded unconditionally: a conditional load becomes a masked one
                        d[c] += gc if a[c] == k else zero


@njit(parallel=True, cache=True)
def max_backward_bands(dp, x, win, dx):
    """Windows that do not overlap in rows (stride_h >= f_h): output row h_out owns the band of
    dx rows from its window's top to the next window's top, finds each window's argmax and
    puts the gradient there in one pass (no argmax buffer)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    zero = dx.dtype.type(0)
    for t in prange(N * H_out):
        n, h_out = t // H_out, t % H_out
        top = h_out * win.stride_h - win.pad_top
        band0 = 0 if h_out == 0 else top
        band1 = H if h_out == H_out - 1 else min(top + win.stride_h, H)
        for h in range(band0, band1):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = zero
        h0, h1 = max(top, 0), min(top + win.f_h, H)
        buf_a, buf_b = np.empty(C, x.dtype), np.empty(C, x.dtype)
        arg_a, arg_b, a = np.empty(C, np.int32), np.empty(C, np.int32), np.empty(C, np.int32)
        for w_out in range(W_out):
            left = w_out * win.stride_w - win.pad_left
            w0, w1 = max(left, 0), min(left + win.f_w, W)
            window_argmax(x, n, top, h0, h1, left, w0, w1, win.f_w, buf_a, buf_b, arg_a, arg_b, a)
            g = dp[n, h_out, w_out]
            for h in range(h0, h1):
                for w in range(w0, w1):
                    k = np.int32((h - top) * win.f_w + (w - left))
                    d = dx[n, h, w]
                    for c in range(C):
                        gc = g[c]
                        d[c] += gc if a[c] == k else zero


def max_pool2d_forward_argmax(x, win, p, arg):
    max_forward_rows(x, win, p)
    max_argmax_rows(x, win, arg)


def max_pool2d_backward_argmax(dp, arg, win, dx):
    max_backward_gather_rows(dp, arg, win, dx)


def max_pool2d_backward(dp, x, win, dx):
    if win.stride_h >= win.f_h:
        max_backward_bands(dp, x, win, dx)
    else:  # overlapping rows: argmax of every window first, then each dx row gathers
        arg = np.empty(dp.shape, np.int32)
        max_argmax_rows(x, win, arg)
        max_backward_gather_rows(dp, arg, win, dx)


# --------------------------------------------------------------------------- average


@njit(parallel=True, cache=True)
def avg_forward_rows(x, win, p):
    """``p[n, h_out, w_out, :] = mean of the window's real cells``, one output row per task."""
    N, H_out, W_out, C = p.shape
    H, W = x.shape[1], x.shape[2]
    zero = p.dtype.type(0)
    for t in prange(N * H_out):
        n, h_out = t // H_out, t % H_out
        top = h_out * win.stride_h - win.pad_top
        h0, h1 = max(top, 0), min(top + win.f_h, H)
        for w_out in range(W_out):
            left = w_out * win.stride_w - win.pad_left
            w0, w1 = max(left, 0), min(left + win.f_w, W)
            out = p[n, h_out, w_out]
            for c in range(C):
                out[c] = zero
            for h in range(h0, h1):
                for w in range(w0, w1):
                    cell = x[n, h, w]
                    for c in range(C):
                        out[c] += cell[c]
            count = p.dtype.type((h1 - h0) * (w1 - w0))
            for c in range(C):
                out[c] = out[c] / count


def avg_pool2d_forward(x, win, p):
    avg_forward_rows(x, win, p)


@njit(parallel=True, cache=True)
def avg_backward_gather_rows(dp, win, dx):
    """Each dx row ``(n, h)`` is one prange task: it adds ``dp / count`` of every window
    covering it, windows in ascending order (as the readable kernel)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    zero = dx.dtype.type(0)
    for t in prange(N * H):
        n, h = t // H, t % H
        for w in range(W):
            for c in range(C):
                dx[n, h, w, c] = zero
        share = np.empty(C, dx.dtype)
        h_first, h_stop = windows_covering(h, win.pad_top, win.f_h, win.stride_h, H_out)
        for h_out in range(h_first, h_stop):
            top = h_out * win.stride_h - win.pad_top
            rows = min(top + win.f_h, H) - max(top, 0)
            for w_out in range(W_out):
                left = w_out * win.stride_w - win.pad_left
                w0, w1 = max(left, 0), min(left + win.f_w, W)
                count = dx.dtype.type(rows * (w1 - w0))
                g = dp[n, h_out, w_out]
                for c in range(C):
                    share[c] = g[c] / count
                for w in range(w0, w1):
                    d = dx[n, h, w]
                    for c in range(C):
                        d[c] += share[c]


def avg_pool2d_backward(dp, win, dx):
    avg_backward_gather_rows(dp, win, dx)

