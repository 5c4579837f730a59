"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5) (nbcnn/kernels/fast/winograd.py) against the
float64 oracle.

conv_fast routes float32 3x3 and 5x5 stride-1 convs with 32+ input channels (a multiple of 8)
here, forward and stride-1 dX (a conv with the filters flipped). The transforms add up to 9
(3x3 in 2x2 blocks) or 36 (5x5, and 3x3 in 4x4 blocks, with factors up to 8) numbers per
value, so the tolerance is the float32 one of the other fast kernels.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles
from nbcnn.checks import Window
from nbcnn.kernels.fast import conv as conv_fast, winograd as conv_winograd
from nbcnn.kernels.fast.workspace import scratch


def _forward(x, Wt, b, pads, block=2):
    """conv_winograd.forward of a 3x3 or 5x5 filter in ``block`` x ``block`` output tiles, into a
    NaN-filled z (an unwritten cell shows)."""
    f = Wt.shape[0]
    top, bottom, left, right = pads
    z = np.full((x.shape[0], x.shape[1] + top + bottom - f + 1, x.shape[2] + left + right - f + 1, Wt.shape[3]),
                np.nan, np.float32)
    conv_winograd.forward(x, Wt, b, Window(f, f, 1, 1, top, left), z, scratch, block)
    return z


@settings(max_examples=80, deadline=None)
@given(f_block=st.sampled_from([(3, 2), (5, 2), (3, 4)]), N=st.integers(1, 3), H=st.integers(1, 13),
       W=st.integers(1, 13), C=st.sampled_from([32, 40, 64]), K=st.integers(1, 40),
       pads=st.tuples(*[st.integers(0, 3)] * 4), seed=st.integers(0, 2**31 - 1))
def test_random_shapes_against_the_oracle(f_block, N, H, W, C, K, pads, seed):
    """F(2x2, 3x3), F(2x2, 5x5) and F(4x4, 3x3): outputs that end inside a block (partial
    tiles), K not a multiple of 8 or 16, tile counts not a multiple of a task's, asymmetric
    padding."""
    f, block = f_block
    top, bottom, left, right = pads
    if H + top + bottom < f or W + left + right < f:
        return
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, H, W, C)).astype(np.float32)
    Wt = r.standard_normal((f, f, C, K)).astype(np.float32)
    b = r.standard_normal(K).astype(np.float32)
    np.testing.assert_allclose(_forward(x, Wt, b, pads, block), oracles.conv_forward(x, Wt, b, (1, 1), pads),
                               rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("points, r", [((0, 1, -1), 3), ((0, 1, -1, 2, -2), 5), ((0, 1, -1, 2, -2), 3),
                                       ((0, 1, -1, 2, -2, 3, -3), 3)])
def test_toom_cook_matrices_compute_the_correlation(points, r):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the 2-D correlation of d with g (m = n - r + 1
    outputs a side), in float64, for the matrices ``toom_cook`` derives."""
    n = len(points) + 1
    m = n - r + 1
    A_T, G, B_T = conv_winograd.toom_cook(points, m, r)
    assert A_T.shape == (m, n) and G.shape == (n, r) and B_T.shape == (n, n)
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((n, n)), rng.standard_normal((r, r))
    want = np.array([[np.sum(d[i:i + r, j:j + r] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T, want, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="finite points"):
        conv_winograd.toom_cook(points[:-1], m, r)


def test_5x5_forward_and_dx_of_an_inception_like_layer(rng):
    """A 5x5 pad-2 forward (64 -> 40) and its stride-1 dX as conv_fast computes it on Winograd (a
    40 -> 64 conv of dz with the filters flipped and transposed), against the float64 oracle,
    the same bits on 1 or 2 threads; and the router sends Inception's 5x5 layer with 8 images,
    and its dX, here."""
    x = rng.standard_normal((2, 11, 9, 64)).astype(np.float32)
    Wt = rng.standard_normal((5, 5, 64, 40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    dz = rng.standard_normal((2, 11, 9, 40)).astype(np.float32)
    flipped = np.ascontiguousarray(Wt[::-1, ::-1].transpose(0, 1, 3, 2))
    threads = numba.get_num_threads()
    runs = []
    try:
        for n in (1, max(2, threads) if numba.config.NUMBA_NUM_THREADS > 1 else 1):
            numba.set_num_threads(n)
            no_bias = np.zeros(64, np.float32)
            runs.append((_forward(x, Wt, b, (2, 2, 2, 2)), _forward(dz, flipped, no_bias, (2, 2, 2, 2))))
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_allclose(runs[0][0], oracles.conv_forward(x, Wt, b, (1, 1), (2, 2, 2, 2)), rtol=1e-4, atol=2e-3)
    want_dx = oracles.conv_backward(dz, x, Wt, (1, 1), (2, 2, 2, 2))[0]
    np.testing.assert_allclose(runs[0][1], want_dx, rtol=1e-4, atol=2e-3)
    for a, c in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, c)
    win = Window(5, 5, 1, 1, 2, 2)
    numba.set_num_threads(1)
    try:
        assert conv_winograd.usable((8, 28, 28, 192), (5, 5, 192, 32), win)
        assert conv_winograd.usable((8, 28, 28, 32), (5, 5, 32, 192), win)
    finally:
        numba.set_num_threads(threads)


F43_G = np.array([[1, 0, 0], [1, 1, 1], [1, -1, 1], [1, 2, 4], [1, -2, 4], [0, 0, 1]])
"""F(4x4, 3x3)'s G on the points 0, 1, -1, 2, -2 and infinity: row p is (1, p, p^2)."""


@pytest.mark.parametrize("block, G", [
    (2, np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])), (4, F43_G)])
