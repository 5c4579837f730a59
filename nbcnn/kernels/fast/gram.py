"""The Gram matrix and its gradient on the cpu as BLAS products (see ``kernels/gram.py``).

    G[n]  = A[n]^T @ A[n]                 (C x C, from the P x C activations of image n)
    dA[n] = A[n] @ (dG[n] + dG[n]^T)

    # buys: a Gram matrix is a matrix product of P-long columns; OpenBLAS runs it ~10-30x
    #   faster than the compiled loop (which reads A[p, i] and A[p, j] one pair at a time).
"""

import numpy as np

from ...backend import note_route
from . import blas


def gram_blas(A, G):
    """``G[n] = A[n]^T @ A[n]`` for each image: the loop nest above as one BLAS product each."""
    note_route("BLAS A^T A")
    for n in range(A.shape[0]):
        blas.matmul(A[n].T, A[n], G[n])


def gram_backward_blas(dG, A, dA):
    """``dA[n] = A[n] @ (dG[n] + dG[n]^T)``: the gather above as one BLAS product per image."""
    note_route("BLAS A (dG + dG^T)")
    for n in range(A.shape[0]):
        sym = np.ascontiguousarray(dG[n] + dG[n].T)
        blas.matmul(A[n], sym, dA[n])
