"""The parent side of ``nbcnn bench``: start the worker processes, run the rounds, merge them,
and time JIT compilation in fresh processes.

Every implementation runs in its *own* process (``python -m nbcnn.benchmark.worker``, see
worker.py): numba's and torch's thread pools in one process slow each other down
(measured: torch 229 -> 137 GFLOP/s), so they never share one.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from .machine import cpu_peak
from .peers import torch_available, torchvision_available
from .report import rows, torch_summary
from .shapes import ALL_OPS, BOX_OPS, all_named_shapes, ops_for, shape_suite
from .threads import threads_args, worker_env

JSON_PREFIX = "NBCNN_BENCH_JSON "  # a worker prints its result on one line that starts with this


def package_root() -> str:
    """The directory holding the ``nbcnn`` package, so the workers' ``python -m nbcnn...`` finds this copy."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_worker(worker: str, shapes, ops, repeat: int, backend: str = "cpu", variant: str = "fast",
               env: dict | None = None, extra_args=()) -> list[dict] | dict:
    """Run one worker in a fresh ``python -m nbcnn.benchmark.worker`` process; return its JSON."""
    cmd = [sys.executable, "-m", "nbcnn.benchmark.worker", "--worker", worker, "--shapes", ",".join(shapes),
           "--ops", ",".join(ops), "--repeat", str(repeat), "--backend", backend, "--variant", variant,
           *extra_args]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=package_root())
    for line in proc.stdout.splitlines():
        if line.startswith(JSON_PREFIX):
            return json.loads(line[len(JSON_PREFIX):])
    raise RuntimeError(f"benchmark worker {worker!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


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
                                  env={**os.environ, "NUMBA_CACHE_DIR": cache}, cwd=package_root())
            wall = time.perf_counter() - t
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith(JSON_PREFIX)]
            if not line:
                raise RuntimeError(f"compile-time probe failed:\n{proc.stderr[-3000:]}")
            rec = json.loads(line[0][len(JSON_PREFIX):])
            rec["process_s"] = wall
            out[label] = rec
    out["warm"]["import_plus_first_conv_s"] = out["warm"]["import_s"] + out["warm"]["first_conv_s"]
    out["target_s"] = 1.0
    return out


# --------------------------------------------------------------------------- the run


def peer_names(backend: str, peers: bool) -> list[str]:
    """The peers timed next to nbcnn on ``backend``: numpy on the cpu, torch when it is installed."""
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
              peers: bool = True, compile_probe: bool = True, rounds: int = 1, threads: int | None = None) -> dict:
    """Everything ``nbcnn bench`` shows, as a dict (``--json`` prints it).

    ``rounds`` > 1 runs nbcnn and the peers in turn that many times (nbcnn, numpy, torch,
    nbcnn, ...: each in a fresh process) and keeps each one's fastest run: on a shared
    machine a slow spell then has to last through every round of one of them to show.
    ``threads``: every worker (nbcnn, numpy's BLAS, torch) on that many threads (threads.py);
    None: each library's default."""
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
    asked = suite
    suite = {n: s for n, s in suite.items() if set(ops_for(s)) & set(ops)}  # only shapes an asked-for op runs on
    if not suite:
        fits = sorted(n for n, s in all_named_shapes().items() if set(ops_for(s)) & set(ops))
        raise ValueError(f"none of the shapes {sorted(asked)} has the op(s) {list(ops)}; they run on {fits}")
    result = {"backend": backend, "repeat": repeat, "tiny": tiny, "machine": cpu_peak(), "notes": notes,
              "shapes": {n: list(s) for n, s in suite.items()}, "records": [], "rounds": rounds, "threads": threads}
    peer_list = list(peer_names(backend, peers))
    if "torch" in peer_list and backend == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                notes.append("torch has no CUDA here: no GPU peer")
                peer_list.remove("torch")
        except Exception:  # pragma: no cover
            peer_list.remove("torch")
    if any(op in BOX_OPS for op in ops) and not torchvision_available():
        if "torch" in peer_list:
            notes.append("nms: torch's NMS is torchvision.ops.nms and torchvision is not installed: the nms rows "
                         "are compared with numpy's greedy loop only")
        if "torch" in peer_list and all(op in BOX_OPS for op in ops):
            peer_list.remove("torch")  # nothing for it to time
    records = []
    env, extra_args = worker_env(threads), threads_args(threads)
    for _ in range(max(rounds, 1)):
        records += run_worker("nbcnn", suite, ops, repeat, backend, env=env, extra_args=extra_args)
        for peer in peer_list:
            records += run_worker(peer, suite, ops, repeat, backend, env=env, extra_args=extra_args)
    result["records"] = merge_rounds(records)
    result["summary"] = torch_summary(rows(result))
    result["summary_vs_numpy"] = torch_summary(rows(result), peer="numpy")
    if backend == "cuda":
        notes.append("cuda: device time (cuda.synchronize() around each call); h2d/d2h = copying the "
                     "inputs to / outputs from the GPU, timed apart and not included")
    if compile_probe:
        result["compile"] = compile_times(backend)
    return result
