"""Darknet's .cfg and .weights: reading them, refusing what does not fit, and the network they
build (nbcnn/weights/darknet.py, nbcnn/detection/darknet_net.py), against numpy oracles.

The weights files here are small synthetic ones written by the tests, in darknet's format;
the real YOLOv3-tiny is compared with darknet itself in test_detect.py.
"""

from pathlib import Path

import numpy as np
import pytest

import nbcnn
import oracles
from conftest import is_slow
from nbcnn.layers import DarknetBatchNorm, MaxPooling2D
from nbcnn.weights import DarknetError, load_darknet, parse_cfg, read_header, read_weights
from nbcnn.weights.darknet import layer_specs

DATA = Path(__file__).parent / "data"

# A small network with every layer kind YOLOv3-tiny uses: batch norm + leaky, a plain linear conv,
# darknet's size-2 stride-1 max-pool, a single-layer route, upsampling, a two-layer route, and
# two yolo heads. Layer 0 feeds layer 1 and the route at 6; layer 2 feeds 3 and the route at 4:
# the gradients coming back to them must be added.
TINY_CFG = """
[net]
# a comment, and odd spacing, as darknet allows
width = 8
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
filters=6
size=1
stride=1
pad=1
activation=linear

[maxpool]
size=2
stride=1

[route]
layers=-2

[upsample]
stride=2

[route]
layers = -1, 0

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[yolo]
mask = 0,1
anchors = 2,3,  4,5,  6,7
classes=2
num=3

[route]
layers=3

[convolutional]
batch_normalize=1
filters=14
size=3
stride=1
pad=1
activation=leaky

[yolo]
mask = 1,2
anchors = 2,3,  4,5,  6,7
classes=2
num=3
"""
# (index, C_in, filters, size, batch_normalize) of its conv layers, in file order
TINY_CONVS = [(0, 3, 4, 3, True), (2, 4, 6, 1, False), (7, 10, 14, 1, False), (10, 6, 14, 3, True)]


def darknet_arrays(rng, convs=TINY_CONVS):
    """Random parameters for each conv, as darknet stores them (weights (filters, C_in, k, k))."""
    arrays = []
    for index, c, n, k, bn in convs:
        layer = {"biases": rng.standard_normal(n) * 0.1}
        if bn:
            layer.update(scales=1 + 0.2 * rng.standard_normal(n), rolling_mean=0.1 * rng.standard_normal(n),
                         rolling_variance=rng.uniform(0.5, 2.0, n))
        layer["weights"] = rng.standard_normal((n, c, k, k)) * 0.3
        arrays.append((index, {key: v.astype(np.float32) for key, v in layer.items()}))
    return arrays


def weights_bytes(arrays, major=0, minor=2, revision=0, seen=12345, seen_bytes=None) -> bytes:
    """A darknet weights file: header, then per conv biases [scales, mean, variance] weights."""
    seen_bytes = seen_bytes or (8 if major * 10 + minor >= 2 else 4)
    header = np.array([major, minor, revision], "<i4").tobytes()
    header += np.array([seen], "<i8" if seen_bytes == 8 else "<i4").tobytes()
    body = b"".join(layer[key].astype("<f4").tobytes()
                    for _, layer in arrays for key in ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
                    if key in layer)
    return header + body


@pytest.fixture
def tiny(rng):
    arrays = darknet_arrays(rng)
    return arrays, weights_bytes(arrays)


# --------------------------------------------------------------------------- the cfg


def test_cfg_reads_like_darknet_whitespace_comments_and_aliases():
    sections = parse_cfg("[network]\n width = 4\n;comment\nheight=4\nchannels=1\n\n[conv]\nfilters = 2\n"
                         "anchors = 1, 2,  3 ,4\n[max]\nsize=2\n")
    assert [s.kind for s in sections] == ["net", "convolutional", "maxpool"]
    assert [s.index for s in sections] == [-1, 0, 1]
    assert sections[1].options == {"filters": "2", "anchors": "1,2,3,4"}
    assert sections[1].line == 7


