"""Bad or hostile use of the model API, checkpoints, images and the CLI gives a clear error,
never garbage, a crash deep inside numpy/zipfile, or a NaN model that still "trains".

Each test here failed before its fix (found by fuzzing the public API; see the hardening
issue). Anything that could exhaust memory runs in a child process with a memory limit.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cli
import nbcnn
from nbcnn import checkpoint, layers as L, optim
from nbcnn.images import load_image, save_image
from nbcnn.train import NotFiniteError


@pytest.fixture(autouse=True)
def on_cpu():
    with nbcnn.use_backend("cpu"):
        yield


def run_child(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def tiny_cnn(seed=0, classes=3):
    return nbcnn.Sequential([L.Conv2D(2, 3, name="conv"), L.ReLU(), L.Flatten(),
                             L.Dense(classes, activation="softmax", name="head")], input_shape=(5, 5, 1), seed=seed)


def data(n=8, classes=3):
    x = np.random.default_rng(0).random((n, 5, 5, 1)).astype(np.float32)
    return x, np.arange(n) % classes


def weights(model):
    return {f"{p}/{k}": layer.params[k].copy() for p, layer in model.network.named_layers() for k in layer.params}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --------------------------------------------------------------------------- A. NaN in training


def test_a_nan_pixel_in_the_training_data_is_refused_before_any_step():
    """One NaN pixel made every conv weight NaN while the loss stayed finite."""
    model, (x, y) = tiny_cnn(), data()
    model.compile("adam")
    x[3, 1, 2, 0] = np.nan
    before = weights(model)
    with pytest.raises(ValueError, match=r"x\[3, 1, 2, 0\].*terminate_on_nan=False"):
        model.fit(x, y, epochs=1, batch_size=4, verbose=False)
    assert_same_weights(weights(model), before)


def _poison_gradient_on_call(layer, call):
    """Make ``layer``'s gradient of W NaN on its ``call``-th backward (the loss stays finite)."""
    backward, calls = layer.backward, [0]

    def poisoned(dy):
        dx = backward(dy)
        calls[0] += 1
        if calls[0] == call:
            layer.grads["W"] = layer.grads["W"].copy()
            layer.grads["W"].flat[0] = np.nan
        return dx

    layer.backward = poisoned


def test_a_nan_gradient_stops_fit_naming_epoch_batch_and_parameter():
    model, (x, y) = tiny_cnn(), data()
    model.compile("adam")
    _poison_gradient_on_call(model.layers[0], call=3)  # epoch 2, batch 1 (2 batches an epoch)
    model.fit(x, y, epochs=1, batch_size=4, verbose=False)
    after_epoch_1 = weights(model)
    with pytest.raises(NotFiniteError, match=r"epoch 2, batch 1 of 2: the gradient of 0/W \(Conv2D 'conv'\)") as info:
        model.fit(x, y, epochs=3, batch_size=4, verbose=False)
    assert isinstance(info.value, FloatingPointError)
    assert (info.value.epoch, info.value.batch) == (2, 1)
    assert_same_weights(weights(model), after_epoch_1)  # the optimizer did not step on the bad batch
    assert model.epochs_done == 1


def test_terminate_on_nan_false_trains_on():
    model, (x, y) = tiny_cnn(), data()
    model.compile("adam")
    _poison_gradient_on_call(model.layers[0], call=1)
    model.fit(x, y, epochs=1, batch_size=4, verbose=False, terminate_on_nan=False)
    assert np.isnan(model.layers[0].params["W"]).any()


def test_nan_made_by_the_augmentation_stops_fit():
    """NaN that appears after the up-front data check (here: from augment) is caught by the
    per-batch check, whether relu passes the NaN on to the loss or not."""
    model, (x, y) = tiny_cnn(), data()
    model.compile("adam")

    def augment(xb, rng):
        xb = xb.copy()
        xb[0, 0, 0, 0] = np.nan
        return xb

    before = weights(model)
    with pytest.raises(NotFiniteError, match=r"epoch 1, batch 1 of 2: the (loss|gradient of 0/W)"):
        model.fit(x, y, epochs=1, batch_size=4, verbose=False, augment=augment)
    assert_same_weights(weights(model), before)


