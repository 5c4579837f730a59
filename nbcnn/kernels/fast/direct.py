"""Fast cpu convolution (float32): direct, register-blocked loop nests for the forward, dW
and dX.

Same maths and shapes as the readable ``conv.conv2d_forward`` (NHWC)::

    z[n, h_out, w_out, k] = b[k] + sum over i, j, c of
                            x[n, h_out * s_h - pad_top + i, w_out * s_w - pad_left + j, c] * W[i, j, c, k]
    H_out = (H + pad_top + pad_bottom - f_h) // s_h + 1

What is restructured, and why it is fast (about 100x the readable compiled loop, and 2-7x
im2col + BLAS; ``nbcnn bench --ladder`` shows the steps):

1. **A register tile.** The output is cut into tiles of ``PIXELS`` pixels x ``CHANNELS``
   channels: two vectors of ``simd.LANES`` lanes per pixel, the width of the CPU's vector
   registers (chosen once at import, ``simd.host_lanes``). On AVX2 (8 lanes, 16 ymm
   registers) that is 4 pixels x 16 channels: 64 sums in 8 registers; on AVX-512 (16 lanes,
   32 zmm registers) 8 pixels x 32 channels: 256 sums in 16 registers. The sums stay in
   registers for the whole reduction over (i, j, c); each step loads 2 weight vectors and
   broadcasts one input number per pixel, then does 2 x PIXELS vector multiply-adds: the two
   FMA units, not memory, set the speed. (The readable loop does one load per multiply-add.)
   On AVX2, 6 x 16 (12 sums) measured slower and 12 x 8 spilled sums to the stack; on
   AVX-512 4 x 32 was 0.8-1.1x and 12 x 32 1.0-1.1x the speed of 8 x 32 (checked in
   tests/test_conv_direct.py: no spills, FMAs of the target's width). One source serves both
   widths: the tile is a tuple of vectors updated by ``simd.tile_fma``. Layers with
   ``LANES`` channels or fewer (LeNet's 6 and 16, the dX of a 3-channel stem) use a tile of
   ``NARROW_PIXELS`` pixels x one vector, so fewer lanes idle.
2. **Packed weights.** ``W`` is re-laid out as panels ``(K/CHANNELS, f_h, f_w, C, CHANNELS)``
   (padded with zeros to a whole panel), so the 2 weight vectors of one step are contiguous
   and a tile walks its panel front to back.
3. **One contiguous run per filter row.** In NHWC the numbers under filter row i of one pixel,
   ``x[n, h, w0 .. w0 + f_w - 1, 0 .. C - 1]``, are ``f_w * C`` consecutive floats, and so are
   the weights ``W[i, :, :, k0 .. k0 + CHANNELS - 1]`` in the panel: the inner loop is one flat ``jc``
   loop with no index arithmetic per tap.
4. **Padding copied once.** Reads outside the image would need a test per tap; instead ``x``
   is copied once into a zero-bordered buffer (no copy at all for a layer without padding).
   A tile's pixels are ``PIXELS`` *consecutive* output pixels in NHWC order, so a tile may run
   on into the next row or image: each of its pixels has its own window start (computed once
   per task), its outputs are consecutive pixels of ``out`` all the same, and no pixel
   slot idles at the end of a row (LeNet's 10-pixel rows wasted 2 of 12 when tiles stopped
   at the row's end). The very last tile repeats its last pixel.
5. **Bias for free:** the sums start from the bias vector instead of zero.
6. **Threads:** ``prange`` over runs of tiles (about one output row each), or, when the
   input is small and the filters large (13 x 13 maps under 512-1024 filters), over panels
   of filters, each for every pixel, so the filters are read from memory once instead of
   once per row (YOLOv3-tiny's 13 x 13 x 512 -> 1024 layer: 20 -> 16.6 ms, one thread).
   Each tile is written by one thread, so there are no races; the sums run in the same
   order however the work is split, so the result is the same bits every run.

The backward passes reuse the tile: dW is ``filter_grad_tiles`` (taps x channels: 6 x 16 on
AVX2; 8 x 32, or 6 x 64 for more than 32 channels, on AVX-512; summed over pixels in
cache-sized chunks); stride-1 dX is the forward with the filters flipped and transposed (``conv_fast.backward_input``); strided dX is one stride-1 convolution
per phase of the input grid (``backward_input_strided``) or, for few channels, all phases in
one (``backward_input_space_to_depth``).
"""

import functools
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ...backend import ALIGNMENT, address, thread_count
from ...checks import Window, window_span
from .caches import l2_bytes
from .simd import (LANES, aligned_floats, ints_at, ints_from, load8, load_lanes, load_tile, loadv, repeat, splat_each, store8,
                   store_tile_rows, tile_add, tile_fma, tile_relu)

PIXELS = 4 if LANES == 8 else 8
"""Output pixels per register tile of ``conv_tiles``: 4 on AVX2 (8 ymm sums of its 16
registers), 8 on AVX-512 (16 zmm sums of its 32; 4 x 32 ran 0.8-1.1x, 12 x 32 1.0-1.1x the
speed of 8 x 32, one thread, Sapphire Rapids)."""
CHANNELS = 2 * LANES
"""Output channels per register tile: two vectors (16 on AVX2, 32 on AVX-512)."""
TAPS = 6 if LANES == 8 else 8
"""Filter taps per register tile of the dW kernel (6 x 2 ymm sums on AVX2, 8 x 2 zmm on
AVX-512: 12 x 2 zmm ran 0.9x, as LLVM loaded all 12 broadcasts first and ran out of
registers)."""
WIDE_TAPS = 6
"""AVX-512, more than ``CHANNELS`` output channels: the dW tile is 6 taps x 4 vectors (64
channels, 24 zmm sums; 4 dz vectors and 6 broadcasts a pixel for 24 FMAs instead of 2 and 8
for 16): 1.1x the 8 x 32 tile on ResNet's and VGG's layers, one thread."""
NARROW_TAPS = 12
"""Filter taps per dW tile for ``LANES`` channels or fewer (LeNet's 6 and 16): one vector
of channels per tap, so no half-empty second vector (12 sums)."""
SHORT_ROW_TAPS = 4
"""dW, one-vector tiles: a filter row of ``SHORT_ROW_TAPS`` to ``NARROW_TAPS - 1`` numbers
(``f_w * C``: LeNet's first layer 5, a 3x3 filter over RGB 9) gets a tile of exactly that
many taps, compiled for it, instead of a 12-tap tile mostly idle."""
TILE_MAJOR_BYTES = 24 << 10
"""conv_tiles: packed filters up to this size are all run tile by tile (see there)."""
RUN_BLOCK_BYTES = 24 << 10
"""conv_tiles: a panel's weights past this size are taken in blocks of about this size,
each block serving all the tiles of a task from the L1 cache (see there)."""
PANEL_TASK_INPUT_BYTES = 2 << 20
"""conv_tiles: a padded input up to this size (it stays in the L2 cache), with packed
filters larger than it, is split among the threads by panels of filters (each task: one
panel, every pixel) instead of by rows of pixels (each task: one row, every panel), so the
filters cross from memory once instead of once per row (see there)."""


