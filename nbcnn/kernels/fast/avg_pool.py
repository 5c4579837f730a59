"""Fast CPU average pooling: forward and backward, the results of ``nbcnn/kernels/pool.py``'s
loop nests, bit for bit (the same sums in the same order, divided by the same count).

The layouts ("flat" rows for few channels, "wide" channels-innermost for many), the row
helpers, the thread launcher and the rules every fast pooling kernel keeps (same bits, no two
tasks write one cell) are in ``pool_rows.py``. What the average kernels add:

1. **Window rows added in one vector loop each** (``_add_row_pass``, flat: the 2 or 3 cells
   of a window row in one expression at every full-resolution position), and **whole 2x2 and
   3x3 windows summed in one loop** (``_avg_rows_wide``, where no padding is involved): one
   store per output instead of a pass per window row. The count divides once at the end
   (``column_counts`` for the flat rows), in the float type: float32 stays float32. For
   float32 whose channels fill whole vectors of ``simd.LANES`` and windows that all lie
   inside the image, any window is summed in explicit vectors (``_avg_rows_vectors``).
2. **Backward as a gather over dx rows**: task (n, h) takes the window rows covering image
   row h in ascending order, computes the shares ``0 + dp / count`` of a window row in one
   loop (once per window row and task, kept for the dx rows it covers), and adds them back
   at every stride-th pixel (``_scatter``, flat; ``_put_cell``, wide: for float32 in
   explicit ``simd.LANES``-lane vectors, 2x faster than LLVM's loop at C = 16). When the
   windows tile the row, the first window row writes instead of adding to zeros.
3. **Divisions that vectorise** (``DIVIDE``, below).

Measured (AMD Zen 3, 2 cores, nbcnn bench, separate processes; x torch 2.13 CPU): forward
0.85-3x on pool32x16 / pool112x64; LeNet's pools 1.0-4.7x (a range over LeNet's max forward
and average kernels together). Intel Sapphire Rapids, one thread each (``nbcnn bench
--threads 1``), GB/s: the backward 11.4-12.8 -> 18.2-19.1 on pool32x16 and 10.0-11.4 ->
15.3-16.5 on pool112x64 (1.9x / 2.5-2.8x torch; ``DIVIDE``), the forward 18.2-18.9 ->
19.7-20.4 on pool32x16 (the vector route) and 26-27 on pool112x64 (unchanged, about a
plain copy's rate). 8 and 16 lanes: the same within the noise.
"""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload, register_jitable

from ...backend import note_route
from ..indexing import windows_covering
from .. import pool as readable
from .pool_rows import (WIDE_C, _chunk, _compact, _inside, _launch, _scatter, cell_offsets, column_counts,
                        spans_far_past_the_image, stride_map, whole_vectors_inside)
from .simd import LANES, add8, div8, load8, loadv, splatv, store8, storev


# The kernels that divide compile with ``error_model="numpy"``: under Numba's default
# ("python") every float division tests its divisor for zero to raise ZeroDivisionError, and
# that branch keeps LLVM from vectorising the loop (the average backward's shares ran as
# scalar divisions: 0.23 -> 0.08 ms on pool32x16, one thread). A count is never zero here,
# and every other quotient has the same bits either way.
DIVIDE = "numpy"


# --------------------------------------------------------------------------- forward


@register_jitable
def _add_row_pass(row, C, W, f_w, pad_left, W_full, q_in0, q_in1, acc):
    """``acc += `` the f_w cells of one window row, in order, at every full-resolution position."""
    L = (q_in1 - q_in0) * C
    if L > 0:
        at, base = q_in0 * C, (q_in0 - pad_left) * C
        s, r0 = acc[at:at + L], row[base:base + L]
        if f_w == 2:
            r1 = row[base + C:base + C + L]
            for m in range(L):
                s[m] = (s[m] + r0[m]) + r1[m]
        elif f_w == 3:
            r1, r2 = row[base + C:base + C + L], row[base + 2 * C:base + 2 * C + L]
            for m in range(L):
                s[m] = ((s[m] + r0[m]) + r1[m]) + r2[m]
        else:
            for j in range(f_w):
                rj = row[base + j * C:base + j * C + L]
                for m in range(L):
                    s[m] += rj[m]
    for q in range(W_full):
        if q_in0 <= q < q_in1:
            continue
        for c in range(C):
            total = acc[q * C + c]
            for j in range(f_w):
                w = q - pad_left + j
                if 0 <= w < W:
                    total += row[w * C + c]
            acc[q * C + c] = total


