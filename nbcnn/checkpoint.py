"""Saving and loading models: architecture, weights, optimiser state, training position.

Format (version 1): a zip archive written by ``numpy.savez`` holding

    meta.json                        (stored as a uint8 array) {"format": "nbcnn-checkpoint",
                                     "version": 1, "model": model.get_config(), "optimizer": ...,
                                     "epochs_done": ..., "history": ..., "rng": {dropout states}}
    param/<layer path>/<key>         every parameter, e.g. param/0/W, param/3.main.1/gamma
    state/<layer path>/<key>         non-trainable state (BatchNorm moving averages)
    opt/<parameter name>/<slot>      optimiser state (momentum, Adam's m and v)
    opt_iterations                   the optimiser's step count

It is written to a temporary file in the same folder and renamed over the target, so a
crash mid-save never leaves a half-written checkpoint under the real name. Loading checks
the format, every array's presence and shape, and refuses truncated or foreign files with
a ValueError naming the file and the problem.

Imports run one way: ``model.py`` imports this module (``Model.save`` and ``load_model``
live there, next to the class they save and rebuild), and this module never imports
``model.py``: it knows the file format and works on any object with a model's attributes
(``network``, ``optimizer``, ``history``, ``epochs_done``, ``get_config()``, ``compile()``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import layers as L
from .optim import get_optimizer

FORMAT, VERSION = "nbcnn-checkpoint", 1


def save_model(model, path) -> None:
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    rng_states = {}
    for layer_path, layer in model.network.named_layers():
        for key, value in layer.params.items():
            arrays[f"param/{layer_path}/{key}"] = np.asarray(value)
        for key, value in layer.state.items():
            arrays[f"state/{layer_path}/{key}"] = np.asarray(value)
        if isinstance(layer, L.Dropout):
            rng_states[layer_path] = layer.rng.bit_generator.state
    meta = {"format": FORMAT, "version": VERSION, "model": model.get_config(),
            "trainable": {p: l.trainable for p, l in model.network.named_layers()},
            "epochs_done": model.epochs_done, "history": model.history, "loss": model.loss, "rng": rng_states,
            "optimizer": model.optimizer.get_config() if model.optimizer is not None else None}
    if model.optimizer is not None:
        arrays["opt_iterations"] = np.array(model.optimizer.iterations)
        for name, slots in model.optimizer.slots.items():
            for slot, value in slots.items():
                arrays[f"opt/{name}/{slot}"] = value
    arrays["meta.json"] = np.frombuffer(json.dumps(meta, default=_json_default).encode(), dtype=np.uint8)

    folder = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".nbcnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's metadata")


def read_checkpoint(path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint file, after checking its format and version."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable nbcnn checkpoint (truncated or corrupt?): {exc}") from None
    if "meta.json" not in arrays:
        raise ValueError(f"{path} is not an nbcnn checkpoint: it has no meta.json")
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: its meta.json is corrupt: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an nbcnn checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path} is checkpoint version {meta.get('version')}; this nbcnn reads version {VERSION}")
    return meta, arrays


def load_weights(model, path) -> None:
    """Copy the weights (and BatchNorm state) of a checkpoint into ``model``, which must have the same layers."""
    _, arrays = read_checkpoint(path)
    _assign(model, arrays, path)


def _assign(model, arrays, path) -> None:
    expected = {}
    for layer_path, layer in model.network.named_layers():
        for group, store in (("param", layer.params), ("state", layer.state)):
            for key, value in store.items():
                expected[f"{group}/{layer_path}/{key}"] = (store, key, value)
    missing = sorted(set(expected) - {k for k in arrays if k.startswith(("param/", "state/"))})
    if missing:
        raise ValueError(f"{path} does not match this model: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    extra = sorted(k for k in arrays if k.startswith(("param/", "state/")) and k not in expected)
    if extra:
        raise ValueError(f"{path} does not match this model: it has arrays the model lacks, e.g. {extra[:5]}")
    for name, (store, key, value) in expected.items():
        saved = arrays[name]
        if saved.shape != value.shape:
            raise ValueError(f"{path} does not match this model: {name} has shape {saved.shape} in the file "
                             f"but {value.shape} in the model")
        store[key] = saved.astype(value.dtype)


def restore(model, meta: dict, arrays: dict, path) -> None:
    """Put what ``read_checkpoint(path)`` returned into ``model``, freshly built from
    ``meta["model"]`` (``nbcnn.load_model`` does both): weights, frozen layers, dropout
    states, training position and history, the optimiser and its state."""
    _assign(model, arrays, path)
    layers_by_path = dict(model.network.named_layers())
    for layer_path, trainable in meta.get("trainable", {}).items():
        if layer_path in layers_by_path:
            layers_by_path[layer_path].trainable = trainable
    for layer_path, state in meta.get("rng", {}).items():
        layers_by_path[layer_path].rng.bit_generator.state = state
    model.epochs_done = meta.get("epochs_done", 0)
    model.history = meta.get("history", {})
    if meta.get("optimizer") is not None:
        model.compile(get_optimizer(meta["optimizer"]), meta.get("loss", "crossentropy"))
        model.optimizer.iterations = int(arrays.get("opt_iterations", np.array(0)))
        for name, value in arrays.items():
            if name.startswith("opt/"):
                param_name, slot = name[4:].rsplit("/", 1)
                model.optimizer.slots.setdefault(param_name, {})[slot] = value.copy()
