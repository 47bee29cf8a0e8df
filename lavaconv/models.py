"""Process models of :class:`lavaconv.Conv`: float, Lava-exact fixed point, and Loihi bit-accurate.

Structure (STYLE 4 and 16)
--------------------------
* A pure functional core: :func:`conv_step` ``(state, s_in) -> (state, a_out)`` and
  :func:`conv_run` for a whole sequence. They implement Lava's timing (SPEC 6):
  emit the buffered result of the previous step, then buffer ``f(s_in(t))``. They never
  modify their arguments, so a failing ``f`` leaves the caller's state untouched.
* Thin stateful wrappers, the three models, which hold ``a_buf`` and share one step
  body (:meth:`_PyConvModel._synapse`: input checks, the message rule, then the hook).
  They differ in one hook, :meth:`_PyConvModel._accumulate`, which turns a stack of
  messages into the model's dendritic accumulator values:

  ========================  ==============  =========================================
  model                     tag             ``_accumulate``
  ========================  ==============  =========================================
  :class:`PyConvModelFloat`  ``floating_pt``  float64 sum, no clamp
  :class:`PyConvModelFixed`  ``fixed_pt``     exact int sum, then ``wrap_to_bits(., 24)``
  :class:`PyConvModelBitAcc` ``bit_accurate`` exact sum of Loihi-encoded weights,
                                              exponent, then wrap or saturate to
                                              ``num_accum_bits``
  ========================  ==============  =========================================

Weights are prepared once, at model construction (quantised, and re-laid-out by
the :class:`~lavaconv.engine.ConvEngine` on its first call), never per step.

Speed
-----
The synapse has no state, so :meth:`run` convolves all ``T`` frames of a sequence in
one batched engine call (in chunks of at most about 64 MiB of working memory) instead
of looping over steps; the delay is a one-frame shift of the output. The chunk size
and the ratio to ``T`` single kernel calls are measured in
``benchmarks/test_bench_run.py``.
"""

from __future__ import annotations

import warnings
from typing import Callable, ClassVar, Optional, Tuple

import numpy as np

from .engine import ConvEngine
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

#: ``synapse(frames, out)``: messages ``(M, X, Y, C)`` -> ``out[...] = f(frames)``.
Synapse = Callable[[np.ndarray, np.ndarray], None]

#: Working-memory budget of one batched engine call in :func:`conv_run`.
CHUNK_BYTES = 64 * 2**20

_INT32_MAX = 2**31 - 1


# -- functional core ---------------------------------------------------------------
def conv_step(state: np.ndarray, s_in: np.ndarray, synapse: Synapse) -> Tuple[np.ndarray, np.ndarray]:
    """One timestep of Lava's ``run_spk``: ``(a_buf, s_in) -> (new a_buf, a_out)``.

    Parameters
    ----------
    state : ndarray, (X_out, Y_out, C_out)
        ``a_buf``: the previous step's result. Not modified.
    s_in : ndarray, (X, Y, C_in)
        This step's input, already validated.
    synapse : callable
        ``synapse(frames, out)`` writes ``f(frames)`` into ``out`` for a stack of frames.

    Returns
    -------
    new_state : ndarray
        ``f(s_in)``, a new array.
    a_out : ndarray
        ``state`` itself: the output lags the input by one step.
    """
    new_state = np.empty(state.shape, state.dtype)
    synapse(s_in[np.newaxis], new_state[np.newaxis])
    return new_state, state


def _apply_chunks(synapse: Synapse, frames: np.ndarray, out: np.ndarray, chunk: int) -> None:
    for start in range(0, frames.shape[0], chunk):
        synapse(frames[start:start + chunk], out[start:start + chunk])


def conv_run(
    state: np.ndarray, frames: np.ndarray, synapse: Synapse, chunk: int = 1 << 30
) -> Tuple[np.ndarray, np.ndarray]:
    """``T`` timesteps of ``N`` independent samples at once.

    ``a_out[n, 0] = state[n]``, ``a_out[n, t] = f(frames[n, t - 1])`` for ``t >= 1``,
    and the new state is ``f(frames[n, T - 1])``: exactly ``T`` calls of
    :func:`conv_step`, computed as batched calls of ``synapse``.

    Parameters
    ----------
    state : ndarray, (N, X_out, Y_out, C_out)
        ``a_buf`` of each sample (may be a broadcast view). Not modified.
    frames : ndarray, (N, T, X, Y, C_in)
        Inputs, already validated (any strides).
    synapse : callable
        As in :func:`conv_step`.
    chunk : int, optional
        Largest number of frames per ``synapse`` call.

    Returns
    -------
    new_state : ndarray, (N, X_out, Y_out, C_out)
    a_out : ndarray, (N, T, X_out, Y_out, C_out)
    """
    n, t = frames.shape[:2]
    a_out = np.empty((n, t) + state.shape[1:], state.dtype)
    if t == 0:
        return np.array(state), a_out
    a_out[:, 0] = state
    for i in range(n):
        _apply_chunks(synapse, frames[i, :t - 1], a_out[i, 1:], chunk)
    new_state = np.empty(state.shape, state.dtype)
    _apply_chunks(synapse, frames[:, t - 1], new_state, chunk)
    return new_state, a_out


