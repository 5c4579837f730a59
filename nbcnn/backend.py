"""The dispatcher: which backend runs a kernel, and where its arrays live.

Three backends run the same readable kernel source:

    python  the plain Python loop nest (slow; pdb can step into it)
    cpu     that loop nest compiled by ``numba.njit(parallel=True)``
    cuda    ``numba.cuda.jit`` kernels, one GPU thread per output element (or the
            CUDA simulator when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported)

Choose one with ``set_backend(name)``, ``with use_backend(name):`` or the environment
variable ``NBCNN_BACKEND``; ``"auto"`` means cuda on a real GPU, else cpu. Asking for a
backend that cannot run here raises an error that says why: nbcnn never falls back
silently, so you always know where your code ran.

Importing this module never imports ``numba.cuda``: that happens the first time the
cuda backend is asked about or used.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import math
import os
import sys
import threading
import time
from typing import Callable, NamedTuple

import numba
import numpy as np

from . import config

BACKENDS = ("python", "cpu", "cuda")
ENV_VAR = "NBCNN_BACKEND"

# Two levels of choice. set_backend is process-wide (a plain global: worker threads see it too);
# use_backend is per context (a context variable: a `with` block in one thread or asyncio task
# does not change what another runs on). None: not chosen, so the next level decides, and in
# the end the environment variable (or "auto").
_process_choice: str | None = None
_block_choice: contextvars.ContextVar[str | None] = contextvars.ContextVar("nbcnn_backend", default=None)


def _prefer_fork_safe_threads() -> None:
    """Run Numba's parallel loops on a fork-safe threading layer: TBB, which is thread-safe too.

    Numba picks a threading layer at the first parallel launch; by default, where TBB cannot be
    loaded, it takes GNU OpenMP, which kills every forked child that runs a parallel loop again
    ("Terminating: fork() called from a process already using GNU OpenMP"): a
    ``multiprocessing.Pool`` of data loaders would never return. Numba's "forksafe" choice
    takes TBB (the ``tbb`` wheel comes with nbcnn), else a fork-safe OpenMP or its own
    workqueue. A layer chosen by the user with NUMBA_THREADING_LAYER is left alone.

    Only the choice is made here: importing numba's TBB pool ourselves, before numba's own
    start-up does, left the register-tiled dW ~40% slower (resnet_s2 backward 19 -> 27 ms).
    """
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    import numba

    numba.config.THREADING_LAYER = "forksafe"


_prefer_fork_safe_threads()


class Availability(NamedTuple):
    """Whether a backend can run here, and a sentence saying why (or why not)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:  # so `if available_backends()["cuda"]:` reads naturally
        return self.ok


class BackendError(RuntimeError):
    """A backend was asked for that cannot run here; the message names the fix."""


# --------------------------------------------------------------------------- availability


