"""Step 1 of the lecture: classification with localisation (one object per image, or none).

The network sees one image and outputs ``5 + C`` numbers, the lecture's vector::

    y = (p_c, b_x, b_y, b_h, b_w, c_1, ..., c_C)
        p_c        is there an object?            logit, read through the logistic
        b_x, b_y   the box centre in [0, 1]       logits, read through the logistic
        b_h, b_w   the box height and width       logits, read through the logistic
        c_j        which class                    logits, read through a softmax

The loss of one image, with target ``(p*, b*, class*)`` (``p* = 0``: an empty image)::

    L = bce(p_c, p*)                                         logistic loss on p_c, always
      + p* * sum_k (s(b_k) - b*_k)^2                          squared error, only with an object
      + p* * -log softmax(c)[class*]                          cross-entropy, only with an object

and its gradient with respect to the outputs (averaged over the batch)::

    d p_c = s(p_c) - p*
    d b_k = p* * 2 (s(b_k) - b*_k) s(b_k) (1 - s(b_k))
    d c   = p* * (softmax(c) - onehot(class*))

The network: four conv blocks (conv 3x3, leaky ReLU, max pool) and a dense layer to 5 + C.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from .detector import Detector
from .step_outputs import decode  # noqa: F401  (the outputs read as boxes)


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def _bce(z, y):
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def localization_net(class_names, size: int = 64, widths=(16, 32, 64, 64), seed: int = 0) -> Detector:
    """A fresh classification-with-localisation ``Detector`` for ``size`` x ``size`` RGB images."""
    layers = []
    for w in widths:
        layers += [L.Conv2D(w, 3, padding="same"), L.LeakyReLU(0.1), L.MaxPooling2D(2)]
    layers += [L.Flatten(), L.Dense(5 + len(class_names))]
    return Detector(layers, input_shape=(size, size, 3), seed=seed, name="localization", kind="localization",
                    class_names=class_names)


def encode(boxes, classes):
    """Per image at most one box -> (present (N,), box (N, 4) as (b_x, b_y, b_h, b_w), class (N,))."""
    n = len(boxes)
    present = np.zeros(n, np.float64)
    box = np.zeros((n, 4), np.float64)
    label = np.zeros(n, np.int64)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        b = np.asarray(b).reshape(-1, 4)
        if len(b) > 1:
            raise ValueError(f"image {i} has {len(b)} objects: classification with localisation takes one or none")
        if len(b):
            present[i] = 1
            cx, cy, w, h = b[0]
            box[i] = (cx, cy, h, w)  # the lecture's order: b_x, b_y, b_h, b_w
            label[i] = int(np.asarray(c).reshape(-1)[0])
    return present, box, label


def loss_and_gradient(out, boxes, classes):
    """The lecture's loss of a batch (mean over images; terms pc, box, cls) and d loss / d out."""
    z = np.asarray(out, np.float64)
    n, C = z.shape[0], z.shape[1] - 5
    present, box, label = encode(boxes, classes)
    if len(label) and present.any() and label[present > 0].max() >= C:
        raise ValueError(f"class numbers must be below {C}")
    s_box = _logistic(z[:, 1:5])
    logits = z[:, 5:] - z[:, 5:].max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(C)[label]
    pc = _bce(z[:, 0], present)
    box_err = present * ((s_box - box) ** 2).sum(axis=1)
    cls = present * -np.log(np.maximum((p * onehot).sum(axis=1), 1e-300))
    grad = np.empty_like(z)
    grad[:, 0] = _logistic(z[:, 0]) - present
    grad[:, 1:5] = present[:, None] * 2 * (s_box - box) * s_box * (1 - s_box)
    grad[:, 5:] = present[:, None] * (p - onehot)
    terms = {"pc": pc.mean(), "box": box_err.mean(), "cls": cls.mean()}
    terms = {k: float(v) for k, v in terms.items()}
    terms["loss"] = sum(terms.values())
    return terms, (grad / n).astype(np.float32)


def box_iou_cxcywh(a, b) -> float:
    """IoU of two (cx, cy, w, h) boxes (plain arithmetic: a figure, not a kernel's job)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def evaluate(detector: Detector, images, boxes, classes) -> dict:
    """Held-out figures: ``presence_accuracy`` (p_c > 0.5 agrees with object / no object),
    ``class_accuracy`` (right class, among images with an object), ``mean_iou`` (predicted vs
    true box, among images with an object), ``correct`` (object found, right class, IoU >= 0.5)."""
    z = np.asarray(detector.predict(detector.images_for_network(images)), np.float64)
    present, box, label = encode(boxes, classes)
    pc = _logistic(z[:, 0]) > 0.5
    b = _logistic(z[:, 1:5])
    cls = z[:, 5:].argmax(axis=1)
    has = present > 0
    ious = np.array([box_iou_cxcywh((b[i, 0], b[i, 1], b[i, 3], b[i, 2]), (box[i, 0], box[i, 1], box[i, 3], box[i, 2]))
                     for i in np.nonzero(has)[0]])
    right = (cls[has] == label[has])
    return {"presence_accuracy": float(np.mean(pc == has)), "class_accuracy": float(right.mean()),
            "mean_iou": float(ious.mean()), "correct": float(np.mean(pc[has] & right & (ious >= 0.5)))}
