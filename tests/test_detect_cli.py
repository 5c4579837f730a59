"""`nbcnn detect` as a group: plain use still runs the detector; `data` and `eval` subcommands."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from nbcnn.detection.dataset import read_yolo_folder
from nbcnn.detection.metrics import write_coco_predictions
from nbcnn.detection.scenes import make_split

ROOT = Path(__file__).resolve().parents[1]


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_help_lists_the_subcommands():
    result = _invoke("detect", "--help")
    assert result.exit_code == 0, result.output
    for name in ("run", "data", "eval"):
        assert f"  {name}" in result.output


@pytest.mark.parametrize("first", ["photo", "--conf"])
def test_plain_use_goes_to_run(tmp_path, monkeypatch, first):
    # no weights in an empty cache: reaching `run` is proven by its message naming the command
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path / "empty"))
    dog = ROOT / "nbcnn/assets/dog.jpg"
    args = [dog, "-o", tmp_path] if first == "photo" else ["--conf", "0.5", dog, "-o", tmp_path]
    result = _invoke("detect", *args)
    assert result.exit_code != 0
    assert "nbcnn weights yolov3-tiny" in result.output
    assert "No such command" not in result.output


def test_data_writes_a_yolo_folder_and_coco(tmp_path):
    out = tmp_path / "set"
    result = _invoke("detect", "data", "--out", out, "--n", 6, "--split", "test", "--size", 64,
                     "--max-object", 32, "--coco")
    assert result.exit_code == 0, result.output
    assert "wrote 6 images" in result.output and "seed 2" in result.output
    scenes = read_yolo_folder(out)
    expected = make_split("test", 6, size=64, max_object=32)        # the documented seed of test
    assert len(scenes) == 6
    for a, b in zip(scenes.boxes, expected.boxes):
        np.testing.assert_allclose(a, b, atol=1e-6)
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 6


def _folder_and_perfect_predictions(tmp_path):
    out = tmp_path / "set"
    assert _invoke("detect", "data", "--out", out, "--n", 8, "--size", 64, "--max-object", 32).exit_code == 0
    scenes = read_yolo_folder(out)
    perfect = [(scenes.boxes_xyxy(i), np.full(len(scenes.boxes[i]), 0.9), scenes.classes[i])
               for i in range(len(scenes))]
    write_coco_predictions(perfect, (64, 64), tmp_path / "dt.json")
    return out, scenes


def test_eval_predictions_on_a_folder(tmp_path):
    out, scenes = _folder_and_perfect_predictions(tmp_path)
    result = _invoke("detect", "eval", "--predictions", tmp_path / "dt.json", "--data", out,
                     "--pr-curve", tmp_path / "pr.png")
    assert result.exit_code == 0, result.output
    assert "mAP@0.5 = 1.000   mAP@0.5:0.95 = 1.000" in result.output
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"
    result = _invoke("detect", "eval", "--predictions", tmp_path / "dt.json", "--data", out, "--json", "--voc")
    report = json.loads(result.output)
    assert report["interpolation"] == "voc" and report["mAP50"] == 1.0
    assert sum(c["ground_truth"] for c in report["classes"]) == sum(len(b) for b in scenes.boxes)


def test_eval_with_a_model(tmp_path, monkeypatch):
    """The model path: a stand-in for the trained detector's loader, returning boxes shifted
    by a quarter of their width (IoU 0.6: a hit at 0.5, a miss from 0.65 on)."""
    import nbcnn.detection.detector as detector_module

    class Shifted:
        class_names = [str(d) for d in range(10)]

        def __init__(self, scenes):
            self.scenes = scenes

        def predict_boxes(self, images, conf=0.01):
            out = []
            for image in images:
                i = next(j for j in range(len(self.scenes)) if np.array_equal(self.scenes.images[j], image))
                b = self.scenes.boxes_xyxy(i).astype(np.float64)
                w = b[:, 2] - b[:, 0]
                b[:, 0] += w / 4
                b[:, 2] += w / 4
                out.append((b, np.full(len(b), 0.8), self.scenes.classes[i]))
            return out

    scenes = make_split("test", 10, size=64)      # what --synthetic digits --n 10 --size 64 makes
    monkeypatch.setattr(detector_module, "load_detector", lambda path: Shifted(scenes))
    checkpoint = tmp_path / "model.nbcnn"
    checkpoint.write_bytes(b"stand-in")
    result = _invoke("detect", "eval", checkpoint, "--synthetic", "digits", "--n", 10, "--size", 64,
                     "--json", "--save-predictions", tmp_path / "dt.json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["mAP50"] == 1.0
    # IoU of a box with its copy moved by w/4: (3/4) / (5/4) = 0.6 -> hits at 0.50, 0.55, 0.60 only
    assert report["mAP50_95"] == pytest.approx(0.3)
    assert len(json.loads((tmp_path / "dt.json").read_text())) == sum(len(b) for b in scenes.boxes)


def test_eval_reports_bad_labels_and_bad_usage(tmp_path):
    out, _ = _folder_and_perfect_predictions(tmp_path)
    (out / "labels" / "00003.txt").write_text("1 0.5 0.5 0.1\n")
    result = _invoke("detect", "eval", "--predictions", tmp_path / "dt.json", "--data", out)
    assert result.exit_code != 0 and "00003.txt:1: expected 5 fields" in result.output
    result = _invoke("detect", "eval", "--data", out)
    assert result.exit_code != 0 and "MODEL_PATH or --predictions" in result.output
    result = _invoke("detect", "eval", "--predictions", tmp_path / "dt.json", "--data", out, "--synthetic", "digits")
    assert result.exit_code != 0 and "not both" in result.output
