"""The Gram matrix and its gradient on the cpu as matrix products (see ``kernels/gram.py``).

    G[n]  = A[n]^T @ A[n]                 (C x C, from the P x C activations of image n)
    dA[n] = A[n] @ (dG[n] + dG[n]^T)

    # buys: a Gram matrix is a matrix product of P-long columns; a product runs ~10-30x
    #   faster than the compiled loop (which reads A[p, i] and A[p, j] one pair at a time).

float32 runs on the convolution's register tiles, as 1x1 convolutions of one image whose P
pixels are A's rows: G is the dW of that convolution with dz = A (``direct.backward_filter``),
and dA its forward with the filters dG + dG^T (``direct.forward``). float64 runs on BLAS.
Why not BLAS for both: after a product, OpenBLAS's threads keep spinning, and the
convolutions around the Gram matrices in a style-transfer step then had one core
(`nbcnn bench --models`, 2 threads: 27.6 -> 15.4 ms a step, torch 13.1).
"""

import numpy as np

from ...backend import note_route
from ...checks import Window
from . import blas, direct
from .workspace import scratch

_POINTWISE = Window(1, 1, 1, 1, 0, 0)


def _on_the_tile(*arrays):
    return all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


def gram_product(A, G):
    """``G[n] = A[n]^T @ A[n]`` for each image: the loop nest above as one product each (the dW
    tile for float32, else BLAS)."""
    N, P, C = A.shape
    if _on_the_tile(A, G):
        note_route(direct.filter_grad_tile_name(C) + " (A^T A)")
        for n in range(N):
            image = A[n].reshape(1, P, 1, C)
            direct.backward_filter(image, image, _POINTWISE, G[n].reshape(1, 1, C, C), scratch)
        return
    note_route("BLAS A^T A")
    for n in range(N):
        blas.matmul(A[n].T, A[n], G[n])


def gram_backward_product(dG, A, dA):
    """``dA[n] = A[n] @ (dG[n] + dG[n]^T)``: the gather above as one product per image (the
    conv tile for float32, else BLAS)."""
    N, P, C = A.shape
    tile = _on_the_tile(dG, A, dA)
    note_route((direct.tile_name(C) + " (A (dG + dG^T))") if tile else "BLAS A (dG + dG^T)")
    no_bias = np.zeros(C, np.float32)
    for n in range(N):
        sym = np.ascontiguousarray(dG[n] + dG[n].T)
        if tile:
            direct.forward(A[n].reshape(1, P, 1, C), sym.reshape(1, 1, C, C), no_bias, _POINTWISE,
                           dA[n].reshape(1, P, 1, C), scratch)
        else:
            blas.matmul(A[n], sym, dA[n])
