"""Fast cpu convolution: the same three kernels as ``conv.py``; routes float32 to the direct
register-tiled kernels (``conv_direct.py``) and keeps im2col + BLAS for the rest.

Shapes (NHWC) and the output size are those of ``conv.py``::

    x  (N, H, W, C_in)   W  (f_h, f_w, C_in, C_out)   b  (C_out,)
    z  (N, H_out, W_out, C_out),  H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1

The idea ("im2col"): copy every window of the input into one row of a matrix ``cols``,

    cols[(n, h_out, w_out), (i, j, c)] = x[n, h_out * stride_h - pad_top + i,
                                             w_out * stride_w - pad_left + j, c]   (0 on padding)

and the whole convolution becomes one matrix product with the filters seen as a matrix
``Wm = W.reshape(f_h * f_w * C_in, C_out)`` (already in (i, j, c) order in NHWC):

    z  = cols @ Wm + b            (forward)
    dW = cols.T @ dz              (backward, filter: every window times its output gradient)
    dx = col2im(dz @ Wm.T)        (backward, input: each window's gradient summed back)

The matrix products run in BLAS (OpenBLAS behind numpy). Since then the register-tiled direct
kernels of ``conv_direct.py`` (written with the explicit vectors of ``simd.py``) beat this
path by 2-7x, so this module is now the *router*: float32 goes to ``conv_direct`` (or, for
3x3 stride-1 layers of 32 to ~128 channels, Winograd's F(2x2, 3x3) in ``conv_winograd.py``:
2.25x fewer multiplies on the same register tile; ``NBCNN_WINOGRAD=0`` turns it off), and
im2col + BLAS stays for float64, for a dX whose flipped convolution would mostly multiply
padding (LeNet's C5: a 1 x 1 output, dz padded by 4 on each side), and when
``NBCNN_DIRECT=0`` (the middle rung of ``nbcnn bench --ladder``). What is left here is the
copying, written as ``@njit`` loops, and keeping it cheap:

* few hand-overs between thread pools: ``cols`` is built in one go, on one thread, then
  one BLAS call; every switch between numba's threads and OpenBLAS's costs more than the
  memory traffic of the big matrix (see ``CHUNK_BYTES`` and ``im2col_rows``);
* no copy at all for a 1x1 stride-1 unpadded conv: ``x`` viewed as a matrix already is ``cols``;
* workspaces are reused between calls (a fresh 4 MB array costs its page faults every time);
* every parallel loop writes disjoint rows of its output (no races, same result every run).

All three functions take exactly the arguments of the readable kernels and fill the same
output.
"""

import os
import threading

import numpy as np
from numba import njit, prange

from ..checks import Window
from . import blas, conv_direct, conv_winograd

_JIT = dict(parallel=True, cache=True, fastmath={"contract"})

CHUNK_BYTES = 256 << 20
"""Largest ``cols`` built at once; bigger problems are done in chunks of output rows.

Why so big (the 56x56x256 3x3 conv of VGG needs 115 MB): each chunk costs a copy and a BLAS
call, and waking BLAS's threads (or fighting them while they spin) is expensive. On a busy 2-core machine 4 MB chunks made
resnet_s2 5x slower than one big ``cols`` (664 ms vs 140 ms); the extra memory traffic of
the big matrix costs far less than that."""


# --------------------------------------------------------------------------- copying kernels


