"""lavaconv.torch.Conv2d against torch.nn.Conv2d, tensor conversions included.

Run (the lead's timed run, one at a time on a quiet machine)::

    pytest benchmarks/test_bench_torch.py --benchmark-group-by=param:layer,param:density \
        --benchmark-columns=min,median,mean,rounds

1. ``test_layer``: the ``mid`` workload (32 -> 64 channels, 3x3, 64x64, padding 1) as an
   ``nn.Conv2d`` (float32, bias) and as ``lavaconv.torch.Conv2d`` built from it, on
   binary spikes at 0.1 %, 1 % and 5 % density, input NCHW-contiguous (one transposing
   copy in and one out, bias added in the copy out) or ``channels_last`` (no copy).
   Every call of ours includes the conversions, the weight check and the bias.
2. ``test_snntorch_step``: one time step of the snnTorch N-MNIST tutorial's network
   (Conv2d(2,12,5)-MaxPool-Leaky-Conv2d(12,32,5)-MaxPool-Leaky-Flatten-Linear-Leaky on
   2x34x34 input) before and after ``lavaconv.torch.convert``.

Each benchmark first checks its result against torch (bit-identical: integer-valued
weights keep every float32 sum exact), which is also the JIT warm-up. Torch runs with
``TORCH_THREADS`` (2) threads, lavaconv with its default (all cores).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import TORCH_THREADS

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lavaconv.torch import Conv2d, convert  # noqa: E402
from lavaconv.workloads import WORKLOADS  # noqa: E402

DENSITIES = [0.001, 0.01, 0.05]


@functools.cache
def _mid(density: float):
    """``(module, x)``: the ``mid`` workload as nn.Conv2d (float32) and its NCHW input."""
    torch.set_num_threads(TORCH_THREADS)
    x, w = WORKLOADS["mid"].make(density, seed=0)  # Lava layout (X, Y, C), int8
    module = nn.Conv2d(32, 64, 3, padding=1).requires_grad_(False)
    with torch.no_grad():
        # SPEC section 1: W_torch = W_lava flipped and transposed back
        module.weight.copy_(torch.from_numpy(
            np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]).astype(np.float32)))
        module.bias.copy_(torch.arange(64, dtype=torch.float32) - 32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)).astype(np.float32))[None]
    return module, xt


@pytest.mark.parametrize("impl", ["torch", "lavaconv"], ids=lambda v: f"impl={v}")
@pytest.mark.parametrize("fmt", ["nchw", "channels_last"], ids=lambda v: f"format={v}")
@pytest.mark.parametrize("density", DENSITIES, ids=lambda v: f"density={v}")
@pytest.mark.parametrize("layer", ["mid"], ids=lambda v: f"layer={v}")
def test_layer(benchmark, impl, fmt, density, layer):
    module, x = _mid(density)
    if fmt == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    ours = Conv2d.from_torch(module)
    run = module if impl == "torch" else ours
    with torch.no_grad():
        expected = module(x.contiguous())
        got = run(x)
        assert torch.equal(got, expected)
        benchmark.extra_info["events"] = int(x.count_nonzero())
        benchmark.extra_info["dense_macs"] = WORKLOADS["mid"].geometry.dense_macs
        benchmark(run, x)


def _nmnist_net(snn, rng, threshold):
    """The snnTorch N-MNIST tutorial's network, integer-valued weights (exact float32)."""
    def leaky(**kw):
        return snn.Leaky(beta=0.5, threshold=threshold, init_hidden=True, **kw)

    net = nn.Sequential(
        nn.Conv2d(2, 12, 5), nn.MaxPool2d(2), leaky(),
        nn.Conv2d(12, 32, 5), nn.MaxPool2d(2), leaky(),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 10), leaky(output=True),
    ).requires_grad_(False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.from_numpy(rng.integers(-3, 4, m.weight.shape)))
                m.bias.zero_()
    return net


def _steps(net, data, utils):
    utils.reset(net)
    out = []
    with torch.no_grad():
        for frame in data:
            out.append(net(frame)[0])
    return torch.stack(out)


@pytest.mark.parametrize("impl", ["torch", "lavaconv"], ids=lambda v: f"impl={v}")
@pytest.mark.parametrize("batch", [1, 16], ids=lambda v: f"batch={v}")
@pytest.mark.parametrize("density", [0.02, 0.05], ids=lambda v: f"density={v}")
def test_snntorch_step(benchmark, impl, density, batch):
    snn = pytest.importorskip("snntorch")
    from snntorch import utils

    torch.set_num_threads(TORCH_THREADS)
    rng = np.random.default_rng(0)
    net = _nmnist_net(snn, rng, threshold=8.0)
    data = torch.from_numpy(rng.random((10, batch, 2, 34, 34)) < density).float()
    expected = _steps(net, data, utils)
    ours = convert(_nmnist_net(snn, np.random.default_rng(0), threshold=8.0))
    assert torch.equal(_steps(ours, data, utils), expected)
    run = net if impl == "torch" else ours
    # hidden spike density after a few steps (the second conv's input)
    hidden = []
    handle = run[3].register_forward_pre_hook(lambda m, a: hidden.append(float(
        (a[0] != 0).float().mean())))
    _steps(run, data, utils)
    handle.remove()
    benchmark.extra_info["conv2_input_density"] = float(np.mean(hidden))
    frame = data[-1]
    with torch.no_grad():
        benchmark(run, frame)
