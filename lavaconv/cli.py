"""The ``lavaconv`` command: ``lavaconv bench`` and ``lavaconv warmup``."""

from __future__ import annotations

import argparse
import sys
import time


def _progress(start: float):
    def show(msg: str) -> None:
        sys.stderr.write(f"\r\033[K{time.perf_counter() - start:6.1f}s {msg}")
        sys.stderr.flush()
    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lavaconv`` console script."""
    parser = argparse.ArgumentParser(prog="lavaconv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time every path on the WORKLOADS.md layers")
    b.add_argument("--quick", action="store_true", help="short budgets: under a minute")
    b.add_argument("--workload", action="append", help="only this workload (repeatable)")
    b.add_argument("--threads", type=int, default=2, help="threads for us and torch (2)")
    b.add_argument("--json", default="lavaconv-bench.json", help="JSON output path")
    b.add_argument("--png", default="lavaconv-bench.png", help="plot output path")
    b.add_argument("--tune-malloc", action="store_true",
                   help="pin glibc's malloc thresholds first (default: as a user has it)")
    sub.add_parser("warmup", help="compile every shipped kernel signature")
    args = parser.parse_args(argv)

    if args.command == "warmup":
        from .warmup import warmup

        print(f"warm-up took {warmup():.2f} s")
        return 0

    from . import bench

    start = time.perf_counter()
    try:
        report = bench.run(quick=args.quick, workloads=args.workload, threads=args.threads,
                           progress=_progress(start), malloc=args.tune_malloc)
    except ValueError as exc:
        sys.stderr.write(f"\nlavaconv bench: {exc}\n")
        return 2
    sys.stderr.write(f"\r\033[Kdone in {time.perf_counter() - start:.1f} s\n")
    print(bench.table(report))
    print()
    print(bench.entry_table(report))
    bench.write_json(report, args.json)
    print(f"\nJSON: {args.json}")
    if bench.plot(report, args.png):
        print(f"plot: {args.png}")
    else:
        print("plot: skipped (matplotlib not installed; pip install 'lavaconv[bench]')")
    bad = [r for r in report["results"] if not all(r["correct"].values())]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
