"""The named shapes ``nbcnn bench`` times, the work each op does on them, and their inputs.

A shape is a NamedTuple of its dimensions; an op's work is counted in *useful* flops
(convolution, dense), in the bytes it must move (pooling, which is memory-bound), or in
boxes (non-max suppression: its work depends on how many boxes survive, not only on N).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ConvShape(NamedTuple):
    """A convolution: x (N, H, W, C_in) with C_out filters f x f, stride and pad (both sides)."""

    N: int
    H: int
    W: int
    C_in: int
    f: int
    C_out: int
    stride: int
    pad: int


class PoolShape(NamedTuple):
    """A pooling: x (N, H, W, C), window f x f, stride s, no padding."""

    N: int
    H: int
    W: int
    C: int
    f: int
    s: int


class DenseShape(NamedTuple):
    """A fully connected layer: x (N, D) @ W (D, M) + b."""

    N: int
    D: int
    M: int


class BoxesShape(NamedTuple):
    """Class-agnostic NMS at IoU 0.5 over N scored boxes, most of them in clusters around
    ``objects`` objects in a ``size`` x ``size`` picture (a detector's raw output; see boxes_inputs)."""

    N: int
    objects: int
    size: int


CONV_SHAPES = {
    "seed39": ConvShape(64, 39, 39, 3, 3, 10, 1, 0),  # the course's first conv net
    "lenet_c2": ConvShape(64, 14, 14, 6, 5, 16, 1, 0),  # LeNet-5, second conv
    "resnet_s2": ConvShape(8, 56, 56, 64, 3, 64, 1, 1),  # ResNet stage 2
    "vgg_b3": ConvShape(4, 56, 56, 256, 3, 256, 1, 1),  # VGG-16 block 3
    "stem_s2": ConvShape(8, 224, 224, 3, 7, 64, 2, 3),  # ResNet stem, 7x7 stride 2
    "incep5x5": ConvShape(8, 28, 28, 192, 5, 32, 1, 2),  # Inception 3a, 5x5 branch
    "incep1x1": ConvShape(8, 28, 28, 192, 1, 16, 1, 0),  # Inception 3a, 1x1 reduce
}
POOL_SHAPES = {
    "pool32x16": PoolShape(64, 32, 32, 16, 2, 2),
    "pool112x64": PoolShape(8, 112, 112, 64, 3, 2),  # ResNet's 3x3 stride-2 max pool
}
DENSE_SHAPES = {
    "fc4096": DenseShape(64, 4096, 1000),  # a classifier head
    "lenet_fc": DenseShape(64, 400, 120),
}
BOX_SHAPES = {
    "boxes10k": BoxesShape(10_000, 100, 1000),  # the 10,000 boxes: ~1,600 survive
}
# --tiny: seconds even on the python backend and in the CUDA simulator (tests use these)
TINY_CONV = {"tiny": ConvShape(2, 8, 8, 3, 3, 4, 1, 1)}
TINY_POOL = {"tinypool": PoolShape(2, 8, 8, 4, 2, 2)}
TINY_DENSE = {"tinyfc": DenseShape(4, 16, 8)}
TINY_BOXES = {"tinyboxes": BoxesShape(500, 5, 1000)}

CONV_OPS = ("conv_fwd", "conv_bwd")
POOL_OPS = ("maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd")
DENSE_OPS = ("dense",)
BOX_OPS = ("nms",)
ALL_OPS = CONV_OPS + POOL_OPS + DENSE_OPS + BOX_OPS
IMPLS = ("nbcnn", "numpy", "torch")  # what is timed: nbcnn and its two peers (peers.py)
NMS_IOU = 0.5  # the IoU threshold every NMS row uses


def out_size(size: int, f: int, stride: int, pad: int) -> int:
    """``H_out = (H + 2 * pad - f) // stride + 1``"""
    return (size + 2 * pad - f) // stride + 1


def conv_flops(s: ConvShape, op: str = "conv_fwd") -> int:
    """Useful flops: ``2 * N * H_out * W_out * C_out * f * f * C_in`` forward; backward twice that
    (dX and dW each cost as much as the forward; db is negligible)."""
    fwd = 2 * s.N * out_size(s.H, s.f, s.stride, s.pad) * out_size(s.W, s.f, s.stride, s.pad) * s.C_out * s.f * s.f * s.C_in
    return fwd if op == "conv_fwd" else 2 * fwd


def dense_flops(s: DenseShape) -> int:
    return 2 * s.N * s.D * s.M


def pool_bytes(s: PoolShape, op: str, itemsize: int = 4) -> int:
    """Bytes a pooling op must move: forward reads x, writes p; max backward reads dp and x,
    writes dx; average backward reads dp, writes dx."""
    x = s.N * s.H * s.W * s.C
    p = s.N * out_size(s.H, s.f, s.s, 0) * out_size(s.W, s.f, s.s, 0) * s.C
    n = {"maxpool_fwd": x + p, "avgpool_fwd": x + p, "maxpool_bwd": p + x + x, "avgpool_bwd": p + x}[op]
    return n * itemsize


def ops_for(shape) -> tuple[str, ...]:
    return {ConvShape: CONV_OPS, PoolShape: POOL_OPS, DenseShape: DENSE_OPS, BoxesShape: BOX_OPS}[type(shape)]


def shape_suite(tiny: bool = False) -> dict[str, tuple]:
    if tiny:
        return {**TINY_CONV, **TINY_POOL, **TINY_DENSE, **TINY_BOXES}
    return {**CONV_SHAPES, **POOL_SHAPES, **DENSE_SHAPES, **BOX_SHAPES}


def all_named_shapes() -> dict[str, tuple]:
    return {**shape_suite(False), **shape_suite(True)}


# --------------------------------------------------------------------------- inputs


def conv_inputs(s: ConvShape, seed: int = 0, dtype=np.float32):
    """x (N, H, W, C_in), W (f, f, C_in, C_out), b (C_out,) and an upstream gradient dz, each
    starting on a cache line (``backend.aligned_empty``), as the arrays a network's layers
    hand each other do in nbcnn, and as the peers' own tensors do (torch aligns to 64 bytes);
    numpy's ``astype`` copy starts 16 bytes past one."""
    from ..backend import aligned_empty

    def aligned(a):
        out = aligned_empty(a.shape, dtype)
        out[...] = a
        return out

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.H, s.W, s.C_in))
    W = rng.standard_normal((s.f, s.f, s.C_in, s.C_out)) / np.sqrt(s.f * s.f * s.C_in)
    b = rng.standard_normal(s.C_out)
    dz = rng.standard_normal((s.N, out_size(s.H, s.f, s.stride, s.pad), out_size(s.W, s.f, s.stride, s.pad), s.C_out))
    return tuple(aligned(a) for a in (x, W, b, dz))