def test_yolov3_tiny_cfg_gives_darknets_layer_table():
    input_shape, specs = layer_specs(parse_cfg(DATA / "yolov3-tiny.cfg"))
    assert input_shape == (416, 416, 3)
    assert [s.out_shape for s in specs if s.kind == "yolo"] == [(13, 13, 255), (26, 26, 255)]
    assert specs[11].out_shape == (13, 13, 512)          # the size-2 stride-1 max-pool keeps 13 x 13
    assert specs[11].options["padding"] == ((0, 1), (0, 1))
    assert specs[17].inputs == [13] and specs[20].inputs == [19, 8]
    assert specs[20].out_shape == (26, 26, 384)
    net = load_darknet(DATA / "yolov3-tiny.cfg")
    assert net.count_params() == 8_858_734              # darknet's yolov3-tiny: 8.86 M numbers
    assert "  11 max        2 x 2 / 1" in net.summary(print_fn=None)


@pytest.mark.parametrize("text, message", [
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[banana]\nsize=1\n", r"line 5: unknown cfg section \[banana\]"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[shortcut]\nfrom=-3\n", r"line 5: darknet section \[shortcut\] is not supported"),
    ("width=8\n[net]\n", r"line 1: option 'width=8' comes before the first \[section\]"),
    ("[convolutional]\nfilters=2\n", r"the first section must be \[net\]"),
    ("[net]\nwidth 8\n", r"line 2: cannot read 'width 8'"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n", "no layers after"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=two\n", r"layer 0 \[convolutional\].*filters=two"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nactivation=swish\n", "activation=swish is not supported"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[route]\nlayers=2\n", "a route can only take earlier layers"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[yolo]\nmask=0\nanchors=1,2\nclasses=2\nnum=1\n",
     r"its input has 3 channels, but 1 anchors x \(2 classes \+ 5\) need 7"),
    ("[net]\nwidth=0\nheight=8\nchannels=3\n[maxpool]\n", "height, width and channels must all be set"),
])
def test_cfg_errors_name_the_line_or_layer(text, message):
    with pytest.raises(ValueError, match=message):
        load_darknet(text)


# --------------------------------------------------------------------------- the weights file


def test_weights_fill_the_layers_transposed_to_nbcnn_layout(tiny):
    arrays, data = tiny
    net = load_darknet(TINY_CFG, data)
    assert (net.header.major, net.header.minor, net.header.seen) == (0, 2, 12345)
    for index, layer in arrays:
        chain = net.nodes[index].layer
        conv = chain.layers[0]
        # darknet (filters, C_in, k, k) -> nbcnn (k, k, C_in, filters)
        np.testing.assert_array_equal(conv.params["W"], layer["weights"].transpose(2, 3, 1, 0))
        if "scales" in layer:
            bn = chain.layers[1]
            assert isinstance(bn, DarknetBatchNorm) and "b" not in conv.params
            np.testing.assert_array_equal(bn.params["gamma"], layer["scales"])
            np.testing.assert_array_equal(bn.params["beta"], layer["biases"])
            np.testing.assert_array_equal(bn.state["moving_mean"], layer["rolling_mean"])
            np.testing.assert_array_equal(bn.state["moving_var"], layer["rolling_variance"])
        else:
            np.testing.assert_array_equal(conv.params["b"], layer["biases"])


def test_old_header_with_a_4_byte_seen_is_read(tiny):
    arrays, _ = tiny
    header, params = read_weights(weights_bytes(arrays, major=0, minor=1, seen=7), layer_specs(parse_cfg(TINY_CFG))[1])
    assert (header.version, header.seen, header.size) == ("0.1.0", 7, 16)
    np.testing.assert_array_equal(params[7]["biases"], arrays[2][1]["biases"])


def test_a_truncated_file_is_refused_naming_the_layer_and_counts(tiny):
    _, data = tiny
    # layer 0: biases 4, scales 4, rolling mean 4, rolling variance 4, weights 4 x 3 x 3 x 3 = 124 float32
    with pytest.raises(ValueError, match=r"ends inside layer 0 \[convolutional\].*needs 124 float32 \(biases 4, scales 4, "
                                         r"rolling_mean 4, rolling_variance 4, weights 108\).*only 10 are left"):
        load_darknet(TINY_CFG, data[:20 + 40])
    with pytest.raises(ValueError, match=r"ends inside layer 10 \[convolutional\].*only \d+ are left.*Truncated file"):
        load_darknet(TINY_CFG, data[:-8])
    with pytest.raises(ValueError, match="not a whole number of float32"):
        load_darknet(TINY_CFG, data[:-2])


