"""Non-max suppression on cuda as an IoU bitmask: every pair at once, then a scan on the host.

The readable kernel (``kernels/boxes.py``) is the greedy loop: for each box in score order that
survived, suppress the later ones that overlap it; on cuda one block of threads shares the
inner loop, with a barrier per kept box. Here instead each thread takes one box and records, as
the bits of a uint64, which of 64 later boxes (in score order) it would suppress; a grid of
64 x 64 tiles tests all n^2/2 pairs in parallel, and the host then walks the rows of that mask
in score order, as the greedy loop would (torchvision's CUDA NMS works this way).

    # buys: no barrier per kept box; costs: n * ceil(n/64) * 8 bytes of mask (12.5 MB for 10k
    #   boxes) copied back to the host, and IoUs the greedy loop would have skipped.
    #   Not timed on a GPU yet; compiles for sm_90.

Same arguments and output as ``boxes.nms``; the same IoU cell, so the same decisions.
"""

import numba
import numpy as np

from ...backend import cuda_kernels, note_route
from ..boxes import box_iou_cell

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used

BLOCK = 64  # boxes per side of a bitmask tile: one bit of a uint64 per box


@cuda_kernels
def _bitmask_kernel(dtype):
    """The bitmask kernel for one box dtype (a shared array's dtype is a compile-time constant)."""
    real = numba.from_dtype(np.dtype(dtype))

    @cuda.jit
    def nms_bitmask(boxes, classes, order, iou_threshold, mask):
        """Block (row_block, col_block) tests boxes row_block*64 ... against col_block*64 ...
        (positions in score order). Thread t owns row box i = row_block*64 + t and writes
        ``mask[i, col_block]``: bit c set when box i suppresses box col_block*64 + c."""
        row_block = cuda.blockIdx.y
        col_block = cuda.blockIdx.x
        if row_block > col_block:
            return  # a box only suppresses boxes after it in score order (the host never reads these)
        n = mask.shape[0]
        t = cuda.threadIdx.x
        row_size = min(n - row_block * BLOCK, BLOCK)
        col_size = min(n - col_block * BLOCK, BLOCK)
        col_boxes = cuda.shared.array((BLOCK, 4), real)  # the 64 column boxes, read by every thread
        col_class = cuda.shared.array(BLOCK, numba.int64)
        if t < col_size:
            b = order[col_block * BLOCK + t]
            for c in range(4):
                col_boxes[t, c] = boxes[b, c]
            col_class[t] = classes[b]
        cuda.syncthreads()
        if t < row_size:
            i = row_block * BLOCK + t
            a = order[i]
            bits = numba.uint64(0)
            start = t + 1 if row_block == col_block else 0  # on the diagonal, only later boxes
            for c in range(start, col_size):
                if classes[a] == col_class[c] and box_iou_cell(boxes, a, col_boxes, c) > iou_threshold:
                    bits |= numba.uint64(1) << numba.uint64(c)
            mask[i, col_block] = bits

    return nms_bitmask


@numba.njit(cache=True)
def scan_bitmask(mask, max_boxes, keep):
    """The greedy loop over the bitmask's rows, in score order: ``removed`` holds, as bits, every
    box suppressed so far; a box not in it is kept and adds its own row (the boxes it suppresses).
    Only columns from the box's own block on are read: the kernel wrote no others."""
    n, blocks = mask.shape
    removed = np.zeros(blocks, np.uint64)
    kept = 0
    for i in range(n):
        keep[i] = 0
    for i in range(n):
        if kept == max_boxes:
            break
        block = i // BLOCK
        if removed[block] & (np.uint64(1) << np.uint64(i % BLOCK)):
            continue
        keep[i] = 1
        kept += 1
        for c in range(block, blocks):
            removed[c] |= mask[i, c]


def _launch_nms_bitmask(boxes, classes, order, iou_threshold, max_boxes, keep):
    """``launch(boxes, classes, order, iou_threshold, max_boxes, keep)``: ``NMS``'s fast cuda form."""
    from numba import cuda as numba_cuda

    n = keep.shape[0]
    if n == 0:
        return
    blocks = (n + BLOCK - 1) // BLOCK
    mask = numba_cuda.device_array((n, blocks), dtype=np.uint64)  # n x ceil(n/64) x 8 bytes
    kernel = _bitmask_kernel(np.dtype(boxes.dtype).type)
    kernel[(blocks, blocks), BLOCK](boxes, classes, order, iou_threshold, mask)
    host_keep = np.empty(n, np.uint8)
    scan_bitmask(mask.copy_to_host(), max_boxes, host_keep)
    keep.copy_to_device(host_keep)
    note_route("IoU bitmask + host scan")


def nms_bitmask_launcher():
    """The factory ``Kernel.register_fast(cuda=...)`` takes: returns the bitmask launcher."""
    return _launch_nms_bitmask
