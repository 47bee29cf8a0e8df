"""Event-driven path and automatic path choice against the plain reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lavaconv.kernels import events as _events
from reference import conv_reference
from strategies import geometries, int8_weights, seeds, spikes

import lavaconv
from lavaconv import utils
from lavaconv.engine import ConvEngine
from lavaconv.geometry import validate_geometry
from lavaconv.indexed import conv_events
from lavaconv.workloads import WORKLOADS

PATHS = ["dense", "events", "auto"]


def _ref(x, w, g):
    return conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])


def _call(x, w, g, path):
    return utils.conv(x, w, g["weight_shape"][1:3], g["stride"], g["padding"], g["dilation"],
                      g["groups"], path=path)


@given(g=geometries(), seed=seeds(), kind=st.sampled_from(["bool", "binary", "graded"]),
       density=st.sampled_from([0.0, 0.001, 0.02, 0.3, 1.0]))
def test_every_path_is_bit_identical_to_reference(g, seed, kind, density):
    rng = np.random.default_rng(seed)
    x = spikes(rng, g["input_shape"], kind, density=density)
    w = int8_weights(rng, g["weight_shape"]).astype(np.int32)
    expected = _ref(x, w, g)
    for path in PATHS:
        got = _call(x, w, g, path)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected, err_msg=path)


@given(g=geometries(max_size=6), seed=seeds(), n=st.integers(1, 3),
       density=st.sampled_from([0.0, 0.05, 1.0]))
def test_engine_batch_paths_and_int32_output(g, seed, n, density):
    rng = np.random.default_rng(seed)
    frames = np.stack([spikes(rng, g["input_shape"], "graded", density) for _ in range(n)])
    w = int8_weights(rng, g["weight_shape"])
    geom = validate_geometry(g["input_shape"], g["weight_shape"], g["stride"], g["padding"],
                             g["dilation"], g["groups"])
    engine = ConvEngine(w, geom)
    expected = np.stack([_ref(f, w, g) for f in frames])
    for path in PATHS:
        for out_dtype in (np.int64, np.int32):
            got = engine.exact(frames, path=path, out_dtype=out_dtype)
            assert got.dtype == out_dtype
            np.testing.assert_array_equal(got, expected, err_msg=f"{path} {out_dtype}")


@given(g=geometries(max_size=6), seed=seeds(), n=st.integers(1, 3),
       density=st.sampled_from([0.0, 0.05, 1.0]),
       dtype=st.sampled_from([np.int32, np.int64, np.float32, np.float64]))
def test_compute_with_bias_on_every_path(g, seed, n, density, dtype):
    """``ConvEngine.compute(..., bias=b)`` is the convolution plus ``b`` per output
    channel: the event kernel starts each pixel from ``b``, the dense path adds it
    after; with and without ``out``, binary and graded frames. Integer-valued data
    throughout, so float results are exact too.
    """
    rng = np.random.default_rng(seed)
    frames = np.stack([spikes(rng, g["input_shape"], "graded", density) for _ in range(n)])
    w = int8_weights(rng, g["weight_shape"]).astype(dtype)
    geom = validate_geometry(g["input_shape"], g["weight_shape"], g["stride"], g["padding"],
                             g["dilation"], g["groups"])
    engine = ConvEngine(w, geom)
    bias = rng.integers(-1000, 1000, g["weight_shape"][0]).astype(dtype)
    for binary in (False, True):
        x = frames != 0 if binary else frames
        expected = np.stack([_ref(f.astype(np.int64), w.astype(np.int64), g) for f in x])
        expected = (expected + bias.astype(np.int64)).astype(dtype)
        for path in ("dense", "events"):
            got = engine.compute(frames, dtype, path=path, binary=binary, bias=bias)
            np.testing.assert_array_equal(got, expected, err_msg=f"{path} {binary}")
            out = np.full(expected.shape, 7, dtype)
            engine.compute(frames, dtype, path=path, out=out, binary=binary, bias=bias)
            np.testing.assert_array_equal(out, expected, err_msg=f"{path} {binary} out")
            plain = engine.compute(frames, dtype, path=path, binary=binary)
            np.testing.assert_array_equal(plain, expected - bias, err_msg=f"{path} {binary}")
    with pytest.raises(ValueError, match="bias must have shape"):
        engine.compute(frames, dtype, bias=bias[:-1] if bias.size > 1 else np.zeros(2, dtype))


@given(g=geometries(), seed=seeds(), dtype=st.sampled_from([np.float32, np.float64]))
def test_float_event_path_matches_reference(g, seed, dtype):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(g["input_shape"]) * (rng.random(g["input_shape"]) < 0.2))
    x = x.astype(dtype)
    w = rng.standard_normal(g["weight_shape"]).astype(dtype)
    expected = _ref(x, w, g)
    scale = _ref(np.abs(x), np.abs(w), g) + 1.0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for path in PATHS:
        got = _call(x, w, g, path)
        assert got.dtype == dtype
        assert np.all(np.abs(got - expected) <= tol * scale), path


@given(g=geometries(), seed=seeds(), n_ev=st.integers(0, 30), graded=st.booleans())
def test_index_array_events_match_dense_frame(g, seed, n_ev, graded):
    """Events as (x, y, c[, value]) equal the conv of the frame they add up to."""
    rng = np.random.default_rng(seed)
    shape = g["input_shape"]
    xs, ys, cs = (rng.integers(0, s, n_ev) for s in shape)  # duplicates allowed
    value = rng.integers(-128, 128, n_ev).astype(np.int16) if graded else None
    frame = np.zeros(shape, np.int64)
    np.add.at(frame, (xs, ys, cs), 1 if value is None else value.astype(np.int64))
    w = int8_weights(rng, g["weight_shape"])
    got = conv_events(xs, ys, cs, value, shape, w, g["stride"], g["padding"], g["dilation"],
                      g["groups"])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _ref(frame, w, g))


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("y_c", [(4, 2), (5, 1), (3, 3)])
@pytest.mark.parametrize("misaligned", [False, True])
def test_event_scan_over_words_and_entries(dtype, y_c, misaligned):
    """The scan skips zero 8-byte words when a row is a whole number of them, and
    walks entries otherwise (rows of 5 or 9 int8 entries), or when the frames start
    off an 8-byte boundary. Float -0.0 has non-zero bits but is no event."""
    rng = np.random.default_rng(7)
    y, c = y_c
    shape = (6, y, c)
    x = (rng.random(shape) < 0.3) * rng.integers(1, 5, shape)
    x = x.astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[x == 0] = -0.0
    if misaligned:  # the same values in a buffer starting one byte later
        raw = np.zeros(x.nbytes + 1, np.uint8)
        x2 = raw[1:].view(dtype).reshape(shape)
        x2[...] = x
        assert x2.ctypes.data % 8 != 0
        x = x2
    w = rng.integers(-128, 128, (3, 3, 2, c)).astype(np.int32)
    g = dict(stride=(1, 2), padding=(1, 0), dilation=(1, 1), groups=1)
    engine = ConvEngine(w, validate_geometry(shape, w.shape, **g))
    expected = conv_reference(x.astype(np.int64), w, **g)
    if np.dtype(dtype).kind == "f":
        got = engine.events(x[None], np.dtype(np.float64))[0]
    else:
        got = engine.exact(x[None], path="events")[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 40, 4), (3, 130, 4), (3, 43, 3)])
def test_event_scan_finds_an_event_at_every_position_of_a_long_row(dtype, shape):
    """One event at each position of rows of 160, 520 and 129 entries: the scan's
    masks of 64 words (20 to 520 words a row: one to nine masks, the last one
    partial; 129 one-byte entries are not whole words, so they are scanned as
    entries) must neither miss nor misplace it, in any mask or at any bit."""
    c = shape[2]
    w = np.arange(1, 2 * 3 * 3 * c + 1, dtype=np.int32).reshape(2, 3, 3, c)
    engine = ConvEngine(w, validate_geometry(shape, w.shape, 1, 1, 1, 1))
    frames = np.zeros((shape[1] * shape[2],) + shape, dtype)
    for t in range(shape[1] * shape[2]):  # frame t holds one event, at entry t of row 1
        frames[t, 1, t // shape[2], t % shape[2]] = 3
    pad = ((1, 1), (1, 1))
    expected = np.stack([conv_reference(f.astype(np.int64), w, (1, 1), *pad) for f in frames])
    if np.dtype(dtype).kind == "f":
        got = engine.events(frames, np.dtype(np.float64))
    else:
        got = engine.exact(frames, path="events")
    np.testing.assert_array_equal(got, expected)
    assert not engine.events(np.zeros_like(frames[:1]), np.dtype(np.int64)).any()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
@pytest.mark.parametrize("path", PATHS)
def test_binary_rule_reads_zero_one_frames_as_they_are(dtype, path):
    """Under the binary rule, integer frames holding only 0 and 1 are read as they
    are, and one other value anywhere (-1, 2, the dtype's extremes; in the first,
    a middle or the last block of the 0/1 test) still makes every non-zero a spike."""
    from lavaconv.kernels import compare

    rng = np.random.default_rng(5)
    shape = (9, 80, 8)  # 5760 entries: two blocks of the 0/1 test
    w = rng.integers(-9, 10, (3, 3, 3, 8)).astype(np.int32)
    engine = ConvEngine(w, validate_geometry(shape, w.shape, 1, 1, 1, 1))
    spikes = rng.random(shape) < 0.3
    info = np.iinfo(dtype)
    for value in {-1, 2, int(info.min), int(info.max)}:
        if not info.min <= value <= info.max or value in (0, 1):
            continue
        for at in (0, 4100, spikes.size - 1):
            x = spikes.astype(dtype)
            x.reshape(-1)[at] = value
            assert not compare.zero_one(x.reshape(-1).view(f"u{x.itemsize}"))
            want = conv_reference(x != 0, w, padding=(1, 1))
            np.testing.assert_array_equal(
                engine.exact(x[None], 1, path=path, binary=True)[0], want)
    x = spikes.astype(dtype)
    assert compare.zero_one(x.reshape(-1).view(f"u{x.itemsize}"))
    np.testing.assert_array_equal(engine.exact(x[None], 1, path=path, binary=True)[0],
                                  conv_reference(spikes, w, padding=(1, 1)))


def test_bit_index_of_every_bit():
    for k in range(64):
        assert _events._bit_index(np.uint64(1) << np.uint64(k)) == k


def test_auto_decides_once_and_writes_the_callers_out():
    """``decide`` picks the path before any kernel runs; either path writes the
    caller's ``out`` (pre-filled with garbage, so a skipped write shows)."""
    wl = WORKLOADS["dvs128"]
    x, w = wl.make(0.2, seed=4)
    engine = ConvEngine(w, wl.geometry)
    frames = x[None]
    pair = (wl.stride, wl.stride), (wl.padding, wl.padding), (wl.dilation, wl.dilation)
    expected = conv_reference(x, w, *pair, wl.groups)
    out = np.full((1,) + wl.geometry.output_shape, -7, np.int32)
    for crossover, path in ((0.0, "dense"), (1.0, "events")):
        engine.crossover = crossover
        assert engine.decide(frames) == path
        out[...] = -7
        assert engine.exact(frames, input_max_abs=1, out_dtype=np.int32, out=out) is out
        np.testing.assert_array_equal(out[0], expected)
    assert engine.decide(frames, "dense") == "dense"
    with pytest.raises(ValueError, match="path must be one of"):
        engine.decide(frames, "fast")


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_on_every_path(path):
    """Zero frames give an empty result of the right shape (no division by zero)."""
    w = np.ones((2, 3, 3, 2), np.int8)
    engine = ConvEngine(w, validate_geometry((5, 5, 2), w.shape))
    for out_dtype in (np.int64, np.int32):
        got = engine.exact(np.zeros((0, 5, 5, 2), np.int8), path=path, out_dtype=out_dtype)
        assert got.shape == (0, 3, 3, 2) and got.dtype == out_dtype
    assert engine.compute(np.zeros((0, 5, 5, 2)), np.float64, path=path).shape == (0, 3, 3, 2)


