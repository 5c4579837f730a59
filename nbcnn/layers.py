"""Layers and blocks with Keras names: forward, backward, parameters and their gradients.

Every layer follows one small protocol:

    out_shape = layer.build(in_shape, rng)   # shapes without the batch axis; creates params
    y  = layer.forward(x, training)          # keeps what backward needs
    dx = layer.backward(dy)                  # fills layer.grads, returns the gradient of x

``layer.params`` and ``layer.grads`` are dicts of arrays with the same keys; an optimiser
updates ``params[k]`` from ``grads[k]``. ``layer.trainable = False`` freezes a layer
(transfer learning): its gradients are still passed back to earlier layers but its own
parameters are left alone. ``layer.state`` holds non-trainable numbers that are saved with
the model (BatchNormalization's moving averages).

The arithmetic of convolution, pooling, dense, activations and batch norm runs on the
dispatcher's kernels (``nbcnn.ops``), so a model runs on whichever backend is chosen. The
bookkeeping (reshapes, BatchNorm's moving averages, dropout masks, adding a shortcut,
concatenating branches) is plain numpy.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from . import config, ops
from .backend import to_host
from .checks import int_arg, int_pair, output_size, padding as resolve_padding, real_arg

DTYPE = np.float32


# --------------------------------------------------------------------------- initialisers


def initialise(name: str, shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Weights drawn so activations keep their scale through depth.

    he_normal (ReLU nets): N(0, 2 / fan_in).  glorot_uniform (Keras' default, tanh/sigmoid):
    U(-l, l) with l = sqrt(6 / (fan_in + fan_out)).
    """
    _check_initialiser(name)
    if name == "he_normal":
        w = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    elif name == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, shape)
    return w.astype(DTYPE)


INITIALISERS = ("he_normal", "glorot_uniform")


def _check_initialiser(name) -> str:
    if name not in INITIALISERS:
        raise ValueError(f"unknown initialiser {name!r}; use 'he_normal' or 'glorot_uniform'")
    return name


def _host(a):
    return np.asarray(to_host(a))


