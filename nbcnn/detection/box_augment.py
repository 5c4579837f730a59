"""Augmentation for detection: the transforms of ``nbcnn.augment``, moving the boxes with the pixels.

A transform that moves pixels must move the labels too, or the network learns boxes in the
wrong places. Boxes are normalised ``(cx, cy, w, h)``; with pixel edges at 0 and ``W`` (the
convention of ``augment.resize``: an edge at normalised x lands at x after any rescale):

    mirror           cx -> 1 - cx                                   (pixels: x -> W - x)
    crop and scale   cut a window of side c at (top, left) of the image padded by ``pad``,
                     scale it back to the input size:
                         x -> (x * W + pad - left) / c               (likewise y with top)
                         w -> w * W / c
                     c < W zooms in (objects grow), c > W zooms out (a border of ``fill``)
    colour shift     pixels only; boxes unchanged

After a crop, boxes are clipped to the image; a box that keeps less than ``min_visible`` of
its area, or is under 2 pixels a side, is dropped with its class.
"""

from __future__ import annotations

import numpy as np

from .. import augment


def mirror_boxes(boxes) -> np.ndarray:
    """Boxes of an image flipped left <-> right: ``cx -> 1 - cx``."""
    b = np.array(boxes, np.float32, copy=True).reshape(-1, 4)
    b[:, 0] = 1.0 - b[:, 0]
    return b


def crop_boxes(boxes, classes, top: int, left: int, crop: int, pad: int, size: int, min_visible: float = 0.4):
    """Boxes and classes of an image after ``random_crop(pad=pad)`` took the ``crop`` x ``crop``
    window at (top, left) and it was resized back to ``size``: moved, scaled, clipped, and
    those mostly cut off dropped."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    c = np.asarray(classes).reshape(-1)
    x0 = ((b[:, 0] - b[:, 2] / 2) * size + pad - left) / crop
    x1 = ((b[:, 0] + b[:, 2] / 2) * size + pad - left) / crop
    y0 = ((b[:, 1] - b[:, 3] / 2) * size + pad - top) / crop
    y1 = ((b[:, 1] + b[:, 3] / 2) * size + pad - top) / crop
    area = (x1 - x0) * (y1 - y0)
    cx0, cx1, cy0, cy1 = np.clip(x0, 0, 1), np.clip(x1, 0, 1), np.clip(y0, 0, 1), np.clip(y1, 0, 1)
    kept_area = (cx1 - cx0) * (cy1 - cy0)
    keep = (kept_area >= min_visible * area) & ((cx1 - cx0) * size >= 2) & ((cy1 - cy0) * size >= 2)
    out = np.stack([(cx0 + cx1) / 2, (cy0 + cy1) / 2, cx1 - cx0, cy1 - cy0], axis=1)[keep]
    return out.astype(np.float32).reshape(-1, 4), c[keep]


def augment_scenes(images, boxes, classes, rng, mirror: float = 0.5, scale=(0.75, 1.25), shift: float = 0.1,
                   fill: float = 0.0):
    """A randomly transformed copy of a batch of scenes: ``(images, boxes, classes)``.

    Per image: mirrored with probability ``mirror``; cropped at a random place with a window
    of side ``size / s``, ``s`` drawn uniformly in ``scale`` (s > 1 zooms in), and scaled back
    to ``size``; each colour channel shifted by up to ``shift``. ``rng``: a numpy Generator
    (everything is drawn from it, so a seeded run repeats exactly).
    """
    x = np.asarray(images, np.float32)
    n, size, width = x.shape[0], x.shape[1], x.shape[2]
    flip = np.zeros(n, bool)
    windows = np.tile(np.array([0, 0, size, width]), (n, 1))   # (top, left, h, w): the whole image
    new_boxes, new_classes = [], []
    lo, hi = scale
    for i in range(n):   # the draws, image by image in this order, so a seeded run repeats exactly
        b, c = np.asarray(boxes[i], np.float32).reshape(-1, 4), np.asarray(classes[i])
        if rng.random() < mirror:
            flip[i], b = True, mirror_boxes(b)
        s = rng.uniform(lo, hi)
        crop = int(round(size / s))
        if crop != size:
            pad = max(0, crop - size)
            # the corner in the padded image, drawn as augment.random_crop draws it for one image
            top = int(rng.integers(0, size + 2 * pad - crop + 1, size=1)[0])
            left = int(rng.integers(0, width + 2 * pad - crop + 1, size=1)[0])
            windows[i] = (top - pad, left - pad, crop, crop)
            b, c = crop_boxes(b, c, top, left, crop, pad, size)
        new_boxes.append(b)
        new_classes.append(c)
    # A flipped image: cut the mirror image of its window from the unflipped image, rescale,
    # then flip the result (rescaling with centres aligned commutes with mirroring), so the
    # input is never copied. All crops and rescales in one call; the pad reads as fill.
    windows[flip, 1] = width - windows[flip, 1] - windows[flip, 3]
    out = augment.crop_and_resize(x, windows, (size, width), fill=fill)
    out[flip] = out[flip, :, ::-1]
    if shift:
        out = augment.color_shift(out, shift, rng)
    return out, new_boxes, new_classes
