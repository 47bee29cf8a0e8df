"""The three Conv models against SPEC 3-6 (tests/reference.py), plus known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    lava_fixed_run_spk_reference,
    model_reference,
    saturate_reference,
    wrap_reference,
)
from strategies import geometries, int8_weights, seeds

import lavaconv
from lavaconv import Conv, PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat, SignMode

MODELS = {"float": PyConvModelFloat, "fixed": PyConvModelFixed, "bitacc": PyConvModelBitAcc}


def _conv(g, weight, **kw):
    return Conv(weight=weight, input_shape=g["input_shape"], padding=g["padding"],
                stride=g["stride"], dilation=g["dilation"], groups=g["groups"], **kw)


def _sequence(rng, shape, t, num_message_bits, kind):
    """T frames: binary spikes in assorted dtypes, or graded payloads in range."""
    active = rng.random((t,) + tuple(shape)) < rng.random()
    if num_message_bits == 0:
        if kind == "float":  # any non-zero float is a spike (SPEC 3)
            return active * rng.uniform(-3, 3, size=active.shape)
        return active.astype(kind)
    half = 2 ** (num_message_bits - 1)
    payload = rng.integers(-half, half, size=active.shape)
    return (active * payload).astype(np.int64 if kind == "float" else kind)


def _check_sequence(model, frames, expected, a_buf, exact=True):
    """Step-by-step, one run, and a run split in two all give the reference."""
    assert_eq = (np.testing.assert_array_equal if exact else
                 lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9))
    t = len(frames)
    data = np.stack(frames, axis=-1)
    out = model.run(data)
    assert out.shape == model.conv.output_shape + (t,)
    assert out.dtype == model.out_dtype
    for i in range(t):
        assert_eq(out[..., i], expected[i])
    assert_eq(model.a_buf, a_buf)
    model.reset()
    for i in range(t):
        got = model.step(frames[i])
        assert got.dtype == model.out_dtype
        assert_eq(got, expected[i])
    model.reset()
    cut = t // 2
    first, second = model.run(data[..., :cut]), model.run(data[..., cut:])
    assert_eq(np.concatenate([first, second], axis=-1), out)
    # out=: a plain time-last array receives one copy; a run's own result is
    # written in place (both pre-filled with garbage, so a skipped write shows)
    model.reset()
    plain = np.full(out.shape, 7, out.dtype)
    assert model.run(data, out=plain) is plain
    assert_eq(plain, out)
    model.reset()
    reused = model.run(data)
    reused[...] = 7
    model.reset()
    assert model.run(data, out=reused) is reused
    assert_eq(reused, out)


@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(1, 4),
       bits=st.sampled_from([0, 0, 1, 4, 8]),
       kind=st.sampled_from(["bool", "int8", "int32", "float"]))
def test_fixed_model_matches_spec(g, seed, t, bits, kind):
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"]).astype(np.int32)
    if kind == "bool" and bits:
        kind = "int16"
    frames = list(_sequence(rng, g["input_shape"], t, bits, kind))
    model = PyConvModelFixed(_conv(g, w, num_message_bits=bits))
    expected, a_buf = model_reference(frames, w, g, "fixed", num_message_bits=bits)
    _check_sequence(model, frames, expected, a_buf)


@given(g=geometries(max_size=6), seed=seeds(), t=st.integers(1, 3),
       bits=st.sampled_from([0, 0, 3, 8]),
       nwb=st.integers(1, 8), exp=st.integers(-8, 7),
       exponent_mode=st.sampled_from(["post_accumulate", "per_weight"]),
       accum=st.sampled_from([24, 24, 16, 9]),
       overflow=st.sampled_from(["wrap", "saturate"]),
       msg_overflow=st.sampled_from(["error", "wrap", "saturate"]),
       sign=st.sampled_from([None, "MIXED", "EXCITATORY", "INHIBITORY"]),
       scale=st.sampled_from([1, 2, 300]))
def test_bitacc_model_matches_spec(g, seed, t, bits, nwb, exp, exponent_mode, accum, overflow,
                                   msg_overflow, sign, scale):
    rng = np.random.default_rng(seed)
    # scale 300 pushes weights past the 8-bit clip range
    w = int8_weights(rng, g["weight_shape"]).astype(np.int32) * scale
    frames = list(_sequence(rng, g["input_shape"], t, bits, "int32"))
    if bits and msg_overflow != "error":
        frames = [f * 3 for f in frames]  # out of range: exercise wrap / saturate
    model = PyConvModelBitAcc(
        _conv(g, w, num_message_bits=bits, num_weight_bits=nwb, weight_exp=exp),
        sign_mode=sign, exponent_mode=exponent_mode, num_accum_bits=accum,
        accumulator_overflow=overflow, message_overflow=msg_overflow)
    expected, a_buf = model_reference(
        frames, w, g, "bitacc", num_message_bits=bits, weight_exp=exp, num_weight_bits=nwb,
        sign_mode=sign, exponent_mode=exponent_mode, num_accum_bits=accum,
        accumulator_overflow=overflow, message_overflow=msg_overflow)
    _check_sequence(model, frames, expected, a_buf)


@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(1, 4),
       bits=st.sampled_from([0, 8]))
def test_float_model_matches_spec(g, seed, t, bits):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(g["weight_shape"])
    if bits:
        frames = [rng.standard_normal(g["input_shape"]) for _ in range(t)]
    else:
        frames = list(_sequence(rng, g["input_shape"], t, 0, "float"))
    model = PyConvModelFloat(_conv(g, w, num_message_bits=bits))
    expected, a_buf = model_reference(frames, w, g, "float", num_message_bits=bits)
    # float64 sums of at most 4*4*3 products of N(0,1) values, in a different order
    # than the reference: rtol 1e-12 and atol 1e-9 are far above the rounding error.
    _check_sequence(model, frames, expected, a_buf, exact=False)


@given(g=geometries(max_size=7), seed=seeds(), t=st.integers(1, 4),
       bits=st.sampled_from([0, 6]))
def test_fixed_model_is_lava_run_spk(g, seed, t, bits):
    """The 'done when' criterion: a Lava script's arrays, from Lava's own arithmetic."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    frames = list(_sequence(rng, g["input_shape"], t, bits, "int32"))
    expected, _ = lava_fixed_run_spk_reference(frames, w, g, bits)
    model = PyConvModelFixed(_conv(g, w, num_message_bits=bits))
    for i in range(t):
        got = model.step(frames[i])
        assert got.dtype == np.int32 and got.shape == expected[i].shape
        np.testing.assert_array_equal(got, expected[i])


