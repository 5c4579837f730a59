"""Winograd convolution F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5): stride-1 float32 convs with
2.25x, 4x and 2.8x fewer multiplies.

Same maths and shapes as ``conv.conv2d_forward`` (NHWC). The direct kernel
(``direct.py``) spends 9 multiply-adds per input channel on each output number of a 3x3
layer. Winograd's minimal filtering computes a 2x2 block of outputs from the 4x4 input
patch under it with 16 instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2015)::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        d: 4x4 patch, g: 3x3 filter, *: elementwise

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

A 5x5 layer (Inception's) takes F(2x2, 5x5) the same way: a 6x6 patch, 36 products instead
of 100, with A^T, G and B^T derived by ``toom_cook`` from the points 0, 1, -1, 2, -2 and
infinity (the 3x3 matrices above are the same construction on 0, 1, -1, rescaled). A 3x3
layer whose transformed filters fit the cache rule (``block_for``) takes F(4x4, 3x3), the
same construction on the same points: a 4x4 block of outputs from the same 6x6 patch, 36
products instead of 144, with the same B^T (so the same input transform) and its own G and
A^T. The 6x6 patches overlap by 2 of 6 instead of 2 of 4, so each input number is
transformed 2.25x less often per output too; only the output transform grows (4 x 6).

Summed over input channels c, the elementwise product becomes, for each of the 16 positions
(a, b) of the 4x4 transformed tile, one matrix product over channels::

    M[ab][tile, k] = sum over c of V[ab][tile, c] * U[ab][c, k]
    V = B^T d B (the input, per tile and channel),  U = G g G^T (the filters, once per call)

so the work is 16 (36) small matrix products (on the same register tile as the direct
kernel), and adds before and after: on ResNet's 56x56x64 layer about 2.25x (F(4x4, 3x3): 4x)
fewer flops. Output tile (th, tw) of block m (2 or 4) covers pixels (m th .. m th + m - 1,
m tw .. m tw + m - 1) and reads the padded input's rows and columns m th .. m th + m + f - 2
(padded_input, grown to whole tiles).

Cache blocking: a task takes ``TILES`` consecutive output tiles (NHWC order, across rows
and images), transforms their patches into ``V`` (16 or 36 x TILES x C floats), then for each
``CHANNELS``-channel panel of K runs the 16 (36) products into ``M`` and transforms M straight into the
output: V and M stay in the core's caches (a whole-tensor V and M would be 4x the input
and output in memory traffic, more than the multiplies saved on this machine).

Rounding: the transforms add and subtract up to 9 numbers per value (3x3; 5x5 weighs 36 with
factors up to 16, F(4x4, 3x3) 36 with factors up to 8), so results differ from the direct
kernel's in the last bits (relative ~1e-6 here, ~8e-6 for 5x5 and for F(4x4, 3x3): ResNet's
layer, largest error 4.5e-5 on outputs up to 7.8, the direct kernel's 1.1e-5); tested against
the float64 oracle like the other kernels, and the same bits every run (each output is written by one
task, in a fixed order).
"""

import numpy as np
from numba import njit, prange

from ...backend import aligned_empty, aligned_zeros, thread_count
from .caches import l2_bytes
from .direct import CHANNELS, PIXELS, filter_grad_shape, padded_input, sum_in_order
from .simd import (LANES, add8, aligned_floats, fma8, ints_from, lanes_of, load8, load_lanes, load_like, load_tile, loadv,
                   repeat, splat8, splat_each, splat_lanes, splat_like, splatv, store8, store_lanes, store_tile_rows, sub8,
                   tile_fma)

TILES = 64
"""Output tiles per task at most (a multiple of ``direct.PIXELS``). Every task streams all the
transformed filters U, so each U number serves this many tiles: 16 -> 64 took VGG's
56x56x256 layer from 190 to 209 GFLOP/s (one thread, Sapphire Rapids). Fewer when the
layer is small (``tiles_per_task``)."""
TASKS_PER_THREAD = 4
"""``tiles_per_task`` shrinks a task until each thread has about this many (shares even out)."""
EIGHT = 8
"""Channels per vector of the output transforms and of what is left of the input
transform's channels after whole ``LANES`` (the products run on ``direct``'s tile of
``CHANNELS = 2 * LANES`` channels)."""
_WIDE, _EIGHT = (0,) * LANES, (0,) * EIGHT
"""The transforms' vector widths, as tuples of that length (``simd.load_lanes``)."""

def toom_cook(points, m, r):
    """``(A^T, G, B^T)`` of Winograd's F(m, r) (Toom-Cook) on the interpolation ``points`` and
    infinity, ``n = m + r - 1 = len(points) + 1``, as float64 (derived exactly in fractions).

    A length-n correlation ``y_k = sum over i of d[k + i] g[i]`` is the transpose of a
    polynomial product: evaluate the filter at the n points (``G``: rows ``(1, p, p^2, ..)``,
    infinity's row picks the leading coefficient), multiply pointwise with the transformed
    input, and interpolate back. Interpolation is the inverse Vandermonde matrix V of all n
    points, so ``B^T = (V^-1)^T`` and ``A = V`` cut to its first m columns::

        y = A^T [ (G g) * (B^T d) ]            (2-D: Y = A^T [ (G g G^T) * (B^T d B) ] A)

    Small points (0, +-1, +-2) keep float32's rounding near the direct sum's: F(2, 5) on
    (0, 1, -1, 2, -2) is within about 3e-6 of it, relative.
    """
    from fractions import Fraction

    n = m + r - 1
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {len(points)}")

    def vandermonde(columns):
        rows = [[Fraction(p) ** k for k in range(columns)] for p in points]
        return rows + [[Fraction(0)] * (columns - 1) + [Fraction(1)]]  # infinity

    V = vandermonde(n)
    inverse = [[Fraction(int(i == j)) for j in range(n)] for i in range(n)]
    for col in range(n):  # Gauss-Jordan, exact
        pivot = next(i for i in range(col, n) if V[i][col] != 0)
        V[col], V[pivot] = V[pivot], V[col]
        inverse[col], inverse[pivot] = inverse[pivot], inverse[col]
        scale = V[col][col]
        V[col] = [v / scale for v in V[col]]
        inverse[col] = [v / scale for v in inverse[col]]
        for i in range(n):
            if i != col and V[i][col] != 0:
                factor = V[i][col]
                V[i] = [a - factor * b for a, b in zip(V[i], V[col])]
                inverse[i] = [a - factor * b for a, b in zip(inverse[i], inverse[col])]
    A_T = np.array(vandermonde(m), np.float64).T
    G = np.array(vandermonde(r), np.float64)
    B_T = np.array(inverse, np.float64).T
    return A_T, G, B_T


