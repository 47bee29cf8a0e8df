"""Helpers for tests/test_lava.py: small Lava networks, each run in a time-limited child.

Lava hangs rather than fails (a model process that raises leaves ``stop()`` waiting
forever), so every network runs in a forked child that starts its own session
(``os.setsid``): on a timeout the child and every process Lava started in it are
killed by their process group, and the test fails instead of hanging. The test
process itself never launches a parallel kernel, so the forks that Lava makes are
what the tests exercise (see ``test_fork_safety`` for a parent that did).

Lava's ``Var.get`` costs about 16 us per element: the networks read back small
arrays only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

import numpy as np

#: Seconds one isolated run may take (a Lava network starts in about 2 s here).
TIMEOUT = 240.0


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float = TIMEOUT) -> Any:
    """Run ``fn(*args)`` in a forked child with its own session; return its result.

    Raises
    ------
    TimeoutError
        The child did not answer within ``timeout`` s (it is killed, with its group).
    AssertionError
        ``fn`` raised in the child (its traceback is the message).

    """
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def child() -> None:
        os.setsid()
        try:
            result: tuple = ("ok", fn(*args))
        except BaseException as exc:  # report everything, never hang the parent
            result = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        sender.send(result)
        sender.close()
        os._exit(0)  # no atexit joins of Lava's processes

    proc = ctx.Process(target=child)
    proc.start()
    sender.close()
    status, value = "timeout", None
    try:
        if not receiver.poll(timeout):
            raise TimeoutError(
                f"the Lava network did not finish within {timeout:.0f} s (Lava hangs "
                f"rather than fails); the child and its process group were killed.")
        status, value = receiver.recv()
        proc.join(30)
    finally:
        if status != "ok" or proc.is_alive():
            # after an error Lava's model processes wait forever: end the group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.join(5)
        receiver.close()
    if status == "error":
        raise AssertionError(f"the Lava run failed in the child:\n{value}")
    return value


def install_torchvision_stand_in() -> None:
    """A stand-in ``torchvision`` so that lava-dl's slayer imports (tests only).

    lava-dl 0.6's slayer imports ``torchvision.ops`` and ``torchvision.transforms``
    eagerly (object detection utilities); netx never calls them, and the package
    index has no CPU build of torchvision. Never done by the package itself.
    """
    if "torchvision" in sys.modules:
        return
    root = types.ModuleType("torchvision")
    root.__path__ = []  # a package, so that submodule imports resolve here
    for name in ("ops", "transforms"):
        sub = types.ModuleType(f"torchvision.{name}")
        setattr(root, name, sub)
        sys.modules[sub.__name__] = sub
    sys.modules["torchvision"] = root


# -- networks (these run in the child) -----------------------------------------------------
def lava_config(kind: str, tag: str, conv_model: type | None = None):
    """``("lava", tag)``: Lava's own models; ``("lavaconv", tag[, model])``: lavaconv's."""
    from lava.magma.core.run_configs import Loihi2SimCfg

    import lavaconv.lava as adapter

    if kind == "lava":
        return Loihi2SimCfg(select_tag=tag)
    return adapter.run_config(tag, conv_model=conv_model)


def run_and_read(root, cfg, steps: int, reads: list, conv_procs=()) -> dict:
    """Compile ``root``'s network, run ``steps`` steps, read Vars, stop.

    Parameters
    ----------
    root : AbstractProcess
        Any process of the network.
    cfg : RunConfig
    steps : int
    reads : list of (key, Var)
        Vars to read after the run.
    conv_procs : sequence of Conv
        Processes whose selected ProcessModel classes are reported.

    Returns
    -------
    dict
        ``{key: value}`` for ``reads``, plus ``"models"``: the qualified names of the
        ProcessModels the compiler picked for ``conv_procs``.

    """
    from lava.magma.core.run_conditions import RunSteps

    executable = root.compile(cfg)
    models = [executable.proc_builders[p].proc_model for p in conv_procs]
    root.create_runtime(executable=executable)
    root.run(condition=RunSteps(num_steps=steps))
    out = {key: np.array(var.get()) for key, var in reads}
    root.stop()
    out["models"] = [f"{m.__module__}.{m.__qualname__}" for m in models]
    return out


#: Most chains :func:`conv_chains` ties together.
MAX_CHAINS = 16

#: ``Hub``: one InPort per chain, ties independent chains into one network. It lives
#: in a module of its own in a directory of its own, because Lava's compiler searches
#: for ProcessModels by executing every module in the directory of the process's
#: module (here that would be conftest.py and the test files).
HUB_SOURCE = f"""
import numpy as np
from lava.magma.core.decorator import implements, requires
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Hub(AbstractProcess):
    # always {MAX_CHAINS} ports (Lava wants one per LavaPyType of the model); an
    # unconnected one receives zeros without waiting
    def __init__(self, shapes):
        super().__init__()
        shapes = list(shapes) + [(1,)] * ({MAX_CHAINS} - len(shapes))
        for i, shape in enumerate(shapes):
            setattr(self, f"in{{i}}", InPort(shape=tuple(shape)))


