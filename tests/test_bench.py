"""The benchmark runner's own logic (timing, argument checks); no timing is asserted."""

from __future__ import annotations

import pytest

from lavaconv import bench


def test_interleaved_timing_alternates_bursts_and_drops_each_bursts_first_call():
    order: list[str] = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    result = bench._timeit_interleaved(fns, budget=0.0)
    # first round: a burst of 3 calls each, a's first; the first call of a burst is
    # not kept, so a second round is needed to keep 3 calls
    assert order[:7] == ["a"] * 3 + ["b"] * 3 + ["a"]
    bursts = {"a": [], "b": []}
    for k, name in enumerate(order):
        if k == 0 or order[k - 1] != name:
            bursts[name].append(0)
        bursts[name][-1] += 1
    assert len(bursts["a"]) == len(bursts["b"]) == 2
    for name in "ab":
        assert result[name]["calls"] == sum(bursts[name]) - len(bursts[name]) >= 3
        assert 0.0 <= result[name]["min"] <= result[name]["median"]


def test_interleaved_timing_spends_the_budget_on_every_callable():
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        sum(range(20000))

    result = bench._timeit_interleaved({"fast": fast, "slow": slow}, budget=0.005)
    for name in calls:
        assert result[name]["calls"] >= 3
        assert calls[name] > result[name]["calls"]  # the first call of each burst dropped
    # the kept calls of the slow one add up to at least the budget
    assert result["slow"]["calls"] * result["slow"]["median"] >= 0.005 * 0.5


def test_unknown_workload_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        bench.run(quick=True, workloads=["nope"])


def test_interleaved_timing_waits_after_every_burst_outside_the_timed_calls(monkeypatch):
    events: list = []
    monkeypatch.setattr(bench, "_busy_wait", lambda seconds: events.append(seconds))
    fns = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    bench._timeit_interleaved(fns, budget=0.0, settle={"b": 0.5})
    # bursts: runs of one name; each is followed by one wait, the one asked for its
    # callable (b: 0.5 s), else the default; no wait falls inside a burst
    bursts = []
    for k, item in enumerate(events):
        if isinstance(item, str) and (k == 0 or events[k - 1] != item):
            bursts.append(item)
            end = k
            while end < len(events) and events[end] == item:
                end += 1
            assert end < len(events) and not isinstance(events[end], str), events
            assert events[end] == (0.5 if item == "b" else bench._SETTLE)
    assert bursts == ["a", "b", "a", "b"]
    assert sum(not isinstance(e, str) for e in events) == len(bursts)


def test_busy_wait_spins_for_the_time_asked():
    import time

    t0 = time.perf_counter()
    bench._busy_wait(0.002)
    assert time.perf_counter() - t0 >= 0.002
