"""Faces: the triplet loss, L2 normalisation and pairwise distances, one source for three backends.

Week 4 of the course. An encoder ``f`` maps an image to a vector (an *embedding*); two images
show the same person when their embeddings are close::

    d(x1, x2) = ||f(x1) - f(x2)||^2 = sum_k (f(x1)[k] - f(x2)[k])^2

The triplet loss of an anchor A, a positive P (same person) and a negative N (another person)
asks the positive to be closer than the negative by a margin alpha::

    L(A, P, N) = max(||f(A) - f(P)||^2 - ||f(A) - f(N)||^2 + alpha, 0)

    for i in range(B):                              # one triplet per row: rows in parallel
        basic = d(A[i], P[i]) - d(A[i], N[i]) + alpha
        loss[i] = max(basic, 0)

and its gradient (only where ``basic > 0``: a triplet already satisfied teaches nothing; at
exactly 0 the gradient is taken as 0, the subgradient nbcnn's ReLU uses)::

    dA[i] = 2 g (N[i] - P[i])       dP[i] = 2 g (P[i] - A[i])       dN[i] = 2 g (A[i] - N[i])
    with g = dloss[i] if basic > 0 else 0

The encoder ends in an L2 normalisation, so every embedding lies on the unit sphere and
distances run from 0 to 4 (the margin then means the same thing throughout training)::

    y[i] = x[i] / sqrt(max(sum_k x[i, k]^2, epsilon))
    dx[i] = (dy[i] - x[i] * <dy[i], x[i]> / |x[i]|^2) / |x[i]|         (dy[i] / sqrt(epsilon) below epsilon)

Every kernel is a gather: each row (or each cell of the distance matrix) is owned by one
iteration (one GPU thread), so ``prange`` never writes one cell from two iterations.

What runs here: these loops on every backend (compiled on cpu and cuda), except the distance
matrix on cpu: ``fast/triplet.py`` sums a row of it at once (the same bits; each cell's serial
sum over 800 numbers took 4 ms of the digit encoder's 40 ms training step). The loss and
normalisation rows are short beside the encoder's convolutions.
"""

import math

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


# --------------------------------------------------------------------------- cells


@register_jitable
def squared_distance(a, i, b, j):
    """``||a[i] - b[j]||^2``, summed in the arrays' dtype (an explicit zero of that dtype)."""
    total = a.dtype.type(0)
    for k in range(a.shape[1]):
        d = a[i, k] - b[j, k]
        total += d * d
    return total


@register_jitable
def triplet_basic(anchor, positive, negative, alpha, i):
    """``d(A[i], P[i]) - d(A[i], N[i]) + alpha``: the triplet's loss before the max with 0."""
    return squared_distance(anchor, i, positive, i) - squared_distance(anchor, i, negative, i) + alpha


@register_jitable
def triplet_loss_cell(anchor, positive, negative, alpha, i):
    # "< 0", not "> 0": a NaN is neither and must come out as NaN, not be hidden as 0
    basic = triplet_basic(anchor, positive, negative, alpha, i)
    return anchor.dtype.type(0) if basic < 0 else basic


@register_jitable
def triplet_loss_backward_row(dloss, anchor, positive, negative, alpha, i, out):
    """Row i of the three gradients: ``out[0, i] = dA[i]``, ``out[1, i] = dP[i]``, ``out[2, i] = dN[i]``."""
    zero = anchor.dtype.type(0)
    g = dloss[i] if triplet_basic(anchor, positive, negative, alpha, i) > 0 else zero
    two_g = (g + g)
    for k in range(anchor.shape[1]):
        a, p, n = anchor[i, k], positive[i, k], negative[i, k]
        out[0, i, k] = two_g * (n - p)
        out[1, i, k] = two_g * (p - a)
        out[2, i, k] = two_g * (a - n)


@register_jitable
def l2_normalize_row(x, i, epsilon, y):
    """``y[i] = x[i] / sqrt(max(|x[i]|^2, epsilon))`` (Keras' ``l2_normalize``)."""
    total = x.dtype.type(0)
    for k in range(x.shape[1]):
        total += x[i, k] * x[i, k]
    inv = x.dtype.type(1) / math.sqrt(max(total, epsilon))
    for k in range(x.shape[1]):
        y[i, k] = x[i, k] * inv


