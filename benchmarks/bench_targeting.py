"""Time tiering and campaign targeting over a synthetic population (issue 4: /target over 1M people < 10 s).

Usage: python benchmarks/bench_targeting.py [--n 1000000] [--seed 0]

Prints wall and CPU seconds per step (CPU time shows the cost when the machine is shared); the scores frame is
synthetic (same columns as training.scoring.score's output), so the figures measure the decision code alone, not
model scoring.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from training.decisions import CampaignSpec, assign_tiers, select_audience, to_csv

TARGET_SECONDS = 10.0


def synthetic_scores(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    churn = rng.beta(2.0, 2.0, size=n)
    eligible = rng.uniform(size=n) > 0.1
    stages = np.array(["new", "active", "at_risk", "lapsed", "reactivated"])
    segs = np.array(["重要价值客户", "重要发展客户", "重要保持客户", "重要挽留客户",
                     "一般价值客户", "一般发展客户", "一般保持客户", "一般挽留客户"])
    seg = rng.integers(0, 8, size=n)
    clv = rng.gamma(1.5, 400.0, size=n)
    return pd.DataFrame(
        {
            "person_id": pd.Series(np.char.add("p_", np.char.zfill(np.arange(n).astype(str), 12))).astype(str),
            "eligible": eligible,
            "ineligible_reason": pd.Series(np.where(eligible, None, "too new"), dtype=object),
            "churn_probability": np.where(eligible, churn, np.nan),
            "clv_mean": np.where(eligible, clv, np.nan),
            "p_alive": 1.0 - churn * 0.8,
            "spend_365d": rng.gamma(1.0, 3000.0, size=n),
            "rfm_segment": segs[seg],
            "rfm_segment_en": np.char.add("segment_", seg.astype(str)),
            "lifecycle_stage": stages[rng.integers(0, 5, size=n)],
            "marketing_opt_out": rng.uniform(size=n) < 0.05,
        }
    )


def timed(label: str, fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:<62s} {seconds:7.2f} s wall {cpu:7.2f} s cpu")
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="people in the population (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic population")
    args = parser.parse_args()

    scores, _ = timed(f"build synthetic scores ({args.n:,} people)", lambda: synthetic_scores(args.n, args.seed))
    tiers, t_tiers = timed("assign_tiers", lambda: assign_tiers(scores))
    look = pd.Series(np.random.default_rng(args.seed + 1).uniform(size=args.n), index=scores["person_id"])
    cases = [
        ("retain, budget 50k CNY, 0.3 + 2 per contact", dict(objective="retain", budget=50_000, offer_cost=2.0)),
        ("winback, filters (tiers, churn range, min CLV)",
         dict(objective="winback", budget=200_000,
              filters={"tiers": ["silver", "金卡"], "churn_range": [0.3, 0.9], "min_clv": 100})),
        ("upsell, unlimited budget (whole population hashed)", dict(objective="upsell", budget=1e9)),
        ("lookalike, budget 30k CNY", dict(objective="lookalike", budget=30_000)),
    ]
    worst = 0.0
    for label, kw in cases:
        spec = CampaignSpec(campaign_id="bench", cost_per_contact=0.3, **kw)
        lookalike = look if spec.objective == "lookalike" else None
        result, seconds = timed(f"select_audience: {label}",
                                lambda spec=spec, lookalike=lookalike: select_audience(
                                    scores, tiers, spec, lookalike_scores=lookalike))
        s = result.summary
        print(f"    audience {s['audience']:,}  treatment {s['treatment']:,}  control {s['control']:,}  "
              f"spend {s['spend']:,.1f}  ROI {s['expected_roi'] if s['expected_roi'] is None else round(s['expected_roi'], 2)}")
        worst = max(worst, seconds)
    _, t_csv = timed("to_csv (last audience)", lambda: to_csv(result))
    print(f"worst select_audience {worst:.2f} s; tiers + worst targeting {t_tiers + worst:.2f} s "
          f"vs target {TARGET_SECONDS:.0f} s (ratio {(t_tiers + worst) / TARGET_SECONDS:.2f})")


if __name__ == "__main__":
    main()
