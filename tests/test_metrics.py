"""Detection metrics (nbcnn/detection/metrics.py): hand-made cases, and pycocotools as an oracle."""

import contextlib
import io
import json

import numpy as np
import pytest

from nbcnn import plot
from nbcnn.detection.metrics import (
    COCO_IOU_THRESHOLDS,
    evaluate,
    evaluate_model,
    evaluate_scenes,
    read_coco_predictions,
    write_coco_predictions,
)
from nbcnn.detection.scenes import export_coco_json, make_scenes

A = [0.0, 0.0, 0.4, 0.4]
B = [0.5, 0.5, 0.9, 0.9]
C = [0.0, 0.6, 0.3, 0.9]


def _pred(boxes, scores, classes):
    return (np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(classes, int))


def _gt(boxes, classes):
    return np.array(boxes, float).reshape(-1, 4), np.array(classes, int)


def _run(gts, preds, **kw):
    return evaluate([g[0] for g in gts], [g[1] for g in gts], preds, **kw)


def test_perfect_predictions_score_one():
    gts = [_gt([A, B], [0, 1]), _gt([C], [2])]
    preds = [_pred([A, B], [0.9, 0.8], [0, 1]), _pred([C], [0.7], [2])]
    m = _run(gts, preds, num_classes=3)
    assert np.all(m.ap == 1.0)
    assert m.map50 == 1.0 and m.map50_95 == 1.0
    assert m.precision == 1.0 and m.recall == 1.0


def test_all_wrong_scores_zero():
    gts = [_gt([A, B], [0, 1])]
    preds = [_pred([C, A, B], [0.9, 0.8, 0.7], [0, 1, 0])]    # no overlap, or the wrong class
    m = _run(gts, preds, num_classes=2)
    assert np.all(m.ap == 0.0) and m.map50 == 0.0 and m.map50_95 == 0.0
    assert m.precision == 0.0 and m.recall == 0.0


def test_a_class_missing_from_the_predictions_counts_zero():
    # class 0 found perfectly, class 1 never predicted, class 2 absent from both: left out
    gts = [_gt([A, B], [0, 1])]
    preds = [_pred([A], [0.9], [0])]
    m = _run(gts, preds, class_names=["cat", "dog", "bird"])
    assert m.ap50[0] == 1.0 and m.ap50[1] == 0.0 and np.isnan(m.ap50[2])
    assert m.map50 == pytest.approx(0.5) and m.map50_95 == pytest.approx(0.5)
    assert "bird" in m.table() and "    -" in m.table()
    assert m.as_dict()["classes"][2]["AP50"] is None


