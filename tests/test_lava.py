"""lavaconv inside Lava's own runtime (``lavaconv.lava``): needs lava-nc 0.10.

Skipped where Lava cannot be imported (the main environment); CI runs this file in
the second venv that ``.ci/lava_venv.sh`` builds. Every Lava network runs in a
forked, time-limited child (``lava_harness.run_isolated``): Lava hangs rather than
fails. The reference for the fixed-point and float models is Lava's own Conv model
run on the same network (plus the plain NumPy reference for the fixed-point sums);
Lava has no bit-accurate Conv model, so that one is checked against Lava's own
weight encoding (``lava.utils.weightutils``) and the NumPy reference.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

adapter = pytest.importorskip(
    "lavaconv.lava", reason="lava-nc 0.10 is not importable here (see .ci/lava_venv.sh)",
    exc_type=ImportError)

import lava_harness as harness  # noqa: E402
from lava.magma.core.run_configs import Loihi1SimCfg, Loihi2SimCfg  # noqa: E402
from lava.proc.conv import models as lava_models  # noqa: E402
from lava.proc.conv.process import Conv  # noqa: E402
from reference import conv_reference  # noqa: E402
from strategies import geometries, int8_weights, seeds  # noqa: E402

#: Third-party warnings raised inside Lava's compiler and runtime (pyproject turns
#: warnings into errors, and the forked Lava processes inherit that).
pytestmark = [
    pytest.mark.filterwarnings("ignore:pandas not found:ImportWarning"),  # networkx
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
harness.hub_class()  # written once, here: the forked children inherit it

#: Each example runs two Lava networks (a few seconds each): few examples, many
#: layers per network, no shrinking (a failure prints its example as drawn).
LAVA_SETTINGS = settings(max_examples=3, deadline=None, database=None,
                         phases=(Phase.explicit, Phase.generate),
                         suppress_health_check=list(HealthCheck))


def wrap(v, bits: int) -> np.ndarray:
    """SPEC 4's wrap, written out: ``((v + 2**(b-1)) mod 2**b) - 2**(b-1)``."""
    v = np.asarray(v, dtype=np.int64)
    half = 1 << (bits - 1)
    return (v + half) % (1 << bits) - half


def delayed(frames: list[np.ndarray], shape) -> np.ndarray:
    """Lava's timing (SPEC 6): ``out[..., 0] = 0``, ``out[..., t] = f(s_in(t - 1))``."""
    out = np.zeros(tuple(shape) + (len(frames),), np.int64)
    for t in range(1, len(frames)):
        out[..., t] = frames[t - 1]
    return out


def conv_kwargs(geometry: dict, weight: np.ndarray, **extra) -> dict:
    return dict(weight=weight, input_shape=geometry["input_shape"],
                padding=geometry["padding"], stride=geometry["stride"],
                dilation=geometry["dilation"], groups=geometry["groups"], **extra)


def compare(layers, data, tag: str, neuron=None) -> tuple[dict, dict]:
    """Run the same chains with Lava's Conv model and with lavaconv's; return both."""
    ours = harness.run_isolated(harness.conv_chains, layers, data, ("lavaconv", tag), neuron)
    lavas = harness.run_isolated(harness.conv_chains, layers, data, ("lava", tag), neuron)
    ours_model = f"lavaconv.lava.{adapter.MODELS[tag].__qualname__}"
    assert ours["models"] == [ours_model] * len(layers)
    assert all(m.startswith("lava.proc.conv.models.") for m in lavas["models"])
    return ours, lavas


# -- Lava 0.10 on Python >= 3.11: the import hook -------------------------------------------
def test_patch_source_replaces_mutable_defaults_only():
    source = textwrap.dedent('''\
        from dataclasses import dataclass

        @dataclass
        class ByteEncoder:
            base: int = 0

        @dataclass
        class CoreEncoder:
            x: ByteEncoder = ByteEncoder()
            y : ByteEncoder=ByteEncoder()  # spaced, commented
            other: int = 3
        ''')
    patched, count = adapter.patch_var_model_source(source)
    assert count == 2
    assert patched.count("\n") == source.count("\n")  # line numbers unchanged
    namespace: dict = {}
    exec(compile(patched, "<patched>", "exec"), namespace)
    a, b = namespace["CoreEncoder"](), namespace["CoreEncoder"]()
    assert a.x == namespace["ByteEncoder"]() and a.x is not b.x  # a fresh default each
    assert a.other == 3
    assert "# spaced, commented" in patched
    assert adapter.patch_var_model_source("x: int = 1\n") == ("x: int = 1\n", 0)


