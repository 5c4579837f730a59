"""The training loop shared by the three detection steps: batches, loss terms, checkpoints, resume.

    history = fit(detector, n, make_batch, loss_and_gradient, epochs=10, batch_size=32,
                  seed=0, checkpoint="run.nbcnn", callback=print)

``make_batch(indices, rng) -> (x, labels)`` builds one (augmented) batch; ``loss_and_gradient(
output, labels) -> (terms, d_output)`` gives the batch's loss terms (a dict with a "loss"
entry) and the gradient of the loss with respect to the network's output.

Exact resume: everything random in epoch ``e`` (the shuffle, the augmentation) is drawn from
``numpy.random.default_rng([seed, e])``, and the checkpoint written after each epoch holds
the weights, BatchNorm's moving averages, Adam's moments and step count, the epoch reached
and the history. So training 2 epochs, stopping, and resuming from the file for 2 more gives
the same weights as 4 epochs in one go (``tests/test_detection_training.py`` checks it).

The learning rate follows a cosine from ``learning_rate`` down to 5% of it over ``epochs``
(a function of the epoch only, so a resumed run continues the same curve), after a linear
warm-up over the first ``warmup`` epochs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..memory import keep_freed_memory
from ..optim import Adam
from ..train import NotFiniteError


@dataclass(frozen=True)
class DetectionProgress:
    """What ``fit`` tells its callback: as each epoch starts (step 0, terms None), after every
    batch (the epoch's running mean of every loss term), and when the epoch is over (``record``:
    the epoch's entry in the history, validation included)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    terms: dict | None
    record: dict | None = None


def cosine_rate(epoch: int, epochs: int, learning_rate: float, warmup: float = 1.0, floor: float = 0.05) -> float:
    """The learning rate of ``epoch`` (0-based): linear warm-up, then a cosine down to floor * rate."""
    if epoch < warmup:
        return learning_rate * (epoch + 1) / (warmup + 1)
    t = (epoch - warmup) / max(epochs - warmup, 1)
    return learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _train_step(model, x, labels, loss_and_gradient):
    out = model.forward(x, training=True)
    terms, grad = loss_and_gradient(out, labels)
    if not all(math.isfinite(v) for v in terms.values()) or not np.all(np.isfinite(grad)):
        raise NotFiniteError("the loss or its gradient is NaN or infinite", "loss")
    first = model.layers[0]
    first.need_input_grad = False  # no gradient of the images themselves
    try:
        model.backward(grad)
    finally:
        first.need_input_grad = True
    model.optimizer.step(model.network.parameters())
    return terms


def fit(model, n: int, make_batch: Callable, loss_and_gradient: Callable, epochs: int, batch_size: int = 32,
        learning_rate: float = 1e-3, seed: int = 0, checkpoint=None, callback: Callable | None = None,
        validate: Callable | None = None, warmup: float = 1.0) -> dict:
    """Train ``model`` until it has done ``epochs`` epochs in all (a resumed model continues
    from ``model.epochs_done``); returns the history (per epoch: the mean loss terms, lr,
    time, and whatever ``validate(model) -> dict`` returns).

    ``checkpoint``: a path written after every epoch (``model.save``): resume by loading it
    (``load_detector``) and calling ``fit`` again with the same arguments.
    """
    if model.optimizer is None:
        model.compile(Adam(learning_rate))
    keep_freed_memory()  # every step allocates the same large arrays: reuse their pages
    steps = -(-n // batch_size)
    history = model.history
    for epoch in range(model.epochs_done, epochs):
        model.optimizer.learning_rate = cosine_rate(epoch, epochs, learning_rate, warmup)
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        start = time.perf_counter()
        sums: dict[str, float] = {}
        seen = 0
        if callback is not None:
            callback(DetectionProgress(epoch + 1, epochs, 0, steps, None))
        for step in range(steps):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x, labels = make_batch(idx, rng)
            try:
                terms = _train_step(model, x, labels, loss_and_gradient)
            except NotFiniteError:
                raise NotFiniteError(f"training stopped at epoch {epoch + 1}, batch {step + 1} of {steps}: the loss "
                                     "or its gradient is NaN or infinite (lower the learning rate)", "loss",
                                     epoch + 1, step + 1) from None
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            seen += len(idx)
            if callback is not None:
                callback(DetectionProgress(epoch + 1, epochs, step + 1, steps, {k: v / seen for k, v in sums.items()}))
        record = {k: v / seen for k, v in sums.items()}
        record["lr"] = model.optimizer.learning_rate
        record["time"] = time.perf_counter() - start
        if validate is not None:
            record.update(validate(model))
        for k, v in record.items():
            history.setdefault(k, []).append(float(v))
        model.epochs_done = epoch + 1
        if checkpoint is not None:
            model.save(checkpoint)
        if callback is not None:
            callback(DetectionProgress(epoch + 1, epochs, steps, steps, dict(record), dict(record)))
    return history
