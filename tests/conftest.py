"""Test setup. Decides, before numba is imported, whether the cuda backend runs on a real GPU
or in the CUDA simulator, so one `python -m pytest` works on both kinds of machine.

Fixtures:
    backend      parametrised over python / cpu / cuda, and makes that backend current
    shape_scale  1 in the simulator and on python (slow), larger on compiled backends
"""

import ctypes
import os


def _real_gpu_present() -> bool:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        if lib.cuInit(0) != 0:
            return False
        count = ctypes.c_int(0)
        return lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):
        return False


REAL_GPU = _real_gpu_present()
if not REAL_GPU:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # must happen before numba is imported

# a fixed backend for tests that do not ask for one; NBCNN_BACKEND from the shell must not leak in
os.environ.pop("NBCNN_BACKEND", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import nbcnn  # noqa: E402

ALL_BACKENDS = ("python", "cpu", "cuda")


def pytest_report_header(config):
    return f"nbcnn cuda backend: {'real GPU' if REAL_GPU else 'CUDA simulator (NUMBA_ENABLE_CUDASIM=1)'}"


def pytest_collection_modifyitems(config, items):
    if REAL_GPU:
        return
    skip = pytest.mark.skip(reason="needs a real GPU (the CUDA simulator is running)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Run the test once per backend, with that backend current."""
    with nbcnn.use_backend(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def is_slow(backend_name: str) -> bool:
    """The python backend and the simulator interpret every loop: keep their shapes tiny."""
    return backend_name == "python" or (backend_name == "cuda" and not REAL_GPU)
