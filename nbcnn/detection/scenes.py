"""Generated detection scenes: real handwritten digits / Fashion-MNIST items on real photos.

    train = make_split("train", 2000)                 # seed 0, digits of the training pool
    test = make_split("test", 500)                    # seed 2, digits no training scene uses
    scenes = make_scenes(8, seed=7)                   # any seed, any split pool
    write_yolo_folder(test, "digits-test")            # images/ + labels/ + classes.txt
    export_coco_json(test, "digits-test/coco.json")   # the same boxes as COCO json

No annotated detection set is available offline, so we make one, the way the lecture's
"car detection" examples are made by hand: each scene is a ``size`` x ``size`` RGB canvas
(default 128) holding 1 to ``max_objects`` objects. An object is a real handwritten digit
(OpenCV's ``digits.png``, 5 000 MNIST digits) or a Fashion-MNIST item, cropped to its ink,
resized so that its longer side is ``min_object``..``max_object`` pixels (aspect ratio kept)
and pasted as ink of a random bright colour (a garment whole: its dark parts at the lowest
opacity a box counts, ``INK_THRESHOLD``, not left out as holes). The canvas is a random crop of one of the photos
shipped in ``nbcnn/assets`` (dog, person, astronaut, cat, paintings), blurred and dimmed so
that the ink stays the brightest thing in the picture.

Labels
    ``boxes[i]`` is a ``(k, 4)`` float32 array of normalised ``(cx, cy, w, h)`` (YOLO's txt
    convention: centre and size divided by the canvas side). The box is *tight*: its pixel
    edges ``x0 = cx*size - w*size/2`` .. ``x1`` enclose exactly the pixels where the pasted
    ink's opacity is at least ``INK_THRESHOLD``, and the object paints no pixel outside it.
    ``classes[i]`` is ``(k,)`` int64: the digit (0-9), the Fashion-MNIST label (0-9), or for
    ``source="mixed"`` digits 0-9 followed by Fashion-MNIST 10-19.

Overlap
    Objects may overlap, but a new object is placed only where its IoU with every earlier box
    is at most ``max_overlap`` (0.3) and it covers at most ``max_cover`` (half) of either box,
    so no object is hidden; a position that fails is redrawn (50 tries, then the object is
    left out). With the defaults about half the scenes hold a pair of boxes that overlap.

Splits (train / val / test): separate seeds *and* separate object instances
    ``make_split(split, n)`` draws scenes with seed ``SPLIT_SEEDS[split]`` (train 0, val 1,
    test 2) from that split's pool of object instances:

    - digits: each class's 500 digits are split by their index in the sheet with a fixed
      permutation (``split_instances``): 400 train, 50 val, 50 test per class, so a test scene
      never pastes a digit image that a training scene used;
    - Fashion-MNIST: train = the first 54 000 of the official training file, val = its last
      6 000, test = the official 10 000 test images.

Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed gives the same scenes
on every machine (the photos and Pillow's resampling are the only other inputs).
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data import DIGITS_CLASSES, FASHION_MNIST_CLASSES

SOURCES = ("digits", "fashion", "mixed")
SPLITS = ("train", "val", "test")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}

# A pixel belongs to an object when the pasted ink's opacity is at least this (the box edge).
INK_THRESHOLD = 0.2
# A Fashion-MNIST item is the pixels above this (its background is 0); its dark parts (a black
# shoe, the shadow of a fold) are painted at INK_THRESHOLD at least, so that they show as part
# of the garment instead of holes (a digit is its strokes: only ink >= INK_THRESHOLD shows).
SILHOUETTE_LEVEL = 0.02

# The shipped photos the backgrounds are cut from (nbcnn/assets, licences in its README files).
BACKGROUND_PHOTOS = ("dog.jpg", "person.jpg", "astronaut.jpg", "chelsea.jpg", "scream.jpg",
                     "starry_night.jpg", "style_example.jpg")

# Background: multiplied by a factor in this range (dimmed), blurred with a radius in this range.
BACKGROUND_DIM = (0.25, 0.5)
BACKGROUND_BLUR = (0.5, 2.0)

_DIGITS_PER_CLASS = 500
_DIGIT_SPLIT = {"train": 400, "val": 50, "test": 50}   # per class, in that order
_DIGIT_SPLIT_SEED = 20261130                           # the fixed permutation of split_instances
_FASHION_VAL = 6000                                    # the last 6 000 training images


@dataclass
class Scenes:
    """A detection set: images and, per image, its boxes and classes.

    images: ``(n, size, size, 3)`` float32 in [0, 1].
    boxes: per image a ``(k, 4)`` float32 array of normalised ``(cx, cy, w, h)``.
    classes: per image a ``(k,)`` int64 array of class numbers into ``class_names``.
    instances: per image, the index of each pasted object in its source set (digits: the
        sheet index 0-4999; fashion: the index in the training file for train/val, in the
        test file for test; mixed: digits as is, fashion + 100 000), or None (a read folder).
    file_names: the image file names, when the scenes were read from a folder.
    """

    images: np.ndarray
    boxes: list
    classes: list
    class_names: list
    instances: list | None = None
    file_names: list | None = None
    split: str | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def boxes_xyxy(self, i: int) -> np.ndarray:
        """Image ``i``'s boxes as normalised corners ``(x0, y0, x1, y1)``."""
        b = self.boxes[i]
        return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)

    def subset(self, index) -> "Scenes":
        """The scenes at ``index`` (a slice or an array of indices), as a new Scenes."""
        idx = np.arange(len(self))[index]
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return Scenes(self.images[idx], pick(self.boxes), pick(self.classes), list(self.class_names),
                      pick(self.instances), pick(self.file_names), self.split)