@implements(proc=Hub, protocol=LoihiProtocol)
@requires(CPU)
class PyHubModel(PyLoihiProcessModel):
    def run_spk(self):
        for i in range({MAX_CHAINS}):
            getattr(self, f"in{{i}}").recv()


for _i in range({MAX_CHAINS}):
    setattr(PyHubModel, f"in{{_i}}", LavaPyType(PyInPort.VEC_DENSE, float))
"""
_HUB: list = []


def hub_class():
    """The ``Hub`` process class (its module written to a temporary directory once).

    Call it in the parent before the forks, so that one directory serves them all and
    is removed at the parent's exit.
    """
    if not _HUB:
        import atexit
        import importlib.util
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="lavaconv-test-hub-")
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "lavaconv_test_hub.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(HUB_SOURCE)
        spec = importlib.util.spec_from_file_location("lavaconv_test_hub", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _HUB.append(module.Hub)
    return _HUB[0]


def conv_chains(layers: list[dict], data: list[np.ndarray], cfg_args: tuple,
                neuron: dict | None = None) -> dict:
    """Chains ``RingBuffer -> Conv (-> LIF) -> RingBuffer`` in one network.

    Lava compiles only the processes connected to the one it runs, so every source
    also feeds a hub process (one InPort per chain) that ties the chains together.

    Parameters
    ----------
    layers : list of dict
        Keyword arguments of Lava's ``Conv`` for each chain (at most
        :data:`MAX_CHAINS`).
    data : list of ndarray, (X, Y, C, T)
        Source data of each chain.
    cfg_args : tuple
        Arguments of :func:`lava_config`.
    neuron : dict, optional
        LIF parameters: each chain is ``Conv -> LIF``, its sink records the LIF's
        spikes, and its ``v`` and ``u`` are read too.

    Returns
    -------
    dict
        ``out<i>`` (chain ``i``'s sink data, ``(*output_shape, T)``), ``v<i>``,
        ``u<i>`` (LIF runs), and ``models``.

    """
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    if not 1 <= len(layers) <= MAX_CHAINS:
        raise ValueError(f"1..{MAX_CHAINS} chains, got {len(layers)}")
    hub = hub_class()([x.shape[:-1] for x in data])
    steps = data[0].shape[-1]
    reads, convs = [], []
    for i, (kwargs, x) in enumerate(zip(layers, data, strict=True)):
        source = Source(data=x)
        conv = Conv(**kwargs)
        source.s_out.connect(conv.s_in)
        source.s_out.connect(getattr(hub, f"in{i}"))
        out = conv.a_out
        if neuron is not None:
            lif = LIF(shape=conv.output_shape, **neuron)
            conv.a_out.connect(lif.a_in)
            out = lif.s_out
            reads += [(f"v{i}", lif.v), (f"u{i}", lif.u)]
        sink = Sink(shape=conv.output_shape, buffer=steps)
        out.connect(sink.a_in)
        reads.append((f"out{i}", sink.data))
        convs.append(conv)
    return run_and_read(hub, lava_config(*cfg_args), steps, reads, convs)


def netx_network(path: str, data: np.ndarray, cfg_args: tuple, probes=()) -> dict:
    """A netx network from ``path``, fed with ``data`` at its input neuron's ``a_in``.

    As lava-dl's own tests do: a RingBuffer into ``net.in_layer.neuron.a_in`` and a
    sink on ``net.out_layer.out``. Reads the sink and, for each ``(layer index, Var
    name)`` in ``probes``, that neuron Var (small layers only); reports the models
    picked for the Conv synapses and their parameters as netx built them.
    """
    install_torchvision_stand_in()
    import lava.lib.dl.netx as netx
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps = data.shape[-1]
    net = netx.hdf5.Network(net_config=path)
    source = Source(data=data)
    sink = Sink(shape=net.out_layer.out.shape, buffer=steps)
    source.s_out.connect(net.in_layer.neuron.a_in)
    net.out_layer.out.connect(sink.a_in)
    convs = [layer.synapse for layer in net.layers
             if isinstance(getattr(layer, "synapse", None), Conv)]
    reads = [("out", sink.data)]
    reads += [(f"{name}{i}", getattr(net.layers[i].neuron, name)) for i, name in probes]
    result = run_and_read(sink, lava_config(*cfg_args), steps, reads, convs)
    names = ("weight", "padding", "stride", "dilation", "groups", "num_message_bits")
    result["synapses"] = [
        {**{name: np.array(getattr(c, name).init) for name in names},
         "input_shape": tuple(int(n) for n in c.input_shape)}
        for c in convs
    ]
    result["blocks"] = [type(layer).__name__ for layer in net.layers]
    return result
