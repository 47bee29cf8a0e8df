"""Loihi weight encoding: Lava's ``SignMode`` and weight utilities (SPEC section 5).

Drop-in for the parts of ``lava.utils.weightutils`` that the bit-accurate synapse
uses, with Lava's semantics (same enum values, same ranges, same bit arithmetic):

* :func:`determine_sign_mode`: all ``>= 0`` is EXCITATORY, all ``<= 0``
  INHIBITORY, anything else MIXED (all-zero weights are EXCITATORY, as in Lava);
* :func:`clip_weights`: MIXED ``[-2**n, 2**n - 1]``, EXCITATORY ``[0, 2**n - 1]``,
  INHIBITORY ``[-(2**n - 1), 0]``;
* :func:`truncate_weights`: clear the low ``max_bits - num_weight_bits + (1 if MIXED)``
  bits with ``(w >> n) << n`` (a two's-complement floor; INHIBITORY weights are
  negated first and back after);
* :func:`shift_exponent`: ``v << e`` for ``e > 0``, the arithmetic (floor) ``v >> -e``
  for ``e < 0``.

Inputs are truncated toward zero to integers first (Lava stores the weights in an
``int32`` variable). Arithmetic is done in int64, so values beyond int32 do not
wrap silently as they do in Lava; results are int32 whenever they fit.
"""

from __future__ import annotations

from enum import Enum, unique
from typing import Any, Union

import numpy as np
from scipy import sparse

__all__ = [
    "SignMode",
    "clip_weights",
    "determine_sign_mode",
    "shift_exponent",
    "to_integer_weights",
    "truncate_weights",
]

ArrayOrSparse = Union[np.ndarray, sparse.spmatrix]  # noqa: UP007 (runtime alias)


@unique
class SignMode(Enum):
    """Sign mode of a weight set (Lava's enum, same values)."""

    NULL = 0
    MIXED = 1
    EXCITATORY = 2
    INHIBITORY = 3


def as_sign_mode(value: Any, name: str = "sign_mode") -> SignMode:
    """Return ``value`` as a :class:`SignMode` (accepts the enum, its int value or its name).

    Raises
    ------
    ValueError
        If ``value`` names no sign mode.

    """
    if isinstance(value, SignMode):
        return value
    try:
        if isinstance(value, str):
            return SignMode[value.upper()]
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return SignMode(int(value))
    except (KeyError, ValueError):
        pass
    raise ValueError(
        f"{name} must be a SignMode (MIXED, EXCITATORY, INHIBITORY) or its value, got "
        f"{name}={value!r}."
    )


def to_integer_weights(weights: np.ndarray, name: str = "weight") -> np.ndarray:
    """Truncate weights toward zero to int64 (what Lava's ``int32`` weight variable does).

    Parameters
    ----------
    weights : ndarray
        Bool, integer or finite float weights.
    name : str, optional
        Argument name for error messages.

    Returns
    -------
    ndarray of int64
        A new array.

    Raises
    ------
    ValueError
        Non-numeric dtype, non-finite values, or values that do not fit in int32
        (Lava would wrap them silently).

    """
    w = np.asarray(weights)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be bool, integer or float, got dtype {w.dtype}.")
    if w.dtype.kind == "f":
        if not np.isfinite(w).all():
            raise ValueError(f"{name} contains NaN or infinite values.")
        w = np.trunc(w)
    if w.size and (w.max() > np.iinfo(np.int32).max or w.min() < np.iinfo(np.int32).min):
        raise ValueError(
            f"{name} values must fit in int32 once truncated toward zero (Lava stores "
            f"them as int32 and would wrap them), got values in [{w.min()}, {w.max()}]."
        )
    return w.astype(np.int64)


def _narrow(w: np.ndarray) -> np.ndarray:
    """int32 when every value fits (Lava's dtype), else int64."""
    info = np.iinfo(np.int32)
    if w.size == 0 or (info.min <= w.min() and w.max() <= info.max):
        return w.astype(np.int32)
    return w


def _map_values(weights: ArrayOrSparse, fn) -> ArrayOrSparse:
    """Apply ``fn`` (int64 ndarray -> int64 ndarray) to dense weights or a sparse matrix's data."""
    if sparse.issparse(weights):
        out = weights.copy()
        out.data = _narrow(fn(to_integer_weights(out.data, "weights")))
        return out
    return _narrow(fn(to_integer_weights(weights, "weights")))