def test_known_answer_single_event_on_event_path():
    """One spike at (2, 2) through a 3x3 kernel 1..9, padding 1: the kernel itself.

    As in test_conv: out[x, y] = W[x-1, y-1] around the event (true convolution).
    The event path must place each weight exactly there; its effective operations
    are the 9 taps times 1 output channel.
    """
    x = np.zeros((5, 5, 1), np.int8)
    x[2, 2, 0] = 1
    w = np.arange(1, 10, dtype=np.int32).reshape(1, 3, 3, 1)
    out = utils.conv(x, w, (3, 3), 1, 1, 1, 1, path="events")[:, :, 0]
    expected = np.zeros((5, 5), np.int32)
    expected[1:4, 1:4] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    np.testing.assert_array_equal(out, expected)
    engine = ConvEngine(w, validate_geometry((5, 5, 1), (1, 3, 3, 1), 1, 1, 1, 1))
    assert engine.synaptic_ops(x[None]) == 9
    # from index arrays, with a graded value of -3: -3 times the kernel
    got = conv_events([2], [2], [0], [-3], (5, 5, 1), w, 1, 1, 1, 1)[:, :, 0]
    np.testing.assert_array_equal(got, -3 * expected)


def test_known_answer_sum_crossing_2_pow_23():
    """127 * 127 per tap over 520 spiking channels: 8 387 080 + 127*127 > 2**23.

    A 1x1 kernel of 127s over C_in = 521 channels all equal to 127 gives
    521 * 16129 = 8 403 209, above 2**23 = 8 388 608 and below 2**24: exact in the
    float32 dense path and in the integer scatter alike.
    """
    x = np.full((1, 1, 521), 127, np.int16)
    w = np.full((1, 1, 1, 521), 127, np.int32)
    for path in PATHS:
        assert utils.conv(x, w, 1, 1, 0, 1, 1, path=path)[0, 0, 0] == 521 * 127 * 127