@register_jitable
def _window_starts(starts, g0, pixels, x_shape, geometry):
    """``starts[p]``: where the window of output pixel g0 + p (flat NHWC order) starts in the
    flat padded input, ``((n * Hp + h * s_h) * Wp + w * s_w) * C``; a pixel past the last
    one repeats the last one (the last tile computes it twice and stores it once)."""
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    per_image = H_out * W_out
    n, h, w = g0 // per_image, (g0 % per_image) // W_out, g0 % W_out
    for p in range(starts.shape[0]):
        starts[p] = ((n * Hp + h * s_h) * Wp + w * s_w) * C
        if g0 + p + 1 < pixels:  # step to the next pixel: along the row, then down, then the next image
            w += 1
            if w == W_out:
                w = 0
                h += 1
                if h == H_out:
                    h = 0
                    n += 1


@register_jitable
def split_by_panel(x_shape, geometry):
    """Whether ``conv_tiles`` splits its work by panels of filters (a task: one panel, every
    pixel) rather than by rows of pixels (see there): a padded input that stays in the L2
    cache (up to ``PANEL_TASK_INPUT_BYTES``) under more, and larger, packed filters."""
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    panels = (K + CHANNELS - 1) // CHANNELS
    filter_bytes = panels * f_h * f_w * C * CHANNELS * 4
    input_bytes = N * Hp * Wp * C * 4
    return (panels > 1 and filter_bytes > TILE_MAJOR_BYTES and input_bytes <= PANEL_TASK_INPUT_BYTES
            and filter_bytes > input_bytes)


