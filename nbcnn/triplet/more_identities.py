"""More identities to train on, made only from the seen ones (and, optionally, Fashion-MNIST).

Six seen digits teach the encoder too narrow a metric: it learns what tells 0-5 apart and
little else, and the unseen 7 / 9 and 8 / 9 stay close. A face encoder learns from thousands
of people; here new identities are made from the *training* images of the seen classes by
changes that give a shape no digit has, so they cannot stand in for an unseen digit:

    mirror     the digit flipped left-right (a backwards 2, 3, 4, 5; ``mirror(d)``)
    rot90      turned a quarter counter-clockwise (``rot90(d)``)
    rot270     turned a quarter clockwise (``rot270(d)``)
    pairs      two seen digits side by side, each squeezed to half the width ("2|3": P x P
               identities, 36 from 0-5)
    fashion    the 10 Fashion-MNIST classes, resized to the digits' size (real images, other
               objects; needs Debian's ``dataset-fashion-mnist`` or ``fashion_dir``)

Left out on purpose: 180-degree turns and upside-down flips (a 6 turned round is a 9, a 2
turned round is close to a 7 with a hook), and every change that maps a class onto itself
or onto another change of it (``SYMMETRIC``: a mirrored 0, 1 or 8 is still a 0, 1 or 8, and
a 0, 1 or 8 turned a quarter one way looks the same as turned the other way, so those keep
``rot90`` only; when 6 and 9 are both seen, ``rot270(9)`` is ``rot90(6)`` and is left out).
Such an identity would ask the encoder to separate images that look alike.

``add_identities(split, extra, seed)`` returns a copy of an ``IdentitySplit`` whose
``x_train`` / ``y_train`` also hold the new identities (labels after the real ones, names in
``names``). Only ``x_train`` is read: the validation images (the threshold) and the unseen
identities (the evaluation) are untouched and never appear, changed or not, in training.

Measured (the README's faces section): with the triplet loss they lowered the unseen-pair AUC
of 6-9; with ``loss="softmax"`` they raised it (0.89 to 0.89-0.91 over three seeds) but lowered
it by 0.01 when other digits were held out, so ``nbcnn faces train`` adds none unless asked.
"""

from __future__ import annotations

import numpy as np

from .. import augment as A
from .. import data as D

EXTRAS = ("mirror", "rot90", "rot270", "pairs", "fashion")
DIGIT_DATASETS = ("digits", "mnist")
# Digits a change maps (nearly) onto the digit itself, or onto another change of it.
SYMMETRIC = {"mirror": ("0", "1", "8"), "rot270": ("0", "1", "8")}
# A 9 is a 6 turned half round, so a 9 turned a quarter clockwise is a 6 turned a quarter counter-clockwise.
HALF_TURN = {"6": "9", "9": "6"}
PAIR_IMAGES = 200     # images of each "a|b" pair identity (at most the seen digits' median count)
FASHION_IMAGES = 450  # images of each Fashion-MNIST class (the seen digits have 450 each)


def check_extras(extra) -> tuple:
    """``extra`` (a list, or a comma-separated string; "" or "none" for nothing) as a tuple of EXTRAS."""
    if extra is None:
        return ()
    if isinstance(extra, str):
        extra = [e.strip() for e in extra.split(",") if e.strip() and e.strip() != "none"]
    out = []
    for e in extra:
        if e not in EXTRAS:
            raise ValueError(f"unknown extra identities {e!r}; choose among {EXTRAS}")
        if e not in out:
            out.append(e)
    return tuple(out)


def mirror(x) -> np.ndarray:
    """Images (N, H, W, C) flipped left-right."""
    return np.ascontiguousarray(np.asarray(x)[:, :, ::-1])


def rot90(x, quarters: int = 1) -> np.ndarray:
    """Square images (N, H, H, C) turned ``quarters`` quarter-turns counter-clockwise (as displayed)."""
    return np.ascontiguousarray(np.rot90(np.asarray(x), quarters, axes=(1, 2)))


def squeeze_half(x) -> np.ndarray:
    """Images (N, H, W, C) at half the width, (N, H, W // 2, C): each output column is the mean of two
    neighbouring input columns (an odd last column is dropped)."""
    x = np.asarray(x, np.float32)
    W2 = x.shape[2] // 2
    return 0.5 * (x[:, :, 0:2 * W2:2] + x[:, :, 1:2 * W2:2])


def side_by_side(left, right) -> np.ndarray:
    """Two digits in one image of the same size: ``left`` squeezed into the left half, ``right`` into
    the right half (an odd width keeps a blank last column)."""
    left, right = np.asarray(left, np.float32), np.asarray(right, np.float32)
    out = np.zeros_like(left)
    half = left.shape[2] // 2
    out[:, :, :half] = squeeze_half(left)
    out[:, :, half:2 * half] = squeeze_half(right)
    return out


