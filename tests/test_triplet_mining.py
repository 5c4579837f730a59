"""Triplet mining picks the documented triplets on a hand-made batch; P x K batches are what they say."""

import numpy as np
import pytest

from nbcnn.triplet import mine_triplets, pk_batches

# Six images: identity 0 (images 0, 1, 2), identity 1 (3, 4), identity 2 (5, alone: never an anchor).
# Squared distances by hand (whole numbers: no rounding decides a tie).
LABELS = np.array([0, 0, 0, 1, 1, 2])
D = np.zeros((6, 6))
for (i, j), v in {(0, 1): 4, (0, 2): 36, (0, 3): 25, (0, 4): 144, (0, 5): 900,
                  (1, 2): 16, (1, 3): 9, (1, 4): 100, (1, 5): 784,
                  (2, 3): 1, (2, 4): 36, (2, 5): 576,
                  (3, 4): 49, (3, 5): 625, (4, 5): 324}.items():
    D[i, j] = D[j, i] = v


def triplets(result):
    return [tuple(int(v) for v in t) for t in zip(*result)]


def test_hard_mining_takes_the_farthest_positive_and_the_closest_negative_of_each_anchor():
    # anchor 0: positives 1 (4), 2 (36) -> 2; negatives 3 (25), 4 (144), 5 (900) -> 3
    # anchor 1: positives 0 (4), 2 (16) -> 2; negatives 3 (9) ... -> 3
    # anchor 2: positives 0 (36), 1 (16) -> 0; negatives 3 (1) -> 3
    # anchor 3: positive 4; negatives 0 (25), 1 (9), 2 (1), 5 -> 2
    # anchor 4: positive 3; negatives 0 (144), 1 (100), 2 (36), 5 (324) -> 2
    # image 5 has no positive: no triplet
    assert triplets(mine_triplets(D, LABELS, "hard")) == [(0, 2, 3), (1, 2, 3), (2, 0, 3), (3, 4, 2), (4, 3, 2)]


def test_semi_hard_mining_takes_the_closest_negative_inside_the_margin():
    # alpha = 60: negative n qualifies when d(a, p) < d(a, n) < d(a, p) + 60
    # (0, 1): d 4, window (4, 64): 3 (25)                      -> (0, 1, 3)
    # (0, 2): d 36, window (36, 96): 3 is 25, 4 is 144         -> none
    # (1, 0): d 4: 3 (9)                                       -> (1, 0, 3)
    # (1, 2): d 16, window (16, 76): 3 is 9, 4 is 100          -> none
    # (2, 0): d 36, window (36, 96): 4 is exactly 36: not farther than the positive -> none
    # (2, 1): d 16, window (16, 76): 4 (36)                    -> (2, 1, 4)
    # (3, 4): d 49, window (49, 109): 0 (25), 1 (9), 2 (1)     -> none
    # (4, 3): d 49, window (49, 109): 1 (100); 0 is 144        -> (4, 3, 1)
    assert triplets(mine_triplets(D, LABELS, "semi-hard", alpha=60)) == [(0, 1, 3), (1, 0, 3), (2, 1, 4), (4, 3, 1)]
    # closest, not any: with alpha = 1000 anchor 0's pair (0, 1) takes 3 (25), not 4 or 5
    assert triplets(mine_triplets(D, LABELS, "semi-hard", alpha=1000))[0] == (0, 1, 3)


def test_random_mining_keeps_every_positive_pair_with_a_random_negative():
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (4, 3)]
    seen = set()
    for seed in range(40):
        got = triplets(mine_triplets(D, LABELS, "random", rng=seed))
        assert [(a, p) for a, p, _ in got] == pairs
        assert all(LABELS[n] != LABELS[a] for a, _, n in got)
        seen |= {(a, n) for a, _, n in got}
    assert {n for a, n in seen if a == 0} == {3, 4, 5}  # every negative gets its turn
    assert triplets(mine_triplets(D, LABELS, "random", rng=7)) == triplets(mine_triplets(D, LABELS, "random", rng=7))


def test_a_batch_of_one_identity_gives_no_triplets():
    a, p, n = mine_triplets(np.ones((3, 3)), np.zeros(3, np.int64), "hard")
    assert a.size == p.size == n.size == 0


def test_mining_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown triplet mining"):
        mine_triplets(D, LABELS, "hardest")
    with pytest.raises(ValueError, match=r"distances must be \(6, 6\)"):
        mine_triplets(D[:5], LABELS, "hard")
    with pytest.raises(TypeError, match="integer identity numbers"):
        mine_triplets(D, LABELS.astype(float), "hard")


def test_pk_batches_hold_P_identities_of_K_images():
    labels = np.repeat(np.arange(5), [10, 10, 3, 1, 10])  # identity 3 has one image: never drawn
    for batch in pk_batches(labels, P=3, K=4, steps=20, rng=0):
        assert batch.shape == (12,)
        ids = labels[batch].reshape(3, 4)
        assert (ids == ids[:, :1]).all() and len(set(ids[:, 0])) == 3 and 3 not in ids
        for row, idx in zip(ids, batch.reshape(3, 4)):
            if row[0] != 2:
                assert len(set(idx)) == 4  # without replacement when there are enough images
    with pytest.raises(ValueError, match="at least 2 identities"):
        next(pk_batches(np.array([0, 0, 1]), 2, 2, 1))
    with pytest.raises(ValueError, match="P >= 2"):
        next(pk_batches(labels, 1, 4, 1))
