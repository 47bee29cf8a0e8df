"""NIR adapter: ``nir.Conv2d``/``nir.Conv1d`` nodes to and from :class:`lavaconv.Conv`.

Extra ``[nir]`` (the ``nir`` package; ``h5py`` comes with it).

Conventions (SPEC sections 1 and 11)
------------------------------------
A NIR ``Conv2d`` is a correlation in PyTorch's layout: weight ``(C_out, C_in //
groups, kH, kW)``, ``input_shape`` the spatial ``(H, W)``, ``stride``, ``padding``,
``dilation`` as ``(H, W)`` pairs, and a bias ``(C_out,)`` (exporters write zeros when
there is none). A Lava :class:`~lavaconv.Conv` is a true convolution in ``(X, Y, C)``
= ``(W, H, C)``, with weight ``(C_out, KX, KY, C_in // groups)`` and no bias. So

* ``weight_lava = weight_nir[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``;
* ``input_shape = (W, H, C)`` and every pair reversed to ``(X, Y)``;
* the bias is returned beside the ``Conv`` (netx routes it to the neuron).

A ``nir.Conv1d`` (weight ``(C_out, C_in // groups, L)``, ``input_shape`` ``L``) is a
``Conv2d`` with ``H = 1``: ``input_shape = (L, 1, C)`` in Lava's layout.

``padding='valid'`` is 0. ``'same'`` (stride 1) pads ``d * (k - 1)`` zeros in total per
axis; when that is odd (even kernels) PyTorch puts the extra one at the end, which a
Lava ``Conv`` (symmetric padding) cannot express: :func:`conv_from_nir` raises a
``ValueError`` naming it.

nir 1.0.8 infers a conv's input type as ``(weight.shape[1], ...)``, i.e. ``C_in //
groups`` channels, so a grouped conv behind an ``Input`` node fails nir's type check:
:func:`read` reads files with ``type_check=False`` and infers the shapes itself, and
:func:`conv_to_nir` sets the node's ``input_type`` to the true ``(C_in, H, W)``.

Untrusted files
---------------
:func:`read` opens a file with h5py and checks every dataset's shape and dtype
(metadata only) against ``max_elements`` before nir reads any of it, refuses links
other than hard links and nesting deeper than 64 groups, and checks every conv's
input, output and weight sizes before building it. A file claiming a huge array (a
compressed or unwritten dataset holds any shape in a few bytes) is refused with a
``ValueError`` naming the dataset and its size, before anything is allocated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import nir
import numpy as np

from .geometry import make_tuple
from .process import Conv

__all__ = ["MAX_ELEMENTS", "conv_from_nir", "conv_to_nir", "read"]

#: Default limit on the elements of any one array a NIR file or graph may make us
#: build or read (and on all datasets of a file together): 2**28, 1 GiB of float32.
MAX_ELEMENTS = 2**28
#: Bytes a file's datasets may hold together (and any one of them): 8 per element.
_BYTES_PER_ELEMENT = 8
_MAX_DEPTH = 64
_MAX_OBJECTS = 1_000_000
#: Nodes whose output has the shape of their input.
_SAME_SHAPE = tuple(
    getattr(nir, name) for name in ("LIF", "LI", "IF", "I", "CubaLIF", "CubaLI", "Scale",
                                    "Threshold", "Delay", "Identity", "Output")
    if hasattr(nir, name))


# -- small helpers ----------------------------------------------------------------------
def _int(value: Any, name: str) -> int:
    """Return a Python int from an int, a NumPy integer or a size-1 integer array."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer, got {name}={value!r}.")
    return int(arr.reshape(()))


def _shape(value: Any, name: str, ndim: int | None = None) -> tuple[int, ...]:
    """Return a shape as a tuple of positive Python ints, or raise a ``ValueError``."""
    arr = np.asarray(value)
    if arr.ndim > 1 or arr.dtype.kind not in "iu" or (ndim is not None and arr.size != ndim):
        want = f"{ndim} positive ints" if ndim is not None else "positive ints"
        raise ValueError(f"{name} must be {want}, got {name}={value!r}.")
    shape = tuple(int(v) for v in arr.reshape(-1))
    if min(shape, default=1) < 1:
        raise ValueError(f"{name} must be positive ints, got {name}={shape}.")
    return shape


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(int(s) for s in shape)