def test_int32_output_overflow_is_refused():
    engine = ConvEngine(np.full((1, 2, 2, 1), 2**20, np.int64),
                        validate_geometry((2, 2, 1), (1, 2, 2, 1)))
    frames = np.full((1, 2, 2, 1), 2**12, np.int64)
    with pytest.raises(OverflowError, match="int64"):
        engine.exact(frames, out_dtype=np.int32)
    assert engine.exact(frames, path="events")[0, 0, 0, 0] == 4 * 2**32


def test_bad_path_and_bad_events_raise_value_errors():
    x = np.zeros((4, 4, 1), np.int8)
    w = np.ones((1, 3, 3, 1), np.int8)
    with pytest.raises(ValueError, match="path"):
        utils.conv(x, w, 3, 1, 0, 1, 1, path="sparse")
    engine = ConvEngine(w, validate_geometry((4, 4, 1), (1, 3, 3, 1)))
    with pytest.raises(ValueError, match="out_dtype"):
        engine.exact(x[None], out_dtype=np.int16)
    # unhashable arguments (the per-signature memo cannot key them) get the same errors
    with pytest.raises(ValueError, match="path"):
        engine.exact(x[None], path=["events"])
    with pytest.raises(ValueError, match="out_dtype"):
        engine.exact(x[None], out_dtype=[("a", "i4")])
    with pytest.raises(ValueError, match="x indices"):
        conv_events([4], [0], [0], None, (4, 4, 1), w)
    with pytest.raises(ValueError, match="same length"):
        conv_events([1, 2], [0], [0], None, (4, 4, 1), w)
    with pytest.raises(ValueError, match="value"):
        conv_events([1], [0], [0], [1, 2], (4, 4, 1), w)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_auto_choice_at_the_extremes(name):
    """Measured on every workload (benchmarks/results): the event path is faster at
    0.1 % density and the dense path on a full graded frame; auto must agree."""
    wl = WORKLOADS[name]
    sparse, w = wl.make(0.001, seed=1)
    full, _ = wl.make("graded", seed=1)
    e = ConvEngine(w, wl.geometry)
    assert e.choose_path(e.estimate_events(sparse[None]), 1, 4, 4) == "events"
    assert e.choose_path(e.estimate_events(full[None]), 1, 4, 4) == "dense"
    # what path="auto" runs
    assert e.decide(sparse[None], "auto", 4, 4) == "events"
    assert e.decide(full[None], "auto", 4, 4) == "dense"


