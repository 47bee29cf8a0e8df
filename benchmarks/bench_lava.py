"""Per-step time inside Lava's runtime: Lava's Conv model against lavaconv's (issue 9).

Run with the Lava venv's python (built by ``.ci/lava_venv.sh``)::

    /tmp/lavaconv-lava-venv/bin/python benchmarks/bench_lava.py --out

The network is ``RingBuffer -> Conv -> RingBuffer``: a 64x64x32 input of binary spikes
at 1 % (fresh each step), a 3x3 convolution to 64 channels (padding 1, int8 weights),
``fixed_pt`` everywhere. Three networks are timed one after the other, each in this
process:

* **overhead**: the same source feeding a sink directly, no Conv (what Lava's runtime
  costs per step for these two processes and this much data);
* **Lava**: ``Loihi2SimCfg(select_tag="fixed_pt")``, Lava's own ``PyConvModelFixed``
  (``scipy.signal.convolve2d`` per channel pair);
* **lavaconv**: ``lavaconv.lava.run_config("fixed_pt")``.

Each network is built, run for one step (compilation, process start-up and the first
step, reported as "start-up"), then timed ``--repeats`` times over ``--steps`` steps
(``net.run`` blocks until they are done); the per-step time is a run's time divided by
its steps, min and median over the repeats. The sinks keep one step (``buffer=1``) so
that the read-back (``Var.get``, about 16 us per element) stays affordable: the last
step's 262144 outputs of the two Conv networks are compared with each other and with
lavaconv's model outside Lava, which is also timed per step on the same frames
("kernel alone"). Everything outside Lava runs after the Lava networks, so no
process is forked after this one ran a parallel kernel.

``--out`` writes the table to ``benchmarks/results/lava.txt``. ``--steps 2
--repeats 1`` is a smoke run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

# isort: off
import lavaconv.lava as adapter  # first: makes Lava 0.10 importable on Python >= 3.11
import lavaconv
from lavaconv import _threads
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
# isort: on

INPUT_SHAPE = (64, 64, 32)
C_OUT, KERNEL, PADDING = 64, 3, 1
DENSITY = 0.01
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "lava.txt")


def workload(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The weights and ``steps`` frames of 1 % binary spikes, (X, Y, C, T) int32."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(-128, 128, (C_OUT, KERNEL, KERNEL, INPUT_SHAPE[2])).astype(np.int32)
    data = (rng.random(INPUT_SHAPE + (steps,)) < DENSITY).astype(np.int32)
    return weight, data


def time_network(kind: str, weight: np.ndarray, data: np.ndarray, steps: int,
                 repeats: int) -> dict:
    """Build one network, run it: start-up, per-step times, the last step's output."""
    source = Source(data=data)
    if kind == "overhead":
        sink = Sink(shape=INPUT_SHAPE, buffer=1)
        source.s_out.connect(sink.a_in)
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
    else:
        conv = Conv(weight=weight, input_shape=INPUT_SHAPE, padding=PADDING)
        sink = Sink(shape=conv.output_shape, buffer=1)
        source.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        cfg = Loihi2SimCfg(select_tag="fixed_pt") if kind == "lava" else \
            adapter.run_config("fixed_pt")
    t0 = time.perf_counter()
    sink.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    startup = time.perf_counter() - t0
    per_step = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sink.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        per_step.append((time.perf_counter() - t0) / steps)
    last = sink.data.get()[..., 0] if kind != "overhead" else None
    sink.stop()
    return {"startup": startup, "per_step": per_step, "last": last,
            "total_steps": 1 + steps * repeats}


