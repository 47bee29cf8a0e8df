"""Hypothesis strategies that stay inside representable ranges (STYLE 12)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import strategies as st

SMALL = st.integers(1, 3)
#: Kernel bodies run as Python (``NUMBA_DISABLE_JIT=1``): keep the wide layers smaller.
_NOJIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"


#: Layer families, one per dense kernel kind (``ConvEngine.dense_kind``): few input
#: channels (the channel-plane kernel), many (the dot kernel, with 2-pixel x
#: 4-channel blocks and their tails, on padded or gathered rows) and depthwise (direct
#: when sy == 1, padded else).
KINDS = ("small", "wide", "depthwise")


@st.composite
def geometries(draw, max_size: int = 9, max_groups: int = 3, kind: str | None = None):
    """Draw a valid geometry: rectangular everything, groups, dilation, stride > kernel.

    Returns a dict with ``input_shape`` (X, Y, C_in), ``weight_shape``, ``stride``,
    ``padding``, ``dilation``, ``groups``; the output is non-empty by construction
    (input size drawn at least as large as the dilated kernel minus the padding).
    ``kind`` (one of :data:`KINDS`, drawn when omitted) picks the channel counts so
    that every dense kernel kind is reached: ``"wide"`` draws 12-24 input channels
    per group (dot runs of at least 16 entries, and tails), ``"depthwise"`` one
    channel per group.
    """
    kind = kind if kind is not None else draw(st.sampled_from(KINDS))
    if kind == "depthwise":
        groups = draw(st.integers(1, 12))
        cg, kg = 1, 1
    elif kind == "wide":
        groups = draw(st.integers(1, 2))
        cg = draw(st.integers(12, 16 if _NOJIT else 24))
        kg = draw(st.integers(1, 5 if _NOJIT else 9))
    else:
        groups = draw(st.integers(1, max_groups))
        cg = draw(st.integers(1, 3))
        kg = draw(st.integers(1, 5))
    kx, ky = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sx, sy = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dx, dy = draw(SMALL), draw(SMALL)
    px, py = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    span_x, span_y = dx * (kx - 1) + 1, dy * (ky - 1) + 1
    x = draw(st.integers(max(1, span_x - 2 * px), max(max_size, span_x - 2 * px)))
    y = draw(st.integers(max(1, span_y - 2 * py), max(max_size, span_y - 2 * py)))
    return dict(input_shape=(x, y, groups * cg), weight_shape=(groups * kg, kx, ky, cg),
                stride=(sx, sy), padding=(px, py), dilation=(dx, dy), groups=groups)


def seeds():
    """A fresh seed per example for NumPy's generator."""
    return st.integers(0, 2**32 - 1)


def int8_weights(rng: np.random.Generator, shape) -> np.ndarray:
    """Loihi-range weights, int8."""
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def spikes(rng: np.random.Generator, shape, kind: str, density: float = 0.3) -> np.ndarray:
    """Binary (bool), binary-as-int, or graded (signed 8-bit) input frames."""
    active = rng.random(shape) < density
    if kind == "bool":
        return active
    if kind == "binary":
        return active.astype(np.int32)
    return (active * rng.integers(-128, 128, size=shape)).astype(np.int16)
