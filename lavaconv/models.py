"""Process models of :class:`lavaconv.Conv`: float, Lava-exact fixed point, and Loihi bit-accurate.

Structure (STYLE 4 and 16)
--------------------------
* A pure functional core, :func:`conv_step` ``(state, s_in) -> (state, a_out)`` and
  :func:`conv_run` for whole sequences, implementing Lava's timing (SPEC 6):
  ``a_out(t) = f(s_in(t - 1))``, ``a_out(1) = 0``. The state they carry is the
  *messages* of the last input (zeros initially), not ``f`` of them: ``a_buf`` is
  ``f(state)``, computed when it is emitted. Both are the same function of the
  inputs (``f(0) = 0`` for every model), but this way a whole sequence is one
  batched call of ``f`` on ``[state, s(1), ..., s(T-1)]`` whose result *is* the
  output, with no copy to shift it by one step. They never modify their arguments,
  so a failing step leaves the caller's state untouched.
* Thin stateful wrappers, the three models, which hold the state and share one step
  body (input checks, the message rule of SPEC 3, the timing). ``step`` computes
  ``f(s_in)`` at once, from the caller's array (binary spikes are counted as such
  inside the kernels, so no message frame is copied), and holds that result as
  ``a_buf`` until the next step emits it: the same function of the inputs as
  :func:`conv_step` (which states the timing and is kept as its reference, tested
  against the models), one convolution per step in a sequence of steps (two for the
  first step after a ``run``, which holds messages), and about 10-40 us less per step
  on ``mid``/``vgg`` at 0.1 % than copying the frame. ``run`` keeps the messages of
  its last frame, as above; after a step it computes its frame 0 from zero messages
  (no work on the event path, one frame's dense convolution per sample on the dense
  path) and writes the held ``a_buf`` there. They differ in one
  hook, :meth:`_PyConvModel._accumulate`, which turns a stack of messages into the
  model's dendritic accumulator values:

  ===========================  ======================  ==================================
  model                        tag                     ``_accumulate``
  ===========================  ======================  ==================================
  :class:`PyConvModelFloat`    ``floating_pt``         float64 sum, no clamp
  :class:`PyConvModelFixed`    ``fixed_pt``            exact sum, ``wrap_to_bits(., 24)``
  :class:`PyConvModelBitAcc`   ``bit_accurate_loihi``  exact sum of Loihi-encoded
                                                       weights, exponent, then wrap or
                                                       saturate to ``num_accum_bits``
  ===========================  ======================  ==================================

Weights are prepared once, at model construction (quantised, and re-laid-out by
the :class:`~lavaconv.engine.ConvEngine` on its first call), never per step.

Speed
-----
The synapse has no state of its own, so :meth:`~_PyConvModel.run` converts the
time-last input to frames once (the spike rule fused into the transpose,
:mod:`lavaconv.kernels.layout`) and convolves all ``T`` frames in one batched engine
call (split only beyond :data:`CHUNK_BYTES` of estimated working memory, see
:meth:`~_PyConvModel._frame_bytes`; the pieces are then copied into one output),
instead of looping over steps. ``benchmarks/test_bench_run.py`` compares it with
``T`` single kernel calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from . import _threads
from .dtypes import (
    F64_EXACT,
    INT32_LIMIT,
    INT64_LIMIT,
    SPIKES_AS_IS,
    check_array,
    int_result_dtype,
)
from .engine import ConvEngine, empty, prepare
from .geometry import validate_int_range
from .kernels import layout as _layout
from .process import Conv
from .quantize import (
    SignMode,
    as_sign_mode,
    clip_weights,
    determine_sign_mode,
    shift_exponent,
    to_integer_weights,
    truncate_weights,
)
from .utils import saturate_to_bits, wrap_to_bits

__all__ = [
    "PyConvModelBitAcc",
    "PyConvModelFixed",
    "PyConvModelFloat",
    "conv_run",
    "conv_step",
]

#: ``messages(src, dst)``: the message rule, from a (strided) ``(M, X, Y, C)`` input view
#: into a contiguous ``dst`` of the model's message dtype.
MessageRule = Callable[[np.ndarray, np.ndarray], None]
#: ``synapse(messages, out) -> accumulator``: ``(M, X, Y, C)`` -> ``(M, X_out, Y_out, C_out)``,
#: written into ``out`` (and returned) when ``out`` is not None.
Synapse = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]

#: Estimated working memory above which :func:`conv_run` splits the engine call.
CHUNK_BYTES = 2 * 2**30

_INT32_MAX = INT32_LIMIT - 1
_INT32 = np.dtype(np.int32)
_INT8 = np.dtype(np.int8)
_INT8_MAX = 127


# -- functional core ---------------------------------------------------------------
def conv_step(state: np.ndarray, s_in: np.ndarray, messages: MessageRule,
              synapse: Synapse) -> tuple[np.ndarray, np.ndarray]:
    """One timestep of Lava's ``run_spk``: ``(state, s_in) -> (new state, a_out)``.

    Parameters
    ----------
    state : ndarray, (X, Y, C_in)
        Messages of the previous input (zeros initially). Not modified.
    s_in : ndarray, (X, Y, C_in)
        This step's input, already validated.
    messages : callable
        The message rule, ``messages(src, dst)`` on stacks of frames.
    synapse : callable
        ``f`` on a stack of messages.

    Returns
    -------
    new_state : ndarray
        The messages of ``s_in``, a new array.
    a_out : ndarray, (X_out, Y_out, C_out)
        ``f(state)``: the output lags the input by one step.

    """
    new_state = empty(state.shape, state.dtype)
    messages(s_in[np.newaxis], new_state[np.newaxis])
    return new_state, synapse(state[np.newaxis], None)[0]


def conv_run(state: np.ndarray, frames: np.ndarray, messages: MessageRule, synapse: Synapse,
             chunk: int = 1 << 62, out: np.ndarray | None = None,
             frames_dtype: np.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``T >= 1`` timesteps of ``N`` independent samples at once.

    ``a_out[n, 0] = f(state[n])``, ``a_out[n, t] = f(m(frames[n, t - 1]))``; the new
    state is ``m(frames[n, T - 1])``: exactly ``T`` calls of :func:`conv_step`,
    computed as one call of ``synapse`` on ``N * T`` frames (or calls of at most
    ``chunk`` frames).

    Parameters
    ----------
    state : ndarray, (N, X, Y, C_in)
        Messages of each sample's previous input (may be a broadcast view). Not modified.
    frames : ndarray, (N, T, X, Y, C_in)
        Inputs, already validated (any strides, e.g. a view of time-last data).
    messages, synapse : callable
        As in :func:`conv_step`.
    chunk : int, optional
        Largest number of frames per ``synapse`` call.
    out : ndarray, (N, T, X_out, Y_out, C_out), C-contiguous, optional
        Where to write ``a_out`` (returned); new when omitted.
    frames_dtype : numpy.dtype, optional
        Dtype of the frames-first copy of the messages that ``synapse`` reads
        (``state.dtype`` by default); every message must fit it.

    Returns
    -------
    new_state : ndarray, (N, X, Y, C_in), ``state.dtype``
    a_out : ndarray, (N, T, X_out, Y_out, C_out)

    """
    n, t = frames.shape[:2]
    shape = state.shape[1:]
    buf = empty((n, t) + shape, state.dtype if frames_dtype is None else frames_dtype)
    buf[:, 0] = state
    if t > 1:
        for i in range(n):
            messages(frames[i, :t - 1], buf[i, 1:])
    new_state = empty(state.shape, state.dtype)
    messages(frames[:, t - 1], new_state)
    flat = buf.reshape((n * t,) + shape)
    if out is not None:  # every piece written in place
        flat_out = out.reshape((n * t,) + out.shape[2:])
        for start in range(0, n * t, chunk):
            synapse(flat[start:start + chunk], flat_out[start:start + chunk])
        return new_state, out
    out = synapse(flat[:chunk], None)
    if n * t > chunk:  # split: copy the pieces into one output
        whole = empty((n * t,) + out.shape[1:], out.dtype)
        whole[:chunk] = out
        for start in range(chunk, n * t, chunk):
            synapse(flat[start:start + chunk], whole[start:start + chunk])
        out = whole
    return new_state, out.reshape((n, t) + out.shape[1:])


