"""The register-blocked direct conv (nbcnn/kernels/fast/direct.py) and its SIMD helpers.

Correctness against the oracle is in test_conv_fast.py (conv_fast routes float32 here);
this file checks what is particular to the direct kernel: that its tiles really are kept in
vector registers (the reason it exists), the padded-input helper, and the guard rails of
the intrinsics.
"""

import platform
import re

import numpy as np
import pytest
from numba import njit

import oracles
from nbcnn.checks import Window
from nbcnn.kernels.fast import direct as conv_direct, simd

x86_avx2 = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or "avx2" not in open("/proc/cpuinfo").read(),
    reason="the register-tile check reads x86 AVX2 assembly")


def _hot_loop_asm(kernel, *args):
    """Assembly of a fresh (uncached) compile of ``kernel`` (cached code cannot be inspected)."""
    fresh = njit(parallel=True, fastmath={"contract"})(kernel.py_func)
    fresh(*args)
    return "\n".join(fresh.inspect_asm().values())


def _small_problem(width, tile):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6 + tile, 3)).astype(np.float32)
    W = rng.standard_normal((3, 3, 3, width)).astype(np.float32)
    out = np.empty((2, 4, 4, width), np.float32)
    return x, W, out


@x86_avx2
@pytest.mark.parametrize("kernel, width, tile, fmas", [
    (conv_direct.conv_tiles, 16, conv_direct.PIXELS, 8),
    (conv_direct.conv_tiles_narrow, 8, conv_direct.NARROW_PIXELS, 8),
])
def test_the_tile_is_kept_in_vector_registers(kernel, width, tile, fmas):
    """Every multiply-add of the tile is a 256-bit FMA between registers: a memory operand
    on an FMA (``vfmadd231ps 64(%rsp), ...``) would mean the sums were spilled to the stack,
    which made a 6x16 tile 2-3x slower on AVX2 (16 vector registers)."""
    x, W, out = _small_problem(width, tile)
    asm = _hot_loop_asm(kernel, x.reshape(-1), x.shape, conv_direct.pack_filters(W, width),
                        (3, 3, 1, 1, 4, 4, width), np.zeros(width, np.float32), out.reshape(-1))
    ymm_fmas = re.findall(r"vfmadd\d+ps\s+([^\n]*ymm[^\n]*)", asm)
    assert len(ymm_fmas) >= fmas, "no 8-lane FMAs: the tile was not vectorised"
    spilled = [f for f in ymm_fmas if "(" in f]
    assert not spilled, f"FMAs reading spilled sums from memory: {spilled[:3]}"


def test_padded_input_is_x_when_no_border_is_needed():
    x = np.zeros((1, 9, 12, 2), np.float32)
    win = Window(3, 3, 1, 1, 0, 0)
    assert conv_direct.padded_input(x, win, 7, 10, lambda name, n: np.empty(n, np.float32)) is x


@pytest.mark.parametrize("pads, stride", [((1, 1), 1), ((0, 0), 1), ((3, 3), 2), ((2, 0), 1), ((0, 1), 2)])
def test_padded_input_borders(pads, stride, rng):
    """The copy is x inside a zero border, as big as the windows read."""
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    top, left = pads
    f = 3
    H_out = (7 + 2 * top - f) // stride + 1
    W_out = (9 + 2 * left - f) // stride + 1
    win = Window(f, f, stride, stride, top, left)
    xp = conv_direct.padded_input(x, win, H_out, W_out, lambda name, n: np.full(n, np.nan, np.float32))
    if pads == (0, 0):
        assert xp is x
        return
    assert xp.shape[1:3] == ((H_out - 1) * stride + f, (W_out - 1) * stride + f)
    assert not np.isnan(xp).any(), "every cell written (border zeroed)"
    np.testing.assert_array_equal(xp[:, top:top + 7, left:left + 9], x)
    assert xp.sum(dtype=np.float64) == pytest.approx(x.sum(dtype=np.float64), rel=1e-5)


def test_forward_and_filter_gradient_match_the_oracle(rng):
    """The two entry points called directly (not through conv_fast), on a LeNet-like layer."""
    x = rng.standard_normal((5, 14, 14, 6)).astype(np.float32)
    W = rng.standard_normal((5, 5, 6, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    win = Window(5, 5, 1, 1, 0, 0)
    z = np.empty((5, 10, 10, 16), np.float32)
    scratch = lambda name, n: np.empty(n, np.float32)  # noqa: E731
    conv_direct.forward(x, W, b, win, z, scratch)
    np.testing.assert_allclose(z, oracles.conv_forward(x, W, b, (1, 1), (0, 0, 0, 0)), rtol=1e-4, atol=1e-4)
    dz = rng.standard_normal(z.shape).astype(np.float32)
    dW = np.empty_like(W)
    conv_direct.backward_filter(x, dz, win, dW, scratch)
    _, want_dW, _ = oracles.conv_backward(dz, x, W, (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(dW, want_dW, rtol=1e-4, atol=1e-3)


def test_simd_intrinsics_refuse_what_they_cannot_load():
    @njit
    def load_from(a):
        return simd.load8(a, 0)

    with pytest.raises(Exception, match="1-D float32"):
        load_from(np.zeros(8, np.float64))
    with pytest.raises(Exception, match="1-D float32"):
        load_from(np.zeros((2, 8), np.float32))


def test_simd_round_trip():
    @njit
    def axpy(a, x, y, out):
        for i in range(0, out.size, 8):
            simd.store8(out, i, simd.fma8(simd.splat8(a), simd.load8(x, i), simd.load8(y, i)))

    x = np.arange(16, dtype=np.float32)
    y = np.ones(16, np.float32)
    out = np.empty(16, np.float32)
    axpy(np.float32(2), x, y, out)
    np.testing.assert_array_equal(out, 2 * x + 1)


def test_keep_where_eq8_is_the_readable_select():
    """Lanes where the key matches keep v (a -0.0 becomes +0.0, as ``0 + v`` does), the
    others are +0.0; keys must be int32."""
    @njit
    def pick(v, keys, k, out):
        simd.store8(out, 0, simd.keep_where_eq8(simd.load8(v, 0), keys, 0, k))

    v = np.array([1, -2, -0.0, 4, 5, -0.0, 7, 8], np.float32)
    keys = np.array([3, 1, 3, 3, 0, 2, 3, -1], np.int32)
    out = np.full(8, np.nan, np.float32)
    pick(v, keys, 3, out)
    want = np.float32(0) + np.where(keys == 3, v, np.float32(0))
    np.testing.assert_array_equal(out.view(np.int32), want.view(np.int32))
    with pytest.raises(Exception, match="int32"):
        pick(v, keys.astype(np.int64), 3, out)
