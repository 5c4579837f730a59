"""dlib's ResNet face encoder (face-api's port of it), built from nbcnn layers: 150x150 RGB -> 128-d.

    encoder = load_dlib_encoder()                     # the weights shipped in nbcnn/assets/faceapi
    e = encoder.embed(chips)                          # (N, 150, 150, 3) uint8 face crops -> (N, 128)
    encoder.distances(e)                              # Euclidean; same person below 0.6

The network (face-api's ``FaceRecognitionNet``, whose weights are dlib's
``dlib_face_recognition_resnet_model_v1`` converted to TF.js), NHWC, with its sizes::

    x = (pixels - [122.782, 117.001, 104.298]) / 255        150 x 150 x 3
    conv 7x7 stride 2 "valid", scale, ReLU                    72 x 72 x 32
    max pool 3x3 stride 2 "valid"                             35 x 35 x 32
    3 residual blocks of 32                                   35 x 35 x 32
    down-sampling block to 64, then 3 residual blocks of 64   17 x 17 x 64
    down-sampling block to 128, then 2 residual blocks        8 x 8 x 128
    down-sampling block to 256, then 2 residual blocks        4 x 4 x 256
    down-sampling block 256 -> 256                            2 x 2 x 256
    mean over rows and columns                                256
    x @ fc (256 x 128), no bias                               128

    residual block       relu(x + scale(conv3x3(relu(scale(conv3x3(x))))))       "same" convs
    down-sampling block  main     = scale(conv3x3 "same"(relu(scale(conv3x3 stride 2 "valid"(x)))))
                         shortcut = avgpool 2x2 stride 2 (x), with as many zero channels appended
                                    as the block adds (none in the last block)
                         where main is one row/column smaller than the shortcut (8 -> 3 against 4,
                         4 -> 1 against 2) one zero row is appended at its bottom and one zero
                         column at its right; then relu(main + shortcut)

"scale" is dlib's affine layer, a per-channel ``y = x * s + o`` (batch norm frozen at training's
end). It follows a convolution everywhere, so it is folded into that convolution's weights:
``conv(x, W) * s + (b * s + o) = conv(x, W * s) + (b * s + o)`` (exact in real numbers, a
rounding's difference in float32), and each conv+scale is one ``Conv2D``.

Input scaling: dlib computes ``(x - mean) / 256``; face-api, whose weights and outputs are the
reference here (tests/data/faceapi_oracle.json), divides by 255, so nbcnn does as face-api.

Distance: the Euclidean distance ``||e1 - e2||`` (not squared), as dlib and face-api use it;
dlib's threshold is 0.6 (its network was trained so that same-person pairs fall below it).
"""

from __future__ import annotations

import contextlib
import hashlib
from importlib import resources

import numpy as np

from .. import layers as L
from ..backend import to_host
from ..model import Model
from ..weights.tfjs import read_tfjs_model

MEAN_RGB = (122.782, 117.001, 104.298)
PIXEL_SCALE = 255.0     # face-api's divisor (dlib's own is 256; see the module docstring)
INPUT_SHAPE = (150, 150, 3)
EMBEDDING_DIM = 128
THRESHOLD = 0.6         # dlib's: same person when the Euclidean distance is below it
DISTANCE = "euclidean"  # ||e1 - e2||, not squared
MANIFEST = "face_recognition_model-weights_manifest.json"

