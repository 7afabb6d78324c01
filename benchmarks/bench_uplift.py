"""Benchmark `scrm uplift backtest` on a customer-level experiment export (target: tens of thousands of rows < 60 s).

The export is the tests' seeded synthetic email test (``tests/training/uplift_data.py``: numeric and text
features, an identifier, three groups, a heterogeneous effect), written as CSV and read back, so the timing
covers what the command does: read, check, split, fit (both learners on the validation split, then the chosen one
again), predict, and 2 × 200 bootstrap resamples of the test split.

Printed: seconds per step, total wall and CPU seconds, the load average, and the headline figures.

Usage::

    python benchmarks/bench_uplift.py --rows 50000

With ``--data DIR`` (a ``scrm simulate`` directory) it runs instead the ``uplift`` block of ``scrm backtest``
(:func:`training.backtest.backtest`, 90-day horizon) at each ``--as-of`` (one feature cache shared between them)
and prints, per evaluation campaign, the outcome and true Qini and the true incremental conversions in the top 30%
of the model, the by-CLV, by-churn-risk and random policies and the oracle (how the model's gap to the oracle
changes with the brand's size: docs/decisions.md)::

    scrm simulate --out /tmp/s50k --customers 50000 --seed 7
    python benchmarks/bench_uplift.py --data /tmp/s50k --as-of 2025-04-01 --as-of 2025-10-01 --json out.jsonl
"""

from __future__ import annotations

import argparse
import json
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


POLICIES = ("by_clv", "by_churn_risk", "random")


def training_size_curve(cache, as_of: str, shares: list[float], random_state: int) -> dict[float, dict]:
    """The campaign model refitted on a seeded share of the training campaigns' people (the same share of each
    campaign's rows), judged on the same evaluation campaign: true Qini and true incremental at 30% per share.

    Separates the training rows' effect from the evaluation campaign's size (a bigger brand has both)."""
    import numpy as np
    import pandas as pd

    from training.uplift_campaigns import (
        campaign_sends,
        evaluation_rows,
        feature_columns,
        fit_campaign_model,
        policy_figures,
        truth_effects,
    )

    data = cache.data
    end = pd.Timestamp(as_of) + pd.Timedelta(days=90)
    limit = min(end, data.data_end + pd.Timedelta(days=1))
    _, _, train, rows = evaluation_rows(cache, campaign_sends(data.campaign_touches), limit,
                                        train_until=pd.Timestamp(as_of))
    truth = truth_effects(data.source, rows)
    y, t = rows["converted"].to_numpy(float), rows["treated"].to_numpy(float)
    people = train["person_id"].unique()
    out = {}
    for share in shares:
        rng = np.random.default_rng(random_state)
        keep = set(rng.choice(people, size=max(1, round(share * len(people))), replace=False))
        part = train[train["person_id"].isin(keep)]
        model, _ = fit_campaign_model(part, random_state=random_state)
        pred = model.predict(rows[feature_columns(rows)])
        fig = policy_figures(y, t, pred, truth)
        out[share] = {"n_train": len(part), "true_qini": fig["true_qini"], "qini": fig["qini"],
                      "true_incremental_at_30pct": fig["true_incremental_at_30pct"]}
        print(f"  training share {share:.2f} ({len(part):,} rows): true Qini {fig['true_qini']:.3f}, "
              f"outcome Qini {fig['qini']:.3f}, true incremental at 30% {fig['true_incremental_at_30pct']:.1f}",
              flush=True)
    return out


def bounded_cache(data, random_state: int, keep: int | None):
    """A :class:`training.frames.FeatureCache` that holds at most ``keep`` snapshots (the latest used; None: all).

    The backtest reads some 20 snapshots (the churn and CLV cutoffs, the as-of date, each campaign's send date);
    a 100,000-customer brand holds them in about 3 GB. Bounded, a forgotten one is rebuilt when read again: the
    same figures, more time."""
    from features.backend import as_date
    from training.frames import FeatureCache

    class Bounded(FeatureCache):
        def features(self, cutoff):
            snap = super().features(cutoff)
            day = as_date(cutoff)
            if day in self._features:  # latest used last
                self._features[day] = self._features.pop(day)
            while len(self._features) > keep:
                self._features.pop(next(iter(self._features)))
            return snap

    return Bounded(data, random_state=random_state) if keep else FeatureCache(data, random_state=random_state)


