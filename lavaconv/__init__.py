"""lavaconv: Loihi's convolutional synapse on the CPU, fast and bit-exact.

A drop-in for Lava's ``lava.proc.conv``: ``from lavaconv import utils`` gives the
functional API (:func:`conv`, :func:`conv_scipy`, :func:`conv_to_sparse`, ...).
Compiled kernels live in :mod:`lavaconv.kernels`.

"SPEC n" in the docstrings refers to section n of ``docs/SPEC.md`` (the semantics every
kernel, model and test follows); "WORKLOADS.md" to ``docs/WORKLOADS.md`` (the benchmark
layers and aims); "STYLE" to ``docs/STYLE.md``.
"""

from __future__ import annotations

from . import utils
from ._threads import get_num_threads, set_num_threads
from .geometry import Geometry, validate_geometry
from .indexed import conv_events
from .models import PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat
from .process import Conv
from .quantize import SignMode, clip_weights, determine_sign_mode, truncate_weights
from .stream import conv_event_stream
from .utils import (
    TensorOrder,
    conv,
    conv_scipy,
    conv_to_sparse,
    make_tuple,
    output_shape,
    saturate_to_bits,
    signed_clamp,
    wrap_to_bits,
)
from .warmup import warmup

__version__ = "0.1.0"

__all__ = [
    "Conv",
    "Geometry",
    "PyConvModelBitAcc",
    "PyConvModelFixed",
    "PyConvModelFloat",
    "SignMode",
    "clip_weights",
    "determine_sign_mode",
    "get_num_threads",
    "set_num_threads",
    "warmup",
    "truncate_weights",
    "TensorOrder",
    "conv",
    "conv_events",
    "conv_event_stream",
    "conv_scipy",
    "conv_to_sparse",
    "make_tuple",
    "output_shape",
    "saturate_to_bits",
    "signed_clamp",
    "utils",
    "validate_geometry",
    "wrap_to_bits",
]
