"""A small YOLO made of nbcnn layers, and the loss that trains it (step 3 of the lecture).

The network (128 x 128 input, the default widths; 405k parameters with 10 classes, 3 anchors)::

    conv 3x3 16, leaky 0.1, maxpool 2      128 -> 64     (no BatchNorm on the two big layers:
    conv 3x3 32, leaky 0.1, maxpool 2       64 -> 32      its numpy statistics cost more there
    conv 3x3 64, BN, leaky, maxpool 2       32 -> 16      than the convolutions themselves)
    conv 3x3 128, BN, leaky, maxpool 2      16 -> 8       stride 16: an 8 x 8 grid
    conv 3x3 256, BN, leaky                  8 -> 8
    conv 1x1 B * (5 + C)                   the head: per cell and anchor tx, ty, tw, th, to, c_j

The loss of a batch (``yolo_loss_and_gradient``): encode the ground truth on the grid
(``targets.encode_targets``), optionally mark the anchors whose prediction already overlaps an
object as ignored (``targets.ignore_overlaps``), then the loss kernel
(``nbcnn.ops.yolo_loss``: coordinate, objectness, no-object and class terms) and its
gradient, averaged over the images. Everything runs through the dispatcher.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from .. import ops
from .detector import Detector
from .targets import encode_targets, ignore_overlaps

WIDTHS = (16, 32, 64, 128, 256)
BATCHNORM_FROM = 2          # the first two conv layers go without BatchNorm (see above)
LAMBDAS = (5.0, 1.0, 0.5, 1.0)   # coord, obj, noobj, cls (the lecture's lambda_coord = 5, lambda_noobj = 0.5)


def conv_block(filters: int, batchnorm: bool, pool: bool) -> list:
    """conv 3x3 'same' (+ BatchNorm) + leaky ReLU 0.1 (+ 2x2 max pooling): darknet's building block."""
    block = [L.Conv2D(filters, 3, padding="same", use_bias=not batchnorm)]
    if batchnorm:
        block.append(L.BatchNormalization(momentum=0.9))
    block.append(L.LeakyReLU(0.1))
    if pool:
        block.append(L.MaxPooling2D(2))
    return block


def small_yolo_layers(num_classes: int, num_anchors: int, widths=WIDTHS) -> list:
    """The layers: len(widths) - 1 pooled blocks (stride 2 ** (len - 1)), one more block, the 1x1 head."""
    layers = []
    for i, w in enumerate(widths):
        layers += conv_block(w, batchnorm=i >= BATCHNORM_FROM, pool=i < len(widths) - 1)
    layers.append(L.Conv2D(num_anchors * (5 + num_classes), 1, name="head"))
    return layers


def small_yolo(class_names, anchors, size: int = 128, widths=WIDTHS, seed: int = 0) -> Detector:
    """A fresh small YOLO ``Detector`` for ``size`` x ``size`` RGB images (size a multiple of
    2 ** (len(widths) - 1)); ``anchors`` (B, 2) relative sizes (``anchors.kmeans_anchors``)."""
    stride = 2 ** (len(widths) - 1)
    if size % stride:
        raise ValueError(f"size must be a multiple of the network's stride {stride}, got {size}")
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    layers = small_yolo_layers(len(class_names), len(anchors), widths)
    return Detector(layers, input_shape=(size, size, 3), seed=seed, name="small_yolo", kind="yolo",
                    class_names=class_names, anchors=anchors, info={"widths": list(widths)})


def yolo_loss_and_gradient(raw, boxes, classes, anchors, num_classes: int, lambdas=LAMBDAS,
                           ignore_threshold: float | None = 0.6):
    """Mean loss terms over the batch (dict: coord, obj, noobj, cls, loss) and d(mean loss)/d raw.

    raw (N, S_h, S_w, B * (5 + C)): the head's output; boxes/classes: per image the ground
    truth (normalised cx, cy, w, h). ``ignore_threshold``: None to push every empty anchor's
    objectness down, else darknet's ignore rule at that IoU.
    """
    raw = np.asarray(raw, np.float32)
    N, S_h, S_w, _ = raw.shape
    target = encode_targets(boxes, classes, (S_h, S_w), anchors, num_classes)
    if ignore_threshold is not None:
        target = ignore_overlaps(target, raw, anchors, boxes, ignore_threshold)
    B = len(anchors)
    terms = ops.yolo_loss(raw, target, B, lambdas, reduction="mean")
    grad = ops.yolo_loss_backward(raw, target, B, lambdas, dloss=1.0 / N)
    return terms, np.asarray(grad, np.float32)
