"""The benchmark workloads of WORKLOADS.md: one registry for tests, benchmarks and the CLI.

Each :class:`Workload` is a conv layer in Lava's layout with int8-range weights;
:meth:`Workload.make` draws its weights and an input frame from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry, validate_geometry

__all__ = ["WORKLOADS", "DENSITIES", "Workload"]

#: Binary spike densities of the benchmark; ``"graded"`` means random ints 1..127 at 100 %.
DENSITIES = (0.001, 0.01, 0.05, 0.2)


@dataclass(frozen=True)
class Workload:
    """One conv layer of the benchmark (shapes in Lava's (X, Y, C) layout)."""

    name: str
    input_shape: tuple[int, int, int]
    weight_shape: tuple[int, int, int, int]
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1

    @property
    def geometry(self) -> Geometry:
        """Validated geometry of the layer."""
        return validate_geometry(self.input_shape, self.weight_shape, self.stride,
                                 self.padding, self.dilation, self.groups)

    def make(self, density: float | str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(input, weight)``: int8 weights in -128..127 and one input frame.

        Parameters
        ----------
        density : float or "graded"
            Fraction of inputs that spike (binary, int8 0/1), or ``"graded"`` for
            random ints 1..127 everywhere.
        seed : int
            Seed of NumPy's generator; the same seed gives the same arrays.

        Returns
        -------
        input : ndarray of int8, ``input_shape``
        weight : ndarray of int8, ``weight_shape``

        """
        rng = np.random.default_rng(seed)
        weight = rng.integers(-128, 128, size=self.weight_shape, dtype=np.int16).astype(np.int8)
        if density == "graded":
            x = rng.integers(1, 128, size=self.input_shape, dtype=np.int16).astype(np.int8)
        else:
            x = (rng.random(self.input_shape) < float(density)).astype(np.int8)
        return x, weight

    def conv_args(self) -> tuple:
        """Lava's positional geometry arguments after the arrays.

        Returns ``(kernel_size, stride, padding, dilation, groups)``.
        """
        return (self.weight_shape[1:3], self.stride, self.padding, self.dilation, self.groups)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("nmnist", (34, 34, 2), (12, 5, 5, 2)),
        Workload("dvs128", (128, 128, 2), (16, 5, 5, 2), stride=2, padding=2),
        Workload("mid", (64, 64, 32), (64, 3, 3, 32), padding=1),
        Workload("vgg", (56, 56, 64), (64, 3, 3, 64), padding=1),
        Workload("depthwise", (56, 56, 128), (128, 3, 3, 1), padding=1, groups=128),
        Workload("dil_grp", (64, 64, 64), (64, 3, 3, 16), stride=2, padding=2, dilation=2,
                 groups=4),
    ]
}
