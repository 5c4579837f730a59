"""Eight float32 lanes as one Numba value: the vector registers of an AVX2 CPU, spelled out.

Why this exists: a register-blocked kernel keeps a small tile of outputs (say 6 pixels x 16
channels) in registers while it runs the whole reduction. Written as ``acc[p, k] += x * w[k]``
on a small array, LLVM kept ``acc`` in memory on these AVX2 machines (scalar
``vfmadd231ss`` and a load and a store per multiply-add, 2-8 GFLOP/s); with AVX-512 it had
found the register tile by itself (NUMBA_NOTES.md section 4). So the fast kernels say it
directly, as one would with C intrinsics:

    w0 = load8(Wf, i)               # 8 consecutive float32 of a flat array -> one ymm register
    acc = fma8(splat8(x), w0, acc)  # acc + x * w0 in all 8 lanes: one vfmadd231ps
    store8(out, j, acc)             # back to memory

A ``f32x8`` is a value (like a float), so accumulators written ``a00 = fma8(.., a00)`` in a
loop are SSA values that LLVM keeps in registers. Nothing here checks bounds: the caller must
keep ``i .. i + 7`` inside the array (the kernels pad their weight panels to whole vectors).
On a CPU without AVX2/FMA the same code still compiles (LLVM splits the vectors), only slower.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 8
_VEC = ir.VectorType(ir.FloatType(), LANES)


class F32x8Type(types.Type):
    """Numba type of 8 float32 lanes (an LLVM ``<8 x float>``)."""

    def __init__(self):
        super().__init__(name="f32x8")


f32x8 = F32x8Type()


@register_model(F32x8Type)
class _F32x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


def _lane_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VEC.as_pointer())


def _check_flat_float32(arr, idx):
    if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1):
        raise TypeError(f"simd: needs a 1-D float32 array, got {arr}")
    if not isinstance(idx, types.Integer):
        raise TypeError(f"simd: the index must be an integer, got {idx}")


@intrinsic
def load8(typingctx, arr, idx):
    """``arr[idx : idx + 8]`` as one vector (unaligned load, no bounds check)."""
    _check_flat_float32(arr, idx)

    def codegen(context, builder, sig, args):
        return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)

    return f32x8(arr, idx), codegen


@intrinsic
def store8(typingctx, arr, idx, v):
    """``arr[idx : idx + 8] = v`` (unaligned store, no bounds check)."""
    _check_flat_float32(arr, idx)

    def codegen(context, builder, sig, args):
        builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


@intrinsic
def splat8(typingctx, x):
    """``x`` copied into all 8 lanes (``vbroadcastss``)."""
    if x != types.float32:
        raise TypeError(f"simd.splat8: needs a float32, got {x}")

    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        lanes0 = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), lanes0)

    return f32x8(types.float32), codegen


@intrinsic
def splat_at8(typingctx, arr, idx):
    """``arr[idx]`` copied into all 8 lanes (one ``vbroadcastss`` from memory). Unlike
    ``splat8(arr[idx])`` it skips Numba's negative-index wrap-around (a compare and an add
    per load, and a general register each: enough to push a register tile into spilling)."""
    _check_flat_float32(arr, idx)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        x = builder.load(builder.gep(data, [args[1]]), align=4)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
        lanes0 = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), lanes0)

    return f32x8(arr, idx), codegen


@intrinsic
def fma8(typingctx, a, b, c):
    """``a * b + c`` lane by lane, rounded once (``vfmadd231ps``)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fma.v8f32")
        return builder.call(fn, args)

    return f32x8(f32x8, f32x8, f32x8), codegen


@intrinsic
def add8(typingctx, a, b):
    """``a + b`` lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return f32x8(f32x8, f32x8), codegen


@intrinsic
def sub8(typingctx, a, b):
    """``a - b`` lane by lane."""

    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])

    return f32x8(f32x8, f32x8), codegen


_INT8 = ir.VectorType(ir.IntType(32), LANES)


@intrinsic
def keep_where_eq8(typingctx, v, keys, idx, k):
    """Lanes of ``v`` where ``keys[idx + lane] == k``, +0.0 elsewhere: the vector form of the
    readable max-pool backward's ``0 + (g if argmax == k else 0)`` (one compare, one blend,
    one add; the add keeps the readable sum's bits: a kept -0.0 becomes +0.0). ``keys`` is a
    1-D int32 array (the argmax), read without bounds checks like ``load8``."""
    if v != f32x8:
        raise TypeError(f"simd.keep_where_eq8: v must be a f32x8, got {v}")
    if not (isinstance(keys, types.Array) and keys.dtype == types.int32 and keys.ndim == 1):
        raise TypeError(f"simd.keep_where_eq8: needs a 1-D int32 array of keys, got {keys}")
    if not isinstance(idx, types.Integer) or not isinstance(k, types.Integer):
        raise TypeError(f"simd.keep_where_eq8: idx and k must be integers, got {idx}, {k}")

    def codegen(context, builder, sig, args):
        vec, arr, i, key = args
        data = context.make_array(sig.args[1])(context, builder, arr).data
        lanes = builder.load(builder.bitcast(builder.gep(data, [i]), _INT8.as_pointer()), align=4)
        key32 = context.cast(builder, key, sig.args[3], types.int32)
        one = builder.insert_element(ir.Constant(_INT8, ir.Undefined), key32, ir.Constant(ir.IntType(32), 0))
        keys_k = builder.shuffle_vector(one, ir.Constant(_INT8, ir.Undefined),
                                        ir.Constant(_INT8, [0] * LANES))
        zero = ir.Constant(_VEC, [0.0] * LANES)
        kept = builder.select(builder.icmp_signed("==", lanes, keys_k), vec, zero)
        return builder.fadd(zero, kept)

    return f32x8(v, keys, idx, k), codegen