_G3 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
"""F(2x2, 3x3)'s filter transform (Lavin & Gray's; its B^T and A^T are written out as adds
in ``_input_transform`` and ``_output_transform``)."""
_AT5, _G5, _BT5 = toom_cook((0, 1, -1, 2, -2), 2, 5)
"""F(2x2, 5x5): 6x6 input patches, 36 products instead of 100 (2.8x fewer multiplies), for
the 5x5 layers (Inception's). ``_input_transform6`` and ``_output_transform6`` read the
float32 copies below as constants, so LLVM drops their zeros."""
_BT6 = _BT5.astype(np.float32)
_AT6 = _AT5.astype(np.float32)
_AT43, _G43, _BT43 = toom_cook((0, 1, -1, 2, -2), 4, 3)
"""F(4x4, 3x3): a 4x4 block of outputs from the 6x6 patch under it, 36 products instead of
144 (4x fewer multiplies; F(2x2, 3x3) 2.25x). On the same points as F(2x2, 5x5), so with the
same B^T (``toom_cook``'s B^T depends only on the points): one input transform,
``_input_transform6``, serves both."""
_AT64 = _AT43.astype(np.float32)
"""F(4x4, 3x3)'s A^T (4 x 6), read as constants by ``_output_transform6``."""
_AT4 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
"""F(2x2, 3x3)'s A^T (the adds of ``_output_transform``), for ``_grad_transform``."""


