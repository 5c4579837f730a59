"""Reading and writing images as float arrays, and the sample images shipped with nbcnn.

    img = load_image("photo.jpg")              # (H, W, 3) float32 in [0, 1]
    grey = load_image(sample_image_path(), grey=True)   # (H, W, 1): the sudoku photo
    save_image("out.png", img)                 # back to an 8-bit PNG

Arrays are channels-last, like the rest of nbcnn: add the batch axis with ``img[None]`` to
get the ``(1, H, W, C)`` input of ``nbcnn.conv2d``. A file that is missing or is not an
image raises ``FileNotFoundError`` / ``ValueError`` naming the file.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

import numpy as np

from .backend import is_device_array, to_host
from .checks import int_arg

# Pillow refuses images above this many pixels (a guard against "decompression bombs").
MAX_PIXELS = 8192 * 8192

_resource_files = contextlib.ExitStack()  # temporary copies of resources (zipped installs only)
atexit.register(_resource_files.close)


def sample_image_path(name: str = "sudoku.png") -> Path:
    """The path of an image shipped in ``nbcnn/assets`` (see ``nbcnn/assets/README.md``)."""
    resource = resources.files("nbcnn").joinpath("assets", name)
    if not resource.is_file():
        shipped = sorted(p.name for p in resources.files("nbcnn").joinpath("assets").iterdir()
                         if p.name.endswith(".png"))
        raise FileNotFoundError(f"no sample image {name!r} in nbcnn/assets; shipped: {shipped}")
    return Path(_resource_files.enter_context(resources.as_file(resource)))


def load_image(path, grey: bool = False, width: int | None = None) -> np.ndarray:
    """Read an image file into a float32 array in [0, 1]: ``(H, W, 3)``, or ``(H, W, 1)`` if ``grey``.

    ``width``: resize to this many columns first (Lanczos filter, aspect ratio kept); the
    resized image may have at most ``MAX_PIXELS`` pixels, like the files Pillow opens.

    Colour images are converted to grey with the ITU-R 601 luma weights
    (0.299 R + 0.587 G + 0.114 B); transparency is dropped; 16-bit images keep their range.
    32-bit float images (TIFF mode "F") are taken as [0, 1], the rule of ``save_image``:
    values outside are clipped, +inf becomes 1, -inf and NaN become 0, so every value
    returned is a number in [0, 1].
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if width is not None:
        try:
            width = int_arg(width, f"load_image({path}): width")
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not an image file (it is a directory or special file): {path}")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(path) as im:
            im.load()  # decode now, inside the try: a truncated file fails here, not later
            if width is not None and width != im.width:
                height = max(1, round(im.height * width / im.width))
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"resizing to width {width} gives {width} x {height} = "
                                                       f"{width * height} pixels, more than MAX_PIXELS = {MAX_PIXELS}")
                im = im.resize((width, height), Image.Resampling.LANCZOS)
            return _to_float(im, grey)
    except UnidentifiedImageError:
        raise ValueError(f"cannot read {path}: not an image file Pillow understands "
                         "(corrupt, empty, or an unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"cannot read {path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or damaged data
        raise ValueError(f"cannot read {path}: the image data is damaged ({exc})") from None


def _to_float(im, grey: bool) -> np.ndarray:
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):  # 16/32-bit greyscale
        a = np.asarray(im, dtype=np.float64)
        scale = 1.0 if im.mode == "F" else (65535.0 if a.max(initial=0) <= 65535 else float(a.max()))
        a = np.clip(np.nan_to_num(a / scale, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)[:, :, None]
        return (a if grey else np.repeat(a, 3, axis=2)).astype(np.float32)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGBA").convert("RGB") if "transparency" in im.info else im.convert("RGB")
    im = im.convert("L" if grey else "RGB")
    a = np.asarray(im, dtype=np.float32) / np.float32(255)
    return a[:, :, None] if grey else a


def save_image(path, array) -> Path:
    """Write ``array`` as an 8-bit PNG and return the path.

    Shapes ``(H, W)``, ``(H, W, 1)`` (greyscale) or ``(H, W, 3)`` (RGB). Float data is taken
    as [0, 1] and scaled to 0..255, values outside clipped (NaN becomes 0); integer data is
    taken as 0..255 and clipped; booleans become 0 / 255. The file is PNG whatever its suffix.
    ``array`` may be a numpy array, a GPU array or nested lists of numbers.
    """
    from PIL import Image

    path = Path(path)
    if array is None or isinstance(array, (str, bytes)):
        raise TypeError(f"save_image({path}): expected an array of pixel values, got {type(array).__name__}")
    try:
        a = np.asarray(to_host(array)) if is_device_array(array) else np.asarray(array)
    except (TypeError, ValueError) as exc:  # ragged nested lists, objects numpy cannot read
        raise TypeError(f"save_image({path}): cannot read the pixels as an array: {exc}") from None
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or a.size == 0:
        raise ValueError(f"save_image({path}): expected an (H, W), (H, W, 1) or (H, W, 3) array, "
                         f"got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float64), nan=0.0) * 255.0
        a = np.clip(np.rint(a), 0, 255)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255)
    else:
        raise TypeError(f"save_image({path}): cannot write an array of dtype {a.dtype}")
    a = np.ascontiguousarray(a.astype(np.uint8))
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    try:
        Image.fromarray(a).save(path, format="PNG")
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
