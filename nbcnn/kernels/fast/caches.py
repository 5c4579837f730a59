"""The host's cache sizes, for the fast kernels' blocking decisions.

A kernel that streams a block of data once per task (Winograd's transformed filters) runs
well while that block stays near the core: how near depends on the CPU (Zen 3 has 512 KB of
L2 per core, Sapphire Rapids 2 MB), so the limit is taken from the machine, not a constant.
"""

import functools
import os

from ... import config

DEFAULT_L2_BYTES = 512 << 10
"""When the system does not say (the smallest L2 these machines have: Zen 3's)."""


def _size_in_bytes(text):
    """``"2048K"`` -> 2097152 (sysfs spells sizes with a K, M or G suffix)."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def l2_bytes(forced=None):
    """The L2 cache of one core, in bytes: ``NBCNN_L2_BYTES`` when set (to try another CPU's
    rule; ``forced``: its value, already read), else Linux's sysfs description of cpu0's
    level-2 cache, else ``DEFAULT_L2_BYTES``."""
    forced = (config.get("NBCNN_L2_BYTES") if forced is None else forced).strip()
    if not forced:
        return _described_l2_bytes()
    if not forced.isdigit() or int(forced) == 0:
        raise ValueError(f"NBCNN_L2_BYTES must be a positive number of bytes, got {forced!r}")
    return int(forced)


@functools.lru_cache(maxsize=None)
def _described_l2_bytes():
    """cpu0's unified (or data) level-2 cache from sysfs, read once."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(base, index, "type")) as f:
                kind = f.read().strip()
            if level == "2" and kind in ("Unified", "Data"):
                with open(os.path.join(base, index, "size")) as f:
                    return _size_in_bytes(f.read())
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES
