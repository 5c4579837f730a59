"""Host arrays the library allocates start on a cache line (``backend.ALIGNMENT``), and the
host's cache sizes are read right (``kernels/fast/caches.py``)."""

import numpy as np
import pytest
from numba import njit

from nbcnn import backend, ops
from nbcnn.kernels.fast import caches
from nbcnn.kernels.fast.simd import aligned_floats
from nbcnn.kernels.fast.workspace import scratch


@pytest.mark.parametrize("shape, dtype", [((3, 5, 7, 2), np.float32), ((1000,), np.float64), (17, np.int32),
                                          ((0, 4), np.float32)])
def test_aligned_empty_is_an_ordinary_array_on_a_cache_line(shape, dtype):
    a = backend.aligned_empty(shape, dtype)
    assert a.shape == ((shape,) if np.ndim(shape) == 0 else shape) and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % backend.ALIGNMENT == 0 or a.size == 0
    a[...] = 7
    assert (a == 7).all()
    assert (backend.aligned_zeros(shape, dtype) == 0).all()


def test_outputs_and_scratch_are_aligned():
    rng = np.random.default_rng(0)
    for n in (1, 3):  # np.empty of these sizes starts 16 bytes past a line
        x = rng.standard_normal((n, 9, 9, 16)).astype(np.float32)
        W = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
        z = ops.conv2d(x, W, None, 1, 1)
        assert z.ctypes.data % backend.ALIGNMENT == 0
        dx, dW, db = ops.conv2d_backward(z, x, W, 1, 1)
        assert all(g.ctypes.data % backend.ALIGNMENT == 0 for g in (dx, dW, db))
    assert scratch("test_alignment", 1001).ctypes.data % backend.ALIGNMENT == 0


def test_aligned_floats_inside_compiled_code():
    @njit
    def addresses(n):
        a = aligned_floats(n)
        a[:] = 1
        return a.ctypes.data % 64, a.size, a.sum()

    for n in (1, 15, 1000, 100_000):
        assert addresses(n) == (0, n, n)


@pytest.mark.parametrize("text, expected", [("2048K", 2 << 20), ("512K\n", 512 << 10), ("1M", 1 << 20), ("4096", 4096)])
def test_cache_sizes_as_sysfs_writes_them(text, expected):
    assert caches._size_in_bytes(text) == expected


def test_l2_size_can_be_forced_and_is_plausible(monkeypatch):
    monkeypatch.delenv("NBCNN_L2_BYTES", raising=False)
    assert 128 << 10 <= caches.l2_bytes() <= 64 << 20
    monkeypatch.setenv("NBCNN_L2_BYTES", str(1 << 20))
    assert caches.l2_bytes() == 1 << 20


@pytest.mark.parametrize("bad", ["2M", "-1", "0", "lots"])
def test_a_bad_l2_size_is_refused_by_name(bad, monkeypatch):
    monkeypatch.setenv("NBCNN_L2_BYTES", bad)
    with pytest.raises(ValueError, match="NBCNN_L2_BYTES"):
        caches.l2_bytes()
