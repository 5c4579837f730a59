"""The same style-transfer step in PyTorch: a benchmark peer only (nbcnn never needs torch).

    from nbcnn.style.torch_peer import torch_style_step
    torch_style_step(size=256)     # {"median_ms", "min_ms", ..., "costs": {...}}

Same network from the same weights (the ``FeatureNetwork``'s arrays: YOLOv3-tiny's convolutions
with batch norm folded in, leaky ReLU 0.1, darknet's max pools), same images, same initial
noise, same costs (content, Gram style, optional total variation, the same layers and
weights), same update (Adam with Keras' defaults, learning rate 0.01, then a clip to [0, 1]).
Only the image has ``requires_grad``, so torch too computes no weight gradients. Torch runs on
as many threads as Numba (``torch.set_num_threads``), channels-last by default (its faster
layout on CPU for these convolutions; ``channels_last=False`` for NCHW).

The first step's cost terms come back in ``costs``: they match ``time_style_step``'s to float32
rounding, which shows the two solved the same problem.
"""

from __future__ import annotations

import time

import numpy as np


def _torch_network(network, torch, F):
    """The FeatureNetwork's stages as a torch forward ``run(x, layers) -> {layer: activations}``."""
    stages = []
    for s in network.stages:
        if s.kind == "conv":
            W = torch.from_numpy(np.ascontiguousarray(s.W.transpose(3, 2, 0, 1)))  # (C_out, C_in, f, f)
            b = torch.from_numpy(np.ascontiguousarray(s.b))
            stride = s.stride if isinstance(s.stride, int) else tuple(s.stride)
            if not isinstance(s.pad, (int, np.integer)):
                raise ValueError(f"layer {s.index}: the torch peer takes integer conv padding, got {s.pad!r}")
            stages.append((s.index, "conv", (W, b, stride, int(s.pad), s.activation, s.slope)))
        elif s.kind == "maxpool":
            size = s.size[0] if isinstance(s.size, tuple) else s.size
            stride = s.stride[0] if isinstance(s.stride, tuple) else s.stride
            (top, bottom), (left, right) = s.pad
            # darknet pads the bottom/right with -inf; where those rows can never be read (a 2/2 pool
            # of an even size) torch skips the copy, as nbcnn's kernels skip padding anyway
            stages.append((s.index, "maxpool", (size, stride, (left, right, top, bottom))))
        else:
            stages.append((s.index, "upsample", (s.size,)))
    acts = {"linear": lambda z, slope: z, "leaky": lambda z, slope: F.leaky_relu(z, slope),
            "relu": lambda z, slope: F.relu(z), "logistic": lambda z, slope: torch.sigmoid(z),
            "tanh": lambda z, slope: torch.tanh(z)}

    def to_memory_format(memory_format):
        for k, (index, kind, p) in enumerate(stages):
            if kind == "conv":
                stages[k] = (index, kind, (p[0].contiguous(memory_format=memory_format), *p[1:]))

    def run(x, layers):
        out, last = {}, max(layers)
        for index, kind, p in stages:
            if index > last:
                break
            if kind == "conv":
                W, b, stride, pad, act, slope = p
                x = acts[act](F.conv2d(x, W, b, stride, pad), slope)
            elif kind == "maxpool":
                size, stride, pad = p
                H, W = x.shape[2:]
                same = ((H + pad[2] + pad[3] - size) // stride == (H - size) // stride
                        and (W + pad[0] + pad[1] - size) // stride == (W - size) // stride)
                if any(pad) and not (pad[0] == pad[2] == 0 and same):
                    x = F.pad(x, pad, value=float("-inf"))
                x = F.max_pool2d(x, size, stride)
            else:
                x = F.interpolate(x, scale_factor=p[0], mode="nearest")
            if index in layers:
                out[index] = x
        return out

    return run, to_memory_format


def torch_style_step(size: int = 256, steps: int = 10, warmup: int = 2, network=None, threads: int | None = None,
                     channels_last: bool = True, learning_rate: float = 0.01, **problem_options) -> dict:
    """Milliseconds per style-transfer step in PyTorch, the problem of ``time_style_step``.

    Returns ``{"median_ms", "min_ms", "mean_ms", "runs", "size", "threads", "torch", "costs"}``.
    ``network``: a ``FeatureNetwork`` (default: YOLOv3-tiny's, from the cache). The targets
    (the content's activations, the style's Gram matrices) are computed by torch as well.
    """
    import numba
    import torch
    import torch.nn.functional as F

    from .features import load_feature_network
    from .timing import bench_images, summarise
    from .transfer import StyleTransfer

    if network is None:
        network = load_feature_network()
    content, style = bench_images(size)
    # the nbcnn problem gives the layers, weights and the seeded initial image (nothing is timed there)
    problem = StyleTransfer(content, [style], network, **problem_options)
    init = problem.initial_image("noise", 0.25, seed=0)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads or numba.get_num_threads())
    try:
        run, to_memory_format = _torch_network(network, torch, F)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        to_memory_format(memory_format)

        def image(a):
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None])).contiguous(
                memory_format=memory_format)

        def gram(a):
            _, C, H, W = a.shape
            if channels_last:  # (1, H, W, C) in memory: positions x channels without a copy
                A = a.permute(0, 2, 3, 1).reshape(H * W, C)
                return A.T @ A
            A = a.reshape(C, H * W)
            return A @ A.T

        style_layers = problem.style_layers
        content_layer = problem.content_layer
        layers = sorted({content_layer} | {layer for layer, _ in style_layers})
        alpha, beta, gamma = problem.alpha, problem.beta, problem.gamma
        with torch.no_grad():
            a_C = run(image(problem.content), [content_layer])[content_layer]
            acts_S = run(image(problem.styles[0]), [layer for layer, _ in style_layers])
            grams_S = {layer: gram(acts_S[layer]) for layer, _ in style_layers}

        G = image(init).requires_grad_(True)
        opt = torch.optim.Adam([G], lr=learning_rate, betas=(0.9, 0.999), eps=1e-7)

        def step():
            acts = run(G, layers)
            a = acts[content_layer]
            _, C, H, W = a.shape
            J_content = ((a - a_C) ** 2).sum() / (4.0 * H * W * C)
            J_style = 0.0
            for layer, weight in style_layers:
                a = acts[layer]
                _, C, H, W = a.shape
                J_style = J_style + weight * ((gram(a) - grams_S[layer]) ** 2).sum() / (4.0 * C ** 2 * (H * W) ** 2)
            J = alpha * J_content + beta * J_style
            J_tv = 0.0
            if gamma:
                _, C, H, W = G.shape
                J_tv = (((G[:, :, 1:] - G[:, :, :-1]) ** 2).sum() + ((G[:, :, :, 1:] - G[:, :, :, :-1]) ** 2).sum()
                        ) / (H * W * C)
                J = J + gamma * J_tv
            opt.zero_grad(set_to_none=True)
            J.backward()
            opt.step()
            with torch.no_grad():
                G.clamp_(0, 1)
            return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in
                    (("total", J), ("content", J_content), ("style", J_style), ("tv", J_tv))}

        times, first = [], None
        for k in range(warmup + steps):
            start = time.perf_counter()
            costs = step()
            elapsed = time.perf_counter() - start
            first = first or costs
            if k >= warmup:
                times.append(elapsed)
        return {**summarise(times), "size": size, "threads": torch.get_num_threads(), "torch": torch.__version__,
                "channels_last": channels_last, "costs": first}
    finally:
        torch.set_num_threads(saved_threads)
