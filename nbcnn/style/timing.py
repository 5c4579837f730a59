"""Time one optimisation step of style transfer: nbcnn here, the same step in PyTorch in ``torch_peer``.

    from nbcnn.style.timing import time_style_step
    time_style_step(size=256)      # {"median_ms": ..., "min_ms": ..., "costs": {...}, ...}

A step is everything ``style_transfer`` does per iteration: the forward of the feature network
to its content and style layers, the cost terms, the backward to the pixels, the Adam update
and the clip to [0, 1]. The problem: the shipped ``chelsea.jpg`` (content) and
``starry_night.jpg`` (style), each cover-cropped to ``size x size``, the default layers and
weights, on YOLOv3-tiny's first layers (``nbcnn weights yolov3-tiny``).
"""

from __future__ import annotations

import time

import numpy as np

from .. import backend
from ..images import load_image, sample_image_path
from .transfer import StyleTransfer, cover_crop, make_optimizer, _Pixels

BENCH_CONTENT = "chelsea.jpg"
BENCH_STYLE = "starry_night.jpg"


def bench_images(size: int = 256):
    """The benchmark's content and style images, (size, size, 3) float32 each."""
    content = cover_crop(load_image(sample_image_path(BENCH_CONTENT)), size, size)
    style = cover_crop(load_image(sample_image_path(BENCH_STYLE)), size, size)
    return content, style


def summarise(seconds: list[float]) -> dict:
    s = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(s)), "min_ms": float(s.min()), "mean_ms": float(s.mean()),
            "runs": int(s.size)}


def time_style_step(size: int = 256, steps: int = 10, warmup: int = 2, network=None, backend_name: str = "cpu",
                    learning_rate: float = 0.01, **problem_options) -> dict:
    """Seconds per optimisation step of nbcnn's style transfer at ``size x size``, on a backend.

    Returns ``{"median_ms", "min_ms", "mean_ms", "runs", "size", "backend", "costs"}`` with
    ``costs`` the cost terms of the first step (the content image plus the seeded noise), which
    ``torch_peer.torch_style_step`` computes too: equal costs say the two ran the same problem.
    ``problem_options`` go to ``StyleTransfer`` (content_layer, style_layers, alpha, beta, gamma).
    """
    content, style = bench_images(size)
    with backend.use_backend(backend_name):
        problem = StyleTransfer(content, [style], network, **problem_options)
        pixels = _Pixels(problem.initial_image("noise", 0.25, seed=0))
        opt = make_optimizer("adam", learning_rate)
        times, first = [], None
        for k in range(warmup + steps):
            start = time.perf_counter()
            costs, grad = problem.cost_and_grad(pixels.params["G"])
            pixels.grads["G"] = grad
            opt.step([("generated", pixels, "G")])
            np.clip(pixels.params["G"], 0, 1, out=pixels.params["G"])
            elapsed = time.perf_counter() - start
            first = first or costs
            if k >= warmup:
                times.append(elapsed)
    return {**summarise(times), "size": size, "backend": backend_name, "costs": first}
