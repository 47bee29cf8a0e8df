"""The dtype and exactness rules, in one place.

Every entry point reaches its arrays through :func:`check_array` (which dtypes and
byte orders are accepted, and what they become for the kernels), and every exact
integer computation picks its accumulator with :func:`exact_accumulator` from a bound
on the partial sums. Nothing else in the package decides a dtype on its own.

Accepted arrays
---------------
NumPy's bool, signed and unsigned integer and float dtypes, in either byte order.
For the kernels, which take native types only:

* non-native byte order (``>i4``, as some files store it) becomes native (a copy);
* float16 becomes float32 (exact: float32 holds every float16);
* long double becomes float64 (rounded; values beyond the float64 range are refused);
* uint64 becomes int64 when every value is below ``2**63`` (exact), else it is refused
  (no native type holds the products exactly);
* complex, object, string, datetime and structured dtypes are refused.

Float values must be finite.

Exact integer sums
------------------
With ``B = max|x| * max_k sum|W[k]|`` (a bound on every partial sum and product), the
cheapest exact accumulator is float32 when ``B < 2**24`` (every integer of magnitude
below ``2**24`` is a float32, so no operation rounds), float64 when ``B < 2**53``,
int64 when ``B < 2**63``; beyond, :class:`OverflowError` (a sum never wraps silently).
The event path accumulates in int32 when ``B < 2**31`` (integer addition is exact in
any order), else int64.

What the kernels read
---------------------
Every input dtype a kernel reads compiles one more machine-code version of it (2-3 s
each for the parallel kernels, cold), so the kernels read frames in few dtypes
(:func:`kernel_input`): on the dense path bool, uint8, int8, int16 and the accumulator's
own dtype as they are (the VNNI kernels, where the host has them: bool, uint8 and int8
as bytes), and any other input cast to the accumulator by NumPy first (one
pass over the input into reused scratch, small beside the dense convolution); the event
path reads every dtype as it is (a copy there would cost as much as the convolution),
bool viewed as uint8, which its callers pair with the binary rule (any non-zero byte is
one spike: exact for every bool array, also one whose bytes are not all 0 and 1, e.g.
from ``np.frombuffer``; the dense kernels read bool as Numba does, any non-zero byte as
True). The values are those the kernels' own cast gives: integers under the bound are
exact in the accumulator, and a float of the other precision rounds to nearest either way.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SPIKES_AS_IS",
    "F32_EXACT",
    "F64_EXACT",
    "INT32_LIMIT",
    "INT64_LIMIT",
    "check_array",
    "dtype_bound",
    "exact_accumulator",
    "int_result_dtype",
    "kernel_input",
    "kernel_reads",
    "max_abs",
]

F32_EXACT = 2**24
F64_EXACT = 2**53
INT32_LIMIT = 2**31
INT64_LIMIT = 2**63

_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
_INT32, _INT64 = np.dtype(np.int32), np.dtype(np.int64)
_NATIVE_KINDS = "biuf"


def max_abs(x: np.ndarray) -> int:
    """Largest ``|x|`` as a Python int (0 for an empty array; 1 for a non-empty bool one)."""
    if x.size == 0:
        return 0
    if x.dtype == np.bool_:
        return int(x.any())
    if x.dtype.kind == "f":
        return max(abs(int(np.floor(x.min()))), abs(int(np.ceil(x.max()))))
    return max(abs(int(x.max())), abs(int(x.min())))


_DTYPE_BOUNDS: dict[np.dtype, int] = {}


def dtype_bound(dtype: np.dtype) -> int:
    """Largest ``|v|`` an integer (or bool) dtype holds, as a Python int (remembered)."""
    bound = _DTYPE_BOUNDS.get(dtype)
    if bound is None:
        if dtype == np.bool_:
            bound = 1
        else:
            info = np.iinfo(dtype)
            bound = max(-int(info.min), int(info.max))
        _DTYPE_BOUNDS[dtype] = bound
    return bound


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
    if bound < F32_EXACT:
        return _FLOAT32
    if bound < F64_EXACT:
        return _FLOAT64
    if bound < INT64_LIMIT:
        return _INT64
    raise OverflowError(
        f"the exact convolution sum may reach {bound} >= 2**63 and cannot be held in "
        f"int64; reduce the weight or input magnitudes."
    )


def int_result_dtype(bound: int) -> np.dtype:
    """int32 when every exact sum bounded by ``bound`` fits in it, else int64."""
    return _INT32 if bound < INT32_LIMIT else _INT64


#: Input dtypes the dense path's kernels read as they are, besides the accumulator's own.
_DENSE_READS = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.int16))
_BOOL, _UINT8 = np.dtype(np.bool_), np.dtype(np.uint8)


def kernel_reads(dtype: np.dtype, acc: np.dtype) -> bool:
    """Whether the dense kernels read frames of ``dtype`` as they are (else: cast first).

    Parameters
    ----------
    dtype : numpy.dtype
        The frames' dtype (native bool, integer or float).
    acc : numpy.dtype
        The dense accumulator (float32, float64 or int64).

    Returns
    -------
    bool
        True for bool, uint8, int8, int16 and ``acc`` itself (module docstring, "What the
        kernels read").
    """
    return dtype == _BOOL or dtype in _DENSE_READS or dtype == acc


def kernel_input(frames: np.ndarray, acc: np.dtype | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Frames as the kernels read them, in one of few dtypes.

    Parameters
    ----------
    frames : ndarray
        Validated frames (native bool, integer or float dtype). With ``acc``: values
        the accumulator holds exactly (the engine's bound), or float frames.
    acc : numpy.dtype, optional
        The dense path's accumulator (float32, float64 or int64). Without it (the
        event path, whose kernels read every dtype: a copy there would cost as much
        as a sparse convolution) only bool is viewed as uint8, for a kernel that
        applies the binary rule to it (module docstring).
    out : ndarray, optional
        Where to cast frames that :func:`kernel_reads` does not take as they are: an
        array of ``frames.shape`` and ``acc`` (the engine passes its reused, aligned
        scratch); new when omitted.

    Returns
    -------
    ndarray
        Without ``acc``, bool viewed as uint8 (no copy); with ``acc``, bool, uint8, int8,
        int16 and ``acc`` itself as they are and any other dtype cast to ``acc`` (module
        docstring, "What the kernels read"; a float64 beyond float32's range becomes infinity, as in
        the kernels' own cast, without a warning).
    """
    dt = frames.dtype
    if acc is None:
        return frames.view(_UINT8) if dt == _BOOL else frames
    if kernel_reads(dt, acc):
        return frames
    if out is None:
        out = np.empty(frames.shape, acc)
    with np.errstate(over="ignore", invalid="ignore"):
        np.copyto(out, frames, casting="unsafe")
    return out


def _all_finite(x: np.ndarray) -> bool:
    """Whether every value of a float array is finite.

    A finite sum proves it (NaN and infinities propagate through a sum); only when
    the sum is not finite (which large finite values can also cause) is each value
    tested. The sum is one pass without a temporary array, the test is two.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(x, axis=None)):
            return True
    return bool(np.isfinite(x).all())


#: Dtypes of binary spike frames that :func:`check_array` returns as they are (native
#: bool and integers, uint64 aside) and that every kernel reads in place under the spike
#: rule (any non-zero entry is one spike): a binary model's ``step`` takes them to the
#: engine with no further check or conversion. Floats need the finiteness check.
SPIKES_AS_IS = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32))


def check_array(x, name: str, ndim: int | None = None, *, messages: bool = False) -> np.ndarray:
    """Validate an input or weight array and return it in a dtype the kernels take.

    Parameters
    ----------
    x : array_like
        The array.
    name : str
        Argument name for error messages.
    ndim : int, optional
        Required number of dimensions.
    messages : bool, optional
        The array holds a model's input messages: long double and uint64 are kept
        as they are (after the finiteness check), for the model's message rule to
        convert exactly (a spike is any non-zero value, however small or large).

    Returns
    -------
    ndarray
        ``x`` itself when its dtype is native and supported, else an exact (or, for
        long double, rounded) conversion (module docstring). Never a view that
        aliases a converted copy of the caller's data.

    Raises
    ------
    ValueError
        Wrong number of dimensions, unsupported dtype, non-finite float values,
        uint64 values of ``2**63`` or more, long double values beyond float64.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got {name}.ndim={x.ndim} "
                         f"(shape {x.shape}).")
    dt = x.dtype
    if dt.kind not in _NATIVE_KINDS or dt.fields is not None:
        raise ValueError(
            f"{name} must be bool, integer or float, got dtype {dt}; convert it with "
            f"{name}.astype(...) (complex and object arrays have no convolution here).")
    if not dt.isnative:
        x = x.astype(dt.newbyteorder("="))
        dt = x.dtype
    if dt.kind == "f":
        if not _all_finite(x):
            raise ValueError(f"{name} contains NaN or infinite values; the convolution is "
                             f"defined for finite values only.")
        if dt.itemsize == 2:
            return x.astype(_FLOAT32)
        if dt.itemsize > 8 and not messages:  # long double: the kernels compute in float64
            with np.errstate(over="ignore"):
                y = x.astype(_FLOAT64)
            if not _all_finite(y):
                raise ValueError(f"{name} holds long double values beyond the float64 range.")
            return y
        return x
    if dt == np.uint64 and not messages:
        if x.size and int(x.max()) >= INT64_LIMIT:
            raise ValueError(
                f"{name} holds uint64 values of 2**63 or more, which no exact integer "
                f"accumulator here can multiply; scale them down.")
        return x.astype(_INT64)
    return x
