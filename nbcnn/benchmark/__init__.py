"""The code behind ``nbcnn bench``: time the kernels, next to numpy and PyTorch, on named shapes.

    nbcnn bench                            conv fwd/bwd, pooling fwd/bwd, dense and nms on the cpu backend
    nbcnn bench --shapes vgg_b3,incep1x1   some of the shapes only;  --repeat 10  more runs
    nbcnn bench --ops nms                  non-max suppression of 10,000 boxes only
    nbcnn bench --backend cuda             device time (host<->device copies reported apart)
    nbcnn bench --ladder --shape vgg_b3    one conv, from the readable Python loop to the fast kernel
    nbcnn bench --models                   LeNet-5 training, VGG-16 and YOLOv3-tiny forward, against
                                           PyTorch (and darknet's libdarknet.so for YOLOv3-tiny)
    nbcnn bench --json                     everything as JSON
    nbcnn bench --threads 1                nbcnn and every peer on one thread (steadier on a shared machine)

One concern per file:

    shapes.py   the named conv / pool / dense / boxes shapes (and --tiny ones), their work, inputs
    timing.py   how a call is timed, and the record a timing becomes
    machine.py  this CPU's peak FP32 rate
    peers.py    what nbcnn is compared with: numpy im2col + BLAS and greedy NMS, PyTorch channels_last
    worker.py   what runs inside one worker process (python -m nbcnn.benchmark.worker)
    runner.py   the parent: worker processes, rounds, JIT compile time, run_suite
    threads.py  --threads N: the thread pools of nbcnn and every peer, the same size
    report.py   the table: rates, nbcnn / torch ratios, their geometric mean per family of ops
    ladder.py   --ladder: one conv shape, from the lecture's loop to the fast kernel
    models.py   --models: whole networks (python -m nbcnn.benchmark.models for its workers)
    yolo.py     --models: YOLOv3-tiny in nbcnn, in torch (torch_darknet.py) and in darknet (ctypes)
    torch_darknet.py   a darknet cfg + a DarknetNetwork's arrays as a torch module (torch worker only)

What is reported, and how:

* Every implementation runs in its *own* subprocess (``python -m nbcnn.benchmark.worker
  --worker nbcnn|numpy|torch ...``): numba's and torch's thread pools in one process slow each
  other down (measured: torch 229 -> 137 GFLOP/s), so they never share one.
* Each op runs once to warm up (and JIT-compile), then ``--repeat`` times; the table gives
  the rate of the fastest run and the minimum and median time. On a shared machine compare
  the ratios within one run, not numbers between runs.
* Convolutions in GFLOP/s of *useful* flops: forward ``2 * N * H_out * W_out * C_out * f * f *
  C_in`` (one multiply and one add per filter tap), backward (dX + dW + db) twice that. Pooling
  is memory-bound, so it is given in GB/s of the bytes it must read and write. NMS (class-agnostic,
  IoU 0.5, on a fixed set of clustered boxes) in Mbox/s: million boxes in per second; a family of
  its own in the geometric means.
* JIT compile time apart from run time: ``import nbcnn`` and the first conv in a fresh process
  with an empty ``NUMBA_CACHE_DIR`` (cold: everything compiles), then again in a second
  process with that cache (warm: what a learner waits for every time after the first).
* Peers: ``numpy`` is im2col + one BLAS matrix product, and for NMS the greedy loop vectorised
  per kept box (peers.py; always there); ``torch`` is PyTorch on the CPU with channels_last
  tensors (oneDNN), when it is installed. torch's NMS is torchvision's: without torchvision
  the NMS rows have the numpy peer only.

``python -m nbcnn.benchmark`` runs the suite without the ``nbcnn`` command (see __main__.py).
"""

from .ladder import format_ladder, run_ladder, tiny_version
from .machine import cpu_peak
from .peers import im2col_conv2d, numpy_nms, torch_available, torchvision_available
from .report import FAMILIES, format_table, rate, rows, torch_summary, unit
from .runner import compile_times, merge_rounds, run_suite, run_worker
from .shapes import (ALL_OPS, BOX_OPS, BOX_SHAPES, CONV_OPS, CONV_SHAPES, DENSE_OPS, DENSE_SHAPES, IMPLS, NMS_IOU,
                     POOL_OPS, POOL_SHAPES, TINY_BOXES, TINY_CONV, TINY_DENSE, TINY_POOL, BoxesShape, ConvShape,
                     DenseShape, PoolShape, all_named_shapes, boxes_inputs, conv_flops, conv_inputs, dense_flops,
                     dense_inputs, inputs_for, ops_for, out_size, pool_bytes, pool_inputs, shape_suite)
from .timing import throughput, time_runs, timing_record


def __getattr__(name):
    # models.py is imported on first use, not above: it is also its workers' entry point, and
    # ``python -m nbcnn.benchmark.models`` would otherwise find it imported already (runpy warns).
    if name in ("run_models", "format_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
