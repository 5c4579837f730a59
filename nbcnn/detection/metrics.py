"""Detection metrics: per-class AP, mAP@0.5, mAP@0.5:0.95 (COCO), VOC's AP, precision/recall.

    m = evaluate(gt_boxes, gt_classes, predictions, num_classes=10)   # lists, one entry per image
    m = evaluate_scenes(scenes, predictions)                          # ground truth from a Scenes
    m = evaluate_model(predict, scenes)                               # runs predict(images) first
    print(m.table())                 # per-class AP@0.5, AP@0.5:0.95, P and R at m.conf
    m.map50, m.map50_95              # the two headline numbers
    plot.save(plot.detection_pr_curves(m), "pr.png")

Predictions: one ``(boxes, scores, classes)`` triple per image, ``boxes`` an ``(n, 4)`` array of
**normalised corners** ``(x0, y0, x1, y1)`` (divided by the image width / height, as the
ground truth of a ``Scenes`` is), ``scores`` ``(n,)`` confidences, ``classes`` ``(n,)`` ints.
Pixel corners work as well if the ground truth is in pixels too: IoU does not change when
both axes are scaled.

How a prediction is counted (COCO's rules, as pycocotools' ``COCOeval`` with ``iouType="bbox"``):

- per image and class, predictions are sorted by score, highest first (ties keep their
  input order), and only the first ``max_detections`` (100, COCO's largest ``maxDets``) count;
- greedy matching: each prediction, in that order, takes the ground-truth box of the same
  class with the highest IoU among those not taken yet, if that IoU is at least the threshold
  (a true positive); otherwise it is a false positive. One prediction per ground truth: a
  second prediction of an object already found (a duplicate) is a false positive;
- per class, the predictions of all images are ranked by score (ties: image order, then the
  order above); precision and recall are read off after each one; the precision is made
  non-increasing from the right (the "envelope": the best precision at this recall or more);
- AP (``interpolation="coco"``, the default): the mean of that precision sampled at the 101
  recalls 0, 0.01, ..., 1 (0 where the recall is never reached). ``interpolation="voc"``:
  VOC 2010+'s all-point AP, the area under the envelope, ``sum (r_i - r_{i-1}) p_i``;
- AP@0.5 at IoU threshold 0.5; AP@0.5:0.95 the mean over the ten thresholds 0.50, 0.55, ..., 0.95;
  mAP: the mean over the classes that have ground truth (a class with ground truth and no
  prediction counts with AP 0; one with neither is left out and shows as "-");
- only COCO's area range "all" is used (no small / medium / large split: generated objects are
  12-64 px) and no ``iscrowd`` regions; VOC's "difficult" flags do not exist here.

Precision and recall "at a confidence": the predictions with score >= ``conf`` (at IoU 0.5),
precision = TP / predictions kept, recall = TP / ground truths, per class and over all
classes together (``precision``, ``recall``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)       # 0.50, 0.55, ..., 0.95 (as pycocotools)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)        # 0, 0.01, ..., 1
INTERPOLATIONS = ("coco", "voc")


@dataclass
class DetectionMetrics:
    """The result of ``evaluate``; numbers per class are NaN for a class without ground truth."""

    class_names: list
    iou_thresholds: np.ndarray          # (T,)
    ap: np.ndarray                      # (K, T): AP of class k at threshold t
    num_ground_truth: np.ndarray        # (K,)
    num_predictions: np.ndarray         # (K,) predictions counted (after max_detections)
    conf: float
    class_precision: np.ndarray         # (K,) at score >= conf, IoU 0.5
    class_recall: np.ndarray            # (K,)
    precision: float                    # all classes together, at score >= conf, IoU 0.5
    recall: float
    interpolation: str = "coco"
    pr_curves: list = field(default_factory=list)   # per class (recall, precision envelope) at IoU 0.5

    @property
    def ap50(self) -> np.ndarray:
        """Per-class AP at IoU 0.5 (NaN: no ground truth of that class)."""
        return self.ap[:, _index_of(self.iou_thresholds, 0.5)]

    @property
    def ap50_95(self) -> np.ndarray:
        """Per-class AP averaged over the IoU thresholds (0.5:0.95 by default)."""
        return self.ap.mean(axis=1)

    @property
    def map50(self) -> float:
        """mAP@0.5: the mean of ``ap50`` over the classes with ground truth."""
        return _nanmean(self.ap50)

    @property
    def map50_95(self) -> float:
        """mAP@0.5:0.95: the mean of ``ap50_95`` over the classes with ground truth."""
        return _nanmean(self.ap50_95)

    def as_dict(self) -> dict:
        """Plain numbers (JSON-ready; NaN becomes None)."""
        clean = lambda v: None if v is None or not np.isfinite(v) else float(v)  # noqa: E731
        return {
            "interpolation": self.interpolation, "conf": self.conf,
            "mAP50": clean(self.map50), "mAP50_95": clean(self.map50_95),
            "precision": clean(self.precision), "recall": clean(self.recall),
            "classes": [{"name": name, "ground_truth": int(self.num_ground_truth[k]),
                         "predictions": int(self.num_predictions[k]),
                         "AP50": clean(self.ap50[k]), "AP50_95": clean(self.ap50_95[k]),
                         "precision": clean(self.class_precision[k]), "recall": clean(self.class_recall[k])}
                        for k, name in enumerate(self.class_names)],
        }

    def table(self) -> str:
        """A text table: one row per class, then the means."""
        fmt = lambda v: "    -" if not np.isfinite(v) else f"{v:5.3f}"  # noqa: E731
        width = max([5] + [len(n) for n in self.class_names])
        head = (f"{'class':<{width}}  {'GT':>5}  {'pred':>5}  {'AP50':>5}  {'AP50:95':>7}  "
                f"{'P':>5}  {'R':>5}   (P, R at conf >= {self.conf:g}, IoU 0.5)")
        lines = [head, "-" * len(head)]
        for k, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}}  {int(self.num_ground_truth[k]):>5}  {int(self.num_predictions[k]):>5}  "
                         f"{fmt(self.ap50[k])}  {fmt(self.ap50_95[k]):>7}  {fmt(self.class_precision[k])}  "
                         f"{fmt(self.class_recall[k])}")
        lines.append("-" * len(head))
        lines.append(f"{'all':<{width}}  {int(self.num_ground_truth.sum()):>5}  {int(self.num_predictions.sum()):>5}  "
                     f"{fmt(self.map50)}  {fmt(self.map50_95):>7}  {fmt(self.precision)}  {fmt(self.recall)}")
        interp = "COCO 101-point" if self.interpolation == "coco" else "VOC all-point"
        lines.append(f"mAP@0.5 = {fmt(self.map50).strip()}   mAP@0.5:0.95 = {fmt(self.map50_95).strip()}   "
                     f"({interp} interpolation)")
        return "\n".join(lines)


def _index_of(thresholds, value) -> int:
    hits = np.flatnonzero(np.isclose(thresholds, value))
    if hits.size == 0:
        raise ValueError(f"IoU threshold {value} was not evaluated (thresholds: {list(thresholds)})")
    return int(hits[0])


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


# --------------------------------------------------------------------------------------------
# The pieces: IoU, matching, AP from a ranked list
# --------------------------------------------------------------------------------------------

def pairwise_iou(a, b) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), corners, float64: (n, m).

    Plain float64 numpy rather than the dispatcher's float32 kernel: the metric must agree with
    pycocotools' double-precision IoU at thresholds like exactly 0.5.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_greedy(iou: np.ndarray, threshold: float) -> np.ndarray:
    """True/false positive flags for predictions already sorted by score (rows of ``iou``).

    Each prediction in turn takes the free ground truth (column) of highest IoU, if that IoU is
    >= ``threshold``; a taken ground truth cannot be taken again, so duplicates are false
    positives. Returns a bool array, one flag per prediction.
    """
    n_pred, n_gt = iou.shape
    taken = [False] * n_gt
    flags = np.zeros(n_pred, bool)
    limit = min(threshold, 1 - 1e-10)       # as pycocotools: an IoU of exactly 1 still matches at 1.0
    rows = iou.tolist()
    for d in range(n_pred):
        best, best_iou = -1, limit
        for g, v in enumerate(rows[d]):
            if taken[g] or v < best_iou:
                continue
            best, best_iou = g, v
        if best >= 0:
            taken[best] = True
            flags[d] = True
    return flags


def precision_envelope(precision: np.ndarray) -> np.ndarray:
    """Precision made non-increasing from the right: ``p[i] = max(p[i:])``."""
    return np.maximum.accumulate(np.asarray(precision, np.float64)[::-1])[::-1]


def average_precision(tp_flags, num_ground_truth: int, interpolation: str = "coco") -> tuple:
    """AP of one class from its predictions' true-positive flags in ranked order.

    Returns ``(ap, recall, envelope)``: the recall after each prediction and the precision
    envelope (for PR curves). ``coco``: the mean of the envelope at the 101 recalls 0..1 (the
    first rank reaching each recall; 0 if never reached). ``voc``: the area under the envelope.
    """
    if num_ground_truth <= 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    tp = np.cumsum(np.asarray(tp_flags, bool), dtype=np.float64)
    fp = np.cumsum(~np.asarray(tp_flags, bool), dtype=np.float64)
    recall = tp / num_ground_truth
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).tiny)
    envelope = precision_envelope(precision)
    if interpolation == "coco":
        at = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")   # first rank reaching r
        sampled = np.zeros(len(COCO_RECALL_POINTS))
        reached = at < len(envelope)
        sampled[reached] = envelope[at[reached]]
        return float(np.mean(sampled)), recall, envelope
    if interpolation == "voc":
        r = np.concatenate([[0.0], recall])
        p = np.concatenate([envelope, [0.0]])
        return float(np.sum((r[1:] - r[:-1]) * p[:-1])), recall, envelope
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


# --------------------------------------------------------------------------------------------
# Evaluating a whole set
# --------------------------------------------------------------------------------------------

def _as_prediction(p, i: int):
    if not isinstance(p, (tuple, list)) or len(p) != 3:
        raise ValueError(f"prediction {i}: expected a (boxes, scores, classes) triple, got {type(p).__name__}")
    boxes = np.asarray(p[0], np.float64)
    scores = np.asarray(p[1], np.float64).reshape(-1)
    classes = np.asarray(p[2]).reshape(-1)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"prediction {i}: boxes must be (n, 4) corners, got shape {boxes.shape}")
    if not (len(boxes) == len(scores) == len(classes)):
        raise ValueError(f"prediction {i}: {len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
    if classes.size and not np.all(np.mod(classes, 1) == 0):
        raise ValueError(f"prediction {i}: classes must be integers")
    if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
        raise ValueError(f"prediction {i}: boxes and scores must be finite numbers")
    return boxes, scores, classes.astype(np.int64)


def evaluate(gt_boxes, gt_classes, predictions, num_classes: int | None = None, class_names=None,
             iou_thresholds=COCO_IOU_THRESHOLDS, interpolation: str = "coco", conf: float = 0.25,
             max_detections: int = 100) -> DetectionMetrics:
    """Score ``predictions`` against the ground truth (see the module docstring for the rules).

    gt_boxes: per image an ``(m, 4)`` array of corners ``(x0, y0, x1, y1)`` (same units as the
        predictions); gt_classes: per image ``(m,)`` ints.
    predictions: per image ``(boxes (n, 4) corners, scores (n,), classes (n,))``.
    num_classes / class_names: the classes (default: names "0".."K-1", K one more than the
        largest class seen). A predicted class outside them is an error.
    iou_thresholds: default COCO's 0.50:0.05:0.95 (must include 0.5).
    interpolation: ``"coco"`` (101 recall points) or ``"voc"`` (all points).
    conf: the score threshold of ``precision``/``recall``; max_detections: per image and class.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if len(gt_boxes) != len(gt_classes) or len(gt_boxes) != len(predictions):
        raise ValueError(f"evaluate: {len(gt_boxes)} ground-truth box lists, {len(gt_classes)} class lists "
                         f"and {len(predictions)} predictions: one of each per image")
    thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
    at50 = _index_of(thresholds, 0.5)
    preds = [_as_prediction(p, i) for i, p in enumerate(predictions)]
    gts = []
    for i, (b, c) in enumerate(zip(gt_boxes, gt_classes)):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        c = np.asarray(c).reshape(-1).astype(np.int64)
        if len(b) != len(c):
            raise ValueError(f"image {i}: {len(b)} ground-truth boxes but {len(c)} classes")
        gts.append((b, c))
    if class_names is not None:
        class_names = list(class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} but {len(class_names)} class names")
        num_classes = len(class_names)
    if num_classes is None:
        seen = [c.max() for _, c in gts if c.size] + [c.max() for _, _, c in preds if c.size]
        num_classes = int(max(seen)) + 1 if seen else 1
    names = class_names or [str(k) for k in range(num_classes)]
    for i, ((_, gc), (_, _, pc)) in enumerate(zip(gts, preds)):
        for what, c in (("ground-truth", gc), ("predicted", pc)):
            if c.size and (c.min() < 0 or c.max() >= num_classes):
                raise ValueError(f"image {i}: {what} class {int(c.max() if c.max() >= num_classes else c.min())} "
                                 f"is not one of the {num_classes} classes")

    K, T = num_classes, len(thresholds)
    scores_of = [[] for _ in range(K)]                 # per class: scores, image by image
    flags_of = [[[] for _ in range(T)] for _ in range(K)]
    n_gt = np.zeros(K, np.int64)
    for (gb, gc), (pb, ps, pc) in zip(gts, preds):
        for k in np.union1d(np.unique(gc), np.unique(pc)):
            g = gb[gc == k]
            n_gt[k] += len(g)
            mine = np.flatnonzero(pc == k)
            order = mine[np.argsort(-ps[mine], kind="stable")][:max_detections]
            if order.size == 0:
                continue
            iou = pairwise_iou(pb[order], g)
            scores_of[k].append(ps[order])
            for t, thr in enumerate(thresholds):
                flags_of[k][t].append(match_greedy(iou, thr))

    ap = np.full((K, T), np.nan)
    n_pred = np.zeros(K, np.int64)
    class_p, class_r = np.full(K, np.nan), np.full(K, np.nan)
    curves = []
    tp_total = kept_total = 0
    for k in range(K):
        scores = np.concatenate(scores_of[k]) if scores_of[k] else np.zeros(0)
        rank = np.argsort(-scores, kind="stable")       # ties: image order, then score order
        n_pred[k] = len(scores)
        curve = (np.zeros(0), np.zeros(0))
        for t in range(T):
            flags = (np.concatenate(flags_of[k][t]) if flags_of[k][t] else np.zeros(0, bool))[rank]
            if n_gt[k] > 0:
                ap[k, t], recall, envelope = average_precision(flags, int(n_gt[k]), interpolation)
                if t == at50:
                    curve = (recall, envelope)
            if t == at50:
                kept = scores[rank] >= conf
                tp, n_kept = int(flags[kept].sum()), int(kept.sum())
                tp_total += tp
                kept_total += n_kept
                class_p[k] = tp / n_kept if n_kept else (np.nan if n_gt[k] == 0 else 0.0)
                class_r[k] = tp / n_gt[k] if n_gt[k] else np.nan
        curves.append(curve)
    total_gt = int(n_gt.sum())
    return DetectionMetrics(
        class_names=names, iou_thresholds=thresholds, ap=ap, num_ground_truth=n_gt, num_predictions=n_pred,
        conf=float(conf), class_precision=class_p, class_recall=class_r,
        precision=tp_total / kept_total if kept_total else (0.0 if total_gt else float("nan")),
        recall=tp_total / total_gt if total_gt else float("nan"),
        interpolation=interpolation, pr_curves=curves)


