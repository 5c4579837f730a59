"""The code behind ``nbcnn bench``: time the kernels, next to numpy and PyTorch, on named shapes.

    nbcnn bench                            conv fwd/bwd, pooling fwd/bwd and dense on the cpu backend
    nbcnn bench --shapes vgg_b3,incep1x1   some of the shapes only;  --repeat 10  more runs
    nbcnn bench --backend cuda             device time (host<->device copies reported apart)
    nbcnn bench --ladder --shape vgg_b3    one conv, from the readable Python loop to the fast kernel
    nbcnn bench --json                     everything as JSON

What is reported, and how:

* Every implementation runs in its *own* subprocess (``python -m nbcnn.benchmark --worker
  nbcnn|numpy|torch ...``): numba's and torch's thread pools in one process slow each other
  down (measured: torch 229 -> 137 GFLOP/s), so they never share one.
* Each op runs once to warm up (and JIT-compile), then ``--repeat`` times; the table gives
  the rate of the fastest run and the minimum and median time. On a shared machine compare
  the ratios within one run, not numbers between runs.
* Convolutions in GFLOP/s of *useful* flops: forward ``2 * N * H_out * W_out * C_out * f * f *
  C_in`` (one multiply and one add per filter tap), backward (dX + dW + db) twice that. Pooling
  is memory-bound, so it is given in GB/s of the bytes it must read and write.
* JIT compile time apart from run time: ``import nbcnn`` and the first conv in a fresh process
  with an empty ``NUMBA_CACHE_DIR`` (cold: everything compiles), then again in a second
  process with that cache (warm: what a learner waits for every time after the first).
* Peers: ``numpy`` is im2col + one BLAS matrix product (written below; always there);
  ``torch`` is PyTorch on the CPU with channels_last tensors (oneDNN), when it is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

# --------------------------------------------------------------------------- shapes


class ConvShape(NamedTuple):
    """A convolution: x (N, H, W, C_in) with C_out filters f x f, stride and pad (both sides)."""

    N: int
    H: int
    W: int
    C_in: int
    f: int
    C_out: int
    stride: int
    pad: int


class PoolShape(NamedTuple):
    """A pooling: x (N, H, W, C), window f x f, stride s, no padding."""

    N: int
    H: int
    W: int
    C: int
    f: int
    s: int


class DenseShape(NamedTuple):
    """A fully connected layer: x (N, D) @ W (D, M) + b."""

    N: int
    D: int
    M: int


CONV_SHAPES = {
    "seed39": ConvShape(64, 39, 39, 3, 3, 10, 1, 0),  # the course's first conv net
    "lenet_c2": ConvShape(64, 14, 14, 6, 5, 16, 1, 0),  # LeNet-5, second conv
    "resnet_s2": ConvShape(8, 56, 56, 64, 3, 64, 1, 1),  # ResNet stage 2
    "vgg_b3": ConvShape(4, 56, 56, 256, 3, 256, 1, 1),  # VGG-16 block 3
    "stem_s2": ConvShape(8, 224, 224, 3, 7, 64, 2, 3),  # ResNet stem, 7x7 stride 2
    "incep5x5": ConvShape(8, 28, 28, 192, 5, 32, 1, 2),  # Inception 3a, 5x5 branch
    "incep1x1": ConvShape(8, 28, 28, 192, 1, 16, 1, 0),  # Inception 3a, 1x1 reduce
}
POOL_SHAPES = {
    "pool32x16": PoolShape(64, 32, 32, 16, 2, 2),
    "pool112x64": PoolShape(8, 112, 112, 64, 3, 2),  # ResNet's 3x3 stride-2 max pool
}
DENSE_SHAPES = {
    "fc4096": DenseShape(64, 4096, 1000),  # a classifier head
    "lenet_fc": DenseShape(64, 400, 120),
}
# --tiny: seconds even on the python backend and in the CUDA simulator (tests use these)
TINY_CONV = {"tiny": ConvShape(2, 8, 8, 3, 3, 4, 1, 1)}
TINY_POOL = {"tinypool": PoolShape(2, 8, 8, 4, 2, 2)}
TINY_DENSE = {"tinyfc": DenseShape(4, 16, 8)}

CONV_OPS = ("conv_fwd", "conv_bwd")
POOL_OPS = ("maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd")
DENSE_OPS = ("dense",)
ALL_OPS = CONV_OPS + POOL_OPS + DENSE_OPS
IMPLS = ("nbcnn", "numpy", "torch")


def out_size(size: int, f: int, stride: int, pad: int) -> int:
    """``H_out = (H + 2 * pad - f) // stride + 1``"""
    return (size + 2 * pad - f) // stride + 1


