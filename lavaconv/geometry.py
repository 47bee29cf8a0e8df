"""Parameter validation and convolution geometry (SPEC sections 1 and 2).

Everything here runs once, in Python, before any kernel: the kernels trust the
plain ints that :class:`Geometry` holds.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

__all__ = [
    "MAX_FRAME_ELEMENTS",
    "Geometry",
    "geometry_for",
    "make_tuple",
    "output_shape",
    "validate_geometry",
    "validate_int_range",
    "validate_precision",
]

IntOrPair = Union[int, Sequence[int], np.ndarray]  # noqa: UP007 (a runtime alias)

#: Largest padded input or output frame accepted, in entries. A layer beyond it
#: would need tens of GiB per frame; it is refused when the geometry is validated,
#: before anything is allocated (instead of a bare ``MemoryError`` after trying).
MAX_FRAME_ELEMENTS = 2**32


def _as_int(value: Any, name: str) -> int:
    """Return ``value`` as a plain Python int, or raise a ``ValueError`` naming it.

    Accepts Python and NumPy integers, integral floats, and 0-d or 1-element integer
    arrays (``.npz`` and hdf5 files hand scalars over as those).
    """
    if isinstance(value, np.ndarray) and value.size == 1 and value.ndim <= 1:
        value = value.reshape(()).item() if value.dtype.kind in "iuf" else value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer, got {name}={value!r}.")
    return operator.index(value)


def make_tuple(value: IntOrPair, name: str = "value") -> tuple[int, int]:
    """Broadcast a scalar or a 1- or 2-element sequence to an ``(X, Y)`` pair of ints.

    Parameters
    ----------
    value : int or sequence of 1 or 2 ints
        A scalar, ``(v,)`` or ``(vx, vy)``; NumPy integers and arrays are accepted.
    name : str, optional
        Argument name used in error messages.

    Returns
    -------
    tuple of (int, int)
        Plain Python ints (Lava keeps NumPy scalars; ints are safer downstream).

    Raises
    ------
    ValueError
        If ``value`` has more than two elements, none, or non-integer elements.

    Examples
    --------
    >>> make_tuple(3)
    (3, 3)
    >>> make_tuple((2, 1))
    (2, 1)
    """
    if np.ndim(value) == 0:
        v = _as_int(value if not isinstance(value, np.ndarray) else value.item(), name)
        return v, v
    items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
    if len(items) == 1:
        v = _as_int(items[0], name)
        return v, v
    if len(items) == 2:
        return _as_int(items[0], name), _as_int(items[1], name)
    raise ValueError(
        f"{name} must be an int or a pair of ints (X, Y), got {name}={value!r} "
        f"with {len(items)} elements."
    )


#: Largest stride, padding, dilation or kernel size (the kernels index in int64 and
#: tables hold int32-range values; a larger one is a mistake, not a layer).
_MAX_PARAM = 2**31 - 1


def _check_pair(pair: tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    if min(pair) < minimum:
        raise ValueError(
            f"{name} must be >= {minimum} along both axes, got {name}={pair}."
        )
    if max(pair) > _MAX_PARAM:
        raise ValueError(
            f"{name} must be <= {_MAX_PARAM} along both axes, got {name}={pair}.")
    return pair


def output_shape(
    input_shape: Sequence[int],
    out_channels: int,
    kernel_size: IntOrPair,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
) -> tuple[int, int, int]:
    """Output shape of the convolution, ``(X_out, Y_out, C_out)``, in integer arithmetic.

    Per axis: ``(size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1``.

    Parameters
    ----------
    input_shape : sequence of 3 ints
        ``(X, Y, C_in)``.
    out_channels : int
        ``C_out``.
    kernel_size, stride, padding, dilation : int or pair of ints
        In (X, Y) order.

    Returns
    -------
    tuple of 3 ints

    Raises
    ------
    ValueError
        If an output axis would be smaller than 1 (names the axis and the sizes; Lava
        printed to stdout and raised a bare ``Exception``), or a parameter is invalid.
    """
    shape = _validate_input_shape(input_shape)
    kernel = _check_pair(make_tuple(kernel_size, "kernel_size"), "kernel_size", 1)
    stride_ = _check_pair(make_tuple(stride, "stride"), "stride", 1)
    padding_ = _check_pair(make_tuple(padding, "padding"), "padding", 0)
    dilation_ = _check_pair(make_tuple(dilation, "dilation"), "dilation", 1)
    c_out = _as_int(out_channels, "out_channels")
    if c_out < 1:
        raise ValueError(f"out_channels must be >= 1, got out_channels={c_out}.")
    out = []
    for axis, size, k, s, p, d in zip("XY", shape[:2], kernel, stride_, padding_, dilation_,
                                      strict=True):
        span = d * (k - 1) + 1
        n = (size + 2 * p - span) // s + 1
        if n < 1:
            raise ValueError(
                f"output {axis} dimension would be {n} (< 1): input {axis} size {size} "
                f"+ 2 * padding {p} is smaller than the dilated kernel extent {span} "
                f"(kernel {k}, dilation {d}). Use a larger input or padding, or a "
                f"smaller kernel or dilation."
            )
        out.append(n)
    return out[0], out[1], c_out


def _validate_input_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        items = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"input_shape must be 3 positive ints (X, Y, C), got input_shape={input_shape!r}."
        ) from None
    if len(items) != 3:
        raise ValueError(
            f"input_shape must be 3 positive ints (X, Y, C), got input_shape={input_shape!r}."
        )
    shape = tuple(_as_int(v, "input_shape") for v in items)
    if min(shape) < 1:
        raise ValueError(
            f"input_shape must be 3 positive ints (X, Y, C), got input_shape={shape}."
        )
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Geometry:
    """Validated convolution geometry in Lava's (X, Y, C) layout, plain ints only.

    Build it with :func:`validate_geometry`. ``weight_shape`` is
    ``(C_out, KX, KY, C_in // groups)``.
    """

    input_shape: tuple[int, int, int]
    weight_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    output_shape: tuple[int, int, int]

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(KX, KY)``."""
        return self.weight_shape[1], self.weight_shape[2]

    @property
    def in_channels(self) -> int:
        """``C_in``."""
        return self.input_shape[2]

    @property
    def out_channels(self) -> int:
        """``C_out``."""
        return self.weight_shape[0]

    @property
    def in_per_group(self) -> int:
        """``Cg = C_in // groups``."""
        return self.input_shape[2] // self.groups

    @property
    def out_per_group(self) -> int:
        """``Kg = C_out // groups``."""
        return self.weight_shape[0] // self.groups

    @property
    def dense_macs(self) -> int:
        """Multiply-adds of one dense frame: ``X_out * Y_out * C_out * KX * KY * Cg``."""
        xo, yo, co = self.output_shape
        return xo * yo * co * self.weight_shape[1] * self.weight_shape[2] * self.weight_shape[3]


def validate_geometry(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    kernel_size: IntOrPair | None = None,
) -> Geometry:
    """Check every geometric parameter (SPEC section 2) and compute the output shape.

    Parameters
    ----------
    input_shape : sequence of 3 ints
        ``(X, Y, C_in)``.
    weight_shape : sequence of 4 ints
        ``(C_out, KX, KY, C_in // groups)``.
    stride, padding, dilation : int or pair of ints, optional
        In (X, Y) order; scalars are broadcast.
    groups : int, optional
        Number of groups; must divide ``C_in`` and ``C_out``.
    kernel_size : int or pair of ints, optional
        If given (Lava's functions take it), it must equal ``weight_shape[1:3]``.

    Returns
    -------
    Geometry

    Raises
    ------
    ValueError
        Naming the argument, its value and the rule broken.
    """
    shape = _validate_input_shape(input_shape)
    wshape = tuple(int(v) for v in weight_shape)
    if len(wshape) != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, KX, KY, C_in // groups), got weight.shape={wshape}."
        )
    if min(wshape) < 1:
        raise ValueError(f"weight must have no empty axis, got weight.shape={wshape}.")
    groups_ = _as_int(groups, "groups")
    if groups_ < 1:
        raise ValueError(f"groups must be >= 1, got groups={groups_}.")
    c_in, c_out = shape[2], wshape[0]
    if c_in % groups_ or c_out % groups_:
        raise ValueError(
            f"groups must divide both the input channels and the output channels, got "
            f"groups={groups_}, C_in={c_in}, C_out={c_out}."
        )
    if wshape[3] != c_in // groups_:
        raise ValueError(
            f"weight.shape[3] must equal C_in // groups = {c_in} // {groups_} = "
            f"{c_in // groups_}, got weight.shape={wshape}. Weights are laid out "
            f"(C_out, KX, KY, C_in // groups)."
        )
    if kernel_size is not None:
        ks = make_tuple(kernel_size, "kernel_size")
        if ks != wshape[1:3]:
            raise ValueError(
                f"kernel_size must match weight.shape[1:3] = {wshape[1:3]}, got "
                f"kernel_size={ks}."
            )
    stride_ = _check_pair(make_tuple(stride, "stride"), "stride", 1)
    padding_ = _check_pair(make_tuple(padding, "padding"), "padding", 0)
    dilation_ = _check_pair(make_tuple(dilation, "dilation"), "dilation", 1)
    out = output_shape(shape, c_out, wshape[1:3], stride_, padding_, dilation_)
    padded = (shape[0] + 2 * padding_[0]) * (shape[1] + 2 * padding_[1]) * shape[2]
    for what, size in (("padded input", padded), ("output", out[0] * out[1] * out[2])):
        if size > MAX_FRAME_ELEMENTS:
            raise ValueError(
                f"the {what} frame would hold {size} entries (input_shape={shape}, "
                f"padding={padding_}, output shape {out}), more than the "
                f"{MAX_FRAME_ELEMENTS} lavaconv accepts (tens of GiB per frame); check the "
                f"padding and input_shape.")
    return Geometry(shape, wshape, stride_, padding_, dilation_, groups_, out)  # type: ignore[arg-type]


_GEOMETRIES: dict[tuple, Geometry] = {}
_GEOMETRIES_MAX = 256


def _plain(value: Any) -> bool:
    """Whether ``value`` is exactly an int, None, or a tuple of exact ints."""
    cls = value.__class__
    if cls is int or value is None:
        return True
    if cls is tuple:
        for v in value:
            if v.__class__ is not int:
                return False
        return True
    return False


def _plain_all(values: tuple) -> bool:
    """:func:`_plain` of every item of ``values`` (one call, for a hot path)."""
    for value in values:
        cls = value.__class__
        if cls is int or value is None:
            continue
        if cls is not tuple:
            return False
        for v in value:
            if v.__class__ is not int:
                return False
    return True


def geometry_for(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    kernel_size: IntOrPair | None = None,
) -> Geometry:
    """:func:`validate_geometry`, remembered for arguments given as plain ints and tuples.

    A stateless entry point (:func:`lavaconv.utils.conv`) validates the same
    arguments at every call; this returns the Geometry validated the first time.
    Arguments of other types (NumPy scalars and arrays, lists, floats, bools) are
    validated anew each time, so every rule applies exactly as in
    :func:`validate_geometry`.
    """
    if (_plain(stride) and _plain(padding) and _plain(dilation) and _plain(groups)
            and _plain(kernel_size) and _plain(input_shape) and _plain(weight_shape)):
        key = (input_shape, weight_shape, stride, padding, dilation, groups, kernel_size)
        g = _GEOMETRIES.get(key)
        if g is None:
            g = validate_geometry(*key)
            if len(_GEOMETRIES) >= _GEOMETRIES_MAX:
                _GEOMETRIES.clear()
            _GEOMETRIES[key] = g
        return g
    return validate_geometry(input_shape, weight_shape, stride, padding, dilation, groups,
                             kernel_size)


def validate_int_range(value: Any, name: str, low: int, high: int) -> int:
    """Return ``value`` as a plain int if ``low <= value <= high``, else raise.

    Accepts Python and NumPy integers, integral floats and size-1 arrays (Lava passes
    some parameters as 1-element arrays).

    Raises
    ------
    ValueError
        Naming the argument, its value and the allowed range.

    """
    v = _as_int(value, name)
    if not low <= v <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {name}={v}.")
    return v


def validate_precision(
    weight_exp: Any = 0, num_weight_bits: Any = 8, num_message_bits: Any = 0
) -> tuple[int, int, int]:
    """Check the Loihi precision parameters (SPEC section 2).

    Parameters
    ----------
    weight_exp : int
        Weight exponent, ``-8..7``.
    num_weight_bits : int
        Weight precision, ``1..8``.
    num_message_bits : int
        Message payload bits, ``0..24`` (0: binary spikes).

    Returns
    -------
    tuple of 3 ints
        ``(weight_exp, num_weight_bits, num_message_bits)`` as plain Python ints (Lava
        stores them as int8 and silently wraps values above 127).

    Raises
    ------
    ValueError
        Naming the argument, its value and the allowed range.

    """
    return (
        validate_int_range(weight_exp, "weight_exp", -8, 7),
        validate_int_range(num_weight_bits, "num_weight_bits", 1, 8),
        validate_int_range(num_message_bits, "num_message_bits", 0, 24),
    )
