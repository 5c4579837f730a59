"""Which triplets to train on: P x K batches, and random, hard and semi-hard triplet selection.

Most triplets (A, P, N) are easy: once the encoder has learnt a little, ``d(A, N)`` is already
larger than ``d(A, P) + alpha`` and the loss, and the gradient, are 0. The course's advice
(FaceNet's) is to *choose* triplets that are hard to train on. nbcnn mines them inside each
batch, from the embeddings the encoder just computed (one forward pass per image, however
many triplets use it):

    batch      P identities x K images of each (``pk_batches``), embedded: E (P*K, D)
    distances  d[i, j] = ||E[i] - E[j]||^2      (``nbcnn.pairwise_squared_distances``)
    triplets   (anchor, positive, negative) indices into the batch (``mine_triplets``)

The three strategies, for a batch with distances ``d`` and labels ``y`` (ties: the lowest index):

    random     every anchor-positive pair (a, p), a != p, y[a] == y[p], with a negative drawn
               uniformly from the batch's other identities
    hard       one triplet per anchor a: its hardest positive (the farthest image of its own
               identity) and its hardest negative (the closest image of another identity)
               ("batch hard", Hermans et al. 2017)
    semi-hard  every anchor-positive pair (a, p), with the closest negative that is farther
               than the positive but inside the margin: d[a, p] < d[a, n] < d[a, p] + alpha
               (FaceNet, Schroff et al. 2015); a pair with no such negative is left out

Anchors with no positive, or no negative, in the batch give no triplet.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("random", "hard", "semi-hard")


def _labels(labels) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"labels must be a 1-D array of integer identity numbers, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def check_strategy(strategy) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown triplet mining {strategy!r}; choose one of {STRATEGIES}")
    return strategy


def pk_batches(labels, P: int, K: int, steps: int, rng=None):
    """Yield ``steps`` batches of indices into ``labels``: P identities x K images each.

    Each batch draws P different identities (among those with at least 2 images) and K images
    of each, without replacement when the identity has K or more (else with replacement),
    ordered identity by identity. Fewer than P such identities: all of them. ``rng``: an int,
    a ``numpy.random.Generator`` or None.
    """
    y = _labels(labels)
    P, K, steps = int(P), int(K), int(steps)
    if P < 2 or K < 2:
        raise ValueError(f"a P x K batch needs P >= 2 identities and K >= 2 images of each (a positive and a "
                         f"negative for every anchor), got P={P}, K={K}")
    rng = np.random.default_rng(rng)
    classes, counts = np.unique(y, return_counts=True)
    usable = classes[counts >= 2]
    if usable.size < 2:
        raise ValueError(f"triplets need at least 2 identities with 2 or more images each; the labels have "
                         f"{usable.size} (identities and counts: {dict(zip(classes.tolist(), counts.tolist()))})")
    members = {c: np.flatnonzero(y == c) for c in usable.tolist()}
    for _ in range(steps):
        chosen = rng.choice(usable, size=min(P, usable.size), replace=False)
        parts = []
        for c in chosen.tolist():
            idx = members[c]
            parts.append(rng.choice(idx, size=K, replace=idx.size < K))
        yield np.concatenate(parts)


def mine_triplets(distances, labels, strategy: str = "semi-hard", alpha: float = 0.2, rng=None):
    """Triplets of one batch: ``(anchors, positives, negatives)``, int64 index arrays of equal length.

    ``distances`` (N, N): squared distances between the batch's embeddings; ``labels`` (N,)
    identity numbers; ``strategy`` one of ``STRATEGIES`` (see the module docstring);
    ``alpha`` the margin (semi-hard's window); ``rng`` draws random's negatives.
    """
    check_strategy(strategy)
    y = _labels(labels)
    d = np.asarray(distances, dtype=np.float64)
    n = y.shape[0]
    if d.shape != (n, n):
        raise ValueError(f"distances must be ({n}, {n}), one row and column per label, got {d.shape}")
    same = y[:, None] == y[None, :]
    positive = same & ~np.eye(n, dtype=bool)
    negative = ~same
    has_both = positive.any(axis=1) & negative.any(axis=1)
    empty = np.zeros(0, np.int64)
    if not has_both.any():
        return empty, empty, empty

    if strategy == "hard":
        anchors = np.flatnonzero(has_both)
        far_pos = np.where(positive, d, -np.inf)[anchors].argmax(axis=1)
        near_neg = np.where(negative, d, np.inf)[anchors].argmin(axis=1)
        return anchors.astype(np.int64), far_pos.astype(np.int64), near_neg.astype(np.int64)

    a_idx, p_idx = np.nonzero(positive & has_both[:, None])  # every anchor-positive pair, row-major
    if strategy == "random":
        rng = np.random.default_rng(rng)
        negs = []
        for a in a_idx:
            choices = np.flatnonzero(negative[a])
            negs.append(choices[rng.integers(choices.size)])
        return a_idx.astype(np.int64), p_idx.astype(np.int64), np.asarray(negs, np.int64).reshape(-1)

    # semi-hard: d[a, p] < d[a, n] < d[a, p] + alpha; the closest such n
    d_ap = d[a_idx, p_idx][:, None]
    d_an = d[a_idx]
    window = negative[a_idx] & (d_an > d_ap) & (d_an < d_ap + alpha)
    found = window.any(axis=1)
    closest = np.where(window, d_an, np.inf).argmin(axis=1)
    return (a_idx[found].astype(np.int64), p_idx[found].astype(np.int64), closest[found].astype(np.int64))
