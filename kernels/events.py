"""Event-driven (scatter) convolution kernels in Lava's layout.

An event is an active input ``(x, y, c)`` with a value ``v``. It adds ``v`` times a
slice of weights to every output it reaches:
``out[xo, yo, g*Kg:(g+1)*Kg] += v * W[g*Kg:(g+1)*Kg, KX-1-i, KY-1-j, c - g*Cg]``
for every tap ``(i, j)`` with ``x + px = xo*sx + i*dx`` and ``y + py = yo*sy + j*dy``
(SPEC section 1 read from the input's side). Work is proportional to the number
of events, not to the size of the frame.

Every kernel here takes already-validated arguments and preallocated arrays and
only loops. The wrapper is :class:`lavaconv.engine.ConvEngine`.

Events
------
Dense frames are handled by :func:`scatter_frames`, which finds each event while
scanning the input (skipping zero 64-byte blocks, then zero 8-byte words, each with
one test) and scatters it at once: no event list is built. Events given as
index arrays (the form other simulators and event cameras hold) are bucketed by
input row into a CSR structure by a counting sort (:func:`bucket_events`): frame
``n``'s input row ``x`` owns events ``offsets[n*X + x] : offsets[n*X + x + 1]`` of
the flat arrays ``ys``, ``cs`` (int32) and ``vs`` (accumulator dtype), and
:func:`scatter_events` adds them. :func:`count_sample` counts the events of a
sample of rows, for the automatic path choice.

Tables
------
``xo_of[x, i]`` is the output row that input row ``x`` reaches through tap ``i``
(or -1 when the stride skips it or it falls outside), ``yo_of[y, j]`` likewise,
and ``koff[c] = (c // Cg) * Kg`` the first output channel of ``c``'s group. They
are computed once per layer, so the scatter loop holds no division.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ._config import jit_parallel, jit_serial

__all__ = ["bucket_events", "bucket_timelast", "count_sample", "scatter_events",
           "scatter_frames"]

#: Words per mask of the scans of :func:`scatter_frames` and :func:`bucket_timelast`
#: (one bit per word of a 64-bit mask).
_MASK_WORDS = 64

_BYTE_ONES = np.uint64(0x0101010101010101)
_HIGH_WORDS = np.uint64(0xFFFF0000FFFF0000)
_ODD_BYTES = np.uint64(0xFF00FF00FF00FF00)
_HALF = np.uint64(1 << 32)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
#: The bits of :func:`_bit_index`'s binary search: bit ``k`` of an index set where set.
_INDEX_BITS = (np.uint64(0xFFFFFFFF00000000), np.uint64(0xFFFF0000FFFF0000),
               np.uint64(0xFF00FF00FF00FF00), np.uint64(0xF0F0F0F0F0F0F0F0),
               np.uint64(0xCCCCCCCCCCCCCCCC), np.uint64(0xAAAAAAAAAAAAAAAA))
_I32, _I16, _I8, _I4, _I2, _I1 = _INDEX_BITS


@jit_serial
def _entry_bits(w, per_word):
    """One bit per non-zero entry of a word: bit ``8 * s * e`` for entry ``e``.

    ``w`` holds ``per_word`` (2, 4 or 8) entries of ``s = 8 // per_word`` bytes, entry
    ``e`` in bytes ``s*e .. s*e + s - 1`` counted from the low end: the word view of a
    row on a little-endian CPU (every platform Numba supports; under
    ``NUMBA_DISABLE_JIT=1`` on a big-endian host the entries would be misplaced). A
    non-zero bit pattern may still be a zero value (-0.0), so the caller tests the
    entry itself too. Walking these bits (:func:`_lowest_byte`) replaced the loop
    over every entry of a non-zero word in :func:`bucket_timelast`, whose branch on
    each entry the CPU could not predict (one or two events per word at 1 %).
    """
    m = w | (w >> np.uint64(4))
    m |= m >> np.uint64(2)
    m |= m >> np.uint64(1)
    m &= _BYTE_ONES
    if per_word <= 4:
        m |= m >> np.uint64(8)
        m &= np.uint64(0x0001000100010001)
    if per_word <= 2:
        m |= m >> np.uint64(16)
        m &= np.uint64(0x0000000100000001)
    return m


@jit_serial
def _lowest_byte(m):
    """Return ``(b, rest)``: the byte of ``m``'s lowest set bit, and ``m`` without it.

    The bit is bit ``8 b`` (:func:`_entry_bits`). Branch-free, and no multiply that
    could overflow (NumPy's scalars warn of it under ``NUMBA_DISABLE_JIT=1``).
    """
    low = m ^ (m & (m - np.uint64(1)))
    b = (4 * np.int64(low >= _HALF) + 2 * np.int64((low & _HIGH_WORDS) != 0)
         + np.int64((low & _ODD_BYTES) != 0))
    return b, m ^ low


@jit_serial
def _bit_index(low):
    """Return ``k`` for ``low == 2**k`` (one set bit of a uint64), branch-free.

    Each mask holds the bits whose index has one binary digit set. (No multiply, so
    nothing overflows under ``NUMBA_DISABLE_JIT=1``; Numba has no portable
    count-trailing-zeros.)
    """
    return (32 * np.int64((low & _I32) != 0) + 16 * np.int64((low & _I16) != 0)
            + 8 * np.int64((low & _I8) != 0) + 4 * np.int64((low & _I4) != 0)
            + 2 * np.int64((low & _I2) != 0) + np.int64((low & _I1) != 0))


@jit_serial
def _entry_shift(per_word):
    """``log2`` of the bytes per entry of a word holding ``per_word`` entries (1-8)."""
    return 0 if per_word >= 8 else (1 if per_word == 4 else (2 if per_word == 2 else 3))


@jit_serial
def _count_row(row):
    """Non-zero entries of one row, counted in int32 so that the loop vectorises.

    Measured on the ``vgg`` frame: 6 us against 11 us for an int64 count (and for
    ``np.count_nonzero``).
    """
    nz = np.int32(0)
    for e in range(row.shape[0]):
        nz += np.int32(1) if row[e] != 0 else np.int32(0)
    return nz


@jit_serial
def count_sample(rows, sample_elements, turn):
    """Count the non-zero entries of a sample of evenly spaced rows.

    The sample holds about ``sample_elements`` entries (every row when there are
    fewer, and at least four rows): rows ``start::step`` with
    ``step = max(1, min(R // 4, R * L // sample_elements))`` and
    ``start = turn % step``, so a caller that increments ``turn`` at every call
    moves the sample by one row each time.

    Parameters
    ----------
    rows : ndarray, (R, L)
        Input frames viewed as rows; any dtype.
    sample_elements : int
        Entries to sample, about (``>= 1``).
    turn : int
        Call counter (``>= 0``) that picks the first sampled row.

    Returns
    -------
    (int, int)
        Non-zeros found, rows counted.
    """
    n_rows, length = rows.shape
    step = max(1, min(n_rows // 4, n_rows * length // sample_elements))
    found = 0
    counted = 0
    for r in range(turn % step, n_rows, step):
        found += _count_row(rows[r])
        counted += 1
    return found, counted


@jit_serial
def bucket_events(xs, ys_in, cs_in, vals, offsets, ys, cs, vs):
    """Bucket index-array events into the CSR arrays by a counting sort (one frame).

    Parameters
    ----------
    xs, ys_in, cs_in : ndarray of int64, (E,)
        Event coordinates, already checked to be inside the input.
    vals : ndarray, (E,)
        Event values in the accumulator dtype.
    offsets : ndarray of int64, (X + 1,)
        Cumulative counts of events per input row (``bincount`` of ``xs``).
    ys, cs, vs : ndarray
        Outputs: the events' ``y``, ``c`` (int32) and values, grouped by input row.
    """
    n_rows = offsets.shape[0] - 1
    cursor = offsets[:n_rows].copy()
    for e in range(xs.shape[0]):
        x = xs[e]
        p = cursor[x]
        cursor[x] = p + 1
        ys[p] = ys_in[e]
        cs[p] = cs_in[e]
        vs[p] = vals[e]


@jit_parallel
def scatter_events(offsets, ys, cs, vs, binary, we, xo_of, yo_of, koff, out, n_blocks):
    """Scatter events into the output; each parallel iteration owns a block of rows.

    Parameters
    ----------
    offsets, ys, cs, vs : ndarray
        Events as CSR by input row (module docstring); ``offsets`` has
        ``N * X_in + 1`` entries.
    binary : bool
        All values are 1: add weight slices without multiplying (``vs`` unused).
    we : ndarray, (KX, KY, C_in, Kg)
        Correlation-ordered weights per input channel, accumulator dtype:
        ``we[i, j, c, kl] = W[g*Kg + kl, KX-1-i, KY-1-j, c - g*Cg]``, ``g = c // Cg``.
        Each event's slice ``we[i, j, c]`` is contiguous.
    xo_of : ndarray of int64, (X_in, KX)
        Output row reached from input row ``x`` through tap ``i``, or -1.
    yo_of : ndarray of int64, (Y_in, KY)
        Output column reached from input column ``y`` through tap ``j``, or -1.
    koff : ndarray of int64, (C_in,)
        First output channel of input channel ``c``'s group.
    out : ndarray, (N, X_out, Y_out, C_out), accumulator dtype
        Output; every cell is overwritten.
    n_blocks : int
        Blocks of output rows per frame (the parallel grain).

    Notes
    -----
    Why there is no race: iteration ``r`` handles frame ``n = r // n_blocks`` and
    the output rows ``[a, e)`` of block ``b = r % n_blocks``; it zeroes those rows,
    then walks the input rows that can reach them and, for each event, adds only
    the taps whose output row lies in ``[a, e)``. Blocks of one frame are disjoint
    and frames are disjoint, so no two iterations write the same output cell. An
    event near a block boundary is read by both neighbouring blocks, each adding
    its own taps: every (event, tap) pair is added exactly once.

    The innermost loop runs over the ``Kg`` contiguous output channels of a 1-D
    slice indexed from 0, so it vectorises (checked with ``inspect_asm``).
    Integer accumulators add exactly in any order; so do float32/float64 ones for
    integer data under the engine's bound (see :mod:`lavaconv.engine`).
    """
    n_frames, x_out, y_out, c_out = out.shape
    x_in, kx = xo_of.shape
    ky = yo_of.shape[1]
    kg = we.shape[3]
    for r in prange(n_frames * n_blocks):
        n = r // n_blocks
        b = r - n * n_blocks
        a = b * x_out // n_blocks
        e = (b + 1) * x_out // n_blocks
        if a >= e:
            continue
        out[n, a:e] = 0
        base = n * x_in
        for xi in range(x_in):
            ev0 = offsets[base + xi]
            ev1 = offsets[base + xi + 1]
            if ev0 == ev1:
                continue
            for i in range(kx):
                xo = xo_of[xi, i]
                if xo < a or xo >= e:
                    continue
                orow = out[n, xo]
                we_i = we[i]
                for ev in range(ev0, ev1):
                    y = ys[ev]
                    c = cs[ev]
                    ko = koff[c]
                    if binary:
                        for j in range(ky):
                            yo = yo_of[y, j]
                            if yo >= 0:
                                o = orow[yo, ko:ko + kg]
                                w = we_i[j, c]
                                for k in range(kg):
                                    o[k] += w[k]
                    else:
                        v = vs[ev]
                        for j in range(ky):
                            yo = yo_of[y, j]
                            if yo >= 0:
                                o = orow[yo, ko:ko + kg]
                                w = we_i[j, c]
                                for k in range(kg):
                                    o[k] += v * w[k]


@jit_parallel
def scatter_frames(rows, words, c_in, we, xo_of, yo_of, koff, out, n_blocks, binary, init,
                   has_init):
    """Find the events of dense frames and scatter them, in one parallel pass.

    Parameters
    ----------
    rows : ndarray, (N * X_in, Y_in * C_in)
        Input frames viewed as rows (any numeric or bool dtype); non-zero entries
        are events.
    words : ndarray, (N * X_in, W)
        The same memory viewed as ``W`` words per row, each holding
        ``Y_in * C_in // W >= 1`` whole entries: ``rows.view(np.uint64)`` when
        entries are at most 8 bytes and a row's size in bytes is a multiple of 8
        (and the view is aligned), else ``rows`` itself (one entry per word).
    c_in : int
        Input channels, to split a flat row index into ``(y, c)``.
    we, xo_of, yo_of, koff :
        As in :func:`scatter_events`.
    out : ndarray, (N, X_out, Y_out, C_out), accumulator dtype
        Output; every cell is overwritten.
    n_blocks : int
        Blocks of output rows per frame (the parallel grain).
    binary : bool
        Every non-zero entry is one spike of value 1 (Lava's binary message rule),
        so the frames need no converted copy; else entries are values.
    init : ndarray, (C_out,), accumulator dtype
        Each output pixel's starting value when ``has_init`` (a bias: it costs no
        pass of its own over the output), else not read.
    has_init : bool
        Start from ``init``; else from zero.

    Notes
    -----
    No event list is built: iteration ``r`` owns frame ``n = r // n_blocks`` and its
    output rows ``[a, e)`` (block ``r % n_blocks``), zeroes them (or sets them to
    ``init``), scans only the
    input rows with a tap landing in ``[a, e)`` and adds, for each event found, only
    the taps that land there. The scan of a row builds, per 64 words, a 64-bit mask
    of its non-zero words (a compare per word, which LLVM vectorises), walks the set
    bits of the mask (:func:`_bit_index`), and tests each entry of those words. It
    replaced a test of each block of 8 words (a branch per 64 bytes): 132 KiB of
    zero rows 7.2 -> 2.0 us on one thread (2.3 us at 0.1 % density), and this kernel
    0.84-1.01x its time before on the six workloads at 0.1-5 % (one interleaved run:
    ``mid`` 17.7 -> 16.7 us at 0.1 %, ``vgg`` 22.1 -> 20.1, ``depthwise`` at 5 %
    538 -> 449). Why there is no race: the blocks of a frame are
    disjoint, so no two iterations write the same output cell; an input row near a
    block boundary is scanned by both neighbours, each adding its own taps, so every
    (event, tap) pair is added exactly once. Values equal to 1 (binary spikes) are
    added without multiplying. Measured against the earlier designs: counting,
    listing and scattering in three launches was 1.6-2x slower at 0.1 % density on
    ``mid`` and ``vgg``; testing 64-entry blocks and then walking a non-zero block
    entry by entry took 22 us on ``mid`` at 0.1 % against 16 us for this scan (90
    against 70 us at 1 %; the same at 20 %).
    """
    n_frames, x_out, y_out, c_out = out.shape
    x_in, kx = xo_of.shape
    ky = yo_of.shape[1]
    kg = we.shape[3]
    n_words = words.shape[1]
    per_word = rows.shape[1] // n_words if n_words > 0 else 1
    for r in prange(n_frames * n_blocks):
        n = r // n_blocks
        b = r - n * n_blocks
        a = b * x_out // n_blocks
        e = (b + 1) * x_out // n_blocks
        if a >= e:
            continue
        if has_init:
            for xo in range(a, e):
                for yo in range(y_out):
                    cell = out[n, xo, yo]
                    for k in range(c_out):
                        cell[k] = init[k]
        else:
            out[n, a:e] = 0
        for xi in range(x_in):
            reach = False
            for i in range(kx):
                xo = xo_of[xi, i]
                reach |= a <= xo < e
            if not reach:
                continue
            row = rows[n * x_in + xi]
            wrow = words[n * x_in + xi]
            for q0 in range(0, n_words, _MASK_WORDS):
                q1 = min(q0 + _MASK_WORDS, n_words)
                blk = wrow[q0:q1]
                m = _ZERO
                for z in range(q1 - q0):  # one bit per non-zero word (vectorised)
                    m |= np.uint64(blk[z] != 0) << np.uint64(z)
                while m != _ZERO:
                    low = m ^ (m & (m - _ONE))
                    m ^= low
                    q = q0 + _bit_index(low)
                    for t in range(q * per_word, (q + 1) * per_word):
                        v = row[t]
                        if v == 0:
                            continue
                        y = t // c_in
                        c = t - y * c_in
                        ko = koff[c]
                        for i in range(kx):
                            xo = xo_of[xi, i]
                            if xo < a or xo >= e:
                                continue
                            orow = out[n, xo]
                            we_i = we[i]
                            for j in range(ky):
                                yo = yo_of[y, j]
                                if yo < 0:
                                    continue
                                o = orow[yo, ko:ko + kg]
                                w = we_i[j, c]
                                if binary or v == 1:
                                    for k in range(kg):
                                        o[k] += w[k]
                                else:
                                    for k in range(kg):
                                        o[k] += v * w[k]


@jit_parallel
def bucket_timelast(rows, words, c_in, n_t, t_count, t_offset, x_in, fill, cursor, ys, cs,
                    vs):
    """Bucket the events of time-last sequences into per-frame CSR rows, read in place.

    Lava's sequences are ``(N, X, Y, C, T)`` with time last; input row ``(n, x)`` is
    then one contiguous run of ``Y * C * T`` entries, entry ``p`` holding
    ``(y, c, t) = (p // (C*T), p // T % C, p % T)``. The run is scanned as
    :func:`scatter_frames` scans a frame row (zero 64-byte blocks and 8-byte words
    skipped with one test each), except that the events of a non-zero word are found
    from its bits (:func:`_entry_bits`, :func:`_lowest_byte`) instead of by a test of
    each entry: both passes together measured 58 -> 41 us per step on ``mid`` at 1 %
    (20 int8 steps; vgg 87 -> 61, dil_grp 118 -> 83, int16 input 74 -> 53, float32
    89 -> 79; 9.4 -> 9.1 at 0.1 %; one interleaved run). In :func:`scatter_frames`,
    where each event's taps cost more than finding it, the same change measured
    within noise (0.97-1.08x) and was not kept. The event at time ``t < t_count`` goes to CSR
    row ``((n * T + t + t_offset) * X + x)`` of the frames ``(N * T)`` that
    :func:`scatter_events` then adds frame by frame: the time-last input is never
    transposed, and each frame's scatter touches only that frame's output.

    Parameters
    ----------
    rows, words : ndarray, (N * X, Y * C * T) and (N * X, W)
        The sequences as rows, and the same memory as words (see :func:`scatter_frames`).
    c_in, n_t, t_count, t_offset, x_in : int
        Channels, time steps, times used (``t < t_count``), the frame offset of time 0,
        and input rows per frame.
    fill : bool
        False: count the events of each CSR row into ``cursor`` (zeros on entry).
        True: write each event at ``cursor[row]`` (the row offsets on entry) and
        advance it.
    cursor : ndarray of int64, (N * T * X,)
    ys, cs : ndarray of int32, (E,)
        Written when ``fill``.
    vs : ndarray, (E,), accumulator dtype
        The events' values, written when ``fill``.

    Notes
    -----
    Why there is no race: iteration ``r`` scans input row ``(n, x)`` only, and every
    CSR row it counts or fills, ``(n, t, x)``, belongs to that input row alone.
    """
    n_rows = rows.shape[0]
    n_words = words.shape[1]
    per_word = rows.shape[1] // n_words if n_words > 0 else 1
    ct = c_in * n_t
    # p // ct and rem // n_t by float reciprocals, corrected by one step: an integer
    # division by a run-time divisor (~40 cycles) was most of the cost per event. The
    # float quotient is within one of the true one for p < 2**52 (rows are < 2**32
    # entries, see lavaconv.geometry.MAX_FRAME_ELEMENTS)
    inv_ct = 1.0 / ct
    inv_t = 1.0 / n_t
    shift = _entry_shift(per_word)
    for r in prange(n_rows):
        n = r // x_in
        xi = r - n * x_in
        base = n * n_t + t_offset
        row = rows[r]
        wrow = words[r]
        for q0 in range(0, n_words, _MASK_WORDS):
            q1 = min(q0 + _MASK_WORDS, n_words)
            blk = wrow[q0:q1]
            m = _ZERO
            for z in range(q1 - q0):  # one bit per non-zero word, as in scatter_frames
                m |= np.uint64(blk[z] != 0) << np.uint64(z)
            while m != _ZERO:
                low = m ^ (m & (m - _ONE))
                m ^= low
                q = q0 + _bit_index(low)
                bits = (_entry_bits(np.uint64(wrow[q]), per_word) if per_word > 1
                        else np.uint64(1))
                while bits != 0:
                    b, bits = _lowest_byte(bits)
                    p = q * per_word + (b >> shift)
                    v = row[p]
                    if v == 0:
                        continue
                    y = np.int64(p * inv_ct)
                    rem = p - y * ct
                    if rem < 0:
                        y -= 1
                        rem += ct
                    elif rem >= ct:
                        y += 1
                        rem -= ct
                    c = np.int64(rem * inv_t)
                    t = rem - c * n_t
                    if t < 0:
                        c -= 1
                        t += n_t
                    elif t >= n_t:
                        c += 1
                        t -= n_t
                    if t >= t_count:
                        continue
                    k = (base + t) * x_in + xi
                    if fill:
                        e = cursor[k]
                        cursor[k] = e + 1
                        ys[e] = y
                        cs[e] = c
                        vs[e] = v
                    else:
                        cursor[k] += 1
