"""Pictures of what a network does and how it trained, drawn with matplotlib.

Every function returns a ``matplotlib.figure.Figure``: the last line of a notebook cell
shows it inline, and ``save(fig, "name.png")`` writes it as a PNG (what ``nbcnn train``,
``nbcnn edges`` and ``nbcnn show`` do). Nothing here uses ``pyplot``, so nothing needs a
display or a GUI backend, and no figure stays alive in a global list.

    from nbcnn import plot
    fig = plot.learning_curves(model.history)            # loss and accuracy per epoch
    plot.save(fig, "curve.png")
    plot.filters(model.layers[0].params["W"])             # what the first layer learned
    plot.convolution_example(*nbcnn.edges.lecture_example())   # the 6x6 * 3x3 = 4x4 picture
    plot.roc_curve(distances, same, kind="distance")       # face verification
    plot.roc_numbers(distances, same, kind="distance").auc

Functions that draw one chart (``roc_curve``, ``precision_recall_curve``,
``confusion_matrix``, ``depth_experiment``) take ``ax=`` to draw into an existing Axes
instead (several ROC curves on one chart); they then return that Axes' figure.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .backend import is_device_array, to_host

DPI = 100  # pixels per inch: a figure of 6.4 x 4 inches is a 640 x 400 PNG
PANEL_INCHES = 1.6  # the side of one small panel in the grids (filters, feature maps, images)


class PlotFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter even when pyplot was never
    imported (IPython asks for ``_repr_png_``); otherwise exactly a ``Figure``."""

    def _repr_png_(self):
        import io

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()


def figure(width: float, height: float, **kwargs) -> Figure:
    """A new Figure of ``width`` x ``height`` inches (``DPI`` pixels each), laid out by
    matplotlib's constrained layout. For composing your own pictures from these functions
    (``fig.subfigures``, ``ax=``)."""
    kwargs.setdefault("layout", "constrained")
    size = (max(1, round(width * DPI)) / DPI, max(1, round(height * DPI)) / DPI)  # whole pixels
    return PlotFigure(figsize=size, dpi=DPI, **kwargs)


