"""``nbcnn bench --threads N``: nbcnn and every peer on the same number of threads.

Left alone, each library takes the machine its own way (Numba one thread per core, torch
its intra-op pool, OpenBLAS its own), so a ratio mixes the kernels with how each one uses
the cores; on a shared machine one thread each is also the steadier comparison. The
parent hands each worker process

* ``worker_env(N)``: the variables that size each runtime's pool *before* it starts
  (``NUMBA_NUM_THREADS``, and ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` /
  ``MKL_NUM_THREADS`` for torch and numpy's BLAS), enough on their own for the
  ``--models`` workers (``worker_environment``); and
* ``--threads N`` on the kernel worker's command line, where ``use_numba_threads`` /
  ``use_torch_threads`` also set it explicitly (``numba.set_num_threads``,
  ``torch.set_num_threads``) and return the count each record then states.

``None`` everywhere means "each library's default", as without the option.
"""

from __future__ import annotations

from .. import config

POOL_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_env(threads: int | None) -> dict:
    """Environment for a worker process that should run on ``threads`` threads ({} for the defaults)."""
    if threads is None:
        return {}
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return {name: str(threads) for name in POOL_VARIABLES}


def worker_environment(threads: int | None):
    """``os.environ`` with ``worker_env(threads)`` inside the block (a ``with`` statement), so
    that every worker process started there inherits it (the ``--models`` workers); put back
    as it was afterwards."""
    return config.environment(worker_env(threads))


def threads_args(threads: int | None) -> list[str]:
    """The kernel worker's command-line arguments for ``threads`` ([] for the defaults)."""
    return [] if threads is None else ["--threads", str(threads)]


def use_numba_threads(threads: int | None) -> int:
    """Numba's parallel loops on ``threads`` threads (None: leave them); the count in use.
    Numba refuses more than its pool's ``NUMBA_NUM_THREADS``, which ``worker_env`` sets."""
    import numba

    if threads is not None:
        numba.set_num_threads(threads)
    return numba.get_num_threads()


def use_torch_threads(torch, threads: int | None) -> int:
    """torch's intra-op pool on ``threads`` threads (None: leave it); the count in use."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
