"""The functional API: every op validates its inputs, then runs its kernel on the chosen backend.

Arrays are NHWC (``(N, H, W, C)``), float32 by default; float64 is accepted and kept.
numpy in gives numpy out; GPU arrays in (anything with ``__cuda_array_interface__``,
on the cuda backend) give GPU arrays out, so activations can stay on the device.

Every backward takes the upstream gradient and the forward's *inputs* (not its cache):

    z = conv2d(x, W, b, stride, pad)            dx, dW, db = conv2d_backward(dz, x, W, stride, pad)
    p = max_pool2d(x, f, stride, pad)           dx = max_pool2d_backward(dp, x, f, stride, pad)
    p, argmax = max_pool2d(..., return_argmax=True)   dx = max_pool2d_backward(..., argmax=argmax)
    p = avg_pool2d(x, f, stride, pad)           dx = avg_pool2d_backward(dp, x, f, stride, pad)
    y = dense(x, W, b)                          dx, dW, db = dense_backward(dy, x, W)
    y = relu(x) / sigmoid(x) / tanh(x)          dx = relu_backward(dy, x) ...
    y = leaky_relu(x, slope=0.1)                dx = leaky_relu_backward(dy, x, slope=0.1)
    y = upsample2d(x, size=2)  (nearest)        dx = upsample2d_backward(dy, x, size=2)
    y = softmax(x)  (over the last axis)        dx = softmax_backward(dy, x)

Batch norm is the exception that keeps a cache (its statistics are computed in the forward):

    y, cache = batch_norm(x, gamma, beta)       dx, dgamma, dbeta = batch_norm_backward(dy, cache, gamma)

Boxes (corners x1, y1, x2, y2; no gradients):

    iou = box_iou(boxes1, boxes2)  (N, M)       iou(box1, box2) -> float
    keep = nms(boxes, scores, iou_threshold, max_boxes)           indices, best score first
    keep = batched_nms(boxes, scores, classes, iou_threshold, max_boxes)   per class

The YOLO training loss (targets from nbcnn.detection.targets.encode_targets):

    terms = yolo_loss(pred, target, B)          dpred = yolo_loss_backward(pred, target, B, dloss=1 / N)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from . import backend, checks
from .kernels import activations, bias, conv, dense as dense_kernels, pool
from .kernels import fast  # noqa: F401  (installs the fast kernels on the readable ones)


def _run(kernel, inputs, params, out_shape, dtype, device):
    """Move ``inputs`` to the backend, allocate the output, launch, and return the output there.
    On cpu, numpy inputs go straight to the kernel launch would run (``backend.cpu_runners``:
    the op's Python runs with cold caches after the previous kernel, where each layer costs)."""
    if device == "cpu" and all(type(a) is np.ndarray for a in inputs):
        run = backend.cpu_runners(kernel, backend=device)
        if run is not None:
            out = backend.aligned_empty(out_shape, dtype)
            run[0](*inputs, *params, out)
            return out
    on_device = [backend.to_backend(a, device) for a in inputs]
    out = backend.empty(out_shape, dtype, device)
    backend.launch(kernel, *on_device, *params, out, backend=device)
    return out


# --------------------------------------------------------------------------- convolution


def _no_bias_is_zero(b, n, dtype):
    """``b=None`` means no bias (as in torch): zeros, so the kernels need no second form."""
    return np.zeros(n, dtype) if b is None else b


def conv2d(x, W, b=None, stride=1, pad=0, activation=None):
    """2-D convolution of an NHWC batch with ``C_out`` filters, plus bias.

    x (N, H, W, C_in), W (f_h, f_w, C_in, C_out), b (C_out,) -> z (N, H_out, W_out, C_out)

        H_out = (H + 2 * pad - f_h) // stride + 1        (W_out likewise)

    ``stride``: int or (h, w). ``pad``: int, (h, w), ((top, bottom), (left, right)),
    "valid" or "same" (Keras/TensorFlow rule: output size ceil(H / stride)).
    ``activation="relu"``: ``relu(conv2d(...))`` in one kernel (the same numbers as the two
    ops; the cpu tiles apply it before storing, so z is written once and never read back).
    """
    if activation not in (None, "relu"):
        raise ValueError(f"conv2d: activation must be None or 'relu', got {activation!r}")
    kernel = conv.FORWARD_RELU if activation == "relu" else conv.FORWARD
    if checks.plain_conv_inputs(x, W, b):
        run = backend.cpu_runners(kernel)
        if run is not None:  # the cpu kernel, straight away (see backend.cpu_runners)
            win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "conv2d")
            z = backend.aligned_empty((x.shape[0], H_out, W_out, W.shape[3]), x.dtype)
            run[0](x, W, b, win, z)
            return z
    x, W, b = checks.conv_inputs(x, W, b)
    b = _no_bias_is_zero(b, W.shape[3], x.dtype)
    win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "conv2d")
    device = backend.get_backend()
    z = _run(kernel, (x, W, b), (win,), (x.shape[0], H_out, W_out, W.shape[3]), x.dtype, device)
    return backend.like_inputs(z, x, W, b)


def conv2d_backward(dz, x, W, stride=1, pad=0, need_dx=True):
    """Gradients of ``conv2d``: returns ``(dx, dW, db)`` shaped like x, W and (C_out,).

    ``need_dx=False`` skips dx (returned as None): a network's first layer needs no gradient
    for its input images while training, and dx is the most expensive of the three there.
    """
    if checks.plain_arrays(dz, x, W) and x.ndim == 4 and W.ndim == 4 and x.shape[3] == W.shape[2]:
        run = backend.cpu_runners(conv.BACKWARD_INPUT, conv.BACKWARD_FILTER, bias.BACKWARD)
        win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "conv2d_backward")
        if run is not None and dz.shape == (x.shape[0], H_out, W_out, W.shape[3]):  # see conv2d
            dx = backend.aligned_empty(x.shape, x.dtype) if need_dx else None
            if need_dx:
                run[0](dz, W, win, dx)
            dW = backend.aligned_empty(W.shape, x.dtype)
            db = backend.aligned_empty((W.shape[3],), x.dtype)
            # the cpu dW's tiles sum db from the rows of dz they read (returns whether it did)
            if not run[1](x, dz, win, dW, db=db):
                run[2](dz.reshape(-1, W.shape[3]), db)
            return dx, dW, db
    x, W, _ = checks.conv_inputs(x, W)
    win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "conv2d_backward")
    dz = checks.as_array(dz, "dz", 4, x.dtype)
    checks.grad_shape(dz, "dz", (x.shape[0], H_out, W_out, W.shape[3]))
    device = backend.get_backend()
    x_, W_, dz_ = (backend.to_backend(a, device) for a in (x, W, dz))
    dx = _run(conv.BACKWARD_INPUT, (dz_, W_), (win,), x.shape, x.dtype, device) if need_dx else None
    dW = _run(conv.BACKWARD_FILTER, (x_, dz_), (win,), W.shape, x.dtype, device)
    db = _run(bias.BACKWARD, (dz_.reshape(-1, W.shape[3]),), (), (W.shape[3],), x.dtype, device)
    return tuple(None if g is None else backend.like_inputs(g, dz, x, W) for g in (dx, dW, db))


# --------------------------------------------------------------------------- depthwise convolution

from .kernels import depthwise  # noqa: E402  (kept with the ops it serves)


