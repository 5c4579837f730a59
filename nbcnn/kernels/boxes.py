"""Boxes: intersection over union (IoU) and non-max suppression (NMS), one source for three backends.

Boxes are rows of 4 numbers, corners ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
(``nbcnn/ops.py`` checks that before any kernel runs; ``nbcnn/detection/boxes.py`` converts
from centre format ``(x, y, w, h)``)::

    inter = max(0, min(x2a, x2b) - max(x1a, x1b)) * max(0, min(y2a, y2b) - max(y1a, y1b))
    IoU   = inter / (area_a + area_b - inter)        area = (x2 - x1) * (y2 - y1)

Boxes that only touch (along an edge or at a corner) have IoU 0, and so does a box of zero
area with anything (itself included): there is nothing to divide by.

Greedy NMS walks the boxes from the best score down; a box that survives suppresses every
later box (of its class) that overlaps it by more than the threshold::

    for i in score order:                          # sequential: i acts only if it survived
        if keep[i]:
            for j after i:                         # independent of one another: parallel
                if same class and IoU(i, j) > threshold:   keep[j] = 0

The kernels never sort: ``ops.py`` hands them ``order``, the indices of the boxes by
descending score (a stable sort of ``-score``: equal scores keep the lower index first),
and they fill ``keep[k]`` (uint8) for the k-th box *in that order*. Class-agnostic NMS
passes the same class for every box.

What runs here:

    kernel        python / cpu (NBCNN_FAST=0 too)           cuda
    BOX_IOU       the i, j loop nest below                  one thread per (i, j)
    NMS           the greedy loop below (cpu: the inner     readable: one block of threads sharing
                  loop over later boxes in parallel)          the inner loop, a barrier per survivor
                                                            fast (default): the IoU bitmask, 64x64
                                                              boxes per block, then a scan on the host

The cuda fast form lives in ``kernels/fast/cuda_nms.py`` (registered in ``kernels/fast/__init__.py``):
each thread takes one box and records, as the bits of a uint64, which of 64 later boxes it
would suppress; every pair (i before j in score order) is tested at once, in parallel, and the
host then walks the rows of that mask in score order, as the greedy loop would (torchvision's
CUDA NMS works this way). ``NBCNN_FAST=0`` runs the readable cuda kernel instead.

    # bitmask: all n^2/2 IoUs in parallel instead of a barrier per kept box; the price is
    #   n * ceil(n/64) * 8 bytes of mask (12.5 MB for 10k boxes) copied back to the host, and
    #   IoUs the greedy loop would have skipped. Not timed on a GPU yet; compiles for sm_90.
    # cpu: below config.SERIAL_BELOW_ELEMENTS (about 35k boxes) the dispatcher runs the greedy
    #   loop on one thread (2 shared cores: ~5 ms for 1,000 boxes, ~50 ms for 3,000); waking a
    #   second thread for every kept box cost 5-30x more there.
"""

import numba
import numpy as np
from numba import prange
from numba.extending import register_jitable

from .. import config
from ..backend import Kernel, cuda_kernels, note_route

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used

# --------------------------------------------------------------------------- cells


@register_jitable
def box_iou_cell(a, i, b, j):
    """IoU of box ``a[i]`` and box ``b[j]`` (corners x1, y1, x2, y2), in the boxes' dtype.

    ``inter / (area_a + area_b - inter)``; 0 when they do not overlap (touching counts as not
    overlapping) or either has zero area.
    """
    zero = a.dtype.type(0)
    w = min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0])  # width of the intersection
    h = min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1])
    if w <= zero or h <= zero:
        return zero  # disjoint, or touching along an edge or at a corner, or a zero-area box
    inter = w * h
    area_a = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
    area_b = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
    union = area_a + area_b - inter
    if inter <= zero or union <= zero:
        return zero  # areas so small they rounded to 0
    return inter / union


