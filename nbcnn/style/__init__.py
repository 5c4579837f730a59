"""Neural style transfer and what deep ConvNets learn (Course 4, week 4, second half).

    from nbcnn.style import style_transfer
    result = style_transfer("photo.jpg", ["starry_night.jpg"], steps=200, size=256, out="out.png")

    from nbcnn.style import costs            # content, Gram/style, total variation: each with its gradient
    J, dJ_da = costs.content_cost(a_C, a_G, with_grad=True)

    from nbcnn.style import visualize        # the 9 patches that excite a unit most; first-layer filters
    visualize.visualize(network, images, layers=(2, 6, 10), out_dir="units")

Modules: ``costs`` (the cost terms and their gradients; the Gram matrix runs on the dispatcher's
kernel, ``nbcnn/kernels/gram.py``), ``features`` (the feature network: YOLOv3-tiny's first layers,
batch norm folded, backward to the pixels), ``transfer`` (the optimisation of the image),
``visualize``, ``timing`` (one step, timed) and ``torch_peer`` (the same step in PyTorch, a
benchmark peer that imports torch only when called).
"""

from . import costs
from .costs import content_cost, gram_matrix, layer_style_cost, total_cost, total_variation
from .features import FeatureNetwork, load_feature_network
from .transfer import (
    DEFAULT_CONTENT_LAYER,
    DEFAULT_STYLE_LAYERS,
    StyleResult,
    StyleTransfer,
    parse_layers,
    style_transfer,
)

__all__ = [
    "costs", "content_cost", "gram_matrix", "layer_style_cost", "total_cost", "total_variation",
    "FeatureNetwork", "load_feature_network", "DEFAULT_CONTENT_LAYER", "DEFAULT_STYLE_LAYERS", "StyleResult",
    "StyleTransfer", "parse_layers", "style_transfer",
]
