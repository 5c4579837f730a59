"""Data augmentation: each transform checked against the property that defines it."""

from functools import partial

import numpy as np
import pytest

from nbcnn.augment import Augmenter, color_shift, mirror, random_crop, resize, rotate, shear


def batch(n=4, h=6, w=6, c=3, seed=0, lo=0.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, h, w, c)).astype(np.float32)


# ---- mirror ---------------------------------------------------------------------------------

def test_mirror_reverses_columns_and_twice_is_identity():
    x = batch(h=5, w=7)
    m = mirror(x)
    assert m.shape == x.shape and m.dtype == x.dtype
    for j in range(7):
        np.testing.assert_array_equal(m[:, :, j], x[:, :, 6 - j])
    np.testing.assert_array_equal(mirror(m), x)
    assert not np.shares_memory(m, x)


# ---- random crop ----------------------------------------------------------------------------

def test_crop_has_requested_size_and_is_a_slice_at_the_drawn_offset():
    x = batch(n=8, h=10, w=12)
    out, corners = random_crop(x, (6, 5), rng=3, return_params=True)
    assert out.shape == (8, 6, 5, 3)
    assert corners.shape == (8, 2)
    for k, (top, left) in enumerate(corners):
        assert 0 <= top <= 10 - 6 and 0 <= left <= 12 - 5
        np.testing.assert_array_equal(out[k], x[k, top:top + 6, left:left + 5])
    assert len({tuple(c) for c in corners}) > 1  # each image draws its own corner


def test_crop_with_pad_keeps_size_and_slices_the_padded_image():
    x = batch(n=6, h=8, w=8)
    out, corners = random_crop(x, 8, rng=1, pad=2, return_params=True)
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for k, (top, left) in enumerate(corners):
        assert 0 <= top <= 4 and 0 <= left <= 4
        np.testing.assert_array_equal(out[k], padded[k, top:top + 8, left:left + 8])


def test_crop_resize_back_returns_input_size_and_full_crop_is_identity():
    x = batch(n=3, h=8, w=10)
    assert random_crop(x, 5, rng=0, resize_back=True).shape == x.shape
    np.testing.assert_array_equal(random_crop(x, (8, 10), rng=0), x)          # the only window
    np.testing.assert_allclose(random_crop(x, (8, 10), rng=0, resize_back=True), x, atol=1e-7)


def test_crop_too_large_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        random_crop(batch(h=6, w=6), 7, rng=0)


def test_resize_doubles_a_constant_and_halves_by_averaging_pairs():
    x = np.full((1, 3, 3, 2), 0.25, np.float32)
    np.testing.assert_allclose(resize(x, (6, 9)), 0.25)
    y = batch(n=2, h=4, w=4, c=1)
    # 4 -> 2: output pixel i samples input (i + 0.5) * 2 - 0.5 = 2i + 0.5, the mean of 2i, 2i+1
    expected = y.reshape(2, 2, 2, 2, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(resize(y, 2), expected, rtol=1e-6)


# ---- rotate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["bilinear", "nearest"])
def test_rotate_0_and_360_are_identity(order):
    x = batch(h=5, w=7)
    np.testing.assert_array_equal(rotate(x, 0, order=order), x)
    np.testing.assert_array_equal(rotate(x, 360, order=order), x)
    np.testing.assert_array_equal(rotate(x, -720, order=order), x)


@pytest.mark.parametrize("order", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [5, 6])
def test_rotate_quarter_turns_match_rot90_counter_clockwise(order, size):
    x = batch(h=size, w=size)
    for k in (1, 2, 3, -1):
        np.testing.assert_array_equal(rotate(x, 90 * k, order=order), np.rot90(x, k, axes=(1, 2)))


def test_rotate_positive_angle_is_counter_clockwise_as_displayed():
    # a dot right of the centre (row 2, col 4 of a 5x5) turned +90 ends up above it (row 0, col 2)
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 4] = 1
    out = rotate(x, 90)
    assert out[0, 0, 2, 0] == 1 and out.sum() == 1


def test_rotate_fills_uncovered_corners_and_draws_angles_per_image():
    x = np.ones((3, 9, 9, 1), np.float32)
    out, angles = rotate(x, (-30, 30), rng=0, return_params=True, fill=0.0)
    assert angles.shape == (3,) and np.all(np.abs(angles) <= 30) and len(set(angles)) == 3
    assert np.all(out[:, 4, 4] == 1)                     # the centre stays inside
    out45 = rotate(x, 45, fill=0.5)
    assert out45[0, 0, 0, 0] == 0.5                      # the corner came from outside
    np.testing.assert_array_equal(rotate(x, 10, rng=7), rotate(x, 10, rng=8))  # fixed angle: no draw
    np.testing.assert_array_equal(rotate(x, (-30, 30), rng=5), rotate(x, (-30, 30), rng=5))


# ---- shear ----------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", ["x", "y"])
def test_shear_zero_is_identity(axis):
    x = batch(h=5, w=8)
    np.testing.assert_array_equal(shear(x, 0.0, axis=axis), x)


