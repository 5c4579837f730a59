"""Max and average pooling, forward and backward (bytes moved per call in extra_info)."""

import pytest
from conftest import selected

import nbcnn
from nbcnn import benchmark as nb

SHAPES = selected(nb.POOL_SHAPES)
OPS = {
    "maxpool_fwd": lambda x, dp, s: nbcnn.max_pool2d(x, s.f, s.s),
    "maxpool_bwd": lambda x, dp, s: nbcnn.max_pool2d_backward(dp, x, s.f, s.s),
    "avgpool_fwd": lambda x, dp, s: nbcnn.avg_pool2d(x, s.f, s.s),
    "avgpool_bwd": lambda x, dp, s: nbcnn.avg_pool2d_backward(dp, x, s.f, s.s),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", SHAPES)
def test_pool(benchmark, name, op):
    s = SHAPES[name]
    x, dp = nb.pool_inputs(s)
    benchmark.extra_info["gbytes"] = nb.pool_bytes(s, op) / 1e9
    benchmark(OPS[op], x, dp, s)
