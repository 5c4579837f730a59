"""Conv2D + ReLU as one kernel (``ops.conv2d(..., activation="relu")``, the ``Chain``
fusion): the same numbers as the two ops, on every backend and route, and the same model
outputs and gradients with ``NBCNN_FUSE`` on and off."""

import re

import numpy as np
import pytest

import nbcnn
from nbcnn import layers as L
from nbcnn.backend import to_host
from nbcnn.model import Model


def unfused(x, W, b, stride, pad):
    return nbcnn.relu(nbcnn.conv2d(x, W, b, stride, pad))


@pytest.mark.parametrize("N, H, C, K, f, stride, pad, dtype", [
    (2, 9, 3, 6, 3, 1, 1, np.float32),      # the narrow tile
    (2, 10, 16, 40, 3, 1, 1, np.float32),   # the direct 8 x 32 tile, a part-empty panel
    (1, 10, 32, 64, 3, 1, 1, np.float32),   # Winograd (ReLU after its output transform)
    (2, 9, 16, 3, 3, 1, 1, np.float32),     # the dot tile
    (2, 9, 5, 7, 3, 2, 2, np.float32),      # strided, padded
    (1, 6, 3, 4, 3, 1, 1, np.float64),      # im2col + BLAS, then ReLU
])
def test_cpu_gives_the_bits_of_conv_then_relu(N, H, C, K, f, stride, pad, dtype, rng):
    x = rng.standard_normal((N, H, H, C)).astype(dtype)
    W = rng.standard_normal((f, f, C, K)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    with nbcnn.use_backend("cpu"):
        got = nbcnn.conv2d(x, W, b, stride, pad, activation="relu")
        want = unfused(x, W, b, stride, pad)
    assert (got >= 0).all() and (got == 0).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["python", "cuda"])
def test_the_other_backends_agree(backend, rng):
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    W = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    with nbcnn.use_backend(backend):
        got = to_host(nbcnn.conv2d(x, W, None, 1, 1, activation="relu"))
    with nbcnn.use_backend("cpu"):
        want = unfused(x, W, None, 1, 1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_nan_stays_nan_and_minus_zero_stays(rng):
    """ReLU's rule (``relu_cell``): 0 if below 0, else the number, so a NaN passes."""
    x = rng.standard_normal((1, 6, 6, 16)).astype(np.float32)
    x[0, 2, 2, 0] = np.nan
    W = rng.standard_normal((3, 3, 16, 8)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        got = nbcnn.conv2d(x, W, None, 1, 1, activation="relu")
        want = unfused(x, W, None, 1, 1)
    assert np.isnan(got).any()
    np.testing.assert_array_equal(got, want)  # NaNs in the same places (assert_array_equal matches NaN to NaN)


def test_activation_must_be_relu_or_none():
    x = np.zeros((1, 4, 4, 1), np.float32)
    W = np.zeros((3, 3, 1, 2), np.float32)
    with pytest.raises(ValueError, match="activation"):
        nbcnn.conv2d(x, W, activation="tanh")


def _fused_and_not(monkeypatch, capfd, build, x, dy_of):
    """With NBCNN_FUSE on and off: a fresh ``build()``'s training forward and backward on cpu.
    Returns ``{fuse: (y, dx, gradients, forward launches, backward launches)}``, a launch as
    (kernel name, output shape) from NBCNN_DEBUG's lines."""
    def launches():
        lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("[nbcnn]")]
        return [(line.split()[2], re.search(r"out=(\([^)]*\))", line).group(1)) for line in lines]

    results = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("NBCNN_FUSE", fuse)
        model = build()
        with nbcnn.use_backend("cpu"):
            monkeypatch.setenv("NBCNN_DEBUG", "1")
            capfd.readouterr()
            y = model.network.forward(x, training=True)
            forward = launches()
            dx = model.network.backward(dy_of(y))
            backward = launches()
            monkeypatch.setenv("NBCNN_DEBUG", "0")
        grads = [g.copy() for layer in model.network.layers for g in layer.grads.values()]
        results[fuse] = (y, dx, grads, forward, backward)
    fused, plain = results["1"], results["0"]
    np.testing.assert_array_equal(fused[0], plain[0])
    np.testing.assert_array_equal(fused[1], plain[1])
    assert len(fused[2]) == len(plain[2])
    for a, b in zip(fused[2], plain[2]):
        np.testing.assert_array_equal(a, b)
    return results


def test_a_model_trains_the_same_fused_or_not(monkeypatch, capfd, rng):
    """The Chain fuses each Conv2D + Activation("relu") pair: the forward launches no
    separate relu, and the outputs and gradients match NBCNN_FUSE=0's bit for bit."""
    def build():
        return Model([L.Conv2D(6, 3, padding="same"), L.Activation("relu"), L.MaxPooling2D(2),
                      L.Conv2D(8, 3), L.Activation("relu"), L.Flatten(), L.Dense(3)],
                     input_shape=(8, 8, 2), seed=1)
    x = rng.standard_normal((4, 8, 8, 2)).astype(np.float32)
    results = _fused_and_not(monkeypatch, capfd, build, x, np.ones_like)
    kernels = {fuse: [name for name, _ in result[3]] for fuse, result in results.items()}
    assert kernels["0"].count("relu") == 2 and "conv2d_forward_relu" not in kernels["0"]
    assert "relu" not in kernels["1"] and kernels["1"].count("conv2d_forward_relu") == 2, kernels["1"]


@pytest.mark.parametrize("pool", [dict(pool_size=2), dict(pool_size=3, strides=2), dict(pool_size=3, strides=2, padding="same")])
def test_relu_then_max_pool_backward_masks_the_pooled_gradient(pool, monkeypatch, capfd, rng):
    """ReLU then max pooling, differentiated as one: the mask taken on the pooled output (each
    window's max is the ReLU's output at its argmax), so relu_backward runs on the pooled
    size. Overlapping windows (3, stride 2) and padding give the same bits as one by one."""
    def build():
        return Model([L.Conv2D(5, 3, padding="same"), L.Activation("relu"), L.MaxPooling2D(**pool), L.Flatten(),
                      L.Dense(2)], input_shape=(9, 9, 2), seed=3)
    x = rng.standard_normal((3, 9, 9, 2)).astype(np.float32)
    results = _fused_and_not(monkeypatch, capfd, build, x,
                             lambda y: np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape))
    relu_sizes = {fuse: [shape for name, shape in result[4] if name == "relu_backward"]
                  for fuse, result in results.items()}
    pooled = build().network.layers[2].output_shape
    assert relu_sizes["1"] == [f"({3 * int(np.prod(pooled))},)"], relu_sizes["1"]  # the pooled size
    assert relu_sizes["0"] == [f"({3 * 9 * 9 * 5},)"], relu_sizes["0"]  # the conv output's size
