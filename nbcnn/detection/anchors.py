"""Anchor boxes chosen by k-means on the training boxes, with 1 - IoU as the distance.

YOLO predicts each box as a correction of an *anchor*, a typical box shape. YOLOv2 chose its
anchors by clustering the training boxes' (width, height) pairs (darknet's ``calc_anchors``)
with a distance that does not favour big boxes, as the Euclidean one would::

    d(box, anchor) = 1 - IoU(box, anchor)      both placed at the same centre, so
    IoU = min(w_b, w_a) * min(h_b, h_a) / (w_b h_b + w_a h_a - min(w_b, w_a) * min(h_b, h_a))

    choose k starting anchors (k-means++: each next one drawn with probability ~ d^2)
    repeat until no box changes cluster:
        assign every box to its nearest anchor (the highest IoU)
        move every anchor to the mean width and height of its boxes

The anchors come back sorted by area, smallest first (darknet's order).
"""

from __future__ import annotations

import numpy as np


def shape_iou(wh, anchors) -> np.ndarray:
    """IoU of boxes (n, 2) and anchors (k, 2), all (width, height) placed at one centre -> (n, k)."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _check_sizes(wh) -> np.ndarray:
    wh = np.asarray(wh, np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"box sizes must be an (n, 2) array of (width, height), got shape {wh.shape}")
    if not np.all(np.isfinite(wh)) or np.any(wh <= 0):
        raise ValueError("box sizes must be finite and > 0")
    return wh


def kmeans_anchors(wh, k: int, seed: int = 0, max_iterations: int = 300) -> np.ndarray:
    """k anchors (k, 2) clustering the box sizes ``wh`` (n, 2) with 1 - IoU as the distance.

    Deterministic for a seed (the k-means++ start is drawn from it). Needs n >= k distinct
    boxes; the anchors are in the units of ``wh`` (relative sizes in, relative sizes out),
    sorted by area.
    """
    wh = _check_sizes(wh)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of anchors) must be an int >= 1, got {k!r}")
    distinct = np.unique(wh, axis=0)
    if len(distinct) < k:
        raise ValueError(f"k-means needs at least k = {k} different box sizes, got {len(distinct)}")
    rng = np.random.default_rng(seed)
    centres = [distinct[rng.integers(len(distinct))]]
    while len(centres) < k:  # k-means++: far boxes (low IoU with every chosen centre) are likelier
        d = 1.0 - shape_iou(distinct, np.array(centres)).max(axis=1)
        p = d * d
        centres.append(distinct[rng.choice(len(distinct), p=p / p.sum())])
    centres = np.array(centres)
    assignment = None
    for _ in range(max_iterations):
        nearest = shape_iou(wh, centres).argmax(axis=1)
        if assignment is not None and np.array_equal(nearest, assignment):
            break
        assignment = nearest
        for j in range(k):
            members = wh[assignment == j]
            if len(members):  # an empty cluster keeps its centre
                centres[j] = members.mean(axis=0)
    return centres[np.argsort(centres[:, 0] * centres[:, 1], kind="stable")].astype(np.float32)


def mean_best_iou(wh, anchors) -> float:
    """How well anchors fit the boxes: the mean over boxes of the IoU with their best anchor
    (darknet's calc_anchors prints it as 'avg IoU')."""
    return float(shape_iou(_check_sizes(wh), anchors).max(axis=1).mean())
