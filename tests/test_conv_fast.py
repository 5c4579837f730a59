"""The fast cpu conv kernels (nbcnn/kernels/fast/conv.py) against the readable ones.

Each fast kernel must take the readable kernel's arguments and fill the same output: we
check it against the compiled readable loop nest (``naive_cpu``) and against the float64
numpy oracle, over hundreds of shapes, strides and paddings, then the odd corners.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from nbcnn.checks import Window
from nbcnn.kernels import bias, conv
from nbcnn.kernels.fast import bias as bias_fast, conv as conv_fast


def out_hw(H, W, f_h, f_w, stride, pads):
    top, bottom, left, right = pads
    return (H + top + bottom - f_h) // stride[0] + 1, (W + left + right - f_w) // stride[1] + 1


def run_all(x, Wt, b, stride, pads, dz=None, fast=True):
    """(z, dx, dW, db) from the fast kernels (fast=True) or the compiled readable ones."""
    f_h, f_w, C, K = Wt.shape
    win = Window(f_h, f_w, stride[0], stride[1], pads[0], pads[2])
    OH, OW = out_hw(x.shape[1], x.shape[2], f_h, f_w, stride, pads)
    pick = (lambda k: getattr(bias_fast if k == "bias_backward" else conv_fast, k)) if fast else (
        lambda k: {"forward": conv.FORWARD, "backward_input": conv.BACKWARD_INPUT,
                   "backward_filter": conv.BACKWARD_FILTER, "bias_backward": bias.BACKWARD}[k].naive_cpu)
    z = np.full((x.shape[0], OH, OW, K), np.nan, x.dtype)  # NaN: a cell left unwritten shows
    pick("forward")(x, Wt, b, win, z)
    if dz is None:
        return z
    dx, dW, db = np.full(x.shape, np.nan, x.dtype), np.full(Wt.shape, np.nan, x.dtype), np.full(K, np.nan, x.dtype)
    pick("backward_input")(dz, Wt, win, dx)
    pick("backward_filter")(x, dz, win, dW)
    pick("bias_backward")(dz.reshape(-1, K), db)
    return z, dx, dW, db


def make(rng, N, H, W, C, K, f_h, f_w, stride, pads, dtype=np.float32):
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    Wt = rng.standard_normal((f_h, f_w, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    OH, OW = out_hw(H, W, f_h, f_w, stride, pads)
    dz = rng.standard_normal((N, OH, OW, K)).astype(dtype)
    return x, Wt, b, dz


def check_against_oracle(x, Wt, b, dz, stride, pads, rtol, atol):
    got = run_all(x, Wt, b, stride, pads, dz)
    want = (oracles.conv_forward(x, Wt, b, stride, pads), *oracles.conv_backward(dz, x, Wt, stride, pads))
    for name, g, w in zip(("z", "dx", "dW", "db"), got, want):
        assert g.shape == w.shape and g.dtype == x.dtype, name
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=name)
    return got


@st.composite
def conv_problems(draw):
    f_h, f_w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))  # top, bottom, left, right: may differ
    H = draw(st.integers(max(1, f_h - pads[0] - pads[1]), 12))
    W = draw(st.integers(max(1, f_w - pads[2] - pads[3]), 12))
    return dict(N=draw(st.integers(1, 3)), H=H, W=W, C=draw(st.integers(1, 9)), K=draw(st.integers(1, 20)),
                f_h=f_h, f_w=f_w, stride=stride, pads=pads, seed=draw(st.integers(0, 2**31)))


@settings(max_examples=300, deadline=None)
@given(conv_problems())
def test_fast_matches_readable_kernels_and_oracle(p):
    rng = np.random.default_rng(p.pop("seed"))
    stride, pads = p.pop("stride"), p.pop("pads")
    x, Wt, b, dz = make(rng, **p, stride=stride, pads=pads)
    fast = check_against_oracle(x, Wt, b, dz, stride, pads, rtol=1e-4, atol=1e-4)
    readable = run_all(x, Wt, b, stride, pads, dz, fast=False)
    for g, r in zip(fast, readable):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(conv_problems())
def test_float64_is_supported_and_accurate(p):
    rng = np.random.default_rng(p.pop("seed"))
    stride, pads = p.pop("stride"), p.pop("pads")
    x, Wt, b, dz = make(rng, **p, stride=stride, pads=pads, dtype=np.float64)
    check_against_oracle(x, Wt, b, dz, stride, pads, rtol=1e-11, atol=1e-11)


# The corners, named: a kernel may pass random shapes and still fail one of these.
ODD_CASES = {
    # N, H, W, C, K, f_h, f_w, stride, (top, bottom, left, right)
    "K=13, not a multiple of the vector width": (2, 9, 9, 5, 13, 3, 3, (1, 1), (1, 1, 1, 1)),
    "W_out of 1": (2, 6, 3, 4, 9, 3, 3, (1, 1), (0, 0, 0, 0)),
    "H_out and W_out of 1": (1, 5, 5, 3, 4, 5, 5, (2, 2), (0, 0, 0, 0)),
    "stride 2": (2, 11, 10, 4, 8, 3, 3, (2, 2), (1, 1, 1, 1)),
    "stride 3": (2, 13, 14, 3, 5, 3, 3, (3, 3), (0, 0, 0, 0)),
    "stride (1, 2)": (2, 8, 9, 3, 6, 2, 3, (1, 2), (1, 0, 0, 2)),
    "asymmetric pad": (2, 7, 6, 3, 7, 3, 3, (1, 1), (0, 2, 2, 0)),
    "pad bigger than the filter": (1, 4, 4, 2, 3, 2, 2, (1, 1), (3, 3, 3, 3)),
    "1x1": (3, 7, 5, 16, 8, 1, 1, (1, 1), (0, 0, 0, 0)),
    "1x1 stride 2": (2, 7, 8, 6, 5, 1, 1, (2, 2), (0, 0, 0, 0)),
    "1x1 padded": (2, 5, 5, 4, 3, 1, 1, (1, 1), (1, 1, 1, 1)),
    "7x7 stride 2 pad 3 (a stem)": (2, 20, 18, 3, 16, 7, 7, (2, 2), (3, 3, 3, 3)),
    "5x5 pad 2, many channels": (1, 8, 8, 40, 12, 5, 5, (1, 1), (2, 2, 2, 2)),
    "one input channel, one filter": (2, 6, 6, 1, 1, 3, 3, (1, 1), (0, 0, 0, 0)),
    "rows not covered by any window": (1, 9, 9, 2, 3, 2, 2, (3, 3), (0, 0, 0, 0)),
    # the direct kernel's tiles (conv_direct.py): 4 px x 16 ch, 8 px x 8 ch, 6 taps for dW on AVX2;
    # 8 px x 32 ch, 8 px x 16 ch, 12 taps on AVX-512 (K=17: the overlapping last pixel there)
    "K=8: one whole narrow vector, W_out a multiple of 8": (2, 10, 10, 3, 8, 3, 3, (1, 1), (0, 0, 0, 0)),
    "K=16, W_out a multiple of 4: whole tiles only": (2, 6, 10, 5, 16, 3, 3, (1, 1), (1, 1, 1, 1)),
    "K=17: a panel and one channel": (2, 7, 9, 4, 17, 3, 3, (1, 1), (1, 1, 1, 1)),
    "K=33, stride 2: panels and an edge tile": (2, 11, 13, 6, 33, 3, 3, (2, 2), (1, 1, 1, 1)),
    "LeNet C1, small: 1 channel in, 6 out, 5x5": (3, 12, 12, 1, 6, 5, 5, (1, 1), (0, 0, 0, 0)),
    "LeNet C3, small: dX by the flipped narrow tile": (3, 9, 9, 6, 16, 5, 5, (1, 1), (0, 0, 0, 0)),
    "W_out of 3: rows shorter than a tile": (2, 5, 5, 2, 10, 3, 3, (1, 1), (0, 0, 0, 0)),
    # overlapping stores (a pixel's vector spills into the next pixel, then is overwritten):
    # K = 3 must not use them (they would run past the tile), 4..7 and 9..15 do
    "K=3, rows of 16: narrow tile, no overlapping stores": (2, 5, 18, 2, 3, 3, 3, (1, 1), (0, 0, 0, 0)),
    "K=4, rows of 16: the smallest overlapping narrow store": (2, 5, 18, 2, 4, 3, 3, (1, 1), (0, 0, 0, 0)),
    "K=9, rows of 8: overlapping stores in the wide tile": (2, 4, 10, 3, 9, 3, 3, (1, 1), (0, 0, 0, 0)),
    # tiles are consecutive pixels in NHWC order: they run across rows and images, the last
    # one repeats its last pixel; an unpadded x is read in place, unused columns and all
    "tiles across rows and images, x read in place (column 7 unused)": (3, 7, 8, 3, 12, 3, 3, (2, 2), (0, 0, 0, 0)),
    "narrow tiles across rows, 90 pixels (2 in the last tile)": (3, 6, 7, 2, 5, 2, 2, (1, 1), (0, 0, 0, 0)),
    "3 pixels in all: one narrow tile, mostly repeats": (1, 3, 5, 2, 6, 3, 3, (1, 1), (0, 0, 0, 0)),
    "5 pixels in all, K=20: one wide tile and one repeat per panel": (1, 3, 7, 4, 20, 3, 3, (1, 1), (0, 0, 0, 0)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(ODD_CASES))
def test_odd_shapes(case, dtype, rng):
    N, H, W, C, K, f_h, f_w, stride, pads = ODD_CASES[case]
    x, Wt, b, dz = make(rng, N, H, W, C, K, f_h, f_w, stride, pads, dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    check_against_oracle(x, Wt, b, dz, stride, pads, rtol=tol, atol=tol)


def test_same_bits_every_run(rng):
    """No races and no thread-count-dependent sums: the same inputs give the same bits."""
    for case in ("7x7 stride 2 pad 3 (a stem)", "5x5 pad 2, many channels", "1x1", "stride 2"):
        N, H, W, C, K, f_h, f_w, stride, pads = ODD_CASES[case]
        x, Wt, b, dz = make(rng, 4 * N, H, W, C, K, f_h, f_w, stride, pads)
        first = run_all(x, Wt, b, stride, pads, dz)
        for _ in range(3):
            for a, c in zip(first, run_all(x, Wt, b, stride, pads, dz)):
                np.testing.assert_array_equal(a, c)


def test_same_bits_on_any_thread_count(rng):
    """The threads share the work by tasks whose sums never depend on who computes them: dW in
    cache-sized chunks of rows (a dz past ``direct.CHUNK_BYTES``) and in row splits (few
    taps), the Winograd forward, and the direct forward give the same bits on 1 thread or 2."""
    import numba
    cases = [(2, 28, 28, 16, 96, 3, 3, (1, 1), (1, 1, 1, 1)),   # chunked dW
             (2, 28, 28, 32, 32, 3, 3, (1, 1), (1, 1, 1, 1)),   # Winograd forward and dX
             (3, 9, 9, 3, 8, 3, 3, (1, 1), (0, 0, 0, 0))]        # split dW, narrow tiles
    threads = numba.get_num_threads()
    try:
        for case in cases:
            x, Wt, b, dz = make(rng, *case)
            numba.set_num_threads(1)
            one = run_all(x, Wt, b, case[7], case[8], dz)
            numba.set_num_threads(max(2, threads) if numba.config.NUMBA_NUM_THREADS > 1 else 1)
            for a, c in zip(one, run_all(x, Wt, b, case[7], case[8], dz)):
                np.testing.assert_array_equal(a, c)
    finally:
        numba.set_num_threads(threads)


def test_dw_chunks_split_in_parts_past_the_cache(rng, monkeypatch):
    """A dz larger than the L2 cache (made small here with NBCNN_L2_BYTES) has each chunk's rows
    split in direct.CHUNK_SPLITS parts with their own sums: against the float64 oracle, and the
    same bits on 1 thread or 2."""
    import numba
    from nbcnn.kernels.fast import direct

    monkeypatch.setenv("NBCNN_L2_BYTES", "4096")
    case = (2, 28, 28, 16, 96, 3, 3, (1, 1), (1, 1, 1, 1))
    x, Wt, b, dz = make(rng, *case)
    assert dz.nbytes > 4096 and direct.CHUNK_SPLITS > 1
    threads = numba.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads) if numba.config.NUMBA_NUM_THREADS > 1 else 1):
            numba.set_num_threads(n)
            results.append(run_all(x, Wt, b, case[7], case[8], dz)[2])
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(results[0], results[1])
    want = oracles.conv_backward(dz, x, Wt, case[7], case[8])[1]
    np.testing.assert_allclose(results[0], want, rtol=1e-4, atol=1e-3)


def test_a_bigger_layer_against_the_oracle(rng):
    """A real layer's shape (few enough images to keep the float64 oracle quick)."""
    x, Wt, b, dz = make(rng, 2, 28, 28, 32, 24, 3, 3, (1, 1), (1, 1, 1, 1))
    check_against_oracle(x, Wt, b, dz, (1, 1), (1, 1, 1, 1), rtol=1e-4, atol=1e-3)