def test_extra_bytes_are_refused(tiny):
    _, data = tiny
    with pytest.raises(ValueError, match=r"1 float32 \(4 bytes\) are left after the last layer that takes weights, "
                                         r"layer 10 \[convolutional\].*does not match"):
        load_darknet(TINY_CFG, data + b"\0\0\0\0")


@pytest.mark.parametrize("header, message", [
    (np.array([1000, 2, 0, 0, 0], "<i4").tobytes(), "not a darknet weights header: version 1000.2.0"),
    (b"[net]\nwidth=416\nheight=416\n", "not a darknet weights header"),
    (np.array([0, 2, 0], "<i4").tobytes(), "too short for a darknet weights header"),
    (np.array([0, 2, 0, 0], "<i4").tobytes(), "needs 20 bytes"),
])
def test_a_wrong_header_is_refused(header, message):
    with pytest.raises(ValueError, match=message):
        read_header(header)


def test_a_header_claiming_the_wrong_version_shifts_the_data_and_is_caught(tiny):
    arrays, _ = tiny
    # version 0.2 says `seen` is 8 bytes; a file that wrote 4 is 4 bytes short at the end
    with pytest.raises(ValueError, match=r"version 0.2.0.*ends inside layer 10"):
        load_darknet(TINY_CFG, weights_bytes(arrays, major=0, minor=2, seen_bytes=4))


def test_weights_for_another_cfg_are_refused(tiny):
    _, data = tiny
    wider = TINY_CFG.replace("filters=6\n", "filters=7\n")   # layer 2 has 7 filters, the file was written for 6
    with pytest.raises(ValueError, match="(does not match|Truncated file, or a cfg that does not match)"):
        load_darknet(wider, data)
    narrower = TINY_CFG.replace("filters=6\n", "filters=5\n")
    with pytest.raises(DarknetError, match=r"are left after the last layer.*does not match"):
        load_darknet(narrower, data)


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_darknet(tmp_path / "missing.cfg")
    (tmp_path / "a.cfg").write_text(TINY_CFG)
    with pytest.raises(FileNotFoundError):
        load_darknet(tmp_path / "a.cfg", tmp_path / "missing.weights")


# --------------------------------------------------------------------------- darknet's layers, by hand


def test_darknet_batch_norm_puts_epsilon_outside_the_root():
    bn = DarknetBatchNorm()
    bn.build((1, 1, 2), np.random.default_rng(0))
    bn.state["moving_var"] = np.array([0.0, 4.0], np.float32)
    bn.state["moving_mean"] = np.array([1.0, 1.0], np.float32)
    bn.params["gamma"], bn.params["beta"] = np.array([2.0, 2.0], np.float32), np.array([0.5, 0.5], np.float32)
    y = bn.forward(np.array([[[[1.001, 3.0]]]], np.float32))
    # (x - mean) / (sqrt(var) + 1e-6) * gamma + beta: about 0.001 / 1e-6 * 2 + .5 = 2000.5 on the first channel
    # (Keras' sqrt(var + eps) would give 0.001 / 1e-3 * 2 + .5 = 2.5)
    d = float(np.float32(1.001) - np.float32(1.0))
    np.testing.assert_allclose(y[0, 0, 0], [d / 1e-6 * 2 + 0.5, 2 / (2 + 1e-6) * 2 + 0.5], rtol=1e-6)


def test_darknet_batch_norm_float32_arithmetic_is_darknets(rng):
    x = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    bn = DarknetBatchNorm()
    bn.build((3, 3, 5), rng)
    bn.state["moving_mean"], bn.state["moving_var"] = (rng.standard_normal(5).astype(np.float32),
                                                       rng.uniform(0.1, 3, 5).astype(np.float32))
    bn.params["gamma"], bn.params["beta"] = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    want = np.empty_like(x)
    for i in np.ndindex(x.shape):  # normalize_cpu, scale_bias, add_bias: float - float, / double, * float, + float
        f = i[-1]
        v = np.float32(np.float64(np.float32(x[i] - bn.state["moving_mean"][f]))
                       / (np.sqrt(np.float64(bn.state["moving_var"][f])) + np.float64(np.float32(1e-6))))
        want[i] = np.float32(v * bn.params["gamma"][f]) + bn.params["beta"][f]
    np.testing.assert_array_equal(bn.forward(x), want)


