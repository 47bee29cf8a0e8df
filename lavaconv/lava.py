r"""lavaconv inside Lava's own runtime: ProcessModels for ``lava.proc.conv.process.Conv``.

Needs lava-nc 0.10 (and, for netx networks, lava-dl 0.6); the rest of lavaconv works
without them. Import this module **before** Lava::

    import lavaconv.lava                      # first: makes Lava 0.10 importable on 3.11+
    from lava.magma.core.run_conditions import RunSteps
    ...
    net.run(condition=RunSteps(num_steps=100),
            run_cfg=lavaconv.lava.run_config("fixed_pt"))

Lava 0.10 on Python >= 3.11
---------------------------
``lava.magma.compiler.var_model`` declares eight dataclass fields
``x: ByteEncoder = ByteEncoder()``, a mutable default that Python 3.11's
``dataclasses`` rejects (``ValueError: mutable default ... is not allowed``), and
almost every Lava module imports it. Importing this module installs an import hook
(a :class:`importlib.abc.MetaPathFinder`) for that one module only, which compiles
its source with those defaults replaced by ``field(default_factory=ByteEncoder)``
(same line numbers; no file is written, the patched code is never cached to disk).
It is a no-op where nothing needs it: before Python 3.11, when the module is already
imported, or when its source no longer holds such a field (a later Lava). After a
failed Lava import the hook still applies (the failed modules are not kept in
``sys.modules``); if Lava still cannot be imported, the ``ImportError`` says to
import ``lavaconv.lava`` first.

The ProcessModels
-----------------
:class:`PyConvModelFloat` (``floating_pt``), :class:`PyConvModelFixed`
(``fixed_pt``) and :class:`PyConvModelBitAcc` (``bit_accurate_loihi``) implement
Lava's ``Conv`` process. The first two subclass Lava's own models of those names, so
they declare exactly Lava's LavaPyTypes; the bit-accurate one declares the
fixed-point types. Each ``run_spk`` is Lava's: send ``a_buf``, receive ``s_in``,
``a_buf <- f(s_in)`` (so ``a_out(1) = 0``, ``a_out(t) = f(s_in(t - 1))``, and
``conv.a_buf.get()``/``set()`` behave as with Lava's model). ``f`` is the matching
model of :mod:`lavaconv.models` (message rule, weight encoding, accumulator), built
once, at the first step, from the process's Vars, on the prepared layer of
:mod:`lavaconv.engine`; it is rebuilt only after a ``Var.set``. Results are written
into ``a_buf`` in place after it was sent (Lava copies what it sends).

Lava does not find these models by itself (it searches the directory of the
process's module): :func:`run_config` maps ``Conv`` to them through Lava's
``exception_proc_model_map``, which Lava's compiler consults before tags, and leaves
every other process to Lava's own selection, netx blocks included.

Fork safety
-----------
Lava forks one process per ProcessModel. lavaconv's kernels then run in the forked
children; that is safe with Numba's ``tbb`` or ``workqueue`` threading layers, not
with GNU OpenMP (``omp``) once the parent has itself run a parallel kernel (see
:mod:`lavaconv._threads`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "MODELS",
    "PyConvModelBitAcc",
    "PyConvModelFixed",
    "PyConvModelFloat",
    "patch_var_model_source",
    "run_config",
]

# -- Lava 0.10 on Python >= 3.11 ---------------------------------------------------------
_VAR_MODEL = "lava.magma.compiler.var_model"
#: ``name: ByteEncoder = ByteEncoder()`` (the default only; the annotation is kept).
_MUTABLE_DEFAULT = re.compile(
    r"^([ \t]+\w+[ \t]*:[ \t]*ByteEncoder[ \t]*=[ \t]*)ByteEncoder\(\)([ \t]*(#.*)?)$",
    re.MULTILINE)
_FACTORY = r'\1__import__("dataclasses").field(default_factory=ByteEncoder)\2'


def patch_var_model_source(source: str) -> tuple[str, int]:
    """Replace Lava's mutable ``ByteEncoder()`` dataclass defaults with default factories.

    Parameters
    ----------
    source : str
        Source of ``lava.magma.compiler.var_model``.

    Returns
    -------
    source : str
        The source with every ``name: ByteEncoder = ByteEncoder()`` field written
        ``name: ByteEncoder = __import__("dataclasses").field(default_factory=ByteEncoder)``
        (one line each, so line numbers are unchanged).
    count : int
        How many fields were replaced (8 for lava-nc 0.10.0; 0 leaves ``source`` as is).

    """
    return _MUTABLE_DEFAULT.subn(_FACTORY, source)


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads ``var_model`` from its source, patched; never reads or writes bytecode."""

    def get_code(self, fullname: str):
        path = self.get_filename(fullname)
        source, _ = patch_var_model_source(importlib.util.decode_source(self.get_data(path)))
        return compile(source, path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    """Finds ``lava.magma.compiler.var_model`` as usual and gives it the patching loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _PatchedSourceLoader(fullname, spec.origin)
        return spec


def _install_var_model_patch() -> _VarModelFinder | None:
    """Install the import hook where it is needed; return it (None: not needed)."""
    if sys.version_info < (3, 11) or _VAR_MODEL in sys.modules:
        return None
    finder = _VarModelFinder()
    sys.meta_path.insert(0, finder)
    return finder


def _import_lava() -> None:
    """Import the parts of Lava this module uses, with the patch in place.

    Raises
    ------
    ImportError
        Lava is not installed (or not importable here), naming what to install; or
        Lava fails with the mutable-default error even so, saying to import
        ``lavaconv.lava`` before Lava.

    """
    earlier = sorted(m for m in sys.modules if m == "lava" or m.startswith("lava."))
    finder = _install_var_model_patch()
    try:
        importlib.import_module(_VAR_MODEL)
        importlib.import_module("lava.proc.conv.models")
        importlib.import_module("lava.magma.core.run_configs")
    except ValueError as exc:
        if "mutable default" not in str(exc):
            raise
        raise ImportError(
            f"lava-nc could not be imported on Python {sys.version_info.major}."
            f"{sys.version_info.minor} ({exc}). Import lavaconv.lava before any lava "
            f"module: it makes Lava 0.10 importable on Python >= 3.11. "
            + (f"Lava modules were imported before it: {', '.join(earlier[:5])}."
               if earlier else "")
        ) from exc
    except ImportError as exc:
        raise ImportError(
            f"lavaconv.lava needs lava-nc 0.10 ({exc}). lava-nc declares python < 3.11 "
            f"and numpy < 2, so pip refuses it as a dependency: install it into an "
            f"environment with numpy 1.26 with `pip install --no-deps "
            f"--ignore-requires-python lava-nc==0.10.0` plus its dependencies "
            f"(see .ci/lava_venv.sh and the README, 'Inside Lava')."
        ) from exc
    finally:
        if finder is not None:  # var_model is imported (or failed): the hook is done
            sys.meta_path.remove(finder)


_import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.run_configs import AbstractLoihiRunCfg, Loihi2SimCfg  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.conv import models as _lava_models  # noqa: E402
from lava.proc.conv.process import Conv  # noqa: E402

from . import models as _core  # noqa: E402
from .process import Conv as _LavaconvConv  # noqa: E402

#: ``apply(s_in, out)``: writes ``f(s_in)`` into ``out`` (``a_buf``).
Synapse = Callable[[np.ndarray, np.ndarray], None]


def _ints(values: Any) -> tuple[int, ...]:
    """Return a Lava Var's value (array or scalar) as a tuple of Python ints."""
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def _synapse(model: _core._PyConvModel) -> Synapse:
    """``f`` of a lavaconv model as a function of one frame: no state of its own.

    The model's :meth:`~lavaconv.models._PyConvModel.apply`: its input checks, message
    rule (SPEC 3) and accumulator hook, i.e. what its ``step`` computes for the *next*
    step, applied to ``s_in`` now.
    """

    def apply(s_in: np.ndarray, out: np.ndarray) -> None:
        model.apply(s_in, out)

    return apply


#: The Conv Vars that define the layer.
_PARAMETERS = ("weight", "weight_exp", "padding", "stride", "dilation", "groups",
               "num_weight_bits", "num_message_bits")


class _RunSpk:
    """The body every lavaconv Conv ProcessModel shares: Lava's ``run_spk`` on lavaconv.

    Subclasses name the lavaconv model class in :attr:`core` and its keyword
    arguments in :attr:`options`.
    """

    core: ClassVar[type[_core._PyConvModel]]
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, proc_params=None) -> None:
        super().__init__(proc_params)
        self._apply: Synapse | None = None
        #: The lavaconv model computing ``f`` (built at the first step).
        self.lavaconv_model: _core._PyConvModel | None = None

    @classmethod
    def _model_of(cls, values: dict[str, Any], input_shape: tuple[int, ...],
                  output_shape: tuple[int, ...]) -> _core._PyConvModel:
        """Build the lavaconv model of a Conv whose Vars hold ``values`` (as in its ProcessModel).

        Raises
        ------
        ValueError
            Invalid parameters (lavaconv's messages, SPEC 2), or an ``a_buf`` shape that
            does not match the convolution.

        """
        conv = _LavaconvConv(
            weight=np.asarray(values["weight"]),
            weight_exp=_ints(values["weight_exp"])[0],
            input_shape=tuple(int(n) for n in input_shape),
            padding=_ints(values["padding"]),
            stride=_ints(values["stride"]),
            dilation=_ints(values["dilation"]),
            groups=_ints(values["groups"])[0],
            num_weight_bits=_ints(values["num_weight_bits"])[0],
            num_message_bits=_ints(values["num_message_bits"])[0],
        )
        if tuple(output_shape) != conv.output_shape:
            raise ValueError(
                f"Conv a_buf has shape {tuple(output_shape)}, but the convolution of input "
                f"{conv.input_shape} gives {conv.output_shape}: the process's Vars are "
                f"inconsistent (Lava stores kernel_size, padding, stride, dilation and "
                f"groups as int8, so values above 127 wrap)."
            )
        return cls.core(conv, **cls.options)

    @classmethod
    def check(cls, process: Conv) -> None:
        """Build the lavaconv model of ``process`` from its Vars' initial values.

        :func:`run_config` calls this when Lava's compiler selects the model, in the
        calling process, so that invalid parameters raise a ``ValueError`` there,
        naming the process, instead of failing inside a Lava model process (which
        Lava reports only as "1 Exception(s) occurred"). The values are cast to the
        model's ``LavaPyType`` dtypes first, as Lava's builder does.

        Raises
        ------
        ValueError
            As :meth:`_model_of`, prefixed with the process name.

        """
        values = {}
        for name in _PARAMETERS:
            var = getattr(process, name)
            init = np.broadcast_to(np.asarray(var.init), var.shape)
            with np.errstate(all="ignore"):  # the builder's cast: int8 wraps, floats truncate
                value = init.astype(getattr(cls, name).d_type)
            if name != "weight" and not np.array_equal(value, init):
                raise ValueError(
                    f"Conv process {process.name!r}: {name}={init.tolist()} does not fit "
                    f"Lava's {np.dtype(value.dtype).name} Var (it would become "
                    f"{value.tolist()}); use values in "
                    f"[{np.iinfo(value.dtype).min}, {np.iinfo(value.dtype).max}].")
            values[name] = value
        try:
            cls._model_of(values, process.s_in.shape, process.a_out.shape)
        except ValueError as exc:
            raise ValueError(f"Conv process {process.name!r}: {exc}") from exc

    def on_var_update(self) -> None:
        """Rebuild ``f`` at the next step: a Var was set (weights, parameters or ``a_buf``)."""
        self._apply = None

    def run_spk(self) -> None:
        """Send ``a_buf``, receive ``s_in``, ``a_buf <- f(s_in)`` (Lava's timing)."""
        if self._apply is None:
            self.lavaconv_model = self._model_of(
                {name: getattr(self, name) for name in _PARAMETERS}, self.s_in.shape,
                self.a_buf.shape)
            self._apply = _synapse(self.lavaconv_model)
        self.a_out.send(self.a_buf)
        self._apply(self.s_in.recv(), self.a_buf)


