"""The YOLOv3 head, and turning its output into boxes exactly as darknet does.

The head (darknet's ``[yolo]`` layer) reads a conv output of shape
(N, H', W', A * (5 + classes)): for each grid cell and each of its A anchors, 5 + classes
numbers ``tx, ty, tw, th, to, c_0, c_1, ...``. Its forward applies the logistic to
``tx, ty, to`` and the class scores, and leaves ``tw, th`` as they are (darknet's
``forward_yolo_layer``); its backward multiplies those entries' gradient by ``s (1 - s)``.

Decoding (darknet's ``get_yolo_detections`` and ``correct_yolo_boxes``), for the cell in
column ``col``, row ``row`` of an H' x W' grid and anchor ``(a_w, a_h)`` in pixels of the
416 x 416 network input::

    objectness = sigma(to)                      kept if objectness > conf (0.25)
    x = (col + sigma(tx)) / W'                  box centre, in [0, 1] of the network input
    y = (row + sigma(ty)) / H'
    w = exp(tw) * a_w / 416                     box size, same units
    h = exp(th) * a_h / 416
    score[j] = objectness * sigma(c_j)          each class j with score > conf is a detection

then the letterbox is undone (the photo filled ``new_w x new_h`` of the 416 x 416, offset by
half the margin) and the box scaled to the photo's pixels. Finally per-class non-max
suppression at IoU 0.45: darknet's ``do_nms_sort`` sorts, class by class, the boxes by that
class's score and zeroes the score of every later box whose IoU with a kept one is > 0.45.
That is greedy NMS run separately per class over the (box, class) pairs that passed the
threshold — what ``nbcnn.batched_nms`` computes; a box can survive as a dog and be
suppressed as a cat. (Exactly equal scores are ordered by index here; darknet's ``qsort``
leaves their order unspecified.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import layers as L
from .. import ops
from ..backend import to_host
from .letterbox import letterbox_size, preprocess


class YoloLayer(L.Layer):
    """darknet's ``[yolo]`` head: logistic on x, y, objectness and classes; w, h unchanged.

    ``anchors``: every anchor of the cfg as (w, h) pairs in network-input pixels; ``mask``:
    the ones this head uses (YOLOv3-tiny: 3, 4, 5 on the 13 x 13 grid, 0, 1, 2 on 26 x 26).
    Input and output: (N, H, W, len(mask) * (5 + classes)), channels anchor-major as darknet's.
    """

    def __init__(self, anchors, mask, classes: int, name: str | None = None):
        super().__init__(name)
        self.anchors = [(float(w), float(h)) for w, h in anchors]
        self.mask = [int(m) for m in mask]
        self.classes = int(classes)

    @property
    def entries(self) -> int:
        return 5 + self.classes

    def build(self, input_shape, rng):
        if input_shape[-1] != len(self.mask) * self.entries:
            raise ValueError(f"YoloLayer: {len(self.mask)} anchors x (5 + {self.classes}) need "
                             f"{len(self.mask) * self.entries} channels, the input has {input_shape[-1]}")
        return super().build(input_shape, rng)

    def _logistic_channels(self, channels: int) -> np.ndarray:
        entry = np.arange(channels) % self.entries
        return (entry != 2) & (entry != 3)  # everything but w, h

    def forward(self, x, training=False):
        self._x = x
        s = np.asarray(to_host(ops.sigmoid(x)))
        return np.where(self._logistic_channels(s.shape[-1]), s, np.asarray(to_host(x)))

    def backward(self, dy):
        dy = np.asarray(to_host(dy))
        ds = np.asarray(to_host(ops.sigmoid_backward(dy, self._x)))
        return np.where(self._logistic_channels(dy.shape[-1]), ds, dy).astype(dy.dtype)

    def anchor_sizes(self) -> np.ndarray:
        """(len(mask), 2) anchor (w, h) of this head, in network-input pixels."""
        return np.array([self.anchors[m] for m in self.mask], np.float64)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Detection:
    """One detected object: class, score (objectness x class probability), box in the photo's
    pixels as corners (x1, y1, x2, y2), clipped to the photo, and the objectness alone."""

    label: str
    class_id: int
    score: float
    box: tuple
    objectness: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["box"] = [round(v, 2) for v in self.box]
        return d


def head_candidates(output, layer: YoloLayer, net_wh, thresh: float = 0.25):
    """darknet's ``get_yolo_detections`` before the letterbox is undone, for one image.

    output: a head's output (H, W, A * (5 + classes)) (or (1, H, W, ...)). Returns
    ``(boxes, objectness, probs)``: boxes (k, 4) centre x, y, w, h in [0, 1] of the network
    input, float32; objectness (k,); probs (k, classes) = objectness * class probability,
    0 where not > thresh. One row per (cell, anchor) with objectness > thresh, cells in row
    order, anchors in mask order (darknet's order).
    """
    out = np.asarray(to_host(output))
    if out.ndim == 4:
        if out.shape[0] != 1:
            raise ValueError(f"head_candidates decodes one image, got a batch of {out.shape[0]}")
        out = out[0]
    H, W, _ = out.shape
    A = len(layer.mask)
    out = out.reshape(H, W, A, layer.entries).astype(np.float32, copy=False)
    objectness = out[..., 4]
    rows, cols, anchors = np.nonzero(objectness > np.float32(thresh))
    sel = out[rows, cols, anchors]                         # (k, 5 + classes), row-major cells
    net_w, net_h = net_wh
    sizes = layer.anchor_sizes()[anchors]
    boxes = np.empty((len(rows), 4), np.float32)
    boxes[:, 0] = (cols.astype(np.float32) + sel[:, 0]) / np.float32(W)   # float math, as darknet
    boxes[:, 1] = (rows.astype(np.float32) + sel[:, 1]) / np.float32(H)
    boxes[:, 2] = np.exp(sel[:, 2].astype(np.float64)) * sizes[:, 0] / net_w  # exp() is double in C
    boxes[:, 3] = np.exp(sel[:, 3].astype(np.float64)) * sizes[:, 1] / net_h
    obj = sel[:, 4]
    probs = obj[:, None] * sel[:, 5:]
    probs = np.where(probs > np.float32(thresh), probs, np.float32(0))
    return boxes, obj, probs


def undo_letterbox(boxes, image_wh, net_wh):
    """darknet's ``correct_yolo_boxes`` (relative=1): centre boxes in [0, 1] of the network input
    -> centre boxes in [0, 1] of the photo, float32, with darknet's mix of float and double."""
    w, h = image_wh
    net_w, net_h = net_wh
    new_w, new_h = letterbox_size(w, h, net_w, net_h)
    b = np.asarray(boxes, np.float32).copy()
    b[:, 0] = (b[:, 0].astype(np.float64) - (net_w - new_w) / 2. / net_w) / np.float64(np.float32(new_w) / np.float32(net_w))
    b[:, 1] = (b[:, 1].astype(np.float64) - (net_h - new_h) / 2. / net_h) / np.float64(np.float32(new_h) / np.float32(net_h))
    b[:, 2] *= np.float32(net_w) / np.float32(new_w)
    b[:, 3] *= np.float32(net_h) / np.float32(new_h)
    return b


def centre_to_corners(boxes, image_wh, clip: bool = True) -> np.ndarray:
    """Relative centre boxes (x, y, w, h) -> pixel corners (x1, y1, x2, y2), float64, optionally
    clipped to the photo (0..width, 0..height)."""
    w, h = image_wh
    b = np.asarray(boxes, np.float64)
    corners = np.stack([(b[:, 0] - b[:, 2] / 2) * w, (b[:, 1] - b[:, 3] / 2) * h,
                        (b[:, 0] + b[:, 2] / 2) * w, (b[:, 1] + b[:, 3] / 2) * h], axis=1)
    if clip:
        corners[:, [0, 2]] = corners[:, [0, 2]].clip(0, w)
        corners[:, [1, 3]] = corners[:, [1, 3]].clip(0, h)
    return corners


def decode(head_outputs, heads, image_wh, net_wh, conf: float = 0.25, iou: float = 0.45, names=None):
    """Every head's output -> the list of ``Detection``s, best score first (darknet's detect).

    ``heads``: the ``YoloLayer`` of each output. ``image_wh``: the photo's (width, height);
    ``net_wh``: the network input's. ``conf``: the objectness and class-score threshold
    (both must be > conf); ``iou``: the per-class NMS threshold (suppress when IoU > iou).
    """
    parts = [head_candidates(out, layer, net_wh, conf) for out, layer in zip(head_outputs, heads)]
    boxes = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 4), np.float32)
    obj = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
    probs = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, 0), np.float32)
    if boxes.shape[0] == 0:
        return []
    boxes = undo_letterbox(boxes, image_wh, net_wh)
    det, cls = np.nonzero(probs)                      # every (box, class) that passed the threshold
    corners = centre_to_corners(boxes, image_wh, clip=False)  # darknet's NMS sees unclipped boxes
    scores = probs[det, cls]
    keep = ops.batched_nms(corners[det], scores, cls, iou_threshold=iou)
    clipped = centre_to_corners(boxes, image_wh, clip=True)
    found = []
    for k in keep:
        d, c = int(det[k]), int(cls[k])
        label = names[c] if names is not None and c < len(names) else str(c)
        found.append(Detection(label, c, float(scores[k]), tuple(float(v) for v in clipped[d]), float(obj[d])))
    return found


