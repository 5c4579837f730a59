"""The Gram matrix of a layer's activations, forward and backward (one source, three backends).

Style transfer measures "style" by which channels of a layer fire together. With the layer's
activations ``a (N, H, W, C)`` read as ``A (N, P, C)``, ``P = H * W`` positions (channels-last:
a reshape, no copy), the Gram matrix of image n is::

    G[n, i, j] = sum over p of A[n, p, i] * A[n, p, j]          (C x C, symmetric)

The course writes the same numbers channels-first: ``A (n_C, n_H * n_W)``, ``G = A A^T``.

Backward, given ``dG = dJ/dG``: ``G[i, j]`` reads ``A[p, i]`` and ``A[p, j]``, so::

    dA[n, p, i] = sum over j of (dG[n, i, j] + dG[n, j, i]) * A[n, p, j]

written as a gather: each cell of dA is owned by one iteration (one GPU thread), nothing is
added from two places.

What runs here:

    kernel          python / cpu (NBCNN_FAST=0)     cpu (default)               cuda
    GRAM            the (n, i) loop nest below      G[n] = A[n]^T A[n]          one thread per (n, i, j)
    GRAM_BACKWARD   the (n, p) loop nest below      dA[n] = A[n] (dG + dG^T)[n] one thread per (n, p, i)

    # cpu: a Gram matrix is a matrix product of P-long columns; as one (the conv's register
    #   tiles for float32, BLAS for float64) it runs ~10-30x faster than the compiled loop
    #   (which reads A[p, i] and A[p, j] one pair at a time).
    #   In ``kernels/fast/gram.py``, registered in ``kernels/fast/__init__.py``'s table.
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


# --------------------------------------------------------------------------- cells


@register_jitable
def gram_cell(A, n, i, j):
    """``G[n, i, j] = sum_p A[n, p, i] * A[n, p, j]``: how much channels i and j fire together."""
    total = A.dtype.type(0)
    for p in range(A.shape[1]):
        total += A[n, p, i] * A[n, p, j]
    return total


@register_jitable
def gram_backward_cell(dG, A, n, p, i):
    """``dA[n, p, i] = sum_j (dG[n, i, j] + dG[n, j, i]) * A[n, p, j]``"""
    total = A.dtype.type(0)
    for j in range(A.shape[2]):
        total += (dG[n, i, j] + dG[n, j, i]) * A[n, p, j]
    return total


# --------------------------------------------------------------------------- loop nests


def gram(A, G):
    """A (N, P, C) -> G (N, C, C)::

        for n in range(N):
            for i in range(C):                 # (n, i) pairs in parallel on cpu
                for j in range(C):
                    G[n, i, j] = sum_p A[n, p, i] * A[n, p, j]
    """
    C = A.shape[2]
    for t in prange(A.shape[0] * C):  # one row of one image's Gram per iteration
        n = t // C
        i = t % C
        for j in range(C):
            G[n, i, j] = gram_cell(A, n, i, j)


def gram_backward(dG, A, dA):
    """dG (N, C, C), A (N, P, C) -> dA (N, P, C)::

        for n in range(N):
            for p in range(P):                 # (n, p) pairs in parallel on cpu
                for i in range(C):
                    dA[n, p, i] = sum_j (dG[n, i, j] + dG[n, j, i]) * A[n, p, j]
    """
    P = A.shape[1]
    for t in prange(A.shape[0] * P):  # one position of one image per iteration
        n = t // P
        p = t % P
        for i in range(A.shape[2]):
            dA[n, p, i] = gram_backward_cell(dG, A, n, p, i)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """The readable ``@cuda.jit`` forms: one thread per output cell, each calling the cell above."""
    @cuda.jit
    def gram_k(A, G):
        t = cuda.grid(1)
        C = A.shape[2]
        if t < A.shape[0] * C * C:
            n = t // (C * C)
            i = (t // C) % C
            j = t % C
            G[n, i, j] = gram_cell(A, n, i, j)

    @cuda.jit
    def gram_backward_k(dG, A, dA):
        t = cuda.grid(1)
        P, C = A.shape[1], A.shape[2]
        if t < A.shape[0] * P * C:
            n = t // (P * C)
            p = (t // C) % P
            i = t % C
            dA[n, p, i] = gram_backward_cell(dG, A, n, p, i)

    return {"gram": gram_k, "gram_backward": gram_backward_k}


GRAM = Kernel("gram", gram, cuda=lambda: _cuda_kernels()["gram"])
GRAM_BACKWARD = Kernel("gram_backward", gram_backward, cuda=lambda: _cuda_kernels()["gram_backward"])
