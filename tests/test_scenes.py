"""Generated detection scenes and the YOLO folder layout (nbcnn/detection/scenes.py, dataset.py)."""

import json

import numpy as np
import pytest

from nbcnn.data import FASHION_MNIST_DIR
from nbcnn.detection.dataset import LabelError, read_yolo_folder
from nbcnn.detection.scenes import (
    INK_THRESHOLD,
    SPLIT_SEEDS,
    Scenes,
    export_coco_json,
    make_scenes,
    make_split,
    split_instances,
    write_yolo_folder,
)

SIZE = 128


def _pixel_boxes(boxes, size=SIZE):
    """Normalised (cx, cy, w, h) -> integer pixel edges (x0, y0, x1, y1), end-exclusive."""
    b = np.asarray(boxes, np.float64) * size
    corners = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                        b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)
    assert np.allclose(corners, np.rint(corners), atol=1e-3), "boxes should sit on pixel edges"
    return np.rint(corners).astype(int)


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_scenes_shapes_and_types():
    s = make_scenes(5, seed=1)
    assert s.images.shape == (5, SIZE, SIZE, 3) and s.images.dtype == np.float32
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    assert s.class_names == [str(d) for d in range(10)]
    for b, c in zip(s.boxes, s.classes):
        assert b.dtype == np.float32 and b.ndim == 2 and b.shape[1] == 4
        assert c.dtype == np.int64 and c.shape == (len(b),)
        assert 1 <= len(b) <= 6
        assert np.all((c >= 0) & (c < 10))


def test_same_seed_same_scenes_other_seed_other_scenes():
    a = make_scenes(4, seed=3, size=64, max_object=32)
    b = make_scenes(4, seed=3, size=64, max_object=32)
    c = make_scenes(4, seed=4, size=64, max_object=32)
    np.testing.assert_array_equal(a.images, b.images)
    for x, y in zip(a.boxes, b.boxes):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.classes, b.classes):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)


