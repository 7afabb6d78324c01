"""Benchmark `scrm uplift backtest` on a customer-level experiment export (target: tens of thousands of rows < 60 s).

The export is the tests' seeded synthetic email test (``tests/training/uplift_data.py``: numeric and text
features, an identifier, three groups, a heterogeneous effect), written as CSV and read back, so the timing
covers what the command does: read, check, split, fit (both learners on the validation split, then the chosen one
again), predict, and 2 × 200 bootstrap resamples of the test split.

Printed: seconds per step, total wall and CPU seconds, the load average, and the headline figures.

Usage::

    python benchmarks/bench_uplift.py --rows 50000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "training"))

from uplift_data import experiment_table  # noqa: E402

from training.uplift_backtest import backtest, prepare_experiment, read_table  # noqa: E402


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "experiment.csv"
        experiment_table(args.rows, random_state=args.random_state).to_csv(path, index=False)
        wall, cpu = time.perf_counter(), cpu_seconds()
        steps = {}
        t0 = time.perf_counter()
        frame = read_table(path)
        steps["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        experiment = prepare_experiment(frame, treatment_col="group", control_value="control",
                                        outcome_col="converted", file=path)
        steps["check"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = backtest(experiment, random_state=args.random_state, file=path)
        steps["fit + score + bootstrap"] = time.perf_counter() - t0
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    result = run.result
    print(f"rows {args.rows:,} (train {run.n_train:,}, test {run.n_test:,}); "
          + "; ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
    print(f"total {wall:.1f} s wall, {cpu:.1f} s CPU; load average {os.getloadavg()[0]:.1f}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    model, rand = result["model"], result["baselines"]["random"]
    print(f"learner {result['learner']} (validation Qini {run.validation_qini}); ate {result['ate']['estimate']:+.4f} "
          f"{result['ate']['ci']}; uplift@30% {model['uplift_at']['0.3']['estimate']:+.4f} "
          f"{model['uplift_at']['0.3']['ci']}; Qini {model['qini']['estimate']:+.3f} {model['qini']['ci']} "
          f"(random {rand['qini']['estimate']:+.3f}); AUUC {model['auuc']['estimate']:+.3f}")


if __name__ == "__main__":
    main()
