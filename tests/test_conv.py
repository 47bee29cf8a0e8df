"""The Numba convolution against the plain reference (SPEC section 1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_reference, torch_to_lava_weight
from strategies import geometries, int8_weights, seeds, spikes

import lavaconv
from lavaconv import utils
from lavaconv.engine import ConvEngine
from lavaconv.geometry import validate_geometry


def _call(fn, x, w, g):
    return fn(x, w, g["weight_shape"][1:3], g["stride"], g["padding"], g["dilation"], g["groups"])


@given(g=geometries(), seed=seeds(), kind=st.sampled_from(["bool", "binary", "graded"]))
def test_integer_conv_is_exact(g, seed, kind):
    rng = np.random.default_rng(seed)
    x = spikes(rng, g["input_shape"], kind, density=rng.random())
    w = int8_weights(rng, g["weight_shape"]).astype(np.int32)
    expected = conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    got = _call(utils.conv, x, w, g)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@given(g=geometries(), seed=seeds(), dtype=st.sampled_from([np.float32, np.float64]))
def test_float_conv_matches_reference(g, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g["input_shape"]).astype(dtype)
    w = rng.standard_normal(g["weight_shape"]).astype(dtype)
    expected = conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    got = _call(utils.conv, x, w, g)
    assert got.dtype == dtype
    # float32 accumulation of at most 4*4*3 products of N(0,1) values: rtol 1e-5
    # relative to the sum of |products| bounds its rounding error comfortably.
    scale = conv_reference(np.abs(x), np.abs(w), g["stride"], g["padding"], g["dilation"],
                           g["groups"]) + 1.0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.all(np.abs(got - expected) <= tol * scale)


@given(g=geometries(max_size=7), seed=seeds())
def test_conv_scipy_matches_reference(g, seed):
    rng = np.random.default_rng(seed)
    x = spikes(rng, g["input_shape"], "graded")
    w = int8_weights(rng, g["weight_shape"])
    expected = conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    got = _call(utils.conv_scipy, x, w, g)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected.astype(np.float64))


def test_known_answer_single_event_3x3():
    """One spike at (2, 2) through a 3x3 kernel with weights 1..9, padding 1.

    With padding 1 the event sits at in_pad[3, 3]. out[x, y] picks it up at the
    tap i = 3 - x, j = 3 - y, with weight W[KX-1-i, KY-1-j] = W[x-1, y-1]: a true
    convolution of an impulse reproduces the kernel itself around the event (a
    correlation, PyTorch's operation, would give it rotated by 180 degrees).
    """
    x = np.zeros((5, 5, 1), np.int8)
    x[2, 2, 0] = 1
    w = np.arange(1, 10, dtype=np.int32).reshape(1, 3, 3, 1)
    out = utils.conv(x, w, (3, 3), 1, 1, 1, 1)[:, :, 0]
    expected = np.zeros((5, 5), np.int32)
    expected[1:4, 1:4] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    np.testing.assert_array_equal(out, expected)


def test_known_answer_stride_dilation_groups():
    """All-ones 6x6 input, 2 groups, stride 2, dilation 2, 2x2 kernel, no padding.

    Output X = (6 - 2*(2-1) - 1) // 2 + 1 = 2 (and Y likewise). Output channel k
    (one per group) sees only its group's input channel, all ones, over 4 taps whose
    weights all equal k + 1: every output of channel k is 4 * (k + 1).
    """
    x = np.ones((6, 6, 2), np.int16)
    w = np.stack([np.full((2, 2, 1), k + 1, np.int32) for k in range(2)])
    out = utils.conv(x, w, (2, 2), 2, 0, 2, 2)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out[..., 0], 4)
    np.testing.assert_array_equal(out[..., 1], 8)


def test_integer_sum_beyond_int32_is_exact_in_int64():
    """Weights 2**20 and inputs 2**15 over 8 taps: 2**35 * 8 = 2**38 exactly."""
    x = np.full((2, 2, 2), 2**15, np.int64)
    w = np.full((1, 2, 2, 2), 2**20, np.int64)
    out = utils.conv(x, w, 2, 1, 0, 1, 1)
    assert out.dtype == np.int64
    assert out[0, 0, 0] == 2**38


def test_sum_needing_int64_accumulator():
    """A bound above 2**53 must use the int64 kernel and still be exact."""
    x = np.full((3, 3, 1), 2**30 + 1, np.int64)
    w = np.full((1, 3, 3, 1), 2**25 + 3, np.int64)
    out = utils.conv(x, w, 3, 1, 0, 1, 1)
    assert out[0, 0, 0] == 9 * (2**30 + 1) * (2**25 + 3)


def test_sum_beyond_int64_raises():
    x = np.full((2, 2, 1), 2**40, np.int64)
    w = np.full((1, 2, 2, 1), 2**30, np.int64)
    with pytest.raises(OverflowError, match="int64"):
        utils.conv(x, w, 2, 1, 0, 1, 1)


def test_output_dtype_follows_weight_like_lava():
    """Lava casts the result to weight.dtype; an int8 weight wraps like NumPy's cast."""
    x = np.ones((3, 3, 1), np.int8)
    w = np.full((1, 3, 3, 1), 100, np.int8)
    out = utils.conv(x, w, 3, 1, 0, 1, 1)
    assert out.dtype == np.int8
    assert out[0, 0, 0] == np.array(900, np.int64).astype(np.int8)


def test_integer_weights_with_float_input_truncate_like_lava():
    x = np.full((1, 1, 1), 0.75)
    w = np.full((1, 1, 1, 1), 3, np.int32)
    assert utils.conv(x, w, 1, 1, 0, 1, 1)[0, 0, 0] == 2  # 2.25 -> 2


def test_top_level_reexports():
    for name in ["conv", "conv_scipy", "conv_to_sparse", "output_shape", "make_tuple",
                 "signed_clamp", "TensorOrder"]:
        assert getattr(lavaconv, name) is getattr(utils, name)


def test_no_top_level_kernels_module_installed(tmp_path):
    """The install maps kernels/ to lavaconv.kernels: outside the source tree there is
    no top-level ``kernels`` module (checked in a subprocess run from a temp folder)."""
    import subprocess
    import sys

    code = ("import importlib.util as u\n"
            "assert u.find_spec('kernels') is None, u.find_spec('kernels')\n"
            "assert u.find_spec('lavaconv.kernels') is not None\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.uint32, np.int64, np.uint64, np.float16, np.float32,
                                   np.float64])
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_input_dtypes_and_layouts(dtype, order):
    """Every numeric input dtype and memory layout gives the reference's exact answer.

    Inputs are small non-negative integers (0..3), exactly representable in every
    dtype, with int32 weights: the result is an exact integer sum in all cases.
    """
    seed = np.random.SeedSequence().entropy
    rng = np.random.default_rng(seed)  # seed in the failure report: rerun with it
    x = rng.integers(0, 4, (7, 6, 4)).astype(dtype)
    if order == "F":
        x = np.asfortranarray(x)
    elif order == "strided":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    w = rng.integers(-128, 128, (6, 3, 2, 2)).astype(np.int32)
    expected = conv_reference(np.ascontiguousarray(x).astype(np.int64), w, (2, 1), (1, 0),
                              (1, 2), 2)
    np.testing.assert_array_equal(utils.conv(x, w, (3, 2), (2, 1), (1, 0), (1, 2), 2), expected)


