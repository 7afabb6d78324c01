"""Benchmark the lookalike model: 10k seeds over 1M people (target: fit + score under 30 s on 2 cores).

A synthetic feature snapshot with the shape of the real one (``person_id`` plus ~90 numeric columns: counts,
spends with long tails, shares, days-since with NaN for "never") is built in memory; the seed is drawn from a
planted cluster of people (5 × seeds) so the held-out recall and lift are meaningful. Alternatively
``--snapshot`` points at a real ``features.parquet`` and ``--seed-file`` at a seed list.

Printed: data preparation seconds, fit seconds (holdout evaluation + final refit), score seconds (ranking
every non-seed person and cutting an audience), fit + score against the 30 s target, peak RSS, and the
held-out recall / lift. The peer measured in the same run (``--peer``, on by default) is one LightGBM with the
same settings trained on the seed against *all* unlabeled people, the naive non-bagged approach.

Usage::

    python benchmarks/bench_lookalike.py --people 1000000 --seeds 10000
    python benchmarks/bench_lookalike.py --snapshot D/features/as_of=2025-07-01/features.parquet --seed-file s.csv
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.lookalike import LookalikeModel  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): on a shared machine wall time inflates, this does not."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_snapshot(people: int, seeds: int, n_features: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A snapshot of ``people`` rows and the ids of a seed drawn from a planted cluster of 5 × ``seeds`` people."""
    rng = np.random.default_rng(seed)
    cluster = rng.choice(people, size=min(people, 5 * seeds), replace=False)
    in_cluster = np.zeros(people, dtype=bool)
    in_cluster[cluster] = True
    cols: dict[str, object] = {"person_id": "p_" + pd.Series(np.arange(people)).astype(str)}
    for j in range(n_features):
        kind = j % 4
        shift = 0.6 if j < 6 else 0.0  # the cluster differs on a few behaviours only
        if kind == 0:  # counts
            lam = np.where(in_cluster, 2.0 * (1 + shift), 2.0)
            cols[f"count_{j}"] = rng.poisson(lam).astype(np.int64)
        elif kind == 1:  # spend, long tail
            cols[f"spend_{j}"] = rng.lognormal(mean=4.0 + shift * in_cluster, sigma=1.0)
        elif kind == 2:  # shares in [0, 1]
            cols[f"share_{j}"] = rng.beta(2 + 2 * shift * in_cluster, 2)
        else:  # days since an event, NaN when it never happened
            days = rng.exponential(60 / (1 + shift * in_cluster))
            days[rng.random(people) < 0.3] = np.nan
            cols[f"days_since_{j}"] = days
    frame = pd.DataFrame(cols)
    seed_ids = frame["person_id"].to_numpy()[rng.choice(cluster, size=seeds, replace=False)]
    return frame, seed_ids


def naive_peer(features: pd.DataFrame, seed_ids, model: LookalikeModel) -> tuple[float, float]:
    """One LightGBM, same settings, seed vs every unlabeled person: (fit + score seconds, top-5% precision)."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    X = features[model.feature_names_].to_numpy(dtype=np.float32)
    y = features["person_id"].isin(seed_ids).to_numpy().astype(np.float32)
    params = {**model._lgb_params(0), "num_threads": model.n_jobs}
    booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=model.n_estimators)
    p = booster.predict(X, num_threads=model.n_jobs)
    seconds = time.perf_counter() - t0
    return seconds, float(p.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000, help="people in the synthetic snapshot")
    parser.add_argument("--seeds", type=int, default=10_000, help="seed size")
    parser.add_argument("--features", type=int, default=90, help="numeric feature columns (real snapshots: ~90)")
    parser.add_argument("--snapshot", type=Path, help="a real features.parquet instead of synthetic data")
    parser.add_argument("--seed-file", type=Path, help="with --snapshot: CSV/Parquet with a person_id column")
    parser.add_argument("--n-bags", type=int, default=4)
    parser.add_argument("--n-estimators", type=int, default=40)
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel threads")
    parser.add_argument("--audience", type=int, default=100_000, help="audience size cut after scoring")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--no-peer", action="store_true", help="skip the naive single-model peer")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    if args.snapshot is not None:
        features = pd.read_parquet(args.snapshot)
        if args.seed_file is None:
            parser.error("--snapshot needs --seed-file")
        seeds = pd.read_parquet(args.seed_file) if args.seed_file.suffix == ".parquet" else pd.read_csv(args.seed_file)
        seed_ids = seeds["person_id"].to_numpy()
        source = str(args.snapshot)
    else:
        features, seed_ids = synthetic_snapshot(args.people, args.seeds, args.features, args.random_state)
        source = f"synthetic ({args.features} features, seed from a planted cluster of {5 * args.seeds:,})"
    prep = time.perf_counter() - t0
    rss_data = peak_rss_mb()

    model = LookalikeModel(
        n_bags=args.n_bags, n_estimators=args.n_estimators, n_jobs=args.n_jobs, random_state=args.random_state
    )
    if args.snapshot is None:
        model.set_params(feature_columns=[c for c in features.columns if c != "person_id"])
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    model.fit(features, seed_ids)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranked = model.rank()
    audience = model.audience(size=args.audience)
    score_s = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    total = fit_s + score_s
    m = model.evaluation_["metrics"]

    print(f"lookalike benchmark: {len(features):,} people, {len(model.seed_ids_):,} seeds, "
          f"{len(model.feature_names_)} features, {args.n_bags} bags x {args.n_estimators} trees, "
          f"{args.n_jobs} threads")
    print(f"  data:              {source}")
    print(f"  data preparation:  {prep:7.2f} s   (not part of the target)")
    print(f"  fit (eval+refit):  {fit_s:7.2f} s")
    print(f"  score + audience:  {score_s:7.2f} s   ({len(ranked):,} ranked, audience {len(audience):,})")
    print(f"  fit + score:       {total:7.2f} s   target < 30 s: {'PASS' if total < 30 else 'FAIL'} "
          f"(ratio {total / 30:.2f} of the budget)")
    print(f"  CPU time:          {cpu:7.2f} s   over {args.n_jobs} thread(s); load average at the end "
          f"{os.getloadavg()[0]:.1f} (other jobs on the machine inflate wall time)")
    print(f"  peak RSS:          {peak_rss_mb():7.0f} MB  (after data preparation: {rss_data:.0f} MB)")
    print(f"  holdout:           recall@1% {m['holdout.recall_at_1pct']:.3f}  recall@5% {m['holdout.recall_at_5pct']:.3f}  "
          f"recall@10% {m['holdout.recall_at_10pct']:.3f}")
    print(f"                     lift@1% {m['holdout.lift_at_1pct']:.2f}  lift@5% {m['holdout.lift_at_5pct']:.2f}  "
          f"lift@10% {m['holdout.lift_at_10pct']:.2f}  AUC {m['holdout.auc']:.3f}")
    if not args.no_peer:
        peer_s, _ = naive_peer(features, model.seed_ids_, model)
        print(f"  peer: one LightGBM on seed vs all {len(features) - len(model.seed_ids_):,} unlabeled "
              f"(no evaluation, no bagging): {peer_s:.2f} s; the bagged model with holdout evaluation and "
              f"refit took {total / peer_s:.2f}x that")


if __name__ == "__main__":
    main()
