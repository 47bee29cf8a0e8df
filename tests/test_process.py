"""``lavaconv.Conv``: Lava's signature, defaults, attributes and validation (SPEC 2)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import encode_weight_reference, sign_mode_reference
from strategies import geometries, int8_weights, seeds

from lavaconv import Conv, SignMode, clip_weights, determine_sign_mode, truncate_weights
from lavaconv.quantize import shift_exponent

W = np.ones((4, 3, 2, 2), np.int8)  # C_out=4, KX=3, KY=2, C_in=2


def test_signature_is_lavas_keyword_only_with_lava_defaults():
    params = inspect.signature(Conv).parameters
    assert all(p.kind == p.KEYWORD_ONLY for p in params.values())
    defaults = {k: p.default for k, p in params.items()}
    assert defaults == dict(weight=inspect.Parameter.empty, weight_exp=0, input_shape=(1, 1, 1),
                            padding=0, stride=1, dilation=1, groups=1, num_weight_bits=8,
                            num_message_bits=0, name=None, log_config=None)
    with pytest.raises(TypeError):
        Conv(W)  # positional, as in Lava, is refused


def test_default_input_shape_like_lava():
    conv = Conv(weight=np.ones((2, 1, 1, 1)))
    assert conv.input_shape == (1, 1, 1) and conv.output_shape == (1, 1, 2)


def test_attributes_in_lava_shapes_and_xy_order():
    """Input (9, 7, 2), kernel (3, 2), padding (1, 0), stride (2, 1), dilation (1, 2):
    X_out = (9 + 2 - 1*2 - 1) // 2 + 1 = 5, Y_out = (7 + 0 - 2*1 - 1) // 1 + 1 = 5."""
    conv = Conv(weight=W, input_shape=(9, 7, 2), padding=(1, 0), stride=(2, 1),
                dilation=(1, 2), weight_exp=-3, num_weight_bits=6, num_message_bits=4)
    assert conv.input_shape == (9, 7, 2)
    assert conv.output_shape == (5, 5, 4)
    expected = dict(kernel_size=((2,), (3, 2)), padding=((2,), (1, 0)),
                    stride=((2,), (2, 1)), dilation=((2,), (1, 2)), groups=((1,), 1),
                    weight_exp=((1,), -3), num_weight_bits=((1,), 6),
                    num_message_bits=((1,), 4))
    for name, (shape, init) in expected.items():
        var = getattr(conv, name)
        assert var.shape == shape, name
        assert var.init == init, name
        assert type(var.init) in (int, tuple), name
        assert all(type(v) is int for v in np.atleast_1d(var.init).tolist()), name
        np.testing.assert_array_equal(var.get(), np.broadcast_to(init, shape))
    assert conv.weight.shape == W.shape
    assert conv.a_buf.shape == (5, 5, 4) and not conv.a_buf.get().any()
    assert conv.s_in.shape == (9, 7, 2) and conv.a_out.shape == (5, 5, 4)


def test_scalar_broadcast_and_numpy_ints_become_plain_ints():
    conv = Conv(weight=W, input_shape=np.array([5, 5, 2]), padding=np.int64(1),
                stride=(np.int8(2),), groups=np.int32(1))
    assert conv.padding.init == (1, 1) and conv.stride.init == (2, 2)
    assert type(conv.groups.init) is int and conv.input_shape == (5, 5, 2)


def test_weight_is_copied_and_read_only():
    w = W.copy()
    conv = Conv(weight=w, input_shape=(4, 4, 2))
    w[...] = 9
    assert conv.weight.init.max() == 1
    with pytest.raises(ValueError):
        conv.weight.init[0, 0, 0, 0] = 5


INVALID = [
    (dict(weight=np.ones((4, 3, 2))), "4-D"),
    (dict(weight=[[[[1]]]]), "numpy.ndarray"),
    (dict(weight=np.ones((4, 3, 2, 2), complex)), "dtype"),
    (dict(weight=np.full((4, 3, 2, 2), np.nan)), "NaN"),
    (dict(weight=np.ones((4, 3, 2, 3))), "weight.shape\\[3\\]"),
    (dict(input_shape=(5, 5)), "input_shape"),
    (dict(input_shape=(5, 0, 2)), "input_shape"),
    (dict(input_shape=(5, 5, 2.5)), "input_shape"),
    (dict(groups=0), "groups"),
    (dict(groups=3), "groups"),
    (dict(stride=0), "stride"),
    (dict(stride=(1, 2, 3)), "stride"),
    (dict(dilation=0), "dilation"),
    (dict(padding=-1), "padding"),
    (dict(input_shape=(2, 5, 2)), "output X dimension"),
    (dict(num_weight_bits=0), "num_weight_bits must be in 1..8"),
    (dict(num_weight_bits=9), "num_weight_bits must be in 1..8"),
    (dict(num_message_bits=-1), "num_message_bits must be in 0..24"),
    (dict(num_message_bits=25), "num_message_bits must be in 0..24"),
    (dict(weight_exp=-9), "weight_exp must be in -8..7"),
    (dict(weight_exp=8), "weight_exp must be in -8..7"),
    (dict(weight_exp=1.5), "weight_exp must be an integer"),
]


