"""Extra training identities made from the seen digits (nbcnn/triplet/more_identities.py): every
generated image must come from a *training* image of a *seen* digit, checked by undoing the change
with plain numpy and looking the result up among the images; nothing of the validation or unseen
images may appear. Deterministic for a seed."""

from pathlib import Path

import numpy as np
import pytest

from nbcnn.triplet import load_identities
from nbcnn.triplet.more_identities import add_identities, make_identities


@pytest.fixture(scope="module")
def split():
    return load_identities("digits", unseen="6,7,8,9", per_class=30, seed=3)


def rows(images):
    """Each image as one hashable row of bytes (for exact look-ups)."""
    flat = np.ascontiguousarray(np.asarray(images, np.float32).reshape(len(images), -1))
    return {r.tobytes() for r in flat}


def digits_in(name):
    """The digits an identity's name is made of: "rot90(3)" -> {"3"}, "2|5" -> {"2", "5"}."""
    inner = name[name.index("(") + 1:-1] if "(" in name else name
    return set(inner.split("|"))


def undo(name, image):
    """The change of ``name`` undone with numpy alone (not with the module's helpers)."""
    if name.startswith("mirror("):
        return image[:, ::-1]
    if name.startswith("rot90("):
        return np.rot90(image, -1, axes=(0, 1))
    if name.startswith("rot270("):
        return np.rot90(image, 1, axes=(0, 1))
    raise AssertionError(name)


def test_every_generated_image_comes_from_a_seen_training_image(split):
    s = add_identities(split, "mirror,rot90,rot270,pairs", seed=0)
    assert s.x_val is split.x_val and s.x_unseen is split.x_unseen and s.unseen == split.unseen
    new = s.y_train >= len(split.names)
    assert np.count_nonzero(~new) == len(split.x_train)
    assert rows(s.x_train[~new]) == rows(split.x_train)
    train_rows = {c: rows(split.x_train[split.y_train == c]) for c in split.seen}
    forbidden = rows(split.x_unseen) | rows(split.x_val)
    # each column pair of a training image averaged: what a digit squeezed to half the width must be
    by_class = {c: split.x_train[split.y_train == c] for c in split.seen}
    halves = {c: rows(0.5 * (xc[:, :, 0::2] + xc[:, :, 1::2])) for c, xc in by_class.items()}
    names = s.names
    for label in np.unique(s.y_train[new]):
        name = names[label]
        images = s.x_train[s.y_train == label]
        assert len(images) > 0
        if "|" in name:
            a, b = (split.names.index(part) for part in name.split("|"))
            assert a in split.seen and b in split.seen
            assert rows(images[:, :, :10]) <= halves[a], name
            assert rows(images[:, :, 10:]) <= halves[b], name
        else:
            digit = split.names.index(name[name.index("(") + 1:-1])
            assert digit in split.seen, name
            back = np.stack([undo(name, im) for im in images])
            assert rows(back) <= train_rows[digit], name
            assert not (rows(back) & forbidden), name
        assert not (rows(images) & forbidden), name


def test_which_identities_are_made(split):
    _, _, names = make_identities(split.x_train, split.y_train, split.names, split.seen, "mirror,rot90,rot270,pairs")
    # a mirrored 0 or 1 is still a 0 or 1, and their quarter turns look alike both ways: those are skipped
    assert [n for n in names if n.startswith("mirror")] == ["mirror(2)", "mirror(3)", "mirror(4)", "mirror(5)"]
    assert [n for n in names if n.startswith("rot90")] == [f"rot90({d})" for d in range(6)]
    assert [n for n in names if n.startswith("rot270")] == ["rot270(2)", "rot270(3)", "rot270(4)", "rot270(5)"]
    assert len([n for n in names if "|" in n]) == 36
    assert set().union(*map(digits_in, names)) == set("012345")
    # and held-out digits never: with 0-3 unseen, nothing of 0-3 is made
    other = load_identities("digits", unseen="0,1,2,3", per_class=30, seed=3)
    _, _, names = make_identities(other.x_train, other.y_train, other.names, other.seen, "mirror,rot90,pairs")
    assert set().union(*map(digits_in, names)) == set("456789")
    assert "mirror(8)" not in names and "mirror(6)" in names
    _, _, names = make_identities(other.x_train, other.y_train, other.names, other.seen, "rot90,rot270")
    assert {"rot90(6)", "rot90(9)"} <= set(names) and not {"rot270(6)", "rot270(9)"} & set(names)


def test_generation_is_deterministic_per_seed(split):
    a = make_identities(split.x_train, split.y_train, split.names, split.seen, "pairs,mirror", seed=5)
    b = make_identities(split.x_train, split.y_train, split.names, split.seen, "pairs,mirror", seed=5)
    c = make_identities(split.x_train, split.y_train, split.names, split.seen, "pairs,mirror", seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] == c[2] and not np.array_equal(a[0], c[0])


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_classes_join_as_identities(split):
    s = add_identities(split, "fashion", seed=0)
    names = s.names[len(split.names):]
    assert len(names) == 10 and names[0] == "fashion:T-shirt/top"
    extra = s.x_train[s.y_train >= len(split.names)]
    assert extra.shape[1:] == split.x_train.shape[1:] and 0 <= extra.min() and extra.max() <= 1
    assert s.source["extra"] == ["fashion"]


def test_bad_extras_are_refused(split):
    with pytest.raises(ValueError, match="unknown extra identities 'rot180'"):
        add_identities(split, "mirror,rot180")
    fm = split.source | {"dataset": "fashion-mnist"}
    from dataclasses import replace
    with pytest.raises(ValueError, match="need a digits data set"):
        add_identities(replace(split, source=fm), "mirror")
    assert add_identities(split, "none") is split and add_identities(split, "") is split


def test_faces_train_takes_extra_identities(tmp_path):
    from click.testing import CliRunner

    import cli
    from nbcnn.triplet import load_encoder

    model = tmp_path / "enc.nbcnn"
    result = CliRunner().invoke(cli.main, ["faces", "train", "--epochs", "1", "--steps-per-epoch", "2", "--width", "2",
                                           "--dim", "2", "--per-class", "20", "--P", "3", "--K", "4", "--quiet",
                                           "--extra", "mirror,pairs", "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert "extra identities:  40 made from the seen ones (mirror, pairs)" in result.output
    info = load_encoder(model).info
    assert info["extra"] == ["mirror", "pairs"] and info["unseen"] == ["6", "7", "8", "9"]
    bad = CliRunner().invoke(cli.main, ["faces", "train", "--extra", "rot180", "--out", str(tmp_path / "x.nbcnn")])
    assert bad.exit_code != 0 and "unknown extra identities 'rot180'" in bad.output
