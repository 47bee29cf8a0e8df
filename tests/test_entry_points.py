"""Every public entry point behind one prepared layer (issue 8).

The prepared-layer cache (content-keyed, in-place changes seen, bounded, thread-safe),
the result dtypes of ``utils.conv``, every NumPy dtype and byte order, impossible sizes
refused before allocating, the float model on the event path, ``run`` reading the
time-last input in place, Lava's scalar conventions, and fork safety.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_reference, model_reference
from strategies import KINDS, geometries, int8_weights, seeds

import lavaconv
from lavaconv import Conv, PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat, utils
from lavaconv import engine as engine_mod
from lavaconv.geometry import validate_geometry

MODELS = {"float": PyConvModelFloat, "fixed": PyConvModelFixed, "bitacc": PyConvModelBitAcc}


def _geo(g):
    return (g["stride"], g["padding"], g["dilation"], g["groups"])


def _lava_args(g):
    return (g["weight_shape"][1:3],) + _geo(g)


# -- the prepared-layer cache ---------------------------------------------------------
def test_same_array_reuses_one_layer_and_sees_in_place_changes():
    rng = np.random.default_rng(0)
    w = rng.integers(-9, 10, (6, 3, 3, 4)).astype(np.int32)
    x = rng.random((9, 8, 4)) < 0.3
    g = validate_geometry(x.shape, w.shape, 1, 1, 1, 1)
    layer = engine_mod.prepare(w, g)
    assert engine_mod.prepare(w, g) is layer
    first = utils.conv(x, w, 3, 1, 1, 1, 1)
    np.testing.assert_array_equal(first, conv_reference(x, w, padding=(1, 1)))
    w[2, 1, 0, 3] += 50  # in place: the next call must see it
    second = utils.conv(x, w, 3, 1, 1, 1, 1)
    np.testing.assert_array_equal(second, conv_reference(x, w, padding=(1, 1)))
    assert not np.array_equal(first, second) or not x.any()
    assert engine_mod.prepare(w, g) is not layer
    # the layer holds its own read-only copy: the caller's later writes cannot reach it
    assert not layer.weight.flags.writeable
    assert layer.weight[2, 1, 0, 3] == w[2, 1, 0, 3] - 50


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "int64", "uint32"])
@pytest.mark.parametrize("change", [1, -1, 1000, 2**14])
def test_in_place_changes_seen_through_the_narrow_content_check(dtype, change):
    """Integer weights whose values fit int8/int16 are checked against a narrow copy:
    a change anywhere (first, middle, last entry), to a value inside or outside the
    narrow range, still gets a layer for the new content."""
    rng = np.random.default_rng(1)
    base = rng.integers(0 if dtype.startswith("u") else -100, 100, (5, 3, 3, 3))
    w = base.astype(dtype)
    x = np.ones((6, 5, 3), np.int8)
    g = validate_geometry(x.shape, w.shape, 1, 1, 1, 1)
    layer = engine_mod.prepare(w, g)
    assert layer._weight_narrow is not None and layer._weight_narrow.itemsize < w.itemsize
    for index in [(0, 0, 0, 0), (2, 1, 1, 1), (4, 2, 2, 2)]:
        old = int(w[index])
        new = old + change if old + change >= 0 or not dtype.startswith("u") else old + 1
        if new > np.iinfo(w.dtype).max:
            new = old - 1
        assert engine_mod._same_content(w, engine_mod.prepare(w, g))
        held = engine_mod.prepare(w, g)
        w[index] = new
        assert not engine_mod._same_content(w, held)
        got = utils.conv(x, w, 3, 1, 1, 1, 1)
        np.testing.assert_array_equal(
            got, conv_reference(x, w.astype(np.int64), padding=(1, 1)).astype(w.dtype))
        assert engine_mod.prepare(w, g).weight[index] == new


def test_equal_content_in_another_array_finds_the_same_layer():
    w = np.arange(2 * 3 * 3 * 2, dtype=np.int16).reshape(2, 3, 3, 2) - 9
    g = validate_geometry((5, 5, 2), w.shape)
    layer = engine_mod.prepare(w, g)
    assert engine_mod.prepare(w.copy(), g) is layer
    assert engine_mod.prepare(np.asfortranarray(w), g) is layer  # same values, same layer
    assert engine_mod.prepare(w.astype(np.int32), g) is not layer  # another dtype
    g2 = validate_geometry((5, 5, 2), w.shape, padding=1)
    assert engine_mod.prepare(w, g2) is not layer  # another geometry


def test_in_place_change_through_conv_events():
    w = np.ones((2, 3, 3, 1), np.int32)
    x, y, c = np.array([2]), np.array([2]), np.array([0])
    a = lavaconv.conv_events(x, y, c, None, (5, 5, 1), w, 1, 1, 1, 1)
    w[:] = 3
    b = lavaconv.conv_events(x, y, c, None, (5, 5, 1), w, 1, 1, 1, 1)
    np.testing.assert_array_equal(b, 3 * a)


def test_cache_is_bounded():
    engine_mod.clear_cache()
    g = validate_geometry((4, 4, 1), (1, 1, 1, 1))
    for i in range(engine_mod.CACHE_SIZE + 10):
        engine_mod.prepare(np.full((1, 1, 1, 1), i, np.int64), g)
    assert len(engine_mod._LAYERS) == engine_mod.CACHE_SIZE
    assert len(engine_mod._BY_ID) <= 4 * engine_mod.CACHE_SIZE
    engine_mod.clear_cache()
    assert not engine_mod._LAYERS and not engine_mod._BY_ID


def test_repeated_call_skips_validation_but_not_the_content_check(monkeypatch):
    """``layer_for`` (behind ``utils.conv`` and ``conv_events``): a repeat with the same
    array and plain arguments finds its layer without validating again; a change of
    the array in place (values, dtype, byte order, shape) or another layer under its
    key is caught by the content check, and other arguments are validated anew."""
    rng = np.random.default_rng(12)
    w = rng.integers(-9, 10, (6, 3, 3, 4)).astype(np.int32)
    x = rng.integers(-3, 4, (9, 8, 4)).astype(np.int8)
    layer = engine_mod.layer_for(w, x.shape, 1, 1, 1, 1, 3)
    checked = []
    real_check = engine_mod.check_array
    monkeypatch.setattr(engine_mod, "check_array",
                        lambda *a, **k: checked.append(a[1]) or real_check(*a, **k))
    assert engine_mod.layer_for(w, x.shape, 1, 1, 1, 1, 3) is layer
    np.testing.assert_array_equal(utils.conv(x, w, 3, 1, 1, 1, 1),
                                  conv_reference(x, w, padding=(1, 1)))
    assert checked == []  # found by identity, confirmed by content
    w[0, 0, 0, 0] += 1  # values changed in place
    np.testing.assert_array_equal(utils.conv(x, w, 3, 1, 1, 1, 1),
                                  conv_reference(x, w, padding=(1, 1)))
    assert checked == ["weight"]
    w.dtype = w.dtype.newbyteorder()  # same bytes, now big-endian: other values
    np.testing.assert_array_equal(utils.conv(x, w, 3, 1, 1, 1, 1),
                                  conv_reference(x, w.astype(np.int64), padding=(1, 1))
                                  .astype(np.int32))
    w.dtype = w.dtype.newbyteorder()
    # another layer under this call's key (as after an address is reused): not returned
    key = (id(w), x.shape, 1, 1, 1, 1, 3)
    other = engine_mod.prepare(w + 1, validate_geometry(x.shape, w.shape, 1, 1, 1, 1))
    engine_mod._BY_CALL[key] = other
    assert engine_mod.layer_for(w, x.shape, 1, 1, 1, 1, 3) is not other
    with pytest.raises(ValueError, match="kernel_size"):  # validated anew
        utils.conv(x, w, 5, 1, 1, 1, 1)
    w.shape = (6, 9, 1, 4)  # shape changed in place: validated and prepared anew
    np.testing.assert_array_equal(utils.conv(x, w, (9, 1), 1, (4, 0), 1, 1),
                                  conv_reference(x, w, padding=(4, 0)))
    engine_mod.clear_cache()
    assert not engine_mod._BY_CALL


def test_repeated_conv_call_is_remembered_but_checked(monkeypatch):
    """``utils.conv``'s own fast path (``engine._BY_CONV``): a repeated integer call
    with the same arrays and plain arguments skips every validation and decision but
    the weights' content check; what would be decided differently is never reused."""
    engine_mod.clear_cache()
    rng = np.random.default_rng(31)
    w = rng.integers(-9, 10, (6, 3, 3, 4)).astype(np.int32)
    x = rng.integers(-3, 4, (9, 8, 4)).astype(np.int8)
    checked = []
    real_check = utils.check_array
    monkeypatch.setattr(utils, "check_array",
                        lambda *a, **k: checked.append(a[1]) or real_check(*a, **k))
    want = conv_reference(x, w, padding=(1, 1))
    np.testing.assert_array_equal(utils.conv(x, w, 3, 1, 1, 1, 1), want)
    assert checked == ["input"] and len(engine_mod._BY_CONV) == 1
    x2 = rng.integers(-128, 128, x.shape).astype(np.int8)  # new values, same dtype
    np.testing.assert_array_equal(utils.conv(x2, w, 3, 1, 1, 1, 1),
                                  conv_reference(x2, w, padding=(1, 1)))
    assert checked == ["input"]  # remembered: nothing validated again
    w[1, 2, 0, 3] -= 5  # changed in place: the content check sends it the long way
    np.testing.assert_array_equal(utils.conv(x, w, 3, 1, 1, 1, 1),
                                  conv_reference(x, w, padding=(1, 1)))
    assert checked == ["input", "input"]
    with pytest.raises(ValueError, match="groups"):  # equal to 1, but not an int
        utils.conv(x, w, 3, 1, 1, 1, True)
    with pytest.raises(ValueError, match="path"):
        utils.conv(x, w, 3, 1, 1, 1, 1, path="event")
    # other dtypes of the same shape are keyed apart, and an input whose bound must
    # be read from its data (int64 here), or that is converted first (big-endian),
    # is never remembered
    big = np.full((6, 3, 3, 4), 2**20, np.int64)
    for xi, wi in ((x.astype(np.int16), w), (x.astype(">i2"), w),
                   (x.astype(np.int64) * 2**30, big)):
        before = len(engine_mod._BY_CONV)
        for _ in range(2):
            np.testing.assert_array_equal(
                utils.conv(xi, wi, 3, 1, 1, 1, 1),
                conv_reference(xi.astype(np.int64), wi, padding=(1, 1)).astype(wi.dtype))
        assert len(engine_mod._BY_CONV) == before + (xi.dtype == np.int16)
    engine_mod.clear_cache()
    assert not engine_mod._BY_CONV