def test_split_pools_are_disjoint_and_cover_the_sheet():
    pools = {name: split_instances(name) for name in ("train", "val", "test")}
    assert [len(pools[n]) for n in ("train", "val", "test")] == [4000, 500, 500]
    everything = np.concatenate(list(pools.values()))
    assert np.array_equal(np.sort(everything), np.arange(5000))          # disjoint and complete
    for pool, per_class in ((pools["train"], 400), (pools["test"], 50)):
        # the sheet holds class k in indices 500k .. 500k+499 (rows of 100, 5 rows per class)
        assert np.array_equal(np.bincount(pool // 500, minlength=10), np.full(10, per_class))
    assert SPLIT_SEEDS == {"train": 0, "val": 1, "test": 2}


def test_test_scenes_never_paste_a_training_digit():
    train = make_split("train", 40, size=64, max_object=32)
    test = make_split("test", 40, size=64, max_object=32)
    used_train = np.concatenate(train.instances)
    used_test = np.concatenate(test.instances)
    assert not set(used_train.tolist()) & set(used_test.tolist())
    assert set(used_test.tolist()) <= set(split_instances("test").tolist())
    # each pasted digit's label is its row band in the sheet: an independent check on the class
    for inst, cls in zip(test.instances, test.classes):
        np.testing.assert_array_equal(inst // 500, cls)
    assert not np.array_equal(train.images[:5], test.images[:5])


def test_boxes_tightly_enclose_the_pasted_ink():
    """On a black canvas the ink is everything that is not black; its colour has a largest
    channel of 1, so an isolated object's pixel max-channel is its opacity."""
    s = make_scenes(60, seed=11, background=False)
    overlapping_pairs = 0
    for img, boxes in zip(s.images, s.boxes):
        px = _pixel_boxes(boxes)
        covered = np.zeros((SIZE, SIZE), bool)
        for x0, y0, x1, y1 in px:
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            covered[y0:y1, x0:x1] = True
        painted = img.max(axis=-1) > 0
        assert not (painted & ~covered).any(), "ink outside every box"
        for i, box in enumerate(px):
            others = [j for j in range(len(px)) if j != i and _iou(box, px[j]) > 0]
            for j in range(i + 1, len(px)):
                iou = _iou(box, px[j])
                assert iou <= 0.3 + 1e-9, f"overlap {iou:.2f} above the bound"
                overlapping_pairs += iou > 0
            if others:
                continue                               # ink of another object may cross its edges
            x0, y0, x1, y1 = box
            ink = img[y0:y1, x0:x1].max(axis=-1) >= INK_THRESHOLD - 1e-6
            # tight: the first and last row and column of the box each hold ink
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
            longer = max(x1 - x0, y1 - y0)
            assert 12 <= longer <= 64
    assert overlapping_pairs > 0, "some objects should overlap"


def test_backgrounds_are_photos_dimmed_below_the_ink():
    s = make_scenes(6, seed=2)
    black = make_scenes(6, seed=2, background=False)
    for img, bare, boxes in zip(s.images, black.images, s.boxes):
        empty = bare.max(axis=-1) == 0
        background = img[empty]
        assert background.std() > 0.01, "a textured photo, not a flat colour"
        assert background.max() <= 0.5 + 1e-6, "dimmed so that the ink (max channel 1) stands out"


def test_write_read_round_trip(tmp_path):
    s = make_scenes(7, seed=6, size=96, max_object=48)
    write_yolo_folder(s, tmp_path / "set")
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir())[:2] == ["00000.png", "00001.png"]
    assert (tmp_path / "set" / "classes.txt").read_text().split("\n")[:2] == ["0", "1"]
    first = (tmp_path / "set" / "labels" / "00000.txt").read_text().splitlines()[0].split()
    assert len(first) == 5 and int(first[0]) == s.classes[0][0]
    assert float(first[1]) == pytest.approx(float(s.boxes[0][0, 0]), abs=1e-6)
    r = read_yolo_folder(tmp_path / "set")
    assert len(r) == 7 and r.class_names == s.class_names
    assert np.abs(r.images - s.images).max() <= 0.5 / 255 + 1e-6      # 8-bit PNG rounding
    for a, b, ca, cb in zip(r.boxes, s.boxes, r.classes, s.classes):
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_array_equal(ca, cb)
    resized = read_yolo_folder(tmp_path / "set", size=48)
    assert resized.images.shape == (7, 48, 48, 3)
    np.testing.assert_allclose(resized.boxes[3], s.boxes[3], atol=1e-6)


def test_coco_json_structure(tmp_path):
    s = make_scenes(3, seed=9)
    path = export_coco_json(s, tmp_path / "coco.json")
    coco = json.loads(path.read_text())
    assert {"images", "annotations", "categories"} <= set(coco)
    assert [im["id"] for im in coco["images"]] == [1, 2, 3]
    assert coco["images"][0] == {"id": 1, "file_name": "00000.png", "width": SIZE, "height": SIZE}
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    assert [c["name"] for c in coco["categories"]] == s.class_names
    anns = coco["annotations"]
    assert len(anns) == sum(len(b) for b in s.boxes)
    assert len({a["id"] for a in anns}) == len(anns)
    i = 0
    for image_id, (boxes, classes) in enumerate(zip(s.boxes, s.classes), start=1):
        for (cx, cy, w, h), k in zip(boxes.tolist(), classes.tolist()):
            a = anns[i]
            i += 1
            assert a["image_id"] == image_id and a["category_id"] == k + 1 and a["iscrowd"] == 0
            x, y, bw, bh = a["bbox"]          # top-left corner and size in pixels
            assert x == pytest.approx((cx - w / 2) * SIZE) and y == pytest.approx((cy - h / 2) * SIZE)
            assert bw == pytest.approx(w * SIZE) and bh == pytest.approx(h * SIZE)
            assert a["area"] == pytest.approx(bw * bh)


def test_make_scenes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="source"):
        make_scenes(1, source="cars")
    with pytest.raises(ValueError, match="split"):
        make_scenes(1, split="dev")
    with pytest.raises(ValueError, match="max_object"):
        make_scenes(1, size=32, max_object=64)
    with pytest.raises(ValueError, match="min_object"):
        make_scenes(1, min_object=40, max_object=20)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_fashion_scenes():
    s = make_split("test", 3, source="fashion", size=64, max_object=32)
    assert s.class_names[0] == "T-shirt/top" and len(s.class_names) == 10
    again = make_split("test", 3, source="fashion", size=64, max_object=32)
    np.testing.assert_array_equal(s.images, again.images)
    mixed = make_scenes(3, seed=1, source="mixed", size=64, max_object=32)
    assert len(mixed.class_names) == 20


def test_a_garment_is_pasted_whole_a_digit_only_where_its_ink_is():
    """A dark garment (a black coat: 0.05 everywhere, one bright 0.9 stripe) is its whole
    silhouette, the dark cloth at INK_THRESHOLD; the same picture as a digit keeps only the
    stripe. Checked on the object's opacity, resized 2x (bilinear blurs the outer pixel)."""
    from nbcnn.detection.scenes import _object_alpha

    coat = np.zeros((28, 28), np.float32)
    coat[4:24, 6:22] = 0.05          # 20 x 16 of dark cloth
    coat[4:24, 13:15] = 0.9          # a bright zip down the middle
    garment = _object_alpha(coat, 40, solid=True)
    assert garment.shape == (40, 32)                       # the whole coat, not the zip
    inner = garment[1:-1, 1:-1]
    assert inner.min() >= INK_THRESHOLD                    # no holes in the cloth
    assert np.isclose(np.median(garment), np.float32(INK_THRESHOLD))
    assert garment.max() > 0.85                            # the zip keeps its brightness
    digit = _object_alpha(coat, 40, solid=False)
    assert digit.shape[0] == 40 and digit.shape[1] <= 6    # only the bright stroke


# --------------------------------------------------------------------------------------------
# Bad labels: every problem reported with its file and line, all of them in one error
# --------------------------------------------------------------------------------------------

@pytest.fixture
def good_folder(tmp_path):
    s = make_scenes(3, seed=4, size=32, min_object=8, max_object=16, max_objects=2)
    return write_yolo_folder(s, tmp_path / "data")


def _set_label(folder, name, text):
    (folder / "labels" / name).write_text(text)


@pytest.mark.parametrize("line, message", [
    ("3 0.5 0.5 0.2", "expected 5 fields"),
    ("3 0.5 0.5 0.2 0.2 0.1", "expected 5 fields"),
    ("3 0.5 abc 0.2 0.2", "not a number: 'abc'"),
    ("12 0.5 0.5 0.2 0.2", "unknown class 12"),
    ("-1 0.5 0.5 0.2 0.2", "unknown class -1"),
    ("2.5 0.5 0.5 0.2 0.2", "class must be an integer"),
    ("3 1.5 0.5 0.2 0.2", "must lie in \\[0, 1\\]"),
    ("3 0.5 0.5 0 0.2", "zero size"),
    ("3 0.95 0.5 0.2 0.2", "sticks out"),
    ("3 nan 0.5 0.2 0.2", "finite"),
])
def test_bad_label_line_names_file_and_line(good_folder, line, message):
    _set_label(good_folder, "00001.txt", f"1 0.5 0.5 0.25 0.25\n{line}\n")
    with pytest.raises(LabelError, match=message) as info:
        read_yolo_folder(good_folder)
    assert "00001.txt:2:" in str(info.value)
    assert len(info.value.problems) == 1


def test_missing_and_unreadable_files_are_all_reported(good_folder):
    (good_folder / "labels" / "00000.txt").unlink()                     # image without labels
    _set_label(good_folder, "orphan.txt", "1 0.5 0.5 0.2 0.2\n")         # labels without image
    (good_folder / "images" / "00002.png").write_bytes(b"not a png")     # unreadable image
    _set_label(good_folder, "00001.txt", "1 0.5 0.5 0.2\n")              # and a bad line
    with pytest.raises(LabelError) as info:
        read_yolo_folder(good_folder)
    text = str(info.value)
    assert len(info.value.problems) == 4
    assert "00000.png: an image without a label file" in text
    assert "orphan.txt: a label file without an image" in text
    assert "00002.png: cannot read the image" in text
    assert "00001.txt:1: expected 5 fields" in text


def test_class_count_from_argument_or_classes_txt(good_folder):
    for name in ("00000.txt", "00002.txt"):
        _set_label(good_folder, name, "1 0.5 0.5 0.25 0.25\n")
    _set_label(good_folder, "00001.txt", "5 0.5 0.5 0.25 0.25\n")
    assert len(read_yolo_folder(good_folder).class_names) == 10          # classes.txt: 10 names
    with pytest.raises(LabelError, match="lists 10 classes, but num_classes=3"):
        read_yolo_folder(good_folder, num_classes=3)
    (good_folder / "classes.txt").unlink()
    with pytest.raises(LabelError, match="unknown class 5 \\(classes are \\[0, 3\\)\\)"):
        read_yolo_folder(good_folder, num_classes=3)
    r = read_yolo_folder(good_folder)                                    # inferred: 6 classes
    assert r.class_names == [str(k) for k in range(6)]


def test_mixed_image_sizes_need_size(good_folder):
    from PIL import Image

    Image.new("RGB", (40, 40)).save(good_folder / "images" / "00002.png")
    with pytest.raises(LabelError, match="different sizes"):
        read_yolo_folder(good_folder)
    assert read_yolo_folder(good_folder, size=32).images.shape == (3, 32, 32, 3)


def test_missing_folder():
    with pytest.raises(FileNotFoundError, match="not found"):
        read_yolo_folder("/nonexistent/folder")


def test_scenes_subset():
    s = make_scenes(4, seed=0, size=64, max_object=32)
    t = s.subset([3, 1])
    assert isinstance(t, Scenes) and len(t) == 2
    np.testing.assert_array_equal(t.images[0], s.images[3])
    np.testing.assert_array_equal(t.boxes[1], s.boxes[1])