def test_patch_applies_to_the_installed_lava():
    import lava.magma.compiler.var_model as var_model

    with open(var_model.__file__, encoding="utf-8") as f:
        _, count = adapter.patch_var_model_source(f.read())
    assert count == 8  # lava-nc 0.10.0
    assert var_model.CoreEncoder().x is not var_model.CoreEncoder().x
    assert adapter._install_var_model_patch() is None  # already imported: a no-op


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the patch is needed from 3.11 on")
def test_import_order_and_recovery():
    import lava.magma.compiler.var_model as var_model

    path = var_model.__file__
    with open(path, "rb") as f:
        before = hashlib.sha256(f.read()).hexdigest()
    result = _python("""
        import sys
        try:
            import lava.proc.conv.process
        except ValueError as exc:
            print("unpatched:", exc)
        import lavaconv.lava          # after the failed import: still applies
        import lava.proc.conv.process
        from lava.magma.compiler.var_model import ChipEncoder
        assert ChipEncoder().x is not ChipEncoder().x
        assert not any(type(f).__name__ == "_VarModelFinder" for f in sys.meta_path)
        print("recovered")
    """)
    assert result.returncode == 0, result.stderr
    assert "unpatched: mutable default" in result.stdout
    assert "recovered" in result.stdout
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == before  # no installed file edited


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the patch is needed from 3.11 on")
def test_import_error_says_import_lavaconv_lava_first():
    # Simulate Lava failing even with lavaconv.lava imported (the hook unable to apply)
    result = _python("""
        import sys
        import lavaconv.lava as adapter
        for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
            del sys.modules[name]
        adapter._install_var_model_patch = lambda: None
        try:
            adapter._import_lava()
        except ImportError as exc:
            print("message:", exc)
    """)
    assert result.returncode == 0, result.stderr
    assert "Import lavaconv.lava before any lava module" in result.stdout
    assert "mutable default" in result.stdout


# -- the ProcessModels and the run config (no network run) -------------------------------
@pytest.mark.parametrize("ours, lavas", [
    (adapter.PyConvModelFixed, lava_models.PyConvModelFixed),
    (adapter.PyConvModelFloat, lava_models.PyConvModelFloat),
    (adapter.PyConvModelBitAcc, lava_models.PyConvModelFixed),
])
def test_models_declare_lavas_types(ours, lavas):
    names = ("s_in", "a_out", "a_buf", "weight", "kernel_size", "stride", "padding",
             "dilation", "groups", "num_message_bits", "weight_exp", "num_weight_bits")
    for name in names:
        assert getattr(ours, name) == getattr(lavas, name), name
    assert ours.implements_process is Conv
    assert ours.implements_protocol is lavas.implements_protocol
    assert ours.required_resources == lavas.required_resources


def test_model_tags():
    assert adapter.PyConvModelFixed.tags == ["fixed_pt"]
    assert adapter.PyConvModelFloat.tags == ["floating_pt"]
    assert adapter.PyConvModelBitAcc.tags == ["bit_accurate_loihi"]


