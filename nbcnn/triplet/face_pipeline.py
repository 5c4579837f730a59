"""Real faces end to end: find the faces in a photo, crop them, encode them, compare them.

    encoder = load_dlib_encoder()
    faces = find_faces(read_photo("group.jpg"), encoder)      # [EncodedFace(box, score, embedding), ...]
    encoder.distances([f.embedding for f in faces])           # same person below 0.6

The four steps, each its own module:

    detect   nbcnn.triplet.face_detector.detect_faces: face-api's tiny face detector (a
             Tiny-YOLOv2 with depthwise-separable convolutions, input 416 x 416, 13 x 13 x 5
             anchors) and NMS; boxes (x1, y1, x2, y2) in photo pixels with scores
    crop     nbcnn.triplet.face_crop.crop_face: the box's square, resized to 150 x 150 with
             Pillow's bilinear filter (another filter moves embeddings by up to ~0.1)
    encode   nbcnn.triplet.dlib_encoder: dlib's ResNet, 150 x 150 RGB -> 128 numbers
    compare  the Euclidean distance; the same person when it is below 0.6 (dlib's threshold)

A photo with several faces gives several ``EncodedFace``s, best score first. Enrolling or verifying
a person from a photo uses its largest face (``main_face``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .face_crop import check_photo, crop_face

DETECTOR_INPUT_SIZE = 416
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.4


@dataclass
class EncodedFace:
    """One face found in a photo, and its embedding once encoded."""

    box: tuple            # (x1, y1, x2, y2) in photo pixels
    score: float          # the detector's confidence, 0..1
    embedding: np.ndarray | None = None   # (128,) when an encoder was given

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def detect(photo, input_size: int = DETECTOR_INPUT_SIZE, score_threshold: float = SCORE_THRESHOLD,
           iou_threshold: float = IOU_THRESHOLD) -> list[EncodedFace]:
    """The faces the tiny face detector finds in ``photo`` ((H, W, 3) uint8), best score first."""
    from .face_detector import detect_faces

    found = detect_faces(check_photo(photo), input_size=input_size, score_threshold=score_threshold,
                         iou_threshold=iou_threshold)
    faces = [EncodedFace(tuple(float(v) for v in box), float(score)) for box, score in found]
    return sorted(faces, key=lambda f: -f.score)


def encode_faces(photo, faces: list[EncodedFace], encoder, margin: float = 0.0) -> list[EncodedFace]:
    """Fill each face's ``embedding``: crop it from ``photo`` (150 x 150, bilinear) and encode all at once."""
    if not faces:
        return faces
    chips = np.stack([crop_face(photo, face.box, margin=margin) for face in faces])
    for face, embedding in zip(faces, encoder.embed(chips)):
        face.embedding = embedding
    return faces


def find_faces(photo, encoder=None, *, margin: float = 0.0, input_size: int = DETECTOR_INPUT_SIZE,
               score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> list[EncodedFace]:
    """Detect the faces of ``photo`` and, given an ``encoder``, encode each: ``[EncodedFace, ...]`` best first."""
    photo = check_photo(photo)
    faces = detect(photo, input_size, score_threshold, iou_threshold)
    return encode_faces(photo, faces, encoder, margin) if encoder is not None else faces


def main_face(faces: list[EncodedFace], where: str = "photo") -> EncodedFace:
    """The largest face: the person a portrait is of. A ValueError naming ``where`` when there is none."""
    if not faces:
        raise ValueError(f"{where}: no face found (tiny face detector, score threshold {SCORE_THRESHOLD}); "
                         "use a photo where the face is at least ~1/10 of the picture across")
    return max(faces, key=lambda f: f.area)
