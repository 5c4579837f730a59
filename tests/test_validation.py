"""Bad input gets a clear Python exception that names the problem, before any kernel runs.

Compiled Numba code does not check bounds, so each of these, passed through, could read
garbage or crash the process: the op layer must stop them first.
"""

import numpy as np
import pytest

import nbcnn

x = np.zeros((2, 6, 6, 3), np.float32)
W = np.zeros((3, 3, 3, 4), np.float32)
b = np.zeros(4, np.float32)

BAD_CALLS = {
    "channel mismatch": (lambda: nbcnn.conv2d(x, np.zeros((3, 3, 2, 4), np.float32), b), ValueError,
                         "channel mismatch: x has 3 channels"),
    "stride zero": (lambda: nbcnn.conv2d(x, W, b, stride=0), ValueError, "stride must be >= 1"),
    "negative stride": (lambda: nbcnn.conv2d(x, W, b, stride=(1, -2)), ValueError, "stride must be >= 1"),
    "float stride": (lambda: nbcnn.conv2d(x, W, b, stride=1.5), TypeError, "stride must be an int"),
    "bool stride": (lambda: nbcnn.conv2d(x, W, b, stride=True), TypeError, "stride must be an int"),
    "negative pad": (lambda: nbcnn.conv2d(x, W, b, pad=-1), ValueError, "pad must be >= 0"),
    "unknown pad word": (lambda: nbcnn.conv2d(x, W, b, pad="full"), ValueError, "'valid' or 'same'"),
    "window too big": (lambda: nbcnn.conv2d(x, np.zeros((9, 3, 3, 4), np.float32), b), ValueError,
                       "window 9x3 is larger than the padded input 6x6"),
    "x not 4-D": (lambda: nbcnn.conv2d(x[0], W, b), ValueError, "x must have 4 dimensions, got shape (6, 6, 3)"),
    "W not 4-D": (lambda: nbcnn.conv2d(x, W[0], b), ValueError, "W (filters) must have 4 dimensions"),
    "int dtype": (lambda: nbcnn.conv2d(x.astype(np.int32), W, b), TypeError, "dtype int32"),
    "float16 dtype": (lambda: nbcnn.conv2d(x.astype(np.float16), W, b), TypeError, "float16"),
    "complex dtype": (lambda: nbcnn.relu(np.zeros(3, np.complex64)), TypeError, "complex64"),
    "string input": (lambda: nbcnn.conv2d("image.png", W, b), TypeError, "x must be an array"),
    "strings in an array": (lambda: nbcnn.relu(np.array(["a", "b"])), TypeError, "dtype <U1"),
    "None input": (lambda: nbcnn.max_pool2d(None), TypeError, "x must be an array"),
    "wrong bias size": (lambda: nbcnn.conv2d(x, W, np.zeros(3, np.float32)), ValueError,
                        "bias b has shape (3,) but W has 4 filters"),
    "empty batch": (lambda: nbcnn.conv2d(x[:0], W, b), ValueError, "empty dimension"),
    "backward dz shape": (lambda: nbcnn.conv2d_backward(np.zeros((2, 3, 3, 4)), x, W), ValueError,
                          "dz has shape (2, 3, 3, 4) but the forward output has shape (2, 4, 4, 4)"),
    "pool window too big": (lambda: nbcnn.max_pool2d(x, f=7), ValueError, "larger than the padded input"),
    "pool f zero": (lambda: nbcnn.avg_pool2d(x, f=0), ValueError, "f (window size) must be >= 1"),
    "pool pad as big as window": (lambda: nbcnn.max_pool2d(x, f=2, pad=2), ValueError, "smaller than the window"),
    "pool backward shape": (lambda: nbcnn.max_pool2d_backward(np.zeros((2, 2, 2, 3)), x, f=2), ValueError,
                            "dp has shape (2, 2, 2, 3) but the forward output has shape (2, 3, 3, 3)"),
    "dense features": (lambda: nbcnn.dense(np.zeros((2, 5)), np.zeros((4, 3)), np.zeros(3)), ValueError,
                       "x has 5 features"),
    "dense bias": (lambda: nbcnn.dense(np.zeros((2, 4)), np.zeros((4, 3)), np.zeros(2)), ValueError,
                   "bias b has shape (2,)"),
    "dense 4-D input": (lambda: nbcnn.dense(x, np.zeros((4, 3)), np.zeros(3)), ValueError,
                        "x must have 2 dimensions"),
    "activation grad shape": (lambda: nbcnn.relu_backward(np.zeros(3), np.zeros(4)), ValueError,
                              "dy has shape (3,) but x has shape (4,)"),
    "softmax grad shape": (lambda: nbcnn.softmax_backward(np.zeros((2, 3)), np.zeros((3, 2))), ValueError,
                           "dy has shape (2, 3)"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input_raises_a_clear_error(case):
    call, error, message = BAD_CALLS[case]
    with nbcnn.use_backend("cpu"):
        with pytest.raises(error) as info:
            call()
    assert message in str(info.value)


@pytest.mark.parametrize("case", ["channel mismatch", "window too big", "backward dz shape", "pool backward shape"])
def test_bad_input_is_caught_on_cuda_too(case):
    call, error, message = BAD_CALLS[case]
    with nbcnn.use_backend("cuda"):
        with pytest.raises(error) as info:
            call()
    assert message in str(info.value)


def test_lists_and_non_contiguous_arrays_are_accepted():
    xs = np.arange(2 * 5 * 5 * 2, dtype=np.float64).reshape(2, 5, 5, 2)
    sliced = xs[:, ::-1, :, :]  # a negative-stride view
    with nbcnn.use_backend("cpu"):
        got = nbcnn.max_pool2d(sliced, 2)
        assert np.array_equal(got, nbcnn.max_pool2d(np.ascontiguousarray(sliced), 2))
        assert nbcnn.relu([[-1.0, 2.0]]).tolist() == [[0.0, 2.0]]


def test_bias_shaped_like_the_course_is_accepted():
    with nbcnn.use_backend("cpu"):
        z = nbcnn.conv2d(x, W, np.ones((1, 1, 1, 4)))
    assert np.all(z == 1.0)
