"""conv_event_stream vs binning with NumPy then ``lavaconv.utils.conv`` per frame.

The dvs128 layer (WORKLOADS.md: a (128, 128, 2) sensor, 16 5x5 kernels, stride 2,
padding 2), 20 bins of 1 ms, events drawn uniformly over the sensor with
replacement (so some repeat within a bin, as real recordings do) at 0.1 %, 1 % and
5 % of the sensor's entries per bin, in tonic's DVSGesture layout (int16 x, y; bool
p; int64 t). Both sides return ``(X', Y', C_out, T)`` int32 as a time-last view of
time-major frames, so no side pays a transposing copy. Every result is checked
against Lava's algorithm (``conv_scipy`` per NumPy-binned frame) before timing; that
first call is also the JIT warm-up. Seeds are fixed.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from lavaconv import utils
from lavaconv.stream import conv_event_stream
from lavaconv.workloads import WORKLOADS

WORKLOAD = "dvs128"
N_BINS = 20
TIME_WINDOW = 1000  # microseconds, as tonic
DENSITIES = [0.001, 0.01, 0.05]
MODES = ["binary", "counted"]
DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def _ids(name):
    return lambda v: f"{name}={v}"


def numpy_frames(events, sensor_size, n_bins, time_window, binary):
    """Bin into dense ``(T, W, H, P)`` frames with NumPy (the baseline's first half)."""
    b = events["t"] // time_window
    keep = b < n_bins
    idx = (b[keep], events["x"][keep], events["y"][keep], events["p"][keep].astype(np.intp))
    if binary:
        frames = np.zeros((n_bins,) + tuple(sensor_size), bool)
        frames[idx] = True
    else:
        frames = np.zeros((n_bins,) + tuple(sensor_size), np.int32)
        np.add.at(frames, idx, 1)
    return frames


def numpy_then_conv(events, sensor_size, w32, conv_args, n_bins, time_window, binary):
    """The baseline: NumPy binning, then ``utils.conv`` frame by frame."""
    frames = numpy_frames(events, sensor_size, n_bins, time_window, binary)
    out = np.stack([utils.conv(f, w32, *conv_args) for f in frames])
    return np.moveaxis(out, 0, -1)


@functools.cache
def stream_case(density: float, mode: str):
    """``(events, weight, expected)``; expected from ``conv_scipy`` per frame (exact)."""
    wl = WORKLOADS[WORKLOAD]
    _, w = wl.make(0.0, seed=0)
    rng = np.random.default_rng(1)
    sensor = wl.input_shape
    n_cells = int(np.prod(sensor))
    per_bin = max(1, round(density * n_cells))
    cells = rng.integers(0, n_cells, size=N_BINS * per_bin)
    t = (np.repeat(np.arange(N_BINS), per_bin) * TIME_WINDOW
         + rng.integers(0, TIME_WINDOW, size=N_BINS * per_bin))
    order = np.argsort(t, kind="stable")
    x, rem = np.divmod(cells[order], sensor[1] * sensor[2])
    y, p = np.divmod(rem, sensor[2])
    events = np.zeros(t.size, DTYPE)
    events["x"], events["y"], events["p"], events["t"] = x, y, p, t[order]
    frames = numpy_frames(events, sensor, N_BINS, TIME_WINDOW, mode == "binary")
    expected = np.stack([utils.conv_scipy(f, w, *wl.conv_args()) for f in frames], axis=-1)
    assert np.abs(expected).max() < 2**31
    return events, w, expected.astype(np.int64)


def _info(benchmark, density, mode, events):
    benchmark.group = f"{WORKLOAD}-{mode}-density={density}"
    benchmark.extra_info.update(workload=WORKLOAD, density=density, mode=mode, bins=N_BINS,
                                events=int(events.size))


@pytest.mark.parametrize("mode", MODES, ids=_ids("mode"))
@pytest.mark.parametrize("density", DENSITIES, ids=_ids("density"))
def test_conv_event_stream(benchmark, density, mode):
    events, w, expected = stream_case(density, mode)
    wl = WORKLOADS[WORKLOAD]
    kw = dict(stride=wl.stride, padding=wl.padding, dilation=wl.dilation, groups=wl.groups,
              time_window=TIME_WINDOW, n_bins=N_BINS, binary=mode == "binary")
    got = conv_event_stream(events, wl.input_shape, w, **kw)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    _info(benchmark, density, mode, events)
    benchmark(conv_event_stream, events, wl.input_shape, w, **kw)


@pytest.mark.parametrize("mode", MODES, ids=_ids("mode"))
@pytest.mark.parametrize("density", DENSITIES, ids=_ids("density"))
def test_numpy_binning_then_conv(benchmark, density, mode):
    events, w, expected = stream_case(density, mode)
    wl = WORKLOADS[WORKLOAD]
    w32 = w.astype(np.int32)  # utils.conv returns weight.dtype, as Lava: int8 would wrap
    args = (events, wl.input_shape, w32, wl.conv_args(), N_BINS, TIME_WINDOW, mode == "binary")
    got = numpy_then_conv(*args)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)
    _info(benchmark, density, mode, events)
    benchmark(numpy_then_conv, *args)