def test_estimate_is_not_fooled_by_a_fixed_pattern_of_empty_rows():
    """A mid frame 94 % dense but empty on every 16th row: a fixed sample of those rows
    would see no event; the rotating sample sees them from the second call on."""
    wl = WORKLOADS["mid"]
    x, w = wl.make("graded", seed=2)
    e = ConvEngine(w, wl.geometry)
    x[::16] = 0
    estimates = [e.estimate_events(x[None]) for _ in range(4)]
    assert max(estimates) > 0.5 * x.size
    assert sum(e.choose_path(n, 1, 4, 4) == "dense" for n in estimates) >= 3


def test_crossover_override():
    e = ConvEngine(WORKLOADS["nmnist"].make(0.0)[1], WORKLOADS["nmnist"].geometry)
    e.crossover = 0.0
    assert e.choose_path(1, 1) == "dense"
    e.crossover = 1.0
    assert e.choose_path(10, 1) == "events"
    e.crossover = None
    assert e.crossover is None and 0.0 < e.crossover_density() < 1.0


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, "0.1", True])
def test_crossover_must_be_a_density(bad):
    e = ConvEngine(WORKLOADS["nmnist"].make(0.0)[1], WORKLOADS["nmnist"].geometry)
    with pytest.raises(ValueError, match="crossover must be a number in"):
        e.crossover = bad
    assert e.crossover is None


