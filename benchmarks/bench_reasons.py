"""The nightly batch pass with churn reasons on an existing snapshot: `score()` and `reason_table` timed apart.

    MLFLOW_TRACKING_URI=sqlite:////tmp/soak20k/mlruns/mlflow.db \\
        python benchmarks/bench_reasons.py --snapshot /tmp/b1m/features/as_of=2026-01-01 --brand soak20k

A large snapshot without a large simulation: `bench_startup.py --scale 40` writes one (the brand's snapshot and
publication copied under new ids). The champions are those registered for ``--brand`` as of the snapshot's date.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from features.pipeline import load_snapshot
from training.scoring import load_champions, reason_table, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshot", type=Path, required=True, help="a feature snapshot directory (as_of=DATE)")
    ap.add_argument("--brand", required=True, help="brand whose champions score it")
    ap.add_argument("--jobs", type=int, default=2, help="threads of the reason pass (scrm score's default: 2)")
    args = ap.parse_args()

    snap = load_snapshot(args.snapshot)
    as_of = snap.manifest["as_of"]
    models = load_champions(brand=args.brand, as_of=as_of)
    t0, c0 = time.perf_counter(), time.process_time()
    scores = score(snap.features, models, as_of=as_of, with_reasons=False)
    t1, c1 = time.perf_counter(), time.process_time()
    eligible = scores["eligible"].to_numpy(bool)
    reason_table(snap.features, models.churn, eligible=eligible, n_jobs=args.jobs)
    t2, c2 = time.perf_counter(), time.process_time()
    n = int(eligible.sum())
    print(f"people {len(snap.features):,}, scored {n:,}")
    print(f"score() without reasons: {t1 - t0:.1f} s wall, {c1 - c0:.1f} s CPU")
    print(f"reason pass ({args.jobs} threads): {t2 - t1:.1f} s wall, {c2 - c1:.1f} s CPU = "
          f"{(c2 - c1) / max(n, 1) * 1000:.3f} CPU-ms per scored person")
    print(f"together {(t2 - t0) / 60:.1f} min (target 10 min for 1M people); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB; "
          f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
