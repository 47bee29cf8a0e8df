"""Print the README's benchmark tables (Markdown) from a ``lavaconv bench`` JSON report.

    python benchmarks/readme_tables.py benchmarks/results/lavaconv-bench.json

Every figure in the tables comes from that one run: times are minima over calls, in ms;
ratios are the rival's time over ours.
"""

from __future__ import annotations

import json
import sys


def _ms(t: dict) -> str:
    v = t["min"] * 1e3
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def _x(a: dict, b: dict) -> str:
    r = a["min"] / b["min"]
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def entry_points(report: dict) -> str:
    """What users call, binary spikes: each entry point against torch and the kernel."""
    rows = ["| workload | density | torch f32 | torch f64 | prepared call | `utils.conv` | "
            "`Fixed.step` | `Float.step` | `Fixed.run` per step | `utils.conv` vs f32 | "
            "`Fixed.step` vs f32 | `Float.step` vs f64 | `utils.conv` ÷ prepared | "
            "`Fixed.step` ÷ prepared | `Float.step` ÷ prepared f64 | `run` ÷ `step` |",
            "|" + "---|" * 16]
    for r in report["results"]:
        if r["density"] == "graded":
            continue
        t = r["times"]
        rows.append(
            f"| {r['workload']} | {r['density']:.1%} | {_ms(t['torch32'])} | "
            f"{_ms(t['torch64'])} | {_ms(t['auto'])} | {_ms(t['utils.conv'])} | "
            f"{_ms(t['fixed.step'])} | {_ms(t['float.step'])} | {_ms(t['fixed.run'])} | "
            f"{_x(t['torch32'], t['utils.conv'])} | {_x(t['torch32'], t['fixed.step'])} | "
            f"{_x(t['torch64'], t['float.step'])} | "
            f"{t['utils.conv']['min'] / t['auto']['min']:.2f} | "
            f"{t['fixed.step']['min'] / t['auto']['min']:.2f} | "
            f"{t['float.step']['min'] / t.get('auto_f64', t['auto'])['min']:.2f} | "
            f"{t['fixed.run']['min'] / t['fixed.step']['min']:.2f} |")
    return "\n".join(rows)


def graded(report: dict) -> str:
    """Dense graded input: the entry points and the dense kernel against torch and Lava."""
    rows = ["| workload | torch f32 | torch f64 | `conv_scipy` | dense kernel | `utils.conv` | "
            "`Fixed.step` | `Float.step` | `utils.conv` vs f32 | `Fixed.step` vs f32 | "
            "`Float.step` vs f64 | dense kernel vs `conv_scipy` |",
            "|" + "---|" * 12]
    for r in report["results"]:
        if r["density"] != "graded":
            continue
        t = r["times"]
        rows.append(
            f"| {r['workload']} | {_ms(t['torch32'])} | {_ms(t['torch64'])} | "
            f"{_ms(t['scipy'])} | {_ms(t['dense'])} | {_ms(t['utils.conv'])} | "
            f"{_ms(t['fixed.step'])} | {_ms(t['float.step'])} | "
            f"{_x(t['torch32'], t['utils.conv'])} | {_x(t['torch32'], t['fixed.step'])} | "
            f"{_x(t['torch64'], t['float.step'])} | {_x(t['scipy'], t['dense'])} |")
    return "\n".join(rows)


def kernels(report: dict) -> str:
    """The prepared kernel's paths at every density (auto's choice and its cost)."""
    rows = ["| workload | density | events | dense | events path | auto | choice | "
            "auto ÷ better path | auto vs torch f32 | auto vs `conv_scipy` |",
            "|" + "---|" * 10]
    for r in report["results"]:
        t = r["times"]
        best = min(t["dense"]["min"], t["events"]["min"])
        d = r["density"] if r["density"] == "graded" else f"{r['density']:.1%}"
        rows.append(
            f"| {r['workload']} | {d} | {r['events']} | {_ms(t['dense'])} | "
            f"{_ms(t['events'])} | {_ms(t['auto'])} | {r['auto_choice']} | "
            f"{t['auto']['min'] / best:.2f} | {_x(t['torch32'], t['auto'])} | "
            f"{_x(t['scipy'], t['auto'])} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    """Print the three tables of the report at ``argv[0]``."""
    with open(argv[0]) as f:
        report = json.load(f)
    if report["torch"] is None:
        sys.stderr.write("this report has no torch columns; run with torch installed\n")
        return 2
    print(entry_points(report), graded(report), kernels(report), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
