"""Fast CPU pooling, the part every kernel shares: the two row layouts, their row helpers, and
the thread launcher. The kernels are ``max_pool.py`` (max forward, with or without argmax, and
max backward) and ``avg_pool.py`` (average forward and backward); each gives the results of
``nbcnn/kernels/pool.py``'s loop nests, bit for bit, restructured for speed.

Pooling does about one comparison or addition per number it moves, so it is memory-bound:
the time goes into reading x and writing the output, as long as the work in between runs on
whole vectors. What every fast pooling kernel does against the readable ones:

1. **Two layouts of the same loop, by channel count.** With many channels (C >= WIDE_C = 16;
   32 for the max forward, see ``max_pool.WIDE_C_MAX``) the channel loop is innermost
   ("wide"): one vector loop per window cell. With few (LeNet's C = 6) that loop leaves the
   vectors mostly empty, so the "flat" kernels see an image row ``x[n, h]`` as one run of W*C
   numbers: window cell (i, j) of stride-1 position q reads it at ``(q - pad + j)*C + c``,
   i.e. ``m + (j - pad)*C`` for the flat index ``m = q*C + c`` — a shifted copy of the row,
   one long vector loop whatever C is. A stride-2 row is computed at every position ("full
   resolution", twice the comparisons, all in vectors) and the real outputs copied out
   (``_compact``); the average backward adds each window's share back at every stride-th
   position (``_scatter``). A third route, for float32 whose channels fill whole vectors of
   ``simd.LANES`` and windows that all lie inside the image (``whole_vectors_inside``): the
   forward kernels take each window in explicit vectors, one pass over the outputs (the max
   forward a third to a half faster than the two layouts on the bench's shapes).
2. **Sliced views, indexed by the loop counter.** ``row[m + C]`` with a signed offset makes
   Numba wrap negative indices around, which LLVM cannot vectorise (it built each vector from
   8 scalar loads: 4x slower); ``row[C:][m]`` has no such test. Cell numbers are int32, like
   the argmax: an int64 among them makes every vector lane 64-bit.
3. **Selects, not branches, on data.** ``b if keep else v`` inside a long loop becomes a vector
   blend; the same in a short loop that LLVM leaves scalar becomes a branch that random data
   mispredicts half the time (that is why the max forward goes wide only from 32 channels).
4. **Rows of outputs as prange tasks** (n, h_out) — dx rows (n, h) for the average backward,
   images for an overlapping max backward — in one chunk per thread (``_chunk``), each with
   its own scratch rows. Calls touching fewer than config.POOL_SERIAL_BELOW_ELEMENTS numbers
   run on one thread (``_launch``).

Same results as the readable kernels, exactly: the same float operations in the same order
per output number (no ``fastmath``), ties go to the *first* maximum in row-major order, a
NaN wins and stays, and a dx cell that several windows send gradient to sums it in the
readable order (window rows, then columns, ascending). No two prange tasks ever write the
same cell (Numba has no CPU atomics), so every run gives the same bits.

Arrays are C-contiguous NHWC (``checks.as_array`` makes them so); ``win`` is the
``checks.Window`` tuple (f_h, f_w, stride_h, stride_w, pad_top, pad_left), as in
``nbcnn/kernels/pool.py``, unpacked into six ints for the compiled functions (a tuple of ints
dispatches faster than a NamedTuple).

The helpers here are ``register_jitable``: compiled into each kernel that calls them. Numba's
on-disk cache (``cache=True``) checks only the source file of the cached kernel, so after
editing this file clear ``NUMBA_CACHE_DIR`` (or the ``__pycache__`` folders) before timing or
testing the kernels of ``max_pool.py`` and ``avg_pool.py``.
"""

import numba
import numpy as np
from numba.extending import register_jitable

from ... import config
from ...backend import thread_count
from ...checks import window_span


# Channels from which a loop over them (one window cell) vectorises well; below, the flat
# full-resolution rows win (LeNet's C = 6 would leave the vectors mostly empty).
WIDE_C = 16


# --------------------------------------------------------------------------- row helpers


@register_jitable
def stride_map(W_out, C, stride):
    """``idx[m]``: where flat output ``m = w_out*C + c`` sits in a full-resolution row,
    ``w_out*stride*C + c`` (unsigned: indexing with it needs no negative-index test)."""
    idx = np.empty(W_out * C, np.uint32)
    for w_out in range(W_out):
        for c in range(C):
            idx[w_out * C + c] = w_out * stride * C + c
    return idx


@register_jitable
def column_counts(W, W_out, C, f_w, stride_w, pad_left):
    """``cols[m]``: how many real (not padding) columns the window of flat output m covers."""
    cols = np.empty(W_out * C, np.int32)
    for w_out in range(W_out):
        left = w_out * stride_w - pad_left
        n_cols = min(left + f_w, W) - max(left, 0)
        for c in range(C):
            cols[w_out * C + c] = n_cols
    return cols