def cuda_simulator_enabled() -> bool:
    """True when numba was imported with NUMBA_ENABLE_CUDASIM=1 (the simulator is active)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@functools.cache
def _real_gpu_status() -> Availability:
    # Probe the driver with ctypes first, so a machine without one never imports numba.cuda.
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return Availability(False, "no NVIDIA driver here (libcuda.so.1 cannot be loaded)")
    try:
        from numba import cuda

        if not cuda.is_available():
            return Availability(False, "an NVIDIA driver is installed but numba finds no usable GPU")
        name = cuda.get_current_device().name
        if isinstance(name, bytes):
            name = name.decode()
        return Availability(True, f"real GPU: {name}")
    except Exception as exc:  # a broken toolkit install must not break `import nbcnn`
        return Availability(False, f"the CUDA driver was found but numba cannot use it: {exc}")


def _cuda_status() -> Availability:
    if cuda_simulator_enabled():
        return Availability(
            True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1): @cuda.jit kernels run as Python, slowly"
        )
    gpu = _real_gpu_status()
    if gpu.ok:
        return gpu
    hint = "; to run the cuda kernels without a GPU, start Python with NUMBA_ENABLE_CUDASIM=1"
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        hint = "; NUMBA_ENABLE_CUDASIM is set, but only after numba was imported: set it before starting Python"
    return Availability(False, gpu.reason + hint)


def available_backends() -> dict[str, Availability]:
    """Which backends work here, and why not: ``{"python": Availability(ok, reason), ...}``."""
    return {
        "python": Availability(True, "plain Python loops (slow; pdb can step into every kernel)"),
        "cpu": Availability(True, f"numba @njit(parallel=True) on {os.cpu_count()} CPU threads"),
        "cuda": _cuda_status(),
    }


def auto_backend() -> str:
    """cuda when a real GPU is usable (the simulator does not count: it is slow), else cpu."""
    return "cuda" if _real_gpu_status().ok and not cuda_simulator_enabled() else "cpu"


# --------------------------------------------------------------------------- choosing


def _resolve(name: str, where: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a string, got {type(name).__name__} (from {where})")
    key = name.strip().lower()
    if key == "auto":
        return auto_backend()
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (from {where}); choose one of {BACKENDS + ('auto',)}")
    status = available_backends()[key]
    if not status.ok:
        raise BackendError(f"backend {key!r} (from {where}) cannot run here: {status.reason}")
    return key


def set_backend(name: str | None) -> str:
    """Choose the backend for every op from now on, in every thread of the process; returns the
    resolved name ("auto" -> cpu/cuda). Inside a ``use_backend`` block, the block's choice wins.

    ``set_backend(None)`` forgets the choice: $NBCNN_BACKEND (or auto) decides again.
    """
    global _process_choice
    _process_choice = None if name is None else _resolve(name, "set_backend")
    return get_backend()


@contextlib.contextmanager
def use_backend(name: str):
    """``with use_backend("python"):`` runs the block on that backend, then restores the previous
    one. The choice holds in this thread (this context) only; threads started inside the block
    do not inherit it, as ``set_backend``'s would."""
    token = _block_choice.set(_resolve(name, "use_backend"))
    try:
        yield get_backend()
    finally:
        _block_choice.reset(token)


def get_backend(env_value: str | None = None) -> str:
    """The backend ops run on now: the enclosing ``use_backend`` block's, else ``set_backend``'s,
    else $NBCNN_BACKEND (``env_value``: its value, already read), else auto."""
    chosen = _block_choice.get() or _process_choice
    if chosen is not None:
        return chosen
    name = config.backend_name() if env_value is None else env_value
    if name == "auto":  # the default, asked at every op: no parsing
        return auto_backend()
    return _resolve(name, f"${ENV_VAR}")


# --------------------------------------------------------------------------- kernels


class Kernel:
    """One readable kernel source, its compiled forms, and optionally faster restructured ones.

    ``source(*inputs, out)`` is the plain loop nest: the python backend calls it as is, and
    ``naive_cpu`` is ``numba.njit(parallel=True, cache=True)(source)``. ``cuda`` is a
    zero-argument function returning the ``@cuda.jit`` kernel (built on first use, so that
    ``numba.cuda`` is imported only then), launched with one thread per unit of work,
    ``work(out)`` units (by default one per output element).

    Faster, restructured variants (blocked, packed, tiled) are attached with
    ``register_fast`` by ``nbcnn/kernels/fast/__init__.py``, the one table of what runs
    instead of the readable source; the cpu/cuda backends run them unless ``NBCNN_FAST=0``,
    and the tests check them against the readable source.
    """

    def __init__(self, name: str, source: Callable, cuda: Callable, work: Callable | None = None):
        import numba

        self.name = name
        self.source = source
        self.naive_cpu = numba.njit(parallel=True, cache=True)(source)
        self._cuda_factory = cuda
        self.work = work or (lambda out: out.size)
        self.fast_cpu: Callable | None = None
        self.fast_cpu_own_threads = False
        self._fast_cuda_factory: Callable | None = None

    def register_fast(self, *, cpu: Callable | None = None, cuda: Callable | None = None,
                      own_threads: bool = False) -> None:
        """Attach restructured variants that take the readable kernel's arguments and fill the
        same output: ``cpu`` a function, ``cuda`` a zero-argument factory returning a launcher
        ``launch(*args)``. ``own_threads=True``: the cpu variant picks its threads itself, so
        the dispatcher must not switch Numba to one thread for small calls."""
        if cpu is not None:
            self.fast_cpu = cpu
            self.fast_cpu_own_threads = own_threads
        if cuda is not None:
            self._fast_cuda_factory = cuda

    @property
    def cpu(self) -> Callable:
        """What the cpu backend runs: the fast kernel when there is one (and NBCNN_FAST is not 0),
        else the compiled loop nest."""
        return self.fast_cpu if self.fast_cpu is not None and config.fast_kernels_enabled() else self.naive_cpu

    @property
    def cuda(self):
        """The one-thread-per-output ``@cuda.jit`` form of the readable source."""
        return self._cuda_factory()

    @property
    def fast_cuda(self):
        if self._fast_cuda_factory is None or not config.fast_kernels_enabled():
            return None
        return self._fast_cuda_factory()

    def __repr__(self) -> str:
        return f"Kernel({self.name!r})"


