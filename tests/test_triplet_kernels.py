"""The triplet loss, L2 normalisation and pairwise distances: hand-computed cases, numpy,
finite differences, on every backend (tiny shapes: python and the simulator run them as Python)."""

import numpy as np
import pytest

import nbcnn
import oracles


def numpy_triplet(a, p, n, alpha):
    a, p, n = (np.asarray(v, np.float64) for v in (a, p, n))
    return np.maximum(((a - p) ** 2).sum(-1) - ((a - n) ** 2).sum(-1) + alpha, 0)


# --------------------------------------------------------------------------- triplet loss


def test_a_triplet_worked_by_hand(backend):
    # A = (0, 0), P = (1, 0), N = (0, 2): d(A, P) = 1, d(A, N) = 4; 1 - 4 + 0.2 < 0 -> 0
    # with alpha = 3.5: 1 - 4 + 3.5 = 0.5
    a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])
    assert nbcnn.triplet_loss(a, p, n, 0.2) == 0.0
    assert nbcnn.triplet_loss(a, p, n, 3.5) == pytest.approx(0.5, abs=1e-15)
    # gradient: dA = 2 (N - P) = (-2, 4), dP = 2 (P - A) = (2, 0), dN = 2 (A - N) = (0, -4)
    dA, dP, dN = nbcnn.triplet_loss_backward(1.0, a, p, n, 3.5)
    np.testing.assert_array_equal(dA, [[-2.0, 4.0]])
    np.testing.assert_array_equal(dP, [[2.0, 0.0]])
    np.testing.assert_array_equal(dN, [[0.0, -4.0]])
    # a satisfied triplet teaches nothing
    for g in nbcnn.triplet_loss_backward(1.0, a, p, n, 0.2):
        np.testing.assert_array_equal(g, [[0.0, 0.0]])


def test_sum_mean_and_per_triplet_losses_match_numpy(backend, rng):
    a, p, n = (rng.standard_normal((5, 3)) for _ in range(3))
    expected = numpy_triplet(a, p, n, 0.7)
    assert expected.min() == 0 and expected.max() > 0  # both kinds of triplet in the batch
    np.testing.assert_allclose(nbcnn.triplet_loss(a, p, n, 0.7, reduction="none"), expected, rtol=1e-12)
    assert nbcnn.triplet_loss(a, p, n, 0.7) == pytest.approx(expected.sum(), rel=1e-12)
    assert nbcnn.triplet_loss(a, p, n, 0.7, reduction="mean") == pytest.approx(expected.mean(), rel=1e-12)


def test_float32_stays_float32(backend, rng):
    a, p, n = (rng.standard_normal((4, 6)).astype(np.float32) for _ in range(3))
    per = nbcnn.triplet_loss(a, p, n, 0.2, reduction="none")
    assert per.dtype == np.float32
    np.testing.assert_allclose(per, numpy_triplet(a, p, n, 0.2), rtol=1e-5, atol=1e-5)
    assert all(g.dtype == np.float32 for g in nbcnn.triplet_loss_backward(1.0, a, p, n))


