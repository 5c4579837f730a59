"""Read a detection set in the YOLO folder layout: ``images/`` + ``labels/`` (+ ``classes.txt``).

    scenes = read_yolo_folder("my-data")                 # classes from my-data/classes.txt
    scenes = read_yolo_folder("my-data", num_classes=3, size=128)

The layout (darknet's and ultralytics' txt format, what ``write_yolo_folder`` writes)::

    my-data/
      classes.txt          optional: the class names, one a line, line k naming class k
      images/a.png         any image Pillow reads (.png .jpg .jpeg .bmp .gif .tif .tiff .webp)
      labels/a.txt         one object a line:  class cx cy w h
                           class: an integer in [0, num_classes); cx cy w h: the box centre and
                           size divided by the image width (cx, w) and height (cy, h), in [0, 1];
                           an empty file: an image with no objects

Problems are never dropped silently: every bad line (wrong number of fields, a field that is
not a number, a class that is not an integer or not a known class, coordinates outside [0, 1],
a box of zero size or sticking out of the image), every image without a label file, every label
file without an image, and every image Pillow cannot read is collected, and one
``LabelError`` (a ``ValueError``) lists them all as ``file:line: problem``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scenes import Scenes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Labels are written with 6 decimals: a box edge may stick out of [0, 1] by rounding only.
EDGE_TOLERANCE = 1e-5


class LabelError(ValueError):
    """Bad labels or files in a detection folder; ``.problems`` lists them, one string each."""

    def __init__(self, folder, problems: list):
        self.folder = Path(folder)
        self.problems = list(problems)
        shown = self.problems[:50]
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{folder}: {len(self.problems)} problem(s) in the detection labels:\n  "
                         + "\n  ".join(shown) + more)


def parse_label_line(line: str, num_classes: int | None):
    """One ``class cx cy w h`` line -> ``(class, (cx, cy, w, h))``, or a string saying what is wrong."""
    fields = line.split()
    if len(fields) != 5:
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}"
    try:
        values = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_number(f))
        return f"not a number: {bad!r} in {line.strip()!r}"
    if not all(np.isfinite(values)):
        return f"not a finite number in {line.strip()!r}"
    k = values[0]
    if k != int(k):
        return f"class must be an integer, got {fields[0]!r}"
    k = int(k)
    if k < 0 or (num_classes is not None and k >= num_classes):
        known = f"[0, {num_classes})" if num_classes is not None else "0 or more"
        return f"unknown class {k} (classes are {known})"
    cx, cy, w, h = values[1:]
    if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
        return f"coordinates must lie in [0, 1] (normalised cx cy w h), got {cx:g} {cy:g} {w:g} {h:g}"
    if w <= 0 or h <= 0:
        return f"box of zero size: w {w:g}, h {h:g}"
    tol = EDGE_TOLERANCE
    if cx - w / 2 < -tol or cy - h / 2 < -tol or cx + w / 2 > 1 + tol or cy + h / 2 > 1 + tol:
        return (f"box sticks out of the image: x {cx - w / 2:g}..{cx + w / 2:g}, "
                f"y {cy - h / 2:g}..{cy + h / 2:g} (must lie in [0, 1])")
    return k, (cx, cy, w, h)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_class_names(folder) -> list | None:
    """The names in ``folder/classes.txt`` (blank lines at the end ignored), or None without it."""
    path = Path(folder) / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines()]
    while names and not names[-1]:
        names.pop()
    return names


def read_yolo_folder(folder, num_classes: int | None = None, size: int | None = None) -> Scenes:
    """Read ``folder/images`` and ``folder/labels`` into a ``Scenes`` (images in file-name order).

    num_classes: the number of classes; default: the lines of ``classes.txt``; without that
        file, one more than the largest class seen (names "0", "1", ...) — then an unknown
        class cannot be told from a new one, so pass it when you know it.
    size: resize every image to ``size`` x ``size`` (normalised boxes do not change); without
        it, all images must have the same size (a folder of mixed sizes is a LabelError).
    Raises ``FileNotFoundError`` for a missing folder, ``LabelError`` listing every problem.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"detection folder not found: {folder}")
    for sub in ("images", "labels"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder}: no {sub}/ folder (the layout is {folder}/images/*.png "
                                    f"and {folder}/labels/*.txt, one 'class cx cy w h' line per object)")
    names = read_class_names(folder)
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise LabelError(folder, [f"{folder / 'classes.txt'}: lists {len(names)} classes, "
                                  f"but num_classes={num_classes}"])
    if num_classes is None and names is not None:
        num_classes = len(names)

    image_files = {p.stem: p for p in sorted((folder / "images").iterdir())
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    label_files = {p.stem: p for p in sorted((folder / "labels").iterdir())
                   if p.is_file() and p.suffix == ".txt"}
    problems = []
    for stem in sorted(set(label_files) - set(image_files)):
        problems.append(f"{label_files[stem]}: a label file without an image (no images/{stem}.*)")
    for stem in sorted(set(image_files) - set(label_files)):
        problems.append(f"{image_files[stem]}: an image without a label file (expected labels/{stem}.txt; "
                        "write an empty one for an image with no objects)")
    if not image_files and not label_files:
        problems.append(f"{folder / 'images'}: no images")

    stems = sorted(set(image_files) & set(label_files))
    pictures, boxes, classes = [], [], []
    for stem in stems:
        label_path = label_files[stem]
        try:
            text = label_path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{label_path}: cannot read it ({exc})")
            text = ""
        b, c = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parsed = parse_label_line(line, num_classes)
            if isinstance(parsed, str):
                problems.append(f"{label_path}:{number}: {parsed}")
                continue
            c.append(parsed[0])
            b.append(parsed[1])
        try:
            with Image.open(image_files[stem]) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                pixels = np.asarray(im, dtype=np.float32) / np.float32(255)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            problems.append(f"{image_files[stem]}: cannot read the image ({exc})")
            pixels = None
        pictures.append(pixels)
        boxes.append(np.array(b, np.float32).reshape(-1, 4))
        classes.append(np.array(c, np.int64))

    shapes = sorted({p.shape for p in pictures if p is not None})
    if len(shapes) > 1:
        counts = {s: sum(1 for p in pictures if p is not None and p.shape == s) for s in shapes}
        problems.append(f"{folder / 'images'}: images of different sizes "
                        f"({', '.join(f'{s[1]}x{s[0]}: {n}' for s, n in counts.items())}); "
                        "pass size= (--size) to resize them all")
    if problems:
        raise LabelError(folder, problems)

    if num_classes is None:
        num_classes = max((int(c.max()) + 1 for c in classes if c.size), default=1)
    if names is None:
        names = [str(k) for k in range(num_classes)]
    images = np.stack(pictures) if pictures else np.zeros((0, size or 0, size or 0, 3), np.float32)
    return Scenes(images, boxes, classes, names, None, [image_files[s].name for s in stems], None)


__all__ = ["LabelError", "IMAGE_SUFFIXES", "parse_label_line", "read_class_names", "read_yolo_folder"]
