"""Event-driven convolution of events held as index arrays.

Other simulators and event cameras hold spikes as index arrays ``(x, y, c[, value])``
rather than dense frames; :func:`conv_events` convolves them directly, without
building a frame.
"""

from __future__ import annotations

import numpy as np

from .dtypes import INT64_LIMIT
from .engine import layer_for
from .geometry import IntOrPair

__all__ = ["conv_events"]


def conv_events(
    x: np.ndarray,
    y: np.ndarray,
    c: np.ndarray,
    value: np.ndarray | None,
    input_shape,
    weight: np.ndarray,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolve events given as index arrays, in Lava's layout and semantics.

    The result equals ``lavaconv.conv`` of the dense frame holding ``value[e]`` at
    ``(x[e], y[e], c[e])`` (repeated coordinates add up).

    Parameters
    ----------
    x, y, c : array_like of ints, (E,)
        Coordinates of the events inside ``input_shape``.
    value : array_like, (E,), or None
        Payloads (integer or float); ``None`` for binary spikes (value 1).
    input_shape : tuple of 3 ints
        ``(X, Y, C_in)``.
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Kernel (integer or float).
    stride, padding, dilation : int or pair of ints, (X, Y)
        Geometry.
    groups : int
        Groups.

    Returns
    -------
    ndarray, (X_out, Y_out, C_out)
        int64, exact, for integer weights and integer (or no) values; float64 when
        either is float (float32 when both are float32).

    Raises
    ------
    ValueError
        Invalid geometry, mismatched lengths, coordinates outside the input.
    OverflowError
        If an exact integer sum could exceed int64.
    """
    engine = layer_for(weight, input_shape, stride, padding, dilation, groups)
    weight = engine.weight
    vdtype = np.asarray(value).dtype if value is not None else np.dtype(np.int64)
    if weight.dtype.kind == "f" or vdtype.kind == "f":
        both32 = weight.dtype == np.float32 and vdtype in (np.float32, np.int8, np.int16,
                                                           np.uint8, np.bool_)
        dtype = np.dtype(np.float32 if both32 else np.float64)
    else:
        dtype = np.dtype(np.int64)
        vmax = 1
        if value is not None and np.size(value):
            v = np.asarray(value)
            if v.dtype == np.uint64 and int(v.max()) >= 2**63:
                raise ValueError("value: uint64 payloads >= 2**63 are not supported.")
            vmax = max(abs(int(v.max())), abs(int(v.min())))
        # each output sums at most (number of events) products; bound it like the engine
        n_ev = int(np.size(x))
        bound = vmax * int(np.abs(weight.astype(np.float64)).max()) * max(n_ev, 1)
        if min(bound, vmax * engine.weight_l1 * max(n_ev, 1)) >= INT64_LIMIT:
            raise OverflowError(
                f"the exact sum may reach {bound} >= 2**63; reduce the magnitudes.")
    events = engine.events_from_indices(x, y, c, value, dtype)
    return engine.scatter(events, dtype)[0]