@njit(cache=True, error_model=DIVIDE)
def _avg_rows_flat(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p):
    """Output rows t0..t1-1: the sum of each window's real cells in row-major order, / count."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    xf = x.reshape(N, H, W * C)
    pf = p.reshape(N, H_out, W_out * C)
    idx = stride_map(W_out, C, s_w)
    cols = column_counts(W, W_out, C, f_w, s_w, pad_left)
    W_full = (W_out - 1) * s_w + 1
    q_in0 = min(pad_left, W_full)
    q_in1 = max(min(W - f_w + 1 + pad_left, W_full), q_in0)
    acc, sums = np.empty(W_full * C, x.dtype), np.empty(W_out * C, x.dtype)
    zero = x.dtype.type(0)
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        top = h_out * s_h - pad_top
        h0, h1 = max(top, 0), min(top + f_h, H)
        for m in range(W_full * C):
            acc[m] = zero
        for h in range(h0, h1):
            _add_row_pass(xf[n, h], C, W, f_w, pad_left, W_full, q_in0, q_in1, acc)
        _compact(acc, idx, C, s_w, sums)
        out, rows = pf[n, h_out], h1 - h0
        for m in range(W_out * C):  # the count cast to the float type: float32 stays float32
            out[m] = sums[m] / x.dtype.type(rows * cols[m])


@njit(cache=True, error_model=DIVIDE)
def _avg_rows_wide(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p):
    """``_avg_rows_flat`` for many channels: each window summed straight into p, channels innermost."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    o_in0, o_in1 = _inside(W, W_out, f_w, s_w, pad_left)
    zero = x.dtype.type(0)
    whole = o_in0 == 0 and o_in1 == W_out and f_h == f_w and (f_w == 2 or f_w == 3)
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        top = h_out * s_h - pad_top
        h0, h1 = max(top, 0), min(top + f_h, H)
        out = p[n, h_out]
        if whole and h1 - h0 == f_h:  # no padding in this window row: all cells in one pass
            count = x.dtype.type(f_h * f_w)
            for o in range(W_out):
                w = o * s_w - pad_left
                if f_w == 2:
                    for c in range(C):
                        out[o, c] = ((((zero + x[n, h0, w, c]) + x[n, h0, w + 1, c]) + x[n, h0 + 1, w, c])
                                     + x[n, h0 + 1, w + 1, c]) / count
                else:
                    for c in range(C):
                        total = ((zero + x[n, h0, w, c]) + x[n, h0, w + 1, c]) + x[n, h0, w + 2, c]
                        total = ((total + x[n, h0 + 1, w, c]) + x[n, h0 + 1, w + 1, c]) + x[n, h0 + 1, w + 2, c]
                        total = ((total + x[n, h0 + 2, w, c]) + x[n, h0 + 2, w + 1, c]) + x[n, h0 + 2, w + 2, c]
                        out[o, c] = total / count
            continue
        for o in range(W_out):
            for c in range(C):
                out[o, c] = zero
        for h in range(h0, h1):
            row = x[n, h]
            for o in range(o_in0, o_in1):
                w = o * s_w - pad_left
                if f_w == 2:
                    for c in range(C):
                        out[o, c] = (out[o, c] + row[w, c]) + row[w + 1, c]
                elif f_w == 3:
                    for c in range(C):
                        out[o, c] = ((out[o, c] + row[w, c]) + row[w + 1, c]) + row[w + 2, c]
                else:
                    for j in range(f_w):
                        for c in range(C):
                            out[o, c] += row[w + j, c]
            for o in range(W_out):
                if o_in0 <= o < o_in1:
                    continue
                for j in range(f_w):
                    w = o * s_w - pad_left + j
                    if 0 <= w < W:
                        for c in range(C):
                            out[o, c] += row[w, c]
        for o in range(W_out):
            left = o * s_w - pad_left
            count = x.dtype.type((h1 - h0) * (min(left + f_w, W) - max(left, 0)))
            for c in range(C):
                out[o, c] = out[o, c] / count


@njit(cache=True)
def _avg_rows_vectors(t0, t1, x, f_h, f_w, s_h, s_w, p):
    """Output rows t0..t1-1 for float32 whose channels fill whole vectors and whose windows all
    lie inside the image: each window's cells added in row-major order to 0, then divided by
    the count, ``LANES`` channels at a time in explicit vectors (the readable sum's operations
    in its order, so its bits; one store per output)."""
    N, H, W, C = x.shape
    H_out, W_out = p.shape[1], p.shape[2]
    xf, pf = x.reshape(-1), p.reshape(-1)
    cells = f_h * f_w
    offset = cell_offsets(f_h, f_w, W, C)  # cell k's place from the window's corner
    zero, count = splatv(np.float32(0)), splatv(np.float32(cells))
    for t in range(t0, t1):
        n, h_out = t // H_out, t % H_out
        row = (n * H + h_out * s_h) * W * C
        for o in range(W_out):
            corner, out = row + o * s_w * C, (t * W_out + o) * C
            for c in range(0, C, LANES):
                total = zero
                for k in range(cells):
                    total = add8(total, loadv(xf, corner + offset[k] + c))
                storev(pf, out + c, div8(total, count))