@register_jitable
def _compact(full, idx, C, stride, out):
    """``out[w_out*C + c] = full[w_out*stride*C + c]``: the real outputs of a full-resolution row."""
    if stride == 1:
        for m in range(out.shape[0]):
            out[m] = full[m]
    elif C >= 8:  # whole runs of channels: per-pixel slices (a vector per 8 channels)
        for w_out in range(out.shape[0] // C):
            src = full[w_out * stride * C:w_out * stride * C + C]
            dst = out[w_out * C:w_out * C + C]
            for c in range(C):
                dst[c] = src[c]
    else:  # a few channels: one flat loop through the index map beats a slice per pixel
        for m in range(out.shape[0]):
            out[m] = full[idx[m]]


@register_jitable
def _scatter(vals, idx, C, stride, out, add):
    """``out[w*stride*C + c] = vals[w*C + c]`` (or ``+=`` when add), for the windows w of vals."""
    n = vals.shape[0]
    if stride == 1:
        if add:
            for m in range(n):
                out[m] += vals[m]
        else:
            for m in range(n):
                out[m] = vals[m]
    elif C >= 8:
        for w in range(n // C):
            src = vals[w * C:w * C + C]
            dst = out[w * stride * C:w * stride * C + C]
            if add:
                for c in range(C):
                    dst[c] += src[c]
            else:
                for c in range(C):
                    dst[c] = src[c]
    elif add:
        for m in range(n):
            out[idx[m]] += vals[m]
    else:
        for m in range(n):
            out[idx[m]] = vals[m]


@register_jitable
def _inside(W, W_out, f_w, s_w, pad_left):
    """The windows ``[o0, o1)`` whose every column lies inside the image (no padding)."""
    o0 = min((pad_left + s_w - 1) // s_w, W_out)
    o1 = max(min((W - f_w + pad_left) // s_w + 1, W_out), o0)
    return o0, o1


# --------------------------------------------------------------------------- threads


# Each layout has its own compiled driver (prange over one chunk per thread), and the Python
# wrapper picks one: a call compiles only the layout it runs (cold, each takes seconds to
# compile: LLVM vectorises many loops).


@register_jitable
def _chunk(k, chunks, total):
    """Task rows ``[first, stop)`` of chunk k of ``chunks`` (one chunk per thread)."""
    return k * total // chunks, (k + 1) * total // chunks


def whole_vectors_inside(x, win, p, lanes) -> bool:
    """float32, the channels a whole number of ``lanes``-lane vectors, and every window inside
    the image (no padding, none past the last row or column): the kernels' explicit-vector
    routes (``max_pool._max_rows_vectors``, ``avg_pool._avg_rows_vectors``) need no edge cases."""
    _, H, W, C = x.shape
    return (x.dtype == np.float32 and C % lanes == 0 and win.pad_top == 0 and win.pad_left == 0
            and (p.shape[1] - 1) * win.stride_h + win.f_h <= H and (p.shape[2] - 1) * win.stride_w + win.f_w <= W)


@register_jitable
def cell_offsets(f_h, f_w, W, C):
    """Where cell k of a window (row-major: k = i * f_w + j) lies from the window's corner in
    a flat NHWC image of W columns and C channels: ``(i * W + j) * C``, for the explicit-vector
    routes (``max_pool._max_rows_vectors``, ``avg_pool._avg_rows_vectors``)."""
    offset = np.empty(f_h * f_w, np.int64)
    for k in range(f_h * f_w):
        offset[k] = ((k // f_w) * W + k % f_w) * C
    return offset


def spans_far_past_the_image(x_shape, win, out_shape) -> bool:
    """True when the windows reach far beyond the image: padding or a window much larger than the
    input (``f = stride = (1, 10**5)`` with ``pad = (0, 10**5 - 1)`` on a 2-pixel row).

    The kernels here work at every stride-1 position of the padded span (their scratch rows) and
    keep tables per window cell, so their time and memory grow with the padding; the readable
    loop nests visit only the real cells of each window, so theirs grow with the output and the
    input. Layers of real networks are nowhere near this limit (a span at most about twice the
    image).
    """
    _, H, W, _ = x_shape
    rows, cols = window_span(win, out_shape[1:3])  # input rows and columns spanned, padding included
    return rows > 2 * H + 64 or cols > 2 * W + 64


def _launch(parallel, touched, *args):
    """Run a prange driver with one chunk per thread; calls touching fewer than
    ``config.POOL_SERIAL_BELOW_ELEMENTS`` numbers get one chunk on one thread (waking the other
    costs more than it saves), as the dispatcher does for kernels without ``own_threads``."""
    threads = thread_count()
    if touched >= config.POOL_SERIAL_BELOW_ELEMENTS or threads == 1:
        parallel(*args, threads)
        return
    numba.set_num_threads(1)
    try:
        parallel(*args, 1)
    finally:
        numba.set_num_threads(threads)
