"""Explicit 16-lane float32 vectors for the numba kernels of the inference engine.

The engine's products accumulate many scaled rows into one short output block (64 output
channels, 64 hidden units): ``acc += v * w[...]`` over the non-zero inputs. Written with a
numpy accumulator, numba keeps ``acc`` in memory (it cannot prove that the weights' loads do
not alias it), so every product pays a load and a store; written with scalar accumulators,
LLVM vectorises the wrong loop (over the inputs, with gathers). A value of type
``float32x16`` is one LLVM ``<16 x float>``: a few of them stay in registers across such a
loop, and each product is one fused multiply-add with its weight loaded from memory
(one AVX-512 instruction; two AVX2 ones on a machine without AVX-512).

    vzeros()             the zero vector
    vload(a, i)          a[i:i + 16] of a contiguous 1-d float32 array, unchecked
    vstore(a, i, v)      a[i:i + 16] = v, unchecked
    vfma(acc, s, v)      acc + s * v (s a float32 scalar), one rounding (fused)
    vadd(a, b)           a + b
    vmax_first(m, v)     lane by lane: v where v > m or v is NaN, else m (max pooling's rule)
    item(a, i)           a[i] of a 1-d array, without numba's negative-index wraparound
    aligned_empty(n)     an uninitialised float32 array of n values on a 64-byte boundary
                         (in a kernel); aligned(a) a copy of a numpy array on one (in Python)
    vcount_at_least(keys, j, t)
                         how many of keys[j:j + 16] (uint32) are >= t (one compare, its
                         lane mask's popcount: 16 keys per AVX-512 compare, 8 per AVX2 one;
                         numba's own loop widened every count to 64 bits, 4 keys per
                         AVX2 compare)
    vcount_equal(keys, j, t)
                         how many of keys[j:j + 16] (uint32) equal t (the same, one compare)
    vcompress_range(keys, j, low, high, out, n)
                         the keys[j:j + 16] (uint32) with low <= key <= high stored
                         at out[n:] in order; returns n plus their number (a
                         register compress and one 16-lane store: out needs 16 values
                         of room past the last one kept)
    vtranspose16(src, s0, ss, dst, d0, ds, rows)
                         a 16 x 16 block transposed: dst[d0 + c * ds + r] = src[s0 + r * ss + c]
                         for the block's rows c < rows of dst (16 loads, 64 shuffles, the stores)

The loads and stores check nothing: the kernels compute every index from shapes they checked
on the Python side.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16


def _target_has(feature):
    """Whether numba compiles for a CPU with ``feature`` (an LLVM name such as "avx512f"):
    the host's, or what NUMBA_CPU_NAME / NUMBA_CPU_FEATURES ask for instead."""
    from numba.core import config
    if config.CPU_FEATURES:
        return f"+{feature}" in config.CPU_FEATURES.split(",")
    if config.CPU_NAME and config.CPU_NAME != "host":
        return False  # a named generic target (haswell: the AVX2 build): assume without
    import llvmlite.binding as ll
    return bool(ll.get_host_cpu_features().get(feature, False))


# Whether the kernels compile for AVX-512. There a 16-lane vector is one register of 32 and a
# register compress one instruction (vpcompressd). With AVX2 alone a vector takes two of 16
# registers, so a kernel's register blocks take half as many vectors (or spill), and LLVM
# expands a compress lane by lane, slower than the counting it was meant to save: the kernels
# choose their blocks by it (models/kernels/sparse_conv.py, kwinners.py).
AVX512 = _target_has("avx512f")
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class Float32x16(types.Type):
    def __init__(self):
        super().__init__(name="float32x16")


float32x16 = Float32x16()


@register_model(Float32x16)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _vector_pointer(context, builder, array_type, array, index, vector_type=_VECTOR):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


@intrinsic
def vzeros(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(_VECTOR, [0.0] * LANES)
    return float32x16(), codegen


@intrinsic
def vload(typingctx, array, index):
    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], *args)
        return builder.load(pointer, align=4)
    return float32x16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], pointer, align=4)
        return context.get_dummy_value()
    return types.none(array, index, vector), codegen


def _splat(builder, scalar, vector_type=_VECTOR):
    """``scalar`` in every lane of a ``vector_type`` value (16 float32 lanes by default)."""
    lanes = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                   ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(lanes, ir.Constant(vector_type, ir.Undefined), zeros)


@intrinsic
def vfma(typingctx, acc, scalar, vector):
    def codegen(context, builder, signature, args):
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3), "llvm.fma.v16f32")
        scalar = context.cast(builder, args[1], signature.args[1], types.float32)
        return builder.call(fma, [_splat(builder, scalar), args[2], args[0]])
    return float32x16(acc, scalar, vector), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])
    return float32x16(a, b), codegen


@intrinsic
def vmax_first(typingctx, best, vector):
    def codegen(context, builder, signature, args):
        best, value = args
        take = builder.or_(builder.fcmp_ordered(">", value, best),
                           builder.fcmp_unordered("uno", value, value))
        return builder.select(take, value, best)
    return float32x16(best, vector), codegen


@intrinsic
def item(typingctx, array, index):
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.load(builder.gep(data, [args[1]]))
    return array.dtype(array, index), codegen


_KEYS = ir.VectorType(ir.IntType(32), LANES)
_LANE_MASK = ir.VectorType(ir.IntType(1), LANES)


