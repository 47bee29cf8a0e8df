"""The house Numba decorators: every kernel in this folder imports them from here.

Flags, and why:

``nogil=True``
    Kernels release the GIL so that several Python threads can run them at once.
``cache=True`` (when a cache location is usable)
    Compiled machine code is written next to the sources (or to ``NUMBA_CACHE_DIR``)
    so a second process skips compilation. When no writable location exists, caching
    is switched off instead of failing at import (see :data:`CACHE`).
``fastmath={"reassoc", "contract"}``
    Lets LLVM reorder and fuse additions so that reductions vectorise. On the exact
    integer path every operand and partial sum is an integer of magnitude below
    ``2**24`` (float32) or ``2**53`` (float64), so any order gives the same exact
    result; on the float path results differ from a fixed-order sum only by rounding.
    ``nnan``/``ninf`` are *not* set: non-finite values are rejected before the kernels,
    and we do not want the compiler to assume it.
``boundscheck``
    Left to Numba's default (off), so ``NUMBA_BOUNDSCHECK=1`` turns it on for a test
    run.
``parallel=True`` (``jit_parallel`` only)
    Kernels use ``prange`` over output rows; each iteration owns the output cells it
    writes, so there are no races.
"""

from __future__ import annotations

import os
import tempfile

import numba

__all__ = ["CACHE", "FASTMATH", "jit_serial", "jit_parallel"]

FASTMATH = frozenset({"reassoc", "contract"})


def _cache_usable() -> bool:
    """Return whether Numba can write its on-disk cache for this folder.

    Numba stores cache files in ``__pycache__`` beside the source, else in
    ``NUMBA_CACHE_DIR``, else in a per-user directory. If the package is installed
    read-only and neither alternative is writable, ``cache=True`` would raise at the
    first compilation; we detect that here and compile without caching instead.
    """
    if os.environ.get("LAVACONV_NO_CACHE", "") not in ("", "0"):
        return False
    candidates = []
    if numba.config.CACHE_DIR:
        candidates.append(numba.config.CACHE_DIR)
    candidates.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__"))
    candidates.append(os.path.join(os.path.expanduser("~"), ".cache", "numba"))
    for path in candidates:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError:
            continue
        return True
    return False


#: Whether kernels are cached on disk (``False`` when no cache folder is writable or
#: ``LAVACONV_NO_CACHE=1``).
CACHE: bool = _cache_usable()

#: Serial kernels: small loops, or kernels called from inside parallel regions.
jit_serial = numba.njit(nogil=True, cache=CACHE, fastmath=set(FASTMATH))

#: Parallel kernels: ``prange`` loops whose iterations own disjoint output regions.
jit_parallel = numba.njit(nogil=True, cache=CACHE, fastmath=set(FASTMATH), parallel=True)
