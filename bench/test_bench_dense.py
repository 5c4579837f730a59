"""Dense forward, nbcnn against numpy's BLAS."""

import pytest
from conftest import selected

import nbcnn
from nbcnn import benchmark as nb

SHAPES = selected(nb.DENSE_SHAPES)


@pytest.mark.parametrize("name", SHAPES)
def test_dense(benchmark, name):
    x, W, b = nb.dense_inputs(SHAPES[name])
    benchmark.extra_info["gflop"] = nb.dense_flops(SHAPES[name]) / 1e9
    benchmark(nbcnn.dense, x, W, b)


@pytest.mark.parametrize("name", SHAPES)
def test_dense_numpy(benchmark, name):
    x, W, b = nb.dense_inputs(SHAPES[name])
    benchmark(lambda: x @ W + b)