@njit(parallel=True, cache=True)
def _avg_vectors_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _avg_rows_vectors(t0, t1, x, f_h, f_w, s_h, s_w, p)


@njit(parallel=True, cache=True)
def _avg_flat_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _avg_rows_flat(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p)


@njit(parallel=True, cache=True)
def _avg_wide_parallel(x, f_h, f_w, s_h, s_w, pad_top, pad_left, p, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, p.shape[0] * p.shape[1])
        _avg_rows_wide(t0, t1, x, f_h, f_w, s_h, s_w, pad_top, pad_left, p)


def avg_pool2d_forward(x, win, p):
    if spans_far_past_the_image(x.shape, win, p.shape):
        note_route("readable loop (huge window)")
        readable.AVG_FORWARD.naive_cpu(x, win, p)
        return
    if whole_vectors_inside(x, win, p, LANES):
        note_route(f"{LANES}-lane vectors")
        _launch(_avg_vectors_parallel, x.size + p.size, x, *win, p)
    elif x.shape[3] >= WIDE_C:
        note_route("channels innermost")
        _launch(_avg_wide_parallel, x.size + p.size, x, *win, p)
    else:
        note_route("flat rows")
        _launch(_avg_flat_parallel, x.size + p.size, x, *win, p)


# --------------------------------------------------------------------------- backward


