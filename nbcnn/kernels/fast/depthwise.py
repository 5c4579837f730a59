"""Depthwise convolution forward and backward, vectorised over channels: rows of C numbers at a time.

The readable kernel (``kernels/depthwise.py``) computes one output number at a time: a
3x3 window of one channel, 9 multiply-adds between bounds checks, reading ``x`` with a stride
of C. Nothing there is a contiguous loop, so LLVM does not vectorise it (measured ~0.2-0.4
GMAC/s on the tiny face detector's layers). Here each parallel task owns one output row
``z[n, h_out]`` (W_out x C numbers), starts it at the bias, and adds the taps one at a time::

    for (n, h_out) in every output row:                 # in parallel
        z[n, h_out, :, :] = b
        for i, j in the taps whose input row/column lies inside x:
            for w_out in the columns where tap j reads inside x:
                z[n, h_out, w_out, :] += x[n, h_in, w_in, :] * W[i, j, :]   # C contiguous: SIMD

The bounds are worked out per tap, not per number, so the innermost loop is a plain
contiguous multiply-add over channels. Each output number adds the same products in the same
order (bias, then taps row by row) as the readable cell, so the two agree to rounding of the
fused multiply-add. The output row stays in L1/L2 while its 9 taps pass over it.
"""

import numpy as np
from numba import njit, prange

from ...backend import note_route
from ..indexing import outputs_reading_inside, windows_covering

_JIT = dict(parallel=True, cache=True, fastmath={"contract"})


@njit(**_JIT)
def _depthwise_rows(x, W, b, f_h, f_w, stride_h, stride_w, pad_top, pad_left, z):
    N, H, W_in, C = x.shape
    _, H_out, W_out, _ = z.shape
    for row in prange(N * H_out):
        n = row // H_out
        h_out = row % H_out
        out = z[n, h_out]  # (W_out, C): one view per task
        for w_out in range(W_out):
            out[w_out, :] = b
        for i in range(f_h):
            h_in = h_out * stride_h - pad_top + i
            if h_in < 0 or h_in >= H:
                continue  # a row of zero padding adds nothing
            src = x[n, h_in]  # (W_in, C)
            for j in range(f_w):
                # the output columns whose tap j reads inside x: 0 <= w_out * stride_w - pad_left + j < W_in
                first, stop = outputs_reading_inside(j, pad_left, stride_w, W_in, W_out)
                tap = W[i, j]
                for w_out in range(first, stop):
                    w_in = w_out * stride_w - pad_left + j
                    for c in range(C):
                        out[w_out, c] += src[w_in, c] * tap[c]


def depthwise_forward(x, W, b, win, z):
    """Same arguments and output as ``kernels.depthwise.depthwise_forward``."""
    note_route("rows x channels (SIMD)")
    _depthwise_rows(x, W, b, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left, z)


# --------------------------------------------------------------------------- backward
# The readable backward kernels gather one number at a time, as the forward does, and are as
# far from vectorising: on (8, 56, 56, 64) they took ~170x the fast forward. The same
# row-and-channel-vector restructuring works for both gradients.


@njit(**_JIT)
def _depthwise_dx_rows(dz, W, f_w, stride_h, stride_w, pad_top, pad_left, f_h, dx):
    N, H, W_in, C = dx.shape
    _, H_out, W_out, _ = dz.shape
    for row in prange(N * H):
        n = row // H
        h_in = row % H
        out = dx[n, h_in]  # (W_in, C): this task's row, written by no other
        out[:, :] = 0
        h_first, h_stop = windows_covering(h_in, pad_top, f_h, stride_h, H_out)
        for h_out in range(h_first, h_stop):
            i = h_in + pad_top - h_out * stride_h  # the filter row that touched h_in
            grad = dz[n, h_out]  # (W_out, C)
            for j in range(f_w):
                # the output columns whose tap j read inside x: they send grad * W[i, j] back there
                first, stop = outputs_reading_inside(j, pad_left, stride_w, W_in, W_out)
                tap = W[i, j]
                for w_out in range(first, stop):
                    w_in = w_out * stride_w - pad_left + j
                    for c in range(C):
                        out[w_in, c] += grad[w_out, c] * tap[c]


def depthwise_backward_input(dz, W, win, dx):
    """dX, each task owning one input row ``dx[n, h_in]``::

        for (n, h_in) in every input row:                            # in parallel
            dx[n, h_in] = 0
            for h_out whose window covers h_in (filter row i), for every tap j:
                for w_out whose tap j lies inside x:
                    dx[n, h_in, w_in, :] += dz[n, h_out, w_out, :] * W[i, j, :]     # C contiguous

    Same arguments and output as ``kernels.depthwise.depthwise_backward_input``; each cell sums
    the same products, in another order (by window row, then tap, instead of by window).
    """
    note_route("rows x channels (SIMD)")
    _depthwise_dx_rows(dz, W, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left, win.f_h, dx)


DW_PARTS = 16
"""dW is summed in this many fixed slices of output rows (not one per thread), then the slices
are added in order: the same bits every run, whatever the number of threads."""


@njit(**_JIT)
def _depthwise_dw_parts(x, dz, f_h, f_w, stride_h, stride_w, pad_top, pad_left, parts):
    N, H, W_in, C = x.shape
    _, H_out, W_out, _ = dz.shape
    P = parts.shape[0]
    rows = N * H_out
    for t in prange(P):
        acc = parts[t]  # (f_h, f_w, C): this slice's partial dW
        acc[:, :, :] = 0
        for row in range(t * rows // P, (t + 1) * rows // P):
            n = row // H_out
            h_out = row % H_out
            grad = dz[n, h_out]  # (W_out, C)
            for i in range(f_h):
                h_in = h_out * stride_h - pad_top + i
                if h_in < 0 or h_in >= H:
                    continue  # this tap sat on padding: zero input, zero gradient
                src = x[n, h_in]
                for j in range(f_w):
                    first, stop = outputs_reading_inside(j, pad_left, stride_w, W_in, W_out)
                    tap = acc[i, j]
                    for w_out in range(first, stop):
                        w_in = w_out * stride_w - pad_left + j
                        for c in range(C):
                            tap[c] += src[w_in, c] * grad[w_out, c]


@njit(cache=True)
def _fold_parts(parts, out):
    """``out = parts[0] + parts[1] + ...`` in that order."""
    out[:, :, :] = parts[0]
    for t in range(1, parts.shape[0]):
        out += parts[t]


def depthwise_backward_filter(x, dz, win, dW):
    """dW from ``DW_PARTS`` partial sums over slices of output rows, computed in parallel, each a
    vector loop over channels, then added in a fixed order::

        for slice t (in parallel), for (n, h_out) in its rows, for every tap (i, j) inside x:
            part[t, i, j, :] += sum over w_out of x[n, h_in, w_in, :] * dz[n, h_out, w_out, :]
        dW = part[0] + part[1] + ... + part[DW_PARTS - 1]

    Same arguments and output as ``kernels.depthwise.depthwise_backward_filter``.
    """
    note_route("row slices x channels (SIMD)")
    parts = np.empty((DW_PARTS,) + dW.shape, dW.dtype)
    _depthwise_dw_parts(x, dz, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left, parts)
    _fold_parts(parts, dW)
