"""Small line charts written as PNG with Pillow (learning curves, the depth experiment).

Just enough plotting for the command line to save a picture of a run: axes, ticks, one
coloured line per series and a legend. Pillow is already a dependency for images.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]


def _ticks(lo: float, hi: float, count: int = 5):
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def line_chart(series: dict[str, list[float]], path, title: str = "", xlabel: str = "epoch", ylabel: str = "",
               size=(640, 400)) -> None:
    """Draw each ``name: [y0, y1, ...]`` against 1, 2, 3, ... and save a PNG at ``path``."""
    series = {k: [float(v) for v in vals] for k, vals in series.items() if len(vals)}
    if not series:
        raise ValueError("line_chart needs at least one non-empty series")
    W, H = size
    left, right, top, bottom = 70, 20, 40, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    n = max(len(v) for v in series.values())
    ys = [y for v in series.values() for y in v if math.isfinite(y)]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def px(i, y):
        x = left + (W - left - right) * (i / max(n - 1, 1))
        return x, top + (H - top - bottom) * (1 - (y - lo) / (hi - lo))

    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for t in _ticks(lo, hi):
        _, y = px(0, t)
        d.line([left - 4, y, left, y], fill="black")
        d.line([left, y, W - right, y], fill=(230, 230, 230))
        d.text((5, y - 6), f"{t:.3g}", fill="black", font=font)
    for i in range(n):
        if n <= 20 or i % max(1, n // 10) == 0:
            x, _ = px(i, lo)
            d.line([x, H - bottom, x, H - bottom + 4], fill="black")
            d.text((x - 4, H - bottom + 6), str(i + 1), fill="black", font=font)
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [px(i, y) for i, y in enumerate(values) if math.isfinite(y)]
        if len(points) > 1:
            d.line(points, fill=colour, width=2)
        for x, y in points:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        d.rectangle([W - right - 150, top + 8 + 14 * k, W - right - 140, top + 16 + 14 * k], fill=colour)
        d.text((W - right - 135, top + 6 + 14 * k), name, fill="black", font=font)
    d.text((left, 12), title, fill="black", font=font)
    d.text(((W - left) // 2, H - 20), xlabel, fill="black", font=font)
    d.text((5, top - 20), ylabel, fill="black", font=font)
    img.save(path, format="PNG")
