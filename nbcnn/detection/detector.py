"""A trained detector: an nbcnn model plus what turns its output into boxes, saved together.

``Detector`` is an ``nbcnn.Model`` that also carries its anchors, class names and input size;
they ride in the checkpoint's ``meta.json`` (``model.detector``), so one file holds the
whole detector and ``nbcnn.load_model`` still reads it as a plain model::

    det = load_detector("digits-yolo.nbcnn")
    boxes, scores, classes = det.predict_boxes(images)[0]    # normalised corners (x0, y0, x1, y1)
    metrics = evaluate_model(det.predict_boxes, test_scenes)  # nbcnn.detection.metrics

Three kinds, the lecture's three steps (``kind``):

    "yolo"          the grid detector: outputs (S, S, B * (5 + C)), decoded by ``targets.decode_grid``
    "localization"  one object per image: (p_c, b_x, b_y, b_h, b_w, c_1 .. c_C)  (``localization.py``)
    "landmarks"     one object per image: K (x, y) points                          (``landmarks.py``)
"""

from __future__ import annotations

import os

import numpy as np

from .. import checkpoint
from ..augment import resize
from ..model import Model, load_model
from . import frozen  # noqa: F401  (registers FrozenFeatures: transfer-learning checkpoints load)

KINDS = ("yolo", "localization", "landmarks")


class Detector(Model):
    """An nbcnn model whose outputs are boxes (``kind``), with its anchors, class names and size."""

    def __init__(self, layers, input_shape=None, seed: int = 0, name: str = "detector", kind: str = "yolo",
                 class_names=(), anchors=None, info: dict | None = None):
        super().__init__(layers, input_shape=input_shape, seed=seed, name=name)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "yolo" and anchors is None:
            raise ValueError("a yolo detector needs its anchors, (B, 2) relative (width, height)")
        self.kind = kind
        self.class_names = [str(c) for c in class_names]
        self.anchors = None if anchors is None else np.asarray(anchors, np.float32).reshape(-1, 2)
        self.info = dict(info or {})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def size(self) -> int:
        return int(self.input_shape[0])

    # --- saving: the decoding rides in the checkpoint's meta.json
    def detector_config(self) -> dict:
        return {"kind": self.kind, "class_names": self.class_names,
                "anchors": None if self.anchors is None else self.anchors.tolist(), "info": self.info}

    def get_config(self) -> dict:
        config = super().get_config()
        config["detector"] = self.detector_config()
        return config

    # --- boxes
    def images_for_network(self, images) -> np.ndarray:
        """(N, H, W, 3) images in [0, 1] (or one (H, W, 3)) resized to the network's input."""
        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != self.input_shape[-1]:
            raise ValueError(f"images must be (N, H, W, {self.input_shape[-1]}), got shape {x.shape}")
        if x.shape[1:3] != tuple(self.input_shape[:2]):
            x = resize(x, self.input_shape[:2])  # normalised boxes do not change with the scale
        return x

    def predict_boxes(self, images, conf: float = 0.01, iou: float = 0.45, batch_size: int = 32) -> list:
        """Per image ``(boxes, scores, classes)``: normalised corners (x0, y0, x1, y1) (k, 4),
        scores (k,), class numbers (k,), best first (the callable ``nbcnn detect eval`` takes).

        ``conf``: drop boxes scoring <= conf (low by default: mAP ranks every box);
        ``iou``: the per-class NMS threshold (yolo only: the other kinds give one box an image).
        """
        x = self.images_for_network(images)
        raw = self.predict(x, batch_size=batch_size)
        if self.kind == "yolo":
            from .targets import decode_grid

            found = decode_grid(raw, self.anchors, conf=conf, iou=iou)
        elif self.kind == "localization":
            from .step_outputs import decode

            found = decode(raw, conf=conf)
        else:
            from .step_outputs import decode_boxes

            found = decode_boxes(raw)
        return [(corners(b), s, c) for b, s, c in found]



def corners(boxes) -> np.ndarray:
    """(k, 4) (cx, cy, w, h) -> (x0, y0, x1, y1), float32."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)


def load_detector(path) -> Detector:
    """A ``Detector`` saved by ``nbcnn detect train`` (or ``detector.save(path)``). A plain nbcnn
    model, or a file that is not a checkpoint, is refused with a ValueError naming the file."""
    meta, _ = checkpoint.read_checkpoint(path)
    shown = os.fsdecode(os.fspath(path))
    config = meta["model"].get("detector")
    if not isinstance(config, dict):
        raise ValueError(f"{shown} is an nbcnn model but not a detector (no anchors or class names in it): "
                         f"train one with `nbcnn detect train`")
    kind = config.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{shown}: unknown detector kind {kind!r} (known: {KINDS})")
    names = config.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{shown}: the detector's class_names must be a list of strings")
    anchors = config.get("anchors")
    if kind == "yolo":
        try:
            a = np.asarray(anchors, np.float64)
        except (TypeError, ValueError):
            a = np.zeros((0,))
        if a.ndim != 2 or a.shape[1] != 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{shown}: a yolo detector's anchors must be (B, 2) positive numbers, got {anchors!r:.80}")
    info = config.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError(f"{shown}: the detector's info must be an object, got {type(info).__name__}")
    model = load_model(path)
    det = Detector.from_model(model, kind=kind, class_names=names, anchors=anchors, info=info)
    if kind == "yolo":
        B = len(det.anchors)
        ch = det.output_shape[-1] if det.output_shape else None
        if ch != B * (5 + len(names)):
            raise ValueError(f"{shown}: the network gives {ch} channels, not B * (5 + C) = {B} * (5 + {len(names)})")
    return det
