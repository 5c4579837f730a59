"""Float32 vectors as Numba values: the vector registers of the CPU, spelled out.

Why this exists: a register-blocked kernel keeps a small tile of outputs (say 4 pixels x 16
channels) in registers while it runs the whole reduction. Written as ``acc[p, k] += x * w[k]``
on a small array, LLVM kept ``acc`` in memory on AVX2 machines (scalar ``vfmadd231ss`` and a
load and a store per multiply-add, 2-8 GFLOP/s); with AVX-512 it had found the register tile
by itself (NUMBA_NOTES.md section 4). So the fast kernels say it directly, as one would with
C intrinsics:

    w0 = loadv(Wf, i)               # LANES consecutive float32 of a flat array -> one register
    acc = fmav(splatv(x), w0, acc)  # acc + x * w0 in all lanes: one vfmadd231ps
    storev(out, j, acc)             # back to memory

Two widths:

* ``LANES`` (``loadv``, ``storev``, ``splatv``, ``splat_atv``; ``f32xv``): the width of the
  compile target's vector registers, chosen once at import (``host_lanes``): 16 on a CPU with
  AVX-512 (zmm registers, 32 of them), 8 on AVX2 (ymm, 16 of them). The register tiles of
  ``direct.py`` and the pooling kernels' vector loops are written over it: one source, a
  wider vector where the CPU has one.
* 8 lanes (``load8``, ``store8``, ``splat8``, ``splat_at8``; ``f32x8``): fixed, for
  Winograd's transforms, few channels, and the half vector after the 16-lane ones.

``fmav``/``fma8``, ``add8``, ``sub8``, ``div8``, ``keep_where_eq8`` and ``take_max`` take
vectors of either width. A vector is a value (like
a float), so accumulators written ``a00 = fmav(.., a00)`` in a loop are SSA values that LLVM
keeps in registers. Nothing here checks bounds: the caller must keep ``i .. i + lanes - 1``
inside the array (the kernels pad their weight panels to whole vectors). On a CPU without
the width's instructions the same code still compiles (LLVM splits a 16-lane vector into
two 8-lane halves on AVX2), only slower.
"""

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config as numba_config

from ... import config
from numba.extending import intrinsic, models, register_jitable, register_model

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


# ------------------------------------------------------------------ which width: host_lanes

def _target_cpu():
    """(LLVM cpu name, feature string) Numba compiles for: ``NUMBA_CPU_NAME`` and
    ``NUMBA_CPU_FEATURES`` when set (features ``""``: the named CPU's own), else the host's
    (the rule of numba.core.codegen.CPUCodegen)."""
    name = numba_config.CPU_NAME or llvm.get_host_cpu_name()
    features = numba_config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return name, features


def _sixteen_lanes_fit(cpu, features):
    """Whether a ``<16 x float>`` add compiles to one zmm instruction for this cpu: asking
    LLVM itself covers every way a target can have (or lack, or avoid) 512-bit vectors."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(
        "define <16 x float> @add16(<16 x float> %a, <16 x float> %b) {\n"
        "  %c = fadd <16 x float> %a, %b\n  ret <16 x float> %c\n}\n")
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features, opt=2)
    return "zmm" in machine.emit_assembly(module)


def host_lanes():
    """float32 lanes of one vector register of the CPU Numba compiles for: 16 with AVX-512,
    else 8. ``NBCNN_LANES=8`` or ``16`` forces a width (to run the other width's kernels,
    e.g. the 16-lane tiles on an AVX2 machine, where LLVM splits each vector in two); give
    such a process its own ``NUMBA_CACHE_DIR``: Numba's cache keys compiled code by the CPU,
    not by this constant, so a shared cache would hand it the other width's kernels."""
    forced = config.get("NBCNN_LANES").strip()
    if forced:
        if forced not in ("8", "16"):
            raise ValueError(f"NBCNN_LANES must be 8 or 16, got {forced!r}")
        return int(forced)
    return 16 if _sixteen_lanes_fit(*_target_cpu()) else 8


LANES = host_lanes()
"""float32 lanes of the register tiles' vectors (``loadv`` ...): 16 on AVX-512, 8 on AVX2."""


# ------------------------------------------------------------------ the vector type

