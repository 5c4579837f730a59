"""Saving and loading models: architecture, weights, optimiser state, training position.

Format (version 1): a zip archive written by ``numpy.savez`` holding

    meta.json                        (stored as a uint8 array) {"format": "nbcnn-checkpoint",
                                     "version": 1, "model": model.get_config(), "optimizer": ...,
                                     "epochs_done": ..., "history": ..., "rng": {dropout states}}
    param/<layer path>/<key>         every parameter, e.g. param/0/W, param/3.main.1/gamma
    state/<layer path>/<key>         non-trainable state (BatchNorm moving averages)
    opt/<parameter name>/<slot>      optimiser state (momentum, Adam's m and v)
    opt_iterations                   the optimiser's step count

Saving writes a hidden file next to the target, ``.<name>.nbcnn-partial-<host>-<pid>-<random>``,
and renames it over the target, so a crash mid-save never leaves a half-written checkpoint
under the real name. The partial file is removed if the save fails; one left by a process
that was killed (so never got to remove it) is removed by the next save to the same target.
The new file gets the permissions of the one it replaces, else those of any new file (0666
less the umask, e.g. 0644). Saving to a symbolic link writes through the link: the file it
points to is replaced and the link stays, as ``open(path, "w")`` would do. Paths may be
str, bytes or ``os.PathLike``.

Loading checks the format, the metadata's structure, every array's presence, shape and
dtype, and that the optimiser's state belongs to the model's parameters; a truncated,
corrupt, edited or foreign file raises a ValueError naming the file and the problem (never
zipfile's or json's own exceptions).

Imports run one way: ``model.py`` imports this module (``Model.save`` and ``load_model``
live there, next to the class they save and rebuild), and this module never imports
``model.py``: it knows the file format and works on any object with a model's attributes
(``network``, ``optimizer``, ``history``, ``epochs_done``, ``get_config()``, ``compile()``).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import secrets
import socket
import stat

import numpy as np

from . import layers as L
from .optim import get_optimizer

FORMAT, VERSION = "nbcnn-checkpoint", 1
PARTIAL = ".nbcnn-partial-"  # in the names of files being written (see the module docstring)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header; an empty zip's end record


# --------------------------------------------------------------------------- paths


def _fs_path(path) -> str:
    """``path`` (str, bytes or os.PathLike) as a str."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"a checkpoint path must be a str, bytes or os.PathLike, got {type(path).__name__} "
                        f"{path!r:.40}") from None


def check_save_path(path) -> str:
    """The file a save to ``path`` writes (a symbolic link's target), after checking now what
    would make the save fail later: a missing or unwritable folder, or a folder at ``path``.
    ``nbcnn train --save`` calls it before training."""
    shown = _fs_path(path)
    target = os.path.realpath(shown) if os.path.islink(shown) else shown
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save {shown}: it is a folder; name a file in it")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save {shown}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot save {shown}: folder {folder} is not writable")
    return target


def _partial_prefix(target: str) -> str:
    # the target's name cut to 100 characters: the whole name must stay under NAME_MAX (255)
    return os.path.join(os.path.dirname(os.path.abspath(target)), f".{os.path.basename(target)[:100]}{PARTIAL}")