def test_remembered_conv_calls_go_with_their_layer():
    engine_mod.clear_cache()
    x = np.ones((4, 4, 1), np.int8)
    kept = [np.full((1, 1, 1, 1), i, np.int32) for i in range(engine_mod.CACHE_SIZE + 5)]
    for i, w in enumerate(kept):
        np.testing.assert_array_equal(utils.conv(x, w, 1, 1, 0, 1, 1), np.full((4, 4, 1), i))
    layers = list(engine_mod._LAYERS.values())
    assert 0 < len(engine_mod._BY_CONV) <= engine_mod.CACHE_SIZE
    assert all(any(v[0] is layer for layer in layers) for v in engine_mod._BY_CONV.values())
    engine_mod.clear_cache()


def test_conv_events_takes_any_shape_sequence():
    w = np.ones((2, 3, 3, 1), np.int32)
    x, y, c = np.array([2]), np.array([2]), np.array([0])
    ref = lavaconv.conv_events(x, y, c, None, (5, 5, 1), w, 1, 1, 1, 1)
    for shape in ([5, 5, 1], np.array([5, 5, 1])):
        np.testing.assert_array_equal(
            lavaconv.conv_events(x, y, c, None, shape, w, 1, 1, 1, 1), ref)


def test_prepare_from_several_threads_gives_one_layer_and_right_results():
    rng = np.random.default_rng(3)
    w = rng.integers(-5, 6, (8, 3, 3, 8)).astype(np.int32)
    frames = [rng.random((10, 9, 8)) < 0.2 for _ in range(8)]
    expected = [conv_reference(f, w, padding=(1, 1)) for f in frames]
    got, layers = [None] * 8, [None] * 8

    def work(i):
        for _ in range(5):
            got[i] = utils.conv(frames[i], w.copy(), 3, 1, 1, 1, 1)
            layers[i] = engine_mod.prepare(w, validate_geometry((10, 9, 8), w.shape, 1, 1))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(got[i], expected[i])
    assert len({id(layer) for layer in layers}) == 1


