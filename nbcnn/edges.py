"""Edge detection with convolution: the lecture's first example of what a filter does.

    from nbcnn import edges
    ex = edges.lecture_example("vertical")        # the 6x6 image, the 3x3 filter, the 4x4 output
    print(edges.format_equation(ex))              # image * filter = output, as integer grids
    edges.lecture_figure("both")                  # the same as a picture (a matplotlib Figure)
    result = edges.detect_edges("photo.png", "sobel", "both", width=200)
    save_image("edges.png", result.picture)       # |vertical|, |horizontal|, magnitude side by side

Everything runs through ``nbcnn.conv2d`` on the current backend (choose one with
``nbcnn.use_backend``). The ``nbcnn edges`` command prints and saves what these return.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backend import to_host
from .images import load_image
from .ops import conv2d

# The lecture's vertical-edge filter and two smoother variants; the horizontal one is the transpose.
EDGE_FILTERS = {
    "lecture": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32),
    "sobel": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32),
    "scharr": np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=np.float32),
}
DIRECTIONS = ("vertical", "horizontal", "both")
PANEL_GAP = 4  # grey pixels between the panels of the picture


def edge_filter(filter_name: str = "lecture", direction: str = "vertical") -> np.ndarray:
    """The 3x3 filter ``filter_name`` for ``direction`` "vertical" (as in EDGE_FILTERS) or
    "horizontal" (its transpose: the same filter turned by 90 degrees)."""
    if filter_name not in EDGE_FILTERS:
        raise ValueError(f"unknown edge filter {filter_name!r}; choose from {sorted(EDGE_FILTERS)}")
    if direction not in ("vertical", "horizontal"):
        raise ValueError(f"direction must be 'vertical' or 'horizontal', got {direction!r}")
    f = EDGE_FILTERS[filter_name]
    return f.copy() if direction == "vertical" else f.T.copy()


class Convolution(NamedTuple):
    """One single-channel convolution, as 2-D arrays: ``image * filter = output``."""

    image: np.ndarray
    filter: np.ndarray
    output: np.ndarray


def lecture_example(direction: str = "vertical") -> Convolution:
    """The lecture's 6x6 example, run through ``nbcnn.conv2d(x, W, b=0, pad="valid")``.

    "vertical": an image bright (10) on the left half and dark (0) on the right, and the
    vertical-edge filter [[1, 0, -1]] * 3; output size (6 - 3) // 1 + 1 = 4, and its two
    middle columns are 30: the edge (wide, because the image is tiny). "horizontal": an image
    bright on the top half, and the transposed filter.
    """
    f = edge_filter("lecture", direction)
    x = np.zeros((6, 6), dtype=np.float32)
    if direction == "vertical":
        x[:, :3] = 10  # bright left half, dark right half: one vertical edge in the middle
    else:
        x[:3, :] = 10  # bright top half: one horizontal edge
    z = conv2d(x[None, :, :, None], f[:, :, None, None], np.zeros(1, dtype=np.float32), pad="valid")
    return Convolution(x, f, np.asarray(to_host(z))[0, :, :, 0])


@dataclass
class EdgeImage:
    """What ``detect_edges`` computed.

    x: the image as conv2d's input, (1, H, W, 1); W: the filters, (3, 3, 1, C) with C = 1 or
    2 (vertical, then horizontal); z = conv2d(x, W, 0, pad="same"), (1, H, W, C); seconds: how
    long that conv2d call took; panels: name -> (H, W) array, |vertical| and/or |horizontal|
    (and "magnitude", sqrt(vertical^2 + horizontal^2), for "both"); picture: the panels side
    by side on one common scale, in [0, 1], ready for ``save_image``.
    """

    x: np.ndarray
    W: np.ndarray
    z: np.ndarray
    seconds: float
    panels: dict[str, np.ndarray]
    picture: np.ndarray


def detect_edges(image, filter_name: str = "sobel", direction: str = "both", width: int | None = None) -> EdgeImage:
    """Convolve a grey image with an edge filter (both directions in one ``conv2d`` call).

    image: the path of an image file (read as grey), or a grey array (H, W) or (H, W, 1).
    filter_name: a key of EDGE_FILTERS. direction: "vertical", "horizontal" or "both".
    width: resize the image to this many columns first (Lanczos filter, aspect ratio kept).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    grey = _grey_image(image, width)
    directions = ("vertical", "horizontal") if direction == "both" else (direction,)
    W = np.stack([edge_filter(filter_name, d) for d in directions], axis=-1)[:, :, None, :]  # (3, 3, 1, C)
    x = grey[None, :, :, None]  # (1, H, W, 1)
    start = time.perf_counter()
    z = np.asarray(to_host(conv2d(x, W, np.zeros(W.shape[3], dtype=np.float32), pad="same")))
    seconds = time.perf_counter() - start
    responses = np.abs(z[0])  # (H, W, C)
    panels = {f"|{d}|": responses[:, :, c] for c, d in enumerate(directions)}
    if direction == "both":
        panels["magnitude"] = np.sqrt(responses[:, :, 0] ** 2 + responses[:, :, 1] ** 2)
    return EdgeImage(x, W, z, seconds, panels, side_by_side(list(panels.values())))


