"""Every public op, driven with random valid and invalid hyper-parameters (hypothesis).

Each call must either match the float64 oracle of tests/oracles.py, when the test's own
reading of the hyper-parameters (written here, independently of nbcnn/checks.py) says they
are valid, or raise ValueError/TypeError when it says they are not: never another exception,
never a crash, never a silent answer to a bad question. On cpu and python.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
import oracles

BACKENDS = ["cpu", "python"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ints of every kind a user might pass, the valid and the invalid
ints = st.one_of(st.integers(-2, 5), st.sampled_from([np.int64(2), np.int32(1), 2**31, 2**62, 2**64]))
not_ints = st.sampled_from([2.0, 1.5, True, False, None, "2", float("nan"), [2], (1, 2, 3)])
scalars = st.one_of(ints, not_ints)
pairs = st.one_of(scalars, st.tuples(scalars, scalars), st.lists(scalars, min_size=2, max_size=2))
pads = st.one_of(pairs, st.sampled_from(["same", "valid", "SAME", "full", ""]),
                 st.tuples(st.tuples(scalars, scalars), st.tuples(scalars, scalars)))


class Invalid(Exception):
    pass


def as_int(v, minimum):
    if type(v) is bool or not isinstance(v, (int, np.integer)):
        raise Invalid
    v = int(v)
    if v < minimum or v > 2**31 - 1:
        raise Invalid
    return v


def as_pair(v, minimum):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise Invalid
        return as_int(v[0], minimum), as_int(v[1], minimum)
    v = as_int(v, minimum)
    return v, v


def resolve_pads(pad, size_hw, f_hw, stride_hw):
    """(top, bottom, left, right), Keras' "same": output ceil(size / stride), odd extra at the end."""
    if isinstance(pad, str):
        if pad.lower() == "valid":
            return 0, 0, 0, 0
        if pad.lower() != "same":
            raise Invalid
        sides = []
        for size, f, s in zip(size_hw, f_hw, stride_hw):
            total = max((math.ceil(size / s) - 1) * s + f - size, 0)
            sides += [total // 2, total - total // 2]
        return tuple(sides)
    if isinstance(pad, (tuple, list)) and len(pad) == 2 and all(isinstance(p, (tuple, list)) for p in pad):
        (top, bottom), (left, right) = as_pair(tuple(pad[0]), 0), as_pair(tuple(pad[1]), 0)
        return top, bottom, left, right
    ph, pw = as_pair(pad, 0)
    return ph, ph, pw, pw


def geometry(x_shape, f_hw, stride, pad, pooling):
    sh, sw = as_pair(stride, 1)
    top, bottom, left, right = resolve_pads(pad, x_shape[1:3], f_hw, (sh, sw))
    if f_hw[0] > x_shape[1] + top + bottom or f_hw[1] > x_shape[2] + left + right:
        raise Invalid
    if pooling and (max(top, bottom) >= f_hw[0] or max(left, right) >= f_hw[1]):
        raise Invalid
    return (sh, sw), (top, bottom, left, right)


def check(call, expected):
    """``expected()`` raises Invalid for a bad question; otherwise gives the oracle's arrays."""
    try:
        want = expected()
    except Invalid:
        with pytest.raises((ValueError, TypeError)):
            call()
        return
    got = call()
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=1e-4, atol=1e-4)