def detect(image, network, conf: float = 0.25, iou: float = 0.45):
    """Detect objects in one photo with a YOLO ``DarknetNetwork``, as ``darknet detect`` does.

    ``image``: a path, PIL image, (H, W, 3) uint8 array or float array in [0, 1]. Returns a
    list of ``Detection`` (label, class_id, score, box (x1, y1, x2, y2) in the photo's
    pixels, objectness), best score first. The preprocessing is darknet's
    (``nbcnn.detection.letterbox``); nothing is downloaded.
    """
    if not 0 <= conf < 1:
        raise ValueError(f"conf must be in [0, 1), got {conf}")
    if not 0 <= iou <= 1:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    net_h, net_w, _ = network.input_shape
    x, image_wh = preprocess(image, net_w, net_h)
    heads = network.yolo_layers
    if not heads:
        raise ValueError("this network has no [yolo] layer to detect with")
    outputs = network.forward(x, outputs=[i for i, _ in heads])
    return decode(outputs, [layer for _, layer in heads], image_wh, (net_w, net_h), conf, iou, network.names)


# --------------------------------------------------------------------------- files and drawing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(paths) -> list[Path]:
    """Files given, and the image files (by suffix, sorted) inside folders given."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} is neither an image file nor a folder")
    return found


def _colour(class_id: int, classes: int = 80) -> tuple:
    """darknet's get_color: a hue per class, the same every run."""
    colors = [[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]]
    offset = class_id * 123457 % classes
    x, rgb = offset / classes * 5, []
    i, j = int(x), int(x) + 1
    ratio = x - i
    for c in (2, 1, 0):
        rgb.append(int(255 * ((1 - ratio) * colors[i][c] + ratio * colors[j % 6][c])))
    return tuple(rgb)


