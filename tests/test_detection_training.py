"""Training the detectors: boxes follow the pixels under augmentation, the losses of steps 1 and 2
against finite differences, a short YOLO run lowers its loss, checkpoints resume exactly."""

import numpy as np
import pytest

import nbcnn
from nbcnn.detection import box_augment, fitting, landmarks, localization
from nbcnn.detection.detector import Detector, load_detector
from nbcnn.detection.scenes import make_scenes
from nbcnn.detection.small_yolo import small_yolo, yolo_loss_and_gradient
from nbcnn.detection.training import yolo_batches

# --------------------------------------------------------------------------- augmentation


def painted(boxes, size):
    """Black images with each box painted white (pixel edges: x0 * size .. x1 * size)."""
    x = np.zeros((len(boxes), size, size, 3), np.float32)
    for i, b in enumerate(boxes):
        for cx, cy, w, h in b:
            x0, x1 = int(round((cx - w / 2) * size)), int(round((cx + w / 2) * size))
            y0, y1 = int(round((cy - h / 2) * size)), int(round((cy + h / 2) * size))
            x[i, y0:y1, x0:x1] = 1
    return x


def box_from_pixels(image):
    """The (cx, cy, w, h) around the bright pixels (half-bright edges count half: bilinear resampling)."""
    ink = image[..., 0]
    cols, rows = ink.sum(axis=0), ink.sum(axis=1)
    size = ink.shape[0]
    x0, x1 = np.nonzero(cols > 0.5 * cols.max())[0][[0, -1]]
    y0, y1 = np.nonzero(rows > 0.5 * rows.max())[0][[0, -1]]
    return np.array([(x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, x1 + 1 - x0, y1 + 1 - y0]) / size


def test_boxes_move_with_the_pixels():
    size = 64
    rng = np.random.default_rng(0)
    boxes = [np.array([[0.30 + 0.01 * i, 0.45, 0.25, 0.375]], np.float32) for i in range(12)]
    classes = [np.array([i % 3]) for i in range(12)]
    x = painted(boxes, size)
    out, new_boxes, new_classes = box_augment.augment_scenes(x, boxes, classes, rng, mirror=0.5,
                                                             scale=(0.7, 1.4), shift=0.0)
    moved = 0
    for i in range(len(x)):
        assert len(new_boxes[i]) == 1 and new_classes[i][0] == classes[i][0]
        np.testing.assert_allclose(new_boxes[i][0], box_from_pixels(out[i]), atol=1.6 / size)
        moved += not np.allclose(new_boxes[i][0], boxes[i][0], atol=1e-3)
    assert moved >= 10  # the transforms did move them


def test_digit_scenes_are_never_mirrored():
    """Digits are not mirror-symmetric: their batches keep left and right (the box of a shape
    painted left of centre stays left), other data mirror about half the images."""
    from nbcnn.detection.training import default_mirror

    assert default_mirror("digits") == 0.0 and default_mirror("mixed") == 0.0
    assert default_mirror("fashion") == 0.5 and default_mirror(None) == 0.5

    class Scenes:  # what yolo_batches reads
        boxes = [np.array([[0.25, 0.5, 0.2, 0.4]], np.float32)] * 16
        classes = [np.array([1])] * 16
        images = painted(boxes, 32)

    idx = np.arange(16)
    for mirror, low, high in ((0.0, 16, 16), (0.5, 3, 13)):
        _, (boxes, _) = yolo_batches(Scenes, mirror=mirror)(idx, np.random.default_rng(1))
        on_left = sum(len(b) > 0 and b[0, 0] < 0.5 for b in boxes)
        assert low <= on_left <= high, (mirror, on_left)


def test_mirror_and_crop_box_formulas_by_hand():
    np.testing.assert_allclose(box_augment.mirror_boxes([[0.2, 0.3, 0.1, 0.2]]), [[0.8, 0.3, 0.1, 0.2]])
    # 100 px image, crop the 50 px window at (top 10, left 20), no pad: x0 = 30 -> (30 - 20) / 50
    b, c = box_augment.crop_boxes([[0.4, 0.3, 0.2, 0.2]], [7], top=10, left=20, crop=50, pad=0, size=100)
    np.testing.assert_allclose(b, [[0.4, 0.4, 0.4, 0.4]], atol=1e-6)
    assert c.tolist() == [7]
    # a box left mostly outside the window is dropped with its class
    b, c = box_augment.crop_boxes([[0.05, 0.05, 0.1, 0.1]], [1], top=8, left=8, crop=50, pad=0, size=100)
    assert b.shape == (0, 4) and c.shape == (0,)


# --------------------------------------------------------------------------- steps 1 and 2: losses


def finite_difference(f, z, eps=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        p, m = z.copy(), z.copy()
        p[i] += eps
        m[i] -= eps
        g[i] = (f(p) - f(m)) / (2 * eps)
    return g


def test_localization_loss_by_hand_and_gradient():
    # one empty image: only the logistic loss on p_c; z = 0 -> log 2
    terms, _ = localization.loss_and_gradient(np.zeros((1, 8)), [np.zeros((0, 4))], [np.zeros(0)])
    assert terms["pc"] == pytest.approx(np.log(2)) and terms["box"] == 0 and terms["cls"] == 0
    # an object: box outputs at 0 read as 0.5; target (0.5, 0.5, h 0.5, w 0.5) -> squared error 0
    terms, _ = localization.loss_and_gradient(np.zeros((1, 8)), [np.array([[0.5, 0.5, 0.5, 0.5]])], [np.array([1])])
    assert terms["box"] == pytest.approx(0) and terms["cls"] == pytest.approx(np.log(3))
    rng = np.random.default_rng(1)
    z = rng.standard_normal((3, 8))
    boxes = [np.array([[0.3, 0.6, 0.2, 0.4]]), np.zeros((0, 4)), np.array([[0.7, 0.2, 0.5, 0.1]])]
    classes = [np.array([2]), np.zeros(0, np.int64), np.array([0])]
    _, grad = localization.loss_and_gradient(z, boxes, classes)
    numeric = finite_difference(lambda v: localization.loss_and_gradient(v, boxes, classes)[0]["loss"], z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)
    assert np.all(grad[1, 1:] == 0)  # no object: only p_c learns


def test_landmark_loss_gradient_and_points_from_ink():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2, 10))
    pts = rng.uniform(0, 1, (2, 5, 2))
    _, grad = landmarks.loss_and_gradient(z, pts)
    numeric = finite_difference(lambda v: landmarks.loss_and_gradient(v, pts)[0]["loss"], z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-7)
    # an L-shaped ink blob of a 10 x 10 image: rows 2..6 of column 3, and row 6 from column 3 to 7
    ink = np.zeros((10, 10))
    ink[2:7, 3] = 1
    ink[6, 3:8] = 1
    p = landmarks.landmarks_from_ink(ink) * 10 - 0.5  # back to pixel indices
    np.testing.assert_allclose(p[0], [3, 2])            # top: column 3 of row 2
    np.testing.assert_allclose(p[1], [7, 6])            # right: row 6 of column 7
    np.testing.assert_allclose(p[2], [5, 6])            # bottom: row 6, columns 3..7 -> mean 5
    np.testing.assert_allclose(p[3], [3, 4])            # left: column 3, rows 2..6 -> mean 4
    np.testing.assert_allclose(p[4], [np.mean([3] * 5 + [4, 5, 6, 7]), np.mean([2, 3, 4, 5] + [6] * 5)])


