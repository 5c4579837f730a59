"""Datasets for training: OpenCV's handwritten digits (shipped), MNIST / Fashion-MNIST (IDX files).

    (x_train, y_train), (x_test, y_test) = load_digits()          # 4 500 + 500 digits, 20x20
    (x_train, y_train), (x_test, y_test) = load_digits(size=32)   # padded for LeNet-5
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()   # 60 000 + 10 000, 28x28
    for xb, yb in batches(x_train, y_train, batch_size=64, seed=0):
        ...                                                       # one epoch of mini-batches

Images come back as the rest of nbcnn wants them: NHWC float32 in [0, 1], white ink on black
(``(N, H, W, 1)``); labels as int64 class numbers (``one_hot`` turns them into the
``(N, num_classes)`` targets of a softmax loss). Every random choice takes a seed or a
``numpy.random.Generator``, so a run can be repeated exactly.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

DIGITS_CLASSES = tuple(str(d) for d in range(10))

# Fashion-MNIST's labels 0-9, as named by Zalando Research.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# Where Debian/Ubuntu's package `dataset-fashion-mnist` puts the four files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------------------------
# OpenCV's digits.png
# --------------------------------------------------------------------------------------------

DIGIT_SIZE = 20                 # each digit is a 20x20 cell
DIGITS_GRID = (50, 100)         # 50 rows x 100 columns of cells; 5 rows per class


def load_digits(split: str = "both", test_fraction: float = 0.1, seed=0, size: int = 20):
    """OpenCV's 5 000 handwritten digits (``nbcnn/assets/digits.png``), 500 of each class.

    The sheet is a 1000x2000 grey image: a grid of 50 rows x 100 columns of 20x20 digits,
    grid row ``r`` holding digit ``r // 5``. Each digit becomes one ``(20, 20, 1)`` float32
    image in [0, 1] (ink is 1, background 0).

    split:
        ``"both"`` (default) -> ``(x_train, y_train), (x_test, y_test)``, like Keras' ``load_data``;
        ``"train"`` or ``"test"`` -> that one ``(x, y)`` pair;
        ``"all"`` -> ``(x, y)``, all 5 000 in the sheet's order (class by class).
    test_fraction, seed:
        the split is stratified (each class gives ``round(test_fraction * 500)`` digits to the
        test set) and reproducible: the same seed gives the same split (see ``stratified_split``).
        Train and test sets come back shuffled, so classes are mixed within a batch.
    size:
        20 keeps the digits as they are; a larger size pads them with zeros, centred (the extra
        pixel of an odd margin goes to the bottom/right). ``size=32`` gives LeNet-5's input.
    """
    if split not in ("both", "train", "test", "all"):
        raise ValueError(f"load_digits: split must be 'both', 'train', 'test' or 'all', got {split!r}")
    if not isinstance(size, (int, np.integer)) or size < DIGIT_SIZE:
        raise ValueError(f"load_digits: size must be an int >= {DIGIT_SIZE} (the digits are "
                         f"{DIGIT_SIZE}x{DIGIT_SIZE}; it pads, never crops), got {size!r}")
    from PIL import Image

    from .images import sample_image_path

    path = sample_image_path("digits.png")
    with Image.open(path) as im:
        sheet = np.asarray(im.convert("L"))
    rows, cols = DIGITS_GRID
    if sheet.shape != (rows * DIGIT_SIZE, cols * DIGIT_SIZE):
        raise ValueError(f"{path}: expected a {rows * DIGIT_SIZE}x{cols * DIGIT_SIZE} image, "
                         f"got {sheet.shape[0]}x{sheet.shape[1]}")
    # (50*20, 100*20) -> (50, 20, 100, 20) -> (50 grid rows, 100 grid cols, 20, 20) -> (5000, 20, 20)
    cells = sheet.reshape(rows, DIGIT_SIZE, cols, DIGIT_SIZE).transpose(0, 2, 1, 3)
    x = cells.reshape(rows * cols, DIGIT_SIZE, DIGIT_SIZE, 1).astype(np.float32) / np.float32(255)
    y = np.repeat(np.arange(rows) // 5, cols).astype(np.int64)
    if size > DIGIT_SIZE:
        before = (size - DIGIT_SIZE) // 2
        after = size - DIGIT_SIZE - before
        x = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    if split == "all":
        return x, y
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    if split == "train":
        return x[train_idx], y[train_idx]
    if split == "test":
        return x[test_idx], y[test_idx]
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


def stratified_split(y, test_fraction: float = 0.1, seed=0):
    """Indices ``(train_idx, test_idx)`` that split labels ``y`` class by class.

    Each class ``k`` with ``n_k`` examples gives ``round(test_fraction * n_k)`` of them, drawn at
    random, to the test set, so both sets keep the class proportions of ``y``. The two index
    arrays are disjoint, cover ``range(len(y))``, and are each shuffled. ``seed`` is an int or a
    ``numpy.random.Generator``; the same int gives the same split.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"stratified_split: y must be 1-D labels, got shape {y.shape}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"stratified_split: test_fraction must be in [0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train)) if train else np.empty(0, np.intp)
    test_idx = rng.permutation(np.concatenate(test)) if test else np.empty(0, np.intp)
    return train_idx, test_idx


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