def pool_inputs(s: PoolShape, seed: int = 0, dtype=np.float32):
    """x (N, H, W, C) and an upstream gradient dp (N, H_out, W_out, C)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.H, s.W, s.C)).astype(dtype)
    dp = rng.standard_normal((s.N, out_size(s.H, s.f, s.s, 0), out_size(s.W, s.f, s.s, 0), s.C)).astype(dtype)
    return x, dp


def dense_inputs(s: DenseShape, seed: int = 0, dtype=np.float32):
    """x (N, D), W (D, M), b (M,)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((s.N, s.D)).astype(dtype),
            (rng.standard_normal((s.D, s.M)) / np.sqrt(s.D)).astype(dtype),
            rng.standard_normal(s.M).astype(dtype))


def boxes_inputs(s: BoxesShape, seed: int = 0):
    """boxes (N, 4) corners (x1, y1, x2, y2) and scores (N,), float32, like a detector's raw output:

        80% of the boxes: around one of ``objects`` objects (centre jittered by 8% of the
                          object's size, each side scaled by 0.8-1.25), scores 0.3-1.0
        20%:              background, anywhere, 1-20% of the picture a side, scores 0-0.5

    then shuffled. Every box has a positive area (so the numpy peer's IoU never divides 0 by 0).
    """
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, s.size, (s.objects, 2))
    wh = rng.uniform(0.03, 0.3, (s.objects, 2)) * s.size
    n_obj = int(s.N * 0.8)
    which = rng.integers(0, s.objects, n_obj)
    c_obj = centre[which] + rng.normal(0, 0.08, (n_obj, 2)) * wh[which]
    wh_obj = wh[which] * rng.uniform(0.8, 1.25, (n_obj, 2))
    n_bg = s.N - n_obj
    c_bg = rng.uniform(0, s.size, (n_bg, 2))
    wh_bg = rng.uniform(0.01, 0.2, (n_bg, 2)) * s.size
    centres, sides = np.concatenate([c_obj, c_bg]), np.concatenate([wh_obj, wh_bg])
    scores = np.concatenate([rng.uniform(0.3, 1.0, n_obj), rng.uniform(0.0, 0.5, n_bg)])
    perm = rng.permutation(s.N)
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)[perm]
    return boxes.astype(np.float32), scores[perm].astype(np.float32)


def inputs_for(shape) -> tuple:
    """The host (numpy) inputs of any shape: ``conv_inputs``, ``pool_inputs``, ``dense_inputs``
    or ``boxes_inputs``."""
    if isinstance(shape, ConvShape):
        return conv_inputs(shape)
    if isinstance(shape, PoolShape):
        return pool_inputs(shape)
    if isinstance(shape, BoxesShape):
        return boxes_inputs(shape)
    return dense_inputs(shape)
