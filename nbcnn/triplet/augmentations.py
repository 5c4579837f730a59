"""Random variants of training images for the encoder: a new handwriting, a new photo of a face.

An encoder that must recognise *unseen* identities has to ignore what varies between two
images of one identity (slant, stroke width, position; pose and lighting in photos) and keep
what tells identities apart. Training on random variants of each image teaches the first.
Measured on the seen digits alone (trained on 0-3, unseen 4 and 5), it raised the unseen-pair
AUC from 0.93 to 0.95, so ``nbcnn faces train`` augments by default; on the held-out 6-9 the
same comparison came out the other way (0.89 with, 0.90 without: see the README's faces section).

    handwriting(x, rng)   rotate +-12 degrees, shear +-0.2, shift +-2 px, and thicken or thin
                          the strokes (a 3x3 cross max / min filter) a third of the time each
    photos(x, rng)        mirror half of them, rotate +-10 degrees, shift +-6% of the size,
                          brightness +-0.1
"""

from __future__ import annotations

import numpy as np

from .. import augment as A


def stroke_width(x, rng) -> np.ndarray:
    """Thicken (dilate), thin (erode) or keep each image's strokes, one third each: the max or min
    over the pixel and its 4 neighbours (a plus-shaped 3x3 window)."""
    x = np.asarray(x)
    kind = rng.integers(0, 3, len(x))
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    H, W = x.shape[1:3]
    shifted = [p[:, 1 + dy:1 + dy + H, 1 + dx:1 + dx + W] for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]
    out = x.copy()
    out[kind == 1] = np.max(shifted, axis=0)[kind == 1]
    out[kind == 2] = np.min(shifted, axis=0)[kind == 2]
    return out


def bilinear(x, rows, cols, fill: float = 0.0) -> np.ndarray:
    """Sample images x (N, H, W, C) at fractional points rows, cols (N, H, W): the blend of the 4
    nearest pixels; points outside the image read ``fill``."""
    N, H, W, C = x.shape
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    n = np.arange(N)[:, None, None]
    out = np.zeros((N, H, W, C), np.float64)
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        inside = ((rr >= 0) & (rr < H) & (cc >= 0) & (cc < W))[..., None]
        out += w * np.where(inside, x[n, rr.clip(0, H - 1), cc.clip(0, W - 1)], fill)
    return out.astype(x.dtype)


def elastic(x, rng, magnitude: float = 1.5, grid: int = 4) -> np.ndarray:
    """A smooth random warp of each image (Simard et al. 2003's elastic distortion, the classic
    augmentation of handwritten digits): random shifts of up to ``magnitude`` pixels on a coarse
    ``grid`` x ``grid`` lattice, interpolated bilinearly to every pixel."""
    x = np.asarray(x, np.float32)
    N, H, W, _ = x.shape
    coarse = rng.uniform(-magnitude, magnitude, (N, grid, grid, 2)).astype(np.float32)
    field = A.resize(coarse, (H, W))
    rows = np.arange(H, dtype=np.float64)[None, :, None] + field[..., 0]
    cols = np.arange(W, dtype=np.float64)[None, None, :] + field[..., 1]
    return bilinear(x, rows, cols)


def handwriting(x, rng) -> np.ndarray:
    rng = np.random.default_rng(rng)
    x = A.rotate(x, (-12, 12), rng)
    x = A.shear(x, (-0.2, 0.2), rng)
    x = A.random_crop(x, x.shape[1:3], rng, pad=2)
    x = elastic(x, rng)
    return stroke_width(x, rng).astype(np.float32)


def photos(x, rng) -> np.ndarray:
    rng = np.random.default_rng(rng)
    x = np.asarray(x, np.float32)
    flip = rng.random(len(x)) < 0.5
    x = np.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    x = A.rotate(x, (-10, 10), rng)
    pad = max(1, int(round(0.06 * x.shape[1])))
    x = A.random_crop(x, x.shape[1:3], rng, pad=pad)
    x = x + rng.uniform(-0.1, 0.1, (len(x), 1, 1, 1))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def for_dataset(dataset: str):
    """The augmentation that suits ``dataset``: handwriting for the digits and MNIST, photos otherwise."""
    return handwriting if dataset in ("digits", "mnist") else photos
