"""Neural style transfer: optimise the pixels of an image G so that its content matches a photo C
and its style (the Gram matrices of several layers) matches one or more paintings S.

    from nbcnn.style import style_transfer
    result = style_transfer("photo.jpg", ["starry_night.jpg"], steps=200, size=256, out="out.png")
    result.image           # (H, W, 3) float32 in [0, 1]
    result.costs[0], result.costs[-1]       # {"total", "content", "style", "tv"} before and after

Each step, as in the course's ``train_step``::

    a = network.forward(G, layers)                      # activations of the content and style layers
    J = alpha * J_content(a_C, a[content]) + beta * sum_l lambda_l J_style^l(S, a[l]) (+ gamma * J_tv(G))
    dJ/dG = network.backward({layer: dJ/da[layer]})     # (+ gamma * dJ_tv/dG)
    G = clip(Adam(G, dJ/dG), 0, 1)                      # or plain gradient descent

G starts from the content image plus uniform noise in [-0.25, 0.25] (the course's init) or from
the content image itself. With several style images, each layer's style cost is their
weighted sum (weights normalised to 1). ``keep_colors`` transfers the style to the luminance
only (Gatys et al., "Preserving colour in neural artistic style transfer", 2016): the network
sees grey images (the content's luminance Y, the paintings' luminance matched to its mean and
spread), the optimiser changes Y, and the picture takes its colours (YIQ's I and Q) from the
content photo.

The feature network: the first layers of YOLOv3-tiny (``nbcnn.style.features``); by default
layers 0, 2, 4, 6, 8 (its five 3x3 conv blocks, as the course's ``block1_conv1`` ...
``block5_conv1``) with weight 0.2 each for style, and layer 8 for content.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ops, optim
from ..backend import to_host
from ..memory import keep_freed_memory
from .costs import content_cost, gram_matrix, gram_style_cost, total_cost, total_variation

DEFAULT_CONTENT_LAYER = 8
DEFAULT_STYLE_LAYERS = ((0, 0.2), (2, 0.2), (4, 0.2), (6, 0.2), (8, 0.2))

# RGB <-> YIQ (NTSC): Y is the luminance, I and Q the colour
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.59590059, -0.27455667, -0.32134392],
                       [0.21153661, -0.52273617, 0.31119955]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


# --------------------------------------------------------------------------- images


def find_image(name) -> Path:
    """A path to an image: ``name`` itself if that file exists, else the sample of that name shipped
    in ``nbcnn/assets`` (``chelsea.jpg``, ``astronaut.jpg``, ``starry_night.jpg``, ``scream.jpg``, ...)."""
    path = Path(name)
    if path.is_file():
        return path
    from ..images import sample_image_path

    if path.parent == Path("."):
        try:
            return sample_image_path(path.name)
        except FileNotFoundError:
            pass
    raise FileNotFoundError(f"image file not found: {name} (nor is it one of the samples in nbcnn/assets: "
                            f"chelsea.jpg, astronaut.jpg, starry_night.jpg, scream.jpg, dog.jpg, person.jpg)")


def _as_image(image, name: str) -> np.ndarray:
    """A path or an (H, W, 3) array (uint8 0-255 or float 0-1) -> (H, W, 3) float32 in [0, 1]."""
    if isinstance(image, (str, Path)):
        from ..images import load_image

        return load_image(image)
    a = np.asarray(to_host(image))
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"{name} must be an image (H, W, 3), got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be uint8 (0-255) or float (0-1), got dtype {a.dtype}")
    return np.clip(a, 0, 1).astype(np.float32)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lanczos resize of a [0, 1] float image (Pillow, per channel in float)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32), mode="F")
                           .resize((width, height), Image.Resampling.LANCZOS)) for c in range(image.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0, 1).astype(np.float32)


def fit_longer_side(image: np.ndarray, size: int | None) -> np.ndarray:
    """Resize so that the longer side has ``size`` pixels (aspect ratio kept); None: as it is."""
    if size is None:
        return image
    h, w = image.shape[:2]
    scale = size / max(h, w)
    return _resize(image, max(1, round(h * scale)), max(1, round(w * scale)))


def cover_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to cover (height, width) with the aspect ratio kept, then crop the centre."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    big = _resize(image, max(height, round(h * scale)), max(width, round(w * scale)))
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[top:top + height, left:left + width])


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float64) @ YIQ_TO_RGB.T, 0, 1).astype(np.float32)


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """The style's luminance shifted and scaled to the content's mean and standard deviation."""
    s_mean, s_std = float(style_y.mean()), float(style_y.std()) or 1.0
    return np.clip((style_y - s_mean) / s_std * float(content_y.std()) + float(content_y.mean()), 0, 1
                   ).astype(np.float32)


# --------------------------------------------------------------------------- arguments


def parse_layers(spec, what: str = "style layers") -> tuple[tuple[int, float], ...]:
    """``"0:0.2,2:0.2"`` / ``[(0, 0.2), (2, 0.2)]`` / ``{0: 0.2}`` / ``[0, 2]`` (equal weights summing
    to 1) -> ``((0, 0.2), (2, 0.2))``."""
    if isinstance(spec, str):
        items = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            layer, _, weight = part.partition(":")
            try:
                items.append((int(layer), float(weight) if weight else None))
            except ValueError:
                raise ValueError(f"cannot read {what} {spec!r}: write LAYER[:WEIGHT],... such as 0:0.2,2:0.2") from None
    elif isinstance(spec, dict):
        items = [(int(k), float(v)) for k, v in spec.items()]
    else:
        items = [(int(s), None) if np.ndim(s) == 0 else (int(s[0]), float(s[1])) for s in spec]
    if not items:
        raise ValueError(f"{what}: name at least one layer")
    if any(w is None for _, w in items):
        if not all(w is None for _, w in items):
            raise ValueError(f"{what} {spec!r}: give a weight to every layer or to none")
        items = [(layer, 1.0 / len(items)) for layer, _ in items]
    if any(w < 0 or not np.isfinite(w) for _, w in items):
        raise ValueError(f"{what} {spec!r}: weights must be finite and >= 0")
    if len({layer for layer, _ in items}) != len(items):
        raise ValueError(f"{what} {spec!r}: a layer is named twice")
    return tuple(items)


def _blend(weights, count: int) -> np.ndarray:
    if weights is None:
        return np.full(count, 1.0 / count)
    w = np.asarray(weights, np.float64).reshape(-1)
    if w.size != count:
        raise ValueError(f"{count} style images but {w.size} blend weights")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"style blend weights must be >= 0 with a positive sum, got {list(w)}")
    return w / w.sum()


# --------------------------------------------------------------------------- the objective


class _Pixels:
    """The generated image as the one parameter an ``nbcnn.optim`` optimiser updates (they walk
    ``(path, layer, key)`` triples and read ``layer.params[key]`` / ``layer.grads[key]``)."""

    def __init__(self, image: np.ndarray):
        self.params = {"G": image}
        self.grads: dict = {}


@dataclass
class StyleResult:
    """What ``style_transfer`` returns: the picture, the cost terms of every step, the files saved."""

    image: np.ndarray
    costs: list = field(default_factory=list)      # one dict per evaluated image: steps + 1 of them
    saved: list = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    @property
    def reduction(self) -> float:
        """How many times lower the total cost ended than it started."""
        last = self.costs[-1]["total"]
        return self.costs[0]["total"] / last if last > 0 else float("inf")


class StyleTransfer:
    """The cost J(G) of one content image and some style images on a feature network, with its
    gradient with respect to the pixels of G (``cost_and_grad``), and the image it optimises.

    Shapes: the content is resized so its longer side has ``size`` pixels (None: kept); each
    style image is resized to cover it and cropped to the same (H, W).
    """

    def __init__(self, content, styles, network=None, *, content_layer: int = DEFAULT_CONTENT_LAYER,
                 style_layers=DEFAULT_STYLE_LAYERS, style_blend=None, alpha: float = 10.0, beta: float = 40.0,
                 gamma: float = 0.0, keep_colors: bool = False, size: int | None = None):
        if network is None:
            from .features import load_feature_network

            network = load_feature_network()
        self.network = network
        if isinstance(styles, (str, Path)) or (isinstance(styles, np.ndarray) and styles.ndim == 3):
            styles = [styles]
        styles = list(styles)
        if not styles:
            raise ValueError("style transfer needs at least one style image")
        self.content_layer = int(content_layer)
        self.style_layers = parse_layers(style_layers)
        self.blend = _blend(style_blend, len(styles))
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.keep_colors = bool(keep_colors)
        content = fit_longer_side(_as_image(content, "content"), size)
        H, W = content.shape[:2]
        styles = [cover_crop(_as_image(s, f"style image {k}"), H, W) for k, s in enumerate(styles)]
        self.content_rgb = content
        self.layers = sorted({self.content_layer} | {layer for layer, _ in self.style_layers})
        network._check_layers(self.layers)
        if self.keep_colors:
            yiq = rgb_to_yiq(content)
            self.content_yiq = yiq
            content = yiq[:, :, :1]
            styles = [match_luminance(rgb_to_yiq(s)[:, :, :1], content) for s in styles]
        self.content = content               # what G starts from: (H, W, 3), or (H, W, 1) luminance
        self.styles = styles
        self.a_C = network.forward(self._net_input(content), [self.content_layer])[self.content_layer]
        style_ids = [layer for layer, _ in self.style_layers]
        self.grams_S = []                    # per style image: {layer: Gram (1, C, C)}
        for s in styles:
            acts = network.forward(self._net_input(s), style_ids)
            self.grams_S.append({layer: gram_matrix(acts[layer]) for layer in style_ids})

    @property
    def shape(self) -> tuple:
        return self.content.shape

    def _net_input(self, pixels: np.ndarray) -> np.ndarray:
        """The network's input (1, H, W, 3): luminance is repeated on the three channels. float32,
        or float64 for float64 pixels (gradient checks)."""
        x = pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)
        return np.ascontiguousarray(x[None], np.float64 if pixels.dtype == np.float64 else np.float32)

    def initial_image(self, init: str = "noise", noise: float = 0.25, seed: int = 0) -> np.ndarray:
        """``"noise"``: the content plus uniform noise in [-noise, noise], clipped to [0, 1] (the
        course's); ``"content"``: the content itself."""
        G = self.content.astype(np.float32).copy()
        if init == "noise":
            rng = np.random.default_rng(seed)
            G += rng.uniform(-noise, noise, G.shape).astype(np.float32)
            np.clip(G, 0, 1, out=G)
        elif init != "content":
            raise ValueError(f"init must be 'noise' or 'content', got {init!r}")
        return G

    def cost_and_grad(self, pixels: np.ndarray, with_grad: bool = True):
        """``({"total", "content", "style", "tv"}, dJ/dpixels)`` for the image ``pixels`` (shaped
        like ``self.content``); the gradient is None without ``with_grad``."""
        keep_freed_memory()  # every step allocates the same arrays: reuse their pages
        acts = self.network.forward(self._net_input(pixels), self.layers)
        grads = {}
        a_G = acts[self.content_layer]
        J_content, d_content = content_cost(self.a_C, a_G, with_grad=True)
        grads[self.content_layer] = self.alpha * d_content
        J_style = 0.0
        for layer, weight in self.style_layers:
            a = acts[layer]
            G_G = gram_matrix(a)
            positions = a.shape[1] * a.shape[2]
            dG = np.zeros_like(G_G)
            for w_s, grams in zip(self.blend, self.grams_S):
                J, d = gram_style_cost(grams[layer], G_G, positions, with_grad=True)
                J_style += weight * w_s * J
                dG += np.float32(weight * w_s) * d
            if weight and with_grad:
                da = to_host(ops.gram_backward(dG * np.float32(self.beta), a))
                if layer in grads:
                    grads[layer] += da  # both fresh arrays of this step
                else:
                    grads[layer] = da
        J_tv, d_tv = total_variation(pixels, with_grad=True) if self.gamma else (0.0, None)
        costs = {"total": float(total_cost(J_content, J_style, self.alpha, self.beta, J_tv, self.gamma)),
                 "content": float(J_content), "style": float(J_style), "tv": float(J_tv)}
        if not with_grad:
            return costs, None
        dx = self.network.backward(grads)[0]
        if pixels.shape[2] == 1:
            dx = dx.sum(axis=2, keepdims=True)  # the luminance fed all three channels
        if d_tv is not None:
            dx = dx + np.float32(self.gamma) * d_tv
        return costs, np.ascontiguousarray(dx, pixels.dtype)

    def to_rgb(self, pixels: np.ndarray) -> np.ndarray:
        """The picture: G itself, or with ``keep_colors`` its luminance with the content's colours."""
        if not self.keep_colors:
            return np.clip(pixels, 0, 1).astype(np.float32)
        yiq = self.content_yiq.copy()
        yiq[:, :, 0] = pixels[:, :, 0]
        return yiq_to_rgb(yiq)


def make_optimizer(name: str, learning_rate: float):
    """``"adam"`` (the course's: Keras defaults, learning rate 0.01) or ``"gd"`` (the lecture's plain
    gradient descent ``G -= learning_rate * dJ/dG``)."""
    if name == "adam":
        return optim.Adam(learning_rate)
    if name in ("gd", "sgd"):
        return optim.SGD(learning_rate)
    raise ValueError(f"optimizer must be 'adam' or 'gd', got {name!r}")


def style_transfer(content, styles, *, steps: int = 100, network=None, content_layer: int = DEFAULT_CONTENT_LAYER,
                   style_layers=DEFAULT_STYLE_LAYERS, style_blend=None, alpha: float = 10.0, beta: float = 40.0,
                   gamma: float = 0.0, keep_colors: bool = False, size: int | None = 256, optimizer: str = "adam",
                   learning_rate: float = 0.01, init: str = "noise", noise: float = 0.25, seed: int = 0,
                   out=None, save_every: int | None = None, callback=None) -> StyleResult:
    """Optimise an image for ``steps`` steps; returns a ``StyleResult``.

    content: a path or (H, W, 3) image; styles: one or a list of them (``style_blend``: their
    weights). ``content_layer``, ``style_layers`` (``[(layer, weight), ...]`` or
    ``"0:0.2,2:0.2"``), ``alpha``/``beta``/``gamma`` (content, style, total variation weights),
    ``keep_colors``, ``size`` (the longer side in pixels), ``optimizer`` ("adam" or "gd"),
    ``learning_rate``, ``init`` ("noise" or "content"), ``noise`` and ``seed``: see the module
    docstring. The same arguments and seed give the same image.

    ``out``: save the final picture there (PNG); with ``save_every=k`` also every k steps, as
    ``<out stem>_<step>.png`` beside it. ``callback(step, costs)`` after each step (``costs`` of
    the image that step started from), for progress bars.
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    problem = StyleTransfer(content, styles, network, content_layer=content_layer, style_layers=style_layers,
                            style_blend=style_blend, alpha=alpha, beta=beta, gamma=gamma,
                            keep_colors=keep_colors, size=size)
    return optimise(problem, steps, optimizer=optimizer, learning_rate=learning_rate, init=init, noise=noise,
                    seed=seed, out=out, save_every=save_every, callback=callback)


def optimise(problem: StyleTransfer, steps: int, *, optimizer: str = "adam", learning_rate: float = 0.01,
             init: str = "noise", noise: float = 0.25, seed: int = 0, out=None, save_every: int | None = None,
             callback=None) -> StyleResult:
    """The optimisation loop of ``style_transfer`` on a ``StyleTransfer`` already set up."""
    from ..images import save_image

    if out is not None and not Path(out).parent.is_dir():  # say so now, not after the first save_every steps
        raise FileNotFoundError(f"cannot write {out}: folder {Path(out).parent} does not exist")
    pixels = _Pixels(problem.initial_image(init, noise, seed))
    opt = make_optimizer(optimizer, learning_rate)
    result = StyleResult(image=problem.to_rgb(pixels.params["G"]))
    out = Path(out) if out is not None else None
    start = time.perf_counter()
    for step in range(steps):
        costs, grad = problem.cost_and_grad(pixels.params["G"])
        result.costs.append(costs)
        pixels.grads["G"] = grad
        opt.step([("generated", pixels, "G")])
        np.clip(pixels.params["G"], 0, 1, out=pixels.params["G"])
        if callback is not None:
            callback(step, costs)
        if out is not None and save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            path = out.with_name(f"{out.stem}_{step + 1:04d}.png")
            result.saved.append(save_image(path, problem.to_rgb(pixels.params["G"])))
    result.seconds = time.perf_counter() - start
    result.costs.append(problem.cost_and_grad(pixels.params["G"], with_grad=False)[0])
    result.steps = steps
    result.image = problem.to_rgb(pixels.params["G"])
    if out is not None:
        result.saved.append(save_image(out.with_suffix(".png") if out.suffix.lower() != ".png" else out,
                                       result.image))
    return result
