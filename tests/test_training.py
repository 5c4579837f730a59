"""Training: optimisers against hand-computed steps, a deterministic run whose loss must fall,
checkpoints that resume exactly and refuse bad files, and transfer learning."""

import os

import numpy as np
import pytest

import nbcnn
from nbcnn import data, layers as L, optim
from nbcnn.checkpoint import load_weights


@pytest.fixture(autouse=True)
def on_cpu():
    with nbcnn.use_backend("cpu"):
        yield


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = data.load_digits(seed=0)
    return x_train, y_train, x_test, y_test


def small_cnn(num_classes=10, seed=0):
    return nbcnn.Sequential([
        L.Conv2D(8, 3, kernel_initializer="he_normal"), L.ReLU(), L.MaxPooling2D(2),
        L.Conv2D(16, 3, kernel_initializer="he_normal"), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(num_classes, activation="softmax"),
    ], input_shape=(20, 20, 1), seed=seed)


class FakeLayer:
    def __init__(self, w, g):
        self.params, self.grads = {"w": w}, {"w": g}


def test_sgd_momentum_matches_hand_computation():
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    layer = FakeLayer(w.copy(), g)
    opt = optim.SGD(0.1, momentum=0.9, weight_decay=0.01)
    v = np.zeros(2)
    expected = w.copy()
    for _ in range(3):
        v = 0.9 * v - 0.1 * (g + 0.01 * expected)
        expected = expected + v
        opt.step([("p", layer, "w")])
    np.testing.assert_allclose(layer.params["w"], expected, rtol=1e-12)