def depthwise_conv2d(x, W, b=None, stride=1, pad=0):
    """Depthwise convolution: filter c slides over channel c only (channel multiplier 1).

    x (N, H, W, C), W (f_h, f_w, C) (or TensorFlow's (f_h, f_w, C, 1)), b (C,) -> z (N, H_out, W_out, C)

        z[n, h, w, c] = b[c] + sum over (i, j) of x[n, h_in, w_in, c] * W[i, j, c]
        h_in = h * stride - pad_top + i                  (w_in likewise)
        H_out = (H + 2 * pad - f_h) // stride + 1        (W_out likewise)

    ``stride`` and ``pad`` as in ``conv2d``. Followed by a 1x1 ``conv2d`` it is a
    depthwise-separable convolution (MobileNet; ``nbcnn.layers.SeparableConv2D``). The kernel:
    ``nbcnn/kernels/depthwise.py``.
    """
    x, W, b = checks.depthwise_inputs(x, W, b)
    b = _no_bias_is_zero(b, W.shape[2], x.dtype)
    win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "depthwise_conv2d")
    device = backend.get_backend()
    z = _run(depthwise.FORWARD, (x, W, b), (win,), (x.shape[0], H_out, W_out, x.shape[3]), x.dtype, device)
    return backend.like_inputs(z, x, W, b)


def depthwise_conv2d_backward(dz, x, W, stride=1, pad=0, need_dx=True):
    """Gradients of ``depthwise_conv2d``: returns ``(dx, dW, db)`` shaped like x, W (as given:
    (f_h, f_w, C) or (f_h, f_w, C, 1)) and (C,). ``need_dx=False`` skips dx (returned as None)::

        dx[n, h_in, w_in, c] = sum over the windows covering (h_in, w_in) of dz[n, h_out, w_out, c] * W[i, j, c]
        dW[i, j, c]          = sum over (n, h_out, w_out) of x[n, h_in, w_in, c] * dz[n, h_out, w_out, c]
        db[c]                = sum of dz[..., c]
    """
    W_shape = tuple(getattr(W, "shape", np.shape(W)))
    x, W, _ = checks.depthwise_inputs(x, W)
    win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "depthwise_conv2d_backward")
    dz = checks.as_array(dz, "dz", 4, x.dtype)
    checks.grad_shape(dz, "dz", (x.shape[0], H_out, W_out, x.shape[3]))
    device = backend.get_backend()
    x_, W_, dz_ = (backend.to_backend(a, device) for a in (x, W, dz))
    dx = _run(depthwise.BACKWARD_INPUT, (dz_, W_), (win,), x.shape, x.dtype, device) if need_dx else None
    dW = _run(depthwise.BACKWARD_FILTER, (x_, dz_), (win,), W.shape, x.dtype, device)
    db = _run(bias.BACKWARD, (dz_.reshape(-1, x.shape[3]),), (), (x.shape[3],), x.dtype, device)
    dW = dW.reshape(W_shape)  # the layout the caller gave: (f_h, f_w, C) or (f_h, f_w, C, 1)
    return tuple(None if g is None else backend.like_inputs(g, dz, x, W) for g in (dx, dW, db))


# --------------------------------------------------------------------------- pooling


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _nhwc(a, name, dtype=None):
    """``checks.as_array(a, name, 4, dtype)``, with a shortcut for what it would return unchanged
    (a C-contiguous float NHWC numpy array): pooling is cheap, so checking costs show."""
    if (type(a) is np.ndarray and a.ndim == 4 and a.dtype in _FLOATS and (dtype is None or a.dtype == dtype)
            and a.flags.c_contiguous and a.size):
        return a
    return checks.as_array(a, name, 4, dtype)


@functools.lru_cache(maxsize=512)
def _cached_window(x_shape, f, stride, pad, what):
    return checks.pool_window(x_shape, f, stride, pad, what)


def _plain(value) -> bool:
    """A hyper-parameter made only of exact ints, strings, None and tuples of them. Only those are
    remembered: ``2 == 2.0 == True`` and they hash alike, so a cache keyed on a float or a bool
    would hand back the verdict given to an int (accepting ``f=2.0`` after ``f=2``)."""
    kind = type(value)
    return kind is int or kind is str or value is None or (kind is tuple and all(_plain(v) for v in value))


def _window(x_shape, f, stride, pad, what):
    """``checks.pool_window``, remembered for plain arguments (a model pools the same shapes
    at every step; the checks cost as much as a small pooling kernel)."""
    if _plain(f) and _plain(stride) and _plain(pad):
        return _cached_window(tuple(x_shape), f, stride, pad, what)
    return checks.pool_window(x_shape, f, stride, pad, what)


ARGMAX_MAX_CELLS = np.iinfo(np.int32).max


def _check_argmax_fits(win, what):
    """The argmax is int32 (as torch's indices on GPU, and half the memory of int64): a window of
    more cells than int32 can number is refused rather than numbered wrongly."""
    if win.f_h * win.f_w > ARGMAX_MAX_CELLS:
        raise ValueError(f"{what}: an argmax numbers the cells of the {win.f_h}x{win.f_w} window in int32, "
                         f"which holds at most {ARGMAX_MAX_CELLS} cells; use a smaller window")


def _pool(kernel, x, f, stride, pad, what):
    x = _nhwc(x, "x")
    win, (H_out, W_out) = _window(x.shape, f, stride, pad, what)
    device = backend.get_backend()
    p = _run(kernel, (x,), (win,), (x.shape[0], H_out, W_out, x.shape[3]), x.dtype, device)
    return backend.like_inputs(p, x)


def _pool_inputs(dp, x, f, stride, pad, what):
    x = _nhwc(x, "x")
    win, (H_out, W_out) = _window(x.shape, f, stride, pad, what)
    dp = _nhwc(dp, "dp", x.dtype)
    checks.grad_shape(dp, "dp", (x.shape[0], H_out, W_out, x.shape[3]))
    return dp, x, win


def max_pool2d(x, f=2, stride=None, pad=0, return_argmax=False):
    """Max pooling, each channel on its own: x (N, H, W, C) -> (N, H_out, W_out, C).

        H_out = (H + 2 * pad - f) // stride + 1          (stride defaults to f)

    Windows may overlap. Padding ("same" or ints, smaller than f) is ignored by the max.

    ``return_argmax=True`` returns ``(p, argmax)``: ``argmax`` (int32, p's shape) says which
    cell of its window each maximum came from, ``i * f_w + j`` (row i, column j inside the
    window, padding rows/columns counted; ties: the first maximum in row-major order; a NaN
    wins). Hand it to ``max_pool2d_backward(..., argmax=argmax)``, as PyTorch keeps the
    forward's ``indices``: the backward then needs no search of x.
    """
    if not return_argmax:
        return _pool(pool.MAX_FORWARD, x, f, stride, pad, "max_pool2d")
    x = _nhwc(x, "x")
    win, (H_out, W_out) = _window(x.shape, f, stride, pad, "max_pool2d")
    _check_argmax_fits(win, "max_pool2d(..., return_argmax=True)")
    device = backend.get_backend()
    out_shape = (x.shape[0], H_out, W_out, x.shape[3])
    p, argmax = backend.empty(out_shape, x.dtype, device), backend.empty(out_shape, np.int32, device)
    run = backend.cpu_runners(pool.MAX_ARGMAX, backend=device) if type(x) is np.ndarray else None
    if run is not None:  # see _run
        run[0](x, win, p, argmax)
        return p, argmax
    backend.launch(pool.MAX_ARGMAX, backend.to_backend(x, device), win, p, argmax, backend=device)
    return backend.like_inputs(p, x), backend.like_inputs(argmax, x)


