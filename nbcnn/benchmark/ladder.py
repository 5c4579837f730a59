"""``nbcnn bench --ladder --shape vgg_b3``: one conv forward, from the lecture's loop to the fastest
kernel, each step in its own worker process, in GFLOP/s and as a share of the CPU's peak.

    readable kernel, python backend   the loop nest run as Python (on a tiny version of the shape)
    naive compiled loop               the same loop nest, @njit(parallel=True)   (NBCNN_FAST=0)
    im2col + BLAS                     nbcnn's im2col route                        (NBCNN_DIRECT=0)
    fast kernel                       the register-tiled direct kernel
    numpy, torch                      the peers (peers.py)
"""

from __future__ import annotations

import json

from .machine import cpu_peak
from .peers import torch_available
from .report import cell, rate
from .runner import run_worker
from .shapes import CONV_SHAPES, TINY_CONV, ConvShape, conv_flops, conv_inputs
from .timing import time_runs, timing_record


def time_python_conv(s: ConvShape) -> dict:
    """The readable conv kernel run as plain Python (the python backend) on shape ``s``."""
    import nbcnn

    x, W, b, _ = conv_inputs(s)
    with nbcnn.use_backend("python"):
        times = time_runs(lambda: nbcnn.conv2d(x, W, b, s.stride, s.pad), 1, warmup=0)
    return timing_record("nbcnn", "conv_fwd", "python-tiny", s, times, variant="python")


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
    from ..kernels import conv

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
    """The aligned text table ``nbcnn bench --ladder`` prints."""
    m = lad["machine"]
    head = ["step", "GFLOP/s", "% of peak", "min ms", "note"]
    body = [[st["step"], cell(st["gflops"], ".3g" if (st["gflops"] or 1) < 1 else ".1f"),
             cell(st["peak_share"] and 100 * st["peak_share"], ".2g" if (st["peak_share"] or 1) < 0.01 else ".1f"),
             cell(st["min_s"] and st["min_s"] * 1e3, ".2f"), st["note"]] for st in lad["steps"]]
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
