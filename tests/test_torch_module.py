"""lavaconv.torch: the nn.Conv2d drop-in and convert(), against torch.nn.Conv2d itself.

Tolerances: float64 with integer-valued weights, bias and inputs is compared with
``torch.equal`` (every sum is an exact integer below 2**53 on both sides); so is
float32 with integer values below the 2**24 bound. Other float32 results must agree
elementwise within ``1e-5 * ((|W| * |x|) + |b|)``: the correlation of the absolute
values, in float64, which is the scale float32 rounding errors grow with (a plain
rtol on the result is meaningless where terms cancel).
"""

from __future__ import annotations

import copy
import io
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import lavaconv.torch as lt  # noqa: E402
from lavaconv.torch import Conv2d, convert, revert  # noqa: E402

NOJIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
PATHS = ["auto", "dense", "events"]
# torch warns about its own zero-padded copy for 'same' with even kernels
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@pytest.fixture(autouse=True)
def _lavaconv_computes(request, monkeypatch):
    """Every test checks lavaconv's own computation: ``path="auto"`` never hands a call
    to torch's conv here (it would compare torch with itself), except in the tests of
    that choice (named ``test_auto_choice_*``)."""
    if not request.node.name.startswith("test_auto_choice_"):
        monkeypatch.setattr(lt._Choice, "use_torch", lambda self, predicted: False)


def _int_weights(module, rng, low=-8, high=9):
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(rng.integers(low, high, module.weight.shape)))
        if module.bias is not None:
            module.bias.copy_(torch.from_numpy(rng.integers(low, high, module.bias.shape)))
    return module


def _f32_bound(ref_module, x):
    """``(|W| * |x|) + |b|`` in float64: the scale of float32 rounding."""
    b = None if ref_module.bias is None else ref_module.bias.detach().double().abs()
    p = ref_module.padding
    return torch.nn.functional.conv2d(
        x.detach().double().abs(), ref_module.weight.detach().double().abs(), b,
        ref_module.stride, p, ref_module.dilation, ref_module.groups)


@st.composite
def conv_cases(draw):
    """A geometry nn.Conv2d accepts, with an input large enough for a non-empty output."""
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    if kind == "same":
        stride, padding = (1, 1), "same"
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if kind == "int":
            padding = draw(st.integers(0, 3))
        elif kind == "pair":
            padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        else:
            padding = "valid"
    pads = (0, 0) if isinstance(padding, str) else (
        (padding, padding) if isinstance(padding, int) else padding)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    h = draw(st.integers(max(1, span[0] - 2 * pads[0]), max(9, span[0] - 2 * pads[0])))
    w = draw(st.integers(max(1, span[1] - 2 * pads[1]), max(9, span[1] - 2 * pads[1])))
    batch = draw(st.sampled_from([None, 1, 2, 5]))  # None: unbatched (C, H, W)
    return dict(in_channels=groups * cg, out_channels=groups * kg, kernel_size=(kh, kw),
                stride=stride, padding=padding, dilation=(dh, dw), groups=groups,
                bias=draw(st.booleans())), (h, w), batch


def _input(rng, c, hw, batch, density, integer, dtype):
    shape = (c, *hw) if batch is None else (batch, c, *hw)
    active = rng.random(shape) < density
    values = rng.integers(-3, 4, shape) if integer else rng.standard_normal(shape)
    return torch.from_numpy(np.where(active, values, 0)).to(dtype)


@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1),
       density=st.sampled_from([0.0, 0.01, 0.2, 1.0]),
       fmt=st.sampled_from(["contiguous", "channels_last"]))
