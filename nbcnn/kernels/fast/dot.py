"""Fast cpu convolution for few output channels: the input channels along the vector lanes.

Same maths as the readable ``conv.conv2d_forward`` (NHWC)::

    z[n, h_out, w_out, k] = b[k] + sum over i, j, c of
                            x[n, h_out * s_h - pad_top + i, w_out * s_w - pad_left + j, c] * W[i, j, c, k]

The direct tile (``direct.py``) puts the *output* channels along the lanes and broadcasts one
input number per pixel and step. A layer with a handful of outputs leaves most lanes idle
there: the dX of a 3-channel image layer (seed39's: 3 of 8 lanes) or of LeNet's 6-channel
layer (6 of 8), and its broadcasts cost more than plain loads (a tile of 8 broadcasts x 2
vectors ran at 0.7x the speed of 4 x 6 with the same data in L1, Sapphire Rapids). This
kernel turns the tile around: each sum is a vector of partial sums over input channels,

    sums[p, k] += x[window(p) + tap, c0 : c0 + LANES] * W[tap, k, c0 : c0 + LANES]

for ``PX`` pixels x ``KO`` output channels (all of them: KO = K <= 8), loading ``PX`` input
vectors and ``KO`` weight vectors per step for ``PX * KO`` FMAs, every lane useful when C is a
multiple of the lanes. At the end each vector's lanes are added (``simd.store_lane_sums``,
folded 16 vectors at a time) straight into ``z``, whose ``PX * K`` numbers are contiguous.

The ``f_w * C`` numbers under a filter row are one contiguous run in x (NHWC, any stride),
and so are the row's packed weights for one output: the loop over a filter row is whole
vectors of that run, then, when C is below ``LANES`` (seed39's dz, 10 channels; AVX-512
only, see ``usable``), one masked vector of the rest (``simd.load_each``: the lanes past the
row are zeros, never the next pixel's numbers). seed39's dX so loads 2 vectors a filter row
(30 numbers) where a masked vector per tap took 3: 0.83-0.85 -> 0.71-0.74 ms (2 threads).

Used for dX through the flipped filters (``conv.backward_input``), where it replaces the
narrow direct tile: seed39's dX 1.3 -> 0.7-0.8 ms, LeNet C3's 0.57 -> 0.4 ms (2 threads,
Sapphire Rapids).
"""

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..activations import relu_cell
from .direct import _window_starts, border_copy, with_border
from .simd import LANES, aligned_floats, ints_at, load_each, load_tile, repeat, store_lane_sums, tile_fma