def save(fig: Figure, path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (``width x height`` inches times ``fig.dpi`` pixels)
    and return the path. The folder must exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        fig.savefig(path, format="png", dpi=fig.dpi)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# --------------------------------------------------------------------------- helpers


def _array(a, what: str) -> np.ndarray:
    """numpy from numpy, lists or GPU arrays (copied to the host)."""
    try:
        return np.asarray(to_host(a)) if is_device_array(a) else np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: cannot read it as an array: {exc}") from None


def _grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for n panels: one row up to 5, else near-square (9 -> 3 x 3, 16 -> 4 x 4)."""
    if cols is None:
        cols = n if n <= 5 else math.ceil(math.sqrt(n))
    cols = max(1, min(int(cols), n))
    return math.ceil(n / cols), cols


def _root(fig_or_ax) -> Figure:
    """The Figure at the top, also from an Axes or a SubFigure."""
    try:
        return fig_or_ax.get_figure(root=True)  # matplotlib >= 3.10
    except TypeError:
        figure_ = fig_or_ax if isinstance(fig_or_ax, Figure) else fig_or_ax.figure
        return figure_ if isinstance(figure_, Figure) else _root(figure_)


def _target_ax(ax, width: float, height: float):
    """(figure, axes): the caller's axes (and its top Figure), or a new one-axes figure."""
    if ax is not None:
        return _root(ax), ax
    fig = figure(width, height)
    return fig, fig.add_subplot()


def _bare(ax) -> None:
    """An image panel: no ticks, no frame labels."""
    ax.set_xticks([])
    ax.set_yticks([])


def _number(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2g}" if abs(v) < 0.01 else f"{v:.2f}"


# --------------------------------------------------------------------------- training


def learning_curves(history, title: str | None = None, validation_label: str = "validation") -> Figure:
    """Loss and accuracy per epoch, training and validation: one panel each.

    history: ``model.history`` (or what ``model.fit`` returns, or the model itself): a dict
    with any of "loss", "val_loss", "accuracy", "val_accuracy", one number per epoch.
    Panels appear for what is there; training lines are solid, validation dashed.

        history = model.fit(x, y, epochs=5, validation_data=(x_val, y_val))
        plot.learning_curves(history, title="LeNet-5 on the digits")
    """
    history = getattr(history, "history", history)
    panels = [(kind, [(k, history.get(k)) for k in (kind, f"val_{kind}")]) for kind in ("loss", "accuracy")]
    panels = [(kind, [(k, v) for k, v in pairs if v is not None and len(v)]) for kind, pairs in panels]
    panels = [(kind, pairs) for kind, pairs in panels if pairs]
    if not panels:
        raise ValueError(f"learning_curves: the history has no loss or accuracy (keys: {sorted(history)})")
    fig = figure(5.0 * len(panels), 4.0)
    for i, (kind, pairs) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, values in pairs:
            validation = key.startswith("val_")
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, np.asarray(values, dtype=float), "--" if validation else "-", marker="o", markersize=3,
                    color="C1" if validation else "C0", label=validation_label if validation else "training")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if kind == "accuracy":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylabel("accuracy")
        else:
            ax.set_ylabel("loss (cross-entropy)")
        ax.set_title(kind)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def depth_experiment(curves: dict, title: str = "training error: plain vs residual nets",
                     ylabel: str = "training error", ax=None) -> Figure:
    """The ResNet lesson: one line per net, training error per epoch.

    curves: ``{"plain 3 conv": [errors...], "residual 3 conv": [...], ...}`` as
    ``nbcnn.experiments.depth_experiment`` returns. Nets of the same depth share a colour;
    plain ones are dashed, residual ones solid.

        curves, _ = nbcnn.experiments.depth_experiment(depths=(1, 4, 10))
        plot.depth_experiment(curves)
    """
    if not curves or not any(len(v) for v in curves.values()):
        raise ValueError("depth_experiment: no curves to draw")
    fig, ax = _target_ax(ax, 6.4, 4.0)
    colours: dict[str, str] = {}
    for name, values in curves.items():
        kind, _, rest = name.partition(" ")
        group = rest if kind in ("plain", "residual") else name
        colour = colours.setdefault(group, f"C{len(colours) % 10}")
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), "--" if kind == "plain" else "-",
                marker="o", markersize=3, color=colour, label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def confusion_matrix(y_true, y_pred, labels=None, title: str | None = None, ax=None) -> Figure:
    """Counts of true class (rows) against predicted class (columns), darker = more.

    y_true, y_pred: class indices 0..K-1, one per example. labels: the K class names
    (default 0..K-1, K from the data). The diagonal holds the right answers; the title
    gives the accuracy. Counts are written in the cells up to 30 classes.

        predictions = model.predict(x_test).argmax(axis=1)
        plot.confusion_matrix(y_test, predictions, labels=nbcnn.data.DIGITS_CLASSES)
    """
    t = _array(y_true, "confusion_matrix y_true").reshape(-1)
    p = _array(y_pred, "confusion_matrix y_pred").reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"confusion_matrix: y_true and y_pred need the same, non-zero length; "
                         f"got {t.shape} and {p.shape}")
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise TypeError(f"confusion_matrix: class indices must be integers, got {t.dtype} and {p.dtype}")
    k = len(labels) if labels is not None else int(max(t.max(), p.max())) + 1
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
        raise ValueError(f"confusion_matrix: class indices must be in 0..{k - 1}")
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    names = [str(n) for n in labels] if labels is not None else [str(i) for i in range(k)]

    side = min(12.0, max(4.5, 0.45 * k + 2.0))
    fig, ax = _target_ax(ax, side + 1.0, side)
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    slanted = max(map(len, names)) > 3  # long names: slanted, so they do not overlap
    ax.set_xticks(range(k), names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        dark = counts.max() * 0.5
        for (i, j), c in np.ndenumerate(counts):
            if c:
                ax.text(j, i, str(c), ha="center", va="center", fontsize="small" if k > 12 else "medium",
                        color="white" if c > dark else "black")
    ax.figure.colorbar(image, ax=ax, shrink=0.8, label="examples")  # ax.figure: also inside a SubFigure
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(title or f"confusion matrix: accuracy {accuracy:.2%} on {counts.sum()} examples")
    return fig


# --------------------------------------------------------------------------- inside a network


def _tile_gaps(h: int, w: int, titles: bool):
    """(gap between panels, room for a title above each) in data units (pixels of a panel)."""
    return max(1.0, 0.15 * max(h, w)), (0.3 * h if titles else 0.0)


def _tiles_inches(panel_hw, rows: int, cols: int, titles: bool, inches: float):
    """(width, height) in inches of a ``_tiles`` grid whose panels are ``inches`` wide, gaps included."""
    h, w = panel_hw
    gap, room = _tile_gaps(h, w, titles)
    unit = inches / (w + gap)
    return cols * (w + gap) * unit, rows * (h + gap + room) * unit


def _tiles(ax, panels, cols: int, titles=None, row_labels=None, fontsize="x-small", **imshow_kw):
    """Equal-sized panels (2-D or RGB arrays) drawn in ONE Axes as a grid, each its own
    AxesImage placed with ``extent``; titles above the panels, row labels on the left.

    One Axes for the whole grid keeps 500 filters quick to draw (an Axes per panel takes
    seconds by the hundred). Returns the images, in panel order."""
    h, w = panels[0].shape[:2]
    gap, room = _tile_gaps(h, w, titles is not None)  # room: above each panel, for its title
    rows = math.ceil(len(panels) / cols)
    images = []
    for k, panel in enumerate(panels):
        r, c = divmod(k, cols)
        x0, y0 = c * (w + gap), r * (h + gap + room) + room
        images.append(ax.imshow(panel, extent=(x0, x0 + w, y0 + h, y0), interpolation="nearest", **imshow_kw))
        if titles is not None and titles[k] is not None:
            ax.text(x0 + w / 2, y0 - 0.05 * h, str(titles[k]), ha="center", va="bottom", fontsize=fontsize)
    ax.set_xlim(-gap / 2, cols * (w + gap) - gap / 2)
    ax.set_ylim(rows * (h + gap + room) - gap / 2, -gap / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    # row labels as y tick labels: the layout then makes room for them
    ax.set_yticks([r * (h + gap + room) + room + h / 2 for r in range(len(row_labels or ()))],
                  [str(label) for label in row_labels or ()], fontsize=fontsize)
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return images


def filters(W, title: str | None = None, max_filters: int = 64, channel: int | None = None,
            max_channels: int = 8) -> Figure:
    """A conv layer's filters as small images: the lecture's "what the first layer learns".

    W: ``(f, f, C_in, C_out)`` as in ``Conv2D.params["W"]`` (or one ``(f, f)`` filter).
    C_in = 3: each filter in colour (stretched to its own min..max). Otherwise grey, on one
    scale for the whole layer (0 mid-grey, white positive, black negative, as the colour bar
    says): C_in = 1, or ``channel=k``, gives one panel per filter; more input channels give a
    grid of up to ``max_channels`` rows (input channels) by ``max_filters`` columns.
    The panels are the images of ``fig.axes[0]`` (``fig.axes[0].images[k]``), filter order.

        plot.filters(model.layers[0].params["W"], title="C1 after training")
    """
    W = _array(W, "filters W")
    if W.ndim == 2:
        W = W[:, :, None, None]
    if W.ndim != 4 or W.size == 0:
        raise ValueError(f"filters: expected W of shape (f, f, C_in, C_out), got {W.shape}")
    W = W.astype(np.float64)
    f_h, f_w, c_in, c_out = W.shape
    n = min(c_out, max_filters)
    what = title or f"{c_out} filters {f_h}x{f_w}x{c_in}" + (f" (first {n})" if n < c_out else "")

    if c_in == 3 and channel is None:  # colour filters, as in AlexNet's first layer
        rows, cols = _grid_shape(n)
        width, height = _tiles_inches((f_h, f_w), rows, cols, True, 0.8)
        fig = figure(width + 0.3, height + 0.6)
        panels = []
        for k in range(n):
            w = W[:, :, :, k]
            span = w.max() - w.min()
            panels.append((w - w.min()) / span if span > 0 else np.full_like(w, 0.5))
        _tiles(fig.add_subplot(), panels, cols, titles=range(n))
        fig.suptitle(what)
        return fig

    if channel is not None:
        if not 0 <= channel < c_in:
            raise ValueError(f"filters: channel {channel} is not one of the {c_in} input channels")
        chosen = [channel]
    else:
        chosen = list(range(min(c_in, max_channels)))
    limit = float(np.abs(W[:, :, chosen, :n]).max()) or 1.0
    if len(chosen) == 1:
        rows, cols = _grid_shape(n)
        panels = [W[:, :, chosen[0], k] for k in range(n)]
        titles, row_labels = list(range(n)), None
        if channel is not None and c_in > 1:
            what += f", input channel {channel}"
    else:  # a row per input channel, a column per filter; titles on the first row only
        rows, cols = len(chosen), n
        panels = [W[:, :, c, k] for c in chosen for k in range(n)]
        titles = list(range(n)) + [None] * (len(panels) - n)
        row_labels = [f"in {c}" for c in chosen]
        what += f", input channels {chosen[0]}..{chosen[-1]} (rows)"
    inches = min(0.8, 14.0 / cols)  # a wide grid of small panels stays under ~15 inches
    width, height = _tiles_inches((f_h, f_w), rows, cols, True, inches)
    fig = figure(width + (1.4 if row_labels else 1.1), height + 0.6)
    ax = fig.add_subplot()
    images = _tiles(ax, panels, cols, titles=titles, row_labels=row_labels, cmap="gray", vmin=-limit, vmax=limit)
    fig.colorbar(images[0], ax=ax, shrink=0.8, label="weight")
    fig.suptitle(what)
    return fig


def feature_maps(activations, title: str | None = None, max_maps: int = 64, cols: int | None = None,
                 same_scale: bool = True, image=None) -> Figure:
    """A layer's output for one input: one panel per channel (feature map).

    activations: ``(H, W, C)`` or ``(1, H, W, C)``. same_scale: one colour scale for every
    map (weak channels look dark: you see which filters fired), with a colour bar; False:
    each map stretched to its own range. image: the input, drawn on the left for comparison.
    The maps are the images of the last panel Axes, in channel order.

        a = model.layers[0].forward(x[:1])            # C1's 6 maps for the first digit
        plot.feature_maps(a, image=x[0], title="C1")
    """
    a = _array(activations, "feature_maps activations")
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.size == 0:
        raise ValueError(f"feature_maps: expected activations of shape (H, W, C) or (1, H, W, C), got {a.shape}"
                         + (" (pass one example: activations[i:i+1])" if a.ndim == 4 else ""))
    a = a.astype(np.float64)
    n = min(a.shape[2], max_maps)
    rows, cols = _grid_shape(n, cols)
    extra = 1 if image is not None else 0  # a column for the input
    inches = min(PANEL_INCHES, 12.0 / (cols + extra))
    width, height = _tiles_inches(a.shape[:2], rows, cols, True, inches)
    fig = figure(width + extra * (inches + 0.2) + (1.0 if same_scale else 0.3), height + 0.6)
    if image is not None:
        left, ax = fig.subplots(1, 2, width_ratios=[inches, width])
        _show_image(left, _array(image, "feature_maps image"))
        left.set_title("input", fontsize="small")
        left.set_anchor("N")
    else:
        ax = fig.add_subplot()
    lo, hi = float(a[:, :, :n].min()), float(a[:, :, :n].max())
    scale = {"vmin": lo, "vmax": hi if hi > lo else lo + 1} if same_scale else {}
    images = _tiles(ax, [a[:, :, k] for k in range(n)], cols, titles=[f"channel {k}" for k in range(n)],
                    fontsize="small", cmap="viridis", **scale)
    if same_scale:
        fig.colorbar(images[0], ax=ax, shrink=0.8, label="activation")
    shown = f" (first {n})" if n < a.shape[2] else ""
    fig.suptitle(title or f"{a.shape[2]} feature maps {a.shape[0]}x{a.shape[1]}{shown}")
    return fig


def convolution_example(x, f, z, title: str | None = None, fig=None) -> Figure:
    """``image * filter = output`` as three grids of numbers: the lecture's 6x6 * 3x3 = 4x4.

    x, f, z: 2-D arrays (one channel). Each grid is shaded on its own scale (white = its
    largest value) with every value written in its cell. fig: a Figure or SubFigure to draw
    into (two examples stacked: ``top, bottom = plot.figure(8, 6).subfigures(2, 1)``).

        plot.convolution_example(*nbcnn.edges.lecture_example("vertical"))
    """
    grids = [_array(a, "convolution_example").astype(np.float64) for a in (x, f, z)]
    grids = [g[:, :, 0] if g.ndim == 3 and g.shape[2] == 1 else g for g in grids]
    if any(g.ndim != 2 or g.size == 0 for g in grids):
        raise ValueError(f"convolution_example: x, f and z must be 2-D grids, got shapes {[g.shape for g in grids]}")
    top = fig if fig is not None else figure(1.0 + 0.45 * sum(g.shape[1] for g in grids),
                                             1.0 + 0.45 * max(g.shape[0] for g in grids))
    widths = [grids[0].shape[1], 1, grids[1].shape[1], 1, grids[2].shape[1]]
    axes = top.subplots(1, 5, gridspec_kw={"width_ratios": widths})
    names = ("image", "filter", "output")
    for ax, grid, name in zip(axes[::2], grids, names):
        lo, hi = grid.min(), grid.max()
        ax.imshow(grid, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, _number(v), ha="center", va="center", color="tab:red", fontsize="medium")
        ax.set_title(f"{name} {grid.shape[0]}x{grid.shape[1]}")
        _bare(ax)
    for ax, op in zip(axes[1::2], "*="):
        ax.axis("off")
        ax.text(0.5, 0.5, op, ha="center", va="center", fontsize=24, transform=ax.transAxes)
    if title:
        top.suptitle(title)
    return top if isinstance(top, Figure) else _root(top)


# --------------------------------------------------------------------------- verification curves


class Roc(NamedTuple):
    """Points of a ROC curve, from the strictest threshold to the loosest.

    fpr[i], tpr[i]: the false and true positive rates when "same" means value >= thresholds[i]
    (kind "score") or value <= thresholds[i] (kind "distance"). The first point (0, 0) has
    threshold +inf (-inf for distances), the last (1, 1) the loosest value. auc: the area under
    the curve by trapezoids = the chance that a random "same" pair ranks above a random
    "different" pair (ties count a half)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


class PrecisionRecall(NamedTuple):
    """Points of a precision-recall curve, strictest threshold first (recall rising from 0).

    precision[i], recall[i] at thresholds[i] (as in ``Roc``); the first point is recall 0,
    precision 1 at threshold +inf (-inf for distances). average_precision:
    sum over points of (recall[i] - recall[i-1]) * precision[i]."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float


def _ranked(values, same, kind: str):
    """Counts of true and false positives at each distinct threshold, strictest first."""
    if kind not in ("score", "distance"):
        raise ValueError(f"kind must be 'score' (larger means same) or 'distance' (smaller means same), got {kind!r}")
    v = _array(values, "values").astype(np.float64).reshape(-1)
    y = _array(same, "same").reshape(-1)
    if v.shape != y.shape:
        raise ValueError(f"values and same need the same length, got {v.shape} and {y.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinity")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("same must hold booleans (or 0/1): True where the pair is the same person/class")
        y = y.astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"a ROC or precision-recall curve needs both kinds of pairs; got {positives} same "
                         f"and {negatives} different")
    score = v if kind == "score" else -v  # larger score = more likely the same
    order = np.argsort(-score, kind="mergesort")
    score, y = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last index of each distinct value
    tp = np.cumsum(y)[last]
    fp = last + 1 - tp
    thresholds = score[last] if kind == "score" else -score[last]
    return tp, fp, thresholds, positives, negatives


def roc_numbers(values, same, kind: str = "score") -> Roc:
    """The ROC curve's points and its area: ``(fpr, tpr, thresholds, auc)``.

    values: one number per pair (or example); same: True where the pair really is the same
    (positive). kind: "score" when a larger value means "same" (a classifier's probability),
    "distance" when a smaller value does (the distance between two face encodings).

        r = plot.roc_numbers([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
        r.auc    # 0.75
    """
    tp, fp, thresholds, positives, negatives = _ranked(values, same, kind)
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    start = np.inf if kind == "score" else -np.inf
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return Roc(fpr, tpr, np.r_[start, thresholds], auc)


def precision_recall_numbers(values, same, kind: str = "score") -> PrecisionRecall:
    """The precision-recall curve's points and the average precision (arguments as in
    ``roc_numbers``): ``(precision, recall, thresholds, average_precision)``.

        plot.precision_recall_numbers([0.1, 0.4, 0.35, 0.8], [False, False, True, True]).average_precision
        # 0.8333...: precision 1 at recall 0.5, then 2/3 at recall 1
    """
    tp, fp, thresholds, positives, _ = _ranked(values, same, kind)
    precision = np.r_[1.0, tp / (tp + fp)]
    recall = np.r_[0.0, tp / positives]
    start = np.inf if kind == "score" else -np.inf
    average = float(np.sum(np.diff(recall) * precision[1:]))
    return PrecisionRecall(precision, recall, np.r_[start, thresholds], average)


def _rates_at(values, same, kind: str, threshold: float):
    v = _array(values, "values").astype(np.float64).reshape(-1)
    y = _array(same, "same").reshape(-1).astype(bool)
    said_same = v >= threshold if kind == "score" else v <= threshold
    tp, fp = int(np.sum(said_same & y)), int(np.sum(said_same & ~y))
    return tp, fp, int(y.sum()), int((~y).sum())


def roc_curve(values, same, kind: str = "score", threshold: float | None = None, label: str | None = None,
              title: str | None = None, ax=None) -> Figure:
    """The ROC curve: true positive rate against false positive rate over every threshold.

    Arguments as in ``roc_numbers``; the legend gives the AUC. threshold: mark the point
    where "same" means value >= threshold ("score") or <= threshold ("distance"), e.g. a
    face verifier's 0.7. ax: draw into this Axes (several curves on one chart).

        fig = plot.roc_curve(distances, same, kind="distance", threshold=0.7, label="FaceNet")
        plot.roc_curve(other_distances, same, kind="distance", label="mine", ax=fig.axes[0])
    """
    r = roc_numbers(values, same, kind)
    fig, ax = _target_ax(ax, 5.0, 5.0)
    if not any(line.get_label() == "chance" for line in ax.get_lines()):
        ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    line, = ax.plot(r.fpr, r.tpr, "-", label=f"{label + ' ' if label else ''}(AUC {r.auc:.3f})")
    if threshold is not None:
        tp, fp, p, n = _rates_at(values, same, kind, threshold)
        ax.plot([fp / n], [tp / p], "o", color=line.get_color(),
                label=f"threshold {threshold:g}: TPR {tp / p:.2f}, FPR {fp / n:.2f}")
    ax.set_xlabel("false positive rate (different pairs said same)")
    ax.set_ylabel("true positive rate (same pairs found)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title or "ROC curve")
    return fig


def precision_recall_curve(values, same, kind: str = "score", threshold: float | None = None,
                           label: str | None = None, title: str | None = None, ax=None) -> Figure:
    """Precision against recall over every threshold (arguments as in ``roc_curve``); the
    legend gives the average precision, a dotted line the precision of saying "same" always.

        plot.precision_recall_curve(scores, is_dog, label="dog detector")
    """
    pr = precision_recall_numbers(values, same, kind)
    fig, ax = _target_ax(ax, 5.0, 5.0)
    y = _array(same, "same").reshape(-1).astype(bool)
    if not any(line.get_label().startswith("chance") for line in ax.get_lines()):
        ax.axhline(y.mean(), linestyle=":", color="grey", label=f"chance ({y.mean():.2f})")
    line, = ax.plot(pr.recall, pr.precision, "-", drawstyle="steps-pre",
                    label=f"{label + ' ' if label else ''}(AP {pr.average_precision:.3f})")
    if threshold is not None:
        tp, fp, p, _ = _rates_at(values, same, kind, threshold)
        precision = tp / (tp + fp) if tp + fp else 1.0
        ax.plot([tp / p], [precision], "o", color=line.get_color(),
                label=f"threshold {threshold:g}: precision {precision:.2f}, recall {tp / p:.2f}")
    ax.set_xlabel("recall (same pairs found)")
    ax.set_ylabel("precision (said same, and right)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    ax.set_title(title or "precision-recall curve")
    return fig


def detection_pr_curves(metrics, title: str | None = None, ax=None) -> Figure:
    """A detector's precision-recall curve per class at IoU 0.5, from
    ``nbcnn.detection.metrics.evaluate`` (its ``pr_curves``: the precision envelope, the curve
    AP integrates), with each class's AP@0.5 and the mAP in the legend.

        m = detection.metrics.evaluate_scenes(test, predictions)
        plot.save(plot.detection_pr_curves(m), "pr.png")
    """
    fig, ax = _target_ax(ax, 6.4, 5.0)
    for k, (recall, precision) in enumerate(metrics.pr_curves):
        if not np.isfinite(metrics.ap50[k]):
            continue                      # no ground truth of this class: no curve
        # the envelope at recall r is the precision of the first rank that reaches r: a step
        # from (0, first precision) to the last recall reached, then down to 0
        r = np.concatenate([[0.0], recall, recall[-1:] if len(recall) else [0.0]])
        p = np.concatenate([precision[:1] if len(precision) else [0.0], precision, [0.0]])
        ax.plot(r, p, "-", drawstyle="steps-pre", linewidth=1.2,
                label=f"{metrics.class_names[k]} (AP {metrics.ap50[k]:.3f})")
    ax.set_xlabel("recall (objects found)")
    ax.set_ylabel("precision (detections that are right)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="x-small", ncol=2 if len(metrics.pr_curves) > 10 else 1,
              title=f"mAP@0.5 {metrics.map50:.3f}", title_fontsize="small")
    ax.set_title(title or "precision-recall per class (IoU 0.5)")
    return fig


# --------------------------------------------------------------------------- images


def _show_image(ax, a: np.ndarray, cmap: str | None = None) -> None:
    """One image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); floats in [0, 1] or 0..255 ints
    shown as they are, other ranges stretched to the image's own min..max."""
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or a.size == 0:
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
        lo, hi = 0, 255
    else:
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 else (a.min(), a.max())
        if a.ndim == 3 and (lo, hi) != (0.0, 1.0):
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.ndim == 2:
        ax.imshow(a, cmap=cmap or "gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    else:
        ax.imshow(a, interpolation="nearest")
    _bare(ax)


def image_grid(images, titles=None, cols: int | None = None, title: str | None = None, cmap: str | None = None,
               panel_inches: float = 2.0) -> Figure:
    """Images in a grid, each with an optional title: faces, style transfer's content / style /
    generated, the nine patches that excite a unit most.

    images: a sequence of images or an array ``(N, H, W[, C])``; each (H, W), (H, W, 1),
    (H, W, 3) or (H, W, 4), float in [0, 1] or uint8 (other float ranges are stretched).
    cols: panels per row (default: one row up to 5, then near-square: 9 -> 3 x 3).

        plot.image_grid([content, style, generated], titles=["content", "style", "generated"])
    """
    images = [_array(im, "image_grid image") for im in images]
    if not images:
        raise ValueError("image_grid: no images")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"image_grid: {len(titles)} titles for {len(images)} images")
    rows, cols = _grid_shape(len(images), cols)
    fig = figure(cols * panel_inches, rows * panel_inches + (0.4 if title else 0.0) + (0.2 * rows if titles else 0))
    for i, im in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show_image(ax, im, cmap)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def boxes(image, detections=None, *, boxes=None, labels=None, scores=None, title: str | None = None,
          width_inches: float = 8.0) -> Figure:
    """A photo with labelled boxes: what a detector found.

    image: an array (H, W[, C]) or the path of an image file.
    detections: objects with ``.box`` (x1, y1, x2, y2 in pixels), ``.label`` and ``.score``
    (``nbcnn.detection``'s Detection), or dicts with those keys. Or pass ``boxes`` (k, 4)
    corners in pixels, with optional ``labels`` and ``scores``. One colour per label.

        found = nbcnn.detection.detect(photo, network)
        plot.boxes(photo, found)
        plot.boxes(photo, boxes=[[10, 20, 120, 200]], labels=["dog"], scores=[0.9])
    """
    if isinstance(image, (str, os.PathLike)):
        from .images import load_image

        image = load_image(image)
    a = _array(image, "boxes image")
    if detections is not None:
        if boxes is not None:
            raise TypeError("boxes: pass detections or boxes=..., not both")
        items = [d if isinstance(d, dict) else {"box": d.box, "label": getattr(d, "label", None),
                                                 "score": getattr(d, "score", None)} for d in detections]
        corners = [tuple(map(float, d["box"])) for d in items]
        names = [d.get("label") for d in items]
        values = [d.get("score") for d in items]
    else:
        corners = [tuple(map(float, b)) for b in (_array(boxes, "boxes").reshape(-1, 4) if boxes is not None else [])]
        names = list(labels) if labels is not None else [None] * len(corners)
        values = list(scores) if scores is not None else [None] * len(corners)
        if len(names) != len(corners) or len(values) != len(corners):
            raise ValueError(f"boxes: {len(corners)} boxes, {len(names)} labels and {len(values)} scores")
    h, w = a.shape[:2] if a.ndim >= 2 else (1, 1)
    fig = figure(width_inches, min(2.5 * width_inches, width_inches * h / max(w, 1)) + (0.4 if title else 0))
    ax = fig.add_subplot()
    _show_image(ax, a)
    colours: dict = {}
    for (x1, y1, x2, y2), name, score in zip(corners, names, values):
        colour = colours.setdefault(name, f"C{len(colours) % 10}")
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2))
        parts = (str(name) if name is not None else "", f"{score:.2f}" if score is not None else "")
        text = " ".join(p for p in parts if p)
        if text:
            ax.text(x1, y1, text, color="white", fontsize="small", va="bottom", clip_on=True,
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    if title:
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- from a saved model


def find_layer(model, layer=None):
    """(path, layer) of ``layer`` in ``model``: a layer name ("C1"), a path in the network
    ("3.main.0", see ``model.network.named_layers()``), an index into ``model.layers``, or a
    Layer. Default: the first Conv2D."""
    from .layers import Conv2D, Layer

    named = [(p, l) for p, l in model.network.named_layers() if p]
    if layer is None:
        for path, candidate in named:
            if isinstance(candidate, Conv2D):
                return path, candidate
        raise ValueError("the model has no Conv2D layer")
    if isinstance(layer, Layer):
        for path, candidate in named:
            if candidate is layer:
                return path, candidate
        raise ValueError(f"{layer!r} is not a layer of this model")
    text = str(layer)
    for path, candidate in named:
        if candidate.name == text or path == text:
            return path, candidate
    if re.fullmatch(r"-?\d+", text) and -len(model.layers) <= int(text) < len(model.layers):
        index = int(text) % len(model.layers)
        return str(index), model.layers[index]
    choices = ", ".join(f"{p} {type(l).__name__}" + (f" '{l.name}'" if l.name else "") for p, l in named[:40])
    raise ValueError(f"no layer {layer!r} in the model; its layers: {choices}")


class _Captured(Exception):
    """Stops the forward pass once the wanted layer's output is in hand."""


def layer_output(model, image, layer=None, activation: bool = True):
    """(description, output) of one layer for one image, shape (H, W, C).

    image: a path (read as grey or colour to suit the model, resized to its input) or an
    array (H, W, C) / (1, H, W, C) of the model's input size. layer: as in ``find_layer``
    (default: the first Conv2D). activation: when the layer is a Conv2D followed by an
    Activation in its block, show the activation's output (the feature maps after ReLU)."""
    from .layers import Activation, Chain, Conv2D

    path, target = find_layer(model, layer)
    description = f"layer {path} {type(target).__name__}" + (f" '{target.name}'" if target.name else "")
    if activation and isinstance(target, Conv2D):
        for _, block in model.network.named_layers():
            if isinstance(block, Chain) and target in block.layers:
                i = block.layers.index(target)
                if i + 1 < len(block.layers) and isinstance(block.layers[i + 1], Activation):
                    target = block.layers[i + 1]
                    description += f" + {target.kind}"
    x = _model_input(model, image)
    captured = {}
    original = target.forward

    def capture(x_in, training=False):
        captured["y"] = original(x_in, training)
        raise _Captured

    target.forward = capture  # an instance attribute: hides the method for this one call
    try:
        model.forward(x)
    except _Captured:
        pass
    finally:
        del target.forward
    if "y" not in captured:
        raise ValueError(f"layer {description} did not run in the forward pass")
    return description, _array(captured["y"], "layer output")[0]


def _model_input(model, image) -> np.ndarray:
    """(1, H, W, C) float32 for ``model`` from a path or an array."""
    if model.input_shape is None:
        raise ValueError("the model has no input shape: build it first")
    h, w, c = model.input_shape
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        from .images import load_image

        a = load_image(image, grey=(c == 1))
        if a.shape[:2] != (h, w):
            a = np.stack([np.asarray(Image.fromarray(a[:, :, k], mode="F").resize((w, h), Image.Resampling.LANCZOS))
                          for k in range(a.shape[2])], axis=-1)
        if a.shape[2] != c:
            raise ValueError(f"the model takes {c} channels; {image} gives {a.shape[2]}")
        return np.clip(a, 0, 1)[None].astype(np.float32)
    a = _array(image, "image").astype(np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.shape[1:] != (h, w, c) or a.shape[0] != 1:
        raise ValueError(f"the model takes one image of shape {(h, w, c)}, got {a.shape}")
    return a


def model_filters(model, layer=None, **kwargs) -> Figure:
    """``filters`` of a model's conv layer (default: the first Conv2D), titled with its name.

        plot.model_filters(nbcnn.load_model("lenet.nbcnn"))          # C1's 6 filters
    """
    from .layers import Conv2D

    path, target = find_layer(model, layer)
    if not isinstance(target, Conv2D):
        raise ValueError(f"layer {path} is a {type(target).__name__}, not a Conv2D: it has no filters to draw")
    name = f"layer {path} Conv2D" + (f" '{target.name}'" if target.name else "")
    W = target.params["W"]
    kwargs.setdefault("title", f"{name}: {W.shape[3]} filters {W.shape[0]}x{W.shape[1]}x{W.shape[2]}")
    return filters(W, **kwargs)


def model_feature_maps(model, image, layer=None, activation: bool = True, **kwargs) -> Figure:
    """``feature_maps`` of one layer (default: the first Conv2D and its activation) for one
    image, the input drawn first.

        plot.model_feature_maps(nbcnn.load_model("lenet.nbcnn"), "digit.png")
    """
    description, out = layer_output(model, image, layer, activation)
    kwargs.setdefault("title", f"{description}: {out.shape[2]} maps {out.shape[0]}x{out.shape[1]}")
    return feature_maps(out, image=_model_input(model, image)[0], **kwargs)
