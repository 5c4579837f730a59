"""Keep freed memory in the process for the next training step, instead of handing it back.

A training step allocates the same large arrays every time (the first layers' activations and
their gradients: a batch of 32 at 128 x 128 x 16 is 33.5 MB each). glibc's ``malloc`` serves
any block above 32 MB with a fresh ``mmap`` and unmaps it on ``free``, so each step touches
brand-new pages, and the kernel zero-fills every 4 KB page on first touch: measured here
(Intel Sapphire Rapids VM), writing a fresh 33.5 MB array took 4.9 ms against 2.4 ms for the
same pass over a reused one, and a small-YOLO training step spent about a tenth of its time
so. (Blocks below 32 MB are already reused: glibc's threshold adapts up to that size.)

``keep_freed_memory()`` asks glibc (``mallopt``) to serve large blocks from its heap and to
keep freed heap memory (up to 1 GiB above the peak's top) instead of returning it: the next
step's arrays land on pages already mapped. The cost: the process keeps its peak memory.
``NBCNN_KEEP_MEMORY=0`` turns it off. Elsewhere than glibc (macOS, Windows, musl) it does
nothing. The training loops call it: ``Model.fit`` and ``train_on_batch`` (a hand-written loop
of those: LeNet-5 at batch 64 took 607 page faults a step, 6.0 -> 4.8 ms a step with it), the
detection and face trainers, each triplet step and each style-transfer step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from . import config

M_TRIM_THRESHOLD = -1   # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


@functools.cache
def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and its mallopt numbers)
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def _apply() -> bool:
    libc = _glibc()
    if libc is None:
        return False
    # once set, glibc stops adapting these itself; both calls return 1 on success
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory from now on (see the module docstring); once per
    process. Returns whether it is in effect (False: switched off, or not glibc)."""
    if not config.enabled("NBCNN_KEEP_MEMORY"):
        return False
    return _apply()
