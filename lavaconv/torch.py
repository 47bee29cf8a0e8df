"""PyTorch adapter: an event-driven ``nn.Conv2d`` for spiking networks (extra ``[torch]``).

:class:`Conv2d` is a subclass of :class:`torch.nn.Conv2d` with the same constructor,
parameters, ``state_dict`` and semantics (a correlation on NCHW tensors, bias,
stride, dilation, groups, ``padding`` as int, pair, ``'valid'`` or ``'same'``), whose
forward pass runs lavaconv's prepared layer (:func:`lavaconv.engine.prepare`):
event-driven when the input is sparse, dense otherwise (``path="auto"``).
:func:`convert` turns every ``nn.Conv2d`` of a model into one, in place.

Layout
------
SPEC section 1 maps PyTorch to Lava by ``x_lava = x_CHW.transpose(2, 1, 0)``,
``W_lava = W_torch[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)`` and every ``(H, W)`` pair
reversed. This module uses that mapping followed by swapping the two spatial axes of
everything (input, weight, output and every parameter pair), which leaves the
convolution unchanged: the engine's ``X`` is torch's ``H`` and its ``Y`` torch's ``W``,

* frames ``x.permute(0, 2, 3, 1)``: ``(N, H, W, C)``, the memory of a
  ``torch.channels_last`` tensor as it is;
* weight ``W_torch.flip(2, 3).permute(0, 2, 3, 1)``: ``(C_out, kH, kW, C_in // groups)``,
  flipped because the engine computes a true convolution;
* ``stride``, ``padding``, ``dilation`` in torch's ``(H, W)`` order, unchanged.

So a ``channels_last`` input reaches the kernel with no copy and its output goes back
as a ``channels_last`` tensor with no copy; a contiguous (NCHW) input costs one
transposing copy in and one out (the bias is added in the copy out).

``padding='same'`` with an odd total padding ``d * (k - 1)`` (even kernels), where
PyTorch puts the extra zero at the end (SPEC section 11): the layer pads
symmetrically by ``ceil(total / 2)`` and the first output row (column) is dropped,
which costs one output row of work and no input copy.

Numerics
--------
float32 input is computed with float32 accumulators, float64 with float64,
float16/bfloat16 in float32 (cast back on the way out). Sums of integer-valued
weights and inputs are exact while ``max|x| * max_k sum|W[k]| < 2**24`` (float32) or
``2**53`` (float64), as in ``nn.Conv2d``: the results are then bit-identical. Other
float32 results differ from ``nn.Conv2d`` by rounding in a different summation
order: at most ``1e-5`` times ``(|W| * |x|) + |b|`` (the correlation of the absolute
values) in the tests. NaN and infinite *weights* raise ``ValueError`` (the
event-driven path skips zero inputs, so it would not spread them as a dense
product does); NaN and infinite *inputs* are not checked (that costs a pass) and
reach the outputs they touch, as in ``nn.Conv2d``.

Autograd
--------
The module is for inference. When autograd would need a gradient through it (grad
mode on and the input, weight or bias requiring grad) it raises ``RuntimeError``
(``autograd="error"``, the default), or with ``autograd="torch"`` computes that call
with torch's own ``conv2d`` so that gradients are correct (and the call is not
accelerated). Run inference under ``torch.no_grad()`` or ``torch.inference_mode()``.
Under ``torch.fx`` symbolic tracing, ``torch.jit.trace`` and ``torch.compile`` the
module records torch's ``conv2d``, so exporters (nirtorch) see an ordinary conv.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from .engine import PATHS, ConvEngine, prepare
from .geometry import make_tuple, validate_geometry

__all__ = ["AUTOGRAD_MODES", "Conv2d", "convert", "revert"]

#: Accepted values of ``autograd=``.
AUTOGRAD_MODES = ("error", "torch")

#: Accumulator (and engine frame) dtype per input dtype.
_COMPUTE = {
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
}
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
#: Same-size integer dtype, to compare float tensors bit for bit.
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Input sizes remembered per module before the memo is cleared.
_MAX_LAYERS = 32
#: ``torch.compiler.is_compiling`` (torch >= 2.3); never compiling on older versions.
_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {name}={value!r}.")
    return value


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two float tensors hold the same bits (unlike ``==``, -0.0 differs from 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    bits = _BITS[a.element_size()]
    return torch.equal(a.view(bits), b.view(bits))


@functools.lru_cache(maxsize=256)
def _set_conflicts(count: int, stride_bytes: int) -> bool:
    """Whether ``count`` rows ``stride_bytes`` apart crowd into too few L1 cache sets.

    L1 data caches (32 KiB, 8-way, 64 sets of 64-byte lines on x86 and Arm cores)
    index sets by address bits 6-11: channel planes 4 KiB apart (32x32, 64x64 or
    128x128 float32 maps) all fall in one set, and a transposing copy that reads
    one entry of each plane in turn evicts every line before its neighbours are
    read. Measured on the 64x64x32 ``mid`` input (one thread): 610-630 us for NumPy's
    (and torch's) transposing copy, 110 us through a buffer whose rows are one line
    longer; 56x56 planes (no conflict): 127 us direct, 158 us through the buffer.
    """
    sets = {(k * stride_bytes // 64) % 64 for k in range(min(count, 512))}
    return len(sets) * 8 < count


def _frames(x: torch.Tensor, cdtype: torch.dtype) -> np.ndarray:
    """Return the engine's frames ``(N, H, W, C)`` of a 4-D NCHW tensor, in ``cdtype``.

    A ``channels_last`` tensor of ``cdtype`` is viewed as it is (no copy). Otherwise
    one transposing copy, through a padded buffer when the channel planes would
    crowd the cache (:func:`_set_conflicts`).
    """
    view = x.permute(0, 2, 3, 1)
    if view.dtype == cdtype and view.is_contiguous():
        return view.numpy()
    if x.dtype != cdtype:  # float16 / bfloat16: torch casts (NumPy has no bfloat16)
        x = x.to(cdtype)
        view = x.permute(0, 2, 3, 1)
        if view.is_contiguous():
            return view.numpy()
    n, c, h, w = x.shape
    a = x.numpy()
    frames = np.empty((n, h, w, c), a.dtype)
    if x.is_contiguous() and c > 1 and _set_conflicts(c, h * w * a.itemsize):
        hw, pad = h * w, 64 // a.itemsize
        buf = np.empty((n, c, hw + pad), a.dtype)
        buf[:, :, :hw] = a.reshape(n, c, hw)
        frames.reshape(n, hw, c)[...] = buf[:, :, :hw].transpose(0, 2, 1)
    else:
        np.copyto(frames, a.transpose(0, 2, 3, 1))
    return frames


class _Prepared:
    """The weight of one content, in the engine's layout, and its layers per input size."""

    __slots__ = ("snapshot", "weight", "dtype", "layers")

    def __init__(self, snapshot: torch.Tensor, weight: np.ndarray, dtype: torch.dtype) -> None:
        self.snapshot = snapshot
        self.weight = weight
        self.dtype = dtype
        self.layers: dict[tuple, ConvEngine] = {}


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` computed by lavaconv's prepared layer, event-driven on sparse input.

    Same constructor, parameters and semantics as :class:`torch.nn.Conv2d` (a
    correlation on ``(N, C, H, W)`` or unbatched ``(C, H, W)`` tensors; SNN libraries'
    flattened ``(T * N, C, H, W)`` batches are plain batches here), for inference on
    the CPU. See the module docstring for the layout, the numerics and autograd.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
    device, dtype :
        As :class:`torch.nn.Conv2d`. ``padding`` is an int, a pair, ``'valid'`` or
        ``'same'`` (stride 1; even kernels pad the extra zero at the end, as PyTorch).
        ``device`` must be the CPU.
    padding_mode : {"zeros"}
        Only zero padding: ``'reflect'``, ``'replicate'`` and ``'circular'`` raise
        ``ValueError`` (keep those layers as ``nn.Conv2d``).
    path : {"auto", "dense", "events"}, keyword-only
        The engine's path: ``"auto"`` (default) picks event-driven scatter or dense
        gather per call from the input's density; the others force one.
    autograd : {"error", "torch"}, keyword-only
        What a call that autograd would need a gradient through does: raise
        ``RuntimeError`` (default) or fall back to torch's ``conv2d``.

    Attributes
    ----------
    path, autograd : str
        As given; may be changed at any time.

    Notes
    -----
    The layer is prepared once per weight content: each call compares the weight
    with a snapshot of the one prepared (bit for bit, a few microseconds for a
    ``64 x 32 x 3 x 3`` weight), so changes in place (an optimizer step,
    ``weight.data`` writes, ``load_state_dict``) give results for the new weights.

    Examples
    --------
    >>> import torch
    >>> from lavaconv.torch import Conv2d
    >>> conv = Conv2d(2, 4, 3, padding=1, bias=False)
    >>> x = (torch.rand(8, 2, 16, 16) < 0.01).float()      # (T * N, C, H, W) spikes
    >>> with torch.no_grad():
    ...     y = conv(x)
    >>> y.shape
    torch.Size([8, 4, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None, *,
                 path: str = "auto", autograd: str = "error") -> None:
        _check_padding_mode(padding_mode)
        if device is not None and torch.device(device).type not in ("cpu", "meta"):
            raise ValueError(f"lavaconv.torch.Conv2d runs on the CPU only, got device={device!r}.")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        _init_lava(self, path, autograd)

    @classmethod
    def from_torch(cls, module: nn.Conv2d, *, path: str = "auto",
                   autograd: str = "error") -> Conv2d:
        """Build a :class:`Conv2d` computing what ``module`` computes, sharing its Parameters.

        Parameters
        ----------
        module : torch.nn.Conv2d
            The layer (zero padding, on the CPU). Its ``weight`` and ``bias``
            Parameters are shared, not copied: an optimizer holding them updates both.
        path, autograd : str, keyword-only
            As in :class:`Conv2d`.

        Returns
        -------
        Conv2d

        Raises
        ------
        ValueError
            If ``module`` is not an ``nn.Conv2d``, pads other than with zeros, is not
            initialised (lazy) or not on the CPU.
        """
        if not isinstance(module, nn.Conv2d):
            raise ValueError(
                f"module must be a torch.nn.Conv2d, got {type(module).__name__}.")
        reason = _unsupported(module)
        if reason:
            raise ValueError(f"cannot build lavaconv.torch.Conv2d from this nn.Conv2d: {reason}.")
        # built on the meta device (no memory, no draw from torch's random generator)
        new = cls(module.in_channels, module.out_channels, module.kernel_size,
                  stride=module.stride, padding=module.padding, dilation=module.dilation,
                  groups=module.groups, bias=module.bias is not None,
                  padding_mode=module.padding_mode, device="meta", path=path,
                  autograd=autograd)
        new.weight = module.weight
        new.bias = module.bias
        new.train(module.training)
        return new

    def extra_repr(self) -> str:
        """``nn.Conv2d``'s description plus the engine path and the autograd mode."""
        return f"{super().extra_repr()}, path={self.path!r}, autograd={self.autograd!r}"

    def __getstate__(self) -> dict:
        """Pickle without the prepared layers (rebuilt on the first call)."""
        state = super().__getstate__().copy()
        state["_lava_prepared"] = None
        return state

    # -- forward -------------------------------------------------------------------
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        """Compute ``nn.Conv2d.forward``'s convolution by lavaconv's prepared layer.

        Subclasses that call ``self._conv_forward(input, weight, bias)`` with a
        modified weight (SpikingJelly's step modes, fake quantisation) get it here.
        """
        if isinstance(input, torch.fx.Proxy) or torch.jit.is_tracing() or _is_compiling():
            return super()._conv_forward(input, weight, bias)  # record torch's conv2d
        _check_padding_mode(self.padding_mode)
        if torch.is_grad_enabled() and (
                input.requires_grad or weight.requires_grad
                or (bias is not None and bias.requires_grad)):
            if self.autograd == "torch":
                return super()._conv_forward(input, weight, bias)
            raise RuntimeError(
                "lavaconv.torch.Conv2d is for inference and computes no gradient, but "
                "autograd would need one here (grad mode is on and the input, weight or "
                "bias requires grad). Call it under torch.no_grad() or "
                "torch.inference_mode(), call model.requires_grad_(False), or build it "
                "with autograd='torch' to compute such calls with torch's conv2d.")
        return self._lava_forward(input, weight, bias)

    def _geometry(self, h: int, w: int, kh: int, kw: int):
        """``(stride, padding, dilation, crop, (H_out, W_out))`` in (H, W) order."""
        stride = make_tuple(self.stride, "stride")
        dilation = make_tuple(self.dilation, "dilation")
        padding = self.padding
        crop = (0, 0)
        if isinstance(padding, str):
            if padding == "valid":
                pads = (0, 0)
            elif padding == "same":
                if stride != (1, 1):
                    raise ValueError(
                        f"padding='same' needs stride 1 (as in nn.Conv2d), got stride={stride}.")
                totals = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
                # symmetric ceil(total / 2), then drop the first `total % 2` outputs
                pads = (-(-totals[0] // 2), -(-totals[1] // 2))
                crop = (totals[0] % 2, totals[1] % 2)
            else:
                raise ValueError(
                    f"padding must be an int, a pair, 'valid' or 'same', got padding={padding!r}.")
        else:
            pads = make_tuple(padding, "padding")
        if min(pads) < 0:
            raise ValueError(f"padding must be >= 0, got padding={pads}.")
        sizes = []
        for axis, n, k, s, p, d, c in zip("HW", (h, w), (kh, kw), stride, pads, dilation, crop,
                                          strict=True):
            span = d * (k - 1) + 1
            size = (n + 2 * p - span) // s + 1 - c
            if size < 1:
                raise ValueError(
                    f"input {axis} = {n} is too small: with padding {p}, kernel {k} and "
                    f"dilation {d} (extent {span}) the output {axis} would be {size} (< 1). "
                    f"Use a larger input or padding, or a smaller kernel or dilation.")
            sizes.append(size)
        return stride, pads, dilation, crop, tuple(sizes)

    def _layer(self, weight: torch.Tensor, cdtype: torch.dtype, input_shape: tuple,
               stride: tuple, pads: tuple, dilation: tuple) -> ConvEngine:
        """Return the prepared layer for this weight content and input size."""
        prepared = self.__dict__.get("_lava_prepared")
        w = weight.detach()
        if prepared is None or prepared.dtype != cdtype or not _same_bits(w, prepared.snapshot):
            if not bool(torch.isfinite(w).all()):
                raise ValueError(
                    "weight contains NaN or infinite values; lavaconv.torch.Conv2d needs "
                    "finite weights (its event-driven path skips zero inputs, so it would not "
                    "spread them as nn.Conv2d's dense products do).")
            lava = w.flip(2, 3).permute(0, 2, 3, 1).to(cdtype).contiguous().numpy()
            prepared = _Prepared(w.clone(), lava, cdtype)
            self._lava_prepared = prepared
        key = (input_shape, stride, pads, dilation)
        layer = prepared.layers.get(key)
        if layer is None:
            geometry = validate_geometry(input_shape, prepared.weight.shape, stride, pads,
                                         dilation, self.groups)
            layer = prepare(prepared.weight, geometry)
            if len(prepared.layers) >= _MAX_LAYERS:
                prepared.layers.clear()
            prepared.layers[key] = layer
        return layer

    def _lava_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"input must be a torch.Tensor, got {type(x).__name__}.")
        if x.dim() not in (3, 4):
            raise ValueError(
                f"input must be 3-D (C, H, W) or 4-D (N, C, H, W) as for nn.Conv2d, got "
                f"shape {tuple(x.shape)}.")
        for name, t in (("input", x), ("weight", weight), ("bias", bias)):
            if t is not None and t.device.type != "cpu":
                raise ValueError(
                    f"lavaconv.torch.Conv2d runs on the CPU, got {name} on {t.device}; move "
                    f"the model and the data with .cpu().")
        cdtype = _COMPUTE.get(x.dtype)
        if cdtype is None:
            raise ValueError(
                f"input must be a floating-point tensor (float32, float64, float16 or "
                f"bfloat16), got dtype {x.dtype}; convert spikes with .float().")
        if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
            raise ValueError(
                f"input dtype {x.dtype} differs from the weight's {weight.dtype} (or the "
                f"bias's); nn.Conv2d needs them equal too: cast the model (e.g. .double()) "
                f"or the input.")
        batched = x.dim() == 4
        xb = x if batched else x.unsqueeze(0)
        n, c, h, w = xb.shape
        c_out, cg, kh, kw = weight.shape
        if c != cg * self.groups:
            raise ValueError(
                f"input has {c} channels, but the weight {tuple(weight.shape)} with "
                f"groups={self.groups} expects {cg * self.groups} (input shape "
                f"{tuple(x.shape)}, NCHW).")
        stride, pads, dilation, crop, (h_out, w_out) = self._geometry(h, w, kh, kw)
        channels_last = (batched and not xb.is_contiguous()
                         and xb.is_contiguous(memory_format=torch.channels_last))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if n == 0:
            empty = torch.empty((0, c_out, h_out, w_out), dtype=x.dtype, memory_format=fmt)
            return empty if batched else empty[0]
        layer = self._layer(weight, cdtype, (h, w, c), stride, pads, dilation)
        npdtype = _NUMPY[cdtype]
        # our own result buffer (the engine writes every cell): a channels_last tensor
        held = torch.empty((n,) + layer.geometry.output_shape, dtype=cdtype)
        out = layer.compute(_frames(xb.detach(), cdtype), npdtype, path=self.path,
                            out=held.numpy())
        if crop != (0, 0):
            out = out[:, crop[0]:, crop[1]:, :]
        b = None if bias is None else bias.detach()
        if channels_last and crop == (0, 0) and cdtype == x.dtype:
            if b is not None:
                out += b.numpy()  # the engine's fresh result, C_out innermost: no copy
            result = held.permute(0, 3, 1, 2)
        else:
            dst = torch.empty((n, c_out, h_out, w_out), dtype=x.dtype, memory_format=fmt)
            src = out.transpose(0, 3, 1, 2)
            if x.dtype != cdtype:  # float16/bfloat16 (NumPy has no bfloat16): torch casts
                src = torch.from_numpy(src)
                if b is None:
                    dst.copy_(src)
                else:
                    torch.add(src, b.to(cdtype).view(1, -1, 1, 1), out=dst)
            elif b is None:
                np.copyto(dst.numpy(), src)
            else:  # the transposing copy adds the bias: one pass
                np.add(src, b.numpy()[None, :, None, None], out=dst.numpy())
            result = dst
        return result if batched else result[0]


def _check_padding_mode(padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise ValueError(
            f"lavaconv.torch.Conv2d pads with zeros only, got padding_mode={padding_mode!r}; "
            f"keep this layer as torch.nn.Conv2d (convert(model, strict=False) leaves it).")


def _init_lava(module: nn.Conv2d, path: str, autograd: str) -> None:
    module.path = _check_choice(path, "path", PATHS)
    module.autograd = _check_choice(autograd, "autograd", AUTOGRAD_MODES)
    module._lava_prepared = None


def _unsupported(module: nn.Conv2d) -> str:
    """Why ``module`` cannot be computed by lavaconv (empty string: it can)."""
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros')"
    if isinstance(module.weight, nn.parameter.UninitializedParameter):
        return "its weight is not initialised yet (a lazy module: run one batch first)"
    if module.weight.device.type not in ("cpu", "meta"):
        return f"its weight is on {module.weight.device} (lavaconv runs on the CPU)"
    cls = type(module)
    if (cls is not nn.Conv2d and not issubclass(cls, Conv2d)
            and cls._conv_forward is not nn.Conv2d._conv_forward):
        return (f"its class {cls.__module__}.{cls.__qualname__} overrides _conv_forward, "
                f"so lavaconv cannot know what it computes")
    return ""


# -- subclasses of nn.Conv2d (SpikingJelly's layer.Conv2d, QAT convs, ...) -----------
_MIXINS: dict[type, type] = {}


def _restore_mixin(base: type, state: dict) -> nn.Module:
    """Unpickle a converted subclass instance (see :func:`_lava_class`)."""
    obj = object.__new__(_lava_class(base))
    obj.__setstate__(state)
    return obj


def _mixin_reduce(self, protocol):
    return (_restore_mixin, (type(self)._lava_base, self.__getstate__()))


def _lava_class(cls: type) -> type:
    """Return the class a converted instance of ``cls`` takes.

    ``nn.Conv2d`` becomes :class:`Conv2d`. A subclass gets a class deriving from
    :class:`Conv2d` and from it, in that order: its own ``forward`` stays (for
    example SpikingJelly's multi-step mode, which flattens time into the batch and
    calls ``nn.Conv2d.forward``) and the convolution, ``_conv_forward``, is ours.
    """
    if cls is nn.Conv2d:
        return Conv2d
    if issubclass(cls, Conv2d):
        return cls
    mixin = _MIXINS.get(cls)
    if mixin is None:
        mixin = type(f"Lava{cls.__name__}", (Conv2d, cls),
                     {"__module__": __name__, "_lava_base": cls, "__reduce_ex__": _mixin_reduce})
        _MIXINS[cls] = mixin
    return mixin


def _named_convs(model: nn.Module) -> Iterable[tuple[str, nn.Conv2d]]:
    for name, module in model.named_modules(remove_duplicate=True):
        if isinstance(module, nn.Conv2d) and not isinstance(module, Conv2d):
            yield name or "<model>", module


def convert(model: nn.Module, *, path: str = "auto", autograd: str = "error",
            strict: bool = True) -> nn.Module:
    """Make every ``nn.Conv2d`` of ``model`` a :class:`Conv2d`, in place, and return ``model``.

    Each layer keeps its identity, Parameters, hooks, mode and any other attribute
    (its class is changed, so references held elsewhere see the change too); it
    works on ``nn.Sequential`` nets (snnTorch), ``torch.fx`` graph modules (nirtorch
    and snnTorch NIR imports), Norse and SpikingJelly models alike. Subclasses of
    ``nn.Conv2d`` keep their own ``forward``; only the convolution they reach through
    ``_conv_forward`` is replaced.

    Parameters
    ----------
    model : torch.nn.Module
        The network (or a single ``nn.Conv2d``).
    path, autograd : str, keyword-only
        As in :class:`Conv2d`, for every converted layer.
    strict : bool, keyword-only
        If True (default), a layer lavaconv cannot compute (padding other than
        zeros, a lazy or non-CPU weight, a subclass overriding ``_conv_forward``)
        raises ``ValueError`` naming it, before anything is changed. If False such
        layers stay as they are.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> import torch
    >>> from lavaconv.torch import convert
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(2, 12, 5), torch.nn.MaxPool2d(2))
    >>> net = convert(net)
    >>> type(net[0]).__name__
    'Conv2d'
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    _check_choice(path, "path", PATHS)
    _check_choice(autograd, "autograd", AUTOGRAD_MODES)
    todo, refused = [], []
    for name, module in _named_convs(model):
        reason = _unsupported(module)
        if reason:
            refused.append(f"{name}: {reason}")
        else:
            todo.append(module)
    if refused and strict:
        raise ValueError(
            "convert: these layers cannot be computed by lavaconv (pass strict=False to "
            "leave them as they are): " + "; ".join(refused))
    for module in todo:
        module.__class__ = _lava_class(type(module))
        _init_lava(module, path, autograd)
    return model


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert` in place: every :class:`Conv2d` becomes its original class.

    A :class:`Conv2d` built directly or by :meth:`Conv2d.from_torch` becomes a plain
    ``nn.Conv2d``; subclasses of :class:`Conv2d` written by users stay. Useful before
    training or before an exporter that looks at module classes.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    for module in model.modules():
        cls = type(module)
        base = nn.Conv2d if cls is Conv2d else cls.__dict__.get("_lava_base")
        if base is not None:
            module.__class__ = base
            for attr in ("path", "autograd", "_lava_prepared"):
                module.__dict__.pop(attr, None)
    return model
