"""Data augmentation: new training images from old ones, as in the course.

    mirror(x)                                     # flip left <-> right
    random_crop(x, 24, rng)                       # a random 24x24 window of each image
    random_crop(x, 32, rng, pad=4)                # CIFAR style: pad by 4, crop back to 32x32
    rotate(x, (-15, 15), rng)                     # each image turned by its own random angle
    shear(x, (-0.2, 0.2), rng, axis="x")          # slant rows sideways
    color_shift(x, 0.1, rng)                      # add a random offset to each channel
    resize(x, 48)                                 # every image rescaled to 48x48
    crop_and_resize(x, windows, 48)               # given (top, left, h, w) windows, each to 48x48

    aug = Augmenter([(mirror, 0.5), (partial(rotate, angle=(-10, 10)), 0.5)], seed=0)
    for xb, yb in batches(x_train, y_train, 64, seed=rng):
        xb = aug(xb)                              # a fresh random variant every epoch

Every transform takes an NHWC batch ``(N, H, W, C)`` and returns a new array of the same
dtype; the input is never changed. Randomness comes from ``rng``: a seed (int), a
``numpy.random.Generator``, or ``None`` for fresh entropy. Pass one Generator through a
training run and the whole run is reproducible from its seed.

Random parameters (angle, shear factor) are given as a number (the same for every image), a
``(low, high)`` tuple (drawn uniformly, independently per image), or an array of N values
(one per image). With ``return_params=True`` a transform also returns what it drew.

Geometric transforms map each *output* pixel back to a point of the input and sample the
input there ("inverse mapping": no holes in the output): ``order="bilinear"`` blends the
four nearest pixels, ``"nearest"`` takes the closest one. Points that fall outside the input
take the value ``fill``. Pixel ``(r, c)`` has its centre at coordinate ``(r, c)``; rotation
and shear pivot on the image centre ``((H - 1) / 2, (W - 1) / 2)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mirror", "random_crop", "resize", "crop_and_resize", "rotate", "shear", "color_shift",
           "Augmenter"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _batch(x, name: str, floating: bool = False) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an NHWC batch (N, H, W, C), got shape {x.shape}; "
                         "add the batch axis to a single image with img[None]")
    if floating and not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name}: expected floating-point images (e.g. float32 in [0, 1]), "
                        f"got {x.dtype}; convert with x.astype(np.float32) / 255")
    return x


def _per_image(value, n: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """A number, a (low, high) range drawn uniformly per image, or N per-image values -> (N,)."""
    if isinstance(value, tuple):
        if len(value) != 2 or not value[0] <= value[1]:
            raise ValueError(f"{name}: a range must be (low, high) with low <= high, got {value!r}")
        return rng.uniform(value[0], value[1], size=n)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a number, a (low, high) tuple or {n} per-image "
                         f"values, got shape {arr.shape}")
    return arr


def _pair(size, name: str) -> tuple[int, int]:
    h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"{name}: size must be a positive int or an (h, w) pair, got {size!r}")
    return int(h), int(w)


def _sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: str, fill: float) -> np.ndarray:
    """Read ``x`` at fractional source points: ``out[n, i, j] = x[n, rows[n, i, j], cols[n, i, j]]``.

    ``rows`` and ``cols`` (float64) broadcast to ``(N, H_out, W_out)``. Points outside the
    image read ``fill``. Bilinear: the four pixels around the point, weighted by closeness;
    a neighbour outside the image contributes ``fill`` with its weight.
    """
    n_img, h, w, c = x.shape
    flat = x.reshape(n_img * h * w, c)
    base = (np.arange(n_img) * (h * w))[:, None, None]   # where image n starts in `flat`

    def read(r, c_):  # (value, inside) at integer points; outside points read pixel 0, weight 0
        inside = (r >= 0) & (r < h) & (c_ >= 0) & (c_ < w)
        idx = base + np.clip(r, 0, h - 1) * w + np.clip(c_, 0, w - 1)
        return np.take(flat, idx, axis=0), inside

    if order == "nearest":
        v, inside = read(np.floor(rows + 0.5).astype(np.intp),   # round half up, everywhere alike
                         np.floor(cols + 0.5).astype(np.intp))
        return np.where(inside[..., None], v, x.dtype.type(fill))
    if order != "bilinear":
        raise ValueError(f"order must be 'bilinear' or 'nearest', got {order!r}")
    r0f, c0f = np.floor(rows), np.floor(cols)
    fr = (rows - r0f).astype(x.dtype)          # how far past row r0 (0 = on it)
    fc = (cols - c0f).astype(x.dtype)
    r0, c0 = r0f.astype(np.intp), c0f.astype(np.intp)
    one = x.dtype.type(1)
    out = np.zeros(np.broadcast_shapes(base.shape, rows.shape, cols.shape) + (c,), dtype=x.dtype)
    outside_weight = np.zeros(out.shape[:-1], dtype=x.dtype)
    for dr, wr in ((0, one - fr), (1, fr)):
        for dc, wc in ((0, one - fc), (1, fc)):
            v, inside = read(r0 + dr, c0 + dc)
            wgt = wr * wc
            out += (wgt * inside)[..., None] * v
            outside_weight += wgt * ~inside
    if fill != 0:
        out += x.dtype.type(fill) * outside_weight[..., None]
    return out


def _centre_aligned(n_in: int, n_out: int) -> np.ndarray:
    """Where the ``n_out`` output pixels of a resize fall in the ``n_in`` input pixels (centres
    aligned, Pillow/OpenCV), clamped to ``[0, n_in - 1]``: float64, shape ``(n_out,)``."""
    return np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)


def _taps(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two bilinear taps of each coordinate ``t`` along one axis: pixels ``first = floor(t)``
    and ``first + 1``, weighted ``1 - frac`` and ``frac`` with ``frac = t - first``."""
    first = np.floor(coords)
    return first.astype(np.intp), coords - first


