"""Dense dot convolution by AVX512-VNNI (``vpdpbusd``): uint8 inputs times int8 weights.

The dot kernel of :mod:`.dense` computes exact integer sums as float32 multiply-adds.
On a CPU with AVX512-VNNI one ``vpdpbusd`` multiplies 64 uint8 by 64 int8 values and
adds them, in groups of four, to 16 int32 lanes: measured four times the float32 loop's
multiply-adds per second on the same 2 x 4 block (``benchmarks/vnni_probe.py``). LLVM
does not form it from a Numba loop, so :func:`_dot_block` emits it by hand.

Layout
------
``xu``
    The input rows as one flat uint8 array: ``rows`` rows of ``row_len`` entries (the
    padded input ``(N, Xp, Yp * C_in)`` of the dot kernel, or the gathered rows
    ``(N, X_out, Yp * KX * C_in)``), then at least 64 more entries: a cell's run is
    read in whole 64-byte vectors, so its last vector may reach past the run (into the
    next pixel, the next row or that tail), where the weights are zero.
``wu``
    Weights as one flat int8 array ``(C_out, KXr, RUNP)``, correlation-ordered as in
    :mod:`.dense`, each run of ``run`` entries zero-padded to ``RUNP``, a multiple of 64.
``corr``
    Subtracted from every sum of output channel ``k``: ``128 * sum(W[k])`` when int8
    inputs were stored as ``x XOR 0x80`` (``x + 128``, the border likewise ``0x80``),
    else 0.

Exactness: every product is below ``255 * 128`` in magnitude and an int32 lane adds
``RUNP / 16`` of them per tap row; the caller keeps ``255 * 128 * RUNP < 2**31``, and
the taps are added in int64.
"""

from __future__ import annotations

from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import jit_parallel

__all__ = ["conv_dense_vnni"]

_V16 = ir.VectorType(ir.IntType(32), 16)


@intrinsic
def _dot_block(typingctx, xa, o0, o1, wa, p0, p1, p2, p3, n_vec):
    """Return 8 dot products of ``n_vec`` 64-byte vectors (``vpdpbusd``).

    Inputs at element offsets ``o0, o1`` of ``xa`` (uint8) times weights at ``p0..p3`` of
    ``wa`` (int8), as ``(o0.p0, .., o0.p3, o1.p0, .., o1.p3)`` in int32.
    """
    sig = types.UniTuple(types.int32, 8)(xa, o0, o1, wa, p0, p1, p2, p3, n_vec)

    def codegen(context, builder, signature, args):
        xdata = context.make_array(signature.args[0])(context, builder, args[0]).data
        wdata = context.make_array(signature.args[3])(context, builder, args[3]).data
        ptrs = [builder.bitcast(builder.gep(xdata, [args[1]]), _V16.as_pointer()),
                builder.bitcast(builder.gep(xdata, [args[2]]), _V16.as_pointer())]
        ptrs += [builder.bitcast(builder.gep(wdata, [a]), _V16.as_pointer())
                 for a in args[4:8]]
        fnty = ir.FunctionType(_V16, [_V16, _V16, _V16])
        dot = cgutils.get_or_insert_function(builder.module, fnty,
                                             "llvm.x86.avx512.vpdpbusd.512")
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V16, [0] * 16))
                for _ in range(8)]
        with cgutils.for_range(builder, args[8]) as loop:
            vecs = []
            for p in ptrs:
                load = builder.load(builder.gep(p, [loop.index]))
                load.align = 1
                vecs.append(load)
            for r in range(2):
                for k in range(4):
                    acc = accs[4 * r + k]
                    builder.store(builder.call(dot, [builder.load(acc), vecs[r], vecs[2 + k]]),
                                  acc)
        redty = ir.FunctionType(ir.IntType(32), [_V16])
        reduce = cgutils.get_or_insert_function(builder.module, redty,
                                                "llvm.vector.reduce.add.v16i32")
        sums = [builder.call(reduce, [builder.load(a)]) for a in accs]
        return context.make_tuple(builder, signature.return_type, sums)

    return sig, codegen


@jit_parallel
def conv_dense_vnni(xu, rows, row_len, wu, kxr, runp, corr, out, sx, dx, ystep):
    """Dense convolution as VNNI dot products over contiguous uint8 runs.

    Parameters
    ----------
    xu : ndarray of uint8, (rows * row_len + 64,)
        Input rows (module docstring); ``rows = N * rows_per_frame``.
    rows : int
        Input rows per frame.
    row_len : int
        Entries per input row.
    wu : ndarray of int8, (C_out * KXr * RUNP,)
        Weights (module docstring).
    kxr, runp : int
        Tap rows per output cell (``KX``, or 1 on gathered rows) and padded run.
    corr : ndarray of int64, (C_out,)
        Subtracted from each sum (module docstring).
    out : ndarray, (N, X_out, Y_out, C_out), int32 or int64
        Every cell is overwritten.
    sx, dx : int
        Input rows between output rows and between tap rows.
    ystep : int
        Entries between the runs of neighbouring output pixels.

    Notes
    -----
    ``prange`` over ``N * X_out`` output rows; iteration ``r`` writes only
    ``out[n, xo]``, so no two iterations write the same cell. Blocks of 4 output
    channels (outer) by 2 output pixels (inner), as in the float32 dot kernel; a last
    odd pixel or channel block repeats its last pixel or channel and writes only the
    real ones.
    """
    n_frames, x_out, y_out, c_out = out.shape
    n_vec = runp // 64
    wk = kxr * runp
    for r in prange(n_frames * x_out):
        n = r // x_out
        xo = r - n * x_out
        orow = out[n, xo]
        first = (n * rows + xo * sx) * row_len
        for k0 in range(0, c_out, 4):
            k1 = min(k0 + 1, c_out - 1)
            k2 = min(k0 + 2, c_out - 1)
            k3 = min(k0 + 3, c_out - 1)
            for y0 in range(0, y_out, 2):
                y1 = min(y0 + 1, y_out - 1)
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0
                for i in range(kxr):
                    base = first + i * dx * row_len
                    wo = i * runp
                    t = _dot_block(xu, base + y0 * ystep, base + y1 * ystep, wu,
                                   k0 * wk + wo, k1 * wk + wo, k2 * wk + wo, k3 * wk + wo,
                                   n_vec)
                    s00 += t[0]
                    s01 += t[1]
                    s02 += t[2]
                    s03 += t[3]
                    s10 += t[4]
                    s11 += t[5]
                    s12 += t[6]
                    s13 += t[7]
                o0 = orow[y0]
                o0[k0] = s00 - corr[k0]
                if k0 + 1 < c_out:
                    o0[k1] = s01 - corr[k1]
                if k0 + 2 < c_out:
                    o0[k2] = s02 - corr[k2]
                if k0 + 3 < c_out:
                    o0[k3] = s03 - corr[k3]
                if y1 != y0:
                    o1 = orow[y1]
                    o1[k0] = s10 - corr[k0]
                    if k0 + 1 < c_out:
                        o1[k1] = s11 - corr[k1]
                    if k0 + 2 < c_out:
                        o1[k2] = s12 - corr[k2]
                    if k0 + 3 < c_out:
                        o1[k3] = s13 - corr[k3]
