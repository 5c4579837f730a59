"""Activations, forward and backward, element by element (one source, three backends).

The op layer hands these kernels flat 1-D views (any input shape works), so the loop
nest is one loop: ``for i in range(size): y[i] = f(x[i])``. Backward takes the forward's
input ``x`` (not its output) and the upstream gradient ``dy``:

    relu     y = max(x, 0) (NaN stays NaN)     dx = dy * (x > 0)
    leaky    y = x if x > 0 else slope * x     dx = dy if x > 0 else slope * dy   (darknet: slope .1)
    sigmoid  y = 1 / (1 + exp(-x))             dx = dy * y * (1 - y)
    tanh     y = tanh(x)                       dx = dy * (1 - y^2)
    softmax  y[r, c] = exp(x[r, c]) / sum_c' exp(x[r, c'])   (per row of a 2-D view)
             dx[r, c] = y[r, c] * (dy[r, c] - sum_c' dy[r, c'] * y[r, c'])

Constants are made with ``x.dtype.type(1)`` so float32 stays float32 (a bare ``1.0``
would promote the arithmetic to float64); leaky ReLU's ``slope`` arrives in x's dtype for the
same reason. (darknet computes ``.1*x`` in double and rounds once; float32 ``0.1f * x`` can
differ from it in the last bit, far below what the detector's tests can see.)

What runs here: these loops on every backend (compiled on cpu and cuda); they have no fast
variant, since one pass over memory is all they do.
"""

import math

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used


# --------------------------------------------------------------------------- cells


@register_jitable
def relu_cell(x, i):
    # "< 0", not "> 0": a NaN is neither, and must come out as NaN (as in numpy and torch),
    # not be hidden as 0
    v = x[i]
    return x.dtype.type(0) if v < 0 else v


@register_jitable
def relu_backward_cell(dy, x, i):
    # the gradient at exactly 0 is taken as 0 (the subgradient Keras and torch use)
    return dy[i] if x[i] > 0 else dy.dtype.type(0)


@register_jitable
def leaky_of(v, slope):
    """The leaky ReLU of one number (also darknet's batch norm's fused form, ``batchnorm.py``)."""
    return v if v > 0 else slope * v


@register_jitable
def leaky_relu_cell(x, i, slope):
    return leaky_of(x[i], slope)


@register_jitable
def leaky_relu_backward_cell(dy, x, i, slope):
    return dy[i] if x[i] > 0 else slope * dy[i]


@register_jitable
def sigmoid_of(v, one):
    """1 / (1 + e^-v), written so exp never overflows: for v < 0 use e^v / (1 + e^v)."""
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@register_jitable
def sigmoid_cell(x, i):
    return sigmoid_of(x[i], x.dtype.type(1))


@register_jitable
def sigmoid_backward_cell(dy, x, i):
    one = x.dtype.type(1)
    s = sigmoid_of(x[i], one)
    return dy[i] * s * (one - s)


@register_jitable
def tanh_cell(x, i):
    return math.tanh(x[i])


@register_jitable
def tanh_backward_cell(dy, x, i):
    t = math.tanh(x[i])
    return dy[i] * (x.dtype.type(1) - t * t)


@register_jitable
def softmax_row(x, r, y):
    """Softmax of row r of x into row r of y; the row max is subtracted first so exp never overflows."""
    C = x.shape[1]
    top = x[r, 0]
    for c in range(1, C):
        top = max(top, x[r, c])
    total = x.dtype.type(0)
    for c in range(C):
        e = math.exp(x[r, c] - top)
        y[r, c] = e
        total += e
    for c in range(C):
        y[r, c] = y[r, c] / total


@register_jitable
def softmax_backward_row(dy, x, r, dx):
    """dx[r] = s * (dy[r] - <dy[r], s>) with s = softmax(x[r]), recomputed into dx first."""
    softmax_row(x, r, dx)
    dot = dy.dtype.type(0)
    for c in range(x.shape[1]):
        dot += dy[r, c] * dx[r, c]
    for c in range(x.shape[1]):
        dx[r, c] = dx[r, c] * (dy[r, c] - dot)


# --------------------------------------------------------------------------- loop nests


def relu(x, y):
    for i in prange(y.size):
        y[i] = relu_cell(x, i)