def test_a_diverging_learning_rate_stops_fit_with_finite_weights_named():
    model, (x, y) = tiny_cnn(), data()
    model.compile(optim.SGD(1e36))
    with pytest.raises(NotFiniteError, match=r"epoch \d+, batch \d+ of 2"):
        model.fit(x, y, epochs=5, batch_size=4, verbose=False)


# --------------------------------------------------------------------------- B. model API arguments


@pytest.mark.parametrize("call, error, words", [
    (lambda m, x, y: m.evaluate(x, y, batch_size=-1), ValueError, "batch_size must be >= 1"),
    (lambda m, x, y: m.evaluate(x, y[:5]), ValueError, "x has 8 examples but y has 5 labels"),
    (lambda m, x, y: m.fit(x, y[:5], verbose=False), ValueError, "x has 8 examples but y has 5 labels"),
    (lambda m, x, y: m.fit(x[:0], y[:0], verbose=False), ValueError, "x holds no examples"),
    (lambda m, x, y: m.evaluate(x[:0], y[:0]), ValueError, "x holds no examples"),
    (lambda m, x, y: m.predict(x[:0]), ValueError, "x holds no examples"),
    (lambda m, x, y: m.predict(x, batch_size=0), ValueError, "batch_size must be >= 1"),
    (lambda m, x, y: m.predict(None), TypeError, "x must be an array"),
    (lambda m, x, y: m.fit(x, np.full(8, np.nan), verbose=False), ValueError, "y[0] = nan"),
    (lambda m, x, y: m.fit(x, np.full(8, 1.5), verbose=False), ValueError, "whole class numbers"),
    (lambda m, x, y: m.evaluate(x, np.full(8, 3)), ValueError, "class numbers in [0, 3), got y[0] = 3"),
    (lambda m, x, y: m.fit(x, np.full((8, 3), 1 / 3), verbose=False), ValueError, "one-hot rows"),
    (lambda m, x, y: m.fit(x, y, epochs=-3, verbose=False), ValueError, "epochs must be >= 0"),
    (lambda m, x, y: m.fit(x, y, epochs=2.0, verbose=False), TypeError, "epochs must be an int"),
    (lambda m, x, y: m.fit(x, y, batch_size=0, verbose=False), ValueError, "batch_size must be >= 1"),
    (lambda m, x, y: m.fit(x, y, validation_data=(x, y[:2]), verbose=False), ValueError,
     "x_val has 8 examples but y_val has 2 labels"),
    (lambda m, x, y: m.fit(x, y, validation_data=x, verbose=False), TypeError, "validation_data must be a pair"),
    (lambda m, x, y: m.train_on_batch(x, np.full(8, -1)), ValueError, "got y[0] = -1"),
])
def test_fit_evaluate_predict_refuse_bad_arguments_by_name(call, error, words):
    model, (x, y) = tiny_cnn(), data()
    model.compile("adam")
    before = weights(model)
    with pytest.raises(error) as info:
        call(model, x, y)
    assert words in str(info.value)
    assert_same_weights(weights(model), before)
    assert model.history == {}  # nothing ran: checked before the first batch


def test_one_hot_rows_train_like_class_numbers_and_probabilities_are_refused():
    """The loss takes hard labels: probability rows were silently reduced to their argmax."""
    (x, y) = data()
    a, b = tiny_cnn(), tiny_cnn()
    a.compile("adam"), b.compile("adam")
    a.fit(x, y, epochs=2, batch_size=4, verbose=False)
    b.fit(x, np.eye(3)[y], epochs=2, batch_size=4, verbose=False)
    assert_same_weights(weights(a), weights(b))
    assert b.evaluate(x, np.eye(3)[y]) == a.evaluate(x, y.astype(np.float64))
    soft = np.full((8, 3), 0.1)
    soft[np.arange(8), y] = 0.8
    with pytest.raises(ValueError, match=r"y must hold one-hot rows .* y\[0\] = \[0.8 0.1 0.1\]"):
        b.fit(x, soft, epochs=1, verbose=False)