def _argmax_input(argmax, dp, win, device):
    """Check the forward's argmax against dp and the window; return it as int32 where ``device``
    reads it. Host arrays are checked cell by cell (values in [0, f_h * f_w)); a GPU array only
    for its dtype and shape (checking its values would copy it back; the cuda kernels only
    compare them, so a wrong value can only misroute gradient, never touch memory out of bounds)."""
    _check_argmax_fits(win, "max_pool2d_backward(..., argmax=...)")
    cells = win.f_h * win.f_w
    if argmax is None or isinstance(argmax, (str, bytes)):
        raise TypeError(f"argmax must be the int32 array max_pool2d(..., return_argmax=True) returned, "
                        f"got {type(argmax).__name__}")
    on_gpu = backend.is_device_array(argmax) and device == "cuda"
    if not on_gpu:
        try:
            argmax = backend.to_host(argmax) if backend.is_device_array(argmax) else np.asarray(argmax)
        except Exception as exc:
            raise TypeError(f"argmax cannot be read as an array: {exc}") from None
    kind = np.dtype(argmax.dtype).kind
    if kind not in "iu" or (on_gpu and np.dtype(argmax.dtype) != np.int32):
        raise TypeError(f"argmax must be an integer array (int32, as max_pool2d(..., return_argmax=True) "
                        f"returns it), got dtype {np.dtype(argmax.dtype)}")
    if tuple(argmax.shape) != tuple(dp.shape):
        raise ValueError(f"argmax has shape {tuple(argmax.shape)} but dp (the forward output's gradient) "
                         f"has shape {tuple(dp.shape)}; they must match")
    if on_gpu:
        return argmax
    # one pass: seen as unsigned, a negative number is huge (twice as fast as min() and max())
    if argmax.size and int(argmax.view(argmax.dtype.str.replace("i", "u")).max()) >= cells:
        lo, hi = int(argmax.min()), int(argmax.max())
        raise ValueError(f"argmax values must lie in [0, {cells}) (cell i * f_w + j of the {win.f_h}x{win.f_w} "
                         f"window), got values from {lo} to {hi}")
    return backend.to_backend(np.ascontiguousarray(argmax, np.int32), device)


def max_pool2d_backward(dp, x, f=2, stride=None, pad=0, argmax=None):
    """Gradient of ``max_pool2d``: each window's gradient goes to its maximum, the first one
    in row-major order when several cells tie.

    With ``argmax`` (from ``max_pool2d(..., return_argmax=True)`` with the same f, stride and
    pad) the gradient is routed by it, without searching x (x then only gives the shape and
    dtype); the result is the same, bit for bit.
    """
    dp, x, win = _pool_inputs(dp, x, f, stride, pad, "max_pool2d_backward")
    device = backend.get_backend()
    if argmax is None:
        dx = _run(pool.MAX_BACKWARD, (dp, x), (win,), x.shape, x.dtype, device)
    else:
        argmax = _argmax_input(argmax, dp, win, device)
        dx = _run(pool.MAX_BACKWARD_ARGMAX, (dp, argmax), (win,), x.shape, x.dtype, device)
    return backend.like_inputs(dx, dp, x)


def avg_pool2d(x, f=2, stride=None, pad=0):
    """Average pooling: x (N, H, W, C) -> (N, H_out, W_out, C), H_out as in ``max_pool2d``.

    With padding, each window averages its real cells only (TensorFlow's rule).
    """
    return _pool(pool.AVG_FORWARD, x, f, stride, pad, "avg_pool2d")


def avg_pool2d_backward(dp, x, f=2, stride=None, pad=0):
    """Gradient of ``avg_pool2d``: each window spreads its gradient evenly over its cells."""
    dp, x, win = _pool_inputs(dp, x, f, stride, pad, "avg_pool2d_backward")
    device = backend.get_backend()
    dx = _run(pool.AVG_BACKWARD, (dp,), (win,), x.shape, x.dtype, device)
    return backend.like_inputs(dx, dp, x)


# --------------------------------------------------------------------------- dense


def dense(x, W, b=None):
    """Fully connected layer ``y = x @ W + b``: x (N, D), W (D, M), b (M,) -> y (N, M)."""
    if _plain_dense(x, W) and b is not None and checks.plain_arrays(x, b) and b.ndim == 1 and b.shape[0] == W.shape[1]:
        run = backend.cpu_runners(dense_kernels.FORWARD)
        if run is not None:  # the cpu kernel, straight away (see conv2d)
            y = backend.aligned_empty((x.shape[0], W.shape[1]), x.dtype)
            run[0](x, W, b, y)
            return y
    x, W, b = checks.dense_inputs(x, W, b)
    b = _no_bias_is_zero(b, W.shape[1], x.dtype)
    device = backend.get_backend()
    y = _run(dense_kernels.FORWARD, (x, W, b), (), (x.shape[0], W.shape[1]), x.dtype, device)
    return backend.like_inputs(y, x, W, b)


def dense_backward(dy, x, W):
    """Gradients of ``dense``: ``(dx, dW, db) = (dy @ W.T, x.T @ dy, dy.sum(0))``."""
    if _plain_dense(x, W) and checks.plain_arrays(x, dy) and dy.shape == (x.shape[0], W.shape[1]):
        run = backend.cpu_runners(dense_kernels.BACKWARD_INPUT, dense_kernels.BACKWARD_WEIGHT, bias.BACKWARD)
        if run is not None:  # see conv2d
            dx, dW = backend.aligned_empty(x.shape, x.dtype), backend.aligned_empty(W.shape, x.dtype)
            db = backend.aligned_empty((W.shape[1],), x.dtype)
            run[0](dy, W, dx)
            run[1](x, dy, dW)
            run[2](dy, db)
            return dx, dW, db
    x, W, _ = checks.dense_inputs(x, W)
    dy = checks.as_array(dy, "dy", 2, x.dtype)
    checks.grad_shape(dy, "dy", (x.shape[0], W.shape[1]))
    device = backend.get_backend()
    x_, W_, dy_ = (backend.to_backend(a, device) for a in (x, W, dy))
    dx = _run(dense_kernels.BACKWARD_INPUT, (dy_, W_), (), x.shape, x.dtype, device)
    dW = _run(dense_kernels.BACKWARD_WEIGHT, (x_, dy_), (), W.shape, x.dtype, device)
    db = _run(bias.BACKWARD, (dy_,), (), (W.shape[1],), x.dtype, device)
    return tuple(backend.like_inputs(g, dy, x, W) for g in (dx, dW, db))


def _plain_dense(x, W) -> bool:
    """``dense_inputs(x, W)`` would return both unchanged: plain (``checks.plain_arrays``) 2-D
    arrays whose features agree."""
    return checks.plain_arrays(x, W) and x.ndim == 2 and W.ndim == 2 and x.shape[1] == W.shape[0]


# --------------------------------------------------------------------------- activations


def _elementwise(kernel, x):
    x = checks.as_array(x, "x")
    device = backend.get_backend()
    y = _run(kernel, (x.reshape(-1),), (), (x.size,), x.dtype, device)
    return backend.like_inputs(y.reshape(x.shape), x)


def _elementwise_backward(kernel, dy, x):
    x = checks.as_array(x, "x")
    dy = checks.as_array(dy, "dy", None, x.dtype)
    checks.same_shape(dy, x, "dy", "x")
    device = backend.get_backend()
    dx = _run(kernel, (dy.reshape(-1), x.reshape(-1)), (), (x.size,), x.dtype, device)
    return backend.like_inputs(dx.reshape(x.shape), dy, x)


def relu(x):
    """``max(x, 0)`` element by element."""
    return _elementwise(activations.RELU, x)


def relu_backward(dy, x):
    """``dy * (x > 0)``."""
    return _elementwise_backward(activations.RELU_BACKWARD, dy, x)


def sigmoid(x):
    """``1 / (1 + exp(-x))``, overflow-free for large |x|."""
    return _elementwise(activations.SIGMOID, x)


def sigmoid_backward(dy, x):
    """``dy * s * (1 - s)`` with ``s = sigmoid(x)``."""
    return _elementwise_backward(activations.SIGMOID_BACKWARD, dy, x)


def tanh(x):
    return _elementwise(activations.TANH, x)


def tanh_backward(dy, x):
    """``dy * (1 - tanh(x)^2)``."""
    return _elementwise_backward(activations.TANH_BACKWARD, dy, x)


def _rows(x):
    """``x`` as rows of its last axis; a 0-d array is one row of one number (its softmax is 1)."""
    return x.reshape(-1, x.shape[-1] if x.ndim else 1)


def softmax(x):
    """Softmax over the last axis (each row sums to 1); any leading shape."""
    x = checks.as_array(x, "x")
    device = backend.get_backend()
    y = _run(activations.SOFTMAX, (_rows(x),), (), _rows(x).shape, x.dtype, device)
    return backend.like_inputs(y.reshape(x.shape), x)


