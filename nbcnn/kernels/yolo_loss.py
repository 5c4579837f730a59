"""The YOLO training loss and its gradient, one source for three backends.

The network's last conv gives, for every grid cell and each of its B anchors, 5 + C raw
numbers ``tx, ty, tw, th, to, c_0 .. c_{C-1}`` (darknet's order). Flattened to rows, one row
per (image, cell, anchor): ``pred`` (M, 5 + C), ``M = N * S * S * B``. The target encoding
(``nbcnn/detection/targets.py``) gives one row of 7 numbers per prediction row::

    target[m] = (x*, y*, w*, h*, state, class, scale)
        x*, y*   where the centre lies inside its cell, in [0, 1)       (compared with sigma(tx))
        w*, h*   log(box size / anchor size)                             (compared with tw, th)
        state    1: this anchor of this cell is responsible for an object
                 0: no object here (objectness pushed towards 0)
                -1: ignored (no object assigned, but the prediction already overlaps one by
                    more than the ignore threshold: darknet neither rewards nor punishes it)
        class    the object's class number (as a float)
        scale    weight of the box terms, 2 - w * h (w, h relative to the image): small
                 boxes count more, as in YOLOv3

The loss of one row, with weights ``lam = (coord, obj, noobj, cls)``::

    if state == 1:   coord = lam_coord * scale * ((s(tx) - x*)^2 + (s(ty) - y*)^2
                                                  + (tw - w*)^2 + (th - h*)^2)
                     obj   = lam_obj * bce(to, 1)
                     cls   = lam_cls * -log softmax(c)[class]      (cross-entropy: one class each)
    if state == 0:   noobj = lam_noobj * bce(to, 0)           (lam_noobj < 1: most cells are empty)

``s`` is the logistic function and ``bce(z, y) = -y log s(z) - (1 - y) log(1 - s(z))``, the
logistic loss written from the logit so that it never overflows:
``bce(z, y) = max(z, 0) - z y + log(1 + exp(-|z|))``; its derivative is ``s(z) - y``. The
classes are exclusive (a digit is one digit), so they share a softmax (as YOLOv2's did; YOLOv3
uses a logistic per class for overlapping labels such as "person" and "woman"), computed with
the largest logit subtracted so that exp never overflows.

Its gradient with respect to the raw outputs (each row owned by one iteration: a gather)::

    d tx = dloss * lam_coord * scale * 2 (s(tx) - x*) s(tx) (1 - s(tx))       (ty likewise)
    d tw = dloss * lam_coord * scale * 2 (tw - w*)                            (th likewise)
    d to = dloss * lam_obj (s(to) - 1)   if state == 1;   dloss * lam_noobj * s(to)   if state == 0
    d c_j = dloss * lam_cls (softmax(c)_j - [j == class])  only if state == 1

Shapes: pred (M, E), E = 5 + C; target (M, 7); lam (4,) -> forward out (M, 4), the four
weighted terms (coord, obj, noobj, cls) of each row; backward out (M, E).

What runs here: these loops on every backend (compiled on cpu and cuda, one GPU thread per
row); no fast variant: the loss touches (5 + C) numbers per anchor, a few thousand rows a
batch, nothing next to the convolutions under it.
"""

import math

from numba import prange
from numba.extending import register_jitable

from ..backend import Kernel, cuda_kernels

cuda = None  # numba.cuda, bound by @cuda_kernels when the cuda backend is first used

TARGET_COLUMNS = 7   # x*, y*, w*, h*, state, class, scale
TERMS = 4            # coord, obj, noobj, cls


# --------------------------------------------------------------------------- cells


@register_jitable
def logistic(z, one):
    """1 / (1 + e^-z), without overflow for large |z| (the same form as activations.sigmoid_of)."""
    if z >= 0:
        return one / (one + math.exp(-z))
    e = math.exp(z)
    return e / (one + e)


@register_jitable
def logistic_loss(z, y, one):
    """bce(z, y) = max(z, 0) - z y + log(1 + e^-|z|): -log s(z) for y = 1, -log(1 - s(z)) for y = 0."""
    zero = one - one
    return max(z, zero) - z * y + math.log(one + math.exp(-abs(z)))


@register_jitable
def log_sum_exp_classes(pred, m):
    """log sum_j exp(c_j) over row m's class logits, with the largest subtracted first."""
    top = pred[m, 5]
    for j in range(6, pred.shape[1]):
        top = max(top, pred[m, j])
    total = pred.dtype.type(0)
    for j in range(5, pred.shape[1]):
        total += math.exp(pred[m, j] - top)
    return top + math.log(total)