@pytest.mark.parametrize("make, error, words", [
    (lambda: L.Conv2D(4, 0), ValueError, "Conv2D kernel_size must be >= 1"),
    (lambda: L.Conv2D(-2, 3), ValueError, "Conv2D filters must be >= 1"),
    (lambda: L.Conv2D(2.5, 3), TypeError, "Conv2D filters must be an int"),
    (lambda: L.Conv2D(4, 3, strides=0), ValueError, "Conv2D strides must be >= 1"),
    (lambda: L.Conv2D(4, 3, kernel_initializer="zeros"), ValueError, "unknown initialiser"),
    (lambda: L.MaxPooling2D(0), ValueError, "MaxPooling2D pool_size must be >= 1"),
    (lambda: L.Dense(0), ValueError, "Dense units must be >= 1"),
    (lambda: L.Dense(True), TypeError, "Dense units must be an int"),
    (lambda: L.BatchNormalization(epsilon=-1), ValueError, "BatchNormalization epsilon"),
    (lambda: L.BatchNormalization(epsilon=float("nan")), ValueError, "BatchNormalization epsilon"),
    (lambda: L.BatchNormalization(momentum=2), ValueError, "BatchNormalization momentum"),
    (lambda: L.Dropout(float("nan")), ValueError, "Dropout rate"),
])
def test_layer_constructors_refuse_bad_arguments_by_name(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_numpy_integers_are_ints_for_layer_arguments():
    conv = L.Conv2D(np.int64(4), np.int64(3), strides=np.int32(1))
    pool = L.MaxPooling2D(np.int64(2))
    model = nbcnn.Sequential([conv, pool, L.Flatten(), L.Dense(np.int16(2))], input_shape=(6, 6, 1))
    assert conv.kernel_size == (3, 3) and pool.pool_size == (2, 2) and model.output_shape == (2,)
    # and the saved config is plain JSON numbers
    assert json.loads(json.dumps(model.get_config()))["network"]["config"]["layers"][0]["config"]["filters"] == 4


@pytest.mark.parametrize("layer, words", [
    (L.Conv2D(4, 7, name="big"), "Conv2D 'big': its 7x7 window is larger than its input 5x5"),
    (L.MaxPooling2D(6), "MaxPooling2D: its 6x6 window is larger than its input 5x5"),
    (L.Conv2D(4, (1, 9), padding=1), "window is larger than its input 5x5 (padded 7x7"),
])
def test_a_window_larger_than_its_input_is_refused_when_building(layer, words):
    """It built a model with output shape (-2, -2, 4)."""
    with pytest.raises(ValueError) as info:
        nbcnn.Sequential([layer], input_shape=(5, 5, 1))
    assert words in str(info.value)
    model = nbcnn.Model([L.Conv2D(4, 7)])
    with pytest.raises(ValueError):
        model.build((5, 5, 1))
    assert model.input_shape is None  # not left half built


@pytest.mark.parametrize("layer", [L.Conv2D(2, 3), L.Dense(2), L.MaxPooling2D(2), L.AveragePooling2D(2),
                                   L.Flatten(), L.ReLU(), L.BatchNormalization(), L.Dropout(0.5),
                                   L.GlobalAveragePooling2D()])
def test_backward_before_forward_says_so(layer):
    with pytest.raises(RuntimeError, match=r"backward needs what its forward keeps.*call forward"):
        layer.backward(np.ones((1, 2), np.float32))


def test_backward_before_forward_through_a_model():
    model = nbcnn.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(3, name="head")], input_shape=(5, 5, 1))
    with pytest.raises(RuntimeError, match="Dense 'head'.backward needs"):
        model.backward(np.ones((1, 3), np.float32))
    assert getattr(model.layers[0], "_argmax", "default") == "default"  # other attributes: plain AttributeError


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def test_nbcnn_train_on_an_idx_file_of_0_images_is_a_clean_error(tmp_path):
    """It ended in ZeroDivisionError after loading."""
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    result = CliRunner().invoke(cli.main, ["train", "--dataset", "mnist", "--data", str(tmp_path), "--quiet",
                                           "--out", str(tmp_path / "out"), "--backend", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "train-images-idx3-ubyte: holds no images" in result.output


# --------------------------------------------------------------------------- C. checkpoints


def small_checkpoint(tmp_path, name="m.nbcnn"):
    model = nbcnn.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(2)], input_shape=(4, 4, 1), seed=0)
    model.compile("adam")
    x = np.random.default_rng(0).random((4, 4, 4, 1)).astype(np.float32)
    model.fit(x, [0, 1, 0, 1], epochs=1, batch_size=4, verbose=False)
    path = tmp_path / name
    model.save(path)
    return model, path, x


