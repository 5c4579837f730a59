"""Independent float64 numpy oracles for the kernels under test.

Written the way the course's notebook does it (explicit zero padding, window slices,
scatter-style backward), deliberately *not* the way nbcnn's kernels do it (implicit
padding, gather-style backward), so a shared mistake is unlikely.
"""

import numpy as np


def pad_nhwc(x, top, bottom, left, right, value=0.0):
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def out_size(size, f, stride, before, after):
    return (size + before + after - f) // stride + 1


def conv_forward(x, W, b, stride, pads):
    """pads = (top, bottom, left, right)."""
    x, W, b = (np.asarray(a, np.float64) for a in (x, W, b))
    sh, sw = stride
    top, bottom, left, right = pads
    f_h, f_w, _, K = W.shape
    xp = pad_nhwc(x, top, bottom, left, right)
    N, H, Wd, _ = x.shape
    OH, OW = out_size(H, f_h, sh, top, bottom), out_size(Wd, f_w, sw, left, right)
    z = np.zeros((N, OH, OW, K))
    for i in range(OH):
        for j in range(OW):
            window = xp[:, i * sh:i * sh + f_h, j * sw:j * sw + f_w, :]  # (N, f_h, f_w, C)
            z[:, i, j, :] = np.tensordot(window, W, axes=([1, 2, 3], [0, 1, 2])) + b.reshape(-1)
    return z


def conv_backward(dz, x, W, stride, pads):
    """Scatter form, as in the notebook: each output's gradient is added to its window."""
    dz, x, W = (np.asarray(a, np.float64) for a in (dz, x, W))
    sh, sw = stride
    top, bottom, left, right = pads
    f_h, f_w, _, _ = W.shape
    xp = pad_nhwc(x, top, bottom, left, right)
    dxp = np.zeros_like(xp)
    dW = np.zeros_like(W)
    _, OH, OW, _ = dz.shape
    for i in range(OH):
        for j in range(OW):
            g = dz[:, i, j, :]  # (N, K)
            window = xp[:, i * sh:i * sh + f_h, j * sw:j * sw + f_w, :]
            dxp[:, i * sh:i * sh + f_h, j * sw:j * sw + f_w, :] += np.einsum("nk,abck->nabc", g, W)
            dW += np.einsum("nabc,nk->abck", window, g)
    H, Wd = x.shape[1:3]
    dx = dxp[:, top:top + H, left:left + Wd, :]
    db = dz.sum(axis=(0, 1, 2))
    return dx, dW, db


def pool_forward(x, f, stride, pads, mode):
    x = np.asarray(x, np.float64)
    fh, fw = f
    sh, sw = stride
    top, bottom, left, right = pads
    N, H, Wd, C = x.shape
    OH, OW = out_size(H, fh, sh, top, bottom), out_size(Wd, fw, sw, left, right)
    xp = pad_nhwc(x, top, bottom, left, right, value=np.nan)  # NaN marks padding here
    out = np.zeros((N, OH, OW, C))
    for i in range(OH):
        for j in range(OW):
            window = xp[:, i * sh:i * sh + fh, j * sw:j * sw + fw, :]
            out[:, i, j, :] = np.nanmax(window, axis=(1, 2)) if mode == "max" else np.nanmean(window, axis=(1, 2))
    return out


def pool_backward(dp, x, f, stride, pads, mode):
    """Scatter form: a max window sends its gradient to its first argmax (np.argmax order),
    an average window spreads it evenly over its real cells."""
    dp, x = np.asarray(dp, np.float64), np.asarray(x, np.float64)
    fh, fw = f
    sh, sw = stride
    top, bottom, left, right = pads
    N, H, Wd, C = x.shape
    xp = pad_nhwc(x, top, bottom, left, right, value=-np.inf)
    real = pad_nhwc(np.ones_like(x), top, bottom, left, right, value=0.0)
    dxp = np.zeros_like(xp)
    _, OH, OW, _ = dp.shape
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    rows = slice(i * sh, i * sh + fh)
                    cols = slice(j * sw, j * sw + fw)
                    if mode == "max":
                        window = xp[n, rows, cols, c]
                        a, b = np.unravel_index(np.argmax(window), window.shape)
                        dxp[n, i * sh + a, j * sw + b, c] += dp[n, i, j, c]
                    else:
                        mask = real[n, rows, cols, c]
                        dxp[n, rows, cols, c] += mask * dp[n, i, j, c] / mask.sum()
    return dxp[:, top:top + H, left:left + Wd, :]


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numeric_grad(f, x, eps=1e-6, only=None):
    """Central differences of the scalar function f at x (float64), one element at a time.

    ``only``: flat indices to differentiate (the others stay 0) — the slow backends check a sample.
    """
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in (range(flat.size) if only is None else only):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def sample_indices(size, count, seed=0):
    """``count`` distinct flat indices of an array of ``size`` elements (all when size <= count)."""
    if size <= count:
        return np.arange(size)
    return np.random.default_rng(seed).choice(size, count, replace=False)


def assert_grad_close(analytic, f, x, only=None, rtol=1e-5, atol=1e-7, err_msg=""):
    """Compare an analytic gradient with central differences, on every element or on ``only``."""
    numeric = numeric_grad(f, x, only=only)
    analytic = np.asarray(analytic)
    if only is not None:
        analytic, numeric = analytic.reshape(-1)[only], numeric.reshape(-1)[only]
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=err_msg)
