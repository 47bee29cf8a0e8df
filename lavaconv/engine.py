"""The convolution engine: weights prepared once, kernel chosen once, exact sums.

:class:`ConvEngine` is what :func:`lavaconv.utils.conv` and the process models call.
It owns the weights re-laid-out for the kernels (per accumulator dtype, prepared
on first use and kept), pads and casts input frames, and runs a kernel from
:mod:`lavaconv.kernels`.

Exact integer sums
------------------
For integer weights and integer (or bool) inputs the engine returns the exact sum
of products as ``int64``. It computes it in the cheapest type that is provably
exact for this call: with ``B = max|x| * max_k sum|W[k]|`` (a bound on every
partial sum and every product),

* ``B < 2**24``: float32 (every integer of magnitude below ``2**24`` is a float32,
  so no operation rounds) — the binary and 7-bit graded workloads land here, and
  float32 runs twice the SIMD lanes of float64;
* ``B < 2**53``: float64, by the same argument;
* ``B < 2**63``: int64 arithmetic;
* otherwise an ``OverflowError`` (never a silent wrap).

The event-driven path scatters into an integer accumulator (int64, or int32 when
the caller asks for int32 output and the bound is below ``2**31``): integer
addition is exact in any order, so it is bit-identical to the dense path.

Two paths
---------
``path="dense"`` runs the gather kernels of :mod:`lavaconv.kernels.dense` (cost
independent of the input); ``path="events"`` the scatter kernels of
:mod:`lavaconv.kernels.events` (cost proportional to the number of events times
the fan-out, plus one scan of the input and zeroing the output); ``path="auto"``
(the default) estimates the event count from a sample of input rows
(:meth:`ConvEngine.estimate_events`) and picks the path a cost model predicts to
be faster for this layer (:meth:`ConvEngine.predict_seconds`); the crossover
density differs by layer (:meth:`ConvEngine.crossover_density`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
from collections import OrderedDict

import numba
import numpy as np

from . import _threads
from .dtypes import (
    F32_EXACT,
    INT32_LIMIT,
    INT64_LIMIT,
    check_array,
    dtype_bound,
    exact_accumulator,
    kernel_input,
    kernel_reads,
    max_abs,
)
from .geometry import Geometry, _plain, geometry_for
from .kernels import compare as _compare
from .kernels import dense as _dense
from .kernels import events as _events
from .kernels import layout as _layout
from .kernels import vnni as _vnni

__all__ = ["ConvEngine", "PATHS", "clear_cache", "empty", "prepare"]

#: Accepted values of ``path=``.
PATHS = ("auto", "dense", "events")

# Cost model of the two paths, in seconds. It follows the loop structure of each
# kernel, with constants fitted on the development machine (AMD EPYC, 2 cores,
# AVX-512, 2 threads, int32 output, float32 dense accumulator). Only the *ratio* of
# the two predictions matters (it picks the path); near the crossover both paths
# take about the same time, so a small error costs little.
# Dense, fitted against (measured ms): vgg 1.54, mid 1.5, dil_grp 0.42, dvs128
# 0.32, nmnist 0.057, depthwise 0.186 (0.14 with the unpadded kernel, no pad/cast
# terms). Events: a weighted least-squares fit to the event path of all six
# workloads at densities 0-30 % (42 cases, one interleaved run); 38 predictions
# lie within 0.88-1.12x of the measurement, all within 0.72-1.16x.
_COST = {
    # dense: fixed call overhead, pad/cast per input element, cast per output element
    "dense_fixed": 1.0e-5,
    "dense_per_in": 5.0e-11,
    "dense_per_out": 1.0e-10,
    # dense dot kernel: per (2 pixels x 4 channels) block iteration, plus per 16-lane
    # vector iteration of its inner loop (runs >= 16) or per element (shorter runs,
    # which stay scalar)
    "dot_iter": 4.0e-9,
    "dot_vector": 1.4e-9,
    "dot_scalar": 3.5e-10,
    # the VNNI dot kernel (kernels/vnni.py): per 64-byte vector of a padded run, per
    # (2 pixels x 4 channels) block and tap row, beside dot_iter per block; fitted on
    # this session's Intel Xeon to mid (0.49 ms) and vgg (0.76 ms) graded, one run
    # while another job shared the machine (both fits gave 1.85-1.95e-9)
    "vnni_vector": 1.9e-9,
    # the depthwise VNNI kernel: per packed uint32 entry (4 column taps of one channel),
    # per (cell of 16 channels, kernel row, tap group) vpdpbusd; least squares over
    # seven depthwise layers (3x3 to 7x7, 14x14x512 to 112x112x32, strides 1 and 2),
    # int8 input, 2 threads, this session's AMD EPYC (Zen 4), one noisy run
    "vnni_pack": 1.5e-10,
    "vnni_dw_tap": 4.9e-10,
    # depthwise kernel: per (output pixel, tap, 16 channels) vector
    "dw_vector": 5.5e-10,
    # channel-plane kernel (few input channels; fitted to dvs128 0.183 and nmnist
    # 0.058 ms): building the planes per input element, per pass over a plane (output
    # row x tap x input channel x block of 4 output channels), per 16-lane vector
    # of one output channel's run
    "planes_per_in": 6.0e-10,
    "planes_pass": 9.1e-9,
    "planes_vector": 1.17e-10,
    # events: fixed overhead (launch), zeroing per output byte, scanning per input
    # element, per event (finding it, testing its taps), per (event, tap) pair, and
    # per 64-byte vector / per leftover element of the pair's Kg adds
    "events_fixed": 5.3e-6,
    "zero_per_byte": 8.1e-12,
    "scan_per_in": 1.75e-11,
    "per_event": 4.0e-9,
    "per_pair": 2.2e-9,
    "per_vector": 5.6e-10,
    "per_scalar": 1.3e-11,
}
_INT_DTYPES = {np.dtype(np.int32): INT32_LIMIT, np.dtype(np.int64): INT64_LIMIT}
#: Working set of one chunk of frames in :meth:`ConvEngine.dense` (input copies and
#: accumulator; bytes). Measured per frame, 20 graded int8 frames against a single
#: frame (one process, interleaved): the whole stack in one call cost mid 1.19x,
#: depthwise 1.66x, dil_grp 1.42x (int32 frames: 3.64x, 1.52x), in 1 MiB chunks
#: 1.08x, 1.38x, 1.16x (2.52x, 1.08x); nmnist, dvs128 and vgg within 0.1 either way.
_DENSE_CHUNK_BYTES = 2**20
#: Scratch buffers up to this size are kept between calls (per engine and thread).
#: Measured: with two large temporaries alive at once (padded input and output)
#: glibc hands out fresh mmap'd pages every call, and their page faults cost 1.1 ms
#: on the depthwise layer, whose kernel runs in 0.13 ms.
_SCRATCH_MAX_BYTES = 64 * 2**20
#: Output bytes per block of the scatter kernels on multi-frame calls (see
#: :meth:`ConvEngine._blocks`): half of this machine's 512 KiB L2 per core.
_BLOCK_BYTES = 256 * 2**10
#: Kernel-row runs (``KY * C_in``) shorter than this take the gathered-rows dot kernel.
_ROWS_RUN = 128


def _host_has_vnni() -> bool:
    """Whether the kernels compile for this CPU and it has AVX512-VNNI.

    False with the JIT disabled (the VNNI kernel's dot products are emitted as
    machine instructions and have no Python form), when ``NUMBA_CPU_NAME`` or
    ``NUMBA_CPU_FEATURES`` asks for another target (a portable cache), when Numba
    leaves AVX out (``NUMBA_ENABLE_AVX=0``), or when ``LAVACONV_NO_VNNI=1``.
    """
    if numba.config.DISABLE_JIT or os.environ.get("LAVACONV_NO_VNNI", "") not in ("", "0"):
        return False
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        return False
    from numba.core import codegen

    # the features Numba itself targets (it drops every AVX one when NUMBA_ENABLE_AVX is
    # off, also by default on hosts that report a baseline CPU name)
    return "+avx512vnni" in str(codegen.get_host_cpu_features()).split(",")


#: Whether layers use the VNNI dense kernel where it applies (:attr:`ConvEngine.vnni`).
VNNI: bool = _host_has_vnni()
#: Input dtypes the VNNI kernel reads (int8 as ``x XOR 0x80``); binary frames of any
#: integer dtype too (their values are 0 and 1).
_VNNI_READS = frozenset(np.dtype(t) for t in (np.bool_, np.uint8, np.int8))
#: The automatic path choice counts events in evenly spaced input rows holding
#: about this many entries (all rows when the input is smaller).
_SAMPLE_ELEMENTS = 4096
#: Call signatures whose decisions one layer keeps (:meth:`ConvEngine._exact_call`,
#: :meth:`ConvEngine._event_plan`); beyond, they are forgotten all at once.
_MAX_CALLS = 64
#: ``_ExactCall.limit`` of a path fixed by the caller (events: always; dense: never).
_ALWAYS = float("inf")



#: Arrays of at most this many bytes are never refused by :func:`empty` (whatever
#: ``LAVACONV_MAX_BYTES`` says): one frame's result on most layers.
_ALWAYS_BYTES = 1 << 20
_PHYSICAL: list[int] = []  # physical memory in bytes, looked up once


def _memory_limit() -> int:
    """Largest array a call may allocate: ``LAVACONV_MAX_BYTES``, else physical memory.

    Consulted by :func:`empty` for arrays above ``_ALWAYS_BYTES`` (1 MiB) only.
    """
    env = os.environ.get("LAVACONV_MAX_BYTES")
    if env:
        return int(env)
    if not _PHYSICAL:
        try:
            _PHYSICAL.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):  # not on this platform
            _PHYSICAL.append(2**62)
    return _PHYSICAL[0]


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty``, cache-line aligned, refused with a ``ValueError`` beyond physical memory.

    The data starts at a multiple of ``_ALIGN`` bytes; the error names the size.

    Every result, accumulator and scratch buffer of the engine is allocated here, so
    a layer or batch that could never fit is refused before anything is allocated
    (instead of a bare ``MemoryError``, or an overcommitted array that the kernel's
    first write would make the system kill the process for). Arrays of at most
    ``_ALWAYS_BYTES`` (1 MiB) are not checked.
    """
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= int(n)  # Python ints: no overflow
    if nbytes <= _ALWAYS_BYTES:  # (reading the environment costs 1 us a call)
        return _aligned(shape, dtype, nbytes)
    limit = _memory_limit()
    if nbytes > limit:
        raise ValueError(
            f"this call needs an array of shape {tuple(shape)} ({dtype}), {nbytes / 2**30:.1f} "
            f"GiB, more than the {limit / 2**30:.1f} GiB of memory available "
            f"(LAVACONV_MAX_BYTES or physical memory); use fewer frames per call, a smaller "
            f"padding or stride, or path='events'.")
    return _aligned(shape, dtype, nbytes)