def test_darknet_batch_norm_backward_matches_finite_differences(rng):
    bn = DarknetBatchNorm()
    bn.build((2, 2, 3), rng)
    bn.state["moving_var"] = np.array([0.5, 1.0, 2.0], np.float32)
    bn.params["gamma"] = np.array([1.5, -0.5, 2.0], np.float32)
    x, probe = rng.standard_normal((2, 2, 2, 3)), rng.standard_normal((2, 2, 2, 3))
    bn.forward(x)
    dx = bn.backward(probe)
    np.testing.assert_allclose(dx, oracles.numeric_grad(lambda v: float(np.sum(probe * bn.forward(v))), x),
                               rtol=1e-6, atol=1e-8)
    x_hat = (x - bn.state["moving_mean"]) / (np.sqrt(bn.state["moving_var"].astype(np.float64)) + 1e-6)
    np.testing.assert_allclose(bn.grads["gamma"], (probe * x_hat).sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(bn.grads["beta"], probe.sum(axis=(0, 1, 2)), rtol=1e-6)


def test_size_2_stride_1_max_pool_keeps_13x13_and_padding_never_wins(backend):
    x = -1 - np.random.default_rng(3).random((1, 13, 13, 2)).astype(np.float32)  # all negative: a 0 pad would win
    pool = MaxPooling2D(2, strides=1, padding=((0, 1), (0, 1)))
    assert pool.compute_output_shape((13, 13, 2)) == (13, 13, 2)
    p = nbcnn.to_host(pool.forward(x))
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)  # darknet's -FLT_MAX
    want = np.maximum.reduce([padded[:, i:i + 13, j:j + 13] for i in (0, 1) for j in (0, 1)])
    np.testing.assert_array_equal(p, want)
    assert (p < 0).all()
    np.testing.assert_array_equal(p[0, 12, 12], x[0, 12, 12])   # the corner window sees one real cell


# --------------------------------------------------------------------------- the whole graph


