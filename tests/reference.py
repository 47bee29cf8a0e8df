"""Slow, plain-NumPy references that read like SPEC.md. Used by every correctness test.

Nothing here imports lavaconv's kernels or engine: these are written from the
specification, not from the code under test.
"""

from __future__ import annotations

import numpy as np


def conv_reference(x, weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """SPEC section 1, literally, with Python-int (exact) accumulation for integers.

    ``out[x, y, k] = sum_{i<KX} sum_{j<KY} sum_{c<Cg}
    in_pad[x*sx + i*dx, y*sy + j*dy, g*Cg + c] * W[k, KX-1-i, KY-1-j, c]``.

    Integer inputs are accumulated as Python ints (object dtype), so the result is
    exact whatever its size; returned as int64 if it fits, else object. Floats are
    accumulated in float64.
    """
    X, Y, C = x.shape
    K, KX, KY, Cg = weight.shape
    sx, sy = stride
    px, py = padding
    dx, dy = dilation
    Kg = K // groups
    integer = x.dtype.kind in "biu" and weight.dtype.kind in "biu"
    work = object if integer else np.float64
    xin = x.astype(np.int64 if x.dtype.kind == "b" else x.dtype).astype(work)
    w = weight.astype(work)
    in_pad = np.zeros((X + 2 * px, Y + 2 * py, C), dtype=work)
    if integer:
        in_pad[...] = 0
    in_pad[px:px + X, py:py + Y, :] = xin
    X_out = (X + 2 * px - dx * (KX - 1) - 1) // sx + 1
    Y_out = (Y + 2 * py - dy * (KY - 1) - 1) // sy + 1
    out = np.zeros((X_out, Y_out, K), dtype=work)
    for k in range(K):
        g = k // Kg
        for i in range(KX):
            for j in range(KY):
                # all output pixels at once for this tap: in_pad[x*sx + i*dx, y*sy + j*dy, ...]
                patch = in_pad[i * dx: i * dx + sx * (X_out - 1) + 1: sx,
                               j * dy: j * dy + sy * (Y_out - 1) + 1: sy,
                               g * Cg:(g + 1) * Cg]
                out[:, :, k] += patch @ w[k, KX - 1 - i, KY - 1 - j, :]
    if integer:
        flat = [int(v) for v in out.ravel()]
        if all(-(2**63) <= v < 2**63 for v in flat):
            return np.array(flat, dtype=np.int64).reshape(out.shape)
        return out
    return out


def torch_to_lava_weight(w_torch):
    """SPEC section 1: ``W_lava = W_torch[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``."""
    return np.ascontiguousarray(w_torch[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def wrap_reference(v, bits):
    """``((v + 2**(b-1)) mod 2**b) - 2**(b-1)`` on Python ints."""
    half = 1 << (bits - 1)
    return ((int(v) + half) % (1 << bits)) - half


def saturate_reference(v, bits):
    """``min(max(v, -2**(b-1)), 2**(b-1) - 1)`` on Python ints."""
    half = 1 << (bits - 1)
    return min(max(int(v), -half), half - 1)


def sparse_reference(input_shape, kernel, stride, padding, dilation, groups):
    """Dense matrix of the NWHC convolution, built column by column from unit inputs.

    Column ``src`` is the convolution of the one-hot input ``e_src``: so the matrix is
    correct by construction, with no index formula shared with the code under test.
    """
    n_in = int(np.prod(input_shape))
    cols = []
    for s in range(n_in):
        e = np.zeros(n_in, np.int64)
        e[s] = 1
        cols.append(conv_reference(e.reshape(input_shape), kernel.astype(np.int64),
                                   stride, padding, dilation, groups).ravel())
    return np.stack(cols, axis=1)
