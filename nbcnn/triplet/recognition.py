"""Verification (is this NAME?) and recognition (who is this?) against enrolled embeddings.

    verification (1:1)   d = min over NAME's enrolled images of d(f(image), f(enrolled))
                         it is NAME when d < the encoder's threshold
    recognition  (1:k)   the identity of the nearest enrolled image over everyone enrolled,
                         or "unknown" (None) when even that is not within the threshold

With several images of one identity enrolled, all are kept and the nearest one counts (a
new photo only needs to resemble one of them: a profile, a smile, glasses). Only embeddings
made by the same encoder are compared (``FaceDatabase`` keys them by ``encoder_id``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .database import FaceDatabase
from .encoder import FaceEncoder


@dataclass
class Verification:
    name: str
    distance: float          # to the nearest of NAME's enrolled images
    threshold: float
    match: bool              # distance < threshold
    nearest_image: str | None
    enrolled: int            # how many of NAME's images were compared


@dataclass
class Recognition:
    name: str | None         # None: unknown (nobody within the threshold)
    distance: float          # to the nearest enrolled image (inf when nobody is enrolled)
    nearest_name: str | None  # who that nearest image belongs to, known or not
    nearest_image: str | None


def _threshold(encoder: FaceEncoder) -> float:
    if encoder.threshold is None:
        raise ValueError("this encoder has no verification threshold: train it with nbcnn.triplet.train_faces "
                         "(or `nbcnn faces train`), which chooses one on validation pairs")
    return encoder.threshold


def verify_embedding(encoder: FaceEncoder, db: FaceDatabase, embedding, name) -> Verification:
    """Is ``embedding`` (D,) identity ``name``? KeyError: no such identity; LookupError: enrolled
    with another encoder only."""
    threshold = _threshold(encoder)
    E, paths = db.embeddings_of(name, encoder.encoder_id)
    d = encoder.distances(np.asarray(embedding, np.float32).reshape(1, -1), E)[0]
    k = int(np.argmin(d))
    return Verification(name.strip(), float(d[k]), threshold, bool(d[k] < threshold), paths[k], len(paths))


def recognise_embeddings(encoder: FaceEncoder, db: FaceDatabase, embeddings) -> list[Recognition]:
    """Who each row of ``embeddings`` (n, D) is, among everyone enrolled with this encoder."""
    threshold = _threshold(encoder)
    E = np.asarray(embeddings, np.float32).reshape(-1, encoder.embedding_dim)
    names, G, paths = db.gallery(encoder.encoder_id)
    if not names:
        return [Recognition(None, float("inf"), None, None) for _ in range(len(E))]
    d = encoder.distances(E, G)
    out = []
    for row in d:
        k = int(np.argmin(row))
        known = bool(row[k] < threshold)
        out.append(Recognition(names[k] if known else None, float(row[k]), names[k], paths[k]))
    return out
