"""Training the detectors: the YOLO of step 3 on generated scenes or a labelled folder.

    result = train_yolo(synthetic="digits", epochs=30, out="digits-yolo.nbcnn")
    result = train_yolo(data="my-folder", epochs=30, out="mine.nbcnn")        # images/ + labels/
    result = train_yolo(..., resume=True)                  # continue from the checkpoint in `out`
    det = load_detector("digits-yolo.nbcnn")               # det.predict_boxes(images)
    result = train_localization(epochs=15)                 # step 1: p_c, box, class of one object
    result = train_landmarks(epochs=8)                     # step 2: five points of one object

The data: ``synthetic`` scenes come from ``scenes.make_split`` (train / val / test from their
own seeds and object instances); a ``data`` folder in the YOLO layout is read with
``dataset.read_yolo_folder`` (a folder with ``train/`` and ``val/`` inside uses those, else a
tenth of its images, chosen by the seed, is held out for validation).

Each epoch: the batches are augmented (``box_augment``: mirror (not for digits), crop and
scale, colour),
the loss is ``small_yolo.yolo_loss_and_gradient``, the optimiser Adam with a cosine learning
rate (``fitting.fit``); after it, mAP@0.5 on the validation scenes, and a checkpoint in ``out``.
``transfer_from="yolov3-tiny"``: see ``transfer.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import box_augment, fitting
from .anchors import kmeans_anchors, mean_best_iou
from .detector import Detector, load_detector
from .small_yolo import small_yolo, yolo_loss_and_gradient

__all__ = ["train_yolo", "train_localization", "train_landmarks", "load_detector", "load_yolo_data", "yolo_batches",
           "evaluate_detector", "one_object_scenes"]


def load_yolo_data(data=None, synthetic: str | None = "digits", size: int = 128, n_train: int = 4000,
                   n_val: int = 200, seed: int = 0, callback=None):
    """(train, val) Scenes: generated (``synthetic``) or read from the folder ``data``."""
    if data is not None:
        from .dataset import read_yolo_folder

        folder = Path(data)
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            train = read_yolo_folder(folder / "train", size=size)
            val = read_yolo_folder(folder / "val", num_classes=train.num_classes, size=size)
            val.class_names = train.class_names
            return train, val
        scenes = read_yolo_folder(folder, size=size)
        order = np.random.default_rng(seed).permutation(len(scenes))
        n_held = max(1, len(scenes) // 10) if len(scenes) > 1 else 0
        return scenes.subset(order[n_held:]), scenes.subset(order[:n_held])
    from .scenes import make_split

    train = make_split("train", n_train, source=synthetic, size=size, max_object=min(64, size),
                       callback=None if callback is None else (lambda i, n: callback("train scenes", i, n)))
    val = make_split("val", n_val, source=synthetic, size=size, max_object=min(64, size),
                     callback=None if callback is None else (lambda i, n: callback("validation scenes", i, n)))
    return train, val


def default_mirror(synthetic: str | None) -> float:
    """How often training mirrors an image: never for scenes of digits (a mirrored 5 is no
    digit at all, and mirrored 2s and 5s look alike, so mirroring teaches the class head
    shapes it never meets), half the time for anything else."""
    return 0.0 if synthetic in ("digits", "mixed") else 0.5


def yolo_batches(scenes, augment: bool = True, mirror: float = 0.5):
    """``make_batch(indices, rng) -> (images, (boxes, classes))`` over ``scenes`` for ``fitting.fit``;
    ``mirror``: the probability of flipping an image left <-> right."""
    def make_batch(idx, rng):
        x = scenes.images[idx]
        boxes = [scenes.boxes[i] for i in idx]
        classes = [scenes.classes[i] for i in idx]
        if augment:
            x, boxes, classes = box_augment.augment_scenes(x, boxes, classes, rng, mirror=mirror)
        return x, (boxes, classes)
    return make_batch


def evaluate_detector(detector: Detector, scenes, batch_size: int = 32):
    """``metrics.evaluate_model`` of the detector on ``scenes`` (mAP@0.5, @0.5:0.95, per class)."""
    from .metrics import evaluate_model

    return evaluate_model(lambda images: detector.predict_boxes(images), scenes, batch_size=batch_size)


def train_yolo(data=None, synthetic: str | None = "digits", epochs: int = 30, size: int = 128,
               transfer_from: str | None = None, out=None, resume: bool = False, n_train: int = 4000,
               n_val: int = 200, batch_size: int = 32, learning_rate: float = 2e-3, num_anchors: int = 3,
               seed: int = 0, ignore_threshold: float | None = 0.6, mirror: float | None = None, callback=None,
               data_callback=None, weights_path=None) -> dict:
    """Train a YOLO detector; returns ``{"detector", "history", "anchors", "seconds", "val_map50"}``.

    ``out``: the checkpoint, written after every epoch; ``resume=True`` continues from it (the
    data, anchors and settings are those the checkpoint was started with, and the result is
    the one an uninterrupted run gives). ``mirror``: probability of flipping a training image
    (None: ``default_mirror(synthetic)``, never for digits, else 0.5). ``callback``: ``fitting.DetectionProgress`` updates;
    ``data_callback(what, i, n)``: progress of generating scenes.
    """
    if out is not None:
        from ..checkpoint import check_save_path

        check_save_path(out)  # a save that cannot succeed fails now, not after an epoch
    start = time.perf_counter()
    if resume:
        if out is None or not os.path.exists(out):
            raise FileNotFoundError(f"--resume needs the checkpoint to continue from: {out!r} does not exist")
        detector = load_detector(out)
        info = detector.info
        settings = info.get("settings", {})
        data, synthetic, size = settings.get("data"), settings.get("synthetic"), detector.size
        n_train, n_val, batch_size = settings["n_train"], settings["n_val"], settings["batch_size"]
        learning_rate, seed = settings["learning_rate"], settings["seed"]
        ignore_threshold = settings.get("ignore_threshold")
        mirror = settings.get("mirror", 0.5)  # checkpoints from before the setting mirrored half the images
        train, val = load_yolo_data(data, synthetic, size, n_train, n_val, seed, data_callback)
    else:
        if mirror is None:
            mirror = default_mirror(None if data is not None else synthetic)
        train, val = load_yolo_data(data, synthetic, size, n_train, n_val, seed, data_callback)
        wh = np.concatenate([b[:, 2:] for b in train.boxes if len(b)])
        anchors = kmeans_anchors(wh, num_anchors, seed=seed)
        if transfer_from is not None:
            from .transfer import transfer_yolo

            detector = transfer_yolo(transfer_from, train.class_names, anchors, size=size, seed=seed,
                                     weights_path=weights_path)
        else:
            detector = small_yolo(train.class_names, anchors, size=size, seed=seed)
        detector.info["settings"] = {"data": None if data is None else str(data), "synthetic": synthetic,
                                     "n_train": len(train), "n_val": len(val), "batch_size": batch_size,
                                     "learning_rate": learning_rate, "seed": seed, "epochs": epochs,
                                     "ignore_threshold": ignore_threshold, "transfer_from": transfer_from,
                                     "mirror": mirror}
        detector.info["anchor_mean_iou"] = mean_best_iou(wh, anchors)
    anchors = detector.anchors
    C = detector.num_classes

    def loss_and_gradient(raw, labels):
        boxes, classes = labels
        return yolo_loss_and_gradient(raw, boxes, classes, anchors, C, ignore_threshold=ignore_threshold)

    def validate(model):
        if len(val) == 0:
            return {}
        m = evaluate_detector(model, val)
        return {"val_map50": m.map50, "val_map50_95": m.map50_95}

    detector.info["settings"]["epochs"] = epochs
    history = fitting.fit(detector, len(train), yolo_batches(train, mirror=mirror), loss_and_gradient, epochs, batch_size,
                          learning_rate, seed, checkpoint=out, callback=callback, validate=validate)
    return {"detector": detector, "history": history, "anchors": anchors, "seconds": time.perf_counter() - start,
            "val_map50": history.get("val_map50", [None])[-1]}


# --------------------------------------------------------------------------- steps 1 and 2


def one_object_scenes(n: int, split: str = "train", size: int = 64, empty_fraction: float = 0.2,
                      source: str = "digits", min_object: int = 16, max_object: int = 48):
    """(images, boxes, classes, class_names) for step 1: ``n`` scenes of one object each, then
    ``empty_fraction * n`` backgrounds with none (the lecture's p_c = 0 images), shuffled."""
    from .scenes import SPLIT_SEEDS, make_scenes, random_background

    seed = SPLIT_SEEDS[split]
    max_object = min(max_object, size * 3 // 4)  # small canvases (tests) get objects that fit
    min_object = min(min_object, max_object)
    scenes = make_scenes(n, seed=seed, source=source, size=size, min_object=min_object, max_object=max_object,
                         max_objects=1, split=split)
    n_empty = int(round(empty_fraction * n))
    rng = np.random.default_rng([seed, 1])  # the backgrounds' own stream
    empty = np.stack([random_background(rng, size) for _ in range(n_empty)]) if n_empty else np.zeros((0, size, size, 3))
    images = np.concatenate([scenes.images, empty.astype(np.float32)])
    boxes = list(scenes.boxes) + [np.zeros((0, 4), np.float32)] * n_empty
    classes = list(scenes.classes) + [np.zeros(0, np.int64)] * n_empty
    order = rng.permutation(len(images))
    return images[order], [boxes[i] for i in order], [classes[i] for i in order], scenes.class_names


def _mirror_half(x, rng):
    """Mirror about half of a batch: the one augmentation of steps 1 and 2 (their labels are
    mirrored by the caller). Returns the images and which were flipped."""
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip, :, ::-1]
    return x, flip


def train_localization(epochs: int = 10, size: int = 64, n_train: int = 4000, n_test: int = 500,
                       batch_size: int = 32, learning_rate: float = 2e-3, seed: int = 0, out=None,
                       callback=None) -> dict:
    """Step 1: train classification with localisation on one-object scenes (plus empty ones);
    returns ``{"detector", "history", "test": localization.evaluate(...) on the test split,
    "test_data": (images, boxes, classes)}``."""
    from . import localization

    x, boxes, classes, names = one_object_scenes(n_train, "train", size)
    test = one_object_scenes(n_test, "test", size)
    detector = localization.localization_net(names, size=size, seed=seed)

    def make_batch(idx, rng):
        xb, flip = _mirror_half(x[idx], rng)
        bb = [box_augment.mirror_boxes(boxes[i]) if f else boxes[i] for i, f in zip(idx, flip)]
        return xb, (bb, [classes[i] for i in idx])

    history = fitting.fit(detector, len(x), make_batch, lambda out_, lab: localization.loss_and_gradient(out_, *lab),
                          epochs, batch_size, learning_rate, seed, checkpoint=out, callback=callback)
    return {"detector": detector, "history": history, "test": localization.evaluate(detector, *test[:3]),
            "test_data": test[:3]}


def train_landmarks(epochs: int = 10, size: int = 64, n_train: int = 4000, n_test: int = 500,
                    batch_size: int = 32, learning_rate: float = 2e-3, seed: int = 0, out=None,
                    callback=None) -> dict:
    """Step 2: train landmark detection (five points of each object's ink); returns
    ``{"detector", "history", "test": landmarks.evaluate(...), "test_data": (images, points)}``."""
    from . import landmarks

    x, points = landmarks.landmark_scenes(n_train, 0, "train", size)
    test = landmarks.landmark_scenes(n_test, 2, "test", size)
    detector = landmarks.landmark_net(size=size, seed=seed)
    # mirroring swaps left and right: point order (top, right, bottom, left, centre) -> (top, left, bottom, right, centre)
    swap = np.array([0, 3, 2, 1, 4])

    def make_batch(idx, rng):
        xb, flip = _mirror_half(x[idx], rng)
        pb = points[idx].copy()
        pb[flip, :, 0] = 1.0 - pb[flip, :, 0]
        pb[flip] = pb[flip][:, swap]
        return xb, pb

    history = fitting.fit(detector, len(x), make_batch, landmarks.loss_and_gradient, epochs, batch_size,
                          learning_rate, seed, checkpoint=out, callback=callback)
    return {"detector": detector, "history": history, "test": landmarks.evaluate(detector, *test),
            "test_data": test}
