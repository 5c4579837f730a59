"""Winograd convolution F(2x2, 3x3): a 3x3 stride-1 float32 conv with 2.25x fewer multiplies.

Same maths and shapes as ``conv.conv2d_forward`` (NHWC). The direct kernel
(``direct.py``) spends 9 multiply-adds per input channel on each output number. Winograd's
minimal filtering computes a 2x2 block of outputs from the 4x4 input patch under it with 16
instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        d: 4x4 patch, g: 3x3 filter, *: elementwise

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

Summed over input channels c, the elementwise product becomes, for each of the 16 positions
(a, b) of the 4x4 transformed tile, one matrix product over channels::

    M[ab][tile, k] = sum over c of V[ab][tile, c] * U[ab][c, k]
    V = B^T d B (the input, per tile and channel),  U = G g G^T (the filters, once per call)

so the work is 16 small matrix products (on the same register tile as the direct
kernel), and adds before and after: on ResNet's 56x56x64 layer about 2.25x fewer flops.
Output tile (th, tw) covers pixels (2 th .. 2 th + 1, 2 tw .. 2 tw + 1) and reads the padded
input's rows and columns 2 th .. 2 th + 3 (padded_input, grown to whole 2x2 tiles).

Cache blocking: a task takes ``TILES`` consecutive output tiles (NHWC order, across rows
and images), transforms their patches into ``V`` (16 x TILES x C floats), then for each
``CHANNELS``-channel panel of K runs the 16 products into ``M`` and transforms M straight into the
output: V and M stay in the core's caches (a whole-tensor V and M would be 4x the input
and output in memory traffic, more than the multiplies saved on this machine).

Rounding: the transforms add and subtract up to 9 numbers per value, so results differ from
the direct kernel's in the last bits (relative ~1e-6 here); tested against the float64
oracle like the other kernels, and the same bits every run (each output is written by one
task, in a fixed order).
"""

import numba
import numpy as np
from numba import njit, prange

from ...backend import aligned_empty, aligned_zeros
from .caches import l2_bytes
from .direct import CHANNELS, PIXELS, pack_filters, padded_input
from .simd import (LANES, add8, aligned_floats, ints_from, load8, loadv, repeat, splat_each, splatv, store8, store_tile_rows, sub8,
                   tile_fma)

TILES = 64
"""Output tiles per task at most (a multiple of ``direct.PIXELS``). Every task streams all the
transformed filters U, so each U number serves this many tiles: 16 -> 64 took VGG's
56x56x256 layer from 190 to 209 GFLOP/s (one thread, Sapphire Rapids). Fewer when the
layer is small (``tiles_per_task``)."""
TASKS_PER_THREAD = 4
"""``tiles_per_task`` shrinks a task until each thread has about this many (shares even out)."""
EIGHT = 8
"""Channels per vector of the transforms (``load8``: they move memory more than they
multiply; the products run on ``direct``'s tile of ``CHANNELS = 2 * LANES`` channels)."""

_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)


