"""nbcnn.images: load and save images as float arrays; the shipped sample image."""

import numpy as np
import pytest
from PIL import Image

from nbcnn.images import load_image, sample_image_path, save_image


def test_the_sample_image_is_shipped_small_and_greyscale():
    path = sample_image_path()
    assert path.name == "sudoku.png" and path.stat().st_size < 100_000
    with Image.open(path) as im:
        assert im.mode == "L" and im.width <= 320
    assert (path.parent / "README.md").is_file()  # its source and licence
    with pytest.raises(FileNotFoundError, match="nope.png"):
        sample_image_path("nope.png")


def test_load_gives_float32_in_unit_range():
    rgb = load_image(sample_image_path())
    grey = load_image(sample_image_path(), grey=True)
    assert rgb.dtype == grey.dtype == np.float32
    assert rgb.shape == grey.shape[:2] + (3,) and grey.shape[2] == 1
    assert 0 <= grey.min() < 0.2 and 0.6 < grey.max() <= 1
    small = load_image(sample_image_path(), grey=True, width=40)
    assert small.shape[1] == 40 and abs(small.shape[0] - 40 * grey.shape[0] / grey.shape[1]) <= 1


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3)])
def test_save_then_load_round_trips_to_8_bits(tmp_path, shape):
    a = np.random.default_rng(0).random(shape).astype(np.float32)
    path = save_image(tmp_path / "a.png", a)
    back = load_image(path, grey=len(shape) < 3 or shape[2] == 1)
    np.testing.assert_allclose(back.reshape(a.shape), a, atol=0.5 / 255 + 1e-6)


def test_save_clips_and_scales(tmp_path):
    save_image(tmp_path / "c.png", np.array([[-1.0, 0.5, 2.0, np.nan]]))
    save_image(tmp_path / "i.png", np.array([[-5, 7, 300]]))
    with Image.open(tmp_path / "c.png") as c, Image.open(tmp_path / "i.png") as i:
        assert np.asarray(c).tolist() == [[0, 128, 255, 0]]
        assert np.asarray(i).tolist() == [[0, 7, 255]]
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        save_image(tmp_path / "bad.png", np.zeros((2, 2, 2)))
    with pytest.raises(FileNotFoundError, match="missing"):
        save_image(tmp_path / "missing" / "x.png", np.zeros((2, 2)))


@pytest.mark.parametrize("content", [b"", b"hello", b"\x89PNG\r\n\x1a\n garbage"])
def test_unreadable_files_raise_errors_naming_the_file(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="bad.png"):
        load_image(bad)


def test_truncated_and_missing_files(tmp_path):
    half = tmp_path / "half.png"
    half.write_bytes(sample_image_path().read_bytes()[:3000])
    with pytest.raises(ValueError, match="half.png"):
        load_image(half)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ValueError, match="not an image file"):
        load_image(tmp_path)
