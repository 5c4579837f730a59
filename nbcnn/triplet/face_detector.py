"""face-api's tiny face detector, built from nbcnn layers: a photo in, face boxes out.

    faces = detect_faces(photo)                   # (H, W, 3) uint8 RGB -> [Face(box, score), ...]
    for (x1, y1, x2, y2), score in faces: ...     # corners in the photo's pixels, best score first

The network (face-api's ``TinyFaceDetector``: a Tiny-YOLOv2 whose 3x3 convolutions, all but
the first, are depthwise-separable), NHWC, with its sizes at the default input of 416::

    x = (pixels - [117.001, 114.697, 97.404]) / 255             416 x 416 x 3
    conv 3x3 "valid" 3 -> 16, bias, leaky 0.1                   414 x 414 x 16
    max pool 2x2 stride 2 "same"                                207 x 207 x 16
    separable 3x3 pad 1 -> 32, bias, leaky; max pool 2/2        104 x 104 x 32
    separable 3x3 pad 1 -> 64, bias, leaky; max pool 2/2         52 x 52 x 64
    separable 3x3 pad 1 -> 128, bias, leaky; max pool 2/2        26 x 26 x 128
    separable 3x3 pad 1 -> 256, bias, leaky; max pool 2/2        13 x 13 x 256
    separable 3x3 pad 1 -> 512, bias, leaky; max pool 2 stride 1 "same"   13 x 13 x 512
    conv 1x1 -> 25, bias (no activation)                         13 x 13 x 25

"separable" is a depthwise 3x3 convolution (one filter per channel, ``nbcnn.depthwise_conv2d``)
then a 1x1 convolution with bias (``layers.SeparableConv2D``). Batch norm was folded into
these weights before face-api shipped them. The leaky ReLU's slope is float32(0.1). Other
input sizes (multiples of 32, as face-api allows) give an (input_size / 32)² grid.

The 25 numbers of a grid cell (row, col) are 5 anchors x (tx, ty, tw, th, to); YOLOv2's decoding::

    score  = sigmoid(to)                                   kept when score > score_threshold
    centre = ((col + sigmoid(tx)) / cells, (row + sigmoid(ty)) / cells)
    size   = (exp(tw) * anchor_w / cells, exp(th) * anchor_h / cells)

as fractions of the square network input. face-api makes that square from the photo by
padding it with zeros at the bottom or right (never centred) and resizing it with TensorFlow's
``resize_bilinear`` (``align_corners=False, half_pixel_centers=False``); ``preprocess`` does
exactly the same, so the boxes match face-api's to a small fraction of a pixel
(tests/test_face_detector.py checks 1 px against its recorded output). Boxes are then taken
back to the photo's pixels and overlapping ones removed by ``nbcnn.nms`` at IoU 0.4 (face-api's
own NMS: greedy, best score first, suppress when IoU > threshold).

Everything with arithmetic in it (convolutions, depthwise convolutions, pooling, leaky ReLU,
NMS) runs on the dispatcher's kernels, so the detector runs on any backend. The resize, the
mean subtraction and the 13 x 13 x 5 decoding are small numpy steps here.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import NamedTuple

import numpy as np

from .. import layers as L
from .. import ops
from ..backend import to_host
from ..model import Model
from ..weights.tfjs import read_tfjs_model

MANIFEST = "tiny_face_detector_model-weights_manifest.json"
MEAN_RGB = (117.001, 114.697, 97.404)   # subtracted from the 0..255 pixels, then divided by PIXEL_SCALE
PIXEL_SCALE = 255.0
LEAKY_SLOPE = 0.1
# (width, height) of the 5 anchor boxes, in grid cells
ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857),
           (9.041765, 10.66308))
BOX_ENCODING = 5                         # tx, ty, tw, th, objectness (one class: no class scores)
STRIDE = 32                              # input pixels per grid cell
DEFAULT_INPUT_SIZE = 416
SCORE_THRESHOLD = 0.5                    # face-api's defaults
IOU_THRESHOLD = 0.4
FILTERS = (16, 32, 64, 128, 256, 512)    # conv0, then the separable conv1 ... conv5


class Face(NamedTuple):
    """One detected face: ``box`` = (x1, y1, x2, y2) in the photo's pixels (floats; may reach
    a little past the photo's edges, as face-api's do), ``score`` in (0, 1).
    Unpacks as ``box, score = face``."""

    box: tuple[float, float, float, float]
    score: float


def shipped_manifest():
    """The tiny_face_detector_model manifest shipped in nbcnn/assets/faceapi (a Traversable path)."""
    return resources.files("nbcnn").joinpath("assets", "faceapi", MANIFEST)


# --------------------------------------------------------------------------- the network


def check_input_size(input_size) -> int:
    """A multiple of 32 of at least 32 (face-api's rule: five 2x2 poolings, then whole grid cells)."""
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)):
        raise TypeError(f"input_size must be an int, a multiple of 32 such as 416, got "
                        f"{type(input_size).__name__} {input_size!r:.40}")
    if input_size < STRIDE or input_size % STRIDE:
        raise ValueError(f"input_size must be a positive multiple of {STRIDE} (face-api's rule; 416 by default, "
                         f"smaller is faster, larger finds smaller faces), got {input_size}")
    return int(input_size)


