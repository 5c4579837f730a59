"""Non-max suppression on the cpu, walking only the boxes still alive.

The readable kernel (``kernels/boxes.py``) keeps a flag per box and, for every kept box, tests
every later box whose flag is still up: it skips the suppressed ones, but still visits them.
Here the survivors are a list that shrinks as boxes are suppressed: each kept box tests only
the boxes nobody has suppressed yet, and the next box to keep is simply the list's head.

    alive = all boxes, best score first
    while alive and fewer than max_boxes kept:
        i = alive[0]; keep i
        alive = [j for j in alive[1:] if not suppresses(i, j)]     # compacted in place

The same decisions as the greedy loop (a suppressed box never acts, so dropping it changes
nothing), the same IoU cell, so the same bits on every backend.

    # buys: 10,000 clustered boxes (nbcnn bench, boxes10k) were 0.85x a numpy greedy loop with
    #   the flags (every kept box rescans all later boxes); the shrinking list tests each pair
    #   at most once and visits no dead box. One thread: the work per kept box is too small to
    #   share out (waking a second thread per kept box cost 5-30x more, see boxes.py).
"""

import numpy as np
from numba import njit

from ...backend import note_route


@njit(cache=True, nogil=True, error_model="numpy")
def _survivors(boxes, classes, order, iou_threshold, max_boxes, keep):
    """The alive boxes live in score order in separate arrays (x1, y1, x2, y2, area, class),
    compacted together, so the IoU test against the kept box is one vector loop; the same
    arithmetic as ``boxes.box_iou_cell``, so the same decisions."""
    n = keep.shape[0]
    zero = boxes.dtype.type(0)
    x1, y1 = np.empty(n, boxes.dtype), np.empty(n, boxes.dtype)
    x2, y2 = np.empty(n, boxes.dtype), np.empty(n, boxes.dtype)
    area, cls = np.empty(n, boxes.dtype), np.empty(n, np.int64)
    pos = np.arange(n)  # each alive box's place in score order: where keep[] records it
    for k in range(n):
        b = order[k]
        x1[k], y1[k], x2[k], y2[k] = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3]
        area[k] = (boxes[b, 2] - boxes[b, 0]) * (boxes[b, 3] - boxes[b, 1])
        cls[k] = classes[b]
        keep[k] = 0
    gone = np.empty(n, np.bool_)
    count = n
    kept = 0
    while count > 0 and kept < max_boxes:
        keep[pos[0]] = 1  # the best box still alive
        kept += 1
        ax1, ay1, ax2, ay2, a_area, a_cls = x1[0], y1[0], x2[0], y2[0], area[0], cls[0]
        for t in range(1, count):  # one vector loop: no branches, every lane tests one box
            w = min(ax2, x2[t]) - max(ax1, x1[t])
            h = min(ay2, y2[t]) - max(ay1, y1[t])
            inter = w * h
            union = a_area + area[t] - inter
            gone[t] = ((w > zero) & (h > zero) & (inter > zero) & (union > zero) & (cls[t] == a_cls)
                       & (inter / union > iou_threshold))
        left = 0
        for t in range(1, count):  # compact the survivors to the front, in order
            if not gone[t]:
                x1[left], y1[left], x2[left], y2[left] = x1[t], y1[t], x2[t], y2[t]
                area[left], cls[left], pos[left] = area[t], cls[t], pos[t]
                left += 1
        count = left


def nms(boxes, classes, order, iou_threshold, max_boxes, keep):
    """Same arguments and output as ``boxes.nms``."""
    note_route("shrinking survivor list")
    _survivors(boxes, classes, order, iou_threshold, max_boxes, keep)