def conv_flops(s: ConvShape, op: str = "conv_fwd") -> int:
    """Useful flops: ``2 * N * H_out * W_out * C_out * f * f * C_in`` forward; backward twice that
    (dX and dW each cost as much as the forward; db is negligible)."""
    fwd = 2 * s.N * out_size(s.H, s.f, s.stride, s.pad) * out_size(s.W, s.f, s.stride, s.pad) * s.C_out * s.f * s.f * s.C_in
    return fwd if op == "conv_fwd" else 2 * fwd


def dense_flops(s: DenseShape) -> int:
    return 2 * s.N * s.D * s.M


def pool_bytes(s: PoolShape, op: str, itemsize: int = 4) -> int:
    """Bytes a pooling op must move: forward reads x, writes p; max backward reads dp and x,
    writes dx; average backward reads dp, writes dx."""
    x = s.N * s.H * s.W * s.C
    p = s.N * out_size(s.H, s.f, s.s, 0) * out_size(s.W, s.f, s.s, 0) * s.C
    n = {"maxpool_fwd": x + p, "avgpool_fwd": x + p, "maxpool_bwd": p + x + x, "avgpool_bwd": p + x}[op]
    return n * itemsize


def ops_for(shape) -> tuple[str, ...]:
    return {ConvShape: CONV_OPS, PoolShape: POOL_OPS, DenseShape: DENSE_OPS}[type(shape)]


def shape_suite(tiny: bool = False) -> dict[str, tuple]:
    if tiny:
        return {**TINY_CONV, **TINY_POOL, **TINY_DENSE}
    return {**CONV_SHAPES, **POOL_SHAPES, **DENSE_SHAPES}


def all_named_shapes() -> dict[str, tuple]:
    return {**shape_suite(False), **shape_suite(True)}


# --------------------------------------------------------------------------- inputs


def conv_inputs(s: ConvShape, seed: int = 0, dtype=np.float32):
    """x (N, H, W, C_in), W (f, f, C_in, C_out), b (C_out,) and an upstream gradient dz."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.H, s.W, s.C_in)).astype(dtype)
    W = (rng.standard_normal((s.f, s.f, s.C_in, s.C_out)) / np.sqrt(s.f * s.f * s.C_in)).astype(dtype)
    b = rng.standard_normal(s.C_out).astype(dtype)
    dz = rng.standard_normal((s.N, out_size(s.H, s.f, s.stride, s.pad), out_size(s.W, s.f, s.stride, s.pad),
                              s.C_out)).astype(dtype)
    return x, W, b, dz


def pool_inputs(s: PoolShape, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((s.N, s.H, s.W, s.C)).astype(dtype)
    dp = rng.standard_normal((s.N, out_size(s.H, s.f, s.s, 0), out_size(s.W, s.f, s.s, 0), s.C)).astype(dtype)
    return x, dp


def dense_inputs(s: DenseShape, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((s.N, s.D)).astype(dtype),
            (rng.standard_normal((s.D, s.M)) / np.sqrt(s.D)).astype(dtype),
            rng.standard_normal(s.M).astype(dtype))


# --------------------------------------------------------------------------- the numpy peer


def im2col_conv2d(x, W, b, stride: int = 1, pad: int = 0):
    """Convolution as one matrix product, the way most libraries do it on a CPU:

        cols (N*H_out*W_out, f*f*C_in) = every window of the padded x, flattened (im2col)
        z = cols @ W.reshape(f*f*C_in, C_out) + b        (BLAS sgemm does the flops)
    """
    f_h, f_w, C_in, C_out = W.shape
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (f_h, f_w), axis=(1, 2))  # N, H', W', C, f_h, f_w
    windows = windows[:, ::stride, ::stride]
    N, H_out, W_out = windows.shape[:3]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(N * H_out * W_out, f_h * f_w * C_in)  # the copy
    z = cols @ W.reshape(f_h * f_w * C_in, C_out)
    z += b
    return z.reshape(N, H_out, W_out, C_out)


# --------------------------------------------------------------------------- timing


def time_runs(fn, repeat: int, warmup: int = 1, sync=None) -> list[float]:
    """Seconds per call of ``fn()`` over ``repeat`` runs after ``warmup`` (``sync()`` waits for a GPU)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(max(repeat, 1)):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return times


