"""What deep ConvNets learn: the image patches that excite a unit most, and the first layer's filters.

The lecture's figures (Zeiler and Fergus, 2013): pick a unit (one channel) of layer l, run a
set of images through the network, and show the 9 image patches where that unit's activation
is highest. A unit of layer l sees only its receptive field, the square of input pixels its
value depends on: tiny (edges, colours) in the first layers, large (textures, object parts)
deeper. The receptive field is computed layer by layer::

    r = 1, jump = 1, first = 0                       (one pixel, in image coordinates)
    a window f, stride s, padding p (top/left):
        first += -p * jump;  r += (f - 1) * jump;  jump *= s

Cell (y, x) of layer l then sees pixels ``first + y * jump`` to ``first + y * jump + r - 1``
(rows; columns likewise); parts outside the image are drawn grey.

    from nbcnn.style import visualize as V
    found = V.top_patches(V.stages_of(network), images, layer=6, units=[3, 17])  # UnitPatches
    paths = V.visualize(network, images, layers=(2, 6, 10), units=4, out_dir="units")

Works for a ``FeatureNetwork`` (YOLOv3-tiny's backbone) and for an ``nbcnn.Model`` (``nbcnn
train --save``): its layers before ``Flatten``. Pictures are drawn by ``nbcnn.plot``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import layers as L
from ..backend import to_host
from ..checks import padding as resolve_padding


@dataclass
class VisStage:
    """One layer, seen by the visualisation: how to run it, and its window (None: element-wise)."""

    index: int
    label: str
    run: object                          # x (N, H, W, C) -> y
    window: object = None                # in_shape (H, W) -> (f_h, f_w, s_h, s_w, top, left), or None
    conv: bool = False


@dataclass
class UnitPatches:
    """The top activations of one unit and the image patches behind them, best first."""

    layer: int
    unit: int
    values: list = field(default_factory=list)     # activations
    where: list = field(default_factory=list)      # (image index, row, column) in the layer's grid
    patches: list = field(default_factory=list)    # (r, r, 3) float arrays
    receptive_field: int = 1


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _feature_stages(network) -> list[VisStage]:
    from .features import FeatureNetwork

    stages = []
    for s in network.stages:
        one = FeatureNetwork([s])

        def run(x, one=one, index=s.index):
            return one.forward(x, [index])[index]

        if s.kind == "conv":
            f_h, f_w = s.W.shape[:2]
            window = _conv_window(f_h, f_w, s.stride, s.pad)
        elif s.kind == "maxpool":
            f_h, f_w = _pair(s.size)
            window = _conv_window(f_h, f_w, s.stride, s.pad)
        else:
            window = "stop"  # upsampling: a receptive field smaller than a pixel step; not drawn
        label = f"layer {s.index} {s.kind}" + (f" {s.W.shape[3]}" if s.kind == "conv" else "")
        stages.append(VisStage(s.index, label, run, window, s.kind == "conv"))
    return stages


def _conv_window(f_h, f_w, stride, pad):
    s_h, s_w = _pair(stride)

    def window(in_hw):
        p = resolve_padding(pad, in_hw, (f_h, f_w), (s_h, s_w))
        return f_h, f_w, s_h, s_w, p.top, p.left

    return window


def _model_stages(model) -> list[VisStage]:
    stages = []
    for k, layer in enumerate(model.layers):
        def run(x, layer=layer):
            return np.asarray(to_host(layer.forward(x, training=False)))

        if isinstance(layer, L.Conv2D):
            window = _conv_window(*layer.kernel_size, layer.strides, layer.padding)
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            window = _conv_window(*layer.pool_size, layer.strides, layer.padding)
        elif isinstance(layer, (L.Activation, L.LeakyReLU, L.BatchNormalization, L.DarknetBatchNorm, L.Dropout)):
            window = None
        else:
            break  # Flatten, Dense, global pooling: no more image positions
        label = f"layer {k} {getattr(layer, 'name', None) or type(layer).__name__}"
        stages.append(VisStage(k, label, run, window, isinstance(layer, L.Conv2D)))
    if not stages:
        raise ValueError("the model has no convolutional layers at its start to visualise")
    return stages


def stages_of(network) -> list[VisStage]:
    """The layers of a ``FeatureNetwork`` or an ``nbcnn.Model`` as ``VisStage``s."""
    if hasattr(network, "stages"):
        return _feature_stages(network)
    if hasattr(network, "layers"):
        return _model_stages(network)
    raise TypeError(f"cannot visualise a {type(network).__name__}: give a FeatureNetwork or an nbcnn Model")


def activations_and_fields(stages, image: np.ndarray, layers) -> dict:
    """Run one image (H, W, C) through the stages; returns ``{layer: (activations (h, w, C),
    (r_h, r_w), (jump_h, jump_w), (first_h, first_w))}`` for each layer asked for."""
    x = np.ascontiguousarray(image[None], np.float32)
    r, jump, first = [1, 1], [1, 1], [0, 0]
    wanted, out = set(layers), {}
    for stage in stages:
        if stage.index > max(wanted):
            break
        if stage.window == "stop":
            raise ValueError(f"{stage.label}: upsampling layers have no receptive field to draw; pick earlier layers")
        if stage.window is not None:
            f_h, f_w, s_h, s_w, top, left = stage.window(x.shape[1:3])
            for d, f, s, p in ((0, f_h, s_h, top), (1, f_w, s_w, left)):
                first[d] -= p * jump[d]
                r[d] += (f - 1) * jump[d]
                jump[d] *= s
        x = np.asarray(stage.run(x))
        if stage.index in wanted:
            out[stage.index] = (x[0], tuple(r), tuple(jump), tuple(first))
    missing = wanted - set(out)
    if missing:
        raise ValueError(f"layers {sorted(missing)} are not among the visualised layers "
                         f"{[s.index for s in stages]}")
    return out


def _crop(image, top, left, r_h, r_w):
    """The r_h x r_w patch at (top, left), grey (0.5) where it leaves the image."""
    H, W, C = image.shape
    patch = np.full((r_h, r_w, C), 0.5, np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + r_h, H), min(left + r_w, W)
    if y1 > y0 and x1 > x0:
        patch[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return patch


def _inside_fraction(first, jump, r, grid_hw, image_hw):
    """For each cell of a layer's grid (row-major), the fraction of its receptive field that lies
    inside the image."""
    fractions = []
    for d in (0, 1):
        start = first[d] + np.arange(grid_hw[d]) * jump[d]
        fractions.append((np.minimum(start + r[d], image_hw[d]) - np.maximum(start, 0)).clip(0) / r[d])
    return np.outer(fractions[0], fractions[1]).reshape(-1)


def top_patches(stages, images, layer: int, units=None, k: int = 9, count: int = 4,
                inside: float = 0.9) -> list[UnitPatches]:
    """The ``k`` patches of ``images`` that excite each unit of ``layer`` most.

    ``units``: channel indices; None picks the ``count`` units whose k-th best activation is
    highest (units that respond strongly in many places, not to one freak pixel). Patches of
    one unit overlap by at most half a receptive field (a greedy suppression of nearby cells
    in the same image), so the 9 are different places. Cells whose receptive field lies less
    than ``inside`` inside the image are skipped: the zero padding around an image makes an
    edge of its own, which early units answer to (0 keeps them).
    """
    images = [np.asarray(im, np.float32) for im in images]
    per_image = [activations_and_fields(stages, im, [layer])[layer] for im in images]
    r, jump, first = per_image[0][1], per_image[0][2], per_image[0][3]
    C = per_image[0][0].shape[-1]
    # every cell of every image: value, image, row, column; one column per unit
    values = np.concatenate([a.reshape(-1, C) for a, *_ in per_image], axis=0)
    owners = np.concatenate([np.full(a.shape[0] * a.shape[1], n) for n, (a, *_) in enumerate(per_image)])
    cells = np.concatenate([np.stack(np.unravel_index(np.arange(a.shape[0] * a.shape[1]), a.shape[:2]), axis=1)
                            for a, *_ in per_image])
    inside_ok = np.concatenate([_inside_fraction(first, jump, r, a.shape[:2], im.shape[:2]) >= inside
                                for (a, *_), im in zip(per_image, images)])
    if not inside_ok.any():
        inside_ok[:] = True  # receptive fields larger than every image: take what there is
    values = np.where(inside_ok[:, None], values, -np.inf)
    apart = (max(1, math.ceil(r[0] / (2 * jump[0]))), max(1, math.ceil(r[1] / (2 * jump[1]))))

    def pick(unit):
        order = np.argsort(-values[:, unit], kind="stable")
        chosen = []
        for idx in order:
            if not inside_ok[idx]:
                break  # the rest are the skipped cells (-inf)
            n, y, x = owners[idx], cells[idx, 0], cells[idx, 1]
            if all(n != m or abs(y - yy) >= apart[0] or abs(x - xx) >= apart[1] for _, m, yy, xx in chosen):
                chosen.append((float(values[idx, unit]), int(n), int(y), int(x)))
                if len(chosen) == k:
                    break
        return chosen

    if units is None:
        kth = min(k, int(inside_ok.sum()))
        top_k = np.sort(np.partition(values, values.shape[0] - kth, axis=0)[-kth:], axis=0)[0]
        units = [int(u) for u in np.argsort(-top_k, kind="stable")[:count]]
    found = []
    for unit in units:
        if not 0 <= unit < C:
            raise ValueError(f"layer {layer} has units 0 to {C - 1}, not {unit}")
        result = UnitPatches(layer, int(unit), receptive_field=r[0])
        for value, n, y, x in pick(unit):
            result.values.append(value)
            result.where.append((n, y, x))
            result.patches.append(_crop(images[n], first[0] + y * jump[0], first[1] + x * jump[1], r[0], r[1]))
        found.append(result)
    return found


def first_layer_filters(network) -> np.ndarray:
    """The first conv layer's filters (f, f, C_in, C_out) (for a FeatureNetwork: batch norm folded in,
    which scales each filter by a positive number when gamma > 0: the pictures are the same)."""
    for stage in stages_of(network):
        if stage.conv:
            if hasattr(network, "stages"):
                return next(s.W for s in network.stages if s.index == stage.index)
            return network.layers[stage.index].params["W"]
    raise ValueError("no conv layer to take filters from")


def units_figure(found: list[UnitPatches], title: str | None = None):
    """One row per unit, its patches left to right (best first), as an ``nbcnn.plot.image_grid``."""
    from .. import plot

    panels, titles = [], []
    k = max(len(u.patches) for u in found)
    for u in found:
        for j in range(k):
            if j < len(u.patches):
                p = u.patches[j]
                panels.append(p[:, :, 0] if p.shape[2] == 1 else p)
                titles.append(f"unit {u.unit}: {u.values[j]:.2g}" if j == 0 else f"{u.values[j]:.2g}")
            else:
                panels.append(np.full_like(found[0].patches[0], 1.0))
                titles.append("")
    r = found[0].receptive_field
    return plot.image_grid(panels, titles=titles, cols=k, panel_inches=1.2,
                           title=title or f"layer {found[0].layer}: top {k} patches ({r}x{r} px) of {len(found)} units")


def visualize(network, images, layers=(2, 6, 10), units=4, k: int = 9, out_dir=".", prefix: str = "units",
              filters: bool = True, inside: float = 0.9) -> list[Path]:
    """Write one PNG per layer (``<prefix>_layer<l>.png``: ``units`` units, their ``k`` best patches)
    and, with ``filters``, the first conv layer's filters (``<prefix>_filters.png``).

    ``units``: how many units per layer (chosen by ``top_patches``), or a list of unit indices
    used for every layer. Returns the paths written.
    """
    from .. import plot

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = stages_of(network)
    paths = []
    for layer in layers:
        chosen = (None, int(units)) if np.ndim(units) == 0 else ([int(u) for u in units], len(units))
        found = top_patches(stages, images, int(layer), units=chosen[0], k=k, count=chosen[1],
                            inside=inside)
        fig = units_figure(found)
        paths.append(plot.save(fig, out_dir / f"{prefix}_layer{int(layer)}.png"))
    if filters:
        W = first_layer_filters(network)
        paths.append(plot.save(plot.filters(W, title=f"first layer: {W.shape[3]} filters "
                                                       f"{W.shape[0]}x{W.shape[1]}x{W.shape[2]}"),
                               out_dir / f"{prefix}_filters.png"))
    return paths


def default_images(width: int = 320) -> list[np.ndarray]:
    """The photos and paintings shipped in ``nbcnn/assets``, ``width`` pixels wide."""
    from ..images import load_image, sample_image_path

    names = ("dog.jpg", "person.jpg", "chelsea.jpg", "astronaut.jpg", "starry_night.jpg", "scream.jpg")
    return [load_image(sample_image_path(n), width=width) for n in names]


def load_network(model=None, cfg=None, weights=None):
    """What ``nbcnn visualize`` looks into: a saved ``nbcnn`` model (``nbcnn train --save``), a darknet
    cfg/weights pair, or by default YOLOv3-tiny's backbone (``nbcnn weights yolov3-tiny``)."""
    if model is not None:
        from ..model import load_model

        return load_model(model)
    from .features import load_feature_network

    return load_feature_network(cfg=cfg, weights=weights)


def images_for(network, paths=None, width: int = 320, limit: int = 500) -> list[np.ndarray]:
    """Images to search for patches: ``paths`` (files; grey for a one-channel model), else the
    shipped photos and paintings, or for a one-channel model the first ``limit`` test digits
    (``nbcnn.data.load_digits``, padded to the model's input size)."""
    from ..images import load_image

    grey = bool(getattr(network, "input_shape", None)) and network.input_shape[-1] == 1
    if paths:
        return [load_image(p, grey=grey, width=width) for p in paths]
    if not grey:
        return default_images(width)
    from ..data import load_digits

    size = max(int(network.input_shape[0]), 20)
    x, _ = load_digits(split="test", size=size)
    return list(x[:limit])
