"""The cost function of neural style transfer (Gatys, Ecker and Bethge, 2015), each term with its gradient.

Notation of the course: ``a`` are a layer's activations, ``(N, n_H, n_W, n_C)`` (NHWC, N = 1 in
the notebook), C the content image, S the style image, G the generated image::

    J_content(C, G) = 1 / (4 n_H n_W n_C) * sum (a(C) - a(G))^2

    Gram(a)[i, j]   = sum over positions p of a[p, i] * a[p, j]            (n_C x n_C)
    J_style^l(S, G) = 1 / (4 n_C^2 (n_H n_W)^2) * sum (Gram(a(S)) - Gram(a(G)))^2
    J_style(S, G)   = sum over layers l of lambda_l * J_style^l(S, G)

    J_tv(G)         = 1 / (H W C) * sum (G[h+1, w] - G[h, w])^2 + (G[h, w+1] - G[h, w])^2   (smoothness)

    J(G) = alpha * J_content + beta * J_style (+ gamma * J_tv)

Every cost takes ``with_grad=True`` to return ``(J, dJ/da_G)`` instead of ``J``: the gradient
sits next to the cost it differentiates (as in micrograd). The Gram matrix and its gradient
run on the dispatcher's kernel (``nbcnn.gram``, ``nbcnn/kernels/gram.py``), so on the current
backend; the sums of squares are numpy, summed in float64. A batch of N images counts as the
sum of each image's cost.

The gradients, for the record (they are what ``tests/test_style_costs.py`` checks against
finite differences)::

    dJ_content / da(G) = (a(G) - a(C)) / (2 n_H n_W n_C)
    dJ_style^l / dGram(G) = (Gram(G) - Gram(S)) / (2 n_C^2 (n_H n_W)^2), then through the Gram:
        da[p, i] = sum_j (dGram[i, j] + dGram[j, i]) * a[p, j]
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..backend import is_device_array, to_host


def _host(a, name):
    if is_device_array(a):
        a = to_host(a)
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def _activations(a, name):
    arr = _host(a, name)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be a layer's activations (N, n_H, n_W, n_C), got shape {arr.shape}")
    return arr


def content_cost(a_C, a_G, with_grad: bool = False):
    """``J_content = 1 / (4 n_H n_W n_C) * sum (a_C - a_G)^2`` for activations (N, n_H, n_W, n_C).

    With ``with_grad``: ``(J, dJ/da_G)``, the gradient ``(a_G - a_C) / (2 n_H n_W n_C)`` shaped
    like a_G.
    """
    a_C, a_G = _activations(a_C, "a_C"), _activations(a_G, "a_G")
    if a_C.shape != a_G.shape:
        raise ValueError(f"a_C has shape {a_C.shape} but a_G has shape {a_G.shape}: the content and the generated "
                         f"image must give activations of one shape (same image size, same layer)")
    _, n_H, n_W, n_C = a_G.shape
    diff = a_G - a_C
    J = float(np.sum(np.square(diff, dtype=np.float64))) / (4.0 * n_H * n_W * n_C)
    if not with_grad:
        return J
    return J, (diff / a_G.dtype.type(2.0 * n_H * n_W * n_C)).astype(a_G.dtype, copy=False)


def gram_matrix(a):
    """The Gram matrices of activations (N, n_H, n_W, n_C) -> (N, n_C, n_C), on the dispatcher's kernel."""
    return to_host(ops.gram(a))


def gram_style_cost(G_S, G_G, positions: int, with_grad: bool = False):
    """``1 / (4 n_C^2 P^2) * sum (G_S - G_G)^2`` for Gram matrices (N, n_C, n_C) of layers with
    ``positions = n_H * n_W`` cells; with ``with_grad``, ``(J, dJ/dG_G)``."""
    G_S, G_G = _host(G_S, "G_S"), _host(G_G, "G_G")
    if G_S.shape != G_G.shape or G_G.ndim != 3 or G_G.shape[1] != G_G.shape[2]:
        raise ValueError(f"Gram matrices must both be (N, n_C, n_C), got {G_S.shape} and {G_G.shape}")
    n_C = G_G.shape[-1]
    norm = 4.0 * n_C ** 2 * float(positions) ** 2
    diff = G_G - G_S
    J = float(np.sum(np.square(diff, dtype=np.float64))) / norm
    if not with_grad:
        return J
    return J, (diff * G_G.dtype.type(2.0 / norm)).astype(G_G.dtype, copy=False)


def layer_style_cost(a_S, a_G, with_grad: bool = False, gram_S=None):
    """``J_style^l = 1 / (4 n_C^2 (n_H n_W)^2) * sum (Gram(a_S) - Gram(a_G))^2``.

    ``a_S``, ``a_G``: activations (N, n_H, n_W, n_C) of the style and the generated image at
    one layer (they may differ in n_H, n_W: the normalisation uses a_G's). ``gram_S``: the
    style's Gram matrix if already computed (``a_S`` is then not read). With ``with_grad``:
    ``(J, dJ/da_G)``.
    """
    a_G = _activations(a_G, "a_G")
    if gram_S is None:
        gram_S = gram_matrix(_activations(a_S, "a_S"))
    G_G = gram_matrix(a_G)
    _, n_H, n_W, _ = a_G.shape
    out = gram_style_cost(gram_S, G_G, n_H * n_W, with_grad)
    if not with_grad:
        return out
    J, dG = out
    return J, to_host(ops.gram_backward(dG, a_G))


def total_variation(image, with_grad: bool = False):
    """``J_tv = 1 / (H W C) * sum (x[h+1, w] - x[h, w])^2 + (x[h, w+1] - x[h, w])^2`` over images
    (N, H, W, C) or one (H, W, C): how far neighbouring pixels differ (a smoothness prior that
    removes the high-frequency noise pixel optimisation leaves). With ``with_grad``: ``(J, dJ/dx)``."""
    x = _host(image, "image")
    if x.ndim not in (3, 4):
        raise ValueError(f"image must be (H, W, C) or (N, H, W, C), got shape {x.shape}")
    H, W, C = x.shape[-3:]
    norm = float(H * W * C)
    dh = np.diff(x, axis=-3)  # x[h+1] - x[h]
    dw = np.diff(x, axis=-2)
    J = float(np.sum(np.square(dh, dtype=np.float64)) + np.sum(np.square(dw, dtype=np.float64))) / norm
    if not with_grad:
        return J
    g = np.zeros_like(x)
    two = x.dtype.type(2.0 / norm)
    g[..., 1:, :, :] += two * dh
    g[..., :-1, :, :] -= two * dh
    g[..., :, 1:, :] += two * dw
    g[..., :, :-1, :] -= two * dw
    return J, g


def total_cost(J_content, J_style, alpha: float = 10, beta: float = 40, J_tv: float = 0.0, gamma: float = 0.0):
    """``J = alpha * J_content + beta * J_style + gamma * J_tv`` (the course's alpha = 10, beta = 40)."""
    return alpha * J_content + beta * J_style + gamma * J_tv