def test_float64_integer_values_bit_identical_to_nn_conv2d(case, seed, density, fmt):
    kwargs, hw, batch = case
    rng = np.random.default_rng(seed)
    ref = _int_weights(nn.Conv2d(**kwargs).double(), rng)
    x = _input(rng, kwargs["in_channels"], hw, batch, density, True, torch.float64)
    if fmt == "channels_last" and batch is not None:
        x = x.contiguous(memory_format=torch.channels_last)
    ours = Conv2d.from_torch(ref)
    with torch.no_grad():
        expected = ref(x)
        for path in PATHS:
            ours.path = path
            got = ours(x)
            assert got.dtype == torch.float64 and got.shape == expected.shape
            assert torch.equal(got, expected), path


@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1),
       density=st.sampled_from([0.01, 0.3, 1.0]),
       fmt=st.sampled_from(["contiguous", "channels_last"]))
def test_float32_within_stated_tolerance(case, seed, density, fmt):
    """Non-integer float32 within the stated bound; channels_last input reaches the event
    kernel's bias start (the sum begins at the bias), contiguous input the bias added
    in the copy out.
    """
    kwargs, hw, batch = case
    rng = np.random.default_rng(seed)
    ref = nn.Conv2d(**kwargs)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(rng.standard_normal(ref.weight.shape)))
        if ref.bias is not None:
            ref.bias.copy_(torch.from_numpy(rng.standard_normal(ref.bias.shape)))
    x = _input(rng, kwargs["in_channels"], hw, batch, density, False, torch.float32)
    if fmt == "channels_last" and batch is not None:
        x = x.contiguous(memory_format=torch.channels_last)
    ours = Conv2d.from_torch(ref)
    with torch.no_grad():
        expected = ref(x)
        bound = 1e-5 * _f32_bound(ref, x if batch is not None else x[None])
        bound = bound if batch is not None else bound[0]
        for path in PATHS:
            ours.path = path
            got = ours(x)
            assert got.dtype == torch.float32 and got.shape == expected.shape
            err = (got.double() - expected.double()).abs()
            assert bool((err <= bound).all()), (path, float((err - bound).max()))


def test_float32_binary_spikes_exact():
    """Binary spikes through int8-range weights: sums < 2**24, exact in float32 on both sides."""
    rng = np.random.default_rng(3)
    ref = _int_weights(nn.Conv2d(32, 64, 3, padding=1), rng, -128, 128)
    n, hw = (1, 8) if NOJIT else (4, 24)
    x = (torch.rand(n, 32, hw, hw, generator=torch.Generator().manual_seed(1)) < 0.02).float()
    ours = Conv2d.from_torch(ref)
    with torch.no_grad():
        for path in PATHS:
            ours.path = path
            assert torch.equal(ours(x), ref(x))