@given(g=geometries(max_size=6), seed=seeds(), name=st.sampled_from(sorted(MODELS)),
       bits=st.sampled_from([0, 0, 5]),
       kind=st.sampled_from(["int8", "int32", "bool", "float"]),
       plan=st.lists(st.sampled_from(["step", "step_view", "run1", "run3"]), min_size=1,
                     max_size=5), overflow=st.sampled_from(["error", "wrap"]))
def test_steps_and_runs_interleaved_follow_the_reference(g, seed, name, bits, kind, plan,
                                                         overflow):
    """``step`` convolves its input at once (no copy of it is kept) and ``run`` keeps
    messages: any mix of the two, with inputs changed by the caller after each call,
    contiguous or strided, gives the reference's sequence."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    kw, ref_kw = {}, {}
    if name == "bitacc" and bits:
        kw = ref_kw = {"message_overflow": overflow}
    if kind == "bool" and bits:
        kind = "int16"
    lengths = {"step": 1, "step_view": 1, "run1": 1, "run3": 3}
    total = sum(lengths[p] for p in plan)
    frames = list(_sequence(rng, g["input_shape"], total, bits, kind))
    if overflow == "wrap" and bits:
        frames = [(f * 3).astype(np.int32) for f in frames]  # outside the 5-bit range
    if kind == "float":  # float payloads (integral for the integer models), read raw
        frames = [f.astype(np.float64) for f in frames]
    model = MODELS[name](_conv(g, w, num_message_bits=bits), **kw)
    expected, a_buf = model_reference(frames, w, g, name, num_message_bits=bits, **ref_kw)
    compare = (np.testing.assert_array_equal if name != "float" else
               lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9))
    t = 0
    for p in plan:
        if p.startswith("step"):
            x = frames[t].copy()
            if p == "step_view":  # a strided view of the same values
                wide = np.zeros(x.shape[:2] + (2 * x.shape[2],), x.dtype)
                wide[..., ::2] = x
                x = wide[..., ::2]
            compare(model.step(x), expected[t])
            x[...] = 1  # the caller reuses its array: the model must not see it
        else:
            n = lengths[p]
            data = np.stack(frames[t:t + n], axis=-1)
            got = model.run(data)
            for i in range(n):
                compare(got[..., i], expected[t + i])
            data[...] = 1
        t += lengths[p]
    compare(model.a_buf, a_buf)


def test_step_float_payload_beyond_float64_exactness_stays_exact():
    """Known answer: a float64 payload 2**31 - 1 times a weight 2**23 + 1 is
    2**54 + 2**31 - 2**23 - 1, which float64 cannot hold (it rounds to a multiple
    of 4); likewise the float32 payload 2**30 + 2**7 times 2**31 - 1. ``step`` must
    not read such payloads raw into the event path's float64 scatter: the output is
    the exact sum wrapped to 24 bits, computed here with Python ints
    (PyConvModelFixed takes any int32 payload, whatever num_message_bits says). One
    event in a 16 x 16 x 4 frame: the event path."""
    for weight, payload, dtype in ((2**23 + 1, 2**31 - 1, np.float64),
                                   (2**31 - 1, 2**30 + 2**7, np.float32)):
        w = np.zeros((1, 1, 1, 4), np.int64)
        w[0, 0, 0, 0] = weight
        conv = Conv(weight=w, input_shape=(16, 16, 4), num_message_bits=24)
        total = payload * weight
        assert float(total) != total  # really beyond float64 (float32 payload: exact)
        want = ((total + 2**23) % 2**24) - 2**23  # wrap_to_bits(total, 24)
        x = np.zeros((16, 16, 4), dtype)
        x[3, 5, 0] = payload
        model = PyConvModelFixed(conv)
        assert model._engine.decide(x[None]) == "events"
        model.step(x)
        got = model.step(np.zeros((16, 16, 4)))
        assert int(got[3, 5, 0]) == want and np.count_nonzero(got) == 1
        assert int(model.apply(x)[3, 5, 0]) == want


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batched_run_and_run_out_after_a_step_start_from_its_output(name):
    """After an unbatched ``step`` the model holds only the output: a batched ``run``
    starts every sample from it, and ``run(out=...)`` writes it into frame 0."""
    rng = np.random.default_rng(5)
    w = int8_weights(rng, (4, 3, 3, 3))
    g = {"input_shape": (6, 5, 3), "stride": (1, 1), "padding": (1, 1),
         "dilation": (1, 1), "groups": 1}
    first = (rng.random((6, 5, 3)) < 0.4).astype(np.int8)
    data = (rng.random((2, 6, 5, 3, 3)) < 0.4).astype(np.int8)
    model = MODELS[name](_conv(g, w))
    model.step(first)
    got = model.run(data)
    for i in range(2):
        expected, _ = model_reference([first] + [data[i, ..., k] for k in range(3)], w, g,
                                      name)
        for k in range(3):
            np.testing.assert_allclose(got[i, ..., k], expected[k + 1], rtol=1e-12)
    model = MODELS[name](_conv(g, w))
    model.step(first)
    out = model.run(data[0])  # a run's own result: written in place next time
    model.reset()
    model.step(first)
    out[...] = 7
    assert model.run(data[0], out=out) is out
    expected, _ = model_reference([first] + [data[0, ..., k] for k in range(3)], w, g, name)
    for k in range(3):
        np.testing.assert_allclose(out[..., k], expected[k + 1], rtol=1e-12)


@given(g=geometries(max_size=6), seed=seeds(), n=st.integers(1, 3), t=st.integers(1, 3),
       name=st.sampled_from(sorted(MODELS)))
def test_batch_equals_per_sample_runs(g, seed, n, t, name):
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    data = (rng.random((n,) + g["input_shape"] + (2 * t,)) < 0.4).astype(np.int8)
    batched = MODELS[name](_conv(g, w))
    out = np.concatenate([batched.run(data[..., :t]), batched.run(data[..., t:])], axis=-1)
    assert out.shape == (n,) + batched.conv.output_shape + (2 * t,)
    for i in range(n):
        single = MODELS[name](_conv(g, w))
        np.testing.assert_array_equal(out[i], single.run(data[i]))
        np.testing.assert_array_equal(batched.a_buf[i], single.a_buf)


# -- known answers -------------------------------------------------------------------
def _one_by_one(weights, **kw):
    """A 1x1 convolution of a (1, 1, C) input to one output: out = sum_c w_c * x_c."""
    w = np.asarray(weights).reshape(1, 1, 1, -1)
    return Conv(weight=w, input_shape=(1, 1, w.shape[-1]), **kw)


def _second_output(model, x):
    """Run two steps with ``x`` then zeros; the second output is f(x)."""
    out = model.run(np.stack([np.asarray(x).reshape(model.conv.input_shape),
                              np.zeros(model.conv.input_shape, np.int64)], axis=-1))
    assert np.all(out[..., 0] == 0)
    return out[0, 0, 0, 1]


H = 2**23
#: payloads on four channels, all weights 1, and the exact sum they give
BOUNDARY_SUMS = [
    ([H - 1, 0, 0, 0], H - 1),
    ([H // 2, H // 2, 0, 0], H),
    ([-H, 0, 0, 0], -H),
    ([-H, -1, 0, 0], -H - 1),
    ([H // 2] * 4, 2 * H),
    ([-H, -H, 0, 0], -2 * H),
]
#: wrap_24(v) = ((v + 2**23) mod 2**24) - 2**23 and saturate_24 = clip to [-2**23, 2**23 - 1]
WRAP_24 = {H - 1: H - 1, H: -H, -H: -H, -H - 1: H - 1, 2 * H: 0, -2 * H: 0}
SATURATE_24 = {H - 1: H - 1, H: H - 1, -H: -H, -H - 1: -H, 2 * H: H - 1, -2 * H: -H}


@pytest.mark.parametrize("payload,total", BOUNDARY_SUMS, ids=lambda v: str(v))
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_accumulator_boundaries_bitacc(payload, total, overflow):
    """Sums landing on 2**23 - 1, 2**23, -2**23, -2**23 - 1 and +-2**24, 24-bit accumulator.

    Weights are all 1 (EXCITATORY: clip [0, 255] and truncation by 8 - 8 = 0 bits keep
    them), payloads are 24-bit graded messages (range [-2**23, 2**23 - 1], all in
    range), so the exact sum is the sum of the payloads; wrap and saturate then give
    the tables above (e.g. 2**23 wraps to -2**23 and saturates to 2**23 - 1; 2**24
    wraps to 0).
    """
    assert sum(payload) == total
    model = PyConvModelBitAcc(_one_by_one(np.ones(4, np.int32), num_message_bits=24),
                              accumulator_overflow=overflow)
    expected = (WRAP_24 if overflow == "wrap" else SATURATE_24)[total]
    assert _second_output(model, np.array(payload, np.int32)) == expected


@pytest.mark.parametrize("payload,total", BOUNDARY_SUMS, ids=lambda v: str(v))
def test_accumulator_boundaries_fixed_wraps(payload, total):
    """Lava's fixed model wraps to 24 bits (its signed_clamp): same sums, WRAP_24."""
    model = PyConvModelFixed(_one_by_one(np.ones(4, np.int32), num_message_bits=24))
    assert _second_output(model, np.array(payload, np.int64)) == WRAP_24[total]


