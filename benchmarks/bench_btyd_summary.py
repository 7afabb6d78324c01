"""Benchmark: the BTYD summary (frequency, recency, T, monetary_value) against lifetimes on the same orders.

Times ``lifetimes.utils.summary_data_from_transaction_data`` (daily, with monetary value) and
``features.rfm.btyd_summary`` (the Ibis/DuckDB expression ``build_features`` uses) on the same transactions,
asserts identical output (frequency, recency and T exactly; monetary_value to 1e-9 relative, as the two sum
floats in a different order) and prints the speed ratio (the target is at least 10x).

    .venv/bin/python benchmarks/bench_btyd_summary.py --orders 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def transactions(n_orders: int, *, seed: int, orders_per_customer: float = 10.0) -> pd.DataFrame:
    """Orders of ``n_orders / orders_per_customer`` customers over three years, with times of day."""
    rng = np.random.default_rng(seed)
    n_customers = max(1, int(n_orders / orders_per_customer))
    weights = rng.gamma(1.0, 1.0, n_customers)
    cust = rng.choice(n_customers, size=n_orders, p=weights / weights.sum())
    first = rng.integers(0, 3 * 365 * 86400, n_customers)
    ts = pd.Timestamp("2023-01-01").value // 10**9 + first[cust] + rng.integers(0, 365 * 86400, n_orders)
    return pd.DataFrame({
        "customer_id": pd.Series(np.char.add("c", cust.astype("U8")), dtype="str"),
        "date": pd.to_datetime(ts, unit="s"),
        "amount": np.round(rng.gamma(2.0, 60.0, n_orders), 2),
    })


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1_000_000, help="number of transactions (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--end", default="2025-06-30", help="observation_period_end (as_of - 1 day)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each implementation (the best is reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                    help="DuckDB thread counts to time (0 = DuckDB's default, all cores)")
    args = ap.parse_args(argv)

    from lifetimes.utils import summary_data_from_transaction_data

    from features.pipeline import connect
    from features.rfm import btyd_summary

    tx = transactions(args.orders, seed=args.seed)
    print(f"{len(tx):,} orders of {tx['customer_id'].nunique():,} customers; observation end {args.end}")

    lifetimes_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        theirs = summary_data_from_transaction_data(
            tx, "customer_id", "date", monetary_value_col="amount", observation_period_end=args.end
        )
        lifetimes_times.append(time.perf_counter() - t)
    t_lifetimes = min(lifetimes_times)
    theirs = theirs.sort_index()

    ours = None
    t_ours: dict[str, float] = {}
    for threads in args.threads:
        times = []
        for _ in range(args.repeat):
            con = connect()
            if threads:
                con.raw_sql(f"SET threads = {threads}")
            t = time.perf_counter()
            ours = btyd_summary(tx, customer_col="customer_id", datetime_col="date", monetary_col="amount",
                                observation_period_end=args.end, backend=con)
            times.append(time.perf_counter() - t)
            con.disconnect()
        t_ours[f"threads={threads or 'default'}"] = min(times)

    assert list(ours.index) == list(theirs.index), "different customers"
    for col in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-9, atol=1e-9)
    max_diff = float(np.abs(ours["monetary_value"] - theirs["monetary_value"]).max())
    print(f"identical output for {len(ours):,} customers (frequency/recency/T exact; "
          f"max |monetary_value difference| {max_diff:.1e})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"lifetimes summary_data_from_transaction_data: {t_lifetimes:.2f}s (best of {args.repeat})")
    for label, secs in t_ours.items():
        ratio = t_lifetimes / secs
        print(f"features.rfm.btyd_summary, DuckDB {label}: {secs:.2f}s (best of {args.repeat}) -> "
              f"{ratio:.1f}x faster (target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")

if __name__ == "__main__":
    main()
