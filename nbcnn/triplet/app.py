"""The work behind ``nbcnn faces``: each function returns plain data, the command line prints it.

    result = train_faces("digits", save_path="faces-encoder.nbcnn")   # train, pick the threshold
    report = evaluate_faces(load_encoder("faces-encoder.nbcnn"), roc_png="roc.png")
    enroll("faces.db", encoder, "alice", ["alice1.jpg", "alice2.jpg"])
    verify_file("faces.db", encoder, "who.jpg", "alice")      # -> Verification(match=True, ...)
    who("faces.db", encoder, ["who.jpg"])                      # -> [(path, Recognition(name="alice", ...))]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..checks import int_arg, real_arg
from . import augmentations
from . import verification as V
from .database import FaceDatabase, file_sha256
from .datasets import IdentitySplit, load_identities, prepare_image
from .encoder import FaceEncoder, build_encoder, ensemble
from .more_identities import add_identities
from .recognition import recognise_embeddings, verify_embedding
from .training import train_encoder

DEFAULT_MODEL = "faces-encoder.nbcnn"
DEFAULT_DB = "faces.db"
DEFAULT_EPOCHS = 3
"""About 90 steps of 96 digits. Chosen on the seen classes alone: trained on digits 0-3 and measured
on 4 and 5 (6-9 left out entirely), the unseen-pair AUC peaked after 45-75 steps (0.95-0.96) and
fell slowly after (0.92 at 400 steps): longer training fits the seen identities at the expense of
the unseen ones."""
DEFAULT_LOSS = "triplet"
DEFAULT_EXTRA: dict = {}
"""No extra identities by default: trained as a classifier with the 50 made from the seen digits
(``--loss softmax --extra mirror,rot90,rot270,pairs --epochs 6 --P 12 --K 8``) the unseen 6-9
scored 0.89-0.91 instead of 0.88-0.89, but other held-out digits 0.01 lower (the README)."""
DEFAULT_MEMBERS = 5
"""Five encoders of the recipe above, each from its own random start, put together (``ensemble``).
Chosen on the seen digits alone (trained on 0-3, measured on 4 and 5; 6-9 left out entirely): one
encoder 0.951, two 0.959, three 0.960 (still rising; five keeps training under a minute on a quiet
machine). Deeper ConvNets (two convs a stage, BatchNorm, 3-8x the weights, 150-300 steps) scored
0.78-0.89 there: they fit the seen digits better and the unseen worse. ``members=1`` is the single
encoder of before."""
LEARNING_RATES = {"softmax": 3e-3, "triplet": 1e-3, "logistic": 1e-3}


def _validation_threshold(encoder: FaceEncoder, split: IdentitySplit):
    """The verification threshold: the best accuracy on every pair of the validation images (held-out
    images of the *seen* identities: the unseen ones play no part in choosing it)."""
    E = encoder.embed(split.x_val)
    i, j, same = V.all_pairs(split.y_val)
    d = encoder.distances(E)[i, j]
    t, acc = V.choose_threshold(d, same)
    return t, acc, V.roc_auc(d, same)


def train_faces(dataset: str = "digits", data_dir=None, unseen=None, *, loss: str = DEFAULT_LOSS,
                mining: str = "semi-hard", alpha: float = 0.2, epochs: int = DEFAULT_EPOCHS, P: int = 6, K: int = 16,
                steps_per_epoch: int | None = None, embedding_dim: int = 32, width: int = 32, head: str = "flat",
                learning_rate: float | None = None, augment: bool = True, seed: int = 0, size=(64, 64),
                grey: bool = False, per_class: int | None = None, extra=None, members: int = DEFAULT_MEMBERS,
                save_path=None, callback=None, split: IdentitySplit | None = None) -> dict:
    """Train a face encoder on the seen identities of ``dataset``, choose its threshold on their
    validation pairs, measure it on the unseen identities, and save it (``save_path``).

    See ``load_identities`` for ``dataset``, ``data_dir``, ``unseen``, ``size``, ``grey``,
    ``per_class``, ``build_encoder`` for ``embedding_dim``, ``width``, ``head``, and
    ``train_encoder`` for the rest (``learning_rate`` None: ``LEARNING_RATES[loss]``). ``extra``:
    identities added to the training images, made from the seen ones (``more_identities.EXTRAS``,
    e.g. "mirror,rot90,pairs"; "none" or None for nothing). ``members``: train this many encoders,
    each from its own random start and batches (seeds ``seed``, ``seed + 1``, ...), and put them
    together (``encoder.ensemble``: the mean of their squared distances). ``loss="softmax"`` trains the encoder as
    a classifier of the training identities instead (the README compares them). ``split``: an
    ``IdentitySplit`` to use
    instead of loading one. Returns {"encoder", "split", "history", "threshold",
    "val_accuracy", "val_auc", "unseen_auc", "unseen_accuracy", "seconds", "images_per_second"}.
    """
    if save_path is not None:
        from ..checkpoint import check_save_path

        check_save_path(save_path)  # a save that cannot succeed fails now, not after the training
    if split is None:
        split = load_identities(dataset, data_dir, unseen, seed=seed, size=size, grey=grey, per_class=per_class)
    if extra is None:
        extra = DEFAULT_EXTRA.get(split.source.get("dataset", dataset), "none")
    split = add_identities(split, extra, seed=seed)
    if learning_rate is None:
        learning_rate = LEARNING_RATES.get(loss, 1e-3)
    members = int_arg(members, "members (encoders trained and put together)", 1)
    if members > 1 and loss == "logistic":
        raise ValueError("members > 1 puts squared-distance encoders together; the logistic loss makes its own "
                         "distance")
    start = time.perf_counter()
    trained, history = [], {}
    for k in range(members):
        member = build_encoder(split.input_shape, embedding_dim, width, seed=seed + k, head=head)
        h = train_encoder(member, split.x_train, split.y_train, loss=loss, epochs=epochs, P=P, K=K, mining=mining,
                          alpha=alpha, learning_rate=learning_rate, seed=seed + k, steps_per_epoch=steps_per_epoch,
                          augment=augmentations.for_dataset(split.source.get("dataset", dataset)) if augment else None,
                          callback=None if callback is None else _member_progress(callback, k, members))
        trained.append(member)
        for key, value in h.items():  # the members' epochs one after the other
            history.setdefault(key, []).extend(value)
    encoder = trained[0] if members == 1 else ensemble(trained, seed=seed)
    if members > 1:
        encoder.epochs_done, encoder.history = sum(m.epochs_done for m in trained), history
    seconds = time.perf_counter() - start
    threshold, val_acc, val_auc = _validation_threshold(encoder, split)
    encoder.threshold = threshold
    encoder.info = {**split.source, "loss": loss, "mining": mining if loss == "triplet" else None, "alpha": alpha,
                    "epochs": epochs, "P": P, "K": K, "augment": bool(augment), "head": head, "members": members,
                    "names": split.names,
                    "val_accuracy": val_acc, "val_auc": val_auc, "train_seconds": seconds}
    unseen_auc = unseen_acc = None
    if len(split.unseen) >= 2:  # pairs of different unseen identities exist
        E = encoder.embed(split.x_unseen)
        i, j, same = V.all_pairs(split.y_unseen)
        d = encoder.distances(E)[i, j]
        unseen_auc, unseen_acc = V.roc_auc(d, same), V.accuracy_at(d, same, threshold)
        encoder.info.update(unseen_auc=unseen_auc)
    if save_path is not None:
        encoder.save(save_path)
    steps = steps_per_epoch or max(1, -(-len(split.x_train) // (P * K)))
    images = members * epochs * steps * P * K
    return {"encoder": encoder, "split": split, "history": history, "threshold": threshold, "val_accuracy": val_acc,
            "val_auc": val_auc, "unseen_auc": unseen_auc, "unseen_accuracy": unseen_acc,
            "seconds": seconds, "images_per_second": images / max(seconds, 1e-9)}


def _member_progress(callback, k: int, members: int):
    """The progress of member k of ``members`` told as one run: epochs numbered on across the members."""
    if members == 1:
        return callback

    def tell(p):
        return callback(type(p)(p.epoch + k * p.epochs, p.epochs * members, p.step, p.steps, p.loss, p.triplets,
                                p.record))
    return tell


def split_of(encoder: FaceEncoder, data_dir=None) -> IdentitySplit:
    """The identities ``encoder`` was trained and measured on, loaded again from what it recorded."""
    info = encoder.info
    if "dataset" not in info:
        raise ValueError("this encoder does not record its data set; pass one (--dataset, --data)")
    return load_identities(info["dataset"], data_dir if data_dir is not None else info.get("data_dir"),
                           info.get("unseen"), val_fraction=info.get("val_fraction", 0.1), seed=info.get("seed", 0),
                           per_class=info.get("per_class"), size=info.get("size", (64, 64)),
                           grey=info.get("grey", False))


def evaluate_faces(encoder: FaceEncoder, split: IdentitySplit | None = None, *, folds: int = 10, pairs: int = 6000,
                   far_target: float = 1e-3, trials: int = 20, shots=(1, 5), seed: int = 0, roc_png=None,
                   data_dir=None, curve: bool = False) -> dict:
    """Verification and one-shot recognition on the *unseen* identities of ``split`` (default: the
    split the encoder recorded).

    Returns {"auc" (every pair of unseen images), "pair_auc" {"6 / 7": the AUC on the images of
    those two identities only, ...}, "pairs_all", "accuracy_at_threshold" (the
    stored threshold, on every pair), "threshold", "lfw" (``lfw_protocol`` on ``pairs`` sampled
    pairs: accuracy, VAL at FAR), "one_shot" {shots: ``one_shot`` result}, "roc_png",
    "identities" (the unseen names), "images", and with ``curve`` "curve": (distances, same,
    threshold) of at most 200,000 of the pairs, for ``verification.draw_roc``}.
    """
    split = split if split is not None else split_of(encoder, data_dir)
    if len(split.unseen) < 2:
        raise ValueError(f"evaluation needs at least 2 unseen identities (pairs of different ones); this split holds "
                         f"out {[split.names[c] for c in split.unseen]}: hold out more (--unseen)")
    folds, pairs, trials = int_arg(folds, "folds", 2), int_arg(pairs, "pairs", 2), int_arg(trials, "trials")
    far_target = real_arg(far_target, "far_target", 0.0, 1.0, low_ok=False)
    E = encoder.embed(split.x_unseen)
    D = encoder.distances(E)
    i, j, same = V.all_pairs(split.y_unseen)
    d = D[i, j]
    pair_auc = {}  # each pair of unseen identities on its own: which two are hard to tell apart
    for a_k, a in enumerate(split.unseen):
        for b in split.unseen[a_k + 1:]:
            both = np.isin(split.y_unseen[i], (a, b)) & np.isin(split.y_unseen[j], (a, b))
            pair_auc[f"{split.names[a]} / {split.names[b]}"] = V.roc_auc(d[both], same[both])
    report = {"auc": V.roc_auc(d, same), "pair_auc": pair_auc, "pairs_all": int(d.size), "same_pairs": int(same.sum()),
              "identities": [split.names[c] for c in split.unseen], "images": int(len(E)),
              "threshold": encoder.threshold, "encoder_id": encoder.encoder_id}
    if encoder.threshold is not None:
        report["accuracy_at_threshold"] = V.accuracy_at(d, same, encoder.threshold)
    pi, pj, psame = V.sample_pairs(split.y_unseen, min(pairs, int(d.size)), seed)
    report["lfw"] = V.lfw_protocol(D[pi, pj], psame, folds, far_target, seed)
    report["one_shot"] = {}
    for k in shots:
        if np.min(np.bincount(split.y_unseen)[split.unseen]) > k:
            report["one_shot"][int(k)] = V.one_shot(encoder.distances, E, split.y_unseen, shots=int(k), trials=trials,
                                                   threshold=encoder.threshold, seed=seed)
    label = f"{encoder.distance} ({encoder.info.get('mining') or encoder.info.get('loss', '')})"
    if roc_png is not None:
        report["roc_png"] = V.draw_roc({label: _curve_sample(d, same, encoder.threshold, seed)}, roc_png,
                                       title=f"ROC, pairs of unseen {', '.join(report['identities'])}")
    if curve:
        report["curve"] = _curve_sample(d, same, encoder.threshold, seed)
    return report


CURVE_PAIRS = 200_000
"""Pairs drawn in a ROC picture: a random sample when there are more (2,000 images make 2 million
pairs; the curve of 200,000 of them looks the same, and matplotlib draws it in a second)."""


def _curve_sample(d, same, threshold, seed):
    if d.size > CURVE_PAIRS:
        keep = np.random.default_rng(seed).choice(d.size, CURVE_PAIRS, replace=False)
        d, same = d[keep], same[keep]
    return d, same, threshold


# --------------------------------------------------------------------------- enrolment and look-ups


DLIB = "dlib"  # the pretrained encoder's name on the command line (--encoder dlib)


def load_face_encoder(spec=DLIB):
    """``"dlib"``: the pretrained dlib ResNet encoder of real photos (``DlibEncoder``, shipped
    weights); anything else: the path of a ``FaceEncoder`` trained with ``train_faces``."""
    if isinstance(spec, str) and spec.strip().lower() == DLIB:
        from .dlib_encoder import load_dlib_encoder

        return load_dlib_encoder()
    from .encoder import load_encoder

    return load_encoder(spec)


def is_photo_encoder(encoder) -> bool:
    """True for an encoder of face crops (dlib's): its files are photos, faces found by the detector."""
    return getattr(encoder, "kind", None) == DLIB


def _description(encoder) -> str:
    """What the database stores with the encoder's id: its metric, size and input."""
    text = f"{encoder.distance}, {encoder.embedding_dim}-d, input {encoder.input_shape}"
    if is_photo_encoder(encoder):
        text = (f"dlib ResNet (face-api weights), {text}: tiny face detector, largest face, square box crop "
                f"resized bilinear; same person when the {encoder.distance} distance < {encoder.threshold}")
    return text


def embed_files(encoder: FaceEncoder, paths) -> tuple[np.ndarray, list[str]]:
    """Embeddings of image files (each read as the encoder takes it) and each file's sha256.

    A photo encoder (``--encoder dlib``) embeds the largest face the detector finds in each photo
    (a ValueError naming the photo when there is none); a trained digit encoder embeds the
    whole image."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no image files given")
    if is_photo_encoder(encoder):
        from .face_crop import read_photo
        from .face_pipeline import find_faces, main_face

        E = np.stack([main_face(find_faces(read_photo(p), encoder), str(p)).embedding for p in paths])
        return E, [file_sha256(p) for p in paths]
    x = np.stack([prepare_image(p, encoder.input_shape) for p in paths])
    return encoder.embed(x), [file_sha256(p) for p in paths]


def enroll(db_path, encoder: FaceEncoder, name: str, image_paths) -> dict:
    """Enrol the images of ``name`` (all kept; one transaction). Returns {"name", "added",
    "skipped" (already enrolled), "total" (now stored for this encoder)}."""
    E, hashes = embed_files(encoder, image_paths)
    with FaceDatabase(db_path) as db:
        added = db.enroll(name, E, encoder.encoder_id, [os.path.abspath(p) for p in image_paths], hashes,
                          description=_description(encoder))
        total = next(i.embeddings for i in db.identities(encoder.encoder_id) if i.name == name.strip())
    return {"name": name.strip(), "added": added, "skipped": len(E) - added, "total": total}


def verify_file(db_path, encoder: FaceEncoder, image_path, name: str):
    E, _ = embed_files(encoder, [image_path])
    with FaceDatabase(db_path, create=False) as db:
        return verify_embedding(encoder, db, E[0], name)


def who(db_path, encoder: FaceEncoder, image_paths) -> list:
    """[(path, Recognition)]: who each image is (a photo encoder: the largest face of each photo;
    ``who_faces`` gives every face)."""
    E, _ = embed_files(encoder, image_paths)
    with FaceDatabase(db_path, create=False) as db:
        return list(zip([str(p) for p in image_paths], recognise_embeddings(encoder, db, E)))


def who_faces(db_path, encoder, image_path) -> list:
    """[(Face, Recognition)]: every face the detector finds in the photo ``image_path``, best
    score first, each with who it is (or unknown). Needs a photo encoder (``--encoder dlib``)."""
    from .face_crop import read_photo
    from .face_pipeline import find_faces

    if not is_photo_encoder(encoder):
        raise ValueError("finding every face in a photo needs the pretrained encoder (--encoder dlib); "
                         "a trained digit encoder reads whole images")
    with FaceDatabase(db_path, create=False) as db:  # a missing database is said before the work
        faces = find_faces(read_photo(image_path), encoder)
        found = recognise_embeddings(encoder, db, np.stack([f.embedding for f in faces])) if faces else []
    return list(zip(faces, found))


def draw_who(image_path, labelled, out_path, threshold: float | None = None):
    """Draw ``who_faces``' answer on the photo: each face's box with its name (or "unknown") and
    distance; save a PNG at ``out_path``. Returns the path."""
    from .. import plot
    from .face_crop import read_photo

    boxes = [face.box for face, _ in labelled]
    labels = [f"{r.name if r.name is not None else 'unknown'} {r.distance:.2f}" for _, r in labelled]
    title = f"{Path(image_path).name}: {len(labelled)} face(s)"
    if threshold is not None:
        title += f", names within distance {threshold}"
    fig = plot.boxes(read_photo(image_path), boxes=np.asarray(boxes, np.float64).reshape(-1, 4), labels=labels,
                     title=title)
    return plot.save(fig, out_path)


def list_identities(db_path, encoder: FaceEncoder | None = None):
    with FaceDatabase(db_path, create=False) as db:
        return db.identities(None if encoder is None else encoder.encoder_id)


def remove(db_path, name: str) -> int:
    with FaceDatabase(db_path, create=False) as db:
        return db.remove(name)