def test_run_config_maps_conv_and_leaves_the_rest_to_lava():
    from lava.proc.io.source import PySendModelFixed, PySendModelFloat
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.models import PyLifModelBitAcc, PyLifModelFloat
    from lava.proc.lif.process import LIF

    cfg = adapter.run_config()
    assert isinstance(cfg, Loihi2SimCfg)
    assert cfg.select_tag == "fixed_pt"
    assert cfg.exception_proc_model_map == {Conv: adapter.PyConvModelFixed}
    conv = Conv(weight=np.ones((2, 3, 3, 1), np.int32), input_shape=(5, 5, 1))
    models = [lava_models.PyConvModelFloat, lava_models.PyConvModelFixed]
    assert cfg.select(conv, models) is adapter.PyConvModelFixed
    source = Source(data=np.zeros((2, 2)))
    assert cfg.select(source, [PySendModelFloat, PySendModelFixed]) is PySendModelFixed
    lif = LIF(shape=(3,))
    assert cfg.select(lif, [PyLifModelFloat, PyLifModelBitAcc]) is PyLifModelBitAcc
    assert adapter.run_config("floating_pt").select(conv, models) is adapter.PyConvModelFloat
    # bit-accurate: RingBuffer has no such model and falls back to fixed_pt; LIF keeps its
    bit = adapter.run_config("bit_accurate_loihi")
    assert bit.select(conv, models) is adapter.PyConvModelBitAcc
    assert bit.select(source, [PySendModelFloat, PySendModelFixed]) is PySendModelFixed
    assert bit.select(lif, [PyLifModelFloat, PyLifModelBitAcc]) is PyLifModelBitAcc
    assert bit.select_tag == "bit_accurate_loihi"
    # Lava's own config, for contrast, cannot place a RingBuffer with that tag
    with pytest.raises(AssertionError):
        Loihi2SimCfg(select_tag="bit_accurate_loihi").select(
            source, [PySendModelFloat, PySendModelFixed])


def test_run_config_options():
    assert isinstance(adapter.run_config(base=Loihi1SimCfg), Loihi1SimCfg)
    mine = {LIFStandIn: object}
    cfg = adapter.run_config("fixed_pt", exception_proc_model_map=mine,
                             select_sub_proc_model=True)
    assert cfg.select_sub_proc_model is True
    assert cfg.exception_proc_model_map == {Conv: adapter.PyConvModelFixed, **mine}
    own = adapter.run_config(exception_proc_model_map={Conv: lava_models.PyConvModelFixed})
    assert own.exception_proc_model_map[Conv] is lava_models.PyConvModelFixed  # user's wins
    model = adapter.PyConvModelBitAcc.with_options(num_accum_bits=16)
    assert adapter.run_config("bit_accurate_loihi", conv_model=model) \
        .exception_proc_model_map[Conv] is model
    with pytest.raises(ValueError, match="select_tag must be one of"):
        adapter.run_config("bit_accurate")
    with pytest.raises(ValueError, match="base must be a Lava Loihi run config"):
        adapter.run_config(base=dict)
    with pytest.raises(ValueError, match="conv_model must be a ProcessModel"):
        adapter.run_config(conv_model=int)


class LIFStandIn:
    """A key for exception_proc_model_map (only its identity matters)."""


def test_with_options_validates_in_the_caller():
    model = adapter.PyConvModelBitAcc.with_options(accumulator_overflow="saturate",
                                                   num_accum_bits=12)
    assert issubclass(model, adapter.PyConvModelBitAcc)
    assert model.options == {"accumulator_overflow": "saturate", "num_accum_bits": 12}
    assert model.with_options(exponent_mode="per_weight").options == {
        "accumulator_overflow": "saturate", "num_accum_bits": 12,
        "exponent_mode": "per_weight"}
    assert adapter.PyConvModelBitAcc.options == {}
    with pytest.raises(ValueError, match="num_accum_bits"):
        adapter.PyConvModelBitAcc.with_options(num_accum_bits=40)
    with pytest.raises(ValueError, match="exponent_mode"):
        adapter.PyConvModelBitAcc.with_options(exponent_mode="later")
    with pytest.raises(ValueError, match="unknown PyConvModelBitAcc option.*'num_bits'"):
        adapter.PyConvModelBitAcc.with_options(num_bits=3)


def test_bad_parameters_raise_in_the_caller_at_compile_time():
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    conv = Conv(weight=np.ones((2, 3, 3, 1), np.int32), input_shape=(4, 4, 1), padding=130,
                name="wide")
    source = Source(data=np.zeros((4, 4, 1, 2), np.int32))
    sink = Sink(shape=conv.output_shape, buffer=2)
    source.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    # Lava's int8 Var would wrap 130 to -126: refused before any model process starts
    with pytest.raises(ValueError, match=r"'wide': padding=\[130, 130\] does not fit"):
        sink.run(condition=RunSteps(num_steps=2), run_cfg=adapter.run_config())
    conv = Conv(weight=np.ones((2, 3, 3, 1), np.int32), input_shape=(4, 4, 1),
                num_message_bits=30, name="graded")
    with pytest.raises(ValueError, match="'graded'.*num_message_bits"):
        adapter.PyConvModelFixed.check(conv)


