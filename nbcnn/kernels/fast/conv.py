"""The cpu convolution router: which fast kernel computes a convolution, and why.

Same three kernels as the readable ``kernels/conv.py`` (same arguments, same output)::

    x  (N, H, W, C_in)   W  (f_h, f_w, C_in, C_out)   b  (C_out,)
    z  (N, H_out, W_out, C_out),  H_out = (H + pad_top + pad_bottom - f_h) // stride_h + 1

Routes (``NBCNN_DEBUG=1`` prints the one each launch took):

    float32 forward      Winograd F(4x4, 3x3), F(2x2, 3x3) or F(2x2, 5x5) for 3x3 and 5x5
                         stride-1 layers of 32 channels or more whose transformed filters the
                         tiles can share (``winograd.py``: 4x, 2.25x and 2.8x fewer multiplies
                         on the same register tile; ``NBCNN_WINOGRAD=0`` turns it off), else
                         the direct register tile
                         (``direct.py``: 2-7x faster than im2col + BLAS)
    float32 dX           stride 1: the forward of dz with flipped filters (same routes);
                         strided: one stride-1 convolution per phase of the input grid, or all
                         phases at once for 8 input channels or fewer (``direct.py``)
    float32 dW           Winograd's F(2x2, 3x3) run backwards for big 3x3 stride-1 layers
                         (``winograd.filter_grad``: 2.25x fewer multiplies), else the dW
                         register tile (``direct.py``)
    float64, NBCNN_DIRECT=0, or a dX whose flipped convolution would mostly multiply padding
                         im2col + BLAS (``im2col.py``); a 1x1 stride-1 unpadded conv needs
                         no copy: x viewed as a matrix already is ``cols``
"""

import functools

import numpy as np

from ... import config
from ...backend import note_route, thread_count
from ...checks import Window, reaches_padding, window_span
from .. import activations, conv as readable
from . import blas, direct, dot, filter_grad_taps, im2col, winograd
from .caches import l2_bytes
from .workspace import scratch as _scratch

_SWITCHES = ("NBCNN_DIRECT", "NBCNN_WINOGRAD", "NBCNN_L2_BYTES")


def _switches():
    """``(NBCNN_DIRECT on, NBCNN_WINOGRAD on, L2 bytes)``, read together: the router's choices
    depend on them (``config.raw_values``, parsed once per combination of values)."""
    return _parsed_switches(config.raw_values(_SWITCHES))


@functools.lru_cache(maxsize=64)
def _parsed_switches(raw):
    direct_on, winograd_on, l2 = config.parsed_values(_SWITCHES, raw)
    return config.is_on(direct_on), config.is_on(winograd_on), l2_bytes(l2)


def _direct_ok(x, W, z, win=None, direct_on=True):
    """The direct kernel takes contiguous float32 (float64 stays on im2col + BLAS), for layers
    whose copies stay in proportion to the data (``_copies_in_proportion``; ``win`` given: x is
    the input and z the output of the convolution).
    ``NBCNN_DIRECT=0`` (``direct_on`` False, see ``_switches``) turns it off: float32 then runs
    im2col + BLAS too (the middle rung of ``nbcnn bench --ladder``)."""
    return (direct_on and _float32_c(x) and _float32_c(W) and _float32_c(z)
            and (win is None or _copies_in_proportion(x.shape, win, z.shape)))


_FLOAT32 = np.dtype(np.float32)


def _float32_c(a):
    return a.dtype == _FLOAT32 and a.flags.c_contiguous