def test_accumulator_width_other_than_24():
    """num_accum_bits=8: 100 + 100 = 200 wraps to 200 - 256 = -56, saturates to 127."""
    conv = _one_by_one(np.ones(2, np.int32), num_message_bits=8)
    x = np.array([100, 100])
    assert _second_output(PyConvModelBitAcc(conv, num_accum_bits=8), x) == -56
    assert _second_output(PyConvModelBitAcc(conv, num_accum_bits=8,
                                            accumulator_overflow="saturate"), x) == 127


def test_exponent_post_accumulation_vs_per_weight():
    """Weights [2, 2, 6, -6], all inputs spiking, weight_exp = -2.

    MIXED sign mode, 8 bits: truncation clears 1 bit, and these even weights survive.
    Post-accumulation: (2 + 2 + 6 - 6) = 4, floor(4 / 4) = 1. Per weight:
    floor(2/4) + floor(2/4) + floor(6/4) + floor(-6/4) = 0 + 0 + 1 - 2 = -1.
    """
    conv = _one_by_one(np.array([2, 2, 6, -6]), weight_exp=-2)
    x = np.ones(4, np.int8)
    post = PyConvModelBitAcc(conv)
    per = PyConvModelBitAcc(conv, exponent_mode="per_weight")
    assert post.sign_mode == SignMode.MIXED
    assert _second_output(post, x) == 1
    assert _second_output(per, x) == -1