def test_duplicates_are_false_positives():
    # two objects; the first is found twice. Ranked: TP, FP (duplicate), TP
    gts = [_gt([A, B], [0, 0])]
    preds = [_pred([A, A, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    coco = _run(gts, preds, num_classes=1)
    voc = _run(gts, preds, num_classes=1, interpolation="voc")
    # recall after each rank: 1/2, 1/2, 1; precision 1, 1/2, 2/3; envelope 1, 2/3, 2/3.
    # COCO: the 51 recall points 0.00..0.50 read 1, the 50 points 0.51..1.00 read 2/3
    assert coco.ap50[0] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    # VOC all-point: area under the envelope = 0.5 * 1 + 0.5 * 2/3
    assert voc.ap50[0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # at conf 0.75 two detections are kept, one right: P 1/2, R 1/2
    m = _run(gts, preds, num_classes=1, conf=0.75)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(0.5)
    assert m.num_predictions[0] == 3


def test_ties_keep_image_order():
    # one object (in image 1); image 0 holds a false alarm with the same score as the hit
    gts = [_gt([], []), _gt([A], [0])]
    preds = [_pred([B], [0.5], [0]), _pred([A], [0.5], [0])]
    m = _run(gts, preds, num_classes=1)
    # ranked FP then TP: precision 0, 1/2 -> envelope 1/2, 1/2 at recall 0, 1 -> AP 0.5
    assert m.ap50[0] == pytest.approx(0.5)
    swapped = _run(gts[::-1], preds[::-1], num_classes=1)
    assert swapped.ap50[0] == pytest.approx(1.0)       # TP ranked first: precision 1 all along


def test_iou_thresholds():
    # a box with IoU 0.625 with its object: a hit at 0.50, 0.55, 0.60, a miss from 0.65 on
    gts = [_gt([[0, 0, 1, 1]], [0])]
    preds = [_pred([[0, 0, 0.625, 1]], [0.9], [0])]
    m = _run(gts, preds, num_classes=1)
    np.testing.assert_array_equal(m.ap[0], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert m.map50_95 == pytest.approx(0.3)
    np.testing.assert_allclose(m.iou_thresholds, COCO_IOU_THRESHOLDS)


def test_greedy_matching_takes_the_best_free_object():
    # two objects side by side; the top prediction overlaps both, more the right one (IoU 0.6
    # vs 0.2), so the second prediction (exactly on the left one) still finds its own
    left, right = [0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]
    top = [0.3, 0.0, 0.9, 1.0]      # IoU with right 0.4/0.7 = 0.571, with left 0.2/0.8 = 0.25
    m = _run([_gt([left, right], [0, 0])], [_pred([top, left], [0.9, 0.8], [0, 0])], num_classes=1)
    assert m.ap50[0] == 1.0


def test_max_detections_per_image_and_class():
    gts = [_gt([A], [0])]
    preds = [_pred([B, B, A], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert _run(gts, preds, num_classes=1, max_detections=2).ap50[0] == 0.0   # the hit is cut
    assert _run(gts, preds, num_classes=1).ap50[0] == pytest.approx(1 / 3)    # 101 points at 1/3


def test_bad_predictions_are_refused():
    gts = [_gt([A], [0])]
    with pytest.raises(ValueError, match="triple"):
        _run(gts, [np.zeros((1, 4))], num_classes=1)
    with pytest.raises(ValueError, match="boxes must be"):
        _run(gts, [(np.zeros((1, 3)), np.ones(1), np.zeros(1, int))], num_classes=1)
    with pytest.raises(ValueError, match="not one of the 1 classes"):
        _run(gts, [_pred([A], [0.5], [3])], num_classes=1)
    with pytest.raises(ValueError, match="one of each per image"):
        _run(gts, [], num_classes=1)
    with pytest.raises(ValueError, match="interpolation"):
        _run(gts, [_pred([A], [0.5], [0])], num_classes=1, interpolation="11-point")


def _random_predictions(scenes, seed):
    """Noisy copies of the objects (some with the wrong class), duplicates and false alarms,
    with scores rounded to one decimal so that ties happen."""
    rng = np.random.default_rng(seed)
    preds = []
    for i in range(len(scenes)):
        g = scenes.boxes_xyxy(i)
        cls = scenes.classes[i].copy()
        keep = rng.random(len(g)) < 0.85
        boxes = (g + rng.normal(0, 0.02, g.shape))[keep]
        cls = np.where(rng.random(len(cls)) < 0.15, rng.integers(0, 10, len(cls)), cls)[keep]
        dup = boxes[: rng.integers(0, 2)] + 0.01
        extra = rng.integers(0, 4)
        xy = rng.random((extra, 2)) * 0.7
        alarms = np.concatenate([xy, xy + 0.05 + rng.random((extra, 2)) * 0.25], axis=1)
        boxes = np.concatenate([boxes, dup, alarms])
        cls = np.concatenate([cls, cls[: len(dup)], rng.integers(0, 10, extra)])
        scores = np.round(rng.random(len(boxes)), 1)
        preds.append((boxes, scores, cls))
    return preds


def test_against_pycocotools(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    scenes = make_scenes(40, seed=3, size=96, max_object=48)
    preds = _random_predictions(scenes, seed=1)
    ours = evaluate_scenes(scenes, preds)
    export_coco_json(scenes, tmp_path / "gt.json")
    write_coco_predictions(preds, (96, 96), tmp_path / "dt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        dt = gt.loadRes(str(tmp_path / "dt.json"))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours.map50_95 == pytest.approx(ev.stats[0], abs=1e-12)
    assert ours.map50 == pytest.approx(ev.stats[1], abs=1e-12)
    # precision[T, R, K, area "all", maxDets 100]: the per-class AP is its mean over R
    precision = ev.eval["precision"][:, :, :, 0, 2]
    for k in range(10):
        if precision[0, 0, k] > -1:
            np.testing.assert_allclose(ours.ap[k], precision[:, :, k].mean(axis=1), atol=1e-12)
    assert 0.2 < ours.map50 < 0.95                                  # a case with something to get wrong


def test_coco_predictions_round_trip(tmp_path):
    scenes = make_scenes(5, seed=2, size=64, max_object=32)
    preds = _random_predictions(scenes, seed=4)
    path = write_coco_predictions(preds, (64, 64), tmp_path / "dt.json")
    entries = json.loads(path.read_text())
    assert {"image_id", "category_id", "bbox", "score"} <= set(entries[0])
    back = read_coco_predictions(path, 5, (64, 64))
    for (b1, s1, c1), (b2, s2, c2) in zip(preds, back):
        np.testing.assert_allclose(b1, b2, atol=1e-12)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(c1, c2)
    path.write_text(json.dumps([{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1},
                                {"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match="2 bad entries") as info:
        read_coco_predictions(path, 5, (64, 64))
    assert "entry 0: image_id 9" in str(info.value)


def test_evaluate_model_with_a_callable_and_the_pr_figure(tmp_path):
    scenes = make_scenes(6, seed=5, size=64, max_object=32)
    seen = []

    def oracle(images):           # "predicts" the ground truth: looks each image up
        out = []
        for image in images:
            i = next(j for j in range(len(scenes)) if np.array_equal(scenes.images[j], image))
            seen.append(i)
            out.append((scenes.boxes_xyxy(i), np.ones(len(scenes.boxes[i])), scenes.classes[i]))
        return out

    m = evaluate_model(oracle, scenes, batch_size=4)
    assert seen == list(range(6)) and m.map50 == 1.0
    fig = plot.detection_pr_curves(evaluate_scenes(scenes, _random_predictions(scenes, seed=0)))
    path = plot.save(fig, tmp_path / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