def kernel_alone(weight: np.ndarray, data: np.ndarray, total_steps: int,
                 repeats: int) -> tuple[list[float], np.ndarray]:
    """lavaconv's model outside Lava: per-step time of ``f`` (the code the ProcessModel
    runs each step), and the output a Lava network emits after ``total_steps`` steps."""
    model = lavaconv.PyConvModelFixed(
        lavaconv.Conv(weight=weight, input_shape=INPUT_SHAPE, padding=PADDING))
    apply = adapter._synapse(model)
    out = np.zeros(model.geometry.output_shape, np.int32)
    steps = data.shape[-1]
    for t in range(min(steps, 3)):  # compile / load from the cache
        apply(data[..., t], out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in range(steps):
            apply(data[..., t], out)
        times.append((time.perf_counter() - t0) / steps)
    # step k (1-based) emits f(data[..., (k - 2) % T]): the last of total_steps steps
    apply(data[..., (total_steps - 2) % steps], out)
    return times, out.copy()


def versions() -> str:
    import importlib.metadata as md

    names = ("lava-nc", "numpy", "numba", "scipy")
    found = []
    for name in names:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            found.append(f"{name} ?")
    return ", ".join(found)


def cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run (20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per network (3)")
    parser.add_argument("--out", nargs="?", const=RESULTS, default=None,
                        help=f"write the table to this file (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")

    weight, data = workload(args.steps)
    results = {}
    for kind in ("overhead", "lava", "lavaconv"):
        print(f"timing {kind} ...", file=sys.stderr, flush=True)
        results[kind] = time_network(kind, weight, data, args.steps, args.repeats)
    alone, expected = kernel_alone(weight, data, results["lava"]["total_steps"], args.repeats)

    same_lava = np.array_equal(results["lava"]["last"], results["lavaconv"]["last"])
    same_alone = np.array_equal(results["lavaconv"]["last"], expected)
    overhead = min(results["overhead"]["per_step"])
    lava, ours = min(results["lava"]["per_step"]), min(results["lavaconv"]["per_step"])
    events = int(data.sum()) / data.shape[-1]

    rows = [
        ("Lava overhead: source -> sink, no Conv", results["overhead"]),
        ("Lava's PyConvModelFixed (Loihi2SimCfg fixed_pt)", results["lava"]),
        ("lavaconv.lava.PyConvModelFixed (run_config)", results["lavaconv"]),
    ]
    lines = [
        "lavaconv inside Lava: per-step time of RingBuffer -> Conv -> RingBuffer (fixed_pt)",
        f"layer: {INPUT_SHAPE[0]}x{INPUT_SHAPE[1]}x{INPUT_SHAPE[2]} -> {C_OUT}, "
        f"{KERNEL}x{KERNEL}, padding {PADDING}, int8 weights; binary spikes at "
        f"{DENSITY:.0%} ({events:.0f} per step on average); {args.steps} steps x "
        f"{args.repeats} runs per network, after one start-up step",
        f"machine: {cpu()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"{versions()}; Numba threading layer {_threads.threading_layer()}, "
        f"{lavaconv.get_num_threads()} threads",
        "",
        "| network | per step, min (ms) | per step, median (ms) | start-up (s) |",
        "|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {ms(min(r['per_step']))} | "
                     f"{ms(statistics.median(r['per_step']))} | {r['startup']:.2f} |")
    lines.append(f"| lavaconv's model outside Lava (the same per-step call) | "
                 f"{ms(min(alone))} | {ms(statistics.median(alone))} | - |")
    conv_lava, conv_ours = lava - overhead, ours - overhead
    lines += [
        "",
        f"speed-up per step: {lava / ours:.1f}x ({ms(lava)} -> {ms(ours)} ms); "
        f"above Lava's overhead of {ms(overhead)} ms: "
        + (f"{conv_lava / conv_ours:.0f}x ({ms(conv_lava)} -> {ms(conv_ours)} ms)"
           if conv_ours > 0 else f"lavaconv within the overhead ({ms(conv_ours)} ms)"),
        f"check: the last step's {results['lava']['last'].size} outputs "
        f"{'identical' if same_lava else 'DIFFER'} (Lava's model vs lavaconv's) and "
        f"{'identical' if same_alone else 'DIFFER'} (lavaconv in Lava vs outside)",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0 if same_lava and same_alone else 1


if __name__ == "__main__":
    sys.exit(main())