# --------------------------------------------------------------------------------------------
# Object sources and their split pools
# --------------------------------------------------------------------------------------------

def class_names_of(source: str) -> list:
    """The class names of a source: digits "0".."9", Fashion-MNIST's ten, or both (mixed)."""
    _check_source(source)
    if source == "digits":
        return list(DIGITS_CLASSES)
    if source == "fashion":
        return list(FASHION_MNIST_CLASSES)
    return list(DIGITS_CLASSES) + list(FASHION_MNIST_CLASSES)


def split_instances(split: str) -> np.ndarray:
    """Indices (into ``load_digits(split="all")``, the sheet order) of the digits of ``split``.

    Each class's 500 digits are permuted once with a fixed seed and cut 400 / 50 / 50 into
    train / val / test: the three pools are disjoint and together hold all 5 000 digits.
    """
    _check_split(split)
    rng = np.random.default_rng(_DIGIT_SPLIT_SEED)
    out = []
    for k in range(len(DIGITS_CLASSES)):
        order = k * _DIGITS_PER_CLASS + rng.permutation(_DIGITS_PER_CLASS)
        start = 0
        for name in SPLITS:
            stop = start + _DIGIT_SPLIT[name]
            if name == split:
                out.append(order[start:stop])
            start = stop
    return np.sort(np.concatenate(out))


@lru_cache(maxsize=None)
def _digits():
    from ..data import load_digits

    x, y = load_digits(split="all")
    return x[..., 0], y


@lru_cache(maxsize=None)
def _fashion(part: str):
    from ..data import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    if part == "train":
        return x_train[..., 0], y_train
    return x_test[..., 0], y_test


class _Pool:
    """The object images one split may paste, by class: ``pick(k, rng) -> (image, instance)``."""

    def __init__(self, source: str, split: str):
        self.by_class = []
        if source in ("digits", "mixed"):
            x, y = _digits()
            idx = split_instances(split)
            self._add(x, y, idx, offset=0, solid=False)
        if source in ("fashion", "mixed"):
            part = "test" if split == "test" else "train"
            x, y = _fashion(part)
            if split == "test":
                idx = np.arange(len(x))
            elif split == "train":
                idx = np.arange(len(x) - _FASHION_VAL)
            else:
                idx = np.arange(len(x) - _FASHION_VAL, len(x))
            self._add(x, y, idx, offset=100_000 if source == "mixed" else 0, solid=True)

    def _add(self, x, y, idx, offset, solid):
        # classes are appended in order: for "mixed", digits 0-9 then fashion 10-19
        for k in range(10):
            self.by_class.append((x, idx[y[idx] == k], offset, solid))

    def pick(self, k: int, rng):
        """``(image, instance, solid)``: solid for a Fashion-MNIST item (see ``_object_alpha``)."""
        x, members, offset, solid = self.by_class[k]
        i = int(members[rng.integers(len(members))])
        return x[i], i + offset, solid


