"""Input validation shared by every public op.

Compiled Numba code does not check bounds: a wrong shape there reads garbage or crashes the
process. So every public op checks its inputs here, in Python, first, and raises a
``TypeError``/``ValueError`` that names the argument and shows the shapes involved.
"""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import numpy as np

from .backend import is_device_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Window(NamedTuple):
    """Where a filter or pooling window sits on the input.

    Output position ``(h_out, w_out)`` looks at input rows
    ``h_out * stride_h - pad_top ... + f_h - 1`` and columns likewise; rows and columns
    outside the input are the (zero) padding. Kernels receive this tuple, not 6 loose ints.
    """

    f_h: int
    f_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int


def window_span(win: Window, out_hw) -> tuple[int, int]:
    """The input rows and columns that the windows of an ``(H_out, W_out)`` output cover, padding
    included: ``(H_out - 1) * stride_h + f_h`` by ``(W_out - 1) * stride_w + f_w``."""
    return (out_hw[0] - 1) * win.stride_h + win.f_h, (out_hw[1] - 1) * win.stride_w + win.f_w


def reaches_padding(win: Window, x_hw, out_hw) -> bool:
    """Whether any window reads past the ``(H, W)`` input: into the padding on any side."""
    rows, cols = window_span(win, out_hw)
    return (win.pad_top > 0 or win.pad_left > 0
            or rows - win.pad_top > x_hw[0] or cols - win.pad_left > x_hw[1])


class Padding(NamedTuple):
    top: int
    bottom: int
    left: int
    right: int


def output_size(size: int, f: int, stride: int, pad_before: int, pad_after: int) -> int:
    """``out = (size + pad_before + pad_after - f) // stride + 1``, the lecture's formula."""
    return (size + pad_before + pad_after - f) // stride + 1


# --------------------------------------------------------------------------- arrays


def as_array(a, name: str, ndim: int | None = None, dtype=None):
    """Check ``a`` is a float32/float64 array (numpy or GPU) of ``ndim`` dims; return it.

    Lists and other array-likes are converted with ``np.asarray``; numpy arrays are made
    C-contiguous (kernels index them directly). ``dtype``, when given, casts numpy inputs to
    it (device arrays must already have it).
    """
    if (type(a) is np.ndarray and a.dtype in FLOAT_DTYPES and a.flags.c_contiguous and a.size
            and (ndim is None or a.ndim == ndim) and (dtype is None or a.dtype == dtype)):
        return a  # already what the kernels take: the common case, checked in ~1 us instead of ~4
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name} must be an array of float32 or float64, got {type(a).__name__} {a!r:.40}")
    if not is_device_array(a):
        try:
            a = np.asarray(a)
        except Exception as exc:
            raise TypeError(f"{name} cannot be read as an array: {exc}") from None
        if a.dtype == object or a.dtype.kind in "USVMmb":
            raise TypeError(f"{name} must be an array of float32 or float64 numbers, got dtype {a.dtype}")
    if np.dtype(a.dtype) not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {np.dtype(a.dtype)}; nbcnn kernels take float32 or float64 "
            f"(use {name}.astype(np.float32))"
        )
    if ndim is not None and len(a.shape) != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(a.shape)} ({len(a.shape)} dims)")
    if any(int(s) == 0 for s in a.shape):
        raise ValueError(f"{name} has an empty dimension: shape {tuple(a.shape)}")
    if is_device_array(a):
        if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
            raise TypeError(f"{name} is a GPU array of {np.dtype(a.dtype)} but the op computes in {np.dtype(dtype)}; "
                            f"give every input the same dtype")
        return a
    # np.asarray(order="C"), not np.ascontiguousarray: that one turns a 0-d array into shape (1,)
    return np.asarray(a, dtype=dtype, order="C")


def host_numbers(a, name: str, what: str = "an array of numbers", kinds: str = "iuf") -> np.ndarray:
    """``a`` as a host numpy array whose dtype kind is one of ``kinds`` (ints and floats by
    default), or a TypeError naming it: for the inputs that are not a kernel's NHWC float array
    (boxes, scores, labels, the course's arrays). GPU arrays are copied to the host."""
    if a is None or isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be {what}, got {type(a).__name__} {a!r:.40}")
    if is_device_array(a):
        from .backend import to_host

        a = to_host(a)
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} cannot be read as {what}: {exc}") from None
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{name} must be {what}, got dtype {arr.dtype}")
    return arr


