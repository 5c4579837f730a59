"""YOLO targets: ground-truth boxes -> what the grid should output, and the grid's output -> boxes.

The image is cut into an S_h x S_w grid; each cell has B anchors (``anchors.py``). The network
outputs, per cell and anchor, ``tx, ty, tw, th, to, c_0 .. c_{C-1}`` (anchor-major channels,
as darknet's), read as::

    x = (col + s(tx)) / S_w          y = (row + s(ty)) / S_h            centre, in [0, 1]
    w = a_w * exp(tw)                h = a_h * exp(th)                  size, relative
    objectness = s(to)               score_j = s(to) * softmax(c)_j     (s: the logistic)

Encoding (``encode_targets``): each object is given to the cell holding its centre, and there
to the anchor whose shape has the best IoU with the box (``anchors.shape_iou``)::

    col = floor(cx * S_w)            x* = cx * S_w - col                (likewise row, y*)
    w* = log(w / a_w)                h* = log(h / a_h)
    target[n, row, col, best] = (x*, y*, w*, h*, 1, class, 2 - w * h)

Every other anchor gets state 0 (no object). Two objects with the same cell and best anchor:
the larger one keeps the slot (the smaller is lost for this image; a finer grid or more
anchors avoid it). ``ignore_overlaps`` then marks state -1 on the empty anchors whose
*predicted* box already overlaps an object by more than a threshold (darknet's
``ignore_thresh``): the loss does not push their objectness down.

Decoding (``decode_grid``) inverts the reading above, keeps boxes whose best class score
passes a threshold, and runs the per-class NMS of Detection I (``nbcnn.ops.batched_nms``).
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..backend import to_host
from .anchors import shape_iou

TARGET_COLUMNS = 7  # x*, y*, w*, h*, state, class, scale  (nbcnn/kernels/yolo_loss.py)


def _anchors(anchors) -> np.ndarray:
    a = np.asarray(anchors, np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"anchors must be a (B, 2) array of positive relative (width, height), got {a.tolist()!r:.80}")
    return a


def _grid(grid) -> tuple[int, int]:
    if isinstance(grid, (int, np.integer)):
        grid = (grid, grid)
    S_h, S_w = (int(v) for v in grid)
    if S_h < 1 or S_w < 1:
        raise ValueError(f"grid must be >= 1 cells each way, got {grid!r}")
    return S_h, S_w


def encode_targets(boxes, classes, grid, anchors, num_classes: int) -> np.ndarray:
    """Per image (k, 4) boxes (cx, cy, w, h) in [0, 1] and (k,) classes -> target (N, S_h, S_w, B, 7).

    ``grid``: S or (S_h, S_w); ``anchors``: (B, 2) relative (width, height).
    """
    S_h, S_w = _grid(grid)
    a = _anchors(anchors)
    B = len(a)
    if len(boxes) != len(classes):
        raise ValueError(f"{len(boxes)} images of boxes but {len(classes)} of classes")
    target = np.zeros((len(boxes), S_h, S_w, B, TARGET_COLUMNS), np.float32)
    for n, (b, c) in enumerate(zip(boxes, classes)):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        c = np.asarray(c).reshape(-1)
        if len(b) != len(c):
            raise ValueError(f"image {n}: {len(b)} boxes but {len(c)} classes")
        if len(c) and (c.min() < 0 or c.max() >= num_classes):
            raise ValueError(f"image {n}: class numbers must be in [0, {num_classes}), got {c.tolist()}")
        if len(b) and (np.any(b[:, 2:] <= 0) or not np.all(np.isfinite(b))):
            raise ValueError(f"image {n}: boxes need finite centres and sizes > 0, got {b.tolist()!r:.80}")
        best = shape_iou(b[:, 2:], a).argmax(axis=1) if len(b) else np.zeros(0, np.int64)
        for k in np.argsort(-(b[:, 2] * b[:, 3]), kind="stable")[::-1]:  # larger boxes last: they win a slot
            cx, cy, w, h = b[k]
            col = min(max(int(np.floor(cx * S_w)), 0), S_w - 1)
            row = min(max(int(np.floor(cy * S_h)), 0), S_h - 1)
            j = best[k]
            target[n, row, col, j] = (cx * S_w - col, cy * S_h - row, np.log(w / a[j, 0]), np.log(h / a[j, 1]),
                                      1.0, c[k], 2.0 - w * h)
    return target


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def grid_boxes(raw, anchors) -> np.ndarray:
    """Raw outputs (N, S_h, S_w, B * (5 + C)) -> every anchor's predicted box (N, S_h, S_w, B, 4),
    (cx, cy, w, h) relative to the image."""
    raw = np.asarray(to_host(raw), np.float64)
    a = _anchors(anchors)
    N, S_h, S_w, ch = raw.shape
    B = len(a)
    p = raw.reshape(N, S_h, S_w, B, ch // B)
    cols = np.arange(S_w)[None, None, :, None]
    rows = np.arange(S_h)[None, :, None, None]
    out = np.empty((N, S_h, S_w, B, 4))
    out[..., 0] = (cols + _logistic(p[..., 0])) / S_w
    out[..., 1] = (rows + _logistic(p[..., 1])) / S_h
    out[..., 2] = a[:, 0] * np.exp(np.clip(p[..., 2], -20, 20))
    out[..., 3] = a[:, 1] * np.exp(np.clip(p[..., 3], -20, 20))
    return out


def _corners(b):
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)


def ignore_overlaps(target, raw, anchors, boxes, threshold: float = 0.5) -> np.ndarray:
    """A copy of ``target`` with state -1 on the empty anchors whose predicted box (from ``raw``)
    overlaps a ground-truth box of its image by IoU > ``threshold`` (IoU on the dispatcher's kernel)."""
    target = np.array(target, np.float32, copy=True)
    pred = grid_boxes(raw, anchors)
    for n, b in enumerate(boxes):
        b = np.asarray(b).reshape(-1, 4)
        if not len(b):
            continue
        iou = np.asarray(to_host(ops.box_iou(_corners(pred[n]), _corners(b))))
        over = (iou.max(axis=1) > threshold).reshape(pred.shape[1:4])
        empty = target[n, ..., 4] == 0
        target[n, ..., 4][over & empty] = -1
    return target


def decode_grid(raw, anchors, conf: float = 0.25, iou: float = 0.45, max_boxes: int = 100):
    """Raw outputs (N, S_h, S_w, B * (5 + C)) -> per image ``(boxes, scores, classes)``.

    boxes (k, 4) (cx, cy, w, h) relative to the image, float32; scores (k,) = objectness x the
    best class's probability, float32; classes (k,) int64; best score first. Boxes scoring
    <= ``conf`` are dropped, then per-class NMS at ``iou`` (suppress when IoU > iou).
    """
    raw = np.asarray(to_host(raw), np.float64)
    a = _anchors(anchors)
    N, S_h, S_w, ch = raw.shape
    B = len(a)
    if ch % B or ch // B < 6:
        raise ValueError(f"raw has {ch} channels, not B * (5 + C) for B = {B} anchors")
    E = ch // B
    p = raw.reshape(N, S_h, S_w, B, E)
    pred = grid_boxes(raw, a)
    logits = p[..., 5:] - p[..., 5:].max(axis=-1, keepdims=True)
    softmax = np.exp(logits)
    softmax /= softmax.sum(axis=-1, keepdims=True)
    probs = _logistic(p[..., 4:5]) * softmax
    cls = probs.argmax(axis=-1)
    score = np.take_along_axis(probs, cls[..., None], axis=-1)[..., 0]
    results = []
    for n in range(N):
        keep = score[n] > conf
        b, s, c = pred[n][keep], score[n][keep], cls[n][keep]
        if len(b):
            order = np.asarray(to_host(ops.batched_nms(_corners(b), s, c, iou_threshold=iou,
                                                       max_boxes=max_boxes))).astype(np.int64)
            b, s, c = b[order], s[order], c[order]
        results.append((b.astype(np.float32).reshape(-1, 4), s.astype(np.float32), c.astype(np.int64)))
    return results
