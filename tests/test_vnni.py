"""The VNNI dense kernels (lavaconv.kernels.vnni, dot and depthwise): exact against the reference.

Runs where the host has AVX512-VNNI and the JIT is on (``lavaconv.engine.VNNI``);
elsewhere the layers use the float32 dot and depthwise kernels, which the other tests check.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_reference

from lavaconv import engine as engine_module
from lavaconv.engine import ConvEngine
from lavaconv.geometry import validate_geometry

pytestmark = pytest.mark.skipif(not engine_module.VNNI,
                                reason="no AVX512-VNNI on this host, or the JIT is off")


def _frames(rng, shape, kind):
    if kind == "int8":  # the whole int8 range: -128 is the value the bias maps to 0
        return rng.integers(-128, 128, size=shape).astype(np.int8)
    if kind == "uint8":
        return rng.integers(0, 256, size=shape).astype(np.uint8)
    if kind == "bool":
        return rng.random(shape) < 0.5
    return (rng.random(shape) < 0.3).astype(np.int32)  # binary spikes in int32


@given(seed=st.integers(0, 2**32 - 1), c_in=st.integers(1, 80), c_out=st.integers(1, 9),
       kx=st.integers(1, 3), ky=st.integers(1, 3), extra=st.integers(0, 4),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2)), dx=st.integers(1, 2),
       n=st.integers(1, 2), kind=st.sampled_from(["int8", "uint8", "bool", "spikes"]),
       wdtype=st.sampled_from([np.int8, np.int16, np.int32]),
       out_dtype=st.sampled_from([np.int32, np.int64]))
def test_vnni_dense_matches_reference(seed, c_in, c_out, kx, ky, extra, stride, padding,
                                      dx, n, kind, wdtype, out_dtype):
    """Every layer the kernel takes (one group, dy == 1, weights in -128..127; on the
    padded input or on gathered rows, runs padded to 64, odd pixel and channel tails,
    x-dilation, strides, padding) and every input it reads: exact sums."""
    rng = np.random.default_rng(seed)
    shape = ((kx - 1) * dx + 1 + extra, ky + extra, c_in)
    wshape = (c_out, kx, ky, c_in)
    g = validate_geometry(shape, wshape, stride, padding, (dx, 1), 1)
    w = rng.integers(-128, 128, size=wshape).astype(wdtype)
    engine = ConvEngine(w, g)
    if engine.dense_kind in ("dot", "dot_rows"):
        assert engine.vnni is not None
    x = _frames(rng, (n,) + shape, kind)
    binary = kind == "spikes"
    got = engine.exact(x, path="dense", out_dtype=out_dtype, binary=binary)
    want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), stride,
                                    padding, (dx, 1), 1) for f in x])
    assert got.dtype == out_dtype
    np.testing.assert_array_equal(got, want)


def test_vnni_known_answers_at_the_ends_of_the_ranges():
    """A 1x1 layer over 64 channels (one 64-byte vector per run): input -128 times
    weight -128 is 16384 per channel, 64 * 16384 = 1048576; uint8 255 times 127 is
    32385, 64 * 32385 = 2072640; times -128: -2088960; and bool True times -128: -8192."""
    c = 64
    g = validate_geometry((1, 2, c), (2, 1, 1, c))
    w = np.empty((2, 1, 1, c), np.int8)
    w[0], w[1] = -128, 127
    engine = ConvEngine(w, g)
    assert engine.vnni is not None
    x = np.full((1, 1, 2, c), -128, np.int8)
    np.testing.assert_array_equal(engine.exact(x, path="dense")[0, 0, 0], [1048576, -1040384])
    u = np.full((1, 1, 2, c), 255, np.uint8)
    np.testing.assert_array_equal(engine.exact(u, path="dense")[0, 0, 0], [-2088960, 2072640])
    b = np.ones((1, 1, 2, c), bool)
    np.testing.assert_array_equal(engine.exact(b, path="dense")[0, 0, 0], [-8192, 8128])


def test_layers_outside_the_kernel_keep_the_float_dot_kernel():
    """Weights beyond int8, weights off the integers, groups and y-dilation are not taken
    (integer-valued float weights are)."""
    g = validate_geometry((6, 6, 32), (4, 3, 3, 32), 1, 1)
    assert ConvEngine(np.full((4, 3, 3, 32), 128, np.int32), g).vnni is None
    assert ConvEngine(np.full((4, 3, 3, 32), 0.5, np.float32), g).vnni is None
    assert ConvEngine(np.full((4, 3, 3, 32), -3.0, np.float64), g).vnni is not None
    assert ConvEngine(np.ones((4, 3, 3, 16), np.int8),
                      validate_geometry((6, 6, 32), (4, 3, 3, 16), 1, 1, 1, 2)).vnni is None
    assert ConvEngine(np.ones((4, 3, 3, 32), np.int8),
                      validate_geometry((6, 9, 32), (4, 3, 3, 32), 1, 1, (1, 2))).vnni is None


def test_other_input_dtypes_take_the_float_dot_kernel(monkeypatch):
    """int16 payloads are not read by the VNNI kernel: it is never called for them."""
    from lavaconv.kernels import vnni

    calls = []
    real = vnni.conv_dense_vnni
    monkeypatch.setattr(vnni, "conv_dense_vnni", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, size=(4, 3, 3, 32)).astype(np.int8)
    engine = ConvEngine(w, validate_geometry((6, 6, 32), w.shape, 1, 1))
    x = rng.integers(-300, 300, size=(1, 6, 6, 32)).astype(np.int16)
    want = conv_reference(x[0].astype(np.int64), w.astype(np.int64), (1, 1), (1, 1))
    np.testing.assert_array_equal(engine.exact(x, path="dense")[0], want)
    assert calls == []
    engine.exact(x.astype(np.int8) // 3, path="dense")
    assert calls == [1]


def test_vnni_chunks_reuse_one_scratch_buffer(monkeypatch):
    """Frames go through the kernel in chunks of one uint8 copy each; the last, shorter
    chunk and a later single frame reuse the kept buffer, and the results stay exact."""
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, size=(5, 3, 3, 8)).astype(np.int8)
    engine = ConvEngine(w, validate_geometry((9, 7, 8), w.shape, 1, 1))
    assert engine.vnni is not None
    monkeypatch.setattr(engine_module, "_DENSE_CHUNK_BYTES", 2 * engine._copy_entries())
    x = rng.integers(-128, 128, size=(5, 9, 7, 8)).astype(np.int8)
    first = engine.exact(x, path="dense", out_dtype=np.int32)  # chunks of 2, 2, 1
    kept = engine._local.vnni
    assert kept.shape[0] == 2 * engine._copy_entries() + 64
    one = engine.exact(x[:1], path="dense", out_dtype=np.int32)
    assert engine._local.vnni is kept
    want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), (1, 1), (1, 1))
                     for f in x])
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(one, want[:1])


def test_no_vnni_environment_variable_keeps_the_float_kernel():
    """LAVACONV_NO_VNNI=1 and NUMBA_ENABLE_AVX=0 (read at import) turn the kernel off."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from lavaconv import engine; "
            "from lavaconv.geometry import validate_geometry; "
            "g = validate_geometry((6, 6, 32), (4, 3, 3, 32), 1, 1); "
            "print(engine.VNNI, engine.ConvEngine(np.ones((4, 3, 3, 32), np.int8), g).vnni)")
    for name in ("LAVACONV_NO_VNNI", "NUMBA_ENABLE_AVX"):  # (AVX off: Numba's own target)
        env = dict(os.environ, **{name: "1" if name == "LAVACONV_NO_VNNI" else "0"})
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        assert out == ["False", "None"], name


