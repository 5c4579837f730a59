"""Faces (Course 4, week 4, first half): one-shot learning, the siamese network, the triplet loss,
verification as binary classification, and a face database.

    from nbcnn import triplet
    result = triplet.train_faces("digits", save_path="faces-encoder.nbcnn")
    encoder = triplet.load_encoder("faces-encoder.nbcnn")
    report = triplet.evaluate_faces(encoder, roc_png="roc.png")    # AUC, LFW protocol, one-shot
    triplet.enroll("faces.db", encoder, "alice", ["alice.png"])
    triplet.who("faces.db", encoder, ["someone.png"])

The kernels (triplet loss, L2 normalisation, pairwise distances) are in
``nbcnn/kernels/triplet.py``, reached through ``nbcnn.triplet_loss`` and friends; this package
is what is built on them:

    mining.py          P x K batches; random, hard and semi-hard triplets
    encoder.py         FaceEncoder (a Model ending in L2Normalize, plus its threshold), build/load
    training.py        triplet and logistic (binary-classification) training steps and loop
    augmentations.py   random handwriting / photo variants
    datasets.py        classes as identities: seen (train, validation) and unseen; people/NAME/*.jpg
    more_identities.py extra training identities made from the seen ones (mirrored, turned, pairs)
    verification.py    ROC, AUC, thresholds, the LFW 10-fold protocol, one-shot recognition
    database.py        the SQLite face database
    recognition.py     verify (1:1) and recognise (1:k) against the database
    app.py             the functions behind `nbcnn faces`
    bench.py           triplet training throughput next to torch
    face_detector.py   face-api's tiny face detector (Tiny-YOLOv2, depthwise-separable): detect_faces
    dlib_encoder.py    dlib's ResNet face encoder (face-api's weights), 150 x 150 -> 128: load_dlib_encoder
    face_crop.py       photos in, 150 x 150 face crops out: read_photo, crop_face
    face_pipeline.py   detect -> crop -> encode on a photo: find_faces
"""

from .app import (DEFAULT_DB, DEFAULT_MODEL, embed_files, enroll, evaluate_faces, list_identities, remove, split_of,
                  train_faces, verify_file, who)
from .bench import format_throughput, triplet_training_throughput
from .database import FaceDatabase, FaceDatabaseError, Identity
from .datasets import IdentitySplit, load_folder, load_identities, prepare_image
from .encoder import FaceEncoder, build_encoder, ensemble, load_encoder
from .face_detector import Face, detect_faces, load_tiny_face_detector
from .mining import STRATEGIES, mine_triplets, pk_batches
from .recognition import Recognition, Verification, recognise_embeddings, verify_embedding
from .training import TripletProgress, logistic_step, train_encoder, triplet_step
from .verification import all_pairs, choose_threshold, lfw_protocol, one_shot, roc, roc_auc, sample_pairs

__all__ = [
    "DEFAULT_DB", "DEFAULT_MODEL", "embed_files", "enroll", "evaluate_faces", "list_identities", "remove", "split_of",
    "train_faces", "verify_file", "who", "format_throughput", "triplet_training_throughput", "FaceDatabase",
    "FaceDatabaseError", "Identity", "IdentitySplit", "load_folder", "load_identities", "prepare_image", "FaceEncoder",
    "build_encoder", "ensemble", "load_encoder", "STRATEGIES", "mine_triplets", "pk_batches", "Recognition", "Verification",
    "recognise_embeddings", "verify_embedding", "TripletProgress", "logistic_step", "train_encoder", "triplet_step",
    "all_pairs", "choose_threshold", "lfw_protocol", "one_shot", "roc", "roc_auc", "sample_pairs",
]
__all__ += ["Face", "detect_faces", "load_tiny_face_detector"]

from .dlib_encoder import DlibEncoder, load_dlib_encoder  # noqa: E402
from .face_crop import crop_face, read_photo  # noqa: E402
from .face_pipeline import EncodedFace, find_faces  # noqa: E402
from .app import load_face_encoder, who_faces  # noqa: E402

__all__ += ["DlibEncoder", "load_dlib_encoder", "crop_face", "read_photo", "EncodedFace", "find_faces",
            "load_face_encoder", "who_faces"]