class F32xNType(types.Type):
    """Numba type of ``lanes`` float32 lanes (an LLVM ``<lanes x float>``)."""

    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__(name=f"f32x{lanes}")


@register_model(F32xNType)
class _F32xNModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.FloatType(), fe_type.lanes))


f32x8 = F32xNType(8)
f32xv = F32xNType(LANES)
"""The two vector types: 8 lanes, and the host's ``LANES``."""


def _llvm_vector(vec_type):
    return ir.VectorType(ir.FloatType(), vec_type.lanes)


def _lane_pointer(context, builder, array_type, array, index, vec):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vec.as_pointer())


def _check_flat_float32(arr, idx):
    if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1):
        raise TypeError(f"simd: needs a 1-D float32 array, got {arr}")
    if not isinstance(idx, types.Integer):
        raise TypeError(f"simd: the index must be an integer, got {idx}")


def _broadcast(builder, x, vec):
    """``x`` in every lane of ``vec``'s type (``vbroadcastss``)."""
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(_I32, 0))
    lanes0 = ir.Constant(ir.VectorType(_I32, vec.count), [0] * vec.count)
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), lanes0)


def _memory_ops(vec_type):
    """load, store, splat, splat_at for vectors of ``vec_type``."""
    vec = _llvm_vector(vec_type)
    n = vec_type.lanes

    @intrinsic
    def load(typingctx, arr, idx):
        _check_flat_float32(arr, idx)

        def codegen(context, builder, sig, args):
            return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], args[1], vec), align=4)

        return vec_type(arr, idx), codegen

    @intrinsic
    def store(typingctx, arr, idx, v):
        _check_flat_float32(arr, idx)
        if v != vec_type:
            raise TypeError(f"simd: storing {v} with the store of {vec_type}")

        def codegen(context, builder, sig, args):
            builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], args[1], vec), align=4)
            return context.get_dummy_value()

        return types.none(arr, idx, v), codegen

    @intrinsic
    def splat(typingctx, x):
        if x != types.float32:
            raise TypeError(f"simd.splat: needs a float32, got {x}")

        def codegen(context, builder, sig, args):
            return _broadcast(builder, args[0], vec)

        return vec_type(types.float32), codegen

    @intrinsic
    def splat_at(typingctx, arr, idx):
        _check_flat_float32(arr, idx)

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            return _broadcast(builder, builder.load(builder.gep(data, [args[1]]), align=4), vec)

        return vec_type(arr, idx), codegen

    load.__doc__ = f"``arr[idx : idx + {n}]`` as one vector (unaligned load, no bounds check)."
    store.__doc__ = f"``arr[idx : idx + {n}] = v`` (unaligned store, no bounds check)."
    splat.__doc__ = f"``x`` copied into all {n} lanes (``vbroadcastss``)."
    splat_at.__doc__ = (f"``arr[idx]`` copied into all {n} lanes (one ``vbroadcastss`` from memory). Unlike "
                        "``splat(arr[idx])`` it skips Numba's negative-index wrap-around (a compare and an add "
                        "per load, and a general register each: enough to push a register tile into spilling).")
    return load, store, splat, splat_at


load8, store8, splat8, splat_at8 = _memory_ops(f32x8)
loadv, storev, splatv, splat_atv = _memory_ops(f32xv)


def _same_vectors(*vs):
    if not (isinstance(vs[0], F32xNType) and all(v == vs[0] for v in vs)):
        raise TypeError(f"simd: needs vectors of one width, got {vs}")
    return vs[0]


@intrinsic
def fma8(typingctx, a, b, c):
    """``a * b + c`` lane by lane, rounded once (``vfmadd231ps``), for vectors of any one width."""
    vt = _same_vectors(a, b, c)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{vt.lanes}f32")
        return builder.call(fn, args)

    return vt(vt, vt, vt), codegen


fmav = fma8
"""The same function: ``fmav`` reads better next to ``loadv``."""


@intrinsic
def add8(typingctx, a, b):
    """``a + b`` lane by lane (either width)."""
    vt = _same_vectors(a, b)

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return vt(vt, vt), codegen


@intrinsic
def sub8(typingctx, a, b):
    """``a - b`` lane by lane (either width)."""
    vt = _same_vectors(a, b)

    def codegen(context, builder, sig, args):
        return builder.fsub(args[0], args[1])

    return vt(vt, vt), codegen