def test_adam_matches_hand_computation():
    w, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, -0.1, 2.0])
    layer = FakeLayer(w.copy(), g)
    opt = optim.Adam(0.01, epsilon=1e-8)
    m = v = np.zeros(3)
    expected = w.copy()
    for t in range(1, 4):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        opt.step([("p", layer, "w")])
    np.testing.assert_allclose(layer.params["w"], expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_compiled_and_numpy_paths_agree(dtype):
    """Contiguous parameters take the one-pass compiled update; a strided gradient takes the
    numpy one. Both must follow the formula (the float64 hand computation is the oracle)."""
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(40).astype(dtype)
    grads = [rng.standard_normal(80).astype(dtype) for _ in range(4)]
    results = []
    for strided in (False, True):
        layer = FakeLayer(w0.copy(), None)
        opt = optim.Adam(0.05)
        for g in grads:
            layer.grads["w"] = g[::2] if strided else np.ascontiguousarray(g[::2])
            opt.step([("p", layer, "w")])
        results.append(layer.params["w"])
    m = v = np.zeros(40)
    want = w0.astype(np.float64)
    for t, g in enumerate(grads, 1):
        g = g[::2].astype(np.float64)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        # Keras' form: epsilon added to sqrt(v) before the bias correction is folded into lr_t
        lr_t = 0.05 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        want = want - lr_t * m / (np.sqrt(v) + 1e-7)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for got in results:
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(results[0], results[1], rtol=tol / 10, atol=tol / 10)


def test_learning_rate_schedules():
    assert [optim.step_decay(1.0, 0.5, 2)(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = optim.cosine_decay(1.0, 10)
    assert cosine(0) == 1.0 and abs(cosine(5) - 0.5) < 1e-12 and abs(cosine(10)) < 1e-12
    assert optim.exponential_decay(2.0, 0.5)(3) == 0.25


def test_training_is_deterministic_and_the_loss_falls(digits):
    x, y = digits[0][:800], digits[1][:800]
    runs = []
    for _ in range(2):
        model = small_cnn()
        model.compile(optim.Adam(0.003))
        history = model.fit(x, y, epochs=4, batch_size=32, verbose=False)
        runs.append((history["loss"], model.layers[0].params["W"].copy()))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])
    losses = runs[0][0]
    assert losses[0] > losses[-1]
    assert losses[-1] < 0.5, losses  # from ln(10) = 2.3 at the start


def test_digits_reach_high_accuracy(digits):
    x_train, y_train, x_test, y_test = digits
    model = small_cnn()
    model.compile(optim.Adam(0.003))
    model.fit(x_train, y_train, epochs=4, batch_size=64, verbose=False)
    _, accuracy = model.evaluate(x_test, y_test)
    assert accuracy >= 0.95, accuracy


def test_checkpoint_resumes_exactly(tmp_path, digits):
    x, y = digits[0][:300], digits[1][:300]
    straight = small_cnn()
    straight.compile(optim.SGD(0.05, momentum=0.9))
    straight.fit(x, y, epochs=2, batch_size=50, verbose=False)

    first = small_cnn()
    first.compile(optim.SGD(0.05, momentum=0.9))
    first.fit(x, y, epochs=1, batch_size=50, verbose=False)
    path = tmp_path / "half.nbcnn"
    first.save(path)
    resumed = nbcnn.load_model(path)
    assert resumed.epochs_done == 1 and resumed.optimizer.iterations == 6
    resumed.fit(x, y, epochs=1, batch_size=50, verbose=False)
    for (_, a), (_, b) in zip(straight.network.named_layers(), resumed.network.named_layers()):
        for key in a.params:
            assert np.array_equal(a.params[key], b.params[key]), key
    assert straight.history["loss"] == resumed.history["loss"]


def test_checkpoint_keeps_batchnorm_state_dropout_and_frozen_layers(tmp_path):
    model = nbcnn.Sequential([L.Conv2D(2, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dropout(0.3, seed=1),
                              L.Dense(2)], input_shape=(5, 5, 1))
    model.compile("adam")
    model.freeze(upto=1)
    x = np.random.default_rng(0).standard_normal((8, 5, 5, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, batch_size=4, verbose=False)
    model.save(tmp_path / "m.nbcnn")
    again = nbcnn.load_model(tmp_path / "m.nbcnn")
    assert not again.layers[0].trainable and again.layers[1].trainable
    np.testing.assert_array_equal(again.layers[1].state["moving_mean"], model.layers[1].state["moving_mean"])
    np.testing.assert_array_equal(again(x), model(x))
    np.testing.assert_array_equal(again.layers[4].rng.random(3), model.layers[4].rng.random(3))


def test_truncated_or_foreign_checkpoints_are_refused(tmp_path):
    model = small_cnn()
    path = tmp_path / "m.nbcnn"
    model.save(path)
    blob = path.read_bytes()
    (tmp_path / "cut.nbcnn").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="cut.nbcnn is not a readable nbcnn checkpoint"):
        nbcnn.load_model(tmp_path / "cut.nbcnn")
    (tmp_path / "text.nbcnn").write_text("hello")
    with pytest.raises(ValueError, match="text.nbcnn"):
        nbcnn.load_model(tmp_path / "text.nbcnn")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no meta.json"):
        nbcnn.load_model(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        nbcnn.load_model(tmp_path / "missing.nbcnn")


def test_loading_weights_into_a_different_model_names_the_mismatch(tmp_path):
    small_cnn().save(tmp_path / "m.nbcnn")
    other = small_cnn(num_classes=5)
    with pytest.raises(ValueError, match=r"param/7/W has shape \(144, 10\) in the file but \(144, 5\)"):
        load_weights(other, tmp_path / "m.nbcnn")


def test_a_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.nbcnn"
    small_cnn(seed=1).save(path)
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        small_cnn(seed=2).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.nbcnn"]  # no temporary file left behind


def steps_to_accuracy(model, x, y, x_val, y_val, target, batch_size=32, max_steps=200):
    rng = np.random.default_rng(0)
    for step in range(1, max_steps + 1):
        idx = rng.choice(len(x), batch_size, replace=False)
        model.train_on_batch(x[idx], y[idx])
        if step % 5 == 0 and model.evaluate(x_val, y_val)[1] >= target:
            return step
    return max_steps + 1


def digit_net(num_classes, seed):
    """small_cnn with a 32-unit hidden layer: the features a new head is trained on."""
    return nbcnn.Sequential([
        L.Conv2D(8, 3, kernel_initializer="he_normal"), L.ReLU(), L.MaxPooling2D(2),
        L.Conv2D(16, 3, kernel_initializer="he_normal"), L.ReLU(), L.MaxPooling2D(2), L.Flatten(),
        L.Dense(32, activation="relu", kernel_initializer="he_normal"), L.Dense(num_classes, activation="softmax"),
    ], input_shape=(20, 20, 1), seed=seed)


def test_transfer_learning_needs_fewer_steps_than_training_from_scratch(digits):
    x_train, y_train, x_test, y_test = digits
    # 1. learn the ten digits on 3000 images
    base = digit_net(10, seed=0)
    base.compile(optim.Adam(0.003))
    base.fit(x_train[:3000], y_train[:3000], epochs=3, batch_size=32, verbose=False)
    # 2. a new task with little data: odd or even, from 60 other images
    new_x, new_y = x_train[3000:3060], y_train[3000:3060] % 2
    val_x, val_y = x_test, y_test % 2
    base.freeze(upto=len(base.layers) - 1)  # keep the learned features ...
    base.replace_head([L.Dense(2, activation="softmax")])  # ... and train only a new head
    base.compile(optim.Adam(0.01))
    assert base.count_params(trainable_only=True) == 32 * 2 + 2
    transfer_steps = steps_to_accuracy(base, new_x, new_y, val_x, val_y, target=0.85, batch_size=20, max_steps=150)
    scratch_steps = []
    for seed in (3, 4):
        scratch = digit_net(2, seed=seed)
        scratch.compile(optim.Adam(0.01))
        scratch_steps.append(steps_to_accuracy(scratch, new_x, new_y, val_x, val_y, target=0.85, batch_size=20,
                                               max_steps=150))
    assert transfer_steps <= 100, transfer_steps
    assert transfer_steps < min(scratch_steps), (transfer_steps, scratch_steps)


@pytest.mark.parametrize("backend_name", ["python", "cuda"])
def test_the_same_training_step_on_every_backend(backend_name, digits):
    """A few steps of a tiny model give the same weights on python and cuda (simulator) as on cpu."""
    x, y = digits[0][:8, 6:14, 6:14, :], digits[1][:8]  # 8x8 crops: tiny for the slow backends

    def run():
        model = nbcnn.Sequential([L.Conv2D(2, 3, kernel_initializer="he_normal"), L.ReLU(), L.MaxPooling2D(2),
                                  L.Flatten(), L.Dense(10, activation="softmax")], input_shape=(8, 8, 1), seed=0)
        model.compile(optim.SGD(0.1, momentum=0.9))
        history = model.fit(x, y, epochs=2, batch_size=4, verbose=False)
        return history["loss"], model.layers[0].params["W"], model.layers[-1].params["W"]

    reference = run()  # the autouse fixture runs this on cpu
    with nbcnn.use_backend(backend_name):
        other = run()
    np.testing.assert_allclose(other[0], reference[0], rtol=1e-4)
    for a, b in zip(other[1:], reference[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert reference[0][-1] < reference[0][0]


def test_fit_reports_progress_to_a_callback_and_prints_one_line_per_epoch(capsys):
    """fit draws nothing itself: a callback gets each epoch's start, every batch and its end."""
    x = np.random.default_rng(0).standard_normal((10, 5, 5, 1)).astype(np.float32)
    y = np.arange(10) % 2
    model = nbcnn.Sequential([L.Conv2D(2, 3), L.ReLU(), L.Flatten(), L.Dense(2)], input_shape=(5, 5, 1))
    model.compile(optim.SGD(0.1))
    model.fit(x, y, epochs=1, batch_size=4, verbose=False)  # an earlier run: epochs count on from it
    calls = []
    history = model.fit(x, y, epochs=2, batch_size=4, validation_data=(x, y), callback=calls.append)

    # 10 examples in batches of 4: 3 batches per epoch; per epoch a start, 3 batches and an end
    assert [(p.epoch, p.epochs, p.step, p.steps, p.record is not None) for p in calls] == [
        (e, 3, s, 3, end) for e in (2, 3) for s, end in ((0, False), (1, False), (2, False), (3, False), (3, True))]
    start, first, _, last, end = calls[:5]
    assert start.loss is None and start.accuracy is None
    assert first.loss > 0 and 0 <= first.accuracy <= 1
    assert end.record == {key: values[-2] for key, values in history.items()}  # epoch 2 of 3
    assert last.loss == pytest.approx(end.record["loss"]) and end.record["val_loss"] > 0

    lines = capsys.readouterr().out.splitlines()  # verbose=True (the default): a plain line per epoch
    assert [line.split(":")[0] for line in lines] == ["epoch 2", "epoch 3"]
    assert "val_accuracy" in lines[0] and "\r" not in "".join(lines)


def test_checkpoints_from_before_chain_was_named_sequential_still_load(tmp_path):
    """layers.Chain was called layers.Sequential; older checkpoints name it so in meta.json."""
    import json

    model = small_cnn(seed=5)
    model.save(tmp_path / "new.nbcnn")
    with np.load(tmp_path / "new.nbcnn") as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays["meta.json"].tobytes())
    assert meta["model"]["network"]["class"] == "Chain"
    meta["model"]["network"]["class"] = "Sequential"
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(tmp_path / "old.nbcnn", "wb") as f:  # a file object: savez would add ".npz" to a name
        np.savez(f, **arrays)
    old = nbcnn.load_model(tmp_path / "old.nbcnn")
    assert isinstance(old.network, L.Chain)
    x = np.random.default_rng(1).random((3, 20, 20, 1)).astype(np.float32)
    np.testing.assert_array_equal(old(x), model(x))
