"""The tiny face detector against face-api's own output (tests/data/faceapi_oracle.json, recorded
by tests/record_faceapi.py in node): its raw 13 x 13 x 25 grid, and its boxes on the shipped
photos within 1 px. Then the pieces on their own: the preprocessing against a per-pixel
rewrite of TensorFlow's resize, the grid decoding on a hand-made grid, shapes, bad input."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import nbcnn
from nbcnn.triplet import face_detector as fd
from nbcnn.triplet.face_crop import read_photo

ROOT = Path(__file__).resolve().parents[1]
ORACLE = json.loads((ROOT / "tests" / "data" / "faceapi_oracle.json").read_text())


def recorded_photo(name):
    """The photo as face-api saw it: the same decoded pixels (checked by their sha256)."""
    record = ORACLE["photos"][name]
    image = read_photo(ROOT / record["file"])
    assert hashlib.sha256(image.tobytes()).hexdigest() == record["pixels_sha256"], (
        f"{record['file']} decodes to other pixels than when face-api was recorded (another Pillow / libjpeg?)")
    return image


@pytest.fixture(scope="module")
def detector():
    with nbcnn.use_backend("cpu"):
        yield fd.load_tiny_face_detector(416)


# --------------------------------------------------------------------------- against face-api


def test_raw_grid_matches_face_api(detector):
    grid = ORACLE["grid"]
    photo = recorded_photo(grid["photo"])
    H, W = grid["padded_to"]
    square = np.pad(photo, ((0, H - photo.shape[0]), (0, W - photo.shape[1]), (0, 0)))  # no resize: 416 already
    with nbcnn.use_backend("cpu"):
        out = detector(fd.preprocess(square, grid["input_size"]))
    want = np.asarray(grid["values"], np.float32).reshape(grid["shape"])
    assert out.shape == want.shape == (1, 13, 13, 25)
    # float32 through 7 layers, summed in another order than tfjs: 1e-3 on values up to ~50
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", sorted(ORACLE["photos"]))
def test_boxes_match_face_api_within_a_pixel(detector, name):
    record = ORACLE["photos"][name]
    photo = recorded_photo(name)
    with nbcnn.use_backend("cpu"):
        faces = fd.detect_faces(photo, record["input_size"], record["score_threshold"], record["iou_threshold"],
                                model=detector)
    assert len(faces) == len(record["boxes"]), f"{name}: {len(faces)} faces, face-api found {len(record['boxes'])}"
    for face, box, score in zip(faces, record["boxes"], record["scores"]):  # both best score first
        np.testing.assert_allclose(face.box, box, rtol=0, atol=1.0)
        assert abs(face.score - score) < 1e-4


def test_group_photo_has_four_faces_and_default_detector_is_shipped():
    faces = fd.detect_faces(recorded_photo("group"))  # the shipped weights, built on first use
    assert len(faces) == 4
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    (x1, y1, x2, y2), score = faces[0]  # a Face unpacks as (box, score)
    assert 0 < x1 < x2 and 0 < y1 < y2 and 0.5 < score < 1


# --------------------------------------------------------------------------- the network


@pytest.mark.parametrize("input_size,cells", [(416, 13), (128, 4), (32, 1)])
def test_synthetic_input_gives_the_grid_shape(input_size, cells):
    model = fd.build_tiny_face_detector(input_size, seed=1)
    assert model.output_shape == (cells, cells, 25)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, input_size, input_size, 3)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        out = model(x)
    assert out.shape == (1, cells, cells, 25) and out.dtype == np.float32 and np.isfinite(out).all()


def test_architecture_and_parameter_count():
    model = fd.load_tiny_face_detector(416)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("SeparableConv2D") == 5 and kinds.count("MaxPooling2D") == 6 and kinds.count("Conv2D") == 2
    # every number of face-api's manifest lands in a parameter, and nothing else
    from nbcnn.weights.tfjs import read_tfjs_model
    with __import__("importlib").resources.as_file(fd.shipped_manifest()) as path:
        total = sum(a.size for a in read_tfjs_model(path).values())
    assert model.count_params() == total


def test_python_backend_runs_the_same_network(detector):
    # the readable kernels, stepped by the interpreter, on the smallest input (one grid cell)
    model = fd.load_tiny_face_detector(32)
    x = fd.preprocess(recorded_photo("obama")[150:214, 150:214], 32)
    with nbcnn.use_backend("cpu"):
        want = model(x)
    with nbcnn.use_backend("python"):
        got = model(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_other_weights_are_refused_naming_the_tensor():
    manifest = ROOT / "nbcnn" / "assets" / "faceapi" / "face_recognition_model-weights_manifest.json"
    with pytest.raises(ValueError, match="not face-api's tiny_face_detector_model: no tensor 'conv0/filters'"):
        fd.load_tiny_face_detector(416, manifest=manifest)


# --------------------------------------------------------------------------- preprocessing


def tf_resize_per_pixel(image, size):
    """TensorFlow's legacy bilinear resize (no half-pixel centres), one output pixel at a time."""
    H, W, C = image.shape
    out = np.zeros((size, size, C))
    for r in range(size):
        y = r * H / size
        y0, y1 = int(np.floor(y)), min(H - 1, int(np.ceil(y)))
        for c in range(size):
            x = c * W / size
            x0, x1 = int(np.floor(x)), min(W - 1, int(np.ceil(x)))
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * (x - x0)
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * (x - x0)
            out[r, c] = top + (bottom - top) * (y - y0)
    return out.astype(np.float32)


