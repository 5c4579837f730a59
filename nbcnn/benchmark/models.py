"""Whole-model benchmarks behind ``nbcnn bench --models``: LeNet-5 training throughput, VGG-16
inference at 224x224 and YOLOv3-tiny inference at 416x416, nbcnn against the same network in
PyTorch (CPU), and YOLOv3-tiny in darknet itself (yolo.py).

Each implementation runs in its own process (``python -m nbcnn.benchmark.models --worker
nbcnn|torch|darknet``), so the thread runtimes never share one; each reports the best and
median of several timed repeats after a warm-up, as JSON on its last output line.

LeNet-5 here is the modern variant the command line trains: 32x32x1 input, conv 6@5x5, ReLU,
max pool, conv 16@5x5, ReLU, max pool, conv 120@5x5, ReLU, dense 84, ReLU, dense 10, softmax
cross-entropy, Adam. One "step" is forward, backward and the optimiser update of one batch.

Faces: triplet training of the digit encoder of ``nbcnn.triplet`` (P x K batches, hard
mining), images per second, next to the same encoder, mining and loss in torch
(``nbcnn.triplet.bench``).

Small YOLO: training images per second of the detector of ``nbcnn.detection.small_yolo`` on
128x128 digit scenes (forward, target encoding, YOLO loss kernel, backward, Adam), next to
the same network and loss in torch (``nbcnn.detection.bench``); cpu backend only.

Real faces: faces per second of the photo pipeline (tiny face detector + crop + dlib ResNet
encoder) on the shipped group photo, next to the same two networks in torch from the same
weights (``real_faces``, ``torch_faces``); cpu backend only.

Style transfer: one optimisation step of ``nbcnn.style`` (features, costs, the gradient to the
pixels, Adam) at 256x256 on the same backbone, next to the same step in torch from the same
weights (``nbcnn.style.torch_peer``); it runs with the YOLOv3-tiny row.

YOLOv3-tiny: one image, batch 1, to the two raw yolo heads, from the official weights in
the cache (``nbcnn weights yolov3-tiny``; without them the row says so and the rest runs).
torch's copy is timed only once its heads agree with nbcnn's within 1e-3; the ratio is
nbcnn's speed over torch's (torch's seconds / nbcnn's: above 1.0 nbcnn is faster).
``--tiny`` runs it at 96x96 instead of 416x416.

``nbcnn.benchmark`` imports this module on first use of ``run_models`` / ``format_models``
only, so that ``python -m nbcnn.benchmark.models`` runs it fresh.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from . import yolo
from .peers import torch_available
from .threads import worker_environment
from .timing import throughput, time_runs

YOLO_KEY = "yolov3_tiny_forward"  # a worker's YOLOv3-tiny record, in its results
STYLE_KEY = "style_step"  # one style-transfer optimisation step (nbcnn.style.timing / torch_peer)


def time_nbcnn_models(batch: int, steps: int, repeat: int, vgg: bool, backend: str) -> dict:
    """nbcnn: ``steps`` LeNet-5 training steps per repeat; with ``vgg``, one VGG-16 forward."""
    import nbcnn
    from nbcnn import models, optim

    nbcnn.set_backend(backend)
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 32, 32, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    model = models.lenet5(activation="relu", pooling="max")
    model.compile(optim.Adam(1e-3))
    model.train_on_batch(x[:batch], y[:batch])  # compile / warm up

    def epoch():
        for s in range(steps):
            model.train_on_batch(x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch])

    out = {"lenet_train": throughput(time_runs(epoch, repeat, warmup=0), batch * steps)}
    if vgg:
        net = models.vgg16()
        image = rng.random((1, 224, 224, 3), dtype=np.float32)
        net(image)
        out["vgg16_forward"] = throughput(time_runs(lambda: net(image), max(2, repeat // 2), warmup=0), 1)
    return out


def time_torch_models(batch: int, steps: int, repeat: int, vgg: bool) -> dict:
    """The same networks and steps in PyTorch."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    lenet = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.Adam(lenet.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch * steps, 1, 32, 32)
    y = torch.randint(0, 10, (batch * steps,))

    def step(s):
        opt.zero_grad()
        loss_fn(lenet(x[s * batch:(s + 1) * batch]), y[s * batch:(s + 1) * batch]).backward()
        opt.step()

    step(0)

    def epoch():
        for s in range(steps):
            step(s)

    out = {"lenet_train": throughput(time_runs(epoch, repeat, warmup=0), batch * steps),
           "threads": torch.get_num_threads()}
    if vgg:
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(), nn.Linear(4096, 4096),
                            nn.ReLU(), nn.Linear(4096, 1000)).eval()
        image = torch.rand(1, 3, 224, 224)
        with torch.no_grad():
            net(image)
            out["vgg16_forward"] = throughput(time_runs(lambda: net(image), max(2, repeat // 2), warmup=0), 1)
    return out


def _run_worker(worker: str, args: list) -> dict:
    """One worker in a fresh process; its JSON is its last output line that starts with ``{``
    (darknet's C code may print to stdout too)."""
    cmd = [sys.executable, "-m", "nbcnn.benchmark.models", "--worker", worker, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {worker} worker failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def yolo_plan(size: int, backend: str, peers: bool) -> tuple[list[str], list[str]]:
    """(the workers that time YOLOv3-tiny, notes on the ones that cannot), decided in the parent."""
    if not size:
        return [], []
    if backend != "cpu":
        return [], [f"YOLOv3-tiny: timed on the cpu backend only (this run: {backend})"]
    try:
        yolo.weights_files()
    except FileNotFoundError as exc:  # WeightsNotFound: its message names `nbcnn weights yolov3-tiny`
        return [], [f"YOLOv3-tiny: not timed: {exc}"]
    workers, notes = ["nbcnn"], []
    if peers and torch_available():
        workers.append("torch")
    if peers and yolo.darknet_library():
        workers.append("darknet")
    elif peers:
        notes.append("YOLOv3-tiny: no darknet row: libdarknet.so not found (Debian/Ubuntu: apt-get install darknet; "
                     "or set NBCNN_DARKNET_LIB)")
    return workers, notes


def run_models(batch: int = 64, steps: int = 20, repeat: int = 3, vgg: bool = True, backend: str = "cpu",
               peers: bool = True, yolo_size: int = yolo.FULL_SIZE, threads: int | None = None) -> dict:
    """Run the nbcnn worker, the torch worker (when torch imports) and, for YOLOv3-tiny, the
    darknet worker (when libdarknet.so is there), each in its own process. ``yolo_size`` 0:
    no YOLOv3-tiny. ``threads``: every worker's thread pools that size (threads.py)."""
    results = {}
    workers = ["nbcnn"] + (["torch"] if peers and torch_available() else [])
    yolo_workers, notes = yolo_plan(yolo_size, backend, peers)
    # folder: nbcnn's heads, for the others to compare
    with tempfile.TemporaryDirectory(prefix="nbcnn-yolo-") as folder, worker_environment(threads):
        for worker in workers + [w for w in yolo_workers if w not in workers]:
            args = ["--batch", str(batch), "--steps", str(steps), "--repeat", str(repeat), "--backend", backend]
            args += [] if vgg else ["--no-vgg"]
            if worker in yolo_workers:
                args += ["--yolo", str(yolo_size), "--yolo-dir", folder]
                if worker != "darknet":  # the style step runs on the same pretrained backbone
                    args += ["--style", str(style_size(yolo_size))]
            try:
                results[worker] = _run_worker(worker, args)
            except RuntimeError as exc:
                if worker != "darknet":
                    raise
                # darknet's C code exits on what it cannot read: its row says why, the run goes on
                why = [line for line in str(exc).splitlines() if line.strip()][-1]
                results[worker] = {YOLO_KEY: {"skipped": f"the darknet worker failed: {why.strip()}"}}
        # triplet training of the faces encoder: nbcnn, then the same encoder and batches in torch,
        # in one worker of their own (nbcnn.triplet.bench times both, one after the other)
        results["faces"] = _run_worker("faces", ["--steps", str(max(5, steps)), "--backend", backend]
                                       + ([] if peers and torch_available() else ["--no-peers"]))
        # real faces (detect + crop + encode, nbcnn.benchmark.real_faces): nbcnn and torch in
        # processes of their own, alternating, the best of the rounds kept
        if backend == "cpu":
            from . import real_faces

            impls = ["nbcnn"] + (["torch"] if peers and torch_available() else [])
            tiny = yolo_size < yolo.FULL_SIZE  # --tiny: one round, one timed run a side (the same photo)
            rounds = [{impl: _run_worker("real_faces", ["--impl", impl, "--repeat", str(1 if tiny else max(3, repeat)),
                                                        "--backend", backend]) for impl in impls}
                      for _ in range(1 if tiny else real_faces.ROUNDS)]
            results["real_faces"] = real_faces.summarise(rounds)
            # the small YOLO of nbcnn.detection (training steps), nbcnn then torch, each in its own process
            results["small_yolo"] = {impl: _run_worker("small_yolo", ["--impl", impl, "--steps", "3", "--repeat",
                                                                      str(max(2, repeat)), "--backend", backend])
                                     for impl in impls}
    out = {"batch": batch, "steps": steps, "repeat": repeat, "backend": backend, "results": results,
           "threads": threads}
    out["yolo"] = yolo_summary(results, yolo_size if yolo_workers else 0, notes)
    return out


def style_size(yolo_size: int) -> int:
    """The style step's image side: 256 (the issue's figure) with the full-size YOLO row, 64 with --tiny."""
    return 256 if yolo_size >= yolo.FULL_SIZE else 64


def yolo_summary(results: dict, size: int, notes: list) -> dict:
    """The YOLOv3-tiny row in a few numbers: nbcnn's speed over torch's and over darknet's."""
    summary = {"input": [size, size, 3] if size else None, "notes": notes, "target_vs_torch": 1.0}
    nb = results.get("nbcnn", {}).get(YOLO_KEY, {})
    for peer in ("torch", "darknet"):
        rec = results.get(peer, {}).get(YOLO_KEY, {})
        if "best_s" in nb and "best_s" in rec:
            summary[f"vs_{peer}"] = rec["best_s"] / nb["best_s"]  # nbcnn's speed / the peer's
    return summary


def format_models(r) -> str:
    """The text ``nbcnn bench --models`` prints."""
    res = r["results"]
    lenet = {name: row for name, row in res.items() if "lenet_train" in row}
    lines = [f"LeNet-5 training, batch {r['batch']}, {r['steps']} steps x {r['repeat']} repeats "
             f"(best / median images per second), backend {r['backend']}"
             + (f", {r['threads']} thread(s) each" if r.get("threads") else "")]
    for name, row in lenet.items():
        t = row["lenet_train"]
        lines.append(f"  {name:7s} {t['images_per_s']:10.0f} {t['images_per_s_median']:10.0f}")
    if "torch" in lenet:
        lines.append(f"  ratio nbcnn / torch: {res['nbcnn']['lenet_train']['images_per_s'] / res['torch']['lenet_train']['images_per_s']:.2f}x")
    if "vgg16_forward" in res.get("nbcnn", {}):
        lines.append("VGG-16 forward, one 224x224x3 image (best / median seconds)")
        for name, row in lenet.items():
            t = row["vgg16_forward"]
            lines.append(f"  {name:7s} {t['best_s']:10.3f} {t['median_s']:10.3f}")
    lines += format_yolo(r)
    lines += format_style(r)
    if "faces" in res:
        from ..triplet.bench import format_throughput

        lines.append(format_throughput(res["faces"]))
        faces = res["faces"]
        if "images_per_second" in faces.get("torch", {}):
            lines.append(f"  ratio nbcnn / torch: "
                         f"{faces['nbcnn']['images_per_second'] / faces['torch']['images_per_second']:.2f}x")
    if "real_faces" in res:
        from .real_faces import format_real_faces

        lines += format_real_faces(res["real_faces"])
    if res.get("small_yolo"):
        from ..detection.bench import format_throughput as format_small_yolo

        lines += format_small_yolo(res["small_yolo"])
    return "\n".join(lines)


def format_style(r) -> list[str]:
    """One style-transfer step (forward to the chosen layers, the costs, the gradient back to
    the pixels, an Adam update) on YOLOv3-tiny's backbone, nbcnn next to torch."""
    rows = {name: row[STYLE_KEY] for name, row in r["results"].items() if STYLE_KEY in row}
    if not rows:
        return []
    size = next(iter(rows.values())).get("size")
    lines = [f"Style transfer, one optimisation step at {size}x{size} on YOLOv3-tiny's backbone "
             f"(best / median ms per step), cpu"]
    for name, t in rows.items():
        lines.append(f"  {name:7s} {t['min_ms']:10.1f} {t['median_ms']:10.1f}")
    if "nbcnn" in rows and "torch" in rows:
        lines.append(f"  nbcnn's speed over torch's: {rows['torch']['min_ms'] / rows['nbcnn']['min_ms']:.2f}x "
                     "(target >= 1.0)")
    return lines


def format_yolo(r) -> list[str]:
    """The YOLOv3-tiny lines: seconds per forward, the agreement checks, the ratios."""
    y = r.get("yolo") or {}
    rows = {name: row[YOLO_KEY] for name, row in r["results"].items() if YOLO_KEY in row}
    lines = []
    if rows:
        h, w, c = y["input"]
        lines.append(f"YOLOv3-tiny forward, one {w}x{h}x{c} image, batch 1, to the raw yolo heads "
                     f"(best / median seconds per forward), cpu")
        for name, t in rows.items():
            if "best_s" not in t:
                lines.append(f"  {name:7s} {'-':>10s} {'-':>10s}   {t.get('skipped', '')}")
                continue
            about = ""
            if t.get("compared_with"):
                what = "heads" if t["heads_compared"] > 1 else "last head"
                about = f"{what} vs nbcnn's: max |diff| {t['max_abs_diff']:.2g}"
            if name == "torch":
                about += f"; {t['layout']}, {t['threads']} threads"
            lines.append(f"  {name:7s} {t['best_s']:10.3f} {t['median_s']:10.3f}   {about}".rstrip())
        ratios = [f"x torch {y['vs_torch']:.2f} (target >= {y['target_vs_torch']:.1f})"] if "vs_torch" in y else []
        ratios += [f"x darknet {y['vs_darknet']:.2f}"] if "vs_darknet" in y else []
        if ratios:
            lines.append("  nbcnn's speed over the peer's (its seconds / nbcnn's): " + ", ".join(ratios))
        kinds = rows.get("nbcnn", {}).get("seconds_by_layer_kind")
        if kinds:
            lines.append("  nbcnn, one more forward by layer kind: "
                         + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in kinds.items() if v >= 5e-4))
    for note in y.get("notes", []):
        lines.append(f"note: {note}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m nbcnn.benchmark.models")
    p.add_argument("--worker", choices=("nbcnn", "torch", "darknet", "faces", "real_faces", "small_yolo"))
    p.add_argument("--impl", choices=("nbcnn", "torch"), default="nbcnn",
                   help="real_faces and small_yolo workers: which side")
    p.add_argument("--no-peers", action="store_true", help="faces worker: nbcnn only")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--no-vgg", action="store_true")
    p.add_argument("--yolo", type=int, default=0, help="YOLOv3-tiny at this input size (0: none)")
    p.add_argument("--yolo-dir", default=None, help="where the nbcnn worker leaves its heads for the others")
    p.add_argument("--style", type=int, default=0, help="a style-transfer step at this image size (0: none)")
    a = p.parse_args(argv)
    if a.worker == "faces":
        from ..triplet.bench import triplet_training_throughput

        print(json.dumps(triplet_training_throughput(steps=a.steps, backend=a.backend, peers=not a.no_peers)))
        return
    if a.worker == "small_yolo":
        from ..detection import bench as small_yolo_bench

        print(json.dumps(small_yolo_bench.time_nbcnn(steps=a.steps, repeat=a.repeat, backend=a.backend)
                         if a.impl == "nbcnn" else small_yolo_bench.time_torch(steps=a.steps, repeat=a.repeat)))
        return
    if a.worker == "real_faces":
        from .real_faces import main_worker

        print(json.dumps(main_worker(a.impl, a.repeat, a.backend)))
        return
    if a.worker == "darknet":  # YOLOv3-tiny only: darknet has no LeNet or VGG here
        print(json.dumps({YOLO_KEY: yolo.time_darknet(a.yolo or yolo.FULL_SIZE, a.repeat, a.yolo_dir)}))
        return
    if a.worker == "nbcnn":
        out = time_nbcnn_models(a.batch, a.steps, a.repeat, not a.no_vgg, a.backend)
        if a.yolo:
            out[YOLO_KEY] = yolo.time_nbcnn(a.yolo, a.repeat, a.yolo_dir, a.backend)
        if a.style:
            from ..style.timing import time_style_step

            out[STYLE_KEY] = time_style_step(size=a.style, steps=max(3, a.repeat), backend_name=a.backend)
    elif a.worker == "torch":
        out = time_torch_models(a.batch, a.steps, a.repeat, not a.no_vgg)
        if a.yolo:
            out[YOLO_KEY] = yolo.time_torch(a.yolo, a.repeat, a.yolo_dir)
        if a.style:
            from ..style.torch_peer import torch_style_step

            out[STYLE_KEY] = torch_style_step(size=a.style, steps=max(3, a.repeat))
    else:
        print(format_models(run_models(a.batch, a.steps, a.repeat, not a.no_vgg, a.backend)))
        return
    print(json.dumps(out))


if __name__ == "__main__":
    main()
