"""Losses for classification, each returning ``(loss, gradient)``.

    softmax_cross_entropy(logits, y):  p = softmax(z);  L = -mean_n log p[n, y_n]
                                       dL/dz = (p - onehot(y)) / N
The gradient with respect to the *logits* is the famous ``p - y``: computing it directly
is both simpler and more stable than chaining softmax's backward through log's.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .backend import to_host


def _labels(y, num_classes: int) -> np.ndarray:
    """Integer labels (N,) from int labels or one-hot (N, num_classes) rows."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"one-hot labels have {y.shape[1]} columns but the model outputs {num_classes} classes")
        return y.argmax(axis=1)
    if y.ndim != 1:
        raise ValueError(f"labels must be (N,) integers or (N, classes) one-hot, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def cross_entropy_from_probabilities(p, y, eps: float = 1e-12):
    """Loss of softmax outputs ``p`` (N, C) and the gradient with respect to the logits before the softmax."""
    p = np.asarray(to_host(p))
    labels = _labels(y, p.shape[1])
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
    return float(np.mean(outputs.argmax(axis=1) == _labels(y, outputs.shape[1])))