def _lanes_set(builder, mask):
    """The number of lanes set in a 16-lane mask (int64): a popcount of its bits."""
    popcount = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.IntType(16), [ir.IntType(16)]), "llvm.ctpop.i16")
    return builder.zext(builder.call(popcount, [builder.bitcast(mask, ir.IntType(16))]),
                        ir.IntType(64))


def _lane_count(name, predicate):
    """The intrinsic ``name(keys, index, t)``: how many of keys[index:index + 16] (uint32)
    satisfy ``key <predicate> t``, one compare and its lane mask's popcount."""
    def count(typingctx, keys, index, t):
        def codegen(context, builder, signature, args):
            keys, index, t = args
            v = builder.load(_vector_pointer(context, builder, signature.args[0], keys, index,
                                             _KEYS), align=4)
            t = context.cast(builder, t, signature.args[2], types.uint32)
            return _lanes_set(builder, builder.icmp_unsigned(predicate, v,
                                                             _splat(builder, t, _KEYS)))
        return types.int64(keys, index, t), codegen
    count.__name__ = count.__qualname__ = name
    return intrinsic(count)


vcount_at_least = _lane_count("vcount_at_least", ">=")
vcount_equal = _lane_count("vcount_equal", "==")


@intrinsic
def vcompress_range(typingctx, keys, index, low, high, out, at):
    def codegen(context, builder, signature, args):
        keys, index, low, high, out, at = args
        v = builder.load(_vector_pointer(context, builder, signature.args[0], keys, index,
                                         _KEYS), align=4)
        low, high = (context.cast(builder, value, typ, types.uint32) for value, typ in
                     ((low, signature.args[2]), (high, signature.args[3])))
        inside = builder.and_(builder.icmp_unsigned(">=", v, _splat(builder, low, _KEYS)),
                              builder.icmp_unsigned("<=", v, _splat(builder, high, _KEYS)))
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_KEYS, [_KEYS, _LANE_MASK, _KEYS]),
            "llvm.experimental.vector.compress.v16i32")  # the register form: the store
        packed = builder.call(compress, [v, inside, ir.Constant(_KEYS, ir.Undefined)])
        at = context.cast(builder, at, signature.args[5], types.int64)
        builder.store(packed, _vector_pointer(context, builder, signature.args[4], out, at,
                                              _KEYS),
                      align=4)  # form of a compress is microcoded on AMD's cores
        return builder.add(at, _lanes_set(builder, inside))
    return types.int64(keys, index, low, high, out, at), codegen


def _transpose_masks():
    """The 4 stages of a 16 x 16 transpose in two-vector shuffles: stage b exchanges bit b of
    the row with bit b of the lane, for the row pairs (r, r | 2^b) with bit b of r clear."""
    stages = []
    for b in range(4):
        bit = 1 << b
        low = [c if not c & bit else LANES + (c & ~bit) for c in range(LANES)]
        high = [c | bit if not c & bit else LANES + c for c in range(LANES)]
        stages.append((bit, low, high))
    return stages


_TRANSPOSE = _transpose_masks()


@intrinsic
def vtranspose16(typingctx, src, s0, s_stride, dst, d0, d_stride, rows):
    def codegen(context, builder, signature, args):
        src, s0, s_stride, dst, d0, d_stride, rows = args
        i64 = ir.IntType(64)
        s0, s_stride, d0, d_stride, rows = (
            context.cast(builder, value, typ, types.int64) for value, typ in
            zip((s0, s_stride, d0, d_stride, rows), signature.args[1:3] + signature.args[4:]))
        vectors = [builder.load(_vector_pointer(
            context, builder, signature.args[0], src,
            builder.add(s0, builder.mul(s_stride, ir.Constant(i64, r)))), align=4)
            for r in range(LANES)]
        for bit, low, high in _TRANSPOSE:
            mask_low = ir.Constant(ir.VectorType(ir.IntType(32), LANES), low)
            mask_high = ir.Constant(ir.VectorType(ir.IntType(32), LANES), high)
            for r in range(LANES):
                if r & bit:
                    continue
                a, b = vectors[r], vectors[r | bit]
                vectors[r] = builder.shuffle_vector(a, b, mask_low)
                vectors[r | bit] = builder.shuffle_vector(a, b, mask_high)
        for c in range(LANES):
            keep = builder.icmp_signed("<", ir.Constant(i64, c), rows)
            with builder.if_then(keep, likely=True):
                index = builder.add(d0, builder.mul(d_stride, ir.Constant(i64, c)))
                pointer = _vector_pointer(context, builder, signature.args[3], dst, index)
                builder.store(vectors[c], pointer, align=4)
        return context.get_dummy_value()
    return types.none(src, s0, s_stride, dst, d0, d_stride, rows), codegen


@numba.njit(nogil=True, cache=True, inline="always")
def aligned_empty(n):
    """An uninitialised float32 array of ``n`` values whose first value starts a 64-byte cache
    line. numba aligns its arrays to 32 bytes only, so half of its allocations put every
    16-lane load and store of a buffer read in 64-byte steps across two cache lines."""
    buf = np.empty(n + LANES, np.float32)
    skip = (-buf.ctypes.data) % 64 // 4
    return buf[skip:skip + n]


def aligned(array):
    """A C-contiguous copy of the numpy ``array`` whose data starts a 64-byte cache line:
    numpy aligns its allocations to 16 bytes, and a 16-lane load from a weight row that does
    not start a cache line touches two of them."""
    array = np.asarray(array)
    buf = np.empty(array.nbytes + 64, np.uint8)
    skip = (-buf.ctypes.data) % 64
    out = buf[skip:skip + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
