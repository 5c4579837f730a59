"""Whole-model benchmarks behind ``nbcnn bench --models``: LeNet-5 training throughput and
VGG-16 inference at 224x224, nbcnn against the same network in PyTorch (CPU).

Each implementation runs in its own process (``python -m nbcnn.benchmark.models --worker
nbcnn|torch``), so the two thread runtimes never share one; each reports the best and median
of several timed repeats after a warm-up, as JSON on its last output line.

LeNet-5 here is the modern variant the command line trains: 32x32x1 input, conv 6@5x5, ReLU,
max pool, conv 16@5x5, ReLU, max pool, conv 120@5x5, ReLU, dense 84, ReLU, dense 10, softmax
cross-entropy, Adam. One "step" is forward, backward and the optimiser update of one batch.

``nbcnn.benchmark`` imports this module on first use of ``run_models`` / ``format_models``
only, so that ``python -m nbcnn.benchmark.models`` runs it fresh.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from .peers import torch_available
from .timing import time_runs


def throughput(times, images) -> dict:
    """Best and median seconds of the timed repeats, and the images per second of each."""
    times = sorted(times)
    return {"best_s": times[0], "median_s": times[len(times) // 2], "images_per_s": images / times[0],
            "images_per_s_median": images / times[len(times) // 2]}


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


def run_models(batch: int = 64, steps: int = 20, repeat: int = 3, vgg: bool = True, backend: str = "cpu",
               peers: bool = True) -> dict:
    """Run the nbcnn worker and (when torch imports) the torch worker, each in its own process."""
    results = {}
    workers = ["nbcnn"] + (["torch"] if peers and torch_available() else [])
    for worker in workers:
        cmd = [sys.executable, "-m", "nbcnn.benchmark.models", "--worker", worker, "--batch", str(batch),
               "--steps", str(steps), "--repeat", str(repeat), "--backend", backend] + ([] if vgg else ["--no-vgg"])
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode != 0:
            raise RuntimeError(f"the {worker} worker failed:\n{done.stderr[-2000:]}")
        results[worker] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"batch": batch, "steps": steps, "repeat": repeat, "backend": backend, "results": results}


def format_models(r) -> str:
    """The text ``nbcnn bench --models`` prints."""
    res = r["results"]
    lines = [f"LeNet-5 training, batch {r['batch']}, {r['steps']} steps x {r['repeat']} repeats "
             f"(best / median images per second), backend {r['backend']}"]
    for name, row in res.items():
        t = row["lenet_train"]
        lines.append(f"  {name:6s} {t['images_per_s']:10.0f} {t['images_per_s_median']:10.0f}")
    if "torch" in res:
        lines.append(f"  ratio nbcnn / torch: {res['nbcnn']['lenet_train']['images_per_s'] / res['torch']['lenet_train']['images_per_s']:.2f}x")
    if "vgg16_forward" in res.get("nbcnn", {}):
        lines.append("VGG-16 forward, one 224x224x3 image (best / median seconds)")
        for name, row in res.items():
            t = row["vgg16_forward"]
            lines.append(f"  {name:6s} {t['best_s']:10.3f} {t['median_s']:10.3f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m nbcnn.benchmark.models")
    p.add_argument("--worker", choices=("nbcnn", "torch"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--no-vgg", action="store_true")
    a = p.parse_args(argv)
    if a.worker == "nbcnn":
        print(json.dumps(time_nbcnn_models(a.batch, a.steps, a.repeat, not a.no_vgg, a.backend)))
    elif a.worker == "torch":
        print(json.dumps(time_torch_models(a.batch, a.steps, a.repeat, not a.no_vgg)))
    else:
        print(format_models(run_models(a.batch, a.steps, a.repeat, not a.no_vgg, a.backend)))


if __name__ == "__main__":
    main()