@pytest.mark.parametrize("k", [1, 2, -1])
def test_shear_x_moves_row_r_by_k_times_r_from_the_centre(k):
    # an impulse in every row, at the centre column: row r must move k * (r - centre) columns
    h = w = 9
    x = np.zeros((1, h, w, 1), np.float32)
    x[0, :, 4] = 1
    out = shear(x, k)
    for r in range(h):
        col = 4 + k * (r - 4)
        row = out[0, r, :, 0]
        if 0 <= col < w:
            assert row[col] == 1 and row.sum() == 1, (r, row)
        else:
            assert row.sum() == 0   # pushed out of the frame


def test_shear_y_moves_column_c_down_and_fractional_k_keeps_ink():
    x = np.zeros((1, 9, 9, 1), np.float32)
    x[0, 4, :] = 1                  # a horizontal line through the centre
    out = shear(x, 1, axis="y")
    for c in range(9):
        assert out[0, 4 + (c - 4), c, 0] == 1
    # a half-pixel move splits each impulse over two neighbours, weights summing to 1
    soft = shear(x, 0.5, axis="y")
    np.testing.assert_allclose(soft[0, :, 2:7, 0].sum(axis=0), 1.0, rtol=1e-6)


def test_shear_factors_drawn_per_image_and_reproducible():
    x = batch(n=5)
    a, ks = shear(x, (-0.3, 0.3), rng=11, return_params=True)
    b = shear(x, (-0.3, 0.3), rng=11)
    np.testing.assert_array_equal(a, b)
    assert ks.shape == (5,) and np.all(np.abs(ks) <= 0.3)


# ---- colour shift ---------------------------------------------------------------------------

def test_color_shift_moves_each_channel_mean_by_the_drawn_offset():
    x = batch(n=6, h=8, w=8, c=3, lo=0.3, hi=0.7)        # no clipping with delta 0.2
    out, offsets = color_shift(x, 0.2, rng=4, return_params=True)
    assert out.shape == x.shape and out.dtype == np.float32 and offsets.shape == (6, 3)
    assert np.all(np.abs(offsets) <= 0.2) and np.unique(offsets).size == 18
    moved = out.astype(np.float64).mean(axis=(1, 2)) - x.astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(moved, offsets, atol=1e-6)
    # every pixel of a channel moves by the same amount
    np.testing.assert_allclose(out - x, np.broadcast_to(offsets[:, None, None, :], x.shape), atol=1e-6)


def test_color_shift_is_reproducible_and_clips():
    x = batch(n=4)
    np.testing.assert_array_equal(color_shift(x, 0.1, rng=9), color_shift(x, 0.1, rng=9))
    assert not np.array_equal(color_shift(x, 0.1, rng=9), color_shift(x, 0.1, rng=10))
    big = color_shift(x, 5.0, rng=0)
    assert big.min() >= 0 and big.max() <= 1
    gen = np.random.default_rng(2)
    first = color_shift(x, 0.1, rng=gen)
    assert not np.array_equal(first, color_shift(x, 0.1, rng=gen))  # a Generator moves on


# ---- the pipeline ---------------------------------------------------------------------------

def make_pipeline(seed):
    return Augmenter([
        (mirror, 0.5),
        (partial(rotate, angle=(-15, 15)), 0.5),
        (partial(shear, k=(-0.2, 0.2)), 0.3),
        (partial(color_shift, delta=0.1), 0.8),
        partial(random_crop, size=6, pad=1),
    ], seed=seed)


def test_augmenter_same_seed_same_output():
    x = batch(n=16)
    a, b = make_pipeline(0), make_pipeline(0)
    for _ in range(3):                                       # three "epochs"
        out_a, out_b = a(x), b(x)
        assert out_a.shape == x.shape and out_a.dtype == x.dtype
        np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(make_pipeline(1)(x), make_pipeline(0)(x))


def test_augmenter_probability_picks_images():
    x = batch(n=200, h=3, w=3, c=1)
    np.testing.assert_array_equal(Augmenter([(mirror, 0.0)], seed=0)(x), x)
    np.testing.assert_array_equal(Augmenter([(mirror, 1.0)], seed=0)(x), mirror(x))
    half = Augmenter([(mirror, 0.5)], seed=0)(x)
    flipped = np.all(half == mirror(x), axis=(1, 2, 3)) & ~np.all(half == x, axis=(1, 2, 3))
    assert 70 < flipped.sum() < 130
    np.testing.assert_array_equal(x, batch(n=200, h=3, w=3, c=1))   # input untouched


def test_augmenter_rejects_shape_change_with_p_below_1():
    aug = Augmenter([(partial(random_crop, size=4), 0.5)], seed=0)
    with pytest.raises(ValueError, match="changed the image shape"):
        aug(batch(n=20))


@pytest.mark.parametrize("fn", [rotate, shear, color_shift])
def test_transforms_reject_non_batches_and_integer_images(fn):
    with pytest.raises(ValueError, match="NHWC"):
        fn(np.zeros((6, 6, 3), np.float32), 0.1)
    with pytest.raises(TypeError, match="floating"):
        fn(np.zeros((1, 6, 6, 3), np.uint8), 0.1)
