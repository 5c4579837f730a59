"""The fast kernels, and the one table of what runs instead of each readable kernel.

The readable kernels (``nbcnn/kernels/conv.py``, ``pool.py``, ``dense.py``, ``bias.py``,
``boxes.py``) are
the lecture's loop nests: the python backend runs them, and so do cpu and cuda with
``NBCNN_FAST=0``. By default the cpu and cuda backends run the restructured kernels of this
package instead, each tested against its readable twin (``tests/test_*_fast.py``,
``test_conv_direct.py``, ``test_conv_winograd.py``, ``test_cuda_tiled.py``, ``test_boxes.py``):

    readable kernel                      cpu (this package)                       cuda
    conv.FORWARD                         conv.forward: direct tile | dot tile |    cuda_conv: implicit GEMM,
                                           winograd | im2col+BLAS (the router)      64x64 tiles, 8x8 per thread
    conv.FORWARD_RELU                    conv.forward_relu: the same, ReLU on the  cuda_conv's, then ReLU
                                           tiles' sums before storing
    conv.BACKWARD_INPUT                  conv.backward_input: flipped direct tile  cuda_conv (dz gathered by
                                           | strided phases | im2col+BLAS           flipped taps)
    conv.BACKWARD_FILTER                 conv.backward_filter: dW tile | taps      cuda_conv (split-k + ordered sum)
                                           tile | winograd | im2col+BLAS
    bias.BACKWARD                        bias.bias_backward (16 row slices)        readable
    pool.MAX_FORWARD / MAX_ARGMAX        max_pool.max_pool2d_forward(_argmax)      readable
    pool.MAX_BACKWARD(_ARGMAX)           max_pool.max_pool2d_backward(_argmax)     readable
    pool.AVG_FORWARD / AVG_BACKWARD      avg_pool.avg_pool2d_forward / _backward   readable
    dense.FORWARD                        dense.forward: direct tile | few rows:    readable
                                           W streamed once | BLAS
    dense.BACKWARD_INPUT / _WEIGHT       dense.backward_input / _weight: BLAS      readable
    gram.GRAM / GRAM_BACKWARD            gram.gram_product / _backward_product:    readable
                                           1x1 conv tiles (float32) | BLAS
    depthwise.FORWARD                    depthwise.depthwise_forward: output       readable
                                           rows, taps added over C (SIMD)
    depthwise.BACKWARD_INPUT             depthwise.depthwise_backward_input: dx    readable
                                           rows, taps added over C (SIMD)
    depthwise.BACKWARD_FILTER            depthwise.depthwise_backward_filter: 16   readable
                                           row slices over C, summed in order
    boxes.NMS                            nms.nms: a shrinking list of survivors    cuda_nms: IoU bitmask, 64x64
                                                                                     boxes per block, host scan

The modules: ``simd.py`` (explicit vectors as Numba intrinsics: 8 lanes, and the host's
width, 16 lanes on AVX-512, for the register tiles), ``direct.py`` (the register-tiled
direct convolution), ``winograd.py`` (F(2x2, 3x3), F(4x4, 3x3) and F(2x2, 5x5) on the same
tile), ``im2col.py`` (windows copied into a matrix for BLAS), ``blas.py`` (BLAS products with
the thread count chosen per product), ``conv.py`` (the router between them), ``pool_rows.py``
(the pooling kernels' shared row layouts, helpers and thread launcher), ``max_pool.py`` and
``avg_pool.py`` (max and average pooling, forward and backward), ``dense.py``, ``gram.py``,
``nms.py``, ``batchnorm.py`` (batch norm's sums, loops turned around), ``triplet.py``
(pairwise distances a row at a time), ``cuda_conv.py``, ``cuda_nms.py``. ``NBCNN_DEBUG=1``
prints which route each launch took.

Importing this package registers them all (``ops.py`` imports it); it imports no numba.cuda
until a cuda launcher is first asked for.
"""

from .. import batchnorm as _batchnorm, bias as _bias, boxes as _boxes, conv as _conv, dense as _dense
from .. import gram as _gram, pool as _pool, triplet as _triplet
from . import avg_pool, batchnorm, bias, conv, cuda_conv, cuda_nms, dense, gram, max_pool, nms, triplet
from .. import depthwise as _depthwise
from . import depthwise

# own_threads=True: the kernel picks its threads itself (the register tiles use every thread
# however small the call; pooling has its own threshold; BLAS its own rule), so the
# dispatcher does not switch Numba to one thread for small calls.
_conv.FORWARD.register_fast(cpu=conv.forward, cuda=cuda_conv.forward_launcher, own_threads=True)
_conv.FORWARD_RELU.register_fast(cpu=conv.forward_relu, cuda=cuda_conv.forward_relu_launcher, own_threads=True)
_conv.BACKWARD_INPUT.register_fast(cpu=conv.backward_input, cuda=cuda_conv.backward_input_launcher,
                                   own_threads=True)
_conv.BACKWARD_FILTER.register_fast(cpu=conv.backward_filter, cuda=cuda_conv.backward_filter_launcher,
                                    own_threads=True)
_bias.BACKWARD.register_fast(cpu=bias.bias_backward)

_batchnorm.CHANNEL_SUMS.register_fast(cpu=batchnorm.channel_block_sums)
_batchnorm.CHANNEL_CENTRED_SQUARES.register_fast(cpu=batchnorm.channel_block_centred_squares)
_batchnorm.GRADIENT_SUMS.register_fast(cpu=batchnorm.channel_block_gradient_sums)
_triplet.PAIRWISE_SQUARED_DISTANCES.register_fast(cpu=triplet.pairwise_squared_distances)

_pool.MAX_FORWARD.register_fast(cpu=max_pool.max_pool2d_forward, own_threads=True)
_pool.MAX_ARGMAX.register_fast(cpu=max_pool.max_pool2d_forward_argmax, own_threads=True)
_pool.MAX_BACKWARD_ARGMAX.register_fast(cpu=max_pool.max_pool2d_backward_argmax, own_threads=True)
_pool.MAX_BACKWARD.register_fast(cpu=max_pool.max_pool2d_backward, own_threads=True)
_pool.AVG_FORWARD.register_fast(cpu=avg_pool.avg_pool2d_forward, own_threads=True)
_pool.AVG_BACKWARD.register_fast(cpu=avg_pool.avg_pool2d_backward, own_threads=True)

_dense.FORWARD.register_fast(cpu=dense.forward, own_threads=True)
_dense.BACKWARD_INPUT.register_fast(cpu=dense.backward_input, own_threads=True)
_dense.BACKWARD_WEIGHT.register_fast(cpu=dense.backward_weight, own_threads=True)

_boxes.NMS.register_fast(cpu=nms.nms, cuda=cuda_nms.nms_bitmask_launcher, own_threads=True)

_gram.GRAM.register_fast(cpu=gram.gram_product, own_threads=True)
_gram.GRAM_BACKWARD.register_fast(cpu=gram.gram_backward_product, own_threads=True)

_depthwise.FORWARD.register_fast(cpu=depthwise.depthwise_forward)
_depthwise.BACKWARD_INPUT.register_fast(cpu=depthwise.depthwise_backward_input)
_depthwise.BACKWARD_FILTER.register_fast(cpu=depthwise.depthwise_backward_filter)
