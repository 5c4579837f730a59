"""Identities to learn from, honestly: no multi-identity face set can be had offline here.

So the one-shot lesson is trained and measured on *classes as identities*: the encoder trains
on some classes of the shipped handwritten digits (or Fashion-MNIST, or MNIST), and is then
measured on classes it never saw, each enrolled from one image. The same code takes a folder
with one sub-folder of photos per person, ``people/NAME/*.jpg``, for a user with their own.

``load_identities`` returns an ``IdentitySplit``:

    x_train, y_train     images of the seen identities the encoder trains on
    x_val, y_val         held-out images of the same identities (``val_fraction`` of each):
                         the verification threshold is chosen on their pairs
    x_unseen, y_unseen   every image of the unseen identities: the evaluation (never trained on)

Labels are positions in ``names``; the split is reproducible from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import data as D

DATASETS = ("digits", "fashion-mnist", "mnist", "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
DEFAULT_UNSEEN = {"digits": ("6", "7", "8", "9"), "mnist": ("6", "7", "8", "9"),
                  "fashion-mnist": ("Shirt", "Sneaker", "Bag", "Ankle boot")}


@dataclass
class IdentitySplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_unseen: np.ndarray
    y_unseen: np.ndarray
    names: list
    seen: list
    unseen: list
    source: dict = field(default_factory=dict)

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def prepare_image(path, input_shape) -> np.ndarray:
    """One image file as the encoder takes it: (H, W, C) float32 in [0, 1], grey when C is 1,
    resized to H x W (bilinear) when it is not that size already."""
    from PIL import Image

    from ..images import load_image

    H, W, C = (int(s) for s in input_shape)
    if C not in (1, 3):
        raise ValueError(f"the encoder takes {C}-channel images; only grey (1) and RGB (3) files can be read")
    img = load_image(path, grey=(C == 1))
    if img.shape[:2] != (H, W):
        channels = [Image.fromarray(np.ascontiguousarray(img[:, :, c])).resize((W, H), Image.Resampling.BILINEAR)
                    for c in range(C)]
        img = np.stack([np.asarray(ch, np.float32) for ch in channels], axis=-1).clip(0.0, 1.0)
    return np.ascontiguousarray(img, np.float32)


def load_folder(folder, size=(64, 64), grey: bool = False, min_images: int = 1):
    """Images of ``folder/NAME/*`` (one sub-folder per person): ``(x, y, names)``, x (N, H, W, C)
    float32 in [0, 1] resized to ``size``, y (N,) positions in ``names`` (the sub-folders, sorted).
    Sub-folders with fewer than ``min_images`` images are skipped; files that are not images are
    ignored; an image that cannot be read is a ValueError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: expected one sub-folder of photos per person, "
                                f"{folder}/NAME/*.jpg")
    shape = (int(size[0]), int(size[1]), 1 if grey else 3)
    xs, ys, names = [], [], []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in person.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < min_images:
            continue
        label = len(names)
        names.append(person.name)
        for f in files:
            xs.append(prepare_image(f, shape))
            ys.append(label)
    if len(names) < 2:
        raise ValueError(f"{folder}: found {len(names)} sub-folder(s) with at least {min_images} image(s); "
                         f"identities need at least 2 people, {folder}/NAME/*.jpg")
    return np.stack(xs), np.asarray(ys, np.int64), names


def _class_numbers(unseen, names) -> list:
    """``unseen`` (names or class numbers, or a comma-separated string of them) as sorted label numbers."""
    if isinstance(unseen, str):
        unseen = [u.strip() for u in unseen.split(",") if u.strip()]
    out = []
    for u in unseen:
        if isinstance(u, str) and u in names:
            out.append(names.index(u))
        elif isinstance(u, (int, np.integer)) and not isinstance(u, bool) and 0 <= int(u) < len(names):
            out.append(int(u))
        elif isinstance(u, str) and u.isdigit() and int(u) < len(names) and u not in names:
            out.append(int(u))
        else:
            raise ValueError(f"unknown identity {u!r} in the unseen list; the identities are {list(names)}")
    return sorted(set(out))


def load_identities(dataset: str = "digits", data_dir=None, unseen=None, val_fraction: float = 0.1, seed: int = 0,
                    per_class: int | None = None, size=(64, 64), grey: bool = False) -> IdentitySplit:
    """Load a dataset and split it into seen identities (train / validation images) and unseen ones.

    ``dataset``: "digits" (shipped, 20x20), "fashion-mnist" (``data_dir`` or Debian's package),
    "mnist" (``data_dir``), "folder" (``data_dir`` = people/NAME/*.jpg, resized to ``size``,
    ``grey`` or RGB). ``unseen``: the identities held out of training, as names or class numbers
    (a list, or "6,7,8,9"); default: 6-9 for digits and MNIST, the last four Fashion-MNIST
    classes, the last quarter of a folder's people (sorted by name; at least 2 of 4 or more, so that
    there are pairs of different unseen people to measure). ``per_class``: keep at most
    this many images of each identity (Fashion-MNIST and MNIST default to 1,000).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if dataset == "digits":
        x, y = D.load_digits(split="all")
        names = list(D.DIGITS_CLASSES)
    elif dataset in ("fashion-mnist", "mnist"):
        if dataset == "mnist" and data_dir is None:
            raise ValueError("MNIST is not shipped: pass the folder with its four IDX files (--data DIR)")
        (xa, ya), (xb, yb) = D.load_fashion_mnist(data_dir) if dataset == "fashion-mnist" else D.load_mnist(data_dir)
        x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        names = list(D.FASHION_MNIST_CLASSES if dataset == "fashion-mnist" else D.DIGITS_CLASSES)
        per_class = 1000 if per_class is None else per_class
    else:
        if data_dir is None:
            raise ValueError("the folder dataset needs --data DIR, a folder with one sub-folder of photos per person")
        x, y, names = load_folder(data_dir, size=size, grey=grey)
    rng = np.random.default_rng(seed)
    if per_class is not None:
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:int(per_class)] for c in np.unique(y)])
        keep.sort()
        x, y = x[keep], y[keep]
    if unseen is None:
        unseen = DEFAULT_UNSEEN.get(dataset) or names[len(names) - max(2 if len(names) >= 4 else 1, len(names) // 4):]
    unseen_ids = _class_numbers(unseen, names)
    seen_ids = [c for c in range(len(names)) if c not in unseen_ids and np.any(y == c)]
    if len(seen_ids) < 2 or not unseen_ids:
        raise ValueError(f"need at least 2 seen identities to train on and 1 unseen to test on; seen {seen_ids}, "
                         f"unseen {unseen_ids} of {names}")
    is_unseen = np.isin(y, unseen_ids)
    seen_idx = np.flatnonzero(~is_unseen)
    train_idx, val_idx = [], []
    for c in seen_ids:  # val_fraction of each seen identity, at least 2 (a same pair) when it has 4 or more
        idx = rng.permutation(seen_idx[y[seen_idx] == c])
        n_val = max(2, int(round(val_fraction * idx.size))) if idx.size >= 4 else 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    train_idx, val_idx = rng.permutation(np.concatenate(train_idx)), rng.permutation(np.concatenate(val_idx))
    if len(np.unique(y[val_idx])) < 2:
        raise ValueError("the validation images (held-out images of the seen identities) must show at least 2 "
                         "identities, to choose a threshold on same and different pairs: give each 4 or more images")
    unseen_idx = np.flatnonzero(is_unseen)
    source = {"dataset": dataset, "data_dir": None if data_dir is None else str(data_dir),
              "unseen": [names[c] for c in unseen_ids], "seen": [names[c] for c in seen_ids],
              "val_fraction": float(val_fraction), "seed": int(seed), "per_class": per_class}
    if dataset == "folder":
        source.update(size=[int(size[0]), int(size[1])], grey=bool(grey))
    return IdentitySplit(x[train_idx], y[train_idx], x[val_idx], y[val_idx], x[unseen_idx], y[unseen_idx],
                         list(names), seen_ids, unseen_ids, source)