def test_single_event_known_answer():
    """One spike at (h, w) = (2, 3) through a 3x3 correlation with padding 1.

    ``y[k, i, j] = sum_ab W[k, 0, a, b] * x[i + a - 1, j + b - 1]`` is non-zero only
    where ``i + a - 1 = 2`` and ``j + b - 1 = 3``, i.e. ``y[k, i, j] = W[k, 0, 3 - i,
    4 - j]`` for ``i in 1..3``, ``j in 2..4``: the kernel, flipped, around the spike.
    """
    conv = Conv2d(1, 2, 3, padding=1, bias=False)
    w = torch.arange(1.0, 19.0).reshape(2, 1, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(w)
        x = torch.zeros(1, 1, 6, 7)
        x[0, 0, 2, 3] = 1.0
        expected = torch.zeros(1, 2, 6, 7)
        expected[0, :, 1:4, 2:5] = w[:, 0].flip(1, 2)
        for path in PATHS:
            conv.path = path
            assert torch.equal(conv(x), expected)


@pytest.mark.parametrize("kernel,dilation", [((2, 2), (1, 1)), ((4, 2), (3, 1)),
                                             ((2, 3), (1, 2)), ((1, 4), (1, 1))])
def test_same_padding_even_kernel_known_answer(kernel, dilation):
    """'same' with an odd total padding: the extra zero goes at the end (bottom/right).

    With a 2x2 all-ones kernel, ``y[i, j] = x[i, j] + x[i, j+1] + x[i+1, j] +
    x[i+1, j+1]`` (zeros past the end): a spike at (3, 3) of a 4x4 input reaches
    ``y[2..3, 2..3]``, one at (0, 0) only ``y[0, 0]``. Checked for that case by
    hand and for all against nn.Conv2d.
    """
    rng = np.random.default_rng(0)
    ref = _int_weights(nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation).double(), rng)
    x = _input(rng, 2, (7, 6), 3, 0.3, True, torch.float64)
    ours = Conv2d.from_torch(ref)
    with torch.no_grad():
        for path in PATHS:
            ours.path = path
            assert torch.equal(ours(x), ref(x))
    if kernel == (2, 2):
        ones = Conv2d(1, 1, 2, padding="same", bias=False).double()
        with torch.no_grad():
            ones.weight.fill_(1.0)
            x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
            x[0, 0, 3, 3] = 1.0
            x[0, 0, 0, 0] = 2.0
            expected = torch.zeros_like(x)
            expected[0, 0, 3, 3] = 1.0  # y[3,3] = x[3,3] (+ zeros past the end)
            expected[0, 0, 2, 2] = 1.0  # y[2,2] = ... + x[3,3]
            expected[0, 0, 2, 3] = 1.0
            expected[0, 0, 3, 2] = 1.0
            expected[0, 0, 0, 0] = 2.0  # only y[0,0] sees x[0,0]
            assert torch.equal(ones(x), expected)


def test_time_flattened_batches_and_unbatched():
    """(T*N, C, H, W) batches and unbatched (C, H, W) inputs, as nn.Conv2d takes them."""
    rng = np.random.default_rng(5)
    ref = _int_weights(nn.Conv2d(2, 4, 3, stride=2, padding=1).double(), rng)
    ours = Conv2d.from_torch(ref)
    t, n = 6, 3
    x = _input(rng, 2, (11, 9), t * n, 0.05, True, torch.float64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert torch.equal(ours(x[0]), ref(x[0]))
        # channels-last-like unbatched view
        xv = x[0].permute(1, 2, 0).contiguous().permute(2, 0, 1)
        assert torch.equal(ours(xv), ref(xv))
        empty = ours(x[:0])
        assert empty.shape == ref(x[:0]).shape and empty.dtype == torch.float64


@pytest.mark.parametrize("c,hw", [(16, (32, 32)), (32, (64, 64)), (12, (16, 64)),
                                  (3, (32, 32))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_input_layouts_exact(c, hw, dtype):
    """Power-of-two planes (the padded-buffer transpose), strided and sliced inputs."""
    rng = np.random.default_rng(c)
    ref = _int_weights(nn.Conv2d(c, 8, 3, padding=1).to(dtype), rng)
    ours = Conv2d.from_torch(ref)
    x = _input(rng, c, hw, 2, 0.05, True, dtype)
    wide = _input(rng, c, (hw[0], 2 * hw[1]), 2, 0.05, True, dtype)
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last), wide[:, :, :, ::2],
                    x.transpose(2, 3).contiguous().transpose(2, 3)):
            assert torch.equal(ours(inp), ref(inp))


def test_output_memory_format_follows_input():
    ref = nn.Conv2d(3, 5, 3, padding=1)
    ours = Conv2d.from_torch(ref)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        y = ours(x)
        assert y.is_contiguous()
        yl = ours(x.contiguous(memory_format=torch.channels_last))
        assert yl.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y, yl)
        y.view(2, -1)  # the flattening SNN tutorials do on conv outputs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computed_in_float32(dtype):
    rng = np.random.default_rng(2)
    ref = _int_weights(nn.Conv2d(4, 6, 3, padding=1), rng)
    x = _input(rng, 4, (8, 8), 2, 0.2, True, torch.float32)
    ours = Conv2d.from_torch(copy.deepcopy(ref)).to(dtype)
    with torch.no_grad():
        got = ours(x.to(dtype))
        expected = ref(x)  # float32, exact integers; the half result is its rounding
    assert got.dtype == dtype
    assert torch.equal(got, expected.to(dtype))


