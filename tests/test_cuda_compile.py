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
from nbcnn.kernels import activations, batchnorm, bias, boxes, conv, dense, gram, pool, triplet, upsample
from nbcnn.kernels import yolo_loss
from nbcnn.kernels.fast import cuda_nms
from nbcnn.kernels import depthwise

x4, W4, v = np.zeros((2, 5, 5, 3)), np.zeros((3, 3, 3, 4)), np.zeros(4)
m, g3, sq = np.zeros((3, 4)), np.zeros((3, 3, 4)), np.zeros((3, 3))
b, A, G = np.zeros((5, 4)), np.zeros((2, 6, 3)), np.zeros((2, 3, 3))
i64, u8 = np.zeros(5, np.int64), np.zeros(5, np.uint8)
win = Window(3, 3, 1, 1, 1, 1)
# (kernel, its arguments): float arrays and Python floats take the dtype under test, the rest
# (window, counts, indices) stay as they are
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
    (activations.LEAKY_RELU, (v, 0.1, v)), (activations.LEAKY_RELU_BACKWARD, (v, v, 0.1, v)),
    (upsample.FORWARD, (x4, 2, x4)), (upsample.BACKWARD, (x4, 2, x4)),
    (boxes.BOX_IOU, (b, b, np.zeros((5, 5)))), (boxes.NMS, (b, i64, i64, 0.5, np.int64(5), u8)),
    (gram.GRAM, (A, G)), (gram.GRAM_BACKWARD, (G, A, A)),
    (triplet.TRIPLET_LOSS, (m, m, m, 0.2, v[:3])), (triplet.TRIPLET_LOSS_BACKWARD, (v[:3], m, m, m, 0.2, g3)),
    (triplet.L2_NORMALIZE, (m, 1e-12, m)), (triplet.L2_NORMALIZE_BACKWARD, (m, m, 1e-12, m)),
    (triplet.PAIRWISE_SQUARED_DISTANCES, (m, m, sq)),
    (yolo_loss.YOLO_LOSS, (np.zeros((4, 8)), np.zeros((4, 7)), v, np.zeros((4, 4)))),
    (yolo_loss.YOLO_LOSS_BACKWARD, (np.zeros(1), np.zeros((4, 8)), np.zeros((4, 7)), v, np.zeros((4, 8)))),
]
cases += [  # depthwise convolution: x (N, H, W, C), W (f_h, f_w, C), b (C,)
    (depthwise.FORWARD, (x4, g3, v[:3], win, x4)), (depthwise.BACKWARD_INPUT, (x4, g3, win, x4)),
    (depthwise.BACKWARD_FILTER, (x4, x4, win, g3)),
]
cases += [  # batch norm in training: x, dy, x_hat (M, C) = m, per-channel vectors v, partial sums
    (batchnorm.CHANNEL_SUMS, (m, m)), (batchnorm.CHANNEL_CENTRED_SQUARES, (m, v, m)),
    (batchnorm.GRADIENT_SUMS, (m, m, np.zeros((2, 2, 4)))), (batchnorm.FORWARD, (m, v, v, v, v, m, m)),
    (batchnorm.BACKWARD, (m, m, v, v, v, m)),
]
# darknet divides in double on purpose (its C code does): that kernel keeps its float64 denominator
DOUBLE_BY_DESIGN = {"darknet_batch_norm": (m, v, np.zeros(4, np.float64), v, v, 0.1, m, m)}


def typed(args, dtype):
    return tuple(a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else
                 dtype(a) if isinstance(a, float) else a for a in args)


def all_cases(dtype):
    out = [(k.name, k.cuda.py_func, typed(args, dtype)) for k, args in cases]
    out.append(("nms_bitmask", cuda_nms._bitmask_kernel(dtype).py_func,
                typed((b, i64, i64, 0.5, np.zeros((5, 1), np.uint64)), dtype)))
    bn = DOUBLE_BY_DESIGN["darknet_batch_norm"]
    out.append(("darknet_batch_norm", batchnorm.DARKNET_FORWARD.cuda.py_func,
                tuple(a if i == 2 else t for i, (a, t) in enumerate(zip(bn, typed(bn, dtype))))))
    return out


failures = 0
for dtype in (np.float32, np.float64):
    for name, fn, args in all_cases(dtype):
        signature = tuple(numba.typeof(a) for a in args)
        try:
            ptx, _ = cuda.compile_ptx(fn, signature, cc=(9, 0))
        except Exception as exc:
            failures += 1
            print("FAIL", name, dtype.__name__, type(exc).__name__, str(exc)[:500])
            continue
        # float32 kernels must not fall back to double precision (1/64 of the FP32 rate on many GPUs)
        if dtype is np.float32 and ".f64" in ptx and name not in DOUBLE_BY_DESIGN:
            failures += 1
            print("F64", name, ptx.count(".f64"), "double-precision instructions")
        else:
            print("OK", name, dtype.__name__)
sys.exit(1 if failures else 0)
"""

# every readable kernel, the NMS bitmask and darknet's batch norm, in float32 and float64
KERNELS_COMPILED = 44


def run_compile_script(script: str) -> str:
    """Run a PREAMBLE + compile script in a fresh interpreter; skip without the toolkit; its stdout."""
    result = run_python(script)
    if result.returncode == 3:
        pytest.skip("CUDA toolkit wheels not installed (pip install -e .[cuda13]): " + result.stdout.strip()[:200])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_cuda_kernel_compiles_for_a_real_gpu():
    assert run_compile_script(SCRIPT).count("OK ") == 2 * KERNELS_COMPILED
