"""Class-agnostic NMS at IoU 0.5 over 10,000 clustered boxes, nbcnn against numpy's greedy loop
(boxes and boxes kept per call in extra_info)."""

import pytest
from conftest import selected

import nbcnn
from nbcnn import benchmark as nb

SHAPES = selected(nb.BOX_SHAPES)


@pytest.mark.parametrize("name", SHAPES)
def test_nms(benchmark, name):
    boxes, scores = nb.boxes_inputs(SHAPES[name])
    benchmark.extra_info["boxes"] = SHAPES[name].N
    kept = benchmark(nbcnn.nms, boxes, scores, nb.NMS_IOU)
    benchmark.extra_info["kept"] = len(kept)


@pytest.mark.parametrize("name", SHAPES)
def test_nms_numpy(benchmark, name):
    boxes, scores = nb.boxes_inputs(SHAPES[name])
    benchmark.extra_info["boxes"] = SHAPES[name].N
    kept = benchmark(nb.numpy_nms, boxes, scores, nb.NMS_IOU)
    benchmark.extra_info["kept"] = len(kept)
