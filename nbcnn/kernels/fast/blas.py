"""Matrix products through numpy's BLAS, with the BLAS thread count chosen per product.

Why: after a product, OpenBLAS's worker threads keep spinning for a while, and a Numba
``prange`` loop that runs next has to wait for them to give up a core. For the small
products of small networks one BLAS thread is faster overall: LeNet-5 training went from
about 560 to 1,170 images/s on 2 cores (``nbcnn bench --models``). Big products (VGG-sized)
still use every thread. The thread count is switched with threadpoolctl, a ~2 microsecond
ctypes call; without threadpoolctl (or with a BLAS it does not know) products run as numpy
would run them.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ...config import BLAS_SMALL_PRODUCT_FLOPS


@functools.cache
def _blas_controllers():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    return tuple(lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas")


@contextlib.contextmanager
def single_threaded():
    """BLAS products inside run on one thread (callers may run several at once themselves)."""
    saved = [(lc, lc.num_threads) for lc in _blas_controllers()]
    for lc, _ in saved:
        lc.set_num_threads(1)
    try:
        yield
    finally:
        for lc, threads in saved:
            lc.set_num_threads(threads)


def is_small(m: int, k: int, n: int) -> bool:
    return 2 * m * k * n < BLAS_SMALL_PRODUCT_FLOPS


def matmul(a, b, out):
    """``out[...] = a @ b`` (2-D), single-threaded BLAS when the product is small."""
    if not is_small(a.shape[0], a.shape[1], b.shape[1]) or not _blas_controllers():
        return np.matmul(a, b, out=out)
    with single_threaded():
        return np.matmul(a, b, out=out)
