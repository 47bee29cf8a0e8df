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
Serial kernels never take the lock.

Fork
----
Processes forked after a parallel kernel ran (multiprocessing's default start
method on Linux, PyTorch DataLoader workers, Lava's runtime, Dask's process
workers) need a fork-safe layer. GNU OpenMP is not: Numba's ``omp`` layer kills a
forked child at its first parallel launch ("Terminating: fork() called from a
process already using GNU OpenMP, this is unsafe."). ``tbb`` is both fork-safe and
thread-safe, and Numba picks it first whenever the ``tbb`` package is importable,
so lavaconv depends on ``tbb`` (on x86-64, where it has wheels) and leaves Numba's
choice alone: no environment variable to set. Where the layer still turns out to
be GNU OpenMP (no tbb, or ``NUMBA_THREADING_LAYER=omp``), a forked child's first
parallel launch raises a :class:`RuntimeError` that says so and how to fix it,
instead of the process being killed.
"""

from __future__ import annotations

import os
import sys
import threading

import numba

__all__ = ["get_num_threads", "launch", "set_num_threads", "threading_layer"]

_LOCK = threading.RLock()


def _preload_tbb() -> None:
    """Make pip's ``tbb`` visible to Numba inside a virtual environment.

    pip installs ``libtbb.so.12`` into ``<env>/lib``, but Numba loads the library by
    name, which the dynamic loader looks for beside the base interpreter only: in a
    plain venv Numba then falls back to GNU OpenMP (not fork-safe). Loading the
    environment's copy first, globally, lets Numba find it. Done only while Numba
    has not chosen a layer and the user has not named one.
    """
    if os.environ.get("NUMBA_THREADING_LAYER") or not sys.platform.startswith("linux"):
        return
    import ctypes

    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return


_preload_tbb()


def _pool_size() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


#: The thread count (always resolved: the pool size by default), the threading
#: layer once known, the process that first launched a parallel kernel, and whether
#: the next launch must run the fork check (until it has once in this process).
_STATE: dict = {"threads": _pool_size(), "layer": None, "pid": None, "check": True}


def _forked() -> None:
    """In a forked child: check again at the next launch (instead of ``getpid`` at each)."""
    _STATE["check"] = True


if hasattr(os, "register_at_fork"):  # (no fork, and no need, elsewhere)
    os.register_at_fork(after_in_child=_forked)


def _gnu_openmp() -> bool:
    """Whether Numba's ``omp`` layer runs on GNU OpenMP (not fork-safe)."""
    try:
        from numba.np.ufunc import omppool
    except ImportError:
        return False
    return getattr(omppool, "openmp_vendor", "") == "GNU"


def _check_fork(layer: str) -> None:
    """Raise instead of letting GNU OpenMP kill a forked child (module docstring)."""
    pid = os.getpid()
    first = _STATE["pid"]
    if first is None:
        _STATE["pid"] = pid
    elif first != pid and layer == "omp" and _gnu_openmp():
        raise RuntimeError(
            "lavaconv: this process was forked after its parent ran parallel kernels on "
            "Numba's GNU OpenMP threading layer, which would kill it here. Install the "
            "'tbb' package (pip install tbb; Numba then picks its fork-safe TBB layer), or "
            "start child processes with the 'spawn' or 'forkserver' method.")
    _STATE["check"] = False


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
        layer = threading_layer()
        if layer is not None and _STATE["pid"] is None:
            _STATE["pid"] = os.getpid()


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
    if layer is not None:
        if _STATE["check"]:
            _check_fork(layer)
        if layer != "workqueue":
            return _UNLOCKED
    return _LOCKED