def test_models_share_the_prepared_layer():
    w = np.random.default_rng(4).integers(-8, 8, (4, 3, 3, 2)).astype(np.int64)
    conv = Conv(weight=w, input_shape=(6, 6, 2), padding=1)
    assert PyConvModelFixed(conv)._engine is PyConvModelFixed(conv)._engine


# -- utils.conv returns Lava's dtype directly -----------------------------------------
@pytest.mark.parametrize("wdtype", ["int8", "int16", "int32", "int64", "uint8", "float32",
                                    "float64"])
def test_conv_returns_weight_dtype_with_lavas_cast(wdtype):
    """Lava returns ``result.astype(weight.dtype)``: for int8 weights a sum of 200
    wraps to -56; an int32 result is written directly (its values are exact)."""
    w = np.full((1, 2, 2, 1), 50, wdtype)
    x = np.ones((3, 3, 1), np.int8)
    out = utils.conv(x, w, 2, 1, 0, 1, 1)
    assert out.dtype == np.dtype(wdtype)
    expected = np.full((2, 2, 1), 200)  # 4 taps x 50
    np.testing.assert_array_equal(out, expected.astype(wdtype))


@pytest.mark.parametrize("path", ["auto", "dense", "events"])
def test_conv_int32_weights_beyond_int32_sums_are_exact_then_cast(path):
    """Sums of 2**31 and more cannot be int32: they are computed in int64 and cast
    (two's complement, as NumPy casts), never silently in an overflowing int32."""
    w = np.full((1, 1, 1, 2), 2**30, np.int32)
    x = np.full((1, 1, 2), 3, np.int32)  # sum 6 * 2**30
    out = utils.conv(x, w, 1, 1, 0, 1, 1, path=path)
    assert out.dtype == np.int32
    assert out[0, 0, 0] == np.array(6 * 2**30, np.int64).astype(np.int32)


# -- every NumPy dtype and byte order ------------------------------------------------
NUMERIC = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
           "float16", "float32", "float64", "longdouble"]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dtype", NUMERIC)
def test_every_dtype_and_byte_order_as_input_and_weight(dtype, order):
    rng = np.random.default_rng(5)
    dt = np.dtype(dtype)
    if dt.itemsize > 1:
        dt = dt.newbyteorder(order)
    lo = 0 if dt.kind in "ub" else -4
    x = rng.integers(lo, 5, (7, 6, 3)) * (rng.random((7, 6, 3)) < 0.4)
    w = rng.integers(lo, 5, (4, 3, 2, 3))
    for xi, wi in ((x.astype(dt), w.astype(np.int32)), (x.astype(np.int8), w.astype(dt))):
        expected = conv_reference(xi.astype(np.int64), wi.astype(np.int64), padding=(1, 1))
        for path in ("dense", "events", "auto"):
            out = utils.conv(xi, wi, (3, 2), 1, 1, 1, 1, path=path)
            np.testing.assert_array_equal(out.astype(np.int64),
                                          expected.astype(wi.dtype).astype(np.int64))
        sc = utils.conv_scipy(xi, wi, (3, 2), 1, 1, 1, 1)
        np.testing.assert_array_equal(sc, expected)


@pytest.mark.parametrize("bad", [np.complex64, object, "U3", "M8[s]"])
def test_unsupported_dtypes_are_refused_by_name(bad):
    x = np.zeros((4, 4, 1), bad)
    w = np.ones((1, 3, 3, 1), np.int32)
    with pytest.raises(ValueError, match="input must be bool, integer or float"):
        utils.conv(x, w, 3, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="weight must be bool, integer or float"):
        utils.conv(np.zeros((4, 4, 1)), w.astype(bad), 3, 1, 0, 1, 1)


def test_uint64_beyond_int64_is_refused():
    x = np.full((3, 3, 1), 2**63, np.uint64)
    with pytest.raises(ValueError, match="uint64 values of 2\\*\\*63"):
        utils.conv(x, np.ones((1, 1, 1, 1), np.int64), 1, 1, 0, 1, 1)


@pytest.mark.parametrize("kwargs", [dict(padding=10**9), dict(input_shape=(10**6, 10**6, 10))])
def test_impossible_sizes_refused_before_allocating(kwargs):
    shape = kwargs.get("input_shape", (4, 4, 1))
    with pytest.raises(ValueError, match="entries") as info:
        Conv(weight=np.ones((2, 3, 3, shape[2]), np.int8), input_shape=shape,
             padding=kwargs.get("padding", 0))
    assert "more than" in str(info.value)
    with pytest.raises(ValueError, match="padded input frame would hold"):
        utils.conv(np.ones((4, 4, 1)), np.ones((1, 3, 3, 1)), 3, 1, 10**9, 1, 1)


