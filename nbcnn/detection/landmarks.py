"""Step 2 of the lecture: landmark detection, K (x, y) points regressed from one image.

The points here are five landmarks of the pasted object, read off its ink (the same scene
drawn on a black canvas, ``make_scenes(background=False)``, gives the ink alone)::

    0 top      the topmost ink pixel (the mean column of the ink in that row)
    1 right    the rightmost ink pixel
    2 bottom   the bottommost ink pixel
    3 left     the leftmost ink pixel
    4 centre   the ink's centre of mass (each pixel weighted by its opacity)

They depend on the shape of each digit, not only on its box. Coordinates are pixel
centres divided by the image side, in [0, 1]. The network outputs 2K logits ``z``, read as
``point = s(z)`` (s: the logistic, so points stay inside the image); the loss of an image
is the mean squared distance between predicted and true points::

    L = (1 / K) sum_k (s(z_kx) - x*_k)^2 + (s(z_ky) - y*_k)^2
    d z = (2 / K) (s(z) - p*) s(z) (1 - s(z))

and the held-out figure the mean distance in pixels, ``size * mean_k |p_k - p*_k|``.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from .detector import Detector
from .step_outputs import decode_boxes  # noqa: F401  (the points' box)

LANDMARKS = ("top", "right", "bottom", "left", "centre")


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def landmarks_from_ink(ink) -> np.ndarray:
    """The five landmarks (5, 2) as (x, y) in [0, 1] of one object's ink, ink (H, W) opacity-like
    (the brightest channel of a black-canvas scene holding one object)."""
    ink = np.asarray(ink, np.float64)
    size_y, size_x = ink.shape
    on = ink > 0.2 * ink.max()
    rows, cols = np.nonzero(on)
    if len(rows) == 0:
        raise ValueError("no ink in the image: landmarks need one visible object")

    def point(r_sel, c_sel):
        return ((np.mean(c_sel) + 0.5) / size_x, (np.mean(r_sel) + 0.5) / size_y)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    pts = [point(rows[rows == top], cols[rows == top]), point(rows[cols == right], cols[cols == right]),
           point(rows[rows == bottom], cols[rows == bottom]), point(rows[cols == left], cols[cols == left])]
    w = ink * on
    yy, xx = np.mgrid[0:size_y, 0:size_x]
    pts.append((((xx * w).sum() / w.sum() + 0.5) / size_x, ((yy * w).sum() / w.sum() + 0.5) / size_y))
    return np.array(pts, np.float32)


def landmark_scenes(n: int, seed: int, split: str = "train", size: int = 64, min_object: int = 20,
                    max_object: int = 48, source: str = "digits"):
    """(images (n, size, size, 3), points (n, 5, 2)): one object per scene and its landmarks."""
    from .scenes import make_scenes

    max_object = min(max_object, size * 3 // 4)  # small canvases (tests) get objects that fit
    min_object = min(min_object, max_object)
    scenes = make_scenes(n, seed=seed, source=source, size=size, min_object=min_object, max_object=max_object,
                         max_objects=1, split=split)
    ink = make_scenes(n, seed=seed, source=source, size=size, min_object=min_object, max_object=max_object,
                      max_objects=1, split=split, background=False)
    points = np.stack([landmarks_from_ink(ink.images[i].max(axis=-1)) for i in range(n)])
    return scenes.images, points


def landmark_net(size: int = 64, k: int = len(LANDMARKS), widths=(16, 32, 64, 64), seed: int = 0) -> Detector:
    """A fresh landmark network: four conv blocks and a dense layer to 2K logits."""
    layers = []
    for w in widths:
        layers += [L.Conv2D(w, 3, padding="same"), L.LeakyReLU(0.1), L.MaxPooling2D(2)]
    layers += [L.Flatten(), L.Dense(128), L.LeakyReLU(0.1), L.Dense(2 * k)]
    return Detector(layers, input_shape=(size, size, 3), seed=seed, name="landmarks", kind="landmarks",
                    class_names=["object"], info={"landmarks": list(LANDMARKS[:k]) if k <= len(LANDMARKS) else k})


def loss_and_gradient(out, points):
    """Mean squared point distance over the batch ({"points", "loss"}) and d loss / d out."""
    z = np.asarray(out, np.float64)
    p = np.asarray(points, np.float64).reshape(z.shape[0], -1)
    if p.shape != z.shape:
        raise ValueError(f"{z.shape[1] // 2} points predicted per image but the targets have {p.shape[1] // 2}")
    k = z.shape[1] // 2
    s = _logistic(z)
    loss = ((s - p) ** 2).sum(axis=1) / k
    grad = (2.0 / k) * (s - p) * s * (1 - s) / z.shape[0]
    value = float(loss.mean())
    return {"points": value, "loss": value}, grad.astype(np.float32)


def predict_points(detector: Detector, images) -> np.ndarray:
    """(N, K, 2) predicted landmarks, (x, y) in [0, 1]."""
    z = np.asarray(detector.predict(detector.images_for_network(images)), np.float64)
    return _logistic(z).reshape(len(z), -1, 2).astype(np.float32)


def evaluate(detector: Detector, images, points) -> dict:
    """Held-out figures: ``mean_error_px`` (mean distance, pixels of the network input) overall
    and per landmark (``error_px_<name>``)."""
    pred = predict_points(detector, images)
    size = detector.size
    dist = np.linalg.norm(pred.astype(np.float64) - np.asarray(points, np.float64), axis=-1) * size
    out = {"mean_error_px": float(dist.mean())}
    names = LANDMARKS if dist.shape[1] == len(LANDMARKS) else [str(i) for i in range(dist.shape[1])]
    out.update({f"error_px_{n}": float(dist[:, i].mean()) for i, n in enumerate(names)})
    return out