def build_tiny_face_detector(input_size: int = DEFAULT_INPUT_SIZE, seed: int = 0) -> Model:
    """The architecture above, with freshly initialised weights (``load_tiny_face_detector``
    gives face-api's). Output: (input_size / 32, input_size / 32, 25) per image."""
    input_size = check_input_size(input_size)
    layers = [L.Conv2D(FILTERS[0], 3, padding="valid", name="conv0"), L.LeakyReLU(LEAKY_SLOPE),
              L.MaxPooling2D(2, strides=2, padding="same")]
    for k, filters in enumerate(FILTERS[1:], start=1):
        last = k == len(FILTERS) - 1
        layers += [L.SeparableConv2D(filters, 3, padding=1, name=f"conv{k}"), L.LeakyReLU(LEAKY_SLOPE),
                   # the last pooling keeps the 13 x 13 grid: stride 1, padded at the bottom/right
                   L.MaxPooling2D(2, strides=1 if last else 2, padding="same")]
    layers.append(L.Conv2D(len(ANCHORS) * BOX_ENCODING, 1, name="conv8"))
    return Model(layers, input_shape=(input_size, input_size, 3), seed=seed, name="tiny_face_detector")


def _tensor(weights: dict, name: str, shape) -> np.ndarray:
    if name not in weights:
        raise ValueError(f"these weights are not face-api's tiny_face_detector_model: no tensor {name!r}")
    value = np.array(weights[name], np.float32)  # a copy: training one model must not change another's weights
    if value.size != int(np.prod(shape)):
        raise ValueError(f"tensor {name!r} has shape {value.shape}, the detector needs {tuple(shape)}")
    return value.reshape(shape)


def set_detector_weights(model: Model, weights: dict) -> Model:
    """Copy face-api's tensors (``read_tfjs_model``'s dict) into a ``build_tiny_face_detector`` model.

    TF.js keeps TensorFlow's layouts, which are nbcnn's: conv filters (f_h, f_w, C_in, C_out);
    a depthwise filter (f_h, f_w, C, 1) becomes (f_h, f_w, C).
    """
    for layer in model.layers:
        if isinstance(layer, L.SeparableConv2D):
            depthwise, pointwise = layer.params["depthwise_W"], layer.params["pointwise_W"]
            layer.params["depthwise_W"] = _tensor(weights, f"{layer.name}/depthwise_filter", depthwise.shape)
            layer.params["pointwise_W"] = _tensor(weights, f"{layer.name}/pointwise_filter", pointwise.shape)
            layer.params["b"] = _tensor(weights, f"{layer.name}/bias", layer.params["b"].shape)
        elif isinstance(layer, L.Conv2D):
            layer.params["W"] = _tensor(weights, f"{layer.name}/filters", layer.params["W"].shape)
            layer.params["b"] = _tensor(weights, f"{layer.name}/bias", layer.params["b"].shape)
    return model


@functools.lru_cache(maxsize=1)
def _shipped_weights() -> dict:
    with resources.as_file(shipped_manifest()) as path:
        return read_tfjs_model(path)


def load_tiny_face_detector(input_size: int = DEFAULT_INPUT_SIZE, manifest=None) -> Model:
    """The detector with face-api's weights: the shipped ones, or those of ``manifest`` (a path
    to a ``tiny_face_detector_model-weights_manifest.json`` with its ``.bin`` beside it)."""
    weights = _shipped_weights() if manifest is None else read_tfjs_model(manifest)
    return set_detector_weights(build_tiny_face_detector(input_size), weights)


@functools.lru_cache(maxsize=8)
def _shipped_detector(input_size: int) -> Model:
    return load_tiny_face_detector(input_size)


# --------------------------------------------------------------------------- preprocessing