def test_non_finite_values_still_refused_with_the_fast_check():
    """Large finite float32 values overflow the sum that proves finiteness; the
    per-value test then decides (no false refusal)."""
    x = np.full((4, 4, 1), 3e38, np.float32)
    w = np.ones((1, 1, 1, 1), np.float64)
    np.testing.assert_allclose(utils.conv(x, w, 1, 1, 0, 1, 1), x.astype(np.float64))
    x[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        utils.conv(x, w, 1, 1, 0, 1, 1)


# -- Lava's scalar conventions --------------------------------------------------------
def test_parameters_as_numpy_scalars_and_small_arrays():
    """npz and hdf5 files hand over 0-d and 1-element arrays; Lava accepts them."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (7, 7, 4))
    w = rng.integers(-3, 4, (6, 3, 3, 2))
    expected = conv_reference(x, w, stride=(2, 2), padding=(1, 1), groups=2)
    for groups in (2, np.int64(2), np.array(2), np.array([2])):
        args = (np.array([3, 3]), np.array(2), np.array([1]), np.int32(1), groups)
        np.testing.assert_array_equal(utils.conv(x, w, *args), expected)
        np.testing.assert_array_equal(utils.conv_scipy(x, w, *args), expected)
    conv = Conv(weight=w, input_shape=np.array([7, 7, 4]), padding=np.array(1),
                stride=np.array([2, 2]), groups=np.array(2), weight_exp=np.array(0),
                num_weight_bits=np.array([8]), num_message_bits=np.int8(0))
    assert conv.output_shape == expected.shape
    with pytest.raises(ValueError, match="groups must be an integer"):
        utils.conv(x, w, 3, 1, 1, 1, np.array([2.5]))
    with pytest.raises(ValueError, match="groups"):
        utils.conv(x, w, 3, 1, 1, 1, np.array([2, 2]))


def test_torch_is_available_flag_mirrors_lava():
    import importlib.util

    assert utils.TORCH_IS_AVAILABLE is (importlib.util.find_spec("torch") is not None)


# -- the float model on the event path -------------------------------------------------
@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(1, 4),
       density=st.sampled_from([0.01, 0.1, 0.5]), path=st.sampled_from(["events", "dense"]))
def test_float_model_integer_weights_exact_on_both_paths(g, seed, t, density, path):
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"]).astype(np.float64)
    frames = [rng.random(g["input_shape"]) < density for _ in range(t)]
    model = PyConvModelFloat(Conv(weight=w, input_shape=g["input_shape"], padding=g["padding"],
                                  stride=g["stride"], dilation=g["dilation"],
                                  groups=g["groups"]))
    model._engine.crossover = 0.0 if path == "dense" else 1.0
    try:
        expected, _ = model_reference(frames, w, g, "float")
        for i in range(t):
            np.testing.assert_array_equal(model.step(frames[i]), expected[i])
    finally:
        model._engine.crossover = None


@given(g=geometries(max_size=6), seed=seeds())
def test_float_model_real_weights_within_stated_tolerance(g, seed):
    """Non-integer float64 weights: the event path adds in event order, the dense
    path in tap order; both agree with a fixed-order float64 sum to a relative
    error of ``n_terms * 2**-52`` (bounded here by rtol 1e-12 with atol 1e-12)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=g["weight_shape"])
    x = (rng.random((1,) + g["input_shape"]) < 0.2) * rng.normal(size=g["input_shape"])
    geo = validate_geometry(g["input_shape"], w.shape, *_geo(g))
    layer = engine_mod.prepare(w, geo)
    expected = conv_reference(x[0], w, *_geo(g))
    for path in ("events", "dense"):
        got = layer.compute(x, np.float64, path=path)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# -- run reads the time-last input in place -------------------------------------------
@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(1, 5), n=st.integers(0, 2),
       name=st.sampled_from(sorted(MODELS)), bits=st.sampled_from([0, 0, 5]),
       dtype=st.sampled_from(["bool", "int8", "int32", "float64", "uint16"]),
       route=st.sampled_from(["auto", "timelast", "frames", "frames_dense"]))
def test_timelast_run_equals_steps(g, seed, t, n, name, bits, dtype, route):
    """At low density ``run`` scatters straight from (N, X, Y, C, T) data; whatever
    path it takes (forced here: in place, or transposed into frames for the event or
    the dense kernels), it equals T steps, sample by sample, including the held
    state."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    conv = Conv(weight=w, input_shape=g["input_shape"], padding=g["padding"],
                stride=g["stride"], dilation=g["dilation"], groups=g["groups"],
                num_message_bits=bits)
    shape = ((n,) if n else ()) + g["input_shape"] + (t,)
    active = rng.random(shape) < 0.03
    values = rng.integers(0 if dtype in ("bool", "uint16") else -15, 16, shape)
    data = (active * (values if bits else 1)).astype(dtype)
    samples = [data[i] for i in range(n)] if n else [data]
    model = MODELS[name](conv)
    warm = data[..., :1] if t else data
    model.run(warm)  # a held state to carry into the next run
    layer = model._engine
    if route != "auto":  # (a shared layer: restored below)
        layer.crossover = 0.0 if route == "frames_dense" else 1.0
        layer.timelast_density = 1.0 if route == "timelast" else 0.0
    try:
        got = model.run(data)
    finally:
        layer.crossover = None
        layer.timelast_density = engine_mod.TIMELAST_DENSITY
    for i, sample in enumerate(samples):
        ref = MODELS[name](conv)
        ref.step(sample[..., 0])
        expected = np.stack([ref.step(sample[..., k]) for k in range(t)], axis=-1)
        np.testing.assert_array_equal(got[i] if n else got, expected)


@given(seed=seeds(), x=st.integers(1, 4), y=st.integers(1, 5), c=st.sampled_from([1, 2, 4, 8]),
       t=st.sampled_from([3, 4, 8, 12]), density=st.floats(0.0, 1.0),
       dtype=st.sampled_from(["bool", "int8", "uint8", "int16", "float32", "int32",
                              "float64", "int64"]),
       binary=st.booleans(), t_offset=st.integers(0, 1))
def test_timelast_bucket_finds_every_entry(seed, x, y, c, t, density, dtype, binary, t_offset):
    """The in-place time-last scan (``ConvEngine.timelast_events``) against the
    reference, frame by frame: rows read as 8-byte words (when ``Y * C * T`` entries
    fill whole words) or entry by entry, densities up to every entry (several events
    in one word, at any of its entries), 1-, 2-, 4- and 8-byte entries (the dtypes
    the models hand over: float16 arrives as float32), values whose low byte is zero
    (+-256 in the wider integers: only a high byte marks the event), and float -0.0,
    which is no event (not a spike in the binary rule)."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, (3, 3, 3, c))
    g = validate_geometry((x, y, c), w.shape, 1, 1, 1, 1)
    layer = engine_mod.ConvEngine(w, g)
    shape = (1, x, y, c, t)
    magnitudes = [1, 2, 3] + ([256] if np.dtype(dtype).itemsize > 1 else [])
    values = rng.choice(magnitudes, shape) * (1 if dtype in ("bool", "uint8") else
                                              rng.choice([-1, 1], shape))
    data = np.where(rng.random(shape) < density, values, 0).astype(dtype)
    if data.dtype.kind == "f":  # -0.0 where no value is: the bits of a non-zero word
        data[data == 0] = -0.0
    acc = np.dtype(np.float64 if data.dtype.kind == "f" else np.int32)
    t_count = t - t_offset
    out = np.full((1, t + 1) + g.output_shape, 99, acc)
    layer.timelast_events(data, binary, acc, out, t_count, t_offset)
    messages = (data != 0).astype(np.int64) if binary else data.astype(acc)
    for frame in range(t + 1):
        k = frame - t_offset
        if 0 <= k < t_count:
            expected = conv_reference(messages[0, ..., k], w.astype(np.int64),
                                      padding=(1, 1))
        else:
            expected = np.zeros(g.output_shape)
        np.testing.assert_array_equal(out[0, frame], expected)


