"""pytest-benchmark suites for nbcnn's kernels: ``python -m pytest bench/ --benchmark-only``.

Not collected by the default ``python -m pytest`` (pyproject's testpaths is ["tests"]). The
shapes and inputs come from ``nbcnn.benchmark`` (the code behind ``nbcnn bench``), which also
compares with numpy and torch in separate processes; these suites time nbcnn (and the numpy
im2col peer) in this process, for pytest-benchmark's history and comparisons
(``--benchmark-autosave``, ``--benchmark-compare``). ``NBCNN_BENCH_SHAPES=seed39,lenet_c2``
limits the shapes.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nbcnn  # noqa: E402


def selected(shapes: dict) -> dict:
    want = [n for n in os.environ.get("NBCNN_BENCH_SHAPES", "").split(",") if n]
    return {n: s for n, s in shapes.items() if not want or n in want}


@pytest.fixture(autouse=True)
def cpu_backend():
    with nbcnn.use_backend(os.environ.get("NBCNN_BACKEND", "cpu")):
        yield
