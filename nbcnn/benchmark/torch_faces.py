"""face-api's two networks in PyTorch, built from the same shipped TF.js weights: the
``--models`` peer of nbcnn's real-faces pipeline (imported by the torch worker only; nbcnn never
needs torch).

Layer for layer what ``nbcnn.triplet.face_detector`` and ``nbcnn.triplet.dlib_encoder`` build,
in torch's NCHW:

    tiny face detector   Conv2d 3x3 valid + LeakyReLU(0.1); TensorFlow "same" max pools (padded
                         with -inf at the bottom/right when the size is odd, or for the last
                         stride-1 pool); depthwise Conv2d (groups = channels, padding 1) then a
                         1x1 Conv2d with bias, LeakyReLU(0.1); a last 1x1 Conv2d to 25 channels
    dlib ResNet          Conv2d with the scale layer folded in (as nbcnn folds it), ReLU, max pool
                         3/2; residual blocks; down-sampling blocks with a 2x2 average pool,
                         zero channels appended and the conv branch zero-padded at the bottom/right;
                         mean over H, W; a 256 x 128 matrix

The photo's preprocessing (pad to a square, TensorFlow's bilinear resize), the grid decoding and
the 150 x 150 crops are nbcnn's own numpy / Pillow steps, shared by both sides of the
benchmark; NMS is done here with torch ops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def _conv_weight(W) -> torch.Tensor:
    """nbcnn / TF's (f_h, f_w, C_in, C_out) -> torch's (C_out, C_in, f_h, f_w)."""
    return _tensor(np.transpose(W, (3, 2, 0, 1)))


class SamePool(nn.Module):
    """TensorFlow's "same" max pool: -inf padding split as TF splits it (the extra at the bottom/right)."""

    def __init__(self, size: int, stride: int):
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x):
        pads = []
        for n in (x.shape[3], x.shape[2]):  # F.pad takes the last axis first
            out = -(-n // self.stride)
            total = max((out - 1) * self.stride + self.size - n, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


def torch_tiny_face_detector(weights: dict) -> nn.Module:
    """The detector from face-api's tensors (``read_tfjs_model`` of tiny_face_detector_model)."""
    conv0 = nn.Conv2d(3, 16, 3)
    conv0.weight.data, conv0.bias.data = _conv_weight(weights["conv0/filters"]), _tensor(weights["conv0/bias"])
    layers = [conv0, nn.LeakyReLU(0.1), SamePool(2, 2)]
    channels = 16
    for k, filters in enumerate((32, 64, 128, 256, 512), start=1):
        depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        # TF's depthwise filter (3, 3, C, 1) -> torch's (C, 1, 3, 3)
        depthwise.weight.data = _tensor(np.transpose(weights[f"conv{k}/depthwise_filter"], (2, 3, 0, 1)))
        pointwise = nn.Conv2d(channels, filters, 1)
        pointwise.weight.data = _conv_weight(weights[f"conv{k}/pointwise_filter"])
        pointwise.bias.data = _tensor(weights[f"conv{k}/bias"])
        layers += [depthwise, pointwise, nn.LeakyReLU(0.1), SamePool(2, 1 if k == 5 else 2)]
        channels = filters
    head = nn.Conv2d(512, 25, 1)
    head.weight.data, head.bias.data = _conv_weight(weights["conv8/filters"]), _tensor(weights["conv8/bias"])
    return nn.Sequential(*layers, head).eval()


def _folded_conv(weights: dict, prefix: str, stride: int, padding: int) -> nn.Conv2d:
    W = weights[f"{prefix}/conv/filters"].astype(np.float64)
    s, o = weights[f"{prefix}/scale/weights"], weights[f"{prefix}/scale/biases"]
    conv = nn.Conv2d(W.shape[2], W.shape[3], W.shape[0], stride=stride, padding=padding)
    conv.weight.data = _conv_weight((W * s).astype(np.float32))
    conv.bias.data = _tensor(weights[f"{prefix}/conv/bias"].astype(np.float64) * s + o)
    return conv


class Residual(nn.Module):
    def __init__(self, weights: dict, name: str):
        super().__init__()
        self.conv1 = _folded_conv(weights, f"{name}/conv1", 1, 1)
        self.conv2 = _folded_conv(weights, f"{name}/conv2", 1, 1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class DownsamplingResidual(nn.Module):
    def __init__(self, weights: dict, name: str):
        super().__init__()
        self.conv1 = _folded_conv(weights, f"{name}/conv1", 2, 0)
        self.conv2 = _folded_conv(weights, f"{name}/conv2", 1, 1)

    def forward(self, x):
        z = self.conv2(F.relu(self.conv1(x)))
        s = F.avg_pool2d(x, 2, 2)
        z = F.pad(z, (0, s.shape[3] - z.shape[3], 0, s.shape[2] - z.shape[2]))
        s = F.pad(s, (0, 0, 0, 0, 0, z.shape[1] - s.shape[1]))
        return F.relu(z + s)


class DlibResNet(nn.Module):
    """The face encoder from face-api's tensors (``read_tfjs_model`` of face_recognition_model)."""

    def __init__(self, weights: dict):
        super().__init__()
        from ..triplet.dlib_encoder import BLOCKS

        self.stem = _folded_conv(weights, "conv32_down", 2, 0)
        self.blocks = nn.Sequential(*[DownsamplingResidual(weights, name) if down else Residual(weights, name)
                                      for name, _, down in BLOCKS])
        self.register_buffer("fc", _tensor(weights["fc"]))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.blocks(x).mean(dim=(2, 3)) @ self.fc


def torch_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS, best score first: a box goes when its IoU with a kept one exceeds the threshold."""
    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)
    alive = torch.ones(len(boxes), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if alive[i]:
            keep.append(int(order[i]))
            alive &= ~(iou[i] > iou_threshold)
    return keep
