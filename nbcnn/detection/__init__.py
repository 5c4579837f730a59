"""Object detection (YOLO): boxes and their formats, IoU, non-max suppression, darknet networks.

    from nbcnn import detection, weights
    corners = detection.box_convert(pred, "cxcywh", "xyxy")
    keep = detection.batched_nms(corners, scores, classes, iou_threshold=0.45)

    network = weights.load_pretrained("yolov3-tiny")       # after `nbcnn weights yolov3-tiny`
    for d in detection.detect("dog.jpg", network):          # darknet's preprocessing and decoding
        print(d.label, d.score, d.box)

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

from .darknet_net import DarknetNetwork
from .letterbox import letterbox_image, preprocess
from .yolo import Detection, YoloLayer, decode, detect, detect_files, draw_detections
# generated scenes, the YOLO folder layout (scenes.py, dataset.py)
from .scenes import Scenes, export_coco_json, make_scenes, make_split, write_yolo_folder
from .dataset import LabelError, read_yolo_folder

__all__ = ["DarknetNetwork", "Detection", "YoloLayer", "decode", "detect", "detect_files", "draw_detections",
           "letterbox_image", "preprocess", "FORMATS", "batched_nms", "box_area", "box_convert", "box_iou", "cxcywh_to_xyxy", "iou", "nms",
           "xyxy_to_cxcywh"]
__all__ += ["Scenes", "export_coco_json", "make_scenes", "make_split", "write_yolo_folder",
            "LabelError", "read_yolo_folder"]
# training the lecture's three steps: anchors, targets, the small YOLO, a saved detector
# (anchors.py, targets.py, small_yolo.py, detector.py, training.py; the loss kernel: nbcnn.ops.yolo_loss)
from .anchors import kmeans_anchors
from .detector import Detector, load_detector
from .targets import decode_grid, encode_targets

__all__ += ["kmeans_anchors", "Detector", "load_detector", "decode_grid", "encode_targets"]
