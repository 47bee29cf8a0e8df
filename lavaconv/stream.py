"""Event-camera streams as input: bin ``(x, y, p, t)`` events in time and convolve each bin.

Event cameras and the tools around them (tonic, for one) hold a recording as a
structured array with fields ``x``, ``y``, ``p`` (polarity) and ``t`` (integer
timestamps, microseconds for tonic), sorted by ``t``, with ``sensor_size = (W, H, P)``,
which is Lava's ``(X, Y, C)`` (SPEC section 12). :func:`conv_event_stream` cuts the
stream into time bins and convolves every bin with the event-driven scatter kernel,
straight from the events: they are bucketed by ``(bin, x)`` into the CSR form of
:class:`lavaconv.engine.Events` (:func:`lavaconv.kernels.stream.bucket_stream`) and
scattered by the prepared layer (:func:`lavaconv.engine.prepare`); no dense frame is
built, so the cost follows the number of events, not ``bins x sensor``.
"""

from __future__ import annotations

import operator

import numpy as np

from .dtypes import INT32_LIMIT, INT64_LIMIT, check_array
from .engine import Events, prepare
from .geometry import IntOrPair, geometry_for
from .kernels import stream as _stream

__all__ = ["conv_event_stream"]

_FIELDS = ("x", "y", "p", "t")
_INT32_LIMIT, _INT64_LIMIT = INT32_LIMIT, INT64_LIMIT  # the rules' one home: dtypes