def _zip_header_fields(blob: bytes) -> list[int]:
    """Offsets of the general-purpose flags and compression method of every zip header
    (local and central): flipping their bits made zipfile raise RuntimeError ("password
    required") and NotImplementedError instead of a ValueError."""
    offsets = []
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = blob.find(signature)
        while start != -1:
            offsets += [start + flags_at, start + flags_at + 1, start + flags_at + 2, start + flags_at + 3]
            start = blob.find(signature, start + 1)
    return offsets


def test_fuzz_every_byte_of_a_checkpoint_loads_the_same_model_or_raises_value_error(tmp_path):
    model, path, x = small_checkpoint(tmp_path)
    expected = model.predict(x)
    blob = path.read_bytes()
    rng = np.random.default_rng(0)
    # every bit of the zip headers' flags and compression methods, and 800 seeded random changes
    # (every byte of the ~5 kB file, each changed once, takes 5 s and found nothing more)
    cases = [(pos, 1 << bit) for pos in _zip_header_fields(blob) for bit in range(8)]
    cases += [(int(pos), int(rng.integers(1, 256))) for pos in rng.choice(len(blob), 800, replace=False)]
    bad = tmp_path / "bad.nbcnn"
    wrong, loaded = [], 0
    for pos, flip in cases:
        corrupt = bytearray(blob)
        corrupt[pos] ^= flip
        bad.write_bytes(bytes(corrupt))
        try:
            again = nbcnn.load_model(bad)
        except ValueError as exc:
            assert "bad.nbcnn" in str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            wrong.append((pos, flip, f"{type(exc).__name__}: {exc}"[:100]))
            continue
        loaded += 1  # the corruption hit something irrelevant: the model must be the saved one
        np.testing.assert_array_equal(again.predict(x), expected, err_msg=f"byte {pos} ^ {flip}")
    assert not wrong, f"{len(wrong)} corruptions raised something else than ValueError, e.g. {wrong[:5]}"
    assert loaded < len(cases) // 2  # the zip's CRCs catch nearly every change


def _rewrite(path, out, edit_meta=None, edit_arrays=None):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["meta.json"].tobytes())
    if edit_meta is not None:
        meta = edit_meta(meta) or meta
    if edit_arrays is not None:
        edit_arrays(arrays)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(out, **arrays)
    return out


def _set(d, keys, value):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _layer0(meta):
    return meta["model"]["network"]["config"]["layers"][0]["config"]


