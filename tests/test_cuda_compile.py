"""Every @cuda.jit kernel compiles for a real GPU (sm_90) and keeps float32 math in float32.

The simulator runs kernels as Python and never type-checks them, so a kernel can pass every
simulator test and still fail to compile on a GPU. ``numba.cuda.compile_ptx`` compiles
without a GPU when the CUDA toolkit wheels are installed (``pip install -e .[cuda13]``);
without them this test is skipped. It runs in a subprocess because this test session has
the simulator switched on.
"""

import pytest

from test_backend import run_python

# Shared with test_cuda_tiled.py: exits 3 when the CUDA toolkit wheels are missing.
PREAMBLE = """
import types, sys
import numpy as np, numba
from numba import cuda
import numba.cuda.dispatcher as dispatcher
# register_jitable helpers compile as device functions for "the current device": name one.
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
try:
    cuda.compile_ptx(lambda a: None, (numba.float32[:],), cc=(9, 0))
except Exception as exc:
    print("NO-TOOLKIT", type(exc).__name__, exc)
    sys.exit(3)
"""

SCRIPT = PREAMBLE + """
from nbcnn.checks import Window
from nbcnn.kernels import activations, bias, conv, dense, pool

x4, W4, v = np.zeros((2, 5, 5, 3)), np.zeros((3, 3, 3, 4)), np.zeros(4)
m = np.zeros((3, 4))
win = Window(3, 3, 1, 1, 1, 1)
cases = [
    (conv.FORWARD, (x4, W4, v, win, x4)), (conv.BACKWARD_INPUT, (x4, W4, win, x4)),
    (conv.BACKWARD_FILTER, (x4, x4, win, W4)), (pool.MAX_FORWARD, (x4, win, x4)),
    (pool.MAX_BACKWARD, (x4, x4, win, x4)), (pool.AVG_FORWARD, (x4, win, x4)),
    (pool.AVG_BACKWARD, (x4, win, x4)), (bias.BACKWARD, (m, v)), (dense.FORWARD, (m, m, v, m)),
    (dense.BACKWARD_INPUT, (m, m, m)), (dense.BACKWARD_WEIGHT, (m, m, m)),
    (activations.RELU, (v, v)), (activations.RELU_BACKWARD, (v, v, v)), (activations.SIGMOID, (v, v)),
    (activations.SIGMOID_BACKWARD, (v, v, v)), (activations.TANH, (v, v)),
    (activations.TANH_BACKWARD, (v, v, v)), (activations.SOFTMAX, (m, m)),
    (activations.SOFTMAX_BACKWARD, (m, m, m)),
]
failures = 0
for dtype in (np.float32, np.float64):
    for kernel, args in cases:
        args = tuple(a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args)
        signature = tuple(numba.typeof(a) for a in args)
        try:
            ptx, _ = cuda.compile_ptx(kernel.cuda.py_func, signature, cc=(9, 0))
        except Exception as exc:
            failures += 1
            print("FAIL", kernel.name, dtype.__name__, type(exc).__name__, str(exc)[:500])
            continue
        # float32 kernels must not fall back to double precision (1/64 of the FP32 rate on many GPUs)
        if dtype is np.float32 and ".f64" in ptx:
            failures += 1
            print("F64", kernel.name, ptx.count(".f64"), "double-precision instructions")
        else:
            print("OK", kernel.name, dtype.__name__)
sys.exit(1 if failures else 0)
"""


def run_compile_script(script: str) -> str:
    """Run a PREAMBLE + compile script in a fresh interpreter; skip without the toolkit; its stdout."""
    result = run_python(script)
    if result.returncode == 3:
        pytest.skip("CUDA toolkit wheels not installed (pip install -e .[cuda13]): " + result.stdout.strip()[:200])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_cuda_kernel_compiles_for_a_real_gpu():
    assert run_compile_script(SCRIPT).count("OK ") == 38