def common_dtype(*arrays) -> np.dtype:
    """float64 if any input is float64, else float32 (mixing is allowed: float32 is promoted)."""
    first = arrays[0].dtype
    if all(a.dtype == first for a in arrays):
        return np.dtype(first)
    return np.result_type(*[np.dtype(a.dtype) for a in arrays])


def same_shape(a, b, name_a: str, name_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match")


# --------------------------------------------------------------------------- hyper-parameters


def _is_int(v) -> bool:
    # `type(v) is int` first: the ABC test is ~1 us, paid on every op call
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


HYPER_MAX = 2**31 - 1
"""The largest window size, stride or pad: the kernels index in 64-bit integers, and products
such as ``h_out * stride`` must not overflow them (``2**62`` and ``2**64`` did)."""


def int_pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each in [minimum, HYPER_MAX]."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(pair) > HYPER_MAX:
        raise ValueError(f"{name} must be at most 2**31 - 1, got {value!r}")
    return pair


def padding(pad, size_hw, f_hw, stride_hw) -> Padding:
    """Resolve ``pad`` into per-side zero padding.

    ``pad`` is an int (same on every side), an (h, w) pair, ``((top, bottom), (left, right))``,
    ``"valid"`` (no padding) or ``"same"``. "same" follows Keras/TensorFlow: the output has
    ``ceil(size / stride)`` positions, and an odd total padding puts the extra row/column at
    the bottom/right. With stride 1 and an odd f that is the lecture's ``p = (f - 1) / 2``.
    """
    if isinstance(pad, str):
        mode = pad.lower()
        if mode == "valid":
            return Padding(0, 0, 0, 0)
        if mode == "same":
            sides = []
            for size, f, s in zip(size_hw, f_hw, stride_hw):
                out = -(-size // s)
                total = max((out - 1) * s + f - size, 0)
                sides += [total // 2, total - total // 2]
            return Padding(*sides)
        raise ValueError(f"pad must be an int, a pair, 'valid' or 'same', got {pad!r}")
    if (isinstance(pad, (tuple, list)) and len(pad) == 2
            and all(isinstance(p, (tuple, list)) for p in pad)):
        top, bottom = int_pair(tuple(pad[0]), "pad[0] (top, bottom)", 0)
        left, right = int_pair(tuple(pad[1]), "pad[1] (left, right)", 0)
        return Padding(top, bottom, left, right)
    ph, pw = int_pair(pad, "pad", 0)
    return Padding(ph, ph, pw, pw)


def window(x_shape, f_hw, stride, pad, what: str) -> tuple[Window, tuple[int, int], Padding]:
    """Check a window against an NHWC input; return it, the output (H_out, W_out) and the padding.

    The usual arguments (an int stride, an int or "same"/"valid" pad) are looked up in a cache
    of the windows already checked: a network asks for the same few at every step (see
    ``_window_checked``)."""
    if type(stride) is int and type(pad) in (int, str):
        return _window_checked(tuple(x_shape), tuple(f_hw), stride, pad, what)
    return _window(x_shape, f_hw, stride, pad, what)


@functools.lru_cache(maxsize=1024)
def _window_checked(x_shape, f_hw, stride, pad, what):
    """``_window`` remembered (it only raises for bad arguments, and a raise is not cached). Each
    op's checks run in Python right after the previous op's kernel has evicted the
    interpreter's data from the caches, where even this arithmetic cost tens of microseconds."""
    return _window(x_shape, f_hw, stride, pad, what)


def _window(x_shape, f_hw, stride, pad, what: str) -> tuple[Window, tuple[int, int], Padding]:
    _, H, W, _ = x_shape
    sh, sw = int_pair(stride, "stride", 1)
    p = padding(pad, (H, W), f_hw, (sh, sw))
    fh, fw = f_hw
    if fh > H + p.top + p.bottom or fw > W + p.left + p.right:
        raise ValueError(
            f"{what} window {fh}x{fw} is larger than the padded input "
            f"{H + p.top + p.bottom}x{W + p.left + p.right} (input {H}x{W}, pad {tuple(p)})"
        )
    out_hw = (output_size(H, fh, sh, p.top, p.bottom), output_size(W, fw, sw, p.left, p.right))
    return Window(fh, fw, sh, sw, p.top, p.left), out_hw, p


# --------------------------------------------------------------------------- ops


def plain_arrays(*arrays) -> bool:
    """Whether every array is one the cpu kernels take as it is, all of one dtype: non-empty,
    C-contiguous numpy float32 (or all float64). ``as_array`` and ``common_dtype`` would return
    such arrays unchanged, so an op may skip them (``ops.conv2d``'s direct cpu path)."""
    dtype = arrays[0].dtype if type(arrays[0]) is np.ndarray else None
    if dtype not in FLOAT_DTYPES:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous or not a.size:
            return False
    return True


def plain_conv_inputs(x, W, b) -> bool:
    """``conv_inputs(x, W, b)`` would return these three unchanged and raise nothing: plain
    arrays (``plain_arrays``) of 4, 4 and 1 dimensions whose channels and filters agree."""
    return (b is not None and plain_arrays(x, W, b) and x.ndim == 4 and W.ndim == 4 and b.ndim == 1
            and x.shape[3] == W.shape[2] and b.shape[0] == W.shape[3])


def conv_inputs(x, W, b=None):
    """Check the NHWC input, the (f_h, f_w, C_in, C_out) filters and the (C_out,) bias.

    Returns ``(x, W, b)`` in one common dtype; ``b`` may be None (backward needs no bias).
    """
    arrays = [as_array(x, "x", 4), as_array(W, "W (filters)", 4)]
    if b is not None:
        arrays.append(as_array(b, "b (bias)"))
    dtype = common_dtype(*arrays)
    x, W = as_array(arrays[0], "x", 4, dtype), as_array(arrays[1], "W (filters)", 4, dtype)
    if x.shape[3] != W.shape[2]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[3]} channels (shape {tuple(x.shape)}, NHWC) but the filters "
            f"W expect {W.shape[2]} (shape {tuple(W.shape)}, (f_h, f_w, C_in, C_out))"
        )
    if b is None:
        return x, W, None
    b = as_array(arrays[2], "b (bias)", None, dtype)
    if b.size != W.shape[3] or (len(b.shape) > 1 and b.shape[-1] != W.shape[3]):
        raise ValueError(
            f"bias b has shape {tuple(b.shape)} but W has {W.shape[3]} filters (shape {tuple(W.shape)}): "
            f"b needs {W.shape[3]} values"
        )
    if is_device_array(b) and len(b.shape) != 1:
        raise ValueError(f"a GPU bias must be 1-D of shape ({W.shape[3]},), got {tuple(b.shape)}")
    return x, W, b.reshape(-1)


def depthwise_inputs(x, W, b=None):
    """Check the NHWC input, the (f_h, f_w, C) depthwise filters and the (C,) bias.

    W may also be (f_h, f_w, C, 1), TensorFlow's layout for a channel multiplier of 1; it is
    returned as (f_h, f_w, C) either way. Returns ``(x, W, b)`` in one common dtype (b may be None).
    """
    arrays = [as_array(x, "x", 4), as_array(W, "W (depthwise filters)")]
    if b is not None:
        arrays.append(as_array(b, "b (bias)"))
    dtype = common_dtype(*arrays)
    x = as_array(arrays[0], "x", 4, dtype)
    W = as_array(arrays[1], "W (depthwise filters)", None, dtype)
    if len(W.shape) == 4 and W.shape[3] == 1:
        W = W.reshape(W.shape[:3])
    if len(W.shape) != 3:
        raise ValueError(f"depthwise filters W must have shape (f_h, f_w, C) or (f_h, f_w, C, 1) (one filter "
                         f"per channel), got shape {tuple(W.shape)}")
    if x.shape[3] != W.shape[2]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[3]} channels (shape {tuple(x.shape)}, NHWC) but the depthwise "
            f"filters W have {W.shape[2]} (shape {tuple(W.shape)}, (f_h, f_w, C)): one filter per channel"
        )
    if b is None:
        return x, W, None
    b = as_array(arrays[2], "b (bias)", None, dtype)
    if len(b.shape) != 1 or b.shape[0] != W.shape[2]:
        raise ValueError(f"bias b has shape {tuple(b.shape)} but the depthwise filters W (shape {tuple(W.shape)}) "
                         f"have {W.shape[2]} channels: b must have shape ({W.shape[2]},)")
    return x, W, b