@register_jitable
def suppresses(boxes, classes, order, i, j, iou_threshold):
    """Does the i-th box in score order suppress the j-th? Same class and IoU > threshold (strict,
    as darknet, torchvision and tf.image.non_max_suppression)."""
    a = order[i]
    b = order[j]
    return classes[a] == classes[b] and box_iou_cell(boxes, a, boxes, b) > iou_threshold


# --------------------------------------------------------------------------- loop nests


def box_iou(boxes1, boxes2, out):
    """Pairwise IoU, boxes1 (N, 4) and boxes2 (M, 4) -> out (N, M)::

        for i in range(N):                 # in parallel on cpu, one GPU thread per (i, j)
            for j in range(M):
                out[i, j] = box_iou_cell(boxes1, i, boxes2, j)
    """
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = box_iou_cell(boxes1, i, boxes2, j)


def nms(boxes, classes, order, iou_threshold, max_boxes, keep):
    """Greedy non-max suppression: boxes (N, 4), classes (N,) int64, order (N,) int64 (the box
    indices by descending score), iou_threshold (the boxes' dtype), max_boxes (int) ->
    keep (N,) uint8, ``keep[k] = 1`` when the k-th box in score order is kept.

    A box suppressed by a better one suppresses nothing itself. Once ``max_boxes`` boxes are
    kept, the rest are dropped (the same boxes as keeping them all and taking the first
    ``max_boxes``, without testing the rest).
    """
    n = keep.shape[0]
    for k in range(n):
        keep[k] = 1
    kept = 0
    for i in range(n):  # best score first: sequential, box i acts only if it survived
        if keep[i] == 0:
            continue  # suppressed by a better box
        if kept == max_boxes:  # the list is full: drop everything after
            for j in range(i, n):
                keep[j] = 0
            break
        kept += 1
        for j in prange(i + 1, n):  # every later box on its own: no two iterations write one cell
            if keep[j] == 1 and suppresses(boxes, classes, order, i, j, iou_threshold):
                keep[j] = 0


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """The readable ``@cuda.jit`` forms."""
    @cuda.jit
    def box_iou_k(boxes1, boxes2, out):
        t = cuda.grid(1)
        if t < out.size:
            i = t // out.shape[1]
            j = t % out.shape[1]
            out[i, j] = box_iou_cell(boxes1, i, boxes2, j)

    @cuda.jit
    def nms_k(boxes, classes, order, iou_threshold, max_boxes, keep):
        """The greedy loop in one block: the threads share the inner loop (thread t takes the
        later boxes t, t + blockDim, ...) and meet at a barrier before the next survivor acts.
        Every thread reads the same keep[i] after that barrier, so all take the same branch."""
        t = cuda.threadIdx.x
        step = cuda.blockDim.x
        n = keep.shape[0]
        for k in range(t, n, step):
            keep[k] = 1
        cuda.syncthreads()
        kept = 0
        full_at = n  # where the list filled up (n: it never did)
        for i in range(n):
            if keep[i] == 0:
                continue
            if kept == max_boxes:
                full_at = i  # no writes here: the other threads have yet to read keep[i]
                break
            kept += 1
            for j in range(i + 1 + t, n, step):
                if keep[j] == 1 and suppresses(boxes, classes, order, i, j, iou_threshold):
                    keep[j] = 0
            cuda.syncthreads()  # box i's suppressions are seen by all before box i + 1 is read
        cuda.syncthreads()  # every thread has left the loop: now drop what came after a full list
        for j in range(full_at + t, n, step):
            keep[j] = 0

    return {"box_iou": box_iou_k, "nms": nms_k}


def _one_block(keep):
    """The readable cuda NMS runs in a single block (the threads meet at barriers): as many
    threads as boxes, at most ``config.CUDA_THREADS_PER_BLOCK``."""
    return min(keep.shape[0], config.CUDA_THREADS_PER_BLOCK)


BOX_IOU = Kernel("box_iou", box_iou, cuda=lambda: _cuda_kernels()["box_iou"])
NMS = Kernel("nms", nms, cuda=lambda: _cuda_kernels()["nms"], work=_one_block)
