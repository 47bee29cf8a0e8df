"""A T-step simulation vs T single kernel calls (WORKLOADS.md: "<= 1.1x T single steps").

Run: ``pytest benchmarks/test_bench_run.py --benchmark-group-by=param:workload,param:density``.
Each group lists, for T = 100 binary frames at one density:

* ``mode=run``: ``PyConvModelFixed(conv).run(data)`` on ``(X, Y, C, T)`` int8 data, all
  of it: input checks, the spike rule, the time-last layout, the delay, the 24-bit wrap;
* ``mode=run_out``: the same with ``out=`` the buffer of an earlier run, as a simulation
  run chunk by chunk would (no fresh 80 MB result to fault in on ``vgg``);
* ``mode=single``: ``T`` calls of ``engine.exact`` on one prepared bool frame each
  (the kernel alone, the WORKLOADS.md baseline);
* ``mode=batch``: one ``engine.exact`` call over all ``T`` prepared frames (the floor);
* ``mode=steps``: ``T`` calls of ``model.step(data[..., t])``, what a user would
  otherwise write.

The target is ``run / single <= 1.1``.
"""

from __future__ import annotations

import numpy as np
import pytest

from lavaconv import Conv, PyConvModelFixed, utils
from lavaconv.engine import ConvEngine
from lavaconv.workloads import WORKLOADS

T = 100
CASES = [(w, d) for w in ("dvs128", "vgg") for d in (0.01, 0.05)]


def _setup(workload: str, density: float):
    wl = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    _, weight = wl.make(density, seed=0)
    data = (rng.random(wl.input_shape + (T,)) < density).astype(np.int8)
    conv = Conv(weight=weight, input_shape=wl.input_shape, padding=wl.padding,
                stride=wl.stride, dilation=wl.dilation, groups=wl.groups)
    frames = np.ascontiguousarray(np.moveaxis(data, -1, 0) != 0)
    return wl, weight, data, conv, frames


@pytest.mark.parametrize("mode", ["run", "run_out", "single", "batch", "steps"])
@pytest.mark.parametrize("workload,density", CASES)
def test_run_vs_single_steps(benchmark, workload, density, mode):
    wl, weight, data, conv, frames = _setup(workload, density)
    model = PyConvModelFixed(conv)
    engine = ConvEngine(weight, wl.geometry)
    # Check first (also the JIT warm-up): the delayed run equals the single calls,
    # and two of them equal Lava's algorithm (conv_scipy, exact in float64 here).
    out = model.run(data)
    assert not out[..., 0].any()
    for t in (0, T // 2, T - 2):
        single = engine.exact(frames[t:t + 1], input_max_abs=1)[0]
        np.testing.assert_array_equal(out[..., t + 1], single)
    for t in (0, T - 2):
        ref = utils.conv_scipy(data[..., t], weight, *wl.conv_args())
        np.testing.assert_array_equal(out[..., t + 1], ref.astype(np.int64))
    engine.exact(frames, input_max_abs=1)

    if mode == "run":
        def fn():
            model.reset()
            return model.run(data)
    elif mode == "run_out":
        buf = model.run(data)

        def fn():
            model.reset()
            return model.run(data, out=buf)
    elif mode == "steps":
        def fn():
            model.reset()
            return [model.step(data[..., t]) for t in range(T)]
    elif mode == "single":
        def fn():
            return [engine.exact(frames[t:t + 1], input_max_abs=1) for t in range(T)]
    else:
        def fn():
            return engine.exact(frames, input_max_abs=1)

    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["T"] = T
    if benchmark.stats is not None and benchmark.stats.stats.min:
        benchmark.extra_info["steps_per_s"] = T / benchmark.stats.stats.min
