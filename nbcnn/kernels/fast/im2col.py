"""im2col + BLAS: a convolution as one matrix product (float64, and what float32 falls back to).

Shapes (NHWC) and the output size are those of ``kernels/conv.py``::

    x  (N, H, W, C_in)   W  (f_h, f_w, C_in, C_out)   b  (C_out,)
    z  (N, H_out, W_out, C_out),  H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1

The idea: copy every window of the input into one row of a matrix ``cols``,

    cols[(n, h_out, w_out), (i, j, c)] = x[n, h_out * stride_h - pad_top + i,
                                             w_out * stride_w - pad_left + j, c]   (0 on padding)

and the whole convolution becomes one matrix product with the filters seen as a matrix
``Wm = W.reshape(f_h * f_w * C_in, C_out)`` (already in (i, j, c) order in NHWC):

    z  = cols @ Wm + b            (forward:            ``conv_gemm``)
    dW = cols.T @ dz              (backward, filter:    ``filter_grad``)
    dx = col2im(dz @ Wm.T)        (backward, input:     ``input_grad``)

The matrix products run in BLAS (OpenBLAS behind numpy). The register-tiled direct kernels
(``direct.py``) beat this path by 2-7x on float32, so the router (``conv.py``) sends float32
there; this path stays for float64, for a dX whose flipped convolution would mostly multiply
padding (LeNet's C5), and when ``NBCNN_DIRECT=0`` (the middle rung of ``nbcnn bench --ladder``).
What is here is the copying, written as ``@njit`` loops, and keeping it cheap:

* few hand-overs between thread pools: ``cols`` is built in one go, on one thread, then
  one BLAS call; every switch between numba's threads and OpenBLAS's costs more than the
  memory traffic of the big matrix (see ``CHUNK_BYTES`` and ``im2col_rows``);
* small products (LeNet-sized) split their rows between Python threads, each copying its
  windows and running a one-thread BLAS product (``_split_rows``);
* workspaces are reused between calls (``workspace.py``);
* every parallel loop writes disjoint rows of its output (no races, same result every run).
"""

import numpy as np
from numba import njit, prange

from . import blas
from .workspace import workspace

_JIT = dict(parallel=True, cache=True, fastmath={"contract"})

CHUNK_BYTES = 256 << 20
"""Largest ``cols`` built at once; bigger problems are done in chunks of output rows.

Why so big (the 56x56x256 3x3 conv of VGG needs 115 MB): each chunk costs a copy and a BLAS
call, and waking BLAS's threads (or fighting them while they spin) is expensive. On a busy 2-core machine 4 MB chunks made
resnet_s2 5x slower than one big ``cols`` (664 ms vs 140 ms); the extra memory traffic of
the big matrix costs far less than that."""


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


def _rows_per_chunk(n_out_rows, W_out, F, itemsize):
    """How many output rows (n, h_out) one chunk of ``cols`` holds: about CHUNK_BYTES, at least 1."""
    per_row = max(W_out * F * itemsize, 1)
    return int(min(n_out_rows, max(1, CHUNK_BYTES // per_row)))


def conv_gemm(x, Wm, f_h, f_w, stride_h, stride_w, pad_top, pad_left, z):
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


def filter_grad(x, dz, win, dW):
    """``dW = im2col(x).T @ dz``, summed chunk by chunk in a fixed order (same result every run)."""
    N, H_out, W_out, K = dz.shape
    F = dW.size // K
    dW2 = dW.reshape(F, K)
    dz2 = dz.reshape(-1, K)

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


def input_grad(dz, W, win, dx):
    """``dcols = dz @ Wm.T`` (each window's gradient), then the gather col2im into dx."""
    N, H, W_in, C = dx.shape
    _, H_out, W_out, K = dz.shape
    f_h, f_w = W.shape[0], W.shape[1]
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
