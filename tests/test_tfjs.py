"""The TF.js weights reader: hand-made manifests and shards (the oracle is the numpy arrays
written into them), every way a manifest and its shards can disagree, and the shipped models."""

import json
from importlib import resources

import numpy as np
import pytest

from nbcnn.weights.tfjs import TfjsError, read_tfjs_model


def write_model(folder, groups, stem="model"):
    """Write ``groups`` = [[(name, bytes, manifest entry), ...] per group] as a manifest and one
    shard per group; return the manifest's path."""
    manifest = []
    for number, tensors in enumerate(groups):
        shard = f"{stem}-group{number}.bin"
        (folder / shard).write_bytes(b"".join(blob for _, blob, _ in tensors))
        manifest.append({"paths": [shard], "weights": [entry for _, _, entry in tensors]})
    path = folder / f"{stem}-weights_manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def float32_tensor(name, array):
    array = np.asarray(array, dtype="<f4")
    return name, array.tobytes(), {"name": name, "shape": list(array.shape), "dtype": "float32"}


def uint8_tensor(name, codes, scale, low):
    codes = np.asarray(codes, dtype=np.uint8)
    entry = {"name": name, "shape": list(codes.shape), "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": scale, "min": low}}
    return name, codes.tobytes(), entry


def test_float32_and_uint8_tensors_in_two_groups(tmp_path):
    rng = np.random.default_rng(0)
    filters = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    bias = np.array([0.5, -1.25, 3.0, 0.0], dtype=np.float32)
    codes = np.array([[0, 1, 2], [127, 254, 255]], dtype=np.uint8)
    path = write_model(tmp_path, [
        [float32_tensor("conv/filters", filters), float32_tensor("conv/bias", bias)],
        [uint8_tensor("fc", codes, 0.5, -2.0)],
    ])
    weights = read_tfjs_model(path)
    assert list(weights) == ["conv/filters", "conv/bias", "fc"]
    np.testing.assert_array_equal(weights["conv/filters"], filters)
    np.testing.assert_array_equal(weights["conv/bias"], bias)
    # value = q * scale + min, worked by hand
    np.testing.assert_array_equal(weights["fc"], [[-2.0, -1.5, -1.0], [61.5, 125.0, 125.5]])
    assert all(w.dtype == np.float32 for w in weights.values())


def test_uint8_dequantisation_rounds_once_like_tfjs(tmp_path):
    # TF.js computes q * scale + min in doubles and stores a float32: one rounding
    scale, low = 0.0005260649557207145, -0.07101876902229645
    codes = np.arange(256, dtype=np.uint8)
    path = write_model(tmp_path, [[uint8_tensor("w", codes, scale, low)]])
    expected = np.array([float(q) * scale + low for q in range(256)], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(read_tfjs_model(path)["w"], expected)


def test_uint16_and_float16_quantisation(tmp_path):
    codes16 = np.array([0, 1, 65535], dtype="<u2")
    halves = np.array([1.5, -0.25, 65504.0], dtype="<f2")
    tensors = [
        ("a", codes16.tobytes(), {"name": "a", "shape": [3], "dtype": "float32",
                                  "quantization": {"dtype": "uint16", "scale": 0.25, "min": 1.0}}),
        ("b", halves.tobytes(), {"name": "b", "shape": [1, 3], "dtype": "float32",
                                 "quantization": {"dtype": "float16"}}),
    ]
    weights = read_tfjs_model(write_model(tmp_path, [tensors]))
    np.testing.assert_array_equal(weights["a"], [1.0, 1.25, 16384.75])
    np.testing.assert_array_equal(weights["b"], [[1.5, -0.25, 65504.0]])


def test_a_group_split_over_several_shards(tmp_path):
    values = np.arange(10, dtype="<f4")
    blob = values.tobytes()
    (tmp_path / "m-shard1of2").write_bytes(blob[:13])  # a shard boundary inside a value
    (tmp_path / "m-shard2of2").write_bytes(blob[13:])
    manifest = [{"paths": ["m-shard1of2", "m-shard2of2"],
                 "weights": [{"name": "x", "shape": [2, 5], "dtype": "float32"}]}]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(manifest))
    np.testing.assert_array_equal(read_tfjs_model(path)["x"], values.reshape(2, 5))


