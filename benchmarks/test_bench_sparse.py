"""conv_to_sparse vs a per-output-pixel Python loop (the algorithm Lava 0.10 uses).

Lava does not install on Python 3.11, so its function cannot run here; the baseline
below is our own transcription of the same algorithm (a Python loop over output
pixels and kernel taps, NumPy meshgrids per tap), NWHC only, and it doubles as an
independent check of the indices. Lava's own timings on this machine are quoted in
WORKLOADS.md (0.5 s, 2.9 s, 11.5 s).
"""

from __future__ import annotations

import numpy as np
import pytest

from lavaconv.utils import conv_to_sparse
from lavaconv.workloads import WORKLOADS

NAMES = ["nmnist", "dvs128", "mid"]


def python_loop_sparse(input_shape, output_shape, kernel, stride, padding, dilation, groups):
    """NWHC COO triplets, one Python iteration per (group, output pixel, valid tap)."""
    xi, yi, ci = input_shape
    xo, yo, co = output_shape
    _, kx, ky, cg = kernel.shape
    kg = co // groups
    dsts, srcs, wgts = [], [], []
    for g in range(groups):
        c_dst = np.arange(kg) + g * kg
        c_src = np.arange(cg) + g * cg
        for y in range(yo):
            for x in range(xo):
                dst = (x * yo + y) * co + c_dst
                for j in range(ky):
                    for i in range(kx):
                        px = x * stride + i * dilation - padding
                        py = y * stride + j * dilation - padding
                        if not (0 <= px < xi and 0 <= py < yi):
                            continue
                        src = (px * yi + py) * ci + c_src
                        ss, dd = np.meshgrid(src, dst)
                        dsts.append(dd.ravel())
                        srcs.append(ss.ravel())
                        wgts.append(kernel[c_dst, kx - 1 - i, ky - 1 - j, :].ravel())
    return np.concatenate(dsts), np.concatenate(srcs), np.concatenate(wgts)


def _args(name):
    wl = WORKLOADS[name]
    _, w = wl.make(0.0)
    g = wl.geometry
    return (g.input_shape, g.output_shape, w, wl.stride, wl.padding, wl.dilation, wl.groups)


@pytest.mark.parametrize("workload", NAMES)
def test_conv_to_sparse(benchmark, workload):
    args = _args(workload)
    benchmark.extra_info["nnz"] = int(conv_to_sparse(*args)[0].size)
    benchmark(conv_to_sparse, *args)


@pytest.mark.parametrize("workload", NAMES)
def test_python_loop_baseline(benchmark, workload):
    args = _args(workload)
    got = benchmark.pedantic(python_loop_sparse, args, rounds=1, iterations=1)
    ours = conv_to_sparse(*args)
    for a, b in zip(ours, got, strict=True):  # same triplets, same order
        np.testing.assert_array_equal(a, b)