@intrinsic
def div8(typingctx, a, b):
    """``a / b`` lane by lane, correctly rounded like the scalar division (either width)."""
    vt = _same_vectors(a, b)

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])

    return vt(vt, vt), codegen


@intrinsic
def keep_where_eq8(typingctx, v, keys, idx, k):
    """Lanes of ``v`` where ``keys[idx + lane] == k``, +0.0 elsewhere: the vector form of the
    readable max-pool backward's ``0 + (g if argmax == k else 0)`` (one compare, one blend,
    one add; the add keeps the readable sum's bits: a kept -0.0 becomes +0.0). ``keys`` is a
    1-D int32 array (the argmax), read without bounds checks like ``load8``; ``v`` a vector of
    either width (as many keys as lanes)."""
    if not isinstance(v, F32xNType):
        raise TypeError(f"simd.keep_where_eq8: v must be a float32 vector, got {v}")
    n = v.lanes
    ints, vec = ir.VectorType(_I32, n), _llvm_vector(v)
    if not (isinstance(keys, types.Array) and keys.dtype == types.int32 and keys.ndim == 1):
        raise TypeError(f"simd.keep_where_eq8: needs a 1-D int32 array of keys, got {keys}")
    if not isinstance(idx, types.Integer) or not isinstance(k, types.Integer):
        raise TypeError(f"simd.keep_where_eq8: idx and k must be integers, got {idx}, {k}")

    def codegen(context, builder, sig, args):
        vec_value, arr, i, key = args
        data = context.make_array(sig.args[1])(context, builder, arr).data
        lanes = builder.load(builder.bitcast(builder.gep(data, [i]), ints.as_pointer()), align=4)
        key32 = context.cast(builder, key, sig.args[3], types.int32)
        one = builder.insert_element(ir.Constant(ints, ir.Undefined), key32, ir.Constant(_I32, 0))
        keys_k = builder.shuffle_vector(one, ir.Constant(ints, ir.Undefined), ir.Constant(ints, [0] * n))
        zero = ir.Constant(vec, [0.0] * n)
        kept = builder.select(builder.icmp_signed("==", lanes, keys_k), vec_value, zero)
        return builder.fadd(zero, kept)

    return v(v, keys, idx, k), codegen


keep_where_eqv = keep_where_eq8
"""The same function: ``keep_where_eqv`` reads better next to ``loadv``."""


@intrinsic
def take_max(typingctx, best, arg, v, k):
    """One step of max pooling's search in every lane, as ``max_pool._take``: keep ``(best,
    arg)`` where ``best`` is NaN already or ``v <= best``, else take ``(v, k)`` (ties keep the
    first maximum, a new NaN wins). Returns the pair as a tuple of two vectors (two blends on
    one mask). ``arg`` and ``k`` hold int32 cell numbers *as float32 bits* (a blend moves
    bits, never rounds), so one vector type serves both (either width)."""
    vt = _same_vectors(best, arg, v, k)
    pair = types.UniTuple(vt, 2)

    def codegen(context, builder, sig, args):
        b, a, x, kk = args
        keep = builder.or_(builder.fcmp_unordered("uno", b, b), builder.fcmp_ordered("<=", x, b))
        return context.make_tuple(builder, pair, [builder.select(keep, b, x), builder.select(keep, a, kk)])

    return pair(vt, vt, vt, vt), codegen


# ------------------------------------------------------------------ register tiles as tuples
#
# A register tile of ``rows`` x ``per_row`` vectors (say 8 pixels x 2 vectors of 16 channels)
# is a tuple of vectors: plain SSA values once inlined, kept in registers like separately
# named sums. These helpers build and update such tuples for any tile shape, so a kernel
# is written once over the tile-shape constants instead of with one named sum per register
# (``tile_fma`` of a tuple of 8 broadcasts and 2 weight vectors is 16 FMAs in a row).

def _literal_count(count, what):
    """A count known when compiling: an integer constant (a module global), or a tuple whose
    length is the count (an argument: Numba compiles one version per tuple length, where an
    int argument would be one version for every value, or a slow ``numba.literally``)."""
    if isinstance(count, types.IntegerLiteral):
        return count.literal_value
    if isinstance(count, (types.UniTuple, types.Tuple)):
        return count.count
    raise TypeError(f"simd.{what}: the count must be a compile-time constant or a tuple, got {count}")


