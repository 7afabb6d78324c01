"""Malformed rows of every kind the data contract must quarantine, with a ground-truth list of them.

Each malformed row is a copy of a random clean row with exactly one defect, so a validator that rejects
exactly the defective rows can be checked row by row against ``truth_dirty_rows``. Copies get a fresh
``order_id`` (orders) or ``customer_key`` (identities) unless the defect is the duplicate itself, so no
copy carries a second, unlisted defect. Timestamp columns of every table become strings
(``YYYY-MM-DD HH:MM:SS``) so unparseable values survive Parquet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: defect kinds per table: (kind, column)
KINDS = {
    "orders": [
        ("duplicate_order_id", "order_id"),
        ("bad_timestamp", "order_ts"),
        ("negative_amount", "amount"),
        ("nan_amount", "amount"),
        ("unknown_channel", "channel"),
        ("unknown_status", "status"),
        ("empty_customer_key", "customer_key"),
    ],
    "events": [
        ("bad_timestamp", "event_ts"),
        ("unknown_event_type", "event_type"),
        ("unknown_channel", "channel"),
        ("empty_customer_key", "customer_key"),
    ],
    "campaign_touches": [
        ("bad_timestamp", "sent_ts"),
        ("unknown_group", "group"),
        ("unknown_channel", "channel"),
        ("empty_customer_key", "customer_key"),
    ],
    "identities": [
        ("bad_timestamp", "join_ts"),
        ("unknown_channel", "channel"),
        ("empty_customer_key", "customer_key"),
    ],
}
TS_COLUMN = {
    "orders": "order_ts",
    "events": "event_ts",
    "campaign_touches": "sent_ts",
    "identities": "join_ts",
}
BAD_TIMESTAMPS = [
    "2024-13-45 25:61:00",
    "not a timestamp",
    "31/02/2024 10:00",
    "2025-02-30T10:00:00",
    "yesterday",
]
UNKNOWN = {
    "channel": ["pinduoduo", "kuaishou", "xiaohongshu"],
    "status": ["pending_payment", "shipped"],
    "event_type": ["click_banner", "add_to_wishlist"],
    "group": ["holdout", "pilot"],
}


def _as_strings(values: pd.Series) -> pd.Series:
    arr = pa.array(values).cast(pa.timestamp("s"))
    return pd.Series(pc.strftime(arr, format="%Y-%m-%d %H:%M:%S"), dtype="str")


def make_dirty(
    tables: dict[str, pd.DataFrame], fraction: float, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Return the tables with about ``fraction`` of malformed rows added to each contract table.

    Every kind in :data:`KINDS` gets at least one row per table. Adds ``truth_dirty_rows`` with columns
    ``table``, ``row`` (0-based position in the returned table), ``kind``, ``column``.
    """
    out = dict(tables)
    report = []
    for name, kinds in KINDS.items():
        clean = tables[name].reset_index(drop=True)
        clean[TS_COLUMN[name]] = _as_strings(clean[TS_COLUMN[name]])
        n = len(clean)
        per_kind = max(1, round(fraction * n / len(kinds)))
        pieces, kind_of, sort_key = [], [], []
        fresh = 0
        for kind, column in kinds:
            src = rng.integers(0, n, per_kind)
            bad = clean.iloc[src].reset_index(drop=True)
            if name == "orders" and kind != "duplicate_order_id":
                bad["order_id"] = [f"X{fresh + i:011d}" for i in range(per_kind)]
                fresh += per_kind
            if name == "identities" and kind != "empty_customer_key":
                bad["customer_key"] = [f"{c}:bad{fresh + i:09d}" for i, c in enumerate(bad["channel"])]
                fresh += per_kind
            if kind == "bad_timestamp":
                bad[column] = rng.choice(BAD_TIMESTAMPS, per_kind)
            elif kind == "negative_amount":
                bad[column] = -(bad[column].abs() + 0.01)
            elif kind == "nan_amount":
                bad[column] = np.nan
            elif kind.startswith("unknown_"):
                bad[column] = rng.choice(UNKNOWN[column], per_kind)
            elif kind == "empty_customer_key":
                bad[column] = pd.Series(np.where(np.arange(per_kind) % 2 == 0, "", None), dtype="str")
            pieces.append(bad)
            kind_of += [(kind, column)] * per_kind
            # scatter the bad rows; a duplicate always comes after the row it copies
            low = src + 0.5 if kind == "duplicate_order_id" else np.zeros(per_kind)
            sort_key.append(low + rng.random(per_kind) * (n - low))
        combined = pd.concat([clean, *pieces], ignore_index=True)
        keys = np.concatenate([np.arange(n, dtype=float), *sort_key])
        order = np.argsort(keys, kind="stable")
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        out[name] = combined.iloc[order].reset_index(drop=True)
        for j, (kind, column) in enumerate(kind_of):
            report.append((name, int(position[n + j]), kind, column))
    out["truth_dirty_rows"] = pd.DataFrame(report, columns=["table", "row", "kind", "column"]).astype(
        {"table": "str", "kind": "str", "column": "str"}
    )
    return out
