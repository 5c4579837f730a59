"""Fast CPU max pooling: forward (with or without the argmax) and backward (with or without
the forward's argmax), the results of ``nbcnn/kernels/pool.py``'s loop nests, bit for bit.

The layouts ("flat" rows for few channels, "wide" channels-innermost for many), the row
helpers, the thread launcher and the rules every fast pooling kernel keeps (same bits, ties
to the first maximum, NaN wins, no two tasks write one cell) are in ``pool_rows.py``. What
the max kernels add:

1. **A search that keeps its argmax, as selects** (``_take``): the value and its cell number
   ride along in one vector loop, the argmax costs one more select per cell, not a pass. The
   flat rows run one pass per window row through two scratch rows (``_max_row_pass``); the
   wide rows one vector loop per window and cell over the channels (``_max_row_wide``, from
   WIDE_C_MAX = 32 channels: at 16 LLVM left the loop scalar, with branches).
2. **Whole 2x2 and 3x3 windows in one loop** (``_max_2x2``, ``_max_3x3``,
   ``_max_window_wide``): one store per output instead of a pass per window row, where no
   padding is involved. For float32 whose channels fill whole vectors of ``simd.LANES``
   (16 on AVX-512, 8 on AVX2) and windows that all lie inside the image (the bench's and
   LeNet's C = 16 pools, ResNet's 3x3 stride-2 pool without padding), any window runs in
   explicit vectors instead (``_max_rows_vectors``, ``simd.take_max``): one pass over the
   outputs, the value and its cell number in registers, no full-resolution rows.
3. **Max backward from the argmax, as PyTorch does it.** Windows that do not overlap: each
   dx cell is written once, ``0 + dp`` where its window's argmax points at it, else 0 (a
   vector select per cell, C >= WIDE_C = 16; for float32 spelled out with
   ``simd.keep_where_eqv``, ``simd.LANES`` channels per compare: ``_max_back_tiles_wide``), or dx is
   zeroed and each window's gradient stored on its argmax cell (``_max_back_scatter``: one
   scalar store per *output* number, few channels). Overlapping windows: the scatter adds,
   one image per task, rows in ascending order. Without the forward's argmax, the backward
   runs the forward kernel to find it first.

An argmax value that is out of range or points at padding sends no gradient (as the readable
gather): no store ever leaves dx.

Measured (AMD Zen 3, 2 cores, nbcnn bench, separate processes; x torch 2.13 CPU): forward
1.4-2.7x, backward 0.7-1.2x on pool32x16 / pool112x64; on LeNet's pools the backward 0.6x
(C = 6 leaves only the scalar scatter) and the forward within the 1.0-4.7x measured for
LeNet's max forward and average kernels together. Intel Sapphire Rapids, one thread each
(``nbcnn bench --threads 1``), GB/s: the vector route took the forward from 12.6-13.0 to
19.6-20.0 on pool32x16 and 19.1-20.3 to 26.3-26.7 on pool112x64 (2.8-4.6x torch); as fast
with 8 lanes as with 16 (18.7-19.6, 22.5-25.6): pooling is memory-bound, one pass instead
of two is what counts, not the vector width. The backward is unchanged (25-26 GB/s on
pool32x16, about a plain copy's 28).
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload, register_jitable

from ...backend import note_route
from .. import pool as readable
from .pool_rows import (WIDE_C, _chunk, _compact, _inside, _launch, cell_offsets, spans_far_past_the_image,
                        stride_map, whole_vectors_inside)
from .simd import LANES, keep_where_eq8, keep_where_eqv, load8, loadv, splat_atv, store8, storev, take_max


# --------------------------------------------------------------------------- forward


@register_jitable
def _take(best, arg, v, k):
    """One step of the search: keep ``(best, arg)`` on ties and when best is NaN already, else
    take ``(v, k)`` (so a new NaN wins): the first maximum in row-major order, as
    ``pool.window_argmax``."""
    keep = (best != best) | (v <= best)
    return (best if keep else v), (arg if keep else k)


@register_jitable
def _max_row_pass(row, C, W, f_w, pad_left, W_full, q_in0, q_in1, k_row, src_v, src_a, dst_v, dst_a):
    """``dst = src`` followed by the f_w cells of one window row, in order, at every position q
    of a full-resolution output row: cell j is column ``q - pad_left + j``, numbered
    ``k_row + j``. Positions ``[q_in0, q_in1)`` have every column inside the image: one flat
    vector loop; the few others (padding) run cell by cell."""
    L = (q_in1 - q_in0) * C
    if L > 0:
        at, base = q_in0 * C, (q_in0 - pad_left) * C
        sv, sa, dv, da = src_v[at:at + L], src_a[at:at + L], dst_v[at:at + L], dst_a[at:at + L]
        r0 = row[base:base + L]
        # cell numbers as int32, like the arrays: an int64 among them makes every lane 64-bit
        k1, k2 = np.int32(k_row + 1), np.int32(k_row + 2)
        if f_w == 1:
            for m in range(L):
                b, a = _take(sv[m], sa[m], r0[m], k_row)
                dv[m] = b
                da[m] = a
        elif f_w == 2:
            r1 = row[base + C:base + C + L]
            for m in range(L):
                b, a = _take(sv[m], sa[m], r0[m], k_row)
                b, a = _take(b, a, r1[m], k1)
                dv[m] = b
                da[m] = a
        elif f_w == 3:
            r1, r2 = row[base + C:base + C + L], row[base + 2 * C:base + 2 * C + L]
            for m in range(L):
                b, a = _take(sv[m], sa[m], r0[m], k_row)
                b, a = _take(b, a, r1[m], k1)
                b, a = _take(b, a, r2[m], k2)
                dv[m] = b
                da[m] = a
        else:  # wider windows: one pass per cell, in place after the first (slower, rare)
            for m in range(L):
                b, a = _take(sv[m], sa[m], r0[m], k_row)
                dv[m] = b
                da[m] = a
            for j in range(1, f_w):
                rj = row[base + j * C:base + j * C + L]
                kj = np.int32(k_row + j)
                for m in range(L):
                    b, a = _take(dv[m], da[m], rj[m], kj)
                    dv[m] = b
                    da[m] = a
    for q in range(W_full):  # positions whose window pokes into the left or right padding
        if q_in0 <= q < q_in1:
            continue
        for c in range(C):
            b, a = src_v[q * C + c], src_a[q * C + c]
            for j in range(f_w):
                w = q - pad_left + j
                if 0 <= w < W:
                    b, a = _take(b, a, row[w * C + c], np.int32(k_row + j))
            dst_v[q * C + c] = b
            dst_a[q * C + c] = a


@register_jitable
def _max_2x2(r0, r1, C, L, dv, da):
    """A whole 2x2 window in one flat pass, cells (0,0) (0,1) (1,0) (1,1) in order: ``r0``/``r1``
    are the window's two rows from its first column on (the common LeNet/VGG case)."""
    a0, a1, b0, b1 = r0[:L], r0[C:C + L], r1[:L], r1[C:C + L]
    for m in range(L):
        b, a = a0[m], np.int32(0)
        b, a = _take(b, a, a1[m], np.int32(1))
        b, a = _take(b, a, b0[m], np.int32(2))
        b, a = _take(b, a, b1[m], np.int32(3))
        dv[m] = b
        da[m] = a


