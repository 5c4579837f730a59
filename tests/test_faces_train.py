"""Training siamese encoders (triplet and logistic), saving them with their threshold, the folder
data set, and the throughput function; tiny shapes everywhere (the real run is in the README)."""

import numpy as np
import pytest

import nbcnn
from conftest import is_slow
from nbcnn.images import save_image
from nbcnn.triplet import (FaceEncoder, build_encoder, load_encoder, load_identities, train_encoder, train_faces,
                           triplet_step, triplet_training_throughput)
from nbcnn.triplet.training import logistic_step, make_logistic_head


def toy_identities(rng, n_ids=3, per_id=6, size=8):
    """Each identity a fixed random pattern, its images that pattern plus noise."""
    patterns = rng.random((n_ids, size, size, 1)).astype(np.float32)
    y = np.repeat(np.arange(n_ids), per_id)
    x = (patterns[y] + 0.15 * rng.standard_normal((len(y), size, size, 1))).astype(np.float32)
    return x, y


def test_triplet_steps_pull_identities_apart(backend, rng):
    """A few steps on one batch lower its triplet loss: the gradient reaches every weight the right way."""
    size = 6 if is_slow(backend) else 8
    x, y = toy_identities(rng, n_ids=2, per_id=3 if is_slow(backend) else 6, size=size)
    enc = build_encoder((size, size, 1), embedding_dim=4, width=2, seed=0, batch_norm=False)
    opt = nbcnn.optim.Adam(0.02)
    steps = 3 if is_slow(backend) else 15
    losses = [triplet_step(enc, opt, x, y, "hard", 0.5, rng)[0] for _ in range(steps)]
    assert losses[-1] < losses[0]
    E = enc.embed(x)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)


def test_logistic_steps_learn_same_and_different(rng):
    x, y = toy_identities(rng, n_ids=3, per_id=6)
    enc = build_encoder((8, 8, 1), embedding_dim=4, width=2, seed=0)
    head = make_logistic_head(enc.embedding_dim, seed=0)
    opt = nbcnn.optim.Adam(0.02)
    losses = [logistic_step(enc, head, opt, x, y, rng=k)[0] for k in range(20)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.parametrize("loss", ["triplet", "logistic"])
def test_train_save_load_keeps_the_verification_rule(tmp_path, rng, loss):
    x, y = toy_identities(rng, n_ids=4, per_id=8)
    enc = build_encoder((8, 8, 1), embedding_dim=4, width=2, seed=1)
    seen = []
    history = train_encoder(enc, x, y, loss=loss, epochs=2, P=3, K=4, steps_per_epoch=3, mining="semi-hard",
                            callback=seen.append)
    assert len(history["loss"]) == 2 and "triplets_per_step" in history
    assert [p.step for p in seen] == [0, 1, 2, 3, 3] * 2 and seen[-1].record is not None
    assert enc.distance == ("logistic" if loss == "logistic" else "squared_l2")
    enc.threshold, enc.info = 0.42, {"dataset": "toy", "note": "kept"}
    enc.save(tmp_path / "enc.nbcnn")
    again = load_encoder(tmp_path / "enc.nbcnn")
    assert isinstance(again, FaceEncoder) and again.threshold == 0.42 and again.info["note"] == "kept"
    assert again.distance == enc.distance and again.encoder_id == enc.encoder_id
    np.testing.assert_array_equal(again.embed(x), enc.embed(x))
    np.testing.assert_allclose(again.distances(enc.embed(x[:3])), enc.distances(enc.embed(x[:3])), rtol=1e-6)
    # the same file is a plain nbcnn model too
    assert nbcnn.load_model(tmp_path / "enc.nbcnn").output_shape == (enc.embedding_dim,)


def test_a_plain_model_is_not_a_face_encoder(tmp_path):
    model = nbcnn.Sequential([nbcnn.Flatten(), nbcnn.Dense(3)], input_shape=(2, 2, 1))
    model.save(tmp_path / "plain.nbcnn")
    with pytest.raises(ValueError, match="not a face encoder"):
        load_encoder(tmp_path / "plain.nbcnn")
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "missing.nbcnn")