def arrays(rng, *shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(f=pairs, stride=pairs, pad=pads, seed=st.integers(0, 2**16), no_bias=st.booleans())
def test_conv2d(backend, f, stride, pad, seed, no_bias):
    rng = np.random.default_rng(seed)
    f_ok = None
    try:
        f_ok = as_pair(f, 1)
    except Invalid:
        pass
    fh, fw = f_ok if f_ok and max(f_ok) <= 4 else (2, 3)  # filters are arrays: f only shapes them
    x, W, b = arrays(rng, (2, 5, 4, 3), (fh, fw, 3, 2), (2,))

    def expected():
        s, p = geometry(x.shape, (fh, fw), stride, pad, pooling=False)
        z = oracles.conv_forward(x, W, 0 * b if no_bias else b, s, p)
        dz = np.ones_like(z)
        return (z,) + oracles.conv_backward(dz, x, W, s, p)

    def call():
        z = nbcnn.conv2d(x, W, None if no_bias else b, stride, pad)
        return (z,) + nbcnn.conv2d_backward(np.ones_like(z), x, W, stride, pad)

    with nbcnn.use_backend(backend):
        check(call, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["max", "avg"])
@SETTINGS
@given(f=pairs, stride=st.one_of(st.none(), pairs), pad=pads, seed=st.integers(0, 2**16))
def test_pooling(backend, mode, f, stride, pad, seed):
    rng = np.random.default_rng(seed)
    x, = arrays(rng, (2, 5, 4, 2))
    pool = nbcnn.max_pool2d if mode == "max" else nbcnn.avg_pool2d
    back = nbcnn.max_pool2d_backward if mode == "max" else nbcnn.avg_pool2d_backward

    def expected():
        f_hw = as_pair(f, 1)
        s, p = geometry(x.shape, f_hw, f_hw if stride is None else stride, pad, pooling=True)
        y = oracles.pool_forward(x, f_hw, s, p, mode)
        return y, oracles.pool_backward(np.ones_like(y), x, f_hw, s, p, mode)

    def call():
        y = pool(x, f, stride, pad)
        return y, back(np.ones_like(y), x, f, stride, pad)

    with nbcnn.use_backend(backend):
        check(call, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(n=st.integers(0, 3), d=st.integers(0, 4), m=st.integers(1, 3), w_rows=st.integers(1, 5),
       b_len=st.integers(0, 4), no_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_dense(backend, n, d, m, w_rows, b_len, no_bias, seed):
    rng = np.random.default_rng(seed)
    x, W, b = arrays(rng, (n, d), (w_rows, m), (b_len,))

    def expected():
        if n == 0 or d == 0 or w_rows != d or (not no_bias and b_len != m):
            raise Invalid
        x64, W64 = x.astype(np.float64), W.astype(np.float64)
        y = x64 @ W64 + (0 if no_bias else b)
        dy = np.ones_like(y)
        return y, dy @ W64.T, x64.T @ dy, dy.sum(axis=0)

    def call():
        y = nbcnn.dense(x, W, None if no_bias else b)
        return (y,) + nbcnn.dense_backward(np.ones_like(y), x, W)

    with nbcnn.use_backend(backend):
        check(call, expected)


ACTIVATIONS = {
    "relu": (lambda v: np.where(v < 0, 0.0, v), lambda v: (v > 0).astype(np.float64)),
    "sigmoid": (lambda v: 1 / (1 + np.exp(-v)), lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
    "tanh": (np.tanh, lambda v: 1 - np.tanh(v) ** 2),
    "leaky_relu": (lambda v: np.where(v > 0, v, 0.1 * v), lambda v: np.where(v > 0, 1.0, 0.1)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [*ACTIVATIONS, "softmax"])
@SETTINGS
@given(shape=st.lists(st.integers(0, 3), max_size=3), kind=st.sampled_from(["float32", "float64", "int", "str"]),
       seed=st.integers(0, 2**16))
def test_activations(backend, name, shape, kind, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x = {"float32": x.astype(np.float32), "float64": x, "int": x.astype(np.int64), "str": x.astype(str)}[kind]
    forward, backward = getattr(nbcnn, name), getattr(nbcnn, name + "_backward")

    def expected():
        if kind not in ("float32", "float64") or 0 in shape:
            raise Invalid
        v = x.astype(np.float64)
        if name == "softmax":
            s = oracles.softmax(v.reshape(v.shape or (1,))).reshape(v.shape)
            return s, np.zeros_like(s)  # dy = 1 everywhere: s * (1 - sum(s)) = 0
        f, df = ACTIVATIONS[name]
        return f(v), df(v)

    def call():
        y = forward(x)
        assert np.shape(y) == np.shape(x)
        return y, backward(np.ones_like(x), x)

    with nbcnn.use_backend(backend):
        check(call, expected)
