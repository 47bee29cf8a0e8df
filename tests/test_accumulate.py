"""wrap_to_bits, saturate_to_bits and signed_clamp (SPEC section 4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import saturate_reference, wrap_reference

from lavaconv.utils import saturate_to_bits, signed_clamp, wrap_to_bits

INT64 = st.integers(-(2**63), 2**63 - 1)


@given(values=st.lists(INT64, min_size=1, max_size=50), bits=st.integers(1, 64))
def test_wrap_matches_formula(values, bits):
    got = wrap_to_bits(np.array(values, np.int64), bits)
    assert got.tolist() == [wrap_reference(v, bits) for v in values]


@given(values=st.lists(INT64, min_size=1, max_size=50), bits=st.integers(1, 64))
def test_saturate_matches_formula(values, bits):
    got = saturate_to_bits(np.array(values, np.int64), bits)
    assert got.tolist() == [saturate_reference(v, bits) for v in values]


@pytest.mark.parametrize(
    "v, wrapped, saturated",
    [  # 24 bits: range [-2**23, 2**23 - 1] = [-8388608, 8388607]
        (2**23 - 1, 8388607, 8388607),
        (2**23, -8388608, 8388607),
        (-(2**23), -8388608, -8388608),
        (-(2**23) - 1, 8388607, -8388608),
        (2**24, 0, 8388607),
        (-(2**24), 0, -8388608),
    ],
)
def test_known_answers_24_bits(v, wrapped, saturated):
    assert wrap_to_bits(v, 24) == wrapped
    assert saturate_to_bits(v, 24) == saturated
    assert signed_clamp(np.array([v]), 24).tolist() == [wrapped]


@given(x=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), bits=st.integers(1, 30))
def test_signed_clamp_int_equals_lavas_formula(x, bits):
    base = 1 << bits
    expected = [(v + base // 2) % base - base // 2 for v in x]  # Lava's expression
    assert signed_clamp(np.array(x, np.int64), bits).tolist() == expected


def test_signed_clamp_float_keeps_lavas_formula():
    x = np.array([8388608.5, -3.25])
    np.testing.assert_array_equal(signed_clamp(x, 24), (x + 2**23) % 2**24 - 2**23)


def test_dtype_is_kept_when_it_holds_the_range():
    a = np.array([100, -100], np.int8)
    assert wrap_to_bits(a, 6).dtype == np.int8
    assert wrap_to_bits(a, 6).tolist() == [-28, 28]
    assert saturate_to_bits(np.array([2**40], np.int64), 24).dtype == np.int64
    # int8 cannot hold the 24-bit range: result widens rather than wrapping again
    assert saturate_to_bits(a, 24).dtype == np.int64


@pytest.mark.parametrize("bits", [0, 65, -1, 2.0, True])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        wrap_to_bits(np.array([1]), bits)


def test_float_array_rejected_by_integer_kernels():
    with pytest.raises(ValueError, match="integer values"):
        saturate_to_bits(np.array([1.5]), 8)


def test_shape_preserved():
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) * 1000
    assert wrap_to_bits(a, 12).shape == (2, 3, 4)


def test_numpy_scalars_follow_the_array_rule():
    """A NumPy scalar is treated as a 0-d array: uint8 cannot hold [-128, 127], so the
    8-bit wrap of 200 (= 200 - 256 = -56) comes back as int64, not re-cast to uint8."""
    got = wrap_to_bits(np.uint8(200), 8)
    assert got == -56 and got.dtype == np.int64
    assert saturate_to_bits(np.int64(200), 8) == 127
    assert wrap_to_bits(200, 8) == -56 and type(wrap_to_bits(200, 8)) is int