#: Byte alignment of every array :func:`empty` returns (results, accumulators, scratch,
#: prepared weights): a cache line. NumPy's own allocations are 16-byte aligned, and
#: glibc places large ones 16 bytes past a page, so each 64-byte vector load or store
#: touched two lines. Measured (Zen 4, AVX-512, 2 threads, one interleaved run each):
#: the scatter of ``mid`` at 1 % 85 -> 68 us and of ``vgg`` at 1 % 123 -> 92 us with its
#: result and weights at a line start instead of 16 bytes past one (0.1 %: 23 -> 21 us);
#: the dense kernels on ``mid`` and ``vgg`` 5-7 % faster with their input copy aligned.
_ALIGN = 64


def _aligned(shape: tuple[int, ...], dtype: np.dtype, nbytes: int) -> np.ndarray:
    """Return an uninitialised C-contiguous array whose data starts at a multiple of ``_ALIGN``.

    A view into a slightly larger uint8 buffer (``base``), 0.75 us more than ``np.empty``.
    """
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    return np.ndarray(shape, dtype, raw, -_layout.address(raw) % _ALIGN)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """Return a C-contiguous copy of ``a`` allocated by :func:`empty` (aligned, size-checked)."""
    out = empty(a.shape, a.dtype)
    out[...] = a
    return out


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got path={path!r}.")
    return path


def _spikes(frames: np.ndarray) -> np.ndarray:
    """Frames under the binary spike rule: ``True`` for every non-zero entry.

    Bool frames, and C-contiguous integer frames whose entries already are all 0 or
    1 (:func:`lavaconv.kernels.compare.zero_one`, one read-only pass), are returned
    as they are: the kernels then compute the same sums from them. Others become a
    bool copy.
    """
    if frames.dtype == np.bool_:
        return frames
    flags = frames.flags
    if (frames.dtype.kind in "iu" and frames.size and flags.c_contiguous and flags.aligned
            and _compare.zero_one(frames.reshape(-1).view(_UNSIGNED[frames.itemsize]))):
        return frames
    return frames != 0