def _record(impl, op, name, shape, times, **extra):
    rec = {"impl": impl, "op": op, "shape": name, "dims": list(shape), "min_s": min(times),
           "median_s": statistics.median(times), "runs": len(times)}
    if op in CONV_OPS:
        rec["flops"] = conv_flops(shape, op)
    elif op in DENSE_OPS:
        rec["flops"] = dense_flops(shape)
    else:
        rec["bytes"] = pool_bytes(shape, op)
    rec.update(extra)
    return rec


def rate(rec) -> float | None:
    """GFLOP/s (conv, dense) or GB/s (pooling) of the fastest run."""
    if not rec or not rec.get("min_s"):
        return None
    return (rec["flops"] if "flops" in rec else rec["bytes"]) / rec["min_s"] / 1e9


def unit(op: str) -> str:
    return "GB/s" if op in POOL_OPS else "GFLOP/s"


# --------------------------------------------------------------------------- workers (one per subprocess)


def _nbcnn_cases(name, shape, ops, to_dev):
    """(op, zero-argument function) pairs calling the public nbcnn ops on prepared inputs."""
    import nbcnn

    cases = []
    if isinstance(shape, ConvShape):
        x, W, b, dz = (to_dev(a) for a in conv_inputs(shape))
        st, pd = shape.stride, shape.pad
        cases += [("conv_fwd", lambda: nbcnn.conv2d(x, W, b, st, pd)),
                  ("conv_bwd", lambda: nbcnn.conv2d_backward(dz, x, W, st, pd))]
    elif isinstance(shape, PoolShape):
        x, dp = (to_dev(a) for a in pool_inputs(shape))
        f, s = shape.f, shape.s
        # the backward gets the forward's argmax, computed once here, as training does (and torch's idx)
        argmax = nbcnn.max_pool2d(x, f, s, return_argmax=True)[1] if "maxpool_bwd" in ops else None
        cases += [("maxpool_fwd", lambda: nbcnn.max_pool2d(x, f, s)),
                  ("maxpool_bwd", lambda: nbcnn.max_pool2d_backward(dp, x, f, s, argmax=argmax)),
                  ("avgpool_fwd", lambda: nbcnn.avg_pool2d(x, f, s)),
                  ("avgpool_bwd", lambda: nbcnn.avg_pool2d_backward(dp, x, f, s))]
    else:
        x, W, b = (to_dev(a) for a in dense_inputs(shape))
        cases += [("dense", lambda: nbcnn.dense(x, W, b))]
    return [(op, fn) for op, fn in cases if op in ops]


def _host_arrays(shape):
    if isinstance(shape, ConvShape):
        return conv_inputs(shape)
    if isinstance(shape, PoolShape):
        return pool_inputs(shape)
    return dense_inputs(shape)


def worker_nbcnn(shapes, ops, repeat, backend, variant="fast"):
    """Time nbcnn's public ops. variant "naive" runs the readable loops compiled (NBCNN_FAST=0,
    set by the parent), "python" the plain Python source (backend python)."""
    import nbcnn

    records = []
    sync = None
    if backend == "cuda":
        from numba import cuda

        sync = cuda.synchronize
    with nbcnn.use_backend(backend):
        for name, shape in shapes.items():
            extra = {}
            if backend == "cuda":
                from numba import cuda

                host = _host_arrays(shape)
                h2d = time_runs(lambda: [cuda.to_device(a) for a in host], repeat, sync=sync)
                extra = {"h2d_s": min(h2d)}  # the op's inputs, host -> device
                to_dev = cuda.to_device
            else:
                to_dev = np.asarray
            for op, fn in _nbcnn_cases(name, shape, ops, to_dev):
                times = time_runs(fn, repeat, sync=sync)
                if backend == "cuda":  # the op's outputs, device -> host
                    outs = fn()
                    outs = outs if isinstance(outs, tuple) else (outs,)
                    extra["d2h_s"] = min(time_runs(lambda: [o.copy_to_host() for o in outs], repeat, sync=sync))
                records.append(_record("nbcnn", op, name, shape, times, backend=backend, variant=variant, **extra))
    return records