def _to_config(value):
    """Constructor arguments as JSON-ready data (layers become their own configs)."""
    if isinstance(value, Layer):
        return value.get_config()
    if isinstance(value, (list, tuple)):
        return [_to_config(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_config(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_config(config):
    """Rebuild a layer (and the layers inside it) from ``get_config()`` output."""
    if isinstance(config, dict) and "class" in config and "config" in config:
        cls = LAYER_CLASSES.get(config["class"])
        if cls is None:
            raise ValueError(f"unknown layer class {config['class']!r} in a saved model")
        return cls(**{k: from_config(v) for k, v in config["config"].items()})
    if isinstance(config, list):
        return [from_config(v) for v in config]
    return config


# --------------------------------------------------------------------------- base


class BackwardBeforeForwardError(RuntimeError, AttributeError):
    """``backward`` called on a layer whose ``forward`` has not kept what backward needs.

    Also an AttributeError (what Python raised here before), so ``getattr(layer, "_x", None)``
    and ``hasattr`` keep working.
    """


class Layer:
    """The protocol every layer implements (see the module docstring)."""

    # what forward keeps for backward; reading one before any forward is the error above
    FORWARD_CACHE = frozenset({"_x", "_shape", "_cache", "_mask"})

    def __init_subclass__(cls, **kwargs):
        # Remember each layer's constructor arguments, so a saved model can be rebuilt from them.
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        @functools.wraps(init)
        def remembering_init(self, *args, **kw):
            if "_config" not in self.__dict__:
                bound = inspect.signature(init).bind(self, *args, **kw)
                bound.apply_defaults()
                self._config = {k: v for k, v in list(bound.arguments.items())[1:]}
            init(self, *args, **kw)

        cls.__init__ = remembering_init

    def get_config(self) -> dict:
        """``{"class": ..., "config": {constructor arguments}}``, nested layers included."""
        return {"class": type(self).__name__, "config": _to_config(self._config)}

    def __getattr__(self, attr):
        # Python calls this only for attributes that are not set: here, what backward reads
        # before any forward kept it (it used to be "AttributeError: 'Conv2D' object has no attribute '_x'").
        if attr in type(self).FORWARD_CACHE:
            raise BackwardBeforeForwardError(
                f"{self._describe()}.backward needs what its forward keeps ({attr}): call forward(x, "
                f"training=True) on the same batch first (model.backward follows model.forward)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def _describe(self) -> str:
        """``Conv2D`` or ``Conv2D 'C1'``: how error messages name this layer."""
        name = self.__dict__.get("name")
        return type(self).__name__ + (f" {name!r}" if name else "")

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.trainable = True
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        # False: backward may skip the input's gradient and return None (the first layer in
        # training: nothing needs d(loss)/d(image) there; style transfer keeps it True)
        self.need_input_grad = True

    def build(self, input_shape, rng: np.random.Generator):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    # --- bookkeeping used by summary(), optimisers and checkpoints
    def sublayers(self) -> list["Layer"]:
        return []

    def count_params(self, trainable_only: bool = False) -> int:
        if trainable_only and not self.trainable:
            return 0
        own = sum(p.size for p in self.params.values())
        if not trainable_only:
            own += sum(s.size for s in self.state.values())
        return own + sum(l.count_params(trainable_only) for l in self.sublayers())

    def macs(self) -> int:
        """Multiply-adds of one forward pass on one example."""
        return sum(l.macs() for l in self.sublayers())

    def named_layers(self, prefix: str = ""):
        """(path, layer) for this layer and every layer inside it, e.g. ("3.main.0", Conv2D)."""
        yield prefix, self
        for i, layer in enumerate(self.sublayers()):
            yield from layer.named_layers(f"{prefix}.{i}" if prefix else str(i))

    def parameters(self):
        """(path, layer, key) for every trainable parameter: frozen layers and their insides are skipped."""
        if not self.trainable:
            return
        for key in self.params:
            yield self._path, self, key
        for layer in self.sublayers():
            yield from layer.parameters()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def window_output_shape(input_shape, f_hw, strides, padding, channels, what: str = "window layer"):
    """(H_out, W_out, channels) of a conv or pool window on an (H, W, C) input:
    ``H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1`` (W_out likewise).

    A window larger than the padded input is refused here, when the model is built, naming
    the layer (``what``) and the shapes: the formula would give sizes of 0 or less."""
    if len(input_shape) != 3:
        raise ValueError(f"{what} expects (H, W, C) inputs, got shape {tuple(input_shape)}")
    H, W, _ = input_shape
    s = int_pair(strides, f"{what} strides", 1)
    p = resolve_padding(padding, (H, W), f_hw, s)
    if f_hw[0] > H + p.top + p.bottom or f_hw[1] > W + p.left + p.right:
        raise ValueError(f"{what}: its {f_hw[0]}x{f_hw[1]} window is larger than its input {H}x{W} "
                         f"(padded {H + p.top + p.bottom}x{W + p.left + p.right}; input shape "
                         f"{tuple(input_shape)}): use a smaller window, padding='same', or a larger input")
    return (output_size(H, f_hw[0], s[0], p.top, p.bottom), output_size(W, f_hw[1], s[1], p.left, p.right), channels)


# --------------------------------------------------------------------------- convolution


def _window_arguments(layer, kernel_size, strides, padding, use_bias, kernel_initializer) -> None:
    """Check and keep the window arguments Conv2D, DepthwiseConv2D and SeparableConv2D share:
    errors now, at construction, naming the layer's class; ``strides`` is kept as given (the
    ops take an int or a pair)."""
    what = type(layer).__name__
    layer.kernel_size = int_pair(kernel_size, f"{what} kernel_size", 1)  # 3, np.int64(3) or (3, 3)
    int_pair(strides, f"{what} strides", 1)
    layer.strides = strides
    layer.padding = padding
    layer.use_bias = use_bias
    layer.kernel_initializer = _check_initialiser(kernel_initializer)


def _check_hwc(layer, input_shape) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"{type(layer).__name__} expects (H, W, C) inputs, got shape {tuple(input_shape)}")


class Conv2D(Layer):
    """``filters`` convolutions of size ``kernel_size``, plus bias (NHWC).

    Output: ``H_out = (H + pad_top + pad_bottom - f) // stride + 1``; ``padding`` is "valid",
    "same" or ints as in ``nbcnn.conv2d``. Parameters: W ``(f_h, f_w, C_in, filters)`` and
    b ``(filters,)``: ``f_h * f_w * C_in * filters + filters`` numbers, however big the image.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        self.filters = int_arg(filters, "Conv2D filters")
        _window_arguments(self, kernel_size, strides, padding, use_bias, kernel_initializer)

    def compute_output_shape(self, input_shape):
        return window_output_shape(input_shape, self.kernel_size, self.strides, self.padding, self.filters,
                                   self._describe())

    def build(self, input_shape, rng):
        _check_hwc(self, input_shape)
        out = super().build(input_shape, rng)
        f_h, f_w = self.kernel_size
        c_in = input_shape[2]
        self.params["W"] = initialise(self.kernel_initializer, (f_h, f_w, c_in, self.filters),
                                      f_h * f_w * c_in, f_h * f_w * self.filters, rng)
        if self.use_bias:
            self.params["b"] = np.zeros(self.filters, DTYPE)
        return out

    def _bias(self):
        return self.params["b"] if self.use_bias else np.zeros(self.filters, DTYPE)

    def forward(self, x, training=False, activation=None):
        """``activation="relu"``: the ReLU of a following ``Activation("relu")`` in the same
        kernel (``Chain`` asks for it; see ``ops.conv2d``)."""
        self._x = x
        return ops.conv2d(x, self.params["W"], self._bias(), self.strides, self.padding, activation=activation)

    def backward(self, dy):
        # need_input_grad is switched off by the training loop for a network's first layer
        dx, dW, db = ops.conv2d_backward(dy, self._x, self.params["W"], self.strides, self.padding,
                                         need_dx=self.need_input_grad)
        self.grads["W"] = _host(dW)
        if self.use_bias:
            self.grads["b"] = _host(db)
        return dx

    def macs(self):
        H_out, W_out, K = self.output_shape
        return H_out * W_out * K * self.kernel_size[0] * self.kernel_size[1] * self.input_shape[2]


# --------------------------------------------------------------------------- pooling


class _Pool2D(Layer):
    forward_op = backward_op = None

    def __init__(self, pool_size=2, strides=None, padding="valid", name: str | None = None):
        super().__init__(name)
        self.pool_size = int_pair(pool_size, f"{type(self).__name__} pool_size", 1)
        if strides is not None:
            int_pair(strides, f"{type(self).__name__} strides", 1)
        self.strides = self.pool_size if strides is None else strides
        self.padding = padding

    def compute_output_shape(self, input_shape):
        return window_output_shape(input_shape, self.pool_size, self.strides, self.padding, input_shape[-1],
                                   self._describe())

    def forward(self, x, training=False):
        self._x = x
        return type(self).forward_op(x, self.pool_size, self.strides, self.padding)

    def backward(self, dy):
        return type(self).backward_op(dy, self._x, self.pool_size, self.strides, self.padding)


class MaxPooling2D(_Pool2D):
    """Max over each ``pool_size`` window (stride defaults to the window): no parameters."""

    forward_op, backward_op = staticmethod(ops.max_pool2d), staticmethod(ops.max_pool2d_backward)

    def forward(self, x, training=False):
        """In training, keeps where each max came from (the forward's argmax, as PyTorch keeps its
        indices), so ``backward`` routes the gradient without searching x again."""
        self._x, self._argmax, self._y = x, None, None
        if not training:
            return ops.max_pool2d(x, self.pool_size, self.strides, self.padding)
        p, self._argmax = ops.max_pool2d(x, self.pool_size, self.strides, self.padding, return_argmax=True)
        self._y = p  # for Chain's fused ReLU + max-pool backward
        return p

    def backward(self, dy):
        argmax = getattr(self, "_argmax", None)  # None after an inference forward: search x instead
        return ops.max_pool2d_backward(dy, self._x, self.pool_size, self.strides, self.padding, argmax=argmax)


class AveragePooling2D(_Pool2D):
    """Mean over each ``pool_size`` window (stride defaults to the window): no parameters."""

    forward_op, backward_op = staticmethod(ops.avg_pool2d), staticmethod(ops.avg_pool2d_backward)


MaxPool2D, AvgPool2D = MaxPooling2D, AveragePooling2D


class GlobalAveragePooling2D(Layer):
    """Mean over all rows and columns: (H, W, C) -> (C,). An average pool with f = (H, W)."""

    def compute_output_shape(self, input_shape):
        return (input_shape[2],)

    def forward(self, x, training=False):
        self._x = x
        N, H, W, C = x.shape
        return _host(ops.avg_pool2d(x, (H, W))).reshape(N, C)

    def backward(self, dy):
        N, H, W, C = self._x.shape
        return ops.avg_pool2d_backward(np.asarray(dy).reshape(N, 1, 1, C), self._x, (H, W))


# --------------------------------------------------------------------------- dense, flatten


class Flatten(Layer):
    """(H, W, C) -> (H * W * C,), row-major, as Keras does for NHWC."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return _host(x).reshape(x.shape[0], -1)

    def backward(self, dy):
        return np.asarray(dy).reshape(self._shape)


class Dense(Layer):
    """Fully connected ``y = x @ W + b``: ``D * units + units`` parameters."""

    def __init__(self, units: int, activation: str | None = None, kernel_initializer: str = "glorot_uniform",
                 name: str | None = None):
        super().__init__(name)
        self.units = int_arg(units, "Dense units")
        self.kernel_initializer = _check_initialiser(kernel_initializer)
        self.activation = Activation(activation) if activation else None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense expects flat (D,) inputs, got {tuple(input_shape)}: add a Flatten() first")
        return (self.units,)

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        d = input_shape[0]
        self.params["W"] = initialise(self.kernel_initializer, (d, self.units), d, self.units, rng)
        self.params["b"] = np.zeros(self.units, DTYPE)
        if self.activation is not None:
            self.activation.build(out, rng)
        return out

    def forward(self, x, training=False):
        self._x = x
        y = ops.dense(x, self.params["W"], self.params["b"])
        return self.activation.forward(y, training) if self.activation is not None else y

    def backward(self, dy):
        if self.activation is not None:
            dy = self.activation.backward(dy)
        dx, dW, db = ops.dense_backward(dy, self._x, self.params["W"])
        self.grads["W"], self.grads["b"] = _host(dW), _host(db)
        return dx

    def macs(self):
        return self.input_shape[0] * self.units


# --------------------------------------------------------------------------- activations


_ACTIVATIONS = {
    "relu": (ops.relu, ops.relu_backward),
    "sigmoid": (ops.sigmoid, ops.sigmoid_backward),
    "tanh": (ops.tanh, ops.tanh_backward),
    "softmax": (ops.softmax, ops.softmax_backward),
}


class Activation(Layer):
    """``Activation("relu" | "sigmoid" | "tanh" | "softmax")``, element by element (softmax per row)."""

    def __init__(self, kind: str, name: str | None = None):
        super().__init__(name)
        if kind not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {kind!r}; choose one of {sorted(_ACTIVATIONS)}")
        self.kind = kind

    def forward(self, x, training=False):
        self._x = x
        return _ACTIVATIONS[self.kind][0](x)

    def took_fused(self, a):
        """The layer before applied this ReLU in its own kernel (``Chain``): keep its output
        for the backward, whose mask ``a > 0`` is ``z > 0`` (a NaN is neither), and pass it on."""
        self._x = a
        return a

    def backward(self, dy):
        return _ACTIVATIONS[self.kind][1](dy, self._x)


def ReLU(name: str | None = None) -> Activation:
    return Activation("relu", name)


def Softmax(name: str | None = None) -> Activation:
    return Activation("softmax", name)


# --------------------------------------------------------------------------- normalisation, dropout


class BatchNormalization(Layer):
    """Normalise each channel over the batch (and rows/columns), then scale and shift.

    training:  x_hat = (x - mean_batch) / sqrt(var_batch + eps);  y = gamma * x_hat + beta
               moving_mean <- momentum * moving_mean + (1 - momentum) * mean_batch  (same for var)
    inference: the moving averages replace the batch statistics.
    Parameters gamma, beta (trainable) and the moving mean/var (state): 4 per channel.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, name: str | None = None):
        super().__init__(name)
        # epsilon > 0 keeps sqrt(var + epsilon) above 0 (epsilon=-1 gave NaN outputs)
        self.momentum = real_arg(momentum, "BatchNormalization momentum", 0.0, 1.0)
        self.epsilon = real_arg(epsilon, "BatchNormalization epsilon", 0.0, low_ok=False)

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        c = input_shape[-1]
        self.params["gamma"], self.params["beta"] = np.ones(c, DTYPE), np.zeros(c, DTYPE)
        self.state["moving_mean"], self.state["moving_var"] = np.zeros(c, DTYPE), np.ones(c, DTYPE)
        return out

    def forward(self, x, training=False):
        if training:
            y, self._cache = ops.batch_norm(x, self.params["gamma"], self.params["beta"], epsilon=self.epsilon)
            m = self.momentum
            self.state["moving_mean"] = (m * self.state["moving_mean"] + (1 - m) * self._cache.mean).astype(DTYPE)
            self.state["moving_var"] = (m * self.state["moving_var"] + (1 - m) * self._cache.variance).astype(DTYPE)
        else:
            y, self._cache = ops.batch_norm(x, self.params["gamma"], self.params["beta"], self.state["moving_mean"],
                                            self.state["moving_var"], self.epsilon)
        return y

    def backward(self, dy):
        # after a training forward the batch's mean and variance depend on every x (the two
        # extra terms of ops.batch_norm_backward); after an inference one they are constants
        dx, self.grads["gamma"], self.grads["beta"] = ops.batch_norm_backward(dy, self._cache, self.params["gamma"])
        return dx


class Dropout(Layer):
    """During training, zero each value with probability ``rate`` and scale the rest by
    1 / (1 - rate) ("inverted dropout"), so inference needs no change. No parameters."""

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name)
        self.rate = real_arg(rate, "Dropout rate", 0.0, 1.0, high_ok=False)
        self.rng = np.random.default_rng(seed)

    def forward(self, x, training=False):
        x = _host(x)
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        self._mask = (self.rng.random(x.shape) >= self.rate).astype(x.dtype) / np.asarray(1 - self.rate, x.dtype)
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else _host(dy) * self._mask


# --------------------------------------------------------------------------- containers and blocks


class Chain(Layer):
    """Layers applied one after the other; backward runs them in reverse.

    The layer inside a ``Model`` (``model.network``) and inside the Residual and Inception
    blocks. Not to be confused with ``nbcnn.Sequential([...])``, Keras' name for building a
    whole ``Model`` (with compile / fit / save) from a list of layers.
    """

    def __init__(self, layers=(), name: str | None = None):
        super().__init__(name)
        self.layers = list(layers)

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)

    def get_config(self) -> dict:  # the current layers (add/replace_head change them after __init__)
        return {"class": "Chain", "config": {"layers": [l.get_config() for l in self.layers], "name": self.name}}

    def sublayers(self):
        return self.layers

    def build(self, input_shape, rng):
        self.input_shape = shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.build(shape, rng)
        self.output_shape = shape
        return shape

    def forward(self, x, training=False):
        """Each layer's forward in turn; a ``Conv2D`` followed by ``Activation("relu")`` runs as
        one fused kernel (the same numbers, z written once instead of written, read and written
        again: LeNet-5 training 0.3 ms a step; ``NBCNN_FUSE=0`` runs them one by one), and so
        does a ``DarknetBatchNorm`` followed by a ``LeakyReLU`` (darknet's conv layers)."""
        layers, i = self.layers, 0
        fuse = config.enabled("NBCNN_FUSE")
        while i < len(layers):
            if fuse and i + 1 < len(layers) and _conv_then_relu(layers[i], layers[i + 1]):
                x = layers[i + 1].took_fused(layers[i].forward(x, training, activation="relu"))
                i += 2
                continue
            if fuse and i + 1 < len(layers) and _darknet_norm_then_leaky(layers[i], layers[i + 1]):
                # darknet's layers: batch norm and leaky ReLU in one pass (YOLOv3-tiny's
                # activations, 20 MB, not written and read again)
                x = layers[i + 1].took_fused(layers[i].forward(x, training, leaky_slope=layers[i + 1].negative_slope))
                i += 2
                continue
            x = layers[i].forward(x, training)
            i += 1
        return x

    def backward(self, dy):
        """Each layer's backward in reverse; an ``Activation("relu")`` followed by
        ``MaxPooling2D`` is differentiated as one: each window's max is the ReLU's output at its
        argmax, so the ReLU's mask there is ``pooled > 0``, and masking dy (the pooled size)
        before the pool's backward gives the same numbers as masking its full-size result
        after (LeNet-5's first layer: a 1.2 MB pass less a step; ``NBCNN_FUSE=0``: one by one)."""
        layers, j = self.layers, len(self.layers) - 1
        fuse = config.enabled("NBCNN_FUSE")
        while j >= 0:
            if fuse and j >= 1 and _relu_then_max_pool(layers[j - 1], layers[j]):
                dy = layers[j].backward(ops.relu_backward(dy, layers[j]._y))
                j -= 2
                continue
            dy = layers[j].backward(dy)
            j -= 1
        return dy


def _relu_then_max_pool(first, second) -> bool:
    """Exactly an ``Activation("relu")`` then a ``MaxPooling2D`` whose training forward kept its
    output, neither with its ``backward`` replaced on the instance."""
    return (type(first) is Activation and first.kind == "relu" and type(second) is MaxPooling2D
            and getattr(second, "_y", None) is not None and "backward" not in vars(first)
            and "backward" not in vars(second))


def _darknet_norm_then_leaky(first, second) -> bool:
    """Exactly a ``DarknetBatchNorm`` then a ``LeakyReLU`` of positive slope (its backward then
    reads the fused output's sign), neither with its ``forward`` replaced on the instance."""
    return (type(first) is DarknetBatchNorm and type(second) is LeakyReLU and second.negative_slope > 0
            and "forward" not in vars(first) and "forward" not in vars(second))


def _conv_then_relu(first, second) -> bool:
    """Exactly a ``Conv2D`` then an ``Activation("relu")`` (not subclasses, whose forward may
    differ), neither with its ``forward`` replaced on the instance (a hook, such as
    ``plot.layer_output``'s capture of one layer's output, sees its layer run on its own)."""
    return (type(first) is Conv2D and type(second) is Activation and second.kind == "relu"
            and "forward" not in vars(first) and "forward" not in vars(second))


class Residual(Layer):
    """A residual block: ``a_out = g(main(a) + shortcut(a))`` — the lecture's a[l+2] = g(z[l+2] + a[l]).

    The shortcut is the identity when ``main`` keeps the shape, else a projection (pass e.g.
    ``[Conv2D(k, 1, strides=s), BatchNormalization()]``). Backward: the gradient reaches ``a``
    along both paths and the two are added, which is why deep residual nets still train.
    """

    def __init__(self, main, shortcut=None, activation: str | None = "relu", name: str | None = None):
        super().__init__(name)
        self.main = main if isinstance(main, Chain) else Chain(main)
        self.shortcut = None if shortcut is None else (
            shortcut if isinstance(shortcut, Chain) else Chain(shortcut))
        self.activation = Activation(activation) if activation else None

    def sublayers(self):
        return [self.main] + ([self.shortcut] if self.shortcut is not None else [])

    def build(self, input_shape, rng):
        self.input_shape = tuple(input_shape)
        out = self.main.build(input_shape, rng)
        short = self.shortcut.build(input_shape, rng) if self.shortcut is not None else tuple(input_shape)
        if tuple(out) != tuple(short):
            raise ValueError(f"Residual: the main path gives {tuple(out)} but the shortcut gives {tuple(short)}; "
                             f"pass a projection shortcut, e.g. [Conv2D({out[-1]}, 1, strides=...)]")
        self.output_shape = tuple(out)
        return self.output_shape

    def forward(self, x, training=False):
        z = _host(self.main.forward(x, training))
        s = _host(self.shortcut.forward(x, training)) if self.shortcut is not None else _host(x)
        z = z + s
        return self.activation.forward(z, training) if self.activation is not None else z

    def backward(self, dy):
        if self.activation is not None:
            dy = _host(self.activation.backward(dy))
        dx = _host(self.main.backward(dy))
        return dx + (_host(self.shortcut.backward(dy)) if self.shortcut is not None else dy)


class Concatenate(Layer):
    """Parallel branches on the same input, outputs concatenated on channels (an Inception module)."""

    def __init__(self, branches, name: str | None = None):
        super().__init__(name)
        self.branches = [b if isinstance(b, Chain) else Chain(b) for b in branches]

    def sublayers(self):
        return self.branches

    def build(self, input_shape, rng):
        self.input_shape = tuple(input_shape)
        shapes = [b.build(input_shape, rng) for b in self.branches]
        if len({s[:-1] for s in shapes}) != 1:
            raise ValueError(f"Concatenate: branches give different spatial shapes {shapes}; use padding='same'")
        self.output_shape = (*shapes[0][:-1], sum(s[-1] for s in shapes))
        self._channels = [s[-1] for s in shapes]
        return self.output_shape

    def forward(self, x, training=False):
        return np.concatenate([_host(b.forward(x, training)) for b in self.branches], axis=-1)

    def backward(self, dy):
        dy = _host(dy)
        dx, start = None, 0
        for branch, c in zip(self.branches, self._channels):
            g = _host(branch.backward(np.ascontiguousarray(dy[..., start:start + c])))
            dx = g if dx is None else dx + g
            start += c
        return dx


def Inception(filters_1x1: int, reduce_3x3: int, filters_3x3: int, reduce_5x5: int, filters_5x5: int,
              pool_proj: int, batch_norm: bool = False, name: str | None = None) -> Concatenate:
    """The GoogLeNet module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max-pool->1x1 branches, concatenated.

    The 1x1 "reduce" convolutions shrink the channels before the expensive 3x3 and 5x5
    filters: the lecture's 120M -> 12.4M multiplications example.
    """
    def conv(filters, size):
        layers = [Conv2D(filters, size, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal")]
        return layers + ([BatchNormalization(epsilon=1e-3)] if batch_norm else []) + [ReLU()]

    return Concatenate([
        conv(filters_1x1, 1),
        conv(reduce_3x3, 1) + conv(filters_3x3, 3),
        conv(reduce_5x5, 1) + conv(filters_5x5, 5),
        [MaxPooling2D(3, strides=1, padding="same")] + conv(pool_proj, 1),
    ], name=name)


LAYER_CLASSES = {cls.__name__: cls for cls in (
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Dense, Activation,
    BatchNormalization, Dropout, Chain, Residual, Concatenate)}
LAYER_CLASSES["Sequential"] = Chain  # Chain's name in checkpoints written before it was renamed


def assign_paths(root: Layer) -> None:
    """Give every layer its path inside ``root`` ("" for the root), used to name parameters."""
    for path, layer in root.named_layers():
        layer._path = path


# --------------------------------------------------------------------------- YOLOv3 building blocks (darknet)


class LeakyReLU(Layer):
    """``x if x > 0 else negative_slope * x``: darknet's "leaky" activation.

    The default slope is darknet's 0.1 (Keras' ``LeakyReLU`` defaults to 0.3, torch's to 0.01).
    """

    def __init__(self, negative_slope: float = 0.1, name: str | None = None):
        super().__init__(name)
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=False):
        self._x = x
        return ops.leaky_relu(x, self.negative_slope)

    def took_fused(self, a):
        """The layer before applied this leaky ReLU in its own pass (``Chain``): keep its output
        for the backward, whose test ``x > 0`` is ``a > 0`` for a positive slope (a NaN is
        neither), and pass it on."""
        self._x = a
        return a

    def backward(self, dy):
        return ops.leaky_relu_backward(dy, self._x, self.negative_slope)


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling: (H, W, C) -> (H * size, W * size, C), no parameters.

    Each cell is copied into a size x size block (darknet's ``[upsample] stride=2``); backward
    sums each block's gradient back into its cell.
    """

    def __init__(self, size: int = 2, name: str | None = None):
        super().__init__(name)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"UpSampling2D size must be an int >= 1, got {size!r}")
        self.size = int(size)

    def compute_output_shape(self, input_shape):
        H, W, C = input_shape
        return (H * self.size, W * self.size, C)

    def forward(self, x, training=False):
        self._x = x
        return ops.upsample2d(x, self.size)

    def backward(self, dy):
        return ops.upsample2d_backward(dy, self._x, self.size)


class Route(Layer):
    """Darknet's ``[route]``: the outputs of earlier layers, concatenated on channels.

    A layer with several inputs: ``forward([a, b, ...])`` gives ``concat([a, b, ...], axis=-1)``
    (every input with the same N, H, W); ``backward(dy)`` returns the list of their gradients,
    ``dy`` cut back into the inputs' channel ranges. With one input it passes that input
    through unchanged (darknet's single-layer route, which restarts the network from an
    earlier layer). Which earlier layers feed it is the network graph's business
    (``nbcnn.detection.darknet_net.DarknetNetwork``): ``layers`` only records it.
    """

    def __init__(self, layers=(-1,), name: str | None = None):
        super().__init__(name)
        self.layers = [int(i) for i in layers]

    def build(self, input_shapes, rng):
        shapes = [tuple(s) for s in input_shapes]
        if not shapes:
            raise ValueError("Route needs at least one input")
        if len({s[:-1] for s in shapes}) != 1:
            raise ValueError(f"Route: inputs {shapes} differ in height/width; only outputs of the same "
                             f"spatial size can be concatenated on channels")
        self.input_shape = shapes
        self._channels = [s[-1] for s in shapes]
        self.output_shape = (*shapes[0][:-1], sum(self._channels))
        return self.output_shape

    def forward(self, xs, training=False):
        xs = [_host(x) for x in xs]
        if len({x.shape[:-1] for x in xs}) != 1:
            raise ValueError(f"Route: inputs of shapes {[x.shape for x in xs]} cannot be concatenated on channels")
        self._channels = [x.shape[-1] for x in xs]
        return xs[0] if len(xs) == 1 else np.concatenate(xs, axis=-1)

    def backward(self, dy):
        dy = _host(dy)
        grads, start = [], 0
        for c in self._channels:
            grads.append(np.ascontiguousarray(dy[..., start:start + c]))
            start += c
        return grads


class DarknetBatchNorm(Layer):
    """Batch norm at inference, exactly as darknet computes it (its epsilon sits outside the root)::

        y = (x - rolling_mean) / (sqrt(rolling_variance) + .000001) * scales + biases

    Keras' ``BatchNormalization`` puts epsilon inside, ``sqrt(var + eps)``; darknet's weights
    were trained with this form, so nbcnn keeps it. For float32 inputs the arithmetic is
    darknet's: ``x - mean`` in float32, the division in float64 (C's ``sqrt`` returns a
    double), rounded to float32, then ``* scales`` and ``+ biases`` in float32.

    The statistics are frozen: the stored ones are used in training too (fine-tuning a
    pretrained detector, or running gradients to the input image, as style transfer does).
    Parameters ``gamma`` (darknet's scales) and ``beta`` (its biases; darknet's conv layers
    followed by batch norm have no bias of their own); state ``moving_mean``, ``moving_var``.
    Backward: ``dx = dy * gamma / (sqrt(var) + eps)``, ``dgamma = sum(dy * x_hat)``, ``dbeta = sum(dy)``.
    """

    def __init__(self, epsilon: float = 1e-6, name: str | None = None):
        super().__init__(name)
        self.epsilon = float(epsilon)

    def build(self, input_shape, rng):
        out = super().build(input_shape, rng)
        c = input_shape[-1]
        self.params["gamma"], self.params["beta"] = np.ones(c, DTYPE), np.zeros(c, DTYPE)
        self.state["moving_mean"], self.state["moving_var"] = np.zeros(c, DTYPE), np.ones(c, DTYPE)
        return out

    def forward(self, x, training=False, leaky_slope=None):
        """``leaky_slope``: the leaky ReLU of a following ``LeakyReLU`` in the same pass
        (``Chain`` asks for it; see ``ops.darknet_batch_norm``)."""
        x = _host(x)
        # x_hat, for the backward, is written only while training; otherwise the backward
        # (rare: frozen layers are rarely differentiated) recomputes it from the input kept here
        y, self._x_hat = self._normalise(x, keep_x_hat=training, leaky_slope=leaky_slope)
        self._x = None if training else x
        self._axes = tuple(range(x.ndim - 1))
        return y

    def _normalise(self, x, keep_x_hat, leaky_slope=None):
        dtype = x.dtype
        return ops.darknet_batch_norm(x, self.state["moving_mean"].astype(dtype), self.state["moving_var"].astype(dtype),
                                      self.params["gamma"].astype(dtype), self.params["beta"].astype(dtype),
                                      self.epsilon, keep_x_hat=keep_x_hat, leaky_slope=leaky_slope)

    def backward(self, dy):
        dy = _host(dy)
        if self._x_hat is None:
            self._x_hat = self._normalise(self._x, keep_x_hat=True)[1]
        self.grads["beta"] = dy.sum(axis=self._axes).astype(DTYPE)
        self.grads["gamma"] = (dy * self._x_hat).sum(axis=self._axes).astype(DTYPE)
        denominator = ops.darknet_denominator(self.state["moving_var"], self.epsilon)
        scale = (self.params["gamma"].astype(np.float64) / denominator).astype(dy.dtype)
        return dy * scale


LAYER_CLASSES.update({cls.__name__: cls for cls in (LeakyReLU, UpSampling2D, Route, DarknetBatchNorm)})


# --------------------------------------------------------------------------- faces (week 4): the embedding's last layer


class L2Normalize(Layer):
    """Scale each example's vector to length 1: ``y = x / sqrt(max(sum(x^2), epsilon))``.

    The last layer of a face encoder (FaceNet): embeddings on the unit sphere, so the squared
    distance ``||f(x1) - f(x2)||^2`` between two of them lies in [0, 4] and the triplet margin
    keeps one meaning through training. No parameters. Normalises along the last axis (the
    features of a (D,) input, the channels of an (H, W, C) one).
    Backward: ``dx = (dy - y <dy, y>) / |x|`` (``nbcnn.l2_normalize_backward``).
    """

    def __init__(self, epsilon: float = 1e-12, name: str | None = None):
        super().__init__(name)
        self.epsilon = real_arg(epsilon, "L2Normalize epsilon", 0.0, low_ok=False)

    def forward(self, x, training=False):
        self._x = x
        return ops.l2_normalize(x, self.epsilon)

    def backward(self, dy):
        return ops.l2_normalize_backward(dy, self._x, self.epsilon)


LAYER_CLASSES[L2Normalize.__name__] = L2Normalize


# --------------------------------------------------------------------------- depthwise(-separable) convolution (MobileNet)


class DepthwiseConv2D(Layer):
    """One ``kernel_size`` filter per input channel, channels kept apart, plus bias (NHWC).

    Output: ``(H_out, W_out, C)`` with ``H_out = (H + pad_top + pad_bottom - f) // stride + 1``;
    ``padding`` is "valid", "same" or ints as in ``nbcnn.depthwise_conv2d``. Parameters: W
    ``(f_h, f_w, C)`` and b ``(C,)``: ``f_h * f_w * C + C`` numbers (channel multiplier 1;
    Keras' ``depth_multiplier`` other than 1 is not offered).
    """

    def __init__(self, kernel_size, strides=1, padding="valid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        _window_arguments(self, kernel_size, strides, padding, use_bias, kernel_initializer)

    def compute_output_shape(self, input_shape):
        return window_output_shape(input_shape, self.kernel_size, self.strides, self.padding,
                                   input_shape[-1] if len(input_shape) == 3 else None, self._describe())

    def build(self, input_shape, rng):
        _check_hwc(self, input_shape)
        out = super().build(input_shape, rng)
        f_h, f_w = self.kernel_size
        c = input_shape[2]
        # each output sees f_h * f_w inputs and each input feeds f_h * f_w outputs, of one channel
        self.params["W"] = initialise(self.kernel_initializer, (f_h, f_w, c), f_h * f_w, f_h * f_w, rng)
        if self.use_bias:
            self.params["b"] = np.zeros(c, DTYPE)
        return out

    def _bias(self):
        return self.params["b"] if self.use_bias else None

    def forward(self, x, training=False):
        self._x = x
        return ops.depthwise_conv2d(x, self.params["W"], self._bias(), self.strides, self.padding)

    def backward(self, dy):
        dx, dW, db = ops.depthwise_conv2d_backward(dy, self._x, self.params["W"], self.strides, self.padding,
                                                   need_dx=self.need_input_grad)
        self.grads["W"] = _host(dW)
        if self.use_bias:
            self.grads["b"] = _host(db)
        return dx

    def macs(self):
        H_out, W_out, C = self.output_shape
        return H_out * W_out * C * self.kernel_size[0] * self.kernel_size[1]


class SeparableConv2D(Layer):
    """A depthwise-separable convolution: a ``DepthwiseConv2D`` (no bias) then a 1x1 ``Conv2D``
    with ``filters`` outputs and bias (Keras' ``SeparableConv2D``, depth multiplier 1).

    Output: ``(H_out, W_out, filters)``, H_out as in ``DepthwiseConv2D``. Parameters:
    ``depthwise_W (f_h, f_w, C)``, ``pointwise_W (1, 1, C, filters)``, ``b (filters,)``:
    ``f_h * f_w * C + C * filters + filters`` numbers, against ``f_h * f_w * C * filters +
    filters`` for a ``Conv2D`` of the same shape (about 1/9 for 3x3 filters and many channels).
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", name: str | None = None):
        super().__init__(name)
        self.filters = int_arg(filters, "SeparableConv2D filters")
        _window_arguments(self, kernel_size, strides, padding, use_bias, kernel_initializer)

    def compute_output_shape(self, input_shape):
        return window_output_shape(input_shape, self.kernel_size, self.strides, self.padding, self.filters,
                                   self._describe())

    def build(self, input_shape, rng):
        _check_hwc(self, input_shape)
        out = super().build(input_shape, rng)
        f_h, f_w = self.kernel_size
        c = input_shape[2]
        self.params["depthwise_W"] = initialise(self.kernel_initializer, (f_h, f_w, c), f_h * f_w, f_h * f_w, rng)
        self.params["pointwise_W"] = initialise(self.kernel_initializer, (1, 1, c, self.filters), c, self.filters,
                                                rng)
        if self.use_bias:
            self.params["b"] = np.zeros(self.filters, DTYPE)
        return out

    def forward(self, x, training=False):
        self._x = x
        self._mid = ops.depthwise_conv2d(x, self.params["depthwise_W"], None, self.strides, self.padding)
        b = self.params["b"] if self.use_bias else None
        return ops.conv2d(self._mid, self.params["pointwise_W"], b)

    def backward(self, dy):
        x = self._x  # read first: before any forward this names the problem
        dmid, dWp, db = ops.conv2d_backward(dy, self._mid, self.params["pointwise_W"])
        dx, dWd, _ = ops.depthwise_conv2d_backward(dmid, x, self.params["depthwise_W"], self.strides, self.padding,
                                                   need_dx=self.need_input_grad)
        self.grads["depthwise_W"], self.grads["pointwise_W"] = _host(dWd), _host(dWp)
        if self.use_bias:
            self.grads["b"] = _host(db)
        return dx

    def macs(self):
        H_out, W_out, K = self.output_shape
        c = self.input_shape[2]
        return H_out * W_out * c * (self.kernel_size[0] * self.kernel_size[1] + K)


LAYER_CLASSES.update({cls.__name__: cls for cls in (DepthwiseConv2D, SeparableConv2D)})