def softmax_backward(dy, x):
    """``s * (dy - sum(dy * s, axis=-1))`` with ``s = softmax(x)``."""
    x = checks.as_array(x, "x")
    dy = checks.as_array(dy, "dy", None, x.dtype)
    checks.same_shape(dy, x, "dy", "x")
    device = backend.get_backend()
    dx = _run(activations.SOFTMAX_BACKWARD, (_rows(dy), _rows(x)), (), _rows(x).shape, x.dtype, device)
    return backend.like_inputs(dx.reshape(x.shape), dy, x)


# --------------------------------------------------------------------------- boxes: IoU and NMS

from .kernels import boxes as box_kernels  # noqa: E402  (kept with the box ops it serves)


def _box_array(a, name: str) -> np.ndarray:
    """``a`` as a host (k, 4) array of corners (x1, y1, x2, y2), float32 or float64, checked.

    Integer coordinates become float64. Empty is fine (``[]`` reads as (0, 4)). Raises a
    TypeError for non-numbers, and a ValueError for a wrong shape, a NaN or infinite
    coordinate, or a box with x2 < x1 or y2 < y1 (naming the first such box).
    """
    # on the host: the checks below read every coordinate
    arr = checks.host_numbers(a, name, "an array of boxes (k, 4) of real numbers (float32, float64 or integers)")
    if arr.size == 0 and arr.ndim == 1:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (k, 4), one box (x1, y1, x2, y2) per row; got shape {arr.shape}")
    if arr.dtype not in checks.FLOAT_DTYPES:
        arr = arr.astype(np.float64)
    arr = np.ascontiguousarray(arr)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{k}] = {arr[k].tolist()} has a NaN or infinite coordinate "
                         f"({int(bad.sum())} such boxes)")
    flipped = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if flipped.any():
        k = int(np.flatnonzero(flipped)[0])
        raise ValueError(f"{name}[{k}] = {arr[k].tolist()} has x2 < x1 or y2 < y1 ({int(flipped.sum())} such "
                         f"boxes); boxes are corners (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2 "
                         f"(nbcnn.detection.box_convert converts from centre format)")
    return arr


def _box_pair(boxes1, boxes2):
    """Both box arrays checked, in one dtype (float64 if either is)."""
    boxes1, boxes2 = _box_array(boxes1, "boxes1"), _box_array(boxes2, "boxes2")
    dtype = np.result_type(boxes1.dtype, boxes2.dtype)
    return boxes1.astype(dtype, copy=False), boxes2.astype(dtype, copy=False)


def box_iou(boxes1, boxes2):
    """Intersection over union of every box of ``boxes1`` with every box of ``boxes2``.

    boxes1 (N, 4), boxes2 (M, 4), corners (x1, y1, x2, y2) -> iou (N, M), in their dtype
    (float32 or float64; float64 if either is; integers count as float64)::

        for i in range(N):
            for j in range(M):
                inter = max(0, min(x2[i], x2[j]) - max(x1[i], x1[j])) * max(0, min(y2[i], y2[j]) - max(y1[i], y1[j]))
                iou[i, j] = inter / (area[i] + area[j] - inter)      area = (x2 - x1) * (y2 - y1)

    Boxes that only touch (an edge or a corner) have IoU 0; a box of zero area has IoU 0 with
    everything, itself included. Boxes with x2 < x1 or y2 < y1, or with a NaN or infinite
    coordinate, raise a ValueError. Empty inputs give an empty (N, M) result. GPU arrays in
    (on the cuda backend) give a GPU array out. The kernel: ``nbcnn/kernels/boxes.py``.
    """
    gpu_in = [a for a in (boxes1, boxes2) if backend.is_device_array(a)]
    boxes1, boxes2 = _box_pair(boxes1, boxes2)
    device = backend.get_backend()
    out_shape = (boxes1.shape[0], boxes2.shape[0])
    if 0 in out_shape:
        return np.zeros(out_shape, boxes1.dtype)
    out = _run(box_kernels.BOX_IOU, (boxes1, boxes2), (), out_shape, boxes1.dtype, device)
    return out if gpu_in and device == "cuda" else backend.to_host(out)


def iou(box1, box2) -> float:
    """IoU of two boxes, each 4 numbers (x1, y1, x2, y2): ``inter / (area1 + area2 - inter)``.

    A float. The rules of ``box_iou`` (which it runs on a 1 x 1 problem).
    """
    pair = []
    for name, box in (("box1", box1), ("box2", box2)):
        arr = _box_array(box, name) if np.ndim(box) != 1 else _box_array(np.asarray(box)[None], name)
        if arr.shape[0] != 1:
            raise ValueError(f"{name} must be one box, 4 numbers (x1, y1, x2, y2); got {arr.shape[0]} boxes")
        pair.append(arr)
    return float(box_iou(pair[0], pair[1])[0, 0])


def _iou_threshold(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"iou_threshold must be a number in [0, 1], got {type(value).__name__} {value!r:.40}")
    if not 0 <= float(value) <= 1:  # NaN fails this too
        raise ValueError(f"iou_threshold must be in [0, 1], got {value!r}")
    return float(value)


def _max_boxes(value, n: int) -> int:
    if value is None:
        return n
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"max_boxes must be None or an int >= 0, got {type(value).__name__} {value!r:.40}")
    if value < 0:
        raise ValueError(f"max_boxes must be None or an int >= 0, got {value}")
    return min(int(value), n)


def _per_box(a, name: str, n: int, kinds: str, what: str) -> np.ndarray:
    """A host (n,) array of ``kinds`` (numpy dtype kinds), one value per box."""
    arr = checks.host_numbers(a, name, f"an array of {what}, one per box", kinds)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one value per box of boxes ({n}, 4); got shape {arr.shape}")
    return arr


def batched_nms(boxes, scores, classes, iou_threshold=0.5, max_boxes=None):
    """Per-class non-max suppression: boxes suppress only boxes of their own class.

    boxes (N, 4) corners (x1, y1, x2, y2), scores (N,), classes (N,) integers
    -> the indices of the kept boxes, int64, best score first (at most ``max_boxes`` of them,
    counted over all classes together).

    Greedy, as darknet's and torchvision's ``batched_nms``::

        order = argsort(-scores, stable)          # equal scores: the lower index first
        for i in order:                           # best first
            if i was not suppressed:
                keep i
                for j after i in order:
                    if classes[j] == classes[i] and IoU(i, j) > iou_threshold:   suppress j

    with ``IoU = inter / (area_i + area_j - inter)`` (see ``box_iou``). Suppression is strict:
    an IoU equal to the threshold keeps both; the threshold is compared in the boxes' dtype
    (rounded to float32 for float32 boxes), so every backend decides the same way. The result
    equals running ``nms`` on each class separately and merging the lists by score (ties by
    index) — computed in one pass, no coordinates shifted per class.

    Rules, checked before any kernel runs: a NaN score is a ValueError (it has no place in
    the order; infinite scores sort as usual); boxes with x2 < x1 or y2 < y1, or a NaN or
    infinite coordinate, are a ValueError (``nbcnn.detection.box_convert`` makes corners);
    zero-area boxes are fine (IoU 0: never suppress, never suppressed); shapes that
    disagree are a ValueError, non-numbers a TypeError; ``iou_threshold`` must lie in
    [0, 1], ``max_boxes`` be None or an int >= 0. No boxes give an empty result.

    The kernels (``nbcnn/kernels/boxes.py``): the greedy loop on python and cpu; on cuda an
    IoU bitmask (64 x 64 boxes per block, one uint64 of "boxes I suppress" per thread) scanned
    on the host, or the greedy loop in one thread block with ``NBCNN_FAST=0``.
    """
    if classes is None:
        raise TypeError("classes must be an array of integer class ids, one per box, got None "
                        "(for class-agnostic NMS call nbcnn.nms)")
    return _nms(boxes, scores, classes, iou_threshold, max_boxes)