@njit(cache=True, error_model=DIVIDE)
def _avg_back_flat(t0, t1, dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx):
    """dx rows t0..t1-1 (t = n*H + h), each a gather over the window rows covering row h
    (ascending). Per window row, each window's share ``0 + dp / count`` (a -0.0 lands as +0.0,
    as in the readable sum) is computed for all windows in one flat loop; then, for each window
    column j (descending, so that every dx cell gets its windows' shares left to right, the
    readable order), added into the dx row at every stride-th pixel (``_scatter``). When the
    windows tile the row (stride = f_w), the first window row writes instead of adding to zeros."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    dxf = dx.reshape(N, H, W * C)
    gf = dp.reshape(N, H_out, W_out * C)
    idx = stride_map(W_out, C, s_w)
    cols = column_counts(W, W_out, C, f_w, s_w, pad_left)
    share = np.empty(W_out * C, dx.dtype)
    zero = dx.dtype.type(0)
    tiles = s_w == f_w
    covered = min(W_out * s_w - pad_left, W)  # when they tile, windows cover columns [0, covered)
    for t in range(t0, t1):
        n, h = t // H, t % H
        d = dxf[n, h]
        h_first, h_stop = windows_covering(h, pad_top, f_h, s_h, H_out)
        add = not (tiles and h_stop > h_first)
        for m in range(0 if add else covered * C, W * C):
            d[m] = zero
        for h_out in range(h_first, h_stop):
            top = h_out * s_h - pad_top
            rows = min(top + f_h, H) - max(top, 0)
            g = gf[n, h_out]
            for m in range(W_out * C):
                share[m] = zero + g[m] / dx.dtype.type(rows * cols[m])
            for j in range(f_w - 1, -1, -1):
                # the windows whose column j, w_out * s_w - pad_left + j, lies in [0, W)
                o0 = (pad_left - j + s_w - 1) // s_w if pad_left > j else 0
                o1 = min((W - 1 + pad_left - j) // s_w + 1, W_out)
                if o1 > o0:
                    _scatter(share[o0 * C:o1 * C], idx, C, s_w, d[(o0 * s_w - pad_left + j) * C:], add)
            add = True


def _put_cell(d, at, s, src, C, add):
    """``d[at + c] (+)= s[src + c]`` for c < C: one dx cell's channels get a window's share."""


@register_jitable
def _put_cell_scalar(d, at, s, src, C, add):
    dd, ss = d[at:], s[src:]
    if add:
        for c in range(C):
            dd[c] += ss[c]
    else:
        for c in range(C):
            dd[c] = ss[c]


@overload(_put_cell, inline="always")
def _put_cell_impl(d, at, s, src, C, add):
    def vectors(d, at, s, src, C, add):
        # float32: whole vectors, as in max_pool._route_cell (LLVM's loop above, C = 16: 2x slower)
        if C % LANES == 0:
            for c in range(0, C, LANES):
                v = loadv(s, src + c)
                storev(d, at + c, add8(loadv(d, at + c), v) if add else v)
        else:  # 8-lane vectors, then single channels (16 lanes would leave up to 15 to the scalar loop)
            whole = C - C % 8
            for c in range(0, whole, 8):
                h = load8(s, src + c)
                store8(d, at + c, add8(load8(d, at + c), h) if add else h)
            if whole < C:
                _put_cell_scalar(d, at + whole, s, src + whole, C - whole, add)

    if d.dtype == types.float32 and s.dtype == types.float32:
        return vectors
    return _put_cell_scalar


@njit(cache=True, error_model=DIVIDE)
def _avg_back_wide(t0, t1, dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx):
    """``_avg_back_flat`` for many channels: each window's share goes straight into the dx row,
    ``dx[n, h, o*s_w - pad_left + j, :]``, channels innermost.

    A window row's shares are computed once for all the dx rows it covers (computed again for
    each, pool32x16 took 15% longer, one thread): they stay in one of ``slots`` scratch rows, as
    many as window rows can cover one image row, slot ``h_out % slots``, until the window
    row below takes it (by then no later dx row of this task needs them)."""
    N, H, W, C = dx.shape
    H_out, W_out = dp.shape[1], dp.shape[2]
    L = W_out * C
    slots = -(-f_h // s_h)
    shares = np.empty(slots * L, dx.dtype)
    holds = np.full(slots, -1, np.int64)  # the window row (n * H_out + h_out) each slot holds
    cols = column_counts(W, W_out, C, f_w, s_w, pad_left)
    counts, counts_rows = np.empty(L, dx.dtype), -1  # rows * cols[m] in the float type, for one rows
    zero = dx.dtype.type(0)
    tiles = s_w == f_w
    covered = min(W_out * s_w - pad_left, W)
    # flat views made once, offsets per row: views made per row cost atomic reference counts
    # (as in max_pool._max_back_tiles_wide)
    gf, df = dp.reshape(-1), dx.reshape(-1)
    for t in range(t0, t1):
        n, h = t // H, t % H
        row = t * W * C
        h_first, h_stop = windows_covering(h, pad_top, f_h, s_h, H_out)
        add = not (tiles and h_stop > h_first)
        df[row + (0 if add else covered) * C:row + W * C] = zero
        for h_out in range(h_first, h_stop):
            key = n * H_out + h_out
            at = (h_out % slots) * L
            if holds[h_out % slots] != key:
                top = h_out * s_h - pad_top
                rows = min(top + f_h, H) - max(top, 0)
                if rows != counts_rows:  # the count cast to the float type: float32 stays float32
                    for m in range(L):
                        counts[m] = dx.dtype.type(rows * cols[m])
                    counts_rows = rows
                share, g = shares[at:at + L], gf[key * L:key * L + L]
                for m in range(L):
                    share[m] = zero + g[m] / counts[m]
                holds[h_out % slots] = key
            for j in range(f_w - 1, -1, -1):
                o0 = (pad_left - j + s_w - 1) // s_w if pad_left > j else 0
                o1 = min((W - 1 + pad_left - j) // s_w + 1, W_out)
                for o in range(o0, o1):
                    w = o * s_w - pad_left + j
                    _put_cell(df, row + w * C, shares, at + o * C, C, add)
            add = True


@njit(parallel=True, cache=True)
def _avg_back_flat_parallel(dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, dx.shape[0] * dx.shape[1])
        _avg_back_flat(t0, t1, dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx)


@njit(parallel=True, cache=True)
def _avg_back_wide_parallel(dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx, chunks):
    for k in prange(chunks):
        t0, t1 = _chunk(k, chunks, dx.shape[0] * dx.shape[1])
        _avg_back_wide(t0, t1, dp, f_h, f_w, s_h, s_w, pad_top, pad_left, dx)


def avg_pool2d_backward(dp, win, dx):
    if spans_far_past_the_image(dx.shape, win, dp.shape):
        note_route("readable loop (huge window)")
        readable.AVG_BACKWARD.naive_cpu(dp, win, dx)
        return
    if dx.shape[3] >= WIDE_C:
        note_route("channels innermost")
        _launch(_avg_back_wide_parallel, dp.size + dx.size, dp, *win, dx)
    else:
        note_route("flat rows")
        _launch(_avg_back_flat_parallel, dp.size + dx.size, dp, *win, dx)
