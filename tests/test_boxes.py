"""Boxes: IoU and non-max suppression on every backend (python, cpu, cuda's bitmask and its
readable one-block kernel), against naive Python loops written here, and the format conversions.

The oracles share no code with nbcnn: IoU is the textbook formula evaluated in the boxes' own
scalar type (so float32 decisions at the threshold are the kernel's decisions too), NMS is the
greedy loop over a Python ``sorted`` by (-score, index), and per-class NMS runs that loop once
per class and merges the lists.
"""

import io
from contextlib import redirect_stderr

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbcnn
from nbcnn import backend as nbcnn_backend
from nbcnn import config, detection
from nbcnn.kernels.fast import cuda_nms
from conftest import REAL_GPU


# --------------------------------------------------------------------------- oracles


def naive_iou(a, b):
    """IoU of two corner boxes, computed in their scalar type (np.float32 stays float32)."""
    xx1, yy1 = max(a[0], b[0]), max(a[1], b[1])
    xx2, yy2 = min(a[2], b[2]), min(a[3], b[3])
    w, h = xx2 - xx1, yy2 - yy1
    if w <= 0 or h <= 0:
        return a.dtype.type(0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else a.dtype.type(0)


def naive_pairwise(b1, b2):
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    out = np.zeros((len(b1), len(b2)))
    for i in range(len(b1)):
        for j in range(len(b2)):
            out[i, j] = naive_iou(b1[i], b2[j])
    return out


def naive_nms(boxes, scores, threshold, max_boxes=None):
    """The greedy loop: best first (ties: lower index), drop what overlaps a kept box by > threshold."""
    thr = boxes.dtype.type(threshold)  # nbcnn's documented rule: compared in the boxes' dtype
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), i))
    kept, dropped = [], set()
    for pos, i in enumerate(order):
        if i in dropped:
            continue
        if max_boxes is not None and len(kept) == max_boxes:
            break
        kept.append(i)
        for j in order[pos + 1:]:
            if j not in dropped and naive_iou(boxes[i], boxes[j]) > thr:
                dropped.add(j)
    return kept


def naive_per_class(boxes, scores, classes, threshold, max_boxes=None):
    """NMS on each class alone, then the kept boxes of all classes merged by (-score, index)."""
    kept = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        kept += [members[k] for k in naive_nms(boxes[members], scores[members], threshold)]
    kept.sort(key=lambda i: (-float(scores[i]), i))
    return kept if max_boxes is None else kept[:max_boxes]


def random_boxes(rng, n, dtype, span=30.0, integer=False):
    """n boxes clustered enough that many overlap; integer corners hit IoU == threshold exactly."""
    xy = rng.uniform(0, span, (n, 2))
    wh = rng.uniform(0, 12, (n, 2))
    if integer:
        xy, wh = np.floor(xy), np.floor(wh)
    return np.hstack([xy, xy + wh]).astype(dtype)


# Every route the NMS op can take: python, cpu's default (the shrinking survivor list) and cpu
# with NBCNN_FAST=0 (the readable greedy loop compiled), cuda's default (the IoU bitmask) and
# cuda with NBCNN_FAST=0 (the readable greedy loop in one thread block).
ROUTES = ["python", "cpu", "cpu-readable", "cuda-bitmask", "cuda-readable"]


@pytest.fixture(params=ROUTES)
def route(request):
    name = request.param
    fast = "0" if name.endswith("-readable") else "1"
    with nbcnn.use_backend(name.split("-")[0]), config.override(NBCNN_FAST=fast):
        yield name


# --------------------------------------------------------------------------- IoU by hand

HAND_CASES = [
    # (box1, box2, IoU)
    ((2, 1, 4, 3), (1, 2, 3, 4), 1 / 7),   # the notebook's: 1 / (4 + 4 - 1)
    ((1, 2, 3, 4), (5, 6, 7, 8), 0.0),     # disjoint
    ((1, 1, 2, 2), (2, 1, 3, 2), 0.0),     # touching along an edge
    ((1, 1, 2, 2), (2, 2, 3, 3), 0.0),     # touching at a corner
    ((0, 0, 4, 4), (1, 1, 3, 3), 0.25),    # contained: 4 / 16
    ((1, 2, 4, 6), (1, 2, 4, 6), 1.0),     # equal
    ((0, 0, 2, 2), (1, 0, 3, 2), 1 / 3),   # half of each: 2 / (4 + 4 - 2)
    ((1, 1, 1, 3), (0, 0, 4, 4), 0.0),     # zero width, inside the other
    ((1, 1, 3, 1), (1, 1, 3, 1), 0.0),     # zero height, with itself
    ((2, 2, 2, 2), (0, 0, 4, 4), 0.0),     # a point
]


