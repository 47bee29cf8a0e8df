"""lavaconv.nir: NIR conv nodes to Lava Convs and back, checked against torch's conv.

Every result is compared exactly: integer-valued weights, biases and inputs in
float64, so every sum is an exact integer on both sides.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.nn import functional as F  # noqa: E402, N812

from lavaconv import Conv, PyConvModelFloat  # noqa: E402
from lavaconv.engine import prepare  # noqa: E402
from lavaconv.nir import MAX_ELEMENTS, conv_from_nir, conv_to_nir, read  # noqa: E402


def _lava_output(conv: Conv, bias: np.ndarray, x_chw: np.ndarray) -> np.ndarray:
    """Run the Lava Conv on a (C, H, W) input through the prepared layer; back to CHW."""
    layer = prepare(np.asarray(conv.weight.init), conv.geometry)
    out = layer.compute(x_chw.transpose(2, 1, 0)[None].astype(np.float64), np.float64)[0]
    return out.transpose(2, 1, 0) + bias.astype(np.float64)[:, None, None]


def _torch_output(node, x_chw: np.ndarray) -> np.ndarray:
    """torch's conv with the node's own parameters (conv1d for Conv1d nodes)."""
    fn = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
    x = torch.from_numpy(np.asarray(x_chw, np.float64))
    stride, dilation = node.stride, node.dilation
    if not isinstance(node.padding, str):
        padding = tuple(int(p) for p in np.atleast_1d(node.padding))
    else:
        padding = node.padding
    stride = tuple(int(s) for s in np.atleast_1d(stride))
    dilation = tuple(int(d) for d in np.atleast_1d(dilation))
    return fn(x[None], torch.from_numpy(np.asarray(node.weight, np.float64)),
              torch.from_numpy(np.asarray(node.bias, np.float64)), stride, padding, dilation,
              int(node.groups))[0].numpy()


@st.composite
def nir_convs(draw, one_d=False):
    """A NIR conv node torch accepts, with its input shape (C, H, W) / (C, L)."""
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ks = (draw(st.integers(1, 4)),) if one_d else (draw(st.integers(1, 4)),
                                                   draw(st.integers(1, 4)))
    n_ax = len(ks)
    dil = tuple(draw(st.integers(1, 3)) for _ in range(n_ax))
    kind = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    if kind == "same":
        # an even total padding d * (k - 1) on every axis (the symmetric case)
        dil = tuple(d if (d * (k - 1)) % 2 == 0 else 2 for d, k in zip(dil, ks, strict=True))
        stride, padding = tuple(1 for _ in ks), "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in ks)
        padding = {"int": draw(st.integers(0, 2)), "valid": "valid",
                   "pair": tuple(draw(st.integers(0, 2)) for _ in ks)}[kind]
    pads = (0,) * n_ax if isinstance(padding, str) else (
        (padding,) * n_ax if isinstance(padding, int) else padding)
    lows = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in zip(ks, dil, pads, strict=True)]
    spatial = tuple(draw(st.integers(low, max(low, 9))) for low in lows)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight = rng.integers(-4, 5, (groups * kg, cg, *ks)).astype(np.float32)
    bias = rng.integers(-3, 4, groups * kg).astype(np.float32)
    if one_d:
        node = nir.Conv1d(input_shape=spatial[0], weight=weight, stride=stride[0],
                          padding=padding if isinstance(padding, str) else pads[0],
                          dilation=dil[0], groups=groups, bias=bias)
    else:
        node = nir.Conv2d(input_shape=spatial, weight=weight, stride=stride, padding=padding,
                          dilation=dil, groups=groups, bias=bias)
    return node, (groups * cg, *spatial), rng


@given(case=nir_convs())
def test_conv2d_node_matches_torch(case):
    node, shape, rng = case
    x = rng.integers(-2, 3, shape).astype(np.float64)
    conv, bias = conv_from_nir(node)
    assert conv.input_shape == (shape[2], shape[1], shape[0])
    np.testing.assert_array_equal(_lava_output(conv, bias, x), _torch_output(node, x))
    # and with the shape given explicitly
    conv2, _ = conv_from_nir(node, input_shape=shape)
    assert conv2.geometry == conv.geometry


@given(case=nir_convs(one_d=True))
def test_conv1d_node_matches_torch_conv1d(case):
    node, shape, rng = case
    x = rng.integers(-2, 3, shape).astype(np.float64)
    conv, bias = conv_from_nir(node)
    assert conv.input_shape == (shape[1], 1, shape[0])  # (L, 1, C): H = 1
    got = _lava_output(conv, bias, x[:, None, :])[:, 0, :]
    np.testing.assert_array_equal(got, _torch_output(node, x))
    for given_shape in (shape, (shape[0], 1, shape[1])):
        assert conv_from_nir(node, input_shape=given_shape)[0].geometry == conv.geometry


@given(case=nir_convs())
def test_round_trips(case):
    node, shape, rng = case
    conv, bias = conv_from_nir(node)
    back = conv_to_nir(conv, bias)
    np.testing.assert_array_equal(back.weight, node.weight)
    assert back.weight.dtype == node.weight.dtype
    np.testing.assert_array_equal(back.bias, node.bias)
    assert tuple(back.input_shape) == tuple(node.input_shape)
    assert tuple(back.stride) == tuple(int(s) for s in node.stride)
    assert tuple(back.dilation) == tuple(int(d) for d in node.dilation)
    assert back.groups == node.groups
    assert tuple(back.input_type["input"]) == shape  # the true C_in, not C_in // groups
    x = rng.integers(-2, 3, shape).astype(np.float64)
    np.testing.assert_array_equal(_torch_output(back, x), _torch_output(node, x))
    again, bias2 = conv_from_nir(back)
    assert again.geometry == conv.geometry
    np.testing.assert_array_equal(again.weight.init, conv.weight.init)
    np.testing.assert_array_equal(bias2, bias)


def test_lava_conv_round_trip_keeps_dtype_and_default_bias():
    w = np.arange(2 * 3 * 2 * 1, dtype=np.int8).reshape(2, 3, 2, 1) - 5
    conv = Conv(weight=w, input_shape=(7, 5, 2), padding=(1, 0), stride=(2, 1),
                dilation=(1, 2), groups=2)
    node = conv_to_nir(conv)
    assert node.weight.shape == (2, 1, 2, 3)  # (C_out, Cg, kH = KY, kW = KX)
    assert tuple(node.input_shape) == (5, 7)
    assert node.bias.dtype == np.float32 and not node.bias.any()
    back, bias = conv_from_nir(node)
    assert back.geometry == conv.geometry
    assert back.weight.init.dtype == np.int8
    np.testing.assert_array_equal(back.weight.init, w)
    assert not bias.any()


def test_single_event_known_answer():
    """One input at (c, h, w) = (0, 2, 3) through a 3x3 correlation node, padding 1.

    Output ``y[k, i, j] = W[k, 0, 3 - i, 4 - j]`` for ``i in 1..3``, ``j in 2..4``
    (``y = sum_ab W[a, b] x[i + a - 1, j + b - 1]``), zero elsewhere.
    """
    w = np.arange(1.0, 19.0).reshape(2, 1, 3, 3)
    node = nir.Conv2d(input_shape=(6, 7), weight=w, stride=1, padding=1, dilation=1,
                      groups=1, bias=np.array([0.0, 10.0]))
    conv, bias = conv_from_nir(node)
    x = np.zeros((1, 6, 7))
    x[0, 2, 3] = 1
    expected = np.zeros((2, 6, 7)) + np.array([0.0, 10.0])[:, None, None]
    expected[:, 1:4, 2:5] += w[:, 0, ::-1, ::-1]
    np.testing.assert_array_equal(_lava_output(conv, bias, x), expected)


def test_model_on_converted_node():
    """The Conv runs in a lavaconv model (binary spikes, Lava's one-step delay)."""
    rng = np.random.default_rng(4)
    w = rng.integers(-3, 4, (4, 2, 3, 3)).astype(np.float64)
    node = nir.Conv2d(input_shape=(10, 12), weight=w, stride=1, padding="same", dilation=1,
                      groups=1, bias=np.zeros(4))
    conv, _ = conv_from_nir(node)
    x = (rng.random((2, 10, 12)) < 0.3).astype(np.float64)
    out = PyConvModelFloat(conv).run(np.stack([x.transpose(2, 1, 0)] * 2, axis=-1))
    np.testing.assert_array_equal(out[..., 0], 0)
    np.testing.assert_array_equal(out[..., 1].transpose(2, 1, 0), _torch_output(node, x))


@pytest.mark.parametrize("kernel,dilation", [(2, 1), (4, 1), (2, 3), (4, 5)])
def test_asymmetric_same_padding_is_refused(kernel, dilation):
    node = nir.Conv2d(input_shape=(8, 8), weight=np.ones((1, 1, 3, kernel)), stride=1,
                      padding="same", dilation=dilation, groups=1, bias=np.zeros(1))
    with pytest.raises(ValueError, match="padding='same' along W needs asymmetric padding"):
        conv_from_nir(node)
    node1 = nir.Conv1d(input_shape=8, weight=np.ones((1, 1, kernel)), stride=1,
                       padding="same", dilation=dilation, groups=1, bias=np.zeros(1))
    with pytest.raises(ValueError, match="along L needs asymmetric"):
        conv_from_nir(node1)


def test_bad_nodes_raise_value_errors():
    good = dict(weight=np.ones((4, 1, 3, 3)), stride=1, padding=0, dilation=1, groups=2,
                bias=np.zeros(4))
    with pytest.raises(ValueError, match="no input_shape"):
        conv_from_nir(nir.Conv2d(input_shape=None, **good))
    with pytest.raises(ValueError, match="needs 2"):
        conv_from_nir(nir.Conv2d(input_shape=None, **good), input_shape=(4, 8, 8))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        conv_from_nir(nir.Conv2d(input_shape=None, **good), input_shape=(2, 8))
    with pytest.raises(ValueError, match="nir.Conv2d or nir.Conv1d"):
        conv_from_nir(nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2)))
    with pytest.raises(ValueError, match="bias"):
        conv_from_nir(nir.Conv2d(input_shape=(8, 8), **{**good, "bias": np.zeros(3)}))
    with pytest.raises(ValueError, match="stride 1"):
        conv_from_nir(nir.Conv2d(input_shape=(8, 8), **{**good, "padding": "same",
                                                        "stride": 2}))
    with pytest.raises(ValueError, match="output H would be"):
        conv_from_nir(nir.Conv2d(input_shape=(2, 8), **good))
    with pytest.raises(ValueError, match="max_elements"):
        conv_from_nir(nir.Conv2d(input_shape=(8, 8), **good), input_shape=(2, 10**6, 10**6))
    with pytest.raises(ValueError, match="lavaconv.Conv"):
        conv_to_nir("conv")


