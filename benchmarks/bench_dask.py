"""Throughput of lavaconv.dask.run: samples per second on Dask, 1 and 2 process workers.

The workload of WORKLOADS.md: 16 samples x 8 steps of the ``mid`` layer (64x64x32 ->
64, 3x3, padding 1) at 1 % binary density, ``fixed_pt``, one sample per task. For
each cluster ``LocalCluster(processes=True, n_workers=k, threads_per_worker=1)`` on
127.0.0.1:

1. the input is persisted on the workers (not timed: a real pipeline loads its
   recordings where it computes);
2. every worker runs one sample first (not timed: worker start, imports, JIT cache,
   model build, scratch buffers);
3. one full run is shown with ``distributed.progress`` and checked, exactly,
   against ``PyConvModelFixed(conv).run(x[i])`` for every sample;
4. timed, ``--repeat`` times each: ``persist`` (results computed and held on the
   workers, what a pipeline that reduces or writes them there pays) and ``gather``
   (``compute()`` into one NumPy array in this process, which adds moving every
   int32 result through the scheduler's network: 8 MiB per ``mid`` sample).

A row for Dask's default threaded scheduler in this process (no cluster) is added
for comparison, checked the same way (its first pass under
``dask.diagnostics.ProgressBar``).

Smoke run (tiny sizes): ``python benchmarks/bench_dask.py --quick``.
Timed run: ``python benchmarks/bench_dask.py --out benchmarks/results/dask.txt``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

import lavaconv
from lavaconv import Conv, PyConvModelFixed
from lavaconv.workloads import WORKLOADS

try:
    import dask
    import dask.array as da
    import distributed
    from dask.diagnostics import ProgressBar
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("bench_dask.py needs dask[array] and distributed: pip install -e '.[dask]'")

import lavaconv.dask as ldask

HOST = "127.0.0.1"
TIMEOUT = 300  # seconds, every wait


def make_case(workload: str, density: float, n: int, t: int, seed: int = 0):
    """``(conv, x, expected)``: seeded weights and spikes, per-sample reference results."""
    wl = WORKLOADS[workload]
    _, weight = wl.make(density, seed)
    conv = Conv(weight=weight, input_shape=wl.input_shape, padding=wl.padding,
                stride=wl.stride, dilation=wl.dilation, groups=wl.groups)
    rng = np.random.default_rng(seed + 1)
    x = np.empty((n,) + wl.input_shape + (t,), bool)
    for i in range(n):
        x[i] = rng.random(wl.input_shape + (t,)) < density
    expected = np.stack([PyConvModelFixed(conv).run(x[i]) for i in range(n)])
    return conv, x, expected


def _forget(client, name: str) -> None:
    """Wait until the scheduler holds no key of array ``name`` (so the next run recomputes)."""
    def count(dask_scheduler, name=name):
        return sum(1 for k in dask_scheduler.tasks if isinstance(k, tuple) and k[0] == name)

    deadline = time.monotonic() + TIMEOUT
    while client.run_on_scheduler(count):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scheduler still holds keys of {name}")
        time.sleep(0.01)


def bench_cluster(k: int, conv, x, expected, chunk: int, repeat: int, progress: bool):
    """Times (s) of ``persist`` and ``gather`` runs on ``k`` single-thread process workers."""
    cluster = distributed.LocalCluster(
        processes=True, n_workers=k, threads_per_worker=1, host=HOST,
        dashboard_address=None, death_timeout=TIMEOUT)
    client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        client.wait_for_workers(k, timeout=TIMEOUT)
        x_d = client.persist(da.from_array(x, chunks=(chunk, -1, -1, -1, -1)))
        distributed.wait(x_d, timeout=TIMEOUT)
        # per-worker warm-up: one sample on every worker, the same model spec
        for addr in client.scheduler_info()["workers"]:
            warm = ldask.run(conv, x[:1])
            client.compute(warm, workers=[addr]).result(timeout=TIMEOUT)
        # one checked run, with progress
        out = ldask.run(conv, x_d)
        held = client.persist(out)
        if progress:
            distributed.progress(held, notebook=False)
            print()
        got = client.compute(held).result(timeout=TIMEOUT)
        np.testing.assert_array_equal(got, expected)
        del held, got
        _forget(client, out.name)
        times = {"persist": [], "gather": []}
        for _ in range(repeat):
            out = ldask.run(conv, x_d)
            t0 = time.perf_counter()
            held = client.persist(out)
            distributed.wait(held, timeout=TIMEOUT)
            times["persist"].append(time.perf_counter() - t0)
            del held
            _forget(client, out.name)
            t0 = time.perf_counter()
            got = client.compute(out).result(timeout=TIMEOUT)
            times["gather"].append(time.perf_counter() - t0)
            assert got.shape == expected.shape
            del got
            _forget(client, out.name)
        return times
    finally:
        client.close(timeout=TIMEOUT)
        cluster.close(timeout=TIMEOUT)


def bench_threaded(conv, x, expected, chunk: int, repeat: int, progress: bool):
    """Times (s) of ``compute()`` on Dask's default threaded scheduler, in this process."""
    data = da.from_array(x, chunks=(chunk, -1, -1, -1, -1))
    out = ldask.run(conv, data)
    if progress:
        with ProgressBar():
            got = out.compute()
    else:
        got = out.compute()
    np.testing.assert_array_equal(got, expected)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out.compute()
        times.append(time.perf_counter() - t0)
    return {"gather": times}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 4 samples x 2 steps, one repeat")
    p.add_argument("--workload", default="mid", choices=sorted(WORKLOADS))
    p.add_argument("--density", type=float, default=0.01)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--chunk", type=int, default=1, help="samples per task")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", help="write the table to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.steps, args.repeat = 4, 2, 1
    progress = not args.no_progress

    conv, x, expected = make_case(args.workload, args.density, args.samples, args.steps)
    rows = []  # (scheduler, workers, mode, times)
    for k in args.workers:
        for mode, times in bench_cluster(k, conv, x, expected, args.chunk, args.repeat,
                                         progress).items():
            rows.append((f"LocalCluster processes, {k} x 1 thread", k, mode, times))
    for mode, times in bench_threaded(conv, x, expected, args.chunk, args.repeat,
                                      progress).items():
        threads = dask.config.get("num_workers", None) or dask.system.CPU_COUNT
        rows.append((f"threaded scheduler, {threads} threads", None, mode, times))

    n = args.samples
    base = {mode: statistics.median(t) for sched, k, mode, t in rows if k == 1}
    lines = [
        f"lavaconv.dask.run throughput: {n} samples x {args.steps} steps of "
        f"'{args.workload}' at {args.density:g} binary density, fixed_pt, "
        f"{args.chunk} sample(s) per task; {args.repeat} timed runs each after a "
        f"per-worker warm-up, results checked exactly against per-sample model.run.",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, lavaconv {lavaconv.__version__}, dask "
        f"{dask.__version__}, distributed {distributed.__version__}, numba "
        f"{__import__('numba').__version__}",
        "persist: results computed and held on the workers; gather: compute() into one "
        "NumPy array here.",
        "",
        f"| {'scheduler':<38} | {'mode':<7} | {'median s':>9} | {'best s':>8} | "
        f"{'samples/s':>9} | {'vs 1 worker':>11} |",
        f"|{'-' * 40}|{'-' * 9}|{'-' * 11}|{'-' * 10}|{'-' * 11}|{'-' * 13}|",
    ]
    for sched, k, mode, times in rows:
        med = statistics.median(times)
        speedup = f"{base[mode] / med:.2f}x" if k is not None and mode in base else ""
        lines.append(f"| {sched:<38} | {mode:<7} | {med:>9.4f} | {min(times):>8.4f} | "
                     f"{n / med:>9.1f} | {speedup:>11} |")
    if 1 in args.workers and 2 in args.workers:
        two = [statistics.median(t) for s, k, m, t in rows if k == 2 and m == "persist"][0]
        ratio = base["persist"] / two
        lines += ["", f"aim (WORKLOADS.md): 2 workers >= 1.5x one (persist): {ratio:.2f}x, "
                      f"{'met' if ratio >= 1.5 else 'NOT met'}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
