"""Exact content checks of two buffers: the prepared-layer cache's test before every reuse.

:func:`lavaconv.engine.prepare` looks a layer up by the weight array's identity and
confirms the content before every reuse, so that a weight array changed in place never
reuses a stale layer: :func:`same_words` compares the bits (any dtype), and
:func:`same_values` compares integer weights against the layer's narrower int8/int16
copy of them (equal integer values of one dtype are equal bits; it reads fewer bytes).
"""

from __future__ import annotations

from ._config import jit_serial

__all__ = ["same_values", "same_words", "zero_one"]

#: Entries compared between two early-exit tests.
_BLOCK = 256
#: The same for :func:`zero_one` (one byte an entry: longer blocks vectorise better;
#: the ``depthwise`` frame 7.7 -> 4.9 us against 256).
_ZERO_ONE_BLOCK = 4096


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
    Each block is a slice indexed from 0: indexed as ``a[i]`` for ``i`` in
    ``range(s, e)``, LLVM could not prove ``i >= 0`` and assembled every vector
    entry by entry (Numba's negative-index wrap-around), ten times slower
    (``mid``'s 18 432 int32 weights against an int8 copy, in cache, on Zen 4:
    22 us before, 1.2 us with slices).
    """
    n = a.shape[0]
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        x, y = a[s:e], b[s:e]  # (indices from 0: contiguous vector loads)
        diff = x[0] ^ x[0]
        for i in range(x.shape[0]):
            diff |= x[i] ^ y[i]
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
        x, y = a[s:e], b[s:e]
        diff = False
        for i in range(x.shape[0]):
            diff |= x[i] != y[i]  # (a mask OR: vectorises across the widening)
        if diff:
            return False
    return True


@jit_serial
def zero_one(a):
    """Whether every entry of a 1-D unsigned integer array is 0 or 1.

    Parameters
    ----------
    a : ndarray, (M,), uint8, uint16, uint32 or uint64
        Integer (or bool) frames' entries viewed as unsigned integers of their size:
        in two's complement only the values 0 and 1 have these bit patterns.

    Returns
    -------
    bool

    Notes
    -----
    Lets the dense path under the binary spike rule read integer spikes as they are
    when they already are 0 and 1, instead of writing a converted copy (one read-only
    pass instead of a read-and-write pass; the ``!= 0`` copy cost about 20 us of the
    ``depthwise`` frame, this test 4.9 us). Blocks as in :func:`same_words`: the first
    block holding another value ends the test.
    """
    n = a.shape[0]
    for s in range(0, n, _ZERO_ONE_BLOCK):
        e = min(s + _ZERO_ONE_BLOCK, n)
        x = a[s:e]  # (indices from 0, as in same_words)
        other = False
        for i in range(x.shape[0]):
            other |= x[i] > 1
        if other:
            return False
    return True