@pytest.mark.parametrize("shape,size", [((7, 7, 3), 11), ((20, 20, 3), 8), ((5, 5, 1), 10), ((9, 9, 2), 9)])
def test_resize_is_tensorflows_legacy_bilinear(rng, shape, size):
    image = rng.uniform(0, 255, shape)
    np.testing.assert_array_equal(fd.resize_bilinear_tf(image, size), tf_resize_per_pixel(image, size))


def test_doubling_keeps_every_input_pixel_on_the_even_grid(rng):
    image = rng.integers(0, 256, (6, 6, 3)).astype(np.float64)
    doubled = fd.resize_bilinear_tf(image, 12)
    np.testing.assert_array_equal(doubled[::2, ::2], image)  # corner-aligned: output 2r sits on input r
    np.testing.assert_array_equal(doubled[-1, -1], image[-1, -1])  # past the last pixel: clamped


def test_preprocess_pads_at_the_bottom_or_right_then_normalises():
    wide = np.full((2, 4, 3), 255, np.uint8)
    x = fd.preprocess(np.pad(wide, ((0, 30), (0, 28), (0, 0)))[:2, :32], 32)  # a 2 x 32 strip
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    mean = np.asarray(fd.MEAN_RGB, np.float32)
    # the strip fills the top rows; the padding below is black: (0 - mean) / 255
    np.testing.assert_allclose(x[0, -1, -1], (0 - mean) / np.float32(255), rtol=1e-6)
    np.testing.assert_allclose(x[0, 0, 0], (255 - mean) / np.float32(255), rtol=1e-6)
    assert fd.reshaped_size(2, 32, 32) == (32, 2)
    assert fd.reshaped_size(400, 267, 416) == (278, 416)  # 267 * 1.04 = 277.68, rounded half up


def test_grey_rgba_and_float_images_are_read_as_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    base = fd.preprocess(rgb, 64)
    np.testing.assert_array_equal(fd.preprocess(rgb.astype(np.float32), 64), base)
    np.testing.assert_array_equal(fd.preprocess(np.dstack([rgb, np.full((40, 30), 7, np.uint8)]), 64), base)
    grey = rgb[:, :, 0]
    np.testing.assert_array_equal(fd.preprocess(grey, 64), fd.preprocess(np.dstack([grey] * 3), 64))


# --------------------------------------------------------------------------- decoding


def test_decoding_a_hand_made_grid():
    # one confident anchor (anchor 1) in cell (row 2, col 3) of a 13 x 13 grid, the rest far below threshold
    grid = np.full((13, 13, 5, 5), -20.0)
    grid[2, 3, 1] = [0.0, 0.0, np.log(2.0), 0.0, 3.0]  # centre mid-cell, width doubled, score sigmoid(3)
    boxes, scores = fd.decode_grid(grid.reshape(1, 13, 13, 25), (416, 416), 416, 0.5)
    aw, ah = fd.ANCHORS[1]
    cx, cy, w, h = 3.5 / 13, 2.5 / 13, 2 * aw / 13, ah / 13
    np.testing.assert_allclose(boxes, [[(cx - w / 2) * 416, (cy - h / 2) * 416, (cx + w / 2) * 416,
                                        (cy + h / 2) * 416]], rtol=1e-12)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-3.0))])
    # a tall photo: the square's right part is padding; x positions are stretched back to the photo
    grid = grid.reshape(13, 13, 25)
    boxes_tall, _ = fd.decode_grid(grid, (400, 200), 416, 0.5)
    np.testing.assert_allclose(boxes_tall[0, [0, 2]], boxes[0, [0, 2]] / 416 * 2 * 200, rtol=1e-12)
    np.testing.assert_allclose(boxes_tall[0, [1, 3]], boxes[0, [1, 3]] / 416 * 400, rtol=1e-12)
    assert fd.decode_grid(grid, (416, 416), 416, 0.99)[0].shape == (0, 4)


def test_overlapping_boxes_are_suppressed():
    # two anchors in one cell describing almost the same face: NMS at 0.4 keeps the better one
    grid = np.full((13, 13, 5, 5), -20.0)
    grid[6, 6, 2] = [0.0, 0.0, 0.0, 0.0, 2.0]
    grid[6, 6, 3] = [0.0, 0.0, np.log(fd.ANCHORS[2][0] / fd.ANCHORS[3][0]),
                     np.log(fd.ANCHORS[2][1] / fd.ANCHORS[3][1]), 1.0]
    boxes, scores = fd.decode_grid(grid.reshape(13, 13, 25), (416, 416), 416, 0.5)
    assert len(scores) == 2
    np.testing.assert_array_equal(nbcnn.nms(boxes, scores, fd.IOU_THRESHOLD), [0])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,error,match", [
    ({"input_size": 100}, ValueError, "multiple of 32"),
    ({"input_size": 416.0}, TypeError, "input_size"),
    ({"score_threshold": 1.0}, ValueError, "score_threshold"),
    ({"iou_threshold": -0.1}, ValueError, "iou_threshold"),
    ({"score_threshold": "high"}, TypeError, "score_threshold"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        fd.detect_faces(np.zeros((32, 32, 3), np.uint8), **kwargs)


@pytest.mark.parametrize("image,error,match", [
    (np.zeros((32, 32, 5), np.uint8), ValueError, r"\(H, W, 3\)"),
    (np.zeros((0, 32, 3), np.uint8), ValueError, "shape"),
    (np.full((8, 8, 3), 2.0, np.float32) * 200, ValueError, r"\[0, 255\]"),
    (np.full((8, 8, 3), np.nan), ValueError, "NaN"),
    (np.zeros((8, 8, 3), bool), TypeError, "bool"),
    ("photo.jpg", TypeError, "read_photo"),
])
def test_bad_images_are_refused(image, error, match):
    with pytest.raises(error, match=match):
        fd.detect_faces(image)
