"""The benchmark suite behind ``lavaconv bench`` (the workloads of WORKLOADS.md).

For every workload of :data:`lavaconv.workloads.WORKLOADS` and every density of
:data:`lavaconv.workloads.DENSITIES` plus graded input, :func:`run` times

* ``dense``, ``events``, ``auto``: :meth:`ConvEngine.exact` with a prepared engine
  (weights re-laid-out once, as a model step does), exact int32 output;
* the public entry points, as a user calls them (int32 weights, Lava's dtype):
  ``utils.conv``; ``fixed.step``, ``float.step``, ``bitacc.step`` (each model's
  ``step``); ``fixed.run`` (``PyConvModelFixed.run`` over ``RUN_STEPS`` time-last
  frames of the same density, reported **per step**);
* ``scipy``: :func:`lavaconv.utils.conv_scipy`, Lava's algorithm (the reference);
* ``torch32``, ``torch64``: ``torch.nn.functional.conv2d`` in float32 and float64
  with layouts converted outside the timed region (skipped without torch);

after checking every result against ``conv_scipy`` (that first call also compiles).
Times are the minimum and the median over repeated calls; our three paths and
torch's two are timed in alternating bursts (:func:`_timeit_interleaved`), so
their ratios come from the same stretch of time.

JSON schema (``lavaconv-bench/1``)::

    {"schema": "lavaconv-bench/1", "threads": int, "quick": bool,
     "torch": version or null, "numba_threading_layer": str, "cpu": str,
     "malloc_tuned": bool (see tune_malloc; off unless asked: the allocator as a
                           user has it),
     "results": [{"workload": str, "density": float or "graded",
                  "events": int, "synaptic_ops": int, "dense_macs": int,
                  "auto_choice": "dense" | "events" (the cost model's choice for the
                                  exact event count; a timed auto call decides from
                                  its own sample of rows),
                  "model_crossover": float (the cost model's crossover density for
                                     these frames, int32 output, as auto computes it:
                                     with the VNNI kernel's cost where it reads them),
                  "times": {name: {"min": s, "median": s, "calls": int}},
                  "correct": {name: bool}}],
     "crossovers": {workload: measured density where events == dense, or null}}

Nothing here prints: progress goes to the ``progress`` callback (the CLI prints it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np

from . import _threads
from .engine import ConvEngine
from .models import PyConvModelBitAcc, PyConvModelFixed, PyConvModelFloat
from .process import Conv
from .utils import conv, conv_scipy
from .workloads import DENSITIES, WORKLOADS

__all__ = ["ENTRY_POINTS", "OURS", "entry_table", "run", "table", "write_json", "plot",
           "crossovers"]

#: Our timed paths.
OURS = ("dense", "events", "auto")
#: The public entry points timed beside them, and the torch column each is held
#: against (WORKLOADS.md: ``PyConvModelFloat`` against float64, the others float32).
ENTRY_POINTS = {"utils.conv": "torch32", "fixed.step": "torch32", "float.step": "torch64",
                "bitacc.step": "torch32", "fixed.run": "torch32"}
#: Time steps of the ``fixed.run`` entry (its time is reported per step).
RUN_STEPS = 20


#: Length of one burst of calls of one callable in :func:`_timeit_interleaved` (s).
_BURST = 0.002
#: Busy wait after each burst (s), so that the thread pool of the callable just timed
#: (our TBB workers) has stopped spinning before the next callable runs; a sleep
#: instead made every callable slower (the idle core clocks down). Measured with two
#: identical callables in one interleaved set (the prepared call on mid, vgg and
#: dvs128, four cases, twice): without it their minima differed by up to 52 %, with
#: it by up to 9 %.
_SETTLE = 0.003
#: The busy wait after a burst of torch (OpenMP threads spin longer): ``utils.conv``
#: on mid graded right after torch took 1.3-1.8 ms (median) after waits of 0-3 ms,
#: 0.9-1.0 ms after 10-100 ms, as when run alone.
_SETTLE_FOREIGN = 0.01


def _timeit(fn: Callable[[], object], budget: float, max_calls: int = 2000) -> dict:
    """Call ``fn`` until ``budget`` seconds are spent (at least 3 calls)."""
    times: list[float] = []
    spent = 0.0
    while (len(times) < 3 or spent < budget) and len(times) < max_calls:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return {"min": float(min(times)), "median": float(np.median(times)), "calls": len(times)}


def _busy_wait(seconds: float) -> None:
    """Spin for ``seconds`` without sleeping (a sleeping core clocks down)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _timeit_interleaved(fns: dict[str, Callable[[], object]], budget: float,
                        max_calls: int = 10**6,
                        settle: dict[str, float] | None = None) -> dict[str, dict]:
    """Time several callables in alternating bursts, so that a disturbance hits all.

    Each round calls every callable in a burst of about ``_BURST`` seconds and at
    least 3 calls, each burst followed by a busy wait (not counted) in which its
    thread pool stops spinning: ``settle[name]`` seconds, ``_SETTLE`` by default. The
    first call of a burst follows another callable (other caches, another thread pool
    waking up) and is not kept; the others are, as in back-to-back calls. Rounds go on
    until every callable has had ``budget`` seconds and 3 kept calls, or ``max_calls``
    kept calls (a burst may run past it). On a shared machine a slow spell then lands
    in every callable's samples alike instead of in one callable's whole run, which
    keeps the ratios between them steady.

    Returns
    -------
    dict
        Per name: ``{"min": s, "median": s, "calls": int}`` over the kept calls.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    fastest = dict.fromkeys(fns, float("inf"))

    def wanted(name: str) -> bool:
        n = len(times[name])
        return (n < 3 or spent[name] < budget) and n < max_calls

    while any(wanted(name) for name in fns):
        for name, fn in fns.items():
            if not wanted(name):
                continue
            calls = 3 if fastest[name] == float("inf") else max(
                3, int(_BURST / max(fastest[name], 1e-9)))
            for k in range(calls):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                spent[name] += dt
                if k:
                    times[name].append(dt)
                    fastest[name] = min(fastest[name], dt)
            _busy_wait(_SETTLE if settle is None else settle.get(name, _SETTLE))
    return {name: {"min": float(min(t)), "median": float(np.median(t)), "calls": len(t)}
            for name, t in times.items()}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def tune_malloc() -> bool:
    """Pin glibc's malloc thresholds for this process, before anything is timed.

    With glibc's default *dynamic* thresholds, whether a multi-megabyte result
    freshly allocated at every call reuses heap memory or gets new mmap'd pages
    (and pays ~400 page faults per 1.6 MB) depends on the allocation history of
    the process. Measured on the ``depthwise`` layer: the same run took 0.19 ms
    (ours, dense) and 2.9 ms (torch float64) in one process state and 0.54 ms and
    9.9 ms in another. Pinning ``M_MMAP_THRESHOLD`` (32 MiB) and ``M_TRIM_THRESHOLD``
    (128 MiB), as ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` would, makes
    every run repeatable, for our paths and torch alike. Only the benchmark runner
    calls this; the library never changes the process's allocator.

    Returns
    -------
    bool
        Whether the thresholds were set (False off glibc).
    """
    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)
                    and libc.mallopt(m_trim_threshold, 128 * 2**20))
    except (OSError, AttributeError):
        return False


def _entry_points(wl, x: np.ndarray, w: np.ndarray, graded: bool, seed: int
                  ) -> tuple[dict[str, Callable[[], object]], dict[str, np.ndarray]]:
    """Build the public entry points of one case: callables and what each must return.

    Every callable returns the result of its case's input ``x`` (each model has
    stepped ``x`` once, so every further ``step(x)`` emits ``f(x)``; ``run`` over
    ``RUN_STEPS`` frames emits ``f(frame t-1)`` at ``t``, checked on its last frame).
    """
    w32 = w.astype(np.int32)
    args = wl.conv_args()
    bits = 8 if graded else 0
    proc = Conv(weight=w32, input_shape=wl.input_shape, padding=wl.padding,
                stride=wl.stride, dilation=wl.dilation, groups=wl.groups,
                num_message_bits=bits)
    models = {"fixed": PyConvModelFixed(proc), "float": PyConvModelFloat(proc),
              "bitacc": PyConvModelBitAcc(proc)}
    rng = np.random.default_rng(seed)
    if graded:
        seq = rng.integers(1, 128, size=wl.input_shape + (RUN_STEPS,), dtype=np.int16)
    else:
        density = float(np.count_nonzero(x)) / x.size
        seq = rng.random(wl.input_shape + (RUN_STEPS,)) < density
    seq = seq.astype(x.dtype)
    seq[..., -2] = x
    runner = PyConvModelFixed(proc)
    fns: dict[str, Callable[[], object]] = {
        "utils.conv": lambda: conv(x, w32, *args),
        "fixed.run": lambda: runner.run(seq)[..., -1],
    }
    for name, model in models.items():
        model.step(x)  # from here on every step emits f(x)
        fns[f"{name}.step"] = lambda model=model: model.step(x)
    plain = conv_scipy(x, w32, *args)
    encoded = conv_scipy(x, models["bitacc"].weight, *args)
    expected = {"utils.conv": plain, "fixed.run": plain, "fixed.step": plain,
                "float.step": plain, "bitacc.step": encoded}
    return fns, expected


def run(quick: bool = False, workloads: Sequence[str] | None = None,
        threads: int = 2, progress: Callable[[str], None] | None = None,
        malloc: bool = False) -> dict:
    """Run the benchmark and return the JSON-ready report (module docstring).

    Parameters
    ----------
    quick : bool
        Short timing budgets (a first look in under a minute).
    workloads : sequence of str, optional
        Names from WORKLOADS.md; all by default.
    threads : int
        Threads for our kernels and for torch.
    progress : callable, optional
        Called with a one-line status before each case.
    malloc : bool
        Pin glibc's malloc thresholds first (:func:`tune_malloc`). Off by default:
        the figures are for the allocator as a user has it.
    """
    names = list(workloads) if workloads else list(WORKLOADS)
    for name in names:
        if name not in WORKLOADS:
            raise ValueError(f"workloads: unknown workload {name!r}; choose from "
                             f"{sorted(WORKLOADS)}.")
    malloc_tuned = tune_malloc() if malloc else False
    # conv_scipy imports scipy.signal on its first call (~0.6 s): pay that outside
    # the timed region, since --quick times the reference once
    conv_scipy(np.zeros((1, 1, 1)), np.zeros((1, 1, 1, 1)), 1, 1, 0, 1, 1)
    _threads.set_num_threads(threads)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    budget = 0.03 if quick else 0.3
    densities: list = list(DENSITIES) + ["graded"]
    results = []
    total = len(names) * len(densities)
    k = 0
    for name in names:
        wl = WORKLOADS[name]
        g = wl.geometry
        for density in densities:
            k += 1
            if progress:
                progress(f"[{k}/{total}] {name} density={density}")
            x, w = wl.make(density, seed=k)
            args = wl.conv_args()
            t0 = time.perf_counter()
            reference = conv_scipy(x, w, *args)
            scipy_once = time.perf_counter() - t0
            expected = reference.astype(np.int64)
            engine = ConvEngine(w, g)
            frames = x[None]
            bound = 1 if density != "graded" else 127
            timed: dict[str, Callable[[], object]] = {}
            correct: dict[str, bool] = {}
            for path in OURS:
                def call(path=path, engine=engine, frames=frames, bound=bound):
                    return engine.exact(frames, input_max_abs=bound, path=path,
                                        out_dtype=np.int32)
                correct[path] = bool(np.array_equal(call()[0], expected))
                timed[path] = call
            # the float model's prepared call: float64 sums of the same frames (binary
            # input under the spike rule, as PyConvModelFloat reads it)
            def call_f64(engine=engine, frames=frames, binary=density != "graded"):
                return engine.compute(frames, np.float64, binary=binary)
            correct["auto_f64"] = bool(np.array_equal(call_f64()[0], expected))
            timed["auto_f64"] = call_f64
            if torch is not None:
                for label, dt in (("torch32", torch.float32), ("torch64", torch.float64)):
                    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
                    xt = xt.to(dt)[None]
                    wt = torch.from_numpy(np.ascontiguousarray(
                        w[:, ::-1, ::-1, :].transpose(0, 3, 2, 1))).to(dt)
                    kw = dict(stride=wl.stride, padding=wl.padding, dilation=wl.dilation,
                              groups=wl.groups)

                    def tcall(xt=xt, wt=wt, kw=kw):
                        return torch.nn.functional.conv2d(xt, wt, **kw)

                    y = tcall()[0].numpy().transpose(2, 1, 0)
                    correct[label] = bool(np.array_equal(y, expected))
                    timed[label] = tcall
            entries, wanted = _entry_points(wl, x, w, density == "graded", seed=k)
            for label, fn in entries.items():
                got = np.asarray(fn())
                correct[label] = bool(np.array_equal(got.astype(np.float64), wanted[label]))
                timed[label] = fn
            times = _timeit_interleaved(timed, budget, settle=dict.fromkeys(
                ("torch32", "torch64"), _SETTLE_FOREIGN))
            run_t = times["fixed.run"]
            times["fixed.run"] = {"min": run_t["min"] / RUN_STEPS,
                                  "median": run_t["median"] / RUN_STEPS,
                                  "calls": run_t["calls"], "per": "step"}
            if quick:
                times["scipy"] = {"min": scipy_once, "median": scipy_once, "calls": 1}
            else:
                times["scipy"] = _timeit(lambda x=x, w=w, args=args: conv_scipy(x, w, *args),
                                         0.0, max_calls=3)
            correct["scipy"] = True
            n_events = int(np.count_nonzero(x))
            # (the dense path's accumulator as exact() sizes it: 1 byte on the VNNI kernel)
            dense_size = engine.dense_itemsize(frames.dtype, np.int32, bound,
                                               density != "graded")
            results.append({
                "workload": name, "density": density, "events": n_events,
                "synaptic_ops": engine.synaptic_ops(frames), "dense_macs": g.dense_macs,
                "auto_choice": engine.choose_path(n_events, 1, 4, dense_size),
                "model_crossover": engine.crossover_density(4, dense_size),
                "times": times, "correct": correct,
            })
    report = {
        "schema": "lavaconv-bench/1", "threads": threads, "quick": quick,
        "torch": None if torch is None else torch.__version__,
        "numba_threading_layer": _threads.threading_layer(),
        "cpu": platform.processor() or platform.machine(),
        "malloc_tuned": malloc_tuned,
        "results": results,
    }
    report["crossovers"] = crossovers(report)
    return report


def crossovers(report: dict) -> dict[str, float | None]:
    """Measured crossover density per workload: where ``events`` meets ``dense``.

    Log-linear interpolation of the ratio ``events / dense`` between the binary
    densities that bracket 1; ``None`` when no pair brackets it.
    """
    out: dict[str, float | None] = {}
    for name in dict.fromkeys(r["workload"] for r in report["results"]):
        pts = [(r["density"], r["times"]["events"]["min"] / r["times"]["dense"]["min"])
               for r in report["results"] if r["workload"] == name
               and r["density"] != "graded"]
        pts.sort()
        found = None
        for (d0, r0), (d1, r1) in zip(pts, pts[1:], strict=False):
            if r0 <= 1.0 <= r1:
                f = (np.log(1.0) - np.log(r0)) / (np.log(r1) - np.log(r0)) if r1 != r0 else 0
                found = float(np.exp(np.log(d0) + f * (np.log(d1) - np.log(d0))))
                break
        out[name] = found  # None: no crossing among the densities tried
    return out


def _ms(t: dict) -> str:
    return f"{t['min'] * 1e3:.3f}"


def table(report: dict) -> str:
    """Format a plain-text table of times (ms, minimum over calls) and speed-up ratios."""
    has_torch = report["torch"] is not None
    head = ["workload", "density", "events", "syn.ops", "dense MACs", "dense", "events",
            "auto", "choice", "scipy"]
    if has_torch:
        head += ["torch32", "torch64", "vs t32", "vs t64"]
    head += ["vs scipy", "auto/best", "ok"]
    rows = [head]
    for r in report["results"]:
        t = r["times"]
        best = min(t["dense"]["min"], t["events"]["min"])
        auto = t["auto"]["min"]
        row = [r["workload"], str(r["density"]), str(r["events"]), f"{r['synaptic_ops']:.3g}",
               f"{r['dense_macs']:.3g}", _ms(t["dense"]), _ms(t["events"]), _ms(t["auto"]),
               r["auto_choice"], _ms(t["scipy"])]
        if has_torch:
            row += [_ms(t["torch32"]), _ms(t["torch64"]),
                    f"{t['torch32']['min'] / auto:.1f}x", f"{t['torch64']['min'] / auto:.1f}x"]
        row += [f"{t['scipy']['min'] / auto:.0f}x", f"{best / auto:.2f}",
                "yes" if all(r["correct"].values()) else "NO"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    notes = ["times in ms (minimum over calls); ratios = other's time / our auto time; "
             "auto/best = min(dense, events) / auto (1.00 = auto as fast as the better path)"]
    if not has_torch:
        notes.append("torch not installed: skipped")
    if report.get("malloc_tuned"):
        notes.append("glibc malloc thresholds pinned for the whole run (both sides; see "
                     "lavaconv.bench.tune_malloc)")
    cross = report.get("crossovers", {})
    notes.append("measured crossover density (events = dense): " + ", ".join(
        f"{k} {_crossing(report, k) if v is None else f'{v:.3%}'}" for k, v in cross.items()))
    return "\n".join(lines + [""] + notes)


def _prepared(times: dict, entry: str) -> float:
    """Return the time of the prepared call an entry point is held against (same sums).

    ``float.step`` against the float64 prepared call (``auto_f64``, in reports that
    have it), every other entry point against the exact int32 ``auto`` call.
    """
    if entry == "float.step" and "auto_f64" in times:
        return times["auto_f64"]["min"]
    return times["auto"]["min"]


def entry_table(report: dict) -> str:
    """Table of the public entry points: ms, ratio to the prepared call, to torch.

    ``/prep`` is the entry point's time over the prepared call of the same sums
    (:func:`_prepared`; 1.00: no cost on top of the kernel); ``vs torch`` is torch's
    time over the entry point's (float32 for all but ``float.step``, held against
    float64); ``run/step`` is
    ``fixed.run``'s time per step over ``fixed.step``'s.
    """
    has_torch = report["torch"] is not None
    head = ["workload", "density"]
    for name in ENTRY_POINTS:
        head += [name, "/prep"] + ([f"vs {ENTRY_POINTS[name][5:]}"] if has_torch else [])
    head += ["run/step", "ok"]
    rows = [head]
    for r in report["results"]:
        t = r["times"]
        row = [r["workload"], str(r["density"])]
        for name, rival in ENTRY_POINTS.items():
            row += [_ms(t[name]), f"{t[name]['min'] / _prepared(t, name):.2f}"]
            if has_torch:
                row += [f"{t[rival]['min'] / t[name]['min']:.1f}x"]
        row += [f"{t['fixed.run']['min'] / t['fixed.step']['min']:.2f}",
                "yes" if all(r["correct"][n] for n in ENTRY_POINTS) else "NO"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    note = ("public entry points, times in ms (minimum over calls; fixed.run per step, "
            f"T = {RUN_STEPS}); /prep = time / prepared auto call (float64 for float.step); "
            "vs t32/t64 = torch time / ours; run/step = fixed.run per step / fixed.step")
    if not report.get("malloc_tuned"):
        note += "; allocator as a user has it (glibc defaults)"
    return "\n".join(lines + ["", note])


def _crossing(report: dict, name: str) -> str:
    """Describe a workload with no crossing among the binary densities tried."""
    ratios = [r["times"]["events"]["min"] / r["times"]["dense"]["min"]
              for r in report["results"] if r["workload"] == name and r["density"] != "graded"]
    if ratios and max(ratios) < 1.0:
        return f"above {max(DENSITIES):.0%} (events faster at every density tried)"
    if ratios and min(ratios) > 1.0:
        return f"below {min(DENSITIES):.1%}"
    return "n/a"


def write_json(report: dict, path: str) -> None:
    """Write the report as JSON (schema in the module docstring)."""
    with open(path, "w") as f:
        json.dump(report, f, indent=1)


def plot(report: dict, path: str) -> bool:
    """Speed-up of our auto path vs density per workload, log scale, as a PNG.

    Against torch float32 when torch was run, else against ``conv_scipy``. Graded
    input is drawn at density 1. Returns False when matplotlib is not installed
    (``pip install lavaconv[bench]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    other = "torch32" if report["torch"] is not None else "scipy"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["workload"] for r in report["results"]):
        rs = [r for r in report["results"] if r["workload"] == name]
        d = [1.0 if r["density"] == "graded" else r["density"] for r in rs]
        s = [r["times"][other]["min"] / r["times"]["auto"]["min"] for r in rs]
        ax.plot(d, s, marker="o", label=name)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input density (1 = graded, dense)")
    ax.set_ylabel(f"speed-up of lavaconv auto vs {other}")
    ax.set_title(f"lavaconv vs {other}, {report['threads']} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
