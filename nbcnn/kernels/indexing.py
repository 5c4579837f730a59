"""Index helpers shared by the kernels.

Each is marked ``@register_jitable``: called from Python it is the plain function (the
python backend, pdb), and inside ``@njit`` or ``@cuda.jit`` code it is compiled in.
"""

from numba.extending import register_jitable


@register_jitable
def unravel_2d(i, shape):
    """Flat C-order index ``i`` -> (row, col) in an array of ``shape`` (one GPU thread each)."""
    return i // shape[1], i % shape[1]


@register_jitable
def unravel_4d(i, shape):
    """Flat C-order index ``i`` -> (n, h, w, c) in an NHWC array of ``shape``."""
    c = i % shape[3]
    i = i // shape[3]
    w = i % shape[2]
    i = i // shape[2]
    h = i % shape[1]
    n = i // shape[1]
    return n, h, w, c


@register_jitable
def windows_covering(i, pad_before, f, stride, n_out):
    """The output positions whose window covers input position ``i``, as ``range(first, stop)``.

    Output ``o`` looks at inputs ``o*stride - pad_before ... o*stride - pad_before + f - 1``,
    so it covers ``i`` when ``i + pad_before - f + 1 <= o*stride <= i + pad_before``.
    Backward kernels loop over exactly these windows to *gather* a gradient cell.
    """
    last = (i + pad_before) // stride
    lowest = i + pad_before - f + 1
    first = 0 if lowest <= 0 else (lowest + stride - 1) // stride  # ceil, for lowest > 0
    return first, min(last + 1, n_out)


@register_jitable
def outputs_reading_inside(j, pad_before, stride, n_in, n_out):
    """The output positions whose tap ``j`` reads inside the input (not its padding), as
    ``range(first, stop)``: ``0 <= o*stride - pad_before + j < n_in``. A loop over them needs
    no bounds test inside (the fast depthwise kernels run a SIMD channel loop there).
    """
    lowest = pad_before - j
    first = 0 if lowest <= 0 else (lowest + stride - 1) // stride  # ceil, for lowest > 0
    return first, min(n_out, (n_in - 1 + pad_before - j) // stride + 1)
