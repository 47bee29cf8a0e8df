"""Event-driven convolution from index arrays, and the compile warm-up.

Other simulators and event cameras hold spikes as index arrays ``(x, y, c[, value])``
rather than dense frames; :func:`conv_events` convolves them directly, without
building a frame.
"""

from __future__ import annotations

import time

import numpy as np

from .engine import ConvEngine
from .geometry import IntOrPair, validate_geometry

__all__ = ["conv_events", "warmup"]


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
    weight = np.asarray(weight)
    if weight.dtype.kind not in "biuf":
        raise ValueError(f"weight must be integer or float, got dtype {weight.dtype}.")
    if weight.dtype.kind == "f" and not np.isfinite(weight).all():
        raise ValueError("weight contains NaN or infinite values.")
    g = validate_geometry(input_shape, weight.shape, stride, padding, dilation, groups)
    engine = ConvEngine(weight, g)
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
        if min(bound, vmax * engine.weight_l1 * max(n_ev, 1)) >= 2**63:
            raise OverflowError(
                f"the exact sum may reach {bound} >= 2**63; reduce the magnitudes.")
    events = engine.events_from_indices(x, y, c, value, dtype)
    return engine.scatter(events, dtype)[0]


def warmup() -> float:
    """Compile (or load from the cache) the kernel signatures of the common calls.

    Runs tiny problems through every public entry point: ``conv`` on each path for
    bool, int8, uint8, int16, uint16, int32, int64, float32 and float64 inputs with
    int8, int32, float32 and float64 weights, on a grouped, two plain and a depthwise
    layer (so every dense kernel), and the event path on rows of an odd number of
    bytes (which it scans entry by entry instead of in 8-byte words); the engine with
    int32 output; ``conv_events``; ``conv_to_sparse``; the accumulators; and
    ``step``/``run`` of the three models with binary and graded input. Other dtypes
    still compile on first use. Call it once at start-up to move the compile cost out
    of the first real call (see README, "Gotchas: compilation, threads, memory").

    Returns
    -------
    float
        Seconds it took.
    """
    from .models import PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat
    from .process import Conv
    from .utils import conv, conv_to_sparse, saturate_to_bits, wrap_to_bits

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    # grouped and plain few-channel layers (channel-plane dense kernel), a plain layer
    # with a 24-entry dot run (dot kernel) and a depthwise one
    layers = [((5, 6, 4), (4, 3, 3, 2), 2), ((5, 6, 4), (4, 3, 3, 4), 1),
              ((5, 6, 8), (4, 3, 3, 8), 1), ((5, 6, 4), (4, 3, 3, 1), 4)]
    in_dtypes = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64,
                 np.float32, np.float64]
    for shape, wshape, groups in layers:
        for wdtype in (np.int8, np.int32, np.float32, np.float64):
            w = rng.integers(-3, 4, size=wshape).astype(wdtype)
            for idt in in_dtypes:
                x = (rng.random(shape) < 0.3).astype(idt)
                for path in ("dense", "events"):
                    conv(x, w, wshape[1:3], 1, 1, 1, groups, path=path)
        engine = ConvEngine(rng.integers(-3, 4, size=wshape).astype(np.int8),
                            validate_geometry(shape, wshape, 1, 1, 1, groups))
        x = (rng.random((1,) + shape) < 0.3).astype(np.int8)
        for path in ("dense", "events"):
            engine.exact(x, path=path, out_dtype=np.int32)
        conv_events(np.array([1]), np.array([2]), np.array([0]), None, shape,
                    rng.integers(-3, 4, size=wshape).astype(np.int8), 1, 1, 1, groups)
        w = rng.integers(-3, 4, size=wshape).astype(np.int8)
        conv_to_sparse(shape, engine.geometry.output_shape, w, 1, 1, 1, groups)
        for bits in (0, 8):
            proc = Conv(weight=w, input_shape=shape, padding=1, groups=groups,
                        num_message_bits=bits)
            data = rng.integers(0, 2 if bits == 0 else 100, size=shape + (3,)).astype(np.int8)
            for model in (PyConvModelFloat(proc), PyConvModelFixed(proc),
                          PyConvModelBitAcc(proc)):
                model.step(data[..., 0])
                model.run(data)
    # rows of an odd number of bytes: the event scan walks entries, not 8-byte words
    odd_shape, odd_wshape = (5, 5, 1), (2, 3, 3, 1)
    w = rng.integers(-3, 4, size=odd_wshape).astype(np.int8)
    engine = ConvEngine(w, validate_geometry(odd_shape, odd_wshape, 1, 1, 1, 1))
    for idt in (np.bool_, np.int8, np.uint8, np.int16):
        x = (rng.random(odd_shape) < 0.3).astype(idt)
        conv(x, w, odd_wshape[1:3], 1, 1, 1, 1, path="events")
        conv(x.astype(np.float32), w.astype(np.float32), odd_wshape[1:3], 1, 1, 1, 1,
             path="events")
        engine.exact(x[None], path="events", out_dtype=np.int32)
    for fn in (wrap_to_bits, saturate_to_bits):
        fn(np.arange(4, dtype=np.int64), 8)
        fn(np.arange(4, dtype=np.int32), 8)
    return time.perf_counter() - t0
