"""Object detection (YOLO): boxes and their formats, IoU, non-max suppression, darknet networks.

    from nbcnn import detection
    corners = detection.box_convert(pred, "cxcywh", "xyxy")
    keep = detection.batched_nms(corners, scores, classes, iou_threshold=0.45)

IoU and NMS run on the dispatcher's kernels (``nbcnn/kernels/boxes.py``, through
``nbcnn.box_iou`` / ``nbcnn.nms`` / ``nbcnn.batched_nms``); the format conversions are plain
numpy (``boxes.py``).
"""

from .boxes import (
    FORMATS,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    cxcywh_to_xyxy,
    iou,
    nms,
    xyxy_to_cxcywh,
)

__all__ = ["FORMATS", "batched_nms", "box_area", "box_convert", "box_iou", "cxcywh_to_xyxy", "iou", "nms",
           "xyxy_to_cxcywh"]
