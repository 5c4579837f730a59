"""``model.summary()``: each layer's output shape, parameter count and multiply-adds.

Reproduces the lecture's "why convolutions" arithmetic: a 5x5 conv with 6 filters on a
32x32x3 image has 5*5*3*6 + 6 = 456 parameters, while a fully connected layer between the
same input (3,072 numbers) and output (28*28*6 = 4,704 numbers) would need about 14 million.
"""

from __future__ import annotations

from . import layers as L


def _rows(layer, depth, rows):
    for child in layer.sublayers():
        kind = type(child).__name__
        if isinstance(child, L.Activation):
            kind = f"Activation({child.kind})"
        params = child.count_params()
        rows.append(("  " * depth + (child.name or kind), str((None, *child.output_shape)), params, child.macs()))
        if isinstance(child, (L.Residual, L.Concatenate, L.Chain)):
            _rows(child, depth + 1, rows)


def summary(model) -> str:
    rows = []
    _rows(model.network, 0, rows)
    name_w = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
    shape_w = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
    lines = [f'Model: "{model.name}"   input {(None, *model.input_shape)}',
             f"{'Layer (type)':<{name_w}}{'Output Shape':<{shape_w}}{'Param #':>14}{'Mult-adds':>18}",
             "=" * (name_w + shape_w + 32)]
    for name, shape, params, macs in rows:
        lines.append(f"{name:<{name_w}}{shape:<{shape_w}}{params:>14,}{macs:>18,}")
    total = model.count_params()
    trainable = model.count_params(trainable_only=True)
    lines += ["=" * (name_w + shape_w + 32),
              f"Total params: {total:,}",
              f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}",
              f"Multiply-adds per example: {model.network.macs():,}"]
    return "\n".join(lines)


def dense_equivalent_params(input_shape, output_shape) -> int:
    """Parameters of a fully connected layer between two volumes (weights + one bias per output)."""
    n_in, n_out = 1, 1
    for s in input_shape:
        n_in *= s
    for s in output_shape:
        n_out *= s
    return n_in * n_out + n_out
