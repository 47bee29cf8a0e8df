"""Shared fixtures for the benchmarks: one registry of workloads (lavaconv.workloads).

Every benchmark checks its result against the reference before timing; that first
call is also the JIT warm-up, so compilation never lands in a timed round.
Seeds are fixed, so every run times the same arrays.
"""

from __future__ import annotations

import functools
import platform

import numpy as np
import pytest

from lavaconv import utils
from lavaconv.workloads import WORKLOADS

try:  # optional comparison
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

TORCH_THREADS = 2


@functools.cache
def case(name: str, density):
    """``(input, weight, expected)`` for a workload; expected from ``conv_scipy`` (exact here)."""
    wl = WORKLOADS[name]
    x, w = wl.make(density, seed=0)
    expected = utils.conv_scipy(x, w, *wl.conv_args())
    assert np.abs(expected).max() < 2**53  # float64 reference is exact
    return x, w, expected.astype(np.int64)


def torch_conv(name: str, x: np.ndarray, w: np.ndarray, dtype):
    """A torch conv2d closure on tensors converted outside the timed region (SPEC section 1)."""
    wl = WORKLOADS[name]
    g = wl.geometry
    torch.set_num_threads(TORCH_THREADS)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)).astype(dtype))[None]
    wt = torch.from_numpy(w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1].astype(dtype).copy())
    kw = dict(stride=g.stride[::-1], padding=g.padding[::-1], dilation=g.dilation[::-1],
              groups=g.groups)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, **kw)

    return run


def pytest_configure(config):
    # Pin glibc's malloc thresholds before anything is timed (both sides; see
    # lavaconv.bench.tune_malloc for the measured effect).
    from lavaconv.bench import tune_malloc

    config._lavaconv_malloc_tuned = tune_malloc()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["lavaconv_note"] = (
        f"{platform.processor() or platform.machine()}, torch threads {TORCH_THREADS}, "
        f"torch {'not installed' if torch is None else torch.__version__}, "
        f"malloc thresholds pinned: {getattr(config, '_lavaconv_malloc_tuned', False)}"
    )


@pytest.fixture
def needs_torch():
    if torch is None:
        pytest.skip("torch not installed: torch comparison skipped")