def test_triplet_gradient_matches_finite_differences(backend, rng):
    a, p, n = (rng.standard_normal((3, 4)) for _ in range(3))
    alpha = 1.5
    basic = ((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + alpha
    assert np.all(np.abs(basic) > 1e-3) and (basic > 0).any() and (basic < 0).any()  # off the kink, both sides
    weights = np.array([0.5, -2.0, 1.25])  # an upstream gradient per triplet
    dA, dP, dN = nbcnn.triplet_loss_backward(weights, a, p, n, alpha)

    def loss(a_, p_, n_):
        return float(np.sum(weights * nbcnn.triplet_loss(a_, p_, n_, alpha, reduction="none")))

    oracles.assert_grad_close(dA, lambda v: loss(v, p, n), a, rtol=1e-6, atol=1e-8)
    oracles.assert_grad_close(dP, lambda v: loss(a, v, n), p, rtol=1e-6, atol=1e-8)
    oracles.assert_grad_close(dN, lambda v: loss(a, p, v), n, rtol=1e-6, atol=1e-8)


def test_nan_embeddings_give_a_nan_loss_not_zero(backend):
    a = np.array([[np.nan, 0.0]])
    z = np.zeros((1, 2))
    assert np.isnan(nbcnn.triplet_loss(a, z, z, 0.2))


@pytest.mark.parametrize("call, error, words", [
    (lambda z: nbcnn.triplet_loss(z, z[:2], z), ValueError, "positive has shape (2, 4) but anchor"),
    (lambda z: nbcnn.triplet_loss(z, z, z.ravel()), ValueError, "negative must have 2 dimensions"),
    (lambda z: nbcnn.triplet_loss(z, z, z, alpha=np.nan), ValueError, "alpha"),
    (lambda z: nbcnn.triplet_loss(z, z, z, alpha="0.2"), TypeError, "alpha"),
    (lambda z: nbcnn.triplet_loss(z, z, z, reduction="max"), ValueError, "reduction"),
    (lambda z: nbcnn.triplet_loss(z.astype(int), z, z), TypeError, "anchor has dtype int64"),
    (lambda z: nbcnn.triplet_loss("abc", z, z), TypeError, "anchor must be an array"),
    (lambda z: nbcnn.triplet_loss_backward(np.ones(5), z, z, z), ValueError, "dloss has shape (5,)"),
    (lambda z: nbcnn.triplet_loss_backward(np.inf, z, z, z), ValueError, "dloss must be finite"),
    (lambda z: nbcnn.l2_normalize(z, epsilon=0.0), ValueError, "epsilon"),
    (lambda z: nbcnn.l2_normalize_backward(z[:2], z), ValueError, "dy has shape (2, 4) but x has shape (3, 4)"),
    (lambda z: nbcnn.pairwise_squared_distances(z, np.zeros((2, 5))), ValueError, "rows of 4 numbers"),
])
def test_bad_input_is_refused_before_any_kernel(monkeypatch, call, error, words):
    from nbcnn import backend as dispatcher

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel ran on bad input")

    monkeypatch.setattr(dispatcher, "launch", no_kernel)
    monkeypatch.setattr(dispatcher, "cpu_runners", lambda *kernels, **chosen: (no_kernel,) * len(kernels))
    with pytest.raises(error) as info:
        call(np.zeros((3, 4)))
    assert words in str(info.value)


# --------------------------------------------------------------------------- L2 normalisation


def test_l2_normalize_gives_unit_rows_and_survives_zero_rows(backend, rng):
    x = rng.standard_normal((4, 5))
    x[2] = 0.0
    y = nbcnn.l2_normalize(x)
    np.testing.assert_allclose(y[[0, 1, 3]], x[[0, 1, 3]] / np.linalg.norm(x[[0, 1, 3]], axis=1, keepdims=True),
                               rtol=1e-12)
    np.testing.assert_array_equal(y[2], 0.0)  # 0 / sqrt(epsilon), no NaN
    y3 = nbcnn.l2_normalize(rng.standard_normal((2, 3, 3, 2)).astype(np.float32))  # any leading shape
    assert y3.dtype == np.float32 and y3.shape == (2, 3, 3, 2)
    np.testing.assert_allclose(np.linalg.norm(y3, axis=-1), 1.0, rtol=1e-6)


def test_l2_normalize_backward_matches_finite_differences(backend, rng):
    x = rng.standard_normal((3, 4))
    probe = rng.standard_normal((3, 4))
    dx = nbcnn.l2_normalize_backward(probe, x)
    oracles.assert_grad_close(dx, lambda v: float(np.sum(probe * nbcnn.l2_normalize(v))), x, rtol=1e-6, atol=1e-8)
    # below epsilon the forward is x / sqrt(epsilon): a straight line
    tiny = np.full((1, 2), 1e-9)
    np.testing.assert_allclose(nbcnn.l2_normalize_backward(np.ones((1, 2)), tiny, epsilon=1e-6), 1e3, rtol=1e-12)


def test_l2_gradient_is_orthogonal_to_the_output(backend, rng):
    """Moving along the radius does not change a unit vector: dx . y == 0 for every row."""
    x, dy = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    dx, y = nbcnn.l2_normalize_backward(dy, x), nbcnn.l2_normalize(x)
    np.testing.assert_allclose((dx * y).sum(axis=1), 0.0, atol=1e-12)


# --------------------------------------------------------------------------- distances


def test_pairwise_squared_distances(backend, rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    expected = ((a[:, None] - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(nbcnn.pairwise_squared_distances(a, b), expected, rtol=1e-12)
    self_d = nbcnn.pairwise_squared_distances(a.astype(np.float32))
    assert self_d.dtype == np.float32 and np.all(np.diag(self_d) == 0)  # exactly 0: differences squared


@pytest.mark.parametrize("N, M, D, dtype", [(1, 1, 1, np.float32), (96, 96, 800, np.float32), (7, 33, 5, np.float64),
                                            (20, 3, 129, np.float32)])
def test_fast_pairwise_distances_are_the_readable_bits(rng, N, M, D, dtype):
    """The cpu distance matrix a row at a time (``fast/triplet.py``) adds each cell's terms in
    the readable kernel's order: the same bits (inf and NaN included), and near float64 numpy."""
    from nbcnn.kernels import triplet as kernels
    from nbcnn.kernels.fast import triplet as fast

    a, b = rng.standard_normal((N, D)).astype(dtype), rng.standard_normal((M, D)).astype(dtype)
    if N > 2 and D > 2:
        a[1, 2], b[2, 1] = np.inf, np.nan
    want, got = np.full((N, M), -1, dtype), np.full((N, M), -1, dtype)
    kernels.PAIRWISE_SQUARED_DISTANCES.naive_cpu(a, b, want)
    fast.pairwise_squared_distances(a, b, got)
    np.testing.assert_array_equal(got, want)
    assert kernels.PAIRWISE_SQUARED_DISTANCES.fast_cpu is fast.pairwise_squared_distances
    expected = ((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --------------------------------------------------------------------------- the layer


def test_l2normalize_layer_in_a_model_saves_and_loads(tmp_path, rng):
    model = nbcnn.Sequential([nbcnn.Flatten(), nbcnn.Dense(3), nbcnn.L2Normalize()], input_shape=(2, 2, 1), seed=1)
    x = rng.standard_normal((4, 2, 2, 1)).astype(np.float32)
    y = model(x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-6)
    model.forward(x, training=True)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape
    model.save(tmp_path / "m.nbcnn")
    again = nbcnn.load_model(tmp_path / "m.nbcnn")
    assert isinstance(again.layers[-1], nbcnn.L2Normalize)
    np.testing.assert_array_equal(again(x), y)


def test_l2normalize_layer_refuses_a_bad_epsilon():
    with pytest.raises(ValueError, match="L2Normalize epsilon"):
        nbcnn.L2Normalize(epsilon=-1.0)