# -- networks: lavaconv's models against Lava's own -----------------------------------------
@st.composite
def layer_batches(draw, size: int, max_size: int = 7):
    return draw(st.lists(geometries(max_size=max_size), min_size=size, max_size=size)), \
        draw(seeds())


@settings(LAVA_SETTINGS, max_examples=4)
@given(batch=layer_batches(8))
def test_fixed_binary_matches_lava(batch):
    """Binary spikes (any non-zero value is one spike), int8 and wider weights."""
    geoms, seed = batch
    rng = np.random.default_rng(seed)
    steps = 5
    layers, data = [], []
    for i, g in enumerate(geoms):
        w = int8_weights(rng, g["weight_shape"]).astype(np.int32)
        if i % 4 == 3:
            w = w * 100  # sums beyond 2**23: the 24-bit wrap is exercised
        x = rng.integers(-3, 6, g["input_shape"] + (steps,)) * (
            rng.random(g["input_shape"] + (steps,)) < 0.4)
        layers.append(conv_kwargs(g, w))
        data.append(x.astype(np.int32))
    ours, lavas = compare(layers, data, "fixed_pt")
    for i, (kw, x) in enumerate(zip(layers, data, strict=True)):
        out = ours[f"out{i}"]
        np.testing.assert_array_equal(out, lavas[f"out{i}"], err_msg=f"layer {i}: {kw}")
        frames = [wrap(conv_reference(x[..., t] != 0, kw["weight"], kw["stride"],
                                      kw["padding"], kw["dilation"], kw["groups"]), 24)
                  for t in range(steps)]
        np.testing.assert_array_equal(out, delayed(frames, out.shape[:-1]))


@LAVA_SETTINGS
@given(batch=layer_batches(8), bits=st.lists(st.integers(1, 24), min_size=8, max_size=8))
def test_fixed_graded_matches_lava(batch, bits):
    """Graded payloads used as received; sums up to 2**28 (Lava's int32 cast is exact)."""
    geoms, seed = batch
    rng = np.random.default_rng(seed)
    steps = 5
    layers, data = [], []
    for g, b in zip(geoms, bits, strict=True):
        w = int8_weights(rng, g["weight_shape"]).astype(np.int32)
        hi = min(1 << (b - 1), 1 << 15)
        shape = g["input_shape"] + (steps,)
        x = rng.integers(-hi, hi, shape) * (rng.random(shape) < 0.5)
        layers.append(conv_kwargs(g, w, num_message_bits=b))
        data.append(x.astype(np.int32))
    ours, lavas = compare(layers, data, "fixed_pt")
    for i, (kw, x) in enumerate(zip(layers, data, strict=True)):
        out = ours[f"out{i}"]
        np.testing.assert_array_equal(out, lavas[f"out{i}"], err_msg=f"layer {i}: {kw}")
        frames = [wrap(conv_reference(x[..., t].astype(np.int64), kw["weight"], kw["stride"],
                                      kw["padding"], kw["dilation"], kw["groups"]), 24)
                  for t in range(steps)]
        np.testing.assert_array_equal(out, delayed(frames, out.shape[:-1]))


@settings(LAVA_SETTINGS, max_examples=2)
@given(batch=layer_batches(6), graded=st.lists(st.booleans(), min_size=6, max_size=6))
def test_float_matches_lava(batch, graded):
    """Float weights, binary (non-zero floats count as spikes) and graded float payloads."""
    geoms, seed = batch
    rng = np.random.default_rng(seed)
    steps = 4
    layers, data = [], []
    for g, is_graded in zip(geoms, graded, strict=True):
        w = rng.normal(0, 20, g["weight_shape"])
        shape = g["input_shape"] + (steps,)
        x = rng.normal(0, 3, shape) * (rng.random(shape) < 0.5)
        layers.append(conv_kwargs(g, w, num_message_bits=8 if is_graded else 0))
        data.append(x)
    ours, lavas = compare(layers, data, "floating_pt")
    for i, kw in enumerate(layers):
        ours_out, lava_out = ours[f"out{i}"], lavas[f"out{i}"]
        assert ours_out.dtype == lava_out.dtype == np.float64
        # Lava: scipy.signal.convolve2d in float64; ours: float64 in another order
        np.testing.assert_allclose(ours_out, lava_out, rtol=1e-9, atol=1e-9,
                                   err_msg=f"layer {i}: {kw}")
        assert np.all(ours_out[..., 0] == 0)


