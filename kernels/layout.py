"""Layout kernels: Lava's time-last input to the engine's frames-first layout.

Lava's sequences are ``(X, Y, C, T)`` (time last); the engine takes
``(N, X, Y, C)`` frames. Both kernels take the time-last data as a strided 4-D view
``src`` of shape ``(T', X, Y, C)`` (``np.moveaxis(data, -1, 0)`` or a slice of it) and
write a contiguous ``dst`` of the same shape, fusing the message rule into the
transpose. NumPy's strided ``np.not_equal(view, 0, out=dst)`` measured 25 ms for the
``vgg`` input at T = 100 (about as long as the 100 event-driven kernel calls it
feeds), a row-blocked NumPy loop 12 ms, this kernel 6 ms (2 threads, shared
machine): it transposes one ``(Y-block x C) x T`` tile at a time, the Y-block
holding at least ``_TILE`` elements per frame, so the tile sits in L1 and each
frame receives a contiguous run. With one pixel per tile, layers with few channels
(``dvs128``, C = 2) wrote 2 bytes per frame per pixel: 2.6 ms per call at T = 100,
against 2.1 ms tiled (``vgg``, C = 64, is unchanged at 6.4 ms).

Parallelism: ``prange`` over X; iteration ``x`` writes only ``dst[:, x]``, so there
are no races.

:func:`address` (no loop) gives the engine an array's data address cheaply, to align
the buffers it allocates (``lavaconv.engine.empty``).
"""

from __future__ import annotations

from numba import prange

from ._config import jit_parallel, jit_serial

__all__ = ["address", "copy_to_frames", "spikes_to_frames"]

#: Elements per frame in one transposed tile (a Y-block of ``_TILE // C`` pixels).
_TILE = 64


@jit_serial
def address(a):
    """Return the address of ``a``'s first byte (``a``: a 1-D uint8 array).

    ``a.ctypes.data`` from Python costs about 1 us (it builds a ctypes object), this
    call 0.3 us.
    """
    return a.ctypes.data


@jit_parallel
def spikes_to_frames(src, dst):
    """``dst[t, x, y, c] = src[t, x, y, c] != 0``: the binary spike rule and the transpose.

    Parameters
    ----------
    src : ndarray, (T, X, Y, C), any strides
        Input of any numeric or bool dtype.
    dst : ndarray of bool, (T, X, Y, C), contiguous
        Destination; every cell is written.

    """
    n_t, n_x, n_y, n_c = dst.shape
    yb = max(1, _TILE // n_c)
    for x in prange(n_x):
        for y0 in range(0, n_y, yb):
            y1 = min(y0 + yb, n_y)
            for t in range(n_t):
                for y in range(y0, y1):
                    for c in range(n_c):
                        dst[t, x, y, c] = src[t, x, y, c] != 0


@jit_parallel
def copy_to_frames(src, dst):
    """``dst[t, x, y, c] = src[t, x, y, c]`` cast to ``dst.dtype``: the graded transpose.

    Parameters
    ----------
    src : ndarray, (T, X, Y, C), any strides
        Input (integer or integral float values, already validated).
    dst : ndarray, (T, X, Y, C), contiguous
        Destination; every cell is written.

    """
    n_t, n_x, n_y, n_c = dst.shape
    yb = max(1, _TILE // n_c)
    for x in prange(n_x):
        for y0 in range(0, n_y, yb):
            y1 = min(y0 + yb, n_y)
            for t in range(n_t):
                for y in range(y0, y1):
                    for c in range(n_c):
                        dst[t, x, y, c] = src[t, x, y, c]
