"""Dense layer and activations, forward and backward, on every backend."""

import numpy as np
import pytest

import nbcnn
import oracles


def test_dense_matches_numpy(backend, rng):
    x, W, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(nbcnn.dense(x, W, b), x @ W + b, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal((5, 3))
    dx, dW, db = nbcnn.dense_backward(dy, x, W)
    np.testing.assert_allclose(dx, dy @ W.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, x.T @ dy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_dense_backward_matches_finite_differences(backend, rng):
    x, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    probe = rng.standard_normal((3, 2))
    dx, dW, db = nbcnn.dense_backward(probe, x, W)

    def loss(x_, W_, b_):
        return float(np.sum(probe * nbcnn.dense(x_, W_, b_)))

    np.testing.assert_allclose(dx, oracles.numeric_grad(lambda v: loss(v, W, b), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dW, oracles.numeric_grad(lambda v: loss(x, v, b), W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, oracles.numeric_grad(lambda v: loss(x, W, v), b), rtol=1e-6, atol=1e-8)


def test_dense_float32(backend, rng):
    x, W = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    y = nbcnn.dense(x, W, np.zeros(5, np.float32))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64) @ W, rtol=1e-5, atol=1e-5)


ACTIVATIONS = {
    "relu": (nbcnn.relu, nbcnn.relu_backward, lambda v: np.maximum(v, 0)),
    "sigmoid": (nbcnn.sigmoid, nbcnn.sigmoid_backward, lambda v: 1 / (1 + np.exp(-v))),
    "tanh": (nbcnn.tanh, nbcnn.tanh_backward, np.tanh),
    "softmax": (nbcnn.softmax, nbcnn.softmax_backward, oracles.softmax),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward_matches_numpy(backend, rng, name):
    forward, _, reference = ACTIVATIONS[name]
    x = rng.standard_normal((2, 3, 4, 5)) * 3
    np.testing.assert_allclose(forward(x), reference(x), rtol=1e-12, atol=1e-14)
    y32 = forward(x.astype(np.float32))
    assert y32.dtype == np.float32 and y32.shape == x.shape
    np.testing.assert_allclose(y32, reference(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(backend, rng, name):
    forward, backward, _ = ACTIVATIONS[name]
    x = rng.standard_normal((3, 4)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # relu's kink at 0 has no derivative
    probe = rng.standard_normal(x.shape)
    numeric = oracles.numeric_grad(lambda v: float(np.sum(probe * forward(v))), x)
    np.testing.assert_allclose(backward(probe, x), numeric, rtol=1e-6, atol=1e-8)


def test_extreme_inputs_do_not_overflow(backend):
    x = np.array([[-1000.0, 0.0, 1000.0]], np.float32)
    np.testing.assert_allclose(nbcnn.sigmoid(x), [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(nbcnn.softmax(x), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(nbcnn.tanh(x), [[-1.0, 0.0, 1.0]])


def test_relu_gradient_at_zero_is_zero(backend):
    np.testing.assert_array_equal(nbcnn.relu_backward(np.ones(3), np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])


def test_softmax_rows_sum_to_one(backend, rng):
    s = nbcnn.softmax(rng.standard_normal((6, 10)).astype(np.float32))
    np.testing.assert_allclose(s.sum(axis=-1), np.ones(6), rtol=1e-6)


# --------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import ALL_BACKENDS, is_slow  # noqa: E402


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_dense_and_activations_over_random_shapes(backend_name):
    tiny = is_slow(backend_name)
    dims = st.integers(1, 4 if tiny else 40)

    @settings(max_examples=20 if tiny else 200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(n=dims, d=dims, m=dims, seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(ACTIVATIONS)))
    def check(n, d, m, seed, name):
        r = np.random.default_rng(seed)
        x, W, b, dy = r.standard_normal((n, d)), r.standard_normal((d, m)), r.standard_normal(m), r.standard_normal((n, m))
        np.testing.assert_allclose(nbcnn.dense(x, W, b), x @ W + b, rtol=1e-10, atol=1e-10)
        for got, want in zip(nbcnn.dense_backward(dy, x, W), (dy @ W.T, x.T @ dy, dy.sum(axis=0))):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
        forward, backward, reference = ACTIVATIONS[name]
        y = forward(x)
        np.testing.assert_allclose(y, reference(x), rtol=1e-10, atol=1e-12)
        # backward against the analytic derivative written with numpy
        g = r.standard_normal(x.shape)
        if name == "relu":
            want = g * (x > 0)
        elif name == "sigmoid":
            want = g * y * (1 - y)
        elif name == "tanh":
            want = g * (1 - y * y)
        else:
            want = y * (g - (g * y).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(backward(g, x), want, rtol=1e-9, atol=1e-12)

    with nbcnn.use_backend(backend_name):
        check()