@pytest.mark.parametrize("box1, box2, expected", HAND_CASES)
def test_iou_hand_cases(backend, box1, box2, expected):
    assert nbcnn.iou(box1, box2) == pytest.approx(expected, rel=1e-15, abs=0)
    assert nbcnn.iou(box2, box1) == pytest.approx(expected, rel=1e-15, abs=0)
    for dtype, rel in ((np.float64, 1e-15), (np.float32, 1e-7)):
        got = nbcnn.box_iou(np.array([box1], dtype), np.array([box2], dtype))
        assert got.shape == (1, 1) and got.dtype == dtype
        assert got[0, 0] == pytest.approx(expected, rel=rel, abs=0)


def test_exact_values_where_exact(backend):
    boxes = np.array([[0, 0, 4, 4], [1, 1, 3, 3], [0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6]], np.float32)
    got = nbcnn.box_iou(boxes, boxes)
    assert got[0, 1] == 0.25 and got[0, 4] == 0 and got[2, 3] == np.float32(1 / 3)
    assert np.all(np.diag(got) == 1)


# --------------------------------------------------------------------------- pairwise IoU


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_iou_matches_naive_double_loop(backend, rng, dtype):
    b1 = random_boxes(rng, 9, dtype, span=10)
    b2 = random_boxes(rng, 6, dtype, span=10)
    b2[0] = b1[0]          # an equal pair
    b2[1, 2] = b2[1, 0]    # a zero-width box
    x1, y1, x2, y2 = b1[1]
    b2[2] = [x1 + (x2 - x1) / 4, y1 + (y2 - y1) / 4, x2 - (x2 - x1) / 4, y2 - (y2 - y1) / 4]  # inside b1[1]
    got = nbcnn.box_iou(b1, b2)
    assert got.shape == (9, 6) and got.dtype == dtype
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got, naive_pairwise(b1, b2), **tol)
    np.testing.assert_array_equal(nbcnn.box_iou(b2, b1), got.T)  # symmetric, bit for bit
    assert got[0, 0] == 1 and np.all(got[:, 1] == 0)


def test_pairwise_iou_is_the_same_on_every_backend(rng):
    b1, b2 = random_boxes(rng, 20, np.float32), random_boxes(rng, 70, np.float32)
    results = {}
    for name in ("python", "cpu", "cuda"):
        with nbcnn.use_backend(name):
            results[name] = nbcnn.box_iou(b1, b2)
    np.testing.assert_array_equal(results["python"], results["cpu"])
    if REAL_GPU:  # the GPU may fuse a multiply-add: within an ulp, not bit for bit
        np.testing.assert_allclose(results["cuda"], results["cpu"], rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(results["cuda"], results["cpu"])


def test_pairwise_iou_dtypes():
    f32 = np.array([[0, 0, 2, 2]], np.float32)
    assert nbcnn.box_iou(f32, f32).dtype == np.float32
    assert nbcnn.box_iou(f32, f32.astype(np.float64)).dtype == np.float64
    ints = nbcnn.box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]])
    assert ints.dtype == np.float64 and ints[0, 0] == pytest.approx(1 / 3)


def test_pairwise_iou_keeps_gpu_arrays_on_the_gpu():
    from numba import cuda

    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], np.float32)
    with nbcnn.use_backend("cuda"):
        out = nbcnn.box_iou(cuda.to_device(boxes), boxes)
        assert nbcnn_backend.is_device_array(out)
        np.testing.assert_allclose(out.copy_to_host(), [[1, 1 / 3], [1 / 3, 1]], rtol=1e-6)
        keep = nbcnn.nms(cuda.to_device(boxes), cuda.to_device(np.array([0.5, 0.9])), 0.3)
        assert isinstance(keep, np.ndarray) and keep.tolist() == [1]


# --------------------------------------------------------------------------- NMS