@pytest.mark.parametrize("serial", [0, 1 << 40], ids=["numpy-copies", "torch-copies"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_layout_copies_exact_by_torch_and_by_numpy(monkeypatch, serial, dtype):
    """Both routes of the NCHW <-> engine copies (torch's below ``_TORCH_SERIAL`` entries,
    NumPy's from there on), each forced for every tensor: with and without bias,
    cropped ('same', even kernel) or not, batched NCHW, channels_last and unbatched
    input. (NumPy's padded buffer for crowded planes: test_input_layouts_exact.)
    """
    monkeypatch.setattr(lt, "_TORCH_SERIAL", serial)
    rng = np.random.default_rng(11)
    for kernel, padding, bias, hw in [(3, 1, True, (32, 32)), (3, 1, False, (9, 7)),
                                      (2, "same", True, (9, 7)), (2, "same", False, (8, 8))]:
        ref = _int_weights(nn.Conv2d(4, 5, kernel, padding=padding, bias=bias), rng)
        ours = Conv2d.from_torch(copy.deepcopy(ref)).to(dtype)
        x = _input(rng, 4, hw, 3, 0.2, True, torch.float32)
        with torch.no_grad():
            for inp in (x, x.contiguous(memory_format=torch.channels_last), x[1]):
                expected = ref(inp).to(dtype)  # float32 integer sums, exact
                got = ours(inp.to(dtype))
                assert got.dtype == dtype and torch.equal(got, expected), (kernel, bias, hw)


def test_each_call_signature_is_checked_once_and_changes_are_seen():
    """A plan per call signature (lavaconv.torch._Plan): reused while the signature
    repeats, and a new one for a new input shape or layout, for changed ``stride``,
    ``padding`` or ``dilation`` attributes, for a bias removed or swapped; a weight
    whose storage is replaced (``.data = ...``) is compared anew; a bad bias is refused.
    """
    rng = np.random.default_rng(13)
    ref = _int_weights(nn.Conv2d(3, 4, 3, padding=1).double(), rng)
    ours = Conv2d.from_torch(ref)
    x = _input(rng, 3, (8, 9), 2, 0.3, True, torch.float64)
    inputs = [x, x.contiguous(memory_format=torch.channels_last), x[0], x[:, :, :5],
              _input(rng, 3, (6, 6), 4, 0.3, True, torch.float64)]
    with torch.no_grad():
        for _ in range(2):
            for inp in inputs:
                assert torch.equal(ours(inp), ref(inp))
        assert len(ours._lava_plans) == len(inputs)
        for attr, value in [("stride", (2, 1)), ("padding", (0, 2)), ("dilation", (2, 1)),
                            ("stride", (1, 1)), ("padding", "same")]:
            setattr(ref, attr, value)
            setattr(ours, attr, value)
            assert torch.equal(ours(x), ref(x)), (attr, value)
        ref.weight.data = torch.from_numpy(rng.integers(-8, 9, (4, 3, 3, 3))).double()
        assert ours.weight is ref.weight  # shared Parameter, new storage
        assert torch.equal(ours(x), ref(x))
        ref.bias = ours.bias = nn.Parameter(torch.full((4,), -2.0, dtype=torch.float64))
        assert torch.equal(ours(x), ref(x))
        ref.bias = ours.bias = None
        assert torch.equal(ours(x), ref(x))
        ours.bias = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
            ours(x)


# -- weights prepared once per content ------------------------------------------------
def test_weight_changes_in_place_give_new_results():
    rng = np.random.default_rng(7)
    ref = _int_weights(nn.Conv2d(3, 4, 3).double(), rng)
    ours = Conv2d.from_torch(ref)  # shares the Parameters
    x = _input(rng, 3, (8, 8), 2, 0.3, True, torch.float64)
    with torch.no_grad():
        before = ours(x)
        assert torch.equal(before, ref(x))
    # an optimizer step (in place, under no_grad, version counter bumped)
    opt = torch.optim.SGD(ref.parameters(), lr=1.0)
    ref.weight.grad = torch.ones_like(ref.weight)
    ref.bias.grad = torch.ones_like(ref.bias)
    opt.step()
    with torch.no_grad():
        after = ours(x)
        assert torch.equal(after, ref(x)) and not torch.equal(after, before)
    # a .data write (no version bump)
    ref.weight.data.mul_(-1)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    # load_state_dict copies into the same Parameters
    state = {k: torch.from_numpy(rng.integers(-4, 5, v.shape)).double()
             for k, v in ref.state_dict().items()}
    ours.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    # one prepared weight, reused while nothing changes
    with torch.no_grad():
        ours(x)
        prepared = ours._lava_prepared
        ours(x)
        assert ours._lava_prepared is prepared


# -- autograd ---------------------------------------------------------------------------
def test_gradient_request_raises_clearly():
    ours = Conv2d(2, 3, 3)
    x = torch.rand(1, 2, 5, 5)
    with pytest.raises(RuntimeError, match="no_grad"):
        ours(x)  # weight requires grad, grad mode on
    ours.requires_grad_(False)
    ours(x)  # nothing needs a gradient
    with pytest.raises(RuntimeError, match="inference"):
        ours(x.requires_grad_(True))
    with torch.inference_mode():
        ours(torch.rand(1, 2, 5, 5))
    with torch.no_grad():  # no gradient needed: an input requiring grad is just data
        y = Conv2d(2, 3, 3)(torch.rand(1, 2, 5, 5, requires_grad=True))
    assert not y.requires_grad


def test_autograd_torch_fallback_gives_torch_gradients():
    ref = nn.Conv2d(2, 3, 3, padding=1).double()
    ours = Conv2d.from_torch(copy.deepcopy(ref), autograd="torch")
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref(x).square().sum().backward()
    ours(x2).square().sum().backward()
    assert torch.equal(x.grad, x2.grad)
    assert torch.equal(ref.weight.grad, ours.weight.grad)
    assert torch.equal(ref.bias.grad, ours.bias.grad)


# -- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_other_padding_modes_raise(mode):
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    module = nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d.from_torch(module)
    net = nn.Sequential(nn.Conv2d(2, 2, 3), module)
    with pytest.raises(ValueError, match=r"1: padding_mode"):
        convert(net)
    assert type(net[0]) is nn.Conv2d  # nothing half-done
    convert(net, strict=False)
    assert type(net[0]) is Conv2d and type(net[1]) is nn.Conv2d


def test_bad_inputs_raise_value_errors():
    ours = Conv2d(4, 2, 3, groups=2).requires_grad_(False)
    with pytest.raises(ValueError, match="4-D"):
        ours(torch.rand(1, 1, 4, 5, 5))
    with pytest.raises(ValueError, match="channels"):
        ours(torch.rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match="floating-point"):
        ours(torch.ones(1, 4, 5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="dtype"):
        ours(torch.rand(1, 4, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="input H = 2 is too small"):
        ours(torch.rand(1, 4, 2, 5))
    with pytest.raises(ValueError, match="path"):
        Conv2d(2, 2, 3, path="fast")
    with pytest.raises(ValueError, match="autograd"):
        convert(nn.Conv2d(2, 2, 3), autograd="ignore")
    ours.weight.data[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ours(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match="nn.Conv2d"):
        Conv2d.from_torch(nn.Linear(2, 2))


# -- convert ----------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.inner = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.ReLU()])

    def forward(self, x):
        return self.inner[1](self.inner[0](self.conv(x)))


def test_convert_in_place_recursive_keeps_identity_and_hooks():
    rng = np.random.default_rng(11)
    net = nn.Sequential(_Block(), nn.Conv2d(4, 3, 3, stride=2)).double()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            _int_weights(m, rng)
    reference = copy.deepcopy(net)
    x = _input(rng, 2, (9, 9), 3, 0.2, True, torch.float64)
    conv = net[0].conv
    seen = []
    hook = conv.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    assert convert(net) is net
    assert net[0].conv is conv and type(conv) is Conv2d
    assert all(type(m) is Conv2d for m in net.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
    assert seen == [torch.Size([3, 4, 9, 9])]
    hook.remove()  # (a lambda does not pickle)
    assert set(net.state_dict()) == set(reference.state_dict())
    # pickling and deep copies of converted models work
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))
        assert torch.equal(copy.deepcopy(net)(x), reference(x))
    assert revert(net) is net and type(conv) is nn.Conv2d
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))


def test_convert_fx_graph_module_and_fx_trace_of_converted_model():
    rng = np.random.default_rng(12)
    net = torch.fx.symbolic_trace(_Block()).double()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            _int_weights(m, rng)
    reference = copy.deepcopy(net)
    x = _input(rng, 2, (7, 8), 2, 0.3, True, torch.float64)
    convert(net)
    assert type(net.conv) is Conv2d
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
    # tracing a converted model records torch's conv2d (no numpy call in the graph)
    traced = torch.fx.symbolic_trace(net)
    calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert calls.count(torch.conv2d) == 2
    with torch.no_grad():
        assert torch.equal(traced(x), reference(x))


class _StepConv2d(nn.Conv2d):
    """A stand-in for SpikingJelly's layer.Conv2d: multi-step mode folds T into N."""

    def __init__(self, *args, step_mode="s", **kwargs):
        super().__init__(*args, **kwargs)
        self.step_mode = step_mode

    def forward(self, x):
        if self.step_mode == "m":
            t, n = x.shape[:2]
            y = super().forward(x.flatten(0, 1))
            return y.reshape(t, n, *y.shape[1:])
        return super().forward(x)


class _OwnConvForward(nn.Conv2d):
    def _conv_forward(self, input, weight, bias):
        return super()._conv_forward(input, 2 * weight, bias)


def test_convert_subclasses_keep_their_forward():
    rng = np.random.default_rng(13)
    conv = _int_weights(_StepConv2d(2, 3, 3, padding=1, step_mode="m").double(), rng)
    reference = copy.deepcopy(conv)
    x = _input(rng, 2, (6, 6), 4, 0.3, True, torch.float64).reshape(2, 2, 2, 6, 6)
    convert(conv)
    assert isinstance(conv, Conv2d) and isinstance(conv, _StepConv2d)
    with torch.no_grad():
        assert torch.equal(conv(x), reference(x))
        loaded = pickle.loads(pickle.dumps(conv))
        assert type(loaded) is type(conv) and torch.equal(loaded(x), reference(x))
    revert(conv)
    assert type(conv) is _StepConv2d
    with pytest.raises(ValueError, match="overrides _conv_forward"):
        convert(nn.Sequential(_OwnConvForward(2, 2, 3)))


# -- snnTorch ---------------------------------------------------------------------------
def _nmnist_net(snn, dtype, rng):
    """The snnTorch N-MNIST tutorial's network shape, integer-valued weights."""
    beta = 0.5  # an exact binary fraction
    net = nn.Sequential(
        nn.Conv2d(2, 12, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2), snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
        snn.Leaky(beta=beta, init_hidden=True, output=True),
    ).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.from_numpy(rng.integers(-2, 3, m.weight.shape)))
                m.bias.copy_(torch.from_numpy(rng.integers(-1, 2, m.bias.shape)))
    return net


def _run(net, data, utils):
    utils.reset(net)
    spikes, mems = [], []
    with torch.no_grad():
        for step in data:
            spk, mem = net(step)
            spikes.append(spk)
            mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def test_snntorch_nmnist_network_identical_spikes():
    """Spikes and membranes bit-identical over several steps (float32, integer weights).

    float32: snnTorch's surrogate spike functions return float32 spikes whatever the
    membrane dtype, so a float64 network does not run in torch either. Integer
    weights keep every conv sum an exact integer below 2**24 on both sides.
    """
    dtype = torch.float32
    snn = pytest.importorskip("snntorch")
    from snntorch import utils

    rng = np.random.default_rng(21)
    net = _nmnist_net(snn, dtype, rng)
    steps = 3 if NOJIT else 8
    data = torch.from_numpy(rng.random((steps, 4, 2, 34, 34)) < 0.05).to(dtype)
    ref_spikes, ref_mems = _run(net, data, utils)
    assert ref_spikes.sum() > 0  # the test is not trivially about silence
    convert(net)
    assert sum(isinstance(m, Conv2d) for m in net.modules()) == 2
    spikes, mems = _run(net, data, utils)
    assert torch.equal(spikes, ref_spikes)
    assert torch.equal(mems, ref_mems)


def test_snntorch_nir_import_converted():
    """A NIR graph imported by snnTorch (a nirtorch fx GraphModule), converted."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    nir = pytest.importorskip("nir")
    from snntorch.import_nir import import_from_nir

    rng = np.random.default_rng(22)

    def conv(c_in, c_out, hw, **kw):
        return nir.Conv2d(input_shape=hw, weight=rng.integers(-3, 4, (c_out, c_in, 3, 3))
                          .astype(np.float32), bias=rng.integers(-2, 3, c_out)
                          .astype(np.float32), stride=1, dilation=1, groups=1, **kw)

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2, 8, 8])), "c1": conv(2, 4, (8, 8), padding=1),
               "c2": conv(4, 3, (8, 8), padding=0), "output": nir.Output(np.array([3, 6, 6]))},
        edges=[("input", "c1"), ("c1", "c2"), ("c2", "output")])
    imported = import_from_nir(graph)
    reference = copy.deepcopy(imported)
    convert(imported)
    assert sum(type(m) is Conv2d for m in imported.modules()) == 2
    x = torch.from_numpy(rng.random((3, 2, 8, 8)) < 0.2).float()
    with torch.no_grad():
        got, expected = imported(x)[0], reference(x)[0]
    assert got.shape == (3, 3, 6, 6)
    assert torch.equal(got, expected)


def test_lavaconv_imports_without_torch():
    """The core never imports the adapter: lavaconv works with torch made unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import lavaconv, numpy as np; "
            "print(lavaconv.conv(np.ones((3, 3, 1), np.int8), np.ones((1, 3, 3, 1), np.int8),"
            " 3, 1, 0, 1, 1)[0, 0, 0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "9"
    assert lt.__name__ == "lavaconv.torch"


# -- path="auto": lavaconv's layer or torch's conv, by measured time --------------------
def _spy_torch(monkeypatch):
    """Count the calls that reach nn.Conv2d's own convolution."""
    calls = []
    real = nn.Conv2d._conv_forward

    def spy(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(nn.Conv2d, "_conv_forward", spy)
    return calls


def test_auto_choice_measures_both_then_runs_the_faster_and_re_measures_the_other(monkeypatch):
    """A new signature runs lavaconv twice, then torch twice (the first call of each
    unmeasured: it may compile or set up); then the path measured faster, and the other one every
    ``_EXPLORE_EVERY``-th call. Results are torch's bit for bit on either path (integer
    values), and forced paths never call torch."""
    calls = _spy_torch(monkeypatch)
    rng = np.random.default_rng(5)
    ref = _int_weights(nn.Conv2d(3, 4, 3, padding=1), rng)
    ours = Conv2d.from_torch(ref)
    x = _input(rng, 3, (9, 8), 2, 0.1, True, torch.float32)
    with torch.no_grad():
        expected = ref(x)
        calls.clear()
        ran = []
        for _ in range(4):
            before = len(calls)
            assert torch.equal(ours(x), expected)
            ran.append(len(calls) > before)
            (plan,) = ours._lava_plans.values()
            if len(ran) == 3:
                assert plan.choice.torch is None  # the first torch call: unmeasured
        assert ran == [False, False, True, True]
        choice = plan.choice
        assert choice.warm and choice.scale > 0 and choice.rest >= 0 and choice.torch > 0
        for torch_seconds, torch_runs in ((1e-12, True), (1e3, False)):
            choice.torch = torch_seconds
            ran = []
            for _ in range(2 * lt._EXPLORE_EVERY):
                before = len(calls)
                assert torch.equal(ours(x), expected)
                ran.append(len(calls) > before)
                choice.torch = torch_seconds  # (pinned: the explored call measures torch)
            explored = [k for k in range(len(ran)) if ran[k] != torch_runs]
            assert len(explored) == 2, explored  # once every _EXPLORE_EVERY calls
            assert all((choice.calls - len(ran) + k + 1) % lt._EXPLORE_EVERY == 0
                       for k in explored)
        calls.clear()
        choice.torch = 1e-12  # torch would win "auto"; a forced path is still ours
        for path in ("events", "dense"):
            ours.path = path
            for _ in range(3):
                assert torch.equal(ours(x), expected)
        assert not calls


def test_auto_choice_only_where_lavaconv_can_sample_the_input(monkeypatch):
    """Half-precision input (computed in float32) and inputs in neither NCHW nor
    channels_last memory keep lavaconv's own path choice: no measurement, no torch."""
    calls = _spy_torch(monkeypatch)
    rng = np.random.default_rng(6)
    ref = _int_weights(nn.Conv2d(2, 3, 3), rng)
    ours = Conv2d.from_torch(ref)
    x = _input(rng, 2, (7, 7), 2, 0.2, True, torch.float32)
    odd = x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # H and W swapped in memory
    with torch.no_grad():
        for inp in (odd, x.to(torch.bfloat16)):
            module = ours if inp.dtype == torch.float32 else copy.deepcopy(ours).to(torch.bfloat16)
            for _ in range(6):
                module(inp)
            assert all(plan.choice is None for plan in module._lava_plans.values())
        assert not calls


def test_auto_choice_keeps_the_least_time_and_lets_it_grow_slowly():
    """Each kept time is the least measured, allowed to grow by ``_FORGET`` per new
    measurement (so a slower machine state is followed); the first call of each is not
    measured."""
    choice = lt._Choice()
    assert not choice.use_torch(1.0)  # nothing measured: lavaconv
    choice.ours(total=9.0, kernel=8.0, predicted=1.0)  # the unmeasured first call
    assert choice.scale is None and not choice.use_torch(1.0)
    choice.ours(total=3.0, kernel=2.0, predicted=1.0)
    assert (choice.scale, choice.rest) == (2.0, 1.0)
    assert choice.use_torch(1.0)  # torch not measured yet: it runs
    choice.torch_call(0.1)  # the unmeasured first call
    assert choice.torch is None and choice.use_torch(1.0)
    choice.torch_call(2.5)
    choice.torch_call(9.0)
    assert choice.torch == pytest.approx(2.5 * lt._FORGET)
    choice.ours(total=1.5, kernel=1.0, predicted=1.0)
    assert (choice.scale, choice.rest) == (1.0, 0.5)
    choice.calls = 0
    assert not choice.use_torch(1.0)  # 0.5 + 1.0 * 1.0 < 2.625: lavaconv
    assert choice.use_torch(10.0)  # 0.5 + 10 > 2.625: torch