def _nms(boxes, scores, classes, iou_threshold, max_boxes):
    """Check the inputs (``classes=None``: one class), sort, launch ``NMS``, return the kept indices."""
    boxes = _box_array(boxes, "boxes")
    n = boxes.shape[0]
    scores = _per_box(scores, "scores", n, "iuf", "real numbers (float or int)")
    if classes is None:
        classes = np.zeros(n, np.int64)
    else:
        classes = _per_box(classes, "classes", n, "iu", "integer class ids (cast float ids with .astype(int))")
    threshold = _iou_threshold(iou_threshold)
    limit = _max_boxes(max_boxes, n)
    if np.isnan(scores).any():
        k = int(np.flatnonzero(np.isnan(scores))[0])
        raise ValueError(f"scores[{k}] is NaN ({int(np.isnan(scores).sum())} NaN scores); NMS needs every "
                         f"score to be ordered")
    if n == 0 or limit == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores.astype(np.float64), kind="stable")  # ties: lower index first
    classes = np.ascontiguousarray(classes, np.int64)
    device = backend.get_backend()
    on_device = [backend.to_backend(a, device) for a in (boxes, classes, order)]
    keep = backend.empty((n,), np.uint8, device)
    backend.launch(box_kernels.NMS, *on_device, boxes.dtype.type(threshold), np.int64(limit), keep,
                   backend=device)
    return order[backend.to_host(keep).astype(bool)].astype(np.int64)


def nms(boxes, scores, iou_threshold=0.5, max_boxes=None):
    """Non-max suppression, class-agnostic (the course's): every box may suppress every other.

    boxes (N, 4) corners (x1, y1, x2, y2), scores (N,) -> indices of the kept boxes, int64,
    best score first, at most ``max_boxes``::

        order = argsort(-scores, stable)          # equal scores: the lower index first
        for i in order:
            if i was not suppressed:
                keep i; stop once max_boxes are kept
                for j after i in order:
                    if IoU(i, j) > iou_threshold:  suppress j

    ``IoU = inter / (area_i + area_j - inter)``; suppression is strict (IoU > threshold), as
    in darknet, torchvision and ``tf.image.non_max_suppression``. The input rules (NaN scores,
    x2 < x1, shapes, threshold, max_boxes, empty) are ``batched_nms``'s, with every box in
    one class.
    """
    return _nms(boxes, scores, None, iou_threshold, max_boxes)


# --------------------------------------------------------------------------- leaky ReLU, upsampling (YOLOv3)

from .kernels import upsample as upsample_kernels  # noqa: E402  (kept with the ops it serves)


def _slope(slope, dtype):
    """The negative slope, a finite number, in the arrays' dtype (float32 math stays float32)."""
    if isinstance(slope, bool) or not isinstance(slope, (int, float, np.integer, np.floating)):
        raise TypeError(f"slope must be a number, got {type(slope).__name__} {slope!r:.40}")
    if not np.isfinite(slope):
        raise ValueError(f"slope must be finite, got {slope!r}")
    return np.dtype(dtype).type(slope)


def leaky_relu(x, slope=0.1):
    """``x if x > 0 else slope * x`` element by element (darknet's "leaky": slope 0.1).

    ``slope * x`` is computed in x's dtype (darknet multiplies by the double ``.1`` and rounds
    once: float32 results may differ from darknet's in the last bit).
    """
    x = checks.as_array(x, "x")
    device = backend.get_backend()
    y = _run(activations.LEAKY_RELU, (x.reshape(-1),), (_slope(slope, x.dtype),), (x.size,), x.dtype, device)
    return backend.like_inputs(y.reshape(x.shape), x)


def leaky_relu_backward(dy, x, slope=0.1):
    """``dy if x > 0 else slope * dy`` (the gradient at exactly 0 is taken as ``slope``)."""
    x = checks.as_array(x, "x")
    dy = checks.as_array(dy, "dy", None, x.dtype)
    checks.same_shape(dy, x, "dy", "x")
    device = backend.get_backend()
    dx = _run(activations.LEAKY_RELU_BACKWARD, (dy.reshape(-1), x.reshape(-1)), (_slope(slope, x.dtype),),
              (x.size,), x.dtype, device)
    return backend.like_inputs(dx.reshape(x.shape), dy, x)


def _upsample_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size (the upsampling factor) must be an int >= 1, got {type(size).__name__} {size!r:.40}")
    if size < 1:
        raise ValueError(f"size (the upsampling factor) must be an int >= 1, got {size}")
    return int(size)


def upsample2d(x, size=2):
    """Nearest-neighbour upsampling: x (N, H, W, C) -> (N, H * size, W * size, C).

    ``y[n, h, w, c] = x[n, h // size, w // size, c]``: each cell becomes a size x size block
    (darknet's ``[upsample] stride=2``, Keras' ``UpSampling2D(size)``).
    """
    s = _upsample_size(size)
    x = _nhwc(x, "x")
    N, H, W, C = x.shape
    device = backend.get_backend()
    y = _run(upsample_kernels.FORWARD, (x,), (s,), (N, H * s, W * s, C), x.dtype, device)
    return backend.like_inputs(y, x)


def upsample2d_backward(dy, x, size=2):
    """Gradient of ``upsample2d``: each cell of x gets the sum of its size x size block of dy."""
    s = _upsample_size(size)
    x = _nhwc(x, "x")
    N, H, W, C = x.shape
    dy = _nhwc(dy, "dy", x.dtype)
    checks.grad_shape(dy, "dy", (N, H * s, W * s, C))
    device = backend.get_backend()
    dx = _run(upsample_kernels.BACKWARD, (dy,), (s,), x.shape, x.dtype, device)
    return backend.like_inputs(dx, dy, x)


# --------------------------------------------------------------------------- faces: triplet loss, L2 normalisation, distances

from .kernels import triplet as triplet_kernels  # noqa: E402  (kept with the ops it serves)

TRIPLET_REDUCTIONS = ("sum", "mean", "none")