def _create_partial(target: str) -> tuple[int, str]:
    """Open a new hidden file for ``target``: mode 0666 less the umask, as for any new file
    (``tempfile.mkstemp`` would make it 0600)."""
    prefix = f"{_partial_prefix(target)}{socket.gethostname()}-{os.getpid()}-"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = prefix + secrets.token_hex(4)
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free temporary name next to {target}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _remove_stale_partials(target: str) -> None:
    """Remove the partial files of ``target`` left by processes of this host that no longer
    run (killed mid-save). Those of a running process, maybe saving right now, are left."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return
    prefix = _partial_prefix(target)
    folder, start = os.path.dirname(prefix), os.path.basename(prefix)
    host = socket.gethostname()
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(start):
                continue
            parts = entry.name[len(start):].rsplit("-", 2)  # host (may hold "-"), pid, random
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _process_alive(int(parts[1])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _renamed(exc: OSError, path: str) -> OSError:
    """``exc`` (which may name the partial file) as the same kind of error naming ``path``."""
    try:
        new = type(exc)(f"cannot save {path}: {exc.strerror or exc}")
    except Exception:
        new = OSError(f"cannot save {path}: {exc.strerror or exc}")
    new.errno = exc.errno
    return new


# --------------------------------------------------------------------------- saving


def save_model(model, path) -> None:
    """Write ``model`` to ``path`` (see the module docstring for the format and the guarantees)."""
    shown = _fs_path(path)
    target = check_save_path(shown)
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

    _remove_stale_partials(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # replacing a file: keep its permissions
    except OSError:
        mode = None
    done, tmp = False, None
    try:
        fd, tmp = _create_partial(target)
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # atomic on POSIX: readers see the old file or the new one
        done = True
    except OSError as exc:
        raise _renamed(exc, shown) from None
    finally:
        if not done and tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's metadata")


# --------------------------------------------------------------------------- loading


def read_checkpoint(path) -> tuple[dict, dict]:
    """(meta, arrays) of a checkpoint file, after checking its format, version and metadata."""
    path = _fs_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not an nbcnn checkpoint")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in _ZIP_MAGIC:
        what = "it is a single numpy array (.npy)" if magic == b"\x93NUM" else "it is not a zip archive"
        raise ValueError(f"{path} is not an nbcnn checkpoint: {what}; model.save writes a zip of arrays")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:
        # zipfile and numpy raise many kinds for a damaged archive: BadZipFile (a bad CRC),
        # NotImplementedError (a flipped compression method), RuntimeError ("password
        # required": a flipped encryption bit), EOFError, zlib.error, ValueError, ...
        raise ValueError(f"{path} is not a readable nbcnn checkpoint (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a member that is not a .npy file comes back as bytes
            raise ValueError(f"{path} is not an nbcnn checkpoint: its member {name!r} is not a numpy array")
    if "meta.json" not in arrays:
        raise ValueError(f"{path} is not an nbcnn checkpoint: it has no meta.json")
    raw = arrays.pop("meta.json")
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"it is an array of {raw.dtype} {raw.shape}, not text")
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: its meta.json is corrupt: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its meta.json is corrupt: a {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an nbcnn checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path} is checkpoint version {meta.get('version')!r}; this nbcnn reads version {VERSION}")
    _check_meta(meta, path)
    return meta, arrays


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_meta(meta: dict, path) -> None:
    """The structure ``save_model`` writes, entry by entry (a file edited by hand, or by
    another program, gets a ValueError naming the entry instead of a KeyError later)."""

    def bad(entry, what):
        raise ValueError(f"{path}: its meta.json is corrupt: {entry} must be {what}")

    def check(entry, value, ok, what):
        if not ok(value):
            bad(entry, what)

    model = meta.get("model")
    check("model", model, lambda v: isinstance(v, dict), "an object")
    check("model.network", model.get("network"), lambda v: isinstance(v, dict) and "class" in v and "config" in v,
          'a layer config {"class": ..., "config": ...}')
    check("model.input_shape", model.get("input_shape"),
          lambda v: isinstance(v, list) and all(_is_int(s) and s > 0 for s in v), "a list of positive ints")
    check("model.seed", model.get("seed"), _is_int, "an int")
    check("model.name", model.get("name"), lambda v: v is None or isinstance(v, str), "a string")
    check("trainable", meta.get("trainable", {}),
          lambda v: isinstance(v, dict) and all(isinstance(t, bool) for t in v.values()), "an object of true/false")
    check("epochs_done", meta.get("epochs_done", 0), lambda v: _is_int(v) and v >= 0, "an int >= 0")
    check("history", meta.get("history", {}), lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(s, list) and all(isinstance(x, (int, float)) for x in s)
        for k, s in v.items()), "an object of lists of numbers")
    check("loss", meta.get("loss", "crossentropy"), lambda v: isinstance(v, str), "a string")
    check("rng", meta.get("rng", {}), lambda v: isinstance(v, dict) and all(isinstance(s, dict) for s in v.values()),
          "an object of generator states")
    check("optimizer", meta.get("optimizer"), lambda v: v is None or (
        isinstance(v, dict) and isinstance(v.get("class"), str) and isinstance(v.get("config"), dict)),
        'null or {"class": ..., "config": {...}}')


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
        if saved.dtype.kind not in "fiu":
            raise ValueError(f"{path}: {name} holds {saved.dtype} values, not numbers")
    for name, (store, key, value) in expected.items():  # only once every array has passed
        store[key] = arrays[name].astype(value.dtype)


def restore(model, meta: dict, arrays: dict, path) -> None:
    """Put what ``read_checkpoint(path)`` returned into ``model``, freshly built from
    ``meta["model"]`` (``nbcnn.load_model`` does both): weights, frozen layers, dropout
    states, training position and history, the optimiser and its state."""
    _assign(model, arrays, path)
    layers_by_path = dict(model.network.named_layers())
    for layer_path, trainable in meta.get("trainable", {}).items():
        if layer_path not in layers_by_path:
            raise ValueError(f"{path}: its meta.json is corrupt: trainable names layer {layer_path!r}, "
                             f"which the model does not have")
        layers_by_path[layer_path].trainable = trainable
    for layer_path, state in meta.get("rng", {}).items():
        layer = layers_by_path.get(layer_path)
        if not isinstance(layer, L.Dropout):
            raise ValueError(f"{path}: its meta.json is corrupt: rng names layer {layer_path!r}, which is not a "
                             f"Dropout layer of the model")
        try:
            layer.rng.bit_generator.state = state
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: its meta.json is corrupt: the random state of layer {layer_path!r} is "
                             f"refused ({type(exc).__name__}: {exc})") from None
    model.epochs_done = meta.get("epochs_done", 0)
    model.history = meta.get("history", {})
    if meta.get("optimizer") is None:
        return
    try:
        model.compile(get_optimizer(meta["optimizer"]), meta.get("loss", "crossentropy"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: its meta.json is corrupt: cannot rebuild the optimizer or loss: {exc}") from None
    iterations = arrays.get("opt_iterations", np.array(0))
    if iterations.shape != () or iterations.dtype.kind not in "iu" or int(iterations) < 0:
        raise ValueError(f"{path}: opt_iterations must be one integer >= 0, got {iterations.dtype} {iterations.shape}")
    model.optimizer.iterations = int(iterations)
    # every parameter, frozen ones included (their state was saved if they trained before)
    params = {f"{lp}/{key}": value for lp, layer in layers_by_path.items() for key, value in layer.params.items()}
    for name, value in arrays.items():
        if not name.startswith("opt/"):
            continue
        param_name, _, slot = name[4:].rpartition("/")
        param = params.get(param_name)
        if param is None or not slot:
            raise ValueError(f"{path}: optimizer state {name} belongs to no parameter of the model "
                             f"(its parameters: {sorted(params)[:6]}{' ...' if len(params) > 6 else ''})")
        if value.shape != param.shape or value.dtype != param.dtype:
            raise ValueError(f"{path}: optimizer state {name} has shape {value.shape} and dtype {value.dtype}, but "
                             f"parameter {param_name} has shape {param.shape} and dtype {param.dtype}")
        model.optimizer.slots.setdefault(param_name, {})[slot] = value.copy()
