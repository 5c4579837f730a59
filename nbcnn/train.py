"""The training loop: mini-batches, forward, loss, backward, optimiser step.

    for epoch in range(epochs):
        for x_batch, y_batch in shuffled mini-batches:
            out = model.forward(x_batch, training=True)
            loss, d_logits = cross-entropy(out, y_batch)       # d_logits = (p - y) / N
            model.backward(d_logits)                            # fills every layer's grads
            optimizer.step(model.network.parameters())

The shuffle order of epoch e comes from ``default_rng([seed, e])``, so a run that is saved
and resumed sees the same batches as one that never stopped.

Before the optimiser steps, the loss and every gradient are checked to be finite (one
float64 sum per array): a NaN pixel or a diverging learning rate stops ``fit`` with a
``NotFiniteError`` naming the epoch, the batch and the array, instead of quietly turning
every weight into NaN (Keras' ``TerminateOnNaN``, here on by default: ``terminate_on_nan=False``
turns it off).

Progress goes to a ``callback(Progress)`` (a progress bar, a notebook widget, a log), and
with ``verbose`` one plain line per epoch; this module never draws anything itself (the
``nbcnn train`` command turns the callback into a click progress bar).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import layers as L
from .backend import is_device_array
from .checks import class_labels, int_arg, real_arg
from .losses import accuracy, cross_entropy_from_probabilities, softmax_cross_entropy
from .memory import keep_freed_memory


class NotFiniteError(FloatingPointError):
    """Training stopped because the loss or a gradient became NaN or infinite.

    ``what`` names it ("the loss", "the gradient of 0/W (Conv2D 'C1')"); ``fit`` adds the
    1-based ``epoch`` and ``batch``. The optimiser has not stepped on that batch.
    """

    def __init__(self, message: str, what: str, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.what, self.epoch, self.batch = what, epoch, batch


def _not_finite(model, loss) -> str | None:
    """What is NaN or infinite among the loss and the trainable parameters' gradients, or None.

    One float64 sum per gradient: NaN and inf survive a sum, and float64 cannot overflow on
    float32 values, so a finite sum means finite entries; only a non-finite sum is looked at
    element by element (float64 gradients can overflow the sum while each entry is finite).
    """
    if not math.isfinite(loss):
        return "the loss"
    for path, layer, key in model.network.parameters():
        g = layer.grads.get(key)
        if g is not None and not math.isfinite(np.sum(g, dtype=np.float64)) and not np.isfinite(g).all():
            return f"the gradient of {path}/{key} ({layer._describe()})"
    return None


def as_examples(x, name: str = "x") -> np.ndarray:
    """``x`` as a numpy array of at least one example (the first axis), or a TypeError /
    ValueError naming ``name``: what fit, evaluate and predict accept."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of examples, got {type(x).__name__} {x!r:.40}")
    if is_device_array(x):  # a GPU array stays where it is (evaluate and predict slice it)
        if len(x.shape) < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty array of examples (N, ...), got shape {tuple(x.shape)}")
        return x
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} cannot be read as an array of examples: {exc}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must be an array of examples (N, ...) with the batch axis first, got shape {a.shape}")
    if len(a) == 0:
        raise ValueError(f"{name} holds no examples (shape {a.shape})")
    return a


def _refuse_not_finite_data(x: np.ndarray) -> None:
    """One NaN pixel makes every weight of the first layer NaN after one step: refuse it up
    front, naming where it is (one float64 sum; a closer look only when that is not finite)."""
    if math.isfinite(np.sum(x, dtype=np.float64)):
        return
    where = np.argwhere(~np.isfinite(x))
    if len(where):
        first = ", ".join(map(str, where[0]))
        raise ValueError(f"x holds {len(where)} NaN or infinite value(s), the first at x[{first}] = "
                         f"{x[tuple(where[0])]}: every weight would become NaN. Clean the data "
                         "(np.nan_to_num) or pass terminate_on_nan=False")


def _examples_and_labels(model, x, y, names=("x", "y")):
    """Checked (x, int64 labels) for ``model``: the same number of each, labels in range."""
    x = as_examples(x, names[0])
    model._require_built(x)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(f"the model expects {names[0]} of shape (N, {', '.join(map(str, model.input_shape))}), "
                         f"got {x.shape}")
    out = model.output_shape
    if out is None or len(out) != 1:
        raise ValueError(f"training and evaluating need a model whose output is (classes,); this one gives {out}")
    y = class_labels(y, out[0], names[1])
    if len(y) != len(x):
        raise ValueError(f"{names[0]} has {len(x)} examples but {names[1]} has {len(y)} labels")
    return x, y


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


