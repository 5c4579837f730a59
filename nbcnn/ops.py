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
    y = softmax(x)  (over the last axis)        dx = softmax_backward(dy, x)
"""

from __future__ import annotations

import functools

import numpy as np

from . import backend, checks
from .kernels import activations, bias, conv, dense as dense_kernels, pool
from .kernels import fast  # noqa: F401  (installs the fast kernels on the readable ones)


def _run(kernel, inputs, params, out_shape, dtype, device):
    """Move ``inputs`` to the backend, allocate the output, launch, and return the output there."""
    on_device = [backend.to_backend(a, device) for a in inputs]
    out = backend.empty(out_shape, dtype, device)
    backend.launch(kernel, *on_device, *params, out, backend=device)
    return out


# --------------------------------------------------------------------------- convolution


def conv2d(x, W, b, stride=1, pad=0):
    """2-D convolution of an NHWC batch with ``C_out`` filters, plus bias.

    x (N, H, W, C_in), W (f_h, f_w, C_in, C_out), b (C_out,) -> z (N, H_out, W_out, C_out)

        H_out = (H + 2 * pad - f_h) // stride + 1        (W_out likewise)

    ``stride``: int or (h, w). ``pad``: int, (h, w), ((top, bottom), (left, right)),
    "valid" or "same" (Keras/TensorFlow rule: output size ceil(H / stride)).
    """
    x, W, b = checks.conv_inputs(x, W, b)
    win, (H_out, W_out), _ = checks.window(x.shape, W.shape[:2], stride, pad, "conv2d")
    device = backend.get_backend()
    z = _run(conv.FORWARD, (x, W, b), (win,), (x.shape[0], H_out, W_out, W.shape[3]), x.dtype, device)
    return backend.like_inputs(z, x, W, b)


def conv2d_backward(dz, x, W, stride=1, pad=0, need_dx=True):
    """Gradients of ``conv2d``: returns ``(dx, dW, db)`` shaped like x, W and (C_out,).

    ``need_dx=False`` skips dx (returned as None): a network's first layer needs no gradient
    for its input images while training, and dx is the most expensive of the three there.
    """
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


def _window(x_shape, f, stride, pad, what):
    """``checks.pool_window``, remembered for hashable arguments (a model pools the same shapes
    at every step; the checks cost as much as a small pooling kernel)."""
    try:
        return _cached_window(tuple(x_shape), f, stride, pad, what)
    except TypeError:  # a list somewhere: unhashable
        return checks.pool_window(x_shape, f, stride, pad, what)


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
    device = backend.get_backend()
    out_shape = (x.shape[0], H_out, W_out, x.shape[3])
    p, argmax = backend.empty(out_shape, x.dtype, device), backend.empty(out_shape, np.int32, device)
    backend.launch(pool.MAX_ARGMAX, backend.to_backend(x, device), win, p, argmax, backend=device)
    return backend.like_inputs(p, x), backend.like_inputs(argmax, x)


def _argmax_input(argmax, dp, win, device):
    """Check the forward's argmax against dp and the window; return it as int32 where ``device``
    reads it. Host arrays are checked cell by cell (values in [0, f_h * f_w)); a GPU array only
    for its dtype and shape (checking its values would copy it back; the cuda kernels only
    compare them, so a wrong value can only misroute gradient, never touch memory out of bounds)."""
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


def dense(x, W, b):
    """Fully connected layer ``y = x @ W + b``: x (N, D), W (D, M), b (M,) -> y (N, M)."""
    x, W, b = checks.dense_inputs(x, W, b)
    device = backend.get_backend()
    y = _run(dense_kernels.FORWARD, (x, W, b), (), (x.shape[0], W.shape[1]), x.dtype, device)
    return backend.like_inputs(y, x, W, b)


def dense_backward(dy, x, W):
    """Gradients of ``dense``: ``(dx, dW, db) = (dy @ W.T, x.T @ dy, dy.sum(0))``."""
    x, W, _ = checks.dense_inputs(x, W)
    dy = checks.as_array(dy, "dy", 2, x.dtype)
    checks.grad_shape(dy, "dy", (x.shape[0], W.shape[1]))
    device = backend.get_backend()
    x_, W_, dy_ = (backend.to_backend(a, device) for a in (x, W, dy))
    dx = _run(dense_kernels.BACKWARD_INPUT, (dy_, W_), (), x.shape, x.dtype, device)
    dW = _run(dense_kernels.BACKWARD_WEIGHT, (x_, dy_), (), W.shape, x.dtype, device)
    db = _run(bias.BACKWARD, (dy_,), (), (W.shape[1],), x.dtype, device)
    return tuple(backend.like_inputs(g, dy, x, W) for g in (dx, dW, db))


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
    return x.reshape(-1, x.shape[-1])


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
