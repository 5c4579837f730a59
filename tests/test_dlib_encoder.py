"""dlib's ResNet face encoder built from nbcnn layers, against face-api's own descriptors
(tests/data/faceapi_oracle.json, recorded by tests/record_faceapi.py on the crops in
tests/data/faceapi_crops), plus its down-sampling block against a float64 numpy oracle and
finite differences."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nbcnn
from nbcnn import layers as L
from nbcnn.triplet.dlib_encoder import DownsamplingResidual, load_dlib_encoder, normalise

DATA = Path(__file__).parent / "data"
ORACLE = json.loads((DATA / "faceapi_oracle.json").read_text())
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder():
    with nbcnn.use_backend("cpu"):
        yield load_dlib_encoder()


def pattern():
    # ORACLE["synthetic"]["pattern"]: x[i, j, c] = (7 i + 13 j + 71 c) mod 256
    i, j, c = np.meshgrid(np.arange(150), np.arange(150), np.arange(3), indexing="ij")
    return ((i * 7 + j * 13 + c * 71) % 256).astype(np.uint8)


def recorded_crops():
    names = list(ORACLE["descriptors"])
    chips = np.stack([np.asarray(Image.open(ROOT / ORACLE["descriptors"][n]["crop"]).convert("RGB")) for n in names])
    expected = np.array([ORACLE["descriptors"][n]["descriptor"] for n in names], np.float64)
    return names, chips, expected


def test_embeddings_match_face_api(encoder):
    names, chips, expected = recorded_crops()
    with nbcnn.use_backend("cpu"):
        got = encoder.embed(chips)
    assert got.shape == (len(names), 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_distances_match_face_api_and_separate_the_people(encoder):
    names, chips, expected = recorded_crops()
    with nbcnn.use_backend("cpu"):
        d = encoder.distances(encoder.embed(chips))
    # the oracle's distances, in float64 from face-api's numbers
    d_ref = np.sqrt(((expected[:, None] - expected[None]) ** 2).sum(-1))
    np.testing.assert_allclose(d, d_ref, atol=1e-4, rtol=0)
    obama = [names.index(n) for n in ("obama", "obama2", "obama3")]
    for a in obama:
        for b in range(len(names)):
            if b == a:
                continue
            if b in obama:
                assert d[a, b] < 0.6, (names[a], names[b], d[a, b])
            else:
                assert d[a, b] > 0.6, (names[a], names[b], d[a, b])


def test_synthetic_input_matches_face_api(encoder):
    with nbcnn.use_backend("cpu"):
        got = encoder.embed(pattern()[None])
    np.testing.assert_allclose(got[0], ORACLE["synthetic"]["descriptor"], atol=1e-4, rtol=0)


def test_encoder_rule_and_id(encoder):
    assert encoder.distance == "euclidean" and encoder.threshold == 0.6 and encoder.embedding_dim == 128
    assert encoder.encoder_id.startswith("dlib-") and len(encoder.encoder_id) == 5 + 16
    e = np.array([[0.0, 3.0], [4.0, 0.0]], np.float32)
    np.testing.assert_allclose(encoder.distances(e), [[0, 5], [5, 0]])  # not squared: 5, not 25
    assert encoder.model.count_params() == 5_607_616  # the 117 tensors, the scales folded into the convs


@pytest.mark.parametrize("chips, error, words", [
    (np.zeros((1, 112, 112, 3), np.uint8), ValueError, "(N, 150, 150, 3)"),
    (np.zeros((150, 150), np.uint8), ValueError, "(N, 150, 150, 3)"),
    (np.full((1, 150, 150, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.zeros((1, 150, 150, 3), bool), TypeError, "0..255"),
])
def test_bad_crops_are_refused(chips, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        normalise(chips)


def test_weights_of_another_model_are_refused(tmp_path):
    from nbcnn.triplet.dlib_encoder import build_dlib_resnet

    with pytest.raises(ValueError, match="not face-api's face_recognition_model: no tensor 'conv32_down/conv/filters'"):
        build_dlib_resnet({"conv0/filters": np.zeros((3, 3, 3, 16), np.float32)})


# --------------------------------------------------------------------------- the down-sampling block


def downsampling_oracle(x, W1, b1, W2, b2):
    """float64 numpy: relu(pad(conv2(relu(conv1_s2_valid(x)))) + zero-channel(avgpool2(x)))."""
    def conv(a, W, b, stride, pad):
        a = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        f = W.shape[0]
        H = (a.shape[1] - f) // stride + 1
        Wd = (a.shape[2] - f) // stride + 1
        out = np.zeros((a.shape[0], H, Wd, W.shape[3]))
        for i in range(H):
            for j in range(Wd):
                window = a[:, i * stride:i * stride + f, j * stride:j * stride + f, :]
                out[:, i, j, :] = np.tensordot(window, W, axes=([1, 2, 3], [0, 1, 2])) + b
        return out

    z = conv(np.maximum(conv(x, W1, b1, 2, 0), 0), W2, b2, 1, 1)
    N, H, Wd, C = x.shape
    pooled = x[:, :H // 2 * 2, :Wd // 2 * 2].reshape(N, H // 2, 2, Wd // 2, 2, C).mean(axis=(2, 4))
    out = np.zeros((N, H // 2, Wd // 2, W2.shape[3]))
    out[:, :z.shape[1], :z.shape[2], :] += z
    out[..., :C] += pooled
    return np.maximum(out, 0)


def small_block(rng, size, c_in=2, c_out=4):
    block = DownsamplingResidual([L.Conv2D(c_out, 3, strides=2), L.ReLU(), L.Conv2D(c_out, 3, padding="same")])
    block.build((size, size, c_in), rng)
    for conv in (block.main.layers[0], block.main.layers[2]):
        conv.params["b"] = rng.normal(size=conv.params["b"].shape).astype(np.float64)
        conv.params["W"] = conv.params["W"].astype(np.float64)
    return block


@pytest.mark.parametrize("size, expected_hw", [(8, 4), (4, 2), (7, 3)])
def test_downsampling_block_forward(backend, size, expected_hw):
    rng = np.random.default_rng(size)
    block = small_block(rng, size)
    assert block.output_shape == (expected_hw, expected_hw, 4)
    x = rng.normal(size=(2, size, size, 2))
    c1, c2 = block.main.layers[0], block.main.layers[2]
    want = downsampling_oracle(x, c1.params["W"], c1.params["b"], c2.params["W"], c2.params["b"])
    got = np.asarray(nbcnn.to_host(block.forward(x)))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_downsampling_block_backward_by_finite_differences():
    rng = np.random.default_rng(1)
    block = small_block(rng, 8)
    x = rng.normal(size=(1, 8, 8, 2))
    g = rng.normal(size=(1, 4, 4, 4))

    def loss(a):
        return float((block.forward(a) * g).sum())

    loss(x)
    dx = block.backward(g)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 3, 5, 1), (0, 7, 7, 0), (0, 6, 2, 1), (0, 1, 7, 1)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        assert dx[index] == pytest.approx((loss(plus) - loss(minus)) / (2 * eps), rel=1e-5, abs=1e-7)