def cuda_kernels(build: Callable) -> Callable:
    """Decorator for a kernel module's factory of ``@cuda.jit`` kernels.

    The factory runs once (per argument tuple), on first use: importing nbcnn must not import numba.cuda. Before it
    runs, ``numba.cuda`` is bound as the *module global* ``cuda`` of the factory's module, because
    the simulator finds ``cuda`` by looking in a kernel's globals (a local name would not be
    swapped for the simulated one). Such a module starts with ``cuda = None``.
    """

    @functools.cache
    @functools.wraps(build)
    def built(*args):
        from numba import cuda

        build.__globals__["cuda"] = cuda
        return build(*args)

    return built


# What a fast kernel reports it did, for NBCNN_DEBUG (one per thread: kernels may run in parallel).
_route = threading.local()


_routes_wanted = 0
"""Launches under NBCNN_DEBUG now running (in any thread): only then are routes noted."""


def note_route(name: str) -> None:
    """A fast kernel names the route it took ("direct 4x16 tile", "winograd", "im2col+BLAS"),
    so that NBCNN_DEBUG=1 can print what actually ran. Costs one global read when no launch
    is printing (the thread-local store took 4-5 us in the cold Python after a kernel)."""
    if _routes_wanted:
        _route.name = name


@contextlib.contextmanager
def noting_routes():
    """In this block fast kernels note their routes even when called directly rather than
    through ``launch`` (tests of a router: ``last_route()`` then names the route taken)."""
    global _routes_wanted
    _route.name = None
    _routes_wanted += 1
    try:
        yield
    finally:
        _routes_wanted -= 1


def last_route() -> str | None:
    """The route the last fast kernel of this thread noted (see ``noting_routes``)."""
    return getattr(_route, "name", None)


def _run_cpu(kernel: Kernel, fn: Callable, args) -> None:
    """Run a cpu kernel, on one thread when it touches few elements
    (``config.SERIAL_BELOW_ELEMENTS``). Fast kernels registered with ``own_threads=True`` choose
    their threads themselves and are run as they are: the register-blocked convolutions (many
    multiply-adds per element touched: every thread, however small), pooling (its own
    threshold) and the BLAS products of the dense layer (``blas.matmul``'s rule; switching
    Numba's threads there only cost ~10 us)."""
    if fn is kernel.fast_cpu and kernel.fast_cpu_own_threads:
        fn(*args)
        return
    touched = sum(a.size for a in args if isinstance(a, np.ndarray))
    if touched >= config.SERIAL_BELOW_ELEMENTS:
        fn(*args)
        return
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fn(*args)
    finally:
        numba.set_num_threads(threads)


def thread_count() -> int:
    """``numba.get_num_threads()`` without its two locks: the kernels that split their work by
    it (dW, Winograd, pooling) ask at every call, in the cold Python after the previous
    kernel, where the Python function took 10-12 us and the threading layer's own counter,
    which it reads after the locks, 3.5 (Sapphire Rapids). (Compiled code cannot ask for it
    and still be cached: Numba reaches the counter through a ctypes pointer.)"""
    global _read_thread_count
    if _read_thread_count is None:
        numba.get_num_threads()  # starts the threading layer, which sets the counter's reader
        from numba.np.ufunc import parallel

        _read_thread_count = getattr(parallel, "_get_num_threads", None) or numba.get_num_threads
    return _read_thread_count()


_read_thread_count = None


