"""Point-in-time feature snapshots: one row per person, built only from rows strictly before ``as_of``.

The aggregates are Ibis expressions (``features.rfm``, ``features.interactions``) executed step by step (each
step a temporary table) on an in-process DuckDB connection by default; any Ibis backend (e.g. Spark) can be
passed as ``backend``. numpy reshapes the per-(person, event type) counts into columns, and pandas does the last
small steps on the one-row-per-person table: RFM quintile scores, segment names and lifecycle stages. See
``docs/features.md``.

"Before ``as_of``" means ``timestamp < as_of 00:00``. Every column is described in plain words in
``FEATURE_DOCS`` and in ``docs/features.md``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import duckdb
import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.table import Table

from features.dataset import Dataset
from features.identity import resolve_identities
from features.interactions import (
    EVENT_TYPES,
    campaign_aggregates,
    event_key_aggregates,
    event_key_days,
    pivot_events,
    profile_aggregates,
)
from features.pii import check_pii_fingerprint, pii_key_fingerprint, warn_if_pii_key_changed
from features.rfm import (
    CHANNELS,
    LIFECYCLE_STAGES,
    SEGMENT_EN,
    SEGMENT_ORDER,
    daily_aggregates,
    lifecycle_stage,
    order_aggregates,
    rfm_scores,
    rfm_segments,
    slim_orders,
)

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir

log = logging.getLogger(__name__)

SNAPSHOT_FILES = ("features.parquet", "identity.parquet", "manifest.json")


class FeatureConfig(BaseModel):
    """Settings of the feature pipeline (unknown keys are rejected).

    Parameters
    ----------
    windows
        Trailing windows (days) for ``orders_<w>d`` and ``spend_<w>d``.
    event_windows
        Trailing windows (days) for ``ev_<type>_<w>d``.
    rfm_bins
        Number of RFM score levels (quantile bins); 5 gives quintiles.
    recency_edges, frequency_edges, monetary_edges
        Optional fixed ascending thresholds replacing quantiles for one dimension (``len = rfm_bins - 1``);
        for recency a value at or below ``edges[0]`` days gets the best score.
    monetary_basis
        Value ranked for M: ``total_spend`` (classic) or ``avg_spend``.
    high_rule, high_threshold
        A dimension is *high* when its score is above the mean score of buyers (``"mean"``), above their median
        score (``"median"``) or at least ``high_threshold`` (``"fixed"``).
    new_days, active_multiple, lapsed_multiple, min_gap_days, max_gap_days, personal_min_intervals
        Lifecycle thresholds (see ``features.rfm.lifecycle_stage``).
    response_window_days
        A treatment touch counts as answered when a paid order follows within this many days.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: tuple[int, ...] = (30, 90, 180, 365)
    event_windows: tuple[int, ...] = (7, 30, 90)
    rfm_bins: int = Field(5, ge=2, le=10)
    recency_edges: list[float] | None = None
    frequency_edges: list[float] | None = None
    monetary_edges: list[float] | None = None
    monetary_basis: Literal["total_spend", "avg_spend"] = "total_spend"
    high_rule: Literal["mean", "median", "fixed"] = "mean"
    high_threshold: int = Field(4, ge=1)
    new_days: int = Field(90, ge=0)
    active_multiple: float = Field(1.5, gt=0)
    lapsed_multiple: float = Field(3.0, gt=0)
    min_gap_days: float = Field(7.0, gt=0)
    max_gap_days: float = Field(180.0, gt=0)
    personal_min_intervals: int = Field(2, ge=1)
    response_window_days: int = Field(14, ge=1)

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        for name in ("windows", "event_windows"):
            vals = getattr(self, name)
            if not vals or any(w <= 0 for w in vals) or len(set(vals)) != len(vals):
                raise ValueError(f"{name} must be distinct positive day counts, got {vals}")
        for name in ("recency_edges", "frequency_edges", "monetary_edges"):
            edges = getattr(self, name)
            if edges is not None:
                if len(edges) != self.rfm_bins - 1 or list(edges) != sorted(set(edges)):
                    raise ValueError(
                        f"{name} must be {self.rfm_bins - 1} strictly ascending thresholds (rfm_bins={self.rfm_bins}), "
                        f"got {edges}"
                    )
        if self.high_rule == "fixed" and self.high_threshold > self.rfm_bins:
            raise ValueError(f"high_threshold={self.high_threshold} exceeds rfm_bins={self.rfm_bins}")
        if self.lapsed_multiple < self.active_multiple:
            raise ValueError("lapsed_multiple must be at least active_multiple")
        if self.max_gap_days < self.min_gap_days:
            raise ValueError("max_gap_days must be at least min_gap_days")
        return self


