"""Optimisers and learning-rate schedules.

Each optimiser walks the model's trainable parameters, ``(path, layer, key)`` triples, and
updates ``layer.params[key]`` in place from ``layer.grads[key]``. Its per-parameter state
(momentum, Adam's moments) lives in ``self.slots[name]`` with ``name = "path/key"``, so it
can be saved in a checkpoint and training can resume exactly.

    SGD:   v = momentum * v - lr * (g + weight_decay * w);   w += v
    Adam:  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
           w -= lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
"""

from __future__ import annotations

import math
import numbers
import weakref

import numpy as np
from numba import njit


def _real(name: str, value, low: float, high: float = math.inf, low_ok: bool = False) -> float:
    """``value`` as a float in (low, high) (or [low, high) with ``low_ok``), else a ValueError
    naming it: NaN, infinities and strings never reach an update."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and (low <= value if low_ok else low < value) and value < high):
        bounds = f"{'[' if low_ok else '('}{low:g}, {high:g})"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return value


class Optimizer:
    """Base class: ``step(parameters)`` updates every parameter that has a gradient.

    An optimiser's state belongs to one model: the first parameter that uses a slot owns it, and
    a parameter of another model (or of another shape) asking for the same slot is refused,
    instead of reading or writing moments of the wrong size.
    """

    def __init__(self, learning_rate: float, weight_decay: float = 0.0):
        self.learning_rate = _real("learning_rate", learning_rate, 0.0)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0, low_ok=True)
        self.iterations = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {}
        self._owners: dict[str, weakref.ref] = {}  # slot name -> the layer whose parameter it follows

    def step(self, parameters) -> None:
        self.iterations += 1
        for path, layer, key in parameters:
            w, g = layer.params[key], layer.grads.get(key)
            if g is None:
                continue
            name = f"{path}/{key}"
            if np.shape(g) != w.shape:
                raise ValueError(f"the gradient of {name} has shape {np.shape(g)}, its parameter {w.shape}")
            self._claim(name, layer)
            if self.weight_decay:
                g = g + self.weight_decay * w
            self.update(name, w, g.astype(w.dtype, copy=False))

    def _claim(self, name: str, layer) -> None:
        owner = self._owners.get(name)
        if owner is None or owner() is None:
            self._owners[name] = weakref.ref(layer)
        elif owner() is not layer:
            raise ValueError(f"this optimizer already holds the state of another model's parameter {name!r}: "
                             "give each model its own optimizer (model.compile(nbcnn.optim.Adam(...)))")

    def update(self, name: str, w: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"class": type(self).__name__, "config": dict(self._config)}

    def _slot(self, name: str, slot: str, like: np.ndarray) -> np.ndarray:
        """The state array ``slot`` of parameter ``name``, zeros at first. One that exists must
        match the parameter exactly (a checkpoint's, or one left by a resized model): the
        compiled updates write through it without bounds checks."""
        slots = self.slots.setdefault(name, {})
        if slot not in slots:
            slots[slot] = np.zeros_like(like)
        state = slots[slot]
        if not isinstance(state, np.ndarray) or state.shape != like.shape or state.dtype != like.dtype:
            raise ValueError(f"optimizer state {name}/{slot} has shape {np.shape(state)} and dtype "
                             f"{getattr(state, 'dtype', type(state).__name__)}, but the parameter has shape "
                             f"{like.shape} and dtype {like.dtype}")
        return state


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum, self.nesterov = _real("momentum", momentum, 0.0, 1.0, low_ok=True), bool(nesterov)
        self._config = dict(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                            weight_decay=weight_decay)

    def update(self, name, w, g):
        if self.momentum == 0.0:
            w -= self.learning_rate * g
            return
        v = self._slot(name, "velocity", w)
        v *= self.momentum
        v -= self.learning_rate * g
        w += self.momentum * v - self.learning_rate * g if self.nesterov else v


class Adam(Optimizer):
    """Adam: momentum on the gradient and a per-parameter step size from its running square."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = _real("beta_1", beta_1, 0.0, 1.0, low_ok=True)
        self.beta_2 = _real("beta_2", beta_2, 0.0, 1.0, low_ok=True)
        self.epsilon = _real("epsilon", epsilon, 0.0)
        self._config = dict(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                            weight_decay=weight_decay)

    def update(self, name, w, g):
        m, v = self._slot(name, "m", w), self._slot(name, "v", w)
        t = self.iterations
        step = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        if w.flags.c_contiguous and g.flags.c_contiguous and w.dtype == g.dtype == m.dtype == v.dtype \
                and w.size == g.size == m.size == v.size and m.flags.c_contiguous and v.flags.c_contiguous:
            # the same arithmetic in one compiled pass (numpy's version makes 8 passes and 5
            # temporaries: 0.5 ms of a 10 ms LeNet-5 step)
            _adam_in_place(w.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                           self.beta_1, self.beta_2, step, self.epsilon)
            return
        m *= self.beta_1
        m += (1 - self.beta_1) * g
        v *= self.beta_2
        v += (1 - self.beta_2) * g * g
        w -= (step * m / (np.sqrt(v) + self.epsilon)).astype(w.dtype)


@njit(cache=True, nogil=True)
def _adam_in_place(w, g, m, v, beta_1, beta_2, step, epsilon):
    """``Adam.update`` element by element (the moments in w's dtype, like the numpy version)."""
    one = w.dtype.type(1)
    b1, b2 = w.dtype.type(beta_1), w.dtype.type(beta_2)
    st, eps = w.dtype.type(step), w.dtype.type(epsilon)
    for i in range(w.size):
        m[i] = b1 * m[i] + (one - b1) * g[i]
        v[i] = b2 * v[i] + (one - b2) * g[i] * g[i]
        w[i] -= st * m[i] / (np.sqrt(v[i]) + eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "SGD": SGD, "Adam": Adam}


def get_optimizer(spec) -> Optimizer:
    """An Optimizer from an instance, a name ("sgd", "adam") or a saved config."""
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) and spec in OPTIMIZERS:
        return OPTIMIZERS[spec]()
    if isinstance(spec, dict) and spec.get("class") in OPTIMIZERS:
        return OPTIMIZERS[spec["class"]](**spec["config"])
    raise ValueError(f"unknown optimizer {spec!r}; use 'sgd', 'adam' or an nbcnn.optim.Optimizer")


# --------------------------------------------------------------------------- schedules


def step_decay(initial: float, drop: float = 0.5, every: int = 10):
    """lr(epoch) = initial * drop ** (epoch // every)."""
    return lambda epoch: initial * drop ** (epoch // every)


def cosine_decay(initial: float, total_epochs: int, minimum: float = 0.0):
    """lr(epoch) falls from ``initial`` to ``minimum`` along half a cosine over ``total_epochs``."""
    return lambda epoch: minimum + 0.5 * (initial - minimum) * (1 + math.cos(math.pi * min(epoch, total_epochs)
                                                                            / total_epochs))


def exponential_decay(initial: float, rate: float = 0.95):
    """lr(epoch) = initial * rate ** epoch (the course's learning-rate decay)."""
    return lambda epoch: initial * rate ** epoch