def test_issue_exponent_example_with_mixed_truncation():
    """The issue's weights [1, 1, 3, -3] with weight_exp = -1, all inputs spiking.

    Before encoding the modes would give floor(2/2) = 1 vs 0 + 0 + 1 - 2 = -1, but the
    MIXED 8-bit encoding first clears the LSB as a floor ((w >> 1) << 1): the weights
    become [0, 0, 2, -4]. Post: floor(-2 / 2) = -1; per weight: 0 + 0 + 1 - 2 = -1.
    With num_weight_bits=8 in EXCITATORY mode nothing is cleared: weights [1, 3],
    exponent -1: post floor(4/2) = 2, per weight 0 + 1 = 1.
    """
    conv = _one_by_one(np.array([1, 1, 3, -3]), weight_exp=-1)
    x = np.ones(4, np.int8)
    np.testing.assert_array_equal(PyConvModelBitAcc(conv).weight.ravel(), [0, 0, 2, -4])
    assert _second_output(PyConvModelBitAcc(conv), x) == -1
    assert _second_output(PyConvModelBitAcc(conv, exponent_mode="per_weight"), x) == -1
    conv = _one_by_one(np.array([1, 3]), weight_exp=-1)
    x = np.ones(2, np.int8)
    assert _second_output(PyConvModelBitAcc(conv), x) == 2
    assert _second_output(PyConvModelBitAcc(conv, exponent_mode="per_weight"), x) == 1


def test_positive_exponent_and_weight_bits():
    """EXCITATORY weights [7, 200], num_weight_bits=6 (clear 2 bits): [4, 200];
    weight_exp=+3: (4 + 200) * 8 = 1632, in both exponent modes."""
    conv = _one_by_one(np.array([7, 200]), weight_exp=3, num_weight_bits=6)
    x = np.ones(2, bool)
    for mode in ("post_accumulate", "per_weight"):
        assert _second_output(PyConvModelBitAcc(conv, exponent_mode=mode), x) == 1632


def test_sign_modes_clip_weights():
    """Weights [-300, -7, 5, 300] clipped per mode (SPEC 5.2), then truncated at 8 bits:

    MIXED [-256, 255] -> [-256, -7, 5, 255] -> floor to even: [-256, -8, 4, 254];
    EXCITATORY [0, 255] -> [0, 0, 5, 255]; INHIBITORY [-255, 0] -> [-255, -7, 0, 0].
    """
    conv = _one_by_one(np.array([-300, -7, 5, 300]))
    for mode, expected in [(SignMode.MIXED, [-256, -8, 4, 254]),
                           (SignMode.EXCITATORY, [0, 0, 5, 255]),
                           ("INHIBITORY", [-255, -7, 0, 0])]:
        model = PyConvModelBitAcc(conv, sign_mode=mode)
        np.testing.assert_array_equal(model.weight.ravel(), expected)
        assert _second_output(model, np.ones(4, np.int8)) == sum(expected)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_binary_rule_any_nonzero_is_one_spike(name):
    """num_message_bits=0: inputs -3, 0.2 and 5 each count as one spike.

    Weights [1, 10, 100] (EXCITATORY, 8 bits: unchanged): 1 + 10 + 100 = 111.
    """
    model = MODELS[name](_one_by_one(np.array([1, 10, 100])))
    assert _second_output(model, np.array([-3, 0.2, 5])) == 111
    assert _second_output(model, np.array([0.0, -0.0, 7])) == 100


@pytest.mark.parametrize("name", sorted(MODELS))
def test_first_output_is_zero(name):
    """SPEC 6: a_out(1) = 0 (the buffered initial state), of the model's dtype."""
    rng = np.random.default_rng(1)
    conv = Conv(weight=int8_weights(rng, (3, 3, 3, 2)), input_shape=(5, 6, 2), padding=1)
    model = MODELS[name](conv)
    first = model.step(np.ones((5, 6, 2), np.int8))
    assert first.shape == (5, 6, 3) and first.dtype == model.out_dtype
    assert not first.any()
    assert model.step(np.zeros((5, 6, 2))).any()
    model.reset()
    assert not model.step(np.ones((5, 6, 2), np.int8)).any()
    model.reset()
    assert not model.run(np.ones((2, 5, 6, 2, 3), bool))[..., 0].any()


def test_fixed_model_truncates_float_weights_toward_zero():
    """Lava stores weights as int32: 2.7 -> 2, -2.7 -> -2; sum over both spikes: 0."""
    model = PyConvModelFixed(_one_by_one(np.array([2.7, -2.7, 1.9])))
    np.testing.assert_array_equal(model.weight.ravel(), [2, -2, 1])
    assert _second_output(model, np.array([1, 1, 0])) == 0
    assert _second_output(model, np.array([0, 1, 1])) == -1


def test_fixed_model_graded_used_as_received():
    """Fixed model, num_message_bits=2: payload 1000 is used as is (Lava: no range)."""
    model = PyConvModelFixed(_one_by_one(np.array([3]), num_message_bits=2))
    assert _second_output(model, np.array([1000])) == 3000


def test_fixed_model_warns_once_and_ignores_exponent():
    """weight_exp and num_weight_bits are ignored as in Lava, with one warning."""
    conv = _one_by_one(np.array([3, 5]), weight_exp=-2, num_weight_bits=4)
    with pytest.warns(UserWarning, match="lava-nc/lava#803") as record:
        model = PyConvModelFixed(conv)
        assert _second_output(model, np.array([1, 1])) == 8
        model.step(np.ones((1, 1, 2)))
    assert len(record) == 1
    PyConvModelFixed(_one_by_one(np.array([3, 5])))  # defaults: no warning (errors here)


