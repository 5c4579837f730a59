"""The model zoo against published parameter counts, and the lecture's arithmetic."""

import numpy as np
import pytest

import nbcnn
from nbcnn import layers as L
from nbcnn import models
from nbcnn.summary import dense_equivalent_params


@pytest.mark.parametrize("builder,trainable,published", [
    (models.lenet5, 61_706, "LeNet-5, 32x32x1, 10 classes (about 60k in the lecture)"),
    (models.alexnet, 62_378_344, "AlexNet one-tower, 227x227x3, 1000 classes (about 60M in the lecture)"),
    (models.vgg16, 138_357_544, "VGG-16, 224x224x3, 1000 classes"),
    (models.resnet18, 11_689_512, "ResNet-18 (torchvision)"),
    (models.resnet34, 21_797_672, "ResNet-34 (torchvision)"),
    (models.resnet50, 25_557_032, "ResNet-50 (torchvision)"),
])
def test_parameter_counts_match_the_published_ones(builder, trainable, published):
    model = builder()
    assert model.count_params(trainable_only=True) == trainable, published
    assert model.output_shape == (10,) if builder is models.lenet5 else (1000,)


def test_resnet_batchnorm_moving_averages_are_non_trainable():
    model = models.resnet18()
    bn_channels = sum(l.params["gamma"].size for _, l in model.network.named_layers()
                      if isinstance(l, L.BatchNormalization))
    assert model.count_params() - model.count_params(trainable_only=True) == 2 * bn_channels


# GoogLeNet (Szegedy et al. 2014, Table 1): each module's output size
INCEPTION_OUTPUTS = {"3a": (28, 256), "3b": (28, 480), "4a": (14, 512), "4b": (14, 512), "4c": (14, 512),
                     "4d": (14, 528), "4e": (14, 832), "5a": (7, 832), "5b": (7, 1024)}


def test_inception_v1_follows_the_paper():
    model = models.inception_v1()
    modules = {l.name: l for _, l in model.network.named_layers() if l.name and l.name.startswith("inception_")}
    for name, (size, channels) in INCEPTION_OUTPUTS.items():
        assert modules[f"inception_{name}"].output_shape == (size, size, channels), name
    # "a computational budget of 1.5 billion multiply-adds at inference time"
    assert 1.45e9 < model.network.macs() < 1.65e9


def test_vgg16_costs_15_billion_multiply_adds():
    assert abs(models.vgg16().network.macs() / 1e9 - 15.47) < 0.01


def test_alexnet_and_vgg_shapes_follow_the_lecture():
    alex = models.alexnet()
    shapes = [l.output_shape for l in alex.layers if isinstance(l, (L.Conv2D, L.MaxPooling2D))]
    assert shapes[:2] == [(55, 55, 96), (27, 27, 96)]
    assert shapes[-1] == (6, 6, 256)
    vgg = models.vgg16()
    pools = [l.output_shape for l in vgg.layers if isinstance(l, L.MaxPooling2D)]
    assert pools == [(112, 112, 64), (56, 56, 128), (28, 28, 256), (14, 14, 512), (7, 7, 512)]


def test_why_convolutions_456_parameters_versus_14_million():
    model = nbcnn.Sequential([L.Conv2D(6, 5)], input_shape=(32, 32, 3))
    assert model.count_params() == 456  # (5 * 5 * 3 + 1) * 6
    assert model.output_shape == (28, 28, 6)
    dense = dense_equivalent_params((32, 32, 3), (28, 28, 6))
    assert dense == 3072 * 4704 + 4704  # about 14 million
    assert "456" in model.summary(print_fn=None)


def test_summary_lists_shapes_params_and_multiply_adds():
    text = models.lenet5().summary(print_fn=None)
    assert "(None, 28, 28, 6)" in text and "(None, 5, 5, 16)" in text
    assert "Total params: 61,706" in text
    assert "117,600" in text  # C1: 28 * 28 * 6 outputs x 25 multiply-adds
    assert "Multiply-adds per example: 416,520" in text


def test_one_by_one_convolution_cuts_the_multiplications():
    # the lecture: 28x28x192 -> 5x5 conv to 32 channels: ~120M multiplies; with a 1x1 to 16 first: ~12.4M
    direct = nbcnn.Sequential([L.Conv2D(32, 5, padding="same")], input_shape=(28, 28, 192))
    bottleneck = nbcnn.Sequential([L.Conv2D(16, 1), L.Conv2D(32, 5, padding="same")], input_shape=(28, 28, 192))
    assert direct.network.macs() == 28 * 28 * 32 * 5 * 5 * 192  # 120,422,400
    assert bottleneck.network.macs() == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16  # 12,443,648


@pytest.mark.parametrize("builder,kwargs", [
    (models.lenet5, {}), (models.alexnet, {"input_shape": (67, 67, 3), "num_classes": 5}),
    (models.resnet18, {"input_shape": (16, 16, 3), "num_classes": 4, "small_input": True, "width": 4}),
    (models.resnet50, {"input_shape": (32, 32, 3), "num_classes": 3, "width": 4}),
    (models.inception_v1, {"input_shape": (16, 16, 3), "num_classes": 4, "width": 0.1, "small_input": True}),
])
def test_small_versions_run_forward_and_backward(builder, kwargs):
    model = builder(**kwargs)
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        out = model(x, training=True)
        assert out.shape == (2, model.output_shape[0])
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
        dx = model.backward(np.ones_like(out) / out.size)
    assert dx.shape == x.shape


@pytest.mark.slow
def test_vgg16_forward_at_224_fits_in_memory():
    model = models.vgg16()
    with nbcnn.use_backend("cpu"):
        out = model(np.zeros((1, 224, 224, 3), np.float32))
    assert out.shape == (1, 1000)
