"""The tiled implicit-GEMM conv kernels (nbcnn/kernels/fast/cuda_conv.py) against the readable
kernels and the float64 numpy oracle.

The tiles are 64 x 64 with a reduction step of 8 (the sizes a GPU runs); the shapes here are
tiny, because the simulator runs every thread as Python, but chosen so each edge of a tile is
crossed: more than 64 output pixels, more than 64 channels, reductions that are not a whole
number of steps, stride 2, padding, 1x1 and 5x5 filters. On a real GPU the same tests run on
the real kernels.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import nbcnn
import oracles
from conftest import REAL_GPU
from nbcnn.checks import Window
from nbcnn.kernels import conv
from nbcnn.kernels.fast import cuda_conv
from test_cuda_compile import PREAMBLE, run_compile_script

cuda = pytest.importorskip("numba.cuda")


def out_size(size, f, stride, before, after):
    return (size + before + after - f) // stride + 1


def run_tiled(x, W, b, dz, win, pads):
    """Forward, dX and dW through the tiled kernels (even for one-tile shapes); numpy results."""
    dev = [cuda.to_device(a) for a in (x, W, b, dz)]
    z = cuda.device_array(dz.shape, x.dtype)
    cuda_conv.tiled_forward(dev[0], dev[1], dev[2], win, z)
    dx = cuda.device_array(x.shape, x.dtype)
    cuda_conv.tiled_backward_input(dev[3], dev[1], win, dx)
    dW = cuda.device_array(W.shape, x.dtype)
    cuda_conv.tiled_backward_filter(dev[0], dev[3], win, dW)
    return z.copy_to_host(), dx.copy_to_host(), dW.copy_to_host()


def run_readable(x, W, b, dz, win):
    """The lecture's loop nests, run as plain Python (the python backend's kernels)."""
    z, dx, dW = np.empty_like(dz), np.empty_like(x), np.empty_like(W)
    conv.FORWARD.source(x, W, b, win, z)
    conv.BACKWARD_INPUT.source(dz, W, win, dx)
    conv.BACKWARD_FILTER.source(x, dz, win, dW)
    return z, dx, dW


def make_case(rng, N, H, W_in, C, K, f, stride, pads, dtype=np.float32):
    """Random x, W, b, dz for a conv; pads = (top, bottom, left, right), stride = (h, w)."""
    f_h, f_w = f
    top, bottom, left, right = pads
    H_out = out_size(H, f_h, stride[0], top, bottom)
    W_out = out_size(W_in, f_w, stride[1], left, right)
    x = rng.standard_normal((N, H, W_in, C)).astype(dtype)
    W = rng.standard_normal((f_h, f_w, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    dz = rng.standard_normal((N, H_out, W_out, K)).astype(dtype)
    return x, W, b, dz, Window(f_h, f_w, stride[0], stride[1], top, left)


def check_against_oracles(x, W, b, dz, win, stride, pads, readable=True):
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    got = run_tiled(x, W, b, dz, win, pads)
    z_ref = oracles.conv_forward(x, W, b, stride, pads)
    dx_ref, dW_ref, _ = oracles.conv_backward(dz, x, W, stride, pads)
    for name, g, ref in zip(("z", "dx", "dW"), got, (z_ref, dx_ref, dW_ref)):
        assert g.dtype == x.dtype, name  # float32 stays float32
        np.testing.assert_allclose(g, ref, **tol, err_msg=name)
    if readable:
        for name, g, ref in zip(("z", "dx", "dW"), got, run_readable(x, W, b, dz, win)):
            np.testing.assert_allclose(g, ref, **tol, err_msg=f"{name} vs the readable kernel")


# N, H, W, C_in, C_out, (f_h, f_w), (stride_h, stride_w), (top, bottom, left, right)
CASES = {
    # 50 pixels and 5 filters: one partial tile each way; reduction 27 = 3 steps of 8 + 3
    "3x3 same, partial tiles": (2, 5, 5, 3, 5, (3, 3), (1, 1), (1, 1, 1, 1)),
    # 2 x 6 x 6 = 72 output pixels: a full 64-row tile and a ragged second one
    "3x3 valid, M crosses a tile": (2, 8, 8, 2, 3, (3, 3), (1, 1), (0, 0, 0, 0)),
    # 67 filters (forward/dW columns) and 66 input channels (dX columns) cross the 64 columns
    "1x1, channels cross a tile": (1, 2, 3, 66, 67, (1, 1), (1, 1), (0, 0, 0, 0)),
    # stride 2: dX gathers only the taps that land on a stride; even input, odd window
    "3x3 stride 2 padded": (2, 6, 7, 5, 9, (3, 3), (2, 2), (1, 1, 1, 1)),
    "5x5 stride 2 pad 2": (1, 9, 9, 2, 3, (5, 5), (2, 2), (2, 2, 2, 2)),
    # unequal strides, unequal and one-sided padding, a non-square filter
    "2x3 stride (2, 1) asymmetric pad": (2, 5, 6, 3, 4, (2, 3), (2, 1), (0, 1, 2, 0)),
    # a window that only partly fits: the last rows of x are never read
    "4x4 stride 3": (1, 8, 8, 2, 2, (4, 4), (3, 3), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_tiled_conv_matches_oracle_and_readable_kernel(case, rng):
    N, H, W_in, C, K, f, stride, pads = case
    x, W, b, dz, win = make_case(rng, N, H, W_in, C, K, f, stride, pads)
    check_against_oracles(x, W, b, dz, win, stride, pads)


def test_tiled_conv_float64_stays_float64(rng):
    case = make_case(rng, 1, 5, 4, 3, 2, (3, 3), (2, 1), (1, 1, 0, 1), dtype=np.float64)
    check_against_oracles(*case, stride=(2, 1), pads=(1, 1, 0, 1), readable=False)


def test_dw_split_over_pixel_chunks_is_exact_and_deterministic(rng, monkeypatch):
    # tiny problems never split; force it: 2 x 7 x 7 = 98 pixels in chunks of one step (8)
    monkeypatch.setattr(cuda_conv, "DW_MIN_STEPS", 1)
    x, W, b, dz, win = make_case(rng, 2, 7, 7, 3, 4, (3, 3), (1, 1), (1, 1, 1, 1))
    assert cuda_conv.dw_splits(27, 4, 98) == 13
    dW_runs = []
    for _ in range(2):
        dW = cuda.device_array(W.shape, W.dtype)
        cuda_conv.tiled_backward_filter(cuda.to_device(x), cuda.to_device(dz), win, dW)
        dW_runs.append(dW.copy_to_host())
    _, dW_ref, _ = oracles.conv_backward(dz, x, W, (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(dW_runs[0], dW_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(dW_runs[0], dW_runs[1])  # a fixed summation order


def test_dw_splits_fill_the_gpu_only_when_the_weights_are_few():
    # VGG's 3x3x64 -> 64 on 8 x 224 x 224: 9 weight tiles, 401k pixels: split
    assert cuda_conv.dw_splits(3 * 3 * 64, 64, 8 * 224 * 224) == -(-cuda_conv.DW_TARGET_BLOCKS // 9)
    # the course's small layers: too few pixels to be worth a second kernel
    assert cuda_conv.dw_splits(3 * 3 * 3, 8, 2 * 6 * 6) == 1
    # never a chunk shorter than DW_MIN_STEPS steps
    assert cuda_conv.dw_splits(27, 8, 10 * cuda_conv.BK * cuda_conv.DW_MIN_STEPS) == 10


def test_the_cuda_backend_runs_the_tiled_kernels_beyond_one_tile(rng, monkeypatch):
    """nbcnn.conv2d on cuda goes through the launchers installed by nbcnn/kernels/fast.py:
    tiled when the work makes more than one block, the readable kernel when it fits in one."""
    assert conv.FORWARD._fast_cuda_factory is cuda_conv.forward_launcher
    assert conv.BACKWARD_INPUT._fast_cuda_factory is cuda_conv.backward_input_launcher
    assert conv.BACKWARD_FILTER._fast_cuda_factory is cuda_conv.backward_filter_launcher
    calls = []
    for name in ("tiled_forward", "tiled_backward_input", "tiled_backward_filter"):
        real = getattr(cuda_conv, name)
        monkeypatch.setattr(cuda_conv, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    monkeypatch.setattr(cuda_conv, "DW_MIN_STEPS", 2)  # chunks of 16 pixels: dW splits at N = 5
    for N, K in ((1, 3), (5, 3)):  # 16 pixels: one tile (readable); 80 pixels: two (tiled)
        x = rng.standard_normal((N, 4, 4, 2)).astype(np.float32)
        W = rng.standard_normal((3, 3, 2, K)).astype(np.float32)
        dz = rng.standard_normal((N, 4, 4, K)).astype(np.float32)
        with nbcnn.use_backend("cuda"):
            z = nbcnn.conv2d(x, W, np.zeros(K, np.float32), pad=1)
            dx, dW, _ = nbcnn.conv2d_backward(dz, x, W, pad=1)
        assert calls == ([] if N == 1 else ["tiled_forward", "tiled_backward_input", "tiled_backward_filter"])
        np.testing.assert_allclose(z, oracles.conv_forward(x, W, np.zeros(K), (1, 1), (1, 1, 1, 1)),
                                   rtol=1e-4, atol=1e-4)
        dx_ref, dW_ref, _ = oracles.conv_backward(dz, x, W, (1, 1), (1, 1, 1, 1))
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dW, dW_ref, rtol=1e-4, atol=1e-4)


@settings(max_examples=4, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(1, 6), W_in=st.integers(1, 6), C=st.integers(1, 4),
       K=st.integers(1, 6), f_h=st.integers(1, 3), f_w=st.integers(1, 3), s_h=st.integers(1, 2),
       s_w=st.integers(1, 2), pad=st.tuples(*[st.integers(0, 2)] * 4), seed=st.integers(0, 2**16))
def test_tiled_conv_random_shapes(N, H, W_in, C, K, f_h, f_w, s_h, s_w, pad, seed):
    top, bottom, left, right = pad
    assume(f_h <= H + top + bottom and f_w <= W_in + left + right)  # else checks.window rejects it
    rng = np.random.default_rng(seed)
    x, W, b, dz, win = make_case(rng, N, H, W_in, C, K, (f_h, f_w), (s_h, s_w), pad)
    check_against_oracles(x, W, b, dz, win, (s_h, s_w), pad, readable=False)


# --------------------------------------------------------------------------- real-GPU compile

COMPILE_SCRIPT = PREAMBLE + """
from nbcnn.checks import Window
from nbcnn.kernels.fast import cuda_conv