# (name in the manifest, channels, down-sampling?) in network order
BLOCKS = (
    ("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
    ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
    ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
    ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)


def shipped_manifest():
    """The face_recognition_model manifest shipped in nbcnn/assets/faceapi (a Traversable path)."""
    return resources.files("nbcnn").joinpath("assets", "faceapi", MANIFEST)


class DownsamplingResidual(L.Layer):
    """dlib's down-sampling residual block (see the module docstring for the picture).

    ``main``: the two convolutions (a ``Chain``). The shortcut has no parameters: a 2x2
    average pool with zero channels appended. Output: ``(H // 2, W // 2, filters)``, the pool's
    rows and columns; main's ``(H - 3) // 2 + 1`` is padded up to them when one smaller
    (H = 8: 3 -> 4; H = 4: 1 -> 2). Backward: the gradient through the final ReLU goes to main
    without the padded row/column and to the pool without the appended channels."""

    def __init__(self, main, name: str | None = None):
        super().__init__(name)
        self.main = main if isinstance(main, L.Chain) else L.Chain(main)
        self.pool = L.AveragePooling2D(2, strides=2)

    def sublayers(self):
        return [self.main, self.pool]

    def build(self, input_shape, rng):
        self.input_shape = tuple(input_shape)
        main = self.main.build(input_shape, rng)
        pooled = self.pool.build(input_shape, rng)
        if main[0] > pooled[0] or main[1] > pooled[1] or pooled[0] - main[0] > 1 or pooled[1] - main[1] > 1 \
                or main[2] < pooled[2]:
            raise ValueError(f"DownsamplingResidual: the main path gives {main} and the pooled shortcut {pooled}: "
                             "the main path may be at most one row/column smaller and must not have fewer channels")
        self.output_shape = (pooled[0], pooled[1], main[2])
        return self.output_shape

    def forward(self, x, training=False):
        z = np.asarray(to_host(self.main.forward(x, training)))
        s = np.asarray(to_host(self.pool.forward(x, training)))
        N, H, W, C = s.shape
        # the main path, zero-padded at the bottom/right to the shortcut's rows and columns
        z = np.pad(z, ((0, 0), (0, H - z.shape[1]), (0, W - z.shape[2]), (0, 0)))
        # the shortcut, with zero channels appended up to the main path's
        s = np.pad(s, ((0, 0), (0, 0), (0, 0), (0, z.shape[3] - C)))
        self._mask = (z + s) > 0
        return np.where(self._mask, z + s, np.zeros((), z.dtype))

    def backward(self, dy):
        dy = np.asarray(to_host(dy))
        dy = np.where(self._mask, dy, np.zeros((), dy.dtype))  # through the final ReLU
        h, w = self.main.output_shape[0], self.main.output_shape[1]
        dx = np.asarray(to_host(self.main.backward(np.ascontiguousarray(dy[:, :h, :w, :]))))
        C = self.pool.output_shape[2]
        return dx + np.asarray(to_host(self.pool.backward(np.ascontiguousarray(dy[..., :C]))))


def _conv_scale(weights: dict, prefix: str, stride: int, padding) -> L.Conv2D:
    """One ``Conv2D`` for ``prefix``'s conv + scale, the scale folded into it (see the module docstring)."""
    wanted = [f"{prefix}/conv/filters", f"{prefix}/conv/bias", f"{prefix}/scale/weights", f"{prefix}/scale/biases"]
    missing = [name for name in wanted if name not in weights]
    if missing:
        raise ValueError(f"these weights are not face-api's face_recognition_model: no tensor {missing[0]!r}")
    W = weights[f"{prefix}/conv/filters"]
    s, o = weights[f"{prefix}/scale/weights"], weights[f"{prefix}/scale/biases"]
    layer = L.Conv2D(W.shape[3], (W.shape[0], W.shape[1]), strides=stride, padding=padding, name=prefix)
    # folded in float64 and rounded once
    layer._folded = ((W.astype(np.float64) * s).astype(np.float32),
                     (weights[f"{prefix}/conv/bias"].astype(np.float64) * s + o).astype(np.float32))
    return layer


def _block(weights: dict, name: str, down: bool) -> L.Layer:
    first = _conv_scale(weights, f"{name}/conv1", 2 if down else 1, "valid" if down else "same")
    second = _conv_scale(weights, f"{name}/conv2", 1, "same")
    main = [first, L.ReLU(), second]
    return DownsamplingResidual(main, name=name) if down else L.Residual(main, activation="relu", name=name)


def build_dlib_resnet(weights: dict) -> Model:
    """The network as an nbcnn ``Model`` (150x150x3 normalised input -> 128), filled with ``weights``
    (face-api's tensor names, as ``read_tfjs_model`` returns them)."""
    layers = [_conv_scale(weights, "conv32_down", 2, "valid"), L.ReLU(), L.MaxPooling2D(3, strides=2)]
    layers += [_block(weights, name, down) for name, _, down in BLOCKS]
    layers += [L.GlobalAveragePooling2D(), L.Dense(EMBEDDING_DIM, name="fc")]
    model = Model(layers, input_shape=INPUT_SHAPE, name="dlib_resnet")
    for _, layer in model.network.named_layers():
        folded = layer.__dict__.pop("_folded", None)
        if folded is not None:
            _set(layer, "W", folded[0])
            _set(layer, "b", folded[1])
    fc = model.layers[-1]
    if "fc" not in weights:
        raise ValueError("these weights are not face-api's face_recognition_model: no tensor 'fc'")
    _set(fc, "W", weights["fc"])
    _set(fc, "b", np.zeros(EMBEDDING_DIM, np.float32))  # face-api's fc has no bias
    return model


def _set(layer: L.Layer, key: str, value: np.ndarray) -> None:
    if layer.params[key].shape != value.shape:
        raise ValueError(f"{layer.name or type(layer).__name__}: weights {key} of shape {value.shape}, "
                         f"the layer wants {layer.params[key].shape}")
    layer.params[key] = np.ascontiguousarray(value, dtype=np.float32)


def normalise(chips) -> np.ndarray:
    """(N, 150, 150, 3) pixel values 0..255 (uint8 or float) -> the network's input, float32."""
    x = np.asarray(chips)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != INPUT_SHAPE:
        raise ValueError(f"the dlib encoder takes (N, 150, 150, 3) RGB face crops, got shape {np.shape(chips)}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"face crops must be numbers 0..255, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("face crops hold NaN or infinite values")
    return (x - np.asarray(MEAN_RGB, np.float32)) / np.float32(PIXEL_SCALE)


class DlibEncoder:
    """The pretrained face encoder with its verification rule (Euclidean distance, threshold 0.6).

    The face database and ``nbcnn.triplet.recognition`` use it as they use a trained
    ``FaceEncoder``: ``embed``, ``distances``, ``threshold``, ``distance``, ``embedding_dim``,
    ``encoder_id``. Its input is a face crop, not a whole photo: see ``nbcnn.triplet.faces``."""

    kind = "dlib"
    distance = DISTANCE
    threshold = THRESHOLD
    embedding_dim = EMBEDDING_DIM
    input_shape = INPUT_SHAPE

    def __init__(self, manifest_path=None):
        self.manifest_path = shipped_manifest() if manifest_path is None else manifest_path
        # the shipped file through importlib.resources (a real path even from a zipped install)
        shipped = manifest_path is None
        with resources.as_file(self.manifest_path) if shipped else contextlib.nullcontext(manifest_path) as path:
            weights = read_tfjs_model(path)
        self.model = build_dlib_resnet(weights)
        digest = hashlib.sha256(f"dlib_resnet_v1|{DISTANCE}|{MEAN_RGB}/{PIXEL_SCALE}".encode())
        for name in sorted(weights):
            digest.update(name.encode() + np.ascontiguousarray(weights[name]).tobytes())
        self._id = "dlib-" + digest.hexdigest()[:16]

    @property
    def encoder_id(self) -> str:
        """``dlib-`` and 16 hex digits of the sha256 of the weights and the input scaling."""
        return self._id

    def embed(self, chips, batch_size: int = 16) -> np.ndarray:
        """(N, 128) embeddings of (N, 150, 150, 3) face crops (pixel values 0..255)."""
        return np.asarray(self.model.predict(normalise(chips), batch_size=batch_size), np.float32)

    def distances(self, e1, e2=None) -> np.ndarray:
        """(N, M) Euclidean distances between the rows of ``e1`` and those of ``e2`` (default e1)."""
        e1 = np.asarray(to_host(e1), np.float64)
        e2 = e1 if e2 is None else np.asarray(to_host(e2), np.float64)
        return np.sqrt(((e1[:, None, :] - e2[None, :, :]) ** 2).sum(axis=2)).astype(np.float32)

    def pair_distances(self, e1, e2) -> np.ndarray:
        """(N,) Euclidean distances between row i of ``e1`` and row i of ``e2``."""
        d = np.asarray(e1, np.float64) - np.asarray(e2, np.float64)
        return np.sqrt((d ** 2).sum(axis=1)).astype(np.float32)

    def summary(self, print_fn=print) -> str:
        return self.model.summary(print_fn)


def load_dlib_encoder(manifest_path=None) -> DlibEncoder:
    """The dlib ResNet encoder, from the shipped weights or a face_recognition_model manifest."""
    return DlibEncoder(manifest_path)