@settings(LAVA_SETTINGS, max_examples=2)
@given(batch=layer_batches(4, max_size=6))
def test_conv_to_lif_matches_lava(batch):
    """Conv -> LIF (Lava's bit-accurate LIF): spikes, v and u identical."""
    geoms, seed = batch
    rng = np.random.default_rng(seed)
    steps = 6
    layers = [conv_kwargs(g, int8_weights(rng, g["weight_shape"]).astype(np.int32))
              for g in geoms]
    data = [(rng.random(g["input_shape"] + (steps,)) < 0.5).astype(np.int32) for g in geoms]
    neuron = dict(du=512, dv=256, vth=60)
    ours, lavas = compare(layers, data, "fixed_pt", neuron)
    spikes = 0
    for i in range(len(layers)):
        for key in (f"out{i}", f"v{i}", f"u{i}"):
            np.testing.assert_array_equal(ours[key], lavas[key], err_msg=key)
        spikes += int(np.count_nonzero(ours[f"out{i}"]))
    assert spikes > 0  # the comparison saw the neurons fire


def test_var_set_between_runs_matches_lava():
    """``weight.set`` between two runs: the next step uses the new weights (as Lava)."""

    def network(kind: str) -> dict:
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source

        rng = np.random.default_rng(7)
        steps = 6
        source = Source(data=(rng.random((6, 5, 2, steps)) < 0.5).astype(np.int32))
        conv = Conv(weight=rng.integers(-9, 10, (3, 3, 2, 2)), input_shape=(6, 5, 2),
                    padding=(1, 0))
        sink = Sink(shape=conv.output_shape, buffer=steps)
        source.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        cfg = harness.lava_config(kind, "fixed_pt")
        sink.run(condition=RunSteps(num_steps=3), run_cfg=cfg)
        conv.weight.set(rng.integers(-9, 10, (3, 3, 2, 2)).astype(np.int32))
        sink.run(condition=RunSteps(num_steps=3), run_cfg=cfg)
        out = {"out": sink.data.get(), "a_buf": conv.a_buf.get(), "w": conv.weight.get()}
        sink.stop()
        return out

    ours = harness.run_isolated(network, "lavaconv")
    lavas = harness.run_isolated(network, "lava")
    for key in ("out", "a_buf", "w"):
        np.testing.assert_array_equal(ours[key], lavas[key], err_msg=key)
    assert np.any(ours["out"][..., 4:] != 0)