win = Window(3, 3, 1, 1, 1, 1)
failures = 0
for dtype in (np.float32, np.float64):
    kernels = cuda_conv._kernels(dtype)
    x4, m2, m3, v = np.zeros((2, 5, 5, 3), dtype), np.zeros((3, 4), dtype), np.zeros((2, 3, 4), dtype), np.zeros(4, dtype)
    cases = {"forward": (x4, m2, v, win, 3, 3, m2), "backward_input": (x4, m2, win, 3, 3, m2),
             "backward_filter": (x4, m2, win, 3, 3, 16, m3), "sum_partials": (m2, v)}
    for name, args in cases.items():
        signature = tuple(numba.typeof(a) for a in args)
        try:
            ptx, _ = cuda.compile_ptx(kernels[name].py_func, signature, cc=(9, 0))
        except Exception as exc:
            failures += 1
            print("FAIL", name, dtype.__name__, type(exc).__name__, str(exc)[:500])
            continue
        problems = []
        if dtype is np.float32 and ".f64" in ptx:
            problems.append(f"{ptx.count('.f64')} double-precision instructions")
        if name != "sum_partials" and ".shared" not in ptx:
            problems.append("no shared memory")
        if ".local" in ptx:  # the register tile must live in registers, not in local memory
            problems.append("local memory (the accumulators did not become registers)")
        if name != "sum_partials" and "fma.rn" not in ptx:
            problems.append("no fused multiply-adds")
        if problems:
            failures += 1
            print("BAD", name, dtype.__name__, "; ".join(problems))
        else:
            print("OK", name, dtype.__name__)
sys.exit(1 if failures else 0)
"""


def test_tiled_kernels_compile_for_a_real_gpu():
    assert run_compile_script(COMPILE_SCRIPT).count("OK ") == 8


@pytest.mark.gpu
def test_tiled_conv_on_a_real_gpu_at_layer_size(rng):
    """Only on a real GPU: a VGG-like layer, many tiles in every direction, split-k dW."""
    assert REAL_GPU
    case = make_case(rng, 4, 28, 28, 64, 96, (3, 3), (1, 1), (1, 1, 1, 1))
    check_against_oracles(*case, stride=(1, 1), pads=(1, 1, 1, 1), readable=False)
