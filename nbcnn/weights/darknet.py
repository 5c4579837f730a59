"""Darknet's two files: the ``.cfg`` that describes a network, and the ``.weights`` that fill it.

The cfg is an INI-like text read the way darknet's ``read_cfg`` reads it: every whitespace
character is removed from a line, ``#`` and ``;`` start comment lines, ``[section]`` starts
a layer and ``key=value`` sets one of its options. The first section is ``[net]`` (input
width, height, channels); each later one is a layer, numbered from 0, which ``[route]``
sections refer to (``layers = -1, 8``: one layer back, and layer 8).

The weights file, little-endian::

    int32 major, int32 minor, int32 revision
    seen: int64 if major * 10 + minor >= 2 (and both < 1000), else int32   (images trained on)
    then, for each [convolutional] section in cfg order, float32 arrays of:
        biases            (filters,)
        if batch_normalize=1:
            scales            (filters,)
            rolling_mean      (filters,)
            rolling_variance  (filters,)
        weights           (filters, channels, size, size)  -> nbcnn's (size, size, channels, filters)

Nothing else: no names, no shapes, no end marker. The cfg alone says how many numbers each
layer takes, so ``read_weights`` checks that the file holds exactly that many, and refuses
(``ValueError`` naming the layer and the counts) a truncated file, extra bytes or a header it
cannot read — the only ways a wrong cfg/weights pair can be caught.

``load_darknet(cfg, weights)`` builds the network from nbcnn layers
(``nbcnn.detection.darknet_net.DarknetNetwork``); it runs on whichever backend is chosen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# darknet's names for each kind of section (parser.c: string_to_layer_type)
SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "maxpool": "maxpool", "max": "maxpool",
    "upsample": "upsample",
    "route": "route",
    "yolo": "yolo",
}
# sections darknet knows that nbcnn does not build (yet)
KNOWN_UNSUPPORTED = {
    "shortcut", "crop", "cost", "detection", "region", "local", "deconvolutional", "deconv",
    "activation", "logistic", "l2norm", "crnn", "gru", "lstm", "rnn", "connected", "conn",
    "reorg", "avgpool", "avg", "dropout", "lrn", "normalization", "batchnorm", "softmax", "soft",
    "iseg", "xnor",
}
ACTIVATIONS = ("leaky", "linear", "relu", "logistic", "tanh")


class DarknetError(ValueError):
    """A cfg or weights file nbcnn cannot read, or a pair that does not match."""


@dataclass
class Section:
    """One ``[kind]`` block of a cfg: its options as strings, where it starts, its layer index."""

    kind: str
    options: dict = field(default_factory=dict)
    line: int = 0
    index: int = -1  # layer number (the [net] section is -1)
    source: str = "<cfg>"

    def where(self) -> str:
        what = "[net]" if self.kind == "net" else f"layer {self.index} [{self.kind}]"
        return f"{what} ({self.source}, line {self.line})"

    def _get(self, key, default, convert, kind):
        if key not in self.options:
            if default is None:
                raise DarknetError(f"{self.where()}: option {key!r} is required")
            return default
        raw = self.options[key]
        try:
            return convert(raw)
        except ValueError:
            raise DarknetError(f"{self.where()}: option {key}={raw} is not {kind}") from None

    def int(self, key, default=None) -> int:
        return self._get(key, default, int, "an integer")

    def float(self, key, default=None) -> float:
        return self._get(key, default, float, "a number")

    def str(self, key, default=None) -> str:
        return self._get(key, default, str, "text")

    def ints(self, key, default=None) -> list[int]:
        return self._get(key, default, lambda s: [int(v) for v in s.split(",") if v != ""],
                         "a comma-separated list of integers")

    def floats(self, key, default=None) -> list[float]:
        return self._get(key, default, lambda s: [float(v) for v in s.split(",") if v != ""],
                         "a comma-separated list of numbers")


def _read_text(cfg) -> tuple[str, str]:
    """(text, name) from a path or the cfg text itself (anything containing a newline or '[')."""
    if isinstance(cfg, Path) or (isinstance(cfg, str) and "\n" not in cfg and "[" not in cfg):
        path = Path(cfg)
        if not path.is_file():
            raise FileNotFoundError(f"darknet cfg file {str(path)!r} does not exist")
        return path.read_text(encoding="utf-8", errors="replace"), path.name
    if not isinstance(cfg, str):
        raise TypeError(f"cfg must be a path or the cfg text, got {type(cfg).__name__}")
    return cfg, "<cfg text>"


def parse_cfg(cfg) -> list[Section]:
    """Read a darknet cfg (a path, or its text) into its sections, ``[net]`` first.

    As darknet's ``read_cfg``: whitespace anywhere in a line is dropped (``anchors = 10,14,  23,27``
    reads as ``10,14,23,27``), lines starting with ``#`` or ``;`` are comments, a line
    without ``=`` outside a ``[section]`` header is an error. A section kind nbcnn does not
    build raises a ``ValueError`` naming it, its line and what nbcnn reads.
    """
    text, source = _read_text(cfg)
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise DarknetError(f"{source}, line {number}: section header {raw.strip()!r} has no closing ']'")
            name = line[1:-1].lower()
            kind = SECTION_ALIASES.get(name)
            if kind is None:
                supported = sorted({k for k in SECTION_ALIASES.values()})
                if name in KNOWN_UNSUPPORTED:
                    raise DarknetError(f"{source}, line {number}: darknet section [{name}] is not supported by "
                                       f"nbcnn yet; it builds {', '.join('[' + s + ']' for s in supported)}")
                raise DarknetError(f"{source}, line {number}: unknown cfg section [{name}]; nbcnn builds "
                                   f"{', '.join('[' + s + ']' for s in supported)}")
            index = -1 if kind == "net" else sum(1 for s in sections if s.kind != "net")
            sections.append(Section(kind, {}, number, index, source))
            continue
        if "=" not in line:
            raise DarknetError(f"{source}, line {number}: cannot read {raw.strip()!r}; expected key=value or [section]")
        if not sections:
            raise DarknetError(f"{source}, line {number}: option {raw.strip()!r} comes before the first [section]")
        key, value = line.split("=", 1)
        sections[-1].options[key] = value
    if not sections or sections[0].kind != "net":
        raise DarknetError(f"{source}: the first section must be [net] (or [network]), the network's input")
    if any(s.kind == "net" for s in sections[1:]):
        extra = next(s for s in sections[1:] if s.kind == "net")
        raise DarknetError(f"{source}, line {extra.line}: a second [net] section")
    if len(sections) == 1:
        raise DarknetError(f"{source}: no layers after [net]")
    return sections


# --------------------------------------------------------------------------- layer geometry


@dataclass
class LayerSpec:
    """What one cfg section builds: its kind, options resolved, input/output shapes (H, W, C)."""

    section: Section
    inputs: list            # absolute indices of the layers it reads; [-1] = the input image
    in_shape: tuple
    out_shape: tuple
    options: dict

    @property
    def kind(self):
        return self.section.kind

    @property
    def index(self):
        return self.section.index

    def weight_counts(self) -> dict:
        """How many float32 numbers this layer takes from the weights file, per array (in file order)."""
        if self.kind != "convolutional":
            return {}
        o = self.options
        n, c, k = o["filters"], self.in_shape[2], o["size"]
        counts = {"biases": n}
        if o["batch_normalize"]:
            counts.update(scales=n, rolling_mean=n, rolling_variance=n)
        counts["weights"] = n * c * k * k
        return counts

    def describe(self) -> str:
        o = self.options
        if self.kind == "convolutional":
            what = f"conv {o['filters']:5d} {o['size']} x {o['size']} / {o['stride']}"
        elif self.kind == "maxpool":
            what = f"max        {o['size']} x {o['size']} / {o['stride']}"
        elif self.kind == "upsample":
            what = f"upsample         x{o['stride']}"
        elif self.kind == "route":
            return f"{self.index:4d} route  {' '.join(str(i) for i in self.inputs)}"
        else:
            return f"{self.index:4d} yolo   mask {','.join(map(str, o['mask']))}  {o['classes']} classes"
        (h, w, c), (ho, wo, co) = self.in_shape, self.out_shape
        return f"{self.index:4d} {what:24s} {w:4d} x{h:4d} x{c:5d}  -> {wo:4d} x{ho:4d} x{co:5d}"


def _check_keys(section: Section, refused: dict) -> None:
    for key, allowed in refused.items():
        if key in section.options and section.options[key] not in allowed:
            raise DarknetError(f"{section.where()}: {key}={section.options[key]} is not supported by nbcnn")


def layer_specs(sections: list[Section]) -> tuple[tuple, list[LayerSpec]]:
    """The network's input shape (H, W, C) and, per layer, its resolved options and shapes.

    Follows darknet's parser: conv ``padding = size // 2`` when ``pad=1`` (else ``padding``),
    ``out = (in + 2 * padding - size) // stride + 1``; maxpool ``padding`` defaults to
    ``size - 1``, ``out = (in + padding - size) // stride + 1`` with ``padding // 2`` rows
    before and the rest after; route indices below 0 count back from the route itself.
    """
    net = sections[0]
    H, W, C = net.int("height", 0), net.int("width", 0), net.int("channels", 0)
    if min(H, W, C) <= 0:
        raise DarknetError(f"{net.where()}: height, width and channels must all be set > 0, got "
                           f"height={H}, width={W}, channels={C}")
    specs: list[LayerSpec] = []
    shape = (H, W, C)
    for section in sections[1:]:
        i = section.index
        prev = [i - 1]
        if section.kind == "convolutional":
            _check_keys(section, {"groups": ("1",), "binary": ("0",), "xnor": ("0",), "flipped": ("0",),
                                  "dilation": ("1",)})
            size, stride = section.int("size", 1), section.int("stride", 1)
            filters = section.int("filters", 1)
            pad = section.int("pad", 0)
            padding = size // 2 if pad else section.int("padding", 0)
            activation = section.str("activation", "logistic")  # darknet's default
            if activation not in ACTIVATIONS:
                raise DarknetError(f"{section.where()}: activation={activation} is not supported; "
                                   f"nbcnn builds {', '.join(ACTIVATIONS)}")
            if min(size, stride, filters) < 1 or padding < 0:
                raise DarknetError(f"{section.where()}: size={size}, stride={stride}, filters={filters}, "
                                   f"padding={padding} must be positive")
            ho, wo = (shape[0] + 2 * padding - size) // stride + 1, (shape[1] + 2 * padding - size) // stride + 1
            if min(ho, wo) < 1:
                raise DarknetError(f"{section.where()}: a {size}x{size} filter does not fit its {shape} input")
            options = dict(filters=filters, size=size, stride=stride, padding=padding, activation=activation,
                           batch_normalize=bool(section.int("batch_normalize", 0)))
            out = (ho, wo, filters)
        elif section.kind == "maxpool":
            stride = section.int("stride", 1)
            size = section.int("size", stride)
            padding = section.int("padding", size - 1)
            before, after = padding // 2, padding - padding // 2
            if min(size, stride) < 1 or padding < 0 or after >= size:
                raise DarknetError(f"{section.where()}: size={size}, stride={stride}, padding={padding}: nbcnn "
                                   f"needs size, stride >= 1 and less padding than the window on every side")
            ho, wo = (shape[0] + padding - size) // stride + 1, (shape[1] + padding - size) // stride + 1
            if min(ho, wo) < 1:
                raise DarknetError(f"{section.where()}: a {size}x{size} window does not fit its {shape} input")
            options = dict(size=size, stride=stride, padding=((before, after), (before, after)))
            out = (ho, wo, shape[2])
        elif section.kind == "upsample":
            stride = section.int("stride", 2)
            scale = section.float("scale", 1.0)
            if stride < 1:
                raise DarknetError(f"{section.where()}: stride={stride}: nbcnn upsamples by a factor >= 1 only")
            if scale != 1.0:
                raise DarknetError(f"{section.where()}: scale={scale} is not supported (only 1)")
            options = dict(stride=stride)
            out = (shape[0] * stride, shape[1] * stride, shape[2])
        elif section.kind == "route":
            refs = section.ints("layers")
            if not refs:
                raise DarknetError(f"{section.where()}: layers= names no layer")
            prev = [r + i if r < 0 else r for r in refs]
            for r, p in zip(refs, prev):
                if not 0 <= p < i:
                    raise DarknetError(f"{section.where()}: layers={section.options['layers']} refers to layer {p}, "
                                       f"but a route can only take earlier layers (0 to {i - 1})")
            shapes = [specs[p].out_shape for p in prev]
            if len({s[:2] for s in shapes}) != 1:
                raise DarknetError(f"{section.where()}: layers {prev} have outputs {shapes}: only outputs of the "
                                   f"same height and width can be concatenated")
            options = dict(layers=prev)
            out = (shapes[0][0], shapes[0][1], sum(s[2] for s in shapes))
        elif section.kind == "yolo":
            classes = section.int("classes", 20)
            total = section.int("num", 1)
            mask = section.ints("mask", list(range(total)))
            anchors = section.floats("anchors", [0.5] * (2 * total))  # darknet's biases default to .5
            if len(anchors) != 2 * total:
                raise DarknetError(f"{section.where()}: num={total} anchors need {2 * total} numbers, "
                                   f"anchors= gives {len(anchors)}")
            if any(not 0 <= m < total for m in mask):
                raise DarknetError(f"{section.where()}: mask={mask} must index the num={total} anchors")
            if "map" in section.options:
                raise DarknetError(f"{section.where()}: map= (class remapping) is not supported")
            if shape[2] != len(mask) * (classes + 5):
                raise DarknetError(f"{section.where()}: its input has {shape[2]} channels, but {len(mask)} anchors x "
                                   f"({classes} classes + 5) need {len(mask) * (classes + 5)}")
            anchor_pairs = [(anchors[2 * m], anchors[2 * m + 1]) for m in range(total)]
            options = dict(classes=classes, mask=mask, anchors=anchor_pairs)
            out = shape
        else:  # pragma: no cover - parse_cfg refused it
            raise DarknetError(f"{section.where()}: cannot build [{section.kind}]")
        in_shape = shape if section.kind != "route" else tuple(specs[prev[0]].out_shape)
        if i == 0:
            prev = [-1]  # the image
        specs.append(LayerSpec(section, prev, in_shape, tuple(out), options))
        shape = tuple(out)
    return (H, W, C), specs


# --------------------------------------------------------------------------- weights


@dataclass
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int
    size: int  # bytes: 20 (int64 seen) or 16 (int32 seen)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision}"


def read_header(data: bytes, source: str = "<weights>") -> WeightsHeader:
    """The version numbers and ``seen`` at the start of a weights file (see the module docstring)."""
    if len(data) < 16:
        raise DarknetError(f"{source}: {len(data)} bytes is too short for a darknet weights header "
                           f"(3 int32 version numbers and the images-seen count: 16 or 20 bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    if not (0 <= major < 1000 and 0 <= minor < 1000 and revision >= 0):
        raise DarknetError(f"{source}: not a darknet weights header: version {major}.{minor}.{revision} "
                           f"(darknet writes 0.2.0; versions of 1000 or more, darknet's transposed "
                           f"fully-connected format, are not supported)")
    if major * 10 + minor >= 2:
        if len(data) < 20:
            raise DarknetError(f"{source}: header version {major}.{minor}.{revision} needs 20 bytes, the file has "
                               f"{len(data)}")
        seen, size = int(np.frombuffer(data, "<i8", 1, 12)[0]), 20
    else:
        seen, size = int(np.frombuffer(data, "<i4", 1, 12)[0]), 16
    return WeightsHeader(major, minor, revision, seen, size)


def read_weights(weights, specs: list[LayerSpec], source: str | None = None):
    """Read a weights file (path or bytes) for the layers of ``layer_specs``; return
    ``(header, {layer index: {"biases": ..., "scales": ..., "weights": (f, f, C_in, C_out)}})``.

    The file must hold exactly the numbers the layers need: a shorter file, extra bytes, or
    a header that cannot be read raise a ``DarknetError`` (a ValueError) naming the layer and
    the counts.
    """
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"darknet weights file {str(path)!r} does not exist")
        data, source = path.read_bytes(), source or path.name
    else:
        data, source = bytes(weights), source or "<weights bytes>"
    header = read_header(data, source)
    body = len(data) - header.size
    convs = [s for s in specs if s.weight_counts()]
    needed = sum(sum(s.weight_counts().values()) for s in convs)
    context = (f"{source}: {len(data)} bytes = a {header.size}-byte header (version {header.version}) + {body} bytes "
               f"({body / 4:g} float32); the cfg's {len(convs)} convolutional layers need {needed} float32 "
               f"({needed * 4} bytes)")
    if body % 4:
        raise DarknetError(f"{context}; {body} is not a whole number of float32 (4 bytes each): the file is "
                           f"truncated or not a darknet weights file")
    floats = np.frombuffer(data, "<f4", body // 4, header.size)
    params, offset = {}, 0
    for spec in convs:
        counts = spec.weight_counts()
        total = sum(counts.values())
        if offset + total > floats.size:
            o = spec.options
            raise DarknetError(f"{context}. The file ends inside {spec.section.where()} "
                               f"({o['size']}x{o['size']} conv, {spec.in_shape[2]} -> {o['filters']} channels"
                               f"{', batch norm' if o['batch_normalize'] else ''}): it needs {total} float32 "
                               f"({', '.join(f'{k} {v}' for k, v in counts.items())}) from offset {offset}, "
                               f"only {floats.size - offset} are left. Truncated file, or a cfg that does not match "
                               f"these weights?")
        arrays = {}
        for key, count in counts.items():
            arrays[key] = floats[offset:offset + count].astype(np.float32)
            offset += count
        o = spec.options
        W = arrays["weights"].reshape(o["filters"], spec.in_shape[2], o["size"], o["size"])
        arrays["weights"] = np.ascontiguousarray(W.transpose(2, 3, 1, 0))  # (f, f, C_in, C_out)
        params[spec.index] = arrays
    if offset != floats.size:
        last = convs[-1].section.where() if convs else "the header"
        raise DarknetError(f"{context}. {floats.size - offset} float32 ({(floats.size - offset) * 4} bytes) are left "
                           f"after the last layer that takes weights, {last}: the cfg does not match these weights "
                           f"(or the header version is wrong)")
    return header, params


# --------------------------------------------------------------------------- building


def load_darknet(cfg, weights=None, names=None):
    """Build a darknet network (``.cfg`` path or text) from nbcnn layers, filled from ``weights``
    (a path or bytes; None leaves the random initial weights). ``names``: class names, a list
    or a path to a file with one per line (``coco.names``).

    Returns a ``nbcnn.detection.darknet_net.DarknetNetwork``.
    """
    from ..detection.darknet_net import DarknetNetwork

    sections = parse_cfg(cfg)
    input_shape, specs = layer_specs(sections)
    network = DarknetNetwork.from_specs(input_shape, specs)
    if weights is not None:
        header, params = read_weights(weights, specs)
        network.set_darknet_weights(params)
        network.header = header
    if names is not None:
        network.names = read_names(names)
    return network


def read_names(names) -> list[str]:
    """Class names, one per line (``coco.names``), or a list returned as is."""
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    path = Path(names)
    if not path.is_file():
        raise FileNotFoundError(f"class names file {str(path)!r} does not exist")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_pretrained(name: str = "yolov3-tiny", cfg=None, weights=None, names=None):
    """A pretrained darknet network from the cache (``nbcnn weights NAME`` puts it there), or
    from the paths given: ``cfg``/``weights``/``names`` override the cached files one by one.

    Raises ``WeightsNotFound`` (a FileNotFoundError naming the command) when a file is needed
    from the cache and is not there. Never downloads.
    """
    from .cache import find

    if cfg is None or weights is None or names is None:
        try:
            cached = find(name)
        except FileNotFoundError:
            if cfg is None or weights is None:
                raise
            cached = {}
        cfg = cfg if cfg is not None else cached["cfg"]
        weights = weights if weights is not None else cached["weights"]
        names = names if names is not None else cached.get("names")
    return load_darknet(cfg, weights, names)