@functools.lru_cache(maxsize=1024)
def _copies_in_proportion(x_shape, win, z_shape):
    """The direct kernels copy the input with its zero border, ``(N, Hp, Wp, C)`` with
    ``Hp = (H_out - 1) * stride_h + f_h``, and a strided dX splits it into ``stride_h * stride_w``
    phases: both grow with padding and stride, not with the data (a 1x1 input with
    ``stride = pad = 100000`` asked for 149 GiB). Such layers take im2col, whose matrix grows
    with the output and the filter only. Real layers are far inside this bound."""
    N, H, W, C = x_shape
    Hp, Wp = window_span(win, z_shape[1:3])
    phases = N * -(-max(H, Hp) // win.stride_h) * -(-max(W, Wp) // win.stride_w) * win.stride_h * win.stride_w * C
    budget = 4 * (N * H * W * C + N * z_shape[1] * z_shape[2] * z_shape[3]) + (1 << 20)
    return N * Hp * Wp * C <= budget and phases <= budget


def _not_finite(a):
    """True when ``a`` holds an inf or a NaN (or sums past the float range: then the readable
    kernel runs too, which is only slower). One vectorised pass, no temporary array."""
    return not np.isfinite(a.sum())


def _border_pixels(dz, win, x_hw):
    """The parts of ``dz (N, H_out, W_out, K)`` whose output pixels' windows reach the padding:
    the first and last few rows and columns (for a 3x3 'same' layer, one of each; a stride-2
    7x7 stem, two). Only these dz meet the padding's zeros in dW; the rest of the pixels see
    the image only."""
    H_out, W_out = dz.shape[1:3]
    (top, bottom), (left, right) = (_inside(H, f, s, p, n) for H, f, s, p, n in (
        (x_hw[0], win.f_h, win.stride_h, win.pad_top, H_out), (x_hw[1], win.f_w, win.stride_w, win.pad_left, W_out)))
    return dz[:, :top], dz[:, bottom:], dz[:, top:bottom, :left], dz[:, top:bottom, right:]


def _inside(size, f, stride, pad_before, n_out):
    """``(first, end)``: the output positions whose windows ``o * stride - pad_before ...
    + f - 1`` lie inside ``0 .. size - 1`` (clipped to ``0 .. n_out``)."""
    first = -(-pad_before // stride) if pad_before > 0 else 0
    end = -(-(size + pad_before - f + 1) // stride)
    return min(first, n_out), max(min(end, n_out), min(first, n_out))


def _readable_for_non_finite(kernel, multipliers, *args):
    """Padding contributes nothing: the readable kernels skip it, while the fast ones multiply
    the zeros they copied, and ``0 * inf`` is NaN. For a layer whose windows reach the padding
    (the callers ask ``_reaches_padding`` first, before building ``multipliers``): when the
    numbers that meet the padding (the filters; for dW, dz at the pixels whose windows reach
    it) are not all finite, run the readable loop nest (compiled) so that every backend gives
    the same answer. Returns whether it ran."""
    if not any(_not_finite(m) for m in multipliers):
        return False
    note_route("readable loop (non-finite next to padding)")
    kernel.naive_cpu(*args)
    return True


@functools.lru_cache(maxsize=1024)
def _reaches_padding(win, x_shape, z_shape):
    """``checks.reaches_padding`` for an input and an output of these shapes (once per shape)."""
    return reaches_padding(win, x_shape[1:3], z_shape[1:3])


def _flip_limit(direct_ok):
    """How much more work (mostly multiplying padding zeros) the flipped-filter dX may do than
    the BLAS + col2im path before that path wins. The direct kernel runs it about 4x faster
    than im2col + BLAS would (LeNet C3's dX: 1.1 vs 2.4 ms at a ratio of 5.2; C5's, ratio
    188, stays on col2im)."""
    return 8 if direct_ok else 2


DOT_FLIP_LIMIT = 4
"""The flipped-filter dX on the dot tile (few input channels: an RGB layer's) does as many
multiply-adds as ``dz @ Wm.T`` times ``H * W / (H_out * W_out)``, the padding it multiplies;
up to this ratio it runs that way instead of BLAS + col2im (VGG's first layer, 224 x 224 x 3
-> 64, ratio 1: 4.1 -> 2.5 ms; LeNet's C3, 1.96: flipped already; LeNet's C5, 25: col2im)."""


def _dot_flip_ok(direct_ok, x_shape, z_shape):
    """Whether the flipped dX of a stride-1 layer runs on the dot tile (see DOT_FLIP_LIMIT)."""
    _, H, W, C = x_shape
    _, H_out, W_out, K = z_shape
    return direct_ok and dot.usable(K, C) and H * W <= DOT_FLIP_LIMIT * H_out * W_out


def _is_pointwise(x_shape, win, z_shape):
    """A 1x1, stride-1, unpadded conv: ``x`` as an (N*H*W, C) matrix already is ``cols``."""
    return (win.f_h == 1 and win.f_w == 1 and win.stride_h == 1 and win.stride_w == 1
            and win.pad_top == 0 and win.pad_left == 0
            and x_shape[1] == z_shape[1] and x_shape[2] == z_shape[2])


# --------------------------------------------------------------------------- the three kernels


def _tiled_forward(x, W, b, win, z, switches, what="", relu=False):
    """float32 ``z = conv(x, W) + b`` on the register tile: for a few output channels over
    many input channels the dot tile (input channels along the lanes: an RGB layer's dX,
    a last layer back to 3 channels), else Winograd where it pays, else direct."""
    _, winograd_on, l2 = switches
    tile, name, block = _tile_route(x.shape, W.shape, win, relu, thread_count() if winograd_on else 0, l2)
    note_route(what + name)
    if tile == "dot":
        dot.forward(x, W, b, win, z, _scratch, relu)
    elif tile == "winograd":
        winograd.forward(x, W, b, win, z, _scratch, block)
        if relu:  # Winograd's output transform stores 8-lane pieces: ReLU after it, in place
            _relu_in_place(z)
    else:
        direct.forward(x, W, b, win, z, _scratch, relu)


@functools.lru_cache(maxsize=1024)
def _tile_route(x_shape, W_shape, win, relu, winograd_threads, l2):
    """``_tiled_forward``'s choice for these shapes, and its name for NBCNN_DEBUG, found once
    per shape: ``("dot" | "winograd" | "direct", name, Winograd's output block)``.
    ``winograd_threads``: Numba's thread count (Winograd's choice depends on it and on ``l2``,
    the L2 cache's bytes), 0 when NBCNN_WINOGRAD=0. (Made at every call, the choice and its name cost 6-10 us of a small
    layer's 250 in cold Python: see ``backend.cpu_runners``.)"""
    C, K = W_shape[2], W_shape[3]
    fused = " + relu" if relu else ""
    if dot.usable(C, K):
        return "dot", dot.tile_name(K) + fused, 0
    if winograd_threads and winograd.usable(x_shape, W_shape, win, winograd_threads, l2):
        m = winograd.block_for(x_shape, W_shape, winograd_threads, l2)
        return "winograd", f"winograd F({m}x{m},{W_shape[0]}x{W_shape[1]})" + (", then relu" if relu else ""), m
    return "direct", direct.tile_name(K) + fused, 0


def _relu_in_place(z):
    """``z = relu(z)``: the readable ReLU's compiled loop nest with z as input and output (each
    number read, then written, by the same iteration)."""
    flat = z.reshape(-1)
    activations.RELU.naive_cpu(flat, flat)


def forward(x, W, b, win, z, relu=False):
    """``z = conv(x, W) + b``. Same arguments and output as ``conv.conv2d_forward``;
    ``relu``: ``z = relu(conv(x, W) + b)``, as ``conv.conv2d_forward_relu`` (see
    ``forward_relu``)."""
    if _reaches_padding(win, x.shape, z.shape) and _readable_for_non_finite(
            readable.FORWARD_RELU if relu else readable.FORWARD, (W,), x, W, b, win, z):
        return
    switches = _switches()
    if _direct_ok(x, W, z, win, switches[0]):
        # float32: the register-blocked direct kernel (direct.py), bias included. Its
        # tiles run across rows, so even LeNet's C5 (one pixel per row) fills them: 130 us
        # against 270 for im2col + BLAS. 3x3 stride-1 layers with moderate channel counts
        # take Winograd's F(4x4, 3x3) or F(2x2, 3x3) on the same register tile (winograd.py).
        _tiled_forward(x, W, b, win, z, switches, relu=relu)
        return
    K = z.shape[3]
    Wm = W.reshape(-1, K)
    if _is_pointwise(x.shape, win, z.shape):
        # 1x1 conv: no copy, one matrix product (x viewed as (pixels, C)).
        note_route("1x1: BLAS")
        blas.matmul(x.reshape(-1, x.shape[3]), Wm, out=z.reshape(-1, K))
    else:
        note_route("im2col+BLAS")
        im2col.conv_gemm(x, Wm, win.f_h, win.f_w, win.stride_h, win.stride_w, win.pad_top, win.pad_left, z)
    z += b  # broadcast over the last axis
    if relu:
        _relu_in_place(z)


def forward_relu(x, W, b, win, z):
    """``z = relu(conv(x, W) + b)``: the direct and dot tiles apply the ReLU to their sums
    before storing them, so a Conv2D followed by ReLU writes its output once, and no second
    pass reads it back (LeNet-5's first layer: the separate ReLU took 0.28 ms a training
    step, its input and output out of cache). Same arguments and output as
    ``conv.conv2d_forward_relu``."""
    forward(x, W, b, win, z, relu=True)


def backward_filter(x, dz, win, dW, db=None):
    """dW = the sum over output pixels of window(x) outer dz. Same arguments and output as
    ``conv.conv2d_backward_filter``. ``db`` (the bias gradient's output, shape (K,)): the
    register-tiled routes also sum dz over its pixels into it, from the rows of dz they have
    just read (a separate pass read all of dz again: seed39's, 3.5 MB, 90 us); returns
    whether db was filled (otherwise the caller runs the bias kernel)."""
    # only the pixels whose windows reach the padding (a pass over all of dz cost ResNet's stem 1.3 ms)
    if _reaches_padding(win, x.shape, dz.shape) and _readable_for_non_finite(
            readable.BACKWARD_FILTER, _border_pixels(dz, win, x.shape[1:3]), x, dz, win, dW):
        return False
    K = dz.shape[3]
    direct_on, winograd_on, l2 = _switches()
    if _direct_ok(x, dz, dW, None, direct_on) and _copies_in_proportion(x.shape, win, dz.shape):
        with_bias = db is not None and _float32_c(db)
        if filter_grad_taps.takes(x, dz, win):
            note_route(filter_grad_taps.tile_name(win.f_w * x.shape[3]))
            filter_grad_taps.backward_filter(x, dz, win, dW, _scratch, db if with_bias else None, l2)
            return with_bias
        if winograd_on and winograd.filter_grad_usable(x.shape, dz.shape, dW.shape, win):
            note_route("winograd dW F(2x2,3x3)")
            winograd.filter_grad(x, dz, win, dW, _scratch)
            return False
        note_route(direct.filter_grad_tile_name(K, win.f_w * x.shape[3]))
        direct.backward_filter(x, dz, win, dW, _scratch, db if with_bias else None, l2)
        return with_bias
    elif _is_pointwise(x.shape, win, dz.shape):
        note_route("1x1: BLAS")
        blas.matmul(x.reshape(-1, x.shape[3]).T, dz.reshape(-1, K), out=dW.reshape(-1, K))
    else:
        note_route("im2col+BLAS")
        im2col.filter_grad(x, dz, win, dW)
    return False


@functools.lru_cache(maxsize=1024)
def _input_grad_route(dx_shape, dz_shape, W_shape, win, direct_ok):
    """``backward_input``'s route for these shapes (found once per shape): "pointwise",
    "flipped", "space-to-depth", "phases" or "col2im" (see there)."""
    N, H, W_in, C = dx_shape
    _, H_out, W_out, K = dz_shape
    f_h, f_w = W_shape[0], W_shape[1]
    flipped_copy = N * H * W_in * f_h * f_w * K  # im2col of the padded dz
    dcols_size = N * H_out * W_out * f_h * f_w * C
    if _is_pointwise(dx_shape, win, dz_shape) and not direct_ok:
        return "pointwise"
    if win.stride_h == 1 and win.stride_w == 1 and (flipped_copy <= _flip_limit(direct_ok) * dcols_size
                                                    or _dot_flip_ok(direct_ok, dx_shape, dz_shape)):
        return "flipped"
    if direct_ok and (win.stride_h > 1 or win.stride_w > 1):
        return "space-to-depth" if C <= direct.LANES else "phases"  # few channels: all phases in one convolution
    return "col2im"


@functools.lru_cache(maxsize=1024)
def _flipped_window(win):
    """The stride-1 dX's window: the forward's filter, padded by ``f - 1 - pad``."""
    return Window(win.f_h, win.f_w, 1, 1, win.f_h - 1 - win.pad_top, win.f_w - 1 - win.pad_left)


@functools.lru_cache(maxsize=64)
def _zero_bias(C):
    """A zero bias of C channels (the flipped forward's), made once per C. The kernels only
    read it; it is not flagged read-only because Numba would compile every kernel again
    for read-only arrays (a type of their own)."""
    return np.zeros(C, np.float32)


def backward_input(dz, W, win, dx):
    """dX. Same arguments and output as ``conv.conv2d_backward_input``.

    * 1x1 stride 1, float64: ``dx = dz @ Wm.T``, one matrix product (float32 takes the
      next path: the direct kernel beat single-threaded BLAS 0.48 vs 0.88 ms on incep1x1,
      whose reduction is only 16 long).
    * stride 1: dX is itself a convolution, of ``dz`` with the filters flipped in (i, j) and
      transposed in (c, k), padded by ``f - 1 - pad``; so it runs on the forward's path
      (the direct kernel for float32).
    * stride > 1 (float32): one stride-1 convolution per phase of the input grid
      (``direct.backward_input_strided``), or for 8 input channels or fewer all the
      phases in one convolution (``direct.backward_input_space_to_depth``).
    * otherwise (float64 strided, or when the flipped convolution would mostly multiply
      padding): ``dcols = dz @ Wm.T`` (each window's gradient), then the gather col2im.
      (LeNet's C5: the flipped conv would do 190x the work of dcols; see ``_flip_limit``
      and, for few input channels, ``DOT_FLIP_LIMIT``.)
    """
    if _reaches_padding(win, dx.shape, dz.shape) and _readable_for_non_finite(
            readable.BACKWARD_INPUT, (W,), dz, W, win, dx):
        return
    switches = _switches()
    direct_ok = _direct_ok(dz, W, dx, None, switches[0]) and _copies_in_proportion(dx.shape, win, dz.shape)
    route = _input_grad_route(dx.shape, dz.shape, W.shape, win, direct_ok)
    if route == "pointwise":
        note_route("1x1: BLAS")
        C, K = W.shape[2], W.shape[3]
        blas.matmul(dz.reshape(-1, K), W.reshape(C, K).T, out=dx.reshape(-1, C))
    elif route == "flipped":
        # Wflip[i, j, k, c] = W[f_h-1-i, f_w-1-j, c, k]
        Wflip = direct.flipped_filters(W)
        flipped = _flipped_window(win)
        if direct_ok:
            _tiled_forward(dz, Wflip, _zero_bias(W.shape[2]), flipped, dx, switches, what="flipped ")
        else:
            note_route("flipped im2col+BLAS")
            im2col.conv_gemm(dz, Wflip.reshape(-1, W.shape[2]), win.f_h, win.f_w, 1, 1, flipped.pad_top,
                             flipped.pad_left, dx)
    elif route == "space-to-depth":
        note_route("space-to-depth tile")
        direct.backward_input_space_to_depth(dz, W, win, dx, _scratch)
    elif route == "phases":
        note_route("per-phase tiles")
        direct.backward_input_strided(dz, W, win, dx, _scratch)
    else:
        note_route("BLAS+col2im")
        im2col.input_grad(dz, W, win, dx)
