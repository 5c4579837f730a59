"""dW for few output channels: the filter taps along the vector lanes (AVX-512).

Same maths as ``direct.filter_grad_tiles``::

    dW[r, k] = sum over (n, h_out, w_out) of x_window[(n, h_out, w_out), r] * dz[n, h_out, w_out, k]

with r = i * run + m a filter tap (filter row i, m = j * C + c along the row's ``run = f_w
* C`` numbers, contiguous in NHWC). The direct tile puts the output channels k along the
lanes and broadcasts a tap's input number per pixel: with 32 channels or fewer that is 2
vectors against 8 broadcasts a pixel, and broadcasts cost more than loads (the same data in
L1 ran 0.7x as fast as a tile of 3 loads and 8 broadcasts). Here the roles are swapped: a
tile is ``KB`` output channels x ``V`` vectors of consecutive taps,

    sums[k, taps m0 .. m0 + 16 V - 1] += dz[p, k0 + k] * x[window(p) + m0 .. + 16 V - 1]

``V`` loads of x (one contiguous run) and ``KB`` broadcasts of dz per pixel for ``KB * V``
FMAs (8 x 3: 24 zmm sums). The sums are dW transposed, ``(K, f_h * run_p)``, a filter row's
taps padded to whole tiles (``run_p``); the caller transposes them back (dW is small).
Against the direct tile, 2 threads, Sapphire Rapids: Inception's 1x1 layer (192 -> 16)
0.36 -> 0.28 ms, its 5x5 layer (192 -> 32) 7.6 -> 5.9 ms, 128 -> 16 1x1 at 32 x 32 1.8 ->
0.95 ms; against Winograd's dW, which 3x3 layers of 32+ input channels otherwise take:
8 x 56 x 56 x 64 -> 32 6.8 -> 4.3 ms, 32 x 32 x 32 x 32 -> 16 5.2 -> 2.1 ms. 64 output
channels and more stay where they were (0.5-1.0x here).

AVX-512 only: with AVX2's 16 registers the tile would be 4 x 3 of 8 lanes, not measured on
such a CPU, so those keep the direct tile.
"""

import functools
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ...backend import ALIGNMENT, address, thread_count
from .caches import l2_bytes
from .direct import (_NO_BIAS, CHUNK_BYTES, CHUNK_PIXELS, CHUNK_SPLITS, TASKS_WANTED, _summed_in_order, border_copy,
                     input_bytes, input_is_copied, sum_bias_rows, with_border)
from .simd import LANES, aligned_floats, ints_from, load_tile, splat_each, store_tile_rows, tile_fma

K_BROADCASTS = 8
"""Output channels per tile (broadcasts of dz per pixel)."""
TAP_VECTORS = 3
"""Vectors of taps per tile (at most: a filter row of fewer than 48 numbers takes fewer)."""
MAX_CHANNELS = 32
"""Output channels up to which this kernel runs (with 64 and more the direct tile's vectors
of channels are full and it ran as fast or faster)."""
MAX_PADDING = 1.25
"""A filter row's taps rounded up to whole tiles may be at most this many times the row."""