def test_training_refuses_bad_arguments(rng):
    x, y = toy_identities(rng)
    enc = build_encoder((8, 8, 1), embedding_dim=4, width=2)
    with pytest.raises(ValueError, match="unknown triplet mining"):
        train_encoder(enc, x, y, mining="hardest")
    with pytest.raises(ValueError, match="loss must be one of"):
        train_encoder(enc, x, y, loss="contrastive")
    with pytest.raises(ValueError, match=r"x must be images \(N, 8, 8, 1\)"):
        train_encoder(enc, x[:, :4], y)
    with pytest.raises(ValueError, match="one identity per image"):
        train_encoder(enc, x, y[:-1])
    with pytest.raises(ValueError, match="alpha"):
        train_encoder(enc, x, y, alpha=float("nan"))


def test_digits_split_keeps_unseen_identities_out_of_training():
    s = load_identities("digits", unseen="7,8,9", per_class=30)
    assert s.unseen == [7, 8, 9] and s.seen == list(range(7))
    assert set(np.unique(s.y_train)) == set(range(7)) == set(np.unique(s.y_val))
    assert set(np.unique(s.y_unseen)) == {7, 8, 9}
    assert len(s.x_train) + len(s.x_val) == 7 * 30 and len(s.x_unseen) == 3 * 30
    with pytest.raises(ValueError, match="unknown identity 'eleven'"):
        load_identities("digits", unseen=["eleven"])


def test_a_folder_of_people_trains_and_evaluates(tmp_path, rng):
    people = tmp_path / "people"
    for name in ("ann", "bob", "cy", "dee"):
        (people / name).mkdir(parents=True)
        base = rng.random((12, 10, 3))
        for k in range(5):
            save_image(people / name / f"{k}.png", np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1))
    (people / "ann" / "notes.txt").write_text("not an image")
    s = load_identities("folder", people, size=(8, 8))
    assert s.names == ["ann", "bob", "cy", "dee"] and s.unseen == [2, 3] and s.input_shape == (8, 8, 3)
    assert len(s.x_unseen) == 10 and len(s.x_train) + len(s.x_val) == 10
    result = train_faces("folder", people, size=(8, 8), epochs=1, steps_per_epoch=2, P=2, K=2, width=2,
                         embedding_dim=4, save_path=tmp_path / "enc.nbcnn")
    enc = load_encoder(tmp_path / "enc.nbcnn")
    assert enc.info["dataset"] == "folder" and enc.info["size"] == [8, 8] and enc.threshold == result["threshold"]
    report = nbcnn.triplet.evaluate_faces(enc, pairs=20, folds=2, trials=2, shots=(1,))
    assert report["identities"] == ["cy", "dee"] and report["images"] == 10 and 0 <= report["auc"] <= 1


def test_throughput_function_times_nbcnn_and_torch():
    r = triplet_training_throughput(steps=1, warmup=1, P=2, K=2, width=2, embedding_dim=4)
    assert r["batch"] == 4 and r["nbcnn"]["images_per_second"] > 0
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "skipped" in r["torch"]
    else:
        assert r["torch"]["images_per_second"] > 0
    assert "images/s" in nbcnn.triplet.format_throughput(r)


@pytest.mark.slow
def test_the_default_recipe_learns_identities_it_never_saw():
    """The README's `nbcnn faces train` in short form (150 digits of each class, the default 3 epochs
    of each of the 5 members, ~15 s quiet): pairs of the unseen digits 6-9 are told apart far better
    than by the untrained encoder (about 0.73) or by chance (0.5). The full run reaches about 0.90."""
    r = train_faces("digits", per_class=150)
    assert r["unseen_auc"] > 0.8 and r["val_auc"] > 0.85
    assert r["encoder"].info["members"] == 5
    assert r["encoder"].info["unseen"] == ["6", "7", "8", "9"] and r["encoder"].info["loss"] == "triplet"
    assert "extra" not in r["encoder"].info  # no made-up identities by default


class _KeepGradients:
    """An optimiser that only copies the gradients it is given (the step is a no-op)."""

    def __init__(self):
        self.grads = {}

    def step(self, parameters):
        self.grads = {(path, key): np.array(layer.grads[key], np.float64) for path, layer, key in parameters}