def _tap_table(n_in: int, k: int, s: int, p: int, d: int, n_out: int) -> np.ndarray:
    """``table[v, t]``: output index reached from input index ``v`` by tap ``t``, or -1."""
    t = np.arange(n_in)[:, None] + p - np.arange(k)[None, :] * d
    out = np.where(t % s == 0, t // s, -1)
    out[(out < 0) | (out >= n_out)] = -1
    return np.ascontiguousarray(out, dtype=np.int64)


class Events:
    """Events of a stack of frames, as CSR by input row (see :mod:`lavaconv.kernels.events`).

    Attributes
    ----------
    n_frames : int
    offsets : ndarray of int64, (N * X_in + 1,)
    ys, cs : ndarray of int32, (E,)
    vs : ndarray, (E,), accumulator dtype
    binary : bool
        Every value is 1 (the scatter adds without multiplying).
    """

    __slots__ = ("n_frames", "offsets", "ys", "cs", "vs", "binary")

    def __init__(self, n_frames, offsets, ys, cs, vs, binary):
        self.n_frames = n_frames
        self.offsets = offsets
        self.ys = ys
        self.cs = cs
        self.vs = vs
        self.binary = binary


class _ExactCall:
    """What :meth:`ConvEngine.exact` decides once per call signature (see ``_exact_call``).

    Attributes
    ----------
    limit : float
        ``path="auto"`` scatters while the estimated event count is below it;
        ``_ALWAYS`` for ``path="events"``, ``-_ALWAYS`` for ``path="dense"``.
    events : tuple
        The scatter's :meth:`ConvEngine._event_plan`.
    acc : numpy.dtype
        The dense path's exact accumulator.
    binary : bool
        The scatter applies the binary spike rule.
    """

    __slots__ = ("acc", "binary", "events", "limit", "vnni")

    def __init__(self, limit: float, events: tuple, acc: np.dtype, binary: bool,
                 vnni: bool = False) -> None:
        self.limit, self.events, self.acc, self.binary = limit, events, acc, binary
        self.vnni = vnni

    @property
    def shape(self) -> tuple[int, ...]:
        """The result's shape."""
        return self.events[0]

    @property
    def dtype(self) -> np.dtype:
        """The result's dtype."""
        return self.events[1].dtype


class ConvEngine:
    """Convolution of frames with one fixed weight tensor, dense or event-driven.

    Parameters
    ----------
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Convolution kernel in Lava's layout, already validated against ``geometry``.
    geometry : Geometry
        Validated geometry (see :func:`lavaconv.geometry.validate_geometry`).

    Attributes
    ----------
    crossover : float or None
        Event density (events per input element) below which ``path="auto"`` picks
        the event-driven path. ``None`` (default) uses the cost model
        (:meth:`crossover_density`); set a number to override it for this layer.

    Notes
    -----
    Safe to call from several Python threads at once: weight preparation is
    guarded by a lock, every call allocates its own buffers, and parallel kernel
    launches go through :func:`lavaconv._threads.launch`.
    """

    def __init__(self, weight: np.ndarray, geometry: Geometry) -> None:
        self.geometry = geometry
        # a private copy: the prepared layer must not change when the caller's
        # array does (the cache in :func:`prepare` compares against it)
        weight = np.array(weight, copy=True, order="C")
        weight.flags.writeable = False
        self.weight = weight
        bits = _UNSIGNED.get(weight.itemsize)
        #: The weight's bits as one flat unsigned array (the cache's content check).
        self._weight_bits = weight.reshape(-1).view(bits) if bits is not None else None
        #: Integer weights whose values fit a narrower integer dtype: a copy in it, so
        #: the content check reads fewer bytes (:func:`lavaconv.kernels.compare.same_values`).
        self._weight_narrow = _narrow_copy(weight)
        g = geometry
        #: ``max_k sum |W[k]|``: with ``max|x|`` it bounds every partial sum.
        self.weight_l1: int = 0
        if weight.size:
            l1 = np.abs(weight.reshape(g.out_channels, -1).astype(np.float64)).sum(axis=1)
            # float64 sums of integers below 2**53 are exact; beyond, round up safely.
            self.weight_l1 = int(np.ceil(float(l1.max()) * (1 + 2.0 ** -40)))
        self.depthwise = g.groups == g.in_channels == g.out_channels
        #: The dot kernel's reduction run (``KY * C_in`` merged, else ``Cg``) is shorter
        #: than a 16-lane vector: the dense path uses the channel-plane kernel
        #: (:func:`lavaconv.kernels.dense.conv_dense_planes`) instead.
        run = (g.kernel_size[1] * g.in_channels if g.dilation[1] == 1 and g.groups == 1
               else g.in_per_group)
        self._planes = not self.depthwise and run < 16
        #: Dot kernel over gathered rows (:func:`lavaconv.kernels.dense.rows_cast`): the
        #: whole receptive field of a cell is one contiguous run. Used when the run of
        #: one kernel row is short (``KY * C_in < _ROWS_RUN``), where the per-row
        #: horizontal sums cost most: measured on ``mid`` (run 96) 2.47 -> 2.00 ms, on
        #: ``vgg`` (run 192) no gain (1.86 / 1.90 ms), so not used there.
        self._rows_dot = (not self._planes and not self.depthwise and g.dilation[1] == 1
                          and g.groups == 1 and g.kernel_size[0] > 1
                          and g.kernel_size[1] * g.in_channels < _ROWS_RUN)
        #: The dense kernel this layer runs (decided once, here): ``"planes"``
        #: (few input channels), ``"dot"`` (dot products over contiguous runs),
        #: ``"dot_rows"`` (the same over gathered input rows, one run per cell),
        #: ``"depthwise_direct"`` (depthwise, ``sy == 1``, unpadded input with a float
        #: accumulator, see :meth:`_direct_input`) or ``"depthwise"``.
        self.dense_kind: str = ("planes" if self._planes else
                                "dot_rows" if self._rows_dot else
                                "dot" if not self.depthwise else
                                "depthwise_direct" if g.stride[1] == 1 else "depthwise")
        #: ``(KXr, run, RUNP)`` when exact sums of uint8/int8 input run on the VNNI dot
        #: kernel (:mod:`lavaconv.kernels.vnni`), ``(KX, G, C16)`` when they run on its
        #: depthwise kernel, else None: a dot layer with one merged run per tap row (one
        #: group, ``dy == 1``) or a depthwise layer, integer (or integer-valued float)
        #: weights in -128..127, on a host with AVX512-VNNI (:data:`VNNI`).
        self.vnni: tuple[int, int, int] | None = self._vnni_plan()
        self._crossover: float | None = None
        self._crossover_cache: dict[tuple, float] = {}
        #: Density up to which :meth:`timelast_pays` reads time-last sequences in
        #: place (:data:`TIMELAST_DENSITY`; tests set it to force either path).
        self.timelast_density: float = TIMELAST_DENSITY
        self._n_in = int(np.prod(g.input_shape))
        self._prepared: dict[object, tuple[np.ndarray, ...]] = {}
        self._prepared_events: dict[np.dtype, np.ndarray] = {}
        #: Per call signature: :meth:`_event_plan`'s and :meth:`_exact_call`'s decisions.
        self._event_plans: dict[tuple, tuple] = {}
        self._exact_calls: dict[tuple, _ExactCall] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread scratch buffers (see _scratch)
        self._sample_turn = 0  # moves the rows estimate_events samples
        (kx, ky), (sx, sy), (px, py), (dx, dy) = g.kernel_size, g.stride, g.padding, g.dilation
        x_in, y_in, c_in = g.input_shape
        self._x_in, self._c_in, self._row_len = x_in, c_in, y_in * c_in
        self._out_shape = g.output_shape
        self._xo_of = _tap_table(x_in, kx, sx, px, dx, g.output_shape[0])
        self._yo_of = _tap_table(y_in, ky, sy, py, dy, g.output_shape[1])
        self._koff = np.ascontiguousarray(
            np.arange(c_in) // g.in_per_group * g.out_per_group, dtype=np.int64)
        #: Output cells one event reaches, per input row / column (exact fan-out).
        self._fan_x = (self._xo_of >= 0).sum(axis=1)
        self._fan_y = (self._yo_of >= 0).sum(axis=1)
        #: Mean (event, tap) pairs per event, over uniformly placed events.
        self.mean_taps = float(self._fan_x.mean() * self._fan_y.mean())

    def __reduce__(self):
        """Pickle as ``(weight, geometry)``: rebuilt through :func:`prepare` on unpickling.

        A worker process then holds one prepared layer per distinct layer, whatever
        number of tasks ship it, and no lock or scratch buffer crosses processes.
        """
        return (prepare, (self.weight, self.geometry))

    @property
    def crossover(self) -> float | None:
        """Density below which ``path="auto"`` scatters events; None: the cost model's."""
        return self._crossover

    @crossover.setter
    def crossover(self, value: float | None) -> None:
        if value is not None:
            number = (isinstance(value, (int, float, np.integer, np.floating))
                      and not isinstance(value, (bool, np.bool_)))
            if not number or not 0.0 <= float(value) <= 1.0:  # (NaN fails too)
                raise ValueError(
                    f"crossover must be a number in [0, 1] (events per input entry) or "
                    f"None for the cost model's choice, got {value!r}.")
            value = float(value)
        with self._lock:
            self._crossover = value
            self._exact_calls.clear()  # decisions keyed by the old value: freed

    # -- preparation ---------------------------------------------------------------
    def _vnni_plan(self) -> tuple[int, int, int] | None:
        """Return the VNNI kernel's plan for this layer, or None (:attr:`vnni`).

        ``(KXr, run, RUNP)`` for the dot kernel; on a depthwise layer ``(KX, G, C16)``
        for :func:`lavaconv.kernels.vnni.conv_depthwise_vnni` (``G = ceil(KY / 4)``
        packed tap groups, channels rounded up to 16). Weights must be integers, or
        finite integer-valued floats (the float model's), in -128..127.
        """
        g = self.geometry
        w = self.weight
        if not (VNNI and w.dtype.kind in "iuf" and w.size):
            return None
        if w.dtype.kind == "f" and not (np.isfinite(w).all() and np.array_equal(w, np.trunc(w))):
            return None
        if int(w.min()) < -128 or int(w.max()) > 127:
            return None
        if self.depthwise:
            (kx, ky), c16 = g.kernel_size, -(-g.in_channels // 16) * 16
            n_groups = -(-ky // 4)
            if 255 * 128 * 4 * kx * n_groups >= INT32_LIMIT:  # a lane's sum could overflow
                return None
            return kx, n_groups, c16
        if not (self.dense_kind in ("dot", "dot_rows") and g.groups == 1
                and g.dilation[1] == 1):
            return None
        (kx, ky), c = g.kernel_size, g.in_channels
        kxr, run = (1, kx * ky * c) if self._rows_dot else (kx, ky * c)
        runp = -(-run // 64) * 64
        if 255 * 128 * runp >= INT32_LIMIT:  # an int32 lane of one tap row could overflow
            return None
        return kxr, run, runp

    def _prepare_vnni(self) -> tuple[np.ndarray, ...]:
        """Weights for the VNNI kernel (flat int8, runs padded) and ``128 * sum(W[k])``.

        On a depthwise layer: :meth:`_prepare_vnni_depthwise`.
        """
        prepared = self._prepared.get("vnni")
        if prepared is not None:
            return prepared
        if self.depthwise:
            prepared = self._prepare_vnni_depthwise()
            with self._lock:
                self._prepared["vnni"] = prepared
            return prepared
        kxr, run, runp = self.vnni
        (w,) = self._prepare(np.dtype(np.int8))
        c_out = w.shape[0]
        wu = np.zeros((c_out, kxr, runp), np.int8)
        wu[:, :, :run] = w.reshape(c_out, kxr, run)
        corr = 128 * self.weight.reshape(c_out, -1).astype(np.int64).sum(axis=1)
        prepared = (aligned_copy(wu).reshape(-1), np.ascontiguousarray(corr))
        with self._lock:
            self._prepared["vnni"] = prepared
        return prepared

    def _prepare_vnni_depthwise(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Packed weights and lane start values (int8, other input): depthwise VNNI kernel.

        ``wq[i, g, c]`` holds in byte ``t`` the correlation-ordered weight of tap
        ``(i, 4 g + t)`` of channel ``c`` (``W[c, KX-1-i, KY-1-(4 g + t), 0]``; zero past
        the kernel and the channels); ``init`` per range ``lo..hi-1`` of kernel rows
        inside the input: ``-128`` times their weights' sum (the int8 inputs' ``x XOR
        0x80`` correction), and zeros (bool and uint8 input, read as they are). See
        :mod:`lavaconv.kernels.vnni`.
        """
        kx, n_groups, c16 = self.vnni
        g = self.geometry
        c, ky = g.in_channels, g.kernel_size[1]
        wf = self.weight[:, ::-1, ::-1, 0].astype(np.int8)  # (C, KX, KY), correlation order
        taps = np.zeros((kx, n_groups * 4, c16), np.int8)
        taps[:, :ky, :c] = wf.transpose(1, 2, 0)
        wq = np.ascontiguousarray(taps.reshape(kx, n_groups, 4, c16).transpose(0, 1, 3, 2))
        wq = wq.view(np.int32).reshape(kx, n_groups, c16)  # 4 bytes, little-endian
        rows = np.zeros((kx + 1, c16), np.int64)  # prefix sums over kernel rows
        rows[1:, :c] = np.cumsum(wf.astype(np.int64).sum(axis=2).T, axis=0)
        lo, hi = np.meshgrid(np.arange(kx + 1), np.arange(kx + 1), indexing="ij")
        init = -128 * (rows[hi] - rows[lo]) * (hi > lo)[..., None]
        init = aligned_copy(init.astype(np.int32).reshape(-1))
        return aligned_copy(wq), init, np.zeros_like(init)

    def dense_itemsize(self, frames_dtype: np.dtype, sums_dtype: np.dtype, bound: int = 0,
                       binary: bool = False) -> int:
        """Bytes per accumulator entry of the dense path on such frames (the cost model's).

        1 where the frames run on the VNNI kernels (:meth:`vnni_reads`; float sums only
        in float64, which :meth:`compute` then takes from them); else a float sums
        dtype's own size, or for exact integer sums (:meth:`exact`) that of the exact
        accumulator for inputs bounded by ``bound``. What :meth:`exact`,
        :meth:`compute`, ``run``'s time-last choice and the benchmark price.
        """
        sums_dtype = np.dtype(sums_dtype)
        if (self.vnni_reads(np.dtype(frames_dtype), binary)
                and (sums_dtype.kind != "f" or sums_dtype == np.float64)):
            return 1
        if sums_dtype.kind == "f":
            return sums_dtype.itemsize
        return exact_accumulator(int(bound) * self.weight_l1).itemsize

    def vnni_reads(self, dtype: np.dtype, binary: bool) -> bool:
        """Whether exact sums of frames of ``dtype`` run on the VNNI kernel (dense path)."""
        return self.vnni is not None and (dtype in _VNNI_READS or (binary and dtype.kind in "iub"))

    def _prepare(self, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        prepared = self._prepared.get(dtype)
        if prepared is not None:
            return prepared
        g = self.geometry
        c_out, kx, ky, cg = g.weight_shape
        # correlation order: wf[k, i, j, c] = W[k, KX-1-i, KY-1-j, c]
        wf = np.array(self.weight[:, ::-1, ::-1, :], dtype=dtype, order="C", copy=True)
        if self.depthwise:
            wd = wf[:, :, :, 0].reshape(c_out, kx * ky).T
            if g.stride[1] == 1:
                wd = np.tile(wd, (1, g.output_shape[1]))
            prepared = (aligned_copy(wd),)
        elif self._rows_dot:  # wq[k, 0, (j * KX + i) * Cg + c] = wf[k, i, j, c]
            prepared = (aligned_copy(wf.transpose(0, 2, 1, 3)).reshape(
                c_out, 1, ky * kx * cg),)
        else:
            prepared = (aligned_copy(wf).reshape(c_out, kx, ky * cg),)
        with self._lock:
            self._prepared[dtype] = prepared
        return prepared

    def _prepare_events(self, dtype: np.dtype) -> np.ndarray:
        """Weights as ``we[i, j, c, kl] = W[g*Kg + kl, KX-1-i, KY-1-j, c - g*Cg]``."""
        we = self._prepared_events.get(dtype)
        if we is not None:
            return we
        g = self.geometry
        c_out, kx, ky, cg = g.weight_shape
        kg, groups = g.out_per_group, g.groups
        wf = np.asarray(self.weight[:, ::-1, ::-1, :], dtype=dtype)
        # (groups, Kg, KX, KY, Cg) -> (KX, KY, groups, Cg, Kg) -> (KX, KY, C_in, Kg)
        we = wf.reshape(groups, kg, kx, ky, cg).transpose(2, 3, 0, 4, 1)
        we = aligned_copy(we.reshape(kx, ky, groups * cg, kg))
        with self._lock:
            self._prepared_events[dtype] = we
        return we

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Return a reusable uninitialised buffer, private to the calling thread.

        Kept between calls when it is at most ``_SCRATCH_MAX_BYTES`` (see there why);
        never returned to the caller, so reuse cannot alias a result. A request for
        fewer frames of the same frame shape gets the leading part of the kept buffer
        (C-contiguous, same start), so the last, shorter chunk of :meth:`dense` and a
        single frame after a stack reuse it instead of replacing it.
        """
        buf = getattr(self._local, name, None)
        if (buf is not None and buf.dtype == dtype and buf.ndim == len(shape) > 0
                and buf.shape[1:] == shape[1:] and buf.shape[0] >= shape[0]):
            return buf[:shape[0]]
        buf = empty(shape, dtype)
        if buf.nbytes <= _SCRATCH_MAX_BYTES:
            setattr(self._local, name, buf)
        return buf

    def accumulator_for(self, input_max_abs: int) -> np.dtype:
        """Exact accumulator dtype for integer inputs with ``max|x| <= input_max_abs``."""
        return exact_accumulator(int(input_max_abs) * self.weight_l1)

    # -- cost model ------------------------------------------------------------------
    def predict_seconds(self, n_events: float, n_frames: int = 1, itemsize: int = 8,
                        dense_itemsize: int | None = None) -> tuple[float, float]:
        """Predicted ``(dense, events)`` seconds for ``n_events`` in ``n_frames`` frames.

        Parameters
        ----------
        n_events : float
            Events (non-zero inputs) over all frames.
        n_frames : int
            Frames.
        itemsize : int
            Size in bytes of the event path's accumulator (its output): 4 or 8.
        dense_itemsize : int, optional
            Size of the dense path's accumulator (default ``itemsize``); 1: the VNNI
            kernel on uint8 input (:attr:`vnni`).

        Returns
        -------
        (float, float)
            The model's time of the dense and of the event-driven path (module
            ``_COST``, which says how it was fitted).
        """
        g = self.geometry
        c = _COST
        if dense_itemsize is None:
            dense_itemsize = itemsize
        dwide = 2.0 if dense_itemsize > 4 else 1.0
        (x_out, y_out, c_out), (kx, ky) = g.output_shape, g.kernel_size
        n_out = n_frames * x_out * y_out * c_out
        n_in = n_frames * self._n_in
        dense = c["dense_fixed"] + n_in * c["dense_per_in"] + n_out * c["dense_per_out"]
        if self._planes:
            dense += n_in * (c["planes_per_in"] - c["dense_per_in"])
            planes = n_frames * x_out * kx * ky * g.in_channels
            passes = planes * -(-g.out_per_group // 4)
            vectors = planes * g.out_per_group * -(-y_out // 16)
            dense += passes * c["planes_pass"] + vectors * c["planes_vector"] * dwide
        elif self.depthwise and dense_itemsize == 1 and self.vnni is not None:
            _, n_groups, c16 = self.vnni  # the depthwise VNNI kernel, uint8 input
            x_in = g.input_shape[0]
            packed = n_frames * x_in * n_groups * y_out * c16
            cells = n_frames * x_out * y_out * n_groups * -(-c_out // 16)
            dense += (packed * c["vnni_pack"] + cells * kx * c["vnni_dw_tap"]
                      - n_in * c["dense_per_in"] - n_out * c["dense_per_out"])
        elif self.depthwise:
            vectors = n_frames * x_out * y_out * kx * ky * -(-c_out // 16)
            dense += vectors * c["dw_vector"] * dwide
            if g.stride[1] == 1:  # the unpadded kernel: no padded copy, cast in place
                dense -= n_in * c["dense_per_in"] + n_out * c["dense_per_out"]
        elif dense_itemsize == 1 and self.vnni is not None:  # the VNNI kernel, uint8 input
            kxr, _, runp = self.vnni
            iters = n_frames * x_out * -(-y_out // 2) * -(-c_out // 4) * kxr
            dense += iters * (c["dot_iter"] + c["vnni_vector"] * runp / 64)
        else:
            if self._rows_dot:  # one run over the gathered rows
                nj, run, taps = 1, kx * ky * g.in_channels, 1
            elif g.dilation[1] == 1 and g.groups == 1:
                nj, run, taps = 1, ky * g.in_channels, kx
            else:
                nj, run, taps = ky, g.in_per_group, kx
            iters = (n_frames * x_out * -(-y_out // 2) * g.groups * -(-g.out_per_group // 4)
                     * taps * nj)
            inner = (c["dot_vector"] * run / 16 * dwide if run >= 16
                     else c["dot_scalar"] * run)
            dense += iters * (c["dot_iter"] + inner)
        lanes = 64 // itemsize
        vectors, leftover = divmod(g.out_per_group, lanes)
        per_pair = c["per_pair"] + vectors * c["per_vector"] + leftover * c["per_scalar"]
        events = (c["events_fixed"] + n_out * itemsize * c["zero_per_byte"]
                  + n_in * c["scan_per_in"]
                  + n_events * (c["per_event"] + self.mean_taps * per_pair))
        return dense, events

    def cost_line(self, n_frames: int = 1, itemsize: int = 8,
                  dense_itemsize: int | None = None) -> tuple[float, float, float]:
        """:meth:`predict_seconds` as a line in the event count (both are affine in it).

        Returns
        -------
        (float, float, float)
            The dense path's seconds, the event path's seconds at zero events, and
            its seconds per event, for ``n_frames`` frames.
        """
        dense, events0 = self.predict_seconds(0.0, n_frames, itemsize, dense_itemsize)
        _, events1 = self.predict_seconds(1.0, n_frames, itemsize, dense_itemsize)
        return dense, events0, events1 - events0

    def crossover_density(self, itemsize: int = 8, dense_itemsize: int | None = None) -> float:
        """Density (events per input element) where the two paths' predictions meet.

        Returns the overriding :attr:`crossover` when set. Below this density
        ``path="auto"`` picks the event-driven path.
        """
        if self._crossover is not None:
            return self._crossover
        key = (itemsize, dense_itemsize)
        cached = self._crossover_cache.get(key)
        if cached is not None:
            return cached
        n_in = int(np.prod(self.geometry.input_shape))
        d0, e0 = self.predict_seconds(0.0, 1, itemsize, dense_itemsize)
        d1, e1 = self.predict_seconds(float(n_in), 1, itemsize, dense_itemsize)
        # both predictions are affine in n_events: solve d0 = e0 + (e1 - e0) * rho
        slope = e1 - e0
        if d0 <= e0:
            rho = 0.0
        else:
            rho = float(min(1.0, (d0 - e0) / slope)) if slope > 0 else 1.0
        self._crossover_cache[key] = rho
        return rho

    def choose_path(self, n_events: int, n_frames: int, itemsize: int = 8,
                    dense_itemsize: int | None = None) -> str:
        """``"events"`` when the event density is below :meth:`crossover_density`."""
        n_in = n_frames * self._n_in
        if n_in == 0:
            return "dense"
        rho = self.crossover_density(itemsize, dense_itemsize)
        return "events" if n_events < rho * n_in else "dense"

    # -- events ----------------------------------------------------------------------
    def _turn(self) -> int:
        """Next value of the counter that moves the sampled rows (:meth:`estimate_events`).

        A plain race on the counter between threads only changes which rows are
        sampled.
        """
        self._sample_turn = turn = (self._sample_turn + 1) & 0x3FFFFFFF
        return turn

    @staticmethod
    def _words(rows: np.ndarray) -> np.ndarray:
        """Rows as ``uint64`` words for the event scan when whole and aligned, else ``rows``."""
        if rows.itemsize <= 8 and rows.shape[1] * rows.itemsize % 8 == 0:
            view = rows.view(np.uint64)
            if view.flags.aligned:  # (a misaligned view would compile another kernel)
                return view
        return rows

    def _rows(self, frames: np.ndarray) -> np.ndarray:
        """C-contiguous frames as ``(N * X_in, Y_in * C_in)`` rows, bool viewed as uint8.

        (The dtype the event kernels read, :func:`lavaconv.dtypes.kernel_input`.)
        """
        return kernel_input(np.ascontiguousarray(frames)).reshape(
            frames.shape[0] * self._x_in, self._row_len)

    def estimate_events(self, frames: np.ndarray) -> int:
        """Estimate the number of events from a sample of evenly spaced input rows.

        The automatic path choice needs only the density, and near the crossover
        (5-50 % for most layers) both paths cost about the same, so an estimate from
        about ``_SAMPLE_ELEMENTS`` entries is enough (at 1 % density it still sees
        ~40 events). An exact count cost 6-9 us on ``mid``/``vgg``, a third of the
        whole event path at 0.1 % density. A misestimate can only cost time: both
        paths give bit-identical results. The sampled rows are evenly spaced, and
        the first one moves by one row at every call, so that no fixed pattern of
        empty rows can mislead every call (:func:`lavaconv.kernels.events.count_sample`).
        ``path="auto"`` decides from it (:meth:`decide`).
        """
        return self._estimate_rows(self._rows(frames))

    def _estimate_rows(self, rows: np.ndarray) -> int:
        """:meth:`estimate_events` of frames already viewed as rows (:meth:`_rows`)."""
        found, counted = _events.count_sample(rows, _SAMPLE_ELEMENTS, self._turn())
        return int(round(found * rows.shape[0] / counted)) if counted else 0

    def estimate_nonzero(self, data: np.ndarray) -> int:
        """:meth:`estimate_events` of frames held in any C-contiguous layout.

        For a caller whose frames are not yet in the engine's layout (e.g. PyTorch's
        NCHW): ``data`` is viewed as rows of its last axis, and the same sample of
        about ``_SAMPLE_ELEMENTS`` entries is counted.

        Parameters
        ----------
        data : ndarray, C-contiguous, at least 1-D
            The frames' entries in any order (any numeric or bool dtype).

        Returns
        -------
        int
        """
        if data.size == 0:
            return 0
        return self._estimate_rows(kernel_input(data).reshape(-1, data.shape[-1]))

    def estimate_events_timelast(self, data: np.ndarray) -> int:
        """:meth:`estimate_events` for time-last sequences ``(N, X, Y, C, T)``, C-contiguous."""
        n = data.shape[0]
        rows = kernel_input(data).reshape(n * self._x_in, self._row_len * data.shape[-1])
        found, counted = _events.count_sample(rows, _SAMPLE_ELEMENTS, self._turn())
        return int(round(found * rows.shape[0] / counted)) if counted else 0

    def events_from_indices(self, x, y, c, value=None, dtype=np.int64) -> Events:
        """Events of one frame given as index arrays ``(x, y, c[, value])``.

        Parameters
        ----------
        x, y, c : array_like of ints, (E,)
            Coordinates of the active inputs, inside ``input_shape``. Repeated
            coordinates are separate events (their values add).
        value : array_like, (E,), optional
            Payloads; ``None`` means binary spikes (value 1).
        dtype : numpy.dtype
            Accumulator dtype the values are stored in.

        Raises
        ------
        ValueError
            Arrays of different lengths, not 1-D, non-integer coordinates, or
            coordinates outside the input.
        """
        shape = self.geometry.input_shape
        coords = []
        for name, arr, size in (("x", x, shape[0]), ("y", y, shape[1]), ("c", c, shape[2])):
            a = np.asarray(arr)
            if a.ndim != 1:
                raise ValueError(f"{name} must be a 1-D array of indices, got shape {a.shape}.")
            if a.size and a.dtype.kind not in "iu":
                raise ValueError(f"{name} must hold integers, got dtype {a.dtype}.")
            a = a.astype(np.int64)
            if a.size and (a.min() < 0 or a.max() >= size):
                raise ValueError(
                    f"{name} indices must lie in 0..{size - 1} (input_shape={shape}), got "
                    f"values in {int(a.min())}..{int(a.max())}.")
            coords.append(a)
        n_ev = coords[0].size
        if coords[1].size != n_ev or coords[2].size != n_ev:
            raise ValueError(f"x, y and c must have the same length, got "
                             f"{[a.size for a in coords]}.")
        binary = value is None
        if binary:
            vals = np.ones(n_ev, dtype)
        else:
            v = np.asarray(value)
            if v.shape != (n_ev,):
                raise ValueError(f"value must have shape ({n_ev},) like x, got {v.shape}.")
            if v.dtype.kind not in "biuf":
                raise ValueError(f"value must be numeric, got dtype {v.dtype}.")
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise ValueError("value contains NaN or infinite values.")
            vals = np.ascontiguousarray(v, dtype=dtype)
            binary = bool(np.all(v == 1))
        counts = np.bincount(coords[0], minlength=shape[0])
        offsets = np.zeros(shape[0] + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        ys = np.empty(n_ev, np.int32)
        cs = np.empty(n_ev, np.int32)
        vs = np.empty(n_ev, dtype)
        _events.bucket_events(coords[0], coords[1], coords[2], vals, offsets, ys, cs, vs)
        return Events(1, offsets, ys, cs, vs, binary)

    def scatter(self, events: Events, dtype: np.dtype,
                out: np.ndarray | None = None) -> np.ndarray:
        """Event-driven convolution of :class:`Events` in accumulator ``dtype``.

        Parameters
        ----------
        events : Events
            The events, as CSR rows per frame.
        dtype : numpy.dtype
            Accumulator dtype.
        out : ndarray, (N, X_out, Y_out, C_out), ``dtype``, C-contiguous, optional
            Where to write (every cell is overwritten); new when omitted.

        Returns
        -------
        ndarray, (N, X_out, Y_out, C_out), ``dtype``
        """
        dtype = np.dtype(dtype)
        we = self._prepare_events(dtype)
        vs = events.vs if events.vs.dtype == dtype else events.vs.astype(dtype)
        if out is None:
            out = empty((events.n_frames,) + self.geometry.output_shape, dtype=dtype)
        n_blocks = self._blocks(events.n_frames, out.nbytes)
        with _threads.launch():
            _events.scatter_events(events.offsets, events.ys, events.cs, vs, events.binary,
                                   we, self._xo_of, self._yo_of, self._koff, out, n_blocks)
        return out

    def _blocks(self, n_frames: int, nbytes: int) -> int:
        """Blocks of output rows per frame for the scatter kernels (their parallel grain).

        At least one per thread overall (up to ``X_out`` blocks per frame), and small
        enough that one block's output rows (what a thread writes while it scatters)
        fit in half of a core's L2 (``_BLOCK_BYTES``): 20 frames of ``mid`` (1 MiB
        each) scattered one frame per iteration took 1.05 ms at 0.1 %, in blocks of
        256 KiB 0.61 ms (a single frame in halves is unchanged). ``nbytes``: the
        result's size.
        """
        threads = _threads.get_num_threads()
        if n_frames <= 1:
            return threads
        by_cache = -(-(nbytes // n_frames) // _BLOCK_BYTES)
        by_threads = -(-threads // n_frames)
        return max(1, min(max(by_cache, by_threads), self._out_shape[0]))

    def events(self, frames: np.ndarray, dtype: np.dtype,
               out: np.ndarray | None = None, binary: bool = False) -> np.ndarray:
        """Convolve a stack of frames with the event-driven (scatter) kernel.

        Events are found and scattered in one parallel pass
        (:func:`lavaconv.kernels.events.scatter_frames`); no event list is built.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in)
            Input frames (any numeric or bool dtype), already validated.
        dtype : numpy.dtype
            Accumulator dtype (int32, int64, float32 or float64). Integer dtypes
            are exact when the bound of the module docstring is below their range.
        out : ndarray, optional
            Where to write the result (checked by :meth:`exact`); new when omitted.
        binary : bool, optional
            Every non-zero entry counts as 1 (Lava's binary spike rule), read from
            ``frames`` as they are.

        Returns
        -------
        ndarray, (N, X_out, Y_out, C_out), ``dtype``
        """
        return self._scatter_rows(self._rows(frames), frames.shape[0], np.dtype(dtype), out,
                                  binary)

    def _scatter_rows(self, rows: np.ndarray, n: int, dtype: np.dtype,
                      out: np.ndarray | None, binary: bool = False,
                      bias: np.ndarray | None = None) -> np.ndarray:
        """:meth:`events` of ``n`` frames already viewed as rows (:meth:`_rows`).

        ``bias`` (``(C_out,)``, ``dtype``), when given, is each output pixel's starting
        value instead of zero.
        """
        return self._scatter(self._event_plan(n, dtype), rows, out, binary, bias)

    def _event_plan(self, n: int, dtype: np.dtype) -> tuple:
        """Return ``(result shape, weights, blocks, init)`` of a scatter of ``n`` frames.

        ``dtype`` is the result's (the accumulator's). Kept per ``(n, dtype, thread
        count)`` (up to ``_MAX_CALLS``): the parts of a scatter call that do not depend
        on the data. ``init`` is the kernel's placeholder for "no bias".
        """
        key = (n, dtype, _threads.get_num_threads())
        plan = self._event_plans.get(key)
        if plan is None:
            we = self._prepared_events.get(dtype)
            if we is None:
                we = self._prepare_events(dtype)
            shape = (n,) + self._out_shape
            plan = (shape, we, self._blocks(n, math.prod(shape) * dtype.itemsize),
                    _no_init(dtype))
            with self._lock:
                if len(self._event_plans) >= _MAX_CALLS:
                    self._event_plans.clear()
                self._event_plans[key] = plan
        return plan

    def _scatter(self, plan: tuple, rows: np.ndarray, out: np.ndarray | None,
                 binary: bool, bias: np.ndarray | None) -> np.ndarray:
        """Run :func:`lavaconv.kernels.events.scatter_frames` by a plan of :meth:`_event_plan`."""
        shape, we, n_blocks, init = plan
        if out is None:
            out = empty(shape, we.dtype)
        if bias is not None:
            init = bias
        with _threads.launch():
            _events.scatter_frames(rows, self._words(rows), self._c_in, we, self._xo_of,
                                   self._yo_of, self._koff, out, n_blocks, binary, init,
                                   bias is not None)
        return out

    def synaptic_ops(self, frames: np.ndarray) -> int:
        """Multiply-adds the event path performs: ``sum over events of fan-out``.

        The fan-out of an event at ``(x, y, c)`` is the number of taps that reach
        an output along X times along Y, times ``Kg`` output channels. Compare with
        ``geometry.dense_macs * N``.
        """
        frames = np.asarray(frames)
        active = (frames != 0).sum(axis=-1)  # (N, X, Y) events per pixel
        per_pixel = self._fan_x[:, None] * self._fan_y[None, :]
        return int((active * per_pixel).sum()) * self.geometry.out_per_group

    # -- computation ---------------------------------------------------------------
    def dense(self, frames: np.ndarray, dtype: np.dtype,
              out: np.ndarray | None = None, result_dtype=None,
              result: np.ndarray | None = None) -> np.ndarray:
        """Convolve a stack of frames with the dense kernels.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in)
            Input frames (any numeric or bool dtype), already validated.
        dtype : numpy.dtype
            Accumulator dtype (float32, float64 or int64). For exact integer
            results choose it with :meth:`accumulator_for`.
        out : ndarray, (N, X_out, Y_out, C_out), ``dtype``, C-contiguous, optional
            Where to accumulate (every cell is overwritten); a new array when
            omitted.
        result_dtype : numpy.dtype, optional
            Return the result cast to this dtype, cast row by row inside the kernel
            (``out`` is then only the accumulator). The values must fit (exact
            integer sums under the engine's bound do).
        result : ndarray, optional
            Where to write the cast result (with ``result_dtype``); new when omitted.

        Returns
        -------
        ndarray, (N, X_out, Y_out, C_out), ``dtype`` (or ``result_dtype``)

        Notes
        -----
        Many frames run in chunks of :meth:`dense_chunk` frames, so that the input
        copies and, with ``result_dtype`` and no ``out``, the accumulator are scratch
        buffers of one chunk that stay in cache instead of streaming ``N`` frames'
        worth through memory.
        """
        dtype = np.dtype(dtype)
        n = frames.shape[0]
        cast = result_dtype is not None and np.dtype(result_dtype) != dtype
        chunk = self.dense_chunk(frames.dtype, dtype, cast and out is None)
        if n <= chunk and not (cast and out is None):
            return self._dense_frames(frames, dtype, out, result_dtype, result)
        shape = (n,) + self.geometry.output_shape
        if cast:
            if result is None:
                result = empty(shape, result_dtype)
            whole = result
        else:
            if out is None:
                out = empty(shape, dtype)
            whole = out
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            acc = (out[start:stop] if out is not None else
                   self._scratch("accumulator", (stop - start,) + shape[1:], dtype))
            self._dense_frames(frames[start:stop], dtype, acc, result_dtype,
                               result[start:stop] if cast else None)
        return whole

    def dense_chunk(self, input_dtype: np.dtype, acc: np.dtype, accumulator: bool) -> int:
        """Frames per call of the dense kernels in :meth:`dense` (at least 1).

        As many as keep one chunk's working set within ``_DENSE_CHUNK_BYTES``: the
        input copies (:meth:`dense_scratch_entries`) and, when ``accumulator``, the
        accumulator that the kernels cast into the result row by row.
        """
        acc = np.dtype(acc)
        entries = self.dense_scratch_entries(input_dtype, acc)
        if accumulator:
            entries += int(np.prod(self._out_shape))
        return max(1, _DENSE_CHUNK_BYTES // max(1, entries * acc.itemsize))

    def _dense_frames(self, frames: np.ndarray, dtype: np.dtype, out: np.ndarray | None,
                      result_dtype, result: np.ndarray | None) -> np.ndarray:
        """:meth:`dense` of one chunk of frames (the same parameters)."""
        g = self.geometry
        (w,) = self._prepare(dtype)
        copy = (None if kernel_reads(frames.dtype, dtype)
                else self._scratch("cast", frames.shape, dtype))
        frames = kernel_input(frames, dtype, copy)
        n = frames.shape[0]
        x_in, y_in, c_in = g.input_shape
        px, py = g.padding
        if out is None:
            out = empty((n,) + g.output_shape, dtype=dtype)
        cast = result_dtype is not None and np.dtype(result_dtype) != dtype
        if cast:
            res = (empty((n,) + g.output_shape, dtype=result_dtype) if result is None
                   else result)
        else:
            res = np.empty((0, 1, 1, 1), dtype)  # the kernels' "no cast"
        direct = self._direct_input(frames, dtype)
        if direct is not None:  # depthwise, sy == 1: no padded copy
            with _threads.launch():
                _dense.conv_dense_depthwise_direct(
                    direct, w, out, c_in, g.kernel_size[1], g.stride[0], g.dilation[0],
                    g.dilation[1], px, py, res)
            return res if cast else out
        sx, sy = g.stride
        dx, dy = g.dilation
        ky = g.kernel_size[1]
        if self._planes:  # few input channels: vectorise along output rows
            ypad = -(-g.output_shape[1] // 16) * 16
            yq = max(-(-(y_in + 2 * py) // sy), (ky - 1) * dy // sy + ypad)
            q = self._scratch("planes", (n, c_in, sy, x_in + 2 * px, yq), dtype)
            with _threads.launch():
                _dense.planes_cast(np.ascontiguousarray(frames), q, px, py, sy)
                _dense.conv_dense_planes(q, w.reshape(g.weight_shape), out, sx, dx, dy,
                                         g.in_per_group, ypad, res)
            return res if cast else out
        if self._rows_dot:  # one contiguous run per output cell (module docstring)
            kx = g.kernel_size[0]
            x_out = g.output_shape[0]
            xq = self._scratch("rows", (n, x_out, y_in + 2 * py, kx * c_in), dtype)
            xqf = xq.reshape(n, x_out, (y_in + 2 * py) * kx * c_in)
            with _threads.launch():
                _dense.rows_cast(np.ascontiguousarray(frames), xq, px, py, sx, dx)
                _dense.conv_dense_dot(xqf, w, out, kx * c_in, kx * c_in, ky, 1, sy, 1, 1, 1,
                                      1, ky * kx * c_in, res)
            return res if cast else out
        xp = self._scratch("padded", (n, x_in + 2 * px, y_in + 2 * py, c_in), dtype)
        xpf = xp.reshape(n, x_in + 2 * px, (y_in + 2 * py) * c_in)
        with _threads.launch():
            _dense.pad_cast(np.ascontiguousarray(frames), xp, px, py)
            if self.depthwise:
                _dense.conv_dense_depthwise(xpf, w, out, c_in, ky, sx, sy, dx, dy, res)
            else:
                cg = g.in_per_group
                if dy == 1 and g.groups == 1:
                    nj, run = 1, ky * c_in
                else:
                    nj, run = ky, cg
                _dense.conv_dense_dot(xpf, w, out, c_in, cg, ky, sx, sy, dx, dy, g.groups,
                                      nj, run, res)
        return res if cast else out

    def _dense_vnni(self, frames: np.ndarray, dtype: np.dtype,
                    out: np.ndarray | None = None) -> np.ndarray:
        """Exact dense convolution on the VNNI kernel (:mod:`lavaconv.kernels.vnni`).

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in)
            bool, uint8 or int8 frames, or 0/1 frames of any integer dtype
            (:meth:`vnni_reads`).
        dtype : numpy.dtype
            int32 or int64: the result (every sum fits, checked by the caller).
        out : ndarray, optional
            Where to write (C-contiguous, ``dtype``); new when omitted.

        Notes
        -----
        On a depthwise layer: :meth:`_depthwise_vnni` (the result's dtype is then
        ``out``'s when given). On a dot layer, in chunks of frames whose uint8 copy
        (padded input or gathered rows, plus the 64-entry tail the kernel may read past
        the last run) stays within ``_DENSE_CHUNK_BYTES``. int8 frames are copied as
        their bytes and then XORed with ``0x80`` (``x + 128``, the border becoming
        ``0x80`` too), which the kernel's ``128 * sum(W[k])`` correction takes back out.
        """
        g = self.geometry
        n = frames.shape[0]
        if out is None:
            out = empty((n,) + g.output_shape, dtype)
        if self.depthwise:
            return self._depthwise_vnni(frames, out)
        kxr, _, runp = self.vnni
        wu, corr = self._prepare_vnni()
        (x_in, y_in, c_in), (px, py), (sx, sy), dx = (g.input_shape, g.padding, g.stride,
                                                      g.dilation[0])
        biased = frames.dtype == np.int8
        if frames.dtype not in _VNNI_READS:  # binary 0/1 frames of a wider integer dtype
            frames = frames.astype(np.uint8)  # (NumPy's cast: no kernel signature per dtype)
        source = frames.view(np.uint8) if biased else frames
        per_frame = self._copy_entries()
        chunk = max(1, _DENSE_CHUNK_BYTES // per_frame)
        no_corr = np.zeros_like(corr)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            m = stop - start
            flat = self._scratch("vnni", (m * per_frame + 64,), np.dtype(np.uint8))
            src = np.ascontiguousarray(source[start:stop])
            with _threads.launch():
                if self._rows_dot:
                    kx, x_out = g.kernel_size[0], g.output_shape[0]
                    rows = flat[:m * per_frame].reshape(m, x_out, y_in + 2 * py, kx * c_in)
                    _dense.rows_cast(src, rows, px, py, sx, dx)
                    n_rows, row_len, r_sx, r_dx, ystep = x_out, per_frame // x_out, 1, 1, \
                        sy * kx * c_in
                else:
                    padded = flat[:m * per_frame].reshape(m, x_in + 2 * px, y_in + 2 * py,
                                                          c_in)
                    _dense.pad_cast(src, padded, px, py)
                    n_rows, row_len, r_sx, r_dx, ystep = x_in + 2 * px, \
                        (y_in + 2 * py) * c_in, sx, dx, sy * c_in
            if biased:
                np.bitwise_xor(flat, 0x80, out=flat)
            with _threads.launch():
                _vnni.conv_dense_vnni(flat, n_rows, row_len, wu, kxr, runp,
                                      corr if biased else no_corr, out[start:stop],
                                      r_sx, r_dx, ystep)
        return out

    def _dense_vnni_float(self, frames: np.ndarray, out: np.ndarray | None,
                          binary: bool) -> np.ndarray:
        """float64 dense sums by the VNNI kernel: exact integer sums, cast (:meth:`compute`).

        The integer sums go to a per-thread scratch (int32 when every sum fits) in
        chunks within ``_DENSE_CHUNK_BYTES`` and are cast into ``out`` (float64, new when
        omitted): the same values as float64 accumulation, which adds integers below
        ``2**53`` exactly in any order.
        """
        shape = self.geometry.output_shape
        n = frames.shape[0]
        if out is None:
            out = empty((n,) + shape, np.float64)
        bound = 1 if binary else dtype_bound(frames.dtype)  # (bool: 1)
        acc = np.dtype(np.int32 if bound * self.weight_l1 < INT32_LIMIT else np.int64)
        chunk = max(1, _DENSE_CHUNK_BYTES // (acc.itemsize * int(np.prod(shape))))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            sums = self._scratch("vnni_sums", (stop - start,) + shape, acc)
            self._dense_vnni(frames[start:stop], acc, sums)
            out[start:stop] = sums
        return out

    def _depthwise_vnni(self, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
        """:meth:`_dense_vnni` on a depthwise layer (:mod:`lavaconv.kernels.vnni`).

        :func:`~lavaconv.kernels.vnni.conv_depthwise_vnni`, one band of output rows
        per thread. An int64 ``out`` is written through an int32 scratch (every sum fits
        int32, :meth:`_vnni_plan`), in chunks of frames within ``_DENSE_CHUNK_BYTES``.
        """
        g = self.geometry
        wq, biased, plain = self._prepare_vnni()
        (x_in, y_in, c_in), (px, py), (sx, sy), (dx, dy) = (g.input_shape, g.padding,
                                                            g.stride, g.dilation)
        init = biased if frames.dtype == np.int8 else plain
        fill = np.uint32(0x80808080 if frames.dtype == np.int8 else 0)
        cap = np.uint8(1 if frames.dtype == np.bool_ else 255)  # (bool: any non-zero byte)
        if frames.dtype not in _VNNI_READS:  # binary 0/1 frames of a wider integer dtype
            frames = frames.astype(np.uint8)
        n = frames.shape[0]
        wide = out.dtype != np.int32
        chunk = max(1, _DENSE_CHUNK_BYTES // (4 * int(np.prod(g.output_shape)))) if wide else n
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            m = stop - start
            src = np.ascontiguousarray(frames[start:stop]).view(np.uint8).reshape(
                m, x_in, y_in * c_in)
            dst = (self._scratch("vnni_out", (m,) + g.output_shape, np.dtype(np.int32))
                   if wide else out[start:stop])
            bands = min(m * g.output_shape[0], _threads.get_num_threads())
            with _threads.launch():
                _vnni.conv_depthwise_vnni(src, wq, init, dst, c_in, g.kernel_size[1], sx,
                                          sy, dx, dy, px, py, fill, cap, bands)
            if wide:
                out[start:stop] = dst
        return out

    def dense_scratch_entries(self, input_dtype: np.dtype | None = None,
                              acc: np.dtype | None = None) -> int:
        """Entries per frame of the dense path's input copies (cast; padded, planes or rows).

        What :meth:`dense` allocates beside the result, per frame and in the
        accumulator dtype: the cast of frames the kernels do not read as they are
        (:func:`lavaconv.dtypes.kernel_reads`; counted unless ``input_dtype`` and ``acc``
        show it is not needed), and the padded, planes or rows copy (none for the
        unpadded depthwise kernel, which an int64 accumulator replaces by the padded
        one: counted as such here).
        """
        x_in, y_in, c_in = self.geometry.input_shape
        cast = 0 if (input_dtype is not None and acc is not None
                     and kernel_reads(np.dtype(input_dtype), np.dtype(acc))) else x_in * y_in * c_in
        return cast + self._copy_entries()

    def _copy_entries(self) -> int:
        """Entries per frame of the padded, planes or rows copy (:meth:`dense_scratch_entries`)."""
        g = self.geometry
        (x_in, y_in, c_in), (px, py) = g.input_shape, g.padding
        if self._planes:
            sy, dy, ky = g.stride[1], g.dilation[1], g.kernel_size[1]
            ypad = -(-g.output_shape[1] // 16) * 16
            yq = max(-(-(y_in + 2 * py) // sy), (ky - 1) * dy // sy + ypad)
            return c_in * sy * (x_in + 2 * px) * yq
        if self._rows_dot:
            return g.output_shape[0] * (y_in + 2 * py) * g.kernel_size[0] * c_in
        return (x_in + 2 * px) * (y_in + 2 * py) * c_in

    def _direct_input(self, frames: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
        """Frames as ``(N, X, Y * C)`` for the unpadded depthwise kernel, or None.

        Used for depthwise layers with ``sy == 1`` and a float accumulator, on frames
        already in a dtype the dense kernels read (:func:`lavaconv.dtypes.kernel_input`:
        bool, uint8, int8, int16, exact in either float accumulator and cheap to convert
        in the inner loop, or the accumulator's own).
        """
        g = self.geometry
        if not (self.depthwise and g.stride[1] == 1 and dtype.kind == "f"):
            return None
        frames = np.ascontiguousarray(frames)
        x_in, y_in, c_in = g.input_shape
        return frames.reshape(frames.shape[0], x_in, y_in * c_in)

    def compute(self, frames: np.ndarray, dtype: np.dtype, path: str = "auto",
                out: np.ndarray | None = None, binary: bool = False,
                bias: np.ndarray | None = None) -> np.ndarray:
        """Convolve frames in accumulator ``dtype`` by the chosen path.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in)
            Input frames, already validated.
        dtype : numpy.dtype
            float32 or float64 (float results), or int64 (exact for integer data).
            Float sums of integer-valued weights and inputs are exact on both paths
            while they stay below ``2**24`` (float32) or ``2**53`` (float64); other
            float sums differ between the paths by rounding only (the scatter adds
            in event order, the gather in tap order).
        path : {"auto", "dense", "events"}
            ``"auto"``: :meth:`decide` picks one, before any kernel runs.
        out : ndarray, (N, X_out, Y_out, C_out), ``dtype``, C-contiguous, optional
            Where to write the result (every cell is overwritten); new when omitted.
        binary : bool, optional
            Every non-zero entry counts as 1 (Lava's binary spike rule): the event
            path reads ``frames`` as they are, the dense path converts them first.
        bias : array_like, (C_out,), optional
            Added to every output pixel, in ``dtype``: the event path starts each
            pixel from it instead of zero (no extra pass over the output), the dense
            path adds it afterwards.

        Returns
        -------
        ndarray, (N, X_out, Y_out, C_out), ``dtype``

        Raises
        ------
        ValueError
            ``bias`` not of shape ``(C_out,)``.
        """
        dtype = np.dtype(dtype)
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype)  # (no copy when it already is)
            if bias.shape != (self._out_shape[-1],):
                raise ValueError(
                    f"bias must have shape ({self._out_shape[-1]},) (one value per output "
                    f"channel), got {bias.shape}.")
        frames = np.ascontiguousarray(frames)  # once, for either path
        rows = self._rows(frames)
        # float64 sums of integer-valued weights and VNNI-read input are the exact
        # integer sums (below 2**53): the dense path computes those on the VNNI kernel
        dense_size = self.dense_itemsize(frames.dtype, dtype, binary=binary)
        by_vnni = dense_size == 1
        if self._decide_rows(rows, frames.shape[0], path, dtype.itemsize,
                             dense_size) == "dense":
            frames = _spikes(frames) if binary else frames
            if by_vnni:
                out = self._dense_vnni_float(frames, out, binary)
            else:
                out = self.dense(frames, dtype, out=out)
            if bias is not None:
                out += bias
            return out
        return self._scatter_rows(rows, frames.shape[0], dtype, out,
                                  binary or frames.dtype == np.bool_, bias)

    def decide(self, frames: np.ndarray, path: str = "auto", itemsize: int = 8,
               dense_itemsize: int | None = None) -> str:
        """Pick the path a call runs: ``path`` itself, or for ``"auto"`` the faster one.

        ``"auto"`` counts the events of a sample of about ``_SAMPLE_ELEMENTS`` input
        entries (:meth:`estimate_events`, one serial pass over the sampled rows) and
        picks ``"events"`` below :meth:`crossover_density` (for the accumulator item
        sizes given), else ``"dense"``. Decided once, here, before any kernel runs.

        Raises
        ------
        ValueError
            Unknown ``path``.
        """
        return self._decide_rows(self._rows(frames), frames.shape[0], path, itemsize,
                                 dense_itemsize)

    def _decide_rows(self, rows: np.ndarray, n: int, path: str, itemsize: int,
                     dense_itemsize: int | None) -> str:
        """:meth:`decide` for ``n`` frames already viewed as rows (:meth:`_rows`)."""
        if path != "auto":
            return _check_path(path)
        n_in = n * self._n_in
        if n_in == 0:
            return "dense"
        rho = self.crossover_density(itemsize, dense_itemsize)
        return "events" if self._estimate_rows(rows) < rho * n_in else "dense"

    def _bound_for(self, frames: np.ndarray, input_max_abs: int | None,
                   need_small: bool) -> tuple[int, bool]:
        """Bound ``max|x|``: the caller's bound, the dtype's if enough, else the data's.

        Returns the bound and whether it was read from the data.
        """
        if input_max_abs is not None:
            return int(input_max_abs), False
        if frames.dtype == np.bool_:
            return 1, False
        by_dtype = dtype_bound(frames.dtype)
        product = by_dtype * self.weight_l1
        if product < (F32_EXACT if need_small else INT64_LIMIT):
            return by_dtype, False
        return max_abs(frames), True

    def dtype_bound(self, dtype: np.dtype) -> int | None:
        """Bound ``|x|`` by ``dtype`` alone when that proves int32 sums, else None.

        Parameters
        ----------
        dtype : numpy.dtype
            A validated input's dtype (native bool, integer or float).

        Returns
        -------
        int or None
            1 for bool; the dtype's largest magnitude for an integer dtype whose
            values times :attr:`weight_l1` stay below ``2**31``; else None (the bound
            must be read from the data, :meth:`input_bound`).
        """
        if dtype == np.bool_:
            return 1
        if dtype.kind in "iu":
            by_dtype = dtype_bound(dtype)
            if by_dtype * self.weight_l1 < INT32_LIMIT:
                return by_dtype
        return None

    def input_bound(self, frames: np.ndarray) -> int:
        """Bound ``|frames|``: by the dtype when that proves int32 sums, else by the data.

        Parameters
        ----------
        frames : ndarray
            Validated input (native bool, integer or float dtype).

        Returns
        -------
        int
            :meth:`dtype_bound` when it is not None, else ``max |frames|``.
        """
        bound = self.dtype_bound(frames.dtype)
        return max_abs(frames) if bound is None else bound

    def exact(self, frames: np.ndarray, input_max_abs: int | None = None, *,
              path: str = "auto", out_dtype=np.int64,
              out: np.ndarray | None = None, binary: bool = False) -> np.ndarray:
        """Exact integer convolution of integer or bool frames.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in), integer or bool
            Input frames. Integral float frames are accepted too (the models pass a
            caller's integral float payloads, and binary spikes of any dtype with
            ``binary=True``): the dense path is exact under the bound's accumulator;
            the event path multiplies and adds float values in float64, exact while
            ``bound * weight_l1 < 2**53`` (the models check it, see
            ``_PyConvModel._apply_one``).
        input_max_abs : int, optional
            A bound on ``|frames|`` known to the caller (e.g. from the message bit
            width); taken from the dtype when that is enough for the fastest
            accumulator, else computed from the data.
        path : {"auto", "dense", "events"}, keyword-only
            Dense gather, event-driven scatter, or automatic choice (default).
            All give bit-identical results.
        out_dtype : int64 or int32, keyword-only
            Result dtype. int32 is accepted only when the bound proves every sum
            fits (else ``OverflowError``); it halves the memory traffic.
        out : ndarray, keyword-only, optional
            A writeable C-contiguous ``out_dtype`` array of the result's shape to
            write into (NumPy's ``out=``): reusing one across calls spares the page
            faults of a fresh multi-megabyte result (measured 5.5 ms of a 30 ms
            100-frame call on ``vgg``). Checked before any convolution runs (after
            the checks of the other arguments).
        binary : bool, keyword-only
            Every non-zero entry counts as 1 (Lava's binary spike rule), so the
            frames need no converted copy: the event path reads them as they are,
            the dense path converts them first. The bound is then 1.

        Returns
        -------
        ndarray of ``out_dtype``, (N, X_out, Y_out, C_out)

        Raises
        ------
        ValueError
            Unknown ``path`` or ``out_dtype``.
        OverflowError
            If the exact sum may not fit in int64 (or in int32 when asked).
        """
        if frames.__class__ is not np.ndarray or not frames.flags.c_contiguous:
            frames = np.ascontiguousarray(frames)
        call = key = None
        if input_max_abs is None or input_max_abs.__class__ is int:
            # everything the decision derives from (the crossover too: a thread that
            # sets it while another decides cannot leave the old threshold in use)
            key = (frames.shape, frames.dtype, input_max_abs, path, out_dtype, binary,
                   _threads.get_num_threads(), self._crossover)
            try:
                call = self._exact_calls.get(key)
            except TypeError:  # an unhashable argument: decided anew, never kept
                key = None
        if call is None:
            call = self._exact_call(frames, input_max_abs, path, out_dtype, binary, key)
        if out is not None and (
                not isinstance(out, np.ndarray) or out.shape != call.shape
                or out.dtype != call.dtype or not out.flags.c_contiguous
                or not out.flags.writeable):
            raise ValueError(
                f"out must be a writeable C-contiguous {call.dtype} array of shape "
                f"{call.shape}, got {getattr(out, 'dtype', type(out).__name__)} "
                f"{getattr(out, 'shape', '')}.")
        rows = self._rows(frames)
        limit = call.limit  # (inf: events; -inf: dense; else auto's threshold)
        if limit == _ALWAYS or (limit > 0 and self._estimate_rows(rows) < limit):
            return self._scatter(call.events, rows, out, call.binary, None)
        if binary:
            frames = _spikes(frames)
        if call.vnni:
            return self._dense_vnni(frames, call.dtype, out)
        if call.acc == call.dtype:
            return self.dense(frames, call.acc, out=out)
        # exact float (or int64) accumulator in scratch (one chunk of frames at a
        # time), cast into the result row by row
        return self.dense(frames, call.acc, result_dtype=call.dtype, result=out)

    def _exact_call(self, frames: np.ndarray, input_max_abs: int | None, path: str,
                    out_dtype, binary: bool, key: tuple | None) -> _ExactCall:
        """Decide what :meth:`exact` does with frames like these (validated here).

        Kept in :attr:`_exact_calls` under ``key`` (built by :meth:`exact` from
        everything the decision derives from) unless ``key`` is None (arguments that
        cannot key it) or the bound had to be read from the data: then it is decided
        anew at every call.

        Raises
        ------
        ValueError, OverflowError
            As :meth:`exact`.
        """
        out_dtype = np.dtype(out_dtype)
        out_limit = _INT_DTYPES.get(out_dtype)
        if out_limit is None:
            raise ValueError(f"out_dtype must be int64 or int32, got {out_dtype}.")
        n = frames.shape[0]
        path = _check_path(path)
        if binary:
            input_max_abs = 1
        bound, from_data = self._bound_for(frames, input_max_abs, need_small=path != "events")
        dense_dtype = exact_accumulator(bound * self.weight_l1)  # raises beyond int64
        if bound * self.weight_l1 >= out_limit:
            if input_max_abs is None and frames.dtype != np.bool_:
                bound = max_abs(frames)
                from_data = True
            if bound * self.weight_l1 >= out_limit:
                raise OverflowError(
                    f"the exact convolution sum may reach {bound * self.weight_l1}, beyond "
                    f"{out_dtype}; use out_dtype=int64.")
            dense_dtype = exact_accumulator(bound * self.weight_l1)
        vnni = self.vnni_reads(frames.dtype, binary)
        if path == "auto":
            n_in = n * self._n_in
            limit = self.crossover_density(
                out_dtype.itemsize, self.dense_itemsize(frames.dtype, out_dtype, bound, binary)
            ) * n_in
        else:
            limit = _ALWAYS if path == "events" else -_ALWAYS
        call = _ExactCall(limit, self._event_plan(n, out_dtype), dense_dtype,
                          binary or frames.dtype == np.bool_, vnni)
        if key is not None and not from_data:
            with self._lock:
                if len(self._exact_calls) >= _MAX_CALLS:
                    self._exact_calls.clear()
                self._exact_calls[key] = call
        return call


    # -- time-last sequences -----------------------------------------------------------
    def timelast_pays(self, data: np.ndarray, itemsize: int,
                      dense_itemsize: int | None = None) -> bool:
        """Whether :meth:`timelast_events` is the fastest way to run ``data``.

        It is while the estimated density (:meth:`estimate_events_timelast`) stays
        below both the event path's crossover (:meth:`crossover_density`, else the
        dense path wins) and :attr:`timelast_density`, above which transposing the
        sequence into frames and scanning them (:meth:`events`) costs less than
        bucketing every event of the time-last input (:data:`TIMELAST_DENSITY`).

        Parameters
        ----------
        data : ndarray, (N, X, Y, C_in, T), C-contiguous
            The validated sequences.
        itemsize : int
            Bytes per entry of the accumulator.
        dense_itemsize : int, optional
            The frames path's dense accumulator, as for :meth:`crossover_density` (1:
            its frames run on the VNNI kernel).
        """
        density = min(self.crossover_density(itemsize, dense_itemsize), self.timelast_density)
        return self.estimate_events_timelast(data) < density * data.size

    def timelast_events(self, data: np.ndarray, binary: bool, dtype: np.dtype,
                        out: np.ndarray, t_count: int, t_offset: int) -> None:
        """Event-driven convolution of time-last sequences, read without a transpose.

        One parallel pass buckets the events of the time-last input per output frame
        (:func:`lavaconv.kernels.events.bucket_timelast`, counted, then filled), and
        :func:`lavaconv.kernels.events.scatter_events` adds them frame by frame.
        Scattering straight from the time-last scan instead (every event into its
        own frame) measured 1.5-3x slower per frame than single-frame calls on
        ``mid`` and ``vgg`` at 0.1-1 %: the output rows of all ``T`` frames that one
        input row reaches (about 1 MB on ``mid``) do not stay in L2.

        Parameters
        ----------
        data : ndarray, (N, X, Y, C_in, T), C-contiguous
            Sequences in Lava's time-last layout, already validated (native dtype).
        binary : bool
            Every non-zero entry counts as 1 (Lava's spike rule); else its value.
        dtype : numpy.dtype
            Accumulator dtype, ``out.dtype`` (int32, int64, float32 or float64).
        out : ndarray, (N, T_out, X_out, Y_out, C_out), C-contiguous
            Every frame is overwritten: frames ``t_offset .. t_offset + t_count - 1``
            with the sums of input times ``0 .. t_count - 1``, the others with zeros.
        t_count, t_offset : int
            See ``out``.
        """
        dtype = np.dtype(dtype)
        n, n_t = data.shape[0], data.shape[-1]
        rows = kernel_input(data).reshape(n * self._x_in, self._row_len * n_t)
        words = self._words(rows)
        n_frames = out.shape[0] * out.shape[1]
        cursor = np.zeros(n_frames * self._x_in, np.int64)
        none32 = np.empty(0, np.int32)
        with _threads.launch():
            _events.bucket_timelast(rows, words, self._c_in, n_t, t_count, t_offset,
                                    self._x_in, False, cursor, none32, none32,
                                    np.empty(0, dtype))
        offsets = np.zeros(cursor.size + 1, np.int64)
        np.cumsum(cursor, out=offsets[1:])
        cursor[:] = offsets[:-1]
        n_ev = int(offsets[-1])
        ys = np.empty(n_ev, np.int32)
        cs = np.empty(n_ev, np.int32)
        vs = np.empty(n_ev, dtype)
        with _threads.launch():
            _events.bucket_timelast(rows, words, self._c_in, n_t, t_count, t_offset,
                                    self._x_in, True, cursor, ys, cs, vs)
        # (bool is binary: the uint8 view may hold any non-zero byte for True)
        self.scatter(Events(n_frames, offsets, ys, cs, vs, binary or data.dtype == np.bool_),
                     dtype,
                     out=out.reshape((n_frames,) + self._out_shape))


#: Density (events per input entry) up to which ``run`` buckets the events of
#: time-last input in place (:meth:`ConvEngine.timelast_events`); above it, it
#: transposes the sequence into frames and scans those (:meth:`ConvEngine.events`),
#: whose per-entry copy then costs less than bucketing every event in two passes and
#: scattering them from the list. Measured per step of 20-step int8 runs against one
#: ``step`` (this machine, 2 threads, interleaved, with the bucket pass scanning
#: 64-word masks and walking the bits of each non-zero word): in place against
#: transposed at 1 % 1.31x / 1.46x on mid, 1.08x / 1.29x on vgg, 1.01x / 1.41x on
#: dvs128, 2.34x / 2.30x on dil_grp, 1.85x / 1.82x on depthwise; at 2 % 1.48x / 1.34x
#: (mid), 1.41x / 1.28x (vgg), 1.21x / 1.47x (dvs128), 2.17x / 1.72x (dil_grp),
#: 1.73x / 1.68x (depthwise); at 5 % transposed wins or ties on every layer. nmnist's
#: small frames are faster transposed from 0.4 % (0.42x / 0.41x). So nmnist below
#: 1.5 %, dil_grp from 1 %, and dvs128 between 1.5 and 3 % take the slightly slower
#: path (one threshold for all layers; the results are the same either way). (With
#: the 8-word block test of the scan before, the two met at 1-1.5 % and this was
#: 0.01; before the bit walk, at 0.2-0.7 %, and it was 0.004.)
TIMELAST_DENSITY = 0.015

#: Most prepared layers kept by :func:`prepare` (the least recently used go first).
#: Each holds its re-laid-out weights and up to 64 MiB of scratch per thread.
CACHE_SIZE = 16

_LAYERS: OrderedDict[tuple, ConvEngine] = OrderedDict()
#: ``id(weight array) -> layer last prepared from it``: the fast path of :func:`prepare`.
_BY_ID: dict[int, ConvEngine] = {}
#: ``(id(weight array), input shape, geometry arguments) -> layer``: the fast path of
#: :func:`layer_for`.
_BY_CALL: dict[tuple, ConvEngine] = {}
#: ``(id(weight array), input shape and dtype, geometry arguments, path) -> (layer,
#: input bound, result dtype)``: the fast path of :func:`lavaconv.utils.conv`, which
#: fills it (held here so that eviction and :func:`clear_cache` reach it too).
_BY_CONV: dict[tuple, tuple] = {}
_CACHE_LOCK = threading.Lock()


#: The unsigned type of each item size: an array's items compared as their bits.
_UNSIGNED = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32),
             8: np.dtype(np.uint64)}


@functools.cache
def _no_init(dtype: np.dtype) -> np.ndarray:
    """Return a one-entry placeholder for the scatter kernel's ``init`` (no bias)."""
    return np.zeros(1, dtype)


def _narrow_copy(weight: np.ndarray) -> np.ndarray | None:
    """Return integer weights as a flat int8 or int16 copy when that holds them, else None.

    Only when the copy is narrower than the weights (the content check then reads less).
    """
    if weight.dtype.kind not in "iu" or weight.size == 0 or weight.itemsize <= 1:
        return None
    lo, hi = int(weight.min()), int(weight.max())
    for narrow in (np.int8, np.int16):
        info = np.iinfo(narrow)
        if np.dtype(narrow).itemsize < weight.itemsize and info.min <= lo and hi <= info.max:
            return weight.reshape(-1).astype(narrow)
    return None


def _same_content(weight: np.ndarray, layer: ConvEngine) -> bool:
    """Whether ``weight`` holds exactly the bits the layer was prepared from."""
    own = layer.weight
    if weight.dtype != own.dtype or weight.shape != own.shape:
        return False
    flags = weight.flags
    narrow = layer._weight_narrow
    if narrow is not None and flags.c_contiguous and flags.aligned:
        # (ravel of a C-contiguous array is a view, and 0.08 us cheaper than reshape)
        return bool(_compare.same_values(weight.ravel(), narrow))
    bits = _UNSIGNED.get(own.itemsize)
    if bits is None or not (flags.c_contiguous and flags.aligned):
        return bool(np.array_equal(weight.view(np.uint8) if bits is None else weight, own))
    return bool(_compare.same_words(weight.ravel().view(bits), layer._weight_bits))


def prepare(weight: np.ndarray, geometry: Geometry) -> ConvEngine:
    """Return the prepared layer of ``(weight, geometry)``, from a bounded, thread-safe cache.

    Every entry point reaches its layer through here, so a stateless call such as
    :func:`lavaconv.utils.conv` runs at the speed of a prepared one on repeated
    calls. The cache is keyed by what determines a layer: the geometry, the weight's
    dtype and shape, and its **content**. Repeated calls with the same array take a
    fast path (looked up by the array's identity, then its content compared with the
    layer's own copy: integer weights whose values fit int8/int16 against a copy in
    that dtype, :func:`lavaconv.kernels.compare.same_values`, others bit for bit,
    :func:`~lavaconv.kernels.compare.same_words`; measured 2.8 and 6.0 us for ``mid``'s
    and ``vgg``'s int32 weights right after a kernel call, Zen 4);
    an array changed in place therefore gets a layer for its new content, never a
    stale one. Another array with equal content finds its layer by a hash of the
    bytes (BLAKE2b, confirmed by the byte comparison).

    Parameters
    ----------
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Validated weights (native bool, integer or float dtype). Not kept: the
        layer holds a read-only copy.
    geometry : Geometry
        Validated geometry matching ``weight``.

    Returns
    -------
    ConvEngine
        Shared between callers: do not set attributes on it (its ``crossover``
        included) unless you built it yourself with ``ConvEngine(...)``.
    """
    layer = _BY_ID.get(id(weight))
    if (layer is not None and (layer.geometry is geometry or layer.geometry == geometry)
            and _same_content(weight, layer)):
        return layer
    w = np.ascontiguousarray(weight)
    digest = hashlib.blake2b(memoryview(w).cast("B"), digest_size=16).digest()
    key = (geometry, w.dtype.str, w.shape, digest)
    with _CACHE_LOCK:
        layer = _LAYERS.get(key)
        if layer is not None:
            _LAYERS.move_to_end(key)
    if layer is None or not _same_content(w, layer):
        built = ConvEngine(w, geometry)  # outside the lock: it takes a while
        with _CACHE_LOCK:
            layer = _LAYERS.setdefault(key, built)
            _LAYERS.move_to_end(key)
            while len(_LAYERS) > CACHE_SIZE:
                _, dropped = _LAYERS.popitem(last=False)
                for index in (_BY_ID, _BY_CALL):
                    for k in [k for k, v in index.items() if v is dropped]:
                        del index[k]
                for k in [k for k, v in _BY_CONV.items() if v[0] is dropped]:
                    del _BY_CONV[k]
    with _CACHE_LOCK:
        if len(_BY_ID) >= 4 * CACHE_SIZE:
            _BY_ID.clear()
        _BY_ID[id(weight)] = layer
    return layer


def layer_for(weight, input_shape: tuple[int, ...], stride, padding, dilation, groups,
              kernel_size=None) -> ConvEngine:
    """Validate a stateless call's weights and geometry; return its prepared layer.

    What :func:`lavaconv.utils.conv` and :func:`lavaconv.indexed.conv_events` need at
    every call: :func:`~lavaconv.dtypes.check_array` of ``weight``,
    :func:`~lavaconv.geometry.geometry_for` and :func:`prepare`. A call repeated with
    the same weight array and the same plain-int arguments
    (:func:`lavaconv.geometry.geometry_for`'s rule) skips the first two: its layer is
    found by the array's identity and the arguments, and then confirmed by the content
    check of :func:`prepare` (dtype, shape and every value), so an array changed in
    place, or a new array at a reused address, is validated and prepared anew.
    Measured on mid: the Python around the kernel 5.8 -> 3.8 us (median of 20 000 calls
    of those parts alone); the whole ``utils.conv`` at 0.1 %, interleaved with the
    prepared call, 22.7 -> 22.0 us (minimum; the prepared call 17.7 us).

    Parameters
    ----------
    weight : array_like, (C_out, KX, KY, C_in // groups)
        The caller's weights (validated here).
    input_shape : tuple of int, or as :func:`~lavaconv.geometry.geometry_for` takes it
        The input's shape ``(X, Y, C_in)``.
    stride, padding, dilation, groups, kernel_size :
        As for :func:`~lavaconv.geometry.geometry_for`.

    Returns
    -------
    ConvEngine
        Shared (see :func:`prepare`).

    Raises
    ------
    ValueError
        Invalid weights or geometry (from the checks above).
    """
    key = None
    if (weight.__class__ is np.ndarray and _plain(input_shape) and _plain(stride)
            and _plain(padding) and _plain(dilation) and _plain(groups)
            and _plain(kernel_size)):
        key = (id(weight), input_shape, stride, padding, dilation, groups, kernel_size)
        layer = _BY_CALL.get(key)
        if layer is not None and _same_content(weight, layer):
            return layer
    w = check_array(weight, "weight", 4)
    layer = prepare(w, geometry_for(input_shape, w.shape, stride, padding, dilation, groups,
                                    kernel_size))
    if key is not None:
        with _CACHE_LOCK:
            if len(_BY_CALL) >= 4 * CACHE_SIZE:
                _BY_CALL.clear()
            _BY_CALL[key] = layer
    return layer


def remember_conv(key: tuple, call: tuple) -> None:
    """Keep a call of :func:`lavaconv.utils.conv` in its fast path (bounded, locked).

    ``call`` is ``(layer, input bound, result dtype)``; ``key`` as for ``_BY_CONV``.
    """
    with _CACHE_LOCK:
        if len(_BY_CONV) >= 4 * CACHE_SIZE:
            _BY_CONV.clear()
        _BY_CONV[key] = call


def clear_cache() -> None:
    """Forget every prepared layer of :func:`prepare` (and free their memory)."""
    with _CACHE_LOCK:
        _LAYERS.clear()
        _BY_ID.clear()
        _BY_CALL.clear()
        _BY_CONV.clear()
