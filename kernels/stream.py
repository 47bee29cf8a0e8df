"""Event-camera streams: check a stream of events and bucket it into time bins.

A stream holds events ``(x, y, p, t)`` sorted by ``t``. Bin ``k`` holds the events
with ``t_start + k*time_window <= t < t_start + (k+1)*time_window`` (SPEC section
12). :func:`bucket_stream` turns the events of bins ``0..N-1`` into the CSR form
that :func:`lavaconv.kernels.events.scatter_events` reads: bin ``k``'s input row
``x`` owns entries ``offsets[k*X + x] : offsets[k*X + x + 1]`` of ``ev_y``, ``ev_c``
and ``ev_v``. No dense frame is built. Events repeated at one ``(x, y, p)`` within
one bin become one entry: value 1 (binary spikes, Lava's cast to bool) or their
count (the graded payload).

Every kernel here takes already-converted int64 arrays and preallocated outputs
and only loops; the wrapper is :func:`lavaconv.stream.conv_event_stream`, which
raises the errors these kernels report by code.
"""

from __future__ import annotations

from ._config import jit_serial

__all__ = ["CHECK_CODES", "bucket_stream", "check_stream"]

#: What the codes :func:`check_stream` returns mean (0: every event is valid).
CHECK_CODES = {1: "x", 2: "y", 3: "p", 4: "before t_start", 5: "unsorted"}


@jit_serial
def check_stream(xs, ys, ps, ts, width, height, n_pol, t_start):
    """Find the first invalid event of a stream, if any.

    An event is invalid when ``x``, ``y`` or ``p`` lies outside ``0..width-1``,
    ``0..height-1``, ``0..n_pol-1``, when ``t < t_start``, or when ``t`` is smaller
    than the previous event's (times must be non-decreasing).

    Parameters
    ----------
    xs, ys, ps, ts : ndarray of int64, (E,)
        The events' fields.
    width, height, n_pol : int
        Sensor size ``(W, H, P)``.
    t_start : int
        Start of bin 0.

    Returns
    -------
    (int, int)
        ``(0, -1)`` when every event is valid, else ``(code, index)`` of the first
        invalid event; ``code`` is a key of :data:`CHECK_CODES` (its first failing
        test, in that order).

    Notes
    -----
    The first loop only ORs the tests together, without branching, so that it
    vectorises; the event is located by a second, branching loop only when some
    test failed.
    """
    n = xs.shape[0]
    bad = False
    for e in range(n):
        bad |= ((xs[e] < 0) | (xs[e] >= width) | (ys[e] < 0) | (ys[e] >= height)
                | (ps[e] < 0) | (ps[e] >= n_pol) | (ts[e] < t_start))
    for e in range(1, n):
        bad |= ts[e] < ts[e - 1]
    if not bad:
        return 0, -1
    for e in range(n):
        if xs[e] < 0 or xs[e] >= width:
            return 1, e
        if ys[e] < 0 or ys[e] >= height:
            return 2, e
        if ps[e] < 0 or ps[e] >= n_pol:
            return 3, e
        if ts[e] < t_start:
            return 4, e
        if e > 0 and ts[e] < ts[e - 1]:
            return 5, e
    return 0, -1  # not reached


@jit_serial
def bucket_stream(xs, ys, ps, ts, n_keep, t_start, time_window, width, height, n_pol,
                  binary, last, offsets, u_row, u_y, u_c, u_v, ev_y, ev_c, ev_v):
    """Bin the first ``n_keep`` events, merge repeats, and bucket them as CSR.

    Parameters
    ----------
    xs, ys, ps, ts : ndarray of int64, (E,)
        Events already checked by :func:`check_stream` (inside the sensor, sorted
        by ``t``, ``t >= t_start``, ``t - t_start`` below ``2**63``).
    n_keep : int
        Events to bin: those of bins ``0..N-1`` (a prefix, as ``t`` is sorted).
    t_start, time_window : int
        Bin ``k`` holds ``t_start + k*time_window <= t < t_start + (k+1)*time_window``;
        ``time_window >= 1``.
    width, height, n_pol : int
        Sensor size ``(W, H, P)``.
    binary : bool
        Repeats at one ``(bin, x, y, p)`` count once (value 1); else their number is
        the value.
    last : ndarray of int64, (W * H * P,), zeros
        Scratch: ``last[cell] - 1`` is the unique event last written at ``cell``.
    offsets : ndarray of int64, (N * W + 1,), zeros
        Output: CSR offsets by row ``bin * W + x``.
    u_row, u_v : ndarray of int64, (E,)
        Scratch: row and value of each unique event, in time order.
    u_y, u_c : ndarray of int32, (E,)
        Scratch: its ``y`` and ``p``.
    ev_y, ev_c : ndarray of int32, (E,)
        Output: ``y`` and ``p`` (the channel) of the unique events, grouped by row.
    ev_v : ndarray, (E,), accumulator dtype
        Output: their values (1, or the count).

    Returns
    -------
    (int, int)
        Number of unique events (the filled length of ``ev_*``) and their largest
        value (0 when there are none).

    Notes
    -----
    One pass over the events: since ``t`` is sorted, each bin is a run of
    consecutive events; ``first`` is the index of the run's first unique event, so
    a cell whose last unique event has an index ``>= first`` was already seen in
    this bin (no per-bin reset of ``last``). Then a prefix sum over ``offsets`` and
    a counting-sort placement, as :func:`lavaconv.kernels.events.bucket_events`.
    """
    n_unique = 0
    first = 0
    cur_bin = -1
    for e in range(n_keep):
        b = (ts[e] - t_start) // time_window
        if b != cur_bin:
            cur_bin = b
            first = n_unique
        x = xs[e]
        y = ys[e]
        c = ps[e]
        cell = (x * height + y) * n_pol + c
        seen = last[cell] - 1
        if seen >= first:  # repeat within this bin
            if not binary:
                u_v[seen] += 1
            continue
        last[cell] = n_unique + 1
        row = b * width + x
        u_row[n_unique] = row
        u_y[n_unique] = y
        u_c[n_unique] = c
        u_v[n_unique] = 1
        offsets[row + 1] += 1
        n_unique += 1
    for r in range(1, offsets.shape[0]):
        offsets[r] += offsets[r - 1]
    cursor = offsets[:-1].copy()
    max_v = 0
    for u in range(n_unique):
        r = u_row[u]
        q = cursor[r]
        cursor[r] = q + 1
        ev_y[q] = u_y[u]
        ev_c[q] = u_c[u]
        v = u_v[u]
        ev_v[q] = v
        max_v = max(max_v, v)
    return n_unique, max_v
