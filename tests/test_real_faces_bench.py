"""The real-faces row of `nbcnn bench --models`: its torch peer computes what face-api computes
(tests/data/faceapi_oracle.json), and the row's summary and text."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nbcnn.benchmark.real_faces import format_real_faces, summarise

ROOT = Path(__file__).resolve().parents[1]
ORACLE = json.loads((ROOT / "tests" / "data" / "faceapi_oracle.json").read_text())


def test_torch_peer_networks_match_face_api():
    torch = pytest.importorskip("torch")
    from nbcnn.benchmark.torch_faces import DlibResNet, torch_nms, torch_tiny_face_detector
    from nbcnn.triplet import dlib_encoder, face_detector
    from nbcnn.triplet.face_crop import read_photo
    from nbcnn.weights.tfjs import read_tfjs_model

    with torch.no_grad():  # scoped: torch code in later tests keeps its gradients
        encoder = DlibResNet(read_tfjs_model(dlib_encoder.shipped_manifest())).eval()
        chip = np.asarray(Image.open(ROOT / ORACLE["descriptors"]["obama"]["crop"]).convert("RGB"))
        e = encoder(torch.from_numpy(dlib_encoder.normalise(chip)).permute(0, 3, 1, 2)).numpy()[0]
        np.testing.assert_allclose(e, ORACLE["descriptors"]["obama"]["descriptor"], atol=1e-4, rtol=0)

        detector = torch_tiny_face_detector(read_tfjs_model(face_detector.shipped_manifest()))
        grid = ORACLE["grid"]
        photo = read_photo(ROOT / ORACLE["photos"][grid["photo"]]["file"])
        square = np.pad(photo, ((0, 416 - photo.shape[0]), (0, 416 - photo.shape[1]), (0, 0)))
        x = torch.from_numpy(face_detector.preprocess(square, 416)).permute(0, 3, 1, 2)
        got = detector(x).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got.reshape(-1), grid["values"], atol=1e-3, rtol=0)

        boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float64)
        assert torch_nms(boxes, torch.tensor([0.5, 0.9, 0.7], dtype=torch.float64), 0.4) == [1, 2]


def test_summary_keeps_the_best_round_and_the_ratio():
    def rec(best, faces=4, e=0.0):
        return {"faces": faces, "best_s": best, "median_s": best * 1.5, "faces_per_s": faces / best,
                "faces_per_s_median": faces / (best * 1.5), "threads": 2, "embeddings": [[e] * 3] * faces,
                "boxes": [[0, 0, 1, 1]] * faces}

    r = summarise([{"nbcnn": rec(0.30), "torch": rec(0.40)}, {"nbcnn": rec(0.25, e=1e-6), "torch": rec(0.50)}])
    assert r["nbcnn"]["best_s"] == 0.25 and r["torch"]["best_s"] == 0.40
    assert r["vs_torch"] == pytest.approx(0.40 / 0.25)
    assert r["max_abs_diff_embeddings"] == pytest.approx(1e-6)
    assert "embeddings" not in r["nbcnn"]
    text = "\n".join(format_real_faces(r))
    assert "nbcnn's speed over torch's: 1.60x" in text and "16.0" in text
    assert "vs_torch" not in summarise([{"nbcnn": rec(0.3)}])