class PyConvModelFloat(_RunSpk, _lava_models.PyConvModelFloat):
    """``floating_pt`` Conv on lavaconv: :class:`lavaconv.PyConvModelFloat` (float64).

    Lava's float types (a subclass of Lava's ``PyConvModelFloat``); weights and graded
    payloads as given, float64 sums with no clamp. Lava computes the same sums with
    ``scipy.signal.convolve2d``; the two agree to float64 rounding (tested to 1e-9).
    """

    core = _core.PyConvModelFloat


class PyConvModelFixed(_RunSpk, _lava_models.PyConvModelFixed):
    """``fixed_pt`` Conv on lavaconv: :class:`lavaconv.PyConvModelFixed`, bit-identical.

    Lava's fixed-point types (a subclass of Lava's ``PyConvModelFixed``); the exact
    integer sum wrapped to 24 bits, as Lava's ``signed_clamp``. ``weight_exp`` and
    ``num_weight_bits`` are ignored, as in Lava (lavaconv warns once, see
    lava-nc/lava#803); use :class:`PyConvModelBitAcc` to apply them. Graded payloads
    must be integers (Lava would truncate a float sum).
    """

    core = _core.PyConvModelFixed


@implements(proc=Conv, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi")
class PyConvModelBitAcc(_RunSpk, _lava_models.AbstractPyConvModel):
    """``bit_accurate_loihi`` Conv on lavaconv: :class:`lavaconv.PyConvModelBitAcc`.

    Lava 0.10 has no bit-accurate Conv model. This one applies ``weight_exp`` and
    ``num_weight_bits`` with Loihi's weight encoding (SPEC 5, lava-nc/lava#803), with
    the fixed-point types of Lava's ``PyConvModelFixed``. Its options (``sign_mode``,
    ``exponent_mode``, ``num_accum_bits``, ``accumulator_overflow``,
    ``message_overflow``) are those of :class:`lavaconv.PyConvModelBitAcc`, set on a
    subclass made by :meth:`with_options`.
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_buf: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    core = _core.PyConvModelBitAcc

    @classmethod
    def with_options(cls, **options: Any) -> type[PyConvModelBitAcc]:
        """Return a subclass whose lavaconv model takes these keyword arguments.

        Parameters
        ----------
        **options
            Keyword arguments of :class:`lavaconv.PyConvModelBitAcc` (``sign_mode``,
            ``exponent_mode``, ``num_accum_bits``, ``accumulator_overflow``,
            ``message_overflow``), checked here, in the calling process: an invalid
            option raises now instead of inside a Lava model process.

        Returns
        -------
        type
            A ProcessModel class for :func:`run_config`'s ``conv_model``.

        Raises
        ------
        ValueError
            An unknown or invalid option (named).

        Examples
        --------
        >>> model = PyConvModelBitAcc.with_options(num_accum_bits=16,
        ...                                        accumulator_overflow="saturate")
        >>> cfg = run_config("bit_accurate_loihi", conv_model=model)  # doctest: +SKIP

        """
        known = ("sign_mode", "exponent_mode", "num_accum_bits", "accumulator_overflow",
                 "message_overflow")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown PyConvModelBitAcc option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(known)}."
            )
        merged = {**cls.options, **options}
        # the core's own validation, on a 1x1 layer whose weights fit every sign mode
        probe = _LavaconvConv(weight=np.zeros((1, 1, 1, 1), np.int32), input_shape=(1, 1, 1))
        _core.PyConvModelBitAcc(probe, **merged)
        label = ", ".join(f"{k}={v!r}" for k, v in sorted(merged.items()))
        return type(cls.__name__, (cls,), {
            "options": merged,
            "__doc__": f"{cls.__doc__}\n    Options: {label}.\n",
            "__module__": cls.__module__,
            "__qualname__": f"{cls.__qualname__}[{label}]",
        })


#: The lavaconv model of each Lava tag.
MODELS: dict[str, type] = {
    "floating_pt": PyConvModelFloat,
    "fixed_pt": PyConvModelFixed,
    "bit_accurate_loihi": PyConvModelBitAcc,
}


@cache
def _config_class(base: type) -> type:
    """Return ``base`` with the bit-accurate fallback and the parameter check (run_config)."""

    def select(self, process, proc_models):
        try:
            model = base.select(self, process, proc_models)
        except AssertionError:
            if self.select_tag != "bit_accurate_loihi":
                raise
            # no bit-accurate model for this process (RingBuffer, netx blocks):
            # Lava's fixed-point one, as Lava tags its bit-accurate models fixed_pt too
            self.select_tag = "fixed_pt"
            try:
                model = base.select(self, process, proc_models)
            finally:
                self.select_tag = "bit_accurate_loihi"
        if isinstance(model, type) and issubclass(model, _RunSpk):
            model.check(process)  # bad parameters raise here, not in a model process
        return model

    return type(f"Lavaconv{base.__name__}", (base,), {
        "select": select,
        "__module__": __name__,
        "__doc__": f"{base.__name__} that runs every Conv on lavaconv (lavaconv.lava).",
    })


def run_config(select_tag: str = "fixed_pt", base: type = Loihi2SimCfg, *,
               conv_model: type | None = None, **kwargs: Any) -> AbstractLoihiRunCfg:
    """Return a Lava run config that runs every ``Conv`` on lavaconv, the rest on Lava.

    Parameters
    ----------
    select_tag : {"fixed_pt", "floating_pt", "bit_accurate_loihi"}, optional
        Lava's tag for every other process; also picks lavaconv's Conv model of that
        tag (:data:`MODELS`). With ``"bit_accurate_loihi"``, processes that have no
        bit-accurate model (Lava's RingBuffers, lava-dl's netx blocks) take their
        ``fixed_pt`` model instead of failing (every bit-accurate model of Lava
        0.10 is tagged ``fixed_pt`` too).
    base : type, optional
        A subclass of Lava's ``AbstractLoihiRunCfg`` (default ``Loihi2SimCfg``;
        ``Loihi1SimCfg`` works the same).
    conv_model : type, optional
        The ProcessModel for ``Conv`` (default: ``MODELS[select_tag]``), e.g.
        ``PyConvModelBitAcc.with_options(num_accum_bits=16)``.
    **kwargs
        Passed to ``base`` (``select_sub_proc_model``, ``loglevel``, ...). An
        ``exception_proc_model_map`` is merged: its own entries win, a ``Conv``
        entry included.

    Returns
    -------
    AbstractLoihiRunCfg
        An instance of a subclass of ``base``.

    Raises
    ------
    ValueError
        Unknown ``select_tag`` without ``conv_model``, ``base`` not a Lava Loihi run
        config, or ``conv_model`` not a ProcessModel of Lava's ``Conv``.

    Examples
    --------
    >>> net.run(condition=RunSteps(num_steps=100),
    ...         run_cfg=lavaconv.lava.run_config("fixed_pt"))  # doctest: +SKIP

    """
    if not (isinstance(base, type) and issubclass(base, AbstractLoihiRunCfg)):
        raise ValueError(
            f"base must be a Lava Loihi run config class (Loihi2SimCfg, Loihi1SimCfg, "
            f"...), got base={base!r}."
        )
    if conv_model is None:
        if select_tag not in MODELS:
            raise ValueError(
                f"select_tag must be one of {', '.join(map(repr, MODELS))} (or pass "
                f"conv_model=), got select_tag={select_tag!r}."
            )
        conv_model = MODELS[select_tag]
    elif not (isinstance(conv_model, type)
              and getattr(conv_model, "implements_process", None) is Conv):
        raise ValueError(
            f"conv_model must be a ProcessModel class of lava.proc.conv.process.Conv "
            f"(e.g. lavaconv.lava.PyConvModelBitAcc.with_options(...)), got "
            f"conv_model={conv_model!r}."
        )
    exceptions = {Conv: conv_model, **(kwargs.pop("exception_proc_model_map", None) or {})}
    return _config_class(base)(select_tag=select_tag, exception_proc_model_map=exceptions,
                               **kwargs)
