"""Hooks the fast, restructured kernels onto the readable ones.

Each fast module sets ``fast_cpu`` / ``fast_cuda`` on the ``Kernel`` objects of the readable
kernels it speeds up (see ``nbcnn.backend.Kernel``). Importing this module installs them
all; ``NBCNN_FAST=0`` switches them off at run time.
"""
