"""The kernels: one concept per file, each a readable loop nest compiled for cpu and cuda."""
