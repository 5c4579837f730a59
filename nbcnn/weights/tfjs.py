"""TensorFlow.js weights: a ``*-weights_manifest.json`` and the binary shard(s) it names.

The manifest is a JSON list of *weight groups*; each group names its shard files (``paths``,
relative to the manifest) and its tensors in order::

    [{"paths": ["model.bin"],                      # or "model-shard1", "model-shard2", ...
      "weights": [{"name": "conv0/filters", "shape": [3, 3, 3, 16], "dtype": "float32",
                   "quantization": {"dtype": "uint8", "scale": 0.009, "min": -1.2}},
                  {"name": "fc", "shape": [256, 128], "dtype": "float32"}, ...]}, ...]

A group's shards, concatenated in order, are one little-endian byte buffer in which the tensors
lie one after the other, with no header, no padding and no end marker. Each tensor is stored as

    dtype float32, no quantization              4 bytes a value
    quantization uint8  (scale, min)            1 byte  a value:  value = q * scale + min
    quantization uint16 (scale, min)            2 bytes a value:  value = q * scale + min
    quantization float16                        2 bytes a value:  an IEEE half

so the manifest alone says how many bytes each group's shards must hold. ``read_tfjs_model``
checks exactly that and refuses, with a ``TfjsError`` naming the file and the tensor, a missing
shard, a truncated buffer, extra bytes, an unknown dtype or a bad shape: the only ways a manifest
that does not belong to its ``.bin`` can be caught.

    from nbcnn.weights.tfjs import read_tfjs_model
    weights = read_tfjs_model("face_recognition_model-weights_manifest.json")
    weights["conv32_down/conv/filters"].shape        # (7, 7, 3, 32), float32, TF's HWIO layout

TF.js keeps TensorFlow's layouts: a conv filter is (height, width, in, out), like nbcnn's; a
depthwise filter is (height, width, channels, multiplier).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

# Bytes per stored value and the numpy dtype to read them as (little-endian).
STORED_DTYPES = {
    "float32": np.dtype("<f4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}
# Storage types that are affine-dequantised with the manifest's (scale, min).
AFFINE_QUANTIZED = ("uint8", "uint16")


class TfjsError(ValueError):
    """A TF.js manifest or shard nbcnn cannot read, or a manifest that does not match its shards."""


def read_tfjs_model(manifest_path) -> dict[str, np.ndarray]:
    """All tensors of a TF.js model, by name, as float32 arrays of the manifest's shapes.

    Args:
        manifest_path: the ``*-weights_manifest.json``; its shards are looked up next to it.

    Returns:
        ``{name: np.ndarray(float32)}`` in manifest order (quantised tensors dequantised).

    Raises:
        TfjsError: unreadable JSON, a missing shard, a buffer shorter or longer than the
            manifest's tensors, an unknown dtype or quantization, a bad shape, a repeated name.
    """
    manifest_path = Path(manifest_path)
    groups = _read_manifest(manifest_path)
    weights: dict[str, np.ndarray] = {}
    for number, group in enumerate(groups):
        where = f"{manifest_path} (weight group {number})"
        buffer, shard_names = _read_shards(manifest_path.parent, group, where)
        for name, array in _split_group(buffer, group["weights"], shard_names, where):
            if name in weights:
                raise TfjsError(f"{where}: tensor {name!r} appears twice in the manifest")
            weights[name] = array
    return weights


def _read_manifest(manifest_path: Path) -> list:
    """The manifest's list of weight groups, with the structure checked (not yet the sizes)."""
    if not manifest_path.is_file():
        raise TfjsError(f"{manifest_path}: no such TF.js manifest")
    try:
        groups = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TfjsError(f"{manifest_path}: not a JSON manifest ({error})") from None
    if not isinstance(groups, list) or not groups:
        raise TfjsError(f"{manifest_path}: a TF.js manifest is a non-empty list of weight groups")
    for number, group in enumerate(groups):
        where = f"{manifest_path} (weight group {number})"
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise TfjsError(f"{where}: each weight group needs a 'paths' list and a 'weights' list")
        if not group["paths"] or not all(isinstance(p, str) and p for p in group["paths"]):
            raise TfjsError(f"{where}: 'paths' must name at least one shard file")
    return groups


