"""Transfer learning for detection: the pretrained YOLOv3-tiny backbone of Detection I, frozen,
with a new head for the new classes.

YOLOv3-tiny (COCO, 80 classes) starts with nine darknet layers that turn a picture into
256 feature maps at stride 16 (conv 16, pool, conv 32, pool, conv 64, pool, conv 128, pool,
conv 256). Those layers learned edges, blobs and parts on COCO's photos; we keep them as
they are (``FrozenFeatures``: forward only, no gradients, no optimiser state) and train a new
head on top, as the course's transfer-learning lecture does with a small data set::

    frozen   yolov3-tiny layers 0-8 (darknet batch norm, leaky 0.1)     128 -> 8 x 8 x 256
    new      conv 3x3 128, BatchNorm, leaky 0.1                          8 x 8 x 128
    new      conv 1x1 B * (5 + C)                                        the YOLO head

The weights come from the nbcnn weights cache (``nbcnn weights yolov3-tiny``); without them
``transfer_yolo`` raises ``WeightsNotFound`` naming that command.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from .detector import Detector
from .frozen import FrozenFeatures
from .small_yolo import conv_block

BACKBONE_LAYERS = {"yolov3-tiny": 9}  # darknet layers 0..8: stride 16, 256 channels


def pretrained_backbone(name: str = "yolov3-tiny", weights_path=None) -> list:
    """The first layers of a pretrained darknet network (see ``BACKBONE_LAYERS``), with their weights."""
    from ..weights import darknet

    if name not in BACKBONE_LAYERS:
        raise ValueError(f"no pretrained backbone {name!r}; known: {', '.join(BACKBONE_LAYERS)}")
    network = darknet.load_pretrained(name, weights=weights_path)  # the cfg from the cache; never downloads
    nodes = network.nodes[:BACKBONE_LAYERS[name]]
    if any(node.inputs != [node.index - 1] for node in nodes):
        raise ValueError(f"{name}: the first {len(nodes)} layers are not a plain chain")
    return [node.layer for node in nodes]


def transfer_yolo(name: str, class_names, anchors, size: int = 128, seed: int = 0, weights_path=None) -> Detector:
    """A YOLO ``Detector``: the frozen pretrained backbone of ``name`` plus a fresh head."""
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    if size % 16:
        raise ValueError(f"size must be a multiple of the backbone's stride 16, got {size}")
    backbone = FrozenFeatures(pretrained_backbone(name, weights_path))
    head = conv_block(128, batchnorm=True, pool=False) + [
        L.Conv2D(len(anchors) * (5 + len(class_names)), 1, name="head")]
    return Detector([backbone] + head, input_shape=(size, size, 3), seed=seed, name=f"{name}_transfer",
                    kind="yolo", class_names=class_names, anchors=anchors, info={"transfer_from": name})
