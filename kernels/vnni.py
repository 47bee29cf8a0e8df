"""Dense convolution by AVX512-VNNI (``vpdpbusd``): uint8 inputs times int8 weights.

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

Depthwise layers
----------------
A depthwise layer sums per channel, so the four bytes ``vpdpbusd`` adds into one int32
lane must be four taps of one channel, not four channels of one pixel as the input
holds them. :func:`_pack_row` builds that layout per input row: ``q[g, yo, c]``
(uint32) holds in byte ``t`` the input of column tap ``j = 4 g + t`` of output column
``yo`` (``x[xi, yo * sy + j * dy - py, c]``, the border ``fill``; an unused slot holds
``fill`` or a copy of slot 0, its weights being 0), so
that :func:`conv_depthwise_vnni` sums a cell of 16 channels with one ``vpdpbusd`` per
kernel row and tap group (3 on a 3 x 3 kernel, against 9 float32 multiply-adds per 16
channels in :mod:`.dense`), whatever the layer's Y stride and dilation. Each input row
is packed once per band of output rows and read by every output row whose kernel
reaches it. Weights ``wq[i, g, c]`` (int32 holding 4 int8) are packed the same way,
zero in the unused slots and channels; ``init[(lo * (KX + 1) + hi) * C16 + c]`` is the
lane's start value when kernel rows ``lo..hi-1`` lie inside the input: ``-128`` times
their weights' sum for int8 input stored as ``x XOR 0x80`` (``fill = 0x80808080``),
else 0.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import jit_parallel, jit_serial
from .dense import _rows_inside

__all__ = ["conv_dense_vnni", "conv_depthwise_vnni"]

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


def _cells_intrinsic(n_cells):
    """Build an intrinsic storing ``n_cells`` cells of 16 int32 lanes by ``vpdpbusd``.

    ``f(q, toff, q_off, n_taps, w, w_off, w_step, init, i_off, out, o_off, cell_q,
    cell_i, cell_o)``: lane ``l`` of cell ``k`` at ``out[o_off + k * cell_o + l]``
    becomes ``init[i_off + k * cell_i + l]`` plus, for each tap ``t < n_taps``, the dot
    product of the four bytes of ``q[toff[t] + q_off + k * cell_q + l]`` (uint8) with
    those of ``w[w_off + t * w_step + l]`` (int8); ``q``, ``w``, ``init`` and ``out``
    hold 32-bit elements, ``toff`` int64 offsets. Each tap's weights are loaded once
    for all cells, whose sums are independent chains.
    """

    @intrinsic
    def cells(typingctx, q, toff, q_off, n_taps, w, w_off, w_step, init, i_off, out,
              o_off, cell_q, cell_i, cell_o):
        sig = types.void(q, toff, q_off, n_taps, w, w_off, w_step, init, i_off, out,
                         o_off, cell_q, cell_i, cell_o)

        def codegen(context, builder, signature, args):
            i32p = ir.IntType(32).as_pointer()

            def data(arg):
                return context.make_array(signature.args[arg])(context, builder,
                                                               args[arg]).data

            def vec(pointer, *offsets):
                off = offsets[0]
                for o in offsets[1:]:
                    off = builder.add(off, o)
                return builder.bitcast(builder.gep(pointer, [off]), _V16.as_pointer())

            qp, wp, ip, op = (builder.bitcast(data(a), i32p) for a in (0, 4, 7, 9))
            tp = data(1)
            fnty = ir.FunctionType(_V16, [_V16, _V16, _V16])
            dot = cgutils.get_or_insert_function(builder.module, fnty,
                                                 "llvm.x86.avx512.vpdpbusd.512")
            koff = [[builder.mul(ir.Constant(args[11].type, k), args[a]) for a in (11, 12, 13)]
                    for k in range(n_cells)]
            accs = []
            for k in range(n_cells):
                first = builder.load(vec(ip, args[8], koff[k][1]))
                first.align = 4
                accs.append(cgutils.alloca_once_value(builder, first))
            with cgutils.for_range(builder, args[3]) as loop:
                wv = builder.load(vec(wp, args[5], builder.mul(loop.index, args[6])))
                wv.align = 4
                qt = builder.add(builder.load(builder.gep(tp, [loop.index])), args[2])
                for k in range(n_cells):
                    qv = builder.load(vec(qp, qt, koff[k][0]))
                    qv.align = 4
                    builder.store(builder.call(dot, [builder.load(accs[k]), qv, wv]), accs[k])
            for k in range(n_cells):
                store = builder.store(builder.load(accs[k]), vec(op, args[10], koff[k][2]))
                store.align = 4
            return context.get_dummy_value()

        return sig, codegen

    return cells


#: Four cells at a time (independent chains, weights loaded once), and one.
_dw_cells4 = _cells_intrinsic(4)
_dw_cell = _cells_intrinsic(1)


@jit_serial
def _pack_row(xrow, qrow, c_in, ky, sy, dy, py, fill, cap):
    """Pack one input row's column taps four to a uint32 (module docstring).

    Parameters
    ----------
    xrow : ndarray of uint8, (Y * C,)
        One input row (int8 input as its bytes).
    qrow : ndarray of uint32, (G, Y_out, C16)
        Every cell is written: ``G = ceil(KY / 4)``, ``C16`` is ``C`` rounded up to 16.
    c_in, ky, sy, dy, py : int
        Channels, kernel height, Y stride, Y dilation, Y padding.
    fill : uint32
        Start value of every cell (0, or ``0x80808080`` for int8 input, whose bytes are
        then XORed in: ``fill ^ b`` is ``x + 128`` in every slot, the border ``0x80``).
    cap : uint8
        Bytes are read as ``min(b, cap)``: 1 for bool input (any non-zero byte is True,
        as NumPy reads it), 255 otherwise.
    """
    n_groups, y_out, c16 = qrow.shape
    y_in = xrow.shape[0] // c_in
    for g in range(n_groups):
        # the group's taps (a missing fourth reads tap 4g's input: its weights are 0)
        j0 = 4 * g
        j1 = j0 + 1 if j0 + 1 < ky else j0
        j2 = j0 + 2 if j0 + 2 < ky else j0
        j3 = j0 + 3 if j0 + 3 < ky else j0
        # output columns where all of the group's taps lie inside the input
        lo = 0
        while lo < y_out and lo * sy + j0 * dy - py < 0:
            lo += 1
        hi = y_out
        while hi > lo and (hi - 1) * sy + min(j0 + 3, ky - 1) * dy - py >= y_in:
            hi -= 1
        plane = qrow[g]
        if sy == 1 and c16 == c_in and lo < hi:  # one contiguous run over those columns
            n_e = (hi - lo) * c_in
            dst = plane.reshape(y_out * c16)[lo * c16:hi * c16]
            a0 = xrow[(lo + j0 * dy - py) * c_in:][:n_e]
            a1 = xrow[(lo + j1 * dy - py) * c_in:][:n_e]
            a2 = xrow[(lo + j2 * dy - py) * c_in:][:n_e]
            a3 = xrow[(lo + j3 * dy - py) * c_in:][:n_e]
            for e in range(n_e):
                dst[e] = fill ^ (np.uint32(min(a0[e], cap))
                                 | (np.uint32(min(a1[e], cap)) << np.uint32(8))
                                 | (np.uint32(min(a2[e], cap)) << np.uint32(16))
                                 | (np.uint32(min(a3[e], cap)) << np.uint32(24)))
        for yo in range(y_out):
            if sy == 1 and c16 == c_in and lo <= yo < hi:
                continue
            dst = plane[yo]
            dst[:] = fill
            for j in range(j0, min(j0 + 4, ky)):
                yi = yo * sy + j * dy - py
                if 0 <= yi < y_in:
                    shift = np.uint32(8 * (j - j0))
                    src = xrow[yi * c_in:(yi + 1) * c_in]
                    for c in range(c_in):
                        dst[c] ^= np.uint32(min(src[c], cap)) << shift


@jit_parallel
def conv_depthwise_vnni(x, wq, init, out, c_in, ky, sx, sy, dx, dy, px, py, fill, cap,
                        n_bands):
    """Depthwise convolution by ``vpdpbusd`` on packed taps (module docstring).

    Parameters
    ----------
    x : ndarray of uint8, (N, X, Y * C)
        Input frames (int8 input as its bytes).
    wq : ndarray of int32, (KX, G, C16)
        Packed correlation-ordered weights, 4 int8 each (module docstring).
    init : ndarray of int32, ((KX + 1) ** 2 * C16,)
        Lane start values per range of kernel rows inside the input (module docstring).
    out : ndarray of int32, (N, X_out, Y_out, C)
        Every cell is overwritten.
    c_in, ky, sx, sy, dx, dy, px, py : int
        Channels, kernel height, strides, dilations, padding.
    fill, cap : uint32, uint8
        As :func:`_pack_row`.
    n_bands : int
        Contiguous bands of output rows, one ``prange`` iteration each.

    Notes
    -----
    Each band packs the input rows its kernel window reaches into a private ring of
    ``(KX - 1) * dx + 1`` packed rows (row ``xi`` in slot ``xi % R``), each row once as
    the window moves down, so the packed rows stay in cache instead of a whole packed
    frame streaming through memory (measured on ``depthwise``: 1.6 MB packed ahead,
    conv 67 us + pack 43 us). Iteration ``b`` writes only its band's rows of ``out``
    (a last block of fewer than 16 channels through a private 16-lane buffer), so no
    two iterations write the same cell. Sums stay within int32: the caller keeps
    ``KX * G * 4 * 255 * 128`` below ``2**31``.
    """
    n_frames, x_in, _ = x.shape
    _, x_out, y_out, c_out = out.shape
    kx, n_groups, c16 = wq.shape
    span = (kx - 1) * dx + 1
    gplane = y_out * c16
    plane = n_groups * gplane
    full = c_out - c_out % 16
    y4 = y_out - y_out % 4
    w_step = n_groups * c16
    total = n_frames * x_out
    for b in prange(n_bands):
        ring = np.empty((span, n_groups, y_out, c16), np.uint32)
        held = np.full(span, -1, np.int64)
        toff = np.empty(kx, np.int64)
        tail = np.empty(16, np.int32)
        for r in range(b * total // n_bands, (b + 1) * total // n_bands):
            n = r // x_out
            xo = r - n * x_out
            lo, hi = _rows_inside(xo, kx, sx, dx, px, x_in)
            for i in range(lo, hi):  # pack the rows the window reaches, each once
                xi = xo * sx + i * dx - px
                slot = xi % span
                if held[slot] != n * x_in + xi:
                    _pack_row(x[n, xi], ring[slot], c_in, ky, sy, dy, py, fill, cap)
                    held[slot] = n * x_in + xi
            orow = out[n, xo]
            if lo >= hi:
                orow[:] = 0
                continue
            n_taps = hi - lo
            for t in range(n_taps):
                toff[t] = ((xo * sx + (lo + t) * dx - px) % span) * plane
            i0 = (lo * (kx + 1) + hi) * c16
            ob = r * y_out * c_out
            for g in range(n_groups):
                wb = (lo * n_groups + g) * c16
                for c0 in range(0, full, 16):
                    for yo in range(0, y4, 4):
                        qo = g * gplane + yo * c16 + c0
                        o = ob + yo * c_out + c0
                        if g == 0:
                            _dw_cells4(ring, toff, qo, n_taps, wq, wb + c0, w_step,
                                       init, i0 + c0, out, o, c16, 0, c_out)
                        else:
                            _dw_cells4(ring, toff, qo, n_taps, wq, wb + c0, w_step,
                                       out, o, out, o, c16, c_out, c_out)
                    for yo in range(y4, y_out):
                        qo = g * gplane + yo * c16 + c0
                        o = ob + yo * c_out + c0
                        if g == 0:
                            _dw_cell(ring, toff, qo, n_taps, wq, wb + c0, w_step,
                                     init, i0 + c0, out, o, 0, 0, 0)
                        else:
                            _dw_cell(ring, toff, qo, n_taps, wq, wb + c0, w_step,
                                     out, o, out, o, 0, 0, 0)
            if full < c_out:  # the last block of fewer than 16 channels, via ``tail``
                for yo in range(y_out):
                    qo = yo * c16 + full
                    _dw_cell(ring, toff, qo, n_taps, wq, lo * w_step + full, w_step,
                             init, i0 + full, tail, 0, 0, 0, 0)
                    for g in range(1, n_groups):
                        _dw_cell(ring, toff, qo + g * gplane, n_taps, wq,
                                 (lo * n_groups + g) * c16 + full, w_step, tail, 0, tail,
                                 0, 0, 0, 0)
                    o = orow[yo]
                    for c in range(full, c_out):
                        o[c] = tail[c - full]


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