def _int_offset(context, builder, base_type, base, offset):
    return builder.add(context.cast(builder, base, base_type, types.int64), ir.Constant(_I64, offset))


@intrinsic(prefer_literal=True)
def ints_at(typingctx, arr, at, count):
    """``(arr[at], arr[at + 1], ..., arr[at + count - 1])`` of a 1-D int64 array, as a tuple
    (``count`` a constant; no bounds check): a tile's window starts, held in registers."""
    n = _literal_count(count, "ints_at")
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        raise TypeError(f"simd.ints_at: needs a 1-D int64 array, got {arr}")
    tup = types.UniTuple(types.int64, n)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        values = [builder.load(builder.gep(data, [_int_offset(context, builder, sig.args[1], args[1], p)]))
                  for p in range(n)]
        return context.make_tuple(builder, tup, values)

    return tup(arr, at, count), codegen


@intrinsic(prefer_literal=True)
def ints_from(typingctx, start, step, count):
    """``(start, start + step, ..., start + (count - 1) * step)`` (``count`` a constant)."""
    n = _literal_count(count, "ints_from")
    tup = types.UniTuple(types.int64, n)

    def codegen(context, builder, sig, args):
        s0 = context.cast(builder, args[0], sig.args[0], types.int64)
        step = context.cast(builder, args[1], sig.args[1], types.int64)
        values = [builder.add(s0, builder.mul(step, ir.Constant(_I64, p))) for p in range(n)]
        return context.make_tuple(builder, tup, values)

    return tup(start, step, count), codegen


@intrinsic(prefer_literal=True)
def load_lanes(typingctx, arr, idx, lanes):
    """``arr[idx : idx + lanes]`` as one vector of ``lanes`` lanes (a constant, or a tuple of
    that length): ``loadv`` or ``load8`` chosen when compiling."""
    _check_flat_float32(arr, idx)
    vt = F32xNType(_literal_count(lanes, "load_lanes"))
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], args[1], vec), align=4)

    return vt(arr, idx, lanes), codegen


@intrinsic
def store_lanes(typingctx, arr, idx, v):
    """``arr[idx : idx + lanes] = v`` for a vector of any width (``storev`` or ``store8``, by
    ``v``'s type)."""
    _check_flat_float32(arr, idx)
    vt = _same_vectors(v)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], args[1], vec), align=4)
        return context.get_dummy_value()

    return types.none(arr, idx, v), codegen


@intrinsic
def load_like(typingctx, arr, idx, like):
    """``arr[idx : idx + lanes]``, a vector as wide as ``like`` (a vector)."""
    _check_flat_float32(arr, idx)
    vt = _same_vectors(like)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], args[1], vec), align=4)

    return vt(arr, idx, like), codegen


@intrinsic
def lanes_of(typingctx, v):
    """The number of lanes of the vector ``v`` (a constant)."""
    vt = _same_vectors(v)

    def codegen(context, builder, sig, args):
        return ir.Constant(_I64, vt.lanes)

    return types.int64(v), codegen


@intrinsic(prefer_literal=True)
def splat_lanes(typingctx, x, lanes):
    """``x`` (a float32) in all ``lanes`` lanes (a constant, or a tuple of that length)."""
    if x != types.float32:
        raise TypeError(f"simd.splat_lanes: needs a float32, got {x}")
    vt = F32xNType(_literal_count(lanes, "splat_lanes"))
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0], vec)

    return vt(x, lanes), codegen


@intrinsic
def splat_like(typingctx, x, v):
    """``x`` (a float32) in all lanes of a vector as wide as ``v``."""
    if x != types.float32:
        raise TypeError(f"simd.splat_like: needs a float32, got {x}")
    vt = _same_vectors(v)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        return _broadcast(builder, args[0], vec)

    return vt(x, v), codegen