def _darknet_forward_oracle(x, arrays):
    """The tiny network, written straight from darknet's layer definitions, in float64 numpy."""
    p = {index: {k: v.astype(np.float64) for k, v in layer.items()} for index, layer in arrays}

    def conv(a, index, k, bn, leaky):
        W = p[index]["weights"].transpose(2, 3, 1, 0)
        z = oracles.conv_forward(a, W, np.zeros(W.shape[3]), (1, 1), (k // 2,) * 4)
        if bn:
            z = (z - p[index]["rolling_mean"]) / (np.sqrt(p[index]["rolling_variance"]) + 1e-6)
            z = z * p[index]["scales"] + p[index]["biases"]
        else:
            z = z + p[index]["biases"]
        return np.where(z > 0, z, 0.1 * z) if leaky else z

    def maxpool(a, size, stride):
        pad = size - 1
        before = pad // 2
        padded = np.pad(a, ((0, 0), (before, pad - before), (before, pad - before), (0, 0)), constant_values=-np.inf)
        H = (a.shape[1] + pad - size) // stride + 1
        return np.max([padded[:, i:i + stride * H:stride, j:j + stride * H:stride]
                       for i in range(size) for j in range(size)], axis=0)

    def yolo(a, classes):
        s = 1 / (1 + np.exp(-a))
        entry = np.arange(a.shape[-1]) % (5 + classes)
        return np.where((entry == 2) | (entry == 3), a, s)

    out = {0: conv(x, 0, 3, True, True)}
    out[1] = maxpool(out[0], 2, 2)
    out[2] = conv(out[1], 2, 1, False, False)
    out[3] = maxpool(out[2], 2, 1)
    out[4] = out[2]
    out[5] = out[4].repeat(2, axis=1).repeat(2, axis=2)
    out[6] = np.concatenate([out[5], out[0]], axis=-1)
    out[7] = conv(out[6], 7, 1, False, False)
    out[8] = yolo(out[7], 2)
    out[9] = out[3]
    out[10] = conv(out[9], 10, 3, True, True)
    out[11] = yolo(out[10], 2)
    return out


def test_tiny_network_forward_matches_darknets_definitions(backend, tiny, rng):
    arrays, data = tiny
    net = load_darknet(TINY_CFG, data)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    heads = net.forward(x)
    want = _darknet_forward_oracle(x.astype(np.float64), arrays)
    assert [h.shape for h in heads] == [(2, 8, 8, 14), (2, 4, 4, 14)]
    np.testing.assert_allclose(heads[0], want[8], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(heads[1], want[11], rtol=1e-4, atol=1e-5)
    inner = net.forward(x, outputs=[6, -1])   # any layers, negative from the end
    np.testing.assert_allclose(inner[0], want[6], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inner[1], want[11], rtol=1e-4, atol=1e-5)


def test_tiny_network_backward_reaches_the_image(backend, tiny, rng):
    """dX through both heads, both routes and the layers whose outputs feed two others."""
    arrays, data = tiny
    net = load_darknet(TINY_CFG, data)
    x = rng.random((1, 8, 8, 3))
    probes = [rng.standard_normal((1, 8, 8, 14)), rng.standard_normal((1, 4, 4, 14))]

    def loss(v):
        return float(sum(np.sum(p * np.asarray(nbcnn.to_host(h))) for p, h in zip(probes, net.forward(v))))

    net.forward(x)
    dx = net.backward(probes)
    assert dx.shape == x.shape
    only = rng.choice(x.size, 6 if is_slow(backend) else 24, replace=False)  # a sample: each costs 2 forwards
    numeric = oracles.numeric_grad(loss, x, only=only)
    mask = np.zeros(x.size, bool)
    mask[only] = True
    np.testing.assert_allclose(dx.reshape(-1)[mask], numeric.reshape(-1)[mask], rtol=1e-5, atol=1e-7)


def test_backward_of_one_head_and_of_an_inner_layer(tiny, rng):
    arrays, data = tiny
    net = load_darknet(TINY_CFG, data)
    x = rng.random((1, 8, 8, 3))
    probe = rng.standard_normal((1, 8, 8, 10))

    def loss(v):
        return float(np.sum(probe * net.forward(v, outputs=[6])[0]))

    net.forward(x, outputs=[6])
    dx = net.backward({6: probe})                  # a dict: gradient of layer 6 (the route) only
    np.testing.assert_allclose(dx, oracles.numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    net.forward(x)
    dx2 = net.backward([None, np.ones((1, 4, 4, 14))])   # None: no gradient from that head
    assert dx2.shape == x.shape and np.abs(dx2).sum() > 0
    with pytest.raises(ValueError, match="2 outputs"):
        net.backward([np.ones((1, 8, 8, 14))])


def test_network_input_shape_is_checked(tiny):
    _, data = tiny
    net = load_darknet(TINY_CFG, data)
    with pytest.raises(ValueError, match=r"takes \(N, 8, 8, 3\) images"):
        net.forward(np.zeros((1, 9, 8, 3), np.float32))


@pytest.mark.parametrize("backend", ["python", "cpu", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_darknet_batch_norm_kernel_is_darknets_arithmetic(backend, dtype):
    """The op against darknet's formula written out in numpy: x - mean in x's dtype, the
    division by sqrt(var) + .000001f in float64, rounded, then * gamma + beta in x's dtype."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    mean, gamma, beta = (rng.standard_normal(5).astype(dtype) for _ in range(3))
    var = rng.random(5).astype(dtype) + dtype(0.1)
    denominator = np.sqrt(var.astype(np.float64)) + np.float64(np.float32(1e-6))
    x_hat = ((x - mean).astype(np.float64) / denominator).astype(dtype)
    with nbcnn.use_backend(backend):
        y, got_hat = nbcnn.ops.darknet_batch_norm(x, mean, var, gamma, beta)
    np.testing.assert_array_equal(got_hat, x_hat)
    np.testing.assert_array_equal(y, x_hat * gamma + beta)
    with pytest.raises(ValueError, match="channels"):
        nbcnn.ops.darknet_batch_norm(x, mean[:4], var, gamma, beta)
    with nbcnn.use_backend(backend):  # y alone: the same numbers, no x_hat
        y_alone, none = nbcnn.ops.darknet_batch_norm(x, mean, var, gamma, beta, keep_x_hat=False)
    assert none is None
    np.testing.assert_array_equal(nbcnn.to_host(y_alone), x_hat * gamma + beta)


@pytest.mark.parametrize("backend", ["python", "cpu", "cuda"])
def test_darknet_batch_norm_with_its_leaky_relu_in_one_pass(backend):
    """``leaky_slope``: the leaky ReLU of darknet's formula's output, the same bits as the two
    ops one after the other (NaN, inf, -0 and values on either side of 0 included)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    mean, gamma, beta = (rng.standard_normal(5).astype(np.float32) for _ in range(3))
    beta[4] = 0
    x[1, 2, 3, 4] = mean[4]  # (x - mean) * gamma + 0: a zero
    var = rng.random(5).astype(np.float32) + np.float32(0.1)
    with nbcnn.use_backend(backend):
        y, _ = nbcnn.ops.darknet_batch_norm(x, mean, var, gamma, beta)
        want = nbcnn.to_host(nbcnn.ops.leaky_relu(y, 0.1))
        for keep in (True, False):
            fused, x_hat = nbcnn.ops.darknet_batch_norm(x, mean, var, gamma, beta, keep_x_hat=keep, leaky_slope=0.1)
            np.testing.assert_array_equal(nbcnn.to_host(fused), want)
    assert np.isnan(want[0, 0, 0, 0]) and (want < 0).any() and (want > 0).any()
    negative = y < 0
    np.testing.assert_allclose(want[negative], np.float32(0.1) * y[negative])


def test_chain_fuses_darknet_batch_norm_and_leaky_relu(rng, monkeypatch):
    """A conv layer of darknet's (Conv2D, DarknetBatchNorm, LeakyReLU) gives the same output and
    the same gradients fused (``Chain``) as with NBCNN_FUSE=0, in training and in inference."""
    from nbcnn.layers import Chain, Conv2D, LeakyReLU

    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    runs = []
    for fuse in ("1", "0"):
        monkeypatch.setenv("NBCNN_FUSE", fuse)
        chain = Chain([Conv2D(4, 3, padding="same", use_bias=False), DarknetBatchNorm(), LeakyReLU(0.1)])
        chain.build((6, 6, 3), np.random.default_rng(0))
        bn = chain.layers[1]
        bn.state["moving_mean"] = np.linspace(-0.5, 0.5, 4).astype(np.float32)
        bn.state["moving_var"] = np.linspace(0.5, 2, 4).astype(np.float32)
        bn.params["beta"] = np.linspace(-0.2, 0.3, 4).astype(np.float32)
        for training in (False, True):
            out = chain.forward(x, training)
            assert (chain.layers[2]._x is out) == (fuse == "1")  # fused: the leaky ReLU kept its output
            dx = chain.backward(dy)
            runs.append((out, dx, chain.layers[0].grads["W"], bn.grads["gamma"], bn.grads["beta"]))
    for fused, alone in zip(runs[:2], runs[2:]):
        for a, b in zip(fused, alone):
            np.testing.assert_array_equal(a, b)
    assert (runs[0][0] < 0).any() and (runs[0][0] > 0).any()


def test_darknet_batch_norm_inference_forward_keeps_no_x_hat_and_backward_still_works(rng):
    """forward(training=False) writes y only; a backward after it recomputes x_hat from the
    input it kept: the same gradients as after a training forward."""
    bn = DarknetBatchNorm()
    bn.build((3, 3, 4), rng)
    bn.state["moving_mean"] = rng.standard_normal(4).astype(np.float32)
    bn.state["moving_var"] = rng.random(4).astype(np.float32) + np.float32(0.5)
    x, dy = (rng.standard_normal((2, 3, 3, 4)).astype(np.float32) for _ in range(2))
    grads = []
    for training in (True, False):
        y = bn.forward(x, training=training)
        assert (bn._x_hat is None) == (not training)
        grads.append((y, bn.backward(dy), bn.grads["gamma"].copy(), bn.grads["beta"].copy()))
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_array_equal(got, want)
