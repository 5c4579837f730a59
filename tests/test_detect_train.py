"""`nbcnn detect train` (the three steps, checkpoints, eval of what it saved) and the frozen
YOLOv3-tiny backbone of transfer learning (skipped when the weights are not in the cache)."""


import numpy as np
import pytest
from click.testing import CliRunner

import cli
import nbcnn
from nbcnn.detection.detector import load_detector


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_train_yolo_then_resume_then_eval(tmp_path):
    out = tmp_path / "d.nbcnn"
    common = ["detect", "train", "--n", 16, "--size", 32, "--batch-size", 8, "--out", out, "--backend", "cpu"]
    result = _invoke(*common, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert "epoch 1/1: coord" in result.output and "val_map50" in result.output and out.exists()
    result = _invoke(*common, "--epochs", 2, "--resume")
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "epoch 1/" not in result.output
    det = load_detector(out)
    assert det.epochs_done == 2 and det.kind == "yolo" and len(det.anchors) == 3
    result = _invoke("detect", "eval", out, "--n", 4, "--size", 64, "--backend", "cpu")  # resized to 32 inside
    assert result.exit_code == 0, result.output
    assert "mAP@0.5" in result.output


def test_train_localization_writes_its_picture(tmp_path):
    out, picture = tmp_path / "l.nbcnn", tmp_path / "step1.png"
    result = _invoke("detect", "train", "--step", "localization", "--n", 8, "--epochs", 1, "--size", 32,
                     "--out", out, "--picture", picture, "--backend", "cpu")
    assert result.exit_code == 0, result.output
    assert "presence_accuracy" in result.output and "mean_iou" in result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_combinations_are_refused(tmp_path):
    result = _invoke("detect", "train", "--step", "landmarks", "--resume")
    assert result.exit_code != 0 and "--step yolo" in result.output
    result = _invoke("detect", "train", "--out", tmp_path / "none.nbcnn", "--resume", "--backend", "cpu")
    assert result.exit_code != 0 and "does not exist" in result.output


def test_missing_weights_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "empty"))
    result = _invoke("detect", "train", "--from", "yolov3-tiny", "--n", 8, "--size", 32, "--epochs", 1,
                     "--out", tmp_path / "t.nbcnn", "--backend", "cpu")
    assert result.exit_code != 0 and "nbcnn weights yolov3-tiny" in result.output


def test_frozen_backbone_trains_only_the_head(tmp_path):
    try:
        from nbcnn.weights.cache import find

        find("yolov3-tiny")
    except FileNotFoundError:
        pytest.skip("YOLOv3-tiny weights not in the cache (nbcnn weights yolov3-tiny)")
    from nbcnn.detection.transfer import FrozenFeatures, transfer_yolo

    with nbcnn.use_backend("cpu"):
        det = transfer_yolo("yolov3-tiny", ["a", "b"], [[0.2, 0.2], [0.4, 0.4]], size=32)
        assert isinstance(det.layers[0], FrozenFeatures) and det.output_shape == (2, 2, 14)
        frozen = {k: v.copy() for _, l in det.layers[0].named_layers() for k, v in l.params.items()}
        trainable = {p for p, _, _ in det.network.parameters()}
        assert trainable and all(not p.startswith("0") for p in trainable)  # only the new head's
        x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
        det.compile(nbcnn.optim.Adam(1e-2))
        out = det.forward(x, training=True)
        det.layers[0].need_input_grad = False
        det.backward(np.ones_like(np.asarray(out)))
        det.optimizer.step(det.network.parameters())
        after = {k: v for _, l in det.layers[0].named_layers() for k, v in l.params.items()}
        assert all(np.array_equal(frozen[k], after[k]) for k in frozen)
        path = tmp_path / "t.nbcnn"
        det.save(path)
        back = load_detector(path)
        assert not back.layers[0].trainable
        np.testing.assert_array_equal(back.predict(x), det.predict(x))