def transform_filters(W, block=2):
    """``U[a, b, c, k] = (G W[:, :, c, k] G^T)[a, b]``, packed as panels ``(n * n, K / CHANNELS, C, CHANNELS)``
    (zeros past the last filter), on a cache line; n = 4 for 3x3 filters, 6 for 5x5 and for
    3x3 filters in 4x4 blocks (``block`` 4: F(4x4, 3x3))."""
    f_h, f_w, C, K = W.shape
    G = _filter_transform(f_h, block)
    n = G.shape[0]
    panels = -(-K // CHANNELS)
    out = aligned_empty(n * n * panels * C * CHANNELS)
    _transform_filters(np.ascontiguousarray(W, np.float32), G, out.reshape(n * n, panels, C, CHANNELS))
    return out


def _filter_transform(f, block):
    """G of F(block x block, f x f)."""
    if f == 5:
        return _G5
    return _G43 if block == 4 else _G3


@njit(parallel=True, cache=True)
def _transform_filters(W, G, U):
    """``U[n a + b, kb, c, lane] = sum over i, j of G[a, i] W[i, j, c, k] G[b, j]``, k = kb * width +
    lane, in float64, one input channel per task. A loop nest, not numpy's tensordot: that runs
    on BLAS threads, which keep spinning after it and took a core from the Winograd kernel that
    runs next (VGG's 112x112x128 layer: the same 13 ms on 2 threads as on 1)."""
    r, _, C, K = W.shape
    n = G.shape[0]
    panels, width = U.shape[1], U.shape[3]
    for c in prange(C):
        Gg = np.zeros((n, r, panels * width))  # (G g)[a, j] for every filter k of channel c, 0 past K
        for a in range(n):
            for j in range(r):
                for i in range(r):
                    coefficient = G[a, i]
                    for k in range(K):  # innermost along k: vectorised
                        Gg[a, j, k] += coefficient * W[i, j, c, k]
        row = np.empty(width)
        for a in range(n):
            for b in range(n):
                for kb in range(panels):
                    row[:] = 0
                    for j in range(r):
                        coefficient = G[b, j]
                        for lane in range(width):
                            row[lane] += coefficient * Gg[a, j, kb * width + lane]
                    U[n * a + b, kb, c, :] = row


@njit(parallel=True, cache=True, fastmath={"contract"})
def winograd_tiles(xf, x_shape, Uf, out_shape, bias, per_task, workers, out, side, block):
    """The blocked loop nest. ``xf``: the padded input, flat, shape ``x_shape = (N, Hp, Wp, C)``
    with ``Hp >= 2 * ceil(H_out / 2) + 2`` (and Wp likewise), C a multiple of 8; ``Uf``: from
    ``transform_filters``; ``out_shape = (N, H_out, W_out, K)``; ``bias``: ceil(K / CHANNELS) * CHANNELS numbers;
    ``per_task``: output tiles per task (a multiple of ``PIXELS``, see ``tiles_per_task``);
    ``workers``: the thread count (each thread takes an equal share of the tasks, with its own
    buffers; which thread computes a tile does not change its bits); ``side``: the input
    patch's, 4 (F(2x2, 3x3)) or 6 (F(2x2, 5x5), F(4x4, 3x3)); ``block``: the output block's,
    2, or 4 for F(4x4, 3x3).
    """

    positions = side * side
    N, Hp, Wp, C = x_shape
    _, H_out, W_out, K = out_shape
    TH = (H_out + block - 1) // block
    TW = (W_out + block - 1) // block
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
        V = aligned_floats(positions * pos_v)
        M = aligned_floats(positions * pos_m)
        corner = np.empty(per_task, np.int64)  # where each tile's patch starts in xf
        first = np.empty(per_task, np.int64)  # where its top-left output pixel is in out
        whole = np.empty(per_task, np.bool_)  # all its pixels exist (H_out, W_out may end mid-block)
        for task in range(worker * tasks // workers, (worker + 1) * tasks // workers):
            t0 = task * per_task
            count = min(per_task, tiles - t0)
            for tt in range(per_task):
                t = t0 + min(tt, count - 1)  # past the last tile: repeat it (computed, not stored)
                n = t // (TH * TW)
                th = (t // TW) % TH
                tw = t % TW
                corner[tt] = ((n * Hp + block * th) * Wp + block * tw) * C
                first[tt] = ((n * H_out + block * th) * W_out + block * tw) * K
                whole[tt] = block * (th + 1) <= H_out and block * (tw + 1) <= W_out
            # 1. V = B^T d B for every tile and channel
            for tt in range(per_task):
                _transform_patch(xf, corner[tt], Wp * C, C, V, tt * C, pos_v, side)
            for kb in range(panels):
                # 2. the n * n products over channels, one PIXELS x CHANNELS register tile at a time
                for ab in range(positions):
                    for tt in range(0, per_task, PIXELS):
                        _product_tile(V, ab * pos_v + tt * C, C, Uf, ((ab * panels + kb) * C) * CHANNELS,
                                      M, ab * pos_m + tt * CHANNELS)
                # 3. Y = A^T M A + bias, stored where the block is inside the output:
                # LANES channels at a time where all of them and the block's pixels exist,
                # else 8 at a time, each pixel and channel stored only if it exists
                for tt in range(count):
                    part = 0
                    while part < CHANNELS and kb * CHANNELS + part < K:
                        k0 = kb * CHANNELS + part
                        at, o, t = tt * CHANNELS + part, first[tt] + k0, t0 + tt
                        if whole[tt] and k0 + LANES <= K:
                            b = load_lanes(bias, k0, _WIDE)
                            if side == 4:
                                _output_transform(M, at, pos_m, b, out, o, True, t, TH, TW, k0, H_out, W_out, K)
                            elif block == 2:  # the matrices as constants at each call (see _output_transform6)
                                _output_transform6(M, at, pos_m, _AT6, b, out, o, True, t, TH, TW, k0, H_out, W_out, K)
                            else:
                                _output_transform6(M, at, pos_m, _AT64, b, out, o, True, t, TH, TW, k0, H_out, W_out, K)
                            part += LANES
                        else:
                            b = load_lanes(bias, k0, _EIGHT)
                            fast = whole[tt] and k0 + EIGHT <= K
                            if side == 4:
                                _output_transform(M, at, pos_m, b, out, o, fast, t, TH, TW, k0, H_out, W_out, K)
                            elif block == 2:  # the matrices as constants at each call (see _output_transform6)
                                _output_transform6(M, at, pos_m, _AT6, b, out, o, fast, t, TH, TW, k0, H_out, W_out, K)
                            else:
                                _output_transform6(M, at, pos_m, _AT64, b, out, o, fast, t, TH, TW, k0, H_out, W_out, K)
                            part += EIGHT


@njit(inline="always")
def _transform_patch(xf, at, row, C, V, dst, pos, side):
    """``V = B^T d B`` of one tile's patch (``side`` x ``side``, from ``xf[at]``), all C
    channels: ``LANES`` at a time, then 8 (C is a multiple of 8; on AVX-512 16 lanes halved
    the transform's instructions)."""
    wide = C - C % LANES
    for c in range(0, wide, LANES):
        if side == 4:
            _input_transform(xf, at + c, row, C, V, dst + c, pos, _WIDE)
        else:
            _input_transform6(xf, at + c, row, C, V, dst + c, pos, _WIDE)
    for c in range(wide, C, EIGHT):
        if side == 4:
            _input_transform(xf, at + c, row, C, V, dst + c, pos, _EIGHT)
        else:
            _input_transform6(xf, at + c, row, C, V, dst + c, pos, _EIGHT)


@njit(inline="always")
def _input_transform(xf, at, row, C, V, dst, pos, lanes):
    """One tile's ``len(lanes)`` channels (16 or 8): the 4x4 patch ``d[r][s] = xf[at + r * row
    + s * C]``, ``V[ab] = (B^T d B)[a][b]`` stored at ``V[dst + ab * pos]``."""
    for s in range(4):  # columns of t = B^T d
        d0 = load_lanes(xf, at + s * C, lanes)
        d1 = load_lanes(xf, at + row + s * C, lanes)
        d2 = load_lanes(xf, at + 2 * row + s * C, lanes)
        d3 = load_lanes(xf, at + 3 * row + s * C, lanes)
        # t[r][s], stored in V's slots for (r, s) until the row pass below
        store_lanes(V, dst + (0 * 4 + s) * pos, sub8(d0, d2))
        store_lanes(V, dst + (1 * 4 + s) * pos, add8(d1, d2))
        store_lanes(V, dst + (2 * 4 + s) * pos, sub8(d2, d1))
        store_lanes(V, dst + (3 * 4 + s) * pos, sub8(d1, d3))
    for r in range(4):  # V[r][.] = t[r][.] B
        t0 = load_lanes(V, dst + (r * 4 + 0) * pos, lanes)
        t1 = load_lanes(V, dst + (r * 4 + 1) * pos, lanes)
        t2 = load_lanes(V, dst + (r * 4 + 2) * pos, lanes)
        t3 = load_lanes(V, dst + (r * 4 + 3) * pos, lanes)
        store_lanes(V, dst + (r * 4 + 0) * pos, sub8(t0, t2))
        store_lanes(V, dst + (r * 4 + 1) * pos, add8(t1, t2))
        store_lanes(V, dst + (r * 4 + 2) * pos, sub8(t2, t1))
        store_lanes(V, dst + (r * 4 + 3) * pos, sub8(t1, t3))


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
    """``Y = A^T m A + b`` for the channels of the vector ``b`` (16 or 8) of tile t (``m[ab] =
    M[at + ab * pos]``), stored at ``out[o]`` (its top-left pixel, channel k0) and the 3 other
    pixels; ``fast``: all 4 pixels and all the vector's channels exist, else only those that
    do are stored (8-lane vectors only)."""
    # u[r][s] = (A^T m)[r][s]
    u00 = add8(add8(load_like(M, at, b), load_like(M, at + 4 * pos, b)), load_like(M, at + 8 * pos, b))
    u01 = add8(add8(load_like(M, at + pos, b), load_like(M, at + 5 * pos, b)), load_like(M, at + 9 * pos, b))
    u02 = add8(add8(load_like(M, at + 2 * pos, b), load_like(M, at + 6 * pos, b)), load_like(M, at + 10 * pos, b))
    u03 = add8(add8(load_like(M, at + 3 * pos, b), load_like(M, at + 7 * pos, b)), load_like(M, at + 11 * pos, b))
    u10 = sub8(sub8(load_like(M, at + 4 * pos, b), load_like(M, at + 8 * pos, b)), load_like(M, at + 12 * pos, b))
    u11 = sub8(sub8(load_like(M, at + 5 * pos, b), load_like(M, at + 9 * pos, b)), load_like(M, at + 13 * pos, b))
    u12 = sub8(sub8(load_like(M, at + 6 * pos, b), load_like(M, at + 10 * pos, b)), load_like(M, at + 14 * pos, b))
    u13 = sub8(sub8(load_like(M, at + 7 * pos, b), load_like(M, at + 11 * pos, b)), load_like(M, at + 15 * pos, b))
    y00 = add8(add8(add8(u00, u01), u02), b)
    y01 = add8(sub8(sub8(u01, u02), u03), b)
    y10 = add8(add8(add8(u10, u11), u12), b)
    y11 = add8(sub8(sub8(u11, u12), u13), b)
    if fast:
        store_lanes(out, o, y00)
        store_lanes(out, o + K, y01)
        store_lanes(out, o + W_out * K, y10)
        store_lanes(out, o + (W_out + 1) * K, y11)
    else:
        _store_edge(out, t, TH, TW, 2, 0, 0, k0, H_out, W_out, K, y00)
        _store_edge(out, t, TH, TW, 2, 0, 1, k0, H_out, W_out, K, y01)
        _store_edge(out, t, TH, TW, 2, 1, 0, k0, H_out, W_out, K, y10)
        _store_edge(out, t, TH, TW, 2, 1, 1, k0, H_out, W_out, K, y11)


@njit(cache=True)
def _combine6(T, i, v0, v1, v2, v3, v4, v5, start):
    """``start + sum over j of T[i, j] * v_j`` (vectors of any width): a row of a constant 6-column matrix
    (``_BT6``, ``_AT6``) times six vectors, zero coefficients skipped. A function of its own, not
    inlined by Numba: LLVM inlines it and folds the constants, while Numba-level inlining of
    its 60 uses took the kernel's compile from 6 to 35 s."""
    acc = start
    if T[i, 0] != 0:
        acc = fma8(splat_like(T[i, 0], start), v0, acc)
    if T[i, 1] != 0:
        acc = fma8(splat_like(T[i, 1], start), v1, acc)
    if T[i, 2] != 0:
        acc = fma8(splat_like(T[i, 2], start), v2, acc)
    if T[i, 3] != 0:
        acc = fma8(splat_like(T[i, 3], start), v3, acc)
    if T[i, 4] != 0:
        acc = fma8(splat_like(T[i, 4], start), v4, acc)
    if T[i, 5] != 0:
        acc = fma8(splat_like(T[i, 5], start), v5, acc)
    return acc


@njit(inline="always")
def _input_transform6(xf, at, row, C, V, dst, pos, lanes):
    """F(2x2, 5x5)'s ``V = B^T d B`` for one tile's ``len(lanes)`` channels, the 6x6 patch
    ``d[r][s] = xf[at + r * row + s * C]``: columns first (``t = B^T d``, kept in V's slots),
    then rows, each value a ``_combine6`` of the constant ``_BT6``."""
    zero = splat_lanes(np.float32(0), lanes)
    for s in range(6):
        d0 = load_lanes(xf, at + s * C, lanes)
        d1 = load_lanes(xf, at + row + s * C, lanes)
        d2 = load_lanes(xf, at + 2 * row + s * C, lanes)
        d3 = load_lanes(xf, at + 3 * row + s * C, lanes)
        d4 = load_lanes(xf, at + 4 * row + s * C, lanes)
        d5 = load_lanes(xf, at + 5 * row + s * C, lanes)
        for a in range(6):
            store_lanes(V, dst + (a * 6 + s) * pos, _combine6(_BT6, a, d0, d1, d2, d3, d4, d5, zero))
    for a in range(6):
        t0 = load_lanes(V, dst + (a * 6) * pos, lanes)
        t1 = load_lanes(V, dst + (a * 6 + 1) * pos, lanes)
        t2 = load_lanes(V, dst + (a * 6 + 2) * pos, lanes)
        t3 = load_lanes(V, dst + (a * 6 + 3) * pos, lanes)
        t4 = load_lanes(V, dst + (a * 6 + 4) * pos, lanes)
        t5 = load_lanes(V, dst + (a * 6 + 5) * pos, lanes)
        for b in range(6):
            store_lanes(V, dst + (a * 6 + b) * pos, _combine6(_BT6, b, t0, t1, t2, t3, t4, t5, zero))


@njit(inline="always")
def _output_column6(M, at, pos, A_T, r, s, like):
    """``(A^T m)[r][s]`` of a 6x6 patch's transform: column s of the 6x6 positions, combined by
    row r of ``A_T`` (``_AT6``, ``_AT64``; vectors as wide as ``like``)."""
    return _combine6(A_T, r, load_like(M, at + s * pos, like), load_like(M, at + (6 + s) * pos, like),
                     load_like(M, at + (12 + s) * pos, like), load_like(M, at + (18 + s) * pos, like),
                     load_like(M, at + (24 + s) * pos, like), load_like(M, at + (30 + s) * pos, like),
                     splat_like(np.float32(0), like))


@njit(inline="always")
def _output_transform6(M, at, pos, A_T, b, out, o, fast, t, TH, TW, k0, H_out, W_out, K):
    """``Y = A^T m A + b`` of a 6x6 patch's transform for the channels of ``b`` of tile t
    (``m[ab] = M[at + ab * pos]``): ``A_T`` is F(2x2, 5x5)'s ``_AT6`` (2 x 6, a 2x2 block) or
    F(4x4, 3x3)'s ``_AT64`` (4 x 6, a 4x4 block), a constant at each call, so LLVM drops its
    zeros; stored as ``_output_transform`` stores. Row r of the block: ``u_s = (A^T m)[r][s]``
    for the six columns s, then ``y_q = sum over s of u_s A^T[q, s] + b``."""
    block = A_T.shape[0]
    for r in range(block):
        u0, u1 = _output_column6(M, at, pos, A_T, r, 0, b), _output_column6(M, at, pos, A_T, r, 1, b)
        u2, u3 = _output_column6(M, at, pos, A_T, r, 2, b), _output_column6(M, at, pos, A_T, r, 3, b)
        u4, u5 = _output_column6(M, at, pos, A_T, r, 4, b), _output_column6(M, at, pos, A_T, r, 5, b)
        for q in range(block):
            y = _combine6(A_T, q, u0, u1, u2, u3, u4, u5, b)
            if fast:
                store_lanes(out, o + (r * W_out + q) * K, y)
            else:
                _store_edge(out, t, TH, TW, block, r, q, k0, H_out, W_out, K, y)


@njit(inline="always")
def _store_edge(out, t, TH, TW, block, dy, dx, k0, H_out, W_out, K, y):
    """Pixel (dy, dx) of tile t (``block`` x ``block`` pixels), channels k0 .. min(k0 + lanes,
    K), if that pixel exists."""
    n = t // (TH * TW)
    h = block * ((t // TW) % TH) + dy
    w = block * (t % TW) + dx
    if h < H_out and w < W_out:
        edge = np.empty(16, np.float32)
        store_lanes(edge, 0, y)
        at = ((n * H_out + h) * W_out + w) * K + k0
        for k in range(min(lanes_of(y), K - k0)):
            out[at + k] = edge[k]



U_BYTES_PER_L2 = 2
"""Winograd while the transformed filters U, 16 (36) x C x K floats, are at most this many times the
core's L2 cache (``caches.l2_bytes``), or up to ``U_BYTES_PER_L2_MANY_TILES`` times when every
task has a full ``TILES`` tiles: every task streams all of U, so a big U needs many tiles to
serve. Sapphire Rapids (2 MB of L2), against the direct kernel, 1 and 2 threads: VGG's
256 -> 256 at 56x56 (U 4 MB) 1.66x and 1.49x; 512 -> 512 at 28x28 with 8 images (16 MB, 64
tiles a task) 1.64x and 1.60x, with one image (25-56 tiles a task) 1.25x and 1.03x; at 14x14
(8-16 tiles a task) 0.76x and 0.70x. Zen 3 (512 KB): 128 -> 128 (1 MB) 1.2-1.7x, 256 -> 256
(4 MB, 16 tiles a task) 1.06x."""
U_BYTES_PER_L2_MANY_TILES = 8


def usable(x_shape, W_shape, win, threads=None, l2=None):
    """Winograd takes 3x3 and 5x5 stride-1 convs (float32: the caller checks) with a
    multiple of 8 input channels (its input transform runs 8 channels at a time), at least
    32 of them (with fewer, the transforms cost more than the multiplies they save), and
    transformed filters small enough for the cache, or for the tiles that share them
    (``U_BYTES_PER_L2``), on maps that 2x2 blocks cover well (``BLOCK2_MAX_COVER``); 5x5 only
    with ``TILES`` tiles a task. F(2x2, 5x5) against the
    direct kernel, Sapphire Rapids, 1 / 2 threads: Inception's 28x28x192 -> 32 with 8 images
    1.36x / 1.36x, its dX (32 -> 192) 1.54x / 1.56x; one image (32-56 tiles a task) 0.96x /
    0.99x."""
    f_h, f_w, C, K = W_shape
    if not _patch_layer(W_shape, win, (3, 5)) or not _blocks_cover(x_shape, 2, BLOCK2_MAX_COVER):
        return False
    Kp = -(-K // CHANNELS) * CHANNELS
    threads = thread_count() if threads is None else threads
    tiles = tile_count(x_shape)  # about the output's ("same")
    if f_h == 5 and tiles_per_task(tiles, threads) < TILES:
        return False  # its 6x6 transforms cost about what they save then (one image: 0.96-0.99x)
    return _u_fits((f_h + 1) ** 2 * C * Kp * 4, tiles, threads, l2)


BLOCK2_MAX_COVER = 1.2
"""Winograd's 2x2 blocks only where they cover at most this many times the map's pixels (a
5 x 5 map: 6 x 6, 1.44x): the blocks past the edge compute pixels thrown away. Against the
direct kernel, 2 threads, Sapphire Rapids: 96 x 5 x 5 x 32 -> 64 0.98 -> 0.65 ms direct, 64 ->
32 0.74 -> 0.65, 16 x 9 x 9 x 64 (1.23x) 0.42 -> 0.39, 64 x 3 x 3 x 64 0.56 -> 0.28, 32 x 7
x 7 x 64 equal; 8 x 13 x 13 x 128 (1.16x) stays on Winograd (1.39 against 1.47 ms)."""


def _blocks_cover(x_shape, block, most):
    """Whether ``block`` x ``block`` tiles cover the map ``x_shape[1:3]`` (about the output's,
    "same") with at most ``most`` times its pixels."""
    N, H, W = x_shape[:3]
    return tile_count(x_shape, block) * block * block <= most * N * H * W


def _u_fits(U_bytes, tiles, threads, l2=None):
    """``usable``'s cache rule: transformed filters of ``U_bytes`` within ``U_BYTES_PER_L2`` L2
    caches, or ``U_BYTES_PER_L2_MANY_TILES`` when ``tiles`` give every task ``TILES`` tiles."""
    l2 = l2 or l2_bytes()
    many_tiles = tiles_per_task(tiles, threads) == TILES
    return U_bytes <= U_BYTES_PER_L2 * l2 or (U_bytes <= U_BYTES_PER_L2_MANY_TILES * l2 and many_tiles)


def _patch_layer(W_shape, win, sizes):
    """A square filter of one of ``sizes``, stride 1, and a multiple of 8 input channels (the
    input transform runs 8 channels at a time), at least 32 of them (with fewer, the transforms
    cost more than the multiplies they save): the layers Winograd can take."""
    f_h, f_w, C, _ = W_shape
    return (f_h == f_w and f_h in sizes and win.stride_h == 1 and win.stride_w == 1
            and C % EIGHT == 0 and C >= 32)


def tile_count(shape, block=2):
    """The ``block`` x ``block`` tiles covering ``shape = (N, H, W, ...)``: ``N * ceil(H / block) *
    ceil(W / block)``."""
    return shape[0] * -(-shape[1] // block) * -(-shape[2] // block)


NEAR_U_PER_L2 = 2
NEAR_U_TILES = PIXELS
"""Transformed filters U that fit ``NEAR_U_PER_L2`` times in the L2 cache are read from
there by every task at little cost, and a task of ``NEAR_U_TILES`` tiles (one register
tile's rows) keeps its V in L1 and L2 beside them: Inception's 5x5 layer (U 885 KB, 36 x 192
x 32) 4.5-4.6 -> 3.8-3.9 ms with 8 tiles a task instead of 64 (16: 4.0, 24: 3.9), 2 threads,
Sapphire Rapids. A U past that (VGG's 4 MB) streams from L3 for every task, and 64 tiles
share each pass over it (16 tiles: 39 ms against 32)."""


def tiles_per_task(tiles, workers):
    """``TILES``, or fewer (a multiple of ``PIXELS``) when ``tiles`` would then give a thread
    fewer than ``TASKS_PER_THREAD`` tasks. The bits do not depend on it: each tile's sums run
    over the channels in the same order whichever task holds it."""
    wanted = -(-tiles // (TASKS_PER_THREAD * workers))
    return max(PIXELS, min(TILES, -(-wanted // PIXELS) * PIXELS))


V_SHARE_OF_L2 = 0.6
"""F(4x4, 3x3): a task's transformed patches V (36 x tiles x C floats) are read once per panel of
filters; at most this share of the L2 cache, so they stay there (VGG's 56 x 56 x 256 layer,
2.36 MB of V with 64 tiles a task: 27.9 ms, 32 tiles 24.0, 16 tiles 26.3; 2 threads, Sapphire
Rapids, 2 MB of L2). F(2x2, ...) keeps ``TILES``: 64 tiles of 16 positions fill half the L2."""


BLOCK4_MAX_COVER = 1.1
"""F(4x4, 3x3) only where its 4x4 blocks cover at most this many times the map's pixels: the
blocks past the edge compute pixels that are thrown away, and store the rest one by one. 2
threads, Sapphire Rapids, F(2x2, 3x3) -> F(4x4, 3x3): 96 x 10 x 10 x 32 -> 64 (1.44x
covered) 0.98 -> 1.64 ms, 8 x 14 x 14 x 128 -> 128 (1.31x) 1.12 -> 1.62, 8 x 13 x 13 (1.51x)
1.22 -> 1.55, 16 x 26 x 26 x 64 -> 64 (1.16x) 1.73 -> 1.81; 8 x 28 x 28 x 64 -> 64 (1x) 1.00
-> 0.82."""


BLOCK4_MIN_TILES = 256
"""F(4x4, 3x3) only for layers of at least this many 4x4 tiles: with fewer, each task streams
all of the larger transformed filters for few tiles (one 32 x 32 x 64 -> 128 image, 64 tiles:
0.50 -> 0.55 ms; one 64 x 64 x 32 -> 64 image, 256 tiles: 0.45 -> 0.38; 2 threads). A count
of tiles, not of tiles per thread, so that the block, and the bits, do not change with the
thread count."""


def block_for(x_shape, W_shape, threads=None, l2=None):
    """The output block of a Winograd layer (``usable``): 4, F(4x4, 3x3), for a 3x3 filter
    over a map that whole 4x4 blocks cover (``BLOCK4_MAX_COVER``), with at least
    ``BLOCK4_MIN_TILES`` 4x4 tiles, whose transformed filters (36 x C x K floats, 2.25x
    F(2x2, 3x3)'s) pass ``usable``'s cache rule; else 2. Against F(2x2, 3x3), 2 threads,
    Sapphire Rapids: ResNet's 8 x 56 x 56 x 64 layer 4.1 -> 2.8 ms, VGG's 4 x 56 x 56 x 256
    29.5 -> 24.0, 2 x 208 x 208 x 32 -> 64 8.5 -> 5.5, 1 x 104 x 104 x 64 -> 128 3.4 -> 2.6;
    1 x 26 x 26 x 256 -> 512 (U 18.9 MB, 49 tiles) 4.5 -> 7.6."""
    f_h, _, C, K = W_shape
    if f_h != 3 or not _blocks_cover(x_shape, 4, BLOCK4_MAX_COVER):
        return 2
    tiles = tile_count(x_shape, 4)
    if tiles < BLOCK4_MIN_TILES:
        return 2  # few 4x4 tiles, each task streaming all the (larger) transformed filters
    threads = thread_count() if threads is None else threads
    return 4 if _u_fits(36 * C * -(-K // CHANNELS) * CHANNELS * 4, tiles, threads, l2) else 2


def forward(x, W, b, win, z, scratch, block=2):
    """``z = conv(x, W) + b`` (float32, contiguous; see ``usable``), in ``block`` x ``block``
    output tiles: 2, or 4 for F(4x4, 3x3) (see ``block_for``)."""
    N, H_out, W_out, K = z.shape
    whole_h, whole_w = block * -(-H_out // block), block * -(-W_out // block)  # whole tiles
    xp = padded_input(x, win, whole_h, whole_w, scratch)
    bias = aligned_zeros(-(-K // CHANNELS) * CHANNELS)
    bias[:K] = b
    workers = thread_count()
    per_task = tiles_per_task(tile_count(z.shape, block), workers)
    U = transform_filters(W, block)
    l2 = l2_bytes()
    if 4 * U.size * NEAR_U_PER_L2 <= l2:
        per_task = min(per_task, NEAR_U_TILES)
    side = W.shape[0] + block - 1
    if block == 4:  # the task's V, side^2 x per_task x C floats, in the L2 cache beside U's panel
        v_tile_bytes = side * side * x.shape[3] * 4
        per_task = min(per_task, max(PIXELS, int(V_SHARE_OF_L2 * l2) // v_tile_bytes // PIXELS * PIXELS))
    winograd_tiles(xp.reshape(-1), xp.shape, U, z.shape, bias, per_task, workers, z.reshape(-1), side, block)


# --------------------------------------------------------------------------- dW


GRAD_TILES = 32
"""dW: output tiles per chunk (``V`` and ``dM`` of a chunk, 2 x n^2 x GRAD_TILES x C floats,
stay in the L2 cache while every task of the chunk reads them)."""
GRAD_SPLITS = 4
"""dW: the tiles are cut into this many runs, each summed into its own dU by one thread (a
fixed number, so the bits do not depend on the thread count; per chunk, a thread that shared
all its runs' tasks had to transform the chunk itself: 1.15x the direct dW instead of
1.51x, ResNet's layer on 2 threads)."""
DU_BYTES_PER_L2 = 2
"""dW on Winograd only while dU (16 x C x K floats, loaded and stored by the tasks once per
chunk) is at most this many L2 caches."""
GRAD_MIN_TILES = 16 * GRAD_TILES
"""dW on Winograd only from this many 2x2 output tiles: below, copying dz, the transforms and
the partial dU cost more than the multiplies saved (a 2 x 7 x 7 layer ran 0.2x the direct dW)."""


def filter_grad_usable(x_shape, dz_shape, W_shape, win):
    """The dW of a 3x3 stride-1 layer with 32+ input channels (a multiple of 8), an even output,
    enough tiles (``GRAD_MIN_TILES``) and a dU that fits the cache (``DU_BYTES_PER_L2``). Against the direct
    dW tile, Sapphire Rapids, 1 / 2 threads: ResNet's 8 x 56 x 56 x 64 layer 1.25x / 1.51x,
    VGG's 4 x 56 x 56 x 256 1.34x / 1.38x. Not 5x5: F(2x2, 5x5) ran 0.78x / 0.84x on
    Inception's layer (its 36 positions of dU are loaded and stored too often for 32 filters)."""
    _, _, C, K = W_shape
    if not _patch_layer(W_shape, win, (3,)):
        return False
    Kp = -(-K // CHANNELS) * CHANNELS
    tiles = tile_count(dz_shape)
    # whole 2x2 blocks only: with an odd output, dz would be padded with zeros, and an inf in
    # x would meet them (0 * inf = NaN: padding must never contribute, as in the direct dW)
    whole_blocks = dz_shape[1] % 2 == 0 and dz_shape[2] % 2 == 0
    return whole_blocks and tiles >= GRAD_MIN_TILES and 16 * C * Kp * 4 <= DU_BYTES_PER_L2 * l2_bytes()


def filter_grad(x, dz, win, dW, scratch):
    """dW of a 3x3 or 5x5 stride-1 conv (float32) by Winograd: with the forward's
    ``Y = A^T [U * V] A`` (``U = G g G^T``), the gradient reaching U is ``dU = sum over tiles of
    V * dM``, ``dM = A dY A^T`` (dY: a tile's 2x2 block of dz), and then ``dW = G^T dU G``:
    n^2 products over tiles (2.25x, 2.8x fewer multiplies than the direct dW tile) and small
    transforms (``winograd_filter_grad_tiles``)."""
    N, H_out, W_out, K = dz.shape
    f = dW.shape[0]
    side = f + 1
    C = x.shape[3]
    even_h, even_w = 2 * -(-H_out // 2), 2 * -(-W_out // 2)
    xp = padded_input(x, win, even_h, even_w, scratch)
    taps, vectors, lanes = filter_grad_shape(2 * CHANNELS)  # the direct dW tile's for wide layers
    width = vectors * lanes
    Kp = -(-K // width) * width
    # dz with whole 2x2 blocks and whole panels, zeros around it
    dzp = scratch("winograd_dz", N * even_h * even_w * Kp).reshape(N, even_h, even_w, Kp)
    _zero_pad_copy(dz, dzp)
    dU = aligned_zeros((GRAD_SPLITS, side * side, C + taps, Kp))
    winograd_filter_grad_tiles(xp.reshape(-1), xp.shape, dzp.reshape(-1), dzp.shape, GRAD_TILES,
                               thread_count(), dU.reshape(-1), side, (0,) * taps, (0,) * vectors, (0,) * lanes)
    _filters_from_transformed(sum_in_order(dU), _G3 if f == 3 else _G5, dW)


@njit(parallel=True, cache=True)
def _zero_pad_copy(src, dst):
    """``dst[n, h, w, k] = src[n, h, w, k]`` inside src, else 0 (dst at least as large on every axis)."""
    N, H, W, K = src.shape
    for t in prange(dst.shape[0] * dst.shape[1]):
        n, h = t // dst.shape[1], t % dst.shape[1]
        row = dst[n, h]
        row[:, :] = 0
        if h < H:
            row[:W, :K] = src[n, h]


@njit(parallel=True, cache=True)
def _filters_from_transformed(dU, G, dW):
    """``dW[i, j, c, k] = sum over a, b of G[a, i] dU[n a + b, c, k] G[b, j]`` (float64 sums)."""
    r, _, C, K = dW.shape
    n = G.shape[0]
    for c in prange(C):
        for i in range(r):
            for j in range(r):
                for k in range(K):
                    total = 0.0
                    for a in range(n):
                        for b in range(n):
                            if G[a, i] != 0 and G[b, j] != 0:  # 0 * inf would make a NaN of an inf
                                total += G[a, i] * G[b, j] * dU[n * a + b, c, k]
                    dW[i, j, c, k] = total


@njit(inline="always")
def _grad_transform(dzf, at, row_stride, K, dM, dst, pos, side):
    """``dM = A dY A^T`` for one tile's 8 channels: dY the 2x2 block ``dzf[at + r * row_stride +
    q * K]``, dM's n x n values to ``dM[dst + (a n + b) pos]``; A^T is ``_AT4`` or ``_AT6``."""
    y00 = load8(dzf, at)
    y01 = load8(dzf, at + K)
    y10 = load8(dzf, at + row_stride)
    y11 = load8(dzf, at + row_stride + K)
    zero = splat8(np.float32(0))
    A_T = _AT4 if side == 4 else _AT6
    for b in range(side):
        # u[r][b] = sum over q of y[r][q] A^T[q, b]
        u0 = fma8(splat8(A_T[1, b]), y01, fma8(splat8(A_T[0, b]), y00, zero))
        u1 = fma8(splat8(A_T[1, b]), y11, fma8(splat8(A_T[0, b]), y10, zero))
        for a in range(side):
            dm = fma8(splat8(A_T[1, a]), u1, fma8(splat8(A_T[0, a]), u0, zero))
            store8(dM, dst + (a * side + b) * pos, dm)



@njit(parallel=True, cache=True, fastmath={"contract"})
def winograd_filter_grad_tiles(xf, x_shape, dzf, dz_shape, per_chunk, workers, dU, side, tap_slots, vector_slots,
                               lane_slots):
    """The blocked loop nest of ``filter_grad``. ``xf``: the padded input (as the forward's);
    ``dzf``: dz zero-padded to whole 2x2 blocks and panels, shape ``dz_shape = (N, 2 TH, 2 TW,
    Kp)``; ``dU``: ``(splits, n^2, C + taps, Kp)`` zeros, summed into.

    The tiles are cut into ``splits`` equal runs (a fixed number: the sums, and so the bits,
    do not depend on the thread count), each with its own dU; a thread takes whole runs. A
    run's tiles are taken ``per_chunk`` at a time: their input patches transformed (V, as the
    forward) and their dz blocks (dM), then every task, (position ab, a tile of ``taps``
    channels c, a panel of K), adds ``V[ab][tile, c] * dM[ab][tile, k]`` over the chunk's
    tiles to its dU sums on the dW register tile."""
    taps, vectors, lanes = len(tap_slots), len(vector_slots), len(lane_slots)
    width = vectors * lanes
    positions = side * side
    N, Hp, Wp, C = x_shape
    _, H2, W2, Kp = dz_shape
    TH, TW = H2 // 2, W2 // 2
    tiles = N * TH * TW
    panels = Kp // width
    c_tiles = (C + taps - 1) // taps
    tasks = positions * c_tiles * panels
    pitch = C + taps  # dU's rows: channels c, and room for the last tile's overlap
    splits = dU.size // (positions * pitch * Kp)
    workers = max(1, min(workers, splits))
    pos_v = per_chunk * C + 16
    pos_m = per_chunk * Kp + 16
    for worker in prange(workers):
        V = aligned_floats(positions * pos_v)
        dM = aligned_floats(positions * pos_m)
        for split in range(worker, splits, workers):
            end = (split + 1) * tiles // splits
            for t0 in range(split * tiles // splits, end, per_chunk):
                count = min(per_chunk, end - t0)
                for tt in range(count):
                    t = t0 + tt
                    n = t // (TH * TW)
                    th = (t // TW) % TH
                    tw = t % TW
                    corner = ((n * Hp + 2 * th) * Wp + 2 * tw) * C
                    _transform_patch(xf, corner, Wp * C, C, V, tt * C, pos_v, side)
                    block = ((n * H2 + 2 * th) * W2 + 2 * tw) * Kp
                    for k in range(0, Kp, EIGHT):
                        _grad_transform(dzf, block + k, W2 * Kp, Kp, dM, tt * Kp + k, pos_m, side)
                for task in range(tasks):
                    ab = task // (c_tiles * panels)
                    kb = (task // c_tiles) % panels
                    c0 = (task % c_tiles) * taps
                    first = 0
                    if c0 + taps > C:  # the last tile of channels ends at C (its first rows: the previous tile's)
                        first = c0 - (C - taps)
                        c0 = C - taps
                    at = ((split * positions + ab) * pitch + c0) * Kp + kb * width
                    sums = load_tile(dU, at, Kp, tap_slots, vector_slots, lane_slots)
                    v = ab * pos_v + c0
                    m = ab * pos_m + kb * width
                    for tt in range(count):
                        under = splat_each(V, ints_from(0, 1, tap_slots), v + tt * C, lane_slots)
                        sums = tile_fma(under, load_tile(dM, m + tt * Kp, 0, 1, vector_slots, lane_slots), sums)
                    store_tile_rows(dU, at, Kp, sums, vectors, first, taps)