def test_filter_transform_is_g_w_gt(block, G):
    """U = G g G^T per (c, k), packed as (n * n positions, K/CH panels, C, CH), zero-padded
    (CH = direct.CHANNELS: 16 on AVX2, 32 on AVX-512)."""
    rng = np.random.default_rng(1)
    K, ch = 40, conv_winograd.CHANNELS
    panels = -(-K // ch)
    Wt = rng.standard_normal((3, 3, 8, K)).astype(np.float32)
    n2 = G.shape[0] ** 2
    want = np.einsum("ai,ijck,bj->abck", G, Wt.astype(np.float64), G).reshape(n2, 8, K)
    packed = conv_winograd.transform_filters(Wt, block).reshape(n2, panels, 8, ch)
    got = np.concatenate([packed[:, p] for p in range(panels)], axis=2)  # (n2, C, panels * ch)
    np.testing.assert_allclose(got[:, :, :K], want, rtol=1e-6, atol=1e-6)
    assert not got[:, :, K:].any()


def test_routed_forward_and_dx_of_a_resnet_like_layer(rng):
    """Through conv_fast: the forward (64 -> 48) and the stride-1 dX (a 48 -> 64 conv of dz)."""
    x = rng.standard_normal((2, 9, 10, 64)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 64, 48)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    assert conv_winograd.usable(x.shape, Wt.shape, win)
    assert conv_winograd.usable((2, 9, 10, 48), (3, 3, 48, 64), win)  # dX's flipped conv
    z = np.empty((2, 9, 10, 48), np.float32)
    conv_fast.forward(x, Wt, b, win, z)
    np.testing.assert_allclose(z, oracles.conv_forward(x, Wt, b, (1, 1), (1, 1, 1, 1)), rtol=1e-4, atol=1e-3)
    dz = rng.standard_normal(z.shape).astype(np.float32)
    dx = np.empty_like(x)
    conv_fast.backward_input(dz, Wt, win, dx)
    want_dx, _, _ = oracles.conv_backward(dz, x, Wt, (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("block", [2, 4])
def test_same_bits_every_run_and_thread_count(rng, block):
    x = rng.standard_normal((3, 13, 11, 32)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 32, 24)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    first = _forward(x, Wt, b, (1, 1, 1, 1), block)
    threads = numba.get_num_threads()
    try:
        for n in {1, threads}:
            numba.set_num_threads(n)
            np.testing.assert_array_equal(_forward(x, Wt, b, (1, 1, 1, 1), block), first)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("x_shape, usable", [
    ((96, 5, 5, 64), False), ((64, 3, 3, 64), False), ((32, 7, 7, 64), False), ((16, 9, 9, 64), False),
    ((8, 13, 13, 64), True), ((8, 10, 10, 64), True), ((8, 28, 27, 64), True)])
def test_small_maps_that_2x2_blocks_overhang_take_the_direct_tile(x_shape, usable):
    """2x2 blocks covering more than 1.2x the map (5 x 5: 1.44x) compute too many thrown-away
    pixels: those layers run on the direct tile."""
    assert conv_winograd.usable(x_shape, (3, 3, 64, 64), Window(3, 3, 1, 1, 1, 1), 2, 2 << 20) == usable


@pytest.mark.parametrize("l2, threads, images, W_shape, stride, usable", [
    (512 << 10, 1, 1, (3, 3, 64, 64), 1, True), (512 << 10, 1, 1, (3, 3, 128, 128), 1, True),  # U 256 KB, 1 MB
    (512 << 10, 1, 1, (3, 3, 256, 256), 1, False),                          # 4 MB, few tiles: direct (Zen 3)
    (512 << 10, 1, 8, (3, 3, 256, 256), 1, True),                           # 4 MB, 64 tiles a task
    (2 << 20, 1, 1, (3, 3, 256, 256), 1, True), (2 << 20, 2, 1, (3, 3, 256, 256), 1, True),  # Sapphire Rapids
    (2 << 20, 2, 1, (3, 3, 512, 512), 1, False), (2 << 20, 2, 8, (3, 3, 512, 512), 1, True),  # 16 MB: tiles decide
    (2 << 20, 1, 1, (3, 3, 24, 64), 1, False), (2 << 20, 1, 1, (3, 3, 36, 64), 1, False),    # < 32, not a multiple of 8
    (2 << 20, 1, 1, (3, 3, 64, 64), 2, False), (2 << 20, 1, 8, (5, 5, 64, 64), 1, True),
    (2 << 20, 1, 1, (5, 5, 64, 64), 1, False),                              # 5x5: too few tiles a task
    (2 << 20, 1, 8, (5, 5, 64, 64), 2, False), (2 << 20, 1, 8, (7, 7, 64, 64), 1, False),
    (2 << 20, 1, 1, (1, 1, 64, 64), 1, False),
])
def test_which_layers_take_winograd(l2, threads, images, W_shape, stride, usable, monkeypatch):
    """``images`` of 28x28: 1 gives 196 tiles (too few to share 16 MB of U), 8 give 1568."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two threads")
    monkeypatch.setenv("NBCNN_L2_BYTES", str(l2))
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        win = (Window(3, 3, stride, stride, 1, 1) if W_shape[0] == 3
               else Window(W_shape[0], W_shape[1], stride, stride, 0, 0))
        assert conv_winograd.usable((images, 28, 28, W_shape[2]), W_shape, win) == usable
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("l2, x_shape, W_shape, block", [
    (2 << 20, (8, 56, 56, 64), (3, 3, 64, 64), 4),        # ResNet: U 590 KB
    (2 << 20, (4, 56, 56, 256), (3, 3, 256, 256), 4),     # VGG: 9.4 MB, 64 tiles a task
    (2 << 20, (1, 26, 26, 256), (3, 3, 256, 512), 2),     # YOLOv3-tiny: 18.9 MB over 49 tiles
    (512 << 10, (8, 56, 56, 64), (3, 3, 64, 64), 4),      # Zen 3: 590 KB within 2 L2s
    (2 << 20, (1, 32, 32, 64), (3, 3, 64, 128), 2),       # 64 4x4 tiles: too few
    (2 << 20, (2, 28, 28, 32), (3, 3, 32, 32), 2),        # 98
    (2 << 20, (16, 5, 5, 64), (3, 3, 64, 64), 2),
    (2 << 20, (96, 10, 10, 32), (3, 3, 32, 64), 2),       # 4x4 blocks cover 1.44x the map
    (2 << 20, (16, 26, 26, 64), (3, 3, 64, 64), 2),       # 1.16x
    (2 << 20, (8, 28, 28, 64), (3, 3, 64, 64), 4),
    (2 << 20, (8, 55, 55, 64), (3, 3, 64, 64), 4),        # 1.04x
    (512 << 10, (1, 28, 28, 256), (3, 3, 256, 256), 2),   # 9.4 MB, few tiles
    (2 << 20, (8, 28, 28, 192), (5, 5, 192, 32), 2),      # 5x5: F(2x2, 5x5) only
])
def test_which_block_a_layer_takes(l2, x_shape, W_shape, block, monkeypatch):
    """F(4x4, 3x3) where its 2.25x larger transformed filters pass the cache rule, else 2x2;
    on 1 or 2 threads alike (the bits must not depend on the thread count)."""
    monkeypatch.setenv("NBCNN_L2_BYTES", str(l2))
    assert conv_winograd.block_for(x_shape, W_shape, 2) == block
    assert conv_winograd.block_for(x_shape, W_shape, 1) == block


def test_routed_layer_takes_4x4_blocks(rng):
    """A ResNet-like layer's forward and dX (288 4x4 tiles) run F(4x4, 3x3) through conv_fast,
    and match the oracle."""
    from nbcnn.backend import last_route, noting_routes

    x = rng.standard_normal((2, 48, 47, 32)).astype(np.float32)
    Wt = rng.standard_normal((3, 3, 32, 40)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    z = np.empty((2, 48, 47, 40), np.float32)
    dz = rng.standard_normal(z.shape).astype(np.float32)
    dx = np.empty_like(x)
    with noting_routes():
        conv_fast.forward(x, Wt, b, win, z)
        assert "F(4x4,3x3)" in last_route()
        conv_fast.backward_input(dz, Wt, win, dx)
        assert "F(4x4,3x3)" in last_route()
    np.testing.assert_allclose(z, oracles.conv_forward(x, Wt, b, (1, 1), (1, 1, 1, 1)), rtol=1e-4, atol=1e-3)
    want_dx, _, _ = oracles.conv_backward(dz, x, Wt, (1, 1), (1, 1, 1, 1))
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("tiles, workers, expected", [
    (10_000, 2, conv_winograd.TILES), (49, 2, 8), (49, 1, 16), (3, 2, 1)])
def test_tiles_per_task_keeps_every_thread_busy(tiles, workers, expected):
    per_task = conv_winograd.tiles_per_task(tiles, workers)
    # expected on AVX-512 (8-tile rows); AVX2's 4-tile rows round the same counts to a multiple of 4
    assert per_task % conv_winograd.PIXELS == 0
    assert per_task == max(conv_winograd.PIXELS, -(-expected // conv_winograd.PIXELS) * conv_winograd.PIXELS)


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 3), H=st.integers(1, 11), W=st.integers(1, 11), C=st.sampled_from([32, 40]),
       K=st.integers(1, 40), pads=st.tuples(*[st.integers(0, 2)] * 4), seed=st.integers(0, 2**31 - 1))
def test_filter_gradient_against_the_oracle(N, H, W, C, K, pads, seed):
    """dW = G^T (sum over tiles of V * A dY A^T) G: odd outputs (dz padded to whole 2x2 blocks),
    K not a multiple of a panel, tiles not a multiple of a chunk or of the 4 runs."""
    top, bottom, left, right = pads
    if H + top + bottom < 3 or W + left + right < 3:
        return
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, H, W, C)).astype(np.float32)
    dz = r.standard_normal((N, H + top + bottom - 2, W + left + right - 2, K)).astype(np.float32)
    dW = np.full((3, 3, C, K), np.nan, np.float32)
    conv_winograd.filter_grad(x, dz, Window(3, 3, 1, 1, top, left), dW, scratch)
    want = oracles.conv_backward(dz, x, np.zeros((3, 3, C, K)), (1, 1), pads)[1]
    np.testing.assert_allclose(dW, want, rtol=1e-4, atol=2e-3)


def test_filter_gradient_same_bits_on_any_thread_count_and_routed(rng):
    """The runs of tiles are fixed (GRAD_SPLITS), not one per thread: 1 and 2 threads give the
    same bits. conv_fast sends big 3x3 layers' dW here, small ones to the direct dW tile."""
    x = rng.standard_normal((2, 30, 30, 32)).astype(np.float32)
    dz = rng.standard_normal((2, 30, 30, 48)).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    threads = numba.get_num_threads()
    runs = []
    try:
        for n in (1, max(2, threads) if numba.config.NUMBA_NUM_THREADS > 1 else 1):
            numba.set_num_threads(n)
            dW = np.empty((3, 3, 32, 48), np.float32)
            conv_winograd.filter_grad(x, dz, win, dW, scratch)
            runs.append(dW)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0], oracles.conv_backward(dz, x, np.zeros((3, 3, 32, 48)), (1, 1), (1, 1, 1, 1))[1],
                               rtol=1e-4, atol=2e-3)
    assert conv_winograd.filter_grad_usable((8, 56, 56, 64), (8, 56, 56, 64), (3, 3, 64, 64), win)
    assert not conv_winograd.filter_grad_usable((2, 7, 7, 64), (2, 7, 7, 64), (3, 3, 64, 64), win)  # few tiles
    assert not conv_winograd.filter_grad_usable((8, 28, 28, 192), (8, 28, 28, 32), (5, 5, 192, 32),
                                                Window(5, 5, 1, 1, 2, 2))
    assert not conv_winograd.filter_grad_usable((8, 56, 56, 24), (8, 56, 56, 64), (3, 3, 24, 64), win)
    assert not conv_winograd.filter_grad_usable((8, 55, 56, 64), (8, 55, 56, 64), (3, 3, 64, 64), win)  # odd rows


def test_filter_gradient_of_an_infinite_input_stays_in_its_channel(rng):
    """An inf in x, channel 3: Winograd mixes numbers within one (c, k) pair only. dW is
    non-finite wherever the direct dW tile's is, and may be in more of channel 3's taps (its
    transforms add the inf into every tap's sum: NaN from inf - inf), while every other channel
    equals the direct dW's finite numbers to rounding: nothing spreads across channels."""
    from nbcnn.kernels.fast import direct

    x = rng.standard_normal((1, 8, 8, 32)).astype(np.float32)
    x[0, 7, 7, 3] = np.inf
    dz = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
    win = Window(3, 3, 1, 1, 1, 1)
    got, want = np.empty((3, 3, 32, 16), np.float32), np.empty((3, 3, 32, 16), np.float32)
    conv_winograd.filter_grad(x, dz, win, got, scratch)
    direct.backward_filter(x, dz, win, want, scratch)
    assert (~np.isfinite(got))[~np.isfinite(want)].all()
    others = np.arange(32) != 3
    np.testing.assert_allclose(got[:, :, others], want[:, :, others], rtol=1e-4, atol=1e-3)
