"""Benchmark: churn + CLV training (``training.train.train_all``) on a large simulated brand.

Generates the brand with the project simulator (``features.simulate``; 1M customers ≈ 10M orders, 32M events)
unless ``--data`` points at an existing data directory, loads it through the data contract, then times
``train_all`` end to end — One-ID, feature snapshots at every cutoff, labels, BTYD fits, LightGBM fits,
validation, MLflow logging, registration and the promotion gate — with a breakdown per phase, and prints the peak
resident memory. The target (issue 3) is under 10 minutes for 1M customers on 2 cores.

    .venv/bin/python benchmarks/bench_training.py --customers 1000000
    .venv/bin/python benchmarks/bench_training.py --data /tmp/d1m --as-of 2026-01-01
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Timer:
    """Exclusive wall and CPU seconds per phase (time spent in a nested phase counts only there)."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open phase: [children wall, children cpu]

    def wrap(self, name, func):
        def timed(*args, **kwargs):
            self._stack.append([0.0, 0.0])
            w, c = time.perf_counter(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                dw, dc = time.perf_counter() - w, time.process_time() - c
                child_w, child_c = self._stack.pop()
                self.wall[name] += dw - child_w
                self.cpu[name] += dc - child_c
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][0] += dw
                    self._stack[-1][1] += dc
        return timed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000, help="simulated customers (ignored with --data)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, help="existing data directory (default: simulate into a temp dir)")
    ap.add_argument("--as-of", default="2026-01-01", help="training date (default: the day after the data ends)")
    ap.add_argument("--cutoffs", type=int, default=8, help="rolling cutoffs (at most; scaled down at size)")
    ap.add_argument("--max-train-rows", type=int, default=None, help="override DEFAULT_MAX_TRAIN_ROWS")
    ap.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads")
    ap.add_argument("--sample-size", type=int, default=None,
                    help="buyers per cutoff of the training sample, as `scrm train all --sample-size` (default: "
                    "sized to the machine, training.frames.default_sample_size; 0: everyone)")
    ap.add_argument("--no-register", action="store_true", help="log runs but do not register or gate")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)

    os.environ.setdefault("SCRM_PII_KEY", "benchmark-key")
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")
    os.environ.setdefault("SCRM_ARTIFACT_ROOT", str(work / "artifacts"))

    from features.contract import load_dataset
    from training import frames, train
    from training.churn import ChurnModel
    from training.clv import CLVModel

    data_dir = args.data
    if data_dir is None:
        from features.simulate import simulate, write_dataset

        t = time.perf_counter()
        data_dir = work / "data"
        write_dataset(simulate(args.customers, seed=args.seed), data_dir)
        print(f"simulated {args.customers:,} customers in {time.perf_counter() - t:.0f} s -> {data_dir}")

    timer = Timer()
    t = time.perf_counter()
    dataset = load_dataset(data_dir)
    load_s = time.perf_counter() - t
    rss_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    table_gb = sum(df.memory_usage(deep=True).sum() for df in dataset.tables().values()) / 1024**3
    print(f"load_dataset: {load_s:.1f} s ({len(dataset.orders):,} orders, "
          f"{0 if dataset.events is None else len(dataset.events):,} events); tables {table_gb:.2f} GB in memory, "
          f"peak RSS so far {rss_load:.1f} GB")

    # phase breakdown: wrap the expensive steps (the measured run itself is unchanged)
    frames.build_features = timer.wrap("feature snapshots", frames.build_features)
    frames.build_labels = timer.wrap("labels", frames.build_labels)
    frames.fit_btyd = timer.wrap("BTYD fits", frames.fit_btyd)
    frames.FeatureCache.labelled = timer.wrap("training frames (BTYD/derived columns)", frames.FeatureCache.labelled)
    frames.resolve_identities = timer.wrap("One-ID", frames.resolve_identities)
    ChurnModel.fit = timer.wrap("churn LightGBM fit + calibration", ChurnModel.fit)
    CLVModel.fit = timer.wrap("CLV LightGBM fits + family choice", CLVModel.fit)
    train._log_run = timer.wrap("MLflow logging + registration", train._log_run)
    train._gate = timer.wrap("promotion gate", train._gate)

    sample = frames.default_sample_size() if args.sample_size is None else args.sample_size
    kwargs = {"n_cutoffs": args.cutoffs, "register": not args.no_register, "sample_size": sample or None,
              "churn_params": {"n_jobs": args.n_jobs}, "clv_params": {"n_jobs": args.n_jobs}}
    if args.max_train_rows is not None:
        kwargs["max_train_rows"] = args.max_train_rows
    wall, cpu = time.perf_counter(), time.process_time()
    results = train.train_all(dataset, args.as_of, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    print(f"\ntrain_all (churn + CLV) as of {args.as_of}, sample size {sample or 'everyone'}: {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU, peak RSS {peak_gb:.1f} GB (after loading {rss_load:.1f} GB); load average "
          f"{os.getloadavg()[0]:.1f} — target < 600 s: {'met' if wall < 600 else 'NOT met'}")
    accounted = 0.0
    for name in timer.wall:
        accounted += timer.wall[name]
        print(f"  {name:42s} {timer.wall[name]:7.1f} s wall {timer.cpu[name]:7.1f} s CPU  ({timer.calls[name]} calls)")
    print(f"  {'other (validation predictions, ...)':42s} {wall - accounted:7.1f} s")
    figures = {}
    for name, r in results.items():
        m = r.model
        figures[name] = {"version": r.version, "decision": getattr(r.decision, "decision", None),
                         "n_train_rows": getattr(m, "n_train_rows_", None), **{f"val.{k}": v for k, v in r.metrics.items()}}
        print(f"  {name}: {json.dumps(figures[name], default=str)}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": wall, "cpu_seconds": cpu, "load_seconds": load_s,
                                         "peak_rss_gb": peak_gb, "rss_after_load_gb": rss_load,
                                         "tables_gb": table_gb, "sample_size": sample, "phases": dict(timer.wall),
                                         "models": figures}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