def _check_size(what: str, shape: tuple[int, ...], max_elements: int) -> None:
    n = _elements(shape)
    if n > max_elements:
        raise ValueError(
            f"{what} of shape {shape} has {n} elements ({n * 4 / 2**30:.3g} GiB as float32), "
            f"above max_elements={max_elements}; pass a larger max_elements if you trust "
            f"the source.")


def _padding_kind(padding: Any) -> Any:
    if isinstance(padding, bytes):
        padding = padding.decode("utf8")
    if isinstance(padding, np.ndarray) and padding.dtype.kind in "OSU" and padding.size == 1:
        padding = padding.reshape(()).item()
        padding = padding.decode("utf8") if isinstance(padding, bytes) else padding
    return padding


# -- nodes ------------------------------------------------------------------------------
class _Node:
    """A NIR conv node read into PyTorch-order ints: the 1-D case as 2-D with H = 1."""

    def __init__(self, node: Any, label: str) -> None:
        if isinstance(node, nir.Conv2d):
            self.one_d = False
        elif isinstance(node, nir.Conv1d):
            self.one_d = True
        else:
            raise ValueError(
                f"{label} must be a nir.Conv2d or nir.Conv1d, got {type(node).__name__}.")
        self.label = label
        weight = np.asarray(node.weight)
        want = 3 if self.one_d else 4
        if weight.ndim != want or weight.dtype.kind not in "biuf":
            raise ValueError(
                f"{label}.weight must be a {want}-D numeric array (C_out, C_in // groups, "
                f"{'L' if self.one_d else 'kH, kW'}), got shape {weight.shape}, dtype "
                f"{weight.dtype}.")
        self.weight = weight[:, :, None, :] if self.one_d else weight
        self.c_out, cg, self.kh, self.kw = self.weight.shape
        self.groups = _int(node.groups, f"{label}.groups")
        if self.groups < 1:
            raise ValueError(f"{label}.groups must be >= 1, got {self.groups}.")
        self.c_in = cg * self.groups
        if self.one_d:
            self.stride = (1, _int(node.stride, f"{label}.stride"))
            self.dilation = (1, _int(node.dilation, f"{label}.dilation"))
        else:
            self.stride = make_tuple(node.stride, f"{label}.stride")
            self.dilation = make_tuple(node.dilation, f"{label}.dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"{label}: stride and dilation must be >= 1, got stride="
                             f"{self.stride}, dilation={self.dilation}.")
        self.padding = self._padding(_padding_kind(node.padding))
        bias = getattr(node, "bias", None)
        bias = np.zeros(self.c_out, np.float32) if bias is None else np.asarray(bias)
        if bias.shape != (self.c_out,) or bias.dtype.kind not in "biuf":
            raise ValueError(f"{label}.bias must be a numeric array of shape ({self.c_out},), "
                             f"got shape {bias.shape}, dtype {bias.dtype}.")
        self.bias = bias
        own = getattr(node, "input_shape", None)
        self.own_shape = None
        if own is not None:
            spatial = (1, _int(own, f"{label}.input_shape")) if self.one_d else _shape(
                own, f"{label}.input_shape", 2)
            self.own_shape = (self.c_in, *spatial)

    def _padding(self, padding: Any) -> tuple[int, int]:
        label = self.label
        if isinstance(padding, str):
            if padding == "valid":
                return 0, 0
            if padding != "same":
                raise ValueError(f"{label}.padding must be an int, a pair, 'valid' or 'same', "
                                 f"got {padding!r}.")
            if self.stride != (1, 1):
                raise ValueError(f"{label}: padding='same' needs stride 1, got stride="
                                 f"{self.stride[1] if self.one_d else self.stride}.")
            pads = []
            for axis, k, d in zip(("H", "W"), (self.kh, self.kw), self.dilation, strict=True):
                total = d * (k - 1)
                if total % 2:
                    axis = "L" if self.one_d else axis
                    raise ValueError(
                        f"{label}: padding='same' along {axis} needs asymmetric padding: "
                        f"dilation {d} * (kernel {k} - 1) = {total} zeros, {total // 2} "
                        f"before and {total - total // 2} after (PyTorch puts the extra zero "
                        f"at the end), and a Lava Conv pads symmetrically only. Use an odd "
                        f"kernel, or pad the input by one yourself and use padding "
                        f"{total // 2}.")
                pads.append(total // 2)
            return pads[0], pads[1]
        if self.one_d:
            pads = (0, _int(padding, f"{label}.padding"))
        else:
            pads = make_tuple(padding, f"{label}.padding")
        if min(pads) < 0:
            raise ValueError(f"{label}.padding must be >= 0, got {pads}.")
        return pads

    def input_chw(self, input_shape: Any) -> tuple[int, int, int]:
        """``(C, H, W)`` from an argument (``(C, H, W)``, or ``(C, L)`` for Conv1d)."""
        if input_shape is None:
            if self.own_shape is None:
                raise ValueError(
                    f"{self.label} has no input_shape: pass input_shape=(C, H, W) "
                    f"{'or (C, L) ' if self.one_d else ''}or read the whole graph.")
            return self.own_shape
        shape = _shape(input_shape, "input_shape")
        if self.one_d and len(shape) == 2:
            shape = (shape[0], 1, shape[1])
        if len(shape) != 3 or (self.one_d and shape[1] != 1):
            raise ValueError(
                f"input_shape of {self.label} must be (C, H, W)"
                f"{' or (C, L)' if self.one_d else ''}, got {shape}.")
        if shape[0] != self.c_in:
            raise ValueError(
                f"input_shape {shape} of {self.label} has {shape[0]} channels, but its weight "
                f"{self.weight.shape} with groups={self.groups} needs {self.c_in}.")
        return shape

    def output_chw(self, chw: tuple[int, int, int]) -> tuple[int, int, int]:
        out = [self.c_out]
        for axis, n, k, s, p, d in zip("HW", chw[1:], (self.kh, self.kw), self.stride,
                                       self.padding, self.dilation, strict=True):
            size = (n + 2 * p - d * (k - 1) - 1) // s + 1
            if size < 1:
                raise ValueError(
                    f"{self.label}: output {axis} would be {size} (< 1) for input {axis} {n}, "
                    f"padding {p}, kernel {k}, dilation {d}.")
            out.append(size)
        return tuple(out)

    def nir_output(self, chw: tuple[int, int, int]) -> tuple[int, ...]:
        out = self.output_chw(chw)
        return (out[0], out[2]) if self.one_d else out


def conv_from_nir(node: Any, input_shape: Any = None, *, max_elements: int = MAX_ELEMENTS,
                  **conv_kwargs: Any) -> tuple[Conv, np.ndarray]:
    """Build the Lava :class:`~lavaconv.Conv` of a NIR conv node, and its bias.

    Parameters
    ----------
    node : nir.Conv2d or nir.Conv1d
        The node (a correlation, PyTorch layout; see the module docstring).
    input_shape : sequence of ints, optional
        ``(C, H, W)`` (``(C, L)`` or ``(C, 1, L)`` for Conv1d). Default: the node's own
        ``input_shape`` with ``C = weight.shape[1] * groups``.
    max_elements : int, keyword-only
        Refuse a layer whose input, output or weight has more elements.
    **conv_kwargs
        Passed to :class:`~lavaconv.Conv` (``weight_exp``, ``num_weight_bits``,
        ``num_message_bits``, ``name``).

    Returns
    -------
    conv : Conv
        ``input_shape`` ``(W, H, C)``, weight flipped and transposed, pairs reversed;
        the weight keeps the node's dtype.
    bias : ndarray, (C_out,)
        The node's bias (a copy; zeros when it has none).

    Raises
    ------
    ValueError
        A node of another type, inconsistent fields, no input shape, a ``'same'``
        padding that needs asymmetric padding, or a size above ``max_elements``.

    Examples
    --------
    >>> import nir, numpy as np
    >>> node = nir.Conv2d(input_shape=(34, 34), weight=np.ones((12, 2, 5, 5)), stride=1,
    ...                   padding=0, dilation=1, groups=1, bias=np.zeros(12))
    >>> conv, bias = conv_from_nir(node)
    >>> conv.input_shape, conv.output_shape
    ((34, 34, 2), (30, 30, 12))
    """
    n = _Node(node, "node")
    chw = n.input_chw(input_shape)
    _check_size("the input of node", chw, max_elements)
    _check_size("the output of node", n.output_chw(chw), max_elements)
    _check_size("the weight of node", n.weight.shape, max_elements)
    weight = np.ascontiguousarray(n.weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    conv = Conv(weight=weight, input_shape=(chw[2], chw[1], chw[0]),
                padding=n.padding[::-1], stride=n.stride[::-1], dilation=n.dilation[::-1],
                groups=n.groups, **conv_kwargs)
    return conv, n.bias.copy()


def conv_to_nir(conv: Conv, bias: Any = None) -> nir.Conv2d:
    """Build the ``nir.Conv2d`` of a Lava :class:`~lavaconv.Conv` (inverse of conv_from_nir).

    Parameters
    ----------
    conv : Conv
        The connection. Its ``weight_exp``, ``num_weight_bits`` and
        ``num_message_bits`` have no NIR field and are not written.
    bias : array_like, (C_out,), optional
        The bias to store (NIR's Conv2d always carries one); zeros by default, in the
        weight's float dtype (float32 for integer weights).

    Returns
    -------
    nir.Conv2d
        Weight ``(C_out, C_in // groups, kH, kW)`` (a correlation, the weight's dtype),
        ``input_shape`` ``(H, W)``, pairs in ``(H, W)`` order, and ``input_type`` set
        to the true ``(C_in, H, W)`` (nir itself would say ``C_in // groups``).
        ``conv_from_nir(conv_to_nir(conv, b))`` gives ``conv``'s weight, geometry and
        ``b`` back exactly.

    Raises
    ------
    ValueError
        If ``conv`` is not a ``Conv`` or ``bias`` has the wrong shape or values.
    """
    if not isinstance(conv, Conv):
        raise ValueError(f"conv must be a lavaconv.Conv, got {type(conv).__name__}.")
    g = conv.geometry
    w = np.asarray(conv.weight.init)
    weight = np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1])
    c_out = g.out_channels
    if bias is None:
        bias = np.zeros(c_out, w.dtype if w.dtype.kind == "f" else np.float32)
    else:
        bias = np.array(bias, copy=True)
        if bias.shape != (c_out,) or bias.dtype.kind not in "biuf":
            raise ValueError(f"bias must be a numeric array of shape ({c_out},), got shape "
                             f"{bias.shape}, dtype {bias.dtype}.")
        if bias.dtype.kind == "f" and not np.isfinite(bias).all():
            raise ValueError("bias contains NaN or infinite values.")
    x, y, c = g.input_shape
    node = nir.Conv2d(input_shape=(y, x), weight=weight, stride=g.stride[::-1],
                      padding=g.padding[::-1], dilation=g.dilation[::-1], groups=g.groups,
                      bias=bias)
    node.input_type = {"input": np.array([c, y, x])}
    node.output_type = {"output": np.array([c_out, g.output_shape[1], g.output_shape[0]])}
    return node