def test_nms_hand_example(route):
    boxes = np.array([
        [0, 0, 10, 10],    # 0: score .9, kept
        [1, 1, 11, 11],    # 1: IoU 81/119 = .68 with 0: suppressed
        [20, 20, 30, 30],  # 2: alone, kept
        [0, 0, 10, 5],     # 3: IoU 50/100 = .5 with 0: not > .5, kept
        [21, 21, 30, 30],  # 4: IoU 81/100 with 2, but 2 has the lower score: 4 is kept first, then 2 goes
    ], np.float32)
    scores = np.array([0.9, 0.8, 0.3, 0.5, 0.7])
    keep = nbcnn.nms(boxes, scores, iou_threshold=0.5)
    assert keep.dtype == np.int64
    assert keep.tolist() == [0, 4, 3]
    assert nbcnn.nms(boxes, scores, iou_threshold=0.49).tolist() == [0, 4]     # now 3 goes too
    assert nbcnn.nms(boxes, scores, iou_threshold=0.5, max_boxes=2).tolist() == [0, 4]


def test_nms_ties_keep_the_lower_index_first(route):
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4], [10, 10, 12, 12]], np.float64)
    scores = np.array([0.5, 0.7, 0.7, 0.7])
    # 1 and 2 tie and are the same box: 1 comes first and suppresses 2 and 0
    assert nbcnn.nms(boxes, scores, 0.5).tolist() == [1, 3]
    assert nbcnn.nms(boxes, np.full(4, 0.1), 0.5).tolist() == [0, 3]


def test_nms_suppression_is_strict_at_the_threshold(route):
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], np.float32)  # IoU exactly 1/3
    scores = np.array([0.9, 0.8])
    assert nbcnn.nms(boxes, scores, 1 / 3).tolist() == [0, 1]  # 1/3 > 1/3 is false: both kept
    assert nbcnn.nms(boxes, scores, 0.33).tolist() == [0]
    assert nbcnn.nms(boxes, scores, 0.0).tolist() == [0]       # any overlap suppresses
    assert nbcnn.nms(boxes, scores, 1.0).tolist() == [0, 1]    # nothing is suppressed
    same = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.float32)  # IoU exactly 1
    assert nbcnn.nms(same, scores, 1.0).tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("integer", [False, True])
def test_nms_matches_naive_greedy_with_ties(route, dtype, integer):
    # 70 boxes: the cuda bitmask uses 2 x 2 blocks of 64, so suppression crosses a block boundary
    rng = np.random.default_rng(7 + integer)
    boxes = random_boxes(rng, 70, dtype, span=10, integer=integer)
    scores = np.round(rng.random(70), 1)  # ten distinct values: many ties
    assert len(np.unique(scores)) < 70
    for threshold in (0.5, 0.2) if route != "cuda-readable" else (0.3,):
        expected = naive_nms(boxes, scores, threshold)
        assert 1 < len(expected) < 60  # something is suppressed, something kept
        keep = nbcnn.nms(boxes, scores, iou_threshold=threshold)
        assert keep.dtype == np.int64
        assert keep.tolist() == expected


def test_nms_scores_may_be_float32_or_int(route):
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 5], [9, 9, 10, 10]], np.float32)
    for scores in (np.array([1, 3, 2]), np.array([0.1, 0.3, 0.2], np.float32)):
        assert nbcnn.nms(boxes, scores).tolist() == [1, 2]


def test_zero_area_boxes_are_never_suppressed_and_suppress_nothing(route):
    boxes = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [1, 0, 1, 2]], np.float64)
    assert nbcnn.nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), 0.0).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("max_boxes", [0, 1, 3, 5, 100, None])
def test_nms_max_boxes(route, max_boxes):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 40, np.float32, span=15)
    scores = np.round(rng.random(40), 1)
    full = naive_nms(boxes, scores, 0.4)
    keep = nbcnn.nms(boxes, scores, 0.4, max_boxes=max_boxes)
    assert keep.tolist() == (full if max_boxes is None else full[:max_boxes])
    assert naive_nms(boxes, scores, 0.4, max_boxes) == keep.tolist()


# --------------------------------------------------------------------------- per-class NMS


def test_batched_nms_matches_naive_per_class_loop(route):
    rng = np.random.default_rng(11)
    boxes = random_boxes(rng, 70, np.float32, span=20)
    scores = np.round(rng.random(70), 1)
    classes = rng.integers(0, 3, 70)
    expected = naive_per_class(boxes, scores, classes, 0.4)
    keep = nbcnn.batched_nms(boxes, scores, classes, iou_threshold=0.4)
    assert keep.tolist() == expected
    assert keep.tolist() != naive_nms(boxes, scores, 0.4)  # the classes made a difference
    assert nbcnn.batched_nms(boxes, scores, classes, 0.4, max_boxes=7).tolist() == expected[:7]