def test_timelast_run_known_answer():
    """One spike at (x=1, y=1) of a 3x3 input at t=0 through a 3x3 all-ones kernel,
    padding 1: every output pixel within one step of (1, 1) sees it once, so
    ``out[..., 1]`` is all ones (the delay: ``out[..., 0]`` is zero) and ``out[..., 2]``
    zero."""
    conv = Conv(weight=np.ones((1, 3, 3, 1), np.int32), input_shape=(3, 3, 1), padding=1)
    data = np.zeros((3, 3, 1, 3), np.int8)
    data[1, 1, 0, 0] = 1
    out = PyConvModelFixed(conv).run(data)
    np.testing.assert_array_equal(out[..., 0], 0)
    np.testing.assert_array_equal(out[..., 1], 1)
    np.testing.assert_array_equal(out[..., 2], 0)


def test_timelast_path_is_taken_for_sparse_contiguous_input():
    calls = []
    rng = np.random.default_rng(7)
    conv = Conv(weight=int8_weights(rng, (8, 3, 3, 8)), input_shape=(16, 16, 8), padding=1)
    model = PyConvModelFixed(conv)
    real = model._engine.timelast_events

    def spy(*a, **kw):
        calls.append(a[0].shape)
        return real(*a, **kw)

    model._engine.timelast_events = spy
    try:
        data = rng.random((16, 16, 8, 10)) < 0.002
        model.run(data)
        assert calls == [(1, 16, 16, 8, 10)]
        model.run(np.asfortranarray(data))  # not C-contiguous: the frames path
        assert len(calls) == 1
        # 3 % active, above TIMELAST_DENSITY: transposed into frames (and still
        # below the event path's crossover), so the in-place scan is not called
        dense_ish = rng.random((16, 16, 8, 10)) < 0.03
        assert model._engine.crossover_density(4) > 0.03
        got = model.run(dense_ish)
        assert len(calls) == 1
        ref = PyConvModelFixed(conv)
        ref.step(data[..., -1])  # the state the two runs above left
        for k in range(10):
            np.testing.assert_array_equal(got[..., k], ref.step(dense_ish[..., k]))
    finally:
        del model._engine.timelast_events


def _steps(conv, held, data):
    """``run(data)`` of a model holding ``held``, by steps (the reference)."""
    ref = PyConvModelFixed(conv)
    ref.step(held)
    return np.stack([ref.step(data[..., k]) for k in range(data.shape[-1])], axis=-1)


@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_graded_run_copies_frames_as_int8_only_when_every_message_fits(dtype):
    """Graded payloads that fit int8 (the input's dtype, or values within 127) are
    copied into int8 frames; a held state beyond int8 keeps the int32 copy. Either
    way ``run`` equals the steps."""
    rng = np.random.default_rng(3)
    conv = Conv(weight=int8_weights(rng, (6, 3, 3, 4)), input_shape=(7, 6, 4), padding=1,
                num_message_bits=8)
    small = rng.integers(-100, 101, (7, 6, 4, 5)).astype(dtype)
    large = small.astype(np.int32)
    large[..., -1] = 1000  # the state this run leaves is beyond int8
    model = PyConvModelFixed(conv)
    chosen = []
    real = model._frames_dtype

    def spy(*a):
        chosen.append(real(*a))
        return chosen[-1]

    model._frames_dtype = spy
    model._engine.crossover = 0.0  # the dense path: every entry is a message
    try:
        model.run(large)
        got = model.run(small)  # held: large[..., -1], 1000 everywhere
        np.testing.assert_array_equal(got, _steps(conv, large[..., -1], small))
        assert chosen == [np.int32, np.int32]  # 1000 received, then 1000 held
        got = model.run(small)  # held: small[..., -1], within int8
        np.testing.assert_array_equal(got, _steps(conv, small[..., -1], small))
        assert chosen[-1] == np.int8
    finally:
        model._engine.crossover = None
    # a held state bounded beyond int8 by its dtype, whose values fit: int8 frames
    state = np.zeros((7, 6, 4), np.int32)
    assert real(np.dtype(dtype), 100, state, 2**31 - 1) == np.int8
    state[0, 0, 0] = -129
    assert real(np.dtype(dtype), 100, state, 2**31 - 1) == np.int32
    # binary models and payloads beyond int8 keep the message dtype
    assert real(np.dtype(np.int32), 128, state[...] * 0, 0) == np.int32
    binary = PyConvModelFixed(Conv(weight=int8_weights(rng, (6, 3, 3, 4)),
                                   input_shape=(7, 6, 4)))
    assert binary._frames_dtype(np.dtype(np.int8), 1, state * 0, 0) == np.bool_


