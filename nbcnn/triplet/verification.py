"""Verification (one-to-one) and one-shot recognition (one-to-k), measured.

Verification is binary classification of a *pair*: same identity when ``d(x1, x2) < threshold``.
Over every threshold, that gives the ROC curve (true-accept rate against false-accept rate)
and its area, the AUC: the probability that a random same-identity pair is closer than a
random different-identity pair (1.0: every threshold in a gap separates them; 0.5: chance).

The LFW protocol (Huang et al. 2007; FaceNet's and facenet.py's evaluation): the pairs are cut
into 10 folds; for each fold the threshold is chosen on the other 9 and the accuracy measured
on it; the report is the mean and spread over the 10. VAL at FAR = 1e-3: on the 9 folds, the
largest threshold whose false-accept rate (different pairs accepted) is at most 1e-3; VAL is the
share of same pairs that threshold accepts on the 10th fold, FAR the share of different ones.
(With 300 different pairs in a fold one false accept is already 3.3e-3: ask for more pairs to
measure FAR 1e-3 finely.)

One-shot recognition: each unseen identity enrolled from ``shots`` images drawn at random;
every other image goes to the identity of its nearest enrolled image (with several images per
identity, the nearest of them all), and counts as "unknown" if even that is not within the
threshold. Repeated over random draws of the enrolled images.
"""

from __future__ import annotations

import numpy as np

from ..checks import int_arg


def _pairs_input(distances, same):
    d = np.asarray(distances, np.float64).reshape(-1)
    s = np.asarray(same).reshape(-1).astype(bool)
    if d.shape != s.shape:
        raise ValueError(f"distances ({d.size}) and same ({s.size}) must describe the same pairs")
    if not np.isfinite(d).all():
        raise ValueError("distances hold NaN or infinite values")
    return d, s


def roc(distances, same):
    """The ROC of "same identity when the distance is small": ``(fpr, tpr, thresholds, auc)``.

    ``fpr[k]``, ``tpr[k]``: the shares of different / same pairs with a distance <= ``thresholds[k]``
    (the distinct distances, rising after a first point (0, 0)). ``auc``: the trapezoid area
    under it, the chance that a random same pair is closer than a random different pair (a tie
    counts half, as scikit-learn's ``roc_auc_score``). ``nbcnn.plot.roc_numbers(kind="distance")``
    computes it, and ``nbcnn.plot.roc_curve`` draws it.
    """
    from ..plot import roc_numbers

    return roc_numbers(distances, same, kind="distance")


def roc_auc(distances, same) -> float:
    return roc(distances, same)[3]


def choose_threshold(distances, same) -> tuple[float, float]:
    """The threshold with the best accuracy on these pairs, and that accuracy: ``(t, acc)``.

    Same identity when ``distance < t``; t is halfway between two neighbouring distances, so
    it is never exactly one of them (ties are the lower one of the best thresholds)."""
    d, s = _pairs_input(distances, same)
    if d.size == 0:
        raise ValueError("no pairs to choose a threshold on")
    order = np.argsort(d, kind="stable")
    d, s = d[order], s[order]
    # accepting the first k pairs (k = 0..n): correct = same among them + different after them
    correct = np.r_[0, np.cumsum(np.where(s, 1, -1))] + int((~s).sum())
    cuts = np.r_[0, np.flatnonzero(np.diff(d)) + 1, d.size]  # k only where the distance changes
    k = int(cuts[np.argmax(correct[cuts])])
    if k == 0:
        t = d[0] - 1.0
    elif k == d.size:
        t = d[-1] + 1.0
    else:
        t = (d[k - 1] + d[k]) / 2
    return float(t), float(correct[k] / d.size)


def accuracy_at(distances, same, threshold: float) -> float:
    d, s = _pairs_input(distances, same)
    return float(np.mean((d < threshold) == s))


def all_pairs(labels):
    """Every unordered pair of distinct images: ``(i, j, same)`` with i < j."""
    y = np.asarray(labels)
    i, j = np.triu_indices(len(y), k=1)
    return i, j, y[i] == y[j]


def sample_pairs(labels, n_pairs: int = 6000, rng=None):
    """``n_pairs`` pairs, half same identity, half different, drawn at random without repeats
    (as LFW's 3,000 + 3,000): ``(i, j, same)``, shuffled."""
    y = np.asarray(labels)
    rng = np.random.default_rng(rng)
    n_pairs = int_arg(n_pairs, "n_pairs", 2)
    i, j, same = all_pairs(y)
    pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
    half = n_pairs // 2
    if pos.size < half or neg.size < n_pairs - half:
        raise ValueError(f"asked for {half} same and {n_pairs - half} different pairs, but the images give only "
                         f"{pos.size} and {neg.size}")
    chosen = np.concatenate([rng.choice(pos, half, replace=False), rng.choice(neg, n_pairs - half, replace=False)])
    chosen = rng.permutation(chosen)
    return i[chosen], j[chosen], same[chosen]