def side_by_side(panels, gap: int = PANEL_GAP) -> np.ndarray:
    """(H, W) panels in a row, divided by the largest value of all (one common brightness
    scale; all black if every panel is 0), with ``gap`` columns of grey 0.5 between them."""
    scale = max(float(p.max()) for p in panels) or 1.0
    spacer = np.full((panels[0].shape[0], gap), 0.5, dtype=np.float32)
    row = [panels[0] / scale]
    for p in panels[1:]:
        row += [spacer, p / scale]
    return np.concatenate(row, axis=1).astype(np.float32)


def _grey_image(image, width: int | None) -> np.ndarray:
    """(H, W) float32 from a path (via ``load_image``) or a grey array, resized to ``width``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, grey=True, width=width)[:, :, 0]
    a = np.asarray(to_host(image), dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"detect_edges: expected a grey image of shape (H, W) or (H, W, 1), got {a.shape}")
    if width is not None and width != a.shape[1]:
        from PIL import Image

        if not isinstance(width, int) or width < 1:
            raise ValueError(f"detect_edges: width must be a positive int, got {width!r}")
        height = max(1, round(a.shape[0] * width / a.shape[1]))
        a = np.asarray(Image.fromarray(a, mode="F").resize((width, height), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(a, dtype=np.float32)


def lecture_figure(direction: str = "vertical"):
    """The lecture's example(s) as a matplotlib Figure: image, filter and output grids with
    their values (``nbcnn.plot.convolution_example``); "both" stacks vertical over horizontal."""
    from . import plot

    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if direction != "both":
        return plot.convolution_example(*lecture_example(direction),
                                        title=f"{direction} edge detection: image * filter = output")
    fig = plot.figure(7.0, 7.4)
    for part, name in zip(fig.subfigures(2, 1), ("vertical", "horizontal")):
        plot.convolution_example(*lecture_example(name), title=f"{name} edge detection", fig=part)
    return fig


# --------------------------------------------------------------------------- printing grids


def format_grid(a: np.ndarray) -> list[str]:
    """The rows of a 2-D array as right-aligned integers: ``[" 0 30 30  0", ...]``."""
    ints = np.rint(np.asarray(a)).astype(int)
    width = max(len(str(v)) for v in ints.flat)
    return [" ".join(f"{v:>{width}d}" for v in row) for row in ints]


def format_equation(example: Convolution) -> str:
    """``image * filter = output`` as integer grids side by side, each under a title."""
    x, f, z = example
    blocks = [(f"image {x.shape[0]}x{x.shape[1]}", format_grid(x)),
              (f"filter {f.shape[0]}x{f.shape[1]}", format_grid(f)),
              (f"output {z.shape[0]}x{z.shape[1]}", format_grid(z))]
    height = max(len(lines) for _, lines in blocks)
    columns = []
    for title, lines in blocks:
        width = max(len(title), *(len(s) for s in lines))
        top = (height - len(lines)) // 2
        rows = [""] * top + lines + [""] * (height - top - len(lines))
        columns.append([title.ljust(width)] + [r.ljust(width) for r in rows])
    middle = 1 + (height - 1) // 2
    out = []
    for r in range(height + 1):
        ops = ("*", "=") if r == middle else (" ", " ")
        out.append("  " + f"  {columns[0][r]}  {ops[0]}  {columns[1][r]}  {ops[1]}  {columns[2][r]}".rstrip())
    return "\n".join(out)