@pytest.mark.parametrize("kwargs,match", INVALID, ids=[m for _, m in INVALID])
def test_invalid_parameters_raise_value_error_naming_them(kwargs, match):
    args = dict(weight=W, input_shape=(5, 5, 2)) | kwargs
    with pytest.raises(ValueError, match=match):
        Conv(**args)


@pytest.mark.parametrize("kwargs", [dict(num_weight_bits=1), dict(num_weight_bits=8),
                                    dict(num_message_bits=24), dict(weight_exp=-8),
                                    dict(weight_exp=7), dict(groups=2)])
def test_boundary_parameters_accepted(kwargs):
    Conv(weight=np.ones((4, 3, 2, 1)) if "groups" in kwargs else W, input_shape=(5, 5, 2),
         **kwargs)


@given(g=geometries(), seed=seeds())
def test_output_shape_matches_spec_formula(g, seed):
    conv = Conv(weight=int8_weights(np.random.default_rng(seed), g["weight_shape"]),
                input_shape=g["input_shape"], padding=g["padding"], stride=g["stride"],
                dilation=g["dilation"], groups=g["groups"])
    c_out, kx, ky, _ = g["weight_shape"]
    sizes = zip(g["input_shape"][:2], g["padding"], g["dilation"], (kx, ky), g["stride"],
                strict=True)
    expected = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in sizes)
    expected += (c_out,)
    assert conv.output_shape == expected


# -- Lava's weight utilities ---------------------------------------------------------
def test_sign_mode_enum_values_are_lavas():
    assert [(m.name, m.value) for m in SignMode] == [
        ("NULL", 0), ("MIXED", 1), ("EXCITATORY", 2), ("INHIBITORY", 3)]


@given(seed=seeds(), lo=st.integers(-300, 300), span=st.integers(0, 600))
def test_weight_utilities_match_spec(seed, lo, span):
    rng = np.random.default_rng(seed)
    w = rng.integers(lo, lo + span + 1, size=12)
    mode = determine_sign_mode(w)
    assert mode.name == sign_mode_reference(w)
    for m in (SignMode.MIXED, SignMode.EXCITATORY, SignMode.INHIBITORY):
        for bits in (1, 5, 8):
            enc = truncate_weights(clip_weights(w, m, 8), m, bits)
            assert enc.dtype == np.int32
            assert enc.tolist() == [encode_weight_reference(v, m.name, bits) for v in w]


def test_clip_and_truncate_known_answers():
    """SPEC 5: MIXED 8 bits -> [-256, 255]; truncation at 8 bits clears one bit (MIXED),
    as a floor: 3 -> 2, -3 -> -4; INHIBITORY 6 bits clears 2 bits of the magnitude:
    -7 -> -4."""
    assert clip_weights(np.array([-999, 999]), SignMode.MIXED, 8).tolist() == [-256, 255]
    assert clip_weights(np.array([-999, 999]), SignMode.EXCITATORY, 8).tolist() == [0, 255]
    assert clip_weights(np.array([-999, 999]), SignMode.INHIBITORY, 8).tolist() == [-255, 0]
    assert truncate_weights(np.array([3, -3]), SignMode.MIXED, 8).tolist() == [2, -4]
    assert truncate_weights(np.array([-7]), SignMode.INHIBITORY, 6).tolist() == [-4]
    assert truncate_weights(np.array([2.9]), SignMode.EXCITATORY, 8).tolist() == [2]
    assert shift_exponent(np.array([5, -5]), -1).tolist() == [2, -3]
    assert shift_exponent(np.array([5, -5]), 2).tolist() == [20, -20]
    with pytest.raises(ValueError, match="num_weight_bits"):
        truncate_weights(np.array([1]), SignMode.MIXED, 0)


def test_weight_utilities_accept_sparse_matrices():
    sparse = pytest.importorskip("scipy.sparse")
    m = sparse.csr_matrix(np.array([[3, 0], [0, -3]]))
    out = truncate_weights(m, SignMode.MIXED, 8)
    assert sparse.issparse(out)
    assert out.toarray().tolist() == [[2, 0], [0, -4]]
    assert m.toarray().tolist() == [[3, 0], [0, -3]]  # input untouched