def test_conv_kwargs_pass_through():
    node = nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 2, 3, 3)), stride=1, padding=1,
                      dilation=1, groups=1, bias=np.zeros(2))
    conv, _ = conv_from_nir(node, num_message_bits=8, name="c1")
    assert conv.name == "c1" and conv.num_message_bits.init == 8


# -- graphs -------------------------------------------------------------------------------
EXPECTED_INPUTS = {"conv1": (2, 16, 16), "grouped": (8, 8, 8), "same": (6, 8, 5)}


def _lif(shape):
    return nir.LIF(tau=np.ones(shape), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.ones(shape))


def _graph(rng, writable=False):
    """Input (2, 16, 16) -> conv (no shape) -> sumpool -> LIF -> grouped dilated conv
    (no shape) -> 'same' conv (own shape) -> flatten -> affine -> output.

    ``writable``: every conv and the flatten carry shapes (nir.write cannot write a
    None); the file tests delete the conv shapes from the file afterwards.
    """
    def w(*shape):
        return rng.integers(-3, 4, shape).astype(np.float32)

    def own(name):
        return EXPECTED_INPUTS[name][1:] if writable else None

    nodes = {
        "input": nir.Input(np.array([2, 16, 16])),
        "conv1": nir.Conv2d(input_shape=own("conv1"), weight=w(8, 2, 3, 3), stride=1, padding=1,
                            dilation=1, groups=1, bias=w(8)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "lif": _lif((8, 8, 8)),
        "grouped": nir.Conv2d(input_shape=own("grouped"), weight=w(6, 4, 3, 2), stride=(1, 2),
                              padding=(2, 1), dilation=(2, 1), groups=2, bias=w(6)),
        "same": nir.Conv2d(input_shape=(8, 5), weight=w(3, 6, 3, 5), stride=1,
                           padding="same", dilation=1, groups=1, bias=w(3)),
        "flat": nir.Flatten(input_type={"input": np.array([3, 8, 5]) if writable else None},
                            start_dim=0),
        "affine": nir.Affine(weight=w(4, 3 * 8 * 5), bias=w(4)),
        "output": nir.Output(np.array([4])),
    }
    order = list(nodes)
    edges = list(zip(order[:-1], order[1:], strict=True))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _check_graph_convs(graph, convs, rng):
    assert set(convs) == set(EXPECTED_INPUTS)
    for name, shape in EXPECTED_INPUTS.items():
        conv, bias = convs[name]
        assert conv.name == name
        assert conv.input_shape == (shape[2], shape[1], shape[0])
        x = rng.integers(-2, 3, shape).astype(np.float64)
        np.testing.assert_array_equal(_lava_output(conv, bias, x),
                                      _torch_output(graph.nodes[name], x))


def test_read_graph_infers_shapes_along_edges():
    rng = np.random.default_rng(31)
    graph = _graph(rng)
    _check_graph_convs(graph, read(graph), rng)


def test_read_file_grouped_graph(tmp_path):
    """A grouped graph from a file: nir 1.0.8's own type check refuses it (SPEC 11)."""
    rng = np.random.default_rng(32)
    graph = _graph(rng, writable=True)
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    if nir.__version__ == "1.0.8":
        with pytest.raises(ValueError, match="type mismatch"):
            nir.read(path)
    convs = read(path)
    _check_graph_convs(graph, convs, rng)
    assert set(read(str(path))) == set(convs)


def _conv1d_graph(rng, groups, shapes):
    """Input (3, 12) -> Conv1d -> subgraph [Input -> Conv1d (groups) -> Output] -> Output."""
    w1 = rng.integers(-3, 4, (4, 3, 3)).astype(np.float32)
    w2 = rng.integers(-3, 4, (2, 4 // groups, 2)).astype(np.float32)
    inner = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([4, 10])),
               "c": nir.Conv1d(input_shape=10 if shapes else None, weight=w2, stride=2,
                               padding=0, dilation=1, groups=groups,
                               bias=np.zeros(2, np.float32)),
               "out": nir.Output(np.array([2, 5]))},
        edges=[("in", "c"), ("c", "out")], type_check=False)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3, 12])),
               "c1": nir.Conv1d(input_shape=12 if shapes else None, weight=w1, stride=1,
                                padding=0, dilation=1, groups=1,
                                bias=np.ones(4, np.float32)),
               "sub": inner, "output": nir.Output(np.array([2, 5]))},
        edges=[("input", "c1"), ("c1", "sub"), ("sub", "output")], type_check=False)