def _lerp_axis(x: np.ndarray, first: np.ndarray, frac: np.ndarray, axis: int, fill: float,
               out: np.ndarray | None = None, spare: np.ndarray | None = None) -> np.ndarray:
    """One bilinear pass along ``axis`` (1: rows, 2: columns) of an NHWC batch, same taps for
    every image: ``out[:, k] = (1 - frac[k]) * x[:, first[k]] + frac[k] * x[:, first[k] + 1]``
    (written for axis 1). A tap outside the image reads ``fill``.

    Rows then columns gives the four-pixel bilinear blend of ``_sample`` (up to rounding):
    the row pass blends the two rows around the point in every column, the column pass blends
    the two columns of that. Cost: two gathers of whole rows or columns, three array operations.
    ``out`` (the result) and ``spare`` (a work array): optional C-contiguous arrays of the
    result's shape, so a loop over images can reuse its memory instead of asking for new.
    """
    size = x.shape[axis]
    lead = (slice(None),) * axis
    a = np.take(x, first, axis=axis, mode="clip", out=spare)   # clipped reads are replaced below
    b = np.take(x, first + 1, axis=axis, mode="clip", out=out)
    for v, idx in ((a, first), (b, first + 1)):
        outside = (idx < 0) | (idx >= size)
        if outside.any():
            v[lead + (outside,)] = fill
    # weights shaped to the gathered block; along columns repeated over the channels, so
    # numpy runs one long inner loop instead of loops of C values
    shape = [1] * x.ndim
    shape[axis] = len(frac)
    w = frac.astype(x.dtype).reshape(shape)
    if axis == x.ndim - 2:
        w = np.repeat(w, x.shape[-1], axis=-1)
    b -= a          # a + frac * (b - a) = (1 - frac) * a + frac * b, in place
    b *= w
    b += a
    return b


def _first_as(memory: np.ndarray, shape) -> np.ndarray:
    """The start of a flat work array seen as a C-contiguous array of ``shape``."""
    return memory[:math.prod(shape)].reshape(shape)


def _snap(v: np.ndarray) -> np.ndarray:
    """Round cos/sin values within 1e-12 of -1, 0 or 1 to them: cos(90 deg) is 6e-17 in floats,
    and snapping it makes quarter turns exact (rotate(x, 90) == np.rot90)."""
    r = np.round(v)
    return np.where(np.abs(v - r) < 1e-12, r, v)


# --------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------

def mirror(x, rng=None) -> np.ndarray:
    """Flip each image left <-> right: ``out[n, i, j] = x[n, i, W - 1 - j]``.

    Deterministic (``rng`` is accepted and unused, so it fits an ``Augmenter``, which decides
    at random which images to flip).
    """
    x = _batch(x, "mirror")
    return x[:, :, ::-1, :].copy()


