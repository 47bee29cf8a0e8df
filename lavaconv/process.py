"""``Conv``: the convolutional connection Process, a drop-in for ``lava.proc.conv.Conv``.

Same keyword-only signature and defaults as Lava 0.10; every parameter is
validated once, here (SPEC section 2), and stored as plain Python ints. The
process holds parameters only; simulation state lives in the models of
:mod:`lavaconv.models` (``PyConvModelFixed(conv).run(data)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dtypes import check_array
from .geometry import Geometry, IntOrPair, validate_geometry, validate_precision

__all__ = ["Conv", "Port", "Var"]


class Var:
    """A read-only stand-in for Lava's ``Var``: a name, a shape and an initial value.

    Parameters
    ----------
    name : str
        Attribute name in the process.
    shape : tuple of int
        Lava's shape of the variable.
    init : scalar, tuple or ndarray
        Initial value (broadcast to ``shape`` by :meth:`get`).

    """

    def __init__(self, name: str, shape: tuple[int, ...], init: Any) -> None:
        self.name = name
        self.shape = tuple(shape)
        if isinstance(init, np.ndarray):
            init = init.copy()
            init.setflags(write=False)
        self._init = init

    @property
    def init(self) -> Any:
        """The initial value as given to the process (arrays are read-only copies)."""
        return self._init

    def get(self) -> np.ndarray:
        """Value as an array of :attr:`shape` (a fresh copy).

        For ``a_buf`` this is the initial (all-zero) state; a model's current state is
        ``model.a_buf``.
        """
        return np.array(np.broadcast_to(np.asarray(self._init), self.shape))

    def __repr__(self) -> str:
        return f"Var(name={self.name!r}, shape={self.shape})"


class Port:
    """A stand-in for Lava's ``InPort``/``OutPort``: a name and a shape."""

    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.name = name
        self.shape = tuple(shape)

    def __repr__(self) -> str:
        return f"Port(name={self.name!r}, shape={self.shape})"


def _validate_weight(weight: Any) -> np.ndarray:
    if not isinstance(weight, np.ndarray):
        raise ValueError(
            f"weight must be a numpy.ndarray (C_out, KX, KY, C_in // groups), got "
            f"{type(weight).__name__}."
        )
    if weight.ndim != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, KX, KY, C_in // groups), got weight.shape="
            f"{weight.shape}."
        )
    return check_array(weight, "weight")


class Conv:
    """Convolutional connection between neurons (Lava's ``Conv``, validated once).

    Realises ``a_out = W * s_in`` with Lava's one-step delay (see the models). All
    arguments are keyword-only, with Lava 0.10's defaults.

    Parameters
    ----------
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Kernel in Lava's layout; a true convolution (kernel flipped). Copied.
    weight_exp : int, optional
        Shared base-2 exponent, ``-8..7``; effective weight ``weight * 2**weight_exp``
        in the bit-accurate model. Default 0.
    input_shape : tuple of 3 ints, optional
        ``(X, Y, C_in)``. Default ``(1, 1, 1)`` (as Lava).
    padding, stride, dilation : int or pair of ints, optional
        In (X, Y) order. Defaults 0, 1, 1.
    groups : int, optional
        Must divide ``C_in`` and ``C_out``. Default 1.
    num_weight_bits : int, optional
        Weight precision ``1..8`` (bit-accurate model). Default 8.
    num_message_bits : int, optional
        ``0`` for binary spikes (any non-zero input is one spike), ``1..24`` for
        graded payloads. Default 0.
    name : str, optional
        Process name.
    log_config : object, optional
        Accepted for Lava compatibility; unused.

    Attributes
    ----------
    input_shape, output_shape : tuple of 3 ints
        ``(X, Y, C)`` of input and output.
    weight, weight_exp, num_weight_bits, num_message_bits, kernel_size, padding, stride,
    dilation, groups, a_buf : Var
        Lava's variables, in Lava's shapes (``(2,)`` pairs in (X, Y) order, ``(1,)``
        scalars, ``a_buf`` of ``output_shape``).
    s_in, a_out : Port
        Ports of ``input_shape`` and ``output_shape``.
    geometry : Geometry
        The validated geometry, plain ints.

    Raises
    ------
    ValueError
        Any invalid parameter, naming the argument, its value and the rule (SPEC 2).

    Examples
    --------
    >>> conv = Conv(weight=np.ones((4, 3, 3, 2), np.int8), input_shape=(8, 8, 2),
    ...             padding=1)
    >>> conv.output_shape
    (8, 8, 4)

    """

    def __init__(
        self,
        *,
        weight: np.ndarray,
        weight_exp: int = 0,
        input_shape: Sequence[int] = (1, 1, 1),
        padding: IntOrPair = 0,
        stride: IntOrPair = 1,
        dilation: IntOrPair = 1,
        groups: int = 1,
        num_weight_bits: int = 8,
        num_message_bits: int = 0,
        name: str | None = None,
        log_config: Any = None,
    ) -> None:
        weight = _validate_weight(weight)
        geometry = validate_geometry(input_shape, weight.shape, stride, padding, dilation,
                                     groups)
        weight_exp, num_weight_bits, num_message_bits = validate_precision(
            weight_exp, num_weight_bits, num_message_bits)
        g = geometry
        self.name = name if name is not None else f"Conv_{id(self)}"
        self.geometry: Geometry = g
        self.input_shape: tuple[int, int, int] = g.input_shape
        self.output_shape: tuple[int, int, int] = g.output_shape
        self.s_in = Port("s_in", g.input_shape)
        self.a_out = Port("a_out", g.output_shape)
        self.weight = Var("weight", weight.shape, weight)
        self.weight_exp = Var("weight_exp", (1,), weight_exp)
        self.num_weight_bits = Var("num_weight_bits", (1,), num_weight_bits)
        self.kernel_size = Var("kernel_size", (2,), g.kernel_size)
        self.padding = Var("padding", (2,), g.padding)
        self.stride = Var("stride", (2,), g.stride)
        self.dilation = Var("dilation", (2,), g.dilation)
        self.groups = Var("groups", (1,), g.groups)
        self.a_buf = Var("a_buf", g.output_shape, 0)
        self.num_message_bits = Var("num_message_bits", (1,), num_message_bits)

    def __repr__(self) -> str:
        g = self.geometry
        return (f"Conv(name={self.name!r}, input_shape={g.input_shape}, "
                f"weight.shape={g.weight_shape}, padding={g.padding}, stride={g.stride}, "
                f"dilation={g.dilation}, groups={g.groups}, weight_exp="
                f"{self.weight_exp.init}, num_weight_bits={self.num_weight_bits.init}, "
                f"num_message_bits={self.num_message_bits.init})")
