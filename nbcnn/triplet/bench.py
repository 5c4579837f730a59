"""Triplet-loss training throughput: nbcnn's encoder and loss next to the same in PyTorch.

``triplet_training_throughput`` times N optimiser steps of the siamese encoder on P x K batches
of the shipped digits: forward, the pairwise distances, mining, the triplet loss and its
gradient, backward through the encoder, Adam. torch runs the same network (the layers are
translated one by one), the same mining and loss, on the same batches, when it is installed;
it is imported only inside this function (a benchmark peer, never a dependency).

Mining defaults to "hard" (one triplet per anchor, whatever the weights) so both sides do the
same amount of work at every step; semi-hard's triplet count depends on the weights.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import layers as L
from .. import optim
from ..backend import get_backend, use_backend
from ..checks import int_arg
from .encoder import FaceEncoder, build_encoder
from .mining import check_strategy, pk_batches
from .training import triplet_step


def _digit_batches(P: int, K: int, count: int, input_shape, seed: int):
    """``count`` P x K batches of real digits (x, labels), padded to ``input_shape`` if larger than 20 x 20."""
    from ..data import load_digits

    x, y = load_digits(split="all", size=max(20, int(input_shape[0])))
    x = x[:, :input_shape[0], :input_shape[1], :]
    return [(x[idx], y[idx]) for idx in pk_batches(y, P, K, count, seed)]


def _time_nbcnn(encoder: FaceEncoder, batches, warmup: int, mining: str, alpha: float, seed: int):
    opt = optim.Adam(1e-3)
    rng = np.random.default_rng(seed)
    for xb, yb in batches[:warmup]:  # compiles the kernels (or loads them from Numba's cache)
        triplet_step(encoder, opt, xb, yb, mining, alpha, rng)
    start = time.perf_counter()
    for xb, yb in batches[warmup:]:
        triplet_step(encoder, opt, xb, yb, mining, alpha, rng)
    return time.perf_counter() - start


def torch_encoder(encoder: FaceEncoder):
    """The same network in torch (NCHW inside, flattened in NHWC order like nbcnn's Flatten).
    Layers: Conv2D (stride 1, "same" or "valid"), BatchNormalization, ReLU, MaxPooling2D,
    GlobalAveragePooling2D, Flatten, Dense, L2Normalize."""
    import torch
    from torch import nn

    class NHWCFlatten(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    class Normalize(nn.Module):
        def forward(self, x):
            return nn.functional.normalize(x, dim=1, eps=1e-6)

    mods = []
    shape = encoder.input_shape
    for layer in encoder.layers:
        if isinstance(layer, L.Conv2D):
            if layer.padding not in ("same", "valid") or layer.strides not in (1, (1, 1)):
                raise ValueError("torch_encoder translates stride-1 'same'/'valid' convolutions only")
            k = layer.kernel_size
            mods.append(nn.Conv2d(shape[-1], layer.filters, k, padding="same" if layer.padding == "same" else 0,
                                  bias=layer.use_bias))
        elif isinstance(layer, L.BatchNormalization):
            norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            mods.append(norm(shape[-1], eps=layer.epsilon, momentum=1 - layer.momentum))
        elif isinstance(layer, L.Activation) and layer.kind == "relu":
            mods.append(nn.ReLU())
        elif isinstance(layer, L.MaxPooling2D):
            mods.append(nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, L.GlobalAveragePooling2D):
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif isinstance(layer, L.Flatten):
            mods.append(NHWCFlatten())
        elif isinstance(layer, L.Dense):
            mods.append(nn.Linear(shape[0], layer.units))
        elif isinstance(layer, L.L2Normalize):
            mods.append(Normalize())
        else:
            raise ValueError(f"torch_encoder cannot translate {type(layer).__name__}")
        shape = layer.output_shape
    return nn.Sequential(*mods).to(torch.float32)


def _time_torch(encoder: FaceEncoder, batches, warmup: int, mining: str, alpha: float, seed: int):
    import torch

    torch.manual_seed(seed)
    net = torch_encoder(encoder)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)

    def step(xb, yb):
        x = torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2)))
        y = torch.from_numpy(yb)
        e = net(x)
        d = (e[:, None, :] - e[None, :, :]).pow(2).sum(-1)
        same = y[:, None] == y[None, :]
        pos = same & ~torch.eye(len(y), dtype=torch.bool)
        neg = ~same
        with torch.no_grad():
            if mining == "hard":
                a = torch.arange(len(y))
                p = torch.where(pos, d, torch.tensor(-float("inf"))).argmax(1)
                n = torch.where(neg, d, torch.tensor(float("inf"))).argmin(1)
            else:
                a, p = torch.nonzero(pos, as_tuple=True)
                if mining == "random":
                    n = torch.multinomial(neg[a].float(), 1, generator=gen)[:, 0]
                else:
                    dap = d[a, p][:, None]
                    window = neg[a] & (d[a] > dap) & (d[a] < dap + alpha)
                    found = window.any(1)
                    n = torch.where(window, d[a], torch.tensor(float("inf"))).argmin(1)
                    a, p, n = a[found], p[found], n[found]
        if len(a) == 0:
            return
        loss = torch.clamp(d[a, p] - d[a, n] + alpha, min=0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for xb, yb in batches[:warmup]:
        step(xb, yb)
    start = time.perf_counter()
    for xb, yb in batches[warmup:]:
        step(xb, yb)
    return time.perf_counter() - start, torch.__version__, torch.get_num_threads()


def triplet_training_throughput(steps: int = 20, P: int = 6, K: int = 16, warmup: int = 2, mining: str = "hard",
                                alpha: float = 0.2, embedding_dim: int = 32, width: int = 32,
                                input_shape=(20, 20, 1), backend: str | None = None, peers: bool = True,
                                seed: int = 0) -> dict:
    """Time ``steps`` triplet training steps (after ``warmup``) of nbcnn's digit encoder and of
    the same encoder in torch, on the same P x K batches. Returns::

        {"batch": P*K, "steps": steps, "mining": ..., "params": ..., "input_shape": ...,
         "nbcnn": {"backend", "seconds", "steps_per_second", "images_per_second"},
         "torch": {"version", "threads", "seconds", "steps_per_second", "images_per_second"}
                  or {"skipped": why}}
    """
    steps, warmup = int_arg(steps, "steps"), int_arg(warmup, "warmup", 0)
    check_strategy(mining)
    batches = _digit_batches(P, K, steps + warmup, input_shape, seed)
    encoder = build_encoder(input_shape, embedding_dim, width, seed=seed)
    images = steps * P * K
    with use_backend(backend or get_backend()) as used:
        seconds = _time_nbcnn(encoder, batches, warmup, mining, alpha, seed)
    result = {"batch": P * K, "steps": steps, "mining": mining, "params": encoder.count_params(),
              "input_shape": list(input_shape), "cpus": os.cpu_count(),
              "nbcnn": {"backend": used, "seconds": seconds, "steps_per_second": steps / seconds,
                        "images_per_second": images / seconds}}
    if not peers:
        return result
    try:
        import torch  # noqa: F401
    except ImportError:
        result["torch"] = {"skipped": "torch is not installed (pip install torch to compare)"}
        return result
    fresh = build_encoder(input_shape, embedding_dim, width, seed=seed)
    seconds, version, threads = _time_torch(fresh, batches, warmup, mining, alpha, seed)
    result["torch"] = {"version": version, "threads": threads, "seconds": seconds, "steps_per_second": steps / seconds,
                       "images_per_second": images / seconds}
    return result


def format_throughput(result: dict) -> str:
    """Two lines, nbcnn and torch: images/s and steps/s of triplet training."""
    head = (f"triplet training, {result['steps']} steps of {result['batch']} images ({result['mining']} mining), "
            f"encoder of {result['params']:,} parameters on {tuple(result['input_shape'])}")
    lines = [head]
    n = result["nbcnn"]
    lines.append(f"  nbcnn ({n['backend']:4s})   {n['images_per_second']:8.0f} images/s  "
                 f"{n['steps_per_second']:6.2f} steps/s")
    t = result.get("torch")
    if t is not None:
        if "skipped" in t:
            lines.append(f"  torch          skipped: {t['skipped']}")
        else:
            lines.append(f"  torch {t['version']:<8s} {t['images_per_second']:8.0f} images/s  "
                         f"{t['steps_per_second']:6.2f} steps/s  ({t['threads']} threads)")
    return "\n".join(lines)
