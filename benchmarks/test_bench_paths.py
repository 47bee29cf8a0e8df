"""Dense, event-driven and automatic paths on the WORKLOADS.md layers and densities.

Run: ``pytest benchmarks/test_bench_paths.py --benchmark-group-by=param:workload,param:density``.
Each group lists our three paths and torch float32 side by side. Every result is
checked against ``conv_scipy`` before timing (that call also compiles). The
benchmark's ``extra_info`` holds the events, the synaptic operations the event
path performs (events x fan-out) and the dense multiply-add count.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import case, torch_conv

from lavaconv.engine import ConvEngine
from lavaconv.workloads import DENSITIES, WORKLOADS

NAMES = list(WORKLOADS)
LEVELS = list(DENSITIES) + ["graded"]


@pytest.mark.parametrize("density", LEVELS)
@pytest.mark.parametrize("workload", NAMES)
@pytest.mark.parametrize("path", ["dense", "events", "auto"])
def test_path(benchmark, workload, density, path):
    x, w, expected = case(workload, density)
    engine = ConvEngine(w, WORKLOADS[workload].geometry)
    frames = x[None]
    bound = 127 if density == "graded" else 1

    def run():
        return engine.exact(frames, input_max_abs=bound, path=path, out_dtype=np.int32)

    np.testing.assert_array_equal(run()[0], expected)
    benchmark.extra_info.update(
        events=int(np.count_nonzero(x)), synaptic_ops=engine.synaptic_ops(frames),
        dense_macs=WORKLOADS[workload].geometry.dense_macs)
    benchmark(run)


@pytest.mark.parametrize("density", LEVELS)
@pytest.mark.parametrize("workload", NAMES)
def test_torch_float32(benchmark, workload, density, needs_torch):
    x, w, expected = case(workload, density)
    run = torch_conv(workload, x, w, np.float32)
    np.testing.assert_array_equal(run()[0].numpy().transpose(2, 1, 0), expected)
    benchmark(run)
