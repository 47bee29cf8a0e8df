"""Every rule of SPEC section 2, through the public functions."""

from __future__ import annotations

import numpy as np
import pytest

from lavaconv import utils
from lavaconv.geometry import make_tuple, output_shape, validate_geometry

X = np.ones((6, 6, 4), np.int8)
W = np.ones((4, 3, 3, 4), np.int8)


def call(x=X, w=W, kernel_size=(3, 3), stride=1, padding=0, dilation=1, groups=1):
    return utils.conv(x, w, kernel_size, stride, padding, dilation, groups)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(w=np.ones((4, 3, 3))), r"weight must be a 4-D"),
        (dict(x=np.ones((6, 6))), r"input must be a 3-D"),
        (dict(w=np.ones((4, 3, 3, 3), np.int8)), r"weight.shape\[3\] must equal C_in // groups"),
        (dict(groups=0), r"groups must be >= 1"),
        (dict(groups=3), r"groups must divide"),
        (dict(w=np.ones((3, 3, 3, 2), np.int8), groups=2), r"groups must divide"),
        (dict(groups=1.5), r"groups must be an integer"),
        (dict(stride=0), r"stride must be >= 1"),
        (dict(stride=(1, 0)), r"stride must be >= 1"),
        (dict(stride=(1, 1, 1)), r"stride must be an int or a pair"),
        (dict(stride=1.5), r"stride must be an integer"),
        (dict(dilation=0), r"dilation must be >= 1"),
        (dict(padding=-1), r"padding must be >= 0"),
        (dict(dilation=4), r"output X dimension would be -2"),
        (dict(w=np.ones((4, 3, 7, 4), np.int8), kernel_size=(3, 7)), r"output Y dimension"),
        (dict(kernel_size=(3, 2)), r"kernel_size must match weight.shape\[1:3\]"),
        (dict(x=np.full((6, 6, 4), np.nan)), r"input contains NaN"),
        (dict(w=np.full((4, 3, 3, 4), np.inf)), r"weight contains NaN or infinite"),
        (dict(x=np.ones((6, 6, 4), complex)), r"input must be bool, integer or float"),
    ],
)
def test_conv_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        call(**kwargs)


def test_error_names_value_and_axis_for_empty_output():
    with pytest.raises(ValueError) as info:
        output_shape((4, 10, 1), 2, (5, 3), 1, 0, 1)
    msg = str(info.value)
    assert "output X" in msg and "size 4" in msg and "extent 5" in msg


def test_output_shape_is_integer_arithmetic():
    """X=7, pad 1, dilation 2, kernel 3, stride 2: (7 + 2 - 4 - 1) // 2 + 1 = 3."""
    assert output_shape((7, 5, 3), 8, 3, 2, 1, 2) == (3, 2, 8)
    assert all(type(v) is int for v in output_shape((7, 5, 3), 8, 3, 2, 1, 2))


def test_output_shape_never_prints(capsys):
    with pytest.raises(ValueError):
        output_shape((1, 1, 1), 1, 3, 1, 0, 1)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("value, expected", [(3, (3, 3)), ((2,), (2, 2)), ((2, 5), (2, 5)),
                                             (np.array([4, 1]), (4, 1)), (np.int8(2), (2, 2))])
def test_make_tuple(value, expected):
    got = make_tuple(value)
    assert got == expected and all(type(v) is int for v in got)


@pytest.mark.parametrize("value", [(), (1, 2, 3), [1, 2, 3, 4]])
def test_make_tuple_rejects(value):
    with pytest.raises(ValueError, match="int or a pair"):
        make_tuple(value)


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 0), (4, -1, 2), "abc", 5])
def test_input_shape_rules(shape):
    with pytest.raises(ValueError, match="input_shape"):
        validate_geometry(shape, (1, 1, 1, 1))


def test_parameters_above_int8_are_not_wrapped():
    """Lava stores parameters as int8; 130 would wrap to -126. Here it is kept as 130."""
    g = validate_geometry((300, 4, 1), (1, 1, 1, 1), stride=(130, 1))
    assert g.stride == (130, 1) and g.output_shape == (3, 4, 1)
