"""The Course 4 notebook functions, on nbcnn's kernels: week 1 ("Convolutional Model: Step by
Step") and week 3 ("Car detection with YOLO", TF2; at the end of this file).

Learners check their notebook work against these: the same names, signatures, shapes
(NHWC) and caches as the deeplearning.ai notebook, numpy arrays in and out::

    from nbcnn import course
    Z, cache = course.conv_forward(A_prev, W, b, {"stride": 2, "pad": 1})
    np.allclose(my_Z, Z)                      # does my loop nest agree?
    dA_prev, dW, db = course.conv_backward(dZ, cache)

They are not a second numpy implementation: each one runs the dispatcher's kernels
(``nbcnn.conv2d``, ``nbcnn.conv2d_backward``, ``nbcnn.max_pool2d``, ...) on the current
backend (``nbcnn.set_backend`` / ``nbcnn.use_backend``), so the loop nests in
``nbcnn/kernels/conv.py`` and ``pool.py`` are the ones to read next to the notebook.
Only ``zero_pad`` is plain numpy (``np.pad``): the kernels never copy the padding, they
skip reads that fall outside the image.

Shapes, as in the notebook:

    A_prev  (m, n_H_prev, n_W_prev, n_C_prev)     W  (f, f, n_C_prev, n_C)     b  (1, 1, 1, n_C)
    Z       (m, n_H, n_W, n_C)   with  n_H = (n_H_prev - f + 2 * pad) // stride + 1   (n_W likewise)
    pooling: n_H = (n_H_prev - f) // stride + 1, no padding, n_C = n_C_prev

Results are float64, like the notebook's ``np.zeros`` buffers, whatever numbers come in.
One known difference: when several cells of a max-pool window tie for the maximum, nbcnn
sends the gradient to the first of them only (row-major order), where the notebook's
``x == np.max(x)`` mask sends it to all of them (see ``create_mask_from_window``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import checks, ops
from .backend import is_device_array, to_host

__all__ = [
    "zero_pad", "conv_single_step", "conv_forward", "conv_backward",
    "pool_forward", "pool_backward", "create_mask_from_window", "distribute_value",
    # week 3, "Car detection with YOLO" (TF2)
    "iou", "yolo_boxes_to_corners", "yolo_filter_boxes", "yolo_non_max_suppression", "scale_boxes", "yolo_eval",
]

POOL_MODES = ("max", "average")


# --------------------------------------------------------------------------- argument checks


def _array(a, name: str, dims: tuple[str, ...] | None):
    """``a`` as a C-contiguous float64 numpy array; ``dims`` names the expected axes (None: any)."""
    arr = checks.host_numbers(a, name, "a numpy array of real numbers (float or int)")
    if dims is not None and arr.ndim != len(dims):
        raise ValueError(f"{name} must have {len(dims)} dimensions ({', '.join(dims)}), "
                         f"got shape {arr.shape} ({arr.ndim} dims)")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _hparameters(hparameters, keys: tuple[str, ...], where: str) -> tuple:
    """The values of ``keys`` in the ``hparameters`` dict, or a clear error."""
    if not isinstance(hparameters, Mapping):
        raise TypeError(f"{where}: hparameters must be a dict with keys {list(keys)}, "
                        f"got {type(hparameters).__name__} {hparameters!r:.60}")
    missing = [k for k in keys if k not in hparameters]
    if missing:
        raise ValueError(f"{where}: hparameters is missing {missing}; it needs {list(keys)}, "
                         f"got keys {list(hparameters)}")
    return tuple(hparameters[k] for k in keys)


def _mode(mode, where: str) -> str:
    if not isinstance(mode, str) or mode not in POOL_MODES:
        raise ValueError(f"{where}: mode must be 'max' or 'average', got {mode!r}")
    return mode


def _cache(cache, names: tuple[str, ...], made_by: str):
    if not isinstance(cache, (tuple, list)) or len(cache) != len(names):
        raise TypeError(f"cache must be the tuple ({', '.join(names)}) that {made_by} returned, "
                        f"got {type(cache).__name__} of length {len(cache) if hasattr(cache, '__len__') else '?'}")
    return cache


A_PREV_DIMS = ("m", "n_H_prev", "n_W_prev", "n_C_prev")
W_DIMS = ("f", "f", "n_C_prev", "n_C")
OUT_DIMS = ("m", "n_H", "n_W", "n_C")


def _bias(b, n_C: int):
    """The notebook's (1, 1, 1, n_C) bias as the kernels' (n_C,)."""
    b = _array(b, "b", None)
    if b.size != n_C:
        raise ValueError(f"b has shape {b.shape} but W has n_C = {n_C} filters: b must be (1, 1, 1, {n_C})")
    return b.reshape(n_C)


# --------------------------------------------------------------------------- convolution


def zero_pad(X, pad):
    """Pad every image of ``X`` with ``pad`` rows/columns of zeros on each side (height and width).

    X (m, n_H, n_W, n_C) -> X_pad (m, n_H + 2 * pad, n_W + 2 * pad, n_C)

    Plain ``np.pad``: the conv kernels do not need it (they skip reads outside the image),
    but it is the notebook's first step and handy for drawing what the filter sees.
    """
    X = _array(X, "X", ("m", "n_H", "n_W", "n_C"))
    if not isinstance(pad, (int, np.integer)) or isinstance(pad, bool) or pad < 0:
        raise TypeError(f"pad must be an int >= 0, got {pad!r}")
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)


def conv_single_step(a_slice_prev, W, b):
    """One filter on one window: ``Z = sum(a_slice_prev * W) + b``, a scalar.

    a_slice_prev (f, f, n_C_prev), W (f, f, n_C_prev), b with one value (the notebook's
    (1, 1, 1)) -> Z, a float (``np.float64``)

    Runs ``nbcnn.conv2d`` on a one-image, one-filter problem whose output is 1 x 1.
    """
    a_slice_prev = _array(a_slice_prev, "a_slice_prev", ("f", "f", "n_C_prev"))
    W = _array(W, "W", ("f", "f", "n_C_prev"))
    if a_slice_prev.shape != W.shape:
        raise ValueError(f"a_slice_prev has shape {a_slice_prev.shape} but W has shape {W.shape}; "
                         f"one conv step needs them equal")
    b = _array(b, "b", None)
    if b.size != 1:
        raise ValueError(f"b must hold exactly one value (shape (1, 1, 1)), got shape {b.shape}")
    z = ops.conv2d(a_slice_prev[None], W[..., None], b.reshape(1))  # (1, 1, 1, 1)
    return np.float64(z[0, 0, 0, 0])


def conv_forward(A_prev, W, b, hparameters):
    """Convolution layer forward: ``n_C`` filters over a batch, with stride and zero padding.

    A_prev (m, n_H_prev, n_W_prev, n_C_prev), W (f, f, n_C_prev, n_C), b (1, 1, 1, n_C),
    hparameters {"stride": int, "pad": int}
    -> Z (m, n_H, n_W, n_C),  n_H = (n_H_prev - f + 2 * pad) // stride + 1  (n_W likewise),
       cache = (A_prev, W, b, hparameters), what ``conv_backward`` needs.

    Runs ``nbcnn.conv2d``.
    """
    stride, pad = _hparameters(hparameters, ("stride", "pad"), "conv_forward")
    A = _array(A_prev, "A_prev", A_PREV_DIMS)
    W_ = _array(W, "W", W_DIMS)
    Z = ops.conv2d(A, W_, _bias(b, W_.shape[3]), stride=stride, pad=pad)
    return Z, (A_prev, W, b, hparameters)


def conv_backward(dZ, cache):
    """Convolution layer backward.

    dZ (m, n_H, n_W, n_C), the gradient of the cost with respect to Z;
    cache = (A_prev, W, b, hparameters) from ``conv_forward``
    -> dA_prev (m, n_H_prev, n_W_prev, n_C_prev), dW (f, f, n_C_prev, n_C), db (1, 1, 1, n_C)

    Runs ``nbcnn.conv2d_backward``.
    """
    A_prev, W, b, hparameters = _cache(cache, ("A_prev", "W", "b", "hparameters"), "conv_forward")
    stride, pad = _hparameters(hparameters, ("stride", "pad"), "conv_backward")
    A = _array(A_prev, "A_prev", A_PREV_DIMS)
    W_ = _array(W, "W", W_DIMS)
    dZ = _array(dZ, "dZ", OUT_DIMS)
    dA_prev, dW, db = ops.conv2d_backward(dZ, A, W_, stride=stride, pad=pad)
    return dA_prev, dW, db.reshape(1, 1, 1, -1)


# --------------------------------------------------------------------------- pooling


def pool_forward(A_prev, hparameters, mode="max"):
    """Pooling layer forward, each channel on its own, no padding.

    A_prev (m, n_H_prev, n_W_prev, n_C), hparameters {"f": int, "stride": int},
    mode "max" or "average"
    -> A (m, n_H, n_W, n_C),  n_H = (n_H_prev - f) // stride + 1  (n_W likewise),
       cache = (A_prev, hparameters), what ``pool_backward`` needs.

    Runs ``nbcnn.max_pool2d`` or ``nbcnn.avg_pool2d``.
    """
    mode = _mode(mode, "pool_forward")
    f, stride = _hparameters(hparameters, ("f", "stride"), "pool_forward")
    A = _array(A_prev, "A_prev", A_PREV_DIMS)
    pool = ops.max_pool2d if mode == "max" else ops.avg_pool2d
    return pool(A, f=f, stride=stride), (A_prev, hparameters)


def pool_backward(dA, cache, mode="max"):
    """Pooling layer backward.

    dA (m, n_H, n_W, n_C), the gradient with respect to pool_forward's output;
    cache = (A_prev, hparameters) from ``pool_forward``; mode "max" or "average"
    -> dA_prev (m, n_H_prev, n_W_prev, n_C)

    "max": each window's gradient goes to its maximum (``create_mask_from_window``);
    on ties, to the first maximum only. "average": spread evenly (``distribute_value``).
    Overlapping windows (stride < f) add up. Runs ``nbcnn.max_pool2d_backward`` or
    ``nbcnn.avg_pool2d_backward``.
    """
    mode = _mode(mode, "pool_backward")
    A_prev, hparameters = _cache(cache, ("A_prev", "hparameters"), "pool_forward")
    f, stride = _hparameters(hparameters, ("f", "stride"), "pool_backward")
    A = _array(A_prev, "A_prev", A_PREV_DIMS)
    dA = _array(dA, "dA", OUT_DIMS)
    backward = ops.max_pool2d_backward if mode == "max" else ops.avg_pool2d_backward
    return backward(dA, A, f=f, stride=stride)


def create_mask_from_window(x):
    """Where the maximum of a window is: x (f_h, f_w) -> mask (f_h, f_w) of bools, one True.

    Runs ``nbcnn.max_pool2d_backward`` on a single window with an upstream gradient of 1:
    the cell that receives it is the mask.

    Ties differ from the notebook: its ``x == np.max(x)`` marks every cell equal to the
    maximum, so a tied window passes its gradient on several times; nbcnn's kernel (like
    ``np.argmax``) marks only the *first* maximum in row-major order, so the mask has
    exactly one True and the gradient is passed on once. Without ties (random floats) the
    two agree. A NaN counts as the maximum here (the notebook's mask would be all False).
    """
    x = _array(x, "x", ("f_h", "f_w"))
    window = x[None, :, :, None]  # one image, one channel: (1, f_h, f_w, 1)
    one = np.ones((1, 1, 1, 1))
    dx = ops.max_pool2d_backward(one, window, f=x.shape, stride=x.shape)
    return dx[0, :, :, 0] != 0


def distribute_value(dz, shape):
    """Spread a gradient evenly over an average-pooling window.

    dz a number, shape (n_H, n_W) -> a (n_H, n_W) array filled with ``dz / (n_H * n_W)``

    Runs ``nbcnn.avg_pool2d_backward`` on a single window.
    """
    dz = _array(dz, "dz", None)
    if dz.size != 1:
        raise ValueError(f"dz must be a single number, got shape {dz.shape}")
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape)):
        raise ValueError(f"shape must be (n_H, n_W), two ints >= 1, got {shape!r}")
    n_H, n_W = int(shape[0]), int(shape[1])
    window = np.zeros((1, n_H, n_W, 1))  # only its shape matters to the kernel
    dx = ops.avg_pool2d_backward(dz.reshape(1, 1, 1, 1), window, f=(n_H, n_W), stride=(n_H, n_W))
    return dx[0, :, :, 0]


# --------------------------------------------------------------------------- week 3: car detection with YOLO
#
# The TF2 notebook's functions and conventions. YOLO's output for a 608 x 608 image is a 19 x 19
# grid with 5 anchor boxes per cell and 80 classes:
#
#     box_xy (19, 19, 5, 2)  centres      box_confidence  (19, 19, 5, 1)   P(object)
#     box_wh (19, 19, 5, 2)  sizes        box_class_probs (19, 19, 5, 80)  P(class | object)
#
# (any leading shape works). ``yolo_eval`` chains: corners -> filter by score -> scale to the
# image -> non-max suppression. Boxes are TensorFlow's corners, y first: (y1, x1, y2, x2), except
# for ``iou``, which takes (x1, y1, x2, y2) as the notebook's exercise does; IoU is the same
# either way (swapping the axes swaps the intersection's width and height). Computed in float64;
# classes come back as int64 (``tf.math.argmax``'s type). IoU and NMS run ``nbcnn.iou`` and
# ``nbcnn.nms`` (the kernels in ``nbcnn/kernels/boxes.py``) on the current backend.


def _last_axis(a, name: str, size: int | None, what: str):
    """``a`` as float64 with ``size`` numbers on its last axis (``size=None``: any, at least 1)."""
    arr = _array(a, name, None)
    if arr.ndim == 0 or (size is not None and arr.shape[-1] != size) or arr.shape[-1] == 0:
        want = f"(..., {size})" if size is not None else "(..., C) with C >= 1"
        raise ValueError(f"{name} must have shape {want}, {what}; got shape {arr.shape}")
    return arr


def iou(box1, box2):
    """Intersection over union of two boxes given by corners (x1, y1, x2, y2): a float.

        inter = max(0, min(x2, x2') - max(x1, x1')) * max(0, min(y2, y2') - max(y1, y1'))
        iou = inter / (area1 + area2 - inter)

    ``iou((2, 1, 4, 3), (1, 2, 3, 4))`` is 1/7 = 0.14285714...; boxes that only touch (an edge
    or a corner) give 0, as does a box of zero area. Unlike the notebook's exercise, a box with
    x2 < x1 or y2 < y1 is a ValueError. Runs ``nbcnn.iou``.
    """
    pair = []
    for name, box in (("box1", box1), ("box2", box2)):
        arr = _array(box, name, None)
        if arr.shape != (4,):
            raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got shape {arr.shape}")
        pair.append(arr)
    return ops.iou(pair[0], pair[1])


def yolo_boxes_to_corners(box_xy, box_wh):
    """Centres and sizes -> corners, TensorFlow's order (y_min, x_min, y_max, x_max).

    box_xy (..., 2) as (x, y), box_wh (..., 2) as (w, h) -> boxes (..., 4)::

        box_mins = box_xy - box_wh / 2          box_maxes = box_xy + box_wh / 2
        boxes = [box_mins y, box_mins x, box_maxes y, box_maxes x]   (stacked on the last axis)
    """
    xy = _last_axis(box_xy, "box_xy", 2, "(x, y) centres")
    wh = _last_axis(box_wh, "box_wh", 2, "(w, h) sizes")
    if xy.shape != wh.shape:
        raise ValueError(f"box_xy has shape {xy.shape} but box_wh has shape {wh.shape}; they must match")
    box_mins = xy - wh / 2.0
    box_maxes = xy + wh / 2.0
    return np.concatenate([box_mins[..., 1:2], box_mins[..., 0:1], box_maxes[..., 1:2], box_maxes[..., 0:1]],
                          axis=-1)


def yolo_filter_boxes(boxes, box_confidence, box_class_probs, threshold=.6):
    """Keep the boxes whose best class score reaches ``threshold``.

    boxes (..., 4), box_confidence (..., 1), box_class_probs (..., C), the same leading shape
    (the notebook's (19, 19, 5)) -> (scores (K,), boxes (K, 4), classes (K,) int64)::

        box_scores = box_confidence * box_class_probs       # (..., C): P(object) * P(class | object)
        box_classes = argmax(box_scores, axis=-1)           # the best class of each box (ties: the first)
        box_class_scores = max(box_scores, axis=-1)         # and its score
        mask = box_class_scores >= threshold
        scores, boxes, classes = box_class_scores[mask], boxes[mask], box_classes[mask]

    The kept boxes come in row-major order of the leading axes, as ``tf.boolean_mask`` gives them.
    """
    boxes = _last_axis(boxes, "boxes", 4, "corners (y1, x1, y2, x2)")
    confidence = _last_axis(box_confidence, "box_confidence", 1, "one P(object) per box")
    probs = _last_axis(box_class_probs, "box_class_probs", None, "one probability per class")
    lead = boxes.shape[:-1]
    if confidence.shape[:-1] != lead or probs.shape[:-1] != lead:
        raise ValueError(f"boxes {boxes.shape}, box_confidence {confidence.shape} and box_class_probs {probs.shape} "
                         f"must share their leading shape (the notebook's (19, 19, 5))")
    threshold = float(threshold)
    box_scores = confidence * probs
    box_classes = np.argmax(box_scores, axis=-1).astype(np.int64)
    box_class_scores = np.max(box_scores, axis=-1)
    mask = box_class_scores >= threshold
    return box_class_scores[mask], boxes[mask], box_classes[mask]


def yolo_non_max_suppression(scores, boxes, classes, max_boxes=10, iou_threshold=0.5):
    """Non-max suppression over all classes together, as the notebook's ``tf.image.non_max_suppression``.

    scores (K,), boxes (K, 4) corners (y1, x1, y2, x2), classes (K,)
    -> (scores, boxes, classes) of the kept boxes, best score first, at most ``max_boxes``.

    A box is dropped when it overlaps a better kept box by IoU > ``iou_threshold`` (strict, as
    TensorFlow); equal scores keep the lower index first. As TensorFlow does, each box's two
    corners may be any diagonal pair (they are sorted per axis before the IoU). A NaN score
    is a ValueError. Runs ``nbcnn.nms``.
    """
    scores = _array(scores, "scores", ("K",))
    boxes = _array(boxes, "boxes", ("K", "4"))
    if boxes.shape[1] != 4 or boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"boxes must have shape ({scores.shape[0]}, 4), one (y1, x1, y2, x2) per score; "
                         f"got {boxes.shape}")
    classes = np.asarray(to_host(classes) if is_device_array(classes) else classes)
    if classes.shape != scores.shape:
        raise ValueError(f"classes must have shape {scores.shape}, one per score; got {classes.shape}")
    corners = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])],
                             axis=1)
    keep = ops.nms(corners, scores, iou_threshold=iou_threshold, max_boxes=max_boxes)
    return scores[keep], boxes[keep], classes[keep]


def scale_boxes(boxes, image_shape):
    """Boxes from fractions of the image to pixels: ``boxes * [height, width, height, width]``.

    boxes (..., 4) as (y1, x1, y2, x2), image_shape (height, width) (a longer shape, such as
    an image's (h, w, 3), uses its first two numbers, as the notebook does).
    """
    boxes = _last_axis(boxes, "boxes", 4, "corners (y1, x1, y2, x2)")
    shape = _array(image_shape, "image_shape", None).reshape(-1)
    if shape.size < 2:
        raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
    height, width = shape[0], shape[1]
    return boxes * np.array([height, width, height, width]).reshape(1, 4)


def yolo_eval(yolo_outputs, image_shape=(720, 1280), max_boxes=10, score_threshold=.6, iou_threshold=.5):
    """YOLO's output -> the boxes to draw: corners, score filter, scale to the image, NMS.

    yolo_outputs = (box_xy, box_wh, box_confidence, box_class_probs), the TF2 notebook's order
    -> (scores (K,), boxes (K, 4) in pixels as (y1, x1, y2, x2), classes (K,) int64), K <= max_boxes::

        boxes = yolo_boxes_to_corners(box_xy, box_wh)
        scores, boxes, classes = yolo_filter_boxes(boxes, box_confidence, box_class_probs, score_threshold)
        boxes = scale_boxes(boxes, image_shape)
        scores, boxes, classes = yolo_non_max_suppression(scores, boxes, classes, max_boxes, iou_threshold)
    """
    if not isinstance(yolo_outputs, (tuple, list)) or len(yolo_outputs) != 4:
        raise TypeError("yolo_outputs must be the tuple (box_xy, box_wh, box_confidence, box_class_probs), "
                        f"got {type(yolo_outputs).__name__} of length "
                        f"{len(yolo_outputs) if hasattr(yolo_outputs, '__len__') else '?'}")
    box_xy, box_wh, box_confidence, box_class_probs = yolo_outputs
    boxes = yolo_boxes_to_corners(box_xy, box_wh)
    scores, boxes, classes = yolo_filter_boxes(boxes, box_confidence, box_class_probs, score_threshold)
    boxes = scale_boxes(boxes, image_shape)
    return yolo_non_max_suppression(scores, boxes, classes, max_boxes, iou_threshold)


# --------------------------------------------------------------------------- week 4: neural style transfer
#
# The TF2 notebook "Art Generation with Neural Style Transfer". Activations are channels-last
# (1, n_H, n_W, n_C), as Keras' VGG-19 gives them; ``gram_matrix`` takes the notebook's unrolled
# A (n_C, n_H * n_W), which ``compute_layer_style_cost`` makes by reshaping to (n_H * n_W, n_C)
# and transposing (reshaping straight to (n_C, n_H * n_W) would mix positions and channels).
# The Gram matrices run on the dispatcher's kernel (``nbcnn.gram``, ``nbcnn/kernels/gram.py``) on
# the current backend; the costs come back as Python floats, computed in float64.

__all__ += ["compute_content_cost", "gram_matrix", "compute_layer_style_cost", "total_cost"]


_STYLE_AXES = ("m", "n_H", "n_W", "n_C")


def compute_content_cost(a_C, a_G):
    """The content cost: how far the generated image's activations are from the content image's.

    a_C, a_G (1, n_H, n_W, n_C), one layer's activations for C and G -> a float::

        J_content = 1 / (4 * n_H * n_W * n_C) * sum((a_C - a_G) ** 2)
    """
    a_C, a_G = _array(a_C, "a_C", _STYLE_AXES), _array(a_G, "a_G", _STYLE_AXES)
    if a_C.shape != a_G.shape:
        raise ValueError(f"a_C has shape {a_C.shape} but a_G has shape {a_G.shape}; they must match")
    _, n_H, n_W, n_C = a_G.shape
    a_C_unrolled = a_C.reshape(a_C.shape[0], -1, n_C)  # the notebook's tf.reshape(a_C, [m, -1, n_C])
    a_G_unrolled = a_G.reshape(a_G.shape[0], -1, n_C)
    return float(np.sum(np.square(a_C_unrolled - a_G_unrolled)) / (4.0 * n_H * n_W * n_C))


def gram_matrix(A):
    """The Gram matrix ``GA = A A^T`` of A (n_C, n_H * n_W): ``GA[i, j]`` is how much filters i and
    j fire together over the image. Returns (n_C, n_C), float64. Runs ``nbcnn.gram`` (whose
    kernel takes positions x channels, so it is handed ``A.T``)."""
    A = _array(A, "A", ("n_C", "n_H * n_W"))
    return np.asarray(to_host(ops.gram(np.ascontiguousarray(A.T)[None]))[0], dtype=np.float64)


def compute_layer_style_cost(a_S, a_G):
    """The style cost of one layer: how far G's Gram matrix is from S's.

    a_S, a_G (1, n_H, n_W, n_C) -> a float::

        a_S = transpose(reshape(a_S, (n_H * n_W, n_C)))         # (n_C, n_H * n_W), likewise a_G
        J_style_layer = 1 / (4 * n_C**2 * (n_H * n_W)**2) * sum((gram_matrix(a_S) - gram_matrix(a_G)) ** 2)
    """
    a_S, a_G = _array(a_S, "a_S", _STYLE_AXES), _array(a_G, "a_G", _STYLE_AXES)
    if a_S.shape != a_G.shape or a_G.shape[0] != 1:
        raise ValueError(f"a_S {a_S.shape} and a_G {a_G.shape} must both be (1, n_H, n_W, n_C)")
    _, n_H, n_W, n_C = a_G.shape
    GS = gram_matrix(a_S.reshape(n_H * n_W, n_C).T)
    GG = gram_matrix(a_G.reshape(n_H * n_W, n_C).T)
    return float(np.sum(np.square(GS - GG)) / (4.0 * ((n_H * n_W * n_C) ** 2)))


def total_cost(J_content, J_style, alpha=10, beta=40):
    """``J = alpha * J_content + beta * J_style`` (the notebook's alpha = 10, beta = 40)."""
    return alpha * J_content + beta * J_style


# --------------------------------------------------------------------------- week 4: "Face Recognition" (TF2)
# The triplet loss of the notebook's FaceNet exercise, on nbcnn's kernel (nbcnn/kernels/triplet.py).


def triplet_loss(y_true, y_pred, alpha=0.2):
    """The triplet loss, summed over the batch, as the notebook's ``triplet_loss``.

    y_true: not used (Keras' loss signature); y_pred = (anchor, positive, negative), each of
    shape (m, 128) (any same shape: the last axis is the encoding, e.g. a single (d,) triplet)
    -> a float::

        pos_dist = sum((anchor - positive) ** 2, axis=-1)
        neg_dist = sum((anchor - negative) ** 2, axis=-1)
        basic_loss = pos_dist - neg_dist + alpha
        loss = sum(max(basic_loss, 0))

    ``alpha`` may be any finite number (the notebook's checks use 0 and -2 too). Computed in
    float64; runs ``nbcnn.triplet_loss`` on the current backend.
    """
    if not isinstance(y_pred, (tuple, list)) or len(y_pred) != 3:
        raise TypeError("y_pred must be the triple (anchor, positive, negative), got "
                        f"{type(y_pred).__name__} of length {len(y_pred) if hasattr(y_pred, '__len__') else '?'}")
    parts = [_array(a, name, None) for a, name in zip(y_pred, ("anchor", "positive", "negative"))]
    anchor = parts[0]
    for a, name in zip(parts[1:], ("positive", "negative")):
        if a.shape != anchor.shape:
            raise ValueError(f"{name} has shape {a.shape} but anchor has shape {anchor.shape}; they must match")
    if anchor.ndim == 0 or anchor.size == 0:
        raise ValueError(f"anchor must hold encodings on its last axis, (m, d) or (d,), got shape {anchor.shape}")
    rows = [np.ascontiguousarray(a.reshape(-1, anchor.shape[-1])) for a in parts]
    return ops.triplet_loss(*rows, alpha=alpha, reduction="sum")


__all__ += ["triplet_loss"]
