"""The named shapes ``nbcnn bench`` times, the work each op does on them, and their inputs.

A shape is a NamedTuple of its dimensions; an op's work is counted in *useful* flops
(convolution, dense) or in the bytes it must move (pooling, which is memory-bound).
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
# --tiny: seconds even on the python backend and in the CUDA simulator (tests use these)
TINY_CONV = {"tiny": ConvShape(2, 8, 8, 3, 3, 4, 1, 1)}
TINY_POOL = {"tinypool": PoolShape(2, 8, 8, 4, 2, 2)}
TINY_DENSE = {"tinyfc": DenseShape(4, 16, 8)}

CONV_OPS = ("conv_fwd", "conv_bwd")
POOL_OPS = ("maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd")
DENSE_OPS = ("dense",)
ALL_OPS = CONV_OPS + POOL_OPS + DENSE_OPS
IMPLS = ("nbcnn", "numpy", "torch")  # what is timed: nbcnn and its two peers (peers.py)


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
    return {ConvShape: CONV_OPS, PoolShape: POOL_OPS, DenseShape: DENSE_OPS}[type(shape)]


def shape_suite(tiny: bool = False) -> dict[str, tuple]:
    if tiny:
        return {**TINY_CONV, **TINY_POOL, **TINY_DENSE}
    return {**CONV_SHAPES, **POOL_SHAPES, **DENSE_SHAPES}


def all_named_shapes() -> dict[str, tuple]:
    return {**shape_suite(False), **shape_suite(True)}


# --------------------------------------------------------------------------- inputs


def conv_inputs(s: ConvShape, seed: int = 0, dtype=np.float32):
    """x (N, H, W, C_in), W (f, f, C_in, C_out), b (C_out,) and an upstream gradient dz."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.H, s.W, s.C_in)).astype(dtype)
    W = (rng.standard_normal((s.f, s.f, s.C_in, s.C_out)) / np.sqrt(s.f * s.f * s.C_in)).astype(dtype)
    b = rng.standard_normal(s.C_out).astype(dtype)
    dz = rng.standard_normal((s.N, out_size(s.H, s.f, s.stride, s.pad), out_size(s.W, s.f, s.stride, s.pad),
                              s.C_out)).astype(dtype)
    return x, W, b, dz


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


def inputs_for(shape) -> tuple:
    """The host (numpy) inputs of any shape: ``conv_inputs``, ``pool_inputs`` or ``dense_inputs``."""
    if isinstance(shape, ConvShape):
        return conv_inputs(shape)
    if isinstance(shape, PoolShape):
        return pool_inputs(shape)
    return dense_inputs(shape)
