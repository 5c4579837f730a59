"""Reusable scratch buffers: a fresh 4 MB array costs its page faults on every call."""

import threading

import numpy as np

from ...backend import aligned_empty

_local = threading.local()


def workspace(name, n_items, dtype):
    """A reusable flat buffer of at least ``n_items`` (one per thread, name and dtype), starting
    on a 64-byte boundary (``backend.aligned_empty``)."""
    key = (name, np.dtype(dtype).str)
    store = getattr(_local, "buffers", None)
    if store is None:
        store = _local.buffers = {}
    buf = store.get(key)
    if buf is None or buf.size < n_items:
        buf = store[key] = aligned_empty(max(n_items, 1), dtype)
    return buf[:n_items]


def scratch(name, n_items):
    """Reusable float32 scratch memory for the direct kernels (padded input, padded dz)."""
    return workspace(name, n_items, np.float32)
