"""What ``nbcnn bench`` prints: one row per (op, shape) with each implementation's rate, nbcnn's
rate over torch's, a geometric-mean summary per family of ops, and the JIT compile times.

A rate is that of the *fastest* run: GFLOP/s of useful flops for conv and dense, GB/s moved
for pooling (shapes.py counts both), Mbox/s for NMS (million boxes in per second).
NMS is a family of its own ("boxes"): its ratios never enter the conv or pooling means.
torch has no NMS without torchvision; then the NMS rows are compared with numpy's greedy loop
(``x numpy``), on a line of their own.
"""

from __future__ import annotations

import numpy as np

from .shapes import ALL_OPS, BOX_OPS, DENSE_OPS, IMPLS, POOL_OPS


def rate(rec) -> float | None:
    """GFLOP/s (conv, dense), GB/s (pooling) or Mbox/s (NMS) of the fastest run."""
    if not rec or not rec.get("min_s"):
        return None
    if "boxes" in rec:
        return rec["boxes"] / rec["min_s"] / 1e6
    return (rec["flops"] if "flops" in rec else rec["bytes"]) / rec["min_s"] / 1e9


def unit(op: str) -> str:
    return "GB/s" if op in POOL_OPS else "Mbox/s" if op in BOX_OPS else "GFLOP/s"


def rows(result) -> list[dict]:
    """One row per (op, shape): nbcnn's time and rate, the peers' rates, nbcnn's rate / torch's
    (and / numpy's); NMS rows also say how many boxes each implementation kept."""
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
        row["vs_numpy"] = (row["nbcnn"] / row["numpy"]) if nb and row["numpy"] else None
        if op in BOX_OPS:
            row["kept"] = {impl: rec["kept"] for impl, rec in impls.items() if "kept" in rec}
        if nb and "h2d_s" in nb:
            row["h2d_ms"], row["d2h_ms"] = nb["h2d_s"] * 1e3, nb["d2h_s"] * 1e3
        out.append(row)
    order = {o: i for i, o in enumerate(ALL_OPS)}
    return sorted(out, key=lambda r: order[r["op"]])


def cell(v, spec=".1f", none="-") -> str:
    """A table cell: ``v`` formatted with ``spec``, or ``none`` when there is no value."""
    return none if v is None else format(v, spec)


def rate_cell(v) -> str:
    """Rates: one decimal, or three significant digits below 10 (tiny shapes, python backend)."""
    return cell(v, ".3g" if v is not None and v < 10 else ".1f")


FAMILIES = {"conv forward": ("conv_fwd",), "conv backward": ("conv_bwd",), "pooling": POOL_OPS, "dense": DENSE_OPS,
            "boxes": BOX_OPS}


def torch_summary(table_rows, peer: str = "torch") -> dict:
    """Per family of ops (the issue's targets): the geometric mean of nbcnn / torch over its
    shapes, and the lowest ratio with where it is (``peer="numpy"``: nbcnn / numpy instead)."""
    out = {}
    key = f"vs_{peer}"
    for family, ops in FAMILIES.items():
        got = [(r[key], f"{r['op']} {r['shape']}" if len(ops) > 1 else r["shape"])
               for r in table_rows if r["op"] in ops and r.get(key)]
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
        line = [r["op"], r["shape"], r["unit"], rate_cell(r["nbcnn"]), rate_cell(r["numpy"]), rate_cell(r["torch"]),
                cell(r["vs_torch"], ".2f") + ("x" if r["vs_torch"] is not None else ""),
                cell(r["min_ms"], ".3f"), cell(r["median_ms"], ".3f")]
        if cuda:
            line += [cell(r.get("h2d_ms"), ".3f"), cell(r.get("d2h_ms"), ".3f")]
        body.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    left = {0, 1, 2}

    def fmt_line(cells):
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    m = result["machine"]
    rounds = result.get("rounds", 1)
    runs = f"{result['repeat']} runs after a warm-up" + (f", in each of {rounds} rounds" if rounds > 1 else "")
    if result.get("threads"):
        runs += f", {result['threads']} thread{'s' if result['threads'] > 1 else ''} each (nbcnn and the peers)"
    lines = [f"nbcnn bench: backend {result['backend']}, {runs}; rate of the "
             f"fastest run (conv/dense GFLOP/s of useful flops, pooling GB/s moved, nms Mbox/s = million boxes "
             f"in per second, IoU 0.5, class-agnostic); x torch = nbcnn / torch",
             f"machine: {m['model']}; peak FP32 {m['peak_gflops']:.0f} GFLOP/s ({m['assumption']})",
             fmt_line(head), fmt_line(["-" * w for w in widths])]
    lines += [fmt_line(b) for b in body]
    summary = torch_summary(rs)
    if summary:
        lines.append("x torch, geometric mean (lowest): " + "; ".join(
            f"{family} {s['geomean']:.2f} ({s['lowest']:.2f} {s['lowest_at']})" for family, s in summary.items()))
    box_rows = [r for r in rs if r["op"] in BOX_OPS]
    no_torch = [r for r in box_rows if r["vs_torch"] is None and r["vs_numpy"] is not None]
    if no_torch:
        lines.append("x numpy, nms (nbcnn / numpy's greedy loop; no torch peer without torchvision): "
                     + "; ".join(f"{r['shape']} {r['vs_numpy']:.2f}x" for r in no_torch))
    kept = [(r["shape"], r["kept"]) for r in box_rows if r.get("kept")]
    if kept:  # every implementation must keep the same boxes: a different count is a bug, not a timing
        lines.append("nms boxes kept: " + "; ".join(
            f"{shape} " + ", ".join(f"{impl} {n}" for impl, n in k.items())
            + ("" if len(set(k.values())) == 1 else " (DISAGREE)") for shape, k in kept))
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