def draw_detections(image, detections, out_path=None):
    """A copy of the photo with each detection's box and "label score" drawn on it (Pillow);
    saved to ``out_path`` when given. Returns the PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    im = (Image.open(image) if isinstance(image, (str, Path)) else image).convert("RGB")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    width = max(2, round(min(im.size) / 200))
    groups: dict[tuple, list] = {}  # one box found as several classes: one rectangle, one label
    for d in detections:
        groups.setdefault(tuple(round(v, 3) for v in d.box), []).append(d)
    for box, found in groups.items():
        best = max(found, key=lambda d: d.score)
        colour = _colour(best.class_id)
        x1, y1, x2, y2 = box
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = ", ".join(f"{d.label} {d.score:.2f}" for d in sorted(found, key=lambda d: -d.score))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_w, label_h = right - left + 4, bottom - top + 4
        ty = y1 - label_h if y1 - label_h >= 0 else y1  # above the box, else just inside it
        draw.rectangle([x1, ty, x1 + label_w, ty + label_h], fill=colour)
        draw.text((x1 + 2 - left, ty + 2 - top), text, fill=(0, 0, 0), font=font)
    if out_path is not None:
        im.save(out_path)
    return im


@dataclass
class FileResult:
    path: Path
    detections: list
    drawn: Path | None


def detect_files(paths, network, out_dir=None, conf: float = 0.25, iou: float = 0.45, on_file=None):
    """``detect`` on every image file (folders expanded); with ``out_dir``, a copy of each photo
    with its boxes drawn is saved there under the same name. ``on_file(result)`` is called
    after each file (the CLI prints from it). Returns the list of ``FileResult``."""
    files = image_files(paths)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for f in files:
        found = detect(f, network, conf, iou)
        drawn = None
        if out_dir is not None:
            drawn = out_dir / f.name
            if drawn.resolve() == f.resolve():
                raise ValueError(f"the drawn copy of {f} would overwrite it: choose another output folder")
            draw_detections(f, found, drawn)
        result = FileResult(f, found, drawn)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return results
