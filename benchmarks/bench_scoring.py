"""Benchmark: batch scoring of a 1M-person snapshot through ``training.scoring.score`` (what `scrm score` runs).

The snapshot is a real one: ``build_features`` on a simulated brand (``--data``, default: simulate
``--customers``), or a ``features.parquet`` written before (``--snapshot``). The models are the registered
champions (``--from-registry``, using ``MLFLOW_TRACKING_URI``) or, by default, churn and CLV models trained with
the project's defaults on a smaller simulated brand of ``--train-customers`` (scoring cost does not depend on
the training size: the same number of trees). Timed: ``score()`` with intervals (the default of `scrm score`),
without intervals, and with the top-3 churn reasons on a sample. Target (issue 3): 1M people under 60 s.

    .venv/bin/python benchmarks/bench_scoring.py --data /tmp/d1m --as-of 2026-01-01
    .venv/bin/python benchmarks/bench_scoring.py --snapshot /tmp/features_1m.parquet --as-of 2026-01-01
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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _models(args, work: Path):
    from training.scoring import Models, load_champions

    if args.from_registry:
        from features.brand import load_brand

        if args.data is None:
            raise SystemExit("--from-registry needs --data (the brand whose champions score)")
        return load_champions(brand=load_brand(args.data).brand)
    from features.contract import load_dataset
    from features.simulate import simulate, write_dataset
    from training.fitting import fit_churn, fit_clv
    from training.frames import FeatureCache

    t = time.perf_counter()
    data_dir = work / "train-data"
    write_dataset(simulate(args.train_customers, seed=args.seed + 1), data_dir)
    data = load_dataset(data_dir)
    cache = FeatureCache(data)
    churn = fit_churn(cache, args.as_of, horizon_days=90)
    clv = fit_clv(cache, args.as_of, horizon_days=365)
    print(f"trained churn + CLV (defaults) on {args.train_customers:,} simulated customers in "
          f"{time.perf_counter() - t:.0f} s; CLV family {clv.model.family_}")
    return Models(churn.model, clv.model)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000, help="simulated people (without --data/--snapshot)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, help="data directory to build the snapshot from")
    ap.add_argument("--snapshot", type=Path, help="a features.parquet to score (skips building features)")
    ap.add_argument("--write-snapshot", type=Path, help="save the built snapshot here for later runs")
    ap.add_argument("--as-of", default="2026-01-01")
    ap.add_argument("--train-customers", type=int, default=30_000)
    ap.add_argument("--from-registry", action="store_true", help="score with the registered champions")
    ap.add_argument("--reasons-sample", type=int, default=100_000, help="people scored with reasons")
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions of the full scoring (best kept)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    os.environ.setdefault("SCRM_PII_KEY", "benchmark-key")
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    if not args.from_registry:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")

    from training.scoring import score

    if args.snapshot is not None:
        features = pd.read_parquet(args.snapshot)
    else:
        from features.contract import load_dataset
        from features.identity import resolve_identities
        from features.pipeline import build_features

        data_dir = args.data
        if data_dir is None:
            from features.simulate import simulate, write_dataset

            data_dir = work / "data"
            write_dataset(simulate(args.customers, seed=args.seed), data_dir)
        t = time.perf_counter()
        data = load_dataset(data_dir)
        features = build_features(data, args.as_of, identity=resolve_identities(data, as_of=args.as_of).key_to_person)
        del data
        print(f"built the snapshot ({len(features):,} people) in {time.perf_counter() - t:.0f} s")
        if args.write_snapshot:
            features.to_parquet(args.write_snapshot, index=False)
    models = _models(args, work)
    n = len(features)
    eligible = int(((features["orders"] >= 1) & (features["tenure_days"] >= 7)).sum())

    def timed(**kw):
        best = None
        for _ in range(max(1, args.repeat)):
            w, c = time.perf_counter(), time.process_time()
            out = score(features, models, as_of=args.as_of, **kw)
            w, c = time.perf_counter() - w, time.process_time() - c
            best = (w, c, out) if best is None or w < best[0] else best
        return best

    figures = {"people": n, "scored": eligible}
    w, c, out = timed()
    assert len(out) == n and int(out["eligible"].sum()) == eligible
    figures["score_with_intervals_s"], figures["score_with_intervals_cpu_s"] = w, c
    print(f"score() {n:,} people ({eligible:,} scored) with CLV intervals: {w:.1f} s wall, {c:.1f} s CPU "
          f"— target < 60 s: {'met' if w < 60 else 'NOT met'}")
    w, c, _ = timed(with_intervals=False)
    figures["score_without_intervals_s"] = w
    print(f"score() without intervals: {w:.1f} s wall, {c:.1f} s CPU")
    sample = features.sample(min(args.reasons_sample, n), random_state=0)
    w0, c0 = time.perf_counter(), time.process_time()
    score(sample, models, as_of=args.as_of, with_reasons=True)
    w, c = time.perf_counter() - w0, time.process_time() - c0
    figures["score_with_reasons_s"] = w
    figures["reasons_sample"] = len(sample)
    print(f"score(with_reasons=True) on {len(sample):,} people: {w:.1f} s wall, {c:.1f} s CPU "
          f"(≈ {w * n / len(sample):.0f} s for all {n:,})")
    figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS {figures['peak_rss_gb']:.1f} GB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
