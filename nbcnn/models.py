"""The classic networks of the course, with their published shapes and parameter counts.

Each builder takes ``input_shape`` and ``num_classes`` so the same architecture can be
built at full size (to read its summary) or small (to train on this machine).

    lenet5        LeCun et al. 1998          61,706 parameters at 32x32x1, 10 classes
    alexnet       Krizhevsky et al. 2012     62,378,344 at 227x227x3, 1000 classes
    vgg16         Simonyan & Zisserman 2014  138,357,544 at 224x224x3, 1000 classes
    resnet18/34   He et al. 2015             11,689,512 / 21,797,672 trainable (torchvision's layout)
    resnet50                                 25,557,032 trainable
    inception_v1  Szegedy et al. 2014        GoogLeNet; per-module weights as in the paper's Table 1
"""

from __future__ import annotations

from .layers import (Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                     GlobalAveragePooling2D, Inception, MaxPooling2D, ReLU, Residual)
from .model import Model


def lenet5(input_shape=(32, 32, 1), num_classes: int = 10, activation: str = "tanh", pooling: str = "avg",
           seed: int = 0) -> Model:
    """LeNet-5: conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> conv 120@5x5 -> 84 -> classes.

    The classic uses tanh and average pooling (``activation="relu", pooling="max"`` is the
    modern variant). C5 is a 5x5 convolution that sees the whole 5x5x16 map, i.e. a dense layer.
    """
    Pool = AveragePooling2D if pooling == "avg" else MaxPooling2D
    init = "he_normal" if activation == "relu" else "glorot_uniform"
    return Model([
        Conv2D(6, 5, kernel_initializer=init, name="C1"), Activation(activation), Pool(2, name="S2"),
        Conv2D(16, 5, kernel_initializer=init, name="C3"), Activation(activation), Pool(2, name="S4"),
        Conv2D(120, 5, kernel_initializer=init, name="C5"), Activation(activation), Flatten(),
        Dense(84, activation=activation, kernel_initializer=init, name="F6"),
        Dense(num_classes, activation="softmax", name="output"),
    ], input_shape=input_shape, seed=seed, name="lenet5")


def alexnet(input_shape=(227, 227, 3), num_classes: int = 1000, dropout: float = 0.5, seed: int = 0) -> Model:
    """AlexNet (one tower): 5 convolutions (11x11/4, 5x5, 3x3 x3), 3 max pools, 2 x 4096 dense."""
    def conv(filters, size, **kw):
        return [Conv2D(filters, size, kernel_initializer="he_normal", **kw), ReLU()]

    return Model([
        *conv(96, 11, strides=4), MaxPooling2D(3, strides=2),
        *conv(256, 5, padding="same"), MaxPooling2D(3, strides=2),
        *conv(384, 3, padding="same"), *conv(384, 3, padding="same"), *conv(256, 3, padding="same"),
        MaxPooling2D(3, strides=2), Flatten(),
        Dense(4096, activation="relu", kernel_initializer="he_normal"), Dropout(dropout, seed=seed),
        Dense(4096, activation="relu", kernel_initializer="he_normal"), Dropout(dropout, seed=seed + 1),
        Dense(num_classes, activation="softmax"),
    ], input_shape=input_shape, seed=seed, name="alexnet")


def vgg16(input_shape=(224, 224, 3), num_classes: int = 1000, dense_units: int = 4096, dropout: float = 0.5,
          seed: int = 0) -> Model:
    """VGG-16: 13 3x3 'same' convolutions in 5 blocks (64, 128, 256, 512, 512), each block
    ending in a 2x2 max pool, then two dense layers and the classifier."""
    layers = []
    for filters, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convs):
            layers += [Conv2D(filters, 3, padding="same", kernel_initializer="he_normal"), ReLU()]
        layers.append(MaxPooling2D(2, strides=2))
    layers += [Flatten(),
               Dense(dense_units, activation="relu", kernel_initializer="he_normal"), Dropout(dropout, seed=seed),
               Dense(dense_units, activation="relu", kernel_initializer="he_normal"), Dropout(dropout, seed=seed + 1),
               Dense(num_classes, activation="softmax")]
    return Model(layers, input_shape=input_shape, seed=seed, name="vgg16")


# --------------------------------------------------------------------------- ResNet


def _conv_bn(filters, size, strides=1, padding="same"):
    return [Conv2D(filters, size, strides=strides, padding=padding, use_bias=False, kernel_initializer="he_normal"),
            BatchNormalization(momentum=0.9, epsilon=1e-5)]


def basic_block(filters: int, strides: int = 1, project: bool = False) -> Residual:
    """Two 3x3 convolutions with a shortcut: a[l+2] = relu(BN(conv(relu(BN(conv(a[l]))))) + a[l])."""
    main = _conv_bn(filters, 3, strides, padding=1) + [ReLU()] + _conv_bn(filters, 3, 1, padding=1)
    shortcut = _conv_bn(filters, 1, strides, padding=0) if project else None
    return Residual(main, shortcut)


def bottleneck_block(filters: int, strides: int = 1, project: bool = False) -> Residual:
    """1x1 (reduce) -> 3x3 -> 1x1 (expand x4) with a shortcut (ResNet-50's block)."""
    main = (_conv_bn(filters, 1, 1, padding=0) + [ReLU()] + _conv_bn(filters, 3, strides, padding=1) + [ReLU()]
            + _conv_bn(filters * 4, 1, 1, padding=0))
    shortcut = _conv_bn(filters * 4, 1, strides, padding=0) if project else None
    return Residual(main, shortcut)


