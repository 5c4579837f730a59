"""Real faces per second: detect + crop + encode on one photo, nbcnn next to the same two
networks in PyTorch built from the same weights (``torch_faces``), for ``nbcnn bench --models``.

One run = the whole pipeline of ``nbcnn.triplet.face_pipeline.find_faces`` on the shipped
``group.jpg`` (400 x 400, four faces): face-api's preprocessing to 416 x 416, the tiny face
detector, decoding and NMS, four 150 x 150 crops, the dlib ResNet on the four crops at once.
faces per second = faces found / seconds per run. The torch side shares nbcnn's numpy / Pillow
steps (padding and resizing the photo, decoding the grid, cropping) and runs the two networks
and NMS in torch, so the ratio measures the networks.

Each side runs in its own process (``python -m nbcnn.benchmark.models --worker real_faces
--impl nbcnn|torch``), twice, alternating (nbcnn, torch, nbcnn, torch), so that a burst of load
from other jobs on a shared machine hits both; each process times ``repeat`` runs after a
warm-up and the best of all is kept. torch's embeddings are compared with nbcnn's first.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

from .timing import time_runs

PHOTO = ("assets", "faces", "group.jpg")
ROUNDS = 2


def _photo() -> np.ndarray:
    from ..triplet.face_crop import read_photo

    with resources.as_file(resources.files("nbcnn").joinpath(*PHOTO)) as path:
        return read_photo(path)


def _record(times, faces, embeddings, boxes, threads) -> dict:
    times = sorted(times)
    return {"faces": int(faces), "best_s": times[0], "median_s": times[len(times) // 2],
            "faces_per_s": faces / times[0], "faces_per_s_median": faces / times[len(times) // 2],
            "threads": int(threads), "embeddings": np.asarray(embeddings, np.float64).round(7).tolist(),
            "boxes": np.asarray(boxes, np.float64).round(4).tolist()}


def time_nbcnn_faces(repeat: int = 5, backend: str = "cpu") -> dict:
    """nbcnn: ``find_faces`` with the dlib encoder on group.jpg, ``repeat`` timed runs after one warm-up."""
    import numba

    import nbcnn
    from ..triplet.dlib_encoder import load_dlib_encoder
    from ..triplet.face_pipeline import find_faces

    nbcnn.set_backend(backend)
    photo, encoder = _photo(), load_dlib_encoder()
    faces = find_faces(photo, encoder)  # compiles the kernels (or loads them from Numba's cache)
    times = time_runs(lambda: find_faces(photo, encoder), repeat, warmup=0)
    return _record(times, len(faces), [f.embedding for f in faces], [f.box for f in faces], numba.get_num_threads())


def time_torch_faces(repeat: int = 5) -> dict:
    """The same pipeline with the two networks and NMS in torch (see the module docstring)."""
    import torch

    from ..triplet import dlib_encoder, face_detector
    from ..triplet.face_crop import crop_face
    from ..weights.tfjs import read_tfjs_model
    from .torch_faces import DlibResNet, torch_nms, torch_tiny_face_detector

    with resources.as_file(face_detector.shipped_manifest()) as path:
        detector = torch_tiny_face_detector(read_tfjs_model(path))
    with resources.as_file(dlib_encoder.shipped_manifest()) as path:
        encoder = DlibResNet(read_tfjs_model(path)).eval()
    photo = _photo()
    size = face_detector.DEFAULT_INPUT_SIZE

    def run():
        x = torch.from_numpy(face_detector.preprocess(photo, size)).permute(0, 3, 1, 2)
        grid = detector(x).permute(0, 2, 3, 1).numpy()
        boxes, scores = face_detector.decode_grid(grid, photo.shape, size, face_detector.SCORE_THRESHOLD)
        keep = torch_nms(torch.from_numpy(boxes), torch.from_numpy(scores), face_detector.IOU_THRESHOLD)
        boxes = boxes[keep]
        chips = np.stack([crop_face(photo, box) for box in boxes])
        e = encoder(torch.from_numpy(dlib_encoder.normalise(chips)).permute(0, 3, 1, 2))
        return boxes, e.numpy()

    # no autograd graph, as nbcnn builds none; scoped, so a caller's later torch code keeps its gradients
    with torch.no_grad():
        boxes, embeddings = run()
        times = time_runs(run, repeat, warmup=0)
    return _record(times, len(boxes), embeddings, boxes, torch.get_num_threads())


def summarise(rounds: list[dict]) -> dict:
    """The best run of each side over the rounds, the agreement of torch's embeddings with
    nbcnn's, and nbcnn's speed over torch's (torch's seconds / nbcnn's)."""
    out: dict = {"photo": "/".join(PHOTO), "rounds": len(rounds)}
    for impl in ("nbcnn", "torch"):
        runs = [r[impl] for r in rounds if impl in r]
        if runs:
            out[impl] = min(runs, key=lambda r: r["best_s"])
    nb, tc = out.get("nbcnn"), out.get("torch")
    if nb and tc:
        if nb["faces"] == tc["faces"]:
            out["max_abs_diff_embeddings"] = float(np.abs(np.asarray(nb["embeddings"]) -
                                                          np.asarray(tc["embeddings"])).max())
        out["vs_torch"] = tc["best_s"] / nb["best_s"]
    for impl in ("nbcnn", "torch"):
        if impl in out:
            out[impl] = {k: v for k, v in out[impl].items() if k not in ("embeddings", "boxes")}
    return out


def format_real_faces(r: dict) -> list[str]:
    """The lines ``nbcnn bench --models`` prints for this row."""
    if not r:
        return []
    lines = ["Real faces, detect + crop + encode on group.jpg (4 faces; tiny face detector at 416, "
             "dlib ResNet at 150x150), faces per second (best / median), cpu"]
    for impl in ("nbcnn", "torch"):
        t = r.get(impl)
        if t:
            lines.append(f"  {impl:7s} {t['faces_per_s']:10.1f} {t['faces_per_s_median']:10.1f}   "
                         f"{t['faces']} faces, {t['best_s'] * 1e3:.0f} ms per photo, {t['threads']} threads")
    if "vs_torch" in r:
        agree = (f"; embeddings vs nbcnn's: max |diff| {r['max_abs_diff_embeddings']:.2g}"
                 if "max_abs_diff_embeddings" in r else "; torch found another number of faces")
        lines.append(f"  nbcnn's speed over torch's: {r['vs_torch']:.2f}x (target >= 1.0){agree}")
    return lines


def main_worker(impl: str, repeat: int, backend: str) -> dict:
    start = time.perf_counter()
    out = time_nbcnn_faces(repeat, backend) if impl == "nbcnn" else time_torch_faces(repeat)
    out["worker_s"] = time.perf_counter() - start
    return out
