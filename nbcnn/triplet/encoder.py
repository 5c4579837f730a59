"""The siamese encoder: a ConvNet from nbcnn layers ending in an L2-normalised embedding.

"Siamese" because the *same* network, with the same weights, encodes both images of a
pair: ``d(x1, x2) = ||f(x1) - f(x2)||^2``. A ``FaceEncoder`` is an ``nbcnn.Model`` that also
carries what verification needs, saved in the same checkpoint file (``meta.json``'s
``model.faces`` entry; ``nbcnn.load_model`` reads the file as a plain model too):

    threshold   same identity when the distance is below it (chosen on validation pairs)
    distance    "squared_l2": ||f(x1) - f(x2)||^2 (the triplet encoder), or "logistic":
                1 - sigmoid(w . |f(x1) - f(x2)| + b), the lecture's binary-classification
                alternative, with the logistic unit's w and b in ``head``
    info        how it was trained (data, identities held out, mining, margin, ...)

``encoder_id`` is a hash of the architecture and every weight: the face database stores it
with each embedding and never compares embeddings made by two different encoders.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from .. import checkpoint, ops
from .. import layers as L
from ..backend import to_host
from ..model import Model, load_model

DISTANCES = ("squared_l2", "logistic")


class FaceEncoder(Model):
    """A model whose output is an embedding (N, D) on the unit sphere, plus its verification rule."""

    def __init__(self, layers, input_shape=None, seed: int = 0, name: str = "face_encoder",
                 threshold: float | None = None, distance: str = "squared_l2", head: dict | None = None,
                 info: dict | None = None):
        super().__init__(layers, input_shape=input_shape, seed=seed, name=name)
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if distance == "logistic" and head is None:
            raise ValueError("a logistic encoder needs its head: {'w': [...], 'b': ...}")
        self.distance = distance
        self.head = None if head is None else {"w": np.asarray(head["w"], np.float32).reshape(-1),
                                               "b": float(head["b"])}
        self.threshold = None if threshold is None else float(threshold)
        self.info = dict(info or {})

    # --- saving: the verification rule rides in the checkpoint's meta.json
    def faces_config(self) -> dict:
        head = None if self.head is None else {"w": [float(v) for v in self.head["w"]], "b": self.head["b"]}
        return {"threshold": self.threshold, "distance": self.distance, "head": head, "info": self.info}

    def get_config(self) -> dict:
        config = super().get_config()
        config["faces"] = self.faces_config()
        return config

    # --- embeddings and distances
    @property
    def embedding_dim(self) -> int:
        return int(self.output_shape[-1])

    def embed(self, x, batch_size: int = 256) -> np.ndarray:
        """Embeddings (N, D) of images ``x`` (N, H, W, C), in inference mode (BatchNorm's moving averages)."""
        return np.asarray(self.predict(x, batch_size=batch_size), np.float32)

    def distances(self, e1, e2=None) -> np.ndarray:
        """(N, M) distances between every embedding of ``e1`` and every one of ``e2`` (default e1)."""
        e1 = np.asarray(to_host(e1), np.float32)
        e2 = e1 if e2 is None else np.asarray(to_host(e2), np.float32)
        if self.distance == "squared_l2":
            return np.asarray(to_host(ops.pairwise_squared_distances(e1, e2)))
        out = np.empty((e1.shape[0], e2.shape[0]), np.float32)
        for i in range(e1.shape[0]):  # row by row: N x M x D numbers at once could be large
            out[i] = self.pair_distances(np.broadcast_to(e1[i], e2.shape), e2)
        return out

    def pair_distances(self, e1, e2) -> np.ndarray:
        """(N,) distances between row i of ``e1`` and row i of ``e2``."""
        e1, e2 = np.asarray(e1, np.float32), np.asarray(e2, np.float32)
        if self.distance == "squared_l2":
            return ((e1 - e2) ** 2).sum(axis=1)
        return 1.0 - logistic_same(np.abs(e1 - e2), self.head["w"], self.head["b"])

    @property
    def encoder_id(self) -> str:
        """16 hex digits of the sha256 of the architecture, every weight and BatchNorm's statistics."""
        h = hashlib.sha256(json.dumps(self.network.get_config(), sort_keys=True, default=str).encode())
        h.update(repr(self.input_shape).encode())
        for path, layer in self.network.named_layers():
            for group in (layer.params, layer.state):
                for key in sorted(group):
                    a = np.ascontiguousarray(group[key])
                    h.update(f"{path}/{key}:{a.dtype.str}:{a.shape}".encode())
                    h.update(a.tobytes())
        if self.distance == "logistic":
            h.update(np.asarray(self.head["w"], np.float32).tobytes() + repr(self.head["b"]).encode())
        return h.hexdigest()[:16]



def logistic_same(abs_diff, w, b) -> np.ndarray:
    """The lecture's logistic unit: ``P(same) = sigmoid(sum_k w[k] |f(x1)[k] - f(x2)[k]| + b)``, (N,)."""
    z = np.asarray(abs_diff, np.float64) @ np.asarray(w, np.float64) + float(b)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


HEADS = ("flat", "dense")


def build_encoder(input_shape=(20, 20, 1), embedding_dim: int = 32, width: int = 32, seed: int = 0,
                  batch_norm: bool = True, head: str = "flat") -> FaceEncoder:
    """A small ConvNet encoder: blocks of ``Conv2D(3x3, same) [-> BatchNorm] -> ReLU -> MaxPool(2)``,
    doubling the channels (``width``, 2 x width, ... at most 4 x width) until the image is at most
    7 pixels across, then one more conv block and the head:

    head="flat" (default)  a conv block of ``embedding_dim`` filters, ``Flatten -> L2Normalize``:
                           the embedding keeps where things are (a loop at the top of a 9, at the
                           bottom of a 6); for the 20x20 digits 5 x 5 x 32 = 800 numbers, 38k
                           parameters at width 32
    head="dense"           ``Flatten -> Dense(embedding_dim) -> L2Normalize`` (FaceNet's shape):
                           a learnt projection that squeezes everything into embedding_dim numbers

    On the digits with classes 6-9 held out (3 epochs, semi-hard), the flat head's unseen-pair
    AUC was 0.88-0.89, a 64-unit dense head's 0.82: squeezing six seen identities into a small
    learnt space throws away what tells the unseen ones apart (the README's faces section).
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    H, W = int(input_shape[0]), int(input_shape[1])
    layers, size, channels = [], min(H, W), int(width)

    def block(filters):
        out = [L.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal")]
        return out + ([L.BatchNormalization(momentum=0.9)] if batch_norm else []) + [L.ReLU()]

    pools = 0
    while size > 7 or pools < 1:
        layers += block(channels) + [L.MaxPooling2D(2)]
        size, pools = size // 2, pools + 1
        channels = min(channels * 2, 4 * int(width))
    if head == "flat":
        layers += block(int(embedding_dim)) + [L.Flatten(), L.L2Normalize()]
    else:
        layers += block(channels) + [L.Flatten(), L.Dense(int(embedding_dim)), L.L2Normalize()]
    return FaceEncoder(layers, input_shape=tuple(input_shape), seed=seed)


def ensemble(members, seed: int = 0) -> FaceEncoder:
    """One encoder made of several trained ones (same input shape), each encoding the image on its
    own branch: ``f(x) = [f_1(x), ..., f_N(x)] / sqrt(N)``, a ``Concatenate`` of the members
    followed by ``L2Normalize`` (each f_k is unit-length already, so this only divides by sqrt(N)).

    The squared distance is then the *mean* of the members' squared distances,
    ``d(x1, x2) = (1/N) sum_k ||f_k(x1) - f_k(x2)||^2``: encoders trained from different random
    starts and batches make different mistakes on unseen identities, and their mean distance
    ranked pairs of unseen digits a little better than one of them (the README's faces section). The members' weights
    and BatchNorm statistics are copied; the result saves and loads as one plain model."""
    members = list(members)
    if not members or not all(isinstance(m, FaceEncoder) for m in members):
        raise ValueError("ensemble needs one or more FaceEncoders")
    shapes = {None if m.input_shape is None else tuple(m.input_shape) for m in members}
    if len(shapes) != 1 or None in shapes:
        raise ValueError(f"the members of an ensemble must be built for one input shape, "
                         f"got {sorted(map(str, shapes))}")
    if any(m.distance != "squared_l2" or len(m.output_shape) != 1 for m in members):
        raise ValueError("only squared-distance encoders with (D,) embeddings can be put together")
    fresh = [L.from_config(m.network.get_config()) for m in members]  # the same layers, unbuilt
    enc = FaceEncoder([L.Concatenate(fresh), L.L2Normalize()], input_shape=shapes.pop(), seed=seed)
    for member, branch in zip(members, fresh):
        for (_, src), (_, dst) in zip(member.network.named_layers(), branch.named_layers()):
            for group in ("params", "state"):
                for key, value in getattr(src, group).items():
                    getattr(dst, group)[key] = np.array(value, copy=True)
    return enc


def check_threshold(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: the verification threshold must be a finite number, got {value!r}")
    return float(value)


def load_encoder(path) -> FaceEncoder:
    """A ``FaceEncoder`` saved with ``encoder.save(path)`` (``nbcnn faces train``): weights and
    verification rule. A plain nbcnn model, or a file that is not a checkpoint, is refused with a
    ValueError (FileNotFoundError when there is no file) naming the file."""
    meta, _ = checkpoint.read_checkpoint(path)
    shown = os.fsdecode(os.fspath(path))
    faces = meta["model"].get("faces")
    if not isinstance(faces, dict):
        raise ValueError(f"{shown} is an nbcnn model but not a face encoder (no verification threshold in it): "
                         f"train one with `nbcnn faces train`")
    distance = faces.get("distance", "squared_l2")
    if distance not in DISTANCES:
        raise ValueError(f"{shown}: unknown distance {distance!r} (known: {DISTANCES})")
    threshold = faces.get("threshold")
    if threshold is not None:
        threshold = check_threshold(threshold, shown)
    head = faces.get("head")
    if distance == "logistic":
        if not (isinstance(head, dict) and isinstance(head.get("w"), list) and isinstance(head.get("b"), (int, float))):
            raise ValueError(f"{shown}: a logistic face encoder needs head {{'w': [...], 'b': number}}, "
                             f"got {head!r:.80}")
    info = faces.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError(f"{shown}: the face encoder's info must be an object, got {type(info).__name__}")
    model = load_model(path)
    if model.output_shape is None or len(model.output_shape) != 1:
        raise ValueError(f"{shown}: a face encoder outputs one embedding per image, (D,); this model gives "
                         f"{model.output_shape}")
    if distance == "logistic" and len(head["w"]) != model.output_shape[0]:
        raise ValueError(f"{shown}: the logistic head has {len(head['w'])} weights for {model.output_shape[0]}-number "
                         f"embeddings")
    return FaceEncoder.from_model(model, threshold=threshold, distance=distance, head=head, info=info)