# -- bit-accurate (Lava has no such Conv model: Lava's own encoding + the reference) ----------
def bit_accurate_expected(x, kw, exponent_mode="post_accumulate", num_accum_bits=24,
                          overflow="wrap"):
    """SPEC 5 from Lava's own weight encoding (as its Dense bit-accurate model does)."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    w = np.asarray(kw["weight"], np.int32)
    mode = determine_sign_mode(w)
    enc = truncate_weights(clip_weights(w, mode, num_bits=8), mode,
                           kw["num_weight_bits"]).astype(np.int64)
    e = kw["weight_exp"]
    if exponent_mode == "per_weight":
        enc = enc << e if e >= 0 else enc >> -e  # arithmetic shifts: floor
    messages = x != 0 if kw.get("num_message_bits", 0) == 0 else x.astype(np.int64)
    pair = lambda v: (v, v) if np.isscalar(v) else tuple(v)  # noqa: E731
    s = np.asarray(conv_reference(messages, enc, pair(kw.get("stride", 1)),
                                  pair(kw.get("padding", 0)), pair(kw.get("dilation", 1)),
                                  kw.get("groups", 1)), np.int64)
    if exponent_mode == "post_accumulate":
        s = s << e if e >= 0 else s >> -e
    if overflow == "wrap":
        return wrap(s, num_accum_bits)
    half = 1 << (num_accum_bits - 1)
    return np.clip(s, -half, half - 1)


@settings(LAVA_SETTINGS, max_examples=2)
@given(batch=layer_batches(8), exps=st.lists(st.integers(-8, 7), min_size=8, max_size=8),
       nwb=st.lists(st.integers(1, 8), min_size=8, max_size=8))
def test_bit_accurate_in_lava(batch, exps, nwb):
    geoms, seed = batch
    rng = np.random.default_rng(seed)
    steps = 4
    layers, data = [], []
    for i, (g, e, n) in enumerate(zip(geoms, exps, nwb, strict=True)):
        w = int8_weights(rng, g["weight_shape"]).astype(np.int32) * 2
        if i % 3 == 1:
            w = np.abs(w)  # EXCITATORY
        elif i % 3 == 2:
            w = -np.abs(w)  # INHIBITORY
        b = 0 if i % 2 == 0 else 6
        shape = g["input_shape"] + (steps,)
        x = (rng.integers(-32, 32, shape) if b else rng.integers(0, 2, shape)) * (
            rng.random(shape) < 0.5)
        layers.append(conv_kwargs(g, w, weight_exp=e, num_weight_bits=n, num_message_bits=b))
        data.append(x.astype(np.int32))
    ours = harness.run_isolated(harness.conv_chains, layers, data,
                                ("lavaconv", "bit_accurate_loihi"))
    assert ours["models"] == ["lavaconv.lava.PyConvModelBitAcc"] * len(layers)
    for i, (kw, x) in enumerate(zip(layers, data, strict=True)):
        frames = [bit_accurate_expected(x[..., t], kw) for t in range(steps)]
        out = ours[f"out{i}"]
        np.testing.assert_array_equal(out, delayed(frames, out.shape[:-1]),
                                      err_msg=f"layer {i}: {kw}")


def test_bit_accurate_options_in_lava():
    """``with_options`` through ``conv_model=``: saturating 12-bit sums, per-weight exponent."""
    rng = np.random.default_rng(3)
    steps = 4
    # (6 weight bits: multiples of 8 after the encoding; with 8 bits, of 2, so that a
    # per-weight shift by 3 differs from shifting the sum)
    for opts, exp, nwb in ((dict(accumulator_overflow="saturate", num_accum_bits=12), 1, 6),
                           (dict(exponent_mode="per_weight"), -3, 8)):
        kw = dict(weight=rng.integers(-128, 128, (4, 3, 3, 3)) * 2, input_shape=(6, 6, 3),
                  padding=1, weight_exp=exp, num_weight_bits=nwb)
        x = (rng.random((6, 6, 3, steps)) < 0.6).astype(np.int32)
        model = adapter.PyConvModelBitAcc.with_options(**opts)
        ours = harness.run_isolated(harness.conv_chains, [kw], [x],
                                    ("lavaconv", "bit_accurate_loihi", model))
        assert ours["models"] == [f"lavaconv.lava.{model.__qualname__}"]
        frames = [bit_accurate_expected(
            x[..., t], kw, exponent_mode=opts.get("exponent_mode", "post_accumulate"),
            num_accum_bits=opts.get("num_accum_bits", 24),
            overflow=opts.get("accumulator_overflow", "wrap")) for t in range(steps)]
        expected = delayed(frames, ours["out0"].shape[:-1])
        np.testing.assert_array_equal(ours["out0"], expected)
        plain = delayed([bit_accurate_expected(x[..., t], kw) for t in range(steps)],
                        expected.shape[:-1])
        assert not np.array_equal(expected, plain)  # the options changed the result


# -- lava-dl netx networks ------------------------------------------------------------------
@pytest.fixture(scope="module")
def netx():
    """lava-dl's netx, imported in the test process (the Lava children inherit it)."""
    pytest.importorskip("h5py")
    pytest.importorskip("torch")
    harness.install_torchvision_stand_in()
    return pytest.importorskip("lava.lib.dl.netx")


