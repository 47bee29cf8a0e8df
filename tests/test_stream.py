"""conv_event_stream against a plain NumPy reference: bin into dense frames, convolve each.

The reference (``stream_reference``) is written from SPEC section 12 and shares no
code with lavaconv: bins by ``(t - t_start) // time_window``, dense frames by
``np.add.at`` (cast to bool for binary spikes), then ``conv_reference`` per bin.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_reference
from strategies import geometries, int8_weights, seeds

from lavaconv.stream import conv_event_stream

TONIC = np.dtype([("x", np.int64), ("y", np.int64), ("p", np.int64), ("t", np.int64)])
# tonic's DVSGesture layout (bool polarity, int16 coordinates), a small unsigned one,
# and one with an extra field and another field order
LAYOUTS = {
    "tonic-int64": TONIC,
    "dvsgesture": np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]),
    "unsigned": np.dtype([("x", np.uint8), ("y", np.uint16), ("p", np.uint8),
                          ("t", np.uint32)]),
    "extra-field": np.dtype([("t", np.int64), ("s", np.float32), ("p", np.int8),
                             ("y", np.int32), ("x", np.int32)]),
}


def make_events(x, y, p, t, dtype=TONIC):
    ev = np.zeros(len(t), dtype=dtype)
    for name, values in zip("xypt", (x, y, p, t), strict=True):
        ev[name] = values
    return ev


def stream_reference(events, sensor_size, weight, stride, padding, dilation, groups,
                     time_window, t_start=0, n_bins=None, binary=True):
    """SPEC 12: bin k holds t_start + k*tw <= t < t_start + (k+1)*tw; frames, then conv."""
    t = np.array([int(v) for v in events["t"]], dtype=object)
    bins = np.array([(int(v) - t_start) // time_window for v in t], dtype=np.int64)
    if n_bins is None:
        n_bins = int(bins.max()) + 1 if bins.size else 0
    keep = bins < n_bins
    frames = np.zeros((n_bins,) + tuple(sensor_size), np.int64)
    idx = tuple(np.asarray(events[f]).astype(np.int64)[keep] for f in "xyp")
    np.add.at(frames, (bins[keep],) + idx, 1)
    if binary:
        frames = frames.astype(bool)
    outs = [conv_reference(f, weight, stride, padding, dilation, groups) for f in frames]
    if not outs:  # shape of an empty result from a one-frame reference
        shape = conv_reference(np.zeros(sensor_size, np.int64), weight, stride, padding,
                               dilation, groups).shape
        return np.zeros(shape + (0,))
    return np.stack(outs, axis=-1)


def _geo(g):
    return (g["stride"], g["padding"], g["dilation"], g["groups"])


@st.composite
def streams(draw, g):
    """Events inside the sensor ``g['input_shape']``, sorted, with repeats and gaps."""
    rng = np.random.default_rng(draw(seeds()))
    w_, h_, p_ = g["input_shape"]
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    if layout == "dvsgesture" and p_ > 2:
        layout = "tonic-int64"
    n = draw(st.integers(0, 60))
    # a small pool of cells makes repeats within a bin likely
    pool = draw(st.sampled_from([1, 3, 1000]))
    cells = rng.integers(0, w_ * h_ * p_, size=min(pool, w_ * h_ * p_))
    cell = rng.choice(cells, size=n)
    x, rem = np.divmod(cell, h_ * p_)
    y, p = np.divmod(rem, p_)
    time_window = draw(st.integers(1, 6))
    unsigned = layout == "unsigned"
    t_start = draw(st.integers(0 if unsigned else -20, 20))
    gaps = rng.integers(0, draw(st.sampled_from([1, 3, 15])) + 1, size=n)  # 0: same time
    t = t_start + draw(st.integers(0, 8)) + np.cumsum(gaps)
    return make_events(x, y, p, t, LAYOUTS[layout]), time_window, t_start


@given(g=geometries(max_size=7), data=st.data(), binary=st.booleans(),
       n_bins=st.sampled_from([None, None, 0, 1, 3, 7]))
def test_matches_reference(g, data, binary, n_bins):
    events, tw, t0 = data.draw(streams(g))
    rng = np.random.default_rng(data.draw(seeds()))
    w = int8_weights(rng, g["weight_shape"])
    before = events.copy()
    got = conv_event_stream(events, g["input_shape"], w, *_geo(g), time_window=tw,
                            t_start=t0, n_bins=n_bins, binary=binary)
    expected = stream_reference(events, g["input_shape"], w, *_geo(g), tw, t0, n_bins, binary)
    assert got.dtype == np.int32
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(events, before)  # the input is not modified


@given(g=geometries(max_size=6), data=st.data(), binary=st.booleans())
def test_float_weights(g, data, binary):
    events, tw, t0 = data.draw(streams(g))
    rng = np.random.default_rng(data.draw(seeds()))
    # integer-valued float32 weights: every sum is an integer below 2**24, so exact
    w8 = int8_weights(rng, g["weight_shape"])
    expected = stream_reference(events, g["input_shape"], w8, *_geo(g), tw, t0, None, binary)
    for dtype in (np.float16, np.float32):
        got = conv_event_stream(events, g["input_shape"], w8.astype(dtype), *_geo(g),
                                time_window=tw, t_start=t0, binary=binary)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected.astype(np.float64))
    # real-valued float64 weights: the sum order differs from the reference's, so
    # compare with a tolerance relative to the sum of |terms| (bounded by count * l1)
    wf = rng.standard_normal(g["weight_shape"])
    got = conv_event_stream(events, g["input_shape"], wf, *_geo(g), time_window=tw,
                            t_start=t0, binary=binary)
    expected = stream_reference(events, g["input_shape"], wf, *_geo(g), tw, t0, None, binary)
    assert got.dtype == np.float64
    scale = max(1.0, float(np.abs(wf).sum())) * max(1, len(events))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * scale)


# -- known answers, derived by hand -------------------------------------------------------
# Sensor (4, 3, 1), one output channel, 2x2 kernel W[0, a, b, 0] = [[1, 2], [3, 4]],
# stride 1, no padding: output (3, 2, 1). SPEC 1 read from the input's side: an event
# at (x, y) reaches out[x - i, y - j] through tap (i, j) with weight W[1 - i, 1 - j],
# i.e. it adds W[a, b] at out[x - 1 + a, y - 1 + b] (the kernel, unflipped, with its
# corner at (x - 1, y - 1)), wherever that lies inside the output.
KNOWN_W = np.array([[1, 2], [3, 4]], np.int8).reshape(1, 2, 2, 1)
KNOWN_EVENTS = make_events(
    x=[1, 1, 3, 0, 1],
    y=[1, 1, 2, 0, 1],
    p=[0, 0, 0, 0, 0],
    t=[100, 104, 109, 125, 130],  # time_window 10, t_start 100: bins 0, 0, 0, 2, 3
)


def _frames(*bins):
    return np.stack([np.array(b, np.int32).reshape(3, 2, 1) for b in bins], axis=-1)


def test_known_answer_binary():
    # bin 0: (1, 1) twice = once -> out[0:2, 0:2] = W; (3, 2) -> only a = b = 0 lands,
    #        out[2, 1] += W[0, 0] = 1.
    # bin 1: no events. bin 2: (0, 0) -> only a = b = 1 lands, out[0, 0] += W[1, 1] = 4.
    # bin 3: (1, 1) -> out[0:2, 0:2] = W.
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W, time_window=10, t_start=100)
    expected = _frames([[1, 2], [3, 4], [0, 1]], [[0, 0], [0, 0], [0, 0]],
                       [[4, 0], [0, 0], [0, 0]], [[1, 2], [3, 4], [0, 0]])
    assert got.dtype == np.int32 and got.shape == (3, 2, 1, 4)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_known_answer_weight_dtypes(dtype):
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W.astype(dtype), time_window=10,
                            t_start=100, n_bins=1)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _frames([[1, 2], [3, 4], [0, 1]]))
    # bool weights are 0/1 integers: all True -> every output the events reach counts them
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), np.ones((1, 2, 2, 1), bool),
                            time_window=10, t_start=100, n_bins=1, binary=False)
    np.testing.assert_array_equal(got, _frames([[2, 2], [2, 2], [0, 1]]))


def test_known_answer_counted_and_n_bins():
    # counted: bin 0's two events at (1, 1) are payload 2 -> 2 * W there.
    # n_bins=3: bin 3 (t = 130 >= 100 + 3 * 10) is dropped.
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W, time_window=10, t_start=100,
                            n_bins=3, binary=False)
    expected = _frames([[2, 4], [6, 8], [0, 1]], [[0, 0], [0, 0], [0, 0]],
                       [[4, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(got, expected)
    # n_bins beyond the last event: trailing empty bins are zeros
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W, time_window=10, t_start=100,
                            n_bins=6)
    assert got.shape == (3, 2, 1, 6)
    assert not got[..., 4:].any()


def test_known_answer_groups_stride_padding():
    # Two polarities, groups=2, 1x1 kernel: channel 0 -> output 0 with weight 5,
    # channel 1 -> output 1 with weight -7. Stride 2, padding 1 on a (5, 4) sensor:
    # output x = (5 + 2 - 1) // 2 + 1 = 4, y = (4 + 2 - 1) // 2 + 1 = 3, and an event
    # at (x, y) lands at ((x + 1) / 2, (y + 1) / 2) when both are odd, else nowhere.
    w = np.array([5, -7], np.int16).reshape(2, 1, 1, 1)
    ev = make_events(x=[3, 3, 2, 1], y=[1, 1, 1, 3], p=[1, 1, 0, 0], t=[0, 0, 1, 2])
    got = conv_event_stream(ev, (5, 4, 2), w, stride=2, padding=1, groups=2,
                            time_window=3, binary=False)
    expected = np.zeros((4, 3, 2, 1), np.int32)
    expected[2, 1, 1, 0] = 2 * -7  # (3, 1) twice, polarity 1 -> output channel 1
    expected[1, 2, 0, 0] = 5  # (1, 3), polarity 0; (2, 1) is skipped by the stride
    np.testing.assert_array_equal(got, expected)


def test_empty_streams():
    w = KNOWN_W
    empty = make_events([], [], [], [])
    got = conv_event_stream(empty, (4, 3, 1), w, time_window=10)
    assert got.shape == (3, 2, 1, 0) and got.dtype == np.int32
    got = conv_event_stream(empty, (4, 3, 1), w, time_window=10, n_bins=4)
    assert got.shape == (3, 2, 1, 4) and not got.any()
    got = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), w, time_window=10, t_start=100,
                            n_bins=0)
    assert got.shape == (3, 2, 1, 0)
    got = conv_event_stream(empty, (4, 3, 1), w.astype(np.float64), time_window=10)
    assert got.shape == (3, 2, 1, 0) and got.dtype == np.float64


def test_record_array_and_large_timestamps():
    t0 = 2**62
    ev = np.rec.fromarrays([np.array([1, 1]), np.array([1, 1]), np.array([0, 0]),
                            np.array([t0 + 5, t0 + 2**40])], names="x,y,p,t")
    got = conv_event_stream(ev, (4, 3, 1), KNOWN_W, time_window=2**39, t_start=t0)
    assert got.shape == (3, 2, 1, 3)  # bins 0 and 2
    expected = _frames([[1, 2], [3, 4], [0, 0]], [[0] * 2] * 3, [[1, 2], [3, 4], [0, 0]])
    np.testing.assert_array_equal(got, expected)
    # uint64 times below 2**63 are fine
    ev = make_events([1], [1], [0], [2**63 - 1], np.dtype(
        [("x", np.int64), ("y", np.int64), ("p", np.int64), ("t", np.uint64)]))
    got = conv_event_stream(ev, (4, 3, 1), KNOWN_W, time_window=2**62, t_start=2**62)
    assert got.shape == (3, 2, 1, 1)


def test_weight_changed_in_place_gives_new_result():
    w = KNOWN_W.copy()
    a = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), w, time_window=10, t_start=100)
    w *= 2
    b = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), w, time_window=10, t_start=100)
    np.testing.assert_array_equal(b, 2 * a)


def test_time_window_as_integral_float():
    a = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W, time_window=10.0, t_start=100)
    b = conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W, time_window=np.int32(10),
                          t_start=np.int64(100), n_bins=np.int8(4))
    np.testing.assert_array_equal(a, b)


# -- overflow -----------------------------------------------------------------------------
def test_overflow_binary_and_the_float64_fix():
    w = np.full((1, 1, 1, 2), 2**30, np.int64)  # max_k sum |W[k]| = 2**31
    ev = make_events([0], [0], [0], [0])
    with pytest.raises(OverflowError, match=r"2\*\*31.*float64"):
        conv_event_stream(ev, (2, 2, 2), w, time_window=1)
    ev2 = make_events([0, 0], [0, 0], [0, 1], [0, 0])
    got = conv_event_stream(ev2, (2, 2, 2), w.astype(np.float64), time_window=1)
    assert got[0, 0, 0, 0] == 2**31  # exact in float64


def test_overflow_counted_only():
    w = np.full((1, 1, 1, 1), 2**28, np.int32)
    ev = make_events([0] * 8, [0] * 8, [0] * 8, [3] * 8)  # 8 events at one pixel, one bin
    with pytest.raises(OverflowError, match=r"8 \(largest payload\).*binary=True"):
        conv_event_stream(ev, (1, 1, 1), w, time_window=10, binary=False)
    got = conv_event_stream(ev, (1, 1, 1), w, time_window=10, binary=True)
    assert got[0, 0, 0, 0] == 2**28
    seven = conv_event_stream(ev[:7], (1, 1, 1), w, time_window=10, binary=False)
    assert seven[0, 0, 0, 0] == 7 * 2**28  # 7 * 2**28 < 2**31: allowed


# -- errors -------------------------------------------------------------------------------
def _call(events=KNOWN_EVENTS, sensor_size=(4, 3, 1), weight=KNOWN_W, **kw):
    kw.setdefault("time_window", 10)
    kw.setdefault("t_start", 100)
    return conv_event_stream(events, sensor_size, weight, **kw)


@pytest.mark.parametrize("events, match", [
    ([(1, 1, 0, 100)], "structured array"),
    (np.zeros((3, 4), np.int64), "structured array"),
    (KNOWN_EVENTS.reshape(5, 1), "1-D"),
    (np.zeros(2, [("x", int), ("y", int), ("t", int)]), "lacks the field.*p"),
    (np.zeros(2, [("x", int), ("y", int), ("p", int)]), "lacks the field.*t"),
    (np.zeros(2, [("x", float), ("y", int), ("p", int), ("t", int)]), "'x' must hold integ"),
    (np.zeros(2, [("x", int), ("y", int), ("p", int), ("t", float)]), "'t' must hold integ"),
    (np.zeros(2, [("x", int), ("y", int), ("p", int), ("t", bool)]), "'t' must hold integ"),
    (np.zeros(2, [("x", int), ("y", int), ("p", int), ("t", int, (2,))]), "'t' must hold"),
])
def test_bad_events_container(events, match):
    with pytest.raises(ValueError, match=match):
        _call(events)


@pytest.mark.parametrize("field, value, match", [
    ("x", 4, r"events\[2\] has x=4, outside the sensor: x must lie in 0..3"),
    ("x", -1, r"events\[2\] has x=-1, outside the sensor"),
    ("y", 3, r"events\[2\] has y=3.*0..2"),
    ("y", -2, r"events\[2\] has y=-2"),
    ("p", 1, r"events\[2\] has p=1.*0..0"),
    ("p", -1, r"events\[2\] has p=-1"),
])
def test_event_outside_sensor(field, value, match):
    ev = KNOWN_EVENTS.copy()
    ev[field][2] = value
    with pytest.raises(ValueError, match=match):
        _call(ev)
    with pytest.raises(ValueError, match=match):  # also when its bin is dropped
        _call(ev, n_bins=0)


def test_uint64_beyond_int64():
    dt = np.dtype([("x", np.uint64), ("y", np.int64), ("p", np.int64), ("t", np.uint64)])
    ev = make_events([1], [1], [0], [2**63], dt)
    with pytest.raises(ValueError, match=r"t=9223372036854775808, beyond 2\*\*63"):
        _call(ev, t_start=0)
    ev = make_events([2**64 - 1], [1], [0], [5], dt)
    with pytest.raises(ValueError, match=r"x=18446744073709551615, beyond"):
        _call(ev, t_start=0)


def test_event_before_t_start():
    with pytest.raises(ValueError, match=r"events\[0\] has t=100, before t_start=101"):
        _call(t_start=101)


def test_unsorted_times():
    ev = KNOWN_EVENTS.copy()
    ev["t"][3] = 105  # 109 then 105
    with pytest.raises(ValueError, match=r"sorted by time.*events\[3\]\.t=105 < events\[2\]"
                                         r"\.t=109.*argsort"):
        _call(ev)


def test_time_span_beyond_int64():
    ev = make_events([1], [1], [0], [2**62])
    with pytest.raises(ValueError, match="does not fit in int64"):
        _call(ev, t_start=-(2**62))


@pytest.mark.parametrize("kw, match", [
    (dict(time_window=0), "time_window must be >= 1"),
    (dict(time_window=-5), "time_window must be >= 1"),
    (dict(time_window=1.5), "time_window must be an integer"),
    (dict(time_window="10"), "time_window must be an integer"),
    (dict(time_window=True), "time_window must be an integer"),
    (dict(time_window=float("nan")), "time_window must be an integer"),
    (dict(time_window=2**63), "time_window must be below 2"),
    (dict(t_start=1.5), "t_start must be an integer"),
    (dict(t_start=2**63), "t_start must fit in int64"),
    (dict(n_bins=-1), "n_bins must be >= 0"),
    (dict(n_bins=2.5), "n_bins must be an integer"),
    (dict(binary=1), "binary must be True"),
    (dict(binary="yes"), "binary must be True"),
    (dict(sensor_size=(4, 3)), "sensor_size must be 3 positive ints"),
    (dict(sensor_size=(4, 0, 1)), "sensor_size must be 3 positive ints"),
    (dict(sensor_size=5), "sensor_size must be 3 positive ints"),
    (dict(sensor_size=(4, 3, 2)), r"weight.shape\[3\] must equal"),
    (dict(weight=KNOWN_W[0]), "weight must be a 4-D array"),
    (dict(weight=KNOWN_W.astype(complex)), "weight must be bool, integer or float"),
    (dict(weight=np.full((1, 2, 2, 1), np.nan)), "NaN or infinite"),
    (dict(stride=0), "stride must be >= 1"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        _call(**kw)


def test_time_window_is_keyword_only_and_required():
    with pytest.raises(TypeError):
        conv_event_stream(KNOWN_EVENTS, (4, 3, 1), KNOWN_W)  # no time_window
