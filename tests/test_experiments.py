"""`nbcnn train`, the confusion matrix, the learning-curve PNG and the depth experiment (short runs)."""

import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cli
from nbcnn import experiments, plot


def test_confusion_matrix_counts_true_against_predicted():
    counts = experiments.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    text = experiments.format_confusion(counts, ["a", "b", "c"])
    assert text.splitlines()[1].split() == ["a", "1", "1", "0"]


def test_train_command_reports_accuracy_confusion_and_curve(tmp_path):
    result = CliRunner().invoke(cli.main, ["train", "--backend", "cpu", "--epochs", "2", "--limit", "800", "--quiet",
                                           "--out", str(tmp_path), "--save", str(tmp_path / "lenet.nbcnn")])
    assert result.exit_code == 0, result.output
    assert "test accuracy:" in result.output
    accuracy = float(result.output.split("test accuracy:")[1].split("%")[0]) / 100
    assert accuracy > 0.6  # two epochs on 800 digits, far above chance (10%)
    assert "true \\ predicted" in result.output
    assert Image.open(tmp_path / "lenet5_digits_curve.png").size == (1000, 400)  # loss and accuracy panels
    assert Image.open(tmp_path / "lenet5_digits_confusion.png").size == (750, 650)
    assert f"confusion matrix: {tmp_path / 'lenet5_digits_confusion.png'}" in result.output
    assert (tmp_path / "lenet.nbcnn").exists()


def test_train_command_explains_missing_data(tmp_path):
    result = CliRunner().invoke(cli.main, ["train", "--dataset", "mnist", "--quiet"])
    assert result.exit_code != 0
    assert "--data DIR" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli.main, ["train", "--dataset", "fashion-mnist", "--data", str(tmp_path), "--quiet"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_train_command_refuses_an_unusable_out_folder_before_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the data was loaded: the --out check came too late")

    monkeypatch.setattr(experiments, "load_dataset", no_training)
    monkeypatch.setattr(experiments.data, "load_digits", no_training)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for experiment in ("lenet", "depth"):
        result = CliRunner().invoke(cli.main, ["train", "--experiment", experiment, "--quiet", "--out", str(a_file)])
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert "notes.txt" in result.output and "is a file" in result.output
    with pytest.raises(NotADirectoryError, match="notes.txt: it is a file"):
        experiments.train_lenet("digits", out_dir=a_file)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root may write anywhere: then there is nothing to refuse
        result = CliRunner().invoke(cli.main, ["train", "--quiet", "--out", str(locked)])
        assert result.exit_code != 0 and "not writable" in result.output, result.output


def test_depth_experiment_writes_curves(tmp_path, monkeypatch):
    drawn = []
    original = plot.depth_experiment
    monkeypatch.setattr(plot, "depth_experiment", lambda curves: drawn.append(original(curves)) or drawn[-1])
    curves, path = experiments.depth_experiment(depths=(1, 2), epochs=1, train_size=64, out_dir=str(tmp_path))
    assert set(curves) == {"plain 3 conv", "residual 3 conv", "plain 5 conv", "residual 5 conv"}
    assert all(0.0 <= e <= 1.0 for errors in curves.values() for e in errors)
    assert Image.open(path).size == (640, 400)
    lines = drawn[0].axes[0].get_lines()  # the PNG is nbcnn.plot's figure: one line per net
    assert [line.get_label() for line in lines] == list(curves)
    np.testing.assert_allclose(lines[0].get_ydata(), curves["plain 3 conv"])
