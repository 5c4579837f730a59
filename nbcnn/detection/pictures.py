"""Pictures of the three trained detection steps on held-out images (matplotlib Figures).

    fig = localization_picture(detector, images, boxes, classes)   # step 1: true vs predicted box
    fig = landmarks_picture(detector, images, points)              # step 2: true vs predicted points
    fig = detections_picture(detector, scenes)                     # step 3: YOLO's boxes
    plot.save(fig, "step1.png")

True boxes and points are drawn in green, predictions in red (boxes dashed), each panel
titled with the truth and the prediction.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from .. import plot


def _grid(n: int, cols: int, panel: float = 1.9, title: str | None = None):
    rows = -(-n // cols)
    fig = plot.figure(cols * panel, rows * (panel + 0.25) + (0.4 if title else 0))
    if title:
        fig.suptitle(title)
    return fig, rows


def _rect(ax, box, size, colour, dashed=False):
    cx, cy, w, h = (float(v) * size for v in box)
    ax.add_patch(Rectangle((cx - w / 2 - 0.5, cy - h / 2 - 0.5), w, h, fill=False, edgecolor=colour,
                           linewidth=1.5, linestyle="--" if dashed else "-"))


def _panel(fig, rows, cols, i, image):
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def localization_picture(detector, images, boxes, classes, count: int = 12, cols: int = 6,
                         title: str | None = "classification with localisation (green: truth, red: prediction)"):
    """Step 1 on ``count`` held-out images: the true box and class, the predicted ones and p_c."""
    from .localization import _logistic

    images = np.asarray(images[:count], np.float32)
    z = np.asarray(detector.predict(detector.images_for_network(images)), np.float64)
    names = detector.class_names
    fig, rows = _grid(len(images), cols, title=title)
    size = images.shape[1]
    for i, im in enumerate(images):
        ax = _panel(fig, rows, cols, i, im)
        b = np.asarray(boxes[i]).reshape(-1, 4)
        truth = names[int(np.asarray(classes[i])[0])] if len(b) else "none"
        if len(b):
            _rect(ax, b[0], size, "lime")
        pc = _logistic(z[i, 0])
        guess = names[int(z[i, 5:].argmax())] if pc > 0.5 else "none"
        if pc > 0.5:
            s = _logistic(z[i, 1:5])
            _rect(ax, (s[0], s[1], s[3], s[2]), size, "red", dashed=True)
        ax.set_title(f"true {truth} / pred {guess} ({pc:.2f})", fontsize="x-small")
    return fig


def landmarks_picture(detector, images, points, count: int = 12, cols: int = 6,
                      title: str | None = "landmarks (green o: truth, red x: prediction)"):
    """Step 2 on ``count`` held-out images: true points (green o) and predicted ones (red x)."""
    from .landmarks import predict_points

    images = np.asarray(images[:count], np.float32)
    pred = predict_points(detector, images)
    fig, rows = _grid(len(images), cols, title=title)
    size = images.shape[1]
    for i, im in enumerate(images):
        ax = _panel(fig, rows, cols, i, im)
        t, p = np.asarray(points[i]) * size - 0.5, pred[i] * size - 0.5
        ax.plot(t[:, 0], t[:, 1], "o", markerfacecolor="none", markeredgecolor="lime", markersize=5)
        ax.plot(p[:, 0], p[:, 1], "x", color="red", markersize=5)
        err = np.linalg.norm(t - p, axis=1).mean()
        ax.set_title(f"mean error {err:.1f} px", fontsize="x-small")
    return fig


def detections_picture(detector, scenes, count: int = 8, cols: int = 4, conf: float = 0.3,
                       title: str | None = "YOLO on held-out scenes (green: truth, red: detections)"):
    """Step 3 on ``count`` scenes: ground-truth boxes (green) and detections above ``conf`` (red, labelled)."""
    images = np.asarray(scenes.images[:count], np.float32)
    found = detector.predict_boxes(images, conf=conf)
    fig, rows = _grid(len(images), cols, panel=2.6, title=title)
    size = images.shape[1]
    names = detector.class_names
    for i, im in enumerate(images):
        ax = _panel(fig, rows, cols, i, im)
        for b in scenes.boxes[i]:
            _rect(ax, b, size, "lime")
        corners, scores, classes = found[i]
        for (x0, y0, x1, y1), s, c in zip(corners, scores, classes):
            _rect(ax, ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), size, "red", dashed=True)
            ax.text(x0 * size, y0 * size, f"{names[c]} {s:.2f}", color="white", fontsize=6, va="bottom",
                    bbox={"facecolor": "red", "edgecolor": "none", "pad": 0.5}, clip_on=True)
        ax.set_title(f"{len(scenes.boxes[i])} objects, {len(scores)} found", fontsize="x-small")
    return fig