def resize(x, size, order: str = "bilinear") -> np.ndarray:
    """Resize every image to ``size`` (an int or ``(h, w)``), pixel centres aligned.

    Output pixel ``i`` samples input row ``(i + 0.5) * H / h - 0.5`` (the convention of
    Pillow and OpenCV), clamped to the image so the border is repeated rather than ``fill``ed.

    Rows and columns map independently, so bilinear runs as two 1-D passes (blend pairs of
    rows, then pairs of columns): the same four-pixel blend as ``rotate`` uses, at a fraction
    of the cost of gathering four pixels for every output point.
    """
    x = _batch(x, "resize", floating=True)
    h_out, w_out = _pair(size, "resize")
    _, h, w, _ = x.shape
    rows, cols = _centre_aligned(h, h_out), _centre_aligned(w, w_out)
    if order == "nearest":   # round half up, as _sample does
        return np.take(np.take(x, np.floor(rows + 0.5).astype(np.intp), axis=1),
                       np.floor(cols + 0.5).astype(np.intp), axis=2)
    if order != "bilinear":
        raise ValueError(f"order must be 'bilinear' or 'nearest', got {order!r}")
    return _lerp_axis(_lerp_axis(x, *_taps(rows), axis=1, fill=0.0), *_taps(cols), axis=2, fill=0.0)


def crop_and_resize(x, windows, size, *, fill: float = 0.0) -> np.ndarray:
    """Cut a window of each image and resize it to ``size`` (an int or ``(h, w)``), in one step.

    ``windows``: an ``(N, 4)`` int array, per image ``(top, left, height, width)`` in the
    image's pixels. A window may reach past the image; there it reads ``fill``, as if the
    image had been padded. The result equals, image by image,
    ``resize(padded[None, top:top + height, left:left + width], size)``, without building the
    padded image or the crops: with ``size = (h, w)``, output row ``i`` reads image row
    ``top + clip((i + 0.5) * height / h - 0.5, 0, height - 1)`` (``resize``'s convention,
    clamped to the window), and likewise for columns. Bilinear, one image at a time (the
    windows differ), as ``resize``'s two 1-D passes.
    """
    x = _batch(x, "crop_and_resize", floating=True)
    n, h_in, w_in, _ = x.shape
    windows = np.asarray(windows)
    if windows.shape != (n, 4) or not np.issubdtype(windows.dtype, np.integer):
        raise ValueError(f"crop_and_resize: windows must be an ({n}, 4) int array of (top, left, "
                         f"height, width), got shape {windows.shape} and dtype {windows.dtype}")
    if n and windows[:, 2:].min() < 1:
        raise ValueError("crop_and_resize: window heights and widths must be >= 1")
    h_out, w_out = _pair(size, "crop_and_resize")
    c = x.shape[3]
    out = np.empty((n, h_out, w_out, c), x.dtype)
    # work memory for one image, reused by all: the row pass's result and a spare for each pass
    part_memory = np.empty(h_out * w_in * c, x.dtype)
    spare_memory = np.empty(h_out * max(w_in, w_out) * c, x.dtype)
    for k, (top, left, h, w) in enumerate(windows.tolist()):
        row_first, row_frac = _taps(_centre_aligned(h, h_out))
        col_first, col_frac = _taps(_centre_aligned(w, w_out))
        row_first += top
        col_first += left
        # blend rows only in the columns the second pass reads (the taps first and first + 1)
        lo, hi = max(int(col_first.min()), 0), min(int(col_first.max()) + 2, w_in)
        if lo >= hi:   # the window lies left or right of the image
            out[k] = fill
            continue
        part_shape = (1, h_out, hi - lo, c)
        part = _lerp_axis(x[k:k + 1, :, lo:hi], row_first, row_frac, axis=1, fill=fill,
                          out=_first_as(part_memory, part_shape),
                          spare=_first_as(spare_memory, part_shape))
        _lerp_axis(part, col_first - lo, col_frac, axis=2, fill=fill,
                   out=out[k:k + 1], spare=_first_as(spare_memory, out[k:k + 1].shape))
    return out


