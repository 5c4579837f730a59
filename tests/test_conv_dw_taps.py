"""dW with the filter taps along the lanes (nbcnn/kernels/fast/filter_grad_taps.py), for 8-32
output channels on AVX-512: against the float64 oracle, through the router, its refusals,
and the same bits on any thread count."""

import numba
import numpy as np
import pytest

import oracles
from nbcnn.backend import aligned_empty, last_route, noting_routes
from nbcnn.checks import Window
from nbcnn.kernels.fast import conv as conv_fast, filter_grad_taps as taps
from nbcnn.kernels.fast.simd import LANES

avx512 = pytest.mark.skipif(LANES != 16, reason="the tile of taps runs on AVX-512 only")


from nbcnn.kernels.fast.workspace import scratch  # noqa: E402  (the same memory for the same name, as the kernel expects)


def aligned(a):
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


@avx512
@pytest.mark.parametrize("N, H, C, K, f, stride, pad", [
    (2, 7, 16, 8, 3, 1, 1),      # a filter row of 48: one tile of 3 vectors
    (2, 8, 20, 24, 3, 2, 1),     # 60 numbers a row: 2 tiles of 32 (4 taps of padding), stride 2
    (1, 5, 64, 32, 1, 1, 0),     # 1x1, 64 numbers: 2 x 32, no copy of x
    (3, 9, 16, 16, 5, 1, 2),     # 80 numbers: 2 x 48 (16 of padding)
    (2, 12, 48, 32, 3, 1, 1),    # 144 numbers, 4 groups of channels
    (8, 28, 96, 16, 1, 1, 0),    # x past the cache: chunks of rows, each split in parts
])
def test_matches_the_oracle(N, H, C, K, f, stride, pad, rng):
    assert taps.usable(C, K, f)
    x = aligned(rng.standard_normal((N, H, H, C)).astype(np.float32))
    H_out = (H + 2 * pad - f) // stride + 1
    dz = rng.standard_normal((N, H_out, H_out, K)).astype(np.float32)
    dW = np.full((f, f, C, K), np.nan, np.float32)
    db = np.full(K, np.nan, np.float32)
    taps.backward_filter(x, dz, Window(f, f, stride, stride, pad, pad), dW, scratch, db)
    _, want, want_db = oracles.conv_backward(dz, x, np.zeros((f, f, C, K), np.float32), (stride, stride), (pad,) * 4)
    np.testing.assert_allclose(dW, want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, want_db, rtol=1e-4, atol=1e-3)  # summed in the same pass


@avx512
def test_the_router_takes_it_for_few_channels_and_aligned_inputs(rng):
    x = aligned(rng.standard_normal((4, 10, 10, 64)).astype(np.float32))
    dz = rng.standard_normal((4, 10, 10, 16)).astype(np.float32)
    dW = np.empty((3, 3, 64, 16), np.float32)
    with noting_routes():
        conv_fast.backward_filter(x, dz, Window(3, 3, 1, 1, 1, 1), dW)
    assert last_route().startswith("dW taps"), last_route()
    _, want, _ = oracles.conv_backward(dz, x, np.zeros((3, 3, 64, 16), np.float32), (1, 1), (1,) * 4)
    np.testing.assert_allclose(dW, want, rtol=1e-4, atol=1e-3)


def test_what_it_refuses(rng):
    """64 channels and more, channels not in groups of 8, rows shorter than a tile or padded
    past MAX_PADDING, and an unpadded layer whose x starts off a cache line (every load of
    taps would straddle two lines: the direct tile then)."""
    assert not taps.usable(64, 64, 3)
    assert not taps.usable(64, 12, 3)
    assert not taps.usable(6, 16, 5)       # LeNet's second layer: 30 numbers a row
    assert not taps.usable(100, 16, 1)     # 100 numbers: 2 x 64 or 3 x 48 pads by 1.28x or more
    raw = aligned_empty(8 * 8 * 8 * 64 + 16)
    raw[:] = 0
    x = raw[4:4 + 8 * 8 * 8 * 64].reshape(8, 8, 8, 64)  # 16 bytes past a line
    dz = np.zeros((8, 8, 8, 16), np.float32)
    unpadded = Window(1, 1, 1, 1, 0, 0)
    assert x.ctypes.data % 64 != 0 and not taps.takes(x, dz, unpadded)
    assert taps.takes(aligned(x), dz, unpadded) == (LANES == 16)
    assert taps.takes(x, np.zeros((8, 8, 8, 16), np.float32), Window(3, 3, 1, 1, 1, 1)) == (LANES == 16)  # padded: copied


@avx512
@pytest.mark.parametrize("l2", ["", "65536"])  # the machine's L2, or one x is past (rows split in parts)
def test_same_bits_on_any_thread_count(rng, monkeypatch, l2):
    monkeypatch.setenv("NBCNN_L2_BYTES", l2)
    x = aligned(rng.standard_normal((8, 28, 28, 48)).astype(np.float32))
    dz = rng.standard_normal((8, 28, 28, 32)).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    results = []
    for threads in (1, 2):
        with numba_threads(threads):
            dW = np.empty((3, 3, 48, 32), np.float32)
            taps.backward_filter(x, dz, win, dW, scratch)
            results.append(dW)
    np.testing.assert_array_equal(results[0], results[1])
    _, want, _ = oracles.conv_backward(dz, x, np.zeros((3, 3, 48, 32), np.float32), (1, 1), (1,) * 4)
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-3)


class numba_threads:
    def __init__(self, n):
        self.n = min(n, numba.config.NUMBA_NUM_THREADS)

    def __enter__(self):
        self.saved = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.saved)
