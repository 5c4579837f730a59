"""Style transfer's costs (nbcnn.style.costs) and the Gram kernel (nbcnn/kernels/gram.py), on every backend.

Oracles: numbers worked out by hand, an einsum written here, and central finite differences
(float64) for every gradient.
"""

import numpy as np
import pytest

import nbcnn
from nbcnn import ops
from nbcnn.kernels import gram as gram_kernels
from nbcnn.style import costs
from conftest import is_slow
from oracles import assert_grad_close


def einsum_gram(a):
    A = np.asarray(a, np.float64).reshape(a.shape[0], -1, a.shape[-1])
    return np.einsum("npi,npj->nij", A, A)


# --------------------------------------------------------------------------- the Gram kernel


def test_gram_of_the_course_example(backend):
    """Two channels over two positions: A = [[1, 2], [3, 4]] (n_C x n_H*n_W) -> A A^T = [[5, 11], [11, 25]].
    Channels-last, the same activations are x[0, p, c] = A[c, p]."""
    x = np.array([[[1.0, 3.0], [2.0, 4.0]]])  # (1, P=2, C=2)
    np.testing.assert_array_equal(nbcnn.to_host(ops.gram(x)), [[[5.0, 11.0], [11.0, 25.0]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_forward_and_backward_match_einsum(backend, dtype, rng):
    shape = (2, 3, 4, 5) if is_slow(backend) else (2, 17, 9, 24)
    x = rng.standard_normal(shape).astype(dtype)
    dG = rng.standard_normal((shape[0], shape[-1], shape[-1])).astype(dtype)
    G = nbcnn.to_host(ops.gram(x))
    assert G.dtype == dtype and G.shape == (shape[0], shape[-1], shape[-1])
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(G, einsum_gram(x), **tol)
    np.testing.assert_allclose(G, np.swapaxes(G, 1, 2), **tol)  # symmetric
    dx = nbcnn.to_host(ops.gram_backward(dG, x))
    A = x.astype(np.float64).reshape(shape[0], -1, shape[-1])
    expected = np.einsum("nij,npj->npi", dG + np.swapaxes(dG, 1, 2), A).reshape(shape)
    assert dx.shape == shape and dx.dtype == dtype
    np.testing.assert_allclose(dx, expected, **tol)


def test_gram_backward_against_finite_differences(backend, rng):
    x = rng.standard_normal((1, 2, 3, 4))
    R = rng.standard_normal((1, 4, 4))  # J = <R, Gram(x)>
    analytic = nbcnn.to_host(ops.gram_backward(R, x))
    assert_grad_close(analytic, lambda v: float(np.sum(R * einsum_gram(v))), x, rtol=1e-6, atol=1e-8)


def test_the_blas_route_equals_the_readable_loop(rng, monkeypatch):
    """What the cpu backend runs by default (BLAS) against the compiled loop nest (NBCNN_FAST=0)."""
    x = rng.standard_normal((2, 33, 7, 19)).astype(np.float32)
    dG = rng.standard_normal((2, 19, 19)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        fast = nbcnn.to_host(ops.gram(x)), nbcnn.to_host(ops.gram_backward(dG, x))
        monkeypatch.setenv("NBCNN_FAST", "0")
        readable = nbcnn.to_host(ops.gram(x)), nbcnn.to_host(ops.gram_backward(dG, x))
    for f, r in zip(fast, readable):
        np.testing.assert_allclose(f, r, rtol=1e-5, atol=1e-4)
    from nbcnn.kernels.fast import gram as gram_fast

    assert gram_kernels.GRAM.fast_cpu is gram_fast.gram_product


@pytest.mark.parametrize("channels", [3, 8, 16, 24, 70, 256])
def test_float32_gram_on_the_conv_tiles(channels, rng):
    """float32 Gram matrices run as the dW and forward of a 1x1 convolution (every dW tile
    shape: 8 lanes or fewer, 16, 32 and the 64-channel one; a partial panel), against float64."""
    x = rng.standard_normal((2, 9, 7, channels)).astype(np.float32)
    dG = rng.standard_normal((2, channels, channels)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        G = nbcnn.to_host(ops.gram(x))
        dx = nbcnn.to_host(ops.gram_backward(dG, x))
    np.testing.assert_allclose(G, einsum_gram(x), rtol=1e-5, atol=1e-4)
    A = x.astype(np.float64).reshape(2, -1, channels)
    want = np.einsum("nij,npj->npi", dG + np.swapaxes(dG, 1, 2), A).reshape(x.shape)
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-4)


def test_the_readable_kernel_runs_as_plain_python():
    """The python backend runs the loop nest itself: a learner can step into it."""
    x = np.arange(6, dtype=np.float64).reshape(1, 3, 2)
    G = np.zeros((1, 2, 2))
    gram_kernels.gram(x, G)
    np.testing.assert_array_equal(G, einsum_gram(x))




def test_gram_ops_refuse_bad_shapes():
    with pytest.raises(ValueError, match="activations"):
        ops.gram(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dG has shape"):
        ops.gram_backward(np.zeros((1, 3, 3)), np.zeros((1, 2, 2, 4)))
    with pytest.raises(TypeError):
        ops.gram(np.zeros((1, 2, 2, 3), dtype=np.int64))


def test_conv2d_backward_input_equals_the_dx_of_conv2d_backward(backend, rng):
    x = rng.standard_normal((1, 5, 6, 3))
    W = rng.standard_normal((3, 3, 3, 4))
    for stride, pad in ((1, 1), (2, 0), (2, "same")):
        z = nbcnn.to_host(nbcnn.conv2d(x, W, None, stride, pad))
        dz = rng.standard_normal(z.shape)
        dx, _, _ = nbcnn.conv2d_backward(dz, x, W, stride, pad)
        np.testing.assert_allclose(nbcnn.to_host(ops.conv2d_backward_input(dz, W, x.shape, stride, pad)),
                                   nbcnn.to_host(dx), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="channel mismatch"):
        ops.conv2d_backward_input(dz, W, (1, 5, 6, 2), 2, "same")
    with pytest.raises(ValueError, match="dz has shape"):
        ops.conv2d_backward_input(dz, W, (1, 9, 9, 3), 1, 1)


# --------------------------------------------------------------------------- content cost


def test_content_cost_by_hand(backend):
    """a_C = 1 everywhere, a_G = 0: sum of squares 2*2*3 = 12, over 4 * 2 * 2 * 3 = 48 -> 0.25;
    the gradient (a_G - a_C) / (2 * 12) = -1/24 everywhere."""
    a_C, a_G = np.ones((1, 2, 2, 3)), np.zeros((1, 2, 2, 3))
    assert costs.content_cost(a_C, a_G) == 0.25
    J, grad = costs.content_cost(a_C, a_G, with_grad=True)
    assert J == 0.25
    np.testing.assert_allclose(grad, np.full((1, 2, 2, 3), -1 / 24))
    assert costs.content_cost(a_C, a_C) == 0.0


def test_content_cost_gradient_against_finite_differences(backend, rng):
    a_C, a_G = rng.standard_normal((1, 3, 2, 4)), rng.standard_normal((1, 3, 2, 4))
    _, grad = costs.content_cost(a_C, a_G, with_grad=True)
    assert_grad_close(grad, lambda v: costs.content_cost(a_C, v), a_G, rtol=1e-6, atol=1e-9)


def test_content_cost_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        costs.content_cost(np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="n_H, n_W, n_C"):
        costs.content_cost(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))


# --------------------------------------------------------------------------- style cost


def test_layer_style_cost_by_hand(backend):
    """One channel, two positions: Gram(S) = 1^2 + 1^2 = 2, Gram(G) = 2^2 + 0^2 = 4;
    J = (2 - 4)^2 / (4 * 1^2 * 2^2) = 0.25."""
    a_S = np.array([1.0, 1.0]).reshape(1, 1, 2, 1)
    a_G = np.array([2.0, 0.0]).reshape(1, 1, 2, 1)
    assert costs.layer_style_cost(a_S, a_G) == pytest.approx(0.25, rel=1e-12)
    # dJ/dG = (4 - 2) / (2 * 1 * 4) = 0.25, then dJ/da[p] = 2 * 0.25 * a[p] = (1, 0)
    J, grad = costs.layer_style_cost(a_S, a_G, with_grad=True)
    np.testing.assert_allclose(grad.reshape(-1), [1.0, 0.0], rtol=1e-12)


def test_style_cost_is_zero_for_the_style_itself_and_positive_otherwise(backend, rng):
    a_S = rng.random((1, 3, 3, 4))
    assert costs.layer_style_cost(a_S, a_S) == 0.0
    J, grad = costs.layer_style_cost(a_S, a_S, with_grad=True)
    assert J == 0.0 and not grad.any()
    assert costs.layer_style_cost(a_S, a_S + 0.1 * rng.standard_normal(a_S.shape)) > 0
    # the Gram matrix forgets where things are: the same activations, positions shuffled, cost nothing
    shuffled = a_S.reshape(1, 9, 4)[:, rng.permutation(9)].reshape(a_S.shape)
    assert costs.layer_style_cost(a_S, shuffled) == pytest.approx(0.0, abs=1e-12)


def test_layer_style_cost_gradient_against_finite_differences(backend, rng):
    a_S, a_G = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    _, grad = costs.layer_style_cost(a_S, a_G, with_grad=True)
    assert_grad_close(grad, lambda v: costs.layer_style_cost(a_S, v), a_G, rtol=1e-6, atol=1e-9)
    # a precomputed Gram of the style gives the same
    G_S = costs.gram_matrix(a_S)
    assert costs.layer_style_cost(None, a_G, gram_S=G_S) == pytest.approx(costs.layer_style_cost(a_S, a_G),
                                                                           rel=1e-12)


def test_style_cost_compares_layers_of_different_sizes(rng):
    """Gram matrices are n_C x n_C whatever the image size: a small style image can style a big one."""
    a_S, a_G = rng.random((1, 2, 2, 3)), rng.random((1, 4, 5, 3))
    assert costs.layer_style_cost(a_S, a_G) > 0


# --------------------------------------------------------------------------- total variation, total cost


def test_total_variation_by_hand(backend):
    """A 2 x 2 grey image [[0, 1], [0, 1]]: two horizontal steps of 1, no vertical ones -> 2 / 4."""
    x = np.array([[0.0, 1.0], [0.0, 1.0]]).reshape(2, 2, 1)
    assert costs.total_variation(x) == 0.5
    assert costs.total_variation(np.full((3, 4, 3), 0.7)) == 0.0


def test_total_variation_gradient_against_finite_differences(backend, rng):
    x = rng.random((1, 4, 3, 2))
    _, grad = costs.total_variation(x, with_grad=True)
    assert_grad_close(grad, lambda v: costs.total_variation(v), x, rtol=1e-6, atol=1e-9)


def test_total_cost_is_the_weighted_sum():
    assert costs.total_cost(0.2, 0.8) == pytest.approx(10 * 0.2 + 40 * 0.8)
    assert costs.total_cost(1.0, 2.0, alpha=1, beta=2, J_tv=3.0, gamma=4) == 1 + 4 + 12