def evaluate_scenes(scenes, predictions, **kwargs) -> DetectionMetrics:
    """``evaluate`` with the ground truth of a ``Scenes`` (its normalised boxes and class names);
    ``predictions`` per image ``(normalised corners, scores, classes)``."""
    if len(predictions) != len(scenes):
        raise ValueError(f"evaluate_scenes: {len(predictions)} predictions for {len(scenes)} images")
    gt = [scenes.boxes_xyxy(i) for i in range(len(scenes))]
    kwargs.setdefault("class_names", scenes.class_names)
    return evaluate(gt, scenes.classes, predictions, **kwargs)


def predict_all(predict, images, batch_size: int = 16, callback=None) -> list:
    """Run ``predict(images[i:i + batch_size]) -> [(corners, scores, classes), ...]`` over all
    images; ``callback(done, total)`` after each batch. Checks one triple comes back per image."""
    out = []
    n = len(images)
    for start in range(0, n, batch_size):
        batch = images[start:start + batch_size]
        got = list(predict(batch))
        if len(got) != len(batch):
            raise ValueError(f"predict returned {len(got)} results for a batch of {len(batch)} images")
        out.extend(got)
        if callback is not None:
            callback(min(start + batch_size, n), n)
    return out


def evaluate_model(predict, scenes, batch_size: int = 16, callback=None, **kwargs) -> DetectionMetrics:
    """Predict every image of ``scenes`` with ``predict`` (see ``predict_all``: normalised
    corners ``(x0, y0, x1, y1)``, scores, classes per image) and evaluate."""
    return evaluate_scenes(scenes, predict_all(predict, scenes.images, batch_size, callback), **kwargs)