def worker_numpy(shapes, ops, repeat):
    """numpy: im2col + BLAS for conv forward, ``x @ W + b`` for dense (no backward, no pooling)."""
    records = []
    for name, shape in shapes.items():
        if isinstance(shape, ConvShape) and "conv_fwd" in ops:
            x, W, b, _ = conv_inputs(shape)
            times = time_runs(lambda: im2col_conv2d(x, W, b, shape.stride, shape.pad), repeat)
            records.append(_record("numpy", "conv_fwd", name, shape, times))
        if isinstance(shape, DenseShape) and "dense" in ops:
            x, W, b = dense_inputs(shape)
            times = time_runs(lambda: x @ W + b, repeat)
            records.append(_record("numpy", "dense", name, shape, times))
    return records


def worker_torch(shapes, ops, repeat, device="cpu"):
    """PyTorch with channels_last tensors (oneDNN on the CPU), forward and the backward ops
    autograd would call (max pool backward gets the forward's indices, as autograd does)."""
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.allow_tf32 = False  # compare FP32 with FP32
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if device == "cuda" else None
    cl = torch.channels_last
    records = []
    with torch.no_grad():
        for name, shape in shapes.items():
            extra = {"device": device, "threads": torch.get_num_threads()}
            cases = []
            if isinstance(shape, ConvShape):
                x, W, b, dz = conv_inputs(shape)
                xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                Wt = torch.from_numpy(W).permute(3, 2, 0, 1).contiguous(memory_format=cl).to(device)
                bt = torch.from_numpy(b).to(device)
                dzt = torch.from_numpy(dz).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                st, pd = [shape.stride] * 2, [shape.pad] * 2
                cases += [
                    ("conv_fwd", lambda: F.conv2d(xt, Wt, bt, st, pd)),
                    ("conv_bwd", lambda: torch.ops.aten.convolution_backward(
                        dzt, xt, Wt, [shape.C_out], st, pd, [1, 1], False, [0, 0], 1, [True, True, True])),
                ]
            elif isinstance(shape, PoolShape):
                x, dp = pool_inputs(shape)
                xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                dpt = torch.from_numpy(dp).permute(0, 3, 1, 2).contiguous(memory_format=cl).to(device)
                k, s = [shape.f] * 2, [shape.s] * 2
                _, idx = F.max_pool2d(xt, k, s, return_indices=True)
                cases += [
                    ("maxpool_fwd", lambda: F.max_pool2d(xt, k, s)),
                    ("maxpool_bwd", lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                        dpt, xt, k, s, [0, 0], [1, 1], False, idx)),
                    ("avgpool_fwd", lambda: F.avg_pool2d(xt, k, s)),
                    ("avgpool_bwd", lambda: torch.ops.aten.avg_pool2d_backward(
                        dpt, xt, k, s, [0, 0], False, True, None)),
                ]
            else:
                x, W, b = (torch.from_numpy(a).to(device) for a in dense_inputs(shape))
                cases += [("dense", lambda: torch.addmm(b, x, W))]
            for op, fn in cases:
                if op in ops:
                    records.append(_record("torch", op, name, shape, time_runs(fn, repeat, sync=sync), **extra))
    return records


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _worker_main(args) -> None:
    named = all_named_shapes()
    if args.ladder_python:  # the readable kernel source, run as Python, on one (tiny) conv shape
        print("NBCNN_BENCH_JSON " + json.dumps(_ladder_python(ConvShape(*json.loads(args.ladder_python)))))
        return
    shapes = {n: named[n] for n in args.shapes.split(",") if n}
    ops = tuple(args.ops.split(","))
    if args.worker == "nbcnn":
        records = worker_nbcnn(shapes, ops, args.repeat, args.backend, args.variant)
    elif args.worker == "numpy":
        records = worker_numpy(shapes, ops, args.repeat)
    else:
        records = worker_torch(shapes, ops, args.repeat, "cuda" if args.backend == "cuda" else "cpu")
    print("NBCNN_BENCH_JSON " + json.dumps(records))