def dense_inputs(x, W, b=None):
    """Check x (N, D), W (D, M) and b (M,); returns them in one common dtype (b may be None)."""
    arrays = [as_array(x, "x", 2), as_array(W, "W", 2)] + ([as_array(b, "b", 1)] if b is not None else [])
    dtype = common_dtype(*arrays)
    x, W = as_array(arrays[0], "x", 2, dtype), as_array(arrays[1], "W", 2, dtype)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"dense: x has {x.shape[1]} features (shape {tuple(x.shape)}) but W has "
                         f"{W.shape[0]} rows (shape {tuple(W.shape)}); flatten x to (N, D) with D = W.shape[0]")
    if b is None:
        return x, W, None
    b = as_array(arrays[2], "b", 1, dtype)
    if b.shape[0] != W.shape[1]:
        raise ValueError(f"dense: bias b has shape {tuple(b.shape)} but W has {W.shape[1]} columns "
                         f"(shape {tuple(W.shape)})")
    return x, W, b


def pool_window(x_shape, f, stride, pad, what: str):
    """A pooling window: no side may be padded by f or more (a window of only padding has no max)."""
    fh, fw = int_pair(f, "f (window size)", 1)
    win, out_hw, p = window(x_shape, (fh, fw), stride if stride is not None else (fh, fw), pad, what)
    if max(p.top, p.bottom) >= fh or max(p.left, p.right) >= fw:
        raise ValueError(f"{what}: padding {tuple(p)} must be smaller than the window {fh}x{fw} on every side")
    return win, out_hw


