"""warmup() compiles every kernel of lavaconv.kernels (STYLE 8)."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

import pytest

import lavaconv
from lavaconv import kernels


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1",
                    reason="kernels are plain Python with the JIT disabled")
def test_warmup_compiles_every_kernel():
    from numba.core.registry import CPUDispatcher

    lavaconv.warmup()
    missing = []
    from lavaconv.engine import VNNI

    # (the VNNI kernel exists only for hosts with AVX512-VNNI: warmed there)
    modules = [m.name for m in pkgutil.iter_modules(kernels.__path__)
               if m.name != "_config" and (VNNI or m.name != "vnni")]
    assert "events" in modules and "dense" in modules
    for modname in modules:
        module = importlib.import_module(f"lavaconv.kernels.{modname}")
        for name, obj in inspect.getmembers(module):
            # private helpers (``_dot1``, ...) are compiled into their callers, and a
            # caller loaded from the cache never compiles them on their own
            if (isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__
                    and not name.startswith("_")):
                if not obj.signatures:
                    missing.append(f"{modname}.{name}")
    assert not missing, f"warmup() does not compile: {missing}"


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1",
                    reason="kernels are plain Python with the JIT disabled")
def test_dense_kernels_read_few_input_dtypes():
    """Every input dtype reaches the dense cast kernels as bool, uint8, int8, int16 or the
    accumulator's dtype (lavaconv.dtypes.kernel_input), and gives the exact result.
    """
    import numpy as np
    from lavaconv.kernels import dense
    from reference import conv_reference

    from lavaconv.engine import ConvEngine
    from lavaconv.geometry import validate_geometry

    as_is = {np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16)}
    rng = np.random.default_rng()
    # plain (dot on gathered rows), few channels (planes), dot on the padded input,
    # depthwise with sy == 1 (unpadded) and sy == 2 (padded)
    layers = [((5, 6, 8), (4, 3, 3, 8), 1, 1), ((5, 6, 2), (4, 3, 3, 2), 1, 1),
              ((5, 6, 48), (4, 3, 3, 48), 1, 1), ((5, 6, 4), (4, 3, 3, 1), 4, 1),
              ((5, 6, 4), (4, 3, 3, 1), 4, 2)]
    for shape, wshape, groups, sy in layers:
        w = rng.integers(-5, 6, size=wshape).astype(np.int8)
        engine = ConvEngine(w, validate_geometry(shape, wshape, (1, sy), 1, 1, groups))
        for dt in (np.bool_, np.uint8, np.uint16, np.int32, np.int64, np.uint32,
                   np.float32, np.float64):
            x = rng.integers(0, 2 if dt == np.bool_ else 100, size=shape).astype(dt)
            got = engine.exact(x[None], 100, path="dense", out_dtype=np.int64)[0]
            want = conv_reference(x.astype(np.int64), w.astype(np.int64), (1, sy), (1, 1),
                                  (1, 1), groups)
            np.testing.assert_array_equal(got, want, err_msg=f"{dt.__name__} {shape}")
            if dt in (np.uint32, np.int32, np.float64):  # a bound beyond float64: int64
                got = engine.exact(x[None], 2**50, path="dense", out_dtype=np.int64)[0]
                np.testing.assert_array_equal(got, want, err_msg=f"int64 {dt.__name__}")
    for kernel in (dense.pad_cast, dense.rows_cast, dense.planes_cast,
                   dense.conv_dense_depthwise_direct):
        # (frames, the accumulator's scratch or weights, ...): frames in as_is or acc
        pairs = {(np.dtype(str(sig[0].dtype)), np.dtype(str(sig[1].dtype)))
                 for sig in kernel.signatures}
        bad = sorted(f"{a}->{b}" for a, b in pairs if a not in as_is and a != b)
        assert not bad, f"{kernel.__name__} compiled for {bad}"