# IDX element types: the third byte of the magic number -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),   # unsigned byte
    0x09: np.dtype(">i1"),   # signed byte
    0x0B: np.dtype(">i2"),   # short
    0x0C: np.dtype(">i4"),   # int
    0x0D: np.dtype(">f4"),   # float
    0x0E: np.dtype(">f8"),   # double
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), gzip-compressed or not.

    The format (http://yann.lecun.com/exdb/mnist/), all integers big-endian::

        bytes 0-1   0x00 0x00
        byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                    0x0D float32, 0x0E float64
        byte  3     number of dimensions, d
        then        d uint32 sizes
        then        the elements, C order (last index fastest)

    A file starting with the gzip magic bytes ``1f 8b`` is decompressed first, whatever its
    name. Returns an array of the native-endian dtype (uint8 for images and labels), shape
    ``(size_1, ..., size_d)``. A header that does not match the file (bad magic, unknown
    type, truncated or over-long data, broken gzip stream) raises ``ValueError`` naming the
    file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    where = str(path)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None
        where = f"{path} (after gunzip)"
    elif path.suffix == ".gz":
        raise ValueError(f"{path}: named .gz but is not gzip data "
                         f"(starts with {raw[:2].hex(' ') or 'nothing'})")
    return _parse_idx(raw, where)


def _parse_idx(raw: bytes, where: str) -> np.ndarray:
    if len(raw) < 4:
        raise ValueError(f"{where}: too short for an IDX header ({len(raw)} bytes, need at least 4)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{where}: not an IDX file: bad magic number {raw[:4].hex(' ')} "
                         "(must start with 00 00)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{where}: unknown IDX element type 0x{type_code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{where}: IDX header says 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{where}: truncated header: {ndim} dimensions need {header_len} "
                         f"header bytes, the file has {len(raw)}")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_len
    if found < expected:
        raise ValueError(f"{where}: truncated: header says shape {shape} of {dtype.newbyteorder('=')} "
                         f"= {expected} data bytes, the file holds only {found}")
    if found > expected:
        raise ValueError(f"{where}: {found - expected} unexpected bytes after the data: header "
                         f"says shape {shape} of {dtype.newbyteorder('=')} = {expected} bytes, "
                         f"found {found} (wrong header or two files joined?)")
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def _find(data_dir: Path, stem: str) -> Path:
    """The file for ``stem`` (e.g. ``train-images-idx3-ubyte``) under the names it goes by."""
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte: some mirrors use this name
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no {stem}.gz (or uncompressed {stem}) in this folder")


def load_mnist(data_dir, num_classes: int = 10):
    """Read an MNIST-format dataset from ``data_dir``: ``(x_train, y_train), (x_test, y_test)``.

    ``data_dir`` holds the four IDX files ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
    optionally ``.gz``. Images come back as ``(N, H, W, 1)`` float32 in [0, 1] (bytes / 255),
    labels as int64 in ``[0, num_classes)``. MNIST and Fashion-MNIST share this layout.
    A file of 0 images is refused (ValueError naming it): there is nothing to train or test on.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data_dir}")
    out = []
    for part in ("train", "t10k"):
        images_path = _find(data_dir, f"{part}-images-idx3-ubyte")
        labels_path = _find(data_dir, f"{part}-labels-idx1-ubyte")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{images_path}: expected uint8 images of shape (N, H, W), "
                             f"got {images.dtype} {images.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"{images_path}: holds no images (its header says shape {images.shape})")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"{labels_path}: expected {images.shape[0]} labels (one per image in "
                             f"{images_path.name}), got shape {labels.shape}")
        if labels.size and int(labels.max()) >= num_classes:
            raise ValueError(f"{labels_path}: label {int(labels.max())} is out of range for "
                             f"{num_classes} classes")
        x = images[..., None].astype(np.float32) / np.float32(255)
        out.append((x, labels.astype(np.int64)))
    return out[0], out[1]


def load_fashion_mnist(data_dir=None):
    """Zalando's Fashion-MNIST: ``(x_train, y_train), (x_test, y_test)``, 60 000 + 10 000 images.

    Images ``(N, 28, 28, 1)`` float32 in [0, 1], labels int64 0-9 (names in
    ``FASHION_MNIST_CLASSES``). ``data_dir`` defaults to ``/usr/share/datasets/fashion-mnist``,
    where Debian/Ubuntu's ``dataset-fashion-mnist`` package installs the files.
    """
    folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    if not folder.is_dir():
        how = ("install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
               f"about 30 MB, into {FASHION_MNIST_DIR}), or download the four *-ubyte.gz files "
               "from https://github.com/zalandoresearch/fashion-mnist into a folder and pass it "
               "as data_dir= (on the command line: --data DIR)")
        raise FileNotFoundError(f"Fashion-MNIST not found: no folder {folder}; {how}")
    return load_mnist(folder)


# --------------------------------------------------------------------------------------------
# Mini-batches and targets
# --------------------------------------------------------------------------------------------

def batches(x, y=None, batch_size: int = 32, shuffle: bool = True, seed=None, drop_last: bool = False):
    """Yield mini-batches ``(x_batch, y_batch)`` covering ``x`` (and ``y``) once: one epoch.

    ``shuffle``: visit the examples in a random order drawn from ``seed`` (an int, ``None``
    for fresh entropy, or a ``numpy.random.Generator``: pass the same Generator every epoch
    to get a new order each epoch that is still reproducible from its seed). Without shuffle,
    batches follow the array order. The last batch is smaller when ``batch_size`` does not
    divide N, unless ``drop_last``. ``y_batch`` is ``None`` when ``y`` is.
    """
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"batches: x and y differ in length: {len(x)} vs {len(y)}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], (None if y is None else y[idx])


def one_hot(y, num_classes: int | None = None, dtype=np.float32) -> np.ndarray:
    """Class numbers ``(N,)`` -> one-hot rows ``(N, num_classes)``: ``one_hot([2], 4) == [[0, 0, 1, 0]]``.

    ``num_classes`` defaults to ``max(y) + 1``.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"one_hot: y must be 1-D class numbers, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"one_hot: y must hold integer class numbers, got {y.dtype} values")
        y = y.astype(np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"one_hot: labels must lie in [0, {num_classes}), got min {y.min()}, "
                         f"max {y.max()}")
    out = np.zeros((y.shape[0], num_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


__all__ = [
    "DIGITS_CLASSES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "IDX_DTYPES",
    "load_digits", "stratified_split", "read_idx", "load_mnist", "load_fashion_mnist",
    "batches", "one_hot",
]
