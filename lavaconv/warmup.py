"""The compile warm-up: every kernel kind compiled (or loaded from the cache) up front.

See README, "Gotchas: compilation, threads, memory".
"""

from __future__ import annotations

import time

import numpy as np

from .engine import ConvEngine, prepare
from .geometry import validate_geometry
from .indexed import conv_events
from .kernels import compare as _compare
from .stream import conv_event_stream

__all__ = ["warmup"]


def warmup() -> float:
    """Compile (or load from the cache) the kernel signatures of the common calls.

    Runs tiny problems through every public entry point: ``conv`` on each path for
    bool, int8, uint8, int16, uint16, int32, int64, float32 and float64 inputs with
    int8, int32, float32 and float64 weights, on a grouped, two plain and a depthwise
    layer, and a depthwise one with a Y stride (so every dense kernel, the VNNI ones too
    on a host that has it), and the event
    path on rows of an odd number of bytes (which it scans entry by entry instead of in
    8-byte words); the engine with
    int32 output; ``conv_events``; ``conv_to_sparse``; the accumulators; and
    ``step``/``run`` of the three models with binary and graded input (int8, and
    for ``run`` also Lava's int32), and ``run`` on
    sparse time-last input (the in-place time-last scatter); ``conv_event_stream``;
    the prepared-layer cache's content check for 1-, 2-, 4- and 8-byte weights, and
    the spike rule's 0/1 test for 1- to 8-byte integers. A
    test checks that every kernel of :mod:`lavaconv.kernels` is compiled by it. Other dtypes
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
    # with a 24-entry kernel-row run (dot kernel on gathered rows), a grouped one with
    # 16 channels per group (dot kernel on the padded input) and a depthwise one
    layers = [((5, 6, 4), (4, 3, 3, 2), 2), ((5, 6, 4), (4, 3, 3, 4), 1),
              ((5, 6, 8), (4, 3, 3, 8), 1), ((5, 6, 32), (4, 3, 3, 16), 2),
              ((5, 6, 4), (4, 3, 3, 1), 4)]
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
                model.step(data[..., 0])  # a strided frame: the message copy
                model.step(np.ascontiguousarray(data[..., 1]))  # read in place
                model.run(data)
                if bits:  # Lava's int32 payloads, copied into int8 frames
                    model.run(data.astype(np.int32))
    # depthwise with sy > 1: the padded depthwise kernel for float32 input (with sy == 1
    # the unpadded one; int8 input runs on the depthwise VNNI kernel where the host has it)
    wshape = (4, 3, 3, 1)
    engine = ConvEngine(rng.integers(-3, 4, size=wshape).astype(np.int8),
                        validate_geometry((5, 6, 4), wshape, (1, 2), 1, 1, 4))
    for idt in (np.int8, np.float32):
        engine.exact(rng.integers(0, 3, size=(1, 5, 6, 4)).astype(idt), 2, path="dense",
                     out_dtype=np.int32)
    # run() on sparse, C-contiguous time-last input: the in-place time-last scatter
    proc = Conv(weight=rng.integers(-3, 4, size=(4, 3, 3, 4)).astype(np.int8),
                input_shape=(6, 5, 4), padding=1)
    for idt in (np.bool_, np.int8, np.float32, np.float64):
        sparse = np.zeros((6, 5, 4, 4), idt)
        sparse[1, 2, 3, 1] = 1
        for model in (PyConvModelFloat(proc), PyConvModelFixed(proc), PyConvModelBitAcc(proc)):
            model.run(sparse)
            model.run(sparse[None])
    # event-camera streams (check, bin, scatter)
    ev = np.zeros(2, [("x", np.int64), ("y", np.int64), ("p", np.int64), ("t", np.int64)])
    ev["x"], ev["t"] = [1, 2], [0, 3]
    for wdtype in (np.int8, np.float32, np.float64):
        for binary in (True, False):
            conv_event_stream(ev, (5, 6, 4), rng.integers(-3, 4, (4, 3, 3, 4)).astype(wdtype),
                              time_window=2, binary=binary)
    # the prepared-layer cache's content check, for every weight item size
    for wdtype in (np.int8, np.int16, np.int32, np.int64):
        w = rng.integers(-3, 4, size=(2, 1, 1, 1)).astype(wdtype)
        geo = validate_geometry((2, 2, 1), w.shape)
        prepare(w, geo)
        prepare(w, geo)
    # the binary spike rule's test for frames already holding only 0 and 1
    for udtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        _compare.zero_one(np.zeros(2, udtype))
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