@njit(parallel=True, cache=True, fastmath={"contract"})
def conv_tiles(xf, x_shape, Wf, geometry, bias, out, relu, rows):
    """The tiled loop nest (``PIXELS`` pixels x ``CHANNELS`` channels). All arrays are flat float32:

    * ``xf``: the padded input, shape ``x_shape = (N, Hp, Wp, C)`` (see ``padded_input``), so
      window (h_out, w_out) starts at row ``h_out * s_h``, column ``w_out * s_w``;
    * ``Wf``: the packed filters ``(ceil(K / CHANNELS), f_h, f_w, C, CHANNELS)`` (see
      ``packed_filters``): one tap's weights are contiguous, the next tap's right after them.
      (The step is the constant CHANNELS on purpose: a step read from an argument, to walk a dense
      layer's ``W`` in place, cost 5-10% on every conv.) Empty when the work is split by
      panels (``split_by_panel``): each task then packs its own panel from ``rows``, the
      filters ``(f_h * f_w * C, K)``, into memory of its own, where the panel stays in the
      core's cache for the tiles that read it (YOLOv3-tiny's 13 x 13 x 512 -> 1024 layer,
      18.9 MB of filters: packed ahead, in one pass over all of them, 2.6 ms of its 8.8);
    * ``geometry = (f_h, f_w, s_h, s_w, H_out, W_out, K)``;
    * ``bias``: ``ceil(K / CHANNELS) * CHANNELS`` numbers; ``out``: ``(N, H_out, W_out, K)``;
    * ``relu``: store ``relu(z)`` instead of z (a fused conv + ReLU: ``simd.tile_relu`` on
      the finished sums, no second pass over ``out``).

    A tile is ``PIXELS`` *consecutive* output pixels in NHWC order, so it may run on into the
    next row (or image): each pixel keeps its own window start (the tuple ``window``, held in
    general registers), and the tile's outputs are always consecutive pixels of ``out``.
    (Tiles along one row only would waste 2 of every 12 pixel slots on LeNet's 10-pixel
    rows.) The last tile repeats its last pixel.

    Long reductions are cut into blocks (GEMM's "k blocking"): each filter row's run is
    taken ``run_block`` numbers at a time, so a panel's block of weights (about
    ``RUN_BLOCK_BYTES``) stays in the L1 cache while every tile of the task uses it; the
    tiles' sums wait in ``partial`` between blocks (VGG's 512-channel layers, 590 KB of
    weights per panel: 0.5x torch unblocked).
    """
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    panels = (K + CHANNELS - 1) // CHANNELS
    run = f_w * C  # floats under one filter row: contiguous in x and in the panel
    pixels = N * H_out * W_out
    tiles = (pixels + PIXELS - 1) // PIXELS
    # Which loop runs inside: with all the packed filters in the L1 cache (short reductions,
    # like a 1x1 dX's 16 channels), a tile does every panel before the next tile, so its
    # output pixels are written front to back; otherwise a panel serves all the task's
    # tiles before the next panel is loaded.
    filter_bytes = panels * f_h * run * CHANNELS * 4
    tile_major = filter_bytes <= TILE_MAJOR_BYTES
    # How the work is split among threads: by rows of pixels (a task: about one output row
    # of tiles, every panel), or, for a small input under large filters, by panels (a task:
    # one panel, every tile). Split by rows, every task reads all the filters: YOLOv3-tiny's
    # 13 x 13 x 512 -> 1024 layer (18.9 MB of filters, 11 row tasks) streamed 208 MB.
    by_panel = split_by_panel(x_shape, geometry)
    per_task = tiles if by_panel else (W_out + PIXELS - 1) // PIXELS  # tiles per task
    task_panels = 1 if by_panel else panels  # panels per task
    panel_tasks = panels // task_panels      # tasks along the panels, for each run of tiles
    # blocks of the reduction: one when a panel's weights fit in RUN_BLOCK_BYTES (then
    # also whenever tile_major: TILE_MAJOR_BYTES is smaller)
    run_block = max(LANES, RUN_BLOCK_BYTES // (f_h * CHANNELS * 4))
    blocks = 1 if f_h * run * CHANNELS * 4 <= RUN_BLOCK_BYTES else (run + run_block - 1) // run_block
    for task in prange((tiles + per_task - 1) // per_task * panel_tasks):
        edge = aligned_floats(PIXELS * CHANNELS)  # a tile that does not fit in `out`
        t0 = (task // panel_tasks) * per_task
        t1 = min(t0 + per_task, tiles)
        kb0 = (task % panel_tasks) * task_panels  # the task's first panel
        # the window starts of the task's pixels, found once for all panels
        starts = np.empty((t1 - t0) * PIXELS, np.int64)
        _window_starts(starts, t0 * PIXELS, pixels, x_shape, geometry)
        # the sums of the task's tiles between two blocks of the reduction
        partial = aligned_floats((t1 - t0) * task_panels * PIXELS * CHANNELS if blocks > 1 else 0)
        # the task's filters: the packed ones, or its own panel packed here (then at panel 0)
        weights, first_panel = Wf, 0
        if Wf.size == 0:
            weights, first_panel = aligned_floats(f_h * run * CHANNELS), kb0
            _pack_panel(rows, kb0, CHANNELS, weights, 0)
        for step in range((t1 - t0) * task_panels * blocks):
            if tile_major:
                tile, kb, block = t0 + step // task_panels, kb0 + step % task_panels, 0
            else:  # panel, then block, then tile: a block of weights serves all the task's tiles
                kb = kb0 + step // ((t1 - t0) * blocks)
                block, tile = (step // (t1 - t0)) % blocks, t0 + step % (t1 - t0)
            g0 = tile * PIXELS
            window = ints_at(starts, (tile - t0) * PIXELS, PIXELS)  # each pixel's window start
            kept = ((tile - t0) * task_panels + kb - kb0) * PIXELS * CHANNELS  # the tile's place in `partial`
            if block == 0:  # the sums start from the bias: PIXELS rows of 2 vectors
                tile_sums = repeat((loadv(bias, kb * CHANNELS), loadv(bias, kb * CHANNELS + LANES)), PIXELS)
            else:
                tile_sums = load_tile(partial, kept, CHANNELS, PIXELS, 2, LANES)
            j0 = block * run_block
            j1 = min(run, j0 + run_block) if blocks > 1 else run
            for i in range(f_h):
                row = i * Wp * C  # filter row i, from each window's start
                w_row = ((kb - first_panel) * f_h + i) * run * CHANNELS
                for jc in range(j0, j1):
                    w = w_row + jc * CHANNELS
                    tile_sums = tile_fma(splat_each(xf, window, row + jc, LANES),
                                         (loadv(weights, w), loadv(weights, w + LANES)), tile_sums)
            if block < blocks - 1:
                store_tile_rows(partial, kept, CHANNELS, tile_sums, 2, 0, PIXELS)
                continue
            if relu:
                tile_sums = tile_relu(tile_sums)
            k0 = kb * CHANNELS
            base = g0 * K + k0
            valid = min(PIXELS, pixels - g0)
            full = valid == PIXELS
            whole = full and k0 + CHANNELS <= K
            # one panel, LANES < K < CHANNELS, all pixels real: overlapping stores, as in
            # conv_tiles_narrow (the last-but-one pixel's lanes end inside the tile:
            # (PIXELS - 2) * K + 2 * LANES <= PIXELS * K; with several panels the overlap
            # would clobber the earlier panels of the next pixel, so those go through `edge`)
            overlap = full and panels == 1 and K > LANES
            if whole:
                store_tile_rows(out, base, K, tile_sums, 2, 0, PIXELS)
            elif overlap:  # rows in order: each store overwrites the previous one's spill-over
                store_tile_rows(out, base, K, tile_sums, 2, 0, PIXELS - 1)
                store_tile_rows(edge, 0, CHANNELS, tile_sums, 2, PIXELS - 1, PIXELS)
                for k in range(K):
                    out[base + (PIXELS - 1) * K + k] = edge[(PIXELS - 1) * CHANNELS + k]
            else:
                store_tile_rows(edge, 0, CHANNELS, tile_sums, 2, 0, PIXELS)
                for p in range(valid):
                    for k in range(min(CHANNELS, K - k0)):
                        out[base + p * K + k] = edge[p * CHANNELS + k]


NARROW_PIXELS = 8
"""Pixels per tile of the narrow kernel (one vector of ``LANES`` channels each)."""
NARROW_TASK_PIXELS = 256
"""Output pixels per task of the narrow kernel (about; whole tiles): its tiles store with
overlapping vectors, and only a task's last tile needs a scalar copy (seed39's forward,
2 threads: 37 pixels a task 0.49 ms, 296 pixels 0.45 ms)."""


@njit(parallel=True, cache=True, fastmath={"contract"})
def conv_tiles_narrow(xf, x_shape, Wf, geometry, bias, out, relu, lane_slots):
    """``conv_tiles`` for at most ``LANES`` output channels (LeNet's 6 and 16, the dX of a
    6-channel layer): a ``2 * LANES``-channel tile would leave most of its lanes idle, so
    this tile is ``NARROW_PIXELS`` pixels x one vector of channels (8 vector sums, one weight
    vector per step). The vector has ``len(lane_slots)`` lanes (a tuple: one compiled version
    per width): ``LANES``, or 8 for 8 channels or fewer on AVX-512 (3 channels fill 3 of 8
    lanes, not 3 of 16; see ``narrow_lanes``). ``Wf`` is packed with ``packed_filters(W,
    lanes)``, ``bias`` holds ``lanes`` numbers. Otherwise the same loop nest."""
    lanes = len(lane_slots)
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * C
    pixels = N * H_out * W_out
    tiles = (pixels + NARROW_PIXELS - 1) // NARROW_PIXELS
    # tasks of about NARROW_TASK_PIXELS pixels (at least a row; at least 16 tasks when there
    # are that many rows): see the overlapping stores below
    per_task = max((W_out + NARROW_PIXELS - 1) // NARROW_PIXELS, min(NARROW_TASK_PIXELS // NARROW_PIXELS, tiles // 16))
    for task in prange((tiles + per_task - 1) // per_task):
        edge = aligned_floats(NARROW_PIXELS * lanes)
        t0 = task * per_task
        t1 = min(t0 + per_task, tiles)
        starts = np.empty((t1 - t0) * NARROW_PIXELS, np.int64)
        _window_starts(starts, t0 * NARROW_PIXELS, pixels, x_shape, geometry)
        for tile in range(t0, t1):
            g0 = tile * NARROW_PIXELS
            window = ints_at(starts, (tile - t0) * NARROW_PIXELS, NARROW_PIXELS)
            tile_sums = repeat((load_lanes(bias, 0, lane_slots),), NARROW_PIXELS)
            for i in range(f_h):
                row = i * Wp * C
                w_row = i * run * lanes
                for jc in range(run):
                    tile_sums = tile_fma(splat_each(xf, window, row + jc, lane_slots),
                                         (load_lanes(Wf, w_row + jc * lanes, lane_slots),), tile_sums)
            if relu:
                tile_sums = tile_relu(tile_sums)
            base = g0 * K
            valid = min(NARROW_PIXELS, pixels - g0)
            # lanes / 2 <= K < lanes and all pixels real: pixel p's vector overlaps the first
            # channels of pixel p + 1, which the next store then overwrites (stores run in
            # pixel order, and the task owns the tile); the last pixel's spills into the next
            # tile's first pixel, which this task stores next, except after the task's last
            # tile: only that one's last pixel goes through `edge` (seed39's forward: 8% of
            # its time went to that copy when every tile made it). (K >= lanes / 2 keeps the
            # last-but-one pixel's lanes inside the tile: (NARROW_PIXELS - 2) * K + lanes <=
            # NARROW_PIXELS * K.)
            full = valid == NARROW_PIXELS and 2 * K >= lanes
            if full and (K == lanes or tile < t1 - 1):
                store_tile_rows(out, base, K, tile_sums, 1, 0, NARROW_PIXELS)
            elif full:
                store_tile_rows(out, base, K, tile_sums, 1, 0, NARROW_PIXELS - 1)
                store_tile_rows(edge, 0, lanes, tile_sums, 1, NARROW_PIXELS - 1, NARROW_PIXELS)
                for k in range(K):
                    out[base + (NARROW_PIXELS - 1) * K + k] = edge[(NARROW_PIXELS - 1) * lanes + k]
            else:
                store_tile_rows(edge, 0, lanes, tile_sums, 1, 0, NARROW_PIXELS)
                for p in range(valid):
                    for k in range(K):
                        out[base + p * K + k] = edge[p * lanes + k]


@njit(parallel=True, cache=True, fastmath={"contract"})
def filter_grad_tiles(xf, x_shape, dzf, geometry, row_range, chunk_rows, parts, workers, tap_slots, vector_slots,
                      lane_slots, bias_parts):
    """dW as the same kind of register tile, the reduction now running over output pixels::

        dW[r, k] = sum over (n, h_out, w_out) of x_window[(n, h_out, w_out), r] * dz[n, h_out, w_out, k]

    with r = i * run + m a filter tap (filter row i, m = j * C + c along the row's ``run =
    f_w * C`` contiguous numbers). A tile is ``taps`` consecutive taps of one filter row x
    ``vectors`` vectors of channels (``filter_grad_shape``: 6 x 16, 12 ymm sums, on AVX2; 8 x 32
    or 6 x 64, 16 or 24 zmm sums, on AVX-512); each pixel loads the vectors of ``dz`` and
    broadcasts the input numbers under the taps, which
    lie next to each other in x (NHWC): one address plus the constants ``TAP_OFFSETS``, so
    the loop needs no register per tap. A row's last tile is moved back to
    end at the row's end (its first taps are the previous tile's: computed twice, stored once).
    The sums run over the output rows (n, h_out) numbered ``row_range = (row0, end)``, and
    ``dzf`` is ``dz`` flat from row ``row0`` on. When K is not a multiple of the tile's
    width, a pixel's last vector runs into the next pixel's numbers, which only reach the
    columns k >= K of ``parts``, never read; the very last pixel's would run past the end of
    dz, so the caller sums the last row separately, from a copy with room after it (see
    ``backward_filter``). (Rows shorter than a tile, run < TAPS, read past
    the row: the caller gives ``xf`` TAPS numbers of slack, and those taps are not stored.)

    ``parts`` is ``(splits, f_h * run + TAPS, Kp)``, zeroed by the caller; split s sums its own
    share of the output rows, and the caller adds the splits in a fixed order (the same bits
    every run). Task = (split, tap tile, panel).

    Cache blocking (big layers): the output rows (n, h_out) are taken ``chunk_rows`` at a time;
    each of the ``workers`` threads owns a fixed share of the tasks (ordered filter row, panel,
    taps) and runs them chunk by chunk, carrying their sums over in ``parts``. So a chunk's
    ``dz`` and ``x`` rows are read from cache by all of a thread's tasks, instead of every task
    streaming all of ``dz`` from memory (VGG's 56x56x256 layer has 6,144 tasks: 2.2 s
    unblocked), and no parallel region is launched per chunk (a launch per chunk held two
    threads to 1.3-1.6x one). Which thread owns a task does not change its sums.

    ``bias_parts`` ``(splits, Kp)``, zeroed, or empty: the bias gradient ``db[k] = sum of
    dz[..., k]`` in the same pass (``sum_bias_rows``): the task of each panel's first tile
    also adds up its rows of dz, just read, instead of a separate pass over all of dz.
    """
    # the tile's shape: taps x vectors of `lanes` lanes, given as tuples of those lengths (one
    # compiled version per shape, with the shape a constant inside: see filter_grad_shape)
    taps, vectors, lanes = len(tap_slots), len(vector_slots), len(lane_slots)
    width = vectors * lanes  # channels per tile
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * C
    per_row = (run + taps - 1) // taps  # tiles per filter row
    tiles = f_h * per_row
    panels = (K + width - 1) // width
    Kp = panels * width
    splits = parts.size // ((f_h * run + taps) * Kp)
    row0, rows = row_range
    tasks = splits * tiles * panels
    workers = max(1, min(workers, tasks))
    for worker in prange(workers):
        for chunk0 in range(row0, rows, chunk_rows):
            chunk = min(chunk_rows, rows - chunk0)
            for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
                split = task // (tiles * panels)
                i = (task // (panels * per_row)) % f_h  # filter row, then panel, then taps along the row
                kb = (task // per_row) % panels
                m0 = (task % per_row) * taps
                first = 0  # taps of this tile already stored by the row's previous tile
                if m0 + taps > run and run >= taps:
                    first = m0 - (run - taps)
                    m0 = run - taps
                valid = min(taps, run - m0)
                tap_offset = i * Wp * C + m0  # where the tile's first tap sits in the window
                k0 = kb * width
                at = ((split * (f_h * run + taps)) + i * run + m0) * Kp + k0
                # `taps` rows of `vectors` vectors
                tile_sums = load_tile(parts, at, Kp, tap_slots, vector_slots, lane_slots)
                for row in range(chunk0 + split * chunk // splits, chunk0 + (split + 1) * chunk // splits):
                    n = row // H_out
                    h_out = row % H_out
                    corner = (n * Hp + h_out * s_h) * Wp * C + tap_offset
                    q = (row - row0) * W_out * K + k0
                    for w_out in range(W_out):
                        # the input numbers under the taps: consecutive in x (offsets 0, 1, ...)
                        under = splat_each(xf, ints_from(0, 1, tap_slots), corner + w_out * s_w * C, lane_slots)
                        tile_sums = tile_fma(under, load_tile(dzf, q, 0, 1, vector_slots, lane_slots), tile_sums)
                        q += K
                store_tile_rows(parts, at, Kp, tile_sums, vector_slots, first, valid)
                if bias_parts.size and i == 0 and task % per_row == 0:  # each panel's first tile
                    sum_bias_rows(dzf, bias_parts, split * Kp + k0, k0, K, W_out,
                                  (chunk0 + split * chunk // splits - row0, chunk0 + (split + 1) * chunk // splits - row0),
                                  vector_slots, lane_slots)


@register_jitable
def sum_bias_rows(dzf, bias_parts, at, k0, K, W_out, rows, vector_slots, lane_slots):
    """``bias_parts[at : at + width] += sum of dz[..., k0 : k0 + width] over the output rows
    [rows[0], rows[1])`` (``dzf`` flat, K numbers a pixel, W_out pixels a row; width = the
    vectors' lanes), in
    vector registers: the bias gradient of one tile's channels, added while the dW kernels
    have those rows of dz in cache. (As in the dW tile, a pixel's vectors may run on into the
    next pixel's numbers: only the columns past K, never read, receive them.)"""
    sums = load_tile(bias_parts, at, 0, 1, vector_slots, lane_slots)
    for q in range(rows[0] * W_out * K + k0, rows[1] * W_out * K + k0, K):
        sums = tile_add(sums, load_tile(dzf, q, 0, 1, vector_slots, lane_slots))
    store_tile_rows(bias_parts, at, 0, sums, vector_slots, 0, 1)


PACK_CHUNKS = 64
"""``_pack_rows``: tasks (runs of rows of W) the packing is split into."""
PACK_THREADS_FROM = 1 << 18
"""Filters of this many numbers or more (1 MB) are packed on all threads."""


@njit(parallel=True, cache=True)
def _pack_rows(rows, width, out):
    """``out[kb, r, lane] = rows[r, kb * width + lane]``, 0 past the last column. Row by row
    of W, each row's panels in turn (W read front to back: panel by panel, reading 128 bytes
    of every 4 KB row, took 2.1 ms for YOLOv3-tiny's 18.9 MB of filters, this 1.0 on two
    threads), whole panels moved as vectors (numpy's zero, copy and transpose took as long
    as LeNet's dense product itself, ~40 us for 400 x 120)."""
    F = rows.shape[0]
    for chunk in prange(PACK_CHUNKS):
        _pack_panels(rows, width, out, chunk * F // PACK_CHUNKS, (chunk + 1) * F // PACK_CHUNKS)


@register_jitable
def _pack_panels(rows, width, out, r0, r1):
    """Rows ``r0 .. r1 - 1`` of every panel (see ``_pack_rows``)."""
    F, K = rows.shape
    flat = rows.reshape(-1)
    for r in range(r0, r1):
        for kb in range(-(-K // width)):
            _pack_row(flat, K, r, kb, width, out, (kb * F + r) * width)


@register_jitable
def _pack_panel(rows, kb, width, out, at):
    """Panel ``kb`` alone, ``out[at + r * width + lane] = rows[r, kb * width + lane]``: a
    task's own panel (``conv_tiles``)."""
    F, K = rows.shape
    flat = rows.reshape(-1)
    for r in range(F):
        _pack_row(flat, K, r, kb, width, out, at + r * width)


@register_jitable
def _pack_row(flat, K, r, kb, width, out, at):
    """``out[at + lane] = rows[r, kb * width + lane]`` of the rows ``flat`` (K numbers each), 0
    past the last column: a whole panel's row as vectors (width: a multiple of 8, LANES or
    CHANNELS), the last, partial panel's lane by lane. (``flat``, not the rows: a reshape
    per call, in every thread, updated the array's shared reference count, and the
    per-task packing of YOLOv3-tiny's 18.9 MB of filters ran 7.5 -> 13.7 ms.)"""
    k0 = kb * width
    if k0 + width <= K:
        for v in range(0, width, 8):
            store8(out, at + v, load8(flat, r * K + k0 + v))
    else:
        for lane in range(width):
            out[at + lane] = flat[r * K + k0 + lane] if k0 + lane < K else 0


@njit(cache=True)
def flipped_filters(W):
    """``Wflip[i, j, k, c] = W[f_h - 1 - i, f_w - 1 - j, c, k]``, contiguous: the filters of a
    stride-1 dX as a convolution (one compiled call; numpy's flip, transpose and copy took
    three calls of cold Python)."""
    f_h, f_w, C, K = W.shape
    out = np.empty((f_h, f_w, K, C), W.dtype)
    for i in range(f_h):
        for j in range(f_w):
            for k in range(K):
                for c in range(C):
                    out[i, j, k, c] = W[f_h - 1 - i, f_w - 1 - j, c, k]
    return out


def input_is_copied(x_shape, win, H_out, W_out, slack=0):
    """Whether ``padded_input`` copies x: padding on a side, windows reaching past x, or slack."""
    Hp = (H_out - 1) * win.stride_h + win.f_h
    Wp = (W_out - 1) * win.stride_w + win.f_w
    return win.pad_top != 0 or win.pad_left != 0 or Hp > x_shape[1] or Wp > x_shape[2] or slack != 0


def padded_input(x, win, H_out, W_out, scratch, slack=0):
    """``x`` with its zero border, as big as the windows read: ``(N, Hp, Wp, C)`` with
    ``Hp = (H_out - 1) * s_h + f_h`` and ``Wp = (W_out - 1) * s_w + f_w``. ``x`` itself when
    no border is needed (no pad, no slack): a layer without padding is never copied.
    ``slack`` > 0: always a copy, with that many readable numbers after its end.
    ``scratch(name, n_items)`` gives reusable float32 memory. Negative pads crop ``x``.
    (``border_copy`` and ``with_border``, as the compiled drivers do it.)"""
    copy = border_copy(x.shape, win, H_out, W_out, scratch, slack)
    if copy.size == 0:
        return x
    N, _, _, C = x.shape
    Hp, Wp = window_span(win, (H_out, W_out))
    # the geometry's last number, K, is not read by with_border
    _fill_border(x, (win.pad_top, win.pad_left), copy, (win.f_h, win.f_w, win.stride_h, win.stride_w, H_out, W_out, 0))
    return copy[:N * Hp * Wp * C].reshape(N, Hp, Wp, C)


@njit(cache=True)
def _fill_border(x, pads, copy, geometry):
    with_border(x, pads, copy, geometry)


@njit(parallel=True, cache=True)
def _pad_rows(x, xp, top, left):
    """``xp[n, h, w] = x[n, h - top, w - left]`` where that is inside x, else 0, one xp row
    per task (one pass over xp: the four numpy slice assignments it replaces cost 0.1 ms per
    LeNet layer, mostly in Python)."""
    N, H, W, C = x.shape
    Hp, Wp = xp.shape[1], xp.shape[2]
    w0 = min(max(left, 0), Wp)  # xp columns [w0, w1) come from x
    w1 = max(min(left + W, Wp), w0)
    for t in prange(N * Hp):
        n = t // Hp
        h = t % Hp
        row = xp[n, h].reshape(-1)  # Wp * C, contiguous
        src_h = h - top
        if src_h < 0 or src_h >= H:
            row[:] = 0
            continue
        src = x[n, src_h].reshape(-1)
        row[:w0 * C] = 0
        row[w0 * C:w1 * C] = src[(w0 - left) * C:(w1 - left) * C]  # a slice copy: vectorised (a
        row[w1 * C:] = 0  # loop indexing src[e - left * C] was not: 2-2.6x slower)


def narrow_lanes(K):
    """The vector width of the narrow tile for K <= LANES output channels: 8 when K <= 8
    (on AVX-512 a 16-lane vector would idle at least half its lanes: the dX of LeNet's
    6-channel layer ran 0.75x the 8-lane tile's speed), else LANES."""
    return 8 if K <= 8 else LANES


def tile_name(K):
    """The tile ``forward`` uses for K output channels (for NBCNN_DEBUG): pixels x channels,
    "direct 8x8 tile" / "direct 4x16 tile" on AVX2, "direct 8x8 tile" / "direct 8x16 tile" /
    "direct 8x32 tile" on AVX-512."""
    if K <= LANES:
        return f"direct {NARROW_PIXELS}x{narrow_lanes(K)} tile"
    return f"direct {PIXELS}x{CHANNELS} tile"


@functools.lru_cache(maxsize=256)
def filter_grad_shape(K, run=None):
    """(taps, vectors, lanes) of the dW tile for K output channels: ``TAPS`` x two vectors of
    ``LANES``; on AVX-512 past ``CHANNELS`` channels ``WIDE_TAPS`` x four; for ``LANES``
    channels or fewer ``NARROW_TAPS`` x one vector, of 8 lanes for 8 channels or fewer
    (``narrow_lanes``: 1.5x a 16-lane vector's speed on a 3 -> 8 layer), or as many taps as
    a short filter row has (``run = f_w * C``, see ``SHORT_ROW_TAPS``: seed39's dW 0.85 ->
    0.70 ms, LeNet's first layer 0.59 -> 0.40 ms)."""
    if K <= LANES:
        taps = run if run is not None and SHORT_ROW_TAPS <= run < NARROW_TAPS else NARROW_TAPS
        return (taps, 1, narrow_lanes(K))
    if LANES == 16 and K > CHANNELS:
        return (WIDE_TAPS, 4, LANES)
    return (TAPS, 2, LANES)


@functools.lru_cache(maxsize=256)
def filter_grad_tile_name(K, run=None):
    """The dW tile (for NBCNN_DEBUG): taps x channels, "dW 6x16 tile" / "dW 12x8 tile" on
    AVX2, "dW 6x64 tile" / "dW 8x32 tile" / "dW 12x16 tile" / "dW 12x8 tile" on AVX-512."""
    taps, vectors, lanes = filter_grad_shape(K, run)
    return f"dW {taps}x{vectors * lanes} tile"


def forward(x, W, b, win, z, scratch, relu=False):
    """``z = conv(x, W) + b`` for float32 ``x, W, b, z`` (contiguous); ``win`` a ``checks.Window``;
    ``relu``: ``z = relu(conv(x, W) + b)`` in the same pass.

    Python only finds the shapes and the scratch memory; the border copy, the packing, the
    bias and the tiles run in one compiled call (``_forward_narrow``, ``_forward_wide``; see
    ``border_copy``)."""
    N, H_out, W_out, K = z.shape
    geometry = (win.f_h, win.f_w, win.stride_h, win.stride_w, H_out, W_out, K)
    copy = border_copy(x.shape, win, H_out, W_out, scratch)
    pads = (win.pad_top, win.pad_left)
    if K <= LANES:  # the narrow tile for LANES channels or fewer
        _forward_narrow(x, W, b, pads, copy, geometry, z, relu, (0,) * narrow_lanes(K))
    else:
        _forward_wide(x, W, b, pads, copy, geometry, z, relu)


NO_COPY = np.zeros(0, np.float32)
"""``border_copy``'s answer for a layer whose input needs no border: x is read in place."""


def border_copy(x_shape, win, H_out, W_out, scratch, slack=0):
    """The flat scratch memory ``with_border`` copies x into (``padded_input``'s copy, not
    yet filled), or ``NO_COPY``. The compiled drivers take it and copy x there themselves:
    each Python step between two kernels runs with cold caches (the previous kernel streamed
    megabytes through them), a few microseconds each (a Numba call 10-16 us), and the steps
    of a small layer's forward cost 50-70 us of its 230-400 (Sapphire Rapids)."""
    if not input_is_copied(x_shape, win, H_out, W_out, slack):
        return NO_COPY
    Hp, Wp = window_span(win, (H_out, W_out))
    return scratch("padded_x", x_shape[0] * Hp * Wp * x_shape[3] + slack)


def input_bytes(x_shape, win, H_out, W_out, slack=0):
    """The bytes of the input the dW kernels read: its copy with the border (``border_copy``)
    when it has one, else x's own."""
    if input_is_copied(x_shape, win, H_out, W_out, slack):
        Hp, Wp = window_span(win, (H_out, W_out))
        return 4 * x_shape[0] * Hp * Wp * x_shape[3]
    return 4 * math.prod(x_shape)


@register_jitable
def with_border(x, pads, copy, geometry):
    """``padded_input`` in compiled code: ``(flat input, its shape)``, x itself when ``copy``
    is ``NO_COPY``, else ``copy`` filled with x and its zero border (and zeros in any slack
    after it)."""
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    N, H, W, C = x.shape
    if copy.size == 0:
        return x.reshape(-1), (N, H, W, C)
    Hp, Wp = (H_out - 1) * s_h + f_h, (W_out - 1) * s_w + f_w
    size = N * Hp * Wp * C
    copy[size:] = 0
    _pad_rows(x, copy[:size].reshape(N, Hp, Wp, C), pads[0], pads[1])
    return copy, (N, Hp, Wp, C)


@register_jitable
def packed_filters(W, width):
    """``W (f_h, f_w, C, K)`` -> flat panels ``(ceil(K / width), f_h, f_w, C, width)``,
    zero-padded (see ``_pack_rows``)."""
    rows = filter_rows(W)
    out = aligned_floats(-(-W.shape[3] // width) * width * rows.shape[0])
    if rows.size >= PACK_THREADS_FROM:
        _pack_rows(rows, width, out)
    else:  # waking the threads costs more than the copy
        _pack_panels(rows, width, out, 0, rows.shape[0])
    return out


@register_jitable
def filter_rows(W):
    """``W (f_h, f_w, C, K)`` as the matrix ``(f_h * f_w * C, K)`` (contiguous)."""
    return np.ascontiguousarray(W).reshape(-1, W.shape[3])


@register_jitable
def padded_bias(b, width):
    """``b`` followed by zeros up to a whole number of ``width``-channel panels."""
    K = b.shape[0]
    out = aligned_floats(-(-K // width) * width)
    out[:] = 0
    out[:K] = b
    return out


@njit(cache=True)
def _forward_narrow(x, W, b, pads, copy, geometry, z, relu, lane_slots):
    """``forward``'s compiled part for the narrow tile (``len(lane_slots)`` lanes)."""
    xf, x_shape = with_border(x, pads, copy, geometry)
    width = len(lane_slots)
    conv_tiles_narrow(xf, x_shape, packed_filters(W, width), geometry, padded_bias(b, width), z.reshape(-1), relu,
                      lane_slots)


@njit(cache=True)
def _forward_wide(x, W, b, pads, copy, geometry, z, relu):
    """``forward``'s compiled part for the ``PIXELS`` x ``CHANNELS`` tile (split by panels:
    each task packs its own, see ``conv_tiles``)."""
    xf, x_shape = with_border(x, pads, copy, geometry)
    Wf = aligned_floats(0) if split_by_panel(x_shape, geometry) else packed_filters(W, CHANNELS)
    conv_tiles(xf, x_shape, Wf, geometry, padded_bias(b, CHANNELS), z.reshape(-1), relu, filter_rows(W))


def dense_forward(x, W, b, y):
    """``y = x @ W + b`` for float32 ``x (N, D)``, ``W (D, M)``: a dense layer is a 1x1
    convolution of N one-pixel images with D channels, so it is ``forward`` on those views
    (both cores through Numba's threads; no padding, so no copy and no scratch memory)."""
    N, D = x.shape
    M = W.shape[1]
    forward(x.reshape(N, 1, 1, D), W.reshape(1, 1, D, M), b, Window(1, 1, 1, 1, 0, 0), y.reshape(N, 1, 1, M),
            scratch=None)


TASKS_WANTED = 16
"""dW: split the rows into enough parts that there are about this many tasks (a fixed
number, not the thread count, so the sum order, and the bits, never depend on the machine)."""
CHUNK_PIXELS = 256
"""dW cache blocking: output pixels per chunk (256 pixels of a 256-channel dz: 256 KB)."""
CHUNK_SPLITS = 2
"""dW, chunked, with a dz larger than the L2 cache: each chunk's rows are split in this many
parts, each with its own sums (a fixed number: the bits do not depend on the threads). With
2 threads each then reads only its part of dz from memory; sharing the tasks instead, both
read all of it (ResNet's stem, 25.7 MB of dz: 137-142 -> 154-160 GFLOP/s on 2 threads).
Inception's 5x5 layer, 0.8 MB of dz, ran 5-9% slower split, so smaller dz are not."""
CHUNK_BYTES = 512 << 10
"""dW: a ``dz`` and input together smaller than this (an L2 cache) are not chunked, as every
task may read them whole from the cache. (Inception's 5x5 layer, 800 KB of dz: 25 GFLOP/s
unchunked, 68 chunked, one thread; its 1x1 layer, 400 KB of dz under 4.8 MB of input: 53
-> 82.)"""


_NO_BIAS = np.zeros(0, np.float32)


def backward_filter(x, dz, win, dW, scratch, db=None, l2=None):
    """``dW = sum over pixels of window(x) outer dz`` for float32 (see ``filter_grad_tiles``);
    with ``db`` given, also ``db = the sum of dz over its pixels`` in the same pass. ``l2``:
    the L2 cache's bytes, if the caller has read them (``caches.l2_bytes``). Python finds the
    shapes, the chunks and the scratch memory; the rest is one compiled call
    (``_backward_filter``; see ``border_copy``)."""
    N, H_out, W_out, K = dz.shape
    f_h, f_w, C, _ = dW.shape
    taps, vectors, lanes = filter_grad_shape(K, f_w * C)
    slack = taps if f_w * C < taps else 0  # a row shorter than a tile reads past its end
    copy = border_copy(x.shape, win, H_out, W_out, scratch, slack)
    splits, chunk_rows = filter_grad_chunks(x.shape, dz.shape, dW.shape, win, l2 or l2_bytes())
    # a copy when dz does not start on a cache line: its vectors are read again by every tile
    # of taps, each load then split across two lines (1.07x aligned, one pass to copy)
    dz_copy = scratch("dz_aligned", dz.size) if K % 16 == 0 and address(dz) % ALIGNMENT else NO_COPY
    _backward_filter(x, dz, (win.pad_top, win.pad_left), copy, dz_copy,
                     (f_h, f_w, win.stride_h, win.stride_w, H_out, W_out, K), splits, chunk_rows,
                     dW, _NO_BIAS if db is None else db, thread_count(), (0,) * taps, (0,) * vectors, (0,) * lanes)


@functools.lru_cache(maxsize=1024)
def filter_grad_chunks(x_shape, dz_shape, dW_shape, win, l2):
    """``(splits, chunk_rows)`` of ``filter_grad_tiles`` for these shapes (see there), found
    once per shape."""
    N, H_out, W_out, K = dz_shape
    f_h, f_w, C, _ = dW_shape
    run = f_w * C
    taps, vectors, lanes = filter_grad_shape(K, run)
    x_bytes = input_bytes(x_shape, win, H_out, W_out, taps if run < taps else 0)
    dz_bytes = 4 * math.prod(dz_shape)
    tasks = f_h * -(-run // taps) * -(-K // (vectors * lanes))
    if tasks >= TASKS_WANTED and dz_bytes + x_bytes > CHUNK_BYTES:
        # big: cache-sized chunks of rows; past the L2 cache, each chunk's rows in CHUNK_SPLITS parts
        splits = CHUNK_SPLITS if dz_bytes > l2 else 1
        return splits, -(-max(1, CHUNK_PIXELS // W_out) // splits) * splits
    # few tasks (small filters): split the rows, one chunk
    return max(1, min(N * H_out, TASKS_WANTED // tasks)), N * H_out


@njit(cache=True)
def _backward_filter(x, dz, pads, copy, dz_copy, geometry, splits, chunk_rows, dW, db, workers, tap_slots,
                     vector_slots, lane_slots):
    """``backward_filter``'s compiled part: the border copy, the tiles, and the sum of their
    parts into dW (and db, when it is not empty)."""
    xf, x_shape = with_border(x, pads, copy, geometry)
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    taps, width = len(tap_slots), len(vector_slots) * len(lane_slots)
    Kp = -(-K // width) * width
    F = f_h * f_w * x_shape[3]
    dzf = dz.reshape(-1)
    if dz_copy.size:
        dz_copy[:] = dzf
        dzf = dz_copy
    parts = aligned_floats(splits * (F + taps) * Kp)
    parts[:] = 0
    bias_parts = aligned_floats(splits * Kp if db.size else 0)
    bias_parts[:] = 0
    rows = x_shape[0] * H_out
    last = rows - 1 if Kp != K else rows
    if last > 0:
        filter_grad_tiles(xf, x_shape, dzf, geometry, (0, last), chunk_rows, parts, workers, tap_slots, vector_slots,
                          lane_slots, bias_parts)
    if last < rows:
        # the last pixel's vectors would read up to `width` numbers past the end of dz, so the
        # last row is summed from a copy with room after it (a copy of all of dz instead cost
        # seed39's dW 0.4 of its 0.85 ms)
        room = aligned_floats(W_out * K + width)
        room[:] = 0
        room[:W_out * K] = dzf[last * W_out * K:]
        filter_grad_tiles(xf, x_shape, room, geometry, (last, rows), chunk_rows, parts, workers, tap_slots,
                          vector_slots, lane_slots, bias_parts)
    summed = _summed_in_order(parts.reshape(splits, -1))
    flat = dW.reshape(-1)
    for r in range(F):
        for k in range(K):
            flat[r * K + k] = summed[r * Kp + k]
    if db.size:
        summed = _summed_in_order(bias_parts.reshape(splits, -1))
        for k in range(K):
            db[k] = summed[k]


def sum_in_order(parts):
    """``parts[0] + parts[1] + ...`` added one after another into ``parts[0]`` (a fixed order:
    the same bits on any thread count, whichever thread summed each part); returns parts[0].
    Compiled: numpy's ``+=`` per part ran in cold Python after the kernel (see
    ``backend.cpu_runners``), a few microseconds each."""
    _add_parts(parts.reshape(parts.shape[0], -1))
    return parts[0]


@njit(cache=True)
def _add_parts(rows):
    _summed_in_order(rows)


@register_jitable
def _summed_in_order(rows):
    """``sum_in_order`` in compiled code, of the rows of a 2-D array; returns rows[0]."""
    for t in range(1, rows.shape[0]):
        for e in range(rows.shape[1]):
            rows[0, e] += rows[t, e]
    return rows[0]


def _phases(f, s, pad):
    """Per phase ph of a stride-s axis: (first filter tap i0, number of taps M, base), with
    ``i0 = (ph + pad) % s`` and ``base = (ph + pad - i0) // s`` (see ``backward_input_strided``)."""
    phases = []
    for ph in range(s):
        i0 = (ph + pad) % s
        phases.append((i0, max(0, -(-(f - i0) // s)), (ph + pad - i0) // s))
    return phases


def backward_input_strided(dz, W, win, dx, scratch):
    """dX of a strided conv (float32), as ``s_h * s_w`` stride-1 convolutions ("phases").

    With stride s, input row h receives gradient only from filter rows i with
    ``i = (h + pad_top) mod s (mod s)``; so the rows h = ph, ph + s, ph + 2s, ... (one phase)
    all see the same sub-filter ``W[i0::s]``, and for them dX is an ordinary stride-1
    convolution of ``dz`` with that sub-filter flipped and transposed in (c, k)::

        dx[n, ph + s*t, ...] = sum over m of dz[n, base + t - m, ...] . W[i0 + s*m, ...]
        i0 = (ph + pad_top) % s,   base = (ph + pad_top - i0) // s

    Each phase runs on ``forward`` (the register tile), into a scratch array that is then
    copied into its rows and columns of ``dx``. No multiply-adds are wasted on the zeros a
    "dilate dz, then convolve" dX would insert.
    """
    N, H, W_in, C = dx.shape
    f_h, f_w = W.shape[0], W.shape[1]
    s_h, s_w = win.stride_h, win.stride_w
    no_bias = np.zeros(C, np.float32)
    for ph, (i0, M_h, base_h) in enumerate(_phases(f_h, s_h, win.pad_top)):
        for pw, (j0, M_w, base_w) in enumerate(_phases(f_w, s_w, win.pad_left)):
            T_h, T_w = -(-(H - ph) // s_h), -(-(W_in - pw) // s_w)  # rows, columns of this phase
            if T_h <= 0 or T_w <= 0:
                continue
            if M_h == 0 or M_w == 0:  # no filter tap ever lands on these cells
                dx[:, ph::s_h, pw::s_w] = 0
                continue
            sub = W[i0::s_h, j0::s_w][:M_h, :M_w]
            flipped = np.ascontiguousarray(sub[::-1, ::-1].transpose(0, 1, 3, 2))  # (M_h, M_w, K, C)
            phase_win = type(win)(M_h, M_w, 1, 1, M_h - 1 - base_h, M_w - 1 - base_w)
            out = scratch("dx_phase", N * T_h * T_w * C).reshape(N, T_h, T_w, C)
            forward(dz, flipped, no_bias, phase_win, out, scratch)
            dx[:, ph::s_h, pw::s_w] = out


def backward_input_space_to_depth(dz, W, win, dx, scratch):
    """dX of a strided conv with few input channels (float32): all ``s_h * s_w`` phases of
    ``backward_input_strided`` in *one* stride-1 convolution, phases side by side in the
    output channels ("space to depth").

    Output pixel (t, u) of that convolution is the block of dx cells ``(ph + s_h * t,
    pw + s_w * u)`` for every phase (ph, pw), channel ``(ph * s_w + pw) * C + c``. Every phase
    reads the dz rows ``base(ph) + t - m`` (m < M(ph) its sub-filter taps), so one window of
    ``Q = pad + max(base) + 1`` dz rows covers them all, with ``pad = max(M - 1 - base)``;
    the combined filter holds ``W[i0(ph) + s * m]`` at window row ``q = pad + base(ph) - m``
    and zeros where a phase has no tap. Why: a 3-channel stem's phases each fill only 3 of a
    tile's 8 lanes; together (4 phases x 3 channels = 12 of 16) the tile is 2x fuller, for
    about a quarter more multiply-adds on zeros. Then one copy puts the blocks into dx.
    """
    N, H, W_in, C = dx.shape
    f_h, f_w, _, K = W.shape
    s_h, s_w = win.stride_h, win.stride_w

    def layout(f, s, pad, size):
        """``_phases``; then the window pad and length Q, and the blocks along the axis."""
        phases = _phases(f, s, pad)
        lead = max(M - 1 - base for _, M, base in phases if M > 0)
        Q = lead + max(base for _, M, base in phases if M > 0) + 1
        return phases, lead, Q, -(-size // s)

    rows, lead_h, Q_h, T_h = layout(f_h, s_h, win.pad_top, H)
    cols, lead_w, Q_w, T_w = layout(f_w, s_w, win.pad_left, W_in)
    Ws = np.zeros((Q_h, Q_w, K, s_h * s_w * C), np.float32)
    for ph, (i0, M_h, base_h) in enumerate(rows):
        for pw, (j0, M_w, base_w) in enumerate(cols):
            out = (ph * s_w + pw) * C
            for m_h in range(M_h):
                for m_w in range(M_w):
                    q_h, q_w = lead_h + base_h - m_h, lead_w + base_w - m_w
                    Ws[q_h, q_w, :, out:out + C] = W[i0 + s_h * m_h, j0 + s_w * m_w].T
    blocks = scratch("dx_blocks", N * T_h * T_w * s_h * s_w * C).reshape(N, T_h, T_w, s_h * s_w * C)
    forward(dz, Ws, np.zeros(Ws.shape[3], np.float32), type(win)(Q_h, Q_w, 1, 1, lead_h, lead_w), blocks, scratch)
    # depth to space: block (t, u), channel (ph, pw, c) -> dx[ph + s_h t, pw + s_w u, c]
    full = blocks.reshape(N, T_h, T_w, s_h, s_w, C).transpose(0, 1, 3, 2, 4, 5).reshape(N, T_h * s_h, T_w * s_w, C)
    dx[...] = full[:, :H, :W_in]