@intrinsic(prefer_literal=True)
def splat_each(typingctx, arr, starts, offset, lanes):
    """``arr[starts[p] + offset]`` in all ``lanes`` lanes (a constant, or a tuple of that
    length) of vector p, for each p: a tile's input numbers, one broadcast per pixel (on
    AVX-512 folded into the FMA)."""
    _check_flat_float32(arr, offset)
    if not (isinstance(starts, types.UniTuple) and isinstance(starts.dtype, types.Integer)):
        raise TypeError(f"simd.splat_each: needs a tuple of integers, got {starts}")
    vt = F32xNType(_literal_count(lanes, "splat_each"))
    tup = types.UniTuple(vt, starts.count)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        o = context.cast(builder, args[2], sig.args[2], types.int64)
        values = []
        for p, start in enumerate(cgutils.unpack_tuple(builder, args[1], starts.count)):
            at = builder.add(context.cast(builder, start, starts.dtype, types.int64), o)
            values.append(_broadcast(builder, builder.load(builder.gep(data, [at]), align=4), vec))
        return context.make_tuple(builder, tup, values)

    return tup(arr, starts, offset, lanes), codegen


@intrinsic(prefer_literal=True)
def load_each(typingctx, arr, starts, offset, lanes, valid):
    """``arr[starts[p] + offset : ... + lanes]`` for each p, as a tuple of vectors of ``lanes``
    lanes (a constant, or a tuple of that length), lanes ``valid`` and up 0: masked loads, which
    neither read those numbers (no NaN from a neighbour's inf, no fault past an array's end) nor
    cost more than plain loads on AVX-512. ``valid >= lanes`` loads whole vectors."""
    _check_flat_float32(arr, offset)
    if not (isinstance(starts, types.UniTuple) and isinstance(starts.dtype, types.Integer)):
        raise TypeError(f"simd.load_each: needs a tuple of integers, got {starts}")
    if not isinstance(valid, types.Integer):
        raise TypeError(f"simd.load_each: the count of valid lanes must be an integer, got {valid}")
    vt = F32xNType(_literal_count(lanes, "load_each"))
    tup = types.UniTuple(vt, starts.count)
    vec = _llvm_vector(vt)
    ints = ir.VectorType(_I64, vt.lanes)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        o = context.cast(builder, args[2], sig.args[2], types.int64)
        v = context.cast(builder, args[4], sig.args[4], types.int64)
        splat = builder.shuffle_vector(builder.insert_element(ir.Constant(ints, ir.Undefined), v, ir.Constant(_I32, 0)),
                                       ir.Constant(ints, ir.Undefined), ir.Constant(ir.VectorType(_I32, vt.lanes), [0] * vt.lanes))
        mask = builder.icmp_signed("<", ir.Constant(ints, list(range(vt.lanes))), splat)
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec.as_pointer(), _I32, mask.type, vec]),
            f"llvm.masked.load.v{vt.lanes}f32.p0v{vt.lanes}f32")
        values = []
        for start in cgutils.unpack_tuple(builder, args[1], starts.count):
            at = builder.add(context.cast(builder, start, starts.dtype, types.int64), o)
            ptr = builder.bitcast(builder.gep(data, [at]), vec.as_pointer())
            values.append(builder.call(masked_load, [ptr, ir.Constant(_I32, 4), mask, ir.Constant(vec, None)]))
        return context.make_tuple(builder, tup, values)

    return tup(arr, starts, offset, lanes, valid), codegen