def cpu_runners(*kernels: Kernel, backend: str | None = None) -> tuple | None:
    """What ``launch`` would end up calling for each kernel on the cpu backend now, or None
    when it would do more than call it: another backend chosen, NBCNN_FAST=0 or NBCNN_DEBUG
    set, or a kernel without a fast cpu form. Each is the fast kernel itself, or for one that
    leaves its threads to the dispatcher, that kernel through ``_run_cpu``.

    Why: an op's own Python runs just after the previous op's kernel has pushed the
    interpreter's code and data out of the caches, where every layer of calls costs
    microseconds (Sapphire Rapids: ``conv2d``'s checks, ``_run`` and ``launch`` took 40-70 us
    around a 0.2 ms incep1x1 kernel). ``ops._run`` calls these for numpy inputs, and
    ``ops.conv2d``, ``conv2d_backward``, ``dense`` and ``dense_backward`` also skip their
    checks' conversions for plain ones. ``backend``: the one already chosen, if the caller
    has it (else ``get_backend()``)."""
    backend_env, debug, fast = _runner_switches(config.raw_values(_RUNNER_SWITCHES))
    if debug or not fast or (backend or get_backend(backend_env)) != "cpu":
        return None
    runners = []
    for kernel in kernels:
        fn = kernel.fast_cpu
        if fn is None:
            return None
        runners.append(fn if kernel.fast_cpu_own_threads else functools.partial(_run_cpu_args, kernel, fn))
    return tuple(runners)


_RUNNER_SWITCHES = ("NBCNN_BACKEND", "NBCNN_DEBUG", "NBCNN_FAST")


@functools.lru_cache(maxsize=64)
def _runner_switches(raw):
    """``(NBCNN_BACKEND, debug level, NBCNN_FAST on)`` from their raw values (parsed once)."""
    backend_env, debug, fast = config.parsed_values(_RUNNER_SWITCHES, raw)
    return backend_env, config.debug_level_of(debug), config.is_on(fast)


def _run_cpu_args(kernel: Kernel, fn: Callable, *args) -> None:
    _run_cpu(kernel, fn, args)


def fast_kernels_enabled() -> bool:
    """NBCNN_FAST=0 runs the readable kernels everywhere (to compare, or to rule the fast ones out)."""
    return config.fast_kernels_enabled()


def launch_naive_cuda(kernel: Kernel, *args) -> None:
    """Launch the readable cuda kernel with one thread per unit of work."""
    work = int(kernel.work(args[-1]))
    if work > 0:
        threads = min(config.CUDA_THREADS_PER_BLOCK, work)
        blocks = (work + threads - 1) // threads
        kernel.cuda[blocks, threads](*args)


def launch(kernel: Kernel, *args, backend: str | None = None) -> None:
    """Run ``kernel`` on ``args`` (inputs..., then the output array it fills) on a backend.

    The arrays must already live where that backend wants them (see ``to_backend``).
    With NBCNN_DEBUG=1 each launch prints the backend, kernel, the route that ran and the time
    to stderr.
    """
    name = backend or get_backend()
    debug = config.debug_level()
    if debug:
        with noting_routes():
            _launch(kernel, args, name, debug)
    else:
        _launch(kernel, args, name, debug)


def _launch(kernel: Kernel, args, name: str, debug: int) -> None:
    start = time.perf_counter()
    route = "readable loop"
    if name == "python":
        kernel.source(*args)
    elif name == "cpu":
        fn = kernel.cpu  # reads NBCNN_FAST once per launch
        if fn is not kernel.naive_cpu:
            route = "fast"
        _run_cpu(kernel, fn, args)
    elif name == "cuda":
        fast = kernel.fast_cuda
        if fast is not None:
            route = "fast"
            fast(*args)
        else:
            launch_naive_cuda(kernel, *args)
        if debug:
            from numba import cuda

            cuda.synchronize()
    else:  # pragma: no cover - get_backend validated it
        raise ValueError(f"unknown backend {name!r}")
    if debug:
        ms = (time.perf_counter() - start) * 1e3
        route = last_route() or route
        shape = getattr(args[-1], "shape", ())
        print(f"[nbcnn] {name:6s} {kernel.name:28s} {route:24s} out={tuple(shape)} {ms:9.3f} ms",
              file=sys.stderr)


# --------------------------------------------------------------------------- arrays


def is_device_array(a) -> bool:
    """True for GPU arrays: numba device arrays (also the simulator's, which lack the
    interface) and anything else exposing ``__cuda_array_interface__`` (CuPy, torch)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host")


def to_backend(a, backend: str):
    """Put an array where ``backend``'s kernels read it: numpy on python/cpu, device memory on cuda."""
    if backend == "cuda":
        from numba import cuda

        if is_device_array(a):
            return cuda.as_cuda_array(a) if not hasattr(a, "copy_to_host") else a
        return cuda.to_device(np.ascontiguousarray(a))
    if is_device_array(a):
        return to_host(a)
    return a


