"""Datasets: OpenCV's digits sheet, the IDX reader (MNIST format), batching and one-hot."""

import gzip
import struct

import numpy as np
import pytest

from nbcnn.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    batches,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    one_hot,
    read_idx,
    stratified_split,
)

# ---- digits.png -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_all():
    return load_digits(split="all")


def test_digits_shapes_range_and_500_per_class(digits_all):
    x, y = digits_all
    assert x.shape == (5000, 20, 20, 1) and x.dtype == np.float32
    assert y.shape == (5000,) and np.issubdtype(y.dtype, np.integer)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    # grid row r holds digit r // 5: the first 500 images (rows 0-4) are zeros, the last nines
    assert np.all(y[:500] == 0) and np.all(y[-500:] == 9)
    assert x[:, 0, :].mean() < 0.05  # white ink on a black background; borders nearly empty


def test_digits_cells_come_from_the_sheet_in_row_major_order(digits_all):
    from PIL import Image

    from nbcnn.images import sample_image_path

    sheet = np.asarray(Image.open(sample_image_path("digits.png")).convert("L"))
    assert sheet.shape == (1000, 2000)
    x, _ = digits_all
    # image 100 * r + c is the cell at grid row r, column c
    for r, c in [(0, 0), (0, 99), (7, 3), (49, 99)]:
        cell = sheet[20 * r:20 * r + 20, 20 * c:20 * c + 20] / 255.0
        np.testing.assert_allclose(x[100 * r + c, :, :, 0], cell, atol=1e-7)


def test_digits_pad_to_32_for_lenet(digits_all):
    x20, _ = digits_all
    x32, y32 = load_digits(split="all", size=32)
    assert x32.shape == (5000, 32, 32, 1)
    np.testing.assert_array_equal(x32[:, 6:26, 6:26], x20)     # centred: 6 pixels each side
    x32[:, 6:26, 6:26] = 0
    assert not x32.any()                                       # the margin is zeros
    assert load_digits(split="all", size=23)[0].shape == (5000, 23, 23, 1)
    with pytest.raises(ValueError, match="size"):
        load_digits(size=16)


def test_digits_split_is_stratified_disjoint_and_reproducible():
    (xtr, ytr), (xte, yte) = load_digits(test_fraction=0.1, seed=0)
    assert xtr.shape == (4500, 20, 20, 1) and xte.shape == (500, 20, 20, 1)
    np.testing.assert_array_equal(np.bincount(ytr), [450] * 10)
    np.testing.assert_array_equal(np.bincount(yte), [50] * 10)
    assert not np.all(np.diff(ytr) >= 0)                       # shuffled, not class by class
    (xtr2, ytr2), (xte2, yte2) = load_digits(test_fraction=0.1, seed=0)
    np.testing.assert_array_equal(xte, xte2)
    np.testing.assert_array_equal(ytr, ytr2)
    (_, _), (xte3, _) = load_digits(test_fraction=0.1, seed=1)
    assert not np.array_equal(xte, xte3)
    x, y = load_digits(split="test", seed=0)
    np.testing.assert_array_equal(x, xte)
    assert load_digits(split="train", test_fraction=0.2)[0].shape[0] == 4000


def test_stratified_split_indices_partition_the_data():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, test = stratified_split(y, 0.2, seed=5)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(100))
    np.testing.assert_array_equal(np.bincount(y[test]), [2, 4, 6, 8])
    t2, s2 = stratified_split(y, 0.2, seed=5)
    np.testing.assert_array_equal(train, t2)
    np.testing.assert_array_equal(test, s2)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(y, 1.0)


