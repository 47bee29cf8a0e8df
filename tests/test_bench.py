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