def relu_backward(dy, x, dx):
    for i in prange(dx.size):
        dx[i] = relu_backward_cell(dy, x, i)


def leaky_relu(x, slope, y):
    for i in prange(y.size):
        y[i] = leaky_relu_cell(x, i, slope)


def leaky_relu_backward(dy, x, slope, dx):
    for i in prange(dx.size):
        dx[i] = leaky_relu_backward_cell(dy, x, i, slope)


def sigmoid(x, y):
    for i in prange(y.size):
        y[i] = sigmoid_cell(x, i)


def sigmoid_backward(dy, x, dx):
    for i in prange(dx.size):
        dx[i] = sigmoid_backward_cell(dy, x, i)


def tanh(x, y):
    for i in prange(y.size):
        y[i] = tanh_cell(x, i)


def tanh_backward(dy, x, dx):
    for i in prange(dx.size):
        dx[i] = tanh_backward_cell(dy, x, i)


def softmax(x, y):
    """``for r in range(rows): softmax_row(x, r, y)`` (each row owned by one iteration)."""
    for r in prange(y.shape[0]):
        softmax_row(x, r, y)


def softmax_backward(dy, x, dx):
    for r in prange(dx.shape[0]):
        softmax_backward_row(dy, x, r, dx)


# --------------------------------------------------------------------------- cuda


def _one_thread_per_element(cell):
    """``@cuda.jit`` kernel ``(x, y)``: thread i computes ``y[i] = cell(x, i)``."""
    @cuda.jit
    def forward(x, y):
        i = cuda.grid(1)
        if i < y.size:
            y[i] = cell(x, i)

    return forward


def _one_thread_per_gradient(cell):
    """``@cuda.jit`` kernel ``(dy, x, dx)``: thread i computes ``dx[i] = cell(dy, x, i)``."""
    @cuda.jit
    def backward(dy, x, dx):
        i = cuda.grid(1)
        if i < dx.size:
            dx[i] = cell(dy, x, i)

    return backward


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per element (per row for softmax), each calling the cell above."""
    @cuda.jit
    def leaky_relu_k(x, slope, y):
        i = cuda.grid(1)
        if i < y.size:
            y[i] = leaky_relu_cell(x, i, slope)

    @cuda.jit
    def leaky_relu_backward_k(dy, x, slope, dx):
        i = cuda.grid(1)
        if i < dx.size:
            dx[i] = leaky_relu_backward_cell(dy, x, i, slope)

    @cuda.jit
    def softmax_k(x, y):
        r = cuda.grid(1)
        if r < y.shape[0]:
            softmax_row(x, r, y)

    @cuda.jit
    def softmax_backward_k(dy, x, dx):
        r = cuda.grid(1)
        if r < dx.shape[0]:
            softmax_backward_row(dy, x, r, dx)

    return {"relu": _one_thread_per_element(relu_cell),
            "relu_backward": _one_thread_per_gradient(relu_backward_cell),
            "sigmoid": _one_thread_per_element(sigmoid_cell),
            "sigmoid_backward": _one_thread_per_gradient(sigmoid_backward_cell),
            "tanh": _one_thread_per_element(tanh_cell),
            "tanh_backward": _one_thread_per_gradient(tanh_backward_cell),
            "leaky_relu": leaky_relu_k, "leaky_relu_backward": leaky_relu_backward_k,
            "softmax": softmax_k, "softmax_backward": softmax_backward_k}


def _rows(out):
    return out.shape[0]


def _kernel(source, work=None):
    name = source.__name__
    return Kernel(name, source, cuda=lambda: _cuda_kernels()[name], work=work)


RELU, RELU_BACKWARD = _kernel(relu), _kernel(relu_backward)
LEAKY_RELU, LEAKY_RELU_BACKWARD = _kernel(leaky_relu), _kernel(leaky_relu_backward)
SIGMOID, SIGMOID_BACKWARD = _kernel(sigmoid), _kernel(sigmoid_backward)
TANH, TANH_BACKWARD = _kernel(tanh), _kernel(tanh_backward)
SOFTMAX, SOFTMAX_BACKWARD = _kernel(softmax, work=_rows), _kernel(softmax_backward, work=_rows)