ALIGNMENT = 64
"""Bytes: host arrays the library allocates start on a multiple of this, a cache line and an
AVX-512 vector. numpy's own ``np.empty`` starts 16 bytes past one (glibc's malloc header),
so every 64-byte vector load or store of a fast kernel straddled two cache lines: aligned,
the conv kernels ran 7-12% faster on Sapphire Rapids (torch aligns its tensors to 64 too)."""


def address(a: np.ndarray) -> int:
    """Where ``a``'s data starts in memory (``a.ctypes.data``, read in compiled code: numpy's
    ``ctypes`` and ``__array_interface__`` build Python objects, 20-30 us after a kernel has
    left the caches cold)."""
    return _compiled_address(a)


@numba.njit(cache=True)
def _compiled_address(a):
    return a.ctypes.data


def aligned_empty(shape, dtype=np.float32):
    """``np.empty(shape, dtype)`` whose data starts on an ``ALIGNMENT``-byte boundary (a view
    into a slightly larger buffer; to numpy and Numba an ordinary C-contiguous array)."""
    return _aligned(shape, dtype, False)


def aligned_zeros(shape, dtype=np.float32):
    """``np.zeros`` on an ``ALIGNMENT``-byte boundary (see ``aligned_empty``)."""
    return _aligned(shape, dtype, True)


def _aligned(shape, dtype, zero: bool):
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    like = _COMPILED_KINDS.get(dtype) if isinstance(dtype, (type, np.dtype)) else None
    if like is not None:
        # float arrays, the kernels' (all but a few): one compiled call. An op allocates its
        # output right after the previous kernel has evicted the interpreter's data, where
        # numpy's way below took 34 us and this 14 (Sapphire Rapids)
        return _aligned_compiled(shape, like, zero)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # math.prod: np.prod took ~5 us of a small layer's call
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.__array_interface__["data"][0] % ALIGNMENT
    out = raw[start:start + nbytes].view(dtype).reshape(shape)
    if zero:
        out[...] = 0
    return out


_COMPILED_KINDS = {kind: np.empty(0, kind) for kind in (np.float32, np.float64)}
"""The dtypes ``_aligned_compiled`` serves, each with an empty array of it (the compiled
function takes its dtype from that array: a dtype object as an argument was slower to
dispatch than the allocation itself); looked up by type or by ``np.dtype``."""
_COMPILED_KINDS.update({np.dtype(kind): like for kind, like in list(_COMPILED_KINDS.items())})


@numba.njit(cache=True)
def _aligned_compiled(shape, like, zero):
    """``_aligned`` for ``like``'s dtype in compiled code: ``ALIGNMENT / itemsize`` more
    items than asked, and the view of them that starts where the address is a multiple of
    ALIGNMENT (malloc's blocks start on 16 bytes, a multiple of the item size), shaped."""
    n = 1
    for d in shape:
        n *= d
    per_line = ALIGNMENT // like.itemsize
    raw = np.zeros(n + per_line, like.dtype) if zero else np.empty(n + per_line, like.dtype)
    start = (-(raw.ctypes.data // raw.itemsize)) % per_line
    return raw[start:start + n].reshape(shape)


def empty(shape, dtype, backend: str):
    """An uninitialised output array on ``backend`` (every kernel writes each of its cells);
    on the host, aligned to ``ALIGNMENT`` bytes for the vector kernels."""
    if backend == "cuda":
        from numba import cuda

        return cuda.device_array(tuple(shape), dtype=dtype)
    return aligned_empty(shape, dtype)


def to_host(a):
    """A numpy array holding ``a`` (a copy for device arrays, ``a`` itself for numpy)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    from numba import cuda

    return cuda.as_cuda_array(a).copy_to_host()


def like_inputs(out, *inputs):
    """Return ``out`` as device memory if any input was, else as a numpy array.

    On cuda this keeps activations on the GPU between layers: copies happen only where the
    caller handed in numpy arrays.
    """
    if any(is_device_array(a) for a in inputs):
        return out
    return to_host(out)