@pytest.mark.torch
@given(g=geometries(), seed=seeds())
def test_matches_torch_conv2d_through_spec_mapping(g, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = spikes(rng, g["input_shape"], "graded").astype(np.float64)
    w = int8_weights(rng, g["weight_shape"]).astype(np.float64)
    # build the torch problem first, then map it to Lava's layout (SPEC section 1)
    x_chw = x.transpose(2, 1, 0)
    w_torch = w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1].copy()  # copy: size-1 axes keep
    # negative strides through ascontiguousarray, which torch refuses
    assert np.array_equal(torch_to_lava_weight(w_torch), w)
    y = torch.nn.functional.conv2d(
        torch.from_numpy(x_chw.copy())[None], torch.from_numpy(w_torch),
        stride=g["stride"][::-1], padding=g["padding"][::-1], dilation=g["dilation"][::-1],
        groups=g["groups"])[0].numpy()
    got = _call(utils.conv, x.astype(np.int16), w.astype(np.int32), g)
    np.testing.assert_array_equal(got, y.transpose(2, 1, 0).astype(np.int64))


def test_works_without_torch():
    """lavaconv never needs torch: import and convolve with torch made unimportable."""
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np, lavaconv\n"
        "out = lavaconv.conv(np.ones((3, 3, 1), np.int8), np.ones((1, 3, 3, 1), np.int32),"
        " 3, 1, 0, 1, 1)\n"
        "assert out[0, 0, 0] == 9\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16,
                                   np.float32, np.int32])