# -- fork ----------------------------------------------------------------------------
def test_forked_child_after_parallel_parent_computes_correctly():
    """multiprocessing's default start method on Linux forks: the child of a parent
    that ran parallel kernels must compute right results (not be killed)."""
    code = textwrap.dedent("""
        import multiprocessing as mp, numpy as np, sys
        from lavaconv import utils
        rng = np.random.default_rng(0)
        x = rng.random((20, 18, 8)) < 0.1
        w = rng.integers(-9, 10, (16, 3, 3, 8)).astype(np.int32)
        ref = {p: utils.conv(x, w, 3, 1, 1, 1, 1, path=p) for p in ("dense", "events")}
        def child(q):
            q.put(all(np.array_equal(utils.conv(x, w, 3, 1, 1, 1, 1, path=p), ref[p])
                      for p in ("dense", "events")))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(120)
        ok = p.exitcode == 0 and q.get(timeout=5)
        same = np.array_equal(ref["dense"], ref["events"])
        sys.exit(0 if ok and same else 1)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@given(g=geometries(max_size=7), seed=seeds(), n=st.integers(2, 5),
       chunk_bytes=st.integers(1, 4096), graded=st.booleans(),
       given_out=st.booleans())
def test_dense_in_chunks_of_frames_equals_the_reference(g, seed, n, chunk_bytes, graded,
                                                         given_out):
    """Stacks of frames run in chunks of ``dense_chunk`` frames (forced small here:
    a chunk of 1 frame up to a few): exact int32 and int64 results (the float32
    accumulator cast row by row into them), and float64 sums accumulated in the
    result itself (no cast), into ``out`` or not."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    geo = validate_geometry(g["input_shape"], w.shape, *_geo(g))
    layer = engine_mod.ConvEngine(w, geo)
    x = (rng.integers(-128, 128, (n,) + g["input_shape"]) if graded else
         rng.random((n,) + g["input_shape"]) < 0.3).astype(np.int8)
    expected = np.stack([conv_reference(f, w, *_geo(g)) for f in x])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_mod, "_DENSE_CHUNK_BYTES", chunk_bytes)
        for out_dtype in (np.int32, np.int64):
            out = np.empty((n,) + geo.output_shape, out_dtype) if given_out else None
            got = layer.exact(x, path="dense", out_dtype=out_dtype, out=out)
            assert got.dtype == out_dtype and (out is None or got is out)
            np.testing.assert_array_equal(got, expected)
        out = np.empty((n,) + geo.output_shape) if given_out else None
        got = layer.dense(x, np.float64, out=out)  # exact: integer sums below 2**53
        assert got.dtype == np.float64 and (out is None or got is out)
        np.testing.assert_array_equal(got, expected)
        acc = np.dtype(np.float32)
        assert layer.dense_chunk(x.dtype, acc, True) == max(
            1, chunk_bytes // ((layer.dense_scratch_entries(x.dtype, acc)
                                + int(np.prod(geo.output_shape))) * 4))


def test_dense_chunks_reuse_their_scratch_buffers():
    """The last, shorter chunk and a later single frame take the leading part of the
    kept scratch buffers instead of replacing them (no fresh allocation per call)."""
    rng = np.random.default_rng(4)
    w = int8_weights(rng, (8, 3, 3, 8))
    geo = validate_geometry((9, 7, 8), w.shape, 1, 1, 1, 1)
    layer = engine_mod.ConvEngine(w, geo)
    # (int16: the float32 dot kernel's scratch; int8 runs on the VNNI kernel where the
    # host has it, whose scratch tests/test_vnni.py checks)
    x = rng.integers(-128, 128, (5, 9, 7, 8)).astype(np.int16)
    per_frame = (layer.dense_scratch_entries(x.dtype, np.float32)
                 + int(np.prod(geo.output_shape))) * 4
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_mod, "_DENSE_CHUNK_BYTES", 2 * per_frame)  # chunks 2, 2, 1
        assert layer.dense_chunk(x.dtype, np.float32, True) == 2
        first = layer.exact(x, path="dense", out_dtype=np.int32)
        assert layer.dense_kind == "dot_rows"  # its input copy: the "rows" scratch
        kept = {name: getattr(layer._local, name) for name in ("accumulator", "rows")}
        assert all(buf.shape[0] == 2 for buf in kept.values())
        again = layer.exact(x, path="dense", out_dtype=np.int32)
        one = layer.exact(x[:1], path="dense", out_dtype=np.int32)
        for name, buf in kept.items():
            assert getattr(layer._local, name) is buf
    expected = np.stack([conv_reference(f, w, (1, 1), (1, 1), (1, 1), 1) for f in x])
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(one, expected[:1])


@pytest.mark.parametrize("kind", KINDS)
def test_strategies_reach_every_dense_kernel(kind):
    """The property tests' geometries reach every dense kernel kind."""
    from hypothesis import find

    wanted = {"small": {"planes"}, "wide": {"dot", "dot_rows"},
              "depthwise": {"depthwise", "depthwise_direct"}}[kind]
    for target in wanted:
        find(geometries(kind=kind), lambda g, target=target: engine_mod.ConvEngine(
            np.ones(g["weight_shape"], np.int8),
            validate_geometry(g["input_shape"], g["weight_shape"], *_geo(g))
        ).dense_kind == target)


# -- pickling -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_pickle_compactly_and_continue_identically(name):
    import pickle

    rng = np.random.default_rng(8)
    w = int8_weights(rng, (16, 3, 3, 8))
    conv = Conv(weight=w, input_shape=(12, 10, 8), padding=1, num_message_bits=6)
    kw = dict(accumulator_overflow="saturate", num_accum_bits=12) if name == "bitacc" else {}
    model = MODELS[name](conv, **kw)
    fresh = pickle.dumps(model)
    # a fresh model ships the process (its weights once) and options, not its layer
    assert len(fresh) < 2 * w.nbytes + 4000
    x = rng.integers(-20, 21, (12, 10, 8)) * (rng.random((12, 10, 8)) < 0.3)
    model.step(x)
    clone = pickle.loads(pickle.dumps(model))
    assert clone._engine is model._engine  # one prepared layer per process
    y = rng.integers(-20, 21, (12, 10, 8))
    np.testing.assert_array_equal(clone.step(y), model.step(y))
    if name == "bitacc":
        assert clone.accumulator_overflow == "saturate" and clone.num_accum_bits == 12


