"""nbcnn.edges: the lecture's edge-detection example, and edges of a real image.

Oracles: the lecture's numbers, and a naive float64 numpy cross-correlation written here.
"""

import numpy as np
import pytest
from PIL import Image

from conftest import is_slow
from nbcnn import edges

# The lecture: a 6x6 image, 10 on the left half and 0 on the right, convolved with the 3x3
# vertical-edge filter [[1, 0, -1], [1, 0, -1], [1, 0, -1]], gives this 4x4 output.
LECTURE_IMAGE = np.array([[10, 10, 10, 0, 0, 0]] * 6)
LECTURE_FILTER = np.array([[1, 0, -1]] * 3)
LECTURE_OUTPUT = np.array([[0, 30, 30, 0]] * 4)


def naive_same_correlation(image, f):
    """Cross-correlation (what CNNs call convolution) with zero padding keeping the size, float64."""
    image = np.asarray(image, dtype=np.float64)
    ph, pw = f.shape[0] // 2, f.shape[1] // 2
    padded = np.pad(image, ((ph, ph), (pw, pw)))
    out = np.zeros_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            out[i, j] = np.sum(padded[i:i + f.shape[0], j:j + f.shape[1]] * f)
    return out


def test_the_lecture_example_gives_the_lecture_output(backend):
    x, f, z = edges.lecture_example("vertical")
    np.testing.assert_array_equal(x, LECTURE_IMAGE)
    np.testing.assert_array_equal(f, LECTURE_FILTER)
    np.testing.assert_array_equal(z, LECTURE_OUTPUT)


def test_the_horizontal_example_is_the_lecture_turned_by_90_degrees(backend):
    x, f, z = edges.lecture_example("horizontal")
    np.testing.assert_array_equal(x, LECTURE_IMAGE.T)
    np.testing.assert_array_equal(f, LECTURE_FILTER.T)
    np.testing.assert_array_equal(z, LECTURE_OUTPUT.T)


def test_the_equation_prints_image_filter_and_output():
    text = edges.format_equation(edges.lecture_example("vertical"))
    lines = text.splitlines()
    assert "image 6x6" in lines[0] and "filter 3x3" in lines[0] and "output 4x4" in lines[0]
    assert sum(line.rstrip().endswith("0 30 30  0") for line in lines) == 4
    assert sum("1  0 -1" in line for line in lines) == 3
    assert "*" in text and "=" in text


def test_edge_filters_are_the_published_ones():
    np.testing.assert_array_equal(edges.edge_filter("sobel"), [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(edges.edge_filter("scharr", "horizontal"), [[3, 10, 3], [0, 0, 0], [-3, -10, -3]])
    with pytest.raises(ValueError, match="unknown edge filter 'laplace'"):
        edges.edge_filter("laplace")
    with pytest.raises(ValueError, match="direction"):
        edges.edge_filter("sobel", "diagonal")


@pytest.mark.parametrize("filter_name", sorted(edges.EDGE_FILTERS))
def test_detect_edges_matches_a_naive_correlation(backend, filter_name):
    size = (7, 9) if is_slow(backend) else (23, 31)
    image = np.random.default_rng(3).random(size).astype(np.float32)
    result = edges.detect_edges(image, filter_name, "both")

    sobel_like = {"lecture": [1, 1, 1], "sobel": [1, 2, 1], "scharr": [3, 10, 3]}[filter_name]
    vertical = np.outer(sobel_like, [1, 0, -1]).astype(np.float64)
    v = np.abs(naive_same_correlation(image, vertical))
    h = np.abs(naive_same_correlation(image, vertical.T))
    magnitude = np.sqrt(v ** 2 + h ** 2)
    assert list(result.panels) == ["|vertical|", "|horizontal|", "magnitude"]
    for got, want in zip(result.panels.values(), (v, h, magnitude)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert result.x.shape == (1, *size, 1) and result.W.shape == (3, 3, 1, 2) and result.z.shape == (1, *size, 2)
    assert result.seconds >= 0

    # the picture: the three panels side by side on one scale (the largest value becomes 1),
    # with PANEL_GAP columns of grey between them
    H, W = size
    gap = edges.PANEL_GAP
    picture = result.picture
    assert picture.shape == (H, 3 * W + 2 * gap) and picture.dtype == np.float32
    scale = max(v.max(), h.max(), magnitude.max())
    np.testing.assert_allclose(picture[:, :W], v / scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(picture[:, W + gap:2 * W + gap], h / scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(picture[:, 2 * (W + gap):], magnitude / scale, rtol=1e-5, atol=1e-6)
    assert np.all(picture[:, W:W + gap] == 0.5)
    assert picture.max() == pytest.approx(1.0)


def test_detect_edges_one_direction_gives_one_panel():
    image = np.zeros((8, 8), dtype=np.float32)
    image[:, :4] = 1  # one vertical edge between columns 3 and 4
    result = edges.detect_edges(image[:, :, None], "lecture", "vertical")
    assert list(result.panels) == ["|vertical|"] and result.picture.shape == (8, 8)
    # away from the top and bottom rows the lecture filter answers 3 on the two columns beside the
    # edge, and on column 0, where the zero padding of "same" makes a second edge; 0 elsewhere
    np.testing.assert_allclose(result.panels["|vertical|"][1:-1], [[3, 0, 0, 3, 3, 0, 0, 0]] * 6, atol=1e-6)
    flat = edges.detect_edges(np.full((5, 5), 0.3, dtype=np.float32), "sobel", "horizontal")
    # no edges inside a flat image, only at its zero-padded top and bottom
    np.testing.assert_allclose(flat.panels["|horizontal|"][1:-1], 0, atol=1e-6)
    assert flat.panels["|horizontal|"][0].min() > 0.5


def test_detect_edges_reads_and_resizes_image_files(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:10] = 255  # bright top half: one horizontal edge
    Image.fromarray(pixels).save(tmp_path / "half.png")
    result = edges.detect_edges(tmp_path / "half.png", "sobel", "horizontal", width=20)
    assert result.x.shape == (1, 10, 20, 1)  # resized, aspect ratio kept
    panel = result.panels["|horizontal|"]
    rows = panel[:, 2:-2].mean(axis=1)  # away from the left and right borders
    assert rows[4:6].min() > 2 and rows[[1, 2, 7, 8]].max() < 0.5  # strongest at the edge, in the middle

    array_result = edges.detect_edges(pixels.astype(np.float32) / 255, "sobel", "horizontal", width=20)
    assert array_result.x.shape == (1, 10, 20, 1)


def test_detect_edges_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(ValueError, match="direction"):
        edges.detect_edges(np.zeros((4, 4)), "sobel", "up")
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        edges.detect_edges(np.zeros((2, 3, 4)))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        edges.detect_edges(tmp_path / "nope.png")