def test_warmup_runs_every_entry_point():
    """warmup() calls every public entry point it lists; with NUMBA_DISABLE_JIT=1 (in a
    subprocess) that checks the calls themselves in under a second, without compiling."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    code = "import lavaconv; t = lavaconv.warmup(); assert t > 0, t"
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_public_names():
    assert lavaconv.conv_events is conv_events
    assert callable(lavaconv.warmup)
    assert callable(lavaconv.set_num_threads) and callable(lavaconv.get_num_threads)


@given(g=geometries(), seed=seeds(), path=st.sampled_from(["dense", "events", "auto"]),
       out_dtype=st.sampled_from([np.int32, np.int64]))
def test_exact_writes_into_out(g, seed, path, out_dtype):
    """``exact(..., out=buf)`` returns ``buf`` holding the reference result."""
    rng = np.random.default_rng(seed)
    frames = (rng.random((2,) + g["input_shape"]) < 0.3).astype(np.int8)
    w = rng.integers(-128, 128, g["weight_shape"]).astype(np.int8)
    geom = validate_geometry(g["input_shape"], g["weight_shape"], g["stride"], g["padding"],
                             g["dilation"], g["groups"])
    e = ConvEngine(w, geom)
    buf = np.full((2,) + geom.output_shape, 7, out_dtype)
    assert e.exact(frames, path=path, out_dtype=out_dtype, out=buf) is buf
    for i in range(2):
        expected = conv_reference(frames[i], w, g["stride"], g["padding"], g["dilation"],
                                  g["groups"])
        np.testing.assert_array_equal(buf[i], expected)


def test_exact_rejects_a_bad_out():
    wl = WORKLOADS["nmnist"]
    x, w = wl.make(0.1)
    e = ConvEngine(w, wl.geometry)
    shape = (1,) + wl.geometry.output_shape
    for bad in (np.zeros(shape, np.int32), np.zeros(shape[:-1] + (3,), np.int64),
                np.zeros(shape, np.int64)[..., ::2], np.zeros(shape, np.int64).T):
        with pytest.raises(ValueError, match="out must be"):
            e.exact(x[None], out=bad)


def test_exact_keeps_one_decision_per_call_signature_and_sees_every_change(monkeypatch):
    """``exact`` decides the checks, bound, accumulator and auto threshold once per call
    signature (frames' shape and dtype, bound, path, result dtype, spike rule, thread
    count): repeated calls reuse it, any other signature gets its own, and setting
    ``crossover`` replaces the thresholds (the path it forces is the one taken)."""
    wl = WORKLOADS["nmnist"]
    x, w = wl.make(0.05, seed=2)
    engine = ConvEngine(w, wl.geometry)
    pair = (wl.stride, wl.stride), (wl.padding, wl.padding), (wl.dilation, wl.dilation)
    expected = conv_reference(x, w, *pair, wl.groups)
    frames = x[None]
    calls = [
        dict(frames=frames, input_max_abs=1, out_dtype=np.int32),
        dict(frames=frames, input_max_abs=1, out_dtype=np.int32),  # the same signature
        dict(frames=frames, input_max_abs=1, out_dtype=np.int64),
        dict(frames=frames, input_max_abs=2, out_dtype=np.int32),
        dict(frames=frames, input_max_abs=1, out_dtype=np.int32, path="events"),
        dict(frames=frames, input_max_abs=1, out_dtype=np.int32, binary=True),
        dict(frames=frames.astype(np.int16), input_max_abs=1, out_dtype=np.int32),
        dict(frames=frames.astype(bool), out_dtype=np.int32),  # bounded by its dtype
        dict(frames=np.concatenate([frames, frames]), input_max_abs=1, out_dtype=np.int32),
    ]
    for k, kw in enumerate(calls):
        got = engine.exact(**kw)
        assert got.dtype == kw["out_dtype"]
        for frame in got:
            np.testing.assert_array_equal(frame, expected)
        assert len(engine._exact_calls) == max(1, k)
    dense_calls = []
    real_dense = engine.dense
    monkeypatch.setattr(engine, "dense",
                        lambda *a, **k: dense_calls.append(1) or real_dense(*a, **k))
    for crossover, dense in ((0.0, True), (1.0, False), (0.0, True)):
        engine.crossover = crossover
        dense_calls.clear()
        np.testing.assert_array_equal(engine.exact(**calls[0])[0], expected)
        assert bool(dense_calls) is dense
    if lavaconv.get_num_threads() > 1:
        before = len(engine._exact_calls)
        lavaconv.set_num_threads(1)
        try:
            np.testing.assert_array_equal(engine.exact(**calls[0])[0], expected)
        finally:
            lavaconv.set_num_threads(None)
        assert len(engine._exact_calls) == before + 1


def test_exact_unhashable_arguments_and_a_crossover_set_while_another_call_decides(
        monkeypatch):
    """A valid argument that cannot key the memo (``binary`` as a 0-d array) is decided
    anew, with the result of the plain one, and nothing kept; a ``crossover`` set by
    another thread between a call's reading of the threshold and its keeping of the
    decision (simulated inside ``crossover_density``) is the one the next call follows,
    not the stale threshold."""
    wl = WORKLOADS["nmnist"]
    x, w = wl.make(0.05, seed=5)
    engine = ConvEngine(w, wl.geometry)
    pair = (wl.stride, wl.stride), (wl.padding, wl.padding), (wl.dilation, wl.dilation)
    expected = conv_reference(x, w, *pair, wl.groups)
    frames = x[None].astype(np.int8)
    for binary in (np.array(True), np.bool_(True)):
        got = engine.exact(frames, binary=binary, out_dtype=np.int32)
        np.testing.assert_array_equal(got[0], expected)
    assert len(engine._exact_calls) == 1  # the np.bool_ call only
    dense_calls = []
    real_dense = engine.dense
    monkeypatch.setattr(engine, "dense",
                        lambda *a, **k: dense_calls.append(1) or real_dense(*a, **k))
    engine.crossover = 0.0  # dense only
    real_density = engine.crossover_density

    def racing(*args, **kwargs):
        value = real_density(*args, **kwargs)
        monkeypatch.setattr(engine, "crossover_density", real_density)  # once
        engine.crossover = 1.0  # "another thread": events from now on
        return value

    monkeypatch.setattr(engine, "crossover_density", racing)
    np.testing.assert_array_equal(engine.exact(frames, 1, out_dtype=np.int32)[0], expected)
    assert dense_calls == [1]  # decided under 0.0
    dense_calls.clear()
    np.testing.assert_array_equal(engine.exact(frames, 1, out_dtype=np.int32)[0], expected)
    assert dense_calls == []  # under 1.0


def test_exact_reads_a_bound_from_the_data_at_every_call():
    """When only the data bounds the sums (int64 frames, large weights), nothing is kept:
    a later call with larger values of the same shape and dtype is checked anew (an
    int32 result refused, int64 exact) instead of reusing the first call's decision."""
    engine = ConvEngine(np.full((1, 2, 2, 1), 2**20, np.int64),
                        validate_geometry((2, 2, 1), (1, 2, 2, 1)))
    small = np.full((1, 2, 2, 1), 3, np.int64)
    big = np.full((1, 2, 2, 1), 2**12, np.int64)
    for path in PATHS:
        assert engine.exact(small, path=path, out_dtype=np.int32)[0, 0, 0, 0] == 12 * 2**20
        with pytest.raises(OverflowError, match="int64"):
            engine.exact(big, path=path, out_dtype=np.int32)
        assert engine.exact(big, path=path)[0, 0, 0, 0] == 4 * 2**32
    assert not engine._exact_calls


