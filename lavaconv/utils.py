"""Lava-compatible functional API (drop-in for ``lava.proc.conv.utils``).

``from lavaconv import utils`` replaces ``from lava.proc.conv import utils``: same
names, argument orders and return conventions, with these differences (all
documented in SPEC.md): errors are ``ValueError`` naming the argument and never
printed; :func:`output_shape` computes in integers; strided outputs are never
computed and thrown away; :func:`conv_to_sparse` is correct in every
:class:`TensorOrder`; integer sums are exact.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from enum import IntEnum, unique

import numpy as np

from . import engine as _engine
from .dtypes import check_array, int_result_dtype
from .engine import PATHS, _same_content, layer_for
from .geometry import (
    IntOrPair,
    _plain_all,
    make_tuple,
    output_shape,
    validate_geometry,
    validate_int_range,
)
from .kernels import accumulate as _acc
from .kernels import sparse_index as _sparse

__all__ = [
    "TORCH_IS_AVAILABLE",
    "TensorOrder",
    "conv",
    "conv_scipy",
    "conv_to_sparse",
    "make_tuple",
    "output_shape",
    "saturate_to_bits",
    "signed_clamp",
    "wrap_to_bits",
]


@unique
class TensorOrder(IntEnum):
    """How tensors are laid out (Lava's enum, same values).

    N: images in a batch (for kernels: output channels), H: height, W: width,
    C: channels.
    """

    NCHW = 1  #: PyTorch
    CHWN = 2
    HWCN = 3  #: TensorFlow
    NWHC = 4  #: Lava (default)


# -- accumulators ------------------------------------------------------------------
def _check_bits(bits: int) -> int:
    """Return ``bits`` as a plain int in 1..64.

    Python or NumPy integers, or a 0-d or 1-element integer array (as Lava accepts);
    floats and bools are refused.
    """
    if isinstance(bits, np.ndarray) and bits.size == 1 and bits.ndim <= 1 \
            and bits.dtype.kind in "iu":
        bits = bits.reshape(()).item()
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"bits must be an integer in 1..64, got bits={bits!r}.")
    return validate_int_range(bits, "bits", 1, 64)


def _apply_bits(kernel, x, bits: int, name: str):
    bits = _check_bits(bits)
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        if not -(2**63) <= int(x) < 2**63:
            raise ValueError(f"x={x} does not fit in int64; pass an array or a smaller int.")
        if isinstance(x, np.integer):  # NumPy scalars follow the array rule below
            return _apply_bits(kernel, np.asarray(x), bits, name)[()]
        out = np.empty(1, np.int64)
        kernel(np.array([x], np.int64), out, bits)
        return int(out[0])
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"{name} takes integer values, got dtype {arr.dtype}; for Lava's float "
            f"behaviour use signed_clamp."
        )
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 2**63:
        raise ValueError(f"{name}: uint64 values >= 2**63 are not supported.")
    flat = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)
    out = np.empty(flat.shape, np.int64)
    kernel(flat, out, bits)
    out = out.reshape(arr.shape)
    # Results are in [-2**(bits-1), 2**(bits-1)); keep the input dtype when it holds them.
    info = np.iinfo(arr.dtype)
    if info.min <= -(2 ** (bits - 1)) and 2 ** (bits - 1) - 1 <= info.max:
        return out.astype(arr.dtype)
    return out


def wrap_to_bits(x: int | np.ndarray, bits: int) -> int | np.ndarray:
    """Two's-complement wrap to a signed ``bits``-bit range (SPEC section 4).

    ``wrap(v) = ((v + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``, what Loihi's dendritic
    accumulator does on overflow and what Lava's ``signed_clamp`` computes.

    Parameters
    ----------
    x : int or integer ndarray
        Exact sums (any integer dtype up to 64 bits).
    bits : int
        Width, 1..64.

    Returns
    -------
    int or ndarray
        Same shape; the input dtype if it holds the signed range, else int64.

    Examples
    --------
    >>> wrap_to_bits(2**23, 24)
    -8388608
    """
    return _apply_bits(_acc.wrap_to_bits_1d, x, bits, "wrap_to_bits")


def saturate_to_bits(x: int | np.ndarray, bits: int) -> int | np.ndarray:
    """Saturate to a signed ``bits``-bit range (SPEC section 4).

    ``saturate(v) = min(max(v, -2**(bits-1)), 2**(bits-1) - 1)``.

    Parameters
    ----------
    x : int or integer ndarray
        Exact sums.
    bits : int
        Width, 1..64.

    Returns
    -------
    int or ndarray
        Same shape; the input dtype if it holds the signed range, else int64.

    Examples
    --------
    >>> saturate_to_bits(2**23, 24)
    8388607
    """
    return _apply_bits(_acc.saturate_to_bits_1d, x, bits, "saturate_to_bits")


def signed_clamp(x: int | float | np.ndarray, bits: int) -> int | float | np.ndarray:
    """Lava's ``signed_clamp``: despite its name, a two's-complement *wrap*.

    Integer inputs go through :func:`wrap_to_bits` (exact for any int64 value; Lava's
    formula overflows NumPy integer dtypes near their limits). Float inputs follow
    Lava's formula ``(x + 2**(bits-1)) % 2**bits - 2**(bits-1)`` unchanged.

    Parameters
    ----------
    x : int, float or ndarray
        Values.
    bits : int
        Width.

    Returns
    -------
    same kind as ``x``
    """
    arr = np.asarray(x)
    if arr.dtype.kind in "iu":
        return wrap_to_bits(x, bits)
    base = 1 << _check_bits(bits)
    return (x + base // 2) % base - base // 2


# -- convolution -------------------------------------------------------------------
#: Lava's ``utils.TORCH_IS_AVAILABLE``: whether PyTorch can be imported. lavaconv never
#: needs torch (its kernels are its own); the flag is kept so that code and tests
#: written for Lava's module keep working. Checked without importing torch.
def _torch_available() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked torch counts as absent
        return False


TORCH_IS_AVAILABLE: bool = _torch_available()


def conv(
    input: np.ndarray,  # noqa: A002 (Lava's argument name)
    weight: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    groups: int,
    *,
    path: str = "auto",
) -> np.ndarray:
    """Convolution in Lava's layout, computed by the Numba kernels.

    ``out[x, y, k] = sum_{i,j,c} in_pad[x*sx + i*dx, y*sy + j*dy, g*Cg + c] *
    W[k, KX-1-i, KY-1-j, c]`` with ``g = k // (C_out / groups)`` (a true convolution,
    kernel flipped).

    Parameters
    ----------
    input : ndarray, (X, Y, C_in)
        Bool, integer or float input.
    weight : ndarray, (C_out, KX, KY, C_in // groups)
        Kernel.
    kernel_size : int or pair
        Must equal ``weight.shape[1:3]``.
    stride, padding, dilation : int or pair of ints, (X, Y)
        Geometry.
    groups : int
        Groups.
    path : {"auto", "dense", "events"}, keyword-only
        ``"dense"``: gather kernels; ``"events"``: event-driven scatter over the
        non-zero inputs; ``"auto"`` (default): estimates the number of non-zero
        inputs from a sample of rows and picks the path predicted faster for this
        layer (see
        :meth:`lavaconv.engine.ConvEngine.crossover_density`). Integer results are
        bit-identical on every path.

    Returns
    -------
    ndarray, (X_out, Y_out, C_out), ``weight.dtype``
        As Lava's ``conv``. For integer weights and integer/bool input the sum is
        exact and then cast to ``weight.dtype`` (NumPy's integer cast, which wraps:
        Lava's float-to-int cast agrees whenever the sum fits in int32). Float
        weights accumulate in their own precision (float32 stays float32). Integer
        weights with float input accumulate in float64 and are cast, as in Lava.

    Raises
    ------
    ValueError
        Invalid geometry or arrays (message names the argument), non-finite values,
        unknown ``path``.
    OverflowError
        If an exact integer sum could exceed int64.
    """
    # a repeated integer call: its layer and the decisions below, found by the arrays'
    # identity, shape and dtype and the arguments, and confirmed by the weights'
    # content (so an array changed in place is validated and prepared anew)
    args = (kernel_size, stride, padding, dilation, groups)
    key = None
    if (input.__class__ is np.ndarray and weight.__class__ is np.ndarray
            and path.__class__ is str and _plain_all(args)):
        key = (id(weight), input.shape, input.dtype, args, path)
        hit = _engine._BY_CONV.get(key)
        if hit is not None and _same_content(weight, hit[0]):
            layer, bound, exact = hit
            out = layer.exact(input[np.newaxis], bound, path=path, out_dtype=exact)[0]
            return out if out.dtype == weight.dtype else out.astype(weight.dtype)
    if path not in PATHS:
        raise ValueError(f"path must be 'auto', 'dense' or 'events', got path={path!r}.")
    # Lava returns this dtype, whatever the kernels take
    wdt = weight.dtype if isinstance(weight, np.ndarray) else np.asarray(weight).dtype
    given = input
    input = check_array(input, "input", 3)
    layer = layer_for(weight, input.shape, stride, padding, dilation, groups, kernel_size)
    frames = input[np.newaxis]
    if wdt.kind == "f":
        acc = np.float32 if wdt.itemsize <= 4 else np.float64
        return layer.compute(frames, np.dtype(acc), path=path)[0].astype(wdt, copy=False)
    if input.dtype.kind == "f":
        return layer.compute(frames, np.dtype(np.float64), path=path)[0].astype(wdt)
    # exact sums, written directly in the result dtype when it is int32 or int64 and
    # holds every sum; otherwise in int32/int64 and cast as Lava casts (wrapping)
    by_dtype = layer.dtype_bound(input.dtype)
    bound = layer.input_bound(frames) if by_dtype is None else by_dtype
    exact = (np.dtype(np.int64) if wdt.kind in "iu" and wdt.itemsize == 8
             else int_result_dtype(bound * layer.weight_l1))
    out = layer.exact(frames, bound, path=path, out_dtype=exact)[0]
    if key is not None and by_dtype is not None and input is given:
        # (the caller's array as it is: its dtype needs no conversion, and the bound
        # holds for every array of that dtype)
        _engine.remember_conv(key, (layer, bound, exact))
    return out if out.dtype == wdt else out.astype(wdt)


def conv_scipy(
    input: np.ndarray,  # noqa: A002
    weight: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    groups: int,
) -> np.ndarray:
    """Lava's SciPy algorithm: one ``scipy.signal.convolve2d`` per channel pair.

    The slow public path and a reference: the dilated kernel is convolved at stride
    1 and the result sliced, exactly as Lava does. Inputs are validated as in
    :func:`conv`.

    Parameters
    ----------
    input, weight, kernel_size, stride, padding, dilation, groups
        As :func:`conv`.

    Returns
    -------
    ndarray of float64, (X_out, Y_out, C_out)
        Like Lava's ``conv_scipy`` (no cast to ``weight.dtype``).
    """
    from scipy import signal  # imported here: it costs ~0.6 s, a third of a cold start

    input = check_array(input, "input", 3)
    weight = check_array(weight, "weight", 4)
    g = validate_geometry(input.shape, weight.shape, stride, padding, dilation, groups,
                          kernel_size=kernel_size)
    (kx, ky), (sx, sy), (px, py), (dx, dy) = g.kernel_size, g.stride, g.padding, g.dilation
    out = np.zeros(g.output_shape)
    dilated = np.zeros((g.out_channels, dx * (kx - 1) + 1, dy * (ky - 1) + 1, g.in_per_group))
    dilated[:, ::dx, ::dy, :] = weight
    padded = np.pad(input.astype(np.float64), ((px, px), (py, py), (0, 0)))
    kg, cg = g.out_per_group, g.in_per_group
    for grp in range(g.groups):
        for k in range(kg):
            for c in range(cg):
                full = signal.convolve2d(padded[:, :, grp * cg + c],
                                         dilated[grp * kg + k, :, :, c], mode="valid")
                kept = full[::sx, ::sy][: g.output_shape[0], : g.output_shape[1]]
                out[:, :, grp * kg + k] += kept
    return out


# -- sparse matrix -----------------------------------------------------------------
def _order_to_lava(order: TensorOrder, input_shape, output_shape_, kernel, stride, padding,
                   dilation):
    """Translate a tensor order to Lava's (X, Y, C) geometry plus flattening multipliers."""
    if order == TensorOrder.NWHC:
        (xi, yi, ci), (xo, yo, co) = input_shape, output_shape_
        w = kernel
        pair = lambda v, n: make_tuple(v, n)  # noqa: E731
        m_in = (yi * ci, ci, 1)
        m_out = (yo * co, co, 1)
    else:
        pair = lambda v, n: make_tuple(v, n)[::-1]  # noqa: E731  (H, W) -> (X, Y)
        if order in (TensorOrder.NCHW, TensorOrder.CHWN):
            (ci, yi, xi), (co, yo, xo) = input_shape, output_shape_
            m_in = (1, xi, yi * xi)
            m_out = (1, xo, yo * xo)
            if order == TensorOrder.NCHW:  # (C_out, Cg, kH, kW), correlation
                w = kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
            else:  # CHWN: (C_out, kH, kW, Cg), convolution
                w = kernel.transpose(0, 2, 1, 3)
        else:  # HWCN: (kH, kW, Cg, C_out), correlation
            (yi, xi, ci), (yo, xo, co) = input_shape, output_shape_
            m_in = (ci, xi * ci, 1)
            m_out = (co, xo * co, 1)
            w = kernel[::-1, ::-1, :, :].transpose(3, 1, 0, 2)
    return ((xi, yi, ci), (xo, yo, co), np.ascontiguousarray(w), pair(stride, "stride"),
            pair(padding, "padding"), pair(dilation, "dilation"), m_in, m_out)


def _validate_shape(shape, name: str, order: TensorOrder) -> tuple[int, int, int]:
    """Three positive ints, or a ``ValueError`` naming ``name`` and the layout."""
    try:
        items = tuple(shape)
    except TypeError:
        items = ()
    if len(items) != 3:
        raise ValueError(f"{name} must have 3 entries in {order.name} layout, got {shape!r}.")
    values = tuple(make_tuple(v, name)[0] for v in items)
    if min(values) < 1:
        raise ValueError(f"{name} must hold positive sizes, got {name}={shape!r}.")
    return values  # type: ignore[return-value]


def conv_to_sparse(
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    kernel: np.ndarray,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    group: int,
    order: TensorOrder = TensorOrder.NWHC,
    *,
    index_dtype: type | np.dtype = np.int64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO triplets ``(dst, src, wgt)`` of the matrix equivalent to the convolution.

    Rows are flattened outputs and columns flattened inputs, in the flattening of
    ``order`` (SPEC section 7)::

        order  tensors  kernel                       src_id(x, y, c)
        NWHC   (X,Y,C)  (C_out,KX,KY,Cg) convolution (x*Y_in + y)*C_in + c
        NCHW   (C,H,W)  (C_out,Cg,kH,kW) correlation (c*H_in + y)*W_in + x
        HWCN   (H,W,C)  (kH,kW,Cg,C_out) correlation (y*W_in + x)*C_in + c
        CHWN   (C,H,W)  (C_out,kH,kW,Cg) convolution as NCHW

    (``dst_id`` likewise with output sizes.) Stride, padding and dilation are (X, Y)
    for NWHC and (H, W) otherwise. Every connection is listed, zero weights included,
    in Lava's order (group, output pixel, kernel tap, output channel, input channel).

    Parameters
    ----------
    input_shape, output_shape : sequence of 3 ints
        In the order's tensor layout; ``output_shape`` must be the convolution's.
    kernel : ndarray, 4-D
        In the order's kernel layout.
    stride, padding, dilation : int or pair of ints
        Geometry.
    group : int
        Groups.
    order : TensorOrder, optional
        Layout, Lava's by default.
    index_dtype : int64 or int32, keyword-only
        Dtype of ``dst`` and ``src``; int32 is accepted only if every index fits.

    Returns
    -------
    dst, src : ndarray of ``index_dtype``
    wgt : ndarray of ``kernel.dtype``
        Empty arrays when every output sees only padding (Lava raises there).

    Raises
    ------
    ValueError
        Unknown order, inconsistent shapes, invalid geometry or index dtype.
    """
    try:
        order = TensorOrder(order)
    except ValueError:
        raise ValueError(f"order must be a TensorOrder (NCHW, CHWN, HWCN or NWHC), "
                         f"got order={order!r}.") from None
    index_dtype = np.dtype(index_dtype)
    if index_dtype not in (np.dtype(np.int64), np.dtype(np.int32)):
        raise ValueError(f"index_dtype must be int64 or int32, got {index_dtype}.")
    kernel = check_array(kernel, "kernel", 4)
    shapes = [_validate_shape(shape, name, order)
              for name, shape in (("input_shape", input_shape), ("output_shape", output_shape))]
    (xi, yi, ci), (xo, yo, co), w, st, pd, dl, m_in, m_out = _order_to_lava(
        order, shapes[0], shapes[1], kernel, stride, padding, dilation)
    g = validate_geometry((xi, yi, ci), w.shape, st, pd, dl, group)
    if g.output_shape != (xo, yo, co):
        raise ValueError(
            f"output_shape={tuple(output_shape)} does not match the convolution's output "
            f"shape in {order.name} layout; expected (X_out, Y_out, C_out)="
            f"{g.output_shape} in (X, Y, C) terms."
        )
    (kx, ky), (sx, sy), (px, py), (dx, dy) = g.kernel_size, g.stride, g.padding, g.dilation
    counts = np.empty((yo, xo), np.int64)
    _sparse.count_sparse_taps(counts, kx, ky, sx, sy, px, py, dx, dy, xi, yi)
    taps = np.tile(counts.reshape(-1), g.groups)
    offsets = np.zeros(taps.size + 1, np.int64)
    np.cumsum(taps, out=offsets[1:])
    nnz = int(offsets[-1]) * g.out_per_group * g.in_per_group
    if index_dtype == np.int32 and max(xi * yi * ci, xo * yo * co) > np.iinfo(np.int32).max:
        raise ValueError("index_dtype=int32 cannot hold these indices; use int64.")
    dst = np.empty(nnz, index_dtype)
    src = np.empty(nnz, index_dtype)
    wgt = np.empty(nnz, kernel.dtype)
    if nnz:
        _sparse.fill_sparse(dst, src, wgt, offsets[:-1], w, g.groups, sx, sy, px, py, dx, dy,
                            xi, yi, np.array(m_in, np.int64), np.array(m_out + (xo,), np.int64))
    return dst, src, wgt
