"""Dense path vs Lava's algorithm (conv_scipy) and torch conv2d, on the WORKLOADS.md layers.

Run: ``pytest benchmarks/test_bench_dense.py --benchmark-group-by=param:workload``.
Each group then lists our kernel, conv_scipy and torch side by side, with the ratio
to the fastest in parentheses. Inputs are graded ints 1..127 at 100 % density.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import case, torch_conv

from lavaconv import utils
from lavaconv.engine import ConvEngine
from lavaconv.workloads import WORKLOADS

NAMES = list(WORKLOADS)


def _throughput(benchmark, name):
    macs = WORKLOADS[name].geometry.dense_macs
    benchmark.extra_info["dense_macs"] = macs
    if benchmark.stats is not None and benchmark.stats.stats.min:
        benchmark.extra_info["gmac_per_s"] = macs / benchmark.stats.stats.min / 1e9


@pytest.mark.parametrize("workload", NAMES)
def test_lavaconv_conv(benchmark, workload):
    """The public function, as users call it (validation, engine set-up, cast back)."""
    x, w, expected = case(workload, "graded")
    args = WORKLOADS[workload].conv_args()
    w32 = w.astype(np.int32)
    np.testing.assert_array_equal(utils.conv(x, w32, *args), expected)
    benchmark(utils.conv, x, w32, *args)
    _throughput(benchmark, workload)


@pytest.mark.parametrize("workload", NAMES)
def test_dense_kernel(benchmark, workload):
    """The dense kernel through a prepared engine (what the models call each step)."""
    x, w, expected = case(workload, "graded")
    engine = ConvEngine(w, WORKLOADS[workload].geometry)
    frames = x[None]
    np.testing.assert_array_equal(engine.exact(frames, input_max_abs=127)[0], expected)
    benchmark(engine.exact, frames, input_max_abs=127)
    _throughput(benchmark, workload)


@pytest.mark.parametrize("workload", NAMES)
def test_conv_scipy(benchmark, workload):
    """Lava's algorithm (one scipy.signal.convolve2d per channel pair)."""
    x, w, expected = case(workload, "graded")
    benchmark.pedantic(utils.conv_scipy, (x, w, *WORKLOADS[workload].conv_args()),
                       rounds=3, iterations=1, warmup_rounds=0)
    _throughput(benchmark, workload)


@pytest.mark.parametrize("workload", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_conv2d(benchmark, workload, dtype, needs_torch):
    x, w, expected = case(workload, "graded")
    run = torch_conv(workload, x, w, getattr(np, dtype))
    y = run()[0].numpy().transpose(2, 1, 0)
    np.testing.assert_array_equal(y.astype(np.int64), expected)  # exact below 2**24 here
    benchmark(run)
    _throughput(benchmark, workload)
