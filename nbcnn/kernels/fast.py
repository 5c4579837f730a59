"""Hooks the fast, restructured kernels onto the readable ones.

Each fast module sets ``fast_cpu`` / ``fast_cuda`` on the ``Kernel`` objects of the readable
kernels it speeds up (see ``nbcnn.backend.Kernel``). Importing this module installs them
all; ``NBCNN_FAST=0`` switches them off at run time.
"""

from . import conv, cuda_conv  # noqa: E402  (imports no numba.cuda until a launcher is first asked for)

conv.FORWARD._fast_cuda_factory = cuda_conv.forward_launcher  # implicit GEMM, 64x64 tiles, 8x8 per thread
conv.BACKWARD_INPUT._fast_cuda_factory = cuda_conv.backward_input_launcher  # same, dz gathered by flipped taps
conv.BACKWARD_FILTER._fast_cuda_factory = cuda_conv.backward_filter_launcher  # same, split-k + ordered sum

from . import pool, pool_fast  # noqa: E402

pool.MAX_FORWARD.fast_cpu = pool_fast.max_pool2d_forward  # output rows as tasks; flat rows (few ch) or channels innermost
pool.MAX_ARGMAX.fast_cpu = pool_fast.max_pool2d_forward_argmax  # the same passes, the winning cell kept too
pool.MAX_BACKWARD_ARGMAX.fast_cpu = pool_fast.max_pool2d_backward_argmax  # the forward's argmax: select or scatter
pool.MAX_BACKWARD.fast_cpu = pool_fast.max_pool2d_backward  # argmax by the forward kernel, then as above
pool.AVG_FORWARD.fast_cpu = pool_fast.avg_pool2d_forward  # same rows; whole 2x2/3x3 windows in one pass
pool.AVG_BACKWARD.fast_cpu = pool_fast.avg_pool2d_backward  # each dx row gathers dp / count

from . import bias, conv_fast  # noqa: E402

conv.FORWARD.fast_cpu = conv_fast.forward  # the router: direct tile, Winograd, or im2col + BLAS
conv.BACKWARD_INPUT.fast_cpu = conv_fast.backward_input  # flipped-filter conv, or BLAS + gather col2im
conv.BACKWARD_FILTER.fast_cpu = conv_fast.backward_filter  # the dW register tile, or im2col(x).T @ dz
conv_fast.forward.own_threads = conv_fast.backward_input.own_threads = True  # both threads, however small
conv_fast.backward_filter.own_threads = True
bias.BACKWARD.fast_cpu = conv_fast.bias_backward  # 16 row slices summed along k (vectorised)

from . import dense, dense_fast  # noqa: E402

dense.FORWARD.fast_cpu = dense_fast.forward  # the conv tile for small float32 layers, else BLAS + bias
dense.BACKWARD_INPUT.fast_cpu = dense_fast.backward_input  # dy @ W.T
dense.BACKWARD_WEIGHT.fast_cpu = dense_fast.backward_weight  # x.T @ dy
# BLAS picks the threads (blas.matmul): the dispatcher need not switch Numba's
dense_fast.forward.own_threads = dense_fast.backward_input.own_threads = dense_fast.backward_weight.own_threads = True