# --------------------------------------------------------------------------------------------
# Drawing one scene
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from PIL import Image

    from ..images import sample_image_path

    with Image.open(sample_image_path(name)) as im:
        return np.asarray(im.convert("RGB"))


def random_background(rng, size: int) -> np.ndarray:
    """A random square crop of a shipped photo, resized to ``size``, blurred and dimmed."""
    from PIL import Image, ImageFilter

    photo = _photo(BACKGROUND_PHOTOS[rng.integers(len(BACKGROUND_PHOTOS))])
    h, w = photo.shape[:2]
    side_max = min(h, w)
    side = int(rng.integers(min(side_max, max(32, side_max // 4)), side_max + 1))
    y0 = int(rng.integers(h - side + 1))
    x0 = int(rng.integers(w - side + 1))
    im = Image.fromarray(photo[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*BACKGROUND_BLUR))))
    dim = np.float32(rng.uniform(*BACKGROUND_DIM))
    return np.asarray(im, dtype=np.float32) * (dim / np.float32(255))


def _ink_colour(rng) -> np.ndarray:
    """A bright colour: any hue, saturation up to 0.8, value 1 (its largest channel is 1)."""
    r, g, b = colorsys.hsv_to_rgb(float(rng.random()), float(rng.uniform(0, 0.8)), 1.0)
    return np.array([r, g, b], np.float32)


def _ink_bbox(alpha: np.ndarray, level: float = INK_THRESHOLD):
    """``(y0, y1, x0, x1)``, end-exclusive, of the pixels with ``alpha >= level``, or None."""
    rows = np.flatnonzero((alpha >= level).any(axis=1))
    cols = np.flatnonzero((alpha >= level).any(axis=0))
    if rows.size == 0:
        return None
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _object_alpha(image: np.ndarray, longer_side: int, solid: bool = False) -> np.ndarray:
    """The object's opacity: cropped to its ink, longer side resized to ``longer_side``, and
    cropped again to the resized ink, with opacity below ``INK_THRESHOLD`` set to 0 so that
    the box drawn around the ink holds every pixel the object paints. ``solid`` (a
    Fashion-MNIST item): the ink is every pixel above ``SILHOUETTE_LEVEL``, and those below
    ``INK_THRESHOLD`` are raised to it (dark cloth shows, faint, instead of as a hole)."""
    from PIL import Image

    level = SILHOUETTE_LEVEL if solid else INK_THRESHOLD
    y0, y1, x0, x1 = _ink_bbox(image, level)
    ink = image[y0:y1, x0:x1]
    h, w = ink.shape
    scale = longer_side / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(ink.astype(np.float32), mode="F").resize((new_w, new_h), Image.BILINEAR)
    alpha = np.clip(np.asarray(resized, dtype=np.float32), 0, 1)
    if solid:
        alpha = np.where(alpha >= level, np.maximum(alpha, np.float32(INK_THRESHOLD)), np.float32(0))
    box = _ink_bbox(alpha)
    if box is None:                       # a stroke too thin to survive the resize: keep it solid
        return np.ones((max(1, new_h // 4), max(1, new_w // 4)), np.float32)
    y0, y1, x0, x1 = box
    alpha = alpha[y0:y1, x0:x1]
    return np.where(alpha >= INK_THRESHOLD, alpha, np.float32(0))


def _overlap_ok(box, placed, max_overlap: float, max_cover: float) -> bool:
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for p0, q0, p1, q1 in placed:
        iw = min(x1, p1) - max(x0, p0)
        ih = min(y1, q1) - max(y0, q0)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        other = (p1 - p0) * (q1 - q0)
        if inter / (area + other - inter) > max_overlap or inter / min(area, other) > max_cover:
            return False
    return True


def _scene(rng, background_rng, pool: _Pool, num_classes: int, size: int, min_object: int,
           max_object: int, max_objects: int, background: bool, max_overlap: float, max_cover: float):
    # the background has its own random stream: the objects land in the same places with or
    # without it (tests compare a scene with its black-canvas twin)
    canvas = random_background(background_rng, size) if background else np.zeros((size, size, 3), np.float32)
    count = int(rng.integers(1, max_objects + 1))
    placed, classes, instances = [], [], []
    for _ in range(count):
        k = int(rng.integers(num_classes))
        image, instance, solid = pool.pick(k, rng)
        alpha = _object_alpha(image, int(rng.integers(min_object, max_object + 1)), solid)
        colour = _ink_colour(rng)
        h, w = alpha.shape
        for _try in range(50):
            y0 = int(rng.integers(size - h + 1))
            x0 = int(rng.integers(size - w + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if _overlap_ok(box, placed, max_overlap, max_cover):
                break
        else:
            continue                       # no room left for this one
        a = alpha[..., None]
        region = canvas[y0:y0 + h, x0:x0 + w]
        canvas[y0:y0 + h, x0:x0 + w] = region * (1 - a) + colour * a   # "over": ink on top
        placed.append(box)
        classes.append(k)
        instances.append(instance)
    corners = np.array(placed, np.float32).reshape(-1, 4) / np.float32(size)
    boxes = np.concatenate([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], axis=1)
    return canvas, boxes.astype(np.float32), np.array(classes, np.int64), np.array(instances, np.int64)


def make_scenes(n: int, seed=0, source: str = "digits", size: int = 128, min_object: int = 12,
                max_object: int = 64, max_objects: int = 6, split: str = "train",
                background: bool = True, max_overlap: float = 0.3, max_cover: float = 0.5,
                callback=None) -> Scenes:
    """``n`` generated scenes (see the module docstring), the same for the same arguments.

    n: number of images; seed: an int (or a ``numpy.random.Generator``) for every random choice.
    source: ``"digits"``, ``"fashion"`` (Fashion-MNIST, needs the dataset installed) or
        ``"mixed"`` (20 classes). size: the canvas side in pixels.
    min_object, max_object: the longer side of an object's ink, in pixels (inclusive range).
    max_objects: each scene holds 1..max_objects objects (fewer when there is no room).
    split: which pool of object instances to draw from (``"train"``, ``"val"``, ``"test"``);
        use ``make_split`` to get the documented seed with it.
    background: False paints on black (tests use it to see the ink alone).
    max_overlap, max_cover: the overlap bound (IoU, and the fraction of either box covered).
    callback: called as ``callback(i, n)`` after each image (progress bars).
    """
    _check_source(source)
    _check_split(split)
    for name, value in (("n", n), ("size", size), ("min_object", min_object),
                        ("max_object", max_object), ("max_objects", max_objects)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (0 if name == "n" else 1):
            raise ValueError(f"make_scenes: {name} must be a {'non-negative' if name == 'n' else 'positive'} "
                             f"int, got {value!r}")
    if min_object < 4:
        raise ValueError(f"make_scenes: min_object must be at least 4 pixels, got {min_object}")
    if min_object > max_object:
        raise ValueError(f"make_scenes: min_object ({min_object}) > max_object ({max_object})")
    if max_object > size:
        raise ValueError(f"make_scenes: max_object ({max_object}) must fit in the canvas (size {size})")
    if not (0 <= max_overlap <= 1 and 0 <= max_cover <= 1):
        raise ValueError(f"make_scenes: max_overlap and max_cover must lie in [0, 1], "
                         f"got {max_overlap}, {max_cover}")
    rng, background_rng = np.random.default_rng(seed).spawn(2)
    pool = _Pool(source, split)
    names = class_names_of(source)
    images = np.empty((n, size, size, 3), np.float32)
    boxes, classes, instances = [], [], []
    for i in range(n):
        images[i], b, c, inst = _scene(rng, background_rng, pool, len(names), size, min_object, max_object, max_objects,
                                       background, max_overlap, max_cover)
        boxes.append(b)
        classes.append(c)
        instances.append(inst)
        if callback is not None:
            callback(i + 1, n)
    return Scenes(images, boxes, classes, names, instances, None, split)


def make_split(split: str, n: int, source: str = "digits", **kwargs) -> Scenes:
    """``n`` scenes of ``split`` ("train", "val", "test") with its documented seed
    ``SPLIT_SEEDS[split]`` (0, 1, 2) and its own pool of object instances."""
    _check_split(split)
    return make_scenes(n, seed=SPLIT_SEEDS[split], source=source, split=split, **kwargs)


def _check_source(source):
    if source not in SOURCES:
        raise ValueError(f"unknown scene source {source!r}; choose one of {', '.join(SOURCES)}")


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


# --------------------------------------------------------------------------------------------
# Writing: the YOLO folder layout and COCO json
# --------------------------------------------------------------------------------------------

def image_file_names(scenes: Scenes) -> list:
    """The file names the scenes are written under: their own, or ``00000.png``, ``00001.png``..."""
    if scenes.file_names is not None:
        return list(scenes.file_names)
    return [f"{i:05d}.png" for i in range(len(scenes))]


def write_yolo_folder(scenes: Scenes, folder) -> Path:
    """Write ``folder/images/NNNNN.png``, ``folder/labels/NNNNN.txt`` and ``folder/classes.txt``.

    A label file holds one line per object, ``class cx cy w h`` (YOLO / darknet's txt format:
    class number, then the box centre and size divided by the image side, 6 decimals); an
    image without objects gets an empty label file. ``classes.txt`` lists the class names,
    one a line, in class-number order. Returns the folder.
    """
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{name}\n" for name in scenes.class_names))
    for i, name in enumerate(image_file_names(scenes)):
        pixels = np.clip(np.rint(scenes.images[i] * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / name)
        lines = [f"{int(k)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
                 for k, (cx, cy, w, h) in zip(scenes.classes[i], scenes.boxes[i].tolist())]
        (folder / "labels" / (Path(name).stem + ".txt")).write_text("".join(lines))
    return folder


def coco_dict(scenes: Scenes) -> dict:
    """The scenes' ground truth as a COCO "instances" dictionary (see ``export_coco_json``)."""
    height, width = scenes.images.shape[1:3]
    images, annotations = [], []
    for i, name in enumerate(image_file_names(scenes)):
        images.append({"id": i + 1, "file_name": name, "width": int(width), "height": int(height)})
        for k, (cx, cy, w, h) in zip(scenes.classes[i].tolist(), scenes.boxes[i].tolist()):
            bw, bh = w * width, h * height
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(k) + 1,
                                "bbox": [(cx - w / 2) * width, (cy - h / 2) * height, bw, bh],
                                "area": bw * bh, "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": "object"}
                  for k, name in enumerate(scenes.class_names)]
    return {"info": {"description": "nbcnn generated detection scenes"},
            "images": images, "annotations": annotations, "categories": categories}


def export_coco_json(scenes: Scenes, path) -> Path:
    """Write the ground truth as COCO json (the "instances" layout pycocotools reads).

    Conventions: image ``i`` of the scenes has ``id`` i + 1 and the file name it is written
    under by ``write_yolo_folder``; class ``k`` has ``category_id`` k + 1 (COCO counts from 1);
    ``bbox`` is ``[x, y, width, height]`` in pixels from the top-left corner, ``area`` is the
    box's area (no masks here), ``iscrowd`` 0.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco_dict(scenes)))
    return path


__all__ = ["Scenes", "SOURCES", "SPLITS", "SPLIT_SEEDS", "INK_THRESHOLD", "BACKGROUND_PHOTOS",
           "class_names_of", "split_instances", "make_scenes", "make_split", "write_yolo_folder",
           "image_file_names", "coco_dict", "export_coco_json"]