def test_the_cpu_backend_runs_the_fast_kernels(monkeypatch):
    assert conv.FORWARD.cpu is conv_fast.forward
    assert conv.BACKWARD_INPUT.cpu is conv_fast.backward_input
    assert conv.BACKWARD_FILTER.cpu is conv_fast.backward_filter
    assert bias.BACKWARD.cpu is bias_fast.bias_backward
    monkeypatch.setenv("NBCNN_FAST", "0")
    assert conv.FORWARD.cpu is conv.FORWARD.naive_cpu


def test_bias_gradient_many_rows(rng):
    dz = rng.standard_normal((1001, 7)).astype(np.float32)
    db = np.empty(7, np.float32)
    bias_fast.bias_backward(dz, db)
    np.testing.assert_allclose(db, dz.astype(np.float64).sum(0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("f, stride, pads", [(3, 1, (1, 1, 1, 1)), (5, 2, (2, 1, 2, 1)), (3, 2, (0, 2, 1, 0)),
                                             (2, 1, (0, 0, 0, 0))])
def test_an_inf_in_dz_gives_the_readable_filter_gradient_wherever_it_is(f, stride, pads, rng):
    """Padding contributes nothing, not even ``0 * inf``. The fast dW runs the readable loop
    only when a pixel whose window reaches the padding has a non-finite dz (it checks those
    border pixels, not all of dz); an inf anywhere else meets the image only, where the fast
    tile multiplies exactly what the readable loop does. So an inf at every pixel in turn:
    the same cells non-finite, the same finite numbers."""
    N, H, W, C, K = 1, 7, 6, 2, 3
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    win = Window(f, f, stride, stride, pads[0], pads[2])
    OH, OW = out_hw(H, W, f, f, (stride, stride), pads)
    dz0 = rng.standard_normal((N, OH, OW, K)).astype(np.float32)
    for h, w in np.ndindex(OH, OW):
        dz = dz0.copy()
        dz[0, h, w, 1] = np.inf
        got, want = np.empty((f, f, C, K), np.float32), np.empty((f, f, C, K), np.float32)
        conv_fast.backward_filter(x, dz, win, got)
        conv.BACKWARD_FILTER.naive_cpu(x, dz, win, want)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want), err_msg=f"inf at ({h}, {w})")
        np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-4, atol=1e-4)
        assert (np.isnan(got) == np.isnan(want)).all(), f"inf at ({h}, {w}): NaN where the readable loop has none"