# --------------------------------------------------------------------------- a tiny YOLO


def tiny_setup(seed=0):
    scenes = make_scenes(16, seed=seed, size=32, min_object=8, max_object=16, max_objects=2)
    anchors = np.array([[0.3, 0.4], [0.45, 0.5]], np.float32)
    det = small_yolo(scenes.class_names, anchors, size=32, widths=(8, 8, 16), seed=seed)
    C = det.num_classes

    def loss(raw, labels):
        return yolo_loss_and_gradient(raw, *labels, anchors, C)
    return scenes, det, loss


def test_short_training_lowers_the_loss():
    """Fixed seed, 16 scenes of 32 px, 12 epochs of 2 batches (a few seconds on cpu): the loss
    falls by a factor of more than 2 (measured: 2.6 times lower, 87 -> 33)."""
    with nbcnn.use_backend("cpu"):
        scenes, det, loss = tiny_setup()
        history = fitting.fit(det, len(scenes), yolo_batches(scenes, augment=False), loss, epochs=12, batch_size=8,
                              learning_rate=1e-2, seed=0, warmup=0)
    first, last = history["loss"][0], history["loss"][-1]
    assert first / last > 2, history["loss"]
    assert set(history) >= {"coord", "obj", "noobj", "cls", "loss", "lr", "time"}


