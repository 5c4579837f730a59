"""YOLOv3-tiny forward for ``nbcnn bench --models``: nbcnn, the same network in torch, darknet itself.

One image (batch 1), ``size`` x ``size`` x 3, through the whole network to its two raw yolo
heads (the logistic applied to x, y, objectness and the classes, as darknet's ``[yolo]``
layer leaves them): no letterbox, no decoding, no NMS. Three workers, each in its own
process (models.py starts them, nbcnn first):

    nbcnn    ``DarknetNetwork`` from the cached cfg and weights (``nbcnn weights yolov3-tiny``);
             writes its heads to ``heads.npz`` in a folder the parent gives every worker
    torch    the network rebuilt in torch (torch_darknet.py) from the parsed cfg and the nbcnn
             network's arrays; its heads must agree with nbcnn's within 1e-3 before it is timed
    darknet  ``libdarknet.so`` (Debian/Ubuntu: ``apt-get install darknet``) through ctypes:
             ``load_network``, ``network_predict`` on a CHW float image; ``network_predict``
             returns the last layer's output, the 26 x 26 head, compared with nbcnn's too

The image is the same in every worker: ``yolo_image(size)``, seeded uniform noise in [0, 1].
nbcnn and torch get ``WARMUP`` untimed forwards first (both start slow for several calls).
Other sizes than the cfg's 416 (``--models --tiny`` uses 96) rewrite the ``[net]`` section's
width and height; the weights do not depend on the input size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .timing import throughput, time_runs

NAME = "yolov3-tiny"
FULL_SIZE = 416       # the cfg's own input
TINY_SIZE = 96        # --models --tiny: a 3 x 3 and a 6 x 6 grid, seconds in all
TOLERANCE = 1e-3      # torch's heads must agree with nbcnn's this closely before torch is timed
# untimed forwards first: torch's first ~6 at 416 take 0.3-0.45 s, then 0.028 s; nbcnn's first
# few 0.6 -> 0.14 s (JIT aside). Measured on 2 cores; darknet is steady from its first call.
WARMUP = 8
DARKNET_LIBS = ("/usr/lib/darknet/libdarknet.so", "/usr/lib/libdarknet.so", "/usr/local/lib/libdarknet.so")


def yolo_image(size: int, seed: int = 0) -> np.ndarray:
    """The input every worker feeds: (1, size, size, 3) float32 in [0, 1] (NHWC)."""
    return np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)


def weights_files() -> dict:
    """``{"cfg", "weights", "names"}`` paths from the cache; ``WeightsNotFound`` (its message
    names ``nbcnn weights yolov3-tiny``) when they are not there."""
    from ..weights import find

    return find(NAME)


def cfg_text(cfg_path, size: int) -> str:
    """The cfg with its ``[net]`` width and height set to ``size`` (the first of each: [net]'s)."""
    text = Path(cfg_path).read_text(encoding="utf-8")
    for key in ("width", "height"):
        text = re.sub(rf"^(\s*{key}\s*=\s*)\d+", rf"\g<1>{size}", text, count=1, flags=re.MULTILINE)
    return text


def layer_specs(size: int) -> list:
    """The cached cfg at ``size``, parsed: one ``LayerSpec`` per darknet layer (kind, inputs, shapes, options)."""
    from ..weights import darknet

    return darknet.layer_specs(darknet.parse_cfg(cfg_text(weights_files()["cfg"], size)))[1]


def nbcnn_network(size: int):
    """(nbcnn's ``DarknetNetwork`` at ``size``, the cfg's ``LayerSpec`` list), from the cache."""
    from ..weights import darknet

    files = weights_files()
    return darknet.load_darknet(cfg_text(files["cfg"], size), files["weights"]), layer_specs(size)


def heads_chw(heads) -> list[np.ndarray]:
    """nbcnn's NHWC heads of image 0 as darknet's and torch's CHW."""
    return [np.ascontiguousarray(np.asarray(h)[0].transpose(2, 0, 1)) for h in heads]


def compare(heads: list[np.ndarray], folder) -> dict:
    """Max |difference| between CHW ``heads`` and the nbcnn worker's (``heads.npz`` in folder),
    head for head from the last; ``compared_with`` None when the nbcnn worker left none."""
    path = Path(folder) / "heads.npz" if folder else None
    if path is None or not path.is_file():
        return {"compared_with": None}
    with np.load(path) as saved:
        theirs = [saved[k] for k in sorted(saved.files)]
    pairs = list(zip(heads[::-1], theirs[::-1]))  # darknet returns the last head only
    diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in pairs)
    return {"compared_with": "nbcnn", "heads_compared": len(pairs), "max_abs_diff": diff, "agrees": diff <= TOLERANCE}


# --------------------------------------------------------------------------- the workers