@pytest.mark.parametrize("name", sorted(MODELS))
def test_apply_is_what_the_next_step_emits_and_keeps_the_state(name):
    rng = np.random.default_rng(9)
    conv = Conv(weight=int8_weights(rng, (6, 3, 3, 4)), input_shape=(9, 7, 4), padding=1,
                num_message_bits=5)
    model = MODELS[name](conv)
    x = rng.integers(-16, 16, (9, 7, 4))
    held = model.a_buf
    got = model.apply(x)
    np.testing.assert_array_equal(model.a_buf, held)  # no state change
    out = np.full(conv.output_shape, 7, model.out_dtype)
    assert model.apply(x, out) is out
    np.testing.assert_array_equal(out, got)
    model.step(x)
    np.testing.assert_array_equal(model.step(x), got)
    with pytest.raises(ValueError, match="out must be"):
        model.apply(x, np.zeros(conv.output_shape, np.int8))
    with pytest.raises(ValueError, match="s_in must be one frame"):
        model.apply(x[:-1])


# -- found by probing odd inputs ------------------------------------------------------
@pytest.mark.parametrize("wdtype", ["float16", "longdouble", "uint64", ">i4", ">f8"])
def test_conv_returns_the_weights_own_dtype(wdtype):
    """Lava returns ``result.astype(weight.dtype)`` for the dtype it was given, even
    where the kernels compute in another (float16 in float32, uint64 in int64)."""
    w = np.full((1, 1, 1, 1), 3, wdtype)
    x = np.full((2, 2, 1), 2, np.int8)
    out = utils.conv(x, w, 1, 1, 0, 1, 1)
    assert out.dtype == np.dtype(wdtype)
    np.testing.assert_array_equal(out.astype(np.float64), 6.0)


def test_signed_clamp_bits_as_small_arrays():
    for bits in (np.array(4), np.array([4]), np.int16(4)):
        assert utils.signed_clamp(9, bits) == -7  # wraps, as Lava's does


def test_huge_stride_is_refused_by_name():
    with pytest.raises(ValueError, match="stride must be <= 2147483647"):
        utils.conv(np.ones((4, 4, 1)), np.ones((1, 3, 3, 1)), 3, 10**30, 0, 1, 1)


def test_allocation_beyond_memory_is_refused_before_allocating(monkeypatch):
    """A layer under the frame limit whose call would still need more memory than the
    machine has: a ValueError naming the size, not a MemoryError (the limit is lowered
    through LAVACONV_MAX_BYTES so the test allocates nothing large)."""
    monkeypatch.setenv("LAVACONV_MAX_BYTES", str(2**20))
    x = np.ones((40, 40, 8), np.int8)
    w = np.ones((64, 3, 3, 8), np.int32)  # output 40*40*64*4 = 400 KB, int32
    utils.conv(x, w, 3, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"GiB, more than the .* GiB of memory"):
        utils.conv(x, w, 3, 1, 100, 1, 1)


# -- the binary spike rule inside the kernels ---------------------------------------------
@given(g=geometries(max_size=7), seed=seeds(), n=st.integers(1, 3),
       dtype=st.sampled_from(["int8", "int16", "int32", "float32", "float64", "bool"]),
       path=st.sampled_from(["auto", "dense", "events"]))