# --- column documentation ---------------------------------------------------------------------------------------


def feature_docs(config: FeatureConfig | None = None) -> dict[str, str]:
    """Plain-words description of every output column for a given configuration."""
    config = config or FeatureConfig()
    docs: dict[str, str] = {
        "person_id": "the person (One-ID) the row describes",
        "frequency": "number of repeat purchase days (days with a paid order, minus the first one)",
        "recency": "days between the first and the last purchase day (BTYD recency)",
        "T": "days from the first purchase day to the day before the snapshot date (BTYD age)",
        "monetary_value": "average spend per repeat purchase day (0 for one-time buyers)",
        "orders": "number of paid orders",
        "recency_days": "days since the last paid order",
        "tenure_days": "days since the first paid order",
        "first_seen_days": "days since the person was first seen (any order or behaviour event)",
        "total_spend": "total amount spent on paid orders",
        "avg_spend": "average amount per paid order",
        "ipi_mean": "average number of days between purchase days",
        "ipi_std": "how irregular the gaps between purchase days are (standard deviation, days)",
        "refund_rate": "share of orders that were refunded",
        "discount_share": "share of paid orders that used a discount",
        "n_channels": "number of different sales channels the person bought in",
        "n_categories": "number of different product categories bought",
        "store_share": "share of paid orders placed in physical stores",
        "n_customer_keys": "number of channel accounts of the person seen so far",
        "r_score": f"recency score 1-{config.rfm_bins} (higher = bought more recently)",
        "f_score": f"frequency score 1-{config.rfm_bins} (higher = more paid orders)",
        "m_score": f"monetary score 1-{config.rfm_bins} (higher = spent more)",
        "rfm_segment": "RFM segment (Chinese name), from high/low recency, frequency and monetary scores",
        "rfm_segment_en": "RFM segment (English name)",
        "lifecycle_stage": "lifecycle stage: new, active, reactivated, at_risk or lapsed",
        "cart_to_order_ratio": "paid orders per add-to-cart event",
        "msg_open_rate": "share of campaign messages received that were opened",
        "msg_click_rate": "share of campaign messages received that were clicked",
        "campaign_response_rate": (
            f"share of campaign offers answered by a paid order within {config.response_window_days} days"
        ),
        "campaign_touches": "number of campaign messages received",
        "age": "age in years (from birth year)",
        "member_tenure_days": "days since the person joined the membership programme",
        "is_member": "1 when the person holds a membership card",
        "marketing_opt_out": "the person opted out of marketing on any account",
    }
    for w in config.windows:
        docs[f"orders_{w}d"] = f"paid orders in the last {w} days"
        docs[f"spend_{w}d"] = f"amount spent in the last {w} days"
    for ch in CHANNELS:
        docs[f"channel_share_{ch}"] = f"share of paid orders placed on {ch}"
    for et in EVENT_TYPES:
        words = et.replace("_", " ")
        for w in config.event_windows:
            docs[f"ev_{et}_{w}d"] = f"number of {words} events in the last {w} days"
        docs[f"days_since_{et}"] = f"days since the last {words} event"
    return docs


FEATURE_DOCS: dict[str, str] = feature_docs()

NON_MODEL_COLUMNS = frozenset({"person_id", "marketing_opt_out", "rfm_segment", "rfm_segment_en", "lifecycle_stage"})