def fashion_images(per_class: int, size, rng, data_dir=None):
    """``per_class`` random Fashion-MNIST training images of each of its 10 classes, resized to ``size``
    (H, W) and C channels of the digits: ``(x, y, names)``, y 0-9."""
    (x, y), _ = D.load_fashion_mnist(data_dir)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
    x = A.resize(x[idx], (int(size[0]), int(size[1])))
    if size[2] != 1:
        x = np.repeat(x, int(size[2]), axis=-1)
    return np.clip(x, 0.0, 1.0).astype(np.float32), y[idx], list(D.FASHION_MNIST_CLASSES)


def make_identities(x, y, names, seen, extra, seed: int = 0, dataset: str = "digits", fashion_dir=None):
    """New identities from training images ``x`` (N, H, W, C) of labels ``y`` (positions in ``names``).

    ``seen``: the labels that may be used (the split's seen identities); ``extra``: which of
    EXTRAS. Returns ``(x_new, y_new, new_names)``, y_new counting from ``len(names)``. Deterministic
    for a seed. Digit changes need a digits data set (``dataset`` "digits" or "mnist")."""
    extra = check_extras(extra)
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim != 4 or y.shape != (len(x),):
        raise ValueError(f"x must be images (N, H, W, C) and y one label each, got {x.shape} and {y.shape}")
    digit_changes = [e for e in extra if e in ("mirror", "rot90", "rot270")]
    if digit_changes and dataset not in DIGIT_DATASETS:
        raise ValueError(f"the extra identities {digit_changes} are mirrored or turned digits: they need a digits "
                         f"data set ({DIGIT_DATASETS}), not {dataset!r}")
    if "rot90" in extra or "rot270" in extra:
        if x.shape[1] != x.shape[2]:
            raise ValueError(f"quarter turns need square images, got {x.shape[1]} x {x.shape[2]}")
    rng = np.random.default_rng([int(seed), 13])
    xs, ys, new_names = [], [], []

    def add(images, name):
        xs.append(np.asarray(images, np.float32))
        ys.append(np.full(len(images), len(names) + len(new_names), np.int64))
        new_names.append(name)

    seen = [int(c) for c in seen]
    for c in seen:
        xc = x[y == c]
        if len(xc) == 0:
            continue
        name = names[c]
        if "mirror" in extra and name not in SYMMETRIC["mirror"]:
            add(mirror(xc), f"mirror({name})")
        if "rot90" in extra:
            add(rot90(xc, 1), f"rot90({name})")
        partner = HALF_TURN.get(name)
        twin = "rot90" in extra and partner in names and names.index(partner) in seen  # rot90(partner) is made
        if "rot270" in extra and name not in SYMMETRIC["rot270"] and not twin:
            add(rot90(xc, 3), f"rot270({name})")
    if "pairs" in extra:
        members = {c: np.flatnonzero(y == c) for c in seen if np.any(y == c)}
        n = min(PAIR_IMAGES, int(np.median([len(m) for m in members.values()])))  # fewer with fewer digits
        for a in members:
            for b in members:
                left = x[rng.choice(members[a], n)]
                right = x[rng.choice(members[b], n)]
                add(side_by_side(left, right), f"{names[a]}|{names[b]}")
    if "fashion" in extra:
        fx, fy, fnames = fashion_images(FASHION_IMAGES, x.shape[1:], rng, fashion_dir)
        for c in range(10):
            add(fx[fy == c], f"fashion:{fnames[c]}")
    if not xs:
        return np.zeros((0,) + x.shape[1:], np.float32), np.zeros(0, np.int64), []
    return np.concatenate(xs), np.concatenate(ys), new_names


def add_identities(split, extra, seed: int = 0, fashion_dir=None):
    """A copy of ``split`` (an ``IdentitySplit``) with the ``extra`` identities added to its training
    images (made from ``split.x_train`` alone) and their names appended to ``names``; the validation
    and unseen images are the same objects. ``split.source["extra"]`` records what was added."""
    from dataclasses import replace

    extra = check_extras(extra)
    if not extra:
        return split
    xn, yn, new_names = make_identities(split.x_train, split.y_train, split.names, split.seen, extra, seed,
                                        split.source.get("dataset", "digits"), fashion_dir)
    rng = np.random.default_rng([int(seed), 14])
    x = np.concatenate([split.x_train, xn])
    y = np.concatenate([split.y_train, yn])
    order = rng.permutation(len(x))
    return replace(split, x_train=x[order], y_train=y[order], names=list(split.names) + new_names,
                   source={**split.source, "extra": list(extra), "extra_identities": len(new_names)})