@given(seed=seeds(), c=st.integers(1, 5), kx=st.integers(1, 4), ky=st.integers(1, 4),
       sx=st.integers(1, 3), dx=st.integers(1, 3), dy=st.integers(1, 3),
       px=st.integers(0, 4), py=st.integers(0, 4), x=st.integers(1, 9), y=st.integers(1, 9))
def test_depthwise_unpadded_kernel(dtype, seed, c, kx, ky, sx, dx, dy, px, py, x, y):
    """Depthwise layers with sy == 1 read the unpadded input (engine._direct_input for
    bool and 1-2 byte ints, and floats of the accumulator's dtype; int32 takes the
    padded path): both must equal the reference, including padding wider than the
    kernel and rows or columns that see only padding."""
    from hypothesis import assume

    assume(x + 2 * px >= dx * (kx - 1) + 1 and y + 2 * py >= dy * (ky - 1) + 1)
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, 4, (x, y, c)).astype(dtype)
    w = rng.integers(-128, 128, (c, kx, ky, 1)).astype(
        np.float32 if dtype == np.float32 else np.int32)
    expected = conv_reference(inp.astype(np.int64), w.astype(np.int64), (sx, 1), (px, py),
                              (dx, dy), c)
    got = utils.conv(inp, w, (kx, ky), (sx, 1), (px, py), (dx, dy), c)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 2), (2, 1), (1, 1), 1), ((1, 3), (1, 2), (2, 2), 1),
    ((2, 1), (1, 1), (1, 3), 2), ((3, 2), (0, 2), (2, 1), 3)])
def test_channel_plane_kernel_matches_reference(stride, padding, dilation, groups):
    """Few input channels per group (dot runs < 16 entries): the dense path takes the
    channel-plane kernel, with its stride-phase planes and 16-column padded runs; exact
    integers and float64 against the plain reference, output widths not multiples of 16."""
    rng = np.random.default_rng(11)
    shape, wshape = (9, 23, 3 * groups), (5 * groups, 3, 4, 3)
    geom = validate_geometry(shape, wshape, stride, padding, dilation, groups)
    w = rng.integers(-128, 128, wshape).astype(np.int8)
    x = rng.integers(-100, 100, shape).astype(np.int16)
    engine = ConvEngine(w, geom)
    assert engine._planes
    expected = conv_reference(x, w, stride, padding, dilation, groups)
    got = engine.exact(x[None], path="dense")[0]
    np.testing.assert_array_equal(got, expected)
    xf = rng.standard_normal(shape)
    wf = rng.standard_normal(wshape)
    gotf = ConvEngine(wf, geom).compute(xf[None], np.float64, path="dense")[0]
    np.testing.assert_allclose(gotf, conv_reference(xf, wf, stride, padding, dilation, groups),
                               rtol=1e-12, atol=1e-12)