def _as_int(value, name: str) -> int:
    """``value`` as a plain int (Python/NumPy ints, integral floats, 0-d int arrays)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {name}={value!r}.")
    if isinstance(value, (float, np.floating)):
        if np.isfinite(value) and float(value).is_integer():
            return int(value)
        raise ValueError(f"{name} must be an integer (in timestamp units), got {name}={value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {name}={value!r}.") from None


def _sensor_size(sensor_size) -> tuple[int, int, int]:
    try:
        items = tuple(np.asarray(sensor_size).ravel().tolist()) if isinstance(
            sensor_size, np.ndarray) else tuple(sensor_size)
    except TypeError:
        items = ()
    if len(items) != 3:
        raise ValueError(
            f"sensor_size must be 3 positive ints (W, H, P) = (X, Y, C) as tonic gives, got "
            f"sensor_size={sensor_size!r}.")
    size = tuple(_as_int(v, "sensor_size") for v in items)
    if min(size) < 1:
        raise ValueError(
            f"sensor_size must be 3 positive ints (W, H, P) = (X, Y, C), got "
            f"sensor_size={size}.")
    return size  # type: ignore[return-value]


def _fields(events) -> tuple[np.ndarray, ...]:
    """Return the four fields as contiguous int64 arrays (extra fields ignored)."""
    names = getattr(getattr(events, "dtype", None), "names", None)
    if not isinstance(events, np.ndarray) or names is None:
        raise ValueError(
            f"events must be a NumPy structured array with integer fields x, y, p, t "
            f"(tonic's layout), got {type(events).__name__}"
            f"{' of dtype ' + str(events.dtype) if isinstance(events, np.ndarray) else ''}. "
            f"Build one with np.rec.fromarrays([x, y, p, t], names='x,y,p,t').")
    if events.ndim != 1:
        raise ValueError(f"events must be a 1-D structured array, got shape {events.shape}; "
                         f"flatten it with events.ravel() (in time order).")
    missing = [f for f in _FIELDS if f not in names]
    if missing:
        raise ValueError(
            f"events lacks the field(s) {', '.join(missing)}: it must have fields x, y, p, t "
            f"(tonic's layout), got fields {names}.")
    out = []
    for f in _FIELDS:
        a = events[f]
        kinds = "iu" if f == "t" else "biu"
        if a.ndim != 1 or a.dtype.kind not in kinds:
            what = "integers" if f == "t" else "integers (or bool)"
            raise ValueError(
                f"events field {f!r} must hold {what}, got dtype "
                f"{events.dtype.fields[f][0]}. Convert it first, e.g. "
                f"events[{f!r}].astype(np.int64) into a new structured array.")
        if a.dtype == np.uint64 and a.size and int(a.max()) >= _INT64_LIMIT:
            e = int(np.argmax(a >= _INT64_LIMIT))
            raise ValueError(f"events[{e}] has {f}={int(a[e])}, beyond 2**63 - 1: values of "
                             f"field {f!r} must fit in int64.")
        out.append(np.ascontiguousarray(a, dtype=np.int64))
    return tuple(out)


def _check_events(events, xs, ys, ps, ts, size, t_start) -> None:
    """Raise a ``ValueError`` naming the first event outside the sensor, early or unsorted."""
    w, h, n_pol = size
    code, e = _stream.check_stream(xs, ys, ps, ts, w, h, n_pol, t_start)
    if code == 0:
        return
    ev = events[e]
    if code <= 3:
        field = _stream.CHECK_CODES[code]
        limit = {"x": ("W", w), "y": ("H", h), "p": ("P", n_pol)}[field]
        raise ValueError(
            f"events[{e}] has {field}={int(ev[field])}, outside the sensor: {field} must lie "
            f"in 0..{limit[1] - 1} (sensor_size={size} = (W, H, P), {limit[0]}={limit[1]}). "
            f"Check sensor_size, or drop such events first, e.g. "
            f"events[(events[{field!r}] >= 0) & (events[{field!r}] < {limit[1]})].")
    if code == 4:
        raise ValueError(
            f"events[{e}] has t={int(ev['t'])}, before t_start={t_start}: every event must have "
            f"t >= t_start. Pass a smaller t_start (e.g. t_start=events['t'][0]) or drop the "
            f"earlier events (events[events['t'] >= t_start]).")
    raise ValueError(
        f"events must be sorted by time (t non-decreasing, as tonic delivers them), but "
        f"events[{e}].t={int(ev['t'])} < events[{e - 1}].t={int(events[e - 1]['t'])}. Sort them "
        f"first: events = events[np.argsort(events['t'], kind='stable')].")


def conv_event_stream(
    events: np.ndarray,
    sensor_size,
    weight: np.ndarray,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
    *,
    time_window: int,
    t_start: int = 0,
    n_bins: int | None = None,
    binary: bool = True,
) -> np.ndarray:
    """Convolve an event-camera stream bin by bin, event-driven, in Lava's layout.

    The stream is cut into time bins of ``time_window``: bin ``k`` holds the events
    with ``t_start + k*time_window <= t < t_start + (k+1)*time_window`` (SPEC 12).
    Bin ``k``'s input frame is ``(W, H, P)`` = Lava's ``(X, Y, C)``: 1 at every
    ``(x, y, p)`` with at least one event in the bin (``binary=True``, Lava's cast to
    bool), or the number of those events (``binary=False``, a graded payload). Each
    frame is convolved as :func:`lavaconv.utils.conv` does (a true convolution;
    SPEC 1), but straight from the events by the scatter kernel: no frame is built.

    Parameters
    ----------
    events : structured ndarray, (E,)
        Fields ``x``, ``y``, ``p``, ``t`` (tonic's layout; any integer dtypes, bool
        too for ``x``, ``y``, ``p``; other fields are ignored), sorted by ``t``
        (non-decreasing), every event inside the sensor and at ``t >= t_start``.
    sensor_size : tuple of 3 ints
        ``(W, H, P)``, which is Lava's ``(X, Y, C_in)``.
    weight : ndarray, (C_out, KX, KY, P // groups)
        Kernel in Lava's layout, integer (or bool) or float.
    stride, padding, dilation : int or pair of ints, (X, Y)
        Geometry, as :class:`lavaconv.Conv`.
    groups : int
        Groups; must divide ``P`` and ``C_out``.
    time_window : int, keyword-only
        Bin length in timestamp units (microseconds for tonic), ``>= 1``; an
        integral float such as ``1000.0`` is accepted.
    t_start : int, keyword-only
        Start of bin 0 (default 0).
    n_bins : int or None, keyword-only
        Number of bins ``T``. ``None`` (default): up to the bin of the last event
        (no bins, ``T = 0``, when there are no events). When given, events at or
        after ``t_start + n_bins*time_window`` are dropped; bins without events
        give zeros.
    binary : bool, keyword-only
        ``True`` (default): binary spikes, repeats at one ``(x, y, p)`` in one bin
        count once. ``False``: their count is the payload.

    Returns
    -------
    ndarray, (X_out, Y_out, C_out, T)
        Time last, as Lava. ``int32`` for integer weights, exact; for float weights
        the weights' precision, ``float32`` (float16, float32) or ``float64``
        (float64, long double), summed in that precision. The array is a view of a
        C-contiguous ``(T, X_out, Y_out, C_out)`` buffer (each time step's frame is
        contiguous); ``np.ascontiguousarray`` gives a time-last copy. There is no
        synaptic delay here: a Lava ``Conv`` process emits bin ``k`` at step ``k+1``.

    Raises
    ------
    ValueError
        ``events`` not a 1-D structured array, a missing or non-integer field, an
        event outside the sensor, before ``t_start`` or out of time order;
        ``time_window < 1``, ``n_bins < 0``, non-integer ``t_start``/``time_window``/
        ``n_bins``, ``binary`` not a bool; a bad ``sensor_size``, weight or geometry.
    OverflowError
        Integer weights whose exact sums may exceed int32: ``max payload *
        max_k sum |W[k]|`` (the payload is 1, or the largest count of one pixel in
        one bin) ``>= 2**31``.

    Examples
    --------
    >>> import numpy as np
    >>> ev = np.zeros(3, dtype=[("x", np.int16), ("y", np.int16), ("p", bool),
    ...                         ("t", np.int64)])
    >>> ev["x"], ev["y"], ev["p"], ev["t"] = [1, 1, 2], [1, 1, 0], [0, 0, 1], [0, 5, 12]
    >>> w = np.ones((1, 1, 1, 2), np.int8)
    >>> out = conv_event_stream(ev, (3, 2, 2), w, time_window=10, binary=False)
    >>> out.shape, out.dtype
    ((3, 2, 1, 2), dtype('int32'))
    >>> int(out[1, 1, 0, 0]), int(out[2, 0, 0, 1])
    (2, 1)
    """
    size = _sensor_size(sensor_size)
    w = check_array(weight, "weight", 4)
    geometry = geometry_for(size, w.shape, stride, padding, dilation, groups)
    tw = _as_int(time_window, "time_window")
    if tw < 1:
        raise ValueError(f"time_window must be >= 1 (timestamp units, microseconds for "
                         f"tonic), got time_window={tw}.")
    if tw >= _INT64_LIMIT:
        raise ValueError(f"time_window must be below 2**63, got time_window={tw}.")
    t0 = _as_int(t_start, "t_start")
    if not -_INT64_LIMIT <= t0 < _INT64_LIMIT:
        raise ValueError(f"t_start must fit in int64, got t_start={t0}.")
    if n_bins is not None:
        n_bins = _as_int(n_bins, "n_bins")
        if n_bins < 0:
            raise ValueError(f"n_bins must be >= 0 or None (up to the last event), got "
                             f"n_bins={n_bins}.")
    if not isinstance(binary, (bool, np.bool_)):
        raise ValueError(f"binary must be True (binary spikes) or False (event counts), got "
                         f"binary={binary!r}.")
    binary = bool(binary)
    xs, ys, ps, ts = _fields(events)
    _check_events(events, xs, ys, ps, ts, size, t0)
    n_ev = ts.shape[0]
    if n_ev and int(ts[-1]) - t0 >= _INT64_LIMIT:
        raise ValueError(
            f"events[{n_ev - 1}].t - t_start = {int(ts[-1]) - t0} does not fit in int64; "
            f"pass a t_start closer to the events' times.")
    if n_bins is None:
        n_bins = (int(ts[-1]) - t0) // tw + 1 if n_ev else 0
        n_keep = n_ev
    else:
        end = t0 + n_bins * tw  # first time of the first dropped bin
        n_keep = n_ev if not n_ev or end > int(ts[-1]) else int(
            np.searchsorted(ts, np.int64(end), side="left"))

    layer = prepare(w, geometry)
    if w.dtype.kind == "f":
        dtype = np.dtype(np.float32 if w.dtype.itemsize <= 4 else np.float64)
    else:
        dtype = np.dtype(np.int32)
    x_out, y_out, c_out = geometry.output_shape
    out_shape = (n_bins, x_out, y_out, c_out)
    if n_bins == 0 or n_keep == 0:  # nothing to sum: zeros, exact for any weights
        return np.moveaxis(np.zeros(out_shape, dtype), 0, -1)

    width, height, n_pol = size
    last = np.zeros(width * height * n_pol, np.int64)
    offsets = np.zeros(n_bins * width + 1, np.int64)
    u_row = np.empty(n_keep, np.int64)
    u_v = np.empty(n_keep, np.int64)
    u_y = np.empty(n_keep, np.int32)
    u_c = np.empty(n_keep, np.int32)
    ev_y = np.empty(n_keep, np.int32)
    ev_c = np.empty(n_keep, np.int32)
    ev_v = np.empty(n_keep, dtype)
    n_unique, max_v = _stream.bucket_stream(
        xs, ys, ps, ts, n_keep, t0, tw, width, height, n_pol, binary, last, offsets,
        u_row, u_y, u_c, u_v, ev_y, ev_c, ev_v)
    if dtype.kind == "i":
        bound = int(max_v) * layer.weight_l1
        if bound >= _INT32_LIMIT:
            raise OverflowError(
                f"the exact sums may reach {int(max_v)} (largest payload) x {layer.weight_l1} "
                f"(largest sum of |weight| over one output channel) = {bound} >= 2**31, beyond "
                f"the int32 result. Use smaller weights"
                f"{', binary=True or a shorter time_window' if not binary else ''}, or pass "
                f"the weight as float64 (exact while sums stay below 2**53).")
    stream = Events(n_bins, offsets, ev_y[:n_unique], ev_c[:n_unique], ev_v[:n_unique],
                    binary or int(max_v) <= 1)
    return np.moveaxis(layer.scatter(stream, dtype), 0, -1)
