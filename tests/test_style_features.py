"""The feature network of style transfer (nbcnn.style.features): the detector's layers with batch norm
folded in, and the gradient of the whole network with respect to its input image.

A tiny darknet network (random weights, random batch-norm statistics) runs on every backend;
the pretrained YOLOv3-tiny tests skip, naming `nbcnn weights yolov3-tiny`, when the weights are
not in the cache.
"""

import numpy as np
import pytest

import nbcnn
from nbcnn.style.features import FeatureNetwork, load_feature_network
from nbcnn.weights import WeightsNotFound, load_darknet, load_pretrained
from conftest import is_slow
from oracles import assert_grad_close, sample_indices

# conv+bn+leaky, maxpool 2/2, conv+bn+leaky, darknet's size-2 stride-1 maxpool (padded bottom/right),
# a 1x1 linear conv with a bias, then a route (not part of the chain)
TINY_CFG = """
[net]
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=5
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
filters=3
size=1
stride=1
pad=1
activation=linear

[route]
layers=-3
"""


def tiny_darknet(seed=0):
    """The tiny network with random filters and random (positive-variance) batch-norm numbers."""
    net = load_darknet(TINY_CFG)
    rng = np.random.default_rng(seed)
    for node in net.nodes:
        if node.kind != "convolutional":
            continue
        conv = node.layer.layers[0]
        conv.params["W"] = rng.standard_normal(conv.params["W"].shape).astype(np.float32)
        if conv.use_bias:
            conv.params["b"] = rng.standard_normal(conv.params["b"].shape).astype(np.float32)
        if len(node.layer.layers) > 1 and isinstance(node.layer.layers[1], nbcnn.DarknetBatchNorm):
            bn = node.layer.layers[1]
            c = bn.params["gamma"].shape[0]
            bn.params["gamma"] = rng.uniform(0.5, 2, c).astype(np.float32)
            bn.params["beta"] = rng.standard_normal(c).astype(np.float32)
            bn.state["moving_mean"] = rng.standard_normal(c).astype(np.float32)
            bn.state["moving_var"] = rng.uniform(0.2, 3, c).astype(np.float32)
    return net


LAYERS = [0, 2, 4]


def test_the_chain_stops_before_the_route():
    features = FeatureNetwork.from_darknet(tiny_darknet())
    assert [s.kind for s in features.stages] == ["conv", "maxpool", "conv", "maxpool", "conv"]
    assert features.last == 4 and features.conv_layers() == [0, 2, 4]
    with pytest.raises(ValueError, match="not part of the network's first chain"):
        FeatureNetwork.from_darknet(tiny_darknet(), last=5)
    with pytest.raises(ValueError, match="layer 7 is not in this feature network"):
        features.forward(np.zeros((1, 8, 8, 3), np.float32), [7])


def test_folded_batch_norm_gives_the_detector_s_activations(backend, rng):
    """Same numbers as DarknetNetwork (batch norm as a layer), to float32 rounding."""
    net = tiny_darknet()
    features = FeatureNetwork.from_darknet(net)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    ours = features.forward(x, LAYERS)
    theirs = net.forward(x, outputs=LAYERS)
    for layer, expected in zip(LAYERS, theirs):
        np.testing.assert_allclose(ours[layer], nbcnn.to_host(expected), rtol=1e-5, atol=1e-5)
    grads = {layer: rng.standard_normal(ours[layer].shape).astype(np.float32) for layer in LAYERS}
    np.testing.assert_allclose(features.backward(grads), nbcnn.to_host(net.backward(grads)), rtol=1e-4, atol=1e-4)


def test_any_image_size_works(rng):
    """The stages take their shapes from the input, odd sizes too: darknet's pools pad the bottom and
    right, so the 2/2 pool takes 7 x 11 to 4 x 6 and the 2/1 pool keeps 4 x 6."""
    features = FeatureNetwork.from_darknet(tiny_darknet())
    out = features.forward(rng.random((1, 7, 11, 3)), LAYERS)
    assert out[0].shape == (1, 7, 11, 4) and out[2].shape == (1, 4, 6, 5) and out[4].shape == (1, 4, 6, 3)
    assert features.backward({4: np.ones((1, 4, 6, 3))}).shape == (1, 7, 11, 3)


def test_whole_network_input_gradient_against_finite_differences(backend, rng):
    """J(x) = sum over layers of <R_l, a_l(x)>; dJ/dx from backward against central differences, in
    float64, on a 7 x 9 image (odd: the pools' padding is exercised). Every element on cpu, a
    sample on the slow backends."""
    features = FeatureNetwork.from_darknet(tiny_darknet(seed=3))
    x = rng.random((1, 7, 9, 3))
    shapes = {layer: a.shape for layer, a in features.forward(x, LAYERS).items()}
    R = {layer: rng.standard_normal(shape) for layer, shape in shapes.items()}

    def J(image):
        acts = features.forward(image, LAYERS)
        return float(sum(np.sum(R[layer] * acts[layer]) for layer in LAYERS))

    features.forward(x, LAYERS)
    analytic = features.backward(R)
    assert analytic.dtype == np.float64 and analytic.shape == x.shape
    only = sample_indices(x.size, 12) if is_slow(backend) else None
    assert_grad_close(analytic, J, x, only=only, rtol=1e-5, atol=1e-8)


