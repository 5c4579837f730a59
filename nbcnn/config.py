"""Every ``NBCNN_*`` switch and every threading threshold, in one place.

Switches are environment variables, read each time they matter (so a test or a notebook can
change one between two calls); ``with config.override(NBCNN_FAST="0"):`` sets some for a
block and puts them back afterwards. The README's table lists the same switches; a test
checks that the two agree.

Thresholds are plain module constants: the kernels read them from here, so that one number
(say, "below how many elements is a second thread not worth waking") has one value and one
explanation.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import NamedTuple


class Switch(NamedTuple):
    """One environment variable: its name, its value when unset, and what it does."""

    name: str
    default: str
    meaning: str


SWITCHES = (
    Switch("NBCNN_BACKEND", "auto",
           "the backend ops run on: python, cpu, cuda or auto (cuda on a real GPU, else cpu); "
           "set_backend / use_backend in code take precedence"),
    Switch("NBCNN_DEBUG", "0",
           "1: print every kernel launch to stderr: backend, kernel, the route that ran "
           "(e.g. 'direct 4x16 tile', 'winograd', 'im2col+BLAS', 'readable loop'), output shape, time"),
    Switch("NBCNN_FAST", "1",
           "0: the cpu and cuda backends run the readable loop nests compiled, not the fast kernels"),
    Switch("NBCNN_DIRECT", "1",
           "0: float32 convolutions on cpu take im2col + BLAS instead of the direct register tiles "
           "(the middle rung of `nbcnn bench --ladder`)"),
    Switch("NBCNN_FUSE", "1",
           "0: a Conv2D followed by ReLU runs as two kernels (to step through each, or to compare); "
           "1: one kernel that applies the ReLU as it stores the conv's output, and a ReLU followed by "
           "max pooling is differentiated through the pooled output's mask"),
    Switch("NBCNN_WINOGRAD", "1",
           "0: 3x3 and 5x5 stride-1 float32 convolutions on cpu skip Winograd (F(2x2, 3x3), F(4x4, 3x3), "
           "F(2x2, 5x5)) for the direct tile"),
    Switch("NBCNN_LANES", "",
           "8 or 16: the float32 lanes of the cpu register tiles (read once, at import); unset: "
           "the CPU's own (16 with AVX-512, else 8). For tests and timing; give such a process "
           "its own NUMBA_CACHE_DIR"),
    Switch("NBCNN_L2_BYTES", "",
           "bytes of L2 cache per core, for the fast kernels' blocking rules (kernels/fast/caches.py); "
           "unset: what Linux's sysfs says for cpu0 (512 KiB when it says nothing)"),
    Switch("NBCNN_KEEP_MEMORY", "1",
           "0: training loops leave glibc's malloc as it is; 1: they ask it to keep freed memory "
           "for the next step instead of unmapping blocks above 32 MB (nbcnn/memory.py)"),
    Switch("NBCNN_CACHE", "",
           "the folder for downloaded pretrained weights (`nbcnn weights NAME`); unset: "
           "$XDG_CACHE_HOME/nbcnn, else ~/.cache/nbcnn"),
    Switch("NBCNN_DARKNET_LIB", "",
           "darknet's libdarknet.so, the peer of `nbcnn bench --models` for YOLOv3-tiny; unset: "
           "where Debian's darknet package puts it"),
)
_BY_NAME = {s.name: s for s in SWITCHES}


_ENCODED_NAMES = {s.name: os.fsencode(s.name) for s in SWITCHES} if os.name == "posix" else {}


def _environ_value(name: str) -> str:
    """``os.environ.get(name, "")``, in one dict lookup where it can be: on POSIX,
    ``os.environ`` keeps its variables in a dict of encoded names (``_data``, updated by every
    assignment to ``os.environ``), and ``os.environ.get`` reaches it through four Python frames
    of the os module. Switches are read at every launch, just after a large kernel has pushed
    the interpreter out of the caches: there a read took 14-16 us that way, 4 us this way (an
    incep1x1 forward read five). Anything else (Windows, a replaced ``os.environ``): the
    mapping's own ``get``."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    key = _ENCODED_NAMES.get(name)
    if key is None or type(data) is not dict:
        return environ.get(name, "")
    value = data.get(key)
    return "" if value is None else os.fsdecode(value)


def get(name: str) -> str:
    """The switch's value now: the environment's, else its default."""
    switch = _BY_NAME[name]  # a KeyError here is a typo in nbcnn itself
    value = _environ_value(name)
    return value if value.strip() else switch.default


