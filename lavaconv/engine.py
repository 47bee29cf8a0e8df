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
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .geometry import Geometry
from .kernels import dense as _dense

__all__ = ["ConvEngine", "exact_accumulator", "max_abs"]

_F32_EXACT = 2 ** 24
_F64_EXACT = 2 ** 53
_I64_LIMIT = 2 ** 63


def max_abs(x: np.ndarray) -> int:
    """Largest ``|x|`` as a Python int (0 for an empty array; 1 for a non-empty bool one)."""
    if x.size == 0:
        return 0
    if x.dtype == np.bool_:
        return int(x.any())
    return max(abs(int(x.max())), abs(int(x.min())))


def exact_accumulator(bound: int) -> np.dtype:
    """Cheapest dtype in which integer sums bounded by ``bound`` are exact.

    Parameters
    ----------
    bound : int
        Upper bound on the magnitude of every product and partial sum.

    Returns
    -------
    numpy.dtype
        float32, float64 or int64 (see the module docstring).

    Raises
    ------
    OverflowError
        If ``bound >= 2**63``: no native type holds the sum exactly.
    """
    if bound < _F32_EXACT:
        return np.dtype(np.float32)
    if bound < _F64_EXACT:
        return np.dtype(np.float64)
    if bound < _I64_LIMIT:
        return np.dtype(np.int64)
    raise OverflowError(
        f"the exact convolution sum may reach {bound} >= 2**63 and cannot be held in "
        f"int64; reduce the weight or input magnitudes."
    )


class ConvEngine:
    """Dense convolution of frames with one fixed weight tensor.

    Parameters
    ----------
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Convolution kernel in Lava's layout, already validated against ``geometry``.
    geometry : Geometry
        Validated geometry (see :func:`lavaconv.geometry.validate_geometry`).

    Notes
    -----
    Not safe to share between Python threads while :meth:`dense` is first called
    for a new accumulator dtype (it fills a cache); afterwards it holds no mutable
    state and may be called concurrently.
    """

    def __init__(self, weight: np.ndarray, geometry: Geometry) -> None:
        self.geometry = geometry
        self.weight = weight
        g = geometry
        self.is_integer = weight.dtype.kind in "biu"
        #: ``max_k sum |W[k]|``: with ``max|x|`` it bounds every partial sum.
        self.weight_l1: int = 0
        if weight.size:
            l1 = np.abs(weight.reshape(g.out_channels, -1).astype(np.float64)).sum(axis=1)
            # float64 sums of integers below 2**53 are exact; beyond, round up safely.
            self.weight_l1 = int(np.ceil(float(l1.max()) * (1 + 2.0 ** -40)))
        self.depthwise = g.groups == g.in_channels == g.out_channels
        self._prepared: Dict[np.dtype, Tuple[np.ndarray, ...]] = {}

    # -- preparation ---------------------------------------------------------------
    def _prepare(self, dtype: np.dtype) -> Tuple[np.ndarray, ...]:
        prepared = self._prepared.get(dtype)
        if prepared is not None:
            return prepared
        g = self.geometry
        c_out, kx, ky, cg = g.weight_shape
        # correlation order: wf[k, i, j, c] = W[k, KX-1-i, KY-1-j, c]
        wf = np.array(self.weight[:, ::-1, ::-1, :], dtype=dtype, order="C", copy=True)
        if self.depthwise:
            wd = np.ascontiguousarray(wf[:, :, :, 0].reshape(c_out, kx * ky).T)
            if g.stride[1] == 1:
                wd = np.ascontiguousarray(np.tile(wd, (1, g.output_shape[1])))
            prepared = (wd,)
        else:
            prepared = (wf.reshape(c_out, kx, ky * cg),)
        self._prepared[dtype] = prepared
        return prepared

    def accumulator_for(self, input_max_abs: int) -> np.dtype:
        """Exact accumulator dtype for integer inputs with ``max|x| <= input_max_abs``."""
        return exact_accumulator(int(input_max_abs) * self.weight_l1)

    # -- computation ---------------------------------------------------------------
    def dense(self, frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Convolve a stack of frames with the dense kernels.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in)
            Input frames (any numeric or bool dtype), already validated.
        dtype : numpy.dtype
            Accumulator dtype (float32, float64 or int64). For exact integer
            results choose it with :meth:`accumulator_for`.

        Returns
        -------
        ndarray, (N, X_out, Y_out, C_out), ``dtype``
        """
        g = self.geometry
        dtype = np.dtype(dtype)
        (w,) = self._prepare(dtype)
        n = frames.shape[0]
        x_in, y_in, c_in = g.input_shape
        px, py = g.padding
        xp = np.empty((n, x_in + 2 * px, y_in + 2 * py, c_in), dtype=dtype)
        _dense.pad_cast(np.ascontiguousarray(frames), xp, px, py)
        xpf = xp.reshape(n, x_in + 2 * px, (y_in + 2 * py) * c_in)
        out = np.empty((n,) + g.output_shape, dtype=dtype)
        sx, sy = g.stride
        dx, dy = g.dilation
        ky = g.kernel_size[1]
        if self.depthwise:
            _dense.conv_dense_depthwise(xpf, w, out, c_in, ky, sx, sy, dx, dy)
        else:
            cg = g.in_per_group
            if dy == 1 and g.groups == 1:
                nj, run = 1, ky * c_in
            else:
                nj, run = ky, cg
            _dense.conv_dense_dot(xpf, w, out, c_in, cg, ky, sx, sy, dx, dy, g.groups, nj, run)
        return out

    def exact(self, frames: np.ndarray, input_max_abs: int | None = None) -> np.ndarray:
        """Exact integer convolution of integer or bool frames, as int64.

        Parameters
        ----------
        frames : ndarray, (N, X, Y, C_in), integer or bool
            Input frames.
        input_max_abs : int, optional
            A bound on ``|frames|`` known to the caller (e.g. from the message bit
            width); computed from the data when omitted.

        Returns
        -------
        ndarray of int64, (N, X_out, Y_out, C_out)
        """
        if input_max_abs is None:
            input_max_abs = max_abs(frames)
        dtype = self.accumulator_for(input_max_abs)
        out = self.dense(frames, dtype)
        return out if dtype == np.int64 else out.astype(np.int64)