@given(seed=st.integers(0, 2**32 - 1), c=st.integers(1, 40), kx=st.integers(1, 3),
       ky=st.integers(1, 9), extra=st.integers(0, 3),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       n=st.integers(1, 3), kind=st.sampled_from(["int8", "uint8", "bool", "spikes"]),
       wdtype=st.sampled_from([np.int8, np.int32]),
       out_dtype=st.sampled_from([np.int32, np.int64]))
def test_vnni_depthwise_matches_reference(seed, c, kx, ky, extra, stride, padding, dilation,
                                          n, kind, wdtype, out_dtype):
    """Depthwise layers on the packed-tap kernel: one to three groups of four column taps
    (KY up to 9), channel counts off a multiple of 16 (the private tail), strides,
    dilations and padding wide enough that whole kernel rows fall outside the input
    (the int8 correction per range of rows, and output rows no row reaches): exact."""
    rng = np.random.default_rng(seed)
    dx, dy = dilation
    shape = ((kx - 1) * dx + 1 + extra, (ky - 1) * dy + 1 + extra, c)
    wshape = (c, kx, ky, 1)
    g = validate_geometry(shape, wshape, stride, padding, dilation, c)
    w = rng.integers(-128, 128, size=wshape).astype(wdtype)
    engine = ConvEngine(w, g)
    assert engine.vnni == (kx, -(-ky // 4), -(-c // 16) * 16)
    x = _frames(rng, (n,) + shape, kind)
    got = engine.exact(x, path="dense", out_dtype=out_dtype, binary=kind == "spikes")
    want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), stride,
                                    padding, dilation, c) for f in x])
    assert got.dtype == out_dtype
    np.testing.assert_array_equal(got, want)