SUMS = 24 if LANES == 16 else 12
"""Vector sums per tile (at most; PX x K): 24 of AVX-512's 32 registers, 12 of AVX2's 16."""
MIN_PIXELS = 3
"""Pixels a tile needs at least: with fewer, each step loads K weight vectors for only one
or two pixels' FMAs, and the narrow direct tile is faster (AVX2 code, both on Sapphire
Rapids with ``NUMBA_CPU_NAME=znver3``: the dX of a 6 -> 16 layer, 2 pixels a tile, 218 us
against 176 on the narrow tile, of an 8 -> 32 layer, 1 pixel, 265 against 233; with 3 and 4
pixels the dot tile took 0.5-0.8x the narrow tile's time; AVX-512, 3 pixels: 212 against 219)."""
MAX_OUTPUTS = min(8, SUMS // MIN_PIXELS)
"""Output channels up to which the dot tile is used (all of them in one tile): 8 on AVX-512,
4 on AVX2."""


def pixels_per_tile(K):
    """PX: as many pixels as keep ``PX * K`` within ``SUMS`` (at least 1, at most 8)."""
    return max(1, min(8, SUMS // K))


MASKED_TAPS = LANES == 16
"""Whether the masked last vector of a filter row is compiled (AVX-512 only: see ``usable``;
a constant, so on AVX2 that load is not even generated)."""


def tile_name(K):
    """The route's name for NBCNN_DEBUG: "dot 6x3 tile" (pixels x outputs)."""
    return f"dot {pixels_per_tile(K)}x{K} tile"


def usable(C, K):
    """Few outputs (``K <= MAX_OUTPUTS``) over enough input channels to fill the lanes: C a
    multiple of ``LANES``, or on AVX-512 ``8 <= C < 16`` (a masked vector per filter row: AVX-512
    keeps the mask in a mask register; AVX2's masked loads need a vector register for it,
    which spilled the tile's sums, and are slower)."""
    return K <= MAX_OUTPUTS and (C % LANES == 0 or (MASKED_TAPS and 8 <= C < 16))


@register_jitable
def padded_row(f_w, C):
    """A filter row's ``f_w * C`` numbers rounded up to whole vectors (the packed weights of
    one output's filter row)."""
    return -(-(f_w * C) // LANES) * LANES


@register_jitable
def pack_filters(W):
    """``W (f_h, f_w, C, K)`` -> flat ``(f_h, K, padded_row(f_w, C))``: a filter row's weights
    for one output are one contiguous run, like the row's numbers in x, then zeros."""
    f_h, f_w, C, K = W.shape
    run_p = padded_row(f_w, C)
    Wd = aligned_floats(f_h * K * run_p)
    Wd[:] = 0
    for i in range(f_h):
        for k in range(K):
            for j in range(f_w):
                for c in range(C):
                    Wd[(i * K + k) * run_p + j * C + c] = W[i, j, c, k]
    return Wd


@register_jitable
def bias_lanes(b):
    """``(K, LANES)`` flat: b[k] in lane 0 of row k, zeros elsewhere (see ``conv_tiles_dot``)."""
    K = b.shape[0]
    out = aligned_floats(K * LANES)
    out[:] = 0
    for k in range(K):
        out[k * LANES] = b[k]
    return out


@njit(parallel=True, cache=True, fastmath={"contract"})
def conv_tiles_dot(xf, x_shape, Wd, geometry, bias_lanes, out, relu, pixel_slots, out_slots):
    """The loop nest: tiles of ``PX`` consecutive output pixels (NHWC order, as in
    ``direct.conv_tiles``: a tile may run on into the next row; the last one repeats its last
    pixel) x all ``K`` outputs; ``xf`` the padded input ``x_shape = (N, Hp, Wp, C)`` flat,
    ``Wd`` from ``pack_filters``, ``geometry = (f_h, f_w, s_h, s_w, H_out, W_out, K)``;
    ``bias_lanes (K, LANES)``: b[k] in lane 0 of row k, zeros elsewhere (the sums start from
    it, so the lane sums include the bias); ``relu``: the tile's outputs go through ReLU (a
    fused conv + ReLU) while they are in L1. Tasks: about one output row of tiles each."""
    PX, KO = len(pixel_slots), len(out_slots)
    N, Hp, Wp, C = x_shape
    f_h, f_w, s_h, s_w, H_out, W_out, K = geometry
    run_p = padded_row(f_w, C)  # a filter row's packed weights for one output
    rest = f_w * C % LANES  # numbers in the row's last, partial vector (0: none)
    whole = f_w * C - rest  # numbers in its whole vectors
    pixels = N * H_out * W_out
    tiles = (pixels + PX - 1) // PX
    per_task = (W_out + PX - 1) // PX
    for task in prange((tiles + per_task - 1) // per_task):
        edge = aligned_floats(PX * KO)  # the last tile's sums, before its valid pixels are copied
        t0 = task * per_task
        t1 = min(t0 + per_task, tiles)
        starts = np.empty((t1 - t0) * PX, np.int64)
        _window_starts(starts, t0 * PX, pixels, x_shape, geometry)
        first = repeat(load_tile(bias_lanes, 0, LANES, out_slots, 1, LANES), pixel_slots)
        for tile in range(t0, t1):
            g0 = tile * PX
            window = ints_at(starts, (tile - t0) * PX, PX)
            tile_sums = first
            for i in range(f_h):
                row = i * Wp * C  # filter row i, from each window's start
                w_row = i * KO * run_p
                # the row's f_w * C numbers are contiguous in x: whole vectors, then one
                # masked vector of the rest (seed39's dX, 3 x 10 numbers: 2 loads, not 3)
                for m in range(0, whole, LANES):
                    tile_sums = tile_fma(load_each(xf, window, row + m, LANES, LANES),
                                         load_tile(Wd, w_row + m, run_p, out_slots, 1, LANES), tile_sums)
                if MASKED_TAPS and rest:
                    tile_sums = tile_fma(load_each(xf, window, row + whole, LANES, rest),
                                         load_tile(Wd, w_row + whole, run_p, out_slots, 1, LANES), tile_sums)
            valid = min(PX, pixels - g0)
            if valid == PX:
                store_lane_sums(out, g0 * K, tile_sums)
            else:
                store_lane_sums(edge, 0, tile_sums)
                for q in range(valid * K):
                    out[g0 * K + q] = edge[q]
            if relu:
                for q in range(g0 * K, (g0 + valid) * K):
                    out[q] = relu_cell(out, q)


def forward(x, W, b, win, z, scratch, relu=False):
    """``z = conv(x, W) + b`` for float32 ``x, W, b, z`` (contiguous), ``usable(C, K)``;
    ``relu``: ``z = relu(conv(x, W) + b)`` in the same pass. Border copy, packing and tiles
    in one compiled call, as ``direct.forward``."""
    N, H_out, W_out, K = z.shape
    if not usable(W.shape[2], K):
        raise ValueError(f"the dot tile takes {MAX_OUTPUTS} outputs or fewer over a multiple of {LANES} input "
                         f"channels{' (or 8 to 15)' if MASKED_TAPS else ''}; got {W.shape[2]} -> {K}")
    geometry = (win.f_h, win.f_w, win.stride_h, win.stride_w, H_out, W_out, K)
    copy = border_copy(x.shape, win, H_out, W_out, scratch)
    _forward(x, W, b, (win.pad_top, win.pad_left), copy, geometry, z, relu, (0,) * pixels_per_tile(K), (0,) * K)


@njit(cache=True)
def _forward(x, W, b, pads, copy, geometry, z, relu, pixel_slots, out_slots):
    """``forward``'s compiled part."""
    xf, x_shape = with_border(x, pads, copy, geometry)
    conv_tiles_dot(xf, x_shape, pack_filters(W), geometry, bias_lanes(b), z.reshape(-1), relu, pixel_slots, out_slots)