@register_jitable
def yolo_loss_row(pred, target, lam, m, out):
    """The four weighted loss terms of prediction row m: out[m] = (coord, obj, noobj, cls)."""
    one = pred.dtype.type(1)
    zero = pred.dtype.type(0)
    coord = zero
    obj = zero
    noobj = zero
    cls = zero
    state = target[m, 4]
    if state > 0.5:  # responsible for an object
        scale = target[m, 6]
        for k in range(2):  # centre inside the cell: through the logistic
            d = logistic(pred[m, k], one) - target[m, k]
            coord += d * d
        for k in range(2, 4):  # log size relative to the anchor: raw
            d = pred[m, k] - target[m, k]
            coord += d * d
        coord *= lam[0] * scale
        obj = lam[1] * logistic_loss(pred[m, 4], one, one)
        label = int(target[m, 5])
        cls = lam[3] * (log_sum_exp_classes(pred, m) - pred[m, 5 + label])
    elif state > -0.5:  # no object: only the objectness, pushed to 0
        noobj = lam[2] * logistic_loss(pred[m, 4], zero, one)
    out[m, 0] = coord
    out[m, 1] = obj
    out[m, 2] = noobj
    out[m, 3] = cls


@register_jitable
def yolo_loss_backward_row(dloss, pred, target, lam, m, out):
    """Row m of d(sum of the weighted terms) / d pred, times dloss[0]."""
    one = pred.dtype.type(1)
    zero = pred.dtype.type(0)
    g = dloss[0]
    for k in range(pred.shape[1]):
        out[m, k] = zero
    state = target[m, 4]
    if state > 0.5:
        w = g * lam[0] * target[m, 6]
        for k in range(2):
            s = logistic(pred[m, k], one)
            out[m, k] = w * (s - target[m, k]) * (s + s) * (one - s)
        for k in range(2, 4):
            d = pred[m, k] - target[m, k]
            out[m, k] = w * (d + d)
        out[m, 4] = g * lam[1] * (logistic(pred[m, 4], one) - one)
        label = int(target[m, 5])
        lse = log_sum_exp_classes(pred, m)
        for j in range(pred.shape[1] - 5):
            y = one if j == label else zero
            out[m, 5 + j] = g * lam[3] * (math.exp(pred[m, 5 + j] - lse) - y)
    elif state > -0.5:
        out[m, 4] = g * lam[2] * logistic(pred[m, 4], one)


# --------------------------------------------------------------------------- loop nests


def yolo_loss(pred, target, lam, out):
    """pred (M, 5 + C), target (M, 7), lam (4,) -> out (M, 4): the weighted terms of every row::

        for m in range(M):                 # one row per (image, cell, anchor): in parallel
            out[m] = (coord, obj, noobj, cls) of row m      (see the module docstring)
    """
    for m in prange(out.shape[0]):
        yolo_loss_row(pred, target, lam, m, out)


def yolo_loss_backward(dloss, pred, target, lam, out):
    """dloss (1,) (the gradient of the summed loss), pred, target, lam -> out (M, 5 + C)::

        for m in range(M):                 # each row of the gradient owned by one iteration
            out[m] = dloss * d(coord + obj + noobj + cls of row m) / d pred[m]
    """
    for m in prange(out.shape[0]):
        yolo_loss_backward_row(dloss, pred, target, lam, m, out)


# --------------------------------------------------------------------------- cuda


@cuda_kernels
def _cuda_kernels():
    """One GPU thread per prediction row, calling the row functions above."""
    @cuda.jit
    def yolo_loss_k(pred, target, lam, out):
        m = cuda.grid(1)
        if m < out.shape[0]:
            yolo_loss_row(pred, target, lam, m, out)

    @cuda.jit
    def yolo_loss_backward_k(dloss, pred, target, lam, out):
        m = cuda.grid(1)
        if m < out.shape[0]:
            yolo_loss_backward_row(dloss, pred, target, lam, m, out)

    return {"yolo_loss": yolo_loss_k, "yolo_loss_backward": yolo_loss_backward_k}


def _rows(out):
    return out.shape[0]


def _kernel(source):
    name = source.__name__
    return Kernel(name, source, cuda=lambda: _cuda_kernels()[name], work=_rows)


YOLO_LOSS = _kernel(yolo_loss)
YOLO_LOSS_BACKWARD = _kernel(yolo_loss_backward)