def train_step(model, x, y, terminate_on_nan: bool = True):
    """One optimiser step on one batch; returns (loss, accuracy) of the batch before the step.

    With ``terminate_on_nan``, a NaN or infinite loss or gradient raises ``NotFiniteError``
    before the step, so the weights stay as they were."""
    if model.optimizer is None:
        raise ValueError("call model.compile(optimizer=...) before training")
    x, y = _examples_and_labels(model, x, y)
    keep_freed_memory()  # a loop of these allocates the same arrays every step (LeNet-5, batch 64: 600 page faults a step)
    return _step(model, x, y, terminate_on_nan)


def _step(model, x, y, terminate_on_nan: bool):
    """``train_step`` on a batch already checked (``fit`` checks the whole data set once)."""
    out = model.forward(x, training=True)
    loss, d_logits = loss_and_gradient(model, out, y)
    first = model.layers[0]
    first.need_input_grad = False  # training needs no gradient of the images themselves
    try:
        _backward(model, d_logits)
    finally:
        first.need_input_grad = True
    if terminate_on_nan:
        what = _not_finite(model, loss)
        if what is not None:
            raise NotFiniteError(f"{what} is NaN or infinite; the optimizer did not step on this batch", what)
    model.optimizer.step(model.network.parameters())
    return loss, accuracy(out, y)


def evaluate(model, x, y, batch_size: int = 256):
    """(mean loss, accuracy) in inference mode."""
    batch_size = int_arg(batch_size, "batch_size")
    x, y = _examples_and_labels(model, x, y)
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
        callback: Callable[[Progress], object] | None = None, terminate_on_nan: bool = True):
    """Train for ``epochs`` more epochs; returns the history dict (loss, accuracy, val_*, lr, time).

    ``augment(x_batch, rng) -> x_batch`` transforms each training batch (see nbcnn.augment);
    ``lr_schedule(epoch) -> learning rate`` sets the rate at the start of each epoch;
    ``verbose``: print one line per epoch (``format_epoch``);
    ``callback(progress)``: called as each epoch starts, after every batch and when the
    epoch ends, with a ``Progress`` (for a progress bar: see ``nbcnn train`` in cli.py);
    ``terminate_on_nan``: stop with a ``NotFiniteError`` naming the epoch, the batch and the
    array when the loss or a gradient is NaN or infinite (and refuse NaN/inf in ``x`` up front),
    before the optimiser steps; False trains on regardless.

    ``x``: (N, *input_shape) numbers; ``y``: N class numbers in [0, classes) or one-hot rows.
    Everything is checked before the first batch, validation data included.
    """
    if model.optimizer is None:
        model.compile()
    epochs = int_arg(epochs, "epochs", minimum=0)
    batch_size = int_arg(batch_size, "batch_size")
    x, y = _examples_and_labels(model, x, y)
    x = np.asarray(x, dtype=np.float32)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (x_val, y_val), got {type(validation_data).__name__}")
        validation_data = _examples_and_labels(model, *validation_data, names=("x_val", "y_val"))
    if terminate_on_nan:
        _refuse_not_finite_data(x)
    keep_freed_memory()  # every step allocates the same large arrays: reuse their pages
    seed = model.seed if seed is None else seed
    history = model.history
    first = model.epochs_done
    last = first + epochs
    steps = -(-len(x) // batch_size)  # batches per epoch, the last one possibly smaller
    for epoch in range(first, last):
        if lr_schedule is not None:
            model.optimizer.learning_rate = real_arg(lr_schedule(epoch), f"lr_schedule({epoch})", 0.0, low_ok=False)
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
            try:
                loss, acc = _step(model, xb, y[idx], terminate_on_nan)
            except NotFiniteError as exc:
                raise NotFiniteError(f"training stopped at epoch {epoch + 1}, batch {step} of {steps}: {exc.what} "
                                     "is NaN or infinite, so the optimizer did not step on this batch. Look for NaN or "
                                     "inf in the data or the augmentation, or lower the learning rate; "
                                     "fit(..., terminate_on_nan=False) trains on regardless",
                                     exc.what, epoch + 1, step) from None
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