def _check_conv1d_graph(graph, convs, rng):
    assert set(convs) == {"c1", "sub.c"}
    assert convs["c1"][0].input_shape == (12, 1, 3)
    assert convs["sub.c"][0].input_shape == (10, 1, 4)
    for name, node, c in (("c1", graph.nodes["c1"], 3),
                          ("sub.c", graph.nodes["sub"].nodes["c"], 4)):
        x = rng.integers(-2, 3, (c, 12 if name == "c1" else 10)).astype(np.float64)
        got = _lava_output(*convs[name], x[:, None, :])[:, 0, :]
        np.testing.assert_array_equal(got, _torch_output(node, x))


def test_read_conv1d_graph_with_subgraph_infers_shapes():
    rng = np.random.default_rng(33)
    graph = _conv1d_graph(rng, groups=2, shapes=False)
    _check_conv1d_graph(graph, read(graph), rng)


def test_read_conv1d_graph_with_subgraph_from_file(tmp_path):
    """From a file. groups=1 inside: nir 1.0.8 type-checks nested graphs while reading
    whatever type_check says, and refuses grouped convs there (SPEC 11)."""
    rng = np.random.default_rng(34)
    graph = _conv1d_graph(rng, groups=1, shapes=True)
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    _check_conv1d_graph(graph, read(path), rng)