@register_jitable
def _max_3x3(r0, r1, r2, C, L, dv, da):
    """A whole 3x3 window in one flat pass (AlexNet's, ResNet's stem pool without padding)."""
    a0, a1, a2 = r0[:L], r0[C:C + L], r0[2 * C:2 * C + L]
    b0, b1, b2 = r1[:L], r1[C:C + L], r1[2 * C:2 * C + L]
    c0, c1, c2 = r2[:L], r2[C:C + L], r2[2 * C:2 * C + L]
    for m in range(L):
        b, a = a0[m], np.int32(0)
        b, a = _take(b, a, a1[m], np.int32(1))
        b, a = _take(b, a, a2[m], np.int32(2))
        b, a = _take(b, a, b0[m], np.int32(3))
        b, a = _take(b, a, b1[m], np.int32(4))
        b, a = _take(b, a, b2[m], np.int32(5))
        b, a = _take(b, a, c0[m], np.int32(6))
        b, a = _take(b, a, c1[m], np.int32(7))
        b, a = _take(b, a, c2[m], np.int32(8))
        dv[m] = b
        da[m] = a


@njit(cache=True)
def _max_rows_flat(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg):
    """Output rows t0..t1-1 (t = n*H_out + h_out): ``p`` and, when with_arg, ``arg``, through
    full-resolution flat rows (few channels)."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    xf = x.reshape(N, H, W * C)
    pf = p.reshape(N, H_out, W_out * C)
    af = arg.reshape(arg.shape[0], arg.shape[1], arg.shape[2] * arg.shape[3])
    idx = stride_map(W_out, C, s_w)
    W_full = (W_out - 1) * s_w + 1  # stride-1 positions up to the last output's
    L = W_full * C
    q_in0 = min(pad_left, W_full)  # positions whose window lies inside the columns
    q_in1 = max(min(W - f_w + 1 + pad_left, W_full), q_in0)
    # two buffers: each pass reads one row and writes the other (in place, a select whose
    # else-branch stores back what it loaded becomes a masked store: 3-4x slower on AMD Zen)
    bv, ba = np.empty((2, L), x.dtype), np.empty((2, L), np.int32)
    lowest = x.dtype.type(-np.inf)
    whole = q_in0 == 0 and q_in1 == W_full and f_h == f_w and (f_w == 2 or f_w == 3)
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        top = h_out * s_h - pad_top
        h0, h1 = max(top, 0), min(top + f_h, H)  # the window's real rows (padding never wins)
        last = 0
        if whole and h1 - h0 == f_h:  # no padding in this window row: all cells in one pass
            if f_w == 2:
                _max_2x2(xf[n, h0], xf[n, h0 + 1], C, L, bv[0], ba[0])
            else:
                _max_3x3(xf[n, h0], xf[n, h0 + 1], xf[n, h0 + 2], C, L, bv[0], ba[0])
        else:
            # Start from -inf "at" the window's first real cell: any real cell replaces it,
            # except -inf itself, and then that first cell is the answer anyway.
            k_first = np.int32((h0 - top) * f_w)
            va, aa = bv[0], ba[0]
            for m in range(L):
                va[m] = lowest
                aa[m] = k_first
            for q in range(q_in0):  # left padding: the first real column is pad_left - q
                for c in range(C):
                    aa[q * C + c] = np.int32(k_first + pad_left - q)
            for h in range(h0, h1):
                src, last = (h - h0) % 2, (h - h0 + 1) % 2
                _max_row_pass(xf[n, h], C, W, f_w, pad_left, W_full, q_in0, q_in1, np.int32((h - top) * f_w),
                              bv[src], ba[src], bv[last], ba[last])
        _compact(bv[last], idx, C, s_w, pf[n, h_out])
        if with_arg:
            _compact(ba[last], idx, C, s_w, af[n, h_out])


@register_jitable
def _max_row_wide(row, W, f_w, s_w, pad_left, o_in0, o_in1, k_row, sv, sa, dv, da):
    """``_max_row_pass`` for many channels: window o of this row is ``row[o*s_w - pad_left + j, :]``
    (a 2-D (W, C) view), channels innermost, so one vector loop per window and cell."""
    W_out, C = dv.shape
    k1, k2 = np.int32(k_row + 1), np.int32(k_row + 2)
    for o in range(o_in0, o_in1):
        w = o * s_w - pad_left
        if f_w == 2:
            for c in range(C):
                b, a = _take(sv[o, c], sa[o, c], row[w, c], k_row)
                b, a = _take(b, a, row[w + 1, c], k1)
                dv[o, c] = b
                da[o, c] = a
        elif f_w == 3:
            for c in range(C):
                b, a = _take(sv[o, c], sa[o, c], row[w, c], k_row)
                b, a = _take(b, a, row[w + 1, c], k1)
                b, a = _take(b, a, row[w + 2, c], k2)
                dv[o, c] = b
                da[o, c] = a
        else:  # other widths: a pass per cell, in place after the first
            for c in range(C):
                b, a = _take(sv[o, c], sa[o, c], row[w, c], k_row)
                dv[o, c] = b
                da[o, c] = a
            for j in range(1, f_w):
                kj = np.int32(k_row + j)
                for c in range(C):
                    b, a = _take(dv[o, c], da[o, c], row[w + j, c], kj)
                    dv[o, c] = b
                    da[o, c] = a
    for o in range(W_out):  # windows that poke into the padding: their real cells only
        if o_in0 <= o < o_in1:
            continue
        for c in range(C):
            dv[o, c] = sv[o, c]
            da[o, c] = sa[o, c]
        for j in range(f_w):
            w = o * s_w - pad_left + j
            if 0 <= w < W:
                kj = np.int32(k_row + j)
                for c in range(C):
                    b, a = _take(dv[o, c], da[o, c], row[w, c], kj)
                    dv[o, c] = b
                    da[o, c] = a


@register_jitable
def _max_window_wide(x, n, h, w, f_w, C, out_v, out_a, o):
    """2x2 or 3x3 window at row h, column w, all cells in order, channels innermost."""
    if f_w == 2:
        for c in range(C):
            b, a = x[n, h, w, c], np.int32(0)
            b, a = _take(b, a, x[n, h, w + 1, c], np.int32(1))
            b, a = _take(b, a, x[n, h + 1, w, c], np.int32(2))
            b, a = _take(b, a, x[n, h + 1, w + 1, c], np.int32(3))
            out_v[o, c] = b
            out_a[o, c] = a
    else:
        for c in range(C):
            b, a = x[n, h, w, c], np.int32(0)
            b, a = _take(b, a, x[n, h, w + 1, c], np.int32(1))
            b, a = _take(b, a, x[n, h, w + 2, c], np.int32(2))
            b, a = _take(b, a, x[n, h + 1, w, c], np.int32(3))
            b, a = _take(b, a, x[n, h + 1, w + 1, c], np.int32(4))
            b, a = _take(b, a, x[n, h + 1, w + 2, c], np.int32(5))
            b, a = _take(b, a, x[n, h + 2, w, c], np.int32(6))
            b, a = _take(b, a, x[n, h + 2, w + 1, c], np.int32(7))
            b, a = _take(b, a, x[n, h + 2, w + 2, c], np.int32(8))
            out_v[o, c] = b
            out_a[o, c] = a


@njit(cache=True)
def _max_rows_wide(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg):
    """Output rows t0..t1-1, one window after the other, channels innermost (C >= WIDE_C_MAX)."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    o_in0, o_in1 = _inside(W, W_out, f_w, s_w, pad_left)
    va, aa = np.empty((W_out, C), x.dtype), np.empty((W_out, C), np.int32)
    vb, ab = np.empty((W_out, C), x.dtype), np.empty((W_out, C), np.int32)
    lowest = x.dtype.type(-np.inf)
    whole = o_in0 == 0 and o_in1 == W_out and f_h == f_w and (f_w == 2 or f_w == 3)
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        top = h_out * s_h - pad_top
        h0, h1 = max(top, 0), min(top + f_h, H)
        if whole and h1 - h0 == f_h:  # no padding in this window row: all cells in one pass
            out_v, out_a = p[n, h_out], (arg[n, h_out] if with_arg else aa)
            for o in range(W_out):
                _max_window_wide(x, n, h0, o * s_w - pad_left, f_w, C, out_v, out_a, o)
            continue
        k_first = (h0 - top) * f_w  # -inf "at" the first real cell, as in _max_rows_flat
        for o in range(W_out):
            k = np.int32(k_first + max(pad_left - o * s_w, 0))
            for c in range(C):
                va[o, c] = lowest
                aa[o, c] = k
        for h in range(h0, h1):
            k_row = np.int32((h - top) * f_w)
            if (h - h0) % 2 == 0:
                _max_row_wide(x[n, h], W, f_w, s_w, pad_left, o_in0, o_in1, k_row, va, aa, vb, ab)
            else:
                _max_row_wide(x[n, h], W, f_w, s_w, pad_left, o_in0, o_in1, k_row, vb, ab, va, aa)
        odd = (h1 - h0) % 2 == 1
        out = p[n, h_out]
        for o in range(W_out):
            for c in range(C):
                out[o, c] = vb[o, c] if odd else va[o, c]
        if with_arg:
            out_a = arg[n, h_out]
            for o in range(W_out):
                for c in range(C):
                    out_a[o, c] = ab[o, c] if odd else aa[o, c]