def test_vnni_depthwise_known_answers():
    """3 x 3 depthwise, padding 1, 20 channels (a 16-lane block and a 4-lane tail): int8
    -128 everywhere times weight -128 is 16384 a tap, so 9 * 16384 = 147456 inside, and
    4 * 16384 = 65536 in a corner (two rows and two columns outside); uint8 255 times 127
    is 32385 a tap: 291465 inside, 129540 in a corner; channel 19's weights 0: 0."""
    c = 20
    w = np.full((c, 3, 3, 1), -128, np.int8)
    w[19] = 0
    engine = ConvEngine(w, validate_geometry((4, 5, c), w.shape, 1, 1, 1, c))
    assert engine.vnni is not None
    got = engine.exact(np.full((1, 4, 5, c), -128, np.int8), path="dense")[0]
    assert got[1, 2, 0] == 147456 and got[0, 0, 18] == 65536 and got[3, 4, 3] == 65536
    assert not got[..., 19].any()
    w = np.full((c, 3, 3, 1), 127, np.int8)
    engine = ConvEngine(w, validate_geometry((4, 5, c), w.shape, 1, 1, 1, c))
    got = engine.exact(np.full((1, 4, 5, c), 255, np.uint8), path="dense")[0]
    assert got[2, 1, 17] == 291465 and got[3, 0, 5] == 129540


def test_vnni_depthwise_not_taken_and_chunked(monkeypatch):
    """Weights beyond int8 or off the integers keep the float32 depthwise kernels; int64
    results go through one int32 scratch in chunks of frames, reused, and stay exact."""
    g = validate_geometry((6, 6, 16), (16, 3, 3, 1), 1, 1, 1, 16)
    assert ConvEngine(np.full((16, 3, 3, 1), 128, np.int32), g).vnni is None
    assert ConvEngine(np.full((16, 3, 3, 1), 1.5, np.float32), g).vnni is None
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(16, 3, 3, 1)).astype(np.int8)
    engine = ConvEngine(w, g)
    monkeypatch.setattr(engine_module, "_DENSE_CHUNK_BYTES", 2 * 4 * 6 * 6 * 16)
    x = rng.integers(-128, 128, size=(5, 6, 6, 16)).astype(np.int8)
    got = engine.exact(x, path="dense", out_dtype=np.int64)  # chunks of 2, 2, 1
    kept = engine._local.vnni_out
    assert kept.shape == (2, 6, 6, 16) and kept.dtype == np.int32
    one = engine.exact(x[:1], path="dense", out_dtype=np.int64)
    assert engine._local.vnni_out is kept
    want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), (1, 1), (1, 1),
                                    (1, 1), 16) for f in x])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(one, want[:1])


def test_vnni_depthwise_bool_bytes_other_than_0_and_1():
    """A bool array holding other bytes than 0 and 1 (np.frombuffer) is True wherever a
    byte is non-zero, on the packed-tap kernel too (it reads bool frames as bytes)."""
    rng = np.random.default_rng()
    shape = (6, 7, 24)
    raw = rng.integers(0, 256, size=shape).astype(np.uint8)
    raw[rng.random(shape) < 0.5] = 0
    x = np.frombuffer(raw.tobytes(), np.bool_).reshape((1,) + shape)
    w = rng.integers(-128, 128, size=(24, 3, 3, 1)).astype(np.int8)
    engine = ConvEngine(w, validate_geometry(shape, w.shape, 1, 1, 1, 24))
    assert engine.vnni is not None
    want = conv_reference(x[0].astype(np.int64), w.astype(np.int64), (1, 1), (1, 1), (1, 1), 24)
    np.testing.assert_array_equal(engine.exact(x, path="dense")[0], want)


