"""Benchmark: validation AUC (churn) and Gini (CLV) as a function of the training sample size (issue 13).

Simulates a brand (``features.simulate``) unless ``--data`` names a data directory, builds the feature snapshots
once (``FeatureCache``), then for every ``--sizes`` entry fits churn and CLV on a person sample of that size
(``FeatureCache.with_sample``: stratified by lifecycle stage × RFM segment, the same people at every cutoff,
seeded by ``--seeds``) and scores the models on the WHOLE validation window (every buyer at the validation cutoff,
not only the sampled ones), so the sizes are compared on the same people. The served candidate is the model
chosen on the validation window (``refit=False``): the refit would have seen the window it is scored on.

Prints one row per size and seed (rows, fit seconds, AUC, Gini) and the mean per size, and writes them as JSON.

    .venv/bin/python benchmarks/bench_sample.py --customers 30000 --sizes 1000,2500,5000,10000,0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=30_000, help="simulated customers (ignored with --data)")
    ap.add_argument("--seed", type=int, default=1, help="simulator seed")
    ap.add_argument("--data", type=Path, help="existing data directory (default: simulate into a temp dir)")
    ap.add_argument("--as-of", default="2025-10-01")
    ap.add_argument("--horizon", type=int, default=90, help="churn and CLV horizon (days)")
    ap.add_argument("--cutoffs", type=int, default=2, help="training cutoffs stacked")
    ap.add_argument("--sizes", default="1000,2500,5000,10000,0", help="sample sizes; 0 = every buyer")
    ap.add_argument("--seeds", default="0,1", help="sample seeds (random_state) per size")
    ap.add_argument("--json", type=Path, default=Path("bench_sample.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("SCRM_PII_KEY", "bench-pii-key")

    from features.contract import load_dataset
    from features.simulate import simulate, write_dataset
    from training.fitting import DEFAULT_MAX_TRAIN_ROWS, fit_churn, fit_clv, plan
    from training.frames import FeatureCache
    from training.metrics import churn_metrics, clv_metrics

    data_dir = args.data
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="bench-sample-")) / "data"
        t = time.perf_counter()
        write_dataset(simulate(args.customers, seed=args.seed), data_dir)
        print(f"simulated {args.customers:,} customers in {time.perf_counter() - t:.0f} s -> {data_dir}", flush=True)
    dataset = load_dataset(data_dir)
    as_of, h = date.fromisoformat(args.as_of), args.horizon
    base = FeatureCache(dataset)
    lgbm = {"n_jobs": 1}
    common = dict(horizon_days=h, n_cutoffs=args.cutoffs, refit=False, **lgbm)

    t = time.perf_counter()
    layout = plan(base, as_of, h, n_cutoffs=args.cutoffs, step_days=30, max_train_rows=DEFAULT_MAX_TRAIN_ROWS)
    base.labelled(layout.train, h)  # every snapshot, label set and BTYD fit the fits read, built once
    base.btyd(as_of)
    validation = layout.validation
    valid = base.labelled([validation], h)
    btyd_valid = base.btyd(validation)
    print(f"snapshots and validation rows ({len(valid):,} buyers at {validation}) in "
          f"{time.perf_counter() - t:.0f} s", flush=True)

    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            cache = base.with_sample(size or None, random_state=seed)
            t = time.perf_counter()
            churn = fit_churn(cache, as_of, random_state=seed, **common)
            clv = fit_clv(cache, as_of, random_state=seed, **common)
            seconds = time.perf_counter() - t
            p = churn.model.predict_frame(valid)["churn_probability"]
            pred = clv.model.predict_frame(valid, as_of=validation, btyd=btyd_valid)
            auc = churn_metrics(valid["churned"], p)["auc"]
            gini = clv_metrics(valid["future_spend"], pred["clv_mean"])["gini"]
            sample = cache.sample
            row = {"size": size or "all", "seed": seed, "people": sample.kept if sample else None,
                   "buyers": sample.buyers if sample else None, "train_rows": churn.n_train,
                   "fit_seconds": round(seconds, 1), "auc": round(auc, 4), "gini": round(gini, 4),
                   "auc_sample_valid": round(churn.metrics["auc"], 4),
                   "churn_family": churn.model.family_, "clv_family": clv.model.family_}
            rows.append(row)
            print(json.dumps(row), flush=True)

    import pandas as pd

    table = pd.DataFrame(rows)
    summary = table.groupby("size", sort=False).agg(people=("people", "first"), train_rows=("train_rows", "mean"),
                                                    fit_seconds=("fit_seconds", "mean"), auc=("auc", "mean"),
                                                    auc_sd=("auc", "std"), gini=("gini", "mean"),
                                                    gini_sd=("gini", "std"))
    print(f"\n{args.customers if args.data is None else data_dir} customers, as of {as_of}, {h}-day horizon, "
          f"{args.cutoffs} training cutoffs; validation on all {len(valid):,} buyers at {validation}")
    print(summary.round(4).to_string())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"peak RSS {peak_gb:.2f} GB")
    args.json.write_text(json.dumps({"rows": rows, "validation_buyers": len(valid), "as_of": as_of.isoformat(),
                                     "horizon_days": h, "peak_rss_gb": round(peak_gb, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
