"""Training a siamese encoder: with the triplet loss, or as the lecture's binary classifier.

Triplet training, one step (``triplet_step``)::

    x, labels = a P x K batch                         # P identities, K images each
    E = encoder.forward(x, training=True)             # (P*K, D), unit vectors
    d = pairwise_squared_distances(E)                 # (P*K, P*K)
    a, p, n = mine_triplets(d, labels, mining, alpha) # indices into the batch
    loss = triplet_loss(E[a], E[p], E[n], alpha) / T  # the mean over the T mined triplets
    dE[a] += dA;  dE[p] += dP;  dE[n] += dN           # an image may serve in many triplets
    encoder.backward(dE);  optimizer.step(...)

Every image is encoded once per step, however many triplets use it; the gradients of its
roles are added up before they go back through the encoder.

The binary-classification alternative (``logistic_step``): the same encoder on both images
of a pair, then one logistic unit on the element-wise ``|f(x1) - f(x2)|``::

    P(same) = sigmoid(sum_k w_k |f(x1)_k - f(x2)_k| + b)

trained with the cross-entropy on the batch's same-identity pairs and as many random
different-identity pairs; gradients flow through ``|.|`` (its sign) into both images.

The classifier alternative (``softmax_step``, ``--loss softmax``): a ``Dense``
classifier of the C training identities on the scaled embedding, thrown away after training::

    z = classifier(s * f(x));   loss = cross-entropy(softmax(z), identity)    # s = SOFTMAX_SCALE

Each step pushes every image away from all the other identities at once, not only from the few
in its triplets; with the 50 identities made from the seen digits (``more_identities``) its
distance transferred best to the unseen digits here (the README's faces section).

Progress goes to ``callback(TripletProgress)``; nothing is drawn here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import layers as L
from .. import ops, optim
from ..backend import to_host
from ..memory import keep_freed_memory
from ..checks import int_arg, real_arg
from .encoder import FaceEncoder
from .mining import check_strategy, mine_triplets, pk_batches

LOSSES = ("triplet", "logistic", "softmax")


@dataclass
class TripletProgress:
    """What training tells its ``callback``: as each epoch starts (``step == 0``), after every
    step, and when the epoch ends (``record``: the epoch's entry of the history)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None
    triplets: float | None = None   # mean triplets (or pairs) per step so far this epoch
    record: dict | None = None


class NotFiniteLoss(FloatingPointError):
    """The loss or a gradient became NaN or infinite; the optimiser did not step."""


def _finite_or_raise(loss: float, parameters, where: str) -> None:
    if not math.isfinite(loss):
        raise NotFiniteLoss(f"{where}: the loss is {loss}; the optimizer did not step (lower the learning rate?)")
    for path, layer, key in parameters:
        g = layer.grads.get(key)
        if g is not None and not np.isfinite(np.sum(g, dtype=np.float64)):
            raise NotFiniteLoss(f"{where}: the gradient of {path}/{key} is NaN or infinite; the optimizer did not step")


def _sum_rows_into(n: int, index, rows) -> np.ndarray:
    """``out[index[t]] += rows[t]`` for every t, into an (n, D) array of zeros: ``np.add.at``, as one
    product with a 0/1 matrix instead (BLAS: ~6x faster for a batch's thousand triplets)."""
    onehot = np.zeros((n, len(index)), rows.dtype)
    onehot[index, np.arange(len(index))] = 1
    return onehot @ rows


def _backward_from_embeddings(encoder: FaceEncoder, dE) -> None:
    first = encoder.layers[0]
    first.need_input_grad = False  # no gradient of the images is needed
    try:
        encoder.backward(dE)
    finally:
        first.need_input_grad = True


def triplet_step(encoder: FaceEncoder, optimizer, x, labels, mining: str = "semi-hard", alpha: float = 0.2,
                 rng=None) -> tuple[float, int, int]:
    """One optimiser step on one batch. Returns (mean triplet loss, triplets mined, triplets with a
    loss above 0). A batch where mining finds no triplet leaves the weights alone."""
    keep_freed_memory()  # every step allocates the same arrays: reuse their pages
    E = np.asarray(to_host(encoder.forward(x, training=True)))
    d = np.asarray(to_host(ops.pairwise_squared_distances(E)))
    a, p, n = mine_triplets(d, labels, mining, alpha, rng)
    T = len(a)
    if T == 0:
        return 0.0, 0, 0
    A, Pp, N = E[a], E[p], E[n]
    losses = np.asarray(to_host(ops.triplet_loss(A, Pp, N, alpha, reduction="none")))
    loss = float(np.sum(losses, dtype=np.float64) / T)
    dA, dP, dN = (np.asarray(to_host(g)) for g in ops.triplet_loss_backward(1.0 / T, A, Pp, N, alpha))
    dE = _sum_rows_into(len(E), np.concatenate([a, p, n]), np.concatenate([dA, dP, dN]))
    _backward_from_embeddings(encoder, dE)
    params = list(encoder.network.parameters())
    _finite_or_raise(loss, params, "triplet step")
    optimizer.step(params)
    return loss, T, int(np.count_nonzero(losses > 0))


def make_logistic_head(embedding_dim: int, seed: int = 0) -> L.Dense:
    """The logistic unit: ``Dense(1)`` on |f(x1) - f(x2)| (its sigmoid is applied in the loss)."""
    head = L.Dense(1, name="logistic")
    head.build((int(embedding_dim),), np.random.default_rng(seed))
    head._path = "head"  # names its parameters for the optimiser: "head/W", "head/b"
    return head


def _pairs_of_batch(labels, rng):
    """Every same-identity pair (i < j) of the batch, and as many different-identity pairs drawn at random."""
    y = np.asarray(labels)
    i, j = np.triu_indices(len(y), k=1)
    same = y[i] == y[j]
    pos = np.flatnonzero(same)
    neg = np.flatnonzero(~same)
    if pos.size == 0 or neg.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    neg = rng.choice(neg, size=min(pos.size, neg.size), replace=False)
    keep = np.concatenate([pos, neg])
    return i[keep], j[keep], same[keep].astype(np.float64)


def logistic_step(encoder: FaceEncoder, head: L.Dense, optimizer, x, labels, rng=None) -> tuple[float, int]:
    """One step of the binary-classification siamese network. Returns (mean cross-entropy, pairs)."""
    rng = np.random.default_rng(rng)
    E = np.asarray(to_host(encoder.forward(x, training=True)))
    i, j, target = _pairs_of_batch(labels, rng)
    if len(i) == 0:
        return 0.0, 0
    diff = E[i] - E[j]
    z = np.asarray(to_host(head.forward(np.ascontiguousarray(np.abs(diff)), training=True)))[:, 0]
    p = np.asarray(to_host(ops.sigmoid(z.astype(np.float64))))
    eps = 1e-12
    loss = float(-np.mean(target * np.log(p + eps) + (1 - target) * np.log(1 - p + eps)))
    dz = ((p - target) / len(i)).astype(E.dtype)[:, None]  # the cross-entropy's gradient at the logit
    d_abs = np.asarray(to_host(head.backward(dz)))
    d_diff = d_abs * np.sign(diff)
    dE = _sum_rows_into(len(E), np.concatenate([i, j]), np.concatenate([d_diff, -d_diff]))
    _backward_from_embeddings(encoder, dE)
    params = list(encoder.network.parameters()) + list(head.parameters())
    _finite_or_raise(loss, params, "logistic step")
    optimizer.step(params)
    return loss, len(i)


def make_softmax_head(embedding_dim: int, classes: int, seed: int = 0) -> L.Dense:
    """The classifier of ``loss="softmax"``: ``Dense(classes)`` on the embedding, thrown away after training."""
    head = L.Dense(int(classes), name="classifier")
    head.build((int(embedding_dim),), np.random.default_rng(seed))
    head._path = "classifier"
    return head


SOFTMAX_SCALE = 16.0
"""The unit-length embedding is multiplied by this before the classifier: logits of a few units
from the start (NormFace's scale), so the softmax is not stuck near uniform while the weights grow."""


def softmax_step(encoder: FaceEncoder, head: L.Dense, optimizer, x, classes) -> tuple[float, int]:
    """One step of training the encoder as a classifier of the training identities (``classes``:
    0 .. C-1): the cross-entropy of ``softmax(head(s * f(x)))``; its gradient goes back into the
    encoder. Returns (mean cross-entropy, images)."""
    from ..losses import softmax_cross_entropy

    E = np.asarray(to_host(encoder.forward(x, training=True)))
    z = head.forward(np.ascontiguousarray(SOFTMAX_SCALE * E), training=True)
    loss, dz = softmax_cross_entropy(z, classes)
    dE = SOFTMAX_SCALE * np.asarray(to_host(head.backward(dz)))
    _backward_from_embeddings(encoder, dE)
    params = list(encoder.network.parameters()) + list(head.parameters())
    _finite_or_raise(loss, params, "softmax step")
    optimizer.step(params)
    return loss, len(x)


def train_encoder(encoder: FaceEncoder, x, y, *, loss: str = "triplet", epochs: int = 20, P: int = 6, K: int = 16,
                  mining: str = "semi-hard", alpha: float = 0.2, learning_rate: float = 1e-3, seed: int = 0,
                  augment: Callable | None = None, steps_per_epoch: int | None = None,
                  callback: Callable[[TripletProgress], object] | None = None) -> dict:
    """Train ``encoder`` in place on images ``x`` (N, H, W, C) of identities ``y`` (N,) ints.

    ``loss``: "triplet" (with ``mining`` and margin ``alpha``), "logistic" (the binary
    classifier; its head ends up in ``encoder.head`` and ``encoder.distance`` becomes
    "logistic") or "softmax" (a classifier of the identities in ``y``, thrown away after; the
    encoder keeps the squared distance). Each epoch has ``steps_per_epoch`` P x K batches (default: about one pass
    over ``x``). Adam with a cosine-decayed learning rate; ``augment(x_batch, rng)`` may
    transform each batch. Returns the history: per epoch the mean loss, the mean triplets (or
    pairs) per step, the share of mined triplets with a loss above 0, the learning rate, seconds.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "triplet":
        check_strategy(mining)
    epochs = int_arg(epochs, "epochs", minimum=0)
    P, K = int_arg(P, "P (identities per batch)", 2), int_arg(K, "K (images per identity)", 2)
    alpha = real_arg(alpha, "alpha (the margin)")
    learning_rate = real_arg(learning_rate, "learning_rate", 0.0, low_ok=False)
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(encoder.input_shape):
        raise ValueError(f"x must be images (N, {', '.join(map(str, encoder.input_shape))}), got {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"y must hold one identity per image, ({len(x)},), got {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x holds NaN or infinite pixels")
    steps = steps_per_epoch or max(1, math.ceil(len(x) / (P * K)))
    steps = int_arg(steps, "steps_per_epoch")
    optimizer = optim.Adam(learning_rate)
    head = make_logistic_head(encoder.embedding_dim, seed) if loss == "logistic" else None
    ids, classes = np.unique(y, return_inverse=True)  # identities as 0 .. C-1, for the softmax classifier
    if loss == "softmax":
        classifier = make_softmax_head(encoder.embedding_dim, len(ids), seed)
    schedule = optim.cosine_decay(learning_rate, max(epochs, 1), learning_rate * 0.05)
    history: dict[str, list[float]] = {}
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        optimizer.learning_rate = schedule(epoch)
        start = time.perf_counter()
        losses, counts, active = [], [], []
        if callback is not None:
            callback(TripletProgress(epoch + 1, epochs, 0, steps, None))
        for step, idx in enumerate(pk_batches(y, P, K, steps, rng), start=1):
            xb = x[idx] if augment is None else np.asarray(augment(x[idx], rng), np.float32)
            if loss == "triplet":
                value, count, hot = triplet_step(encoder, optimizer, xb, y[idx], mining, alpha, rng)
                active.append(hot / count if count else 0.0)
            elif loss == "softmax":
                value, count = softmax_step(encoder, classifier, optimizer, xb, classes[idx])
            else:
                value, count = logistic_step(encoder, head, optimizer, xb, y[idx], rng)
            losses.append(value)
            counts.append(count)
            if callback is not None:
                callback(TripletProgress(epoch + 1, epochs, step, steps, float(np.mean(losses)),
                                         float(np.mean(counts))))
        record = {"loss": float(np.mean(losses)), "triplets_per_step": float(np.mean(counts)),
                  "lr": optimizer.learning_rate, "time": time.perf_counter() - start}
        if loss == "triplet":
            record["active"] = float(np.mean(active))
        for key, value in record.items():
            history.setdefault(key, []).append(value)
        if callback is not None:
            callback(TripletProgress(epoch + 1, epochs, steps, steps, record["loss"], record["triplets_per_step"],
                                     dict(record)))
    encoder.epochs_done += epochs
    encoder.history = {**encoder.history, **{k: encoder.history.get(k, []) + v for k, v in history.items()}}
    if head is not None:
        encoder.distance = "logistic"
        encoder.head = {"w": np.asarray(head.params["W"][:, 0], np.float32), "b": float(head.params["b"][0])}
    return history