def grad_shape(grad, name: str, expected) -> None:
    if tuple(grad.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(grad.shape)} but the forward output has shape {tuple(expected)}")


# --------------------------------------------------------------------------- layer, model and training arguments
# Normalised once, where the user passes them (Keras' standardize_tuple and friends): a layer's
# constructor, fit / evaluate / predict. ``int_pair`` above is the (h, w) form.


def int_arg(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as a Python int in [minimum, maximum]; numpy integers are ints, bools and
    floats (even 3.0) are not: ``Conv2D(4.5, 3)`` must not quietly become 4 filters."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r:.60}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def real_arg(value, name: str, low: float = -np.inf, high: float = np.inf, low_ok: bool = True,
             high_ok: bool = True) -> float:
    """``value`` as a finite float between ``low`` and ``high`` (each end included when its
    ``*_ok``), else a TypeError/ValueError naming it: NaN, infinities and strings stop here."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r:.60}")
    value = float(value)
    inside = (low <= value if low_ok else low < value) and (value <= high if high_ok else value < high)
    if not (np.isfinite(value) and inside):
        opening = "[" if low_ok and low > -np.inf else "("
        closing = "]" if high_ok and high < np.inf else ")"
        bounds = f"{opening}{low:g}, {high:g}{closing}"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return value


def class_labels(y, num_classes: int, name: str = "y") -> np.ndarray:
    """Classification targets as int64 class numbers ``(N,)``.

    Accepted: ``(N,)`` whole numbers in ``[0, num_classes)`` (any integer dtype, or floats
    such as 3.0), or ``(N, num_classes)`` one-hot rows. Refused with a ValueError naming the
    first bad entry: NaN, 1.5, -1, ``num_classes`` or more, and rows that are not one-hot
    (nbcnn's cross-entropy takes hard labels: probabilities would be reduced to their argmax).
    """
    y = host_numbers(y, name, "an array of class numbers (integers)")
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"{name} has one-hot rows of {y.shape[1]} columns but the model outputs "
                             f"{num_classes} classes")
        bad = ~(((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must hold one-hot rows (one 1, the rest 0): {name}[{i}] = "
                             f"{np.array2string(y[i], threshold=12)}; the cross-entropy takes hard labels, "
                             f"not probabilities")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        raise ValueError(f"{name} must be (N,) class numbers or (N, {num_classes}) one-hot rows, got shape {y.shape}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        bad[~bad] = y[~bad] != np.floor(y[~bad])
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must hold whole class numbers in [0, {num_classes}), "
                             f"got {name}[{i}] = {y[i].item()!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        i = int(np.argmax((y < 0) | (y >= num_classes)))
        raise ValueError(f"{name} must hold class numbers in [0, {num_classes}), got {name}[{i}] = {y[i].item()!r}")
    return y.astype(np.int64)
