"""Box formats and their conversions (plain numpy), next to the box kernels' ops.

Four ways to write one box, as 4 numbers on the last axis:

    xyxy     (x1, y1, x2, y2)   corners: top-left and bottom-right. What ``box_iou`` and
                                ``nms`` take (darknet's ``box`` after conversion, torchvision's)
    cxcywh   (x, y, w, h)       centre and size: what YOLO predicts (darknet's ``box``)
    xywh     (x1, y1, w, h)     top-left corner and size (COCO's annotations)
    yxyx     (y1, x1, y2, x2)   corners, y first: TensorFlow's order (``tf.image.non_max_suppression``,
                                the course's ``yolo_boxes_to_corners``)

    cxcywh -> xyxy:  x1 = x - w / 2,  y1 = y - h / 2,  x2 = x + w / 2,  y2 = y + h / 2
    xyxy -> cxcywh:  x = (x1 + x2) / 2,  y = (y1 + y2) / 2,  w = x2 - x1,  h = y2 - y1

Any leading shape works (``(N, 4)``, ``(19, 19, 5, 4)``, ...). float32 stays float32 and
float64 float64; integers become float64. The conversions only do arithmetic: a negative
width gives corners with x2 < x1, which ``box_iou`` and ``nms`` then refuse.

IoU and NMS themselves run on the dispatcher's kernels (``nbcnn/kernels/boxes.py``); they are
re-exported here: ``box_iou``, ``iou``, ``nms``, ``batched_nms``.
"""

from __future__ import annotations

import numpy as np

from ..checks import host_numbers
from ..ops import batched_nms, box_iou, iou, nms

__all__ = ["FORMATS", "box_convert", "cxcywh_to_xyxy", "xyxy_to_cxcywh", "box_area",
           "box_iou", "iou", "nms", "batched_nms"]

FORMATS = ("xyxy", "cxcywh", "xywh", "yxyx")


def _boxes(boxes, name: str = "boxes") -> np.ndarray:
    """``boxes`` as a float numpy array whose last axis has 4 numbers."""
    arr = host_numbers(boxes, name, "an array of boxes (..., 4) of real numbers")
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 numbers on its last axis, shape (..., 4); got shape {arr.shape}")
    return arr if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4 else arr.astype(np.float64)


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """Centre and size (x, y, w, h) -> corners (x1, y1, x2, y2): ``x1 = x - w/2``, ``x2 = x + w/2``."""
    b = _boxes(boxes)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=-1)


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    """Corners (x1, y1, x2, y2) -> centre and size (x, y, w, h): ``x = (x1 + x2)/2``, ``w = x2 - x1``."""
    b = _boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def _to_xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return b.copy()
    if fmt == "cxcywh":
        return cxcywh_to_xyxy(b)
    if fmt == "xywh":
        return np.stack([b[..., 0], b[..., 1], b[..., 0] + b[..., 2], b[..., 1] + b[..., 3]], axis=-1)
    return b[..., [1, 0, 3, 2]]  # yxyx: swap the axes back


def _from_xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return b
    if fmt == "cxcywh":
        return xyxy_to_cxcywh(b)
    if fmt == "xywh":
        return np.stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)
    return b[..., [1, 0, 3, 2]]  # to yxyx


def box_convert(boxes, in_fmt: str, out_fmt: str) -> np.ndarray:
    """Convert boxes between ``FORMATS`` ("xyxy", "cxcywh", "xywh", "yxyx"), through corners.

    boxes (..., 4) -> (..., 4), a new array (float32 kept, integers as float64).
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in FORMATS:
            raise ValueError(f"{name} must be one of {FORMATS}, got {fmt!r}")
    b = _boxes(boxes)
    if in_fmt == out_fmt:
        return b.copy()
    return _from_xyxy(_to_xyxy(b, in_fmt), out_fmt)


def box_area(boxes) -> np.ndarray:
    """Area of corner boxes (x1, y1, x2, y2): ``(x2 - x1) * (y2 - y1)``, shape (...)."""
    b = _boxes(boxes)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
