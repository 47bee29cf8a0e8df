"""Numba kernels of lavaconv, installed as ``lavaconv.kernels``.

One module per family: :mod:`.dense` (gather convolution), :mod:`.vnni` (the gather
dot and depthwise kernels by AVX512-VNNI on uint8 input, where the host has it), :mod:`.events`
(event-driven scatter), :mod:`.accumulate` (wrap/saturate to ``b`` bits),
:mod:`.sparse_index` (COO indices of the equivalent matrix), :mod:`.layout`
(time-last to frames), :mod:`.compare` (the prepared-layer cache's content
check), :mod:`.stream` (event-camera streams binned into CSR events). Kernels
only loop: every check happens in the wrappers. Compiler options live in
:mod:`._config`.
"""
