"""The peers nbcnn is timed against, each run in its own worker process (worker.py).

* ``numpy``: im2col + one BLAS matrix product for conv forward, ``x @ W + b`` for dense, and
  for NMS the greedy loop as people write it in numpy, vectorised over the remaining boxes
  once per kept box (written here; always there).
* ``torch``: PyTorch on the CPU with channels_last tensors (oneDNN), forward and the backward
  ops autograd would call; only when torch is installed. torch itself has no NMS: that is
  torchvision's ``torchvision.ops.nms`` (a C++ op registered into torch), timed only when
  torchvision imports; without it the NMS rows have the numpy peer only.
"""

from __future__ import annotations

import numpy as np

from .shapes import (NMS_IOU, BoxesShape, ConvShape, DenseShape, PoolShape, boxes_inputs, conv_inputs, dense_inputs,
                     pool_inputs)
from .threads import use_torch_threads
from .timing import time_runs, timing_record


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def torchvision_available() -> bool:
    """torch's NMS lives in torchvision (``torchvision.ops.nms``); nbcnn never installs it."""
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


# --------------------------------------------------------------------------- numpy


def im2col_conv2d(x, W, b, stride: int = 1, pad: int = 0):
    """Convolution as one matrix product, the way most libraries do it on a CPU:

        cols (N*H_out*W_out, f*f*C_in) = every window of the padded x, flattened (im2col)
        z = cols @ W.reshape(f*f*C_in, C_out) + b        (BLAS sgemm does the flops)
    """
    f_h, f_w, C_in, C_out = W.shape
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (f_h, f_w), axis=(1, 2))  # N, H', W', C, f_h, f_w
    windows = windows[:, ::stride, ::stride]
    N, H_out, W_out = windows.shape[:3]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(N * H_out * W_out, f_h * f_w * C_in)  # the copy
    z = cols @ W.reshape(f_h * f_w * C_in, C_out)
    z += b
    return z.reshape(N, H_out, W_out, C_out)


def numpy_nms(boxes, scores, iou_threshold: float = NMS_IOU):
    """Greedy NMS the way it is usually written in numpy: one vectorised IoU per kept box::

        order = argsort(-scores, stable)
        while order is not empty:
            i = order[0]; keep i
            iou = IoU(i, every box in order[1:])        # one numpy expression
            order = order[1:][iou <= iou_threshold]     # the survivors go on

    The same boxes, in the same order, as ``nbcnn.nms`` (boxes of zero area aside: here
    their IoU is 0 / 0).
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou_threshold]
    return np.array(keep, np.int64)


def time_numpy(shapes, ops, repeat) -> list[dict]:
    """numpy: im2col + BLAS for conv forward, ``x @ W + b`` for dense, the greedy loop for NMS
    (no backward, no pooling)."""
    records = []
    for name, shape in shapes.items():
        if isinstance(shape, BoxesShape) and "nms" in ops:
            boxes, scores = boxes_inputs(shape)
            times = time_runs(lambda: numpy_nms(boxes, scores), repeat)
            records.append(timing_record("numpy", "nms", name, shape, times, kept=len(numpy_nms(boxes, scores))))
        if isinstance(shape, ConvShape) and "conv_fwd" in ops:
            x, W, b, _ = conv_inputs(shape)
            times = time_runs(lambda: im2col_conv2d(x, W, b, shape.stride, shape.pad), repeat)
            records.append(timing_record("numpy", "conv_fwd", name, shape, times))
        if isinstance(shape, DenseShape) and "dense" in ops:
            x, W, b = dense_inputs(shape)
            times = time_runs(lambda: x @ W + b, repeat)
            records.append(timing_record("numpy", "dense", name, shape, times))
    return records


# --------------------------------------------------------------------------- torch


def time_torch(shapes, ops, repeat, device="cpu", threads=None) -> list[dict]:
    """PyTorch with channels_last tensors (oneDNN on the CPU), forward and the backward ops
    autograd would call (max pool backward gets the forward's indices, as autograd does);
    ``threads``: its intra-op pool on that many threads (None: torch's default)."""
    import torch
    import torch.nn.functional as F

    used_threads = use_torch_threads(torch, threads)

    torch.backends.cudnn.allow_tf32 = False  # compare FP32 with FP32
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if device == "cuda" else None
    cl = torch.channels_last
    records = []
    with torch.no_grad():
        for name, shape in shapes.items():
            extra = {"device": device, "threads": used_threads}
            cases = []
            if isinstance(shape, BoxesShape):
                if not torchvision_available():
                    continue  # torch has no NMS of its own
                import torchvision

                boxes, scores = (torch.from_numpy(a).to(device) for a in boxes_inputs(shape))
                cases += [("nms", lambda: torchvision.ops.nms(boxes, scores, NMS_IOU))]
                extra["kept"] = len(torchvision.ops.nms(boxes, scores, NMS_IOU))
            elif isinstance(shape, ConvShape):
                x, W, b, dz = conv_inputs(shape)
                xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                Wt = torch.from_numpy(W).permute(3, 2, 0, 1).contiguous(memory_format=cl).to(device)
                bt = torch.from_numpy(b).to(device)
                dzt = torch.from_numpy(dz).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                st, pd = [shape.stride] * 2, [shape.pad] * 2
                cases += [
                    ("conv_fwd", lambda: F.conv2d(xt, Wt, bt, st, pd)),
                    ("conv_bwd", lambda: torch.ops.aten.convolution_backward(
                        dzt, xt, Wt, [shape.C_out], st, pd, [1, 1], False, [0, 0], 1, [True, True, True])),
                ]
            elif isinstance(shape, PoolShape):
                x, dp = pool_inputs(shape)
                xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                dpt = torch.from_numpy(dp).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                k, s = [shape.f] * 2, [shape.s] * 2
                _, idx = F.max_pool2d(xt, k, s, return_indices=True)
                cases += [
                    ("maxpool_fwd", lambda: F.max_pool2d(xt, k, s)),
                    ("maxpool_bwd", lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                        dpt, xt, k, s, [0, 0], [1, 1], False, idx)),
                    ("avgpool_fwd", lambda: F.avg_pool2d(xt, k, s)),
                    ("avgpool_bwd", lambda: torch.ops.aten.avg_pool2d_backward(
                        dpt, xt, k, s, [0, 0], False, True, None)),
                ]
            else:
                x, W, b = (torch.from_numpy(a).to(device) for a in dense_inputs(shape))
                cases += [("dense", lambda: torch.addmm(b, x, W))]
            for op, fn in cases:
                if op in ops:
                    records.append(timing_record("torch", op, name, shape, time_runs(fn, repeat, sync=sync), **extra))
    return records
