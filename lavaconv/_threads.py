"""Thread count and safe parallel launches for the Numba kernels.

Thread count
------------
:func:`set_num_threads` sets the number of threads every parallel kernel uses,
for every Python thread (Numba's own ``numba.set_num_threads`` is thread-local:
a new Python thread would silently fall back to all cores). The default is
Numba's pool size, ``NUMBA_NUM_THREADS`` (all cores unless that variable is set);
the count can never exceed it, because Numba starts its pool once.

Several Python threads at once
------------------------------
Numba runs ``parallel=True`` kernels on a *threading layer*. Numba picks the
first that loads of ``tbb``, ``omp`` and ``workqueue`` (unless
``NUMBA_THREADING_LAYER`` says otherwise). ``tbb`` and ``omp`` (GNU libgomp)
accept parallel launches from several Python threads at once; ``workqueue``, the
fallback that always exists, does not (it can crash or deadlock). Our decision:
keep Numba's choice and serialise parallel launches with one process-wide lock
**only** when the layer turns out to be ``workqueue`` (or is not yet known, i.e.
around the very first launch, which is when Numba loads the layer). Concurrent
callers then queue instead of crashing; each launch still uses all its threads.
Serial kernels never take the lock. Measured on the development machine
(2 cores, libgomp present): the ``omp`` layer is chosen, and no lock is taken.
"""

from __future__ import annotations

import threading

import numba

__all__ = ["get_num_threads", "launch", "set_num_threads", "threading_layer"]

_LOCK = threading.RLock()


def _pool_size() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


#: The thread count (always resolved: the pool size by default) and the threading
#: layer once known.
_STATE: dict = {"threads": _pool_size(), "layer": None}


def set_num_threads(n: int | None) -> None:
    """Set the number of threads of every lavaconv kernel, in every Python thread.

    Parameters
    ----------
    n : int or None
        ``1 <= n <= NUMBA_NUM_THREADS``; ``None`` restores the default
        (``NUMBA_NUM_THREADS``, i.e. all cores unless that variable is set).

    Raises
    ------
    ValueError
        If ``n`` is not an int in that range (set ``NUMBA_NUM_THREADS`` before
        starting Python to allow more).
    """
    if n is None:
        _STATE["threads"] = _pool_size()
        return
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _pool_size():
        raise ValueError(
            f"n must be an int in 1..{_pool_size()} (NUMBA_NUM_THREADS), got n={n!r}; "
            f"set NUMBA_NUM_THREADS before starting Python to allow more threads."
        )
    _STATE["threads"] = int(n)


def get_num_threads() -> int:
    """Return the number of threads lavaconv kernels use (see :func:`set_num_threads`)."""
    return _STATE["threads"]


def threading_layer() -> str | None:
    """Numba's threading layer once a parallel kernel has run, else ``None``."""
    if _STATE["layer"] is None:
        try:
            _STATE["layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel launched yet (or JIT disabled)
            return None
    return _STATE["layer"]


class _Unlocked:
    """A no-op context (cheaper than ``contextlib.nullcontext`` on the hot path)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


class _Locked:
    """Holds the process-wide lock; learns the threading layer on the way out."""

    __slots__ = ()

    def __enter__(self) -> None:
        _LOCK.acquire()

    def __exit__(self, *exc) -> None:
        _LOCK.release()
        threading_layer()


_UNLOCKED = _Unlocked()
_LOCKED = _Locked()
_LOCAL = threading.local()


def launch():
    """Context for calling parallel kernels: thread count applied, lock if needed.

    Sets Numba's (thread-local) thread count for the calling thread to
    :func:`get_num_threads` (only when it changed: the check is an attribute
    lookup), and returns a context that holds the process-wide lock unless the
    threading layer is known to accept concurrent launches (module docstring).
    """
    n = _STATE["threads"]
    if getattr(_LOCAL, "threads", None) != n:
        numba.set_num_threads(n)
        _LOCAL.threads = n
    layer = _STATE["layer"]
    if layer is None:
        layer = threading_layer()
    if layer is not None and layer != "workqueue":
        return _UNLOCKED
    return _LOCKED
