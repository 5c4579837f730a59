"""Darknet's preprocessing, number for number: decode, scale to [0, 1], letterbox.

What darknet does to a photo before YOLO sees it (``src/image.c``), and so what nbcnn does:

1. Decode to RGB bytes (darknet: OpenCV's ``imread`` then BGR -> RGB; nbcnn: Pillow's
   ``convert("RGB")``; the two decoders give the same bytes for darknet's sample photos, and
   the recording script checks it) and divide by 255: ``v / 255.`` in double, rounded to
   float32 (a 256-entry table here). No mean subtraction, no other normalisation.
2. ``letterbox_size``: fit the photo inside the network's 416 x 416 keeping its aspect
   ratio, in darknet's integer arithmetic: if ``416 / w < 416 / h`` (compared in float32)
   the width becomes 416 and ``new_h = (h * 416) // w``, else the height becomes 416 and
   ``new_w = (w * 416) // h``.
3. ``resize_image``: darknet's bilinear resize, separable and corner-aligned (the first and
   last pixels of the output sit on the first and last of the input): first along x into a
   ``(h, new_w)`` image, then along y, in float32, with darknet's exact index formulas::

       w_scale = (w - 1) / (new_w - 1)                  (float32)
       sx = c * w_scale;  ix = int(sx);  dx = sx - ix
       part[r, c] = (1 - dx) * im[r, ix] + dx * im[r, ix + 1]      (the last column: im[r, w - 1])
       sy = r * h_scale;  iy = int(sy);  dy = sy - iy
       out[r, c] = (1 - dy) * part[iy, c]  then  += dy * part[iy + 1, c]   (not on the last row)

   (On the last row darknet adds nothing, whatever ``dy`` is; kept as is.)
4. ``letterbox_image``: a 416 x 416 canvas filled with 0.5, the resized photo pasted at
   ``((416 - new_w) // 2, (416 - new_h) // 2)``.

Arrays here are (H, W, C), float32 — darknet stores (C, H, W), which changes no number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# darknet: data[i] = src[i] / 255.  (a double division, stored as float)
BYTE_TO_FLOAT = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def load_rgb(image) -> np.ndarray:
    """A photo as darknet reads it: (H, W, 3) float32 in [0, 1], RGB.

    ``image``: a path, a PIL image, a (H, W, 3) uint8 array, or a float array already in
    [0, 1] (returned as float32).
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            rgb = np.asarray(im.convert("RGB"))
    elif isinstance(image, Image.Image):
        rgb = np.asarray(image.convert("RGB"))
    else:
        rgb = np.asarray(image)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"an image array must be (H, W, 3) RGB, got shape {rgb.shape}")
        if rgb.dtype != np.uint8:
            if rgb.dtype.kind != "f":
                raise TypeError(f"an image array must be uint8 (0-255) or float (0-1), got dtype {rgb.dtype}")
            return np.ascontiguousarray(rgb, np.float32)
    return BYTE_TO_FLOAT[rgb]


def letterbox_size(w: int, h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """(new_w, new_h) of a w x h photo fitted in net_w x net_h, as darknet's letterbox_image."""
    if np.float32(net_w) / np.float32(w) < np.float32(net_h) / np.float32(h):
        return net_w, (h * net_w) // w
    return (w * net_h) // h, net_h


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's ``resize_image``: (H0, W0, C) float32 -> (h, w, C), bilinear, corner-aligned,
    along x then y (see the module docstring for the formulas)."""
    im = np.ascontiguousarray(im, np.float32)
    H0, W0 = im.shape[:2]
    one = np.float32(1)
    # along x: part (H0, w, C)
    part = np.empty((H0, w, im.shape[2]), np.float32)
    part[:, :] = im[:, W0 - 1:W0]  # the last column (and every column when W0 == 1 or w == 1)
    if W0 > 1 and w > 1:
        w_scale = np.float32(W0 - 1) / np.float32(w - 1)
        c = np.arange(w - 1)
        sx = c.astype(np.float32) * w_scale
        ix = sx.astype(np.int64)
        dx = (sx - ix.astype(np.float32))[None, :, None]
        part[:, :w - 1] = (one - dx) * im[:, ix] + dx * im[:, np.minimum(ix + 1, W0 - 1)]
    # along y: out (h, w, C)
    if h == 1 or H0 == 1:
        # darknet divides by h - 1 = 0 here (undefined); nbcnn takes the first row, scaled by 1
        return np.ascontiguousarray(np.repeat(part[:1], h, axis=0))
    h_scale = np.float32(H0 - 1) / np.float32(h - 1)
    r = np.arange(h)
    sy = r.astype(np.float32) * h_scale
    iy = sy.astype(np.int64)
    dy = (sy - iy.astype(np.float32))[:, None, None]
    out = (one - dy) * part[iy]
    inner = slice(0, h - 1)  # darknet adds the second term on every row but the last
    out[inner] += dy[inner] * part[np.minimum(iy[inner] + 1, H0 - 1)]
    return out


def letterbox_image(im: np.ndarray, net_w: int = 416, net_h: int = 416) -> np.ndarray:
    """darknet's ``letterbox_image``: the photo resized to fit, on a canvas of 0.5.

    im (H, W, C) float32 -> (net_h, net_w, C) float32.
    """
    h, w = im.shape[:2]
    new_w, new_h = letterbox_size(w, h, net_w, net_h)
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((net_h, net_w, im.shape[2]), 0.5, np.float32)
    top, left = (net_h - new_h) // 2, (net_w - new_w) // 2
    boxed[top:top + new_h, left:left + new_w] = resized
    return boxed


def preprocess(image, net_w: int = 416, net_h: int = 416) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo -> the network's input (1, net_h, net_w, 3) float32, and the photo's (width, height)."""
    rgb = load_rgb(image)
    return letterbox_image(rgb, net_w, net_h)[None], (rgb.shape[1], rgb.shape[0])