@pytest.mark.parametrize("edit, words", [
    (lambda m: [m], "not an object"),
    (lambda m: m.pop("model") and None, "model must be an object"),
    (lambda m: _set(m, ["model", "network"], 5), "model.network must be a layer config"),
    (lambda m: _set(m, ["model", "input_shape"], [4, 4]), "cannot rebuild the saved architecture"),
    (lambda m: _set(m, ["model", "input_shape"], "44"), "model.input_shape must be"),
    (lambda m: _set(m, ["model", "network", "config", "layers"], [1, 2]), "cannot rebuild the saved architecture"),
    (lambda m: _layer0(m).update(filters=-1), "Conv2D filters must be >= 1"),
    (lambda m: _layer0(m).update(colour="red"), "cannot rebuild the saved architecture"),
    (lambda m: _set(m, ["trainable"], [True]), "trainable must be"),
    (lambda m: _set(m, ["trainable", "7"], True), "trainable names layer '7'"),
    (lambda m: _set(m, ["rng"], {"0": {"state": 1}}), "rng names layer '0'"),
    (lambda m: _set(m, ["epochs_done"], "3"), "epochs_done must be an int"),
    (lambda m: _set(m, ["history"], [1.0]), "history must be"),
    (lambda m: _set(m, ["optimizer"], {"class": "Adam", "config": {"speed": 1}}), "cannot rebuild the optimizer"),
    (lambda m: _set(m, ["optimizer"], "adam"), "optimizer must be"),
    (lambda m: _set(m, ["loss"], "mse"), "cannot rebuild the optimizer or loss"),
    (lambda m: _set(m, ["version"], None), "checkpoint version None"),
])
def test_edited_metadata_is_a_value_error_naming_the_file(tmp_path, edit, words):
    """TypeError, AttributeError and KeyError came out of these."""
    _, path, _ = small_checkpoint(tmp_path)
    bad = _rewrite(path, tmp_path / "edited.npz", edit_meta=edit)
    with pytest.raises(ValueError) as info:
        nbcnn.load_model(bad)
    assert "edited.npz" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("edit, words", [
    (lambda a: a.update({"opt/0/W/m": np.zeros((3, 3, 1, 3), np.float32)}),
     "optimizer state opt/0/W/m has shape (3, 3, 1, 3) and dtype float32, but parameter 0/W has shape (3, 3, 1, 2)"),
    (lambda a: a.update({"opt/2/W/v": a["opt/2/W/v"].astype(np.float64)}), "parameter 2/W has shape"),
    (lambda a: a.update({"opt/9/W/m": np.zeros(3, np.float32)}), "opt/9/W/m belongs to no parameter"),
    (lambda a: a.update({"opt_iterations": np.array([1, 2])}), "opt_iterations must be one integer"),
    (lambda a: a.update({"param/0/W": np.array(["a"] * 18).reshape(3, 3, 1, 2)}), "param/0/W holds <U1 values"),
])
def test_optimizer_state_that_does_not_fit_the_model_is_refused_at_load(tmp_path, edit, words):
    """It loaded, and the optimizer refused it only at its first step (or wrote out of bounds)."""
    _, path, _ = small_checkpoint(tmp_path)
    bad = _rewrite(path, tmp_path / "edited.npz", edit_arrays=edit)
    with pytest.raises(ValueError) as info:
        nbcnn.load_model(bad)
    assert "edited.npz" in str(info.value) and words in str(info.value)


def test_foreign_zips_and_npy_files_are_value_errors(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"one.npy is not an nbcnn checkpoint: it is a single numpy array"):
        nbcnn.load_model(tmp_path / "one.npy")
    with zipfile.ZipFile(tmp_path / "text.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"text.zip is not an nbcnn checkpoint: its member 'readme.txt'"):
        nbcnn.load_model(tmp_path / "text.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(ValueError, match=r"empty.zip is not an nbcnn checkpoint: it has no meta.json"):
        nbcnn.load_model(tmp_path / "empty.zip")
    np.savez(tmp_path / "meta.npz", **{"meta.json": np.zeros(3)})
    with pytest.raises(ValueError, match=r"meta.npz: its meta.json is corrupt"):
        nbcnn.load_model(tmp_path / "meta.npz")


def test_a_killed_save_leaves_a_partial_file_that_the_next_save_removes(tmp_path):
    target = tmp_path / "m.nbcnn"
    child = run_child(f"""
        import os, signal, numpy as np, nbcnn
        model = nbcnn.Sequential([nbcnn.Flatten(), nbcnn.Dense(2)], input_shape=(2, 2, 1))
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = killed
        model.save({str(target)!r})
    """)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".m.nbcnn.") and "partial" in left[0], left
    # a partial file of a process that still runs (this one) may be a save in progress: kept
    alive = tmp_path / f".m.nbcnn{checkpoint.PARTIAL}{socket.gethostname()}-{os.getpid()}-0000"
    alive.write_bytes(b"")
    (tmp_path / f".other.nbcnn{checkpoint.PARTIAL}{socket.gethostname()}-999999999-0000").write_bytes(b"")
    tiny_cnn().save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "m.nbcnn", alive.name, f".other.nbcnn{checkpoint.PARTIAL}{socket.gethostname()}-999999999-0000"])
    nbcnn.load_model(target)
    # a save that is interrupted (not killed) removes its own partial file
    alive.unlink()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np, "savez", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            tiny_cnn().save(target)
    assert sorted(p.name for p in tmp_path.iterdir() if "m.nbcnn" in p.name) == ["m.nbcnn"]


