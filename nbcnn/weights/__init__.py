"""Readers of foreign weight formats, and the cache of pretrained weights fetched on request.

    from nbcnn.weights import load_darknet, load_pretrained, fetch
    net = load_darknet("yolov3-tiny.cfg", "yolov3-tiny.weights", names="coco.names")
    net = load_pretrained("yolov3-tiny")        # from the cache: `nbcnn weights yolov3-tiny`
"""

from .darknet import (
    DarknetError,
    load_darknet,
    load_pretrained,
    parse_cfg,
    read_header,
    read_names,
    read_weights,
)
from .cache import WeightsNotFound, cache_dir, fetch, find
from .tfjs import TfjsError, read_tfjs_model

__all__ = ["DarknetError", "load_darknet", "load_pretrained", "parse_cfg", "read_header", "read_names",
           "read_weights", "WeightsNotFound", "cache_dir", "fetch", "find", "TfjsError", "read_tfjs_model"]
