"""YOLO training pieces: the loss kernel against a numpy float64 oracle and finite differences on
every backend, target encoding -> decoding round trips, k-means anchors on a hand case."""

import numpy as np
import pytest

from nbcnn import ops
from nbcnn.detection import anchors as A
from nbcnn.detection import targets as T

LAMBDAS = (5.0, 1.0, 0.5, 2.0)


def numpy_yolo_loss(pred, target, B, lam):
    """The loss written again in float64 numpy, term by term (the module docstring's formulas)."""
    pred = np.asarray(pred, np.float64)
    N, S_h, S_w, ch = pred.shape
    p = pred.reshape(-1, ch // B)
    t = np.asarray(target, np.float64).reshape(-1, 7)
    s = 1 / (1 + np.exp(-p))

    def bce(z, y):
        return -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
    obj, none = t[:, 4] == 1, t[:, 4] == 0
    coord = lam[0] * t[:, 6] * (((s[:, :2] - t[:, :2]) ** 2).sum(1) + ((p[:, 2:4] - t[:, 2:4]) ** 2).sum(1))
    onehot = np.eye(p.shape[1] - 5)[t[:, 5].astype(int)]
    logits = p[:, 5:]
    cls = lam[3] * -(onehot * (logits - np.log(np.exp(logits).sum(1, keepdims=True)))).sum(1)
    return {"coord": coord[obj].sum(), "obj": lam[1] * bce(p[obj, 4], 1).sum(),
            "noobj": lam[2] * bce(p[none, 4], 0).sum(), "cls": cls[obj].sum()}


def small_case(rng, dtype=np.float64, N=2, S=2, B=2, C=3):
    pred = rng.standard_normal((N, S, S, B * (5 + C))).astype(dtype)
    target = np.zeros((N, S, S, B, 7), dtype)
    target[..., 4] = rng.choice([-1, 0, 1], size=(N, S, S, B), p=[0.2, 0.4, 0.4])
    target[..., :2] = rng.uniform(0.05, 0.95, (N, S, S, B, 2))
    target[..., 2:4] = rng.uniform(-1, 1, (N, S, S, B, 2))
    target[..., 5] = rng.integers(0, C, (N, S, S, B))
    target[..., 6] = rng.uniform(1.0, 2.0, (N, S, S, B))
    target[0, 0, 0, 0, 4], target[0, 0, 0, 1, 4], target[1, 1, 1, 1, 4] = 1, 0, -1  # each state at least once
    return pred, target, B


def test_loss_matches_numpy_oracle(backend, rng):
    pred, target, B = small_case(rng)
    got = ops.yolo_loss(pred, target, B, LAMBDAS)
    expected = numpy_yolo_loss(pred, target, B, LAMBDAS)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-10, abs=1e-12), k
    assert got["loss"] == pytest.approx(sum(expected.values()), rel=1e-10)
    per = ops.yolo_loss(pred, target, B, LAMBDAS, reduction="none")
    assert per.shape == (2, 2, 2, 2, 4)
    assert np.all(per[target[..., 4] == -1] == 0)  # ignored anchors contribute nothing