def time_nbcnn(size: int, repeat: int, folder=None, backend: str = "cpu") -> dict:
    """nbcnn's forward; leaves its heads (CHW) in ``folder/heads.npz`` for the other workers."""
    import nbcnn

    net, _ = nbcnn_network(size)
    x = yolo_image(size)
    with nbcnn.use_backend(backend):
        heads = net(x)  # the JIT compiles here on a first run
        out = throughput(time_runs(lambda: net(x), repeat, warmup=WARMUP))
        by_kind = layer_times(net, x)
    if folder:
        np.savez(Path(folder) / "heads.npz", **{f"head{i}": h for i, h in enumerate(heads_chw(heads))})
    return {**out, "input": [size, size, 3], "backend": backend, "seconds_by_layer_kind": by_kind}


def time_torch(size: int, repeat: int, folder=None) -> dict:
    """The same network in torch (torch_darknet.py, channels_last, eval, no_grad), checked
    against nbcnn's heads before it is timed."""
    import torch

    from .torch_darknet import TorchDarknet

    net, specs = nbcnn_network(size)
    model = TorchDarknet(specs, net).eval()
    x = torch.from_numpy(yolo_image(size)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        heads = [h.contiguous().numpy()[0] for h in model(x)]
        check = compare(heads, folder)
        rec = {"input": [size, size, 3], "threads": torch.get_num_threads(), "layout": "channels_last", **check}
        if check.get("agrees") is False:
            rec["skipped"] = (f"torch's heads differ from nbcnn's by {check['max_abs_diff']:.3g} "
                              f"(> {TOLERANCE:g}): not the same network, not timed")
            return rec
        return {**throughput(time_runs(lambda: model(x), repeat, warmup=WARMUP)), **rec}


def darknet_library() -> str | None:
    """The path of libdarknet.so, or None (``NBCNN_DARKNET_LIB`` overrides the usual places)."""
    from .. import config

    for path in (config.get("NBCNN_DARKNET_LIB") or None, *DARKNET_LIBS, ctypes.util.find_library("darknet")):
        if path and os.path.isfile(path):
            return path
    return None


def time_darknet(size: int, repeat: int, folder=None) -> dict:
    """darknet's own CPU forward through ctypes: ``load_network(cfg, weights, 0)``, batch 1,
    ``network_predict(net, float *chw)`` (which returns the last layer's output)."""
    path = darknet_library()
    if path is None:
        return {"skipped": "libdarknet.so not found (Debian/Ubuntu: apt-get install darknet; or set NBCNN_DARKNET_LIB)"}
    lib = ctypes.CDLL(path)
    lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.load_network.restype = ctypes.c_void_p
    lib.set_batch_network.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.network_predict.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
    lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
    lib.free_network.argtypes = [ctypes.c_void_p]
    files = weights_files()
    with tempfile.TemporaryDirectory(prefix="nbcnn-darknet-") as tmp:
        cfg = Path(tmp) / "yolov3-tiny.cfg"  # darknet reads a file: the cfg at this size
        cfg.write_text(cfg_text(files["cfg"], size))
        net = lib.load_network(str(cfg).encode(), str(files["weights"]).encode(), 0)
    if not net:
        return {"skipped": f"darknet's load_network failed ({path})"}
    lib.set_batch_network(net, 1)
    chw = np.ascontiguousarray(yolo_image(size)[0].transpose(2, 0, 1))
    ptr = chw.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    h, w, c = layer_specs(size)[-1].out_shape  # the last layer's output: the 26 x 26 x 255 head at 416
    last = np.ctypeslib.as_array(lib.network_predict(net, ptr), (c * h * w,)).reshape(c, h, w).copy()
    rec = {"input": [size, size, 3], "library": path, **compare([last], folder)}
    out = {**throughput(time_runs(lambda: lib.network_predict(net, ptr), repeat, warmup=0)), **rec}
    lib.free_network(net)
    return out


def layer_times(net, x) -> dict:
    """Seconds per kind of nbcnn layer (``Conv2D``, ``DarknetBatchNorm``, ...) in one more
    forward: every layer's ``forward`` is wrapped in a timer for that call, then unwrapped."""
    import time

    from ..layers import Chain

    totals: dict[str, float] = {}
    wrapped = []
    for node in net.nodes:
        for layer in node.layer.layers if isinstance(node.layer, Chain) else [node.layer]:
            def timed(*args, _forward=layer.forward, _kind=type(layer).__name__, **kwargs):
                t = time.perf_counter()
                out = _forward(*args, **kwargs)
                totals[_kind] = totals.get(_kind, 0.0) + time.perf_counter() - t
                return out

            layer.forward = timed  # an instance attribute: shadows the method for this call only
            wrapped.append(layer)
    try:
        net(x)
    finally:
        for layer in wrapped:
            del layer.forward
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
