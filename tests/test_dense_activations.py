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