# ---- IDX ------------------------------------------------------------------------------------

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, compress=False):
    """The IDX format, written independently of nbcnn: magic 00 00 type ndim, sizes, data (big-endian)."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
    name = "a-idx3-ubyte" + (".gz" if compress else "")
    b = read_idx(write_idx(tmp_path / name, a, compress))
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.shape == (3, 4, 5)
    np.testing.assert_array_equal(a, b)
    b[0, 0, 0] = 1  # a writable array


def test_idx_gzip_detected_by_magic_bytes_not_name(tmp_path):
    a = np.arange(7, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "labels", a, compress=True)), a)


def test_idx_truncated_data_names_file_and_sizes(tmp_path):
    path = write_idx(tmp_path / "short-idx3-ubyte", np.zeros((10, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated.*160.*155"):
        read_idx(path)


def test_idx_truncated_gzip_names_file(tmp_path):
    path = write_idx(tmp_path / "cut-idx3-ubyte.gz", np.zeros((10, 8, 8), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="cut-idx3-ubyte.gz.*gzip"):
        read_idx(path)


def test_idx_truncated_header_and_empty_file(tmp_path):
    path = tmp_path / "hdr"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))   # 3 dims, 1 size given
    with pytest.raises(ValueError, match=r"hdr.*truncated header"):
        read_idx(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"hdr.*too short"):
        read_idx(path)


def test_idx_bad_magic_and_type_name_file(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"picture.png.*bad magic"):
        read_idx(path)
    path = write_idx(tmp_path / "odd-type", np.zeros(4, np.uint8))
    raw = bytearray(path.read_bytes())
    raw[2] = 0x07
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"odd-type.*element type 0x07"):
        read_idx(path)


def test_idx_trailing_bytes_and_fake_gz(tmp_path):
    path = write_idx(tmp_path / "long", np.zeros((2, 3), np.uint8))
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ValueError, match=r"long.*2 unexpected bytes"):
        read_idx(path)
    fake = write_idx(tmp_path / "plain.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"plain.gz.*not gzip"):
        read_idx(fake)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_idx(tmp_path / "nowhere")


def make_mnist_dir(folder, n_train=12, n_test=5, compress=True):
    rng = np.random.default_rng(1)
    parts = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        gz = ".gz" if compress else ""
        write_idx(folder / f"{part}-images-idx3-ubyte{gz}", images, compress)
        write_idx(folder / f"{part}-labels-idx1-ubyte{gz}", labels, compress)
        parts[part] = images, labels
    return parts


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_from_a_folder(tmp_path, compress):
    parts = make_mnist_dir(tmp_path, compress=compress)
    (xtr, ytr), (xte, yte) = load_mnist(tmp_path)
    assert xtr.shape == (12, 28, 28, 1) and xte.shape == (5, 28, 28, 1)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int64
    np.testing.assert_allclose(xtr[..., 0], parts["train"][0] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(yte, parts["t10k"][1])
    (xf, _), _ = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(xf, xtr)


def test_load_mnist_label_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8), compress=True)
    with pytest.raises(ValueError, match=r"t10k-labels.*expected 5 labels"):
        load_mnist(tmp_path)


def test_missing_folders_say_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*--data DIR"):
        load_fashion_mnist(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)   # exists, but empty


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                    reason=f"Fashion-MNIST not installed ({FASHION_MNIST_DIR}): "
                           "apt-get install dataset-fashion-mnist")
def test_fashion_mnist_real_files():
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1)
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1
    np.testing.assert_array_equal(np.bincount(ytr), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yte), [1000] * 10)
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"


# ---- batches, one_hot -----------------------------------------------------------------------

def test_batches_cover_every_example_once():
    x = np.arange(10)[:, None] * np.ones((10, 3))
    y = np.arange(10)
    got = list(batches(x, y, batch_size=4, shuffle=True, seed=0))
    assert [len(yb) for _, yb in got] == [4, 4, 2]
    seen = np.concatenate([yb for _, yb in got])
    np.testing.assert_array_equal(np.sort(seen), y)
    assert not np.array_equal(seen, y)                         # shuffled
    for xb, yb in got:
        np.testing.assert_array_equal(xb[:, 0], yb)            # pairs stay together
    again = np.concatenate([yb for _, yb in batches(x, y, 4, seed=0)])
    np.testing.assert_array_equal(seen, again)
    ordered = [yb for _, yb in batches(x, y, 4, shuffle=False)]
    np.testing.assert_array_equal(np.concatenate(ordered), y)
    assert [len(yb) for _, yb in batches(x, y, 4, seed=0, drop_last=True)] == [4, 4]
    gen = np.random.default_rng(3)
    e1 = np.concatenate([yb for _, yb in batches(x, y, 5, seed=gen)])
    e2 = np.concatenate([yb for _, yb in batches(x, y, 5, seed=gen)])
    assert not np.array_equal(e1, e2)                          # a new order each epoch
    with pytest.raises(ValueError, match="differ in length"):
        next(batches(x, y[:5], 2))


def test_one_hot():
    np.testing.assert_array_equal(one_hot([2, 0], 4), [[0, 0, 1, 0], [1, 0, 0, 0]])
    assert one_hot(np.array([1, 3])).shape == (2, 4)
    assert one_hot([1], 3).dtype == np.float32
    with pytest.raises(ValueError, match="labels must lie"):
        one_hot([3], 3)