def test_message_overflow_policies():
    """4-bit payloads, range [-8, 7]; weight 1. Payload 9: wrap -> 9 - 16 = -7,
    saturate -> 7; -9: wrap -> 7, saturate -> -8; "error" raises."""
    conv = _one_by_one(np.array([1]), num_message_bits=4)
    assert _second_output(PyConvModelBitAcc(conv, message_overflow="wrap"), [9]) == -7
    assert _second_output(PyConvModelBitAcc(conv, message_overflow="saturate"), [9]) == 7
    assert _second_output(PyConvModelBitAcc(conv, message_overflow="wrap"), [-9]) == 7
    assert _second_output(PyConvModelBitAcc(conv, message_overflow="saturate"), [-9]) == -8
    assert _second_output(PyConvModelBitAcc(conv), [7]) == 7
    assert _second_output(PyConvModelBitAcc(conv), [-8]) == -8
    with pytest.raises(ValueError, match=r"outside the signed 4-bit range \[-8, 7\]"):
        _second_output(PyConvModelBitAcc(conv), [8])


# -- bad input leaves the state unchanged -------------------------------------------
def _primed(name, **kw):
    rng = np.random.default_rng(7)
    conv = Conv(weight=int8_weights(rng, (2, 2, 2, 3)), input_shape=(4, 4, 3), **kw)
    model = MODELS[name](conv)
    model.step(rng.integers(0, 2, (4, 4, 3)))
    assert model.a_buf.any()
    return model


