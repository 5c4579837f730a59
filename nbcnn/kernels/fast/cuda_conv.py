"""Tiled implicit-GEMM convolution for the cuda backend: forward, dX and dW.

The readable kernels in ``conv.py`` give each output number its own GPU thread, which then
reads ``f_h * f_w * C_in`` inputs and as many weights from global memory: one load per
multiply-add. Here each convolution is seen as a matrix product and computed the way fast
GEMMs are, without ever building the matrices (hence *implicit* GEMM):

    forward   z  (M x K)      = A (M x R)           @ B (R x K)
              M = N*H_out*W_out output pixels, K = C_out filters, R = f_h*f_w*C_in taps
              A[m, r] = x[n, h_out*stride_h - pad_top + i, w_out*stride_w - pad_left + j, c]
                        (0 where that lands on padding), B = W seen as (f_h*f_w*C_in, C_out)
    dX        dx (N*H*W x C_in) = dz-gather (N*H*W x f_h*f_w*C_out) @ W-gather
              the dz cell of tap (i, j) of pixel (h, w) is at h_out = (h + pad_top - i) / stride_h,
              only when that divides exactly and lands inside dz: the flipped filter, as a gather
    dW        dW (f_h*f_w*C_in x C_out) = A^T (R x M) @ dz (M x C_out): a reduction over pixels

Each thread block computes one BM x BN tile of the product. The reduction runs in steps of
BK: the block copies a BM x BK slice of the left matrix and a BK x BN slice of the right one
into shared memory (gathering from x or dz on the fly, padding as a predicate), waits, and
every thread multiplies its own TM x TN piece of the tile from there into registers.

    # shared-memory tiles: each global number is loaded once per block, not once per output
    # register tile 8 x 8: each thread does 64 FMAs per 16 shared loads (the 1-per-FMA naive loop
    #   is load-bound; siboehm's SGEMM ladder puts 2-D register blocking at ~70% of cuBLAS)

Not timed on a GPU yet (none was available when this was written): the tile sizes follow
the published SGEMM ladder, and ptxas for sm_90 compiles them with no register spills and no
local memory (see the constants below). Known waste: with stride > 1 most taps of dX's
gather land between strides and are predicated off (3/4 of them at stride 2); splitting dX
by stride phase would skip them.

dW is deterministic: no float atomics. When the pixel reduction is long and the weight
matrix small (a few blocks would leave most of the GPU idle), the pixels are split into S
chunks, each block writes its partial tile, and a second kernel sums the S partials in a
fixed order.

Every kernel takes float32 or float64 (one compiled kernel per dtype: a shared array's
dtype is a compile-time constant) and any shape: rows and columns past the matrix edge are
predicated off. ``numba.cuda`` is imported on first use, as in ``conv.py``.
"""

import math

import numpy as np
from numba.extending import register_jitable

from ...backend import cuda_kernels, launch_naive_cuda, note_route
from ...checks import reaches_padding
from .. import conv

cuda = None  # numba.cuda, bound by @cuda_kernels on first use (importing nbcnn must not import it)

# --------------------------------------------------------------------------- tile sizes