def run_worker(worker: str, shapes, ops, repeat: int, backend: str = "cpu", variant: str = "fast",
               env: dict | None = None, extra_args=()) -> list[dict] | dict:
    """Run one worker in a fresh ``python -m nbcnn.benchmark`` process; return its JSON."""
    cmd = [sys.executable, "-m", "nbcnn.benchmark", "--worker", worker, "--shapes", ",".join(shapes),
           "--ops", ",".join(ops), "--repeat", str(repeat), "--backend", backend, "--variant", variant,
           *extra_args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=_import_root())
    for line in proc.stdout.splitlines():
        if line.startswith("NBCNN_BENCH_JSON "):
            return json.loads(line[len("NBCNN_BENCH_JSON "):])
    raise RuntimeError(f"benchmark worker {worker!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _import_root() -> str:
    """The directory holding the ``nbcnn`` package, so ``python -m nbcnn.benchmark`` finds this copy."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- compile time

_COMPILE_SCRIPT = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
import nbcnn
t1 = time.perf_counter()
backend = sys.argv[1]
with nbcnn.use_backend(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    W = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = np.zeros(4, np.float32)
    nbcnn.conv2d(x, W, b, 1, 1)
    t2 = time.perf_counter()
    nbcnn.max_pool2d(x, 2)
    t3 = time.perf_counter()
print("NBCNN_BENCH_JSON " + json.dumps({"import_s": t1 - t0, "first_conv_s": t2 - t1, "first_pool_s": t3 - t2}))
"""


def compile_times(backend: str = "cpu") -> dict:
    """``import nbcnn``, then the first conv2d and max_pool2d (float32, tiny), each in a fresh
    process: cold = an empty NUMBA_CACHE_DIR (JIT compiles), warm = a second process on that cache."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="nbcnn-bench-cache-") as cache:
        for label in ("cold", "warm"):
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, backend], capture_output=True, text=True,
                                  env={**os.environ, "NUMBA_CACHE_DIR": cache}, cwd=_import_root())
            wall = time.perf_counter() - t
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("NBCNN_BENCH_JSON ")]
            if not line:
                raise RuntimeError(f"compile-time probe failed:\n{proc.stderr[-3000:]}")
            rec = json.loads(line[0][len("NBCNN_BENCH_JSON "):])
            rec["process_s"] = wall
            out[label] = rec
    out["warm"]["import_plus_first_conv_s"] = out["warm"]["import_s"] + out["warm"]["first_conv_s"]
    out["target_s"] = 1.0
    return out


# --------------------------------------------------------------------------- machine peak


def cpu_peak() -> dict:
    """Peak FP32 of this CPU from /proc/cpuinfo: cores x GHz x FMA units x lanes x 2 flops.

    Assumes 2 FMA pipes per core (Intel since Haswell, AMD since Zen 2) and that every core
    the process may use is a physical core (on a VM they may be hyper-threads: then halve it).
    """
    flags, mhz, model = set(), None, platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(val.split())
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(val)
                elif key == "model name":
                    model = val.strip()
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx" in flags:
        lanes, isa = 8, "AVX2" if "avx2" in flags else "AVX"
    else:
        lanes, isa = 4, "SSE"
    fma = "fma" in flags
    per_cycle = 2 * lanes * (2 if fma else 1)  # 2 pipes x lanes x (mul+add in one FMA, or one op)
    ghz = (mhz or 2000.0) / 1000
    gflops = cores * ghz * per_cycle
    return {
        "model": model, "cores": cores, "ghz": ghz, "isa": isa, "fma": fma, "flops_per_cycle_per_core": per_cycle,
        "peak_gflops": gflops,
        "assumption": (f"{cores} cores x {ghz:.2f} GHz x 2 {'FMA' if fma else 'FP'} pipes x {lanes} fp32 lanes ({isa})"
                       f"{' x 2 (FMA)' if fma else ''} = {gflops:.0f} GFLOP/s"
                       f"{'' if mhz else ' (no cpu MHz in /proc/cpuinfo: 2 GHz assumed)'}; "
                       "cores taken as physical, clock as reported (turbo not counted)"),
    }


# --------------------------------------------------------------------------- the run


def _peers(backend: str, peers: bool) -> list[str]:
    if not peers:
        return []
    out = []
    if backend == "cpu":
        out.append("numpy")
    if torch_available() and backend in ("cpu", "cuda"):
        out.append("torch")
    return out


def merge_rounds(records) -> list[dict]:
    """One record per (impl, op, shape) from several rounds: the fastest run of all rounds
    (``min_s``), the median of the rounds' medians, and the runs added up."""
    merged = {}
    for r in records:
        key = (r["impl"], r["op"], r["shape"])
        if key not in merged:
            merged[key] = {**r, "medians": [r["median_s"]]}
            continue
        m = merged[key]
        m["min_s"] = min(m["min_s"], r["min_s"])
        m["medians"].append(r["median_s"])
        m["runs"] += r["runs"]
    for m in merged.values():
        m["median_s"] = statistics.median(m.pop("medians"))
    return list(merged.values())


def run_suite(backend: str = "cpu", names=None, repeat: int = 5, tiny: bool = False, ops=ALL_OPS,
              peers: bool = True, compile_probe: bool = True, rounds: int = 1) -> dict:
    """Everything ``nbcnn bench`` shows, as a dict (``--json`` prints it).

    ``rounds`` > 1 runs nbcnn and the peers in turn that many times (nbcnn, numpy, torch,
    nbcnn, ...: each in a fresh process) and keeps each one's fastest run: on a shared
    machine a slow spell then has to last through every round of one of them to show."""
    suite = shape_suite(tiny)
    named = all_named_shapes()
    if names:
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"unknown shape(s) {unknown}; choose from {sorted(named)}")
        suite = {n: named[n] for n in names}
    notes = []
    if backend == "python" and not tiny and any(s.N * s.H * s.W > 512 for s in suite.values() if hasattr(s, "H")):
        notes.append("the python backend runs the readable loops at ~1e6 operations/s: use --tiny")
    ops = tuple(o for o in ops if o in ALL_OPS)
    result = {"backend": backend, "repeat": repeat, "tiny": tiny, "machine": cpu_peak(), "notes": notes,
              "shapes": {n: list(s) for n, s in suite.items()}, "records": [], "rounds": rounds}
    peer_list = list(_peers(backend, peers))
    if "torch" in peer_list and backend == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                notes.append("torch has no CUDA here: no GPU peer")
                peer_list.remove("torch")
        except Exception:  # pragma: no cover
            peer_list.remove("torch")
    records = []
    for _ in range(max(rounds, 1)):
        records += run_worker("nbcnn", suite, ops, repeat, backend)
        for peer in peer_list:
            records += run_worker(peer, suite, ops, repeat, backend)
    result["records"] = merge_rounds(records)
    result["summary"] = torch_summary(rows(result))
    if backend == "cuda":
        notes.append("cuda: device time (cuda.synchronize() around each call); h2d/d2h = copying the "
                     "inputs to / outputs from the GPU, timed apart and not included")
    if compile_probe:
        result["compile"] = compile_times(backend)
    return result