def test_gradient_matches_finite_differences(backend, rng):
    pred, target, B = small_case(rng)
    grad = ops.yolo_loss_backward(pred, target, B, LAMBDAS, dloss=0.5)
    assert grad.shape == pred.shape
    eps = 1e-6
    numeric = np.zeros_like(pred)
    for i in np.ndindex(pred.shape):
        plus, minus = pred.copy(), pred.copy()
        plus[i] += eps
        minus[i] -= eps
        numeric[i] = 0.5 * (ops.yolo_loss(plus, target, B, LAMBDAS)["loss"] -
                            ops.yolo_loss(minus, target, B, LAMBDAS)["loss"]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    assert np.abs(grad).max() > 0.1  # not trivially zero


def test_float32_and_extreme_logits_stay_finite(backend):
    pred = np.full((1, 1, 1, 7), 200.0, np.float32)  # logits far past exp's float32 range
    pred[..., 4] = -200
    target = np.zeros((1, 1, 1, 1, 7), np.float32)
    target[..., 4] = 1
    out = ops.yolo_loss(pred, target, 1)
    assert np.isfinite(out["loss"]) and out["obj"] == pytest.approx(200.0, rel=1e-4)
    g = ops.yolo_loss_backward(pred, target, 1)
    assert g.dtype == np.float32 and np.all(np.isfinite(g))


def test_bad_inputs_are_refused():
    pred = np.zeros((1, 2, 2, 14))
    good = np.zeros((1, 2, 2, 2, 7))
    with pytest.raises(ValueError, match="B \\* \\(5 \\+ C\\)"):
        ops.yolo_loss(np.zeros((1, 2, 2, 13)), good, 2)
    with pytest.raises(ValueError, match="target has shape"):
        ops.yolo_loss(pred, np.zeros((1, 2, 2, 2, 6)), 2)
    bad = good.copy()
    bad[0, 0, 0, 0, 4] = 0.5
    with pytest.raises(ValueError, match="state"):
        ops.yolo_loss(pred, bad, 2)
    bad = good.copy()
    bad[0, 0, 0, 0, 4:6] = (1, 2)  # class 2 of C = 2
    with pytest.raises(ValueError, match="class"):
        ops.yolo_loss(pred, bad, 2)


# --------------------------------------------------------------------------- targets


def perfect_raw(target, num_classes):
    """The raw output that decodes exactly to the encoded boxes (logit of x*, w* as is)."""
    N, S_h, S_w, B, _ = target.shape
    raw = np.full((N, S_h, S_w, B, 5 + num_classes), -30.0)
    on = target[..., 4] == 1
    x = np.clip(target[..., :2], 1e-9, 1 - 1e-9)
    raw[..., :2] = np.log(x / (1 - x))
    raw[..., 2:4] = target[..., 2:4]
    raw[..., 4] = np.where(on, 30.0, -30.0)
    for idx in zip(*np.nonzero(on)):
        raw[idx + (5 + int(target[idx + (5,)]),)] = 30.0
    return raw.reshape(N, S_h, S_w, -1)


def test_encode_then_decode_gives_the_boxes_back():
    boxes = [np.array([[0.30, 0.30, 0.10, 0.20], [0.72, 0.61, 0.40, 0.30], [0.05, 0.95, 0.08, 0.08]]),
             np.zeros((0, 4))]
    classes = [np.array([2, 0, 1]), np.zeros(0, np.int64)]
    anchors = np.array([[0.1, 0.1], [0.3, 0.3]])
    target = T.encode_targets(boxes, classes, 4, anchors, 3)
    # the cell of the centre, the anchor of best IoU: box 0 -> cell (1, 1), anchor 0; box 1 -> (2, 2), anchor 1
    assert target[0, 1, 1, 0, 4] == 1 and target[0, 2, 2, 1, 4] == 1 and target[0, 3, 0, 0, 4] == 1
    assert target[0, ..., 4].sum() == 3 and target[1, ..., 4].sum() == 0
    np.testing.assert_allclose(target[0, 1, 1, 0, :4], [0.2, 0.2, np.log(1.0), np.log(2.0)], atol=1e-6)
    decoded = T.decode_grid(perfect_raw(target, 3), anchors, conf=0.5)
    b, s, c = decoded[0]
    order = np.argsort(b[:, 0])
    np.testing.assert_allclose(b[order], boxes[0][np.argsort(boxes[0][:, 0])], atol=1e-5)
    np.testing.assert_array_equal(c[order], classes[0][np.argsort(boxes[0][:, 0])])
    assert np.all(s > 0.99)
    assert decoded[1][0].shape == (0, 4)


def test_two_objects_in_one_slot_the_larger_wins():
    boxes = [np.array([[0.1, 0.1, 0.10, 0.10], [0.12, 0.12, 0.15, 0.15]])]
    target = T.encode_targets(boxes, [np.array([0, 1])], 2, [[0.1, 0.1]], 2)
    assert target[0, ..., 4].sum() == 1 and target[0, 0, 0, 0, 5] == 1


def test_ignore_marks_empty_anchors_that_already_overlap():
    anchors = np.array([[0.5, 0.5], [0.1, 0.1]])
    boxes = [np.array([[0.25, 0.25, 0.1, 0.1]])]
    target = T.encode_targets(boxes, [np.array([0])], 2, anchors, 1)
    raw = np.zeros((1, 2, 2, 12))
    raw[..., 2:4] = np.log(0.2)  # anchor 0's boxes become 0.1 x 0.1 at the cell centres
    marked = T.ignore_overlaps(target, raw, anchors, boxes, threshold=0.5)
    assert marked[0, 0, 0, 0, 4] == -1   # same box as the object, not responsible: ignored
    assert marked[0, 0, 0, 1, 4] == 1    # the responsible anchor stays
    assert (marked[..., 4] == -1).sum() == 1


# --------------------------------------------------------------------------- anchors


def test_kmeans_finds_two_obvious_clusters():
    # two groups of box shapes: tall thin around (0.1, 0.4) and wide flat around (0.4, 0.1)
    wh = np.array([[0.1, 0.4], [0.12, 0.38], [0.08, 0.42], [0.4, 0.1], [0.38, 0.12], [0.42, 0.08]])
    anchors = A.kmeans_anchors(wh, 2, seed=3)
    np.testing.assert_allclose(sorted(anchors.tolist()), [[0.1, 0.4], [0.4, 0.1]], atol=1e-6)
    # by hand: IoU of (0.1, 0.4) and (0.12, 0.38) = 0.1*0.38 / (0.04 + 0.0456 - 0.038)
    assert A.shape_iou([[0.1, 0.4]], [[0.12, 0.38]])[0, 0] == pytest.approx(0.038 / 0.0476)
    assert A.mean_best_iou(wh, anchors) > 0.85


def test_kmeans_is_not_euclidean():
    # 1 - IoU: a small box far (in width) from a big one is closer to the small anchor
    wh = np.array([[0.02, 0.02], [0.03, 0.03], [0.5, 0.5], [0.6, 0.6]])
    anchors = A.kmeans_anchors(wh, 2, seed=0)
    np.testing.assert_allclose(anchors, [[0.025, 0.025], [0.55, 0.55]], atol=1e-6)
    with pytest.raises(ValueError, match="different box sizes"):
        A.kmeans_anchors(np.array([[0.1, 0.1], [0.1, 0.1]]), 2)


def test_the_torch_bench_peer_computes_the_same_loss():
    """nbcnn bench's torch peer (nbcnn.detection.bench) must time the same loss, ignore rule included."""
    torch = pytest.importorskip("torch")
    from nbcnn.detection.bench import torch_yolo_loss
    from nbcnn.detection.small_yolo import yolo_loss_and_gradient

    rng = np.random.default_rng(5)
    anchors = np.array([[0.2, 0.3], [0.5, 0.4]], np.float32)
    boxes = [np.array([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.5, 0.4]], np.float32), np.zeros((0, 4), np.float32)]
    classes = [np.array([1, 2]), np.zeros(0, np.int64)]
    raw = rng.standard_normal((2, 4, 4, 2 * 8)).astype(np.float32)
    raw.reshape(2, 4, 4, 2, 8)[..., :4] = 0  # anchor-sized boxes at the cell centres: neighbours overlap objects
    terms, grad = yolo_loss_and_gradient(raw, boxes, classes, anchors, 3, ignore_threshold=0.3)
    t = torch.tensor(raw, requires_grad=True)
    loss = torch_yolo_loss(t, T.encode_targets(boxes, classes, 4, anchors, 3), anchors, boxes, ignore=0.3)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(terms["loss"], rel=1e-5)
    np.testing.assert_allclose(t.grad.numpy(), grad, rtol=1e-4, atol=1e-6)
    target = T.ignore_overlaps(T.encode_targets(boxes, classes, 4, anchors, 3), raw, anchors, boxes, 0.3)
    assert (target[..., 4] == -1).any()