def _val_far(d, s, threshold):
    accepted = d < threshold
    n_same, n_diff = max(int(s.sum()), 1), max(int((~s).sum()), 1)
    return float(np.sum(accepted & s) / n_same), float(np.sum(accepted & ~s) / n_diff)


def _threshold_at_far(d, s, far_target):
    """The largest threshold whose false-accept rate on (d, s) is at most ``far_target``: with the
    different pairs' distances sorted, ``neg[k]`` for k = floor(far_target * n) accepts exactly
    the k closest of them (``d < neg[k]``); ties can only lower that count."""
    neg = np.sort(d[~s])
    if neg.size == 0:
        return float(d.max()) + 1.0
    k = int(np.floor(far_target * neg.size))
    return float(neg[k]) if k < neg.size else float(neg[-1]) + 1.0


def lfw_protocol(distances, same, folds: int = 10, far_target: float = 1e-3, seed: int = 0) -> dict:
    """Accuracy and VAL at FAR in the k-fold protocol LFW uses (see the module docstring).

    Returns {"accuracy", "accuracy_std", "thresholds" (one per fold), "val", "val_std", "far",
    "far_target", "folds", "pairs"}."""
    d, s = _pairs_input(distances, same)
    folds = int_arg(folds, "folds", 2)
    if d.size < folds:
        raise ValueError(f"{d.size} pairs cannot make {folds} folds")
    order = np.random.default_rng(seed).permutation(d.size)
    parts = np.array_split(order, folds)
    accs, thresholds, vals, fars = [], [], [], []
    for k in range(folds):
        test = parts[k]
        train = np.concatenate([parts[m] for m in range(folds) if m != k])
        t, _ = choose_threshold(d[train], s[train])
        thresholds.append(t)
        accs.append(accuracy_at(d[test], s[test], t))
        t_far = _threshold_at_far(d[train], s[train], far_target)
        val, far = _val_far(d[test], s[test], t_far)
        vals.append(val)
        fars.append(far)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "thresholds": thresholds,
            "val": float(np.mean(vals)), "val_std": float(np.std(vals)), "far": float(np.mean(fars)),
            "far_target": far_target, "folds": folds, "pairs": int(d.size)}


def one_shot(distance_fn, embeddings, labels, shots: int = 1, trials: int = 20, threshold: float | None = None,
             seed: int = 0) -> dict:
    """One-shot (``shots``-shot) recognition among the identities in ``labels``.

    ``distance_fn(E1, E2) -> (N, M)`` (an encoder's ``distances``). Each trial enrols ``shots``
    random images of every identity and sends every other image to its nearest enrolled image's
    identity. Returns {"accuracy" (closed set: the nearest identity is right), "accuracy_std",
    "open_set_accuracy" (also right only if within ``threshold``, else counted "unknown" and
    wrong), "unknown_rate", "identities", "shots", "trials", "queries" per trial}.
    """
    E = np.asarray(embeddings)
    y = np.asarray(labels)
    shots, trials = int_arg(shots, "shots"), int_arg(trials, "trials")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError("recognition needs at least 2 identities")
    rng = np.random.default_rng(seed)
    closed, opened, unknown = [], [], []
    for _ in range(trials):
        enrolled = np.concatenate([rng.choice(np.flatnonzero(y == c), shots, replace=False) for c in classes])
        queries = np.setdiff1d(np.arange(len(y)), enrolled)
        d = np.asarray(distance_fn(E[queries], E[enrolled]))
        nearest = d.argmin(axis=1)
        predicted = y[enrolled][nearest]
        right = predicted == y[queries]
        closed.append(float(np.mean(right)))
        if threshold is not None:
            known = d[np.arange(len(queries)), nearest] < threshold
            opened.append(float(np.mean(right & known)))
            unknown.append(float(np.mean(~known)))
    out = {"accuracy": float(np.mean(closed)), "accuracy_std": float(np.std(closed)), "identities": int(classes.size),
           "shots": shots, "trials": trials, "queries": int(len(y) - shots * classes.size)}
    if threshold is not None:
        out.update(open_set_accuracy=float(np.mean(opened)), unknown_rate=float(np.mean(unknown)))
    return out


def draw_roc(curves: dict, path, title: str = "ROC on pairs of unseen identities") -> str:
    """Draw ROC curves ``{label: (distances, same, threshold or None)}`` on one chart (the threshold
    marked as a dot) with ``nbcnn.plot.roc_curve``, and write the PNG at ``path``."""
    from .. import plot

    fig = None
    for label, (distances, same, threshold) in curves.items():
        fig = plot.roc_curve(distances, same, kind="distance", threshold=threshold, label=label, title=title,
                             ax=None if fig is None else fig.axes[0])
    if fig is None:
        raise ValueError("draw_roc needs at least one curve")
    return str(plot.save(fig, path))