def _margin(alpha, dtype):
    """The triplet margin: any finite real number (the notebook's checks use 0 and -2 too), in the
    embeddings' dtype (float32 arithmetic stays float32)."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha (the triplet margin) must be a number, got {type(alpha).__name__} {alpha!r:.40}")
    if not np.isfinite(alpha):
        raise ValueError(f"alpha (the triplet margin) must be finite, got {alpha!r}")
    return np.dtype(dtype).type(alpha)


def _triplet_inputs(anchor, positive, negative):
    """The three (B, D) embedding batches, checked and in one dtype."""
    arrays = [checks.as_array(a, name, 2) for a, name in
              ((anchor, "anchor"), (positive, "positive"), (negative, "negative"))]
    dtype = checks.common_dtype(*arrays)
    anchor, positive, negative = (checks.as_array(a, name, 2, dtype) for a, name in
                                  zip(arrays, ("anchor", "positive", "negative")))
    for a, name in ((positive, "positive"), (negative, "negative")):
        if tuple(a.shape) != tuple(anchor.shape):
            raise ValueError(f"{name} has shape {tuple(a.shape)} but anchor has shape {tuple(anchor.shape)}: each "
                             f"row i of anchor, positive and negative is one triplet of D-number embeddings (B, D)")
    return anchor, positive, negative


def triplet_loss(anchor, positive, negative, alpha=0.2, reduction="sum"):
    """The triplet loss of B triplets of embeddings (FaceNet; Course 4, week 4).

    anchor, positive, negative (B, D): row i of each is one triplet ->
    ``sum_i max(||A[i] - P[i]||^2 - ||A[i] - N[i]||^2 + alpha, 0)``, a float

    ``reduction``: "sum" (the course's, default), "mean" (the sum / B), or "none": the (B,)
    array of each triplet's loss (a GPU array for GPU inputs on cuda). ``alpha`` is any finite
    number (the margin; 0.2 in FaceNet and the notebook). The sum is taken in float64.
    The kernel: ``nbcnn/kernels/triplet.py``.
    """
    if reduction not in TRIPLET_REDUCTIONS:
        raise ValueError(f"reduction must be one of {TRIPLET_REDUCTIONS}, got {reduction!r}")
    anchor, positive, negative = _triplet_inputs(anchor, positive, negative)
    margin = _margin(alpha, anchor.dtype)
    device = backend.get_backend()
    losses = _run(triplet_kernels.TRIPLET_LOSS, (anchor, positive, negative), (margin,), (anchor.shape[0],),
                  anchor.dtype, device)
    if reduction == "none":
        return backend.like_inputs(losses, anchor, positive, negative)
    total = float(np.sum(backend.to_host(losses), dtype=np.float64))
    return total / anchor.shape[0] if reduction == "mean" else total


def triplet_loss_backward(dloss, anchor, positive, negative, alpha=0.2):
    """Gradients of ``triplet_loss``: returns ``(d_anchor, d_positive, d_negative)``, each (B, D).

    ``dloss``: the gradient of what was computed: a number for the summed loss (1.0 for the
    loss itself; 1 / B for the mean), or a (B,) array, one per triplet (``reduction="none"``)::

        g = dloss[i] if ||A[i] - P[i]||^2 - ||A[i] - N[i]||^2 + alpha > 0 else 0
        dA[i] = 2 g (N[i] - P[i]);   dP[i] = 2 g (P[i] - A[i]);   dN[i] = 2 g (A[i] - N[i])
    """
    anchor, positive, negative = _triplet_inputs(anchor, positive, negative)
    margin = _margin(alpha, anchor.dtype)
    B = anchor.shape[0]
    if isinstance(dloss, (bool, np.bool_)):
        raise TypeError(f"dloss must be a number or a ({B},) array, got {dloss!r}")
    if isinstance(dloss, (int, float, np.integer, np.floating)):
        if not np.isfinite(dloss):
            raise ValueError(f"dloss must be finite, got {dloss!r}")
        dloss = np.full(B, dloss, anchor.dtype)
    dloss = checks.as_array(dloss, "dloss", None, anchor.dtype)
    if tuple(dloss.shape) not in ((B,), ()):
        raise ValueError(f"dloss has shape {tuple(dloss.shape)}: it must be a number (the gradient of the summed "
                         f"loss) or ({B},), one per triplet")
    if tuple(dloss.shape) == ():
        dloss = np.full(B, backend.to_host(dloss), anchor.dtype)
    device = backend.get_backend()
    grads = _run(triplet_kernels.TRIPLET_LOSS_BACKWARD, (dloss, anchor, positive, negative), (margin,),
                 (3, B, anchor.shape[1]), anchor.dtype, device)
    grads = backend.like_inputs(grads, dloss, anchor, positive, negative)
    return grads[0], grads[1], grads[2]


L2_EPSILON = 1e-12
"""``l2_normalize``'s floor under the squared length (Keras' and TensorFlow's default)."""


def _l2_epsilon(epsilon, dtype):
    if isinstance(epsilon, (bool, np.bool_)) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise TypeError(f"epsilon must be a number > 0, got {type(epsilon).__name__} {epsilon!r:.40}")
    value = np.dtype(dtype).type(epsilon)
    if not (np.isfinite(epsilon) and value > 0):
        raise ValueError(f"epsilon must be a finite number > 0 (in {np.dtype(dtype)}), got {epsilon!r}")
    return value


def _last_axis_rows(x):
    """``x`` as rows of its last axis (0-d: one row of one number)."""
    return x.reshape(-1, x.shape[-1] if x.ndim else 1)


def l2_normalize(x, epsilon=L2_EPSILON):
    """Scale every vector along the last axis to length 1: ``x / sqrt(max(sum(x^2), epsilon))``.

    Any leading shape, e.g. embeddings (N, D). A vector of squared length below ``epsilon``
    (all zeros, say) is divided by ``sqrt(epsilon)`` instead of its length, as Keras'
    ``l2_normalize`` does: no division by zero, no NaN.
    """
    x = checks.as_array(x, "x")
    eps = _l2_epsilon(epsilon, x.dtype)
    rows = _last_axis_rows(x)
    device = backend.get_backend()
    y = _run(triplet_kernels.L2_NORMALIZE, (rows,), (eps,), rows.shape, x.dtype, device)
    return backend.like_inputs(y.reshape(x.shape), x)


def l2_normalize_backward(dy, x, epsilon=L2_EPSILON):
    """Gradient of ``l2_normalize``: ``(dy - y * <dy, y>) / |x|`` with ``y = x / |x|``, per vector
    (``dy / sqrt(epsilon)`` for vectors shorter than ``sqrt(epsilon)``)."""
    x = checks.as_array(x, "x")
    dy = checks.as_array(dy, "dy", None, x.dtype)
    checks.same_shape(dy, x, "dy", "x")
    eps = _l2_epsilon(epsilon, x.dtype)
    device = backend.get_backend()
    dx = _run(triplet_kernels.L2_NORMALIZE_BACKWARD, (_last_axis_rows(dy), _last_axis_rows(x)), (eps,),
              _last_axis_rows(x).shape, x.dtype, device)
    return backend.like_inputs(dx.reshape(x.shape), dy, x)


def pairwise_squared_distances(a, b=None):
    """Squared Euclidean distance of every row of ``a`` to every row of ``b`` (default: ``a``).

    a (N, D), b (M, D) -> (N, M), ``out[i, j] = sum_k (a[i, k] - b[j, k])^2``: the lecture's
    ``d(x1, x2) = ||f(x1) - f(x2)||^2`` for every pair of embeddings at once. Each difference
    is squared directly, so the diagonal of ``pairwise_squared_distances(a)`` is exactly 0.
    """
    a = checks.as_array(a, "a", 2)
    b = a if b is None else checks.as_array(b, "b", 2)
    dtype = checks.common_dtype(a, b)
    a, b = checks.as_array(a, "a", 2, dtype), checks.as_array(b, "b", 2, dtype)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has rows of {a.shape[1]} numbers (shape {tuple(a.shape)}) but b has rows of "
                         f"{b.shape[1]} (shape {tuple(b.shape)}); embeddings must have the same length")
    device = backend.get_backend()
    out = _run(triplet_kernels.PAIRWISE_SQUARED_DISTANCES, (a, b), (), (a.shape[0], b.shape[0]), dtype, device)
    return backend.like_inputs(out, a, b)


# --------------------------------------------------------------------------- style transfer: Gram matrices, conv dX only

from .kernels import gram as gram_kernels  # noqa: E402  (kept with the ops it serves)


def _positions(a, name):
    """Activations (N, H, W, C) or (N, P, C) as (N, P, C): a reshape of channels-last data, no copy."""
    a = checks.as_array(a, name)
    if len(a.shape) not in (3, 4):
        raise ValueError(f"{name} must be activations (N, H, W, C) or (N, P, C), got shape {tuple(a.shape)}")
    N, C = a.shape[0], a.shape[-1]
    return a.reshape(N, -1, C)


def gram(x):
    """Gram matrices of activations: x (N, H, W, C) (or (N, P, C)) -> G (N, C, C)::

        G[n, i, j] = sum over positions p of x[n, p, i] * x[n, p, j]

    (the course's ``gram_matrix(A) = A A^T`` with ``A (n_C, n_H * n_W)``, for each image).
    Not normalised: the style cost divides by ``4 n_C^2 (n_H n_W)^2``. The kernel:
    ``nbcnn/kernels/gram.py``.
    """
    A = _positions(x, "x")
    device = backend.get_backend()
    G = _run(gram_kernels.GRAM, (A,), (), (A.shape[0], A.shape[2], A.shape[2]), A.dtype, device)
    return backend.like_inputs(G, x)


def gram_backward(dG, x):
    """Gradient of ``gram``: ``dx[n, p, i] = sum_j (dG[n, i, j] + dG[n, j, i]) * x[n, p, j]``,
    shaped like x."""
    A = _positions(x, "x")
    dG = checks.as_array(dG, "dG", 3, A.dtype)
    checks.grad_shape(dG, "dG", (A.shape[0], A.shape[2], A.shape[2]))
    device = backend.get_backend()
    dA = _run(gram_kernels.GRAM_BACKWARD, (dG, A), (), A.shape, A.dtype, device)
    return backend.like_inputs(dA.reshape(x.shape), dG, x)