def rows(result) -> list[dict]:
    """One row per (op, shape): nbcnn's time and rate, the peers' rates, nbcnn's rate / torch's."""
    by = {}
    for r in result["records"]:
        by.setdefault((r["op"], r["shape"]), {})[r["impl"]] = r
    out = []
    for (op, shape), impls in by.items():
        nb, tt = impls.get("nbcnn"), impls.get("torch")
        row = {"op": op, "shape": shape, "unit": unit(op)}
        for impl in IMPLS:
            row[impl] = rate(impls.get(impl))
        row["min_ms"] = nb["min_s"] * 1e3 if nb else None
        row["median_ms"] = nb["median_s"] * 1e3 if nb else None
        row["vs_torch"] = (row["nbcnn"] / row["torch"]) if nb and tt and row["torch"] else None
        if nb and "h2d_s" in nb:
            row["h2d_ms"], row["d2h_ms"] = nb["h2d_s"] * 1e3, nb["d2h_s"] * 1e3
        out.append(row)
    order = {o: i for i, o in enumerate(ALL_OPS)}
    return sorted(out, key=lambda r: order[r["op"]])


def _fmt(v, spec=".1f", none="-"):
    return none if v is None else format(v, spec)


def _fmt_rate(v):
    """Rates: one decimal, or three significant digits below 10 (tiny shapes, python backend)."""
    return _fmt(v, ".3g" if v is not None and v < 10 else ".1f")


FAMILIES = {"conv forward": ("conv_fwd",), "conv backward": ("conv_bwd",), "pooling": POOL_OPS, "dense": DENSE_OPS}


def torch_summary(table_rows) -> dict:
    """Per family of ops (the issue's targets): the geometric mean of nbcnn / torch over its
    shapes, and the lowest ratio with where it is."""
    out = {}
    for family, ops in FAMILIES.items():
        got = [(r["vs_torch"], f"{r['op']} {r['shape']}" if len(ops) > 1 else r["shape"])
               for r in table_rows if r["op"] in ops and r["vs_torch"]]
        if got:
            lowest = min(got)
            geomean = float(np.exp(np.mean(np.log([v for v, _ in got]))))
            out[family] = {"geomean": geomean, "lowest": lowest[0], "lowest_at": lowest[1], "shapes": len(got)}
    return out