BAD_INPUTS = [
    ("shape", lambda: np.ones((4, 4, 2)), "shape"),
    ("ndim", lambda: np.ones((4, 4)), "shape"),
    ("dtype", lambda: np.ones((4, 4, 3), complex), "dtype"),
    ("strings", lambda: np.full((4, 4, 3), "a"), "dtype"),
    ("nan", lambda: np.where(np.eye(4)[:, :, None] > 0, np.nan, 1.0) * np.ones(3), "NaN"),
    ("inf", lambda: np.full((4, 4, 3), np.inf), "infinite"),
]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("case,make,match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_and_keeps_state(name, case, make, match):
    model = _primed(name)
    before = model.a_buf
    bad = make()
    with pytest.raises(ValueError, match=match):
        model.step(bad)
    np.testing.assert_array_equal(model.a_buf, before)
    with pytest.raises(ValueError, match=match):
        model.run(np.stack([np.ones((4, 4, 3))] * 2 + [bad], axis=-1)
                  if bad.shape == (4, 4, 3) else bad[..., None])
    np.testing.assert_array_equal(model.a_buf, before)
    # the delay still holds: the next output is the state buffered before the errors
    np.testing.assert_array_equal(model.step(np.zeros((4, 4, 3))), before)


def test_out_of_range_graded_message_keeps_state():
    model = _primed("bitacc", num_message_bits=3)  # range [-4, 3]
    before = model.a_buf
    x = np.zeros((4, 4, 3, 5), np.int16)
    x[1, 2, 0, 4] = 4  # one bad payload in the last frame of a run
    with pytest.raises(ValueError, match="num_message_bits=3"):
        model.run(x)
    np.testing.assert_array_equal(model.a_buf, before)
    with pytest.raises(ValueError, match="non-integer"):
        model.step(np.full((4, 4, 3), 0.5))
    np.testing.assert_array_equal(model.a_buf, before)


def test_fixed_rejects_non_integer_and_int32_overflowing_payloads():
    model = _primed("fixed", num_message_bits=8)
    before = model.a_buf
    with pytest.raises(ValueError, match="non-integer"):
        model.step(np.full((4, 4, 3), 1.5))
    with pytest.raises(ValueError, match="int32"):
        model.step(np.full((4, 4, 3), 2**31, np.int64))
    np.testing.assert_array_equal(model.a_buf, before)


def test_batch_state_rules():
    model = _primed("fixed")
    model.run(np.zeros((2, 4, 4, 3, 2)))
    assert model.a_buf.shape == (2, 3, 3, 2)
    before = model.a_buf
    with pytest.raises(ValueError, match="reset"):
        model.step(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="N=2"):
        model.run(np.zeros((4, 4, 3, 2)))
    with pytest.raises(ValueError, match="N=3"):
        model.run(np.zeros((3, 4, 4, 3, 2)))
    np.testing.assert_array_equal(model.a_buf, before)
    model.reset()
    assert model.a_buf.shape == (3, 3, 2) and not model.a_buf.any()


def test_run_with_zero_steps_is_a_no_op():
    model = _primed("fixed")
    before = model.a_buf
    assert model.run(np.zeros((4, 4, 3, 0))).shape == (3, 3, 2, 0)
    np.testing.assert_array_equal(model.a_buf, before)


def test_bad_model_options():
    conv = _one_by_one(np.array([1, -1]))
    for kw, match in [({"exponent_mode": "pre"}, "exponent_mode"),
                      ({"accumulator_overflow": "clip"}, "accumulator_overflow"),
                      ({"message_overflow": "ignore"}, "message_overflow"),
                      ({"num_accum_bits": 33}, "num_accum_bits"),
                      ({"num_accum_bits": 0}, "num_accum_bits"),
                      ({"sign_mode": "POSITIVE"}, "sign_mode"),
                      ({"sign_mode": SignMode.NULL}, "sign_mode")]:
        with pytest.raises(ValueError, match=match):
            PyConvModelBitAcc(conv, **kw)
    with pytest.raises(ValueError, match="lavaconv.Conv"):
        PyConvModelFixed(object())


def test_chunked_run_equals_single_chunk():
    """run() splits long sequences into chunks of frames; the result cannot depend on it."""
    rng = np.random.default_rng(3)
    conv = Conv(weight=int8_weights(rng, (2, 3, 3, 2)), input_shape=(6, 5, 2), padding=1)
    data = rng.integers(0, 2, (6, 5, 2, 7))
    whole = PyConvModelFixed(conv).run(data)
    model = PyConvModelFixed(conv)
    model._chunk = 2
    np.testing.assert_array_equal(model.run(data), whole)


def test_functional_core_is_pure():
    """conv_step / conv_run return new state and never modify their arguments.

    With messages m(s) = s and f(m) = sum(m) + 1 per frame: a step from state [0, 0]
    with input [3, 3] emits f(state) = 1 and keeps [3, 3]; a run from state [[0]] over
    inputs 0, 1, 2 emits f(0), f(0), f(1) = 1, 1, 2 and keeps [[2]].
    """
    from lavaconv.models import conv_run, conv_step

    def messages(src, dst):
        dst[...] = src

    def synapse(m, out):  # the Synapse contract: write into ``out`` when given
        value = m.sum(axis=(1, 2, 3))[:, None, None, None] + 1
        if out is None:
            return value
        out[...] = value
        return out

    state = np.zeros((2, 1, 1), np.int64)
    new, out = conv_step(state, np.full((2, 1, 1), 3), messages, synapse)
    assert out.ravel().tolist() == [1] and new.ravel().tolist() == [3, 3]
    assert not state.any()
    frames = np.arange(3).reshape(1, 3, 1, 1, 1)
    new, outs = conv_run(np.zeros((1, 1, 1, 1), np.int64), frames, messages, synapse)
    assert outs.ravel().tolist() == [1, 1, 2] and new.ravel().tolist() == [2]
    new2, outs2 = conv_run(np.zeros((1, 1, 1, 1), np.int64), frames, messages, synapse, chunk=2)
    assert outs2.ravel().tolist() == [1, 1, 2] and new2.ravel().tolist() == [2]
    given = np.full((1, 3, 1, 1, 1), -5, np.int64)
    new3, outs3 = conv_run(np.zeros((1, 1, 1, 1), np.int64), frames, messages, synapse,
                           chunk=2, out=given)
    assert outs3 is given and given.ravel().tolist() == [1, 1, 2]


def test_top_level_exports():
    for name in ["Conv", "PyConvModelFloat", "PyConvModelFixed", "PyConvModelBitAcc",
                 "SignMode", "determine_sign_mode", "clip_weights", "truncate_weights"]:
        assert hasattr(lavaconv, name)
    assert PyConvModelFloat.tag == "floating_pt"
    assert PyConvModelFixed.tag == "fixed_pt"
    assert PyConvModelBitAcc.tag == "bit_accurate_loihi"


# -- graded payloads near the int64 limits (SPEC 3) ---------------------------------
def _bitacc_4bit(overflow):
    """One input channel, weight 1, 4-bit messages (range [-8, 7]): out = message."""
    return PyConvModelBitAcc(_one_by_one(np.array([1]), num_message_bits=4),
                             message_overflow=overflow)


INT64_PAYLOADS = [np.uint64(2**63 - 1), np.int64(-(2**63) + 1), np.int64(2**40 + 9),
                  np.float64(2.0**62), np.float64(-1e18), np.uint64(2**63 - 8)]


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("payload", INT64_PAYLOADS, ids=repr)
def test_message_rule_applies_to_true_value_of_any_int64_payload(payload, overflow):
    """wrap_4 / saturate_4 of the payload's exact integer value, from step and run."""
    rule = wrap_reference if overflow == "wrap" else saturate_reference
    expected = rule(int(payload), 4)
    model = _bitacc_4bit(overflow)
    model.step(np.full((1, 1, 1), payload))
    assert model.a_buf[0, 0, 0] == expected
    model.reset()
    out = model.run(np.full((1, 1, 1, 2), payload))
    assert out[0, 0, 0, 1] == expected and model.a_buf[0, 0, 0] == expected


BEYOND_INT64 = [np.uint64(2**64 - 1), np.uint64(2**63), np.float64(1e20),
                np.float64(-(2.0**63)), np.int64(-(2**63))]


@pytest.mark.parametrize("overflow", ["error", "wrap", "saturate"])
@pytest.mark.parametrize("payload", BEYOND_INT64, ids=repr)
def test_payloads_of_magnitude_2_63_or_more_are_rejected(payload, overflow):
    """|payload| >= 2**63 cannot be cast to int64 exactly: ValueError, state unchanged."""
    model = _bitacc_4bit(overflow)
    model.step(np.full((1, 1, 1), 3))
    with pytest.raises(ValueError, match=r"s_in graded payloads must lie in .*2\*\*63"):
        model.step(np.full((1, 1, 1), payload))
    data = np.zeros((1, 1, 1, 3), np.asarray(payload).dtype)
    data[..., 2] = payload
    with pytest.raises(ValueError, match=r"data graded payloads must lie in .*2\*\*63"):
        model.run(data)
    assert model.a_buf[0, 0, 0] == 3
    assert model.step(np.zeros((1, 1, 1)))[0, 0, 0] == 3


def test_fixed_accepts_the_whole_int32_range_and_rejects_beyond():
    """Lava's s_in is int32: -2**31 and 2**31 - 1 are valid payloads, -2**31 - 1 not."""
    model = PyConvModelFixed(_one_by_one(np.array([1, 1]), num_message_bits=8))
    model.step(np.array([-(2**31), 2**31 - 1]).reshape(1, 1, 2))
    assert model.a_buf[0, 0, 0] == wrap_reference(-1, 24)
    for bad in (-(2**31) - 1, 2**31):
        with pytest.raises(ValueError, match=r"s_in graded payloads .*int32"):
            model.step(np.array([bad, 0]).reshape(1, 1, 2))
    assert model.a_buf[0, 0, 0] == -1


# -- exact sums must fit in int64: checked at construction (SPEC 2) ------------------
def test_fixed_rejects_weights_whose_sums_could_overflow_int64():
    """8 weights of 2**31 - 1 and int32 payloads: |sum| may reach 8 * (2**31 - 1) * 2**31
    >= 2**63, so construction fails (naming weight) rather than a later step."""
    conv = _one_by_one(np.full(8, 2**31 - 1), num_message_bits=24)
    with pytest.raises(ValueError, match=r"weight .*2\*\*63"):
        PyConvModelFixed(conv)
    # boundary: weight_l1 = 8 * 2**29 = 2**32, times 2**31 = 2**63 exactly: rejected
    with pytest.raises(ValueError, match="weight"):
        PyConvModelFixed(_one_by_one(np.full(8, 2**29), num_message_bits=24))
    # binary spikes bound the sum by weight_l1 itself: accepted
    PyConvModelFixed(_one_by_one(np.full(8, 2**31 - 1)))


@pytest.mark.parametrize("payload", [2**31 - 1, -(2**31), 12345])
def test_largest_accepted_fixed_model_steps_without_overflow(payload):
    """weight_l1 = 8 * (2**29 - 1) = 2**32 - 8: accepted; every int32 payload then gives
    an exact int64 sum (no OverflowError), wrapped to 24 bits."""
    w = np.full(8, 2**29 - 1)
    model = PyConvModelFixed(_one_by_one(w, num_message_bits=24))
    x = np.full((1, 1, 8), payload, np.int64)
    expected = wrap_reference(8 * (2**29 - 1) * payload, 24)
    model.step(x)
    assert model.a_buf[0, 0, 0] == expected
    assert model.run(np.stack([x, x], axis=-1))[0, 0, 0, 1] == expected


def test_engine_asked_for_int32_sums_directly(monkeypatch):
    """The model passes out_dtype to the engine: int32 when the bound proves the sums
    fit (binary spikes, small weights), int64 when it does not (int32 payloads). The
    layer is shared (lavaconv.engine.prepare), so the class is spied on, not the object."""
    from lavaconv.engine import ConvEngine

    asked = []
    real = ConvEngine.exact

    def exact(self, frames, input_max_abs=None, **kw):
        asked.append(np.dtype(kw.get("out_dtype", np.int64)))
        return real(self, frames, input_max_abs, **kw)

    monkeypatch.setattr(ConvEngine, "exact", exact)
    PyConvModelFixed(_one_by_one(np.array([1, 2]))).step(np.ones((1, 1, 2)))
    PyConvModelFixed(_one_by_one(np.array([1, 2]), num_message_bits=8)).run(
        np.full((1, 1, 2, 2), 2**30))
    assert asked == [np.dtype(np.int32), np.dtype(np.int64)]


# -- every NumPy bool, integer and float input dtype ----------------------------------
INPUT_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                "uint64", "float16", "float32", "float64", "longdouble", ">i4", "<f8"]


