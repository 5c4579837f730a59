"""A trainable model: a stack of layers with Keras' training API.

    model = nbcnn.Sequential([Conv2D(6, 5, padding="same"), ReLU(), MaxPooling2D(2), Flatten(),
                              Dense(10, activation="softmax")], input_shape=(28, 28, 1), seed=0)
    model.summary()
    model.compile(optimizer=nbcnn.optim.Adam(1e-3), loss="crossentropy")
    history = model.fit(x_train, y_train, epochs=5, batch_size=64, validation_data=(x_val, y_val))
    loss, acc = model.evaluate(x_test, y_test)
    model.save("lenet.nbcnn");  model = nbcnn.load_model("lenet.nbcnn")

The last layer may be a softmax (outputs are probabilities) or not (outputs are logits);
the cross-entropy loss handles either and always back-propagates the stable ``p - y``.

Imports run one way: this module uses ``checkpoint`` (the file format), ``train`` (the loops)
and ``summary``, and none of them imports this one: they take the model as an argument.
"""

from __future__ import annotations

import os

import numpy as np

from . import checkpoint
from . import layers as L
from .backend import to_host
from .checks import int_arg
from .optim import Optimizer, get_optimizer


class Model:
    """Layers applied in order (a ``layers.Chain``), plus compile/fit/evaluate/predict/save."""

    def __init__(self, layers, input_shape=None, seed: int = 0, name: str = "model"):
        self.network = layers if isinstance(layers, L.Chain) else L.Chain(list(layers))
        self.seed = int(seed)
        self.name = name
        self.input_shape = None
        self.optimizer: Optimizer | None = None
        self.loss = "crossentropy"
        self.epochs_done = 0
        self.history: dict[str, list[float]] = {}
        if input_shape is not None:
            self.build(input_shape)

    @classmethod
    def from_model(cls, model: "Model", **kwargs) -> "Model":
        """Wrap a built (e.g. freshly loaded) model in this subclass (a ``FaceEncoder``, a
        ``Detector``), keeping its layers, weights, optimiser and history; ``kwargs`` go to the
        subclass's constructor (its threshold, anchors, ...)."""
        wrapped = cls(model.network, seed=model.seed, name=model.name, **kwargs)
        wrapped.input_shape = model.input_shape
        wrapped.optimizer, wrapped.loss = model.optimizer, model.loss
        wrapped.epochs_done, wrapped.history = model.epochs_done, model.history
        return wrapped

    # --- structure
    @property
    def layers(self) -> list[L.Layer]:
        return self.network.layers

    @property
    def output_shape(self):
        return self.network.output_shape

    def build(self, input_shape) -> None:
        """Create every parameter for inputs of ``input_shape`` (H, W, C), without the batch axis.

        A layer that cannot take its input (a window larger than the image, a Dense before
        Flatten) raises a ValueError naming it and the shapes, and the model stays unbuilt."""
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, (tuple, list, np.ndarray)):
            raise TypeError(f"input_shape must be a tuple such as (28, 28, 1), got {input_shape!r:.60}")
        shape = tuple(int_arg(s, "every entry of input_shape") for s in input_shape)
        self.network.build(shape, np.random.default_rng(self.seed))
        self.input_shape = shape
        L.assign_paths(self.network)

    def _require_built(self, x=None) -> None:
        if self.input_shape is None:
            if x is None:
                raise ValueError("the model has no input shape yet: pass input_shape=... or call build(shape)")
            self.build(np.shape(x)[1:])

    def count_params(self, trainable_only: bool = False) -> int:
        self._require_built()
        return self.network.count_params(trainable_only)

    def summary(self, print_fn=print) -> str:
        from .summary import summary

        self._require_built()
        text = summary(self)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict:
        return {"name": self.name, "seed": self.seed, "input_shape": list(self.input_shape or ()),
                "network": self.network.get_config()}

    # --- computing
    def forward(self, x, training: bool = False):
        self._require_built(x)
        if isinstance(x, (list, tuple, np.ndarray)):
            x = np.asarray(x)
            if x.dtype not in (np.float32, np.float64):  # images as uint8, labels' lists...: float32
                x = x.astype(np.float32)
        if tuple(np.shape(x)[1:]) != self.input_shape:
            raise ValueError(f"model expects inputs of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(np.shape(x))}")
        return self.network.forward(x, training)

    def backward(self, dy):
        """Back-propagate ``dy`` through every layer; returns the gradient of the input images."""
        return self.network.backward(dy)

    def __call__(self, x, training: bool = False):
        return np.asarray(to_host(self.forward(x, training)))

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Outputs for ``x`` (N >= 1 examples) in inference mode, computed in batches."""
        from .train import as_examples

        batch_size = int_arg(batch_size, "batch_size")
        x = as_examples(x, "x")
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    # --- training (nbcnn.train holds the loops)
    def compile(self, optimizer="adam", loss: str = "crossentropy") -> None:
        if loss not in ("crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"):
            raise ValueError(f"unknown loss {loss!r}; nbcnn models train with 'crossentropy'")
        self.optimizer = get_optimizer(optimizer)
        self.loss = loss

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, **kwargs):
        """Train for ``epochs`` more epochs (see ``nbcnn.train.fit`` for the keyword arguments:
        shuffle, augment, lr_schedule, verbose, seed, callback, terminate_on_nan)."""
        from .train import fit

        return fit(self, x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data, **kwargs)

    def evaluate(self, x, y, batch_size: int = 256):
        """(mean loss, accuracy) over ``x``, in inference mode."""
        from .train import evaluate

        return evaluate(self, x, y, batch_size=batch_size)

    def train_on_batch(self, x, y):
        from .train import train_step

        return train_step(self, x, y)

    # --- transfer learning
    def freeze(self, upto: int | None = None) -> None:
        """Freeze the first ``upto`` layers (all when None): their parameters stop changing."""
        for layer in self.layers[:upto]:
            layer.trainable = False

    def unfreeze(self) -> None:
        for _, layer in self.network.named_layers():
            layer.trainable = True

    def replace_head(self, new_layers, drop: int = 1, seed: int | None = None) -> None:
        """Swap the last ``drop`` layers for ``new_layers`` (freshly initialised), keeping the rest."""
        keep = self.layers[:-drop] if drop else list(self.layers)
        shape = keep[-1].output_shape if keep else self.input_shape
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        for layer in new_layers:
            shape = layer.build(shape, rng)
        self.network.layers = keep + list(new_layers)
        self.network.output_shape = shape
        L.assign_paths(self.network)
        if self.optimizer is not None:  # the old head's optimiser state no longer applies
            self.optimizer = get_optimizer(self.optimizer.get_config())

    # --- saving (the format: nbcnn/checkpoint.py)
    def save(self, path) -> None:
        """Write architecture, weights, optimiser state and training position to ``path``;
        ``nbcnn.load_model(path)`` gives the model back, ready to resume training."""
        checkpoint.save_model(self, path)


def Sequential(layers, input_shape=None, seed: int = 0, name: str = "sequential") -> Model:
    """Keras-style constructor: ``nbcnn.Sequential([...layers], input_shape=(H, W, C))`` is a
    ``Model`` (its layers sit in a ``layers.Chain``, ``model.network``)."""
    return Model(layers, input_shape=input_shape, seed=seed, name=name)


def load_model(path) -> Model:
    """Rebuild a saved model: architecture, weights, optimiser state and training position.

    ``path``: str, bytes or os.PathLike. A file that is not a readable nbcnn checkpoint, or
    that does not fit together (an edited architecture, optimiser state of another model),
    raises a ValueError naming the file and the problem."""
    meta, arrays = checkpoint.read_checkpoint(path)  # checks the structure of meta["model"]
    path = os.fsdecode(os.fspath(path))
    config = meta["model"]
    try:
        network = L.from_config(config["network"])
        if not isinstance(network, L.Layer):
            raise TypeError(f"the network is a {type(network).__name__}, not a layer")
        model = Model(network, input_shape=tuple(config["input_shape"]) or None, seed=config["seed"],
                      name=config["name"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # the layers' constructors and build() refuse bad arguments with TypeError/ValueError;
        # a config edited into odd shapes (a number where a layer belongs) gives the others
        raise ValueError(f"{path}: cannot rebuild the saved architecture: {type(exc).__name__}: {exc}") from None
    checkpoint.restore(model, meta, arrays, path)
    return model
