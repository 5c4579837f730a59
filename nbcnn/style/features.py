"""The feature network of style transfer: a pretrained ConvNet's first layers, run forward to the
layers whose activations the costs read, and backward to the pixels of the image.

Gatys et al. use VGG-19 trained on ImageNet; no ImageNet weights can be had offline here, but
the COCO-trained YOLOv3-tiny can (``nbcnn weights yolov3-tiny``), and its backbone is VGG-like::

    layer  0  conv 3x3, 16  + leaky   256 x 256     (sizes for a 256 x 256 image)
           1  maxpool 2/2             128 x 128
           2  conv 3x3, 32  + leaky   128 x 128
           3  maxpool                  64 x 64
           4  conv 3x3, 64  + leaky    64 x 64
           5  maxpool                  32 x 32
           6  conv 3x3, 128 + leaky    32 x 32
           7  maxpool                  16 x 16
           8  conv 3x3, 256 + leaky    16 x 16
           9  maxpool                   8 x 8
          10  conv 3x3, 512 + leaky     8 x 8
          11  maxpool 2/1               8 x 8
          12  conv 3x3, 1024 + leaky    8 x 8
          13  conv 1x1, 256, 14 conv 3x3, 512, 15 conv 1x1, 255 (the first yolo head's input)

Layers are darknet's numbers (``nbcnn detect``'s network summary prints them). Any darknet
cfg/weights pair loads the same way (``load_feature_network(cfg=..., weights=...)``), darknet's
own ``vgg-conv.cfg`` included; only the chain of layers up to the last one asked for is used,
so a route or yolo layer must come after it.

``FeatureNetwork`` differs from the detector (``nbcnn.detection.darknet_net.DarknetNetwork``) in
two ways, both for speed, neither for the numbers:

- batch norm is folded into the convolution it follows (frozen statistics make it an affine
  map per channel): ``W' = W * s``, ``b' = beta - mean * s`` with
  ``s = gamma / (sqrt(var) + 1e-6)`` (darknet's epsilon placement), computed in float64;
- backward computes the gradient of the input only (``nbcnn.conv2d_backward_input``): the
  weights are frozen, and their gradients would double the work.

Any image size works: the convolutions and pools take their shapes from the input. ``tests/
test_style_features.py`` checks the forward against the detector's and the whole backward
against finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import layers as L
from .. import ops
from ..backend import to_host


@dataclass
class Stage:
    """One layer of the chain: ``kind`` is "conv", "maxpool" or "upsample"."""

    index: int
    kind: str
    W: np.ndarray | None = None          # conv: (f, f, C_in, C_out), batch norm folded in
    b: np.ndarray | None = None          # conv: (C_out,)
    stride: object = 1
    pad: object = 0
    activation: str = "linear"           # conv: linear, leaky, relu, logistic, tanh
    slope: float = 0.1                   # leaky's
    size: object = 2                     # maxpool window, upsample factor
    description: str = ""
    _by_dtype: dict = field(default_factory=dict, repr=False)

    def params(self, dtype):
        """W and b in ``dtype`` (float64 images for gradient checks get float64 weights), kept."""
        key = np.dtype(dtype)
        if key not in self._by_dtype:
            self._by_dtype[key] = (np.ascontiguousarray(self.W, key), np.ascontiguousarray(self.b, key))
        return self._by_dtype[key]


_ACTIVATIONS = {
    "linear": (None, None),
    "leaky": (ops.leaky_relu, ops.leaky_relu_backward),
    "relu": (ops.relu, ops.relu_backward),
    "logistic": (ops.sigmoid, ops.sigmoid_backward),
    "tanh": (ops.tanh, ops.tanh_backward),
}


def _fold(conv: L.Conv2D, bn) -> tuple[np.ndarray, np.ndarray]:
    """A conv and the batch norm after it as one conv (float64 arithmetic, float32 result)."""
    W = conv.params["W"].astype(np.float64)
    b = conv.params["b"].astype(np.float64) if conv.use_bias else np.zeros(W.shape[3])
    if bn is None:
        return W.astype(np.float32), b.astype(np.float32)
    if isinstance(bn, L.DarknetBatchNorm):
        scale = bn.params["gamma"].astype(np.float64) / ops.darknet_denominator(bn.state["moving_var"], bn.epsilon)
    elif isinstance(bn, L.BatchNormalization):
        scale = bn.params["gamma"].astype(np.float64) / np.sqrt(bn.state["moving_var"].astype(np.float64)
                                                                 + bn.epsilon)
    else:  # pragma: no cover - _conv_stage only passes the two
        raise TypeError(f"cannot fold {type(bn).__name__}")
    mean = bn.state["moving_mean"].astype(np.float64)
    W_folded = W * scale
    b_folded = (b - mean) * scale + bn.params["beta"].astype(np.float64)
    return W_folded.astype(np.float32), b_folded.astype(np.float32)


def _conv_stage(index: int, chain: L.Chain, description: str) -> Stage:
    conv, rest = chain.layers[0], list(chain.layers[1:])
    bn = rest.pop(0) if rest and isinstance(rest[0], (L.DarknetBatchNorm, L.BatchNormalization)) else None
    activation, slope = "linear", 0.1
    if rest:
        act = rest.pop(0)
        if isinstance(act, L.LeakyReLU):
            activation, slope = "leaky", act.negative_slope
        elif isinstance(act, L.Activation) and act.kind in ("relu", "sigmoid", "tanh"):
            activation = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh"}[act.kind]
        else:
            raise ValueError(f"layer {index}: cannot read the activation {act!r}")
    if rest:
        raise ValueError(f"layer {index}: unexpected layers after the activation: {rest}")
    W, b = _fold(conv, bn)
    return Stage(index, "conv", W, b, conv.strides, conv.padding, activation, slope, description=description)


class FeatureNetwork:
    """The chain of layers 0..``last`` of a darknet network, batch norm folded, for style transfer.

    ``forward(x, outputs)`` returns ``{layer: activations}`` for the layers asked for and keeps
    what backward needs; ``backward({layer: dJ/da})`` returns ``dJ/dx``, the gradient of the
    image (the gradients of several layers are added where the chain passes them).
    """

    def __init__(self, stages: list[Stage], name: str = "features"):
        self.stages = list(stages)
        self.name = name
        self._tape: list = []
        self._x_shape = None

    @classmethod
    def from_darknet(cls, network, last: int | None = None, name: str | None = None) -> "FeatureNetwork":
        """The layers 0..``last`` (default: as far as the chain goes) of a ``DarknetNetwork``."""
        stages = []
        for node in network.nodes:
            if last is not None and node.index > last:
                break
            chain_input = node.inputs == [node.index - 1] or (node.index == 0 and node.inputs == [-1])
            if not chain_input or node.kind not in ("convolutional", "maxpool", "upsample"):
                if last is None:
                    break
                raise ValueError(f"layer {node.index} ({node.kind}, reading layers {node.inputs}) is not part of the "
                                 f"network's first chain of conv/maxpool layers: style transfer can read layers 0 to "
                                 f"{node.index - 1} of this network")
            if node.kind == "convolutional":
                stages.append(_conv_stage(node.index, node.layer, node.description))
            elif node.kind == "maxpool":
                pool = node.layer
                stages.append(Stage(node.index, "maxpool", stride=pool.strides, pad=pool.padding,
                                    size=pool.pool_size, description=node.description))
            else:
                stages.append(Stage(node.index, "upsample", size=node.layer.size, description=node.description))
        if not stages:
            raise ValueError("the network has no conv/maxpool layers at its start to read features from")
        return cls(stages, name or getattr(network, "name", "features"))

    @property
    def last(self) -> int:
        return self.stages[-1].index

    def conv_layers(self) -> list[int]:
        return [s.index for s in self.stages if s.kind == "conv"]

    def describe(self) -> str:
        return "\n".join(s.description or f"{s.index:3d} {s.kind}" for s in self.stages)

    def _check_layers(self, outputs) -> list[int]:
        wanted = sorted({int(i) for i in outputs})
        for i in wanted:
            if not 0 <= i <= self.last:
                raise ValueError(f"layer {i} is not in this feature network (layers 0 to {self.last}; conv layers "
                                 f"{self.conv_layers()})")
        return wanted

    def forward(self, x, outputs) -> dict[int, np.ndarray]:
        """Run the chain on images x (N, H, W, C) up to the last layer of ``outputs``;
        returns ``{layer: activations (N, h, w, c)}``."""
        x = np.asarray(to_host(x))
        if x.ndim != 4:
            raise ValueError(f"the feature network takes images (N, H, W, C), got shape {x.shape}")
        wanted = self._check_layers(outputs)
        self._x_shape, self._tape = x.shape, []
        found = {}
        for stage in self.stages:
            if stage.index > wanted[-1]:
                break
            x_in = x
            if stage.kind == "conv":
                W, b = stage.params(x.dtype)
                z = ops.conv2d(x, W, b, stage.stride, stage.pad)
                act = _ACTIVATIONS[stage.activation][0]
                if act is None:
                    x = z
                elif stage.activation == "leaky":
                    x = act(z, stage.slope)
                else:
                    x = act(z)
                # leaky and relu keep the sign of z, so their backward can read the output instead
                keep = x if stage.activation in ("leaky", "relu") else z
                self._tape.append((stage, x_in.shape, keep, None))
            elif stage.kind == "maxpool":
                x, argmax = ops.max_pool2d(x, stage.size, stage.stride, stage.pad, return_argmax=True)
                self._tape.append((stage, x_in.shape, x_in, argmax))
            else:
                x = ops.upsample2d(x, stage.size)
                self._tape.append((stage, x_in.shape, x_in, None))
            x = to_host(x)
            if stage.index in wanted:
                found[stage.index] = x
        return found

    def __call__(self, x, outputs):
        return self.forward(x, outputs)

    def backward(self, grads: dict) -> np.ndarray:
        """``{layer: dJ/da}`` for layers of the last forward -> ``dJ/dx``, shaped like its images."""
        if not self._tape:
            raise RuntimeError("backward needs a forward first")
        done = {stage.index for stage, *_ in self._tape}
        for i in grads:
            if int(i) not in done:
                raise ValueError(f"layer {i} was not computed by the last forward (layers {sorted(done)})")
        pending = {int(i): np.asarray(to_host(g)) for i, g in grads.items() if g is not None}
        if not pending:
            raise ValueError("backward needs at least one gradient")
        dy = None
        for stage, x_shape, kept, argmax in reversed(self._tape):
            if stage.index in pending:
                g = pending.pop(stage.index)
                if dy is None:
                    dy = g
                else:
                    dy += g  # dy is the previous stage's fresh output: added in place, no copy
            if dy is None:
                continue  # nothing flows back from this deep
            if stage.kind == "conv":
                backward = _ACTIVATIONS[stage.activation][1]
                if backward is not None:
                    dy = backward(dy, kept, stage.slope) if stage.activation == "leaky" else backward(dy, kept)
                W, _ = stage.params(dy.dtype)
                dy = ops.conv2d_backward_input(dy, W, x_shape, stage.stride, stage.pad)
            elif stage.kind == "maxpool":
                dy = ops.max_pool2d_backward(dy, kept, stage.size, stage.stride, stage.pad, argmax=argmax)
            else:
                dy = ops.upsample2d_backward(dy, kept, stage.size)
            dy = to_host(dy)
        return dy


def load_feature_network(name: str = "yolov3-tiny", cfg=None, weights=None, last: int | None = 15) -> FeatureNetwork:
    """The first layers (0..``last``) of a pretrained darknet network as a ``FeatureNetwork``.

    Default: YOLOv3-tiny from the cache (``nbcnn weights yolov3-tiny`` fetches it; a missing file
    raises ``WeightsNotFound`` naming that command). ``cfg``/``weights``: any darknet pair
    instead (both paths), e.g. darknet's ``vgg-conv.cfg`` and ``vgg-conv.weights``.
    """
    from ..weights import load_darknet, load_pretrained

    if cfg is not None and weights is not None:
        network = load_darknet(cfg, weights)
    else:
        network = load_pretrained(name, cfg=cfg, weights=weights)
    last = min(last, network.nodes[-1].index) if last is not None else None
    try:
        return FeatureNetwork.from_darknet(network, last, name=name if cfg is None else str(cfg))
    except ValueError:
        return FeatureNetwork.from_darknet(network, None, name=name if cfg is None else str(cfg))