def random_crop(x, size, rng=None, *, pad=0, resize_back: bool = False, fill: float = 0.0,
                return_params: bool = False):
    """Cut a ``size`` window (an int or ``(h, w)``) at a random place of each image.

    Steps, per image:

    1. ``pad``: first surround the image with ``pad`` pixels of ``fill`` on every side (an int
       or an ``(h, w)`` pair). ``random_crop(x, 32, rng, pad=4)`` on 32x32 images is the
       CIFAR recipe: the picture moves by up to 4 pixels, the size stays.
    2. Draw the top-left corner uniformly among all positions where the window fits:
       ``top`` in ``[0, H + 2*pad_h - h]``, ``left`` in ``[0, W + 2*pad_w - w]``, and cut
       ``out[n] = padded[n, top:top + h, left:left + w]``.
    3. ``resize_back``: scale the window back to the input's ``(H, W)`` (bilinear): a random
       zoom-in. Without it the output is ``(N, h, w, C)``.

    ``return_params=True`` also returns the corners, an ``(N, 2)`` int array of
    ``(top, left)`` in the padded image's coordinates.
    """
    x = _batch(x, "random_crop", floating=resize_back)
    rng = np.random.default_rng(rng)
    pad_h, pad_w = (pad, pad) if np.ndim(pad) == 0 else tuple(pad)
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"random_crop: pad must be >= 0, got {pad!r}")
    n, h_in, w_in, _ = x.shape
    h_p, w_p = h_in + 2 * pad_h, w_in + 2 * pad_w   # the padded image's size
    h, w = _pair(size, "random_crop")
    if h > h_p or w > w_p:
        raise ValueError(f"random_crop: a {h}x{w} window does not fit in images of "
                         f"{h_p}x{w_p} (input {h_in}x{w_in}, pad {pad!r})")
    top = rng.integers(0, h_p - h + 1, size=n)
    left = rng.integers(0, w_p - w + 1, size=n)
    if resize_back:   # crop and rescale in one pass, reading fill where the window leaves x
        windows = np.stack([top - pad_h, left - pad_w, np.full(n, h), np.full(n, w)], axis=1)
        out = crop_and_resize(x, windows, (h_in, w_in), fill=fill)
    else:
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)), constant_values=fill)
        # gather all windows at once: out[k, i, j] = x_padded[k, top[k] + i, left[k] + j]
        out = x[np.arange(n)[:, None, None],
                (top[:, None] + np.arange(h))[:, :, None],
                (left[:, None] + np.arange(w))[:, None, :]]
    if return_params:
        return out, np.stack([top, left], axis=1)
    return out


def rotate(x, angle, rng=None, *, order: str = "bilinear", fill: float = 0.0,
           return_params: bool = False):
    """Rotate each image about its centre by ``angle`` degrees, counter-clockwise as displayed.

    Positive angles turn the picture counter-clockwise when shown with row 0 at the top (as
    ``plt.imshow`` and image viewers do), the same sense as ``np.rot90(img)`` and Pillow's
    ``Image.rotate``: ``rotate(x, 90)`` on square images equals
    ``np.rot90(x, k=1, axes=(1, 2))``. The output keeps the input's size: corners turned out
    of the frame are lost, and the uncovered corners take ``fill``.

    ``angle``: a number, a ``(low, high)`` range drawn per image, or N per-image angles.

    Inverse mapping, with ``(y, x)`` measured from the centre, y up
    (``y = c_r - row``, ``x = col - c_c``): output point ``(x, y)`` reads the input at
    ``(x cos a + y sin a, -x sin a + y cos a)``, i.e. the output rotated back by ``-a``.
    """
    x = _batch(x, "rotate", floating=True)
    rng = np.random.default_rng(rng)
    n, h, w, _ = x.shape
    theta = np.deg2rad(_per_image(angle, n, rng, "rotate angle"))
    cos = _snap(np.cos(theta))[:, None, None]
    sin = _snap(np.sin(theta))[:, None, None]
    cr, cc = (h - 1) / 2, (w - 1) / 2
    yo = cr - np.arange(h, dtype=np.float64)[None, :, None]   # up from the centre
    xo = np.arange(w, dtype=np.float64)[None, None, :] - cc   # right of the centre
    xs = cos * xo + sin * yo
    ys = -sin * xo + cos * yo
    out = _sample(x, cr - ys, cc + xs, order, fill)
    if return_params:
        return out, np.rad2deg(theta)
    return out


def shear(x, k, rng=None, *, axis: str = "x", order: str = "bilinear", fill: float = 0.0,
          return_params: bool = False):
    """Shear each image by factor ``k``, pivoting on its centre: a slant, area kept.

    ``axis="x"``: each row slides sideways, row ``r`` moving ``k * (r - (H - 1) / 2)`` pixels to
    the right (rows below the centre go right for ``k > 0``, rows above go left). Row ``r`` and
    row ``r + 1`` thus move ``k`` pixels apart.
    ``axis="y"``: each column slides vertically, column ``c`` moving ``k * (c - (W - 1) / 2)``
    pixels down.

    ``k``: a number, a ``(low, high)`` range drawn per image, or N per-image factors.
    ``k = 0`` is the identity; ``k = 1`` is a 45-degree slant.
    """
    x = _batch(x, "shear", floating=True)
    if axis not in ("x", "y"):
        raise ValueError(f"shear: axis must be 'x' (rows slide sideways) or 'y' (columns slide "
                         f"up/down), got {axis!r}")
    rng = np.random.default_rng(rng)
    n, h, w, _ = x.shape
    kk = _per_image(k, n, rng, "shear factor")[:, None, None]
    rows = np.arange(h, dtype=np.float64)[None, :, None]
    cols = np.arange(w, dtype=np.float64)[None, None, :]
    if axis == "x":   # output (r, c) shows input (r, c - k (r - c_r))
        src_r, src_c = rows + 0 * cols, cols - kk * (rows - (h - 1) / 2)
    else:             # output (r, c) shows input (r - k (c - c_c), c)
        src_r, src_c = rows - kk * (cols - (w - 1) / 2), cols + 0 * rows
    out = _sample(x, src_r, src_c, order, fill)
    if return_params:
        return out, kk[:, 0, 0]
    return out


