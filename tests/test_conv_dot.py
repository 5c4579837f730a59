"""The dot tile (nbcnn/kernels/fast/dot.py): few output channels, the input channels along
the vector lanes, each output a sum of lanes. Checked against the float64 oracle, through
the flipped-filter dX it serves, and for the lanes it must not read."""

import numpy as np
import pytest

import oracles
from nbcnn.backend import last_route, noting_routes
from nbcnn.checks import Window
from nbcnn.kernels.fast import conv as conv_fast, dot
from nbcnn.kernels.fast.simd import LANES


def scratch(name, n):
    return np.empty(n, np.float32)


def shapes():
    """(N, H, W, C, K, f, stride, pad) covering: C a multiple of the lanes (one run per
    filter row) and, where the CPU has AVX-512, 8 to 15 channels (a filter row's run in whole
    vectors, then a masked one of the rest; or none, when f_w * C fills whole vectors);
    K = 1 .. 8; strides; padding; pixel counts that leave the last tile part-empty."""
    cases = [(2, 9, 7, LANES, 3, 3, 1, 1), (3, 7, 7, 2 * LANES, 6, 5, 1, 4), (1, 6, 9, LANES, 1, 2, 2, 0),
             (2, 11, 10, 2 * LANES, 8, 3, 2, 1), (1, 5, 5, LANES, 5, 1, 1, 0), (2, 8, 8, 3 * LANES, 7, 3, 1, 0),
             (1, 13, 4, LANES, 2, 3, 1, 1), (2, 6, 6, LANES, 4, 4, 2, 1)]
    if dot.MASKED_TAPS:
        cases += [(3, 7, 7, 10, 3, 3, 1, 2), (2, 9, 8, 12, 6, 5, 1, 4), (1, 6, 6, 8, 1, 3, 2, 1), (2, 5, 7, 15, 8, 2, 1, 0),
                  (2, 7, 6, 8, 5, 2, 1, 1), (1, 9, 9, 9, 3, 4, 2, 2)]
    # the outputs this CPU's tile takes (AVX2: 4 at most)
    return [(N, H, W, C, min(K, dot.MAX_OUTPUTS), f, s, p) for N, H, W, C, K, f, s, p in cases]


@pytest.mark.parametrize("N, H, W, C, K, f, stride, pad", shapes())
def test_matches_the_oracle(N, H, W, C, K, f, stride, pad, rng):
    assert dot.usable(C, K)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    Wt = rng.standard_normal((f, f, C, K)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    H_out, W_out = (H + 2 * pad - f) // stride + 1, (W + 2 * pad - f) // stride + 1
    z = np.full((N, H_out, W_out, K), np.nan, np.float32)  # a cell left unwritten shows
    dot.forward(x, Wt, b, Window(f, f, stride, stride, pad, pad), z, scratch)
    want = oracles.conv_forward(x, Wt, b, (stride, stride), (pad,) * 4)
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("C, K", [(C, K) for C, K in [(3, 16), (6, 16), (3, 64), (8, 2 * LANES)]
                                  + ([(3, 10), (6, 12)] if dot.MASKED_TAPS else []) if C <= dot.MAX_OUTPUTS])
def test_the_flipped_filter_dx_takes_it(C, K, rng, capsys):
    """dX of a layer with few input channels (an RGB layer, LeNet's second layer) is a
    convolution with C outputs over K channels: the dot tile's case."""
    x = rng.standard_normal((4, 12, 12, C)).astype(np.float32)
    Wt = rng.standard_normal((5, 5, C, K)).astype(np.float32)
    win = Window(5, 5, 1, 1, 2, 2)
    dz = rng.standard_normal((4, 12, 12, K)).astype(np.float32)
    dx = np.full(x.shape, np.nan, np.float32)
    with noting_routes():
        conv_fast.backward_input(dz, Wt, win, dx)
    assert last_route().startswith("flipped dot"), last_route()
    want, _, _ = oracles.conv_backward(dz, x, Wt, (1, 1), (2, 2, 2, 2))
    np.testing.assert_allclose(dx, want, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not dot.MASKED_TAPS, reason="the masked taps are AVX-512 only")
def test_masked_lanes_never_read_the_next_pixel(rng):
    """With 10 channels a 16-lane load from a pixel would run into the next pixel's first 6
    numbers. The masked load reads none of them: an inf in one pixel reaches exactly the
    outputs whose windows hold that pixel, as in the oracle (an unmasked load times the
    packed filters' zero lanes would put 0 * inf = NaN into the previous pixel's outputs)."""
    x = rng.standard_normal((1, 6, 6, 10)).astype(np.float32)
    x[0, 3, 3, 0] = np.inf
    Wt = rng.standard_normal((3, 3, 10, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    z = np.empty((1, 4, 4, 3), np.float32)
    dot.forward(x, Wt, b, Window(3, 3, 1, 1, 0, 0), z, scratch)
    want = oracles.conv_forward(x, Wt, b, (1, 1), (0,) * 4)
    np.testing.assert_array_equal(np.isfinite(z), np.isfinite(want))
    np.testing.assert_allclose(z[np.isfinite(z)], want[np.isfinite(want)], rtol=1e-4, atol=1e-4)


def test_refuses_layers_it_does_not_take():
    x = np.zeros((1, 4, 4, 3), np.float32)
    Wt = np.zeros((3, 3, 3, 16), np.float32)
    with pytest.raises(ValueError, match="dot tile"):
        dot.forward(x, Wt, np.zeros(16, np.float32), Window(3, 3, 1, 1, 0, 0), np.empty((1, 2, 2, 16), np.float32),
                    scratch)
