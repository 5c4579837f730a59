"""How one call is timed, and the record a timing becomes (the JSON ``nbcnn bench`` keeps)."""

from __future__ import annotations

import statistics
import time

from .shapes import BOX_OPS, CONV_OPS, DENSE_OPS, conv_flops, dense_flops, pool_bytes


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


def throughput(times, images: int = 1) -> dict:
    """Whole-model timings (models.py): the best and median seconds of the timed repeats, and
    the images per second of each."""
    times = sorted(times)
    return {"best_s": times[0], "median_s": times[len(times) // 2], "images_per_s": images / times[0],
            "images_per_s_median": images / times[len(times) // 2]}


def timing_record(impl: str, op: str, name: str, shape, times, **extra) -> dict:
    """One implementation's timings of one op on one named shape: the fastest and the median
    run, how many runs, and the op's work (``flops`` for conv and dense, ``bytes`` for pooling,
    ``boxes`` in for NMS)."""
    rec = {"impl": impl, "op": op, "shape": name, "dims": list(shape), "min_s": min(times),
           "median_s": statistics.median(times), "runs": len(times)}
    if op in CONV_OPS:
        rec["flops"] = conv_flops(shape, op)
    elif op in DENSE_OPS:
        rec["flops"] = dense_flops(shape)
    elif op in BOX_OPS:
        rec["boxes"] = shape.N
    else:
        rec["bytes"] = pool_bytes(shape, op)
    rec.update(extra)
    return rec
