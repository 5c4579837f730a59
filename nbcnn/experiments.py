"""The runs behind ``nbcnn train``: LeNet-5 on real data, and the ResNet depth lesson.

Each function returns plain numbers (and writes its PNGs, drawn by ``nbcnn.plot``), so the
command line only prints.
Training reports its progress through ``callback`` (see ``nbcnn.train.Progress``), and with
``verbose`` one printed line per epoch.
"""

from __future__ import annotations

import os
import time

import numpy as np

from . import data, optim, plot
from .models import lenet5, plain_or_residual


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[t, p]: how many examples of class t were predicted as p."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def format_confusion(counts: np.ndarray, names) -> str:
    width = max(5, max(len(str(n)) for n in names) + 1)
    lines = ["true \\ predicted".ljust(width + 2) + "".join(f"{str(n)[:width - 1]:>{width}}" for n in names)]
    for name, row in zip(names, counts):
        lines.append(f"{str(name)[:width + 1]:<{width + 2}}" + "".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def load_dataset(name: str, data_dir=None, seed: int = 0):
    """(x_train, y_train), (x_test, y_test), class names; images padded to LeNet's 32x32."""
    if name == "digits":
        (x_train, y_train), (x_test, y_test) = data.load_digits(seed=seed, size=32)
        return (x_train, y_train), (x_test, y_test), data.DIGITS_CLASSES
    if name in ("fashion-mnist", "fashion_mnist", "fashion"):
        (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(data_dir)
        names = data.FASHION_MNIST_CLASSES
    elif name == "mnist":
        if data_dir is None:
            raise ValueError("MNIST is not shipped: pass --data DIR with the four IDX files")
        (x_train, y_train), (x_test, y_test) = data.load_mnist(data_dir)
        names = data.DIGITS_CLASSES
    else:
        raise ValueError(f"unknown dataset {name!r}; choose digits, fashion-mnist or mnist")
    pad = ((0, 0), (2, 2), (2, 2), (0, 0))  # 28x28 -> 32x32, as LeNet-5 was fed MNIST
    return (np.pad(x_train, pad), y_train), (np.pad(x_test, pad), y_test), names


def prepare_out_dir(out_dir) -> str:
    """Create ``out_dir`` (and its parents) and check it takes files, before any training:
    a folder that cannot hold the PNGs fails in a second, not after minutes of training."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"cannot write the pictures into {out_dir}: it is a file, not a folder")
    os.makedirs(out_dir, exist_ok=True)
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write the pictures into {out_dir}: the folder is not writable")
    return out_dir


def train_lenet(dataset: str = "digits", epochs: int | None = None, batch_size: int = 64,
                learning_rate: float = 2e-3, data_dir=None, out_dir: str = ".", seed: int = 0,
                limit: int | None = None, verbose: bool = True, save_path=None, augment=None, callback=None):
    """Train LeNet-5 (ReLU, max pooling) with Adam and a cosine learning-rate schedule.

    ``epochs``: default 10 on the digits, 8 on (Fashion-)MNIST. ``verbose`` and ``callback``
    go to ``model.fit``. Returns a dict with the model, history, test accuracy, confusion
    matrix, the PNGs' paths ("curve": loss and accuracy per epoch, "confusion_png": the
    confusion matrix, both in ``out_dir``), seconds and images/s.
    """
    if epochs is None:
        epochs = 10 if dataset == "digits" else 8
    out_dir = prepare_out_dir(out_dir)
    (x_train, y_train), (x_test, y_test), names = load_dataset(dataset, data_dir, seed)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    model = lenet5(input_shape=x_train.shape[1:], num_classes=len(names), activation="relu", pooling="max", seed=seed)
    model.compile(optim.Adam(learning_rate))
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, validation_data=(x_test, y_test),
              lr_schedule=optim.cosine_decay(learning_rate, epochs, learning_rate * 0.05), verbose=verbose,
              augment=augment, callback=callback)
    seconds = time.perf_counter() - start
    predictions = model.predict(x_test).argmax(axis=1)
    accuracy = float(np.mean(predictions == y_test))
    curve = os.path.join(out_dir, f"lenet5_{dataset}_curve.png")
    h = model.history
    plot.save(plot.learning_curves(h, title=f"LeNet-5 on {dataset}: test accuracy {accuracy:.2%}",
                                   validation_label="test"), curve)
    confusion_png = os.path.join(out_dir, f"lenet5_{dataset}_confusion.png")
    plot.save(plot.confusion_matrix(y_test, predictions, labels=names,
                                    title=f"LeNet-5 on {dataset}, test set: accuracy {accuracy:.2%}"), confusion_png)
    if save_path:
        model.save(save_path)
    return {"model": model, "history": h, "test_accuracy": accuracy, "curve": curve,
            "confusion_png": confusion_png, "seconds": seconds,
            "images_per_second": epochs * len(x_train) / seconds, "class_names": names,
            "confusion": confusion_matrix(y_test, predictions, len(names))}


def depth_experiment(depths=(1, 4, 10), epochs: int = 5, train_size: int = 1000, out_dir: str = ".", seed: int = 0,
                     verbose: bool = False, callback=None):
    """The ResNet lesson: plain and residual nets of growing depth on the digits (16x16 crops).

    Training error should fall with depth for residual nets, while plain nets of the same
    depth train worse as they get deeper. ``verbose`` and ``callback`` go to each model's
    ``fit``. Returns ({name: [training error per epoch]}, the PNG's path).
    """
    out_dir = prepare_out_dir(out_dir)
    (x_train, y_train), _ = data.load_digits(seed=seed)
    x, y = x_train[:train_size, 2:18, 2:18, :], y_train[:train_size]
    curves = {}
    for depth in depths:
        for residual in (False, True):
            model = plain_or_residual(depth, residual, input_shape=(16, 16, 1), seed=seed)
            model.compile(optim.Adam(2e-3))
            history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=verbose, callback=callback)
            name = f"{'residual' if residual else 'plain'} {2 * depth + 1} conv"
            curves[name] = [1.0 - a for a in history["accuracy"]]
    path = os.path.join(out_dir, "depth_experiment.png")
    plot.save(plot.depth_experiment(curves), path)
    return curves, path
