"""ROC, AUC, thresholds, the LFW protocol and one-shot recognition, on cases worked by hand."""

import numpy as np
import pytest

from nbcnn.triplet import verification as V


def mann_whitney_auc(d, same):
    """P(a same pair is closer than a different pair), ties half: the AUC's definition."""
    pos, neg = d[same], d[~same]
    return (np.sum(pos[:, None] < neg[None]) + 0.5 * np.sum(pos[:, None] == neg[None])) / (pos.size * neg.size)


@pytest.mark.parametrize("d, same, auc", [
    ([0.1, 0.4, 0.35, 0.8], [1, 0, 1, 0], 1.0),     # every same pair closer: a threshold separates them
    ([0.1, 0.4, 0.5, 0.8], [1, 0, 1, 0], 0.75),     # 3 of the 4 (same, different) pairs in order
    ([0.4, 0.4], [1, 0], 0.5),                      # a tie counts half
    ([0.9, 0.1], [1, 0], 0.0),
])
def test_auc_by_hand(d, same, auc):
    assert V.roc_auc(d, same) == pytest.approx(auc)


def test_auc_is_the_mann_whitney_statistic_and_the_curve_runs_from_0_to_1(rng):
    d = np.round(rng.random(300), 2)  # rounding makes ties
    same = rng.random(300) < 0.3
    fpr, tpr, thresholds, auc = V.roc(d, same)
    assert auc == pytest.approx(mann_whitney_auc(d, same), abs=1e-12)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) > 0)


def test_choose_threshold_by_hand():
    t, acc = V.choose_threshold([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])
    assert t == pytest.approx(0.25) and acc == 1.0
    t, acc = V.choose_threshold([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])  # best: accept 0.1 only, or 0.1-0.3
    assert acc == 0.75 and t == pytest.approx(0.15)
    assert V.accuracy_at([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], 0.35) == 0.75


def test_lfw_protocol_on_separable_and_on_random_pairs(rng):
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    d = np.where(same, rng.uniform(0, 1, 600), rng.uniform(2, 3, 600))
    r = V.lfw_protocol(d, same, folds=10, far_target=1e-3)
    assert r["accuracy"] == 1.0 and r["val"] == 1.0 and len(r["thresholds"]) == 10
    # the threshold is the closest different pair of the 9 folds: a closer one in the 10th is accepted
    assert r["far"] <= 2 / 30
    r = V.lfw_protocol(rng.random(600), same, folds=10)
    assert 0.35 < r["accuracy"] < 0.65 and r["val"] < 0.05  # chance, and nothing accepted at FAR 1e-3


def test_sample_pairs_balances_same_and_different():
    labels = np.repeat(np.arange(4), 10)
    i, j, same = V.sample_pairs(labels, 100, rng=0)
    assert same.sum() == 50 and len(set(zip(i, j))) == 100 and np.all(i < j)
    assert np.array_equal(same, labels[i] == labels[j])


def test_one_shot_recognition_of_well_separated_identities(rng):
    labels = np.repeat(np.arange(3), 6)
    E = np.eye(3)[labels] * 10 + rng.normal(0, 0.1, (18, 3))

    def dist(a, b):
        return ((a[:, None] - b[None]) ** 2).sum(-1)

    r = V.one_shot(dist, E, labels, shots=1, trials=5, threshold=1.0)
    assert r["accuracy"] == 1.0 and r["open_set_accuracy"] == 1.0 and r["unknown_rate"] == 0.0
    assert r["queries"] == 15 and r["identities"] == 3
    r = V.one_shot(dist, E, labels, shots=2, trials=3, threshold=1e-9)  # nobody close enough: all unknown
    assert r["accuracy"] == 1.0 and r["open_set_accuracy"] == 0.0 and r["unknown_rate"] == 1.0


def test_bad_pairs_are_refused():
    with pytest.raises(ValueError, match="both kinds of pairs"):
        V.roc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        V.roc([0.1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        V.roc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="same pairs"):
        V.choose_threshold([0.1, 0.2, 0.3], [1, 0])


def test_draw_roc_writes_a_png(tmp_path):
    V.draw_roc({"toy": ([0.1, 0.4, 0.5, 0.8], [1, 0, 1, 0], 0.45),
                "other": ([0.2, 0.3, 0.1, 0.8], [1, 0, 1, 0], None)}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
