"""Record face-api's outputs on the shipped photos: tests/data/faceapi_oracle.json.

face-api (npm @vladmandic/face-api 1.7.15, MIT), running in node on tfjs's cpu backend, is
the oracle of nbcnn's face encoder (nbcnn.triplet.dlib_encoder) and tiny face detector
(nbcnn.triplet.face_detector). The tests read the recorded numbers and need neither node nor
face-api. To record again (a few seconds; see the top of tests/record_faceapi.js for the npm
setup):

    NODE_PATH=/tmp/faceapi_node/node_modules python tests/record_faceapi.py

What is recorded, with the pixels decoded here by Pillow and handed to node as raw RGB bytes
(so JPEG decoding and resampling are outside the comparison):

- ``photos``: for each shipped photo, the sha256 of its decoded pixels and the tiny face
  detector's boxes (x1, y1, x2, y2 in photo pixels) and scores at input size 416, score
  threshold 0.5 (face-api's NMS IoU threshold is 0.4);
- ``grid``: the detector's raw (1, 13, 13, 25) output for group.jpg zero-padded at the
  bottom/right to 416 x 416 (an input face-api neither pads nor resizes);
- ``descriptors``: the 128-d descriptor of a 150 x 150 face crop of each single-face photo,
  cut with nbcnn.triplet.face_crop.crop_face around face-api's own box; the crops are kept as
  PNG files in tests/data/faceapi_crops/ (the exact encoder inputs);
- ``synthetic``: the descriptor of a 150 x 150 pattern that the tests rebuild (``pattern``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nbcnn.triplet.face_crop import crop_face, read_photo  # noqa: E402

MODELS = ROOT / "nbcnn" / "assets" / "faceapi"
PHOTOS = {
    "obama": "nbcnn/assets/faces/obama.jpg",
    "obama2": "nbcnn/assets/faces/obama2.jpg",
    "obama3": "nbcnn/assets/faces/obama3.jpg",
    "biden": "nbcnn/assets/faces/biden.jpg",
    "grace_hopper": "nbcnn/assets/faces/grace_hopper.jpg",
    "astronaut": "nbcnn/assets/astronaut.jpg",
    "group": "nbcnn/assets/faces/group.jpg",
}
SINGLE_FACE = ["obama", "obama2", "obama3", "biden", "grace_hopper", "astronaut"]
INPUT_SIZE, SCORE_THRESHOLD, IOU_THRESHOLD = 416, 0.5, 0.4
GRID_PHOTO = "group"
OUT = ROOT / "tests" / "data" / "faceapi_oracle.json"
CROPS = ROOT / "tests" / "data" / "faceapi_crops"


def pattern() -> np.ndarray:
    """The synthetic 150 x 150 input: stripes in three directions, one per channel."""
    i, j, c = np.meshgrid(np.arange(150), np.arange(150), np.arange(3), indexing="ij")
    return ((i * 7 + j * 13 + c * 71) % 256).astype(np.uint8)


PATTERN_FORMULA = "x[i, j, c] = (7 i + 13 j + 71 c) mod 256, uint8, 150 x 150 x 3"


def pixels_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def run_node(inputs: list[dict], folder: Path) -> dict:
    """Write each input's pixels, run record_faceapi.js on them; its results by input name."""
    job = []
    for item in inputs:
        raw = folder / f"{item['name']}.rgb"
        raw.write_bytes(np.ascontiguousarray(item.pop("image"), dtype=np.uint8).tobytes())
        job.append({**item, "pixels": str(raw)})
    (folder / "job.json").write_text(json.dumps({"models": str(MODELS), "inputs": job}))
    script = Path(__file__).with_name("record_faceapi.js")
    subprocess.run(["node", str(script), str(folder / "job.json"), str(folder / "results.json")],
                   check=True, env=os.environ.copy())
    results = json.loads((folder / "results.json").read_text())
    return results, {r["name"]: r for r in results["results"]}


def main() -> None:
    photos = {name: read_photo(ROOT / path) for name, path in PHOTOS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # 1. the detector on every photo, and its raw grid on one 416 x 416 input
        grid_input = np.pad(photos[GRID_PHOTO], ((0, INPUT_SIZE - photos[GRID_PHOTO].shape[0]),
                                                 (0, INPUT_SIZE - photos[GRID_PHOTO].shape[1]), (0, 0)))
        inputs = [{"name": name, "image": image, "height": image.shape[0], "width": image.shape[1],
                   "task": "detect", "input_size": INPUT_SIZE, "score_threshold": SCORE_THRESHOLD}
                  for name, image in photos.items()]
        inputs.append({"name": "grid", "image": grid_input, "height": INPUT_SIZE, "width": INPUT_SIZE,
                       "task": "grid", "input_size": INPUT_SIZE})
        header, detected = run_node(inputs, folder)

        # 2. descriptors of 150 x 150 crops around face-api's own boxes, and of the pattern
        CROPS.mkdir(parents=True, exist_ok=True)
        crops = {}
        for name in SINGLE_FACE:
            boxes = detected[name]["boxes"]
            if len(boxes) != 1:
                raise SystemExit(f"{name}: face-api found {len(boxes)} faces, expected one")
            crops[name] = crop_face(photos[name], boxes[0])
            Image.fromarray(crops[name]).save(CROPS / f"{name}.png")
        inputs = [{"name": name, "image": chip, "height": 150, "width": 150, "task": "descriptor"}
                  for name, chip in crops.items()]
        inputs.append({"name": "synthetic", "image": pattern(), "height": 150, "width": 150,
                       "task": "descriptor"})
        _, described = run_node(inputs, folder)

    oracle = {
        "recorded_by": "tests/record_faceapi.py + tests/record_faceapi.js",
        "versions": header["versions"],
        "backend": header["backend"],
        "photos": {name: {"file": PHOTOS[name], "pixels_sha256": pixels_sha256(photos[name]),
                          "shape": list(photos[name].shape), "input_size": INPUT_SIZE,
                          "score_threshold": SCORE_THRESHOLD, "iou_threshold": IOU_THRESHOLD,
                          "boxes": detected[name]["boxes"], "scores": detected[name]["scores"]}
                   for name in PHOTOS},
        "grid": {"photo": GRID_PHOTO, "padded_to": [INPUT_SIZE, INPUT_SIZE], "input_size": INPUT_SIZE,
                 "shape": detected["grid"]["shape"], "values": detected["grid"]["values"]},
        "descriptors": {name: {"crop": f"tests/data/faceapi_crops/{name}.png", "photo": name,
                               "box": detected[name]["boxes"][0], "margin": 0.0, "resample": "bilinear",
                               "descriptor": described[name]["descriptor"]}
                        for name in SINGLE_FACE},
        "synthetic": {"pattern": PATTERN_FORMULA, "descriptor": described["synthetic"]["descriptor"]},
    }
    OUT.write_text(json.dumps(oracle, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)} and {len(crops)} crops in {CROPS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