def test_gradients_from_several_layers_add_up(rng):
    features = FeatureNetwork.from_darknet(tiny_darknet())
    x = rng.random((1, 8, 8, 3))
    acts = features.forward(x, LAYERS)
    grads = {layer: rng.standard_normal(a.shape) for layer, a in acts.items()}
    together = features.backward(grads)
    apart = 0
    for layer in LAYERS:
        features.forward(x, LAYERS)
        apart = apart + features.backward({layer: grads[layer]})
    np.testing.assert_allclose(together, apart, rtol=1e-10, atol=1e-12)


def write_darknet_weights(net, path):
    """The network's conv layers as a darknet .weights file (version 0.2.0: int64 images seen), in
    darknet's order: biases, [scales, rolling mean, rolling variance,] filters (C_out, C_in, f, f)."""
    parts = [np.array([0, 2, 0], "<i4").tobytes(), np.array([0], "<i8").tobytes()]
    for node in net.nodes:
        if node.kind != "convolutional":
            continue
        conv, rest = node.layer.layers[0], node.layer.layers[1:]
        bn = rest[0] if rest and isinstance(rest[0], nbcnn.DarknetBatchNorm) else None
        arrays = ([bn.params["beta"], bn.params["gamma"], bn.state["moving_mean"], bn.state["moving_var"]] if bn
                  else [conv.params["b"]])
        arrays.append(conv.params["W"].transpose(3, 2, 0, 1))
        parts += [np.ascontiguousarray(a, "<f4").tobytes() for a in arrays]
    path.write_bytes(b"".join(parts))


def test_any_darknet_cfg_and_weights_pair_loads(tmp_path, rng):
    net = tiny_darknet(seed=5)
    (tmp_path / "tiny.cfg").write_text(TINY_CFG)
    write_darknet_weights(net, tmp_path / "tiny.weights")
    features = load_feature_network(cfg=tmp_path / "tiny.cfg", weights=tmp_path / "tiny.weights")
    assert features.last == 4  # the chain ends before the route
    x = rng.random((1, 8, 8, 3)).astype(np.float32)
    expected = FeatureNetwork.from_darknet(net).forward(x, LAYERS)
    for layer, a in features.forward(x, LAYERS).items():
        np.testing.assert_array_equal(a, expected[layer])


def test_missing_weights_name_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCNN_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFound, match="nbcnn weights yolov3-tiny"):
        load_feature_network()


# --------------------------------------------------------------------------- the pretrained YOLOv3-tiny


@pytest.fixture(scope="module")
def tiny_yolo():
    try:
        return load_pretrained("yolov3-tiny")
    except WeightsNotFound as exc:
        pytest.skip(f"the YOLOv3-tiny weights are not in the cache (run `nbcnn weights yolov3-tiny`): {exc}")


def test_pretrained_features_match_the_detector(tiny_yolo, rng):
    """The 416 x 416 detector's own layers 0-8 (batch norm as darknet computes it) against the folded ones."""
    features = FeatureNetwork.from_darknet(tiny_yolo, last=15)
    assert features.last == 15 and features.conv_layers() == [0, 2, 4, 6, 8, 10, 12, 13, 14, 15]
    x = rng.random((1, 416, 416, 3)).astype(np.float32)
    with nbcnn.use_backend("cpu"):
        ours = features.forward(x, [0, 4, 8])
        theirs = tiny_yolo.forward(x, outputs=[0, 4, 8])
    for layer, expected in zip([0, 4, 8], theirs):
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(ours[layer], expected, rtol=1e-4, atol=1e-5 * scale)


def test_pretrained_input_gradient_against_finite_differences(tiny_yolo, rng):
    """The whole feature network of style transfer (layers 0 to 8 of YOLOv3-tiny, real weights),
    float64, on a 16 x 16 image: 24 pixels checked by central differences."""
    features = FeatureNetwork.from_darknet(tiny_yolo, last=8)
    x = rng.random((1, 16, 16, 3))
    layers = [0, 2, 4, 6, 8]
    with nbcnn.use_backend("cpu"):
        acts = features.forward(x, layers)
        R = {layer: rng.standard_normal(a.shape) for layer, a in acts.items()}
        analytic = features.backward(R)

        def J(image):
            out = features.forward(image, layers)
            return float(sum(np.sum(R[layer] * out[layer]) for layer in layers))

        assert_grad_close(analytic, J, x, only=sample_indices(x.size, 24, seed=1), rtol=1e-5, atol=1e-6)
