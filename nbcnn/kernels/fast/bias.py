"""The bias gradient, vectorised: ``db[k] = sum over n, h, w of dz[n, h, w, k]``.

The readable kernel (``kernels/bias.py``) sums each column of ``dz`` on its own; with LeNet's
K = 6 a column is a strided walk that does not vectorise. Here runs of whole rows are added as
one contiguous vector loop in 16 fixed slices (in parallel), then the slices are folded in a
fixed order: the same bits every run, whatever the thread count.
"""

import numpy as np
from numba import njit, prange

from ...backend import note_route
from .workspace import workspace

_JIT = dict(parallel=True, cache=True, fastmath={"contract"})

BIAS_PARTS = 16
"""The bias gradient is summed in this many fixed slices of rows (not one per thread, so
the result does not depend on how many threads run it)."""


@njit(**_JIT)
def _bias_partial_sums(flat, K, group, parts):
    """Slice t of ``parts`` sums its share of the rows of ``dz`` (``flat``, K per row),
    ``group`` rows at a time: ``group * K`` contiguous numbers added as one vectorised run
    (with K = 6, a row alone is too short a loop to vectorise). ``parts[t, g * K + k]`` then
    holds the sum over rows ``g (mod group)`` of the slice; the last slice also takes the
    leftover rows. Each iteration owns one row of ``parts``."""
    R = flat.size // K
    P = parts.shape[0]
    L = group * K
    G = R // group
    for t in prange(P):
        acc = parts[t]
        acc[:] = 0
        for g in range(t * G // P, (t + 1) * G // P):
            run = flat[g * L:(g + 1) * L]
            for e in range(L):
                acc[e] += run[e]
        if t == P - 1:
            for r in range(G * group, R):
                for k in range(K):
                    acc[k] += flat[r * K + k]


def bias_backward(dz, db):
    """``db[k] = sum over rows r of dz[r, k]``: same arguments and output as
    ``bias.bias_backward``. 16 partial sums in parallel, then added in a fixed order."""
    note_route("16 row slices")
    K = db.shape[0]
    group = max(1, 64 // K)  # rows per vectorised run: at least 64 numbers
    parts = workspace("bias_parts", BIAS_PARTS * group * K, dz.dtype).reshape(BIAS_PARTS, group * K)
    _bias_partial_sums(np.ascontiguousarray(dz).reshape(-1), K, group, parts)
    _fold_rows(parts.reshape(BIAS_PARTS * group, K), db)


@njit(cache=True)
def _fold_rows(rows, out):
    """``out = rows[0] + rows[1] + ...`` in that order (the same bits every run)."""
    for k in range(out.shape[0]):
        out[k] = rows[0, k]
    for t in range(1, rows.shape[0]):
        for k in range(out.shape[0]):
            out[k] += rows[t, k]