BM = 64  # rows of the output tile per block (pixels; taps for dW)
BN = 64  # columns of the output tile per block (channels)
BK = 8   # reduction step: a BM x BK and a BK x BN slice are staged in shared memory per step
TM = 8   # rows per thread: its register tile is TM x TN = 64 accumulators
TN = 8   # columns per thread
ROW_THREADS = BM // TM  # 8 threads down a tile: thread (tr, tc) owns rows tr + 8*i ...
COL_THREADS = BN // TN  # 8 threads across: ... and columns tc + 8*j (strided: conflict-free reads)
THREADS = ROW_THREADS * COL_THREADS  # 64 threads per block
ACC = TM * TN  # the accumulator array's length (a plain constant, like every array shape)
# Why these sizes: 8 x 8 per thread and BK = 8 are the 2-D register-blocked SGEMM of the ladder
# (16 shared loads feed 64 FMAs). The block tile is 64 x 64 rather than that kernel's 128 x 128
# because convolutions often have only 64 output channels. ptxas (sm_90) gives 158-170
# registers in float32 (230-234 in float64), no spills, 4-5 KB of shared memory: ~6 blocks of
# 2 warps per H100 SM, limited by registers. (TM = TN = 4 with 256 threads would use ~72-104
# registers, for twice the shared loads per FMA.) Loads that gather along the reduction put BK
# neighbouring threads on one tile column: padding the tile rows to BM + 32 // BK numbers puts
# those stores on different banks.
PAD = 32 // BK
BM_PAD = BM + PAD  # shared tiles are (BK, BM_PAD) and (BK, BN_PAD): a shape must be a plain
BN_PAD = BN + PAD  # constant in the kernel (numba does not fold `BM + PAD` there)
LOADS = BM * BK // THREADS  # 8 numbers each thread copies into each tile per step
assert BM == BN and BM * BK % THREADS == 0 and THREADS % BK == 0 and THREADS % BN == 0

# split-k for dW: aim for this many blocks in flight (~8 of 2 warps on each of 132 SMs), but
# give each chunk at least this many steps: the second kernel's launch costs ~0.1 ms in numba
DW_TARGET_BLOCKS = 1024
DW_MIN_STEPS = 32