def model_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns a model may use: excludes ids, strings, the opt-out flag and segment names.

    Parameters
    ----------
    df
        A features frame (extra columns such as labels are kept if numeric; callers remove labels).
    """
    out = []
    for col in df.columns:
        if col in NON_MODEL_COLUMNS:
            continue
        dtype = df[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        out.append(col)
    return out


# --- identity -----------------------------------------------------------------------------------------------------


@ibis.udf.scalar.builtin
def sha1(value: str) -> str:  # pragma: no cover - executed by the backend
    """SHA-1 hex digest (built into DuckDB and Spark)."""


def _own_person_id(key: ir.StringValue) -> ir.StringValue:
    """``"p_" + sha1(customer_key)[:12]``: the person id of a key linked to no other key."""
    return ibis.literal("p_") + sha1(key).substr(0, 12)


def _require(df: pd.DataFrame, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; has {list(df.columns)}")


def _table(df: pd.DataFrame, cols: list[str], inputs: _Inputs | None = None) -> ir.Table:
    """An Ibis table over the columns a query needs (customer keys as strings), via Arrow (no copy)."""
    present = [c for c in cols if c in df.columns]
    table = pa.Table.from_pandas(df, columns=present, preserve_index=False)
    if "customer_key" in present and not pa.types.is_string(table.schema.field("customer_key").type) and not (
        pa.types.is_large_string(table.schema.field("customer_key").type)
    ):
        i = table.schema.get_field_index("customer_key")
        table = table.set_column(i, "customer_key", pa.array(df["customer_key"].astype(str), type=pa.string()))
    return inputs.table(table) if inputs is not None else ibis.memtable(table)


class _Inputs:
    """Input tables of one run, registered with the backend.

    On DuckDB an Arrow table is registered as a scan (``register``), which reads it about twice as fast as an
    Ibis in-memory table (scanned through a ``pyarrow.dataset``); other backends get ``ibis.memtable``.
    """

    def __init__(self, con) -> None:
        self.con = con
        self.names: list[str] = []

    def table(self, table: pa.Table) -> ir.Table:
        raw = getattr(self.con, "con", None)
        if getattr(self.con, "name", "") != "duckdb" or not hasattr(raw, "register"):
            return ibis.memtable(table)
        name = f"_scrm_input_{uuid.uuid4().hex[:12]}"
        raw.register(name, table)
        self.names.append(name)
        return self.con.table(name)

    def close(self) -> None:
        for name in self.names:
            try:
                self.con.con.unregister(name)
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass
        self.names.clear()


def _check_identity(identity: pd.DataFrame) -> pd.DataFrame:
    _require(identity, ["customer_key", "person_id"], "identity")
    ident = identity[["customer_key", "person_id"]]
    dup = ident["customer_key"].duplicated(keep=False)
    if dup.any():
        bad = ident.loc[dup].drop_duplicates()
        if bad["customer_key"].duplicated().any():
            keys = bad.loc[bad["customer_key"].duplicated(), "customer_key"].head(5).tolist()
            raise ValueError(f"identity maps some customer_key to several person_id values, e.g. {keys}")
        ident = ident.drop_duplicates("customer_key")
    return ident


def _map_keys(keys: list[ir.Table], given: ir.Table | None) -> ir.Table:
    """``customer_key`` → ``person_id``: the given One-ID map plus every other key of ``keys`` as its own person."""
    all_keys = keys[0].union(*keys[1:], distinct=True) if len(keys) > 1 else keys[0].distinct()
    if given is None:
        return all_keys.select("customer_key", person_id=_own_person_id(all_keys.customer_key))
    missing = all_keys.anti_join(given, "customer_key")
    own = missing.select("customer_key", person_id=_own_person_id(missing.customer_key))
    return given.select("customer_key", "person_id").union(own)


def complete_key_map(data: Dataset, identity: pd.DataFrame | None, *, backend=None) -> pd.DataFrame:
    """``customer_key`` → ``person_id`` for every key in any table, sorted by key.

    ``identity`` (a One-ID ``key_to_person`` frame) is used where given; keys it does not cover, or all keys
    when it is ``None``, are their own person (``"p_" + sha1(customer_key)[:12]``).
    """
    con = backend if backend is not None else connect()
    inputs = _Inputs(con)
    try:
        keys = [_table(df, ["customer_key"], inputs) for df in data.tables().values() if "customer_key" in df.columns]
        given = (_table(_check_identity(identity), ["customer_key", "person_id"], inputs)
                 if identity is not None else None)
        return con.to_pyarrow(_map_keys(keys, given).order_by("customer_key")).to_pandas()
    finally:
        inputs.close()
        if backend is None:
            con.disconnect()


def resolve_key_map(data: Dataset, identity: pd.DataFrame | None = None, *, as_of=None, backend=None) -> pd.DataFrame:
    """The key map to use: ``identity`` if given, else One-ID as of ``as_of`` if there are identities, else none."""
    if identity is None and data.identities is not None and len(data.identities):
        identity = resolve_identities(data, as_of=as_of).key_to_person
    return complete_key_map(data, identity, backend=backend)


# --- the feature query ---------------------------------------------------------------------------------------------

_COUNT_PREFIXES = ("orders", "total_spend", "spend_", "n_channels", "ev_", "_n_")


def _as_date(value) -> date:
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, pd.Timestamp | datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"as_of must be a date or YYYY-MM-DD string, got {value!r}")


def connect():
    """A fresh in-process DuckDB connection for one feature run (no progress bar, order-free inserts)."""
    con = ibis.duckdb.connect()
    try:
        con.raw_sql("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses to touch the setting (and draws no bar anyway)
    con.raw_sql("SET preserve_insertion_order = false")
    # Arrow inputs carry no statistics, so DuckDB may build join hash tables on the big side (e.g. 10M orders
    # with their payload instead of the key map): keep the written order, big table on the left.
    con.raw_sql("SET disabled_optimizers = 'build_side_probe_side'")
    return con


def _safe_div(num, den):
    return ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


def _left(a: ir.Table, b: ir.Table) -> ir.Table:
    """Left join on ``person_id`` keeping a single ``person_id`` column."""
    return a.left_join(b, a.person_id == b.person_id).drop("person_id_right")


class _Stages:
    """Materialises intermediate results as temporary tables in the backend and times each step.

    (``Table.cache()`` would use Ibis' default backend for in-memory inputs, not the one passed in.)
    """

    def __init__(self, con) -> None:
        self.con = con
        self.inputs = _Inputs(con)
        self.tables: dict[str, str] = {}
        self.seconds: dict[str, tuple[float, float]] = {}

    def cache(self, name: str, expr: ir.Table) -> ir.Table:
        t, cpu = time.perf_counter(), time.process_time()
        table_name = f"_scrm_{name}_{uuid.uuid4().hex[:8]}"
        out = self.con.create_table(table_name, expr, temp=True)
        self.tables[name] = table_name
        self.seconds[name] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
        return out

    def release(self, *names: str) -> None:
        """Drop the tables of the named steps (all steps and the inputs when no name is given)."""
        if not names:
            self.inputs.close()
        for name in names or list(self.tables):
            table_name = self.tables.pop(name, None)
            if table_name is None:
                continue
            try:
                self.con.drop_table(table_name, force=True)
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass


def _feature_table(
    con, data: Dataset, as_of: date, identity: pd.DataFrame | None, config: FeatureConfig, stages: _Stages
) -> tuple[pa.Table, np.ndarray, dict[str, bool]]:
    """Run the feature query: the per-person Arrow table (before pandas scoring), the person ids by pidx and
    which optional sources were used.

    Internally people are numbered (``pidx``, 0-based dense rank of ``person_id``) so every heavy group-by and join
    runs on integers; the string ``person_id`` is joined back once at the end.
    """
    _require(data.orders, ["customer_key", "order_ts", "amount"], "orders")
    cutoff = ibis.literal(pd.Timestamp(as_of), type="timestamp")
    has_events = data.events is not None and len(data.events) > 0
    has_touches = data.campaign_touches is not None and len(data.campaign_touches) > 0
    has_ids = data.identities is not None and len(data.identities) > 0

    orders_raw = _table(data.orders, ["customer_key", "order_ts", "amount", "status", "channel", "discount",
                                      "category", "store_id"], stages.inputs)
    if "status" not in orders_raw.columns:
        orders_raw = orders_raw.mutate(status=ibis.literal("paid"))
    if "channel" not in orders_raw.columns:
        orders_raw = orders_raw.mutate(channel=ibis.literal("other"))
    orders_before = orders_raw.filter(orders_raw.order_ts < cutoff)
    order_keys = stages.cache("order_keys", orders_before.group_by("customer_key").aggregate(
        _first_order_ts=orders_before.order_ts.min()))
    keys = [order_keys.select("customer_key")]
    ev_key = None
    if has_events:
        _require(data.events, ["customer_key", "event_ts", "event_type"], "events")
        ev_raw = _table(data.events, ["customer_key", "event_ts", "event_type"], stages.inputs)
        events = ev_raw.filter(ev_raw.event_ts < cutoff)
        ev_kt = stages.cache("events_by_key", event_key_aggregates(events, as_of, windows=config.event_windows))
        ev_key = ev_kt.group_by("customer_key").aggregate(_first_event_ts=ev_kt._first.min())
        keys.append(ev_key.select("customer_key"))
    given = (_table(_check_identity(identity), ["customer_key", "person_id"], stages.inputs)
             if identity is not None else None)
    km_named = _map_keys(keys, given)
    km_named = km_named.mutate(pidx=ibis.dense_rank().over(order_by=km_named.person_id))
    km_named = stages.cache("key_map", km_named)
    n_people = int(con.execute(km_named.pidx.max()) or 0) + 1  # ibis ranks start at 0
    km = km_named.select("customer_key", person_id="pidx")  # integer person ids inside the query
    names = km_named.select("pidx", "person_id").distinct().order_by("pidx")
    names = con.to_pyarrow(names).column("person_id").to_numpy(zero_copy_only=False)  # pidx -> person_id

    # people seen before as_of (any order or event) and how many of their keys
    seen = [order_keys.select("customer_key", first_ts=order_keys._first_order_ts)]
    if ev_key is not None:
        seen.append(ev_key.select("customer_key", first_ts=ev_key._first_event_ts))
    seen = seen[0].union(*seen[1:]) if len(seen) > 1 else seen[0]
    seen = seen.join(km, "customer_key")
    seen = seen.group_by(["person_id", "customer_key"]).aggregate(first_ts=seen.first_ts.min())
    people = seen.group_by("person_id").aggregate(n_customer_keys=seen.count(), _first_seen_ts=seen.first_ts.min())
    expr = stages.cache("people", people)
    stages.release("order_keys")
    if ev_key is not None:
        # events first, so their per-key table is gone before the orders are materialised (lower peak memory)
        t, cpu = time.perf_counter(), time.process_time()
        long = con.to_pyarrow(event_key_days(ev_kt, km, as_of))
        wide = pivot_events(long, n_people, windows=config.event_windows)
        del long
        stages.release("events_by_key")
        expr = _left(expr, ibis.memtable(wide))
        del wide
        stages.seconds["events_agg"] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
    orders = stages.cache("orders", slim_orders(orders_before.join(km, "customer_key")))
    expr = _left(expr, stages.cache("orders_agg", order_aggregates(orders, as_of, windows=config.windows)))
    expr = _left(expr, stages.cache("purchase_days", daily_aggregates(orders, as_of)))
    if has_touches:
        _require(data.campaign_touches, ["customer_key", "sent_ts", "group"], "campaign_touches")
        t_df = data.campaign_touches[["customer_key", "sent_ts", "group"]].copy()
        t_df["touch_id"] = np.arange(len(t_df), dtype="int64")
        touches = _table(t_df, ["customer_key", "sent_ts", "group", "touch_id"], stages.inputs).join(km, "customer_key")
        paid = orders.filter(orders.paid).select("person_id", "order_ts")
        cagg = campaign_aggregates(touches, paid, as_of, response_window_days=config.response_window_days)
        expr = _left(expr, stages.cache("campaigns", cagg))
    stages.release("orders")
    if has_ids:
        ids = _table(data.identities, ["customer_key", "birth_year", "join_ts", "marketing_opt_out", "member_card"],
                     stages.inputs)
        expr = _left(expr, stages.cache("profile", profile_aggregates(ids, km, as_of)))

    # zero-fill counts for people without any row of that kind, then derived ratios
    expr = expr.fill_null({c: 0 for c in expr.columns if c.startswith(_COUNT_PREFIXES)})
    asof_date = ibis.literal(as_of, type="date")
    first_seen = expr._first_seen_ts
    muts = {
        "recency_days": asof_date.delta(expr._last_paid_ts.date(), unit="day").cast("float64"),
        "tenure_days": asof_date.delta(expr._first_paid_ts.date(), unit="day").cast("float64"),
        "first_seen_days": asof_date.delta(first_seen.date(), unit="day").cast("float64"),
        "avg_spend": _safe_div(expr.total_spend, expr.orders),
        "refund_rate": _safe_div(expr._n_refunded, expr.orders + expr._n_refunded),
        "store_share": _safe_div(expr._n_offline, expr.orders),
    }
    if "_n_discounted" in expr.columns:
        muts["discount_share"] = _safe_div(expr._n_discounted, expr.orders)
    for ch in CHANNELS:
        muts[f"channel_share_{ch}"] = _safe_div(expr[f"_n_ch_{ch}"], expr.orders)
    if has_events:
        muts["cart_to_order_ratio"] = _safe_div(expr.orders, expr._n_cart)
    if has_touches:
        muts["campaign_touches"] = expr._n_treat
        muts["campaign_response_rate"] = _safe_div(expr._n_responded, expr._n_eligible)
        if has_events:
            muts["msg_open_rate"] = ibis.least(_safe_div(expr._n_open, expr._n_treat), 1.0)
            muts["msg_click_rate"] = ibis.least(_safe_div(expr._n_click, expr._n_treat), 1.0)
    expr = expr.mutate(**muts)
    t, cpu = time.perf_counter(), time.process_time()
    result = con.to_pyarrow(expr)
    stages.seconds["final_join"] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
    return result, names, {"events": has_events, "touches": has_touches, "identities": has_ids}


def _to_frame(box: list[pa.Table], names: np.ndarray) -> pd.DataFrame:
    """Arrow result (integer ``person_id`` = pidx) to pandas, sorted by and labelled with the string person_id.

    pidx is the rank of ``person_id``, so sorting by it sorts by ``person_id``. Columns are converted and
    reordered one at a time (each its own block) while the Arrow columns are dropped, so the peak stays about
    one column above the result itself. ``box`` holds the only reference to the result and is emptied.
    """
    result = box.pop()
    pidx = result.column("person_id").to_numpy()
    order = np.argsort(pidx, kind="stable")
    in_order = len(order) < 2 or bool((order[1:] > order[:-1]).all())
    cols: dict[str, object] = {"person_id": pd.array(names[pidx if in_order else pidx[order]], dtype="str")}
    result = result.drop_columns(["person_id"])
    for name in list(result.column_names):
        col = result.column(name).to_pandas()
        result = result.drop_columns([name])
        cols[name] = col if in_order else col.take(order).reset_index(drop=True)
    return pd.DataFrame(cols, copy=False)


def _column_order(cols: list[str], config: FeatureConfig) -> list[str]:
    order = ["person_id", "frequency", "recency", "T", "monetary_value", "orders", "recency_days", "tenure_days",
             "first_seen_days", "total_spend", "avg_spend"]
    order += [f"orders_{w}d" for w in config.windows] + [f"spend_{w}d" for w in config.windows]
    order += ["ipi_mean", "ipi_std", "refund_rate", "discount_share"]
    order += [f"channel_share_{ch}" for ch in CHANNELS]
    order += ["n_channels", "n_categories", "store_share", "n_customer_keys", "r_score", "f_score", "m_score",
              "rfm_segment", "rfm_segment_en", "lifecycle_stage"]
    for et in EVENT_TYPES:
        order += [f"ev_{et}_{w}d" for w in config.event_windows]
    order += [f"days_since_{et}" for et in EVENT_TYPES]
    order += ["cart_to_order_ratio", "msg_open_rate", "msg_click_rate", "campaign_touches", "campaign_response_rate",
              "age", "member_tenure_days", "is_member", "marketing_opt_out"]
    return [c for c in order if c in cols]


def build_features(
    data: Dataset,
    as_of,
    *,
    identity: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    backend=None,
    console: Console | None = None,
) -> pd.DataFrame:
    """Point-in-time features: one row per person with any order or event strictly before ``as_of``.

    Parameters
    ----------
    data
        Validated tables.
    as_of
        Cut-off date (``date`` or ``YYYY-MM-DD``); rows with a timestamp ``< as_of 00:00`` are used.
    identity
        ``key_to_person`` frame (``customer_key``, ``person_id``) from One-ID. When ``None``, One-ID runs if
        the data has identities; otherwise every ``customer_key`` is its own person. Keys the frame does not
        cover are their own person.
    config
        Windows, RFM binning, high/low rule and lifecycle thresholds.
    backend
        An Ibis backend; a fresh in-process DuckDB connection when ``None``.
    console
        Where the one-line note about missing optional tables goes (stderr by default).

    Returns
    -------
    pandas.DataFrame
        Sorted by ``person_id``; columns described in ``FEATURE_DOCS``.
    """
    as_of = _as_date(as_of)
    config = config or FeatureConfig()
    if identity is None and data.identities is not None and len(data.identities):
        identity = resolve_identities(data, as_of=as_of).key_to_person
    con = backend if backend is not None else connect()
    stages = _Stages(con)
    try:
        result, names, used = _feature_table(con, data, as_of, identity, config, stages)
    finally:
        stages.release()
        if backend is None:
            con.disconnect()  # frees DuckDB's memory before the pandas steps
    box = [result]
    del result
    df = _to_frame(box, names)
    log.info("build_features as_of=%s: %d people; stage seconds (wall, cpu) %s", as_of, len(df), stages.seconds)
    missing = [name for name, ok in used.items() if not ok]
    if missing:
        what = {"events": "interaction features", "touches": "campaign features",
                "identities": "profile features (opt-out taken as False)"}
        (console or Console(stderr=True)).print(
            f"[yellow]note:[/] no {', '.join(missing)} table(s): {', '.join(what[m] for m in missing)} left out"
        )
    return _finish(df, config)


def _finish(df: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """pandas step on the per-person table: scores, segments, lifecycle, dtypes, column order."""
    fill = {"n_categories": 0, "marketing_opt_out": False, "is_member": False}
    df = df.fillna({c: v for c, v in fill.items() if c in df})
    casts = {c: "int64" for c in df.columns
             if c in ("orders", "n_channels", "n_customer_keys", "campaign_touches", "n_categories")
             or c.startswith(("orders_", "ev_"))}
    casts.update({"marketing_opt_out": bool, "is_member": "float64"})
    df = df.astype({c: t for c, t in casts.items() if c in df})
    scores = rfm_scores(df, config).astype("float64")
    segment, segment_en = rfm_segments(scores, config)
    added = scores.assign(rfm_segment=segment, rfm_segment_en=segment_en,
                          lifecycle_stage=lifecycle_stage(df, config))
    if "marketing_opt_out" not in df:
        added["marketing_opt_out"] = False
    df = pd.concat([df.drop(columns=[c for c in added.columns if c in df]), added.set_index(df.index)], axis=1)
    return df[_column_order(list(df.columns), config)]


# --- snapshots -----------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A feature snapshot on disk: features, the key map it used and its manifest."""

    features: pd.DataFrame
    identity: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def as_of(self) -> date:
        return date.fromisoformat(self.manifest["as_of"])


def write_snapshot(features: pd.DataFrame, identity: pd.DataFrame, out_dir: Path, manifest: dict) -> Path:
    """Write ``features.parquet``, ``identity.parquet`` and ``manifest.json`` atomically.

    Files go to a temporary sibling directory first, which is renamed into place only when all three are
    written, so a failure leaves no partial snapshot (an existing snapshot at ``out_dir`` is replaced).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        features.to_parquet(tmp / "features.parquet", index=False)
        identity.to_parquet(tmp / "identity.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def build_snapshot(
    dataset: Dataset,
    as_of,
    *,
    out_dir: Path,
    console: Console | None = None,
    identity: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    backend=None,
) -> Snapshot:
    """Build features for ``as_of`` and write them as a snapshot directory (see ``write_snapshot``)."""
    as_of = _as_date(as_of)
    config = config or FeatureConfig()
    con = backend if backend is not None else connect()
    try:
        key_map = resolve_key_map(dataset, identity, as_of=as_of, backend=con)
        features = build_features(dataset, as_of, identity=key_map, config=config, backend=con, console=console)
    finally:
        if backend is None:
            con.disconnect()
    buyers = int((features["orders"] > 0).sum())
    manifest = {
        "as_of": as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(dataset.source) if dataset.source is not None else None,
        "inputs": dataset.fingerprint_dict(),
        "rows": {
            "people": len(features),
            "buyers": buyers,
            "customer_keys": len(key_map),
            "orders_before_as_of": int((dataset.orders["order_ts"] < pd.Timestamp(as_of)).sum()),
        },
        "features": list(features.columns),
        "model_columns": model_columns(features),
        "config": config.model_dump(mode="json"),
        "engine": f"ibis {ibis.__version__} on {con.name}",
        "pii_key_fingerprint": pii_key_fingerprint(required=False),
    }
    warn_if_pii_key_changed(Path(out_dir).parent, manifest["pii_key_fingerprint"], console=console)
    path = write_snapshot(features, key_map, Path(out_dir), manifest)
    return Snapshot(features=features, identity=key_map, manifest=manifest, path=path)


def load_snapshot(path: Path) -> Snapshot:
    """Read a snapshot directory written by ``write_snapshot``."""
    path = Path(path)
    missing = [f for f in SNAPSHOT_FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a feature snapshot: missing {', '.join(missing)}")
    return Snapshot(
        features=pd.read_parquet(path / "features.parquet"),
        identity=pd.read_parquet(path / "identity.parquet"),
        manifest=json.loads((path / "manifest.json").read_text()),
        path=path,
    )


def latest_snapshot(data_dir: Path) -> Snapshot:
    """The newest snapshot under ``DATA/features/``; ``features.pii.PIIKeyError`` if made under another PII key."""
    snapshot = load_snapshot(newest_snapshot_dir(data_dir)[1])
    check_pii_fingerprint(snapshot.manifest)
    return snapshot


def newest_snapshot_dir(data_dir: Path) -> tuple[date, Path]:
    """``(as_of, directory)`` of the newest snapshot under ``DATA/features/``, read from the manifests only.

    Raises
    ------
    FileNotFoundError
        No snapshot; the message names the command that builds one.
    """
    root = Path(data_dir) / "features"
    found: list[tuple[date, Path]] = []
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists():
                try:
                    manifest = json.loads((d / "manifest.json").read_text())
                    found.append((date.fromisoformat(manifest["as_of"]), d))
                except (ValueError, KeyError):
                    continue
    if not found:
        raise FileNotFoundError(
            f"no feature snapshot under {root}; run `scrm features build --data {data_dir} --as-of DATE` first"
        )
    return max(found)


# --- summary -------------------------------------------------------------------------------------------------------


def summarize(features: pd.DataFrame, console: Console | None = None) -> None:
    """Print people, buyers, RFM segment counts (Chinese + English), lifecycle counts and headline numbers."""
    console = console or Console()
    n = len(features)
    buyers = features["orders"] > 0
    nb = int(buyers.sum())
    head = Table(title="Feature snapshot", show_header=False)
    head.add_row("people", f"{n:,}")
    head.add_row("buyers (≥1 paid order)", f"{nb:,} ({nb / max(n, 1):.1%})")
    if nb:
        b = features.loc[buyers]
        head.add_row("repeat buyers", f"{int((b['orders'] > 1).sum()):,} ({(b['orders'] > 1).mean():.1%})")
        head.add_row("median orders per buyer", f"{b['orders'].median():.0f}")
        head.add_row("median spend per buyer", f"{b['total_spend'].median():,.2f}")
        head.add_row("median days since last order", f"{b['recency_days'].median():.0f}")
        if "spend_365d" in b:
            head.add_row("spend in last 365 days", f"{b['spend_365d'].sum():,.2f}")
    if "marketing_opt_out" in features:
        head.add_row("marketing opt-outs", f"{int(features['marketing_opt_out'].sum()):,}")
    console.print(head)

    seg = Table(title="RFM segments (buyers)")
    for col in ("segment", "English", "people", "share", "avg spend", "median recency (days)"):
        seg.add_column(col, justify="right" if col not in ("segment", "English") else "left")
    for name in SEGMENT_ORDER:
        sel = features["rfm_segment"] == name
        k = int(sel.sum())
        if not k:
            continue
        seg.add_row(name, SEGMENT_EN[name], f"{k:,}", f"{k / max(nb, 1):.1%}",
                    f"{features.loc[sel, 'total_spend'].mean():,.2f}",
                    f"{features.loc[sel, 'recency_days'].median():.0f}")
    if n - nb:
        seg.add_row("(未购买)", "(no paid order)", f"{n - nb:,}", "", "", "")
    console.print(seg)

    life = Table(title="Lifecycle stages (buyers)")
    life.add_column("stage")
    life.add_column("people", justify="right")
    life.add_column("share", justify="right")
    for stage in LIFECYCLE_STAGES:
        k = int((features["lifecycle_stage"] == stage).sum())
        life.add_row(stage, f"{k:,}", f"{k / max(nb, 1):.1%}")
    console.print(life)