def test_read_refuses_unreachable_conv_without_shape():
    node = nir.Conv2d(input_shape=None, weight=np.ones((1, 1, 3, 3)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(1))
    graph = nir.NIRGraph(nodes={"c": node}, edges=[], type_check=False)
    with pytest.raises(ValueError, match="no input_shape and none reaches it"):
        read(graph)
    with pytest.raises(ValueError, match="path to a NIR file"):
        read(42)


def test_read_refuses_inconsistent_shapes():
    node = nir.Conv2d(input_shape=(9, 9), weight=np.ones((1, 2, 3, 3)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(1))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2, 8, 8])), "c": node},
                         edges=[("input", "c")], type_check=False)
    with pytest.raises(ValueError, match="inconsistent"):
        read(graph)


# -- hostile files ---------------------------------------------------------------------
def _small_file(path):
    rng = np.random.default_rng(0)
    nir.write(path, _graph(rng, writable=True))
    return path


def _replace(path, name, **kwargs):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, **kwargs)


def test_hostile_file_with_a_huge_dataset_is_refused_before_reading(tmp_path):
    path = _small_file(tmp_path / "bomb.nir")
    # a compressed dataset that was never written: any shape fits in a few bytes
    _replace(path, "node/nodes/conv1/weight", shape=(2**16, 2**16, 3, 3), dtype=np.float32,
             chunks=(1, 1, 3, 3), compression="gzip")
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"node/nodes/conv1/weight.*claims shape "
                                             r"\(65536, 65536, 3, 3\).*144 GiB"):
            read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing of the claimed size was allocated


