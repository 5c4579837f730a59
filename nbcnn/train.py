"""The training loop: mini-batches, forward, loss, backward, optimiser step.

    for epoch in range(epochs):
        for x_batch, y_batch in shuffled mini-batches:
            out = model.forward(x_batch, training=True)
            loss, d_logits = cross-entropy(out, y_batch)       # d_logits = (p - y) / N
            model.backward(d_logits)                            # fills every layer's grads
            optimizer.step(model.network.parameters())

The shuffle order of epoch e comes from ``default_rng([seed, e])``, so a run that is saved
and resumed sees the same batches as one that never stopped.
"""

from __future__ import annotations

import time

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


def fit(model, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, shuffle: bool = True,
        augment=None, lr_schedule=None, verbose: bool = True, seed: int | None = None):
    """Train for ``epochs`` more epochs; returns the history dict (loss, accuracy, val_*, lr, time).

    ``augment(x_batch, rng) -> x_batch`` transforms each training batch (see nbcnn.augment);
    ``lr_schedule(epoch) -> learning rate`` sets the rate at the start of each epoch.
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
    for epoch in range(first, first + epochs):
        if lr_schedule is not None:
            model.optimizer.learning_rate = float(lr_schedule(epoch))
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        starts = range(0, len(x), batch_size)
        start_time = time.perf_counter()
        losses, accs, sizes = [], [], []
        with _progress(verbose, starts, f"epoch {epoch + 1}/{first + epochs}") as bar:
            for start in bar:
                idx = order[start:start + batch_size]
                xb = x[idx]
                if augment is not None:
                    xb = np.asarray(augment(xb, rng), dtype=np.float32)
                loss, acc = train_step(model, xb, y[idx])
                losses.append(loss)
                accs.append(acc)
                sizes.append(len(idx))
                bar.status = f"loss {np.average(losses, weights=sizes):.4f} acc {np.average(accs, weights=sizes):.4f}"
        record = {"loss": float(np.average(losses, weights=sizes)), "accuracy": float(np.average(accs, weights=sizes)),
                  "lr": model.optimizer.learning_rate, "time": time.perf_counter() - start_time}
        if validation_data is not None:
            record["val_loss"], record["val_accuracy"] = evaluate(model, *validation_data)
        for key, value in record.items():
            history.setdefault(key, []).append(value)
        model.epochs_done = epoch + 1
        if verbose:
            print(f"epoch {epoch + 1}: " + "  ".join(f"{k} {v:.4f}" for k, v in record.items()))
    return history


class _progress:
    """A click progress bar showing loss and accuracy (silent when verbose is False)."""

    def __init__(self, verbose, items, label):
        self.verbose, self.items, self.label, self.status = verbose, items, label, ""
        self._bar = None

    def __enter__(self):
        if self.verbose:
            import click

            self._bar = click.progressbar(self.items, label=self.label, item_show_func=lambda _: self.status,
                                          show_eta=True)
            self._iter = self._bar.__enter__()
        else:
            self._iter = iter(self.items)
        return self

    def __iter__(self):
        return iter(self._iter)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
