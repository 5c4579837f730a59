"""Training throughput of the small YOLO (``small_yolo.py``): nbcnn next to the same network and
loss in torch, for ``nbcnn bench --models``.

One step = forward of a batch of generated 128 x 128 digit scenes, the target encoding, the
YOLO loss (coordinate, objectness with the ignore rule, no-object, softmax class terms) and
its gradient, the backward and an Adam update. Both sides start from the same weights and
the same batches; the torch side writes the loss with tensor operations (autograd gives its
gradient). Each side runs in its own process (``python -m nbcnn.benchmark.models --worker
small_yolo --impl nbcnn|torch``): numba's and torch's thread pools in one process slow each
other down. torch is a benchmark peer only, never a dependency.
"""

from __future__ import annotations

import time

import numpy as np

from .anchors import kmeans_anchors
from .small_yolo import LAMBDAS, small_yolo, yolo_loss_and_gradient
from .targets import encode_targets

IGNORE = 0.6


def _setup(batch: int, steps: int, size: int = 128):
    from .scenes import make_scenes

    scenes = make_scenes(batch * steps, seed=11, size=size, max_object=min(64, size))
    wh = np.concatenate([b[:, 2:] for b in scenes.boxes])
    anchors = kmeans_anchors(wh, 3, seed=0)
    return scenes, anchors


def time_nbcnn(batch: int = 32, steps: int = 4, repeat: int = 3, backend: str = "cpu") -> dict:
    """Images per second of nbcnn's training step (best and median of ``repeat`` passes over ``steps`` batches)."""
    import nbcnn
    from nbcnn.optim import Adam

    nbcnn.set_backend(backend)
    scenes, anchors = _setup(batch, steps)
    det = small_yolo(scenes.class_names, anchors, seed=0)
    det.compile(Adam(1e-3))
    C = det.num_classes

    def step(s):
        idx = slice(s * batch, (s + 1) * batch)
        raw = det.forward(scenes.images[idx], training=True)
        _, grad = yolo_loss_and_gradient(raw, scenes.boxes[idx], scenes.classes[idx], anchors, C,
                                         ignore_threshold=IGNORE)
        det.layers[0].need_input_grad = False
        det.backward(grad)
        det.optimizer.step(det.network.parameters())

    step(0)  # compile / warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for s in range(steps):
            step(s)
        times.append(time.perf_counter() - start)
    n = batch * steps
    return {"images_per_second": n / min(times), "images_per_second_median": n / float(np.median(times)),
            "batch": batch, "steps": steps, "params": det.count_params()}


def _torch_net(det):
    """The small YOLO in torch (NCHW), with nbcnn's initial weights copied in."""
    import torch
    from torch import nn

    from .. import layers as L

    mods = []
    c_in = 3
    for layer in det.layers:
        if isinstance(layer, L.Conv2D):
            W = layer.params["W"]
            conv = nn.Conv2d(c_in, W.shape[3], W.shape[0], padding=W.shape[0] // 2, bias=layer.use_bias)
            conv.weight.data = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1)))
            if layer.use_bias:
                conv.bias.data = torch.from_numpy(layer.params["b"].copy())
            mods.append(conv)
            c_in = W.shape[3]
        elif isinstance(layer, L.BatchNormalization):
            mods.append(nn.BatchNorm2d(c_in, eps=layer.epsilon, momentum=1 - layer.momentum))
        elif isinstance(layer, L.LeakyReLU):
            mods.append(nn.LeakyReLU(0.1))
        elif isinstance(layer, L.MaxPooling2D):
            mods.append(nn.MaxPool2d(2))
        else:  # pragma: no cover - small_yolo has only these
            raise TypeError(f"no torch twin for {type(layer).__name__}")
    return nn.Sequential(*mods)


