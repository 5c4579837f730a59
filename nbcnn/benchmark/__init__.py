"""The code behind ``nbcnn bench``: time the kernels, next to numpy and PyTorch, on named shapes.

    nbcnn bench                            conv fwd/bwd, pooling fwd/bwd and dense on the cpu backend
    nbcnn bench --shapes vgg_b3,incep1x1   some of the shapes only;  --repeat 10  more runs
    nbcnn bench --backend cuda             device time (host<->device copies reported apart)
    nbcnn bench --ladder --shape vgg_b3    one conv, from the readable Python loop to the fast kernel
    nbcnn bench --models                   LeNet-5 training and VGG-16 forward, against PyTorch
    nbcnn bench --json                     everything as JSON

One concern per file:

    shapes.py   the named conv / pool / dense shapes (and --tiny ones), their flops or bytes, inputs
    timing.py   how a call is timed, and the record a timing becomes
    machine.py  this CPU's peak FP32 rate
    peers.py    what nbcnn is compared with: numpy im2col + BLAS, PyTorch channels_last
    worker.py   what runs inside one worker process (python -m nbcnn.benchmark.worker)
    runner.py   the parent: worker processes, rounds, JIT compile time, run_suite
    report.py   the table: rates, nbcnn / torch ratios, their geometric mean per family of ops
    ladder.py   --ladder: one conv shape, from the lecture's loop to the fast kernel
    models.py   --models: whole networks (python -m nbcnn.benchmark.models for its workers)

What is reported, and how:

* Every implementation runs in its *own* subprocess (``python -m nbcnn.benchmark.worker
  --worker nbcnn|numpy|torch ...``): numba's and torch's thread pools in one process slow each
  other down (measured: torch 229 -> 137 GFLOP/s), so they never share one.
* Each op runs once to warm up (and JIT-compile), then ``--repeat`` times; the table gives
  the rate of the fastest run and the minimum and median time. On a shared machine compare
  the ratios within one run, not numbers between runs.
* Convolutions in GFLOP/s of *useful* flops: forward ``2 * N * H_out * W_out * C_out * f * f *
  C_in`` (one multiply and one add per filter tap), backward (dX + dW + db) twice that. Pooling
  is memory-bound, so it is given in GB/s of the bytes it must read and write.
* JIT compile time apart from run time: ``import nbcnn`` and the first conv in a fresh process
  with an empty ``NUMBA_CACHE_DIR`` (cold: everything compiles), then again in a second
  process with that cache (warm: what a learner waits for every time after the first).
* Peers: ``numpy`` is im2col + one BLAS matrix product (peers.py; always there);
  ``torch`` is PyTorch on the CPU with channels_last tensors (oneDNN), when it is installed.

``python -m nbcnn.benchmark`` runs the suite without the ``nbcnn`` command (see __main__.py).
"""

from .ladder import format_ladder, run_ladder, tiny_version
from .machine import cpu_peak
from .peers import im2col_conv2d, torch_available
from .report import FAMILIES, format_table, rate, rows, torch_summary, unit
from .runner import compile_times, merge_rounds, run_suite, run_worker
from .shapes import (ALL_OPS, CONV_OPS, CONV_SHAPES, DENSE_OPS, DENSE_SHAPES, IMPLS, POOL_OPS, POOL_SHAPES, TINY_CONV,
                     TINY_DENSE, TINY_POOL, ConvShape, DenseShape, PoolShape, all_named_shapes, conv_flops, conv_inputs,
                     dense_flops, dense_inputs, inputs_for, ops_for, out_size, pool_bytes, pool_inputs, shape_suite)
from .timing import time_runs, timing_record


def __getattr__(name):
    # models.py is imported on first use, not above: it is also its workers' entry point, and
    # ``python -m nbcnn.benchmark.models`` would otherwise find it imported already (runpy warns).
    if name in ("run_models", "format_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