def two_tensor_model(tmp_path):
    return write_model(tmp_path, [[float32_tensor("first", np.ones(4)), uint8_tensor("second", [1, 2, 3], 1.0, 0.0)]])


def test_truncated_bin_names_file_and_tensor(tmp_path):
    path = two_tensor_model(tmp_path)
    shard = tmp_path / "model-group0.bin"
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(TfjsError, match=r"model-group0\.bin.*truncated at tensor 'second'"):
        read_tfjs_model(path)


def test_extra_bytes_are_refused(tmp_path):
    path = two_tensor_model(tmp_path)
    shard = tmp_path / "model-group0.bin"
    shard.write_bytes(shard.read_bytes() + b"\0\0")
    with pytest.raises(TfjsError, match=r"model-group0\.bin.*2 extra bytes"):
        read_tfjs_model(path)


def test_manifest_that_does_not_match_the_bin(tmp_path):
    path = two_tensor_model(tmp_path)
    manifest = json.loads(path.read_text())
    manifest[0]["weights"][0]["shape"] = [8]  # a float32 tensor twice as large as stored
    path.write_text(json.dumps(manifest))
    with pytest.raises(TfjsError, match="does not match"):
        read_tfjs_model(path)


def test_missing_shard(tmp_path):
    path = two_tensor_model(tmp_path)
    (tmp_path / "model-group0.bin").unlink()
    with pytest.raises(TfjsError, match=r"shard .*model-group0\.bin is missing"):
        read_tfjs_model(path)


@pytest.mark.parametrize("entry, message", [
    ({"name": "t", "shape": [2], "dtype": "int32"}, r"tensor 't' has dtype 'int32'"),
    ({"name": "t", "shape": [2], "dtype": "float32", "quantization": {"dtype": "int4"}},
     r"tensor 't' has unknown quantization"),
    ({"name": "t", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1.0}},
     r"tensor 't': uint8 quantization needs a finite 'min'"),
    ({"name": "t", "shape": [2, -1], "dtype": "float32"}, r"tensor 't' has shape \[2, -1\]"),
    ({"shape": [2], "dtype": "float32"}, r"weight entry 0 has no 'name'"),
])
def test_bad_entries_are_refused(tmp_path, entry, message):
    (tmp_path / "m.bin").write_bytes(bytes(8))
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"paths": ["m.bin"], "weights": [entry]}]))
    with pytest.raises(TfjsError, match=message):
        read_tfjs_model(path)


def test_repeated_name_and_bad_json(tmp_path):
    path = write_model(tmp_path, [[float32_tensor("w", [1.0])], [float32_tensor("w", [2.0])]])
    with pytest.raises(TfjsError, match="'w' appears twice"):
        read_tfjs_model(path)
    path.write_text("[{")
    with pytest.raises(TfjsError, match="not a JSON manifest"):
        read_tfjs_model(path)
    with pytest.raises(TfjsError, match="no such TF.js manifest"):
        read_tfjs_model(tmp_path / "absent.json")


def shipped(name):
    return resources.files("nbcnn").joinpath("assets", "faceapi", f"{name}-weights_manifest.json")


def test_shipped_face_recognition_model():
    weights = read_tfjs_model(shipped("face_recognition_model"))
    assert len(weights) == 117
    assert weights["conv32_down/conv/filters"].shape == (7, 7, 3, 32)
    assert weights["conv256_down_out/conv2/conv/filters"].shape == (3, 3, 256, 256)
    assert weights["fc"].shape == (256, 128)
    convs = [name for name in weights if name.endswith("/conv/filters")]
    assert len(convs) == 1 + 2 * 14  # the 7x7 stem and two 3x3 convs in each of 14 residual blocks


def test_shipped_tiny_face_detector_model():
    weights = read_tfjs_model(shipped("tiny_face_detector_model"))
    assert len(weights) == 19
    assert weights["conv0/filters"].shape == (3, 3, 3, 16)
    assert weights["conv5/depthwise_filter"].shape == (3, 3, 256, 1)
    assert weights["conv8/filters"].shape == (1, 1, 512, 25)  # 5 anchors x (4 box + 1 score)