def test_batched_nms_boxes_of_other_classes_do_not_suppress(route):
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    assert nbcnn.batched_nms(boxes, scores, [0, 1, 0]).tolist() == [0, 1]
    assert nbcnn.batched_nms(boxes, scores, np.array([5, -2, 7], np.int8)).tolist() == [0, 1, 2]
    assert nbcnn.batched_nms(boxes, scores, np.zeros(3, np.uint64)).tolist() == [0]


def test_batched_nms_equals_nms_per_class_merged(rng):
    boxes = random_boxes(rng, 50, np.float64, span=15)
    scores = np.round(rng.random(50), 2)
    classes = rng.integers(0, 4, 50)
    with nbcnn.use_backend("cpu"):
        merged = []
        for c in range(4):
            members = np.flatnonzero(classes == c)
            merged += members[nbcnn.nms(boxes[members], scores[members], 0.3)].tolist()
        merged.sort(key=lambda i: (-scores[i], i))
        assert nbcnn.batched_nms(boxes, scores, classes, 0.3).tolist() == merged


SMALL = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def box_problems(draw, max_n=12):
    """Integer corners on a small grid (many exact IoUs such as 1/2 and 1/3), scores from five
    values (ties), up to three classes, a threshold, max_boxes."""
    n = draw(st.integers(0, max_n))
    coord = st.integers(0, 8)
    rows = []
    for _ in range(n):
        x1, y1, x2, y2 = draw(coord), draw(coord), draw(coord), draw(coord)
        rows.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    boxes = np.array(rows, dtype).reshape(n, 4)
    scores = np.array([draw(st.sampled_from([0.1, 0.2, 0.3, 0.4, 0.5])) for _ in range(n)])
    classes = np.array([draw(st.integers(0, 2)) for _ in range(n)], np.int64)
    threshold = draw(st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0]))
    max_boxes = draw(st.one_of(st.none(), st.integers(0, 5)))
    return boxes, scores, classes, threshold, max_boxes


@pytest.mark.parametrize("name", ["python", "cpu"])
@SMALL
@given(problem=box_problems())
def test_nms_property_against_naive(name, problem):
    boxes, scores, classes, threshold, max_boxes = problem
    with nbcnn.use_backend(name):
        got = nbcnn.nms(boxes, scores, threshold, max_boxes)
        got_per_class = nbcnn.batched_nms(boxes, scores, classes, threshold, max_boxes)
    expected = naive_nms(boxes, scores, threshold, max_boxes)
    assert got.tolist() == expected
    assert got_per_class.tolist() == naive_per_class(boxes, scores, classes, threshold, max_boxes)


@pytest.mark.parametrize("fast", ["1", "0"])
@settings(deadline=None, max_examples=10 if not REAL_GPU else 40, suppress_health_check=[HealthCheck.too_slow])
@given(problem=box_problems(max_n=9))
def test_nms_property_against_naive_on_cuda(fast, problem):
    boxes, scores, classes, threshold, max_boxes = problem
    with nbcnn.use_backend("cuda"), config.override(NBCNN_FAST=fast):
        got = nbcnn.batched_nms(boxes, scores, classes, threshold, max_boxes)
    assert got.tolist() == naive_per_class(boxes, scores, classes, threshold, max_boxes)


# --------------------------------------------------------------------------- the cuda bitmask