def simulated_campaigns(data_dir: Path, as_of: list[str], random_state: int, json_path: Path | None,
                        train_shares: list[float] | None = None, keep: int | None = None) -> None:
    """The backtest's uplift block at each as-of date on a simulated brand: model vs baselines vs oracle."""
    from features.contract import load_dataset
    from training.backtest import backtest

    t0 = time.perf_counter()
    data = load_dataset(data_dir)
    cache = bounded_cache(data, random_state, keep)
    print(f"{data_dir}: loaded in {time.perf_counter() - t0:.1f} s")
    for date in as_of:
        t0, c0 = time.perf_counter(), cpu_seconds()
        result, _ = backtest(data, date, 90, cache=cache, random_state=random_state)
        up = result["uplift"]
        pol = {"model": up["model"], **{k: up["baselines"][k] for k in POLICIES}, "oracle": up["oracle"]}
        rec = {"data": str(data_dir), "as_of": date, "n_customers": result["n_customers"],
               **{k: up[k] for k in ("evaluation_campaign", "n_train", "n_eval", "n_eval_control", "true_ate")},
               "ate": up["ate"]["estimate"], "model_qini_ci": up["model_ci"]["qini"],
               "qini": {k: v["qini"] for k, v in pol.items()}, "true_qini": {k: v["true_qini"] for k, v in pol.items()},
               "incremental_at_30pct": {k: v["incremental_at_30pct"] for k, v in pol.items()},
               "true_incremental_at_30pct": {k: v["true_incremental_at_30pct"] for k, v in pol.items()},
               "true_incremental_spend_at_30pct": {k: v["true_incremental_spend_at_30pct"] for k, v in pol.items()},
               "seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0, "load": os.getloadavg()[0],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        q, tq, ti = rec["qini"], rec["true_qini"], rec["true_incremental_at_30pct"]
        ci = rec["model_qini_ci"]
        print(f"as of {date} -> {rec['evaluation_campaign']} ({rec['n_eval']:,} people, {rec['n_eval_control']:,} "
              f"control; {rec['n_train']:,} training rows): model Qini {q['model']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] vs "
              f"oracle {q['oracle']:.3f} (ratio {q['model'] / q['oracle']:.2f}); true Qini {tq['model']:.2f}; "
              "true incremental at 30%: " + " · ".join(f"{k} {v:.1f}" for k, v in ti.items())
              + f"; {rec['seconds']:.0f} s wall, {rec['cpu_seconds']:.0f} s CPU, load {rec['load']:.1f}, "
              f"peak RSS {rec['peak_rss_mb']:.0f} MB", flush=True)
        if train_shares:
            rec["training_size"] = training_size_curve(cache, date, train_shares, random_state)
        if json_path is not None:
            with open(json_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, default=float) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--data", type=Path, help="a simulated data directory: run the backtest's uplift block")
    parser.add_argument("--as-of", action="append", default=None, help="with --data (repeatable); default 2025-04-01")
    parser.add_argument("--json", type=Path, help="with --data: append one JSON line per as-of date here")
    parser.add_argument("--keep-snapshots", type=int, help="with --data: hold at most this many feature "
                                                                 "snapshots (bounds memory; default all)")
    parser.add_argument("--train-shares", type=lambda v: [float(x) for x in v.split(",")],
                        help="with --data: also refit the campaign model on these shares of the training people "
                             "(e.g. 0.2,0.5,1) and judge each on the same evaluation campaign")
    args = parser.parse_args()
    if args.data is not None:
        simulated_campaigns(args.data, args.as_of or ["2025-04-01"], args.random_state, args.json,
                            args.train_shares, args.keep_snapshots)
        return
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
