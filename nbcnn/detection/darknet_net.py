"""A darknet network as a small graph of nbcnn layers: forward keeps what routes need, backward
runs the graph in reverse.

Darknet numbers its layers 0, 1, 2, ... in cfg order. Most layers read the previous one;
a ``[route]`` reads any earlier ones (``layers = -1, 8``) and concatenates them on
channels, which makes the network a graph rather than a chain: YOLOv3-tiny's second head
reads layer 8 again, long after the first head. So ``DarknetNetwork`` keeps a list of
nodes, each ``(layer, inputs)`` with ``inputs`` the indices it reads (-1: the image):

    forward(x)   runs the nodes in order, keeping only the outputs a later route needs (and
                 the ones asked for); returns the yolo heads' outputs (or those asked for)
    backward(g)  runs the nodes in reverse; where an output fed several layers (layer 8 feeds
                 layer 9 and the route at 20) the gradients coming back are summed; returns
                 dX, the gradient of the input image (style transfer runs gradients to it)

A ``[convolutional]`` section becomes a ``Chain`` of ``Conv2D`` (no bias when batch norm
follows: darknet's biases are then batch norm's beta), ``DarknetBatchNorm`` (darknet's
epsilon placement) and its activation (``LeakyReLU(0.1)`` for "leaky"); ``[maxpool]`` a
``MaxPooling2D`` padded at the bottom/right only (darknet's size-2 stride-1 pool keeps
13 x 13; padding never wins a max); ``[upsample]`` an ``UpSampling2D``; ``[route]`` a
``Route``; ``[yolo]`` a ``YoloLayer``. Every arithmetic step runs on the dispatcher's kernels,
so the network runs on the python, cpu or cuda backend.

Build one with ``nbcnn.weights.darknet.load_darknet(cfg, weights)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..backend import to_host
from .yolo import YoloLayer


@dataclass
class Node:
    """One darknet layer: what it is, the nbcnn layer that computes it, which outputs it reads."""

    index: int
    kind: str          # convolutional, maxpool, upsample, route, yolo
    layer: L.Layer
    inputs: list       # absolute layer indices; -1 is the input image
    description: str = ""


def _activation(name: str):
    return {"leaky": lambda: L.LeakyReLU(0.1), "relu": L.ReLU, "logistic": lambda: L.Activation("sigmoid"),
            "tanh": lambda: L.Activation("tanh"), "linear": lambda: None}[name]()


def _host(a):
    return np.asarray(to_host(a))


class DarknetNetwork(L.Layer):
    """A darknet network built from nbcnn layers (see the module docstring).

    Attributes: ``nodes`` (one per darknet layer), ``input_shape`` (H, W, C), ``names`` (class
    names, if given), ``header`` (the weights file's version and images seen, once loaded).
    """

    def __init__(self, input_shape, nodes, name: str | None = "darknet"):
        super().__init__(name)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.nodes: list[Node] = list(nodes)
        self.names: list[str] | None = None
        self.header = None
        self._last_outputs: list[int] = []
        # outputs a node other than the next one reads: kept during forward
        self._kept = {j for node in self.nodes for j in node.inputs if j >= 0 and j != node.index - 1}
        rng = np.random.default_rng(0)
        shapes: dict[int, tuple] = {-1: self.input_shape}
        for node in self.nodes:
            inputs = [shapes[j] for j in node.inputs]
            shapes[node.index] = tuple(node.layer.build(inputs if node.kind == "route" else inputs[0], rng))
        self.output_shape = shapes[self.nodes[-1].index]
        self.shapes = shapes
        L.assign_paths(self)

    @classmethod
    def from_specs(cls, input_shape, specs) -> "DarknetNetwork":
        """Nodes for the ``LayerSpec``s of ``nbcnn.weights.darknet.layer_specs``."""
        nodes = []
        for spec in specs:
            o = spec.options
            if spec.kind == "convolutional":
                chain = [L.Conv2D(o["filters"], o["size"], strides=o["stride"], padding=o["padding"],
                                  use_bias=not o["batch_normalize"], kernel_initializer="he_normal")]
                if o["batch_normalize"]:
                    chain.append(L.DarknetBatchNorm())
                act = _activation(o["activation"])
                if act is not None:
                    chain.append(act)
                layer = L.Chain(chain)
            elif spec.kind == "maxpool":
                layer = L.MaxPooling2D(o["size"], strides=o["stride"], padding=o["padding"])
            elif spec.kind == "upsample":
                layer = L.UpSampling2D(o["stride"])
            elif spec.kind == "route":
                layer = L.Route(o["layers"])
            elif spec.kind == "yolo":
                layer = YoloLayer(o["anchors"], o["mask"], o["classes"])
            else:  # pragma: no cover - layer_specs refused it
                raise ValueError(f"cannot build a [{spec.kind}] layer")
            nodes.append(Node(spec.index, spec.kind, layer, list(spec.inputs), spec.describe()))
        return cls(input_shape, nodes)

    # --- parameters
    def sublayers(self):
        return [node.layer for node in self.nodes]

    def set_darknet_weights(self, params: dict) -> None:
        """Fill the conv layers from ``read_weights``' ``{index: {"biases", "scales", ...}}``."""
        for node in self.nodes:
            if node.kind != "convolutional":
                continue
            p = params[node.index]
            conv = node.layer.layers[0]
            if conv.params["W"].shape != p["weights"].shape:
                raise ValueError(f"layer {node.index}: weights of shape {p['weights'].shape} for a conv "
                                 f"of shape {conv.params['W'].shape}")
            conv.params["W"] = p["weights"]
            bn = node.layer.layers[1] if len(node.layer.layers) > 1 else None
            if isinstance(bn, L.DarknetBatchNorm):
                bn.params["gamma"], bn.params["beta"] = p["scales"], p["biases"]
                bn.state["moving_mean"], bn.state["moving_var"] = p["rolling_mean"], p["rolling_variance"]
            else:
                conv.params["b"] = p["biases"]

    @property
    def yolo_layers(self) -> list[tuple[int, YoloLayer]]:
        """(index, layer) of every yolo head, in cfg order."""
        return [(node.index, node.layer) for node in self.nodes if node.kind == "yolo"]

    # --- computing
    def _resolve(self, outputs) -> list[int]:
        if outputs is None:
            found = [i for i, _ in self.yolo_layers]
            return found or [self.nodes[-1].index]
        n = len(self.nodes)
        resolved = []
        for i in outputs:
            if not -n <= int(i) < n:
                raise ValueError(f"output layer {i} does not exist: the network has layers 0 to {n - 1}")
            resolved.append(int(i) % n)
        return resolved

    def forward(self, x, training: bool = False, outputs=None):
        """Run the network on x (N, H, W, C); returns the list of the yolo heads' outputs, in cfg
        order (or of the layers listed in ``outputs``: indices, negative from the end).

        A yolo head's output has the conv's shape (N, H', W', anchors * (5 + classes)), with
        the logistic applied to x, y, objectness and the class scores (as darknet's yolo layer).
        """
        if not hasattr(x, "__cuda_array_interface__") and not hasattr(x, "copy_to_host"):
            x = np.asarray(x)
        if len(x.shape) != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"this darknet network takes (N, {', '.join(map(str, self.input_shape))}) images "
                             f"(NHWC), got shape {tuple(x.shape)}")
        wanted = self._resolve(outputs)
        keep = self._kept | set(wanted)
        stop = max(wanted)
        kept: dict[int, object] = {-1: x}
        prev = x
        for node in self.nodes[:stop + 1]:
            inputs = [prev if j == node.index - 1 else kept[j] for j in node.inputs]
            out = node.layer.forward(inputs if node.kind == "route" else inputs[0], training)
            if node.index in keep:
                kept[node.index] = out
            prev = out
        self._last_outputs = wanted
        return [kept[i] for i in wanted]

    def __call__(self, x, training: bool = False, outputs=None):
        return self.forward(x, training, outputs)

    def backward(self, grads):
        """Gradients of the last forward's outputs -> dX, the gradient of the input image.

        ``grads``: a list matching what ``forward`` returned (None where an output has no
        gradient), or a dict ``{layer index: gradient}``. Each layer's ``grads`` are filled on
        the way. Where one output fed several layers, their gradients are added.
        """
        if isinstance(grads, dict):
            items = [(int(i) % len(self.nodes), g) for i, g in grads.items()]
        else:
            grads = list(grads)
            if len(grads) != len(self._last_outputs):
                raise ValueError(f"backward got {len(grads)} gradients for the {len(self._last_outputs)} outputs "
                                 f"of the last forward (layers {self._last_outputs})")
            items = list(zip(self._last_outputs, grads))
        pending: dict[int, np.ndarray] = {}

        def add(j, g):
            g = _host(g)
            pending[j] = g if j not in pending else pending[j] + g

        for i, g in items:
            if g is not None:
                add(i, g)
        if not pending:
            raise ValueError("backward needs at least one gradient")
        for node in reversed(self.nodes[:max(pending) + 1]):
            if node.index not in pending:
                continue  # nothing flows back through this layer
            d = node.layer.backward(pending.pop(node.index))
            for j, g in zip(node.inputs, d if node.kind == "route" else [d]):
                add(j, g)
        return pending.get(-1)

    # --- describing
    def summary(self, print_fn=print) -> str:
        """darknet's layer table: index, kind, filters, size/stride, input -> output (W x H x C)."""
        lines = [f"darknet network, input {self.input_shape[1]} x {self.input_shape[0]} x {self.input_shape[2]}"]
        lines += [node.description for node in self.nodes]
        lines.append(f"{self.count_params():,} numbers ({sum(1 for n in self.nodes if n.kind == 'convolutional')} "
                     f"convolutional layers, {len(self.yolo_layers)} yolo heads)")
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self) -> str:
        return f"DarknetNetwork({len(self.nodes)} layers, input {self.input_shape})"
