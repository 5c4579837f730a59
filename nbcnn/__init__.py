"""nbcnn: convolutional neural networks from scratch, in readable Python compiled by Numba.

    import nbcnn
    nbcnn.available_backends()          # python / cpu / cuda: which work here, and why not
    nbcnn.set_backend("cpu")            # or NBCNN_BACKEND=cpu, or "auto"
    with nbcnn.use_backend("python"):   # plain Python: pdb steps into the kernels
        z = nbcnn.conv2d(x, W, b, stride=2, pad=1)

Importing nbcnn never imports numba.cuda: that waits until the cuda backend is used.
"""

from .backend import (
    BACKENDS,
    Availability,
    BackendError,
    available_backends,
    get_backend,
    set_backend,
    to_host,
    use_backend,
)
from .checks import output_size
from .ops import (
    avg_pool2d,
    avg_pool2d_backward,
    batched_nms,
    box_iou,
    conv2d,
    conv2d_backward,
    dense,
    dense_backward,
    depthwise_conv2d,
    depthwise_conv2d_backward,
    iou,
    leaky_relu,
    leaky_relu_backward,
    max_pool2d,
    max_pool2d_backward,
    nms,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    tanh,
    tanh_backward,
    upsample2d,
    upsample2d_backward,
)
from .ops import conv2d_backward_input, gram, gram_backward  # noqa: E402  (style transfer: nbcnn.style)
from .ops import batch_norm, batch_norm_backward  # noqa: E402  (BatchNormalization's kernels)
from .ops import (  # noqa: E402  (faces: nbcnn.triplet)
    l2_normalize, l2_normalize_backward, pairwise_squared_distances, triplet_loss, triplet_loss_backward,
)

from . import config, layers, losses, optim  # noqa: E402  (after ops: layers use them)
from .checkpoint import load_weights  # noqa: E402
from .layers import (  # noqa: E402
    Activation, AveragePooling2D, AvgPool2D, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, Inception, MaxPool2D, MaxPooling2D, ReLU, Residual, Softmax,
)
from .layers import DarknetBatchNorm, LeakyReLU, Route, UpSampling2D  # noqa: E402
from .layers import L2Normalize  # noqa: E402
from .layers import DepthwiseConv2D, SeparableConv2D  # noqa: E402
from .model import Model, Sequential, load_model  # noqa: E402
from .train import NotFiniteError  # noqa: E402  (fit stops with it on a NaN or inf loss or gradient)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "Availability", "BackendError", "available_backends", "get_backend", "set_backend",
    "use_backend", "to_host", "output_size",
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "dense", "dense_backward", "relu", "relu_backward", "sigmoid", "sigmoid_backward", "tanh",
    "tanh_backward", "softmax", "softmax_backward", "box_iou", "iou", "nms", "batched_nms",
    "config", "layers", "losses", "optim", "Model", "Sequential", "load_model", "load_weights",
    "Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Concatenate", "Conv2D", "Dense",
    "Dropout", "Flatten", "GlobalAveragePooling2D", "Inception", "MaxPool2D", "MaxPooling2D", "ReLU", "Residual",
    "Softmax",
    "leaky_relu", "leaky_relu_backward", "upsample2d", "upsample2d_backward",
    "DarknetBatchNorm", "LeakyReLU", "Route", "UpSampling2D",
]
__all__ += ["gram", "gram_backward", "conv2d_backward_input", "NotFiniteError"]
__all__ += ["batch_norm", "batch_norm_backward"]
__all__ += ["depthwise_conv2d", "depthwise_conv2d_backward", "DepthwiseConv2D", "SeparableConv2D"]
__all__ += ["triplet_loss", "triplet_loss_backward", "l2_normalize", "l2_normalize_backward",
            "pairwise_squared_distances", "L2Normalize"]