@njit(cache=True, nogil=True)  # one thread on purpose: see the note at the end of this docstring
def im2col_rows(x, f_h, f_w, stride_h, stride_w, pad_top, pad_left, H_out, W_out, row0, n_rows, cols):
    """Fill ``cols`` with the windows of output rows ``row0 .. row0 + n_rows - 1`` (an output
    row is one (n, h_out) pair, numbered ``n * H_out + h_out``)::

        cols[r * W_out + w_out, (i * f_w + j) * C + c] = x[n, h_in, w_in, c]   (0 on padding)

    Pads may be negative (used by the dX-as-convolution trick): the bounds test covers it.

    Why not ``prange``: the BLAS product that follows runs on OpenBLAS's own threads, which
    keep spinning for a while after each call. A parallel copy next to them fights them
    for the 2 cores; measured in one process, interleaved, one-thread copy vs prange copy
    then the product: lenet_c2 7.9 vs 13.5 ms, resnet_s2 70 vs 84 ms, stem_s2 139 vs 136.
    """
    N, H, W, C = x.shape
    zero = x.dtype.type(0)
    span = f_w * C
    for r in range(n_rows):
        n = (row0 + r) // H_out
        h_out = (row0 + r) % H_out
        for w_out in range(W_out):
            dst = cols[r * W_out + w_out]
            w_first = w_out * stride_w - pad_left
            for i in range(f_h):
                h_in = h_out * stride_h - pad_top + i
                if 0 <= h_in < H and 0 <= w_first and w_first + f_w <= W:
                    # the whole filter row is inside the image: in NHWC it is f_w * C numbers
                    # in a row, copied with no per-tap bounds test
                    for j in range(f_w):
                        for c in range(C):
                            dst[i * span + j * C + c] = x[n, h_in, w_first + j, c]
                    continue
                for j in range(f_w):
                    w_in = w_out * stride_w - pad_left + j
                    base = (i * f_w + j) * C
                    if 0 <= h_in < H and 0 <= w_in < W:
                        for c in range(C):
                            dst[base + c] = x[n, h_in, w_in, c]
                    else:
                        for c in range(C):
                            dst[base + c] = zero


