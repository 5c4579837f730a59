"""A darknet network in PyTorch, built from the parsed cfg and a ``DarknetNetwork``'s arrays: the
``--models`` peer of nbcnn's YOLOv3-tiny (imported by the torch worker only; nbcnn never
needs torch).

Layer for layer what ``nbcnn.detection.darknet_net`` builds, in torch's NCHW:

    [convolutional]  Conv2d (no bias when batch norm follows), BatchNorm2d, LeakyReLU(0.1)
    [maxpool]        -inf padding at the bottom/right (darknet's size-2 stride-1 pool keeps
                     13 x 13), then max_pool2d; no padding where it cannot change the result
    [upsample]       nearest-neighbour, x stride
    [route]          torch.cat on channels
    [yolo]           sigmoid on every channel but w and h of each anchor

Darknet's batch norm puts its epsilon outside the root, ``(x - mean) / (sqrt(var) + 1e-6)``;
torch's inside, ``(x - mean) / sqrt(var' + eps)``. With ``eps = 0`` and
``var' = (sqrt(var) + 1e-6) ** 2`` (computed in float64) the two are the same function, so
the layer stays a plain ``BatchNorm2d`` (not folded into the conv: nbcnn does not fold it either).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DarknetMaxPool(nn.Module):
    """darknet's max pool: ``padding`` rows/columns ``(before, after)`` of -inf, then the window."""

    def __init__(self, size: int, stride: int, padding, in_hw, out_hw):
        super().__init__()
        self.size, self.stride = size, stride
        (top, bottom), (left, right) = padding
        plain = tuple((n - size) // stride + 1 for n in in_hw)  # without any padding
        self.pad = None if (top, left) == (0, 0) and plain == tuple(out_hw) else (left, right, top, bottom)

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class YoloHead(nn.Module):
    """darknet's ``[yolo]``: logistic on x, y, objectness and the classes; w and h as they are."""

    def __init__(self, channels: int, entries: int):
        super().__init__()
        entry = torch.arange(channels) % entries
        self.register_buffer("logistic", ((entry != 2) & (entry != 3)).view(1, channels, 1, 1))

    def forward(self, x):
        return torch.where(self.logistic, torch.sigmoid(x), x)


ACTIVATIONS = {"leaky": lambda: nn.LeakyReLU(0.1), "relu": nn.ReLU, "logistic": nn.Sigmoid, "tanh": nn.Tanh}


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def conv_block(spec, node) -> nn.Sequential:
    """Conv2d (+ BatchNorm2d with darknet's epsilon placement) (+ activation), filled from the
    nbcnn node's ``Chain``: W (f, f, C_in, C_out) -> torch's (C_out, C_in, f, f)."""
    o = spec.options
    chain = node.layer.layers
    conv = nn.Conv2d(spec.in_shape[2], o["filters"], o["size"], o["stride"], o["padding"],
                     bias=not o["batch_normalize"])
    W = np.asarray(chain[0].params["W"])
    with torch.no_grad():
        conv.weight.copy_(_tensor(W.transpose(3, 2, 0, 1)))
        if conv.bias is not None:
            conv.bias.copy_(_tensor(chain[0].params["b"]))
    layers = [conv]
    if o["batch_normalize"]:
        bn_nbcnn = chain[1]
        bn = nn.BatchNorm2d(o["filters"], eps=0.0)
        root = np.sqrt(np.asarray(bn_nbcnn.state["moving_var"], np.float64)) + np.float64(np.float32(bn_nbcnn.epsilon))
        with torch.no_grad():
            bn.weight.copy_(_tensor(bn_nbcnn.params["gamma"]))
            bn.bias.copy_(_tensor(bn_nbcnn.params["beta"]))
            bn.running_mean.copy_(_tensor(bn_nbcnn.state["moving_mean"]))
            bn.running_var.copy_(_tensor(root ** 2))
        layers.append(bn)
    if o["activation"] != "linear":
        layers.append(ACTIVATIONS[o["activation"]]())
    return nn.Sequential(*layers)


class TorchDarknet(nn.Module):
    """The network of ``specs`` (``nbcnn.weights.darknet.layer_specs``) with the arrays of
    ``network`` (the ``DarknetNetwork`` built from the same cfg and weights).

    ``forward(x)``: x (N, C, H, W) -> the list of the yolo heads' outputs, NCHW, in cfg order.
    As ``DarknetNetwork.forward``, only the outputs a later route reads are kept.
    """

    def __init__(self, specs, network):
        super().__init__()
        self.kinds = [s.kind for s in specs]
        self.inputs = [list(s.inputs) for s in specs]
        self.heads = [s.index for s in specs if s.kind == "yolo"]
        self.kept = {j for s in specs for j in s.inputs if j >= 0 and j != s.index - 1} | set(self.heads)
        steps = []
        for spec, node in zip(specs, network.nodes):
            o = spec.options
            if spec.kind == "convolutional":
                steps.append(conv_block(spec, node))
            elif spec.kind == "maxpool":
                steps.append(DarknetMaxPool(o["size"], o["stride"], o["padding"], spec.in_shape[:2],
                                            spec.out_shape[:2]))
            elif spec.kind == "upsample":
                steps.append(nn.Upsample(scale_factor=o["stride"], mode="nearest"))
            elif spec.kind == "route":
                steps.append(nn.Identity())  # the concatenation happens in forward
            elif spec.kind == "yolo":
                steps.append(YoloHead(spec.out_shape[2], 5 + o["classes"]))
            else:  # pragma: no cover - layer_specs refused it
                raise ValueError(f"no torch layer for [{spec.kind}]")
        self.steps = nn.ModuleList(steps)

    def forward(self, x):
        kept, prev = {-1: x}, x
        for i, (kind, step) in enumerate(zip(self.kinds, self.steps)):
            ins = [prev if j == i - 1 else kept[j] for j in self.inputs[i]]
            if kind == "route":
                prev = torch.cat(ins, 1) if len(ins) > 1 else ins[0]
            else:
                prev = step(ins[0])
            if i in self.kept:
                kept[i] = prev
        return [kept[i] for i in self.heads]