def test_estimate_in_any_layout_and_the_cost_line():
    """``estimate_nonzero`` counts frames in another layout (NCHW) as ``estimate_events``
    counts them in the engine's (exactly, when the sample is every row), 0 for no
    entries; ``cost_line`` is ``predict_seconds`` as a line in the event count."""
    rng = np.random.default_rng(8)
    w = np.ones((4, 3, 3, 3), np.int8)
    engine = ConvEngine(w, validate_geometry((9, 7, 3), w.shape, 1, 1, 1, 1))
    frames = (rng.random((2, 9, 7, 3)) < 0.2).astype(np.int8)  # 378 entries: all sampled
    nchw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    count = int(np.count_nonzero(frames))
    assert engine.estimate_events(frames) == count
    assert engine.estimate_nonzero(nchw) == count
    assert engine.estimate_nonzero(nchw.astype(bool)) == count
    assert engine.estimate_nonzero(nchw[:0]) == 0
    for n_frames, itemsize in ((1, 4), (3, 8)):
        dense, events0, per_event = engine.cost_line(n_frames, itemsize)
        for n in (0, 7, 250):
            d, e = engine.predict_seconds(n, n_frames, itemsize)
            assert d == dense and e == pytest.approx(events0 + per_event * n, rel=1e-12)
