"""Probe: the dense dot kernel's inner block as float32 FMAs vs AVX512-VNNI, one thread.

Not a product path: a measurement for the dense aims of WORKLOADS.md (dense graded input
against torch float32). :func:`lavaconv.kernels.dense.conv_dense_dot` computes a block of
2 output pixels x 4 output channels as float32 multiply-adds (exact for integer sums
below ``2**24``). LLVM vectorises that block well in float32, but for int16 inputs it
forms ``vpmaddwd`` only when a loop has a single accumulator (a blocked int16 loop falls
back to ``vpmulld``), and it never forms the VNNI dot instructions from Numba code. This
script emits them by hand (``numba.extending.intrinsic``): ``vpdpwssd`` (pairs of int16)
and ``vpdpbusd`` (quads of uint8 x int8), for the same 2 x 4 block over a run of 576
entries (a padded ``KY * KX * C_in`` run), checks each against an exact int64 dot
product, and prints GMAC/s for the three. Inputs that are int8 would enter ``vpdpbusd``
as ``x XOR 0x80`` (that is, ``x + 128``), the sums corrected by ``128 * sum(w)`` per
output channel.

Run: ``python benchmarks/vnni_probe.py [--out benchmarks/results/vnni_probe.txt]``.
Exits with a message (status 0) on a CPU without AVX512-VNNI or with the JIT disabled.
"""

from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

RUN = 576
_V16 = ir.VectorType(ir.IntType(32), 16)


def _vnni_block(instruction: str):
    """An intrinsic: 8 dot products (2 inputs x 4 weight rows) by one VNNI instruction.

    Arguments ``(a0, a1, w0, w1, w2, w3, n)``: 1-D C-contiguous arrays read as ``n``
    64-byte vectors each. Returns the 8 int32 sums ``(a0.w0, a0.w1, ..., a1.w3)``.
    """

    @intrinsic
    def block(typingctx, a0, a1, w0, w1, w2, w3, n):
        sig = types.UniTuple(types.int32, 8)(a0, a1, w0, w1, w2, w3, n)

        def codegen(context, builder, signature, args):
            ptrs = [builder.bitcast(context.make_array(ty)(context, builder, val).data,
                                    _V16.as_pointer())
                    for ty, val in zip(signature.args[:6], args[:6], strict=True)]
            fnty = ir.FunctionType(_V16, [_V16, _V16, _V16])
            dot = cgutils.get_or_insert_function(builder.module, fnty, instruction)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_V16, [0] * 16))
                    for _ in range(8)]
            with cgutils.for_range(builder, args[6]) as loop:
                vecs = []
                for p in ptrs:
                    load = builder.load(builder.gep(p, [loop.index]))
                    load.align = 1
                    vecs.append(load)
                for r, a in enumerate(vecs[:2]):
                    for k, w in enumerate(vecs[2:]):
                        acc = accs[4 * r + k]
                        builder.store(builder.call(dot, [builder.load(acc), a, w]), acc)
            redty = ir.FunctionType(ir.IntType(32), [_V16])
            reduce = cgutils.get_or_insert_function(builder.module, redty,
                                                    "llvm.vector.reduce.add.v16i32")
            sums = [builder.call(reduce, [builder.load(a)]) for a in accs]
            return context.make_tuple(builder, signature.return_type, sums)

        return sig, codegen

    return block


def _build():
    """Compile the three timed loops (only on a CPU with AVX512-VNNI)."""
    pairs = _vnni_block("llvm.x86.avx512.vpdpwssd.512")
    quads = _vnni_block("llvm.x86.avx512.vpdpbusd.512")

    @numba.njit(nogil=True, fastmath={"reassoc", "contract"})
    def fma32(a0, a1, w0, w1, w2, w3, out, reps):
        # the shape of conv_dense_dot's inner loop: 2 pixels x 4 channels
        for _ in range(reps):
            s00 = out[0]
            s01 = out[1]
            s02 = out[2]
            s03 = out[3]
            s10 = out[4]
            s11 = out[5]
            s12 = out[6]
            s13 = out[7]
            for c in range(a0.shape[0]):
                u = a0[c]
                v = a1[c]
                s00 += u * w0[c]
                s01 += u * w1[c]
                s02 += u * w2[c]
                s03 += u * w3[c]
                s10 += v * w0[c]
                s11 += v * w1[c]
                s12 += v * w2[c]
                s13 += v * w3[c]
            out[0] = s00
            out[1] = s01
            out[2] = s02
            out[3] = s03
            out[4] = s10
            out[5] = s11
            out[6] = s12
            out[7] = s13

    @numba.njit(nogil=True)
    def vpdpwssd(a0, a1, w0, w1, w2, w3, out, reps):
        n = a0.shape[0] // 32
        for _ in range(reps):
            t = pairs(a0, a1, w0, w1, w2, w3, n)
            for k in range(8):
                out[k] += t[k]

    @numba.njit(nogil=True)
    def vpdpbusd(a0, a1, w0, w1, w2, w3, out, reps):
        n = a0.shape[0] // 64
        for _ in range(reps):
            t = quads(a0, a1, w0, w1, w2, w3, n)
            for k in range(8):
                out[k] += t[k]

    return fma32, vpdpwssd, vpdpbusd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200_000, help="blocks per timing")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    features = llvm.get_host_cpu_features()
    if numba.config.DISABLE_JIT or not features.get("avx512vnni", False):
        print("skipped: needs the JIT and a CPU with AVX512-VNNI "
              f"(host {llvm.get_host_cpu_name()})")
        return 0
    fma32, vpdpwssd, vpdpbusd = _build()
    rng = np.random.default_rng()
    x = rng.integers(0, 128, size=(2, RUN))   # graded payloads, as the benchmark draws
    w = rng.integers(-128, 128, size=(4, RUN))  # int8 weights
    want = [int(v) for v in (x @ w.T).reshape(-1)]  # exact int64 dots, (a0.w0, ...)
    cases = {
        "float32 FMA (conv_dense_dot's block)": (fma32, np.float32, np.float32, np.float32),
        "int16 vpdpwssd": (vpdpwssd, np.int16, np.int16, np.int64),
        "uint8 x int8 vpdpbusd": (vpdpbusd, np.uint8, np.int8, np.int64),
    }
    lines = [f"host {llvm.get_host_cpu_name()}, one thread, 2 x 4 block over a run of {RUN}, "
             f"{args.reps} blocks per timing, best of 5, one process"]
    for name, (fn, xdt, wdt, odt) in cases.items():
        arrays = [np.ascontiguousarray(x[i], xdt) for i in range(2)]
        arrays += [np.ascontiguousarray(w[k], wdt) for k in range(4)]
        out = np.zeros(8, odt)
        fn(*arrays, out, 1)  # compile, and check the sums exactly
        exact = [int(v) for v in out] == want
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            fn(*arrays, out, args.reps)
            best = min(best, time.perf_counter() - t0)
        gmacs = 8 * RUN * args.reps / best / 1e9
        lines.append(f"{name:40s} {gmacs:7.1f} GMAC/s  exact: {'yes' if exact else 'NO'}")
        if not exact:
            print("\n".join(lines))
            return 1
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