def _typed_frames(rng, shape, t, dtype, graded):
    """Values every dtype holds exactly: 0/1 for bool, else payloads in [-20, 20]
    (unsigned: [0, 20]); binary float frames also hold fractions (any non-zero spikes)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return [rng.random(shape) < 0.5 for _ in range(t)]
    lo = 0 if dtype.kind == "u" else -20
    frames = [rng.integers(lo, 21, shape) * (rng.random(shape) < 0.6) for _ in range(t)]
    if dtype.kind == "f" and not graded:
        frames = [f * 0.25 for f in frames]
    return [f.astype(dtype) for f in frames]


@pytest.mark.parametrize("dtype", INPUT_DTYPES)
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("bits", [0, 6])
def test_every_input_dtype_matches_spec(dtype, name, bits):
    rng = np.random.default_rng(5)
    g = dict(input_shape=(4, 3, 2), weight_shape=(3, 2, 2, 2), stride=(1, 1),
             padding=(1, 0), dilation=(1, 1), groups=1)
    w = int8_weights(rng, g["weight_shape"])
    frames = _typed_frames(rng, g["input_shape"], 3, dtype, bits > 0)
    kw = {"message_overflow": "wrap"} if name == "bitacc" else {}
    model = MODELS[name](_conv(g, w, num_message_bits=bits), **kw)
    expected, a_buf = model_reference(frames, w, g, name, num_message_bits=bits,
                                      **({"message_overflow": "wrap"} if kw else {}))
    _check_sequence(model, frames, expected, a_buf, exact=name != "float")


needs_long_double = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant,
    reason="long double is float64 on this platform")


@needs_long_double
@pytest.mark.parametrize("name", sorted(MODELS))
def test_long_double_spike_below_float64_range_is_a_spike(name):
    """Any non-zero input is one spike (SPEC 3), even one that float64 rounds to 0."""
    tiny = np.longdouble("1e-4000")
    assert tiny != 0 and np.float64(tiny) == 0
    model = MODELS[name](_one_by_one(np.array([5, 7])))
    model.step(np.array([tiny, 0], np.longdouble).reshape(1, 1, 2))
    assert model.a_buf[0, 0, 0] == 5


@needs_long_double
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_long_double_graded_payload_uses_its_exact_value(overflow):
    """2**60 + 1 is exact in long double but not in float64 (which rounds to 2**60):
    wrap_4 gives 1 (not 0), saturate_4 gives 7."""
    payload = np.longdouble(2**60) + 1
    rule = wrap_reference if overflow == "wrap" else saturate_reference
    model = _bitacc_4bit(overflow)
    model.step(np.full((1, 1, 1), payload))
    assert model.a_buf[0, 0, 0] == rule(2**60 + 1, 4)


@needs_long_double
def test_long_double_beyond_float64_range_rejected_by_float_model():
    model = PyConvModelFloat(_one_by_one(np.array([1.0]), num_message_bits=8))
    with pytest.raises(ValueError, match="s_in .*float64"):
        model.step(np.full((1, 1, 1), np.longdouble("1e400")))
    assert not model.a_buf.any()


# -- run: one engine call where memory allows ------------------------------------------
def test_vgg_layer_runs_100_steps_in_one_engine_call():
    """The vgg workload (56x56x64, 3x3, 64 outputs) at T=100 needs about 0.3 GB:
    well under CHUNK_BYTES (2 GiB), so run() does not split it."""
    from lavaconv.models import CHUNK_BYTES
    from lavaconv.workloads import WORKLOADS

    wl = WORKLOADS["vgg"]
    conv = Conv(weight=np.ones(wl.weight_shape, np.int8), input_shape=wl.input_shape,
                padding=wl.padding)
    for model in (PyConvModelFixed(conv), PyConvModelBitAcc(conv)):
        assert model._chunk >= 100
        assert model._chunk * model._frame_bytes() <= CHUNK_BYTES


@pytest.mark.parametrize("name,bits,kw", [("fixed", 0, {}), ("fixed", 8, {}),
                                          ("bitacc", 8, {"weight_exp": -3}),
                                          ("float", 0, {})])
def test_frame_bytes_bounds_what_run_allocates(name, bits, kw):
    """Traced peak memory of a fresh model's run of T frames stays below
    (T + 2) * _frame_bytes(): the chunk estimate is not an underestimate."""
    import tracemalloc

    rng = np.random.default_rng(2)
    conv = Conv(weight=int8_weights(rng, (16, 3, 3, 8)), input_shape=(12, 10, 8),
                padding=1, num_message_bits=bits, **kw)
    t = 12
    data = (rng.integers(-60, 60, (12, 10, 8, t)) * (rng.random((12, 10, 8, t)) < 0.6)
            ).astype(np.int8)
    MODELS[name](conv).run(data)  # compile first
    lavaconv.engine.clear_cache()  # a fresh layer: its scratch buffers are traced too
    model = MODELS[name](conv)
    tracemalloc.start()
    try:
        model.run(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= (t + 2) * model._frame_bytes()


# -- a_buf ------------------------------------------------------------------------------
def test_a_buf_is_computed_once_per_state_and_returned_as_copies(monkeypatch):
    model = PyConvModelFixed(_one_by_one(np.array([2, 3])))
    calls = []
    real = model._engine.exact
    monkeypatch.setattr(model._engine, "exact",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model.step(np.array([1, 1]).reshape(1, 1, 2))  # step convolves its input at once
    n = len(calls)
    first = model.a_buf
    first[...] = 99
    assert model.a_buf[0, 0, 0] == 5 and model.a_buf[0, 0, 0] == 5
    assert len(calls) == n
    model.step(np.array([1, 0]).reshape(1, 1, 2))
    assert model.a_buf[0, 0, 0] == 2
    model.run(np.ones((1, 1, 2, 1)))  # run keeps the messages: a_buf computed when read
    n = len(calls)
    assert model.a_buf[0, 0, 0] == 5 and model.a_buf[0, 0, 0] == 5
    assert len(calls) == n + 1
    model.run(np.zeros((1, 1, 2, 1)))
    assert model.a_buf[0, 0, 0] == 0
    model.step(np.array([0, 1]).reshape(1, 1, 2))
    model.reset()
    assert model.a_buf[0, 0, 0] == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_run_rejects_a_bad_out_and_keeps_its_state(name):
    """A wrong shape or dtype for ``out`` is a ValueError naming it, before any work."""
    conv = Conv(weight=np.ones((2, 3, 3, 1), np.int8), input_shape=(5, 5, 1), padding=1)
    model = MODELS[name](conv)
    model.step(np.ones((5, 5, 1), np.int8))
    before = model.a_buf
    data = np.ones((5, 5, 1, 3), np.int8)
    good = model.run(data)
    model.reset()
    model.step(np.ones((5, 5, 1), np.int8))
    for bad in (np.zeros(good.shape[:-1] + (2,), good.dtype),
                np.zeros(good.shape, np.int16 if good.dtype != np.int16 else np.int64),
                [0] * 3):
        with pytest.raises(ValueError, match="out must be"):
            model.run(data, out=bad)
        np.testing.assert_array_equal(model.a_buf, before)


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "uint32", "int64", "float32"])
def test_binary_steps_known_answers_with_and_without_a_finish(dtype):
    """Known answers for steps of binary spikes (any non-zero entry is one spike), the
    first step after construction aside (it emits zeros), where ``step`` hands the
    frame straight to the layer when the sums are the output, and finishes them when
    not. A 1x1 layer, out = sum of the weights of the spiking channels:

    * Fixed, weights 2**23, 2**22 (sums need the 24-bit wrap): both spike
      3 * 2**22 = 12582912 -> 12582912 - 2**24 = -4194304; the first 2**23 -> -2**23;
      the second 2**22 (inside the range, unchanged);
    * Fixed, weights 100, 27 (no wrap): 127, 100, 27;
    * BitAcc, weights 100, 27, weight_exp=2 (sum times 4): 508, 400, 108;
    * BitAcc, weights 100, 27, weight_exp=0: 127, 100, 27;
    * Float, weights 0.5, 0.25: 0.75, 0.5, 0.25.
    """
    spike = True if dtype == "bool" else 5  # a spike of value 5: still one spike
    frames = [np.array(v, dtype).reshape(1, 1, 2) * spike if dtype != "bool"
              else np.array(v, bool).reshape(1, 1, 2)
              for v in ([1, 1], [1, 0], [0, 1], [1, 1])]
    cases = [
        (PyConvModelFixed(_one_by_one(np.array([2**23, 2**22], np.int32))),
         [-4194304, -2**23, 2**22]),
        (PyConvModelFixed(_one_by_one(np.array([100, 27], np.int32))), [127, 100, 27]),
        (PyConvModelBitAcc(_one_by_one(np.array([100, 27], np.int32), weight_exp=2)),
         [508, 400, 108]),
        (PyConvModelBitAcc(_one_by_one(np.array([100, 27], np.int32))), [127, 100, 27]),
        (PyConvModelFloat(_one_by_one(np.array([0.5, 0.25]))), [0.75, 0.5, 0.25]),
    ]
    for model, answers in cases:
        assert model.step(frames[0])[0, 0, 0] == 0
        got = [model.step(f)[0, 0, 0] for f in frames[1:]]
        assert got == answers, type(model).__name__
        assert model.a_buf[0, 0, 0] == answers[0]
        assert model.step(frames[0]).dtype == model.out_dtype