def test_float64_dense_sums_of_integer_weights_run_on_vnni(monkeypatch):
    """compute() in float64 (PyConvModelFloat's sums) with integer-valued weights in
    -128..127, float64 ones included, and int8/uint8/bool input takes the VNNI kernels'
    exact integer sums, cast: the same values as float64 accumulation (exact below
    2**53), with and without bias; weights off the integers keep the float64 kernels."""
    from lavaconv.kernels import vnni

    from lavaconv import Conv, PyConvModelFloat

    calls = []
    for name in ("conv_dense_vnni", "conv_depthwise_vnni"):
        real = getattr(vnni, name)
        monkeypatch.setattr(vnni, name, lambda *a, real=real: calls.append(1) or real(*a))
    rng = np.random.default_rng()
    layers = [((7, 6, 32), (5, 3, 3, 32), 1), ((7, 6, 20), (20, 3, 3, 1), 20)]
    for shape, wshape, groups in layers:
        w = rng.integers(-128, 128, size=wshape).astype(np.float64)
        g = validate_geometry(shape, wshape, 1, 1, 1, groups)
        engine = ConvEngine(w, g)
        assert engine.vnni is not None
        for kind in ("int8", "uint8", "bool"):
            x = _frames(rng, (2,) + shape, kind)
            want = np.stack([conv_reference(f.astype(np.int64), w.astype(np.int64), (1, 1),
                                            (1, 1), (1, 1), groups) for f in x])
            calls.clear()
            got = engine.compute(x, np.float64, path="dense")
            assert calls and got.dtype == np.float64
            np.testing.assert_array_equal(got, want.astype(np.float64))
            bias = rng.integers(-5, 5, size=wshape[0]).astype(np.float64)
            np.testing.assert_array_equal(engine.compute(x, np.float64, path="dense", bias=bias),
                                          want + bias)
        proc = Conv(weight=w, input_shape=shape, padding=1, groups=groups, num_message_bits=8)
        model = PyConvModelFloat(proc)
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        calls.clear()
        model.step(x)
        got = model.step(x)  # emits f(x), the dense graded frame computed on VNNI
        assert calls
        np.testing.assert_array_equal(got, conv_reference(x.astype(np.int64), w.astype(np.int64),
                                                          (1, 1), (1, 1), (1, 1), groups))
        assert ConvEngine(w + 0.5, g).vnni is None


def test_timelast_choice_counts_the_vnni_kernel():
    """run()'s choice between the in-place time-last scan and the frames path prices the
    frames path's dense call on the VNNI kernel when its frames run there: between the
    two crossovers the frames path is taken only then."""
    w = np.ones((32, 3, 3, 1), np.int8)
    engine = ConvEngine(w, validate_geometry((24, 24, 32), w.shape, 1, 1, 1, 32))
    engine.timelast_density = 1.0
    with_vnni, without = engine.crossover_density(4, 1), engine.crossover_density(4)
    assert with_vnni < without
    data = np.zeros((1, 24, 24, 32, 4), np.int8).reshape(-1)
    step = int(2 / (with_vnni + without))  # every step-th entry: between the two
    data[::step] = 1
    data = data.reshape(1, 24, 24, 32, 4)
    assert engine.timelast_pays(data, 4)
    assert not engine.timelast_pays(data, 4, 1)


def test_dense_itemsize_is_what_the_dense_path_runs():
    """The cost model's dense accumulator size (one rule for exact, compute, run's
    time-last choice and the benchmark): 1 byte where frames run on the VNNI kernels
    (float sums only in float64), else the float sums' own size or the exact
    accumulator's (float32 while bound * weight_l1 < 2**24, else float64)."""
    w = np.ones((4, 3, 3, 32), np.int8)  # weight_l1 = 288
    engine = ConvEngine(w, validate_geometry((6, 6, 32), w.shape, 1, 1))
    i8, i16, f64 = np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.float64)
    assert engine.dense_itemsize(i8, np.int32, 127) == 1
    assert engine.dense_itemsize(np.dtype(np.int32), np.int32, 1, binary=True) == 1
    assert engine.dense_itemsize(i8, f64) == 1
    assert engine.dense_itemsize(i8, np.float32) == 4
    assert engine.dense_itemsize(f64, f64) == 8
    assert engine.dense_itemsize(i16, np.int32, 32767) == 4  # 32767 * 288 < 2**24
    assert engine.dense_itemsize(i16, np.int64, 2**20) == 8
    grouped = ConvEngine(np.ones((4, 3, 3, 16), np.int8),
                         validate_geometry((6, 6, 32), (4, 3, 3, 16), 1, 1, 1, 2))
    assert grouped.vnni is None and grouped.dense_itemsize(i8, np.int32, 127) == 4