# -- the models --------------------------------------------------------------------
def _contiguous_frames(frames: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous copy of a (T, X, Y, C) view in ``dtype`` (the layout kernel)."""
    if frames.flags.c_contiguous:
        return frames.astype(dtype)
    dst = np.empty(frames.shape, dtype)
    if frames.size:
        _layout.copy_to_frames(frames, dst)
    return dst


class _PyConvModel:
    """Shared body of the Conv models: state, input checks, message rule, timing.

    Subclasses set :attr:`tag` and :attr:`out_dtype`, prepare ``self._engine`` and
    implement the one hook :meth:`_accumulate`.
    """

    tag: ClassVar[str] = ""
    out_dtype: ClassVar[np.dtype] = np.dtype(np.int32)
    #: Graded payloads must be integers (the fixed-point models).
    _integer_messages: ClassVar[bool] = True

    def __init__(self, conv: Conv) -> None:
        if not isinstance(conv, Conv):
            raise ValueError(
                f"conv must be a lavaconv.Conv process, got {type(conv).__name__}; build "
                f"it with lavaconv.Conv(weight=..., input_shape=...)."
            )
        self.conv = conv
        self.geometry = conv.geometry
        self.num_message_bits: int = conv.num_message_bits.init
        self._engine: Optional[ConvEngine] = None
        g = self.geometry
        xp = g.input_shape[0] + 2 * g.padding[0]
        yp = g.input_shape[1] + 2 * g.padding[1]
        per_frame = 8 * (2 * int(np.prod(g.output_shape)) + xp * yp * g.input_shape[2])
        self._chunk = max(1, CHUNK_BYTES // per_frame)
        self.reset()

    # -- state ---------------------------------------------------------------------
    def reset(self) -> None:
        """Zero ``a_buf`` (and forget any batch of states)."""
        self._state = np.zeros(self.geometry.output_shape, self.out_dtype)

    @property
    def a_buf(self) -> np.ndarray:
        """The buffered result, emitted at the next step: a copy, ``(X_out, Y_out, C_out)``
        (or ``(N, X_out, Y_out, C_out)`` after a batched :meth:`run`)."""
        return self._state.copy()

    # -- the hook ------------------------------------------------------------------
    def _accumulate(self, messages: np.ndarray, out: np.ndarray, max_abs: int) -> None:
        """Write the model's accumulator values for ``messages`` into ``out``.

        Parameters
        ----------
        messages : ndarray, (M, X, Y, C_in), contiguous
            bool (binary), integer or float64 messages after the message rule.
        out : ndarray, (M, X_out, Y_out, C_out), :attr:`out_dtype`
            Destination.
        max_abs : int
            Bound on ``|messages|`` (1 for binary).
        """
        raise NotImplementedError

    # -- shared step body ------------------------------------------------------------
    def _graded_messages(self, frames: np.ndarray) -> np.ndarray:
        """Message rule for graded payloads (integer models: as received, as integers)."""
        dtype = np.int64 if frames.dtype.kind == "f" else frames.dtype
        return _contiguous_frames(frames, dtype)

    def _synapse(self, frames: np.ndarray, out: np.ndarray, max_abs: int) -> None:
        """``f``: message rule then the accumulator hook, for a stack of frames."""
        if self.num_message_bits == 0:
            # SPEC 3: any non-zero input is one spike (Lava's cast to bool), fused with
            # the time-last to frames-first transpose.
            messages = np.empty(frames.shape, np.bool_)
            if frames.size:
                _layout.spikes_to_frames(frames, messages)
        else:
            messages = self._graded_messages(frames)
        self._accumulate(messages, out, max_abs)

    def _check_graded_range(self, lo: int, hi: int) -> Optional[str]:
        """Allowed graded range, or ``None`` if out-of-range payloads are handled."""
        return None

    def _validate(self, data: np.ndarray, name: str) -> int:
        """Check dtype and values of the input; return a bound on ``|messages|``.

        Raises ``ValueError`` before any state is touched.
        """
        if data.dtype.kind not in "biuf":
            raise ValueError(
                f"{name} must be bool, integer or float spikes, got dtype {data.dtype}."
            )
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise ValueError(f"{name} contains NaN or infinite values; inputs must be finite.")
        if self.num_message_bits == 0:
            return 1
        if data.size == 0:
            return 0
        if self._integer_messages and data.dtype.kind == "f" and not np.array_equal(
                data, np.trunc(data)):
            raise ValueError(
                f"{name} holds non-integer graded payloads, but {type(self).__name__} "
                f"takes integer payloads (num_message_bits={self.num_message_bits}); "
                f"round them, or use PyConvModelFloat."
            )
        # floor/ceil: exact for integers, a safe integer bound for float payloads
        if data.dtype.kind == "f":
            lo, hi = int(np.floor(data.min())), int(np.ceil(data.max()))
        else:
            lo, hi = int(data.min()), int(data.max())
        return self._message_bound(lo, hi, max(-lo, hi), name)

    def _message_bound(self, lo: int, hi: int, max_abs: int, name: str) -> int:
        """Check the graded payload range; return the bound passed to the hook."""
        if self._integer_messages and max_abs > _INT32_MAX:
            raise ValueError(
                f"{name} graded payloads must fit in int32 (Lava's s_in port), got values "
                f"in [{lo}, {hi}]."
            )
        return max_abs

    def _frames_check(self, data: np.ndarray, name: str, lead: str) -> None:
        if tuple(data.shape[-3:]) != self.geometry.input_shape:
            raise ValueError(
                f"{name} must have shape {lead}{self.geometry.input_shape}, got "
                f"{name}.shape={data.shape}."
            )

    def step(self, s_in: np.ndarray) -> np.ndarray:
        """One timestep: return ``a_buf`` (last step's result), then buffer ``f(s_in)``.

        Parameters
        ----------
        s_in : array_like, (X, Y, C_in)
            Spikes: bool, integer or float (binary: any non-zero value is one spike).

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
        if self._state.ndim != 3:
            raise ValueError(
                f"the model holds a batch of {self._state.shape[0]} states from a batched "
                f"run; call reset() before stepping a single sample."
            )
        if x.ndim != 3:
            raise ValueError(
                f"s_in must be one frame of shape {self.geometry.input_shape}, got "
                f"s_in.shape={x.shape}; use run() for sequences (time last)."
            )
        self._frames_check(x, "s_in", "")
        max_abs = self._validate(x, "s_in")
        self._state, a_out = conv_step(
            self._state, x, lambda f, o: self._synapse(f, o, max_abs))
        return a_out

    def run(self, data: np.ndarray) -> np.ndarray:
        """Run a whole sequence: ``T = data.shape[-1]`` timesteps (SPEC 6 timing).

        Equivalent to ``T`` calls of :meth:`step` (the delay carries over between
        calls), computed as batched kernel calls.

        Parameters
        ----------
        data : array_like, (X, Y, C_in, T) or (N, X, Y, C_in, T)
            Time is the last axis (Lava's RingBuffer convention); an optional leading
            axis holds ``N`` independent samples.

        Returns
        -------
        ndarray, (X_out, Y_out, C_out, T) or (N, X_out, Y_out, C_out, T)
            ``out[..., 0]`` is the buffered state (zeros on a fresh model) and
            ``out[..., t]`` the result of ``data[..., t - 1]``. A time-last view of a
            frames-first array (not C-contiguous).

        Raises
        ------
        ValueError
            Wrong shape or dtype, non-finite values, invalid graded payloads, or a
            batch size that differs from the one the model holds. The state is then
            unchanged.

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
        state = self._state
        if batched:
            if state.ndim == 4 and state.shape[0] != x.shape[0]:
                raise ValueError(
                    f"the model holds states of a batch of {state.shape[0]} samples, got "
                    f"data with N={x.shape[0]}; call reset() to start a new batch."
                )
            if state.ndim == 3:
                state = np.broadcast_to(state, (x.shape[0],) + state.shape)
            frames = np.moveaxis(x, -1, 1)
        else:
            if state.ndim == 4:
                raise ValueError(
                    f"the model holds states of a batch of {state.shape[0]} samples; pass "
                    f"data of shape (N, X, Y, C, T) with N={state.shape[0]}, or reset()."
                )
            state = state[np.newaxis]
            frames = np.moveaxis(x, -1, 0)[np.newaxis]
        max_abs = self._validate(x, "data")
        new_state, a_out = conv_run(
            state, frames, lambda f, o: self._synapse(f, o, max_abs), self._chunk)
        if batched:
            self._state = new_state
            return np.moveaxis(a_out, 1, -1)
        self._state = new_state[0]
        return np.moveaxis(a_out[0], 0, -1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conv!r})"


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
        self._engine = ConvEngine(self.weight, self.geometry)

    def _graded_messages(self, frames: np.ndarray) -> np.ndarray:
        return _contiguous_frames(frames, np.float64)

    def _accumulate(self, messages: np.ndarray, out: np.ndarray, max_abs: int) -> None:
        """Float64 sum, no clamp."""
        out[...] = self._engine.dense(messages, np.dtype(np.float64))


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
        self._engine = ConvEngine(self.weight, self.geometry)

    def _accumulate(self, messages: np.ndarray, out: np.ndarray, max_abs: int) -> None:
        """Exact sum, then ``wrap_to_bits(., 24)``."""
        sums = self._engine.exact(messages, input_max_abs=max_abs)
        half = 1 << (self.num_accum_bits - 1)
        if max_abs * self._engine.weight_l1 < half:
            out[...] = sums  # proven |sum| < 2**23: the wrap is the identity
        else:
            out[...] = wrap_to_bits(sums, self.num_accum_bits)


_EXPONENT_MODES = ("post_accumulate", "per_weight")
_ACCUM_OVERFLOW = ("wrap", "saturate")
_MESSAGE_OVERFLOW = ("error", "wrap", "saturate")


def _check_choice(value: str, name: str, choices: Tuple[str, ...]) -> str:
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
        or wrapped or saturated to ``b`` bits.

    Attributes
    ----------
    weight : ndarray of int64
        The encoded weights the engine uses (after the exponent in ``"per_weight"``
        mode), read-only.
    sign_mode : SignMode
        The sign mode used.
    """

    tag: ClassVar[str] = "bit_accurate_loihi"

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
        encoded = truncate_weights(clip_weights(weights, mode, 8), mode,
                                   conv.num_weight_bits.init).astype(np.int64)
        if self.exponent_mode == "per_weight":
            encoded = shift_exponent(encoded, self.weight_exp)
        self.weight = encoded
        self.weight.setflags(write=False)
        self._engine = ConvEngine(self.weight, self.geometry)
        # Largest message: binary 1, graded 2**(b-1) (after wrap or saturate, or checked).
        b = self.num_message_bits
        worst = self._sum_bound(1 if b == 0 else 1 << (b - 1))
        if worst >= 2**62:
            raise ValueError(
                f"the scaled sum may reach {worst} and overflow int64; reduce "
                f"num_message_bits ({b}) or weight_exp ({self.weight_exp})."
            )

    def _sum_bound(self, max_abs: int) -> int:
        """Bound on ``|sum|`` after the exponent, for messages bounded by ``max_abs``."""
        bound = max_abs * self._engine.weight_l1
        if self.exponent_mode == "post_accumulate":
            e = self.weight_exp
            bound = bound << e if e > 0 else -((-bound) >> -e)  # ceil for e < 0
        return bound

    def _message_bound(self, lo: int, hi: int, max_abs: int, name: str) -> int:
        b = self.num_message_bits
        m_lo, m_hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
        if m_lo <= lo and hi <= m_hi:
            return max_abs
        if self.message_overflow == "error":
            raise ValueError(
                f"{name} holds graded payloads in [{lo}, {hi}], outside the signed "
                f"{b}-bit range [{m_lo}, {m_hi}] of num_message_bits={b}; rescale them, "
                f"or pass message_overflow='wrap' or 'saturate'."
            )
        return min(max_abs, 1 << (b - 1))

    def _graded_messages(self, frames: np.ndarray) -> np.ndarray:
        messages = super()._graded_messages(frames)
        if self.message_overflow == "wrap":
            return wrap_to_bits(messages.astype(np.int64), self.num_message_bits)
        if self.message_overflow == "saturate":
            return saturate_to_bits(messages.astype(np.int64), self.num_message_bits)
        return messages

    def _accumulate(self, messages: np.ndarray, out: np.ndarray, max_abs: int) -> None:
        """Exact sum, ``2**weight_exp`` (post-accumulation mode), then wrap or saturate."""
        sums = self._engine.exact(messages, input_max_abs=max_abs)
        if self.exponent_mode == "post_accumulate" and self.weight_exp != 0:
            sums = shift_exponent(sums, self.weight_exp)
        if self._sum_bound(max_abs) < 1 << (self.num_accum_bits - 1):
            out[...] = sums  # proven inside the accumulator range: no overflow to apply
        elif self.accumulator_overflow == "wrap":
            out[...] = wrap_to_bits(sums, self.num_accum_bits)
        else:
            out[...] = saturate_to_bits(sums, self.num_accum_bits)