def _lane_sums(builder, values, lanes):
    """The lane sums of ``values`` (vectors of ``lanes`` lanes), in order, packed ``lanes`` to
    a vector: pairs of vectors are folded half onto half (two shuffles and an add), then the
    halves' halves, ..., so 16 vectors take 15 folds and 16 sums come out in one vector (one
    reduction per vector costs about 8 shuffles and adds each). Missing vectors are zeros."""
    zero = ir.Constant(values[0].type, None)
    vs = list(values) + [zero] * (-len(values) % lanes)
    width = lanes  # lanes per source vector in each folded vector
    while width > 1:
        half = width // 2
        lo = [s * width + q for s in range(2 * lanes // width) for q in range(half)]
        hi = [s * width + half + q for s in range(2 * lanes // width) for q in range(half)]
        lo, hi = (ir.Constant(ir.VectorType(_I32, lanes), m) for m in (lo, hi))
        vs = [builder.fadd(builder.shuffle_vector(a, b, lo), builder.shuffle_vector(a, b, hi))
              for a, b in zip(vs[0::2], vs[1::2])]
        width = half
    return vs


@intrinsic
def store_lane_sums(typingctx, arr, at, sums):
    """``arr[at + r] = sums[r][0] + sums[r][1] + ...`` for every vector r of the tuple ``sums``
    (see ``_lane_sums``); whole vectors of sums are stored as vectors, the rest masked."""
    _check_flat_float32(arr, at)
    if not (isinstance(sums, types.UniTuple) and isinstance(sums.dtype, F32xNType)):
        raise TypeError(f"simd.store_lane_sums: needs a tuple of vectors, got {sums}")
    vt = sums.dtype
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        a0 = context.cast(builder, args[1], sig.args[1], types.int64)
        folded = _lane_sums(builder, cgutils.unpack_tuple(builder, args[2], sums.count), vt.lanes)
        for q, v in enumerate(folded):
            ptr = _lane_pointer(context, builder, sig.args[0], args[0], builder.add(a0, ir.Constant(_I64, q * vt.lanes)), vec)
            rest = sums.count - q * vt.lanes
            if rest >= vt.lanes:
                builder.store(v, ptr, align=4)
                continue
            mask = ir.Constant(ir.VectorType(ir.IntType(1), vt.lanes), [int(lane < rest) for lane in range(vt.lanes)])
            masked_store = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), _I32, mask.type]),
                f"llvm.masked.store.v{vt.lanes}f32.p0v{vt.lanes}f32")
            builder.call(masked_store, [v, ptr, ir.Constant(_I32, 4), mask])
        return context.get_dummy_value()

    return types.none(arr, at, sums), codegen


@intrinsic(prefer_literal=True)
def repeat(typingctx, row, count):
    """The tuple ``row`` repeated ``count`` times (a constant): a tile's starting sums,
    e.g. ``repeat((bias_lo, bias_hi), 8)``."""
    n = _literal_count(count, "repeat")
    if not isinstance(row, types.UniTuple):
        raise TypeError(f"simd.repeat: needs a tuple, got {row}")
    tup = types.UniTuple(row.dtype, row.count * n)

    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, tup, cgutils.unpack_tuple(builder, args[0], row.count) * n)

    return tup(row, count), codegen


@intrinsic
def tile_fma(typingctx, xs, ws, sums):
    """One step of a register tile of ``len(xs)`` rows x ``len(ws)`` vectors:
    ``sums[r * len(ws) + v] + xs[r] * ws[v]`` for every r, v, as a new tuple (one FMA each,
    registers only)."""
    for t in (xs, ws, sums):
        if not (isinstance(t, types.UniTuple) and isinstance(t.dtype, F32xNType)):
            raise TypeError(f"simd.tile_fma: needs tuples of vectors, got {t}")
    if sums.count != xs.count * ws.count or not (xs.dtype == ws.dtype == sums.dtype):
        raise TypeError(f"simd.tile_fma: {sums} is not a tile of {xs} x {ws}")
    vt = sums.dtype
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{vt.lanes}f32")
        x = cgutils.unpack_tuple(builder, args[0], xs.count)
        w = cgutils.unpack_tuple(builder, args[1], ws.count)
        s = cgutils.unpack_tuple(builder, args[2], sums.count)
        out = [builder.call(fn, [x[r], w[v], s[r * ws.count + v]]) for r in range(xs.count) for v in range(ws.count)]
        return context.make_tuple(builder, sums, out)

    return sums(xs, ws, sums), codegen


@intrinsic
def tile_add(typingctx, sums, vs):
    """``sums[v] + vs[v]`` for every vector of two tuples of one shape (``vaddps``): running
    sums of loaded vectors, such as the bias gradient's sum of dz."""
    for t in (sums, vs):
        if not (isinstance(t, types.UniTuple) and isinstance(t.dtype, F32xNType)):
            raise TypeError(f"simd.tile_add: needs tuples of vectors, got {t}")
    if sums != vs:
        raise TypeError(f"simd.tile_add: {sums} and {vs} differ")

    def codegen(context, builder, sig, args):
        a, b = (cgutils.unpack_tuple(builder, t, sums.count) for t in args)
        return context.make_tuple(builder, sums, [builder.fadd(p, q) for p, q in zip(a, b)])

    return sums(sums, vs), codegen


