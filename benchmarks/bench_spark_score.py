"""Benchmark: scoring a snapshot on Spark (``training.spark_scoring.score_snapshot``) against in-process ``score``.

Simulates ``--customers`` people (or reads ``--data``), writes the DuckDB feature snapshot, trains churn and CLV
with the project's defaults on a separate ``--train-customers`` simulation, then times

* ``score()`` + ``label_scores`` in this process on the snapshot read with pandas (what ``scrm score`` does after
  building features), and
* ``score_snapshot`` on a local Spark session (``--master``, default ``local[2]``): both passes, the Parquet
  output included,

checks that both give the same scores (ids, numbers within 1e-9 relative, text) and prints wall times (per pass)
and peak memory sampled every 0.5 s (``proc_memory.TreeMemory``): this Python driver, the Spark JVM, its Python
workers and their sum.

``--snapshot DIR`` scores an existing snapshot (e.g. the Spark snapshot ``bench_features.py --engine spark
--keep-snapshot DIR`` wrote) at its manifest's ``as_of``; ``--skip-local`` leaves out the in-process run and the
comparison (for snapshots too large to score in one process next to Spark).

    .venv/bin/python benchmarks/bench_spark_score.py --customers 100000
    .venv/bin/python benchmarks/bench_spark_score.py --snapshot /tmp/snap5m --skip-local
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from proc_memory import TreeMemory  # noqa: E402 - after the path insert


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--train-customers", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, help="data directory to score (default: simulate --customers)")
    ap.add_argument("--as-of", default="2026-01-01")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--reasons", action="store_true", help="add the top-3 churn reasons (TreeSHAP), both engines")
    ap.add_argument("--snapshot", type=Path, help="score this existing feature snapshot (at its manifest's as_of)")
    ap.add_argument("--models", type=Path,
                    help="pickled models: read them if the file exists, else train and write them there")
    ap.add_argument("--skip-local", action="store_true", help="no in-process scoring, no comparison")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    os.environ.setdefault("SCRM_PII_KEY", "benchmark-key")
    work = Path(tempfile.mkdtemp(prefix="bench-spark-score-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")
    as_of = date.fromisoformat(args.as_of)

    from features.contract import load_dataset
    from features.pipeline import build_snapshot
    from features.simulate import simulate, write_dataset
    from training.decisions.tiers import load_tier_rules
    from training.fitting import fit_churn, fit_clv
    from training.frames import FeatureCache
    from training.scoring import Models, label_scores, score
    from training.spark_scoring import score_snapshot, spark_session

    snapshot = args.snapshot
    score_as_of = as_of
    if snapshot is None:
        data_dir = args.data
        if data_dir is None:
            data_dir = work / "data"
            write_dataset(simulate(args.customers, seed=args.seed), data_dir)
        t = time.perf_counter()
        snap = build_snapshot(load_dataset(data_dir), as_of, out_dir=work / "snapshot")
        print(f"snapshot: {len(snap.features):,} people in {time.perf_counter() - t:.0f} s", flush=True)
        del snap
        snapshot = work / "snapshot"
    else:
        manifest = json.loads((snapshot / "manifest.json").read_text())
        score_as_of = date.fromisoformat(manifest["as_of"])
        print(f"snapshot {snapshot}: {manifest['rows']['people']:,} people as of {score_as_of} "
              f"({manifest.get('engine', 'duckdb')})", flush=True)

    t = time.perf_counter()
    if args.models is not None and args.models.exists():
        models = pickle.loads(args.models.read_bytes())
        print(f"models read from {args.models}; CLV family {models.clv.family_}", flush=True)
    else:
        train_dir = work / "train-data"
        write_dataset(simulate(args.train_customers, seed=args.seed + 1), train_dir)
        cache = FeatureCache(load_dataset(train_dir))
        models = Models(fit_churn(cache, as_of, horizon_days=90).model,
                        fit_clv(cache, as_of, horizon_days=365).model, "1", "1")
        del cache
        print(f"trained churn + CLV (defaults) on {args.train_customers:,} customers in "
              f"{time.perf_counter() - t:.0f} s; CLV family {models.clv.family_}", flush=True)
        if args.models is not None:
            args.models.write_bytes(pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL))
    rules = load_tier_rules()

    local_s = local = None
    if not args.skip_local:
        t = time.perf_counter()
        features = pd.read_parquet(snapshot / "features.parquet")
        local = label_scores(score(features, models, as_of=score_as_of, tier_rules=rules, with_reasons=args.reasons,
                                   n_jobs=2), score_as_of, models)
        local_s = time.perf_counter() - t
        del features
        driver_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        print(f"in process: {len(local):,} people in {local_s:.1f} s (peak RSS so far {driver_before:.2f} GB)",
              flush=True)

    load_before = [round(x, 2) for x in os.getloadavg()]
    driver_before_spark = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    with TreeMemory() as mem:
        t = time.perf_counter()
        spark = spark_session(args.master)
        conf = {k: spark.conf.get(k, None) for k in ("spark.master", "spark.driver.memory",
                                                      "spark.sql.shuffle.partitions")}
        start_s, t = time.perf_counter() - t, time.perf_counter()
        result = score_snapshot(spark, snapshot, models, work / "spark_scores", as_of=score_as_of,
                                tier_rules=rules, with_reasons=args.reasons)
        spark_s = time.perf_counter() - t
    pk = mem.peaks_gb()
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"Spark {args.master} ({conf}): {result.people:,} people ({result.scored:,} scored) in {spark_s:.1f} s "
          f"(session start {start_s:.1f} s; passes {result.seconds}); load average before {load_before}, after "
          f"{load_after}", flush=True)
    print(f"peak RSS during the Spark run (0.5 s samples): Python driver {pk['python_driver']} GB (held before: "
          f"{driver_before_spark:.2f} GB), JVM {pk['jvm']} GB, Python workers {pk['python_workers']} GB; "
          f"whole tree {pk['total']} GB", flush=True)
    figures = {"people": result.people, "scored": result.scored, "reasons": args.reasons,
               "in_process_s": None if local_s is None else round(local_s, 1), "spark_s": round(spark_s, 1),
               "spark_start_s": round(start_s, 1), "passes_s": result.seconds, "master": args.master, "conf": conf,
               "peak_rss_gb": pk, "load_average_before": load_before, "load_average_after": load_after,
               "train_customers": args.train_customers}
    if local is None:
        print(json.dumps(figures))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        spark.stop()
        return 0

    a = local.sort_values("person_id").reset_index(drop=True)
    b = pd.read_parquet(work / "spark_scores").sort_values("person_id").reset_index(drop=True)
    assert list(a.columns) == list(b.columns) and a["person_id"].tolist() == b["person_id"].tolist()
    worst = 0.0
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]) and not pd.api.types.is_bool_dtype(a[col]):
            x, y = a[col].to_numpy(dtype=float, na_value=np.nan), b[col].to_numpy(dtype=float, na_value=np.nan)
            assert (np.isnan(x) == np.isnan(y)).all(), col
            ok = ~np.isnan(x)
            rel = np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-300)
            worst = max(worst, float(rel.max()) if rel.size else 0.0)
        elif not pd.api.types.is_datetime64_any_dtype(a[col]):
            assert a[col].astype(object).where(a[col].notna(), None).tolist() == \
                b[col].astype(object).where(b[col].notna(), None).tolist(), col
    print(f"same scores: ids, text, numbers (largest relative difference {worst:.1e}); "
          f"high-value CLV cut {result.clv_cut:.4f}")
    figures["max_rel_diff"] = worst
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