def _ceil_div(a, b):
    return -(-a // b)


# --------------------------------------------------------------------------- shared helpers


@register_jitable
def multiply_tiles(As, Bs, acc, a, bv, tr, tc):
    """``acc[i, j] += sum over kk of As[kk, tr + 8*i] * Bs[kk, tc + 8*j]``: one BK step of the
    thread's TM x TN register tile. ``a`` and ``bv`` hold one column of As and one row of Bs
    (TM + TN shared loads feed TM * TN multiply-adds)."""
    for kk in range(BK):
        for i in range(TM):
            a[i] = As[kk, tr + ROW_THREADS * i]
        for j in range(TN):
            bv[j] = Bs[kk, tc + COL_THREADS * j]
        for i in range(TM):
            for j in range(TN):
                acc[i * TN + j] += a[i] * bv[j]


@register_jitable
def tap_source(h, stride):
    """The output row whose window tap reaches ``h = h_out * stride`` (-1 when none does)."""
    if h < 0:
        return -1
    if stride == 1:
        return h  # the common case, without an integer division
    if h % stride != 0:
        return -1
    return h // stride


# --------------------------------------------------------------------------- kernels


@cuda_kernels
def _kernels(dtype):
    """The tiled kernels for one dtype (``np.float32`` or ``np.float64``)."""
    import numba

    real = numba.from_dtype(np.dtype(dtype))  # the shared/local arrays' compile-time dtype
    index = numba.int32

    @cuda.jit
    def forward(x, Wf, b, win, H_out, W_out, z):
        """z (M, K) = x-gather (M, R) @ Wf (R, K) + b, one BM x BN tile per block."""
        As = cuda.shared.array((BK, BM_PAD), real)  # As[kk, m]: the A slice, transposed
        Bs = cuda.shared.array((BK, BN_PAD), real)  # Bs[kk, k]
        row_n = cuda.shared.array(BM, index)  # per tile row: image (-1 past M), top, left
        row_h = cuda.shared.array(BM, index)
        row_w = cuda.shared.array(BM, index)
        acc = cuda.local.array(ACC, real)
        a = cuda.local.array(TM, real)
        bv = cuda.local.array(TN, real)
        M, K = z.shape
        R = Wf.shape[0]
        H, W_in, C = x.shape[1], x.shape[2], x.shape[3]
        tid = cuda.threadIdx.x
        tr, tc = tid // COL_THREADS, tid % COL_THREADS
        m0, k0 = cuda.blockIdx.x * BM, cuda.blockIdx.y * BN
        zero = z.dtype.type(0)
        for e in range(TM * TN):
            acc[e] = zero
        # where each tile row's window starts: computed once per block, not per step
        for m_local in range(tid, BM, THREADS):
            m = m0 + m_local
            row_n[m_local], row_h[m_local], row_w[m_local] = -1, 0, 0
            if m < M:
                w_out = m % W_out
                h_out = (m // W_out) % H_out
                row_n[m_local] = m // (W_out * H_out)
                row_h[m_local] = h_out * win.stride_h - win.pad_top
                row_w[m_local] = w_out * win.stride_w - win.pad_left
        cuda.syncthreads()
        a_col, a_row0 = tid % BK, tid // BK  # A: BK neighbours read neighbouring channels
        b_col, b_row0 = tid % BN, tid // BN  # B: BN neighbours read neighbouring filters
        for r0 in range(0, R, BK):
            r = r0 + a_col
            c = r % C
            j = (r // C) % win.f_w
            i = r // (C * win.f_w)
            for l in range(LOADS):
                m_local = a_row0 + l * (THREADS // BK)
                h = row_h[m_local] + i
                w = row_w[m_local] + j
                v = zero
                if r < R and row_n[m_local] >= 0 and 0 <= h < H and 0 <= w < W_in:
                    v = x[row_n[m_local], h, w, c]  # padding and the tile's ragged edge read 0
                As[a_col, m_local] = v
            for l in range(LOADS):
                kk = b_row0 + l * (THREADS // BN)
                v = zero
                if r0 + kk < R and k0 + b_col < K:
                    v = Wf[r0 + kk, k0 + b_col]
                Bs[kk, b_col] = v
            cuda.syncthreads()
            multiply_tiles(As, Bs, acc, a, bv, tr, tc)
            cuda.syncthreads()  # before the next step overwrites the tiles
        for i in range(TM):
            m = m0 + tr + ROW_THREADS * i
            for j in range(TN):
                k = k0 + tc + COL_THREADS * j
                if m < M and k < K:
                    z[m, k] = acc[i * TN + j] + b[k]

    @cuda.jit
    def backward_input(dz, Wf, win, H, W_in, dx):
        """dx (N*H*W, C) = dz-gather (N*H*W, f_h*f_w*K) @ W-gather (f_h*f_w*K, C)."""
        As = cuda.shared.array((BK, BM_PAD), real)
        Bs = cuda.shared.array((BK, BN_PAD), real)
        row_n = cuda.shared.array(BM, index)  # per tile row: image (-1 past M), h + pad, w + pad
        row_h = cuda.shared.array(BM, index)
        row_w = cuda.shared.array(BM, index)
        acc = cuda.local.array(ACC, real)
        a = cuda.local.array(TM, real)
        bv = cuda.local.array(TN, real)
        M, C = dx.shape
        H_out, W_out, K = dz.shape[1], dz.shape[2], dz.shape[3]
        R = win.f_h * win.f_w * K
        tid = cuda.threadIdx.x
        tr, tc = tid // COL_THREADS, tid % COL_THREADS
        m0, c0 = cuda.blockIdx.x * BM, cuda.blockIdx.y * BN
        zero = dx.dtype.type(0)
        for e in range(TM * TN):
            acc[e] = zero
        for m_local in range(tid, BM, THREADS):
            m = m0 + m_local
            row_n[m_local], row_h[m_local], row_w[m_local] = -1, 0, 0
            if m < M:
                row_n[m_local] = m // (W_in * H)
                row_h[m_local] = (m // W_in) % H + win.pad_top
                row_w[m_local] = m % W_in + win.pad_left
        cuda.syncthreads()
        col = tid % BK  # both slices are gathered along the reduction (k is contiguous)
        row0 = tid // BK
        for r0 in range(0, R, BK):
            r = r0 + col  # the reduction index r = (i * f_w + j) * K + k
            k = r % K
            j = (r // K) % win.f_w
            i = r // (K * win.f_w)
            for l in range(LOADS):
                m_local = row0 + l * (THREADS // BK)
                v = zero
                if r < R and row_n[m_local] >= 0:
                    h_out = tap_source(row_h[m_local] - i, win.stride_h)  # flipped filter:
                    w_out = tap_source(row_w[m_local] - j, win.stride_w)  # tap i from h_out
                    if 0 <= h_out < H_out and 0 <= w_out < W_out:
                        v = dz[row_n[m_local], h_out, w_out, k]
                As[col, m_local] = v
            for l in range(LOADS):
                c_local = row0 + l * (THREADS // BK)
                v = zero
                if r < R and c0 + c_local < C:
                    v = Wf[(i * win.f_w + j) * C + c0 + c_local, k]  # W[i, j, c, k]
                Bs[col, c_local] = v
            cuda.syncthreads()
            multiply_tiles(As, Bs, acc, a, bv, tr, tc)
            cuda.syncthreads()
        for i in range(TM):
            m = m0 + tr + ROW_THREADS * i
            for j in range(TN):
                c = c0 + tc + COL_THREADS * j
                if m < M and c < C:
                    dx[m, c] = acc[i * TN + j]

    @cuda.jit
    def backward_filter(x, dz2, win, H_out, W_out, chunk, partial):
        """partial[s] (R, K) = x-gather^T (R, pixels of chunk s) @ dz2 (pixels of chunk s, K)."""
        As = cuda.shared.array((BK, BM_PAD), real)  # As[kk, r]
        Bs = cuda.shared.array((BK, BN_PAD), real)  # Bs[kk, k]
        pix_n = cuda.shared.array(BK, index)  # per pixel of the step: image (-1 past M), top, left
        pix_h = cuda.shared.array(BK, index)
        pix_w = cuda.shared.array(BK, index)
        acc = cuda.local.array(ACC, real)
        a = cuda.local.array(TM, real)
        bv = cuda.local.array(TN, real)
        M, K = dz2.shape
        R = partial.shape[1]
        H, W_in, C = x.shape[1], x.shape[2], x.shape[3]
        tid = cuda.threadIdx.x
        tr, tc = tid // COL_THREADS, tid % COL_THREADS
        r0, k0 = cuda.blockIdx.x * BM, cuda.blockIdx.y * BN
        s = cuda.blockIdx.z
        m_start = s * chunk
        m_stop = min(m_start + chunk, M)
        zero = dz2.dtype.type(0)
        for e in range(TM * TN):
            acc[e] = zero
        col = tid % BM  # both slices are read along their columns (c and k are contiguous)
        row0 = tid // BM
        r = r0 + col  # this thread's tap (i, j, c) stays the same for every step
        c = r % C
        j = (r // C) % win.f_w
        i = r // (C * win.f_w)
        for m_step in range(m_start, m_stop, BK):
            for kk in range(tid, BK, THREADS):  # where this step's BK pixels' windows start
                m = m_step + kk
                pix_n[kk], pix_h[kk], pix_w[kk] = -1, 0, 0
                if m < m_stop:
                    pix_n[kk] = m // (W_out * H_out)
                    pix_h[kk] = (m // W_out) % H_out * win.stride_h - win.pad_top
                    pix_w[kk] = m % W_out * win.stride_w - win.pad_left
            cuda.syncthreads()
            for l in range(LOADS):
                kk = row0 + l * (THREADS // BM)
                h = pix_h[kk] + i
                w = pix_w[kk] + j
                v = zero
                if r < R and pix_n[kk] >= 0 and 0 <= h < H and 0 <= w < W_in:
                    v = x[pix_n[kk], h, w, c]
                As[kk, col] = v
            for l in range(LOADS):
                kk = row0 + l * (THREADS // BN)
                v = zero
                if pix_n[kk] >= 0 and k0 + col < K:
                    v = dz2[m_step + kk, k0 + col]
                Bs[kk, col] = v
            cuda.syncthreads()
            multiply_tiles(As, Bs, acc, a, bv, tr, tc)
            cuda.syncthreads()
        for i in range(TM):
            r = r0 + tr + ROW_THREADS * i
            for j in range(TN):
                k = k0 + tc + COL_THREADS * j
                if r < R and k < K:
                    partial[s, r, k] = acc[i * TN + j]

    @cuda.jit
    def sum_partials(partial, out):
        """out[e] = partial[0, e] + partial[1, e] + ..., always in that order (deterministic)."""
        e = cuda.grid(1)
        if e < out.shape[0]:
            total = partial[0, e]
            for s in range(1, partial.shape[0]):
                total += partial[s, e]
            out[e] = total

    return {"forward": forward, "backward_input": backward_input,
            "backward_filter": backward_filter, "sum_partials": sum_partials}


# --------------------------------------------------------------------------- launchers
#
# ``tiled_*`` always run the tiled kernels. The launchers the cuda backend calls run them
# only when they make more than one block: a problem that fits in one 64 x 64 tile would
# keep 64 threads busy on one SM, while the readable kernel spreads the same outputs over
# one thread each (the course's small layers; also what keeps the simulator tests quick).
# The tiled kernels view W, z, dz and dx as matrices, which needs C-contiguous arrays; a
# strided GPU array from elsewhere (a torch view) also goes to the readable kernel.


def _kernel(name, array):
    return _kernels(np.dtype(array.dtype).type)[name]


def _shapes_forward(W, z):
    N, H_out, W_out, K = z.shape
    return N * H_out * W_out, K, W.shape[0] * W.shape[1] * W.shape[2]  # M, K, R


def tiled_forward(x, W, b, win, z):
    N, H_out, W_out, K = z.shape
    M, K, R = _shapes_forward(W, z)
    grid = (_ceil_div(M, BM), _ceil_div(K, BN))
    _kernel("forward", z)[grid, THREADS](x, W.reshape(R, K), b, win, H_out, W_out, z.reshape(M, K))


def tiled_backward_input(dz, W, win, dx):
    N, H, W_in, C = dx.shape
    f_h, f_w, _, K = W.shape
    M = N * H * W_in
    grid = (_ceil_div(M, BM), _ceil_div(C, BN))
    _kernel("backward_input", dx)[grid, THREADS](dz, W.reshape(f_h * f_w * C, K), win, H, W_in,
                                                 dx.reshape(M, C))


def dw_splits(R, K, M):
    """How many pixel chunks dW's reduction is split into (1: no split, no second kernel)."""
    tiles = _ceil_div(R, BM) * _ceil_div(K, BN)
    most = max(1, _ceil_div(M, BK * DW_MIN_STEPS))  # keep each chunk at least DW_MIN_STEPS long
    return max(1, min(_ceil_div(DW_TARGET_BLOCKS, tiles), most))


def _dw_grid(W_shape, dz_shape):
    """(grid, chunk): the dW kernel's blocks (tap tiles, filter tiles, pixel chunks)."""
    N, H_out, W_out, K = dz_shape
    f_h, f_w, C, _ = W_shape
    M, R = N * H_out * W_out, f_h * f_w * C
    chunk = _ceil_div(_ceil_div(M, dw_splits(R, K, M)), BK) * BK  # a whole number of steps
    return (_ceil_div(R, BM), _ceil_div(K, BN), _ceil_div(M, chunk)), chunk


def tiled_backward_filter(x, dz, win, dW):
    N, H_out, W_out, K = dz.shape
    M, R = N * H_out * W_out, dW.size // K
    grid, chunk = _dw_grid(dW.shape, dz.shape)
    splits = grid[2]
    kernel = _kernel("backward_filter", dW)
    if splits == 1:
        kernel[grid, THREADS](x, dz.reshape(M, K), win, H_out, W_out, chunk, dW.reshape(1, R, K))
        return
    partial = cuda.device_array((splits, R, K), dtype=dW.dtype)
    kernel[grid, THREADS](x, dz.reshape(M, K), win, H_out, W_out, chunk, partial)
    threads = 256
    _kernel("sum_partials", dW)[_ceil_div(R * K, threads), threads](
        partial.reshape(splits, R * K), dW.reshape(R * K))


def _contiguous(*arrays):
    return all(a.is_c_contiguous() for a in arrays)


def _sum_on_device(a):
    """The sum of a device array's numbers, reduced on the GPU (a host float)."""
    global _SUM
    if _SUM is None:
        from numba import cuda as numba_cuda

        _SUM = numba_cuda.reduce(lambda p, q: p + q)
    return _SUM(a.reshape(a.size))


_SUM = None


def _meets_padding_non_finite(multiplier, win, x_shape, z_shape):
    """Padding contributes nothing: the readable kernels skip it, while the tiles here load zeros
    for it and multiply, and ``0 * inf`` is NaN. When the numbers that meet the padding (the
    filters, or dz for dW) hold an inf or a NaN, the readable kernel runs instead, so every
    backend gives the same answer (see ``kernels/fast/conv.py``)."""
    return (reaches_padding(win, x_shape[1:3], z_shape[1:3])
            and not math.isfinite(_sum_on_device(multiplier)))


def _launch_forward(x, W, b, win, z):
    M, K, _ = _shapes_forward(W, z)
    if (M <= BM and K <= BN) or not _contiguous(W, z) or _meets_padding_non_finite(W, win, x.shape, z.shape):
        launch_naive_cuda(conv.FORWARD, x, W, b, win, z)
    else:
        note_route("tiled implicit GEMM")
        tiled_forward(x, W, b, win, z)


def _launch_backward_input(dz, W, win, dx):
    N, H, W_in, C = dx.shape
    if (N * H * W_in <= BM and C <= BN) or not _contiguous(W, dx) or _meets_padding_non_finite(W, win, dx.shape,
                                                                                                dz.shape):
        launch_naive_cuda(conv.BACKWARD_INPUT, dz, W, win, dx)
    else:
        note_route("tiled implicit GEMM")
        tiled_backward_input(dz, W, win, dx)


def _launch_backward_filter(x, dz, win, dW):
    grid, _ = _dw_grid(dW.shape, dz.shape)
    if grid == (1, 1, 1) or not _contiguous(dz, dW) or _meets_padding_non_finite(dz, win, x.shape, dz.shape):
        launch_naive_cuda(conv.BACKWARD_FILTER, x, dz, win, dW)
    else:
        note_route("tiled split-k GEMM")
        tiled_backward_filter(x, dz, win, dW)


def forward_launcher():
    """``launch(x, W, b, win, z)``: the tiled forward (``conv.FORWARD``'s fast cuda form)."""
    return _launch_forward


def forward_relu_launcher():
    """``launch(x, W, b, win, z)``: the tiled forward, then the readable ReLU in place
    (``conv.FORWARD_RELU``'s fast cuda form: on a GPU the extra pass is cheap next to the
    tiled conv, which the readable fused kernel would give up)."""
    return _launch_forward_relu


def _launch_forward_relu(x, W, b, win, z):
    from ...backend import launch_naive_cuda
    from .. import activations

    _launch_forward(x, W, b, win, z)
    flat = z.reshape(z.size)
    launch_naive_cuda(activations.RELU, flat, flat)


def backward_input_launcher():
    """``launch(dz, W, win, dx)``: the tiled dX (``conv.BACKWARD_INPUT``'s fast cuda form)."""
    return _launch_backward_input


def backward_filter_launcher():
    """``launch(x, dz, win, dW)``: the tiled, split-k dW (``conv.BACKWARD_FILTER``'s fast cuda form)."""
    return _launch_backward_filter