def determine_sign_mode(weights: ArrayOrSparse) -> SignMode:
    """Sign mode describing ``weights`` (Lava's rule).

    Parameters
    ----------
    weights : ndarray or sparse matrix
        Weights.

    Returns
    -------
    SignMode
        EXCITATORY if ``min >= 0`` (so all-zero weights are EXCITATORY), else
        INHIBITORY if ``max <= 0``, else MIXED.

    Examples
    --------
    >>> determine_sign_mode(np.array([0, 3])).name
    'EXCITATORY'
    >>> determine_sign_mode(np.array([-1, 3])).name
    'MIXED'

    """
    if weights.min() >= 0:
        return SignMode.EXCITATORY
    if weights.max() <= 0:
        return SignMode.INHIBITORY
    return SignMode.MIXED


def clip_weights(weights: ArrayOrSparse, sign_mode: SignMode, num_bits: int) -> ArrayOrSparse:
    """Clip weights to the ``num_bits`` range of ``sign_mode`` (Lava's ``clip_weights``).

    MIXED: ``[-2**num_bits, 2**num_bits - 1]``; EXCITATORY (and NULL, as in Lava):
    ``[0, 2**num_bits - 1]``; INHIBITORY: ``[-(2**num_bits - 1), 0]``.

    Parameters
    ----------
    weights : ndarray or sparse matrix
        Weights; floats are truncated toward zero first.
    sign_mode : SignMode
        Encoding.
    num_bits : int
        Magnitude bits (8 on Loihi).

    Returns
    -------
    ndarray or sparse matrix
        A new int32 array (int64 if values do not fit).

    Examples
    --------
    >>> clip_weights(np.array([-300, 300]), SignMode.MIXED, 8).tolist()
    [-256, 255]

    """
    mode = as_sign_mode(sign_mode)
    hi = 2 ** int(num_bits) - 1
    lo = -(2 ** int(num_bits)) if mode == SignMode.MIXED else 0

    def fn(w: np.ndarray) -> np.ndarray:
        if mode == SignMode.INHIBITORY:
            return -np.clip(-w, lo, hi)
        return np.clip(w, lo, hi)

    return _map_values(weights, fn)


def truncate_weights(
    weights: ArrayOrSparse,
    sign_mode: SignMode,
    num_weight_bits: int,
    max_num_weight_bits: int = 8,
) -> ArrayOrSparse:
    """Keep ``num_weight_bits`` of precision (Lava's ``truncate_weights``).

    Clears the low ``n = max_num_weight_bits - num_weight_bits + (1 if MIXED else 0)``
    bits with ``(w >> n) << n``: an arithmetic shift, so negative MIXED weights are
    floored (``-3`` becomes ``-4`` at 8 bits). INHIBITORY weights are negated first
    and back after, so their magnitudes are truncated.

    Parameters
    ----------
    weights : ndarray or sparse matrix
        Weights (already clipped, usually); floats are truncated toward zero first.
    sign_mode : SignMode
        Encoding.
    num_weight_bits : int
        Bits kept, ``1 <= num_weight_bits <= max_num_weight_bits``.
    max_num_weight_bits : int, optional
        Full weight width, 8 on Loihi.

    Returns
    -------
    ndarray or sparse matrix
        A new int32 array (int64 if values do not fit).

    Raises
    ------
    ValueError
        If ``num_weight_bits`` is outside ``1..max_num_weight_bits``.

    Examples
    --------
    >>> truncate_weights(np.array([3, -3, 7]), SignMode.MIXED, 8).tolist()
    [2, -4, 6]
    >>> truncate_weights(np.array([-7]), SignMode.INHIBITORY, 6).tolist()
    [-4]

    """
    mode = as_sign_mode(sign_mode)
    if not 1 <= int(num_weight_bits) <= int(max_num_weight_bits):
        raise ValueError(
            f"num_weight_bits must be in 1..{max_num_weight_bits}, got "
            f"num_weight_bits={num_weight_bits}."
        )
    n = int(max_num_weight_bits) - int(num_weight_bits) + int(mode == SignMode.MIXED)

    def fn(w: np.ndarray) -> np.ndarray:
        if mode == SignMode.INHIBITORY:
            return -((-w >> n) << n)
        return (w >> n) << n

    return _map_values(weights, fn)


def shift_exponent(values: np.ndarray, exponent: int) -> np.ndarray:
    """Scale integers by ``2**exponent`` the Loihi way: ``<< e``, or floor ``>> -e``.

    Parameters
    ----------
    values : integer ndarray
        Values (int64 recommended: the caller guarantees no overflow on ``<<``).
    exponent : int
        Weight exponent.

    Returns
    -------
    ndarray
        New array, same dtype.

    Examples
    --------
    >>> shift_exponent(np.array([3, -3]), -1).tolist()
    [1, -2]

    """
    e = int(exponent)
    if e > 0:
        return np.left_shift(values, e)
    if e < 0:
        return np.right_shift(values, -e)
    return values.copy()
