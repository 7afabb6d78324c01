"""Calibration of the tier-move probabilities on a simulated brand: the backtest's ``tiers`` block, reproducible.

Runs :func:`training.backtest.backtest` (train before ``--as-of``, score the ``--as-of`` snapshot, both models with
the CLV horizon ``--horizon``) on a data directory (``scrm simulate --customers 20000 --seed 7 --out DIR``) and
prints the ``tiers`` block (:mod:`training.tier_backtest`): per move the mean predicted probability, the realised
rate, the Brier score (against a constant at the realised rate), the ECE and the reliability table; the predicted,
expected and realised counts of movers. ``--frame FILE`` keeps the per-person scores with the realised trailing
spend (parquet), ``--json FILE`` the block.

Usage::

    scrm simulate --customers 20000 --seed 7 --out /tmp/sim7
    python benchmarks/bench_tier_calibration.py --data /tmp/sim7 --as-of 2025-01-01 --horizon 365 --cutoffs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.contract import load_dataset  # noqa: E402
from training.backtest import backtest  # noqa: E402


def summary_lines(block: dict) -> list[str]:
    """The block as a few readable lines."""
    lines = [f"members {block['members']}, horizon {block['horizon_days']} days; predicted tier = realised "
             f"{block['tier_accuracy']['predicted']:.1%} (keep today's {block['tier_accuracy']['keep_today']:.1%})"]
    for name, m in block["movers"].items():
        lines.append(f"movers {name}: realised {m['realised']}, expected (sum p) {m['expected']:.0f}, "
                     f"tier_move {m['tier_move']}")
    for name, m in block["moves"].items():
        if "brier" not in m:
            continue
        lines.append(f"p_tier_{name}: mean {m['mean_p']:.4f} vs realised {m['realised_rate']:.4f}; Brier "
                     f"{m['brier']:.4f} (constant {m['brier_constant']:.4f}); ECE {m['ece']:.4f}")
        lines.append("   " + "  ".join(f"[{b['bin'][0]:.1f},{b['bin'][1]:.1f}) n={b['n']} p={b['mean_p']:.2f} "
                                       f"obs={b['realised']:.2f}" for b in m["reliability"]))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--as-of", default="2025-01-01")
    parser.add_argument("--horizon", type=int, default=365, help="the CLV horizon (and the churn one by default)")
    parser.add_argument("--churn-horizon", type=int, default=None,
                        help="another churn horizon: the chance of no spend then comes from the BTYD model")
    parser.add_argument("--cutoffs", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--frame", type=Path, help="write the per-person scores and realised spend (parquet)")
    parser.add_argument("--json", type=Path, help="write the tiers block (JSON)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = load_dataset(args.data)
    result, arrays = backtest(data, args.as_of, args.horizon, churn_horizon=args.churn_horizon, n_cutoffs=args.cutoffs,
                              random_state=args.random_state, uplift_window=None)
    block = result["tiers"]
    print(f"{args.data}: as_of {args.as_of}, CLV horizon {args.horizon}, churn horizon "
          f"{args.churn_horizon or args.horizon}, {time.perf_counter() - t0:.0f} s")
    print("\n".join(summary_lines(block)))
    if args.frame:
        arrays["tiers"].to_parquet(args.frame, index=False)
    if args.json:
        args.json.write_text(json.dumps(block, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