def test_bitmask_rows_say_which_later_boxes_each_box_suppresses():
    from numba import cuda

    rng = np.random.default_rng(5)
    n = 70  # blocks (0, 0), (0, 1) and (1, 1); (1, 0) is below the diagonal and skipped
    boxes = random_boxes(rng, n, np.float64, span=20)
    classes = rng.integers(0, 2, n)
    order = np.argsort(-rng.random(n), kind="stable")
    blocks = 2
    mask = cuda.to_device(np.zeros((n, blocks), np.uint64))
    kernel = cuda_nms._bitmask_kernel(np.float64)
    kernel[(blocks, blocks), cuda_nms.BLOCK](cuda.to_device(boxes), cuda.to_device(classes),
                                                cuda.to_device(order), np.float64(0.3), mask)
    mask = mask.copy_to_host()
    for i in range(n):
        for j in range(n):
            bit = (int(mask[i, j // 64]) >> (j % 64)) & 1
            if j // 64 < i // 64:
                continue  # not written: the scan never reads it
            a, b = order[i], order[j]
            expected = j > i and classes[a] == classes[b] and naive_iou(boxes[a], boxes[b]) > 0.3
            assert bit == expected, (i, j)


def test_bitmask_scan_is_the_greedy_loop():
    # 3 boxes in score order: 0 suppresses 1, 1 would suppress 2 but is itself suppressed
    mask = np.array([[0b010], [0b100], [0b000]], np.uint64)
    keep = np.empty(3, np.uint8)
    cuda_nms.scan_bitmask(mask, 3, keep)
    assert keep.tolist() == [1, 0, 1]
    cuda_nms.scan_bitmask(mask, 1, keep)
    assert keep.tolist() == [1, 0, 0]


@pytest.mark.parametrize("fast, route_name", [("1", "IoU bitmask"), ("0", "readable loop")])
def test_debug_names_the_cuda_route(fast, route_name):
    boxes = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], np.float32)
    err = io.StringIO()
    with nbcnn.use_backend("cuda"), config.override(NBCNN_FAST=fast, NBCNN_DEBUG="1"), redirect_stderr(err):
        nbcnn.nms(boxes, np.array([0.1, 0.2]))
    assert "nms" in err.getvalue() and route_name in err.getvalue()




# --------------------------------------------------------------------------- empty and bad inputs


def test_empty_inputs_give_empty_outputs(route):
    none = np.zeros((0, 4), np.float32)
    for keep in (nbcnn.nms(none, np.zeros(0)), nbcnn.nms([], []),
                 nbcnn.batched_nms(none, np.zeros(0), np.zeros(0, np.int64))):
        assert keep.dtype == np.int64 and keep.shape == (0,)
    assert nbcnn.box_iou(none, np.ones((3, 4))).shape == (0, 3)
    assert nbcnn.box_iou(np.ones((2, 4)), none).shape == (2, 0)
    assert nbcnn.box_iou(none, none).dtype == np.float32


GOOD = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
SCORES = np.array([0.5, 0.6])


@pytest.mark.parametrize("call, error, words", [
    (lambda: nbcnn.nms(GOOD, np.array([0.5, np.nan])), ValueError, "scores[1] is NaN"),
    (lambda: nbcnn.nms(np.array([[0, 0, 2, 2], [3, 1, 1, 3]]), SCORES), ValueError, "x2 < x1"),
    (lambda: nbcnn.nms(np.array([[0, 0, 2, 2], [1, 3, 3, 1]]), SCORES), ValueError, "boxes[1]"),
    (lambda: nbcnn.box_iou(GOOD, [[0, 0, -1, 1]]), ValueError, "boxes2[0]"),
    (lambda: nbcnn.nms([[0, 0, np.nan, 1], [0, 0, 1, 1]], SCORES), ValueError, "NaN or infinite"),
    (lambda: nbcnn.box_iou([[0, 0, np.inf, 1]], GOOD), ValueError, "NaN or infinite"),
    (lambda: nbcnn.nms(GOOD[:, :3], SCORES), ValueError, "shape (k, 4)"),
    (lambda: nbcnn.box_iou(GOOD[0], GOOD), ValueError, "shape (k, 4)"),
    (lambda: nbcnn.nms(GOOD, SCORES[:1]), ValueError, "scores must have shape (2,)"),
    (lambda: nbcnn.nms(GOOD, SCORES[None]), ValueError, "scores must have shape (2,)"),
    (lambda: nbcnn.batched_nms(GOOD, SCORES, [0, 1, 2]), ValueError, "classes must have shape (2,)"),
    (lambda: nbcnn.batched_nms(GOOD, SCORES, [0.0, 1.0]), TypeError, "integer class ids"),
    (lambda: nbcnn.batched_nms(GOOD, SCORES, None), TypeError, "nbcnn.nms"),
    (lambda: nbcnn.nms("boxes", SCORES), TypeError, "boxes"),
    (lambda: nbcnn.nms(GOOD.astype(bool), SCORES), TypeError, "real numbers"),
    (lambda: nbcnn.nms(GOOD, ["a", "b"]), TypeError, "scores"),
    (lambda: nbcnn.nms(GOOD, SCORES, iou_threshold=1.5), ValueError, "[0, 1]"),
    (lambda: nbcnn.nms(GOOD, SCORES, iou_threshold=np.nan), ValueError, "[0, 1]"),
    (lambda: nbcnn.nms(GOOD, SCORES, iou_threshold="0.5"), TypeError, "iou_threshold"),
    (lambda: nbcnn.nms(GOOD, SCORES, max_boxes=-1), ValueError, "max_boxes"),
    (lambda: nbcnn.nms(GOOD, SCORES, max_boxes=2.0), TypeError, "max_boxes"),
    (lambda: nbcnn.nms(GOOD, SCORES, max_boxes=True), TypeError, "max_boxes"),
    (lambda: nbcnn.iou((0, 0, 1), (0, 0, 1, 1)), ValueError, "box1"),
    (lambda: nbcnn.iou((0, 0, 1, 1), [(0, 0, 1, 1), (0, 0, 1, 1)]), ValueError, "box2 must be one box"),
])
def test_bad_input_raises_before_any_kernel_runs(monkeypatch, call, error, words):
    def no_launch(*args, **kwargs):
        raise AssertionError("a kernel was launched on bad input")

    monkeypatch.setattr(nbcnn_backend, "launch", no_launch)
    monkeypatch.setattr(nbcnn_backend, "cpu_runners", lambda *kernels, **chosen: (no_launch,) * len(kernels))
    with nbcnn.use_backend("cpu"), pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def test_infinite_scores_are_ordered_as_usual(route):
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], np.float32)
    assert nbcnn.nms(boxes, np.array([-np.inf, np.inf, 0.0])).tolist() == [1, 2, 0]