@functools.lru_cache(maxsize=256)
def tile_vectors(run):
    """V for a filter row of ``run`` numbers: 3 or 2 vectors, whichever pads the row less (64
    numbers: 2 tiles of 32 rather than 2 of 48), 3 on a tie (one vector a tile would be the
    broadcast-bound shape this kernel avoids)."""
    return min(range(TAP_VECTORS, 1, -1), key=lambda v: -(-run // (v * LANES)) * v)


@functools.lru_cache(maxsize=256)
def padded_run(run):
    """``run`` rounded up to whole tiles of ``tile_vectors(run) * LANES`` taps."""
    block = tile_vectors(run) * LANES
    return -(-run // block) * block


CHUNK_TASKS = 8
"""Chunked, at least this many tasks share each chunk (the rows split in parts if need be)."""
MIN_RUN = 3 * 16
"""Filter rows shorter than a whole tile stay on the direct tile (LeNet's second layer, 30
numbers a row: 0.16 ms there, 0.2 ms here with the copy of x the padding needs)."""


def usable(C, K, f_w):
    """AVX-512, 8 to 32 output channels in whole groups of ``K_BROADCASTS``, and a filter row
    of ``MIN_RUN`` numbers or more, padded to whole tiles by at most ``MAX_PADDING``."""
    run = f_w * C
    return (LANES == 16 and K <= MAX_CHANNELS and K % K_BROADCASTS == 0 and run >= MIN_RUN
            and padded_run(run) <= MAX_PADDING * run)


def takes(x, dz, win):
    """``usable`` for this layer, and x read from a buffer that starts on a cache line: its
    padded copy (scratch memory is aligned), or x itself when the layer needs no copy and x
    is aligned. (The tile's loads of x follow the pixel stride ``C`` floats: with x 16 bytes
    past a line, every 16-lane load straddles two; Inception's 1x1 dW ran 0.39 ms so against
    0.34 on the direct tile and 0.27 aligned.)"""
    C, K = x.shape[3], dz.shape[3]
    if not usable(C, K, win.f_w):
        return False
    slack = padded_run(win.f_w * C) - win.f_w * C  # as backward_filter asks border_copy for
    return input_is_copied(x.shape, win, dz.shape[1], dz.shape[2], slack) or address(x) % ALIGNMENT == 0


@functools.lru_cache(maxsize=256)
def tile_name(run):
    return f"dW taps {K_BROADCASTS}x{tile_vectors(run) * LANES} tile"


@njit(parallel=True, cache=True, fastmath={"contract"})
def filter_grad_tap_tiles(xf, x_shape, dzf, geometry, chunk_rows, parts, workers, k_slots, vector_slots, bias_parts):
    """The loop nest. ``xf``: the padded input ``x_shape = (N, Hp, Wp, C)`` flat, with a
    tile's worth of readable numbers after its end (the last row's last tile may run past its
    filter row; those taps land in the padding of ``parts``, never read); ``dzf``: dz flat;
    ``parts``: ``(splits, K, f_h * run_p)`` zeroed, split s summing its share of each chunk's
    rows. Task = (split, filter row, tile of taps, group of channels); the ``workers`` threads
    each own a fixed share of the tasks and run them chunk by chunk (``chunk_rows`` output
    rows), so a chunk's dz and x are read from cache by all of a thread's tasks, as in
    ``direct.filter_grad_tiles``. Which thread owns a task does not change its sums.
    ``bias_parts`` ``(splits, K)`` zeroed, or empty: db in the same pass, the task of each
    group's first tile adding up its rows of dz (``direct.sum_bias_rows``)."""
    KB, V = len(k_slots), len(vector_slots)
    block = V * LANES  # taps per tile
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * C
    per_row = (run + block - 1) // block
    run_p = per_row * block
    groups = K // KB
    F_p = f_h * run_p
    splits = parts.size // (K * F_p)
    rows = N * H_out
    tasks = splits * f_h * per_row * groups
    workers = max(1, min(workers, tasks))
    for worker in prange(workers):
        for chunk0 in range(0, rows, chunk_rows):
            chunk = min(chunk_rows, rows - chunk0)
            for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
                split = task // (f_h * per_row * groups)
                i = (task // (per_row * groups)) % f_h  # filter row, then taps, then channels
                m0 = ((task // groups) % per_row) * block
                k0 = (task % groups) * KB
                tap_offset = i * Wp * C + m0  # where the tile's first tap sits in the window
                at = (split * K + k0) * F_p + i * run_p + m0
                tile_sums = load_tile(parts, at, F_p, k_slots, vector_slots, LANES)
                for row in range(chunk0 + split * chunk // splits, chunk0 + (split + 1) * chunk // splits):
                    corner = ((row // H_out) * Hp + (row % H_out) * s_h) * Wp * C + tap_offset
                    q = row * W_out * K + k0
                    for w_out in range(W_out):
                        # KB numbers of dz broadcast, V vectors of consecutive taps loaded
                        tile_sums = tile_fma(splat_each(dzf, ints_from(0, 1, k_slots), q, LANES),
                                             load_tile(xf, corner + w_out * s_w * C, 0, 1, vector_slots, LANES),
                                             tile_sums)
                        q += K
                store_tile_rows(parts, at, F_p, tile_sums, vector_slots, 0, KB)
                if bias_parts.size and i == 0 and m0 == 0:  # each group's first tile: its db too
                    sum_bias_rows(dzf, bias_parts, split * K + k0, k0, K, W_out,
                                  (chunk0 + split * chunk // splits, chunk0 + (split + 1) * chunk // splits),
                                  (0,), k_slots)


def backward_filter(x, dz, win, dW, scratch, db=None, l2=None):
    """``dW = sum over pixels of window(x) outer dz`` for float32, ``usable(C, K, f_w)``;
    with ``db`` given, also ``db = the sum of dz over its pixels`` in the same pass.
    ``scratch(name, n)`` gives the input's padded copy; ``l2``: the L2 cache's bytes, if the
    caller has read them. The rest is one compiled call, as ``direct.backward_filter``."""
    N, H_out, W_out, K = dz.shape
    f_h, f_w, C, _ = dW.shape
    run = f_w * C
    V = tile_vectors(run)
    # the last tile of a filter row reads on past it: room after the input's end
    copy = border_copy(x.shape, win, H_out, W_out, scratch, slack=padded_run(run) - run)
    splits, chunk_rows = _chunks(x.shape, dz.shape, dW.shape, win, l2 or l2_bytes())
    _backward_filter(x, np.ascontiguousarray(dz), (win.pad_top, win.pad_left), copy,
                     (f_h, f_w, win.stride_h, win.stride_w, H_out, W_out, K), splits, chunk_rows, dW,
                     _NO_BIAS if db is None else db, thread_count(), (0,) * K_BROADCASTS, (0,) * V)


@functools.lru_cache(maxsize=1024)
def _chunks(x_shape, dz_shape, dW_shape, win, l2):
    """``(splits, chunk_rows)`` for these shapes, found once per shape."""
    N, H_out, W_out, K = dz_shape
    f_h, f_w, C, _ = dW_shape
    run = f_w * C
    run_p = padded_run(run)
    x_bytes = input_bytes(x_shape, win, H_out, W_out, run_p - run)
    dz_bytes = 4 * math.prod(dz_shape)
    tasks = f_h * (run_p // (tile_vectors(run) * LANES)) * (K // K_BROADCASTS)
    # at least CHUNK_TASKS tasks a chunk, splitting the rows where there are fewer (a fixed
    # number, not the thread count: the bits never depend on the machine)
    splits = max(1, -(-CHUNK_TASKS // tasks))
    if dz_bytes + x_bytes > CHUNK_BYTES:  # cache-sized chunks of rows (Inception's 1x1: 8 tasks, 0.40 -> 0.29 ms)
        if x_bytes > l2:
            # x from memory: each chunk's rows in at least CHUNK_SPLITS parts, so that each
            # thread streams whole pixels of its own rows; sharing the tasks, both threads read
            # half of every pixel, the lines of both halves fetched for each (Inception's 1x1
            # dW, 4.8 MB of x, 2 threads: the kernel 276 -> 229 us, the whole dW 347-358 -> 297-301)
            splits = max(splits, CHUNK_SPLITS)
        return splits, -(-max(1, CHUNK_PIXELS // W_out) // splits) * splits
    return max(1, min(N * H_out, TASKS_WANTED // tasks)), N * H_out  # all in the cache: one chunk


@njit(cache=True)
def _backward_filter(x, dz, pads, copy, geometry, splits, chunk_rows, dW, db, workers, k_slots, vector_slots):
    """``backward_filter``'s compiled part: the border copy, the tiles, and their parts summed
    and transposed into dW (and db, when it is not empty)."""
    xf, x_shape = with_border(x, pads, copy, geometry)
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * x_shape[3]
    run_p = -(-run // (len(vector_slots) * LANES)) * len(vector_slots) * LANES
    parts = aligned_floats(splits * K * f_h * run_p)
    parts[:] = 0
    bias_parts = aligned_floats(splits * K if db.size else 0)
    bias_parts[:] = 0
    filter_grad_tap_tiles(xf, x_shape, dz.reshape(-1), geometry, chunk_rows, parts, workers, k_slots, vector_slots,
                          bias_parts)
    if db.size:
        db[:] = _summed_in_order(bias_parts.reshape(splits, K))
    _transposed_into(_summed_in_order(parts.reshape(splits, -1)).reshape(K, f_h, run_p), dW.reshape(f_h, run, K))


@register_jitable
def _transposed_into(summed, dW):
    """``dW[i, m, k] = summed[k, i, m]`` for the ``run`` taps of each filter row (the sums are
    dW transposed, each row padded to whole tiles); compiled, as ``sum_in_order``."""
    for i in range(dW.shape[0]):
        for m in range(dW.shape[1]):
            for k in range(dW.shape[2]):
                dW[i, m, k] = summed[k, i, m]
