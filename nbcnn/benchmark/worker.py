"""What runs inside one worker process: ``python -m nbcnn.benchmark.worker --worker nbcnn|numpy|torch``.

runner.py starts one fresh process per implementation (numba's and torch's thread pools in
one process slow each other down), with the shapes, ops and repeats on the command line.
The worker times them and prints its records as JSON on a line of its own that starts with
``NBCNN_BENCH_JSON `` (the parent skips any other output: numba's warnings, say).

``--ladder-python '[N, H, W, C_in, f, C_out, stride, pad]'`` instead times the readable conv
kernel run as plain Python on that one (tiny) shape: the ladder's first step.

This module is not imported by ``nbcnn.benchmark``: ``python -m`` runs it fresh.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from .ladder import time_python_conv
from .peers import time_numpy, time_torch
from .runner import JSON_PREFIX
from .shapes import (ALL_OPS, BOX_OPS, IMPLS, NMS_IOU, BoxesShape, ConvShape, PoolShape, all_named_shapes, boxes_inputs,
                     conv_inputs, dense_inputs, inputs_for, pool_inputs)
from .threads import use_numba_threads
from .timing import time_runs, timing_record


def nbcnn_cases(shape, ops, to_device) -> list[tuple]:
    """(op, zero-argument function) pairs calling the public nbcnn ops on prepared inputs."""
    import nbcnn

    cases = []
    if isinstance(shape, ConvShape):
        x, W, b, dz = (to_device(a) for a in conv_inputs(shape))
        st, pd = shape.stride, shape.pad
        cases += [("conv_fwd", lambda: nbcnn.conv2d(x, W, b, st, pd)),
                  ("conv_bwd", lambda: nbcnn.conv2d_backward(dz, x, W, st, pd))]
    elif isinstance(shape, BoxesShape):
        # host boxes in, host indices out on every backend: nbcnn.nms sorts on the host and
        # moves the boxes itself (what a detector's caller does)
        boxes, scores = boxes_inputs(shape)
        cases += [("nms", lambda: nbcnn.nms(boxes, scores, NMS_IOU))]
    elif isinstance(shape, PoolShape):
        x, dp = (to_device(a) for a in pool_inputs(shape))
        f, s = shape.f, shape.s
        # the backward gets the forward's argmax, computed once here, as training does (and torch's idx)
        argmax = nbcnn.max_pool2d(x, f, s, return_argmax=True)[1] if "maxpool_bwd" in ops else None
        cases += [("maxpool_fwd", lambda: nbcnn.max_pool2d(x, f, s)),
                  ("maxpool_bwd", lambda: nbcnn.max_pool2d_backward(dp, x, f, s, argmax=argmax)),
                  ("avgpool_fwd", lambda: nbcnn.avg_pool2d(x, f, s)),
                  ("avgpool_bwd", lambda: nbcnn.avg_pool2d_backward(dp, x, f, s))]
    else:
        x, W, b = (to_device(a) for a in dense_inputs(shape))
        cases += [("dense", lambda: nbcnn.dense(x, W, b))]
    return [(op, fn) for op, fn in cases if op in ops]


def time_nbcnn(shapes, ops, repeat, backend, variant="fast", threads=None) -> list[dict]:
    """Time nbcnn's public ops. variant "naive" runs the readable loops compiled (NBCNN_FAST=0,
    set by the parent), "python" the plain Python source (backend python). ``threads``: Numba's
    parallel loops on that many threads (None: its default, one per core)."""
    import nbcnn

    used_threads = use_numba_threads(threads)

    records = []
    sync = None
    if backend == "cuda":
        from numba import cuda

        sync = cuda.synchronize
    with nbcnn.use_backend(backend):
        for name, shape in shapes.items():
            extra = {}
            if backend == "cuda" and not isinstance(shape, BoxesShape):  # nms: its copies are in its time
                from numba import cuda

                host = inputs_for(shape)
                h2d = time_runs(lambda: [cuda.to_device(a) for a in host], repeat, sync=sync)
                extra = {"h2d_s": min(h2d)}  # the op's inputs, host -> device
                to_device = cuda.to_device
            else:
                to_device = np.asarray
            for op, fn in nbcnn_cases(shape, ops, to_device):
                times = time_runs(fn, repeat, sync=sync)
                if op in BOX_OPS:  # how many boxes survive: every implementation must agree
                    records.append(timing_record("nbcnn", op, name, shape, times, backend=backend, variant=variant,
                                                 kept=len(fn()), threads=used_threads, **extra))
                    continue
                if backend == "cuda":  # the op's outputs, device -> host
                    outs = fn()
                    outs = outs if isinstance(outs, tuple) else (outs,)
                    extra["d2h_s"] = min(time_runs(lambda: [o.copy_to_host() for o in outs], repeat, sync=sync))
                records.append(timing_record("nbcnn", op, name, shape, times, backend=backend, variant=variant,
                                             threads=used_threads, **extra))
    return records


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m nbcnn.benchmark.worker",
                                description="(internal) time one implementation, print its records as JSON")
    p.add_argument("--worker", choices=IMPLS, default="nbcnn")
    p.add_argument("--shapes", default="")
    p.add_argument("--ops", default=",".join(ALL_OPS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--variant", default="fast")
    p.add_argument("--threads", type=int, default=None, help="nbcnn's / torch's threads (default: theirs)")
    p.add_argument("--ladder-python", default=None)
    args = p.parse_args(argv)
    if args.ladder_python:  # the readable kernel source, run as Python, on one (tiny) conv shape
        print(JSON_PREFIX + json.dumps(time_python_conv(ConvShape(*json.loads(args.ladder_python)))))
        return
    named = all_named_shapes()
    shapes = {n: named[n] for n in args.shapes.split(",") if n}
    ops = tuple(args.ops.split(","))
    if args.worker == "nbcnn":
        records = time_nbcnn(shapes, ops, args.repeat, args.backend, args.variant, args.threads)
    elif args.worker == "numpy":
        records = time_numpy(shapes, ops, args.repeat)
    else:
        records = time_torch(shapes, ops, args.repeat, "cuda" if args.backend == "cuda" else "cpu", args.threads)
    print(JSON_PREFIX + json.dumps(records))


if __name__ == "__main__":
    main()