@njit(**_JIT)
def col2im_images(dcols, f_h, f_w, stride_h, stride_w, pad_top, pad_left, H_out, W_out, n0, dx):
    """The gather form of col2im, for images ``n0 ..`` (as many as ``dcols`` holds)::

        dx[n, h_in, w_in, c] = sum over windows (h_out, w_out) covering (h_in, w_in) of
                               dcols[(n - n0, h_out, w_out), (i, j, c)]

    where (i, j) is where that window put (h_in, w_in). Each prange iteration owns one
    input row ``(n, h_in)`` of ``dx``: it reads from many windows but writes only its row.
    """
    N, H, W, C = dx.shape
    n_images = dcols.shape[0] // (H_out * W_out)
    for t in prange(n_images * H):
        n = t // H
        h_in = t % H
        # the windows whose rows cover h_in: h_out * stride_h - pad_top <= h_in < that + f_h
        h_lo = max(0, (h_in + pad_top - f_h + stride_h) // stride_h)
        h_hi = min(H_out, (h_in + pad_top) // stride_h + 1)
        row = dx[n0 + n, h_in]
        row[:, :] = 0
        for w_in in range(W):
            w_lo = max(0, (w_in + pad_left - f_w + stride_w) // stride_w)
            w_hi = min(W_out, (w_in + pad_left) // stride_w + 1)
            out = row[w_in]
            for h_out in range(h_lo, h_hi):
                i = h_in + pad_top - h_out * stride_h
                for w_out in range(w_lo, w_hi):
                    j = w_in + pad_left - w_out * stride_w
                    src = dcols[(n * H_out + h_out) * W_out + w_out]
                    base = (i * f_w + j) * C
                    for c in range(C):
                        out[c] += src[base + c]


# --------------------------------------------------------------------------- workspaces

_local = threading.local()


def workspace(name, n_items, dtype):
    """A reusable flat buffer of at least ``n_items`` (one per thread, name and dtype)."""
    key = (name, np.dtype(dtype).str)
    store = getattr(_local, "buffers", None)
    if store is None:
        store = _local.buffers = {}
    buf = store.get(key)
    if buf is None or buf.size < n_items:
        buf = store[key] = np.empty(max(n_items, 1), dtype)
    return buf[:n_items]


def _rows_per_chunk(n_out_rows, W_out, F, itemsize):
    """How many output rows (n, h_out) one chunk of ``cols`` holds: about CHUNK_BYTES, at least 1."""
    per_row = max(W_out * F * itemsize, 1)
    return int(min(n_out_rows, max(1, CHUNK_BYTES // per_row)))


def _direct_ok(x, W, z):
    """The direct kernel takes contiguous float32 (float64 stays on im2col + BLAS).
    ``NBCNN_DIRECT=0`` turns it off: float32 then runs im2col + BLAS too (the middle rung of
    ``nbcnn bench --ladder``)."""
    return (os.environ.get("NBCNN_DIRECT", "1") != "0"
            and all(a.dtype == np.float32 and a.flags.c_contiguous for a in (x, W, z)))


def _scratch(name, n_items):
    """Reusable float32 scratch memory for the direct kernels (padded input, padded dz)."""
    return workspace(name, n_items, np.float32)


def _flip_limit(dz, W, dx):
    """How much more work (mostly multiplying padding zeros) the flipped-filter dX may do than
    the BLAS + col2im path before that path wins. The direct kernel runs it about 4x faster
    than im2col + BLAS would (LeNet C3's dX: 1.1 vs 2.4 ms at a ratio of 5.2; C5's, ratio
    188, stays on col2im)."""
    return 8 if _direct_ok(dz, W, dx) else 2


def _is_pointwise(x_shape, win, z_shape):
    """A 1x1, stride-1, unpadded conv: ``x`` as an (N*H*W, C) matrix already is ``cols``."""
    return (win.f_h == 1 and win.f_w == 1 and win.stride_h == 1 and win.stride_w == 1
            and win.pad_top == 0 and win.pad_left == 0
            and x_shape[1] == z_shape[1] and x_shape[2] == z_shape[2])


# --------------------------------------------------------------------------- the three kernels


def _conv_gemm(x, Wm, f_h, f_w, stride_h, stride_w, pad_top, pad_left, z):
    """``z = im2col(x) @ Wm``, one chunk of output rows at a time (z, Wm 2-D-able, no bias)."""
    N, H_out, W_out, K = z.shape
    F = Wm.shape[0]
    z2 = z.reshape(N * H_out * W_out, K)
    if _split_small(x, Wm, f_h, f_w, stride_h, stride_w, pad_top, pad_left, z2, N * H_out, H_out, W_out):
        return
    rows = _rows_per_chunk(N * H_out, W_out, F, x.itemsize)
    cols_buf = workspace("cols", rows * W_out * F, x.dtype).reshape(rows * W_out, F)
    for row0 in range(0, N * H_out, rows):
        n_rows = min(rows, N * H_out - row0)
        m = n_rows * W_out
        cols = cols_buf[:m]
        im2col_rows(x, f_h, f_w, stride_h, stride_w, pad_top, pad_left, H_out, W_out, row0, n_rows, cols)
        blas.matmul(cols, Wm, out=z2[row0 * W_out:row0 * W_out + m])


_pool = None


def _threads():
    import numba

    return numba.get_num_threads()


def _split_rows(n_rows, rows_per_part_flops_small: bool, part):
    """Run ``part(row0, row1)`` on each thread's share of the output rows, in Python threads,
    and return the results in order; None (nothing run) for big problems or one thread.

    For small products (LeNet-sized) this beats one big copy + one BLAS call: each thread
    copies its own windows (``im2col_rows`` releases the GIL) and runs its own one-thread
    BLAS product, so both cores work and no BLAS thread pool has to be woken or waited for.
    The split depends only on the thread count, so results are the same run to run.
    """
    global _pool
    threads = min(_threads(), n_rows)
    if threads < 2 or not rows_per_part_flops_small:
        return None
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="nbcnn-conv")
    bounds = [n_rows * t // threads for t in range(threads + 1)]
    with blas.single_threaded():
        futures = [_pool.submit(part, bounds[t], bounds[t + 1]) for t in range(threads)]
        return [f.result() for f in futures]


def _split_small(x, Wm, f_h, f_w, stride_h, stride_w, pad_top, pad_left, z2, n_rows, H_out, W_out) -> bool:
    """``z2 = im2col(x) @ Wm`` with the rows split between threads (see ``_split_rows``)."""
    F, K = Wm.shape

    def part(row0, row1):
        m = (row1 - row0) * W_out
        cols = workspace("cols", m * F, x.dtype).reshape(m, F)
        im2col_rows(x, f_h, f_w, stride_h, stride_w, pad_top, pad_left, H_out, W_out, row0, row1 - row0, cols)
        np.matmul(cols, Wm, out=z2[row0 * W_out:row1 * W_out])

    return _split_rows(n_rows, blas.is_small(n_rows * W_out, F, K), part) is not None


def _tiled_forward(x, W, b, win, z):
    """float32 ``z = conv(x, W) + b`` on the register tile: Winograd where it pays, else direct."""
    if conv_winograd.usable(x.shape, W.shape, win) and os.environ.get("NBCNN_WINOGRAD", "1") != "0":
        conv_winograd.forward(x, W, b, win, z, _scratch)
    else:
        conv_direct.forward(x, W, b, win, z, _scratch)


def forward(x, W, b, win, z):
    """``z = conv(x, W) + b`` as im2col + BLAS (see the module docstring). Same arguments and
    output as ``conv.conv2d_forward``."""
    K = z.shape[3]
    Wm = W.reshape(-1, K)
    if _direct_ok(x, W, z):
        # float32: the register-blocked direct kernel (conv_direct.py), bias included. Its
        # tiles run across rows, so even LeNet's C5 (one pixel per row) fills them: 130 us
        # against 270 for im2col + BLAS. 3x3 stride-1 layers with moderate channel counts
        # take Winograd's F(2x2, 3x3) on the same register tile (conv_winograd.py).
        _tiled_forward(x, W, b, win, z)
        return
    if _is_pointwise(x.shape, win, z.shape):
        # 1x1 conv: no copy, one matrix product (x viewed as (pixels, C)).
        blas.matmul(x.reshape(-1, x.shape[3]), Wm, out=z.reshape(-1, K))
    else:
        _conv_gemm(x, Wm, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left, z)
    z += b  # broadcast over the last axis


def backward_filter(x, dz, win, dW):
    """``dW = im2col(x).T @ dz``, summed chunk by chunk in a fixed order (same result every run).
    Same arguments and output as ``conv.conv2d_backward_filter``."""
    N, H_out, W_out, K = dz.shape
    F = dW.size // K
    dW2 = dW.reshape(F, K)
    dz2 = dz.reshape(-1, K)
    if _direct_ok(x, dz, dW):
        conv_direct.backward_filter(x, dz, win, dW, _scratch)
        return
    if _is_pointwise(x.shape, win, dz.shape):
        blas.matmul(x.reshape(-1, x.shape[3]).T, dz2, out=dW2)
        return
    def partial_dW(row0, row1):
        m = (row1 - row0) * W_out
        cols = workspace("cols", m * F, x.dtype).reshape(m, F)
        im2col_rows(x, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left,
                    H_out, W_out, row0, row1 - row0, cols)
        return cols.T @ dz2[row0 * W_out:row1 * W_out]

    parts = _split_rows(N * H_out, blas.is_small(N * H_out * W_out, F, K), partial_dW)
    if parts is not None:
        dW2[...] = parts[0]
        for p in parts[1:]:  # summed in a fixed order: the same bits every run
            dW2 += p
        return
    rows = _rows_per_chunk(N * H_out, W_out, F, x.itemsize)
    cols_buf = workspace("cols", rows * W_out * F, x.dtype).reshape(rows * W_out, F)
    part = workspace("dW_part", F * K, x.dtype).reshape(F, K)
    for row0 in range(0, N * H_out, rows):
        n_rows = min(rows, N * H_out - row0)
        m = n_rows * W_out
        cols = cols_buf[:m]
        im2col_rows(x, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left,
                    H_out, W_out, row0, n_rows, cols)
        dz_chunk = dz2[row0 * W_out:row0 * W_out + m]
        if row0 == 0:
            blas.matmul(cols.T, dz_chunk, out=dW2)
        else:
            blas.matmul(cols.T, dz_chunk, out=part)
            dW2 += part


def backward_input(dz, W, win, dx):
    """dX. Same arguments and output as ``conv.conv2d_backward_input``.

    * 1x1 stride 1, float64: ``dx = dz @ Wm.T``, one matrix product (float32 takes the
      next path: the direct kernel beat single-threaded BLAS 0.48 vs 0.88 ms on incep1x1,
      whose reduction is only 16 long).
    * stride 1: dX is itself a convolution, of ``dz`` with the filters flipped in (i, j) and
      transposed in (c, k), padded by ``f - 1 - pad``; so it runs on the forward's path
      (the direct kernel for float32).
    * stride > 1 (float32): one stride-1 convolution per phase of the input grid
      (``conv_direct.backward_input_strided``), or for 8 input channels or fewer all the
      phases in one convolution (``conv_direct.backward_input_space_to_depth``).
    * otherwise (float64 strided, or when the flipped convolution would mostly multiply
      padding): ``dcols = dz @ Wm.T`` (each window's gradient), then the gather col2im.
      (LeNet's C5: the flipped conv would do 190x the work of dcols; see ``_flip_limit``.)
    """
    N, H, W_in, C = dx.shape
    _, H_out, W_out, K = dz.shape
    f_h, f_w = W.shape[0], W.shape[1]
    flipped_copy = N * H * W_in * f_h * f_w * K  # im2col of the padded dz
    dcols_size = N * H_out * W_out * f_h * f_w * C
    if _is_pointwise(dx.shape, win, dz.shape) and not _direct_ok(dz, W, dx):
        blas.matmul(dz.reshape(-1, K), W.reshape(C, K).T, out=dx.reshape(-1, C))
    elif win.stride_h == 1 and win.stride_w == 1 and flipped_copy <= _flip_limit(dz, W, dx) * dcols_size:
        # Wflip[i, j, k, c] = W[f_h-1-i, f_w-1-j, c, k]
        Wflip = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2))
        flipped = Window(f_h, f_w, 1, 1, f_h - 1 - win.pad_top, f_w - 1 - win.pad_left)
        if _direct_ok(dz, W, dx):
            _tiled_forward(dz, Wflip, np.zeros(C, dz.dtype), flipped, dx)
        else:
            _conv_gemm(dz, Wflip.reshape(-1, C), f_h, f_w, 1, 1, flipped.pad_top, flipped.pad_left, dx)
    elif _direct_ok(dz, W, dx) and (win.stride_h > 1 or win.stride_w > 1):
        if C <= conv_direct.LANES:  # few channels: all phases in one convolution
            conv_direct.backward_input_space_to_depth(dz, W, win, dx, _scratch)
        else:
            conv_direct.backward_input_strided(dz, W, win, dx, _scratch)
    else:
        F = f_h * f_w * C
        per_image = H_out * W_out
        images = max(1, min(N, CHUNK_BYTES // max(per_image * F * dz.itemsize, 1)))
        dcols_buf = workspace("cols", images * per_image * F, dz.dtype).reshape(images * per_image, F)
        WmT = W.reshape(F, K).T
        dz2 = dz.reshape(-1, K)
        for n0 in range(0, N, images):
            n_img = min(images, N - n0)
            dcols = dcols_buf[:n_img * per_image]
            blas.matmul(dz2[n0 * per_image:(n0 + n_img) * per_image], WmT, out=dcols)
            col2im_images(dcols, f_h, f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left,
                          H_out, W_out, n0, dx)


# --------------------------------------------------------------------------- bias gradient

BIAS_PARTS = 16
"""The bias gradient is summed in this many fixed slices of rows (not one per thread, so
the result does not depend on how many threads run it)."""


@njit(**_JIT)
def _bias_partial_sums(flat, K, group, parts):
    """Slice t of ``parts`` sums its share of the rows of ``dz`` (``flat``, K per row),
    ``group`` rows at a time: ``group * K`` contiguous numbers added as one vectorised run
    (with K = 6, a row alone is too short a loop to vectorise). ``parts[t, g * K + k]`` then
    holds the sum over rows ``g (mod group)`` of the slice; the last slice also takes the
    leftover rows. Each iteration owns one row of ``parts``."""
    R = flat.size // K
    P = parts.shape[0]
    L = group * K
    G = R // group
    for t in prange(P):
        acc = parts[t]
        acc[:] = 0
        for g in range(t * G // P, (t + 1) * G // P):
            run = flat[g * L:(g + 1) * L]
            for e in range(L):
                acc[e] += run[e]
        if t == P - 1:
            for r in range(G * group, R):
                for k in range(K):
                    acc[k] += flat[r * K + k]


def bias_backward(dz, db):
    """``db[k] = sum over rows r of dz[r, k]``: same arguments and output as
    ``bias.bias_backward``. 16 partial sums in parallel, then added in a fixed order."""
    K = db.shape[0]
    group = max(1, 64 // K)  # rows per vectorised run: at least 64 numbers
    parts = workspace("bias_parts", BIAS_PARTS * group * K, dz.dtype).reshape(BIAS_PARTS, group * K)
    _bias_partial_sums(np.ascontiguousarray(dz).reshape(-1), K, group, parts)
    _fold_rows(parts.reshape(BIAS_PARTS * group, K), db)


@njit(cache=True)
def _fold_rows(rows, out):
    """``out = rows[0] + rows[1] + ...`` in that order (the same bits every run)."""
    for k in range(out.shape[0]):
        out[k] = rows[0, k]
    for t in range(1, rows.shape[0]):
        for k in range(out.shape[0]):
            out[k] += rows[t, k]