def format_table(result) -> str:
    """The aligned text table ``nbcnn bench`` prints."""
    rs = rows(result)
    cuda = result["backend"] == "cuda"
    head = ["op", "shape", "unit", f"nbcnn-{result['backend']}", "numpy", "torch", "x torch", "min ms", "median ms"]
    if cuda:
        head += ["h2d ms", "d2h ms"]
    body = []
    for r in rs:
        line = [r["op"], r["shape"], r["unit"], _fmt_rate(r["nbcnn"]), _fmt_rate(r["numpy"]), _fmt_rate(r["torch"]),
                _fmt(r["vs_torch"], ".2f") + ("x" if r["vs_torch"] is not None else ""),
                _fmt(r["min_ms"], ".3f"), _fmt(r["median_ms"], ".3f")]
        if cuda:
            line += [_fmt(r.get("h2d_ms"), ".3f"), _fmt(r.get("d2h_ms"), ".3f")]
        body.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    left = {0, 1, 2}

    def fmt_line(cells):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    m = result["machine"]
    rounds = result.get("rounds", 1)
    runs = f"{result['repeat']} runs after a warm-up" + (f", in each of {rounds} rounds" if rounds > 1 else "")
    lines = [f"nbcnn bench: backend {result['backend']}, {runs}; rate of the "
             f"fastest run (conv/dense GFLOP/s of useful flops, pooling GB/s moved); x torch = nbcnn / torch",
             f"machine: {m['model']}; peak FP32 {m['peak_gflops']:.0f} GFLOP/s ({m['assumption']})",
             fmt_line(head), fmt_line(["-" * w for w in widths])]
    lines += [fmt_line(b) for b in body]
    summary = torch_summary(rs)
    if summary:
        lines.append("x torch, geometric mean (lowest): " + "; ".join(
            f"{family} {s['geomean']:.2f} ({s['lowest']:.2f} {s['lowest_at']})" for family, s in summary.items()))
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    c = result.get("compile")
    if c:
        lines.append(
            f"JIT compile (fresh process, empty NUMBA_CACHE_DIR): import {c['cold']['import_s']:.2f} s, first conv "
            f"{c['cold']['first_conv_s']:.2f} s, first max pool {c['cold']['first_pool_s']:.2f} s")
        w = c["warm"]
        ok = "ok" if w["import_plus_first_conv_s"] <= c["target_s"] else "OVER"
        lines.append(
            f"warm cache (second process): import {w['import_s']:.2f} s + first conv {w['first_conv_s']:.2f} s = "
            f"{w['import_plus_first_conv_s']:.2f} s (target <= {c['target_s']:.0f} s: {ok}); first max pool "
            f"{w['first_pool_s']:.2f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the ladder


def _ladder_python(s: ConvShape) -> dict:
    """The readable conv kernel run as plain Python (the python backend) on shape ``s``."""
    import nbcnn

    x, W, b, _ = conv_inputs(s)
    with nbcnn.use_backend("python"):
        times = time_runs(lambda: nbcnn.conv2d(x, W, b, s.stride, s.pad), 1, warmup=0)
    return _record("nbcnn", "conv_fwd", "python-tiny", s, times, variant="python")


def tiny_version(s: ConvShape) -> ConvShape:
    """A shape the plain Python loops finish in well under a second: one image, a 2x2 output,
    the channels capped at 8 (the loops' speed per flop hardly depends on the shape)."""
    size = (2 - 1) * s.stride + s.f - 2 * s.pad
    size = max(size, 1)
    return ConvShape(1, size, size, min(s.C_in, 8), s.f, min(s.C_out, 8), s.stride, s.pad)


def run_ladder(name: str = "vgg_b3", repeat: int = 3, peers: bool = True) -> dict:
    """One conv shape, from the lecture's loop to the fastest kernel: GFLOP/s and share of peak."""
    if name not in CONV_SHAPES and name not in TINY_CONV:
        raise ValueError(f"--ladder needs a conv shape; choose from {sorted({**CONV_SHAPES, **TINY_CONV})}")
    s = {**CONV_SHAPES, **TINY_CONV}[name]
    from .kernels import conv

    steps = []
    tiny = tiny_version(s)
    rec = run_worker("nbcnn", {}, ("conv_fwd",), 1, extra_args=["--ladder-python", json.dumps(list(tiny))])
    steps.append(("readable kernel, python backend", rec,
                  f"tiny shape N={tiny.N} {tiny.H}x{tiny.W}x{tiny.C_in} -> {tiny.C_out} channels, not the one "
                  "above (GFLOP/s of that)"))
    steps.append(("naive compiled loop (Kernel.naive_cpu)",
                  run_worker("nbcnn", {name: s}, ("conv_fwd",), repeat, env={"NBCNN_FAST": "0"}, variant="naive")[0],
                  "the same loop nest, @njit(parallel=True)"))
    if conv.FORWARD.fast_cpu is not None:
        steps.append(("im2col + BLAS (NBCNN_DIRECT=0)",
                      run_worker("nbcnn", {name: s}, ("conv_fwd",), repeat,
                                 env={"NBCNN_FAST": "1", "NBCNN_DIRECT": "0"}, variant="im2col")[0],
                      "copy the windows into a matrix, one BLAS product (fast/im2col.py)"))
        steps.append(("fast kernel (Kernel.cpu)",
                      run_worker("nbcnn", {name: s}, ("conv_fwd",), repeat, env={"NBCNN_FAST": "1"})[0],
                      "register tile: 4 px x 16 ch (8 px x 8 ch for <= 8 ch) in ymm registers (fast/direct.py)"))
    else:
        steps.append(("fast kernel (Kernel.cpu)", None, "none installed for conv2d_forward"))
    if peers:
        steps.append(("numpy im2col + BLAS", run_worker("numpy", {name: s}, ("conv_fwd",), repeat)[0],
                      "one sgemm after the im2col copy"))
        if torch_available():
            steps.append(("torch channels_last", run_worker("torch", {name: s}, ("conv_fwd",), repeat)[0],
                          "oneDNN"))
        else:
            steps.append(("torch channels_last", None, "torch not installed"))
    machine = cpu_peak()
    out = {"shape": name, "dims": list(s), "flops": conv_flops(s), "machine": machine, "steps": []}
    for label, rec, note in steps:
        g = rate(rec)
        out["steps"].append({"step": label, "gflops": g, "peak_share": g / machine["peak_gflops"] if g else None,
                             "min_s": rec["min_s"] if rec else None, "note": note, "record": rec})
    return out


def format_ladder(lad) -> str:
    m = lad["machine"]
    head = ["step", "GFLOP/s", "% of peak", "min ms", "note"]
    body = [[st["step"], _fmt(st["gflops"], ".3g" if (st["gflops"] or 1) < 1 else ".1f"),
             _fmt(st["peak_share"] and 100 * st["peak_share"], ".2g" if (st["peak_share"] or 1) < 0.01 else ".1f"),
             _fmt(st["min_s"] and st["min_s"] * 1e3, ".2f"), st["note"]] for st in lad["steps"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def fmt_line(cells):
        return "  ".join(str(c).ljust(w) if i in (0, 4) else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    s = ConvShape(*lad["dims"])
    return "\n".join([
        f"optimisation ladder, conv forward {lad['shape']} (N={s.N}, {s.H}x{s.W}x{s.C_in}, {s.f}x{s.f} -> {s.C_out}, "
        f"stride {s.stride}, pad {s.pad}): {lad['flops'] / 1e9:.2f} GFLOP per call",
        f"peak FP32 assumed: {m['assumption']}",
        fmt_line(head), fmt_line(["-" * w for w in widths]), *[fmt_line(b) for b in body]])


# --------------------------------------------------------------------------- python -m nbcnn.benchmark


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m nbcnn.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=IMPLS, help="(internal) time one implementation, print JSON")
    p.add_argument("--shapes", default="")
    p.add_argument("--ops", default=",".join(ALL_OPS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--variant", default="fast")
    p.add_argument("--ladder-python", default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.worker or args.ladder_python:
        _worker_main(args)
        return
    names = [n for n in args.shapes.split(",") if n] or None
    result = run_suite(args.backend, names, args.repeat, args.tiny, tuple(args.ops.split(",")))
    print(json.dumps(result, indent=1) if args.json else format_table(result))


if __name__ == "__main__":
    main()
