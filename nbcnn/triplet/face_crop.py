"""Photos in, face crops out: the step between the face detector and the face encoder.

    photo = read_photo("obama.jpg")              # (H, W, 3) uint8 RGB, EXIF rotation applied
    chip = crop_face(photo, box)                 # (150, 150, 3) uint8: the encoder's input

``crop_face`` takes the square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box
(corners ``x1, y1, x2, y2`` in pixels, as the detector gives them), rounds it to whole pixels,
cuts it out (black where it leaves the photo) and resizes it to ``size x size`` with Pillow's
**bilinear** filter (which, when shrinking, averages over the whole footprint of each output
pixel, so it also antialiases).

The resampling is part of the encoder's input: on the shipped photos, cropping the same boxes
with Lanczos instead of bilinear moves face-api's 128-d embeddings by up to ~0.1 (Euclidean),
a sixth of the 0.6 threshold. Compare embeddings made with the same crop.

The default margin is 0: the tiny face detector's boxes already run from the forehead to the
chin with some room around; on the shipped photos (face-api's own embeddings, measured
2026-11-30) a margin of 0 gives same-person distances 0.45-0.49 and different-person ones
0.70 and above, while margin 0.2 brings different people down to 0.53 and 0.3 to 0.46, below
the threshold. dlib's own 150x150 chips are aligned on five landmarks, which this pipeline
does not do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import MAX_PIXELS

FACE_SIZE = 150  # dlib's face chips, the input of its ResNet encoder


def read_photo(path) -> np.ndarray:
    """A photo file as an (H, W, 3) uint8 RGB array, turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such photo")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a photo Pillow can read ({error})") from None


def check_photo(image, what: str = "photo") -> np.ndarray:
    """``image`` as an (H, W, 3) uint8 array: 0..255 RGB, the values face-api's networks take."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what}: expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"{what}: expected uint8 pixels 0..255, got {image.dtype} "
                        "(read photos with nbcnn.triplet.face_crop.read_photo)")
    return image


def face_square(box, margin: float = 0.0) -> tuple[int, int, int, int]:
    """The whole-pixel square ``(left, top, right, bottom)`` that ``crop_face`` cuts for ``box``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"face box {tuple(box)}: expected finite corners x1 < x2, y1 < y2")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin {margin}: expected a fraction of the box size >= 0")
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    side = max(1, round(side))
    return left, top, left + side, top + side


def crop_face(image, box, size: int = FACE_SIZE, margin: float = 0.0) -> np.ndarray:
    """The ``size x size`` uint8 crop of ``box`` (see the module docstring for the square and the filter)."""
    from PIL import Image

    image = check_photo(image)
    square = face_square(box, margin)
    chip = Image.fromarray(image).crop(square).resize((size, size), Image.BILINEAR)
    return np.asarray(chip, dtype=np.uint8)
