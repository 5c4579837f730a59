"""Fast cpu convolution (float32): direct, register-blocked loop nests for the forward, dW
and dX.

Same maths and shapes as the readable ``conv.conv2d_forward`` (NHWC)::

    z[n, h_out, w_out, k] = b[k] + sum over i, j, c of
                            x[n, h_out * s_h - pad_top + i, w_out * s_w - pad_left + j, c] * W[i, j, c, k]
    H_out = (H + pad_top + pad_bottom - f_h) // s_h + 1

What is restructured, and why it is fast (about 100x the readable compiled loop, and 2-7x
im2col + BLAS; ``nbcnn bench --ladder`` shows the steps):

1. **A register tile.** The output is cut into tiles of 4 pixels x 16 channels.
   A tile's 64 sums live in 8 vector registers (``simd.f32x8``: 8 lanes each) for the whole
   reduction over (i, j, c); each step loads 2 weight vectors and broadcasts 4 input numbers,
   then does 8 vector multiply-adds: the two FMA units, not memory, set the speed. (The
   readable loop does one load per multiply-add.) AVX2 has 16 vector registers; 6 x 16
   (12 sums) measured slower here, and 12 x 8 spilled sums to the stack (checked in
   tests/test_conv_direct.py). Layers with 8 channels or fewer (LeNet's 6, the dX of a
   3-channel stem) use an 8 pixel x 8 channel tile, so fewer lanes idle.
2. **Packed weights.** ``W`` is re-laid out as panels ``(K/16, f_h, f_w, C, 16)`` (padded with
   zeros to a whole panel), so the 2 weight vectors of one step are 64 contiguous bytes and a
   tile walks its panel front to back.
3. **One contiguous run per filter row.** In NHWC the numbers under filter row i of one pixel,
   ``x[n, h, w0 .. w0 + f_w - 1, 0 .. C - 1]``, are ``f_w * C`` consecutive floats, and so are
   the weights ``W[i, :, :, k0 .. k0 + 15]`` in the panel: the inner loop is one flat ``jc``
   loop with no index arithmetic per tap.
4. **Padding copied once.** Reads outside the image would need a test per tap; instead ``x``
   is copied once into a zero-bordered buffer (no copy at all for a layer without padding).
   A tile's pixels are 4 *consecutive* output pixels in NHWC order, so a tile may run on
   into the next row or image: each of its pixels has its own window start (computed once
   per task), its outputs are 4 consecutive pixels of ``out`` all the same, and no pixel
   slot idles at the end of a row (LeNet's 10-pixel rows wasted 2 of 12 when tiles stopped
   at the row's end). The very last tile repeats its last pixel.
5. **Bias for free:** the sums start from the bias vector instead of zero.
6. **Threads:** ``prange`` over runs of tiles (about one output row each); each tile is
   written by one thread, so there are no races and the result is the same bits every run.

The backward passes reuse the tile: dW is ``filter_grad_tiles`` (6 taps x 16 channels,
summed over pixels in cache-sized chunks); stride-1 dX is the forward with the filters
flipped and transposed (``conv_fast.backward_input``); strided dX is one stride-1 convolution
per phase of the input grid (``backward_input_strided``) or, for few channels, all phases in
one (``backward_input_space_to_depth``).
"""

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ...checks import Window
from .simd import LANES, fma8, load8, splat8, splat_at8, store8

PIXELS = 4
"""Output pixels per register tile (along a row)."""
TAPS = 6
"""Filter taps per register tile of the dW kernel."""
CHANNELS = 16
"""Output channels per register tile: two 8-lane vectors."""
TILE_MAJOR_BYTES = 24 << 10
"""conv_tiles: packed filters up to this size are all run tile by tile (see there)."""


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
def tile_step(x0, x1, x2, x3, w_lo, w_hi, tile_sums):
    """One step of the 4 pixel x 16 channel register tile: ``tile_sums`` holds 8 vectors,
    pixel p's channels 0-7 and 8-15 at ``2p`` and ``2p + 1``; each gets ``x_p * w`` added
    (``x_p``: pixel p's input number in all lanes; ``w_lo``, ``w_hi``: the 16 weights).
    8 FMAs on registers: a tuple of vectors is plain values once inlined, kept in ymm
    registers like separately named sums (tests/test_conv_direct.py checks the assembly)."""
    a00, a01, a10, a11, a20, a21, a30, a31 = tile_sums
    return (fma8(x0, w_lo, a00), fma8(x0, w_hi, a01), fma8(x1, w_lo, a10), fma8(x1, w_hi, a11),
            fma8(x2, w_lo, a20), fma8(x2, w_hi, a21), fma8(x3, w_lo, a30), fma8(x3, w_hi, a31))


