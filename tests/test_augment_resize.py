"""Resizing and crop-and-resize (the separable bilinear passes of nbcnn.augment) against a
per-pixel float64 oracle, and augment_scenes against numbers recorded from the earlier
implementation (four 2-D gathers per point, one random_crop call per image)."""

import math

import numpy as np
import pytest

from nbcnn.augment import crop_and_resize, random_crop, resize
from nbcnn.detection.box_augment import augment_scenes


def images(n, h, w, c, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, h, w, c)).astype(np.float32)


def read(image, r, c, fill):
    """image[r, c] at a fractional point, in float64: the four pixels around it, weighted by
    closeness (1 - dr)(1 - dc), ...; a neighbour outside the image counts as ``fill``."""
    h, w, _ = image.shape
    r0, c0 = math.floor(r), math.floor(c)
    dr, dc = r - r0, c - c0
    total = np.zeros(image.shape[2])
    for rr, wr in ((r0, 1 - dr), (r0 + 1, dr)):
        for cc, wc in ((c0, 1 - dc), (c0 + 1, dc)):
            inside = 0 <= rr < h and 0 <= cc < w
            total += wr * wc * (image[rr, cc].astype(np.float64) if inside else fill)
    return total


def resize_oracle(image, h_out, w_out, order="bilinear"):
    """Output pixel (i, j) reads input point ((i + 0.5) H / h - 0.5, (j + 0.5) W / w - 0.5),
    clamped to the image (pixel centres aligned, as Pillow and OpenCV)."""
    h, w, _ = image.shape
    out = np.zeros((h_out, w_out, image.shape[2]))
    for i in range(h_out):
        r = min(max((i + 0.5) * h / h_out - 0.5, 0), h - 1)
        for j in range(w_out):
            c = min(max((j + 0.5) * w / w_out - 0.5, 0), w - 1)
            if order == "nearest":
                out[i, j] = image[math.floor(r + 0.5), math.floor(c + 0.5)]
            else:
                out[i, j] = read(image, r, c, fill=0.0)
    return out


def window_oracle(image, top, left, height, width, fill):
    """The window of the image padded with ``fill`` on every side (as far as it reaches)."""
    h, w, _ = image.shape
    margin = max(-top, -left, top + height - h, left + width - w, 0)
    padded = np.pad(image.astype(np.float64), ((margin, margin), (margin, margin), (0, 0)),
                    constant_values=fill)
    return padded[top + margin:top + margin + height, left + margin:left + margin + width]


@pytest.mark.parametrize("shape, size", [((2, 5, 7, 3), (9, 4)), ((1, 8, 8, 1), 3),
                                         ((3, 4, 6, 2), (4, 6)), ((1, 1, 5, 3), (3, 10)),
                                         ((2, 6, 3, 3), (13, 1))])
@pytest.mark.parametrize("order", ["bilinear", "nearest"])
def test_resize_matches_the_per_pixel_formula(shape, size, order):
    x = images(*shape)
    h_out, w_out = (size, size) if isinstance(size, int) else size
    out = resize(x, size, order=order)
    assert out.shape == (shape[0], h_out, w_out, shape[3]) and out.dtype == np.float32
    for n in range(shape[0]):
        np.testing.assert_allclose(out[n], resize_oracle(x[n], h_out, w_out, order), atol=1e-6)
    np.testing.assert_allclose(resize(x.astype(np.float64), size, order=order)[0],
                               resize_oracle(x[0], h_out, w_out, order), atol=1e-12)


def test_resize_does_not_change_its_input():
    x = images(2, 5, 5, 3)
    before = x.copy()
    resize(x, (7, 3))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("fill", [0.0, 0.4])
def test_crop_and_resize_is_resize_of_the_padded_window(fill):
    x = images(5, 6, 8, 3, seed=1)
    windows = np.array([[1, 2, 4, 5],       # inside: a zoom-in
                        [-2, -3, 9, 12],    # past every side: a zoom-out with a border of fill
                        [0, 0, 6, 8],       # the whole image: unchanged
                        [4, 6, 5, 5],       # hanging off the bottom-right corner
                        [-1, 1, 3, 10]])    # wider than the image, clipped rows
    out = crop_and_resize(x, windows, (7, 9), fill=fill)
    assert out.shape == (5, 7, 9, 3) and out.dtype == np.float32
    for n, (top, left, h, w) in enumerate(windows):
        expected = resize_oracle(window_oracle(x[n], top, left, h, w, fill), 7, 9)
        np.testing.assert_allclose(out[n], expected, atol=1e-6, err_msg=f"window {n}")
    np.testing.assert_array_equal(crop_and_resize(x, windows[2:3].repeat(5, 0), (6, 8)), x)


