"""Convolution forward and backward on the named shapes (GFLOP per call in extra_info)."""

import pytest
from conftest import selected

import nbcnn
from nbcnn import benchmark as nb

SHAPES = selected(nb.CONV_SHAPES)


@pytest.mark.parametrize("name", SHAPES)
def test_conv_forward(benchmark, name):
    s = SHAPES[name]
    x, W, b, _ = nb.conv_inputs(s)
    benchmark.extra_info["gflop"] = nb.conv_flops(s) / 1e9
    benchmark(nbcnn.conv2d, x, W, b, s.stride, s.pad)


@pytest.mark.parametrize("name", SHAPES)
def test_conv_backward(benchmark, name):
    s = SHAPES[name]
    x, W, _, dz = nb.conv_inputs(s)
    benchmark.extra_info["gflop"] = nb.conv_flops(s, "conv_bwd") / 1e9
    benchmark(nbcnn.conv2d_backward, dz, x, W, s.stride, s.pad)


@pytest.mark.parametrize("name", SHAPES)
def test_conv_forward_numpy_im2col(benchmark, name):
    s = SHAPES[name]
    x, W, b, _ = nb.conv_inputs(s)
    benchmark.extra_info["gflop"] = nb.conv_flops(s) / 1e9
    benchmark(nb.im2col_conv2d, x, W, b, s.stride, s.pad)