# --------------------------------------------------------------------------- formats


def test_centre_to_corners_by_hand():
    centre = np.array([[5.0, 4.0, 4.0, 2.0]])  # x, y, w, h
    np.testing.assert_array_equal(detection.cxcywh_to_xyxy(centre), [[3, 3, 7, 5]])
    np.testing.assert_array_equal(detection.xyxy_to_cxcywh([[3, 3, 7, 5]]), centre)
    np.testing.assert_array_equal(detection.box_convert(centre, "cxcywh", "xywh"), [[3, 3, 4, 2]])
    np.testing.assert_array_equal(detection.box_convert(centre, "cxcywh", "yxyx"), [[3, 3, 5, 7]])
    np.testing.assert_array_equal(detection.box_convert([[3, 3, 5, 7]], "yxyx", "xyxy"), [[3, 3, 7, 5]])
    np.testing.assert_array_equal(detection.box_area([[3, 3, 7, 5], [0, 0, 0, 9]]), [8, 0])


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(*[st.integers(-50, 50)] * 2, *[st.integers(0, 40)] * 2), min_size=0, max_size=6),
       st.sampled_from(detection.FORMATS), st.sampled_from(detection.FORMATS))
def test_box_convert_round_trips(rows, in_fmt, out_fmt):
    centre = np.array(rows, np.float64).reshape(-1, 4)
    corners = detection.cxcywh_to_xyxy(centre)
    source = detection.box_convert(corners, "xyxy", in_fmt)
    there = detection.box_convert(source, in_fmt, out_fmt)
    np.testing.assert_allclose(detection.box_convert(there, out_fmt, "xyxy"), corners, atol=1e-12)
    np.testing.assert_allclose(detection.box_convert(there, out_fmt, "cxcywh"), centre, atol=1e-12)


def test_box_convert_shapes_and_dtypes():
    grid = np.ones((19, 19, 5, 4), np.float32)
    assert detection.box_convert(grid, "cxcywh", "xyxy").shape == (19, 19, 5, 4)
    assert detection.box_convert(grid, "cxcywh", "xyxy").dtype == np.float32
    assert detection.cxcywh_to_xyxy([[1, 1, 1, 1]]).dtype == np.float64
    with pytest.raises(ValueError, match="in_fmt"):
        detection.box_convert(grid, "xyhw", "xyxy")
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        detection.box_area(np.ones((3, 5)))
    with pytest.raises(TypeError, match="real numbers"):
        detection.box_area(np.array([["a"] * 4]))


def test_centre_boxes_through_nms():
    centre = np.array([[5, 5, 4, 4], [5.5, 5, 4, 4], [20, 20, 2, 2]], np.float32)
    keep = detection.nms(detection.cxcywh_to_xyxy(centre), np.array([0.6, 0.9, 0.1]), 0.5)
    assert keep.tolist() == [1, 2]
    with pytest.raises(ValueError, match="x2 < x1"):  # a negative width makes flipped corners
        detection.nms(detection.cxcywh_to_xyxy([[5, 5, -4, 4]]), [0.5])