def test_hostile_file_with_huge_claimed_shapes_is_refused(tmp_path):
    path = _small_file(tmp_path / "claims.nir")
    _replace(path, "node/nodes/same/input_shape", data=np.array([10**6, 10**6]))
    with pytest.raises(ValueError, match=r"node 'same'.*\(6, 1000000, 1000000\).*max_elements"):
        read(path)
    path = _small_file(tmp_path / "input.nir")
    _replace(path, "node/nodes/input/shape", data=np.array([2, 10**5, 10**5]))
    with pytest.raises(ValueError, match=r"input of node 'input'.*20000000000 elements"):
        read(path)


def test_hostile_file_total_size_links_and_nesting(tmp_path):
    path = _small_file(tmp_path / "total.nir")
    with pytest.raises(ValueError, match="together"):
        read(path, max_elements=600)  # each dataset is below 600, all together are not
    with h5py.File(path, "r+") as f:
        f["node/nodes/conv1/extra"] = h5py.SoftLink("/node/nodes/conv1/weight")
    with pytest.raises(ValueError, match="SoftLink"):
        read(path)
    path = _small_file(tmp_path / "deep.nir")
    with h5py.File(path, "r+") as f:
        group = f["node"]
        for _ in range(70):
            group = group.create_group("g")
    with pytest.raises(ValueError, match="nested deeper"):
        read(path)
    assert read(_small_file(tmp_path / "ok.nir"), max_elements=MAX_ELEMENTS)