@register_jitable
def l2_normalize_backward_row(dy, x, i, epsilon, dx):
    """``dx[i] = (dy[i] - x[i] <dy[i], x[i]> / |x[i]|^2) / |x[i]|``: the part of dy along x[i]
    is removed (moving along the radius does not change a unit vector). Below epsilon the
    forward is the straight line ``x / sqrt(epsilon)``, so ``dx = dy / sqrt(epsilon)``."""
    total = x.dtype.type(0)
    dot = x.dtype.type(0)
    for k in range(x.shape[1]):
        total += x[i, k] * x[i, k]
        dot += dy[i, k] * x[i, k]
    if total > epsilon:
        inv = x.dtype.type(1) / math.sqrt(total)
        along = dot / total
        for k in range(x.shape[1]):
            dx[i, k] = (dy[i, k] - x[i, k] * along) * inv
    else:
        inv = x.dtype.type(1) / math.sqrt(epsilon)
        for k in range(x.shape[1]):
            dx[i, k] = dy[i, k] * inv


# --------------------------------------------------------------------------- loop nests


def triplet_loss(anchor, positive, negative, alpha, out):
    """anchor, positive, negative (B, D), alpha (their dtype) -> out (B,), one loss per triplet::

        for i in range(B):
            out[i] = max(||A[i] - P[i]||^2 - ||A[i] - N[i]||^2 + alpha, 0)
    """
    for i in prange(out.shape[0]):
        out[i] = triplet_loss_cell(anchor, positive, negative, alpha, i)


def triplet_loss_backward(dloss, anchor, positive, negative, alpha, out):
    """dloss (B,) (the upstream gradient of each triplet's loss), the forward's inputs ->
    out (3, B, D) = (dA, dP, dN); each row of the three owned by one iteration."""
    for i in prange(anchor.shape[0]):
        triplet_loss_backward_row(dloss, anchor, positive, negative, alpha, i, out)


def l2_normalize(x, epsilon, y):
    """x (N, D) -> y (N, D), every row scaled to length 1 (rows shorter than sqrt(epsilon): by 1/sqrt(epsilon))."""
    for i in prange(y.shape[0]):
        l2_normalize_row(x, i, epsilon, y)


def l2_normalize_backward(dy, x, epsilon, dx):
    for i in prange(dx.shape[0]):
        l2_normalize_backward_row(dy, x, i, epsilon, dx)


def pairwise_squared_distances(a, b, out):
    """a (N, D), b (M, D) -> out (N, M), ``out[i, j] = ||a[i] - b[j]||^2``::

        for i in range(N):                 # in parallel on cpu, one GPU thread per (i, j)
            for j in range(M):
                out[i, j] = sum_k (a[i, k] - b[j, k])^2

    The differences are squared directly (not ``|a|^2 + |b|^2 - 2 a.b``, which can come out
    slightly negative, or not exactly 0 for an image and itself)."""
    for i in prange(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = squared_distance(a, i, b, j)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per triplet / row (per cell for the distance matrix), calling the cells above."""
    @cuda.jit
    def triplet_loss_k(anchor, positive, negative, alpha, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = triplet_loss_cell(anchor, positive, negative, alpha, i)

    @cuda.jit
    def triplet_loss_backward_k(dloss, anchor, positive, negative, alpha, out):
        i = cuda.grid(1)
        if i < anchor.shape[0]:
            triplet_loss_backward_row(dloss, anchor, positive, negative, alpha, i, out)

    @cuda.jit
    def l2_normalize_k(x, epsilon, y):
        i = cuda.grid(1)
        if i < y.shape[0]:
            l2_normalize_row(x, i, epsilon, y)

    @cuda.jit
    def l2_normalize_backward_k(dy, x, epsilon, dx):
        i = cuda.grid(1)
        if i < dx.shape[0]:
            l2_normalize_backward_row(dy, x, i, epsilon, dx)

    @cuda.jit
    def pairwise_squared_distances_k(a, b, out):
        t = cuda.grid(1)
        if t < out.size:
            i = t // out.shape[1]
            j = t % out.shape[1]
            out[i, j] = squared_distance(a, i, b, j)

    return {"triplet_loss": triplet_loss_k, "triplet_loss_backward": triplet_loss_backward_k,
            "l2_normalize": l2_normalize_k, "l2_normalize_backward": l2_normalize_backward_k,
            "pairwise_squared_distances": pairwise_squared_distances_k}


def _rows(out):
    """One unit of work per row of the output (per triplet: the backward's out is (3, B, D))."""
    return out.shape[1] if out.ndim == 3 else out.shape[0]


def _kernel(source, work=None):
    name = source.__name__
    return Kernel(name, source, cuda=lambda: _cuda_kernels()[name], work=work)


TRIPLET_LOSS = _kernel(triplet_loss, work=_rows)
TRIPLET_LOSS_BACKWARD = _kernel(triplet_loss_backward, work=_rows)
L2_NORMALIZE = _kernel(l2_normalize, work=_rows)
L2_NORMALIZE_BACKWARD = _kernel(l2_normalize_backward, work=_rows)
PAIRWISE_SQUARED_DISTANCES = _kernel(pairwise_squared_distances)