@njit(cache=True)
def _max_rows_vectors(t0, t1, x, f_h, f_w, s_h, s_w, p, arg, with_arg):
    """Output rows t0..t1-1 for float32 whose channels fill whole vectors and whose windows all
    lie inside the image: each window's cells in row-major order, ``LANES`` channels at a time
    in explicit vectors (``simd.take_max``: the value and its cell number stay in registers,
    one store each per output; no scratch rows, no full-resolution pass)."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    xf, pf = x.reshape(-1), p.reshape(-1)
    af = arg.reshape(-1).view(np.float32)  # cell numbers kept as their bits (simd.take_max)
    cells = f_h * f_w
    kbits = np.arange(cells).astype(np.int32).view(np.float32)
    offset = cell_offsets(f_h, f_w, W, C)  # cell k's place from the window's corner
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        row = (n * H + h_out * s_h) * W * C
        for o in range(W_out):
            corner, out = row + o * s_w * C, (t * W_out + o) * C
            for c in range(0, C, LANES):
                best, best_k = loadv(xf, corner + c), splat_atv(kbits, 0)
                for k in range(1, cells):
                    best, best_k = take_max(best, best_k, loadv(xf, corner + offset[k] + c), splat_atv(kbits, k))
                storev(pf, out + c, best)
                if with_arg:
                    storev(af, out + c, best_k)


# The max forward's channel loop does two selects per cell; LLVM vectorises it only from 32
# channels (at 16 it ran scalar, with branches: 7x slower than the flat rows on pool32x16).
WIDE_C_MAX = 32


@njit(parallel=True, cache=True)
def _max_flat_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _max_rows_flat(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg)


@njit(parallel=True, cache=True)
def _max_vectors_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _max_rows_vectors(t0, t1, x, f_h, f_w, s_h, s_w, p, arg, with_arg)


@njit(parallel=True, cache=True)
def _max_wide_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _max_rows_wide(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, arg, with_arg)


_NO_ARG = np.empty((1, 1, 1, 1), np.int32)


def _max_forward(x, win, p, arg, with_arg, touched):
    if whole_vectors_inside(x, win, p, LANES):
        note_route(f"{LANES}-lane vectors")
        _launch(_max_vectors_parallel, touched, x, *win, p, arg, with_arg)
    elif x.shape[3] >= WIDE_C_MAX:
        note_route("channels innermost")
        _launch(_max_wide_parallel, touched, x, *win, p, arg, with_arg)
    else:
        note_route("flat rows")
        _launch(_max_flat_parallel, touched, x, *win, p, arg, with_arg)


def max_pool2d_forward(x, win, p):
    if spans_far_past_the_image(x.shape, win, p.shape):
        note_route("readable loop (huge window)")
        readable.MAX_FORWARD.naive_cpu(x, win, p)
        return
    _max_forward(x, win, p, _NO_ARG, False, x.size + p.size)


def max_pool2d_forward_argmax(x, win, p, arg):
    if spans_far_past_the_image(x.shape, win, p.shape):
        note_route("readable loop (huge window)")
        readable.MAX_ARGMAX.naive_cpu(x, win, p, arg)
        return
    _max_forward(x, win, p, arg, True, x.size + 2 * p.size)


# --------------------------------------------------------------------------- backward


@register_jitable
def _max_scatter_edge(plane, g, a, n_cells, o0, o1, top, H, W, C, f_w, s_w, pad_left, add):
    """``_max_scatter_row`` for windows o0..o1-1 that reach into the padding: real cells only."""
    zero = plane.dtype.type(0)
    for o in range(o0, o1):
        left = o * s_w - pad_left
        for c in range(C):
            k = a[o * C + c]
            if 0 <= k < n_cells:
                h, w = top + k // f_w, left + k % f_w
                if 0 <= h < H and 0 <= w < W:
                    i = np.uint64((h * W + w) * C + c)
                    plane[i] = (plane[i] if add else zero) + g[o * C + c]


@register_jitable
def _max_scatter_row(plane, g, a, n_cells, offset, corner, top, H, W, C, f_w, s_w, pad_left, o_in0, o_in1,
                     rows_inside, add):
    """Each window of one output row, left to right, puts its gradient on its argmax cell of
    the image plane (``+=`` when windows overlap, ``= 0 + dp`` into zeros when they do not:
    the readable sum's bits, a -0.0 landing as +0.0). ``g``, ``a``: the row's dp and argmax,
    flat; ``corner[m]``: where flat output m's window starts in an image row. A cell number
    out of range or on the padding sends nothing, as the readable gather would: no store
    ever leaves the plane."""
    W_out = g.shape[0] // C
    if not rows_inside:
        _max_scatter_edge(plane, g, a, n_cells, 0, W_out, top, H, W, C, f_w, s_w, pad_left, add)
        return
    _max_scatter_edge(plane, g, a, n_cells, 0, o_in0, top, H, W, C, f_w, s_w, pad_left, add)
    zero = plane.dtype.type(0)
    i0, i1 = o_in0 * C, o_in1 * C
    base = top * W * C
    gg, aa, cc = g[i0:i1], a[i0:i1], corner[i0:i1]
    if add:  # windows with every cell real: one flat loop, one unsigned test per number
        for m in range(i1 - i0):
            k = np.uint32(aa[m])
            if k < n_cells:
                plane[np.uint64(base + cc[m] + offset[k])] += gg[m]
    else:
        for m in range(i1 - i0):
            k = np.uint32(aa[m])
            if k < n_cells:
                plane[np.uint64(base + cc[m] + offset[k])] = zero + gg[m]
    _max_scatter_edge(plane, g, a, n_cells, o_in1, W_out, top, H, W, C, f_w, s_w, pad_left, add)


@njit(cache=True)
def _max_back_scatter(t0, t1, dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx):
    """Max backward as PyTorch does it: zero dx, then put each window's gradient on its argmax
    cell, one scalar store per *output* number instead of a vector pass per dx number.

    Windows that do not overlap (stride >= f both ways): task t is output row (n, h_out); it
    owns the dx rows from its windows' top to the next row's top, and each dx cell gets at
    most one window's gradient. Overlapping windows: task t is image n, its output rows in
    ascending order, so a dx cell sums its windows in the readable order (rows, then columns)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    planes = dx.reshape(N, H * W * C)
    o_in0, o_in1 = _inside(W, W_out, f_w, s_w, pad_left)
    cells = f_h * f_w
    offset = np.empty(cells, np.int64)  # cell k -> its place in the plane, from the window's corner
    for k in range(cells):
        offset[k] = ((k // f_w) * W + k % f_w) * C
    n_cells = np.uint32(cells)
    corner = np.empty(W_out * C, np.int64)
    for o in range(W_out):
        for c in range(C):
            corner[o * C + c] = (o * s_w - pad_left) * C + c
    gf, af = dp.reshape(N, H_out, W_out * C), arg.reshape(N, H_out, W_out * C)
    zero = dx.dtype.type(0)
    overlap = s_h < f_h or s_w < f_w
    for t in range(t0, t1):
        if overlap:
            n, first, stop = t, 0, H_out
        else:
            n, first = t // H_out, t % H_out
            stop = first + 1
        plane = planes[n]
        zeroed = 0 if overlap or first == 0 else first * s_h - pad_top  # rows [band start, zeroed) are zero
        for h_out in range(first, stop):
            top = h_out * s_h - pad_top
            # zero the rows this window row reaches (all the rest of the band after the last row),
            # just before the stores: they are still in cache when the gradients land
            reach = H if h_out == H_out - 1 else (min(top + f_h, H) if overlap else min(top + s_h, H))
            if reach > zeroed:
                band = plane[zeroed * W * C:reach * W * C]
                for m in range(band.shape[0]):
                    band[m] = zero
                zeroed = reach
            _max_scatter_row(plane, gf[n, h_out], af[n, h_out], n_cells, offset, corner, top, H, W, C, f_w, s_w,
                             pad_left, o_in0, o_in1, top >= 0 and top + f_h <= H, overlap)


def _route_cell(d, at, g, a, src, k, C):
    """``d[at + c] = 0 + (g[src + c] if a[src + c] == k else 0)`` for c < C: the C channels
    of one window cell get their window's gradient where its argmax points at the cell."""


@register_jitable
def _route_cell_scalar(d, at, g, a, src, k, C):
    zero = d.dtype.type(0)
    dd, gg, aa = d[at:], g[src:], a[src:]
    for c in range(C):
        gc = gg[c]  # loaded unconditionally: a conditional load becomes a masked one
        dd[c] = zero + (gc if aa[c] == k else zero)


@overload(_route_cell, inline="always")
def _route_cell_impl(d, at, g, a, src, k, C):
    def vectors(d, at, g, a, src, k, C):
        # float32: LANES channels per compare + blend (simd.keep_where_eqv). LLVM's own
        # vectorisation of the scalar loop ran 2x slower on pool32x16 (C = 16: two vectors
        # per cell, and the loop's set-up and remainder checks around them every time).
        if C % LANES == 0:
            for c in range(0, C, LANES):
                storev(d, at + c, keep_where_eqv(loadv(g, src + c), a, src + c, k))
        else:  # 8-lane vectors, then single channels (16 lanes would leave up to 15 to the scalar loop)
            whole = C - C % 8
            for c in range(0, whole, 8):
                store8(d, at + c, keep_where_eq8(load8(g, src + c), a, src + c, k))
            if whole < C:
                _route_cell_scalar(d, at + whole, g, a, src + whole, k, C - whole)

    if d.dtype == types.float32 and g.dtype == types.float32 and a.dtype == types.int32:
        return vectors
    return _route_cell_scalar


@njit(cache=True)
def _max_back_tiles_wide(t0, t1, dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx):
    """Max backward, windows that do not overlap, many channels: every dx cell of output row
    t's band is written once, ``0 + dp`` where its window's argmax is that cell, else 0 (one
    vector select per cell and 8 channels; no zeroing pass, no scalar stores)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    zero = dx.dtype.type(0)
    covered = min(W_out * s_w - pad_left, W)  # columns [0, covered) are cells of a window when they tile
    tiles = s_w == f_w
    # flat views made once: views made per row cost atomic reference counts (a quarter of
    # the time on 64x32x32x16, against a loop over flat offsets)
    gf, af, df = dp.reshape(-1), arg.reshape(-1), dx.reshape(-1)
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        top = h_out * s_h - pad_top
        band0 = 0 if h_out == 0 else top
        band1 = H if h_out == H_out - 1 else min(top + s_h, H)
        g0 = (n * H_out + h_out) * W_out * C  # the output row's dp and argmax
        for h in range(band0, band1):
            row = (n * H + h) * W * C
            i = h - top
            if i >= f_h or not tiles:  # rows below the windows, or gaps between them: zeros first
                df[row:row + W * C] = zero
                if i >= f_h:
                    continue
            elif covered < W:
                df[row + covered * C:row + W * C] = zero
            for o in range(W_out):
                left = o * s_w - pad_left
                for j in range(f_w):
                    w = left + j
                    if 0 <= w < W:
                        k = np.int32(i * f_w + j)  # int32 like the argmax: 64-bit lanes would halve the vectors
                        _route_cell(df, row + w * C, gf, af, g0 + o * C, k, C)


@register_jitable
def _scatter_tasks(dp, f_h, f_w, s_h, s_w):
    """Output rows, or images when the windows overlap (see ``_max_back_scatter``)."""
    return dp.shape[0] * dp.shape[1] if s_h >= f_h and s_w >= f_w else dp.shape[0]


@njit(parallel=True, cache=True)
def _scatter_parallel(dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, _scatter_tasks(dp, f_h, f_w, s_h, s_w))
        _max_back_scatter(t0, t1, dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx)


@njit(parallel=True, cache=True)
def _tiles_parallel(dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, dp.shape[0] * dp.shape[1])
        _max_back_tiles_wide(t0, t1, dp, arg, f_h, f_w, s_h, s_w, pad_top, pad_left, dx)


def max_pool2d_backward_argmax(dp, arg, win, dx):
    if spans_far_past_the_image(dx.shape, win, dp.shape):
        note_route("readable loop (huge window)")
        readable.MAX_BACKWARD_ARGMAX.naive_cpu(dp, arg, win, dx)
        return
    touched = dp.size + arg.size + dx.size
    if dx.shape[3] >= WIDE_C and win.stride_h >= win.f_h and win.stride_w >= win.f_w:
        note_route("select per cell")
        _launch(_tiles_parallel, touched, dp, arg, *win, dx)
    else:
        note_route("scatter by argmax")
        _launch(_scatter_parallel, touched, dp, arg, *win, dx)


def max_pool2d_backward(dp, x, win, dx):
    """Without the forward's argmax: find it (the forward kernel), then route by it."""
    if spans_far_past_the_image(dx.shape, win, dp.shape):
        note_route("readable loop (huge window)")  # which also needs no int32 cell numbers
        readable.MAX_BACKWARD.naive_cpu(dp, x, win, dx)
        return
    arg = np.empty(dp.shape, np.int32)
    max_pool2d_forward_argmax(x, win, np.empty(dp.shape, x.dtype), arg)
    max_pool2d_backward_argmax(dp, arg, win, dx)