def write_netx(path, layers: list[dict]) -> None:
    """A netx hdf5 file as lava-dl 0.6 reads it (lava/lib/dl/netx/hdf5.py, utils.NetDict).

    ``layer/<i>/type`` is a fixed-length byte string array; ``neuron/type`` a
    variable-length string; ``shape`` is (C, H, W); ``weight`` a float32 correlation
    kernel (C_out, C_in / groups, kH, kW) of even ints in [-256, 254]; ``stride``,
    ``padding``, ``dilation`` are (H, W) pairs; ``groups`` a scalar (SPEC 8).
    """
    import h5py

    with h5py.File(path, "w") as f:
        for i, layer in enumerate(layers):
            group = f.create_group(f"layer/{i}")
            for key, value in layer.items():
                if key == "type":
                    group.create_dataset("type", data=np.array([value.encode()], dtype="S10"))
                elif key == "neuron":
                    for name, v in value.items():
                        group[f"neuron/{name}"] = v
                else:
                    group[key] = value


def conv_layer(rng, c_in, in_hw, c_out, kernel, stride, padding, dilation, groups, neuron):
    """A netx conv layer dict and its output (H, W), computed from SPEC 1's formula."""
    out_hw = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                   for n, k, s, p, d in zip(in_hw, kernel, stride, padding, dilation, strict=True))
    weight = rng.integers(-128, 128, (c_out, c_in // groups) + tuple(kernel)) * 2
    return dict(type="conv", shape=np.array((c_out,) + out_hw), weight=weight.astype(np.float32),
                kernelSize=np.array(kernel), stride=np.array(stride),
                padding=np.array(padding), dilation=np.array(dilation), groups=groups,
                inChannels=c_in, outChannels=c_out,
                bias=rng.integers(-20, 20, c_out).astype(np.float32), neuron=neuron), out_hw


def netx_layers(rng, neuron_of) -> list[dict]:
    """input (2, 9, 10) -> conv 3x3 stride (1, 2) pad (1, 0) -> grouped dilated conv ->
    flatten -> dense 10, in lava-dl's (C, H, W) order."""
    c0, hw0 = 2, (9, 10)
    conv1, hw1 = conv_layer(rng, c0, hw0, 8, (3, 3), (1, 2), (1, 0), (1, 1), 1, neuron_of(1))
    conv2, hw2 = conv_layer(rng, 8, hw1, 8, (3, 2), (1, 1), (2, 1), (2, 1), 2, neuron_of(2))
    n_in = 8 * hw2[0] * hw2[1]
    dense = dict(type="dense", shape=np.array([10, 1, 1]), inFeatures=n_in, outFeatures=10,
                 weight=(rng.integers(-128, 128, (10, n_in)) * 2).astype(np.float32),
                 neuron=neuron_of(3))
    return [dict(type="input", shape=np.array((c0,) + hw0), neuron=neuron_of(0)), conv1,
            conv2, dict(type="flatten", shape=np.array([n_in, 1, 1])), dense]


def check_netx_synapses(synapses, layers, message_bits):
    """SPEC 8 against what netx built: flip + transpose, pairs reversed to (X, Y)."""
    convs = [layer for layer in layers if layer["type"] == "conv"]
    shapes = [layers[0]["shape"]] + [c["shape"] for c in convs[:-1]]  # conv inputs
    assert len(synapses) == len(convs) == 2
    for synapse, layer, shape in zip(synapses, convs, shapes, strict=True):
        w = layer["weight"][:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
        np.testing.assert_array_equal(synapse["weight"], w)
        for key in ("padding", "stride", "dilation"):
            np.testing.assert_array_equal(synapse[key], layer[key][::-1])
        assert int(synapse["groups"]) == layer["groups"]
        assert int(np.asarray(synapse["num_message_bits"]).reshape(-1)[0]) == message_bits
        assert synapse["input_shape"] == tuple(int(n) for n in shape[::-1])


def compare_netx(path, data, probes) -> dict:
    ours = harness.run_isolated(harness.netx_network, str(path), data, ("lavaconv", "fixed_pt"),
                                probes)
    lavas = harness.run_isolated(harness.netx_network, str(path), data, ("lava", "fixed_pt"),
                                 probes)
    assert ours["models"] == ["lavaconv.lava.PyConvModelFixed"] * 2
    assert lavas["models"] == ["lava.proc.conv.models.PyConvModelFixed"] * 2
    assert ours["blocks"] == ["Input", "Conv", "Conv", "Dense"]
    for key in ["out"] + [f"{name}{i}" for i, name in probes]:
        np.testing.assert_array_equal(ours[key], lavas[key], err_msg=key)
    return ours


def test_netx_cuba_loihi_network(netx, tmp_path):
    """LOIHI/CUBA neurons (netx: LIF), binary spikes into both convs."""
    rng = np.random.default_rng(11)

    def neuron(i):
        return dict(type="LOIHI" if i % 2 else "CUBA", iDecay=1024, vDecay=128,
                    vThMant=[60, 120, 120, 80][i], refDelay=1)

    layers = netx_layers(rng, neuron)
    path = tmp_path / "cuba.net"
    write_netx(path, layers)
    steps = 8
    data = rng.integers(0, 300, (10, 9, 2, steps)).astype(np.int32)  # (X, Y, C, T) currents
    ours = compare_netx(path, data, [(1, "v"), (2, "v")])
    check_netx_synapses(ours["synapses"], layers, message_bits=0)
    assert np.count_nonzero(ours["v1"]) > 0 and np.count_nonzero(ours["out"]) > 0


def test_netx_sdnn_network(netx, tmp_path):
    """SDNN neurons (netx: Delta, SigmaDelta, Sigma): graded 16-bit messages into the convs."""
    rng = np.random.default_rng(12)

    def neuron(i):
        n = dict(type="SDNN", activation="relu", vThMant=[2, 4, 4, 1][i])
        if i == 3:
            n["sigma_output"] = True
        return n

    layers = netx_layers(rng, neuron)
    path = tmp_path / "sdnn.net"
    write_netx(path, layers)
    steps = 8
    data = rng.integers(0, 256, (10, 9, 2, steps)).astype(np.int32)
    ours = compare_netx(path, data, [(1, "sigma"), (2, "sigma")])
    check_netx_synapses(ours["synapses"], layers, message_bits=16)
    assert np.count_nonzero(ours["sigma1"]) > 0 and np.count_nonzero(ours["out"]) > 0


# -- fork safety ------------------------------------------------------------------------------
def test_fork_safety_after_the_parent_ran_kernels():
    """A parent that ran lavaconv's parallel kernels, then a Lava network on lavaconv.

    No environment variable is set (NUMBA_THREADING_LAYER removed): lavaconv's own
    choice of threading layer must survive Lava's forks. Runs in a fresh interpreter.
    """
    code = """
        import sys
        sys.path.insert(0, "tests")
        import numpy as np
        import lavaconv.lava
        from lavaconv import _threads, utils
        import lava_harness

        rng = np.random.default_rng(0)
        w = rng.integers(-128, 128, (16, 3, 3, 8)).astype(np.int32)
        x = (rng.random((24, 20, 8, 5)) < 0.2).astype(np.int32)
        frames = [utils.conv(x[..., t], w, (3, 3), 1, 1, 1, 1, path="dense") for t in range(5)]
        assert np.array_equal(utils.conv(x[..., 0], w, (3, 3), 1, 1, 1, 1, path="events"),
                              frames[0])
        print("layer", _threads.threading_layer(), flush=True)
        lava_harness.hub_class()
        out = lava_harness.conv_chains([dict(weight=w, input_shape=(24, 20, 8), padding=1)],
                                       [x], ("lavaconv", "fixed_pt"))["out0"]
        assert out.shape == (24, 20, 16, 5)
        assert not out[..., 0].any()
        for t in range(1, 5):
            assert np.array_equal(out[..., t], frames[t - 1]), t
        print("lava run ok", flush=True)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        pytest.fail(f"Lava hung after the parent ran kernels:\n{stdout}\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{stdout}\n{stderr[-3000:]}"
    assert "lava run ok" in stdout
    layer = stdout.split("layer ", 1)[1].split()[0]
    assert layer in ("tbb", "workqueue"), layer  # the fork-safe layers