def torch_yolo_loss(raw, target, anchors, boxes, lambdas=LAMBDAS, ignore=IGNORE):
    """The same loss as ``nbcnn.ops.yolo_loss`` (with the ignore rule of ``targets.ignore_overlaps``),
    in torch: raw (N, S, S, B * (5 + C)) NHWC, target from ``encode_targets``; mean over images."""
    import torch
    import torch.nn.functional as F

    N, S_h, S_w, ch = raw.shape
    B = len(anchors)
    p = raw.reshape(N, S_h, S_w, B, ch // B)
    t = torch.from_numpy(target)
    state = t[..., 4].clone()
    with torch.no_grad():  # darknet's ignore rule: empty anchors whose box already overlaps an object
        a = torch.from_numpy(np.asarray(anchors, np.float32))
        cols = torch.arange(S_w).view(1, 1, S_w, 1)
        rows = torch.arange(S_h).view(1, S_h, 1, 1)
        cx = (cols + torch.sigmoid(p[..., 0])) / S_w
        cy = (rows + torch.sigmoid(p[..., 1])) / S_h
        w = a[:, 0] * torch.exp(p[..., 2].clamp(-20, 20))
        h = a[:, 1] * torch.exp(p[..., 3].clamp(-20, 20))
        for n, b in enumerate(boxes):
            if not len(b):
                continue
            g = torch.from_numpy(np.asarray(b, np.float32))
            ix = (torch.minimum(cx[n, ..., None] + w[n, ..., None] / 2, g[:, 0] + g[:, 2] / 2)
                  - torch.maximum(cx[n, ..., None] - w[n, ..., None] / 2, g[:, 0] - g[:, 2] / 2)).clamp(min=0)
            iy = (torch.minimum(cy[n, ..., None] + h[n, ..., None] / 2, g[:, 1] + g[:, 3] / 2)
                  - torch.maximum(cy[n, ..., None] - h[n, ..., None] / 2, g[:, 1] - g[:, 3] / 2)).clamp(min=0)
            inter = ix * iy
            iou = inter / (w[n, ..., None] * h[n, ..., None] + g[:, 2] * g[:, 3] - inter)
            over = iou.max(dim=-1).values > ignore
            state[n][over & (state[n] == 0)] = -1
    obj, empty = state == 1, state == 0
    lc, lo, ln, lk = lambdas
    xy = (torch.sigmoid(p[..., :2]) - t[..., :2]).pow(2).sum(-1) + (p[..., 2:4] - t[..., 2:4]).pow(2).sum(-1)
    coord = lc * (t[..., 6] * xy)[obj].sum()
    objectness = lo * F.binary_cross_entropy_with_logits(p[..., 4][obj], torch.ones(int(obj.sum())), reduction="sum")
    noobj = ln * F.binary_cross_entropy_with_logits(p[..., 4][empty], torch.zeros(int(empty.sum())), reduction="sum")
    cls = lk * F.cross_entropy(p[..., 5:][obj], t[..., 5][obj].long(), reduction="sum")
    return (coord + objectness + noobj + cls) / N


def time_torch(batch: int = 32, steps: int = 4, repeat: int = 3) -> dict:
    """The same network, batches and loss in torch (CPU)."""
    import torch

    scenes, anchors = _setup(batch, steps)
    det = small_yolo(scenes.class_names, anchors, seed=0)
    net = _torch_net(det).to(memory_format=torch.channels_last)  # oneDNN's fast layout (as nbcnn bench)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    S = scenes.size // 16
    x = torch.from_numpy(np.ascontiguousarray(scenes.images.transpose(0, 3, 1, 2)))
    x = x.contiguous(memory_format=torch.channels_last)
    targets = [encode_targets(scenes.boxes[s * batch:(s + 1) * batch], scenes.classes[s * batch:(s + 1) * batch],
                              S, anchors, det.num_classes) for s in range(steps)]

    def step(s):
        opt.zero_grad()
        raw = net(x[s * batch:(s + 1) * batch]).permute(0, 2, 3, 1)
        loss = torch_yolo_loss(raw, targets[s], anchors, scenes.boxes[s * batch:(s + 1) * batch])
        loss.backward()
        opt.step()

    step(0)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for s in range(steps):
            # nbcnn encodes the targets inside its step: so does this side (the same numpy code)
            encode_targets(scenes.boxes[s * batch:(s + 1) * batch], scenes.classes[s * batch:(s + 1) * batch],
                           S, anchors, det.num_classes)
            step(s)
        times.append(time.perf_counter() - start)
    n = batch * steps
    return {"images_per_second": n / min(times), "images_per_second_median": n / float(np.median(times)),
            "batch": batch, "steps": steps, "threads": torch.get_num_threads(), "layout": "channels_last"}


def format_throughput(rows: dict) -> list[str]:
    """The lines of ``nbcnn bench --models``: images per second of each side, and the ratio."""
    any_row = next(iter(rows.values()))
    lines = [f"Small YOLO training (128x128 digit scenes, batch {any_row['batch']}, {any_row['steps']} steps; "
             f"best / median images per second), cpu"]
    for name, r in rows.items():
        lines.append(f"  {name:7s} {r['images_per_second']:10.1f} {r['images_per_second_median']:10.1f}")
    if "nbcnn" in rows and "torch" in rows:
        lines.append(f"  ratio nbcnn / torch: {rows['nbcnn']['images_per_second'] / rows['torch']['images_per_second']:.2f}x")
    return lines