def check_image(image) -> np.ndarray:
    """``image`` as an (H, W, 3) array of 0..255 RGB values: uint8 kept as it is (no copy),
    other numbers as float64.

    Accepted: uint8 (H, W, 3) RGB, the usual photo (``face_crop.read_photo`` reads one); float
    arrays on the same 0..255 scale (face-api's tensors; a [0, 1] image must be multiplied by
    255 first); (H, W) or (H, W, 1) grey images (repeated into RGB) and (H, W, 4) RGBA (alpha
    dropped). Anything else is refused, naming the shape or dtype.
    """
    if image is None or isinstance(image, (str, bytes)):
        raise TypeError(f"image must be an (H, W, 3) array of RGB pixels, got {type(image).__name__} "
                        f"(read a file with nbcnn.triplet.face_crop.read_photo)")
    image = np.asarray(to_host(image) if hasattr(image, "copy_to_host") else image)
    if image.dtype.kind not in "uif" or image.dtype == np.bool_:
        raise TypeError(f"image must hold numbers (uint8 0..255 or floats on that scale), got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3) RGB (or (H, W) grey, (H, W, 4) RGBA), got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint8:
        return image  # 0..255 by construction; the resize takes floats of the few pixels it reads
    image = image.astype(np.float64)
    if not np.isfinite(image).all():
        raise ValueError(f"image has {int((~np.isfinite(image)).sum())} NaN or infinite values; pixels must lie in "
                         f"[0, 255]")
    if image.min() < 0 or image.max() > 255:
        raise ValueError(f"image values must be pixels in [0, 255], got {image.min():g} .. {image.max():g}; "
                         f"scale a [0, 1] image by 255")
    return image


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Zeros appended at the bottom (wide photos) or right (tall ones) up to max(H, W) square:
    face-api's ``padToSquare`` with its default of not centring."""
    H, W, _ = image.shape
    side = max(H, W)
    return np.pad(image, ((0, side - H), (0, side - W), (0, 0)))


def resize_bilinear_tf(image: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow's ``resize_bilinear(align_corners=False, half_pixel_centers=False)`` of an
    (H, W, C) image to (size, size, C), float32, computed as TF.js's cpu kernel does (in float64,
    stored as float32)::

        src_r = r * H / size;  r0 = floor(src_r);  r1 = min(r0 + 1 if src_r > r0 else r0, H - 1);  fr = src_r - r0
        top    = x[r0, c0] + (x[r0, c1] - x[r0, c0]) * fc     (c0, c1, fc likewise along columns)
        bottom = x[r1, c0] + (x[r1, c1] - x[r1, c0]) * fc
        out[r, c] = top + (bottom - top) * fr

    The corner (0, 0) of the output sits on the input's corner pixel (no half-pixel shift), so
    the image moves by up to half an input pixel against a centred resampling: part of why
    face-api's own preprocessing must be copied exactly for its boxes to come out.
    """
    H, W, _ = image.shape

    def taps(old, new):
        src = (old / new) * np.arange(new, dtype=np.float64)
        lo = np.maximum(0, np.floor(src)).astype(np.int64)
        hi = np.minimum(old - 1, np.ceil(src)).astype(np.int64)
        return lo, hi, src - lo

    r0, r1, fr = taps(H, size)
    c0, c1, fc = taps(W, size)
    # along the columns first, for every input row: "top" of output row r is this at row r0[r],
    # "bottom" at row r1[r] (the same numbers as computing them per output pixel, fewer times);
    # pixels become float64 only once picked, so a large uint8 photo is never copied whole
    left = np.take(image, c0, axis=1).astype(np.float64)
    across = np.take(image, c1, axis=1).astype(np.float64)
    across -= left                      # in place, same operations: a + (b - a) * f
    across *= fc[None, :, None]
    across += left
    top = np.take(across, r0, axis=0)
    out = np.take(across, r1, axis=0)
    out -= top
    out *= fr[:, None, None]
    out += top
    return out.astype(np.float32)


def reshaped_size(height: int, width: int, input_size: int) -> tuple[int, int]:
    """(width, height) the photo takes inside the square network input: its longer side becomes
    ``input_size``, the other is scaled alike and rounded half up (JavaScript's Math.round)."""
    scale = input_size / max(height, width)
    return int(np.floor(width * scale + 0.5)), int(np.floor(height * scale + 0.5))


def preprocess(image, input_size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """A photo as the network's (1, input_size, input_size, 3) float32 input, as face-api makes
    it: zero-padded to a square at the bottom/right, resized (``resize_bilinear_tf``, skipped
    when the square already has the input's size), minus ``MEAN_RGB``, divided by 255, in float32."""
    input_size = check_input_size(input_size)
    square = pad_to_square(check_image(image))
    if square.shape[0] != input_size:
        square = resize_bilinear_tf(square, input_size)
    square = square.astype(np.float32)
    x = (square - np.asarray(MEAN_RGB, np.float32)) / np.float32(PIXEL_SCALE)
    return x[None]


# --------------------------------------------------------------------------- decoding the grid


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def decode_grid(grid, image_shape, input_size: int = DEFAULT_INPUT_SIZE,
                score_threshold: float = SCORE_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """The network's (cells, cells, 25) output (or (1, cells, cells, 25)) -> the boxes whose
    score passes ``score_threshold``, before NMS: ``(boxes (k, 4) x1, y1, x2, y2 in the photo's
    pixels, scores (k,))`` in grid order (row, column, anchor), float64.

    ``image_shape``: the photo's (H, W[, C]). Positions are fractions of the square input;
    face-api corrects them by ``input_size / reshaped side`` (the padding carries no photo) and
    multiplies by the photo's width and height.
    """
    grid = np.asarray(to_host(grid), np.float64)
    if grid.ndim == 4 and grid.shape[0] == 1:
        grid = grid[0]
    cells = grid.shape[0]
    if grid.ndim != 3 or grid.shape[1] != cells or grid.shape[2] != len(ANCHORS) * BOX_ENCODING:
        raise ValueError(f"grid must be (cells, cells, {len(ANCHORS) * BOX_ENCODING}), got shape {grid.shape}")
    height, width = int(image_shape[0]), int(image_shape[1])
    reshaped_w, reshaped_h = reshaped_size(height, width, input_size)
    correct_x, correct_y = input_size / reshaped_w, input_size / reshaped_h
    t = grid.reshape(cells, cells, len(ANCHORS), BOX_ENCODING)
    scores = _sigmoid(t[..., 4])
    row, col, anchor = np.nonzero(scores > score_threshold)
    t = t[row, col, anchor]
    anchors = np.asarray(ANCHORS, np.float64)[anchor]
    centre_x = (col + _sigmoid(t[:, 0])) / cells * correct_x
    centre_y = (row + _sigmoid(t[:, 1])) / cells * correct_y
    box_w = np.exp(t[:, 2]) * anchors[:, 0] / cells * correct_x
    box_h = np.exp(t[:, 3]) * anchors[:, 1] / cells * correct_y
    x1, y1 = centre_x - box_w / 2, centre_y - box_h / 2
    relative = np.stack([x1, y1, x1 + box_w, y1 + box_h], axis=1)
    return relative * np.array([width, height, width, height], np.float64), scores[row, col, anchor]


# --------------------------------------------------------------------------- the whole detector


def _threshold(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in (0, 1), got {type(value).__name__} {value!r:.40}")
    if not 0 < float(value) < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def detect_faces(image, input_size: int = DEFAULT_INPUT_SIZE, score_threshold: float = SCORE_THRESHOLD,
                 iou_threshold: float = IOU_THRESHOLD, model: Model | None = None) -> list[Face]:
    """The faces in one photo, best score first: a list of ``Face(box, score)``.

    Args:
        image: (H, W, 3) RGB, uint8 or floats on the 0..255 scale (see ``check_image``).
        input_size: the square network input, a multiple of 32 (face-api's 416 by default;
            smaller is faster, larger finds smaller faces).
        score_threshold: keep boxes whose score (the sigmoid of objectness) exceeds it.
        iou_threshold: of two boxes overlapping by more than this IoU, the lower-scoring goes.
        model: a detector from ``load_tiny_face_detector`` (default: the shipped weights,
            built once per input size and kept).

    Returns:
        ``[Face(box=(x1, y1, x2, y2), score), ...]``: corners in the photo's pixels, as floats.
    """
    input_size = check_input_size(input_size)
    score_threshold = _threshold(score_threshold, "score_threshold")
    iou_threshold = _threshold(iou_threshold, "iou_threshold")
    image = check_image(image)
    net = _shipped_detector(input_size) if model is None else model
    grid = net(preprocess(image, input_size))
    boxes, scores = decode_grid(grid, image.shape, input_size, score_threshold)
    if len(scores) == 0:
        return []
    # face-api suppresses on the boxes scaled to the square input; IoU is the same at any scale
    keep = ops.nms(boxes, scores, iou_threshold)
    return [Face(tuple(float(v) for v in boxes[i]), float(scores[i])) for i in keep]
