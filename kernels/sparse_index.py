"""COO index generation for the sparse matrix equivalent of a convolution.

The wrapper (:func:`lavaconv.utils.conv_to_sparse`) converts every tensor order to
Lava's convolution kernel layout ``(C_out, KX, KY, Cg)`` and (X, Y) parameters, and
describes the order's flattening by three index multipliers per tensor:
``id(x, y, c) = x * mx + y * my + c * mc``.

Triplets come out in Lava's order: group, output pixel (``y`` outer, ``x`` inner),
kernel tap (``j`` outer, ``i`` inner, only taps that land inside the input), output
channel, input channel.
"""

from __future__ import annotations

from numba import prange

from ._config import jit_parallel, jit_serial

__all__ = ["count_sparse_taps", "fill_sparse"]


@jit_serial
def _taps_valid(xo, yo, kx, ky, sx, sy, px, py, dx, dy, x_in, y_in):
    """Count the kernel taps of output ``(xo, yo)`` that land inside the input."""
    nx = 0
    for i in range(kx):
        xi = xo * sx + i * dx - px
        if 0 <= xi < x_in:
            nx += 1
    ny = 0
    for j in range(ky):
        yi = yo * sy + j * dy - py
        if 0 <= yi < y_in:
            ny += 1
    return nx * ny


@jit_parallel
def count_sparse_taps(counts, kx, ky, sx, sy, px, py, dx, dy, x_in, y_in):
    """Write the number of valid taps of every output pixel into ``counts``.

    Parameters
    ----------
    counts : ndarray of int64, (Y_out, X_out)
        Destination, in Lava's pixel order (``y`` outer).
    kx, ky, sx, sy, px, py, dx, dy, x_in, y_in : int
        Kernel size, stride, padding, dilation and input size along X and Y.

    """
    y_out, x_out = counts.shape
    for yo in prange(y_out):
        for xo in range(x_out):
            counts[yo, xo] = _taps_valid(xo, yo, kx, ky, sx, sy, px, py, dx, dy, x_in, y_in)


@jit_parallel
def fill_sparse(dst, src, wgt, offsets, weight, groups, sx, sy, px, py, dx, dy,
                x_in, y_in, m_in, m_out):
    """Fill the COO triplets.

    Parameters
    ----------
    dst, src : ndarray of int, (nnz,)
        Output and input flat indices, written.
    wgt : ndarray, (nnz,)
        Weights, written.
    offsets : ndarray of int64, (groups * Y_out * X_out,)
        Start of each (group, output pixel) block, in units of taps: the block of
        pixel ``p`` of group ``g`` starts at triplet ``offsets[g * P + p] * Kg * Cg``.
    weight : ndarray, (C_out, KX, KY, Cg)
        Convolution kernel in Lava's layout.
    groups, sx, sy, px, py, dx, dy, x_in, y_in : int
        Geometry in (X, Y).
    m_in : ndarray of int64, (3,)
        Index multipliers ``(mx, my, mc)`` of the input flattening.
    m_out : ndarray of int64, (4,)
        Index multipliers ``(mx, my, mc)`` of the output flattening, then ``X_out``.

    Notes
    -----
    Parallel over (group, output pixel) blocks; each block writes its own slice
    ``[offsets[b] * Kg * Cg, offsets[b + 1] * Kg * Cg)``, so there are no races.

    """
    c_out, kx, ky, cg = weight.shape
    kg = c_out // groups
    n_pix = offsets.shape[0] // groups
    x_out = m_out[3]
    block = kg * cg
    for b in prange(groups * n_pix):
        g = b // n_pix
        p = b - g * n_pix
        yo = p // x_out
        xo = p - yo * x_out
        t = offsets[b] * block
        for j in range(ky):
            yi = yo * sy + j * dy - py
            if yi < 0 or yi >= y_in:
                continue
            for i in range(kx):
                xi = xo * sx + i * dx - px
                if xi < 0 or xi >= x_in:
                    continue
                for kk in range(kg):
                    k = g * kg + kk
                    d = xo * m_out[0] + yo * m_out[1] + k * m_out[2]
                    wk = weight[k, kx - 1 - i, ky - 1 - j]
                    s0 = xi * m_in[0] + yi * m_in[1] + g * cg * m_in[2]
                    for c in range(cg):
                        dst[t] = d
                        src[t] = s0 + c * m_in[2]
                        wgt[t] = wk[c]
                        t += 1