# --------------------------------------------------------------------------------------------
# COCO "results" json: [{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}]
# --------------------------------------------------------------------------------------------

def predictions_to_coco(predictions, image_size) -> list:
    """Per-image ``(normalised corners, scores, classes)`` -> COCO results entries, with the
    conventions of ``export_coco_json``: image i is ``image_id`` i + 1, class k is
    ``category_id`` k + 1, ``bbox`` ``[x, y, w, h]`` in pixels. ``image_size``: ``(height, width)``."""
    height, width = image_size
    out = []
    for i, p in enumerate(predictions):
        boxes, scores, classes = _as_prediction(p, i)
        for (x0, y0, x1, y1), s, k in zip(boxes.tolist(), scores.tolist(), classes.tolist()):
            out.append({"image_id": i + 1, "category_id": int(k) + 1, "score": float(s),
                        "bbox": [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]})
    return out


def write_coco_predictions(predictions, image_size, path) -> Path:
    """Write ``predictions_to_coco(predictions, image_size)`` as json."""
    import json

    path = Path(path)
    path.write_text(json.dumps(predictions_to_coco(predictions, image_size)))
    return path


def read_coco_predictions(path, num_images: int, image_size) -> list:
    """Read a COCO results json into per-image ``(normalised corners, scores, classes)``.

    ``image_id`` must lie in 1..num_images (image i + 1 is the i-th image in file-name order,
    the ids ``export_coco_json`` writes), ``category_id`` k + 1 is class k, ``bbox`` is
    ``[x, y, w, h]`` in pixels of ``image_size = (height, width)``. A malformed entry raises
    ``ValueError`` naming the file and the entry number.
    """
    import json

    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable json file ({exc})") from None
    if isinstance(entries, dict) and "annotations" in entries:
        entries = entries["annotations"]
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of COCO results "
                         '[{"image_id", "category_id", "bbox", "score"}, ...]')
    height, width = image_size
    per_image = [([], [], []) for _ in range(num_images)]
    problems = []
    for n, e in enumerate(entries):
        try:
            image_id, k, (x, y, w, h) = int(e["image_id"]), int(e["category_id"]) - 1, map(float, e["bbox"])
            score = float(e.get("score", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"entry {n}: needs image_id, category_id, bbox [x, y, w, h], score ({exc!r})")
            continue
        if not 1 <= image_id <= num_images:
            problems.append(f"entry {n}: image_id {image_id} is not in 1..{num_images}")
            continue
        if k < 0:
            problems.append(f"entry {n}: category_id {k + 1} (categories count from 1)")
            continue
        boxes, scores, classes = per_image[image_id - 1]
        boxes.append((x / width, y / height, (x + w) / width, (y + h) / height))
        scores.append(score)
        classes.append(k)
    if problems:
        raise ValueError(f"{path}: {len(problems)} bad entries:\n  " + "\n  ".join(problems[:50]))
    return [(np.array(b, np.float64).reshape(-1, 4), np.array(s, np.float64), np.array(c, np.int64))
            for b, s, c in per_image]


__all__ = ["COCO_IOU_THRESHOLDS", "COCO_RECALL_POINTS", "INTERPOLATIONS", "DetectionMetrics",
           "pairwise_iou", "match_greedy", "precision_envelope", "average_precision", "evaluate",
           "evaluate_scenes", "predict_all", "evaluate_model", "predictions_to_coco",
           "write_coco_predictions", "read_coco_predictions"]