def conv2d_backward_input(dz, W, x_shape, stride=1, pad=0):
    """The input gradient of ``conv2d`` alone: dz (N, H_out, W_out, C_out), W, the forward input's
    shape (N, H, W, C_in) -> dx (N, H, W, C_in).

    ``conv2d_backward(...)[0]`` without dW and db: a network whose weights are frozen (style
    transfer optimises the image, not the filters) needs only this, half the work.
    """
    if isinstance(x_shape, (str, bytes)) or len(tuple(x_shape)) != 4:
        raise ValueError(f"x_shape must be the forward input's shape (N, H, W, C), got {x_shape!r}")
    x_shape = tuple(checks.int_arg(s, "x_shape entries") for s in x_shape)
    W = checks.as_array(W, "W (filters)", 4)
    dz = checks.as_array(dz, "dz", 4)
    dtype = checks.common_dtype(dz, W)
    W, dz = checks.as_array(W, "W (filters)", 4, dtype), checks.as_array(dz, "dz", 4, dtype)
    if x_shape[3] != W.shape[2]:
        raise ValueError(f"channel mismatch: x_shape {x_shape} has {x_shape[3]} channels but the filters W expect "
                         f"{W.shape[2]} (shape {tuple(W.shape)}, (f_h, f_w, C_in, C_out))")
    win, (H_out, W_out), _ = checks.window(x_shape, W.shape[:2], stride, pad, "conv2d_backward_input")
    checks.grad_shape(dz, "dz", (x_shape[0], H_out, W_out, W.shape[3]))
    device = backend.get_backend()
    dx = _run(conv.BACKWARD_INPUT, (dz, W), (win,), x_shape, dtype, device)
    return backend.like_inputs(dx, dz, W)


# --------------------------------------------------------------------------- batch norm (training and inference)

from .kernels import batchnorm as batchnorm_kernels  # noqa: E402  (kept with the ops it serves)


class BatchNormCache(NamedTuple):
    """What ``batch_norm`` hands its backward: ``x_hat`` (x's shape), and per channel
    ``inv_std = 1 / sqrt(variance + epsilon)``, the ``mean`` and ``variance`` used (the batch's
    or the frozen ones) and whether they were the batch's (``batch_statistics``)."""

    x_hat: object
    inv_std: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    batch_statistics: bool


def _channel_vector(value, name, x):
    """A per-channel parameter of an op over x's last axis (C channels): checked to be C
    numbers of x's dtype, returned on the host (batch norm's and darknet's)."""
    value = checks.as_array(value, name, 1, x.dtype)
    C = x.shape[-1] if x.ndim else 1
    if value.shape[0] != C:
        raise ValueError(f"{name} has shape {tuple(value.shape)} but x has {C} channels (shape {tuple(x.shape)})")
    return backend.to_host(value)


def _finite_channel_vector(value, name, x):
    value = _channel_vector(value, name, x)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite")
    return value


