"""The peers nbcnn is timed against, each run in its own worker process (worker.py).

* ``numpy``: im2col + one BLAS matrix product for conv forward, ``x @ W + b`` for dense
  (written here; always there).
* ``torch``: PyTorch on the CPU with channels_last tensors (oneDNN), forward and the backward
  ops autograd would call; only when torch is installed.
"""

from __future__ import annotations

import numpy as np

from .shapes import ConvShape, DenseShape, PoolShape, conv_inputs, dense_inputs, pool_inputs
from .timing import time_runs, timing_record


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


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


def time_numpy(shapes, ops, repeat) -> list[dict]:
    """numpy: im2col + BLAS for conv forward, ``x @ W + b`` for dense (no backward, no pooling)."""
    records = []
    for name, shape in shapes.items():
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


def time_torch(shapes, ops, repeat, device="cpu") -> list[dict]:
    """PyTorch with channels_last tensors (oneDNN on the CPU), forward and the backward ops
    autograd would call (max pool backward gets the forward's indices, as autograd does)."""
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.allow_tf32 = False  # compare FP32 with FP32
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if device == "cuda" else None
    cl = torch.channels_last
    records = []
    with torch.no_grad():
        for name, shape in shapes.items():
            extra = {"device": device, "threads": torch.get_num_threads()}
            cases = []
            if isinstance(shape, ConvShape):
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