def test_crop_and_resize_window_beside_the_image_is_all_fill():
    x = images(2, 4, 4, 2)
    out = crop_and_resize(x, [[0, 5, 4, 3], [-6, 0, 3, 4]], 5, fill=0.3)
    np.testing.assert_allclose(out, 0.3, atol=1e-7)


def test_crop_and_resize_rejects_bad_windows_and_integer_images():
    x = images(2, 4, 4, 1)
    with pytest.raises(ValueError, match=r"\(2, 4\) int array"):
        crop_and_resize(x, [[0, 0, 2, 2]], 3)
    with pytest.raises(ValueError, match=r"\(2, 4\) int array"):
        crop_and_resize(x, np.zeros((2, 4)), 3)
    with pytest.raises(ValueError, match=">= 1"):
        crop_and_resize(x, [[0, 0, 2, 2], [0, 0, 0, 2]], 3)
    with pytest.raises(TypeError, match="floating"):
        crop_and_resize(np.zeros((1, 4, 4, 1), np.uint8), [[0, 0, 2, 2]], 3)


@pytest.mark.parametrize("size, pad, fill", [(5, 0, 0.0), ((9, 7), 2, 0.5), (3, (1, 0), 0.0)])
def test_random_crop_resize_back_is_resize_of_the_drawn_padded_window(size, pad, fill):
    x = images(4, 6, 7, 3, seed=2)
    out, corners = random_crop(x, size, 3, pad=pad, resize_back=True, fill=fill, return_params=True)
    h, w = (size, size) if isinstance(size, int) else size
    pad_h, pad_w = (pad, pad) if isinstance(pad, int) else pad
    assert out.shape == x.shape
    for n, (top, left) in enumerate(corners):
        window = window_oracle(x[n], top - pad_h, left - pad_w, h, w, fill)
        np.testing.assert_allclose(out[n], resize_oracle(window, 6, 7), atol=1e-6)
    # the corners are drawn as without resize_back: the same windows, only not rescaled
    _, same = random_crop(x, size, 3, pad=pad, fill=fill, return_params=True)
    np.testing.assert_array_equal(corners, same)


def test_augment_scenes_repeats_the_recorded_draws_images_and_boxes():
    """Seed 7 on five 20x20 images draws: crop 15 (zoom in), then mirrored with crops 22
    (zoom out: a border of fill), 16, 22 and 20 (no crop). The numbers were recorded from the
    implementation before crop_and_resize; the next draw checks no draw was added or lost."""
    x = np.random.default_rng(11).random((5, 20, 20, 3)).astype(np.float32)
    boxes = [np.array([[0.3 + 0.08 * i, 0.5, 0.3, 0.4], [0.6, 0.35, 0.2, 0.2]], np.float32)
             for i in range(5)]
    classes = [np.array([i, 9]) for i in range(5)]
    before = x.copy()
    rng = np.random.default_rng(7)
    out, new_boxes, new_classes = augment_scenes(x, boxes, classes, rng, mirror=0.5,
                                                 scale=(0.7, 1.4), shift=0.1, fill=0.25)
    assert rng.random() == pytest.approx(0.5141176465995139, abs=0)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), [[203.38058472, 196.90951538, 241.76335144],
                                                      [199.95494080, 185.59284973, 231.54302979],
                                                      [176.90005493, 166.65222168, 214.33807373],
                                                      [147.61529541, 143.25781250, 191.02946472],
                                                      [194.89161682, 234.68872070, 202.55854797]],
                               rtol=1e-6)
    np.testing.assert_allclose(out[:, 10, 10, 0], [0.67197782, 0.097284, 0.72937536, 0.1638339,
                                                   0.82646132], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 0, 1], [0.82530308, 0.27443585, 0.40349013, 0.15713605,
                                                 1.0], atol=1e-6)
    recorded = [[[0.16666667, 0.46666667, 0.33333334, 0.53333336],
                 [0.53333336, 0.26666665, 0.26666668, 0.26666668]],
                [[0.56363636, 0.54545456, 0.27272728, 0.36363637],
                 [0.36363634, 0.40909091, 0.18181819, 0.18181819]],
                [[0.48749995, 0.625, 0.375, 0.5], [0.31249997, 0.4375, 0.25, 0.25]],
                [[0.50909090, 0.5, 0.27272728, 0.36363637],
                 [0.45454544, 0.36363634, 0.18181819, 0.18181819]],
                [[0.38, 0.5, 0.30000001, 0.40000001], [0.39999998, 0.34999999, 0.2, 0.2]]]
    for b, c, want in zip(new_boxes, new_classes, recorded):
        np.testing.assert_allclose(b, want, atol=1e-7)
        assert c.tolist()[1] == 9
    assert [c[0] for c in new_classes] == [0, 1, 2, 3, 4]
