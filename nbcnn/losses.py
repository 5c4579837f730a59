"""Losses for classification, each returning ``(loss, gradient)``.

    softmax_cross_entropy(logits, y):  p = softmax(z);  L = -mean_n log p[n, y_n]
                                       dL/dz = (p - onehot(y)) / N
The gradient with respect to the *logits* is the famous ``p - y``: computing it directly
is both simpler and more stable than chaining softmax's backward through log's.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .checks import class_labels
from .backend import to_host


def cross_entropy_from_probabilities(p, y, eps: float = 1e-12):
    """Loss of softmax outputs ``p`` (N, C) and the gradient with respect to the logits before the softmax."""
    p = np.asarray(to_host(p))
    labels = class_labels(y, p.shape[1])
    n = p.shape[0]
    loss = float(-np.mean(np.log(p[np.arange(n), labels].astype(np.float64) + eps)))
    grad = p.copy()
    grad[np.arange(n), labels] -= 1
    return loss, (grad / n).astype(p.dtype)


def softmax_cross_entropy(logits, y):
    """Softmax (on the dispatcher's kernel) then cross-entropy; gradient with respect to ``logits``."""
    return cross_entropy_from_probabilities(ops.softmax(logits), y)


def accuracy(outputs, y) -> float:
    """Share of rows whose largest output is the label (works on logits or probabilities)."""
    outputs = np.asarray(to_host(outputs))
    return float(np.mean(outputs.argmax(axis=1) == class_labels(y, outputs.shape[1])))
