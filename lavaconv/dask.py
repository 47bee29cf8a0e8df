"""Scale-out on Dask: one Conv model over a whole dataset of independent samples.

:func:`run` turns a dataset ``(N, X, Y, C, T)`` (a dask or NumPy array chunked along
``N``) into a lazy dask array ``(N, X_out, Y_out, C_out, T)``: one task per chunk of
samples, each sample run from a reset state by the chosen model, exactly as
``model.run`` would run it alone. It works on Dask's default (threaded) scheduler,
the synchronous one, and ``dask.distributed`` clusters with thread or process
workers.

What crosses to the workers
---------------------------
The graph holds one key with a small model *spec*: the :class:`~lavaconv.Conv`
(its weights and parameters), the model class and its options, and a token (a
hash of them). Every task refers to that key, so a process worker receives the
spec once, not once per task. The first task on a worker builds the model from
it (weights quantised, the prepared layer built) and keeps it in a per-process
cache keyed by the token; every task then runs a shallow copy of that model,
reset (the prepared layer is shared and thread-safe; each copy has its own
state). In the calling process the model built while validating the arguments
is put in that cache, so the threaded scheduler builds nothing more.

Numba threads (no oversubscription)
-----------------------------------
Dask runs one task per Dask thread at once, and each task's kernels would
otherwise start :func:`lavaconv.get_num_threads` threads of their own. The rule,
applied around each task with :func:`lavaconv.set_num_threads` (process-wide;
set while some task of :func:`run` runs in the process, the previous value
restored when the last one ends):

* ``threads_per_task=n`` given: ``n`` threads per task (at most the process's
  ``NUMBA_NUM_THREADS``);
* in a ``dask.distributed`` worker: one thread per task, so a worker started with
  ``nthreads=k`` runs ``k`` tasks on ``k`` threads, the cores Dask gave it;
* on the threaded scheduler (a pool of ``k = dask.config "num_workers"``, default
  the CPU count, threads): ``max(1, lavaconv.get_num_threads() // k)`` per task;
* on the synchronous scheduler (tasks in the main thread, one at a time): the
  process's setting, unchanged.

Tasks that overlap in one process share one setting: the first to start sets
it. To give each task of a many-core worker several threads, start the worker
with fewer Dask threads (``dask worker --nthreads 1``) and pass
``threads_per_task``.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.system import CPU_COUNT
    from dask.utils import parse_bytes
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lavaconv.dask needs Dask: pip install 'lavaconv[dask]' (dask[array] and "
        "distributed)."
    ) from err

from . import _threads
from .models import PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat, _PyConvModel
from .process import Conv

__all__ = ["MODELS", "run"]

#: The model tags :func:`run` accepts (Lava's run-config tags) and their classes.
MODELS: dict[str, type[_PyConvModel]] = {
    cls.tag: cls for cls in (PyConvModelFloat, PyConvModelFixed, PyConvModelBitAcc)
}

#: Per-process cache of built models, keyed by the spec token (most recent last).
_TEMPLATES: OrderedDict[str, _PyConvModel] = OrderedDict()
_TEMPLATES_LOCK = threading.Lock()
_TEMPLATES_MAX = 16
#: How many models this process built from specs, per token (read by the tests).
_BUILDS: dict[str, int] = {}


class _ModelSpec:
    """What a worker needs to build the model: Conv, class, options and their token.

    Pickles as exactly these four (the Conv is its weights and a few ints); the
    built model never crosses processes.
    """

    __slots__ = ("conv", "cls", "kwargs", "token")

    def __init__(self, conv: Conv, cls: type[_PyConvModel], kwargs: dict[str, Any],
                 token: str) -> None:
        self.conv = conv
        self.cls = cls
        self.kwargs = kwargs
        self.token = token

    def __reduce__(self):
        return (_ModelSpec, (self.conv, self.cls, self.kwargs, self.token))

    def __repr__(self) -> str:
        return f"_ModelSpec({self.cls.__name__}, token={self.token!r})"

    def template(self) -> _PyConvModel:
        """Return the model for this spec in this process: built on first use, then cached."""
        model = _TEMPLATES.get(self.token)
        if model is not None:
            return model
        with _TEMPLATES_LOCK:
            model = _TEMPLATES.get(self.token)
            if model is None:
                model = self.cls(self.conv, **self.kwargs)
                _BUILDS[self.token] = _BUILDS.get(self.token, 0) + 1
                _remember(self.token, model)
        return model


def _remember(token: str, model: _PyConvModel) -> None:
    """Put ``model`` in the per-process cache (caller holds the lock or is alone)."""
    _TEMPLATES[token] = model
    _TEMPLATES.move_to_end(token)
    while len(_TEMPLATES) > _TEMPLATES_MAX:
        _TEMPLATES.popitem(last=False)


# -- Numba threads per task ----------------------------------------------------------
_THREADS_LOCK = threading.Lock()
_THREADS_STATE: dict[str, Any] = {"users": 0, "saved": None}


def _in_distributed_worker() -> bool:
    """Whether the calling thread runs a task of a ``dask.distributed`` worker."""
    if sys.modules.get("distributed") is None:  # a worker process always has it imported
        return False
    try:
        from distributed import get_worker
    except ImportError:
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


def _task_threads(requested: int | None, budget: int) -> int | None:
    """Numba threads for one task (module docstring); ``None``: leave the setting."""
    pool = int(numba.config.NUMBA_NUM_THREADS)
    if requested is not None:
        return min(requested, pool)
    if _in_distributed_worker():
        return 1
    if threading.current_thread() is threading.main_thread():
        return None  # synchronous scheduler: one task at a time
    concurrent = dask.config.get("num_workers", None) or CPU_COUNT
    return max(1, min(budget, pool) // int(concurrent))


@contextmanager
def _kernel_threads(requested: int | None) -> Iterator[None]:
    """Apply the thread rule while the body runs; restore after the last overlapping task."""
    state = _THREADS_STATE
    with _THREADS_LOCK:
        if state["users"] == 0:
            saved = _threads.get_num_threads()
            n = _task_threads(requested, saved)
            state["saved"] = saved
            if n is not None and n != saved:
                _threads.set_num_threads(n)
        state["users"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            state["users"] -= 1
            if state["users"] == 0:
                if _threads.get_num_threads() != state["saved"]:
                    _threads.set_num_threads(state["saved"])
                state["saved"] = None


# -- the task ------------------------------------------------------------------------
def _run_block(block: np.ndarray, spec: _ModelSpec, threads: int | None) -> np.ndarray:
    """One task: the samples of ``block`` ``(n, X, Y, C, T)``, each from a reset state."""
    template = spec.template()
    n, t = block.shape[0], block.shape[-1]
    if n == 0 or t == 0:
        return np.zeros((n,) + template.geometry.output_shape + (t,), template.out_dtype)
    model = copy.copy(template)  # shares the prepared layer; gets its own state:
    model.reset()
    with _kernel_threads(threads):
        return model.run(block)


# -- validation ----------------------------------------------------------------------
def _model_class(model: Any) -> type[_PyConvModel]:
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(
                f"model must be one of {', '.join(map(repr, MODELS))} or a model class "
                f"from lavaconv.models, got model={model!r}."
            )
        return MODELS[model]
    if isinstance(model, type) and issubclass(model, _PyConvModel):
        return model
    raise ValueError(
        f"model must be a tag ({', '.join(map(repr, MODELS))}) or a model class such as "
        f"lavaconv.PyConvModelBitAcc (the class, not an instance), got model={model!r}."
    )


def _build(cls: type[_PyConvModel], conv: Conv, kwargs: dict[str, Any]) -> _PyConvModel:
    """Build the model once, here, so that bad options fail now and not on a worker."""
    try:
        return cls(conv, **kwargs)
    except TypeError as err:
        raise ValueError(
            f"model_kwargs {sorted(kwargs)} do not fit {cls.__name__}(conv, ...): {err}. "
            f"Pass only the options its constructor takes."
        ) from err
    except ValueError as err:
        raise ValueError(f"{cls.__name__}(conv, **model_kwargs) refused its options: "
                         f"{err}") from err


def _check_threads(threads_per_task: Any) -> int | None:
    if threads_per_task is None:
        return None
    if (isinstance(threads_per_task, (bool, np.bool_))
            or not isinstance(threads_per_task, (int, np.integer)) or threads_per_task < 1):
        raise ValueError(
            f"threads_per_task must be None (the rule in lavaconv.dask's docstring) or an "
            f"int >= 1, got threads_per_task={threads_per_task!r}."
        )
    return int(threads_per_task)


def _check_shape(shape: tuple, dtype: np.dtype, conv: Conv) -> None:
    expected = "(N,) + " + str(conv.input_shape) + " + (T,)"
    if len(shape) != 5:
        raise ValueError(
            f"data must be 5-D (N, X, Y, C, T): samples first, time last, of shape "
            f"{expected}; got data.shape={shape}. Add a leading axis for one sample "
            f"(data[None])."
        )
    if tuple(shape[1:4]) != conv.input_shape:
        raise ValueError(
            f"data must have shape {expected} for this Conv, got data.shape={shape}."
        )
    if any(isinstance(s, float) and math.isnan(s) for s in shape[1:]):
        raise ValueError(f"data must have a known number of time steps, got data.shape="
                         f"{shape}; call data.compute_chunk_sizes() first.")
    if dtype.kind not in "biuf":
        raise ValueError(
            f"data must be bool, integer or float spikes, got dtype {dtype}."
        )


def _default_chunk(n: int, sample_bytes: int) -> int:
    """Choose the samples per chunk of a NumPy input.

    About Dask's ``array.chunk-size`` of input plus output per chunk, at least as
    many chunks as CPUs (up to ``n``), all chunks within one sample of each other.
    """
    if n <= 1:
        return max(n, 1)
    target = parse_bytes(dask.config.get("array.chunk-size"))
    most = max(1, target // max(1, sample_bytes))
    parts = max(math.ceil(n / most), min(n, CPU_COUNT))
    return math.ceil(n / parts)


def _spec_token(conv: Conv, cls: type[_PyConvModel], kwargs: dict[str, Any]) -> str:
    """Hash everything the model depends on (not the Conv's name)."""
    return tokenize(
        cls.__module__, cls.__qualname__, id(cls), np.ascontiguousarray(conv.weight.init),
        conv.geometry, conv.weight_exp.init, conv.num_weight_bits.init,
        conv.num_message_bits.init, sorted(kwargs.items(), key=lambda kv: kv[0]))


# -- the entry point -----------------------------------------------------------------
def run(conv: Conv, data: Any, model: str | type[_PyConvModel] = "fixed_pt", *,
        threads_per_task: int | None = None, **model_kwargs: Any) -> da.Array:
    """Run ``conv`` over ``N`` independent samples, lazily, one Dask task per chunk.

    Each sample starts from a reset state (``a_buf`` zeros), so
    ``run(conv, data, model)[i]`` equals ``Model(conv, **model_kwargs).run(data[i])``
    on a fresh model: the same values and dtype (exactly, for the integer models).

    Parameters
    ----------
    conv : lavaconv.Conv
        The process (weights and parameters).
    data : dask.array.Array or array_like, (N, X, Y, C_in, T)
        Samples first, time last; bool, integer or float spikes (as for
        ``model.run``). Its chunks along ``N`` are kept; chunks along the other
        axes are merged, so that each task holds whole samples. A NumPy array is
        wrapped with chunks along ``N`` of about Dask's ``array.chunk-size`` of
        input plus output each, and at least as many chunks as CPUs; pass a
        dask array (``dask.array.from_array(x, chunks=(k, -1, -1, -1, -1))``) to
        choose.
    model : {"floating_pt", "fixed_pt", "bit_accurate_loihi"} or model class, optional
        Lava's tag (default ``"fixed_pt"``) or a class such as
        :class:`lavaconv.PyConvModelBitAcc` (a subclass of the lavaconv models).
    threads_per_task : int, optional
        Numba threads each task uses; by default the rule of the module docstring
        (one per task on ``dask.distributed`` workers, the process's count shared
        among the threaded scheduler's threads).
    **model_kwargs
        Options of the model class, e.g. ``num_accum_bits=16,
        accumulator_overflow="saturate"`` for ``PyConvModelBitAcc``.

    Returns
    -------
    dask.array.Array, (N, X_out, Y_out, C_out, T)
        Lazy; chunked like ``data`` along ``N`` and whole along the other axes; of
        the model's dtype (float64 for ``floating_pt``, int32 otherwise).
        ``out[i, ..., 0]`` is zeros and ``out[i, ..., t]`` the result of
        ``data[i, ..., t - 1]`` (Lava's one-step delay).

    Raises
    ------
    ValueError
        Now, before any work: ``conv`` not a :class:`lavaconv.Conv`, an unknown
        model, options the model refuses, ``data`` not 5-D or of the wrong sample
        shape or dtype, a bad ``threads_per_task``. Values (NaN, out-of-range graded
        payloads) are checked by the tasks, so such a ``ValueError`` comes from
        ``compute()``.

    Notes
    -----
    The graph holds the model spec (Conv, class, options) once; each worker
    process builds the model on its first task and reuses it (module docstring).
    Results are recomputed by Dask if a worker is lost.

    Examples
    --------
    >>> import dask.array as da
    >>> from lavaconv.dask import run
    >>> x = da.random.random((1000, 34, 34, 2, 100), chunks=(50, -1, -1, -1, -1)) < 0.05
    >>> out = run(conv, x, "fixed_pt")          # lazy (1000, 30, 30, 12, 100) int32
    >>> counts = out.sum(axis=-1).compute()     # on any Dask scheduler

    """
    if not isinstance(conv, Conv):
        raise ValueError(
            f"conv must be a lavaconv.Conv, got {type(conv).__name__}; build one with "
            f"lavaconv.Conv(weight=..., input_shape=...)."
        )
    cls = _model_class(model)
    threads = _check_threads(threads_per_task)
    kwargs = dict(model_kwargs)
    template = _build(cls, conv, kwargs)
    g = conv.geometry
    out_dtype = np.dtype(template.out_dtype)

    if isinstance(data, da.Array):
        x = data
        _check_shape(x.shape, x.dtype, conv)
    elif dask.is_dask_collection(data):
        raise ValueError(
            f"data must be a dask.array.Array or a NumPy array, got a "
            f"{type(data).__name__} dask collection; convert it with dask.array "
            f"(e.g. dask.array.from_delayed)."
        )
    else:
        arr = np.asarray(data)
        _check_shape(arr.shape, arr.dtype, conv)
        per_sample = (arr[:1].nbytes
                      + out_dtype.itemsize * int(np.prod(g.output_shape)) * arr.shape[4])
        chunk = _default_chunk(arr.shape[0], per_sample)
        x = da.from_array(arr, chunks=(chunk, -1, -1, -1, -1))
    if any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({1: -1, 2: -1, 3: -1, 4: -1})

    token = _spec_token(conv, cls, kwargs)
    spec = _ModelSpec(conv, cls, kwargs, token)
    with _TEMPLATES_LOCK:
        if token not in _TEMPLATES:
            _remember(token, template)
    spec_key = dask.delayed(spec, name=f"lavaconv-model-{token}", pure=True)
    out_chunks = (x.chunks[0],) + tuple((s,) for s in g.output_shape) + (x.chunks[4],)
    return da.map_blocks(
        _run_block, x, spec_key, threads, chunks=out_chunks, dtype=out_dtype,
        meta=np.empty((0,) * 5, out_dtype), token=f"lavaconv-{cls.tag or cls.__name__}",
    )
