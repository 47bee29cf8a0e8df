"""Fixed-point accumulator kernels: wrap or saturate an exact sum to ``b`` bits.

Both take a 1-D contiguous ``int64`` view of the exact sums and write a 1-D
output of the caller's dtype; the wrapper in :mod:`lavaconv.utils` checks ``bits``
and flattens. They are separate functions on purpose: which one a model applies
is a visible choice (SPEC section 4).
"""

from __future__ import annotations

import numpy as np

from ._config import jit_serial

__all__ = ["wrap_to_bits_1d", "saturate_to_bits_1d"]


@jit_serial
def wrap_to_bits_1d(v, out, bits):
    """``out = ((v + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``, two's-complement wrap.

    Parameters
    ----------
    v : ndarray of int64, 1-D
        Exact sums.
    out : ndarray, 1-D, same length
        Destination (any integer dtype wide enough for ``bits``); may be ``v``.
    bits : int
        Accumulator width, ``1 <= bits <= 64``.

    Notes
    -----
    ``v & (2**bits - 1)`` is ``v mod 2**bits`` in two's complement; values at or above
    ``2**(bits-1)`` then lose ``2**bits``, subtracted as two halves so that no
    intermediate leaves int64 even for ``bits == 63`` (no overflow, with or without
    the JIT). For ``bits == 64`` it is the identity.

    """
    if bits >= 64:
        for t in range(v.shape[0]):
            out[t] = v[t]
        return
    half = np.int64(1) << np.int64(bits - 1)
    mask = (half - np.int64(1)) + half
    for t in range(v.shape[0]):
        r = v[t] & mask
        if r >= half:
            r = r - half - half
        out[t] = r


@jit_serial
def saturate_to_bits_1d(v, out, bits):
    """``out = min(max(v, -2**(bits-1)), 2**(bits-1) - 1)``, the saturating accumulate.

    Parameters
    ----------
    v : ndarray of int64, 1-D
        Exact sums.
    out : ndarray, 1-D, same length
        Destination; may be ``v``.
    bits : int
        Accumulator width, ``1 <= bits <= 64``.

    """
    if bits >= 64:
        for t in range(v.shape[0]):
            out[t] = v[t]
        return
    hi = (np.int64(1) << np.int64(bits - 1)) - np.int64(1)
    lo = -hi - np.int64(1)
    for t in range(v.shape[0]):
        out[t] = min(max(v[t], lo), hi)