@intrinsic
def tile_relu(typingctx, sums):
    """ReLU of every vector of the tuple ``sums``, lane by lane, as the readable ``relu_cell``:
    ``0 if v < 0 else v`` (a NaN is not below 0 and stays NaN). A fused conv + ReLU applies it
    to the tile's sums before storing them (no second pass over the output)."""
    if not (isinstance(sums, types.UniTuple) and isinstance(sums.dtype, F32xNType)):
        raise TypeError(f"simd.tile_relu: needs a tuple of vectors, got {sums}")
    vec = _llvm_vector(sums.dtype)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(vec, None)
        out = [builder.select(builder.fcmp_ordered("<", v, zero), zero, v)
               for v in cgutils.unpack_tuple(builder, args[0], sums.count)]
        return context.make_tuple(builder, sums, out)

    return sums(sums), codegen


@intrinsic(prefer_literal=True)
def load_tile(typingctx, arr, at, pitch, rows, per_row, lanes):
    """A tile of ``rows`` x ``per_row`` vectors of ``lanes`` lanes (all three constants, or
    tuples of those lengths) from ``arr``: row r's vector v at ``arr[at + r * pitch + v *
    lanes]``."""
    _check_flat_float32(arr, at)
    n_rows, n_per = _literal_count(rows, "load_tile"), _literal_count(per_row, "load_tile")
    vt = F32xNType(_literal_count(lanes, "load_tile"))
    tup = types.UniTuple(vt, n_rows * n_per)
    vec = _llvm_vector(vt)

    def codegen(context, builder, sig, args):
        a0 = context.cast(builder, args[1], sig.args[1], types.int64)
        p = context.cast(builder, args[2], sig.args[2], types.int64)
        values = []
        for r in range(n_rows):
            row = builder.add(a0, builder.mul(p, ir.Constant(_I64, r)))
            for v in range(n_per):
                at = builder.add(row, ir.Constant(_I64, v * vt.lanes))
                values.append(builder.load(_lane_pointer(context, builder, sig.args[0], args[0], at, vec), align=4))
        return context.make_tuple(builder, tup, values)

    return tup(arr, at, pitch, rows, per_row, lanes), codegen


@intrinsic(prefer_literal=True)
def store_tile_rows(typingctx, arr, at, pitch, sums, per_row, first, stop):
    """Rows ``first <= r < stop`` of a tile (``per_row`` vectors each, a constant) to
    ``arr[at + r * pitch + v * LANES]``; the other rows are not stored."""
    _check_flat_float32(arr, at)
    if not (isinstance(sums, types.UniTuple) and isinstance(sums.dtype, F32xNType)):
        raise TypeError(f"simd.store_tile_rows: needs a tuple of vectors, got {sums}")
    n_per = _literal_count(per_row, "store_tile_rows")
    vec = _llvm_vector(sums.dtype)

    def codegen(context, builder, sig, args):
        a0 = context.cast(builder, args[1], sig.args[1], types.int64)
        p = context.cast(builder, args[2], sig.args[2], types.int64)
        lo = context.cast(builder, args[5], sig.args[5], types.int64)
        hi = context.cast(builder, args[6], sig.args[6], types.int64)
        values = cgutils.unpack_tuple(builder, args[3], sums.count)
        for r in range(sums.count // n_per):
            r_ = ir.Constant(_I64, r)
            wanted = builder.and_(builder.icmp_signed("<=", lo, r_), builder.icmp_signed("<", r_, hi))
            with builder.if_then(wanted, likely=True):
                row = builder.add(a0, builder.mul(p, r_))
                for v in range(n_per):
                    at = builder.add(row, ir.Constant(_I64, v * sums.dtype.lanes))
                    builder.store(values[r * n_per + v],
                                  _lane_pointer(context, builder, sig.args[0], args[0], at, vec), align=4)
        return context.get_dummy_value()

    return types.none(arr, at, pitch, sums, per_row, first, stop), codegen


# ------------------------------------------------------------------ aligned scratch in compiled code

@register_jitable
def aligned_floats(n):
    """``np.empty(n, np.float32)`` inside compiled code, starting on a 64-byte boundary (a
    cache line, one zmm vector): Numba's own ``np.empty`` is only sure of 32 bytes (half of
    its arrays start 32 bytes past a line, measured here), and a 16-lane load or store from
    there straddles two lines (see ``backend.ALIGNMENT``)."""
    raw = np.empty(n + 16, np.float32)
    start = (-(raw.ctypes.data // 4)) % 16
    return raw[start:start + n]