def test_binary_flag_counts_every_non_zero_entry_as_one_spike(g, seed, n, dtype, path):
    """``binary=True`` reads frames of any values as they are and adds each non-zero
    entry as a spike of value 1: the same exact sums as the frames ``x != 0``, on every
    path (what ``step`` relies on to skip copying a binary model's input)."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    layer = engine_mod.ConvEngine(w, validate_geometry(
        g["input_shape"], w.shape, g["stride"], g["padding"], g["dilation"], g["groups"]))
    active = rng.random((n,) + g["input_shape"]) < rng.random()
    values = rng.choice([-7.5, -3.0, -1.0, 0.5, 2.0, 9.0, 1.0], size=active.shape)
    x = (active * values).astype(dtype)
    for i in range(n):
        expected = conv_reference((x[i] != 0).astype(np.int64), w, *_geo(g))
        got = layer.exact(x, binary=True, path=path, out_dtype=np.int32)[i]
        np.testing.assert_array_equal(got, expected)
        got = layer.compute(x, np.float64, path=path, binary=True)[i]
        np.testing.assert_array_equal(got, expected)


@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(2, 5),
       block=st.sampled_from([1, 64, 4096]))
def test_scatter_in_blocks_of_output_rows_is_exact(g, seed, t, block):
    """Multi-frame scatters split each frame's output rows into blocks of at most
    ``_BLOCK_BYTES`` (256 KiB: test layers are far smaller, so the limit is lowered to
    reach 1..X_out blocks per frame); every split gives the reference."""
    import unittest.mock

    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    conv = Conv(weight=w, input_shape=g["input_shape"], padding=g["padding"],
                stride=g["stride"], dilation=g["dilation"], groups=g["groups"])
    data = (rng.random(g["input_shape"] + (t,)) < 0.05).astype(np.int8)
    frames = [data[..., k] for k in range(t)]
    expected, _ = model_reference(frames, w, g, "fixed")
    with unittest.mock.patch.object(engine_mod, "_BLOCK_BYTES", block):
        engine_mod.clear_cache()  # fresh layers: a kept layer keeps its call decisions
        got = PyConvModelFixed(conv).run(data)
        stack = np.ascontiguousarray(np.moveaxis(data, -1, 0))
        layer = engine_mod.prepare(w, conv.geometry)
        sums = layer.exact(stack, path="events", out_dtype=np.int64)
    for k in range(t):
        np.testing.assert_array_equal(got[..., k], expected[k])
    for k in range(t - 1):
        np.testing.assert_array_equal(sums[k], expected[k + 1])


def test_arrays_the_engine_allocates_are_cache_line_aligned():
    """empty() (results, accumulators, scratch, prepared weights) starts at a multiple of
    64 bytes, whatever NumPy's allocator returns; the arrays behave as np.empty's."""
    from lavaconv.engine import _ALIGN, ConvEngine, empty

    assert _ALIGN == 64
    for shape in [(0,), (1,), (3,), (2, 0, 3), (5, 7, 3), (1, 64, 64, 64), (3, 700, 1000)]:
        for dt in (np.int8, np.int32, np.int64, np.float32, np.float64):
            a = empty(shape, dt)
            assert a.shape == shape and a.dtype == dt
            assert a.flags.c_contiguous and a.flags.writeable
            assert a.ctypes.data % 64 == 0
            a[...] = 3
            assert int(a.sum()) == 3 * a.size
    rng = np.random.default_rng()
    for groups, wshape in ((1, (8, 3, 3, 6)), (6, (6, 3, 3, 1)), (1, (4, 3, 3, 40))):
        w = rng.integers(-9, 10, size=wshape).astype(np.int8)
        engine = ConvEngine(w, validate_geometry((7, 9, 6 if wshape[-1] != 40 else 40),
                                                 wshape, 1, 1, 1, groups))
        for dt in (np.float32, np.float64):
            for a in engine._prepare(np.dtype(dt)):
                assert a.ctypes.data % 64 == 0
        assert engine._prepare_events(np.dtype(np.int32)).ctypes.data % 64 == 0
        x = (rng.random((2,) + engine.geometry.input_shape) < 0.3).astype(np.int8)
        for path in ("dense", "events"):
            got = engine.exact(x, path=path, out_dtype=np.int32)
            assert got.ctypes.data % 64 == 0
            want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), (1, 1),
                                            (1, 1), (1, 1), groups) for f in x])
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                   np.uint16])
def test_content_compares_find_one_difference_in_any_block(dtype):
    """same_words / same_values (the cache's reuse check) over several 256-entry blocks:
    equal buffers are equal, and one changed entry at a block edge or the end is seen."""
    from lavaconv.kernels import compare

    rng = np.random.default_rng()
    info = np.iinfo(dtype)
    n = 3 * 256 + 7
    a = rng.integers(max(info.min, -100), min(info.max, 100), size=n, endpoint=True,
                     dtype=np.int64).astype(dtype)
    narrow = a.astype(np.int8)  # every value fits int8
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize]
    assert compare.same_words(a.view(bits), a.copy().view(bits))
    assert compare.same_values(a, narrow)
    for k in (0, 1, 255, 256, 511, 512, 767, 768, n - 1):
        b = a.copy()
        b[k] = b[k] + 1 if b[k] < 100 else b[k] - 1
        assert not compare.same_words(a.view(bits), b.view(bits)), k
        assert not compare.same_values(b, narrow), k
        assert compare.same_values(b, b.astype(np.int8)), k


def test_kernel_input_views_casts_and_never_warns():
    """lavaconv.dtypes.kernel_input: bool viewed as uint8 for the event kernels (no copy);
    on the dense path the read dtypes as they are, others cast to the accumulator, a
    float64 beyond float32's range to inf without a warning (warnings are errors here)."""
    from lavaconv.dtypes import kernel_input, kernel_reads

    b = np.array([[True, False, True]])
    v = kernel_input(b)
    assert v.dtype == np.uint8 and np.shares_memory(v, b) and v.tolist() == [[1, 0, 1]]
    f32 = np.dtype(np.float32)
    for dt in (np.bool_, np.uint8, np.int8, np.int16, np.float32):
        x = np.ones((2, 3), dt)
        assert kernel_reads(x.dtype, f32) and kernel_input(x, f32) is x
    for dt in (np.uint16, np.int32, np.int64, np.uint32, np.float64):
        x = np.arange(6, dtype=dt).reshape(2, 3)
        assert not kernel_reads(x.dtype, f32)
        got = kernel_input(x, f32)
        assert got.dtype == f32 and got.tolist() == x.tolist()
        out = np.empty((2, 3), f32)
        assert kernel_input(x, f32, out) is out and out.tolist() == x.tolist()
    big = kernel_input(np.array([1e300, -1e300, 3.5]), f32)
    assert big.tolist() == [np.inf, -np.inf, 3.5]


def test_bool_input_whose_bytes_are_not_0_or_1_counts_as_true():
    """A bool array holding other bytes than 0 and 1 (np.frombuffer) means True wherever a
    byte is non-zero, as NumPy casts it: every path and run give the reference's sums."""
    rng = np.random.default_rng()
    shape, wshape = (6, 7, 8), (5, 3, 3, 8)
    w = rng.integers(-9, 10, size=wshape).astype(np.int8)
    raw = rng.integers(0, 256, size=shape).astype(np.uint8)
    raw[rng.random(shape) < 0.6] = 0
    x = np.frombuffer(raw.tobytes(), np.bool_).reshape(shape)
    want = conv_reference(x.astype(np.int64), w.astype(np.int64), (1, 1), (1, 1), (1, 1), 1)
    for path in ("dense", "events"):
        got = utils.conv(x, w.astype(np.int32), 3, 1, 1, 1, 1, path=path)
        np.testing.assert_array_equal(got, want, err_msg=path)
    seq = np.stack([x, x, np.zeros(shape, bool)], axis=-1)  # C-contiguous, time last
    models = [M(Conv(weight=w, input_shape=shape, padding=1, num_message_bits=bits))
              for bits in (0, 8) for M in (PyConvModelFixed, PyConvModelFloat)]
    for model in models:
        out = model.run(np.ascontiguousarray(seq))
        np.testing.assert_array_equal(out[..., 1], want)
        np.testing.assert_array_equal(out[..., 2], want)