def test_save_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as info:
        tiny_cnn().save(tmp_path / "nodir" / "m.nbcnn")
    assert "m.nbcnn" in str(info.value) and "nodir does not exist" in str(info.value)
    assert "partial" not in str(info.value) and ".tmp" not in str(info.value)

    def refused(src, dst):
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError) as info:
        tiny_cnn().save(tmp_path / "m.nbcnn")
    assert str(info.value) == f"cannot save {tmp_path / 'm.nbcnn'}: Permission denied"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_saved_file_has_the_mode_of_any_new_file(tmp_path, umask, mode):
    """mkstemp made every checkpoint 0600."""
    old = os.umask(umask)
    try:
        tiny_cnn().save(tmp_path / "m.nbcnn")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.nbcnn").st_mode & 0o777 == mode


def test_saving_over_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.nbcnn"
    tiny_cnn().save(path)
    os.chmod(path, 0o640)
    tiny_cnn(seed=1).save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_saving_to_a_symlink_writes_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.nbcnn"
    tiny_cnn(seed=0).save(target)
    link = tmp_path / "link.nbcnn"
    link.symlink_to(target)
    model = tiny_cnn(seed=5)
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    x, _ = data()
    np.testing.assert_array_equal(nbcnn.load_model(target).predict(x), model.predict(x))
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["m.nbcnn"]


def test_save_and_load_take_str_bytes_and_pathlike(tmp_path):
    model = tiny_cnn()
    model.save(os.fsencode(tmp_path / "b.nbcnn"))
    model.save(tmp_path / "p.nbcnn")
    x, _ = data()
    for path in (os.fsencode(tmp_path / "b.nbcnn"), str(tmp_path / "p.nbcnn")):
        np.testing.assert_array_equal(nbcnn.load_model(path).predict(x), model.predict(x))
    with pytest.raises(TypeError, match="str, bytes or os.PathLike"):
        model.save(3)


def test_nbcnn_train_checks_the_save_folder_before_training(tmp_path):
    result = CliRunner().invoke(cli.main, ["train", "--limit", "16", "--epochs", "1", "--quiet", "--backend", "cpu",
                                           "--out", str(tmp_path / "out"),
                                           "--save", str(tmp_path / "nodir" / "m.nbcnn")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "--save: cannot save" in result.output and "does not exist" in result.output
    assert not (tmp_path / "out").exists()  # no training happened (it writes its curve there)


# --------------------------------------------------------------------------- D. images and the CLI


def test_save_image_takes_lists_and_refuses_none_clearly(tmp_path):
    """Both said "doesn't implement the cuda array interface"."""
    save_image(tmp_path / "l.png", [[0.0, 1.0]])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), [[0, 255]])
    with pytest.raises(TypeError, match=r"save_image\(.*n.png\): expected an array of pixel values, got NoneType"):
        save_image(tmp_path / "n.png", None)
    with pytest.raises(TypeError, match="cannot read the pixels as an array"):
        save_image(tmp_path / "r.png", [[0.0, 1.0], [0.5]])


def test_a_float_tiff_with_nan_and_inf_loads_as_numbers_in_0_1(tmp_path):
    """NaN came back as NaN, though values are promised in [0, 1]."""
    pixels = np.array([[np.nan, 0.25, 2.0], [np.inf, -np.inf, -3.0]], np.float32)
    Image.fromarray(pixels, mode="F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    grey = load_image(tmp_path / "f.tif", grey=True)
    np.testing.assert_array_equal(grey[:, :, 0], [[0.0, 0.25, 1.0], [1.0, 0.0, 0.0]])
    assert load_image(tmp_path / "f.tif").shape == (2, 3, 3)


def test_huge_widths_are_refused_before_any_memory_is_taken(tmp_path):
    """`nbcnn edges --width 100000` ended in a MemoryError traceback: the child runs under a 6 GB
    address-space limit, so a regression fails here instead of swapping the machine."""
    child = run_child(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        from click.testing import CliRunner
        import cli
        from nbcnn.images import load_image, sample_image_path
        result = CliRunner().invoke(cli.main, ["edges", "--width", "100000", "--backend", "cpu",
                                               "--out", {str(tmp_path / "e.png")!r}])
        print("EXIT", result.exit_code, type(result.exception).__name__)
        print(result.output)
        try:
            load_image(sample_image_path(), width=100000)
        except ValueError as exc:
            print("REFUSED", exc)
    """)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "EXIT 2 SystemExit" in child.stdout and "4096" in child.stdout
    assert "REFUSED" in child.stdout and "MAX_PIXELS" in child.stdout