def test_checkpoints_resume_exactly(tmp_path):
    path = tmp_path / "run.nbcnn"
    with nbcnn.use_backend("cpu"):
        scenes, straight, loss = tiny_setup()
        fitting.fit(straight, len(scenes), yolo_batches(scenes), loss, epochs=4, batch_size=8, seed=3)
        _, first, _ = tiny_setup()
        fitting.fit(first, len(scenes), yolo_batches(scenes), loss, epochs=2, batch_size=8, seed=3, checkpoint=path)
        resumed = load_detector(path)
        assert resumed.epochs_done == 2 and resumed.optimizer.iterations == 4
        fitting.fit(resumed, len(scenes), yolo_batches(scenes), loss, epochs=4, batch_size=8, seed=3, checkpoint=path)
    a = dict(straight.network.named_layers())
    for name, layer in resumed.network.named_layers():
        for key, value in list(layer.params.items()) + list(layer.state.items()):
            ref = a[name].params.get(key, a[name].state.get(key))
            np.testing.assert_array_equal(value, ref, err_msg=f"{name}/{key}")
    assert resumed.history["loss"] == straight.history["loss"]


def test_detector_file_round_trip(tmp_path):
    scenes, det, _ = tiny_setup()
    path = tmp_path / "det.nbcnn"
    det.save(path)
    back = load_detector(path)
    assert isinstance(back, Detector) and back.kind == "yolo" and back.class_names == det.class_names
    np.testing.assert_array_equal(back.anchors, det.anchors)
    for (b1, s1, c1), (b2, s2, c2) in zip(det.predict_boxes(scenes.images[:3]), back.predict_boxes(scenes.images[:3])):
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(c1, c2)
    plain = tmp_path / "plain.nbcnn"
    nbcnn.Sequential([nbcnn.layers.Flatten()], input_shape=(2, 2, 1)).save(plain)
    with pytest.raises(ValueError, match="not a detector"):
        load_detector(plain)


def test_step_outputs_read_as_boxes():
    from nbcnn.detection.step_outputs import decode, decode_boxes

    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    z = np.array([[logit(0.9), logit(0.25), logit(0.5), logit(0.2), logit(0.1), 0.0, 5.0, 0.0],
                  [logit(0.1), 0, 0, 0, 0, 0, 5.0, 0]])
    (b, s, c), (b2, s2, c2) = decode(z, conf=0.5)
    np.testing.assert_allclose(b, [[0.25, 0.5, 0.1, 0.2]], atol=1e-6)  # (b_x, b_y, b_h, b_w) -> cx, cy, w, h
    assert c.tolist() == [1] and s[0] == pytest.approx(0.9 * np.exp(5) / (np.exp(5) + 2), rel=1e-6)
    assert len(b2) == 0  # p_c 0.1: no object
    pts = logit(np.array([[0.2, 0.3, 0.6, 0.3, 0.4, 0.8]]))
    (b, s, c), = decode_boxes(pts)
    np.testing.assert_allclose(b, [[0.4, 0.55, 0.4, 0.5]], atol=1e-6)


def test_bench_lines_show_both_sides_and_the_ratio():
    from nbcnn.detection.bench import format_throughput

    rows = {"nbcnn": {"images_per_second": 30.0, "images_per_second_median": 28.0, "batch": 32, "steps": 3},
            "torch": {"images_per_second": 20.0, "images_per_second_median": 19.0, "batch": 32, "steps": 3}}
    text = "\n".join(format_throughput(rows))
    assert "Small YOLO training" in text and "nbcnn         30.0" in text and "ratio nbcnn / torch: 1.50x" in text