def _read_shards(folder: Path, group: dict, where: str) -> tuple[bytes, list[str]]:
    """A group's shards concatenated in manifest order, and their names (for messages)."""
    parts = []
    for relative in group["paths"]:
        # shard paths are relative to the manifest; refuse any that climb out of its folder
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise TfjsError(f"{where}: shard path {relative!r} must be relative to the manifest's folder")
        shard = folder / relative
        if not shard.is_file():
            raise TfjsError(f"{where}: shard {shard} is missing")
        parts.append(shard.read_bytes())
    return b"".join(parts), [str(folder / p) for p in group["paths"]]


def _split_group(buffer: bytes, entries: list, shard_names: list[str], where: str):
    """Yield ``(name, float32 array)`` for each tensor entry, cutting them from ``buffer`` in order."""
    shards = " + ".join(shard_names)
    offset = 0
    for index, entry in enumerate(entries):
        name, shape, stored, quantization = _describe(entry, index, where)
        count = math.prod(shape)
        nbytes = count * stored.itemsize
        if offset + nbytes > len(buffer):
            raise TfjsError(
                f"{shards}: truncated at tensor {name!r} ({where}): it needs bytes {offset}..{offset + nbytes} "
                f"but the shard(s) hold {len(buffer)} bytes; the manifest does not match the .bin")
        raw = np.frombuffer(buffer, dtype=stored, count=count, offset=offset)
        offset += nbytes
        yield name, _dequantize(raw, quantization).reshape(shape)
    if offset != len(buffer):
        raise TfjsError(
            f"{shards}: {len(buffer) - offset} extra bytes after the last tensor "
            f"({where}: the manifest's {len(entries)} tensors take {offset} of {len(buffer)} bytes); "
            "the manifest does not match the .bin")


def _describe(entry, index: int, where: str):
    """Check one manifest entry; return its name, shape, stored numpy dtype and quantization."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise TfjsError(f"{where}: weight entry {index} has no 'name'")
    name = entry["name"]
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise TfjsError(f"{where}: tensor {name!r} has shape {shape!r}; expected a list of non-negative ints")
    dtype = entry.get("dtype")
    quantization = entry.get("quantization")
    if quantization is None:
        if dtype != "float32":
            raise TfjsError(f"{where}: tensor {name!r} has dtype {dtype!r}; nbcnn reads float32 tensors "
                            "and uint8 / uint16 / float16 quantised ones")
        return name, tuple(shape), STORED_DTYPES["float32"], None
    if dtype != "float32":
        raise TfjsError(f"{where}: tensor {name!r} is a quantised {dtype!r}; only float32 tensors "
                        "can be quantised here")
    stored_name = quantization.get("dtype") if isinstance(quantization, dict) else None
    if stored_name not in AFFINE_QUANTIZED and stored_name != "float16":
        raise TfjsError(f"{where}: tensor {name!r} has unknown quantization {quantization!r}; "
                        "expected dtype uint8, uint16 (with scale and min) or float16")
    if stored_name in AFFINE_QUANTIZED:
        for key in ("scale", "min"):
            value = quantization.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise TfjsError(f"{where}: tensor {name!r}: {stored_name} quantization needs a finite "
                                f"{key!r}, got {value!r}")
    return name, tuple(shape), STORED_DTYPES[stored_name], quantization


def _dequantize(raw: np.ndarray, quantization) -> np.ndarray:
    """Stored values to float32: ``q * scale + min`` for uint8/uint16, a widening for float16."""
    if quantization is None or quantization["dtype"] == "float16":
        return raw.astype(np.float32)
    # TF.js computes q * scale + min in JavaScript doubles and stores the result in a
    # Float32Array (io_utils decodeWeight): one rounding, which float64 then astype reproduces
    scale = float(quantization["scale"])
    low = float(quantization["min"])
    return (raw.astype(np.float64) * scale + low).astype(np.float32)
