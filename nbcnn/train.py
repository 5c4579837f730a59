"""The training loop: mini-batches, forward, loss, backward, optimiser step.

    for epoch in range(epochs):
        for x_batch, y_batch in shuffled mini-batches:
            out = model.forward(x_batch, training=True)
            loss, d_logits = cross-entropy(out, y_batch)       # d_logits = (p - y) / N
            model.backward(d_logits)                            # fills every layer's grads
            optimizer.step(model.network.parameters())

The shuffle order of epoch e comes from ``default_rng([seed, e])``, so a run that is saved
and resumed sees the same batches as one that never stopped.

Progress goes to a ``callback(Progress)`` (a progress bar, a notebook widget, a log), and
with ``verbose`` one plain line per epoch; this module never draws anything itself (the
``nbcnn train`` command turns the callback into a click progress bar).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import layers as L
from .losses import accuracy, cross_entropy_from_probabilities, softmax_cross_entropy


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    if isinstance(last, L.Activation):
        return last.kind == "softmax"
    return isinstance(last, L.Dense) and last.activation is not None and last.activation.kind == "softmax"


def loss_and_gradient(model, out, y):
    """Cross-entropy of the model's outputs, and the gradient to start back-propagation with.

    When the model ends in a softmax, the gradient with respect to the logits (``p - y``) is
    returned and the softmax's own backward is skipped (see ``_backward``).
    """
    if _ends_in_softmax(model):
        return cross_entropy_from_probabilities(out, y)
    return softmax_cross_entropy(out, y)


def _backward(model, d_logits):
    """Back-propagate a gradient with respect to the logits."""
    last = model.layers[-1]
    if not _ends_in_softmax(model):
        return model.backward(d_logits)
    if isinstance(last, L.Dense):  # Dense(..., activation="softmax"): skip only its activation
        activation, last.activation = last.activation, None
        try:
            return model.backward(d_logits)
        finally:
            last.activation = activation
    dy = d_logits
    for layer in reversed(model.layers[:-1]):
        dy = layer.backward(dy)
    return dy


def train_step(model, x, y):
    """One optimiser step on one batch; returns (loss, accuracy) of the batch before the step."""
    if model.optimizer is None:
        raise ValueError("call model.compile(optimizer=...) before training")
    out = model.forward(x, training=True)
    loss, d_logits = loss_and_gradient(model, out, y)
    first = model.layers[0]
    first.need_input_grad = False  # training needs no gradient of the images themselves
    try:
        _backward(model, d_logits)
    finally:
        first.need_input_grad = True
    model.optimizer.step(model.network.parameters())
    return loss, accuracy(out, y)


def evaluate(model, x, y, batch_size: int = 256):
    """(mean loss, accuracy) in inference mode."""
    total_loss, total_correct, n = 0.0, 0.0, len(x)
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = model(xb)
        loss, _ = loss_and_gradient(model, out, yb)
        total_loss += loss * len(xb)
        total_correct += accuracy(out, yb) * len(xb)
    return total_loss / n, total_correct / n


@dataclass(frozen=True)
class Progress:
    """What ``fit`` tells its ``callback``, which it calls

    - as each epoch starts: ``step == 0``, ``loss`` and ``accuracy`` None;
    - after each batch: ``step`` = 1 .. ``steps``, the epoch's running loss and accuracy;
    - when the epoch is over (validation included): ``record`` is the epoch's entry in
      ``model.history`` ({"loss", "accuracy", "lr", "time", "val_loss", "val_accuracy"}),
      None in every other call.
    """

    epoch: int                  # 1-based, counting the epochs of earlier fit calls too
    epochs: int                 # the epoch this fit call stops after ("epoch 3/10")
    step: int                   # batches done in this epoch
    steps: int                  # batches per epoch
    loss: float | None          # mean over this epoch's batches so far, weighted by batch size
    accuracy: float | None
    record: dict | None = None


def format_epoch(epoch: int, record: dict) -> str:
    """The line ``fit(verbose=True)`` prints after an epoch: ``epoch 3: loss 0.1234  accuracy ...``."""
    return f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in record.items())


def fit(model, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, shuffle: bool = True,
        augment=None, lr_schedule=None, verbose: bool = True, seed: int | None = None,
        callback: Callable[[Progress], object] | None = None):
    """Train for ``epochs`` more epochs; returns the history dict (loss, accuracy, val_*, lr, time).

    ``augment(x_batch, rng) -> x_batch`` transforms each training batch (see nbcnn.augment);
    ``lr_schedule(epoch) -> learning rate`` sets the rate at the start of each epoch;
    ``verbose``: print one line per epoch (``format_epoch``);
    ``callback(progress)``: called as each epoch starts, after every batch and when the
    epoch ends, with a ``Progress`` (for a progress bar: see ``nbcnn train`` in cli.py).
    """
    if model.optimizer is None:
        model.compile()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seed = model.seed if seed is None else seed
    history = model.history
    first = model.epochs_done
    last = first + epochs
    steps = -(-len(x) // batch_size)  # batches per epoch, the last one possibly smaller
    for epoch in range(first, last):
        if lr_schedule is not None:
            model.optimizer.learning_rate = float(lr_schedule(epoch))
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        start_time = time.perf_counter()
        losses, accs, sizes = [], [], []
        if callback is not None:
            callback(Progress(epoch + 1, last, 0, steps, None, None))
        for step, start in enumerate(range(0, len(x), batch_size), 1):
            idx = order[start:start + batch_size]
            xb = x[idx]
            if augment is not None:
                xb = np.asarray(augment(xb, rng), dtype=np.float32)
            loss, acc = train_step(model, xb, y[idx])
            losses.append(loss)
            accs.append(acc)
            sizes.append(len(idx))
            if callback is not None:
                callback(Progress(epoch + 1, last, step, steps, float(np.average(losses, weights=sizes)),
                                  float(np.average(accs, weights=sizes))))
        record = {"loss": float(np.average(losses, weights=sizes)), "accuracy": float(np.average(accs, weights=sizes)),
                  "lr": model.optimizer.learning_rate, "time": time.perf_counter() - start_time}
        if validation_data is not None:
            record["val_loss"], record["val_accuracy"] = evaluate(model, *validation_data)
        for key, value in record.items():
            history.setdefault(key, []).append(value)
        model.epochs_done = epoch + 1
        if callback is not None:
            callback(Progress(epoch + 1, last, steps, steps, record["loss"], record["accuracy"], dict(record)))
        if verbose:
            print(format_epoch(epoch + 1, record))
    return history