def _block_sums(kernel, inputs, per_block, dtype, device):
    """Launch a block-sum kernel over ``inputs`` (the first one's rows in blocks of
    ``ROWS_PER_BLOCK``) into a fresh ``partial`` of shape ``(blocks, *per_block)``, and add
    its blocks in float64."""
    blocks = -(-inputs[0].shape[0] // batchnorm_kernels.ROWS_PER_BLOCK)
    partial = backend.empty((blocks, *per_block), dtype, device)
    backend.launch(kernel, *inputs, partial, backend=device)
    return backend.to_host(partial).sum(axis=0, dtype=np.float64)


def batch_norm(x, gamma, beta, mean=None, variance=None, epsilon=1e-3):
    """Batch normalisation over the last axis of ``x`` (C channels) -> ``(y, cache)``::

        x_hat = (x - mean) / sqrt(variance + epsilon);   y = gamma * x_hat + beta

    ``mean``/``variance`` None: the batch's own, per channel over every other axis (N, H, W);
    given (the moving averages at inference): used as they are. ``cache`` (``BatchNormCache``)
    holds what ``batch_norm_backward`` needs, and the statistics used (training updates its
    moving averages from them). The sums: ``kernels/batchnorm.py``.
    """
    x = checks.as_array(x, "x")
    C = x.shape[-1]
    gamma, beta = _finite_channel_vector(gamma, "gamma", x), _finite_channel_vector(beta, "beta", x)
    epsilon = float(epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if (mean is None) != (variance is None):
        raise ValueError("give both mean and variance (frozen statistics) or neither (the batch's)")
    device = backend.get_backend()
    rows = backend.to_backend(x.reshape(-1, C), device)
    M = rows.shape[0]
    if mean is None:
        mean = (_block_sums(batchnorm_kernels.CHANNEL_SUMS, (rows,), (C,), x.dtype, device) / M).astype(x.dtype)
        centred = (rows, backend.to_backend(mean, device))
        variance = (_block_sums(batchnorm_kernels.CHANNEL_CENTRED_SQUARES, centred, (C,), x.dtype, device)
                    / M).astype(x.dtype)
        batch_statistics = True
    else:
        mean, variance = _finite_channel_vector(mean, "mean", x), _finite_channel_vector(variance, "variance", x)
        if np.any(variance < 0):
            raise ValueError("variance must not be negative")
        batch_statistics = False
    inv_std = (1.0 / np.sqrt(variance.astype(np.float64) + epsilon)).astype(x.dtype)
    args = [backend.to_backend(a, device) for a in (mean, inv_std, gamma, beta)]
    x_hat, y = backend.empty(rows.shape, x.dtype, device), backend.empty(rows.shape, x.dtype, device)
    backend.launch(batchnorm_kernels.FORWARD, rows, *args, x_hat, y, backend=device)
    x_hat = backend.like_inputs(x_hat, x).reshape(x.shape)
    return (backend.like_inputs(y, x).reshape(x.shape),
            BatchNormCache(x_hat, inv_std, mean, variance, batch_statistics))


def batch_norm_backward(dy, cache: BatchNormCache, gamma):
    """Gradients of ``batch_norm`` -> ``(dx, dgamma, dbeta)``, given ``dy`` (y's shape)::

        dbeta = sum dy;   dgamma = sum dy * x_hat          (per channel, over N, H, W)
        batch statistics:  dx = gamma * inv_std * (dy - dbeta / M - x_hat * dgamma / M)
        frozen ones:       dx = gamma * inv_std * dy

    (M numbers per channel; the batch's mean and variance depend on every x, hence the two
    correction terms.)
    """
    x_hat = cache.x_hat
    dy = checks.as_array(dy, "dy", dtype=x_hat.dtype)
    if tuple(dy.shape) != tuple(x_hat.shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)} but the forward's output had {tuple(x_hat.shape)}")
    C = x_hat.shape[-1]
    gamma = _finite_channel_vector(gamma, "gamma", x_hat)
    device = backend.get_backend()
    dy_rows, x_hat_rows = (backend.to_backend(a.reshape(-1, C), device) for a in (dy, x_hat))
    M = dy_rows.shape[0]
    sums = _block_sums(batchnorm_kernels.GRADIENT_SUMS, (dy_rows, x_hat_rows), (2, C), x_hat.dtype, device)
    dbeta, dgamma = sums[0].astype(x_hat.dtype), sums[1].astype(x_hat.dtype)
    if cache.batch_statistics:
        mean_dy, mean_dy_x_hat = (sums / M).astype(x_hat.dtype)
    else:
        mean_dy = mean_dy_x_hat = np.zeros(C, x_hat.dtype)
    scale = (gamma * cache.inv_std).astype(x_hat.dtype)
    args = [backend.to_backend(a, device) for a in (scale, mean_dy, mean_dy_x_hat)]
    dx = backend.empty(dy_rows.shape, x_hat.dtype, device)
    backend.launch(batchnorm_kernels.BACKWARD, dy_rows, x_hat_rows, *args, dx, backend=device)
    return backend.like_inputs(dx, dy).reshape(dy.shape), dgamma, dbeta


# --------------------------------------------------------------------------- darknet's batch norm (inference)


def darknet_denominator(variance, epsilon=1e-6):
    """``sqrt(variance) + epsilon`` as darknet computes it: a double, with the float constant
    ``.000001f`` widened (the forward divides by it, the backward scales by its inverse)."""
    return np.sqrt(np.asarray(variance).astype(np.float64)) + np.float64(np.float32(epsilon))


def darknet_batch_norm(x, mean, variance, gamma, beta, epsilon=1e-6, keep_x_hat=True, leaky_slope=None):
    """Batch norm with frozen statistics, exactly as darknet computes it -> ``(y, x_hat)``::

        x_hat = (x - mean) / (sqrt(variance) + epsilon)      (epsilon outside the root)
        y     = x_hat * gamma + beta
        leaky_slope given:  y = leaky_relu(y, leaky_slope)  in the same pass (the same numbers)

    over the last axis of x (C channels); mean, variance, gamma, beta of shape (C,). The
    division is in float64, rounded to x's dtype, as darknet's C does (see
    ``kernels/batchnorm.py``). ``x_hat`` is what the backward needs; ``keep_x_hat=False``
    returns ``(y, None)`` and writes one array, not two (the kernel's x_hat is then y itself:
    each cell writes x_hat, then y over it). YOLOv3-tiny's first layer, 416 x 416 x 16, moves
    a third less memory, and with the leaky ReLU of darknet's layers fused (``leaky_slope``,
    the slope of ``leaky_relu``) its activations are not written and read again.
    """
    x = checks.as_array(x, "x")
    slope = _slope(1 if leaky_slope is None else leaky_slope, x.dtype)  # 1: y itself, to the bit
    C = x.shape[-1] if x.ndim else 1
    stats = {name: _channel_vector(value, name, x)
             for name, value in (("mean", mean), ("variance", variance), ("gamma", gamma), ("beta", beta))}
    if np.any(stats["variance"] < 0):
        raise ValueError("variance must not be negative")
    denominator = darknet_denominator(stats["variance"], epsilon)
    device = backend.get_backend()
    rows = x.reshape(-1, C)
    args = [backend.to_backend(a, device) for a in (rows, stats["mean"], denominator, stats["gamma"], stats["beta"])]
    y = backend.empty(rows.shape, x.dtype, device)
    x_hat = backend.empty(rows.shape, x.dtype, device) if keep_x_hat else y
    backend.launch(batchnorm_kernels.DARKNET_FORWARD, *args, slope, x_hat, y, backend=device)
    y_out = backend.like_inputs(y, x).reshape(x.shape)
    return y_out, backend.like_inputs(x_hat, x).reshape(x.shape) if keep_x_hat else None


# --------------------------------------------------------------------------- detection: the YOLO training loss

from .kernels import yolo_loss as yolo_loss_kernels  # noqa: E402  (kept with the ops it serves)

YOLO_LOSS_TERMS = ("coord", "obj", "noobj", "cls")


def _yolo_loss_inputs(pred, target, anchors, lambdas):
    """pred (N, S_h, S_w, B * (5 + C)) and target (N, S_h, S_w, B, 7), checked, as (M, E) and (M, 7) rows."""
    pred = checks.as_array(pred, "pred", 4)
    if not isinstance(anchors, (int, np.integer)) or isinstance(anchors, bool) or anchors < 1:
        raise ValueError(f"anchors (B, the anchors per cell) must be an int >= 1, got {anchors!r}")
    B = int(anchors)
    if pred.shape[-1] % B or pred.shape[-1] // B < 6:
        raise ValueError(f"pred has {pred.shape[-1]} channels: it must be B * (5 + C) with B = {B} anchors and "
                         f"C >= 1 classes (shape {tuple(pred.shape)})")
    E = pred.shape[-1] // B
    target = checks.as_array(target, "target", 5, pred.dtype)
    N, S_h, S_w = pred.shape[:3]
    if tuple(target.shape) != (N, S_h, S_w, B, yolo_loss_kernels.TARGET_COLUMNS):
        raise ValueError(f"target has shape {tuple(target.shape)}; for pred of shape {tuple(pred.shape)} it must be "
                         f"{(N, S_h, S_w, B, yolo_loss_kernels.TARGET_COLUMNS)} (x*, y*, w*, h*, state, class, scale "
                         f"per anchor: see nbcnn.detection.targets.encode_targets)")
    t = backend.to_host(target)
    state, label = t[..., 4], t[..., 5]
    if not np.all(np.isin(state, (-1, 0, 1))):
        raise ValueError("target[..., 4] (state) must be 1 (object), 0 (no object) or -1 (ignored)")
    held = label[state == 1]
    if held.size and (np.any(held != np.round(held)) or held.min() < 0 or held.max() >= E - 5):
        raise ValueError(f"target[..., 5] (class) must be a whole number in [0, {E - 5}) where state is 1, "
                         f"got values from {held.min()} to {held.max()}")
    lam = np.asarray(lambdas, dtype=pred.dtype)
    if lam.shape != (4,) or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"lambdas must be 4 finite numbers >= 0 (coord, obj, noobj, cls), got {lambdas!r}")
    return pred.reshape(-1, E), target.reshape(-1, yolo_loss_kernels.TARGET_COLUMNS), lam


def yolo_loss(pred, target, anchors, lambdas=(5.0, 1.0, 0.5, 1.0), reduction="sum"):
    """The YOLO loss of a batch: coordinate, objectness, no-object and class terms.

    pred (N, S_h, S_w, B * (5 + C)): the raw conv output (``tx, ty, tw, th, to, c_0 ...`` per
    anchor, anchor-major as darknet's); target (N, S_h, S_w, B, 7) from
    ``nbcnn.detection.targets.encode_targets``; ``anchors``: B; ``lambdas``: the weights of the
    four terms (coord, obj, noobj, cls). Returns a dict ``{"coord", "obj", "noobj", "cls",
    "loss"}`` of floats (sums over the batch, divided by N for ``reduction="mean"``), or the
    (N, S_h, S_w, B, 4) array of every anchor's weighted terms (``reduction="none"``). The
    formulas: ``nbcnn/kernels/yolo_loss.py``.
    """
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
    rows, t, lam = _yolo_loss_inputs(pred, target, anchors, lambdas)
    device = backend.get_backend()
    terms = _run(yolo_loss_kernels.YOLO_LOSS, (rows, t, lam), (), (rows.shape[0], 4), rows.dtype, device)
    if reduction == "none":
        return backend.like_inputs(terms, pred, target).reshape(tuple(target.shape[:4]) + (4,))
    sums = np.sum(np.asarray(backend.to_host(terms), np.float64), axis=0)
    if reduction == "mean":
        sums = sums / target.shape[0]
    out = {name: float(v) for name, v in zip(YOLO_LOSS_TERMS, sums)}
    out["loss"] = float(np.sum(sums))
    return out


def yolo_loss_backward(pred, target, anchors, lambdas=(5.0, 1.0, 0.5, 1.0), dloss=1.0):
    """Gradient of ``yolo_loss``'s summed loss with respect to ``pred``, times ``dloss`` (1 / N
    for the mean): an array shaped like pred."""
    rows, t, lam = _yolo_loss_inputs(pred, target, anchors, lambdas)
    if isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, (int, float, np.integer, np.floating)) \
            or not np.isfinite(dloss):
        raise ValueError(f"dloss must be a finite number, got {dloss!r}")
    g = np.array([dloss], rows.dtype)
    device = backend.get_backend()
    d = _run(yolo_loss_kernels.YOLO_LOSS_BACKWARD, (g, rows, t, lam), (), rows.shape, rows.dtype, device)
    return backend.like_inputs(d, pred, target).reshape(pred.shape)
