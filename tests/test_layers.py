"""Every layer's backward against finite differences, on every backend (tiny shapes on the slow ones)."""

import numpy as np
import pytest

import nbcnn
import oracles
from conftest import is_slow
from nbcnn import layers as L
from nbcnn.train import _backward, loss_and_gradient


def to_float64(layer):
    for _, sub in layer.named_layers():
        for store in (sub.params, sub.state):
            for key in store:
                store[key] = store[key].astype(np.float64)
    return layer


def build(layer, input_shape, seed=0):
    layer.build(input_shape, np.random.default_rng(seed))
    L.assign_paths(layer)
    return to_float64(layer)


def check_layer_gradients(layer, x, rng, training=True, reset=None, rtol=1e-5, atol=1e-7):
    """Compare layer.backward with central differences of sum(probe * forward(x)), for x and every param.

    On the slow backends (python, the CUDA simulator) a sample of 8 elements per array is checked.
    """
    count = 8 if is_slow(nbcnn.get_backend()) else None

    def only(a):
        return None if count is None else oracles.sample_indices(a.size, count)

    def forward(v):
        if reset:
            reset()
        return np.asarray(nbcnn.to_host(layer.forward(v, training)))

    probe = rng.standard_normal(forward(x).shape)
    forward(x)
    dx = np.asarray(nbcnn.to_host(layer.backward(probe)))
    oracles.assert_grad_close(dx, lambda v: float(np.sum(probe * forward(v))), x, only(x), rtol, atol, "dx")
    for _, sub, key in list(layer.parameters()):
        analytic = sub.grads[key].copy()
        original = sub.params[key]

        def loss_of(p, sub=sub, key=key):
            sub.params[key] = p
            return float(np.sum(probe * forward(x)))

        oracles.assert_grad_close(analytic, loss_of, original, only(original), rtol, atol, f"{sub}.{key}")
        sub.params[key] = original


def x_of(rng, *shape):
    return rng.standard_normal(shape)


LAYERS = {
    "conv_same_stride2": (lambda: L.Conv2D(3, 3, strides=2, padding="same"), (5, 6, 2)),
    "conv_valid_nobias": (lambda: L.Conv2D(2, (2, 3), use_bias=False), (4, 5, 2)),
    "maxpool_overlap": (lambda: L.MaxPooling2D(3, strides=2), (5, 5, 2)),
    "avgpool_same": (lambda: L.AveragePooling2D(2, padding="same"), (5, 5, 2)),
    "global_avg": (lambda: L.GlobalAveragePooling2D(), (3, 4, 3)),
    "dense_relu": (lambda: L.Dense(3, activation="relu"), (6,)),
    "dense_softmax": (lambda: L.Dense(4, activation="softmax"), (5,)),
    "flatten": (lambda: L.Flatten(), (2, 3, 2)),
    "sigmoid": (lambda: L.Activation("sigmoid"), (3, 3, 2)),
    "tanh": (lambda: L.Activation("tanh"), (3, 3, 2)),
    "batchnorm": (lambda: L.BatchNormalization(), (3, 3, 2)),
    "residual_identity": (lambda: L.Residual([L.Conv2D(2, 3, padding="same"), L.ReLU(),
                                              L.Conv2D(2, 3, padding="same")]), (4, 4, 2)),
    "residual_projection": (lambda: L.Residual([L.Conv2D(3, 3, strides=2, padding="same")],
                                               [L.Conv2D(3, 1, strides=2), L.BatchNormalization()]), (4, 4, 2)),
    "inception": (lambda: L.Inception(2, 1, 2, 1, 1, 1), (4, 4, 2)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_backward_matches_finite_differences(backend, rng, name):
    make, shape = LAYERS[name]
    layer = build(make(), shape)
    x = x_of(rng, 2, *shape)
    if name == "maxpool_overlap":  # distinct values so nudges never change the argmax
        x = rng.permutation(x.size).reshape(x.shape) + rng.uniform(-0.1, 0.1, x.shape)
    check_layer_gradients(layer, x, rng)


def test_dropout_backward_uses_the_forward_mask(backend, rng):
    layer = build(L.Dropout(0.5, seed=3), (4, 4, 2))
    x = x_of(rng, 3, 4, 4, 2)
    check_layer_gradients(layer, x, rng, reset=lambda: setattr(layer, "rng", np.random.default_rng(3)))
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], 2 * x[kept])  # inverted dropout scales by 1 / (1 - rate)
    assert np.array_equal(layer.forward(x, training=False), x)


def test_batchnorm_inference_uses_moving_averages(rng):
    layer = build(L.BatchNormalization(momentum=0.0), (2, 2, 3))
    x = rng.standard_normal((50, 2, 2, 3)) * 3 + 5
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-7)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1, atol=1e-3)
    np.testing.assert_allclose(layer.state["moving_mean"], x.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(layer.forward(x, training=False), y, atol=1e-3)


def test_whole_network_gradient_check(backend, rng):
    model = nbcnn.Sequential([L.Conv2D(2, 3, padding="same"), L.ReLU(), L.MaxPooling2D(2), L.Flatten(),
                              L.Dense(3, activation="softmax")], input_shape=(4, 4, 1), seed=1)
    to_float64(model.network)
    x = rng.standard_normal((3, 4, 4, 1))
    y = np.array([0, 2, 1])

    def loss(v=None):
        return loss_and_gradient(model, model.forward(x if v is None else v, training=True), y)[0]

    count = 6 if is_slow(backend) else None
    _, d_logits = loss_and_gradient(model, model.forward(x, training=True), y)
    dx = _backward(model, d_logits)
    only = (lambda a: None) if count is None else (lambda a: oracles.sample_indices(a.size, count))
    oracles.assert_grad_close(dx, loss, x, only(x), 1e-5, 1e-8, "dx")
    for _, layer, key in list(model.network.parameters()):
        analytic, original = layer.grads[key].copy(), layer.params[key]

        def loss_of(p, layer=layer, key=key):
            layer.params[key] = p
            return loss()

        oracles.assert_grad_close(analytic, loss_of, original, only(original), 1e-5, 1e-8, key)
        layer.params[key] = original


def test_frozen_layers_keep_their_weights_but_pass_gradients(rng):
    model = nbcnn.Sequential([L.Conv2D(2, 3), L.ReLU(), L.Flatten(), L.Dense(2, activation="softmax")],
                             input_shape=(5, 5, 1))
    model.compile(nbcnn.optim.SGD(0.1))
    model.freeze(upto=1)
    before = model.layers[0].params["W"].copy()
    dense_before = model.layers[-1].params["W"].copy()
    with nbcnn.use_backend("cpu"):
        model.train_on_batch(rng.standard_normal((4, 5, 5, 1)), np.array([0, 1, 0, 1]))
    assert np.array_equal(model.layers[0].params["W"], before)
    assert not np.array_equal(model.layers[-1].params["W"], dense_before)
    assert model.count_params(trainable_only=True) == model.count_params() - model.layers[0].count_params()


def test_residual_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="pass a projection shortcut"):
        build(L.Residual([L.Conv2D(4, 3, padding="same")]), (4, 4, 2))


def test_inception_concatenates_branch_channels():
    layer = build(L.Inception(4, 2, 6, 1, 3, 5), (8, 8, 7))
    assert layer.output_shape == (8, 8, 4 + 6 + 3 + 5)
