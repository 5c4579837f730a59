"""Reading the outputs of steps 1 and 2 as boxes (what ``Detector.predict_boxes`` gives for them).

    localization   (p_c, b_x, b_y, b_h, b_w, c_1 .. c_C) -> one box, score p_c * P(class), or none
    landmarks      K (x, y) logits -> the box around the K points, score 1, class 0

Plain numpy on a few numbers per image; kept apart from ``localization.py`` and ``landmarks.py``
(which build ``Detector``s) so that ``detector.py`` can use them without an import circle.
"""

from __future__ import annotations

import numpy as np


def logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def decode(raw, conf: float = 0.5):
    """Outputs (N, 5 + C) -> per image (boxes (k, 4) cx, cy, w, h; scores (k,); classes (k,)),
    k = 1 when p_c * (best class probability) > conf, else 0."""
    z = np.asarray(raw, np.float64)
    pc = logistic(z[:, 0])
    b = logistic(z[:, 1:5])
    logits = z[:, 5:] - z[:, 5:].max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    out = []
    for i in range(len(z)):
        c = int(p[i].argmax())
        score = pc[i] * p[i, c]
        if score > conf:
            box = np.array([[b[i, 0], b[i, 1], b[i, 3], b[i, 2]]], np.float32)  # back to cx, cy, w, h
            out.append((box, np.array([score], np.float32), np.array([c], np.int64)))
        else:
            out.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
    return out


def decode_boxes(raw):
    """Per image the box around the predicted points (cx, cy, w, h), score 1, class 0."""
    pts = logistic(np.asarray(raw, np.float64)).reshape(len(raw), -1, 2)
    out = []
    for p in pts:
        lo, hi = p.min(axis=0), p.max(axis=0)
        box = np.array([[(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[0] - lo[0], hi[1] - lo[1]]], np.float32)
        out.append((box, np.ones(1, np.float32), np.zeros(1, np.int64)))
    return out
