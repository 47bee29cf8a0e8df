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
    exact whatever its size; returned as int64 if it fits, else object. When
    ``max|x| * sum|W|`` (a bound on every partial sum) is below ``2**62`` the same
    sums are formed in int64 instead, which is then exact too and much faster. Floats
    are accumulated in float64.
    """
    X, Y, C = x.shape
    K, KX, KY, Cg = weight.shape
    sx, sy = stride
    px, py = padding
    dx, dy = dilation
    Kg = K // groups
    integer = x.dtype.kind in "biu" and weight.dtype.kind in "biu"
    work = object if integer else np.float64
    if integer and x.size and weight.size:
        big_x = max(abs(int(v)) for v in (x.min(), x.max()))
        big_w = sum(abs(int(v)) for v in weight.ravel())
        if big_x * big_w < 2**62:
            work = np.int64
    xin = x.astype(np.int64 if x.dtype.kind == "b" else x.dtype).astype(work)
    w = weight.astype(work)
    in_pad = np.zeros((X + 2 * px, Y + 2 * py, C), dtype=work)
    if work is object:
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


# -- process models (SPEC sections 3-6) ----------------------------------------------
def sign_mode_reference(weights):
    """SPEC 5.1: 'EXCITATORY' if all >= 0, 'INHIBITORY' if all <= 0, else 'MIXED'."""
    flat = [int(v) for v in np.asarray(weights).ravel()]
    if all(v >= 0 for v in flat):
        return "EXCITATORY"
    if all(v <= 0 for v in flat):
        return "INHIBITORY"
    return "MIXED"


def encode_weight_reference(w, mode, num_weight_bits):
    """SPEC 5.2-5.3 on one Python int: clip to 8 bits for the mode, then truncate.

    Clip: MIXED [-256, 255], EXCITATORY [0, 255], INHIBITORY [-255, 0]. Truncate:
    clear the low ``n = 8 - num_weight_bits + (1 if MIXED)`` bits as a two's-complement
    floor, ``floor(w / 2**n) * 2**n``; INHIBITORY weights are negated first and back.
    """
    lo, hi = {"MIXED": (-256, 255), "EXCITATORY": (0, 255), "INHIBITORY": (-255, 0)}[mode]
    w = min(max(int(w), lo), hi)
    n = 8 - num_weight_bits + (1 if mode == "MIXED" else 0)
    if mode == "INHIBITORY":
        return -((-w // 2**n) * 2**n)
    return (w // 2**n) * 2**n


def shift_reference(v, e):
    """SPEC 5.4: ``v * 2**e`` for e >= 0, ``floor(v / 2**-e)`` for e < 0 (Python ints)."""
    return int(v) * 2**e if e >= 0 else int(v) // 2**(-e)


def model_reference(inputs, weight, geometry, model, *, num_message_bits=0, weight_exp=0,
                    num_weight_bits=8, sign_mode=None, exponent_mode="post_accumulate",
                    num_accum_bits=24, accumulator_overflow="wrap",
                    message_overflow="error"):
    """SPEC 3-6 for a sequence of frames, one step at a time, plain Python arithmetic.

    Parameters
    ----------
    inputs : sequence of (X, Y, C) arrays
        ``s_in(1), ..., s_in(T)``.
    weight : ndarray
        The process weights.
    geometry : dict
        ``stride``, ``padding``, ``dilation``, ``groups`` (X, Y) pairs / int.
    model : {"float", "fixed", "bitacc"}

    Returns
    -------
    outputs : list of T arrays
        ``a_out(1) = 0``, ``a_out(t) = f(s_in(t-1))``.
    a_buf : ndarray
        ``f(s_in(T))``, the state after the last step.
    """
    geo = (geometry["stride"], geometry["padding"], geometry["dilation"], geometry["groups"])
    if model == "float":
        w = np.asarray(weight, np.float64)
    else:
        # truncate toward zero to ints (Lava's int32 weight variable)
        w = np.trunc(np.asarray(weight, np.float64)).astype(np.int64)
    if model == "bitacc":
        mode = sign_mode or sign_mode_reference(w)
        w = np.vectorize(lambda v: encode_weight_reference(v, mode, num_weight_bits),
                         otypes=[np.int64])(w)
        if exponent_mode == "per_weight":
            w = np.vectorize(lambda v: shift_reference(v, weight_exp), otypes=[np.int64])(w)

    def messages(s):
        if num_message_bits == 0:
            return (np.asarray(s) != 0).astype(np.int64 if model != "float" else np.float64)
        if model == "float":
            return np.asarray(s, np.float64)
        s = np.asarray(s).astype(np.int64)
        if model == "bitacc" and message_overflow != "error":
            fn = wrap_reference if message_overflow == "wrap" else saturate_reference
            s = np.vectorize(lambda v: fn(v, num_message_bits), otypes=[np.int64])(s)
        return s

    def f(s):
        total = conv_reference(messages(s), w, *geo)
        if model == "float":
            return total
        if model == "fixed":
            return np.vectorize(lambda v: wrap_reference(v, 24), otypes=[np.int32])(total)
        if exponent_mode == "post_accumulate":
            total = np.vectorize(lambda v: shift_reference(v, weight_exp),
                                 otypes=[object])(total)
        fn = wrap_reference if accumulator_overflow == "wrap" else saturate_reference
        return np.vectorize(lambda v: fn(v, num_accum_bits), otypes=[np.int32])(total)

    a_buf = None
    outputs = []
    for s in inputs:
        out = f(s)
        outputs.append(np.zeros_like(out) if a_buf is None else a_buf)
        a_buf = out
    return outputs, a_buf


def lava_fixed_run_spk_reference(inputs, weight, geometry, num_message_bits=0):
    """Lava 0.10 ``PyConvModelFixed.run_spk``, transcribed (its arithmetic, not SPEC's).

    ``a_out.send(a_buf)``; ``s = recv()`` (``astype(bool)`` when binary);
    ``a = conv(s, int32 weights)`` as a float64 sum cast to int32; then
    ``a_buf = (a + 2**23) % 2**24 - 2**23`` on int32 (``signed_clamp(a, bits=24)``).
    """
    geo = (geometry["stride"], geometry["padding"], geometry["dilation"], geometry["groups"])
    w = np.asarray(weight).astype(np.int32).astype(np.float64)
    a_buf = None
    outputs = []
    for s in inputs:
        s = np.asarray(s)
        s = s.astype(bool) if num_message_bits == 0 else s
        a = conv_reference(s.astype(np.float64), w, *geo).astype(np.int32)
        out = (a + 2**23) % 2**24 - 2**23
        outputs.append(np.zeros(out.shape, np.int32) if a_buf is None else a_buf)
        a_buf = out
    return outputs, a_buf