# -- message layout ------------------------------------------------------------------
#: Contiguous frames up to this many entries take NumPy's serial SIMD loops: the tiled
#: transpose kernels took 35-40 us for ``mid``'s 128 KiB frame (mostly the parallel
#: launch, ~6 us with TBB, and scalar tile loops), ``np.not_equal`` about 9 us.
_FLAT_MAX = 1 << 22


def _spike_frames(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst = (src != 0)``, frames-first ``dst`` from a (possibly time-last) view ``src``."""
    if src.flags.c_contiguous and src.size <= _FLAT_MAX:
        np.not_equal(src, 0, out=dst)  # NumPy's SIMD loop
        return
    with _threads.launch():
        _layout.spikes_to_frames(src, dst)


def _copy_frames(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst = src`` cast to ``dst.dtype`` (values already checked to fit), any layout."""
    if src.flags.c_contiguous and src.size <= _FLAT_MAX:
        np.copyto(dst, src, casting="unsafe")  # exact: the payloads were validated
        return
    with _threads.launch():
        _layout.copy_to_frames(src, dst)


# -- the models --------------------------------------------------------------------
def _int32_fits(engine: ConvEngine, max_abs: int) -> bool:
    """Whether every exact sum of messages bounded by ``max_abs`` fits in int32."""
    return max_abs * engine.weight_l1 < INT32_LIMIT


def _into(out: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """Return ``values``, copied into ``out`` first when ``out`` is given (and differs)."""
    if out is None:
        return values
    if values is not out:
        np.copyto(out, values, casting="same_kind")
    return out


class _PyConvModel:
    """Shared body of the Conv models: state, input checks, message rule, timing.

    Subclasses set :attr:`tag` and :attr:`out_dtype`, build their engine with
    :meth:`_set_engine` at the end of ``__init__``, and implement the one hook
    :meth:`_accumulate`.
    """

    tag: ClassVar[str] = ""
    out_dtype: ClassVar[np.dtype] = np.dtype(np.int32)
    #: Graded payloads must be integers (the fixed-point models).
    _integer_messages: ClassVar[bool] = True
    #: Integer models: the graded payloads accepted (before any message rule), and
    #: what that range is, for error messages.
    _payload_range: ClassVar[tuple[int, int]] = (-(2**31), _INT32_MAX)
    _payload_range_name: ClassVar[str] = "int32, Lava's s_in port"

    def __init__(self, conv: Conv) -> None:
        if not isinstance(conv, Conv):
            raise ValueError(
                f"conv must be a lavaconv.Conv process, got {type(conv).__name__}; build "
                f"it with lavaconv.Conv(weight=..., input_shape=...)."
            )
        self.conv = conv
        self.geometry = conv.geometry
        self.num_message_bits: int = conv.num_message_bits.init
        if self.num_message_bits == 0:
            self._message_dtype = np.dtype(np.bool_)
        elif self._integer_messages:
            self._message_dtype = np.dtype(np.int32)  # payloads are checked to fit
        else:
            self._message_dtype = np.dtype(np.float64)
        self._engine: ConvEngine | None = None
        self._chunk = 1
        self.reset()

    def _set_engine(self, weight: np.ndarray) -> None:
        """Build the engine, check that exact sums fit in int64, size the run chunks.

        Raises
        ------
        ValueError
            (Integer models.) ``weight_l1 * largest accepted message >= 2**63``: some
            input the model accepts would give an exact sum beyond int64, so the
            model is refused here rather than failing at a step (SPEC 2).

        """
        self._engine = prepare(weight, self.geometry)
        if self._integer_messages:
            largest = self._largest_message()
            worst = largest * self._engine.weight_l1
            if worst >= INT64_LIMIT:
                what = ("binary spikes" if self.num_message_bits == 0 else
                        f"graded payloads, num_message_bits={self.num_message_bits}")
                raise ValueError(
                    f"weight is too large for exact int64 sums: the largest per-output "
                    f"sum of |weight| ({self._engine.weight_l1}) times the largest message "
                    f"{type(self).__name__} accepts ({largest}, {what}) is {worst} >= "
                    f"2**63; reduce the weight magnitudes."
                )
        self._chunk = max(1, CHUNK_BYTES // self._frame_bytes())
        # binary models whose spike sums are their output (no wrap, shift or cast:
        # the usual case): step hands a frame of SPIKES_AS_IS straight to the engine
        self._spike_dtype = (self._sum_dtype(1) if self.num_message_bits == 0
                             and self._sums_are_result(1) else None)

    def _largest_message(self) -> int:
        """Largest ``|message|`` the model accepts: 1 (binary), else the payload range."""
        if self.num_message_bits == 0:
            return 1
        lo, hi = self._payload_range
        return max(-lo, hi)

    def _sum_bytes(self, max_abs: int) -> int:
        """Bytes per output cell :meth:`_accumulate` allocates (result and temporaries)."""
        return self.out_dtype.itemsize

    def _frame_bytes(self) -> int:
        """Working memory of one frame in a batched :meth:`run`, in bytes.

        What is really allocated per frame: the message frame, the engine's result
        and the model's temporaries (:meth:`_sum_bytes`), and the dense path's
        input copies (:meth:`~lavaconv.engine.ConvEngine.dense_scratch_entries`) and
        accumulator scratch, both counted per frame (an upper bound: the dense path
        keeps them to one chunk of frames, :meth:`~lavaconv.engine.ConvEngine.dense_chunk`;
        the event path needs less).
        """
        g = self.geometry
        n_in = int(np.prod(g.input_shape))
        n_out = int(np.prod(g.output_shape))
        largest = self._largest_message()
        if self._integer_messages:
            acc = self._engine.accumulator_for(largest)
        else:
            acc = np.dtype(np.float64)
        n_pad = self._engine.dense_scratch_entries(self._message_dtype, acc)
        return (self._message_dtype.itemsize * n_in + self._sum_bytes(largest) * n_out
                + acc.itemsize * (n_pad + n_out))

    # -- state ---------------------------------------------------------------------
    # The model holds either the messages of the last input (``_state``, after
    # :meth:`run` and :meth:`reset`; ``a_buf`` is computed from them when read) or,
    # after :meth:`step`, only ``_a_buf`` itself (``_state`` is None): a step
    # convolves its input at once, straight from the caller's array, so that it
    # needs no copy of the messages. ``_state_bound`` bounds the messages behind
    # either.
    def _set_state(self, state: np.ndarray, bound: int) -> None:
        self._state: np.ndarray | None = state
        self._state_bound = bound
        self._a_buf: np.ndarray | None = None  # computed on the first read

    def _hold_buffer(self, a_buf: np.ndarray, bound: int) -> None:
        """Hold ``a_buf`` (what the next step emits) and no messages (after a step)."""
        self._state = None
        self._state_bound = bound
        self._a_buf = a_buf

    def _held_batch(self) -> int | None:
        """Return the batch size of the states held (after a batched :meth:`run`), or None."""
        held = self._a_buf if self._state is None else self._state
        return held.shape[0] if held.ndim == 4 else None

    def reset(self) -> None:
        """Zero ``a_buf`` (and forget any batch of states)."""
        self._set_state(np.zeros(self.geometry.input_shape, self._message_dtype), 0)

    @property
    def a_buf(self) -> np.ndarray:
        """The buffered output: what the next step emits (a new array).

        ``(X_out, Y_out, C_out)``, or ``(N, X_out, Y_out, C_out)`` after a batched
        :meth:`run`, of :attr:`out_dtype`.

        Notes
        -----
        After :meth:`run` and :meth:`reset` the model keeps the *messages* of the
        last input, not their convolution (see the module docstring), so the first
        read computes one convolution; :meth:`step` computes it at once. It is
        cached until the next of these, and every read returns a copy.
        """
        if self._a_buf is None:
            if self._state.ndim == 3:
                self._a_buf = self._accumulate(self._state[np.newaxis], self._state_bound)[0]
            else:
                self._a_buf = self._accumulate(self._state, self._state_bound)
        return self._a_buf.copy()

    # -- the hook ------------------------------------------------------------------
    def _sum_dtype(self, max_abs: int) -> np.dtype:
        """Dtype of the exact (or float64) sums for messages bounded by ``max_abs``.

        Integer models: int32 when every sum provably fits, else int64.
        """
        return int_result_dtype(max_abs * self._engine.weight_l1)

    def _sums_are_result(self, max_abs: int) -> bool:
        """Whether :meth:`_finish` returns the sums unchanged for messages bounded by ``max_abs``.

        True when the sums (:meth:`_sum_dtype`) are already in :attr:`out_dtype` and
        provably need no wrap, saturation or exponent.
        """
        raise NotImplementedError

    def _finish(self, sums: np.ndarray, max_abs: int,
                out: np.ndarray | None = None) -> np.ndarray:
        """Turn the sums into the model's dendritic accumulator values: the one hook.

        Parameters
        ----------
        sums : ndarray, (M, X_out, Y_out, C_out), :meth:`_sum_dtype`
            Exact sums of weight times message (float64 sums for the float model).
            May be modified in place.
        max_abs : int
            Bound on ``|messages|``.
        out : ndarray, (M, X_out, Y_out, C_out), :attr:`out_dtype`, optional
            Where to write the values (then returned); new when omitted.

        Returns
        -------
        ndarray, (M, X_out, Y_out, C_out), :attr:`out_dtype`

        """
        raise NotImplementedError

    def _accumulate(self, messages: np.ndarray, max_abs: int,
                    out: np.ndarray | None = None, binary: bool = False) -> np.ndarray:
        """Compute the accumulator values of a stack of messages: sums, then :meth:`_finish`.

        Parameters
        ----------
        messages : ndarray, (M, X, Y, C_in)
            Messages after the rule of SPEC 3: bool (binary), int32 or float64 (int8 in
            a batched :meth:`run` when they fit, see :meth:`_frames_dtype`).
        max_abs : int
            Bound on ``|messages|``.
        out : ndarray, (M, X_out, Y_out, C_out), :attr:`out_dtype`, optional
            Where to write the values (then returned); new when omitted.
        binary : bool, optional
            ``messages`` is the raw input of a binary model: every non-zero entry
            is one spike (the rule applied by the kernels, no converted copy).

        Returns
        -------
        ndarray, (M, X_out, Y_out, C_out), :attr:`out_dtype`

        """
        dtype = self._sum_dtype(max_abs)
        direct = out if out is not None and out.dtype == dtype and out.flags.c_contiguous \
            else None
        return self._finish(self._sums(messages, max_abs, dtype, direct, binary), max_abs, out)

    def _sums(self, messages: np.ndarray, max_abs: int, dtype: np.dtype,
              out: np.ndarray | None = None, binary: bool = False) -> np.ndarray:
        """Sum a stack of messages in ``dtype`` (:meth:`_sum_dtype`), by the auto path."""
        if dtype.kind == "f":
            return self._engine.compute(messages, dtype, out=out, binary=binary)
        return self._engine.exact(messages, input_max_abs=max_abs, out_dtype=dtype, out=out,
                                  binary=binary)

    def _apply_one(self, x: np.ndarray, bound: int,
                   out: np.ndarray | None = None) -> np.ndarray:
        """``f`` of one validated input frame ``x`` (message rule included), into ``out``.

        The kernels read ``x`` itself when the message rule needs no per-value
        transform (binary spikes, applied in the kernel, or graded payloads used as
        received) and they multiply its values exactly: not uint64 (NumPy's rules mix
        it with signed weights in float64), and for float payloads of the integer
        models only while ``bound * weight_l1 < 2**53`` (the scatter kernel multiplies
        and adds them in float64). Else the messages are made first
        (:meth:`_messages`), in the model's message dtype.
        """
        frames = x[np.newaxis]
        target = None if out is None else out[np.newaxis]
        binary = self.num_message_bits == 0
        dt = frames.dtype
        if (frames.flags.c_contiguous and dt.itemsize <= 8 and dt != np.uint64
                and (binary or self._plain_messages)
                and (binary or dt.kind != "f" or not self._integer_messages
                     or bound * self._engine.weight_l1 < F64_EXACT)):
            return self._accumulate(frames, bound, target, binary)[0]
        messages = empty(frames.shape, self._message_dtype)
        self._messages(frames, messages)
        return self._accumulate(messages, bound, target)[0]

    #: The graded message rule is "used as received" (no per-value transform), so
    #: :meth:`run` may scatter the time-last input in place.
    _plain_messages: ClassVar[bool] = True

    def _run_timelast(self, state: np.ndarray, state_bound: int, data: np.ndarray,
                      bound: int, direct: np.ndarray | None, frames_dtype: np.dtype
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`run` on the event path, reading the time-last input in place.

        Parameters
        ----------
        state : ndarray, (N, X, Y, C_in)
            The messages held (may be a broadcast view).
        state_bound : int
            Bound on ``|state|`` (0: all zero, nothing computed for them).
        data : ndarray, (N, X, Y, C_in, T), validated
            The input, time last.
        bound : int
            Bound on ``|messages|`` of ``data``.
        direct : ndarray, (N, T, X_out, Y_out, C_out), optional
            A C-contiguous frames-first view of the caller's ``out``.
        frames_dtype : numpy.dtype
            The frames path's copy (:meth:`_frames_dtype`): whether it would run on the
            VNNI kernel enters the choice between the two.

        Returns
        -------
        (new_state, a_out) or None
            None, before anything is written, when the input is not C-contiguous,
            needs a per-value message rule, or holds more events than the in-place
            scan pays for (:meth:`ConvEngine.timelast_pays`; the caller then runs the
            batched frames path, events or dense as ``exact`` chooses).
        """
        if not (data.flags.c_contiguous and data.dtype.itemsize <= 8 and data.dtype != np.uint64
                and (self.num_message_bits == 0 or self._plain_messages)):
            return None
        engine = self._engine
        n, n_t = data.shape[0], data.shape[-1]
        both = max(bound, state_bound)
        dtype = self._sum_dtype(both)
        # (priced as the frames path's dense call would run: on the VNNI kernel or not)
        dense_size = engine.dense_itemsize(frames_dtype, dtype, both, self.num_message_bits == 0)
        if n_t > 1 and not engine.timelast_pays(data, dtype.itemsize, dense_size):
            return None
        shape = (n, n_t) + self.geometry.output_shape
        sums = (direct if direct is not None and direct.dtype == dtype
                else empty(shape, dtype))
        # times 0 .. T-2 into frames 1 .. T-1 (frame 0 zeroed), then frame 0
        engine.timelast_events(data, self.num_message_bits == 0, dtype, sums, n_t - 1, 1)
        if state_bound == 0:  # the messages held are all zero: so are their sums
            pass
        elif n == 1:
            self._sums(state, state_bound, dtype, sums[:, 0])
        else:
            sums[:, 0] = self._sums(np.ascontiguousarray(state), state_bound, dtype)
        new_state = empty(state.shape, self._message_dtype)
        self._messages(data[..., n_t - 1], new_state)
        flat = sums.reshape((n * n_t,) + self.geometry.output_shape)
        flat_out = None if direct is None else direct.reshape(flat.shape)
        a_out = self._finish(flat, both, flat_out)
        return new_state, a_out.reshape(shape)

    def _frames_dtype(self, input_dtype: np.dtype, bound: int, state: np.ndarray,
                      state_bound: int) -> np.dtype:
        """Dtype of :meth:`run`'s frames-first copy of the messages.

        int8 for graded payloads used as received (integer models) when every one
        received (``bound``, or the input's own dtype) and held (``state``) fits it:
        a quarter of the int32 copy's bytes, and the dense kernels read int8 without
        a cast. Measured per step of 20-step graded runs against one ``step`` (one
        process, interleaved): ``depthwise`` 5.8x with int32 frames, 2.2x with int8
        (int32 input: 6.7x, 3.4x), ``dil_grp`` 1.52x, 1.36x, ``mid`` 1.13x, 1.01x.
        Else the message dtype.
        """
        if not (self.num_message_bits and self._integer_messages and self._plain_messages
                and (input_dtype == np.int8 or bound <= _INT8_MAX)):
            return self._message_dtype
        if state_bound > _INT8_MAX and state.size and (
                int(state.min()) < -_INT8_MAX - 1 or int(state.max()) > _INT8_MAX):
            return self._message_dtype
        return _INT8

    # -- shared step body ------------------------------------------------------------
    def _graded(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Graded payloads: used as received (cast to the message dtype)."""
        _copy_frames(src, dst)

    def _messages(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Apply the message rule (SPEC 3), fused with the time-last to frames-first copy."""
        if src.size == 0:
            return
        if self.num_message_bits == 0:
            _spike_frames(src, dst)  # any non-zero input is one spike
        else:
            self._graded(src, dst)

    def _validate(self, data: np.ndarray, name: str) -> tuple[np.ndarray, int]:
        """Check dtype and values of the input; return it for the kernels and a bound.

        Parameters
        ----------
        data : ndarray
            The input, any shape (already checked).
        name : str
            Argument name for error messages (``"s_in"`` or ``"data"``).

        Returns
        -------
        data : ndarray
            ``data``, or an exact conversion of it to a dtype the kernels take:
            non-native byte order to native; float16 to float32 (exact); long double
            (which the JIT kernels do not support) to bool for binary spikes (the
            spike rule itself), to int64 for integer graded payloads (exact once
            checked), and to float64 for the float model (rounded, as any payload of
            that model; values beyond the float64 range are rejected).
        bound : int
            A bound on ``|messages|``.

        Raises
        ------
        ValueError
            Before any state is touched: a dtype other than bool, integer or float,
            non-finite values, or invalid graded payloads (:meth:`_message_bound`).

        """
        data = check_array(data, name, messages=True)
        kind = data.dtype.kind
        long_double = kind == "f" and data.dtype.itemsize > 8
        if self.num_message_bits == 0:
            return (data != 0 if long_double else data), 1
        if self._integer_messages and kind == "f" and not np.array_equal(
                data, np.trunc(data)):
            raise ValueError(
                f"{name} holds non-integer graded payloads, but {type(self).__name__} "
                f"takes integer payloads (num_message_bits={self.num_message_bits}); "
                f"round them, or use PyConvModelFloat."
            )
        if kind in "iu" and data.dtype.itemsize == 1:
            info = np.iinfo(data.dtype)
            lo, hi = self._accepted_range()
            if lo <= info.min and info.max <= hi:
                # every value of the dtype is a valid payload, used as received: the
                # dtype's range bounds the messages, no pass over the data needed
                # (only for 1-byte dtypes: a wider dtype's range would choose wider
                # accumulators than the data needs)
                return data, max(-int(info.min), int(info.max))
        if data.size == 0:
            lo = hi = 0
        elif kind == "f":  # floor/ceil: a safe integer bound for float payloads
            lo, hi = int(np.floor(data.min())), int(np.ceil(data.max()))
        else:
            lo, hi = int(data.min()), int(data.max())
        bound = self._message_bound(lo, hi, max(-lo, hi), name)
        if long_double:
            if self._integer_messages:
                data = data.astype(np.int64)  # integral and inside int64: exact
            else:
                with np.errstate(over="ignore"):  # overflow gives inf, rejected below
                    wide = data.astype(np.float64)
                if not np.isfinite(wide).all():
                    raise ValueError(
                        f"{name} holds long double payloads in [{lo}, {hi}], beyond the "
                        f"float64 range of {type(self).__name__}.")
                data = wide
        return data, bound

    def _accepted_range(self) -> tuple[float, float]:
        """Return the graded payloads accepted and used as received (inclusive).

        No check fails and no message rule changes them: :attr:`_payload_range` for
        the integer models, every value for the float model.
        """
        if not self._integer_messages:
            return -np.inf, np.inf
        return self._payload_range

    def _message_bound(self, lo: int, hi: int, max_abs: int, name: str) -> int:
        """Check the graded payload range ``[lo, hi]``; return the bound for the hook.

        Integer models accept payloads in :attr:`_payload_range`.
        """
        if self._integer_messages:
            p_lo, p_hi = self._payload_range
            if lo < p_lo or hi > p_hi:
                raise ValueError(
                    f"{name} graded payloads must lie in [{p_lo}, {p_hi}] "
                    f"({self._payload_range_name}), got values in [{lo}, {hi}]."
                )
        return max_abs

    def apply(self, s_in: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Apply the model's synapse ``f`` to one frame, now: no delay, no state change.

        What :meth:`step` would emit one step after receiving ``s_in``: the same input
        checks, message rule (SPEC 3) and accumulator. For runtimes that keep the
        delay themselves (Lava's ``run_spk`` sends ``a_buf`` before it receives).

        Parameters
        ----------
        s_in : array_like, (X, Y, C_in)
            One frame, as for :meth:`step`.
        out : ndarray, (X_out, Y_out, C_out), :attr:`out_dtype`, optional
            Where to write the result (returned); new when omitted.

        Returns
        -------
        ndarray, (X_out, Y_out, C_out), :attr:`out_dtype`

        Raises
        ------
        ValueError
            As :meth:`step` (the model is not changed either way).
        """
        x = np.asarray(s_in)
        if x.shape != self.geometry.input_shape:
            raise ValueError(
                f"s_in must be one frame of shape {self.geometry.input_shape}, got "
                f"s_in.shape={x.shape}.")
        shape = self.geometry.output_shape
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != shape
                                or out.dtype != self.out_dtype or not out.flags.writeable):
            raise ValueError(
                f"out must be a writeable {self.out_dtype} array of shape {shape}, got "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")
        x, bound = self._validate(x, "s_in")
        if out is None:
            return self._apply_one(x, bound)
        self._apply_one(x, bound, out)
        return out

    def step(self, s_in: np.ndarray) -> np.ndarray:
        """One timestep: emit ``a_buf`` (the last step's result), then take ``s_in``.

        Parameters
        ----------
        s_in : array_like, (X, Y, C_in)
            Spikes: bool, integer or float (binary: any non-zero value is one spike).
            Any of NumPy's bool, integer and float dtypes (see :meth:`_validate`).

        Returns
        -------
        ndarray, (X_out, Y_out, C_out), :attr:`out_dtype`
            All zeros at the first step after construction or :meth:`reset`.

        Raises
        ------
        ValueError
            Wrong shape or dtype, non-finite values, invalid graded payloads, or a
            batch of states held (call :meth:`reset`). The state is then unchanged.

        """
        x = np.asarray(s_in)
        if (self._spike_dtype is not None and self._state is None and x.dtype in SPIKES_AS_IS
                and x.shape == self.geometry.input_shape and x.flags.c_contiguous
                and self._a_buf.ndim == 3):
            # the common case, decided once per model (_set_engine): what the general
            # path below does for it, without its checks and conversions (none apply)
            a_out = self._a_buf
            self._a_buf = self._sums(x[np.newaxis], 1, self._spike_dtype, binary=True)[0]
            return a_out
        held = self._held_batch()
        if held is not None:
            raise ValueError(
                f"the model holds a batch of {held} states from a batched "
                f"run; call reset() before stepping a single sample."
            )
        if x.shape != self.geometry.input_shape:
            raise ValueError(
                f"s_in must be one frame of shape {self.geometry.input_shape}, got "
                f"s_in.shape={x.shape}; use run() for sequences (time last)."
            )
        x, bound = self._validate(x, "s_in")
        if self._a_buf is not None:
            a_out = self._a_buf  # handed over: the model forgets it below
        elif self._state_bound == 0:  # zero messages: f(0) = 0
            a_out = np.zeros(self.geometry.output_shape, self.out_dtype)
        else:
            a_out = self._accumulate(self._state[np.newaxis], self._state_bound)[0]
        # f(s_in) now, from the caller's array (no copy of its messages is kept)
        self._hold_buffer(self._apply_one(x, bound), bound)
        return a_out

    def run(self, data: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Run a whole sequence: ``T = data.shape[-1]`` timesteps (SPEC 6 timing).

        Equivalent to ``T`` calls of :meth:`step` (the delay carries over between
        calls), computed as one batched kernel call.

        Parameters
        ----------
        data : array_like, (X, Y, C_in, T) or (N, X, Y, C_in, T)
            Time is the last axis (Lava's RingBuffer convention); an optional leading
            axis holds ``N`` independent samples. Dtypes as for :meth:`step`.
        out : ndarray, optional
            A writeable array of the result's shape and :attr:`out_dtype` to write
            into and return (NumPy's ``out=``). An array that an earlier ``run``
            returned is written in place with no copy: a long simulation run chunk
            by chunk then reuses one buffer instead of faulting in fresh pages for
            every chunk (measured 5.5 ms of a 30 ms 100-step ``vgg`` run). Other
            layouts receive one copy.

        Returns
        -------
        ndarray, (X_out, Y_out, C_out, T) or (N, X_out, Y_out, C_out, T)
            ``out[..., 0]`` is the buffered state (zeros on a fresh model) and
            ``out[..., t]`` the result of ``data[..., t - 1]``. A time-last view of a
            frames-first array (not C-contiguous; ``np.ascontiguousarray`` copies it),
            or ``out`` when given.

        Raises
        ------
        ValueError
            Wrong shape or dtype, non-finite values, invalid graded payloads, a
            batch size that differs from the one the model holds, or an ``out`` of the
            wrong shape or dtype. The state is then unchanged.

        Notes
        -----
        After a batched run the model holds one state per sample; a further batched
        run must have the same ``N``, and :meth:`step` needs a :meth:`reset` first. A
        batched run on an unbatched model starts every sample from its current state.

        """
        x = np.asarray(data)
        if x.ndim not in (4, 5):
            raise ValueError(
                f"data must be (X, Y, C, T) or (N, X, Y, C, T) with time last, got "
                f"data.shape={x.shape}."
            )
        batched = x.ndim == 5
        if tuple(x.shape[-4:-1]) != self.geometry.input_shape:
            raise ValueError(
                f"data must have shape {'(N,) + ' if batched else ''}"
                f"{self.geometry.input_shape} + (T,), got data.shape={x.shape}."
            )
        held = self._held_batch()
        if batched:
            if held is not None and held != x.shape[0]:
                raise ValueError(
                    f"the model holds states of a batch of {held} samples, got "
                    f"data with N={x.shape[0]}; call reset() to start a new batch."
                )
        elif held is not None:
            raise ValueError(
                f"the model holds states of a batch of {held} samples; pass "
                f"data of shape (N, X, Y, C, T) with N={held}, or reset()."
            )
        expected = ((x.shape[0],) if batched else ()) + self.geometry.output_shape + (
            x.shape[-1],)
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != expected
                                or out.dtype != self.out_dtype or not out.flags.writeable):
            raise ValueError(
                f"out must be a writeable {self.out_dtype} array of shape {expected}, got "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}."
            )
        x, bound = self._validate(x, "data")
        # after a step only a_buf is held: frame 0 is then computed from zero
        # messages (no work on the event path, a wasted frame on the dense one)
        # and overwritten with it
        buffered = self._a_buf if self._state is None else None
        if buffered is None:
            state, state_bound = self._state, self._state_bound
        else:
            state, state_bound = np.zeros(self.geometry.input_shape, self._message_dtype), 0
        if batched:
            if state.ndim == 3:  # (one sample: a plain view, so the kernels see no
                # read-only array, which would compile another signature of them)
                state = (state[np.newaxis] if x.shape[0] == 1 else
                         np.broadcast_to(state, (x.shape[0],) + state.shape))
            frames = np.moveaxis(x, -1, 1)
        else:
            state = state[np.newaxis]
            frames = np.moveaxis(x, -1, 0)[np.newaxis]
        n, t = frames.shape[:2]
        if t == 0:
            return out if out is not None else np.zeros(expected, self.out_dtype)
        # frames-first view of ``out``: written in place when it is C-contiguous
        direct = None
        if out is not None:
            direct = np.moveaxis(out, -1, 1) if batched else np.moveaxis(out, -1, 0)[None]
            if not direct.flags.c_contiguous:
                direct = None
        frames_dtype = self._frames_dtype(x.dtype, bound, state, state_bound)
        done = self._run_timelast(state, state_bound, x if batched else x[np.newaxis], bound,
                                  direct, frames_dtype)
        if done is not None:
            new_state, a_out = done
        else:
            both = max(bound, state_bound)
            new_state, a_out = conv_run(state, frames, self._messages,
                                        lambda m, o: self._accumulate(m, both, o),
                                        self._chunk, out=direct,
                                        frames_dtype=frames_dtype)
        if buffered is not None:
            a_out[:, 0] = buffered
        self._set_state(new_state if batched else new_state[0], bound)
        result = np.moveaxis(a_out, 1, -1) if batched else np.moveaxis(a_out[0], 0, -1)
        if out is None:
            return result
        if direct is None:
            out[...] = result
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conv!r})"

    def _options(self) -> dict:
        """Return the keyword arguments this model was built with (beyond ``conv``)."""
        return {}

    def __reduce__(self):
        """Pickle compactly: the process, the options and the held state.

        The prepared layer is not shipped: unpickling rebuilds the model, which
        finds its layer through :func:`lavaconv.engine.prepare` (built once per
        process). The held state is the messages after :meth:`run` and :meth:`reset`
        (travelling only when they are not all zero), and the buffered output after
        :meth:`step` (output-sized; nothing when it is all zero).
        """
        if self._state is None:  # after a step: the buffered output itself
            if not self._a_buf.any():
                return (_rebuild, (type(self), self.conv, self._options(), None, 0))
            return (_rebuild, (type(self), self.conv, self._options(), None,
                               self._state_bound, self._a_buf))
        state = None if self._state_bound == 0 and self._state.ndim == 3 else self._state
        return (_rebuild, (type(self), self.conv, self._options(), state, self._state_bound))


def _rebuild(cls: type, conv: Conv, options: dict, state: np.ndarray | None,
             bound: int, a_buf: np.ndarray | None = None) -> _PyConvModel:
    """Unpickle a model (see ``_PyConvModel.__reduce__``).

    Construction warnings were already given where the model was first built.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cls(conv, **options)
    if a_buf is not None:
        model._hold_buffer(a_buf, bound)
    elif state is not None:
        model._set_state(state, bound)
    return model


class PyConvModelFloat(_PyConvModel):
    """Float synapse (Lava's ``floating_pt`` model).

    Weights as given, in float64; graded payloads as given (float64); the sum is
    float64 with no clamp; the exponent and weight bits are ignored.

    Parameters
    ----------
    conv : Conv
        The process.

    """

    tag: ClassVar[str] = "floating_pt"
    out_dtype: ClassVar[np.dtype] = np.dtype(np.float64)
    _integer_messages: ClassVar[bool] = False

    def __init__(self, conv: Conv) -> None:
        super().__init__(conv)
        self.weight = np.asarray(conv.weight.init, np.float64)
        self._set_engine(self.weight)

    def _sum_dtype(self, max_abs: int) -> np.dtype:
        return np.dtype(np.float64)

    def _sums_are_result(self, max_abs: int) -> bool:
        return True

    def _finish(self, sums: np.ndarray, max_abs: int,
                out: np.ndarray | None = None) -> np.ndarray:
        """Float64 sum, no clamp."""
        return _into(out, sums)


class PyConvModelFixed(_PyConvModel):
    """Fixed-point synapse exactly as Lava 0.10's ``PyConvModelFixed`` (``fixed_pt``).

    Weights truncated toward zero to integers (Lava's int32 variable); graded payloads
    used as received; the exact integer sum is wrapped to 24 bits
    (:func:`~lavaconv.utils.wrap_to_bits`, what Lava's ``signed_clamp`` does); int32
    output. ``weight_exp`` and ``num_weight_bits`` are ignored, as in Lava (a
    ``UserWarning`` is issued once, at construction, when they are not the defaults;
    see lava-nc/lava#803 and :class:`PyConvModelBitAcc`).

    Parameters
    ----------
    conv : Conv
        The process.

    Raises
    ------
    ValueError
        If some accepted input could give an exact sum of ``2**63`` or more:
        ``max_k sum |weight[k]|`` times the largest message (1 for binary spikes,
        ``2**31`` for graded payloads, which must fit in int32) must stay below
        ``2**63``.

    Notes
    -----
    Lava computes the sum in float64 and casts it to int32, so it agrees with this
    exact sum whenever ``|sum| < 2**31``; beyond that Lava's cast is undefined and this
    model stays exact-then-wrap. Non-integer graded payloads are rejected (Lava would
    truncate the float sum).

    """

    tag: ClassVar[str] = "fixed_pt"
    #: Accumulator width (Lava: ``signed_clamp(x, bits=24)``).
    num_accum_bits: ClassVar[int] = 24

    def __init__(self, conv: Conv) -> None:
        super().__init__(conv)
        exp, nwb = conv.weight_exp.init, conv.num_weight_bits.init
        if exp != 0 or nwb != 8:
            warnings.warn(
                f"PyConvModelFixed ignores weight_exp={exp} and num_weight_bits={nwb}, as "
                f"Lava 0.10's fixed-point Conv model does (lava-nc/lava#803); use "
                f"PyConvModelBitAcc to apply them.",
                UserWarning,
                stacklevel=2,
            )
        self.weight = to_integer_weights(conv.weight.init)
        self.weight.setflags(write=False)
        self._set_engine(self.weight)

    def _sums_are_result(self, max_abs: int) -> bool:
        # proven |sum| < 2**23: the wrap is the identity (and the sums are int32)
        return max_abs * self._engine.weight_l1 < 1 << (self.num_accum_bits - 1)

    def _sum_bytes(self, max_abs: int) -> int:
        if self._sums_are_result(max_abs):
            return 4  # int32 sums are the result
        return 8 + 8 + 4  # int64 sums, their wrap, the int32 result

    def _finish(self, sums: np.ndarray, max_abs: int,
                out: np.ndarray | None = None) -> np.ndarray:
        """Exact sum, then ``wrap_to_bits(., 24)``."""
        if not self._sums_are_result(max_abs):
            sums = wrap_to_bits(sums, self.num_accum_bits)
        return _into(out, sums if sums.dtype == _INT32 else sums.astype(_INT32))


_EXPONENT_MODES = ("post_accumulate", "per_weight")
_ACCUM_OVERFLOW = ("wrap", "saturate")
_MESSAGE_OVERFLOW = ("error", "wrap", "saturate")


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got "
                         f"{name}={value!r}.")
    return value


class PyConvModelBitAcc(_PyConvModel):
    """Loihi bit-accurate synapse (``bit_accurate_loihi``; SPEC 5, fixes lava-nc/lava#803).

    Weights are encoded once, as Lava's Dense bit-accurate model does: truncated toward
    zero to integers, clipped to 8 bits for the sign mode, truncated to
    ``num_weight_bits``. The exact sum of weighted messages is scaled by
    ``2**weight_exp`` and wrapped or saturated to ``num_accum_bits``; int32 output.

    Parameters
    ----------
    conv : Conv
        The process.
    sign_mode : SignMode, int or str, optional
        MIXED, EXCITATORY or INHIBITORY; determined from the weights when omitted
        (:func:`~lavaconv.quantize.determine_sign_mode`).
    exponent_mode : {"post_accumulate", "per_weight"}, optional
        ``"post_accumulate"`` (default, as Lava Dense): shift the exact sum, ``<< e`` or
        floor ``>> -e``. ``"per_weight"``: shift each encoded weight (floor) before
        accumulating, as the Loihi 1 tools nengo-loihi and brian2-loihi do. They differ
        for negative exponents.
    num_accum_bits : int, optional
        Accumulator width, 1..32 (default 24).
    accumulator_overflow : {"wrap", "saturate"}, optional
        :func:`~lavaconv.utils.wrap_to_bits` (default, Loihi's dendritic accumulator)
        or :func:`~lavaconv.utils.saturate_to_bits`, applied to the exact (scaled) sum.
    message_overflow : {"error", "wrap", "saturate"}, optional
        Graded payloads outside the signed ``num_message_bits`` range
        ``[-2**(b-1), 2**(b-1) - 1]``: a ``ValueError`` with no state changed (default),
        or wrapped or saturated to ``b`` bits. Payloads must be integers of magnitude
        below ``2**63`` in every mode (else ``ValueError``, no state changed).

    Attributes
    ----------
    weight : ndarray of int64
        The encoded weights the engine uses (after the exponent in ``"per_weight"``
        mode), read-only.
    sign_mode : SignMode
        The sign mode used.

    Raises
    ------
    ValueError
        Invalid options, or weights for which some accepted input could give an
        exact sum of ``2**63`` or more (``max_k sum |weight[k]|`` times the largest
        message, 1 for binary spikes and ``2**(b-1)`` for graded ones), or a scaled
        sum of ``2**62`` or more.

    """

    tag: ClassVar[str] = "bit_accurate_loihi"
    #: Any integer payload of magnitude below 2**63 is accepted (then checked against,
    #: wrapped or saturated to the ``b``-bit range).
    _payload_range: ClassVar[tuple[int, int]] = (-(2**63) + 1, 2**63 - 1)
    _payload_range_name: ClassVar[str] = "magnitude below 2**63, exact in int64"

    def __init__(
        self,
        conv: Conv,
        *,
        sign_mode: SignMode | int | str | None = None,
        exponent_mode: str = "post_accumulate",
        num_accum_bits: int = 24,
        accumulator_overflow: str = "wrap",
        message_overflow: str = "error",
    ) -> None:
        super().__init__(conv)
        self.exponent_mode = _check_choice(exponent_mode, "exponent_mode", _EXPONENT_MODES)
        self.accumulator_overflow = _check_choice(accumulator_overflow, "accumulator_overflow",
                                                  _ACCUM_OVERFLOW)
        self.message_overflow = _check_choice(message_overflow, "message_overflow",
                                              _MESSAGE_OVERFLOW)
        self.num_accum_bits = validate_int_range(num_accum_bits, "num_accum_bits", 1, 32)
        self._plain_messages = self.message_overflow == "error"
        weights = to_integer_weights(conv.weight.init)
        if sign_mode is None:
            mode = determine_sign_mode(weights) if weights.size else SignMode.EXCITATORY
        else:
            mode = as_sign_mode(sign_mode)
            if mode == SignMode.NULL:
                raise ValueError("sign_mode must be MIXED, EXCITATORY or INHIBITORY, got "
                                 "sign_mode=SignMode.NULL.")
        self.sign_mode = mode
        self.weight_exp: int = conv.weight_exp.init
        self._built_with = {"sign_mode": sign_mode, "exponent_mode": exponent_mode,
                            "num_accum_bits": num_accum_bits,
                            "accumulator_overflow": accumulator_overflow,
                            "message_overflow": message_overflow}
        encoded = truncate_weights(clip_weights(weights, mode, 8), mode,
                                   conv.num_weight_bits.init).astype(np.int64)
        if self.exponent_mode == "per_weight":
            encoded = shift_exponent(encoded, self.weight_exp)
        self.weight = encoded
        self.weight.setflags(write=False)
        self._set_engine(self.weight)  # checks the unscaled sums fit in int64
        b = self.num_message_bits
        worst = self._sum_bound(self._largest_message())
        if worst >= 2**62:
            raise ValueError(
                f"the scaled sum may reach {worst} and overflow int64; reduce "
                f"num_message_bits ({b}) or weight_exp ({self.weight_exp})."
            )

    def _options(self) -> dict:
        return dict(self._built_with)

    def _sum_bound(self, max_abs: int) -> int:
        """Bound on ``|sum|`` after the exponent, for messages bounded by ``max_abs``."""
        bound = max_abs * self._engine.weight_l1
        if self.exponent_mode == "post_accumulate":
            e = self.weight_exp
            bound = bound << e if e > 0 else -((-bound) >> -e)  # ceil for e < 0
        return bound

    def _largest_message(self) -> int:
        """Binary 1; graded ``2**(b-1)`` (checked, or after the wrap or saturation)."""
        b = self.num_message_bits
        return 1 if b == 0 else 1 << (b - 1)

    def _sums_are_result(self, max_abs: int) -> bool:
        return (not self._shifts() and _int32_fits(self._engine, max_abs)
                and self._sum_bound(max_abs) < 1 << (self.num_accum_bits - 1))

    def _sum_bytes(self, max_abs: int) -> int:
        if self._sums_are_result(max_abs):
            return 4  # int32 sums are the result
        return 8 + 8 + 8 + 4  # int64 sums, exponent, wrap or saturate, int32 result

    def _shifts(self) -> bool:
        """Whether the exponent is applied to the sum."""
        return self.exponent_mode == "post_accumulate" and self.weight_exp != 0

    def _accepted_range(self) -> tuple[int, int]:
        """Return the signed ``b``-bit message range (inside the int64 payload range)."""
        b = self.num_message_bits
        return -(1 << (b - 1)), (1 << (b - 1)) - 1

    def _message_bound(self, lo: int, hi: int, max_abs: int, name: str) -> int:
        """Apply the base checks (payloads inside int64), then the ``b``-bit message rule."""
        max_abs = super()._message_bound(lo, hi, max_abs, name)
        b = self.num_message_bits
        m_lo, m_hi = self._accepted_range()
        if m_lo <= lo and hi <= m_hi:
            return max_abs
        if self.message_overflow == "error":
            raise ValueError(
                f"{name} holds graded payloads in [{lo}, {hi}], outside the signed "
                f"{b}-bit range [{m_lo}, {m_hi}] of num_message_bits={b}; rescale them, "
                f"or pass message_overflow='wrap' or 'saturate'."
            )
        return min(max_abs, 1 << (b - 1))

    def _graded(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Graded payloads: checked (``"error"``), or wrapped or saturated to ``b`` bits.

        The payloads were validated to be integers of magnitude below ``2**63``, so
        their cast to int64 is exact and the rule applies to the true values.
        """
        if self.message_overflow == "error":
            _copy_frames(src, dst)
            return
        wide = np.empty(dst.shape, np.int64)
        _copy_frames(src, wide)
        fn = wrap_to_bits if self.message_overflow == "wrap" else saturate_to_bits
        dst[...] = fn(wide, self.num_message_bits)

    def _sum_dtype(self, max_abs: int) -> np.dtype:
        if self._shifts():
            return np.dtype(np.int64)  # the shifted sum may leave int32
        return super()._sum_dtype(max_abs)

    def _finish(self, sums: np.ndarray, max_abs: int,
                out: np.ndarray | None = None) -> np.ndarray:
        """Exact sum, ``2**weight_exp`` (post-accumulation mode), then wrap or saturate."""
        if self._shifts():
            sums = shift_exponent(sums, self.weight_exp)
        if self._sum_bound(max_abs) < 1 << (self.num_accum_bits - 1):
            pass  # proven inside the accumulator range: no overflow to apply
        elif self.accumulator_overflow == "wrap":
            sums = wrap_to_bits(sums, self.num_accum_bits)
        else:
            sums = saturate_to_bits(sums, self.num_accum_bits)
        return _into(out, sums if sums.dtype == _INT32 else sums.astype(_INT32))
