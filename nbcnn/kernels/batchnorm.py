"""Batch norm at inference, as darknet computes it, element by element (one source, three backends).

The op layer hands this kernel ``x`` as rows of C channels, ``(rows, C)``, with the frozen
per-channel statistics and parameters::

    x_hat[r, k] = (x[r, k] - mean[k]) / denominator[k]      denominator = sqrt(var) + epsilon
    y[r, k]     = x_hat[r, k] * gamma[k] + beta[k]

in darknet's arithmetic: ``x - mean`` in x's dtype, the division in float64 (``denominator``
is float64: C's ``sqrt`` returns a double), rounded back to x's dtype, then the scale and
shift in x's dtype. ``x_hat`` is kept for the backward (``dgamma = sum(dy * x_hat)``).

What runs here: this loop on every backend (one pass over memory: no fast variant).
"""

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels
from .indexing import unravel_2d

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


@register_jitable
def darknet_batch_norm_cell(x, mean, denominator, gamma, beta, r, k, x_hat, y):
    """``x_hat[r, k]`` and ``y[r, k]`` for one number (see the module docstring)."""
    h = x.dtype.type((x[r, k] - mean[k]) / denominator[k])
    x_hat[r, k] = h
    y[r, k] = h * gamma[k] + beta[k]


def darknet_batch_norm(x, mean, denominator, gamma, beta, x_hat, y):
    """``for r, k: darknet_batch_norm_cell(...)`` (prange over rows)."""
    for r in prange(y.shape[0]):
        for k in range(y.shape[1]):
            darknet_batch_norm_cell(x, mean, denominator, gamma, beta, r, k, x_hat, y)


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per number, calling the cell above."""
    @cuda.jit
    def forward(x, mean, denominator, gamma, beta, x_hat, y):
        t = cuda.grid(1)
        if t < y.size:
            r, k = unravel_2d(t, y.shape)
            darknet_batch_norm_cell(x, mean, denominator, gamma, beta, r, k, x_hat, y)

    return forward


DARKNET_FORWARD = Kernel("darknet_batch_norm", darknet_batch_norm, cuda=_cuda_kernels)