def color_shift(x, delta=0.1, rng=None, *, return_params: bool = False):
    """Add a random offset to each colour channel of each image, then clip to [0, 1].

    Offsets are drawn uniformly in ``[-delta, +delta]``, independently for every image and
    channel (``delta``: a number, or one number per channel). An image whose pixels stay
    inside [0, 1] has each channel's mean moved by exactly its offset; clipping can only
    shrink the move. ``return_params=True`` also returns the offsets, shape ``(N, C)``.
    """
    x = _batch(x, "color_shift", floating=True)
    rng = np.random.default_rng(rng)
    n, _, _, c = x.shape
    delta = np.asarray(delta, dtype=np.float64)
    if delta.ndim > 1 or (delta.ndim == 1 and delta.shape != (c,)) or np.any(delta < 0):
        raise ValueError(f"color_shift: delta must be >= 0, a number or {c} per-channel values, "
                         f"got {delta!r}")
    offsets = rng.uniform(-1.0, 1.0, size=(n, c)) * delta
    _, h, w, _ = x.shape
    # each row of an image holds W pixels of C channels: add the offsets repeated W times, so
    # numpy runs one loop of W * C values per row instead of W loops of C
    row_offsets = np.tile(offsets.astype(x.dtype), w)[:, None, :]
    out = x.reshape(n, h, w * c) + row_offsets
    out = np.clip(out, 0, 1, out=out).reshape(x.shape).astype(x.dtype, copy=False)
    if return_params:
        return out, offsets.astype(x.dtype)
    return out


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------

class Augmenter:
    """A list of transforms, each applied to a random subset of the batch.

        aug = Augmenter([
            (mirror, 0.5),                                          # flip half the images
            (partial(rotate, angle=(-10, 10)), 0.3),                # turn 30 % of them a bit
            partial(random_crop, size=28, pad=2),                   # p = 1: every image
        ], seed=0)
        xb = aug(xb)

    Each step is ``(transform, p)`` or a bare transform (``p = 1``); a transform is called as
    ``transform(x_subset, rng=generator)`` and must return images of the same shape (a step
    with ``p = 1`` may change the shape, e.g. a crop without ``resize_back``). For every step
    each image is picked independently with probability ``p``. All draws come from one
    Generator made from ``seed``: the same seed and the same batches give the same output.
    """

    def __init__(self, steps, seed=None):
        self.steps = []
        for step in steps:
            fn, p = step if isinstance(step, tuple) else (step, 1.0)
            if not callable(fn):
                raise TypeError(f"Augmenter: {fn!r} is not callable; steps are (transform, p) "
                                "pairs or transforms")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Augmenter: probability for {_name(fn)} must be in [0, 1], got {p!r}")
            self.steps.append((fn, float(p)))
        self.rng = np.random.default_rng(seed)

    def __call__(self, x) -> np.ndarray:
        x = _batch(x, "Augmenter")
        for fn, p in self.steps:
            if p == 1.0:
                x = fn(x, rng=self.rng)
                continue
            picked = self.rng.random(x.shape[0]) < p
            if not picked.any():
                continue
            part = fn(x[picked], rng=self.rng)
            if part.shape != x[picked].shape:
                raise ValueError(f"Augmenter: {_name(fn)} changed the image shape from "
                                 f"{x[picked].shape[1:]} to {part.shape[1:]}; only steps with "
                                 "p = 1 may (use resize_back=True for a crop)")
            x = x.copy()
            x[picked] = part
        return x

    def __repr__(self) -> str:
        inner = ", ".join(f"({_name(fn)}, {p:g})" for fn, p in self.steps)
        return f"Augmenter([{inner}])"


def _name(fn) -> str:
    base = getattr(fn, "func", fn)  # functools.partial
    name = getattr(base, "__name__", repr(base))
    kw = getattr(fn, "keywords", None)
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in kw.items())})" if kw else name
