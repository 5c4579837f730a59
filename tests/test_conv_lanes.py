"""The register tiles of the *other* vector width than the host's, run for real.

nbcnn picks its tile width once, from the CPU Numba compiles for (``simd.host_lanes``): 16
lanes (zmm) on AVX-512, 8 (ymm) on AVX2. The rest of the suite tests the host's width; this
file runs the other one in a child process with ``NBCNN_LANES`` set and its own
``NUMBA_CACHE_DIR``: on an AVX2 host the 16-lane kernels (LLVM splits each vector into two
ymm halves), on an AVX-512 host the 8-lane ones. The child checks the forward, dX (stride
1 and 2) and dW of the direct kernels and Winograd, through the fast router (and Winograd's
4x4 blocks directly), against the float64 numpy oracle, on channel counts that hit every
store path of both widths (one narrow vector, an overlapping last pixel, a partial panel,
several panels).
"""

import os
import subprocess
import sys
import tempfile

import pytest

from nbcnn.kernels.fast import direct, simd

_CHILD = r"""
import numpy as np, sys
sys.path.insert(0, {tests!r})
import oracles
from nbcnn.checks import Window
from nbcnn.kernels.fast import conv as conv_fast, direct, simd
assert simd.LANES == {lanes} and direct.CHANNELS == 2 * {lanes}, (simd.LANES, direct.CHANNELS)
r = np.random.default_rng(0)
cases = [  # N, H, W, C, f, K, stride, pad
    (2, 7, 9, 3, 3, 5, 1, 1), (2, 8, 7, 6, 5, 10, 1, 2), (1, 9, 11, 5, 3, 20, 2, 1), (2, 6, 6, 16, 3, 40, 1, 1),
    (1, 10, 9, 32, 3, 70, 1, 1), (3, 5, 5, 4, 1, 33, 1, 0), (1, 12, 12, 3, 7, 24, 2, 3), (2, 9, 8, 40, 3, 17, 1, 1)]
for N, H, W, C, f, K, s, p in cases:
    x = r.standard_normal((N, H, W, C)).astype(np.float32)
    Wt = r.standard_normal((f, f, C, K)).astype(np.float32)
    b = r.standard_normal(K).astype(np.float32)
    win = Window(f, f, s, s, p, p)
    OH, OW = (H + 2 * p - f) // s + 1, (W + 2 * p - f) // s + 1
    dz = r.standard_normal((N, OH, OW, K)).astype(np.float32)
    z = np.full((N, OH, OW, K), np.nan, np.float32)
    dx, dW = np.full(x.shape, np.nan, np.float32), np.full(Wt.shape, np.nan, np.float32)
    conv_fast.forward(x, Wt, b, win, z)
    conv_fast.backward_input(dz, Wt, win, dx)
    conv_fast.backward_filter(x, dz, win, dW)
    pads = (p, p, p, p)
    want_dx, want_dW, _ = oracles.conv_backward(dz, x, Wt, (s, s), pads)
    for name, got, want in (("z", z, oracles.conv_forward(x, Wt, b, (s, s), pads)), ("dx", dx, want_dx),
                            ("dW", dW, want_dW)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3, err_msg=f"{{name}} of {{(N, H, W, C, f, K, s, p)}}")
# Winograd F(4x4, 3x3) directly (the router gives these small layers 2x2 blocks): partial
# blocks on both axes, a partial panel of filters
from nbcnn.kernels.fast import winograd
from nbcnn.kernels.fast.workspace import scratch
x = r.standard_normal((2, 9, 11, 40)).astype(np.float32)
Wt = r.standard_normal((3, 3, 40, 20)).astype(np.float32)
b = r.standard_normal(20).astype(np.float32)
z = np.full((2, 9, 11, 20), np.nan, np.float32)
winograd.forward(x, Wt, b, Window(3, 3, 1, 1, 1, 1), z, scratch, 4)
np.testing.assert_allclose(z, oracles.conv_forward(x, Wt, b, (1, 1), (1, 1, 1, 1)), rtol=1e-4, atol=2e-3)
print("checked", len(cases), "layers at", simd.LANES, "lanes")
"""


def test_the_other_widths_tiles_match_the_oracle():
    other = 8 if simd.LANES == 16 else 16
    tests = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="nbcnn_lanes_") as cache:
        env = dict(os.environ, NBCNN_LANES=str(other), NUMBA_CACHE_DIR=cache)
        env.pop("NUMBA_DISABLE_JIT", None)
        done = subprocess.run([sys.executable, "-c", _CHILD.format(tests=tests, lanes=other)], env=env,
                              capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at {other} lanes" in done.stdout


def test_the_tile_shape_follows_the_width():
    """8 lanes: the tiles tuned on Zen 3 (4 px x 16 ch, 8 px x 8 ch, dW 6 taps x 16 ch, and
    12 taps x 8 ch for 8 channels or fewer); 16 lanes: 8 px x 32 ch (16 of AVX-512's 32
    registers), 8 px x 16 ch, 8 px x 8 ch for 8 channels or fewer, dW 6 taps x 64 ch past
    32 channels, 8 x 32 up to 32, 12 x 16 and 12 x 8."""
    shapes = {8: ("direct 4x16 tile", "direct 8x8 tile", "direct 8x8 tile", "dW 6x16 tile", "dW 6x16 tile",
                  "dW 12x8 tile"),
              16: ("direct 8x32 tile", "direct 8x16 tile", "direct 8x8 tile", "dW 6x64 tile", "dW 8x32 tile",
                   "dW 12x16 tile")}
    narrow8 = "dW 12x8 tile"  # dW for 8 channels or fewer, on either width
    lanes = simd.LANES
    assert (direct.tile_name(64), direct.tile_name(lanes), direct.tile_name(6), direct.filter_grad_tile_name(64),
            direct.filter_grad_tile_name(2 * lanes), direct.filter_grad_tile_name(lanes)) == shapes[lanes]
    assert direct.filter_grad_tile_name(6) == narrow8
    # short filter rows (f_w * C numbers) get that many taps: LeNet's first layer, a 3x3 RGB filter
    assert direct.filter_grad_tile_name(6, run=5) == "dW 5x8 tile"
    assert direct.filter_grad_tile_name(8, run=9) == "dW 9x8 tile"  # 8 channels: one-vector tiles on both widths
    assert direct.filter_grad_tile_name(8, run=3) == "dW 12x8 tile"  # too short: the 12-tap tile
    assert direct.filter_grad_tile_name(lanes, run=9) == f"dW 9x{lanes} tile"
    assert direct.filter_grad_tile_name(3 * lanes, run=9) == direct.filter_grad_tile_name(3 * lanes)  # two vectors


def test_a_bad_forced_width_is_refused(monkeypatch):
    monkeypatch.setenv("NBCNN_LANES", "12")
    with pytest.raises(ValueError, match="NBCNN_LANES must be 8 or 16"):
        simd.host_lanes()


def test_the_hosts_tiles_on_the_same_layers():
    """The same layers at the host's own width, in this process."""
    exec(_CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)), lanes=simd.LANES), {})
