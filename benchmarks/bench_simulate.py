"""Benchmark the omnichannel simulator: rows per table, seconds per step, peak RSS.

Usage: ``python benchmarks/bench_simulate.py --customers 1000000 [--seed 7] [--write DIR] [--format parquet]``

The issue's target: 1M customers in under 2 minutes on 2 cores. Prints wall and CPU seconds (CPU time is
the fairer figure on a shared machine) and the ratio to the target.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 120.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="people to simulate (default 1M)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dirty", type=float, default=0.0, help="fraction of malformed rows")
    parser.add_argument("--write", type=Path, default=None, help="also write the tables here and time it")
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    parser.add_argument("--no-write", action="store_true", help="skip the write step")
    args = parser.parse_args(argv)

    from features.simulate import simulate, write_dataset

    steps: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    tables = simulate(args.customers, seed=args.seed, dirty=args.dirty, timings=steps)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = args.customers
    print(f"simulate {n:,} customers (seed {args.seed}, dirty {args.dirty})")
    for name, df in tables.items():
        print(f"  {name:<17} {len(df):>12,} rows  ({len(df) / n:6.2f} per customer)")
    walls = {k: v for k, v in steps.items() if not k.endswith(" cpu")}
    print(
        "  steps (wall / cpu s): "
        + ", ".join(f"{k} {v:.1f}/{steps[k + ' cpu']:.1f}" for k, v in walls.items())
    )
    print(
        f"  wall {wall:.1f} s, cpu {cpu:.1f} s, peak RSS {peak_rss_gb():.2f} GB, load average {os.getloadavg()[0]:.1f}"
    )
    scale = 1e6 / n
    print(
        f"  target {TARGET_SECONDS:.0f} s per 1M customers: wall/target {wall * scale / TARGET_SECONDS:.2f}, "
        f"cpu/target {cpu * scale / TARGET_SECONDS:.2f} (cpu is what an idle 2-core machine needs; wall also "
        "counts waiting for other processes)"
    )
    if not args.no_write:
        with tempfile.TemporaryDirectory() as tmp:
            out = args.write or Path(tmp)
            w0 = time.perf_counter()
            paths = write_dataset(tables, out, fmt=args.format)
            size = sum(p.stat().st_size for p in paths.values()) / 1024**2
            print(
                f"  write_dataset ({args.format}) {time.perf_counter() - w0:.1f} s, {size:,.0f} MB, "
                f"peak RSS {peak_rss_gb():.2f} GB"
            )


if __name__ == "__main__":
    main()