def transform_filters(W):
    """``U[a, b, c, k] = (G W[:, :, c, k] G^T)[a, b]``, packed as panels ``(16, K / CHANNELS, C, CHANNELS)``
    (zeros past the last filter), on a cache line."""
    f_h, f_w, C, K = W.shape
    panels = -(-K // CHANNELS)
    out = aligned_empty(16 * panels * C * CHANNELS)
    _transform_filters(np.ascontiguousarray(W, np.float32), _G, out.reshape(16, panels, C, CHANNELS))
    return out


@njit(parallel=True, cache=True)
def _transform_filters(W, G, U):
    """``U[4a + b, kb, c, lane] = sum over i, j of G[a, i] W[i, j, c, k] G[b, j]``, k = kb * width +
    lane, in float64, one input channel per task. A loop nest, not numpy's tensordot: that runs
    on BLAS threads, which keep spinning after it and took a core from the Winograd kernel that
    runs next (VGG's 112x112x128 layer: the same 13 ms on 2 threads as on 1)."""
    _, _, C, K = W.shape
    panels, width = U.shape[1], U.shape[3]
    for c in prange(C):
        Gg = np.zeros((4, 3, panels * width))  # (G g)[a, j] for every filter k of channel c, 0 past K
        for a in range(4):
            for j in range(3):
                for k in range(K):
                    Gg[a, j, k] = G[a, 0] * W[0, j, c, k] + G[a, 1] * W[1, j, c, k] + G[a, 2] * W[2, j, c, k]
        for a in range(4):
            for b in range(4):
                for kb in range(panels):
                    row = U[4 * a + b, kb, c]
                    for lane in range(width):
                        k = kb * width + lane
                        row[lane] = Gg[a, 0, k] * G[b, 0] + Gg[a, 1, k] * G[b, 1] + Gg[a, 2, k] * G[b, 2]


@njit(parallel=True, cache=True, fastmath={"contract"})
def winograd_tiles(xf, x_shape, Uf, out_shape, bias, per_task, workers, out):
    """The blocked loop nest. ``xf``: the padded input, flat, shape ``x_shape = (N, Hp, Wp, C)``
    with ``Hp >= 2 * ceil(H_out / 2) + 2`` (and Wp likewise), C a multiple of 8; ``Uf``: from
    ``transform_filters``; ``out_shape = (N, H_out, W_out, K)``; ``bias``: ceil(K / CHANNELS) * CHANNELS numbers;
    ``per_task``: output tiles per task (a multiple of ``PIXELS``, see ``tiles_per_task``);
    ``workers``: the thread count (each thread takes an equal share of the tasks, with its own
    buffers; which thread computes a tile does not change its bits)."""
    N, Hp, Wp, C = x_shape
    _, H_out, W_out, K = out_shape
    TH = (H_out + 1) // 2
    TW = (W_out + 1) // 2
    tiles = N * TH * TW
    panels = (K + CHANNELS - 1) // CHANNELS
    tasks = (tiles + per_task - 1) // per_task
    workers = max(1, min(workers, tasks))
    # V[ab][tile][c] and M[ab][tile][k] (one panel), each position ab `pos_v` / `pos_m`
    # floats after the previous: a whole 4 KB multiple (16 tiles x 64 channels) would put
    # all 16 of a tile's values at the same 4 KB offset, where x86 loads wait for
    # unrelated stores ("4K aliasing": the transforms ran 5x slower); 16 floats after, not 8,
    # so every position starts on a cache line, as the aligned buffers do
    pos_v = per_task * C + 16
    pos_m = per_task * CHANNELS + 16
    for worker in prange(workers):
        # buffers made once per thread, not per task: past 128 KB (C >= 128) each np.empty is
        # a fresh mmap, whose page faults cost more than the task's work
        V = aligned_floats(16 * pos_v)
        M = aligned_floats(16 * pos_m)
        corner = np.empty(per_task, np.int64)  # where each tile's 4x4 patch starts in xf
        first = np.empty(per_task, np.int64)  # where its top-left output pixel is in out
        whole = np.empty(per_task, np.bool_)  # all 4 of its pixels exist (H_out, W_out may be odd)
        for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
            t0 = task * per_task
            count = min(per_task, tiles - t0)
            for tt in range(per_task):
                t = t0 + min(tt, count - 1)  # past the last tile: repeat it (computed, not stored)
                n = t // (TH * TW)
                th = (t // TW) % TH
                tw = t % TW
                corner[tt] = ((n * Hp + 2 * th) * Wp + 2 * tw) * C
                first[tt] = ((n * H_out + 2 * th) * W_out + 2 * tw) * K
                whole[tt] = 2 * th + 1 < H_out and 2 * tw + 1 < W_out
            # 1. V = B^T d B for every tile and channel (8 channels per vector)
            for tt in range(per_task):
                for c in range(0, C, EIGHT):
                    _input_transform(xf, corner[tt] + c, Wp * C, C, V, tt * C + c, pos_v)
            for kb in range(panels):
                # 2. the 16 products over channels, one PIXELS x CHANNELS register tile at a time
                for ab in range(16):
                    for tt in range(0, per_task, PIXELS):
                        _product_tile(V, ab * pos_v + tt * C, C, Uf, ((ab * panels + kb) * C) * CHANNELS,
                                      M, ab * pos_m + tt * CHANNELS)
                # 3. Y = A^T M A + bias, stored where the 2x2 block is inside the output
                for tt in range(count):
                    for part in range(0, CHANNELS, EIGHT):
                        k0 = kb * CHANNELS + part
                        if k0 < K:
                            _output_transform(M, tt * CHANNELS + part, pos_m, load8(bias, k0), out, first[tt] + k0,
                                              whole[tt] and k0 + EIGHT <= K, t0 + tt, TH, TW, k0, H_out, W_out, K)


@njit(inline="always")
def _input_transform(xf, at, row, C, V, dst, pos):
    """One tile's 8 channels: the 4x4 patch ``d[r][s] = xf[at + r * row + s * C]`` (8 lanes),
    ``V[ab] = (B^T d B)[a][b]`` stored at ``V[dst + ab * pos]``."""
    for s in range(4):  # columns of t = B^T d
        d0 = load8(xf, at + s * C)
        d1 = load8(xf, at + row + s * C)
        d2 = load8(xf, at + 2 * row + s * C)
        d3 = load8(xf, at + 3 * row + s * C)
        # t[r][s], stored in V's slots for (r, s) until the row pass below
        store8(V, dst + (0 * 4 + s) * pos, sub8(d0, d2))
        store8(V, dst + (1 * 4 + s) * pos, add8(d1, d2))
        store8(V, dst + (2 * 4 + s) * pos, sub8(d2, d1))
        store8(V, dst + (3 * 4 + s) * pos, sub8(d1, d3))
    for r in range(4):  # V[r][.] = t[r][.] B
        t0 = load8(V, dst + (r * 4 + 0) * pos)
        t1 = load8(V, dst + (r * 4 + 1) * pos)
        t2 = load8(V, dst + (r * 4 + 2) * pos)
        t3 = load8(V, dst + (r * 4 + 3) * pos)
        store8(V, dst + (r * 4 + 0) * pos, sub8(t0, t2))
        store8(V, dst + (r * 4 + 1) * pos, add8(t1, t2))
        store8(V, dst + (r * 4 + 2) * pos, sub8(t2, t1))
        store8(V, dst + (r * 4 + 3) * pos, sub8(t1, t3))


@njit(inline="always")
def _product_tile(V, v0, C, Uf, u0, M, m0):
    """``M[m0 + i * CHANNELS + k] = sum over c of V[v0 + i * C + c] * Uf[u0 + c * CHANNELS + k]``
    for ``PIXELS`` rows i and ``CHANNELS`` columns k: direct's register tile over a plain
    matrix product."""
    zero = splatv(np.float32(0))
    tile_sums = repeat((zero, zero), PIXELS)
    rows = ints_from(v0, C, PIXELS)  # where each row of V starts
    for c in range(C):
        u = u0 + c * CHANNELS
        tile_sums = tile_fma(splat_each(V, rows, c, LANES), (loadv(Uf, u), loadv(Uf, u + LANES)), tile_sums)
    store_tile_rows(M, m0, CHANNELS, tile_sums, 2, 0, PIXELS)


@njit(inline="always")
def _output_transform(M, at, pos, b, out, o, fast, t, TH, TW, k0, H_out, W_out, K):
    """``Y = A^T m A + b`` for 8 channels of tile t (``m[ab] = M[at + ab * pos]``), stored at
    ``out[o]`` (its top-left pixel, channel k0) and the 3 other pixels; ``fast``: all 4
    pixels and all 8 channels exist, else only those that do are stored."""
    # u[r][s] = (A^T m)[r][s]
    u00 = add8(add8(load8(M, at), load8(M, at + 4 * pos)), load8(M, at + 8 * pos))
    u01 = add8(add8(load8(M, at + pos), load8(M, at + 5 * pos)), load8(M, at + 9 * pos))
    u02 = add8(add8(load8(M, at + 2 * pos), load8(M, at + 6 * pos)), load8(M, at + 10 * pos))
    u03 = add8(add8(load8(M, at + 3 * pos), load8(M, at + 7 * pos)), load8(M, at + 11 * pos))
    u10 = sub8(sub8(load8(M, at + 4 * pos), load8(M, at + 8 * pos)), load8(M, at + 12 * pos))
    u11 = sub8(sub8(load8(M, at + 5 * pos), load8(M, at + 9 * pos)), load8(M, at + 13 * pos))
    u12 = sub8(sub8(load8(M, at + 6 * pos), load8(M, at + 10 * pos)), load8(M, at + 14 * pos))
    u13 = sub8(sub8(load8(M, at + 7 * pos), load8(M, at + 11 * pos)), load8(M, at + 15 * pos))
    y00 = add8(add8(add8(u00, u01), u02), b)
    y01 = add8(sub8(sub8(u01, u02), u03), b)
    y10 = add8(add8(add8(u10, u11), u12), b)
    y11 = add8(sub8(sub8(u11, u12), u13), b)
    if fast:
        store8(out, o, y00)
        store8(out, o + K, y01)
        store8(out, o + W_out * K, y10)
        store8(out, o + (W_out + 1) * K, y11)
    else:
        _store_edge(out, t, TH, TW, 0, 0, k0, H_out, W_out, K, y00)
        _store_edge(out, t, TH, TW, 0, 1, k0, H_out, W_out, K, y01)
        _store_edge(out, t, TH, TW, 1, 0, k0, H_out, W_out, K, y10)
        _store_edge(out, t, TH, TW, 1, 1, k0, H_out, W_out, K, y11)


@njit(inline="always")
def _store_edge(out, t, TH, TW, dy, dx, k0, H_out, W_out, K, y):
    """Pixel (dy, dx) of tile t, channels k0 .. min(k0 + 8, K), if that pixel exists."""
    n = t // (TH * TW)
    h = 2 * ((t // TW) % TH) + dy
    w = 2 * (t % TW) + dx
    if h < H_out and w < W_out:
        edge = np.empty(EIGHT, np.float32)
        store8(edge, 0, y)
        at = ((n * H_out + h) * W_out + w) * K + k0
        for k in range(min(EIGHT, K - k0)):
            out[at + k] = edge[k]


U_BYTES_PER_L2 = 2
"""Winograd while the transformed filters U, 16 x C x K floats, are at most this many times the
core's L2 cache (``caches.l2_bytes``), or up to ``U_BYTES_PER_L2_MANY_TILES`` times when every
task has a full ``TILES`` tiles: every task streams all of U, so a big U needs many tiles to
serve. Sapphire Rapids (2 MB of L2), against the direct kernel, 1 and 2 threads: VGG's
256 -> 256 at 56x56 (U 4 MB) 1.66x and 1.49x; 512 -> 512 at 28x28 with 8 images (16 MB, 64
tiles a task) 1.64x and 1.60x, with one image (25-56 tiles a task) 1.25x and 1.03x; at 14x14
(8-16 tiles a task) 0.76x and 0.70x. Zen 3 (512 KB): 128 -> 128 (1 MB) 1.2-1.7x, 256 -> 256
(4 MB, 16 tiles a task) 1.06x."""
U_BYTES_PER_L2_MANY_TILES = 8


def usable(x_shape, W_shape, win):
    """Winograd F(2x2, 3x3) takes 3x3 stride-1 convs (float32: the caller checks) with a
    multiple of 8 input channels (its input transform runs 8 channels at a time), at least
    32 of them (with fewer, the transforms cost more than the multiplies they save), and
    transformed filters small enough for the cache, or for the tiles that share them
    (``U_BYTES_PER_L2``)."""
    f_h, f_w, C, K = W_shape
    Kp = -(-K // CHANNELS) * CHANNELS
    if not (f_h == 3 and f_w == 3 and win.stride_h == 1 and win.stride_w == 1 and C % EIGHT == 0 and C >= 32):
        return False
    U_bytes, l2 = 16 * C * Kp * 4, l2_bytes()
    tiles = x_shape[0] * -(-x_shape[1] // 2) * -(-x_shape[2] // 2)  # about the output's (pad 1 keeps the size)
    return U_bytes <= U_BYTES_PER_L2 * l2 or (U_bytes <= U_BYTES_PER_L2_MANY_TILES * l2
                                              and tiles_per_task(tiles, numba.get_num_threads()) == TILES)


def tiles_per_task(tiles, workers):
    """``TILES``, or fewer (a multiple of ``PIXELS``) when ``tiles`` would then give a thread
    fewer than ``TASKS_PER_THREAD`` tasks. The bits do not depend on it: each tile's sums run
    over the channels in the same order whichever task holds it."""
    wanted = -(-tiles // (TASKS_PER_THREAD * workers))
    return max(PIXELS, min(TILES, -(-wanted // PIXELS) * PIXELS))


def forward(x, W, b, win, z, scratch):
    """``z = conv(x, W) + b`` (float32, contiguous; see ``usable``)."""
    N, H_out, W_out, K = z.shape
    even_h, even_w = 2 * -(-H_out // 2), 2 * -(-W_out // 2)  # whole 2x2 tiles
    xp = padded_input(x, win, even_h, even_w, scratch)
    bias = aligned_zeros(-(-K // CHANNELS) * CHANNELS)
    bias[:K] = b
    workers = numba.get_num_threads()
    per_task = tiles_per_task(N * (even_h // 2) * (even_w // 2), workers)
    winograd_tiles(xp.reshape(-1), xp.shape, transform_filters(W), z.shape, bias, per_task, workers, z.reshape(-1))