# -- graphs -----------------------------------------------------------------------------
def _check_file(path: Any, max_elements: int) -> None:
    """Check a NIR (HDF5) file's structure and dataset sizes, reading no data."""
    import h5py

    max_bytes = max_elements * _BYTES_PER_ELEMENT
    total_elements = total_bytes = objects = 0
    with h5py.File(path, "r") as f:
        stack = [(f, "", 0)]
        while stack:
            group, prefix, depth = stack.pop()
            if depth > _MAX_DEPTH:
                raise ValueError(f"NIR file {path}: groups nested deeper than {_MAX_DEPTH} "
                                 f"at {prefix!r}; refused.")
            for key in group.keys():
                objects += 1
                if objects > _MAX_OBJECTS:
                    raise ValueError(f"NIR file {path} holds more than {_MAX_OBJECTS} "
                                     f"objects; refused.")
                name = f"{prefix}/{key}"
                link = group.get(key, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(f"NIR file {path}: {name!r} is a {type(link).__name__}; "
                                     f"only hard links are read (nir.write writes no other).")
                item = group.get(key)
                if isinstance(item, h5py.Group):
                    stack.append((item, name, depth + 1))
                    continue
                if not isinstance(item, h5py.Dataset):
                    raise ValueError(f"NIR file {path}: {name!r} is neither a group nor a "
                                     f"dataset; refused.")
                shape = tuple(int(s) for s in (item.shape or ()))
                n = _elements(shape)
                nbytes = n * int(item.dtype.itemsize)
                total_elements += n
                total_bytes += nbytes
                if n > max_elements or nbytes > max_bytes:
                    raise ValueError(
                        f"NIR file {path}: dataset {name!r} claims shape {shape} of "
                        f"{item.dtype} = {n} elements ({nbytes / 2**30:.3g} GiB), above "
                        f"max_elements={max_elements}; refused before reading. Pass a larger "
                        f"max_elements if you trust the file.")
                if total_elements > max_elements or total_bytes > max_bytes:
                    raise ValueError(
                        f"NIR file {path}: its datasets hold more than max_elements="
                        f"{max_elements} elements ({total_bytes / 2**30:.3g} GiB) together "
                        f"(reached at {name!r}); refused before reading. Pass a larger "
                        f"max_elements if you trust the file.")


def _type_shape(types: Any) -> tuple[int, ...] | None:
    """Return the single shape in a NIR ``input_type``/``output_type`` dict, if defined."""
    if not isinstance(types, Mapping) or len(types) != 1:
        return None
    (value,) = types.values()
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or (arr < 1).any():
        return None
    return tuple(int(v) for v in arr)


def _pool_output(node: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(shape) != 3:
        return None
    k = make_tuple(node.kernel_size, "kernel_size")
    s = make_tuple(node.stride, "stride")
    p = make_tuple(node.padding, "padding")
    out = [shape[0]]
    for n, ki, si, pi in zip(shape[1:], k, s, p, strict=True):
        out.append((n + 2 * pi - ki) // si + 1)
    return tuple(out) if min(out) >= 1 else None


def _flatten_output(node: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    ndim = len(shape)
    start, end = _int(node.start_dim, "start_dim"), _int(node.end_dim, "end_dim")
    start, end = start % ndim if ndim else 0, end % ndim if ndim else 0
    if start > end:
        return None
    return (*shape[:start], _elements(shape[start:end + 1]), *shape[end + 1:])


class _Inference:
    """Input shapes of every conv node, propagated from Input nodes along the edges."""

    def __init__(self, max_elements: int) -> None:
        self.max_elements = max_elements
        #: ``{qualified name: (node, parsed, input (C, H, W) or None)}``
        self.convs: dict[str, tuple[Any, _Node, tuple[int, int, int] | None]] = {}

    def graph(self, graph: Any, prefix: str, entry: tuple[int, ...] | None):
        """Propagate through ``graph``; return the shape of its (single) output."""
        nodes = graph.nodes
        inputs: dict[str, tuple[int, ...]] = {}
        outputs: dict[str, tuple[int, ...]] = {}
        parsed: dict[str, _Node] = {}
        for name, node in nodes.items():
            label = f"{prefix}{name}"
            if isinstance(node, (nir.Conv2d, nir.Conv1d)):
                parsed[name] = _Node(node, f"node {label!r}")
                if parsed[name].own_shape is not None:
                    own = parsed[name].own_shape
                    inputs[name] = (own[0], own[2]) if parsed[name].one_d else own
            elif isinstance(node, nir.Input):
                shape = _type_shape(node.input_type) or entry
                if shape is not None:
                    inputs[name] = shape
        resolved: set[str] = set()
        for _ in range(len(nodes) + 1):
            progress = False
            for name in nodes:
                if name in resolved or name not in inputs:
                    continue
                out = self._output(nodes[name], parsed.get(name), inputs[name],
                                   f"{prefix}{name}")
                resolved.add(name)
                progress = True
                if out is not None:
                    outputs[name] = out
            for src, dst in graph.edges:
                if src in outputs and dst in nodes and dst not in inputs:
                    inputs[dst] = outputs[src]
                    progress = True
                elif src in outputs and dst in parsed and inputs.get(dst) != outputs[src]:
                    raise ValueError(
                        f"node {prefix}{dst!r} has input_shape {inputs[dst]} (C, spatial), but "
                        f"its input {prefix}{src!r} gives {outputs[src]}: the graph is "
                        f"inconsistent.")
            if not progress:
                break
        for name, n in parsed.items():
            shape = inputs.get(name)
            if shape is not None and n.one_d:
                shape = (shape[0], 1, shape[1]) if len(shape) == 2 else shape
            self.convs[f"{prefix}{name}"] = (nodes[name], n, shape)
        for name, node in nodes.items():  # unreached subgraphs: their own inputs only
            if isinstance(node, nir.NIRGraph) and name not in resolved:
                self.graph(node, f"{prefix}{name}.", None)
        outs = [outputs[k] for k, v in nodes.items() if isinstance(v, nir.Output) and k in outputs]
        return outs[0] if len(outs) == 1 else None

    def _output(self, node: Any, parsed: _Node | None, shape: tuple[int, ...],
                label: str) -> tuple[int, ...] | None:
        _check_size(f"the input of node {label!r}", shape, self.max_elements)
        if parsed is not None:
            chw = (shape[0], 1, shape[1]) if parsed.one_d and len(shape) == 2 else shape
            if len(chw) != 3:
                return None  # reported when the conv is built
            return parsed.nir_output(parsed.input_chw(chw))
        if isinstance(node, nir.Input):
            return shape
        if isinstance(node, nir.NIRGraph):
            return self.graph(node, f"{label}.", shape)
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            return _pool_output(node, shape)
        if isinstance(node, nir.Flatten):
            return _flatten_output(node, shape)
        if isinstance(node, (nir.Affine, nir.Linear)):
            return (int(np.shape(node.weight)[0]),)
        if isinstance(node, _SAME_SHAPE):
            return shape
        return None


def read(source: Any, *, max_elements: int = MAX_ELEMENTS,
         **conv_kwargs: Any) -> dict[str, tuple[Conv, np.ndarray]]:
    """Build a Lava :class:`~lavaconv.Conv` and bias for every conv node of a NIR graph.

    Parameters
    ----------
    source : str, os.PathLike or nir.NIRGraph
        A NIR file (checked as the module docstring says, then read by
        ``nir.read(path, type_check=False)``) or a graph already in memory.
    max_elements : int, keyword-only
        Refuse any dataset of the file, all of them together, or any conv's input,
        output or weight with more elements (default :data:`MAX_ELEMENTS`).
    **conv_kwargs
        Passed to every :class:`~lavaconv.Conv` (``num_message_bits`` ...).

    Returns
    -------
    dict
        ``{node_name: (conv, bias)}`` for every ``Conv2d`` and ``Conv1d`` node, nodes
        of subgraphs as ``"subgraph.node"``. Each conv is named after its node. A node
        without its own ``input_shape`` gets the shape propagated from the graph's
        ``Input`` nodes along its edges (through convs, pools, flatten, affine/linear
        and the neuron nodes).

    Raises
    ------
    ValueError
        A refused file (sizes, links, nesting), a conv whose input shape cannot be
        inferred, inconsistent shapes, or any error of :func:`conv_from_nir`.
    """
    if isinstance(source, nir.NIRGraph):
        graph = source
    elif isinstance(source, (str, os.PathLike)):
        _check_file(source, max_elements)
        try:
            graph = nir.read(source, type_check=False)
        except (TypeError, KeyError, AssertionError, AttributeError) as err:
            raise ValueError(f"NIR file {source} could not be read by nir: "
                             f"{type(err).__name__}: {err}") from err
    else:
        raise ValueError(
            f"source must be a path to a NIR file or a nir.NIRGraph, got "
            f"{type(source).__name__}.")
    inference = _Inference(max_elements)
    inference.graph(graph, "", None)
    result = {}
    for name, (node, _, shape) in inference.convs.items():
        if shape is None:
            raise ValueError(
                f"node {name!r} has no input_shape and none reaches it from an Input node "
                f"along the graph's edges; give the node an input_shape or the graph an "
                f"Input node with a shape.")
        kwargs = {"name": name, **conv_kwargs}
        result[name] = conv_from_nir(node, shape, max_elements=max_elements, **kwargs)
    return result