def enabled(name: str) -> bool:
    """For on/off switches: anything but "0" is on."""
    return get(name).strip() != "0"


def raw_values(names: tuple) -> tuple:
    """The environment's raw values of these switches (None when unset): one ``map`` over
    ``os.environ``'s own dict (``_environ_value``). The switches a fast cpu op reads at every
    call are read so, in the cold Python after the previous kernel, where each ``get`` took
    4-8 us (Sapphire Rapids); ``parsed_values`` turns them into ``get``'s answers, and its
    callers keep their parsing per combination of raw values."""
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict or not _ENCODED_NAMES:
        return tuple(_environ_value(name) for name in names)
    return tuple(map(data.get, _encoded(names)))


@functools.lru_cache(maxsize=64)
def _encoded(names: tuple) -> tuple:
    return tuple(_ENCODED_NAMES[name] for name in names)


@functools.lru_cache(maxsize=256)
def parsed_values(names: tuple, raw: tuple) -> tuple[str, ...]:
    """``raw_values``' answer as ``get`` would give each (defaults for the unset)."""
    found = []
    for name, value in zip(names, raw):
        value = "" if value is None else value if isinstance(value, str) else os.fsdecode(value)
        found.append(value if value.strip() else _BY_NAME[name].default)
    return tuple(found)


def is_on(value: str) -> bool:
    """``enabled``'s rule for a value already read (``parsed_values``)."""
    return value.strip() != "0"


def debug_level_of(value: str) -> int:
    """``debug_level``'s rule for a value already read (``parsed_values``)."""
    try:
        return int(value)
    except ValueError:
        return 1


def cache_dir():
    """Where ``nbcnn weights`` keeps downloaded files: $NBCNN_CACHE, else $XDG_CACHE_HOME/nbcnn,
    else ~/.cache/nbcnn (not created here)."""
    from pathlib import Path

    chosen = get("NBCNN_CACHE").strip()
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nbcnn"


def backend_name() -> str:
    return get("NBCNN_BACKEND")


def debug_level() -> int:
    """NBCNN_DEBUG as a number (a value that is not one counts as 1: the user asked for output)."""
    return debug_level_of(get("NBCNN_DEBUG"))


def fast_kernels_enabled() -> bool:
    return enabled("NBCNN_FAST")


def direct_enabled() -> bool:
    return enabled("NBCNN_DIRECT")


def winograd_enabled() -> bool:
    return enabled("NBCNN_WINOGRAD")


@contextlib.contextmanager
def override(**values: str | None):
    """``with override(NBCNN_FAST="0", NBCNN_DEBUG="1"):`` sets switches for a block (None
    unsets one), then restores the environment as it was."""
    for name in values:
        if name not in _BY_NAME:
            raise ValueError(f"unknown switch {name!r}; the switches are {sorted(_BY_NAME)}")
    with environment(values):
        yield


@contextlib.contextmanager
def environment(values: dict):
    """Any environment variables set for a block (a value of None unsets one), then put back
    as they were: ``override`` for nbcnn's switches, and the thread-pool sizes that
    ``nbcnn bench --threads`` hands its worker processes."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- thresholds

SERIAL_BELOW_ELEMENTS = 250_000
"""Below this many array elements touched, the dispatcher runs a cpu kernel's prange loops on
one thread: waking the second thread (and waiting for BLAS's spinning workers to let go of the
core) costs more than it saves. LeNet-5 training, batch 64, 2 cores, images/s: every kernel
parallel ~1,300-1,600; serial below 1M elements ~1,300-1,600 (the compute-heavy conv gathers
lost their second thread); serial below 250k ~2,300-2,400."""

POOL_SERIAL_BELOW_ELEMENTS = 100_000
"""The same rule for the fast pooling kernels, which pick their threads themselves. Lower than
the dispatcher's: LeNet's second pool (64x10x10x16, ~130k-150k touched) runs 1.5-2x faster
on both threads, and LeNet-5 training (relu/max and tanh/avg, batch 64) ran as fast or faster
with 100k as with 250k or 50k (three interleaved runs, within the machine's noise)."""

BLAS_SMALL_PRODUCT_FLOPS = 64_000_000
"""Matrix products below this many flops run BLAS on one thread (``kernels/fast/blas.py``)."""

CUDA_THREADS_PER_BLOCK = 128
"""Threads per block when a readable kernel runs on cuda with one thread per output."""