def resnet(blocks_per_stage, bottleneck: bool = False, input_shape=(224, 224, 3), num_classes: int = 1000,
           width: int = 64, small_input: bool = False, seed: int = 0, name: str = "resnet") -> Model:
    """A ResNet: stem, four stages of residual blocks (width, 2x, 4x, 8x), global average pool, classifier.

    ``small_input=True`` replaces the 7x7/2 stem and its max pool by one 3x3 convolution, for
    32x32 images (CIFAR-style), so the same blocks train on small data.
    """
    if small_input:
        layers = _conv_bn(width, 3, 1, padding=1) + [ReLU()]
    else:
        layers = _conv_bn(width, 7, 2, padding=3) + [ReLU(), MaxPooling2D(3, strides=2, padding=1)]
    block = bottleneck_block if bottleneck else basic_block
    expansion = 4 if bottleneck else 1
    channels = width
    for stage, count in enumerate(blocks_per_stage):
        filters = width * 2 ** stage
        for i in range(count):
            strides = 2 if (i == 0 and stage > 0) else 1
            project = i == 0 and (strides != 1 or channels != filters * expansion)
            layers.append(block(filters, strides, project))
            channels = filters * expansion
    layers += [GlobalAveragePooling2D(), Dense(num_classes, activation="softmax")]
    return Model(layers, input_shape=input_shape, seed=seed, name=name)


def resnet18(input_shape=(224, 224, 3), num_classes: int = 1000, **kw) -> Model:
    return resnet((2, 2, 2, 2), False, input_shape, num_classes, name="resnet18", **kw)


def resnet34(input_shape=(224, 224, 3), num_classes: int = 1000, **kw) -> Model:
    return resnet((3, 4, 6, 3), False, input_shape, num_classes, name="resnet34", **kw)


def resnet50(input_shape=(224, 224, 3), num_classes: int = 1000, **kw) -> Model:
    return resnet((3, 4, 6, 3), True, input_shape, num_classes, name="resnet50", **kw)


# --------------------------------------------------------------------------- Inception


INCEPTION_V1_MODULES = {  # name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), the paper's Table 1
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def inception_v1(input_shape=(224, 224, 3), num_classes: int = 1000, width: float = 1.0, small_input: bool = False,
                 dropout: float = 0.4, seed: int = 0) -> Model:
    """GoogLeNet: a stem, nine Inception modules (3a-5b) with max pools between the groups,
    global average pooling, dropout and the classifier (no auxiliary heads, no LRN).

    ``width`` scales every module's filters (0.25 trains here); ``small_input`` uses a 3x3 stem
    without down-sampling, for 32x32 images.
    """
    def scaled(n):
        return max(1, int(round(n * width)))

    def conv(filters, size, strides=1):
        return [Conv2D(scaled(filters), size, strides=strides, padding="same", kernel_initializer="he_normal"), ReLU()]

    if small_input:
        layers = conv(192, 3)
    else:
        layers = (conv(64, 7, 2) + [MaxPooling2D(3, strides=2, padding="same")] + conv(64, 1) + conv(192, 3)
                  + [MaxPooling2D(3, strides=2, padding="same")])
    for name, filters in INCEPTION_V1_MODULES.items():
        if name in ("4a", "5a"):
            layers.append(MaxPooling2D(3, strides=2, padding="same"))
        layers.append(Inception(*(scaled(f) for f in filters), name=f"inception_{name}"))
    layers += [GlobalAveragePooling2D(), Dropout(dropout, seed=seed), Dense(num_classes, activation="softmax")]
    return Model(layers, input_shape=input_shape, seed=seed, name="inception_v1")


def plain_or_residual(depth_blocks: int, residual: bool, input_shape=(16, 16, 1), num_classes: int = 10,
                      width: int = 16, seed: int = 0) -> Model:
    """The ResNet lesson's pair: ``depth_blocks`` blocks of two 3x3 convolutions, with or
    without the identity shortcut (no BatchNorm, so the difference is the shortcut alone)."""
    layers = [Conv2D(width, 3, padding="same", kernel_initializer="he_normal"), ReLU(), MaxPooling2D(2)]
    for _ in range(depth_blocks):
        main = [Conv2D(width, 3, padding="same", kernel_initializer="he_normal"), ReLU(),
                Conv2D(width, 3, padding="same", kernel_initializer="he_normal")]
        layers += [Residual(main)] if residual else main + [ReLU()]
    layers += [Flatten(), Dense(num_classes, activation="softmax")]
    model = Model(layers, input_shape=input_shape, seed=seed, name=("residual" if residual else "plain") + f"_{depth_blocks}")
    if residual:
        # Without BatchNorm each block adds its branch's variance to the identity's, so activations
        # grow with depth; starting the branches small (Fixup's 1/sqrt(depth) scaling, here on the
        # last conv of each block) keeps a deep residual net close to the identity at first.
        for layer in model.layers:
            if isinstance(layer, Residual):
                layer.main.layers[-1].params["W"] *= depth_blocks ** -0.5
    return model