def test_softmax_step_gradient_matches_finite_differences(rng):
    """loss="softmax": the cross-entropy of softmax(classifier(s * f(x))); its gradient reaches the
    encoder's weights (checked against central differences in float64 arithmetic of the forward)."""
    from nbcnn.triplet.training import SOFTMAX_SCALE, make_softmax_head, softmax_step

    x, y = toy_identities(rng, n_ids=3, per_id=2, size=6)
    enc = build_encoder((6, 6, 1), embedding_dim=3, width=2, seed=0, batch_norm=False)
    head = make_softmax_head(enc.embedding_dim, 3, seed=0)
    keep = _KeepGradients()
    loss, count = softmax_step(enc, head, keep, x, y)
    assert count == len(x)

    def loss_now():
        E = np.asarray(enc.forward(x, training=True), np.float64)
        z = SOFTMAX_SCALE * E @ head.params["W"].astype(np.float64) + head.params["b"].astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        return float(-np.mean(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))))

    assert loss_now() == pytest.approx(loss, rel=1e-5)
    conv = next(layer for layer in enc.layers if "W" in layer.params)
    path = next(p for (p, k) in keep.grads if k == "W" and keep.grads[(p, k)].shape == conv.params["W"].shape)
    g = keep.grads[(path, "W")]
    for flat in rng.choice(conv.params["W"].size, 4, replace=False):
        idx = np.unravel_index(flat, conv.params["W"].shape)
        old = conv.params["W"][idx]
        h = 1e-3
        conv.params["W"][idx] = old + h
        up = loss_now()
        conv.params["W"][idx] = old - h
        down = loss_now()
        conv.params["W"][idx] = old
        assert g[idx] == pytest.approx((up - down) / (2 * h), rel=0.05, abs=2e-4)


def test_softmax_training_separates_identities(rng):
    x, y = toy_identities(rng, n_ids=3, per_id=8)
    enc = build_encoder((8, 8, 1), embedding_dim=4, width=2, seed=0)
    history = train_encoder(enc, x, 10 * y, loss="softmax", epochs=3, P=3, K=4, steps_per_epoch=6,
                            learning_rate=0.01)
    assert history["loss"][-1] < history["loss"][0] and enc.distance == "squared_l2"
    d = enc.distances(enc.embed(x))
    same = y[:, None] == y[None, :]
    assert d[same].mean() < d[~same].mean()


def test_an_ensemble_distance_is_the_mean_of_its_members(tmp_path, rng):
    """``ensemble``: one encoder whose squared distance is the mean of the members' squared
    distances (checked in float64 numpy from each member's own embeddings); it saves and loads."""
    from nbcnn.triplet import ensemble

    x, y = toy_identities(rng, n_ids=3, per_id=4, size=8)
    members = [build_encoder((8, 8, 1), embedding_dim=4, width=2, seed=s) for s in range(3)]
    for m in members:  # move BatchNorm's statistics off their start, so that copying them matters
        train_encoder(m, x, y, epochs=1, P=3, K=4, steps_per_epoch=2)
    enc = ensemble(members)
    own = [m.embed(x).astype(np.float64) for m in members]
    mean_d = np.mean([((e[:, None, :] - e[None, :, :]) ** 2).sum(-1) for e in own], axis=0)
    np.testing.assert_allclose(enc.distances(enc.embed(x)), mean_d, atol=1e-5)
    enc.threshold = 0.5
    enc.save(tmp_path / "ens.nbcnn")
    np.testing.assert_array_equal(load_encoder(tmp_path / "ens.nbcnn").embed(x), enc.embed(x))
    with pytest.raises(ValueError, match="input shape"):
        ensemble([members[0], build_encoder((6, 6, 1), embedding_dim=4, width=2)])


def test_train_faces_members_puts_encoders_together(rng):
    x, y = toy_identities(rng, n_ids=4, per_id=10)
    from nbcnn.triplet import IdentitySplit

    val, unseen = (np.arange(40) % 10 >= 7) & (y < 2), y >= 2
    train = np.flatnonzero((y < 2) & (np.arange(40) % 10 < 7))
    split = IdentitySplit(x[train], y[train], x[val], y[val], x[unseen], y[unseen], ["a", "b", "c", "d"],
                          [0, 1], [2, 3], {"dataset": "toy"})
    r = train_faces(split=split, members=2, epochs=1, P=2, K=4, steps_per_epoch=2, embedding_dim=4, width=2,
                    augment=False)
    assert r["encoder"].info["members"] == 2
    assert r["encoder"].embedding_dim == 2 * build_encoder((8, 8, 1), 4, 2).embedding_dim
    assert len(r["history"]["loss"]) == 2  # one epoch of each member
