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
    modules = [m.name for m in pkgutil.iter_modules(kernels.__path__) if m.name != "_config"]
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