@register_jitable
def store_tile(dst, at, pitch, tile_sums, last=True):
    """Pixel p's 16 sums to ``dst[at + p * pitch ...]``, for p = 0, 1, 2, and 3 if ``last``."""
    a00, a01, a10, a11, a20, a21, a30, a31 = tile_sums
    store8(dst, at, a00)
    store8(dst, at + 8, a01)
    store8(dst, at + pitch, a10)
    store8(dst, at + pitch + 8, a11)
    store8(dst, at + 2 * pitch, a20)
    store8(dst, at + 2 * pitch + 8, a21)
    if last:
        store8(dst, at + 3 * pitch, a30)
        store8(dst, at + 3 * pitch + 8, a31)


@njit(parallel=True, cache=True, fastmath={"contract"})
def conv_tiles(xf, x_shape, Wf, geometry, bias, out):
    """The tiled loop nest (4 pixels x 16 channels). All arrays are flat float32:

    * ``xf``: the padded input, shape ``x_shape = (N, Hp, Wp, C)`` (see ``padded_input``), so
      window (h_out, w_out) starts at row ``h_out * s_h``, column ``w_out * s_w``;
    * ``Wf``: the packed filters ``(ceil(K / 16), f_h, f_w, C, 16)`` (see ``pack_filters``):
      one tap's 16 weights are 64 contiguous bytes, the next tap's right after them. (The
      step is the constant 16 on purpose: a step read from an argument, to walk a dense
      layer's ``W`` in place, cost 5-10% on every conv.)
    * ``geometry = (f_h, f_w, s_h, s_w, H_out, W_out, K)``;
    * ``bias``: ``ceil(K / 16) * 16`` numbers; ``out``: ``(N, H_out, W_out, K)``.

    A tile is 4 *consecutive* output pixels in NHWC order, so it may run on into the next row
    (or image): each pixel keeps its own window start ``b0 .. b3``, and the tile's outputs
    are always 4 consecutive pixels of ``out``. (Tiles along one row only would waste 2 of
    every 12 pixel slots on LeNet's 10-pixel rows.) The last tile repeats its last pixel.
    """
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    panels = (K + CHANNELS - 1) // CHANNELS
    run = f_w * C  # floats under one filter row: contiguous in x and in the panel
    pixels = N * H_out * W_out
    tiles = (pixels + PIXELS - 1) // PIXELS
    per_task = (W_out + PIXELS - 1) // PIXELS  # about one output row of tiles per task
    # Which loop runs inside: with all the packed filters in the L1 cache (short reductions,
    # like a 1x1 dX's 16 channels), a tile does every panel before the next tile, so its
    # output pixels are written front to back; otherwise a panel serves all the task's
    # tiles before the next panel is loaded.
    tile_major = panels * f_h * run * CHANNELS * 4 <= TILE_MAJOR_BYTES
    for task in prange((tiles + per_task - 1) // per_task):
        edge = np.empty(PIXELS * CHANNELS, np.float32)  # a tile that does not fit in `out`
        t0 = task * per_task
        t1 = min(t0 + per_task, tiles)
        # the window starts of the task's pixels, found once for all panels
        starts = np.empty((t1 - t0) * PIXELS, np.int64)
        _window_starts(starts, t0 * PIXELS, pixels, x_shape, geometry)
        for step in range((t1 - t0) * panels):
            if tile_major:
                tile, kb = t0 + step // panels, step % panels
            else:
                kb, tile = step // (t1 - t0), t0 + step % (t1 - t0)
            g0 = tile * PIXELS
            s0 = (tile - t0) * PIXELS
            b0, b1, b2, b3 = starts[s0], starts[s0 + 1], starts[s0 + 2], starts[s0 + 3]
            lo = load8(bias, kb * CHANNELS)  # the sums start from the bias
            hi = load8(bias, kb * CHANNELS + 8)
            tile_sums = (lo, hi, lo, hi, lo, hi, lo, hi)
            for i in range(f_h):
                row = i * Wp * C  # filter row i, from each window's start
                w_row = (kb * f_h + i) * run * CHANNELS
                for jc in range(run):
                    o = row + jc
                    tile_sums = tile_step(splat_at8(xf, b0 + o), splat_at8(xf, b1 + o), splat_at8(xf, b2 + o),
                                          splat_at8(xf, b3 + o), load8(Wf, w_row + jc * CHANNELS),
                                          load8(Wf, w_row + jc * CHANNELS + 8), tile_sums)
            k0 = kb * CHANNELS
            base = g0 * K + k0
            valid = min(PIXELS, pixels - g0)
            full = valid == PIXELS
            whole = full and k0 + CHANNELS <= K
            # one panel, 8 < K < 16, 4 real pixels: overlapping stores, as in
            # conv_tiles_narrow (pixel 2's lanes end inside the tile: 2 * K + 16 <= 4 * K;
            # with several panels the overlap would clobber the earlier panels of the
            # next pixel, so those go through `edge`)
            overlap = full and panels == 1 and K > LANES
            dst = out if whole or overlap else edge
            at = base if whole or overlap else 0
            pitch = K if whole or overlap else CHANNELS
            store_tile(dst, at, pitch, tile_sums, whole)  # pixels 0-2, and 3 when whole
            if overlap:
                store8(edge, 0, tile_sums[6])
                store8(edge, 8, tile_sums[7])
                for k in range(K):
                    out[base + 3 * K + k] = edge[k]
            elif not whole:
                store8(edge, 3 * CHANNELS, tile_sums[6])
                store8(edge, 3 * CHANNELS + 8, tile_sums[7])
                for p in range(valid):
                    for k in range(min(CHANNELS, K - k0)):
                        out[base + p * K + k] = edge[p * CHANNELS + k]


NARROW_PIXELS = 8
"""Pixels per tile of the narrow kernel (one 8-lane vector of channels each)."""


@njit(parallel=True, cache=True, fastmath={"contract"})
def conv_tiles_narrow(xf, x_shape, Wf, geometry, bias, out):
    """``conv_tiles`` for at most 8 output channels (LeNet's 6, the dX of a 6-channel layer):
    a 16-channel tile would leave 10 of its 16 lanes idle, so this tile is 8 pixels x 8
    channels instead (8 vector sums, one weight vector per step). ``Wf`` is packed with
    ``pack_filters(W, 8)``, ``bias`` holds 8 numbers. Otherwise the same loop nest."""
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * C
    pixels = N * H_out * W_out
    tiles = (pixels + NARROW_PIXELS - 1) // NARROW_PIXELS
    per_task = (W_out + NARROW_PIXELS - 1) // NARROW_PIXELS
    for task in prange((tiles + per_task - 1) // per_task):
        edge = np.empty(NARROW_PIXELS * LANES, np.float32)
        t0 = task * per_task
        t1 = min(t0 + per_task, tiles)
        starts = np.empty((t1 - t0) * NARROW_PIXELS, np.int64)
        _window_starts(starts, t0 * NARROW_PIXELS, pixels, x_shape, geometry)
        for tile in range(t0, t1):
            g0 = tile * NARROW_PIXELS
            s0 = (tile - t0) * NARROW_PIXELS
            b0, b1, b2, b3 = starts[s0], starts[s0 + 1], starts[s0 + 2], starts[s0 + 3]
            b4, b5, b6, b7 = starts[s0 + 4], starts[s0 + 5], starts[s0 + 6], starts[s0 + 7]
            a0 = load8(bias, 0)
            a1 = a0
            a2 = a0
            a3 = a0
            a4 = a0
            a5 = a0
            a6 = a0
            a7 = a0
            for i in range(f_h):
                row = i * Wp * C
                w_row = i * run * LANES
                for jc in range(run):
                    wv = load8(Wf, w_row + jc * LANES)
                    o = row + jc
                    a0 = fma8(splat_at8(xf, b0 + o), wv, a0)
                    a1 = fma8(splat_at8(xf, b1 + o), wv, a1)
                    a2 = fma8(splat_at8(xf, b2 + o), wv, a2)
                    a3 = fma8(splat_at8(xf, b3 + o), wv, a3)
                    a4 = fma8(splat_at8(xf, b4 + o), wv, a4)
                    a5 = fma8(splat_at8(xf, b5 + o), wv, a5)
                    a6 = fma8(splat_at8(xf, b6 + o), wv, a6)
                    a7 = fma8(splat_at8(xf, b7 + o), wv, a7)
            base = g0 * K
            valid = min(NARROW_PIXELS, pixels - g0)
            # 4 <= K < 8 and 8 real pixels: pixel p's vector overlaps the first channels of
            # pixel p + 1, which the next store then overwrites (stores run in pixel order,
            # and the task owns the tile); only the last pixel goes through `edge`. (K >= 4
            # keeps pixel 6's 8 lanes inside the tile: 6 * K + 8 <= 8 * K.)
            full = valid == NARROW_PIXELS and K >= LANES // 2
            dst = out if full else edge
            at = base if full else 0
            pitch = K if full else LANES
            store8(dst, at, a0)
            store8(dst, at + pitch, a1)
            store8(dst, at + 2 * pitch, a2)
            store8(dst, at + 3 * pitch, a3)
            store8(dst, at + 4 * pitch, a4)
            store8(dst, at + 5 * pitch, a5)
            store8(dst, at + 6 * pitch, a6)
            if full and K == LANES:
                store8(out, at + 7 * pitch, a7)
            elif full:
                store8(edge, 0, a7)
                for k in range(K):
                    out[base + 7 * K + k] = edge[k]
            else:
                store8(edge, 7 * LANES, a7)
                for p in range(valid):
                    for k in range(K):
                        out[base + p * K + k] = edge[p * LANES + k]


@njit(parallel=True, cache=True, fastmath={"contract"})
def filter_grad_tiles(xf, x_shape, dzf, geometry, chunk_rows, parts):
    """dW as the same kind of register tile, the reduction now running over output pixels::

        dW[r, k] = sum over (n, h_out, w_out) of x_window[(n, h_out, w_out), r] * dz[n, h_out, w_out, k]

    with r = i * run + m a filter tap (filter row i, m = j * C + c along the row's ``run =
    f_w * C`` contiguous numbers). A tile is 6 consecutive taps of one filter row x 16
    channels (12 vector sums); each pixel loads 2 vectors of ``dz`` and broadcasts the 6 input
    numbers under the taps, which lie next to each other in x (NHWC): one address plus the
    constants 0..5, so the loop needs no register per tap. A row's last tile is moved back to
    end at the row's end (its first taps are the previous tile's: computed twice, stored once).
    ``dzf`` is ``dz`` flat, with at least 16 numbers more after it when K is not a multiple of
    16: a pixel's last vector then runs into the next pixel's numbers, which only reach the
    columns k >= K of ``parts``, never read. (Rows shorter than a tile, run < 6, read past the
    row: the caller gives ``xf`` 8 numbers of slack, and those taps are not stored.)

    ``parts`` is ``(splits, f_h * run + 6, Kp)``, zeroed by the caller; split s sums its own
    share of the output rows, and the caller adds the splits in a fixed order (the same bits
    every run). Task = (split, tap tile, panel).

    Cache blocking (big layers): the output rows (n, h_out) are taken ``chunk_rows`` at a time,
    every task of a chunk runs before the next chunk starts, and each task carries its sums
    over in ``parts``. So the chunk's ``dz`` and ``x`` rows are read from cache by all the
    tasks, instead of every task streaming all of ``dz`` from memory (VGG's 56x56x256 layer
    has 6,144 tasks: 2.2 s unblocked).
    """
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run = f_w * C
    per_row = (run + TAPS - 1) // TAPS  # tiles per filter row
    tiles = f_h * per_row
    panels = (K + CHANNELS - 1) // CHANNELS
    Kp = panels * CHANNELS
    splits = parts.size // ((f_h * run + TAPS) * Kp)
    rows = N * H_out
    for chunk0 in range(0, rows, chunk_rows):
        chunk = min(chunk_rows, rows - chunk0)
        for task in prange(splits * tiles * panels):
            split = task // (tiles * panels)
            tile = (task // panels) % tiles
            kb = task % panels
            i = tile // per_row
            m0 = (tile % per_row) * TAPS
            first = 0  # taps of this tile already stored by the row's previous tile
            if m0 + TAPS > run and run >= TAPS:
                first = m0 - (run - TAPS)
                m0 = run - TAPS
            valid = min(TAPS, run - m0)
            tap_offset = i * Wp * C + m0  # where the tile's first tap sits in the window
            k0 = kb * CHANNELS
            at = ((split * (f_h * run + TAPS)) + i * run + m0) * Kp + k0
            a00 = load8(parts, at + 0 * Kp)
            a01 = load8(parts, at + 0 * Kp + 8)
            a10 = load8(parts, at + 1 * Kp)
            a11 = load8(parts, at + 1 * Kp + 8)
            a20 = load8(parts, at + 2 * Kp)
            a21 = load8(parts, at + 2 * Kp + 8)
            a30 = load8(parts, at + 3 * Kp)
            a31 = load8(parts, at + 3 * Kp + 8)
            a40 = load8(parts, at + 4 * Kp)
            a41 = load8(parts, at + 4 * Kp + 8)
            a50 = load8(parts, at + 5 * Kp)
            a51 = load8(parts, at + 5 * Kp + 8)
            for row in range(chunk0 + split * chunk // splits, chunk0 + (split + 1) * chunk // splits):
                n = row // H_out
                h_out = row % H_out
                corner = (n * Hp + h_out * s_h) * Wp * C + tap_offset
                q = row * W_out * K + k0
                for w_out in range(W_out):
                    g_lo = load8(dzf, q)
                    g_hi = load8(dzf, q + 8)
                    q += K
                    o = corner + w_out * s_w * C
                    v = splat_at8(xf, o + 0)
                    a00 = fma8(v, g_lo, a00)
                    a01 = fma8(v, g_hi, a01)
                    v = splat_at8(xf, o + 1)
                    a10 = fma8(v, g_lo, a10)
                    a11 = fma8(v, g_hi, a11)
                    v = splat_at8(xf, o + 2)
                    a20 = fma8(v, g_lo, a20)
                    a21 = fma8(v, g_hi, a21)
                    v = splat_at8(xf, o + 3)
                    a30 = fma8(v, g_lo, a30)
                    a31 = fma8(v, g_hi, a31)
                    v = splat_at8(xf, o + 4)
                    a40 = fma8(v, g_lo, a40)
                    a41 = fma8(v, g_hi, a41)
                    v = splat_at8(xf, o + 5)
                    a50 = fma8(v, g_lo, a50)
                    a51 = fma8(v, g_hi, a51)
            if first <= 0 < valid:
                store8(parts, at + 0 * Kp, a00)
                store8(parts, at + 0 * Kp + 8, a01)
            if first <= 1 < valid:
                store8(parts, at + 1 * Kp, a10)
                store8(parts, at + 1 * Kp + 8, a11)
            if first <= 2 < valid:
                store8(parts, at + 2 * Kp, a20)
                store8(parts, at + 2 * Kp + 8, a21)
            if first <= 3 < valid:
                store8(parts, at + 3 * Kp, a30)
                store8(parts, at + 3 * Kp + 8, a31)
            if first <= 4 < valid:
                store8(parts, at + 4 * Kp, a40)
                store8(parts, at + 4 * Kp + 8, a41)
            if first <= 5 < valid:
                store8(parts, at + 5 * Kp, a50)
                store8(parts, at + 5 * Kp + 8, a51)


def pack_filters(W, width=CHANNELS):
    """``W (f_h, f_w, C, K)`` -> flat panels ``(ceil(K / width), f_h, f_w, C, width)``, zero-padded."""
    K = W.shape[-1]
    rows = np.ascontiguousarray(W, np.float32).reshape(-1, K)  # (f_h * f_w * C, K)
    out = np.empty(-(-K // width) * width * rows.shape[0], np.float32)
    _pack_rows(rows, width, out)
    return out


@njit(cache=True)
def _pack_rows(rows, width, out):
    """``out[kb, r, lane] = rows[r, kb * width + lane]``, 0 past the last column. Whole
    panels move as vectors (numpy's zero, copy and transpose took as long as LeNet's dense
    product itself, ~40 us for 400 x 120)."""
    F, K = rows.shape
    flat = rows.reshape(-1)
    whole = K // width
    for kb in range(whole):
        for r in range(F):
            for v in range(0, width, LANES):
                store8(out, (kb * F + r) * width + v, load8(flat, r * K + kb * width + v))
    rest = K - whole * width
    if rest:  # the last, partial panel: its columns, then zeros
        for r in range(F):
            dst = out[(whole * F + r) * width:][:width]
            src = flat[r * K + whole * width:][:rest]
            for lane in range(rest):
                dst[lane] = src[lane]
            for lane in range(rest, width):
                dst[lane] = 0


def padded_input(x, win, H_out, W_out, scratch, slack=0):
    """``x`` with its zero border, as big as the windows read: ``(N, Hp, Wp, C)`` with
    ``Hp = (H_out - 1) * s_h + f_h`` and ``Wp = (W_out - 1) * s_w + f_w``. ``x`` itself when
    no border is needed (no pad, no slack): a layer without padding is never copied.
    ``slack`` > 0: always a copy, with that many readable numbers after its end.
    ``scratch(name, n_items)`` gives reusable float32 memory. Negative pads crop ``x``."""
    N, H, W, C = x.shape
    Hp = (H_out - 1) * win.stride_h + win.f_h
    Wp = (W_out - 1) * win.stride_w + win.f_w
    if win.pad_top == 0 and win.pad_left == 0 and Hp <= H and Wp <= W and slack == 0:
        return x
    size = N * Hp * Wp * C
    buf = scratch("padded_x", size + slack)
    buf[size:] = 0
    xp = buf[:size].reshape(N, Hp, Wp, C)
    _pad_rows(x, xp, win.pad_top, win.pad_left)  # clips on both sides: pads may be negative
    return xp


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


def tile_name(K):
    """The tile ``forward`` uses for K output channels (for NBCNN_DEBUG)."""
    return "direct 8x8 tile" if K <= LANES else "direct 4x16 tile"


def forward(x, W, b, win, z, scratch):
    """``z = conv(x, W) + b`` for float32 ``x, W, b, z`` (contiguous); ``win`` a ``checks.Window``."""
    N, H_out, W_out, K = z.shape
    width = LANES if K <= LANES else CHANNELS  # the narrow tile for 8 channels or fewer
    xp = padded_input(x, win, H_out, W_out, scratch)
    bias = np.zeros(-(-K // width) * width, np.float32)
    bias[:K] = b
    geometry = (win.f_h, win.f_w, win.stride_h, win.stride_w, H_out, W_out, K)
    tiles = conv_tiles_narrow if width == LANES else conv_tiles
    tiles(xp.reshape(-1), xp.shape, pack_filters(W, width), geometry, bias, z.reshape(-1))


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
CHUNK_BYTES = 512 << 10
"""dW: a ``dz`` smaller than this (an L2 cache) is not chunked: each chunk costs a
parallel-region launch. (Inception's 5x5 layer, 800 KB of dz: 25 GFLOP/s unchunked, 68
chunked, one thread.)"""


def backward_filter(x, dz, win, dW, scratch):
    """``dW = sum over pixels of window(x) outer dz`` for float32 (see ``filter_grad_tiles``)."""
    N, H_out, W_out, K = dz.shape
    f_h, f_w, C, _ = dW.shape
    run = f_w * C
    slack = LANES if run < TAPS else 0  # a row shorter than a tile reads past its end
    xp = padded_input(x, win, H_out, W_out, scratch, slack=slack)
    Kp = -(-K // CHANNELS) * CHANNELS
    dzf = dz.reshape(-1)
    if Kp != K:  # the last pixel's vectors read up to 16 numbers past the end: give them room
        dzf = scratch("dz_tail_room", dz.size + CHANNELS)
        dzf[:dz.size] = dz.reshape(-1)
        dzf[dz.size:] = 0
    F = f_h * run
    tiles = f_h * -(-run // TAPS)
    tasks = tiles * (Kp // CHANNELS)
    if tasks >= TASKS_WANTED and dz.nbytes > CHUNK_BYTES:
        # big: enough tasks in a chunk, no splits, cache-sized chunks of rows
        splits, chunk_rows = 1, max(1, CHUNK_PIXELS // W_out)
    else:  # few tasks (small filters): split the rows, one chunk
        splits, chunk_rows = max(1, min(N * H_out, TASKS_WANTED // tasks)), N * H_out
    parts = np.zeros((splits, F + TAPS, Kp), np.float32)
    geometry = (f_h, f_w, win.stride_h, win.stride_w, H_out, W_out, K)
    # the copy's flat buffer with its slack: the same scratch memory padded_input filled
    xf = scratch("padded_x", xp.size + slack) if slack else xp.reshape(-1)
    filter_grad_tiles(xf, xp.shape, dzf, geometry, chunk_rows, parts.reshape(-1))
    total = parts[0]
    for s in range(1, splits):  # a fixed order
        total += parts[s]
    dW.reshape(F, K)[...] = total[:F, :K]


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
