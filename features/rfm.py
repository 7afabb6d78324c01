"""Order-based features: the BTYD summary, RFM and behaviour aggregates, RFM scores, segments, lifecycle.

The aggregates are Ibis expressions (backend-agnostic: DuckDB in process by default, Spark later); only the
final per-person scoring (quintiles, segment names, lifecycle rules) runs in pandas on the one-row-per-person
table.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from features.backend import connect
from features.config import FeatureConfig
from features.vocab import CHANNELS, LIFECYCLE_STAGES, SEGMENT_EN, SEGMENT_ORDER, SEGMENTS  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir


def _days_between(later: date | ir.DateValue, earlier: ir.DateValue) -> ir.IntegerValue:
    """Whole calendar days from ``earlier`` to ``later``."""
    if isinstance(later, date):
        later = ibis.literal(later, type="date")
    return later.delta(earlier, unit="day")


def slim_orders(orders: ir.Table) -> ir.Table:
    """Orders reduced to what the aggregates read: flags and a channel code instead of strings.

    Parameters
    ----------
    orders
        ``person_id``, ``order_ts``, ``amount``, ``status``, ``channel`` and optionally ``discount``,
        ``category``, ``store_id``.

    Returns
    -------
    ibis.Table
        ``person_id``, ``order_ts``, ``amount``, ``paid``, ``refunded``, ``channel_code`` (index in
        ``CHANNELS``, -1 when unknown), ``offline`` (store channel or a store id), optionally ``discounted`` and
        ``category``.
    """
    cols = set(orders.columns)
    offline = orders.channel == "store"
    if "store_id" in cols:
        offline = offline | (orders.store_id.notnull() & (orders.store_id.cast("string") != ""))
    out = {
        "person_id": orders.person_id,
        "order_ts": orders.order_ts,
        "amount": orders.amount,
        "paid": orders.status == "paid",
        "refunded": orders.status == "refunded",
        "channel_code": ibis.cases(*[(orders.channel == ch, i) for i, ch in enumerate(CHANNELS)], else_=-1)
        .cast("int8"),
        "offline": offline.fill_null(False),
    }
    if "discount" in cols:
        out["discounted"] = orders.discount.fill_null(0) > 0
    if "category" in cols:
        out["category"] = orders.category
    return orders.select(**out)


def order_aggregates(orders: ir.Table, as_of: date, *, windows: tuple[int, ...]) -> ir.Table:
    """Per-person order aggregates (all statuses) for orders strictly before ``as_of``.

    Parameters
    ----------
    orders
        Output of ``slim_orders``, already restricted to ``order_ts < as_of``.
    as_of
        The cut-off date.
    windows
        Trailing windows in days for ``orders_<w>d`` / ``spend_<w>d``; those under a year also give
        ``spend_ly_<w>d``, the spend in ``[as_of - 365 days, as_of - 365 days + w)``.

    Returns
    -------
    ibis.Table
        One row per person with any order before ``as_of`` (paid or not).
    """
    cols = set(orders.columns)
    paid = orders.paid
    cutoff = pd.Timestamp(as_of)
    aggs: dict[str, ir.Value] = {
        "orders": orders.count(where=paid),
        "total_spend": orders.amount.sum(where=paid),
        "_first_paid_ts": orders.order_ts.min(where=paid),
        "_last_paid_ts": orders.order_ts.max(where=paid),
        "_n_refunded": orders.count(where=orders.refunded),
        "_n_offline": orders.count(where=paid & orders.offline),
    }
    for w in windows:
        since = ibis.literal(cutoff - pd.Timedelta(days=w), type="timestamp")
        in_w = paid & (orders.order_ts >= since)
        aggs[f"orders_{w}d"] = orders.count(where=in_w)
        aggs[f"spend_{w}d"] = orders.amount.sum(where=in_w)
    for w in (w for w in windows if w < 365):  # last year's spend in the calendar window of the next w days
        ly_from = ibis.literal(cutoff - pd.Timedelta(days=365), type="timestamp")
        ly_to = ibis.literal(cutoff - pd.Timedelta(days=365 - w), type="timestamp")
        aggs[f"spend_ly_{w}d"] = orders.amount.sum(where=paid & (orders.order_ts >= ly_from) & (orders.order_ts < ly_to))
    for i, ch in enumerate(CHANNELS):
        aggs[f"_n_ch_{ch}"] = orders.count(where=paid & (orders.channel_code == i))
    if "discounted" in cols:
        aggs["_n_discounted"] = orders.count(where=paid & orders.discounted)
    if "category" in cols:
        aggs["n_categories"] = orders.category.nunique(where=paid)
    agg = orders.group_by("person_id").aggregate(**aggs)
    n_channels = sum((agg[f"_n_ch_{ch}"] > 0).cast("int64") for ch in CHANNELS)
    return agg.mutate(n_channels=n_channels)


def purchase_days(orders: ir.Table) -> ir.Table:
    """Paid orders rolled up to (person, calendar day): several orders on one day are one purchase.

    Parameters
    ----------
    orders
        ``person_id``, ``order_ts``, ``amount``, ``paid`` (bool).
    """
    paid = orders.filter(orders.paid)
    return paid.group_by(["person_id", paid.order_ts.date().name("day")]).aggregate(amt=paid.amount.sum())


def _summary_aggs(days: ir.Table) -> dict[str, ir.Value]:
    return {
        "_n_days": days.count(),
        "_first_day": days.day.min(),
        "_last_day": days.day.max(),
        "_total": days.amt.sum(),
        "_first_amt": days.amt.argmin(days.day),  # min_by on DuckDB and Spark
    }


def _summary_columns(agg: ir.Table, as_of: date) -> dict[str, ir.Value]:
    """frequency, recency, T, monetary_value as ``lifetimes`` defines them (observation end as_of - 1 day).

    ``monetary_value`` is the mean of the repeat purchase days' amounts, computed as
    ``(total - first day's amount) / (purchase days - 1)`` (0 for one purchase day).
    """
    obs_end = as_of - timedelta(days=1)
    repeat = (agg._n_days - 1).cast("float64")
    return {
        "frequency": repeat,
        "recency": _days_between(agg._last_day, agg._first_day).cast("float64"),
        "T": _days_between(obs_end, agg._first_day).cast("float64"),
        "monetary_value": ibis.ifelse(agg._n_days > 1, (agg._total - agg._first_amt) / repeat, 0.0),
    }


def daily_aggregates(orders: ir.Table, as_of: date) -> ir.Table:
    """Per-person purchase-day statistics: the BTYD summary and inter-purchase intervals.

    Paid orders are rolled up to calendar days (several orders on one day are one purchase, their amounts
    summed), exactly as ``lifetimes.utils.summary_data_from_transaction_data`` does at ``freq="D"``, with
    observation end ``as_of - 1 day``.

    Returns
    -------
    ibis.Table
        ``person_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``, ``ipi_mean``, ``ipi_std``,
        ``_gap_before_last``.
    """
    days = purchase_days(orders)
    days = days.mutate(prev_day=days.day.lag().over(ibis.window(group_by=days.person_id, order_by=days.day)))
    days = days.mutate(gap=_days_between(days.day, days.prev_day).cast("float64"))
    agg = days.group_by("person_id").aggregate(
        **_summary_aggs(days),
        ipi_mean=days.gap.mean(),
        ipi_std=days.gap.std(how="sample"),
        _gap_before_last=days.gap.argmax(days.day),
    )
    return agg.mutate(**_summary_columns(agg, as_of)).drop("_n_days", "_first_day", "_last_day", "_total",
                                                         "_first_amt")


def btyd_summary_expr(orders: ir.Table, as_of: date) -> ir.Table:
    """The BTYD summary alone (no interval statistics, so no window function): one row per buyer.

    Parameters
    ----------
    orders
        ``person_id``, ``order_ts``, ``amount``, ``paid``; restricted to ``order_ts < as_of``.
    """
    days = purchase_days(orders)
    agg = days.group_by("person_id").aggregate(**_summary_aggs(days))
    return agg.select("person_id", **_summary_columns(agg, as_of))


def btyd_summary(
    transactions: pd.DataFrame,
    *,
    customer_col: str,
    datetime_col: str,
    monetary_col: str,
    observation_period_end,
    backend=None,
) -> pd.DataFrame:
    """``lifetimes.utils.summary_data_from_transaction_data`` (``freq="D"``) computed with Ibis on DuckDB.

    Parameters
    ----------
    transactions
        One row per transaction.
    customer_col, datetime_col, monetary_col
        Column names.
    observation_period_end
        Last day of the observation period (inclusive); later transactions are ignored.
    backend
        An Ibis backend; a fresh in-process DuckDB connection when ``None``.

    Returns
    -------
    pandas.DataFrame
        Indexed by customer id (sorted), columns ``frequency``, ``recency``, ``T``, ``monetary_value`` (floats).
    """
    end = pd.Timestamp(observation_period_end).normalize()
    as_of = (end + pd.Timedelta(days=1)).date()
    con = backend if backend is not None else connect()
    ts = transactions[datetime_col]
    if not pd.api.types.is_datetime64_any_dtype(ts.dtype):
        ts = pd.to_datetime(ts)
    t = ibis.memtable(pa.table({
        "person_id": pa.array(transactions[customer_col]),
        "order_ts": pa.array(ts),
        "amount": pa.array(transactions[monetary_col], type=pa.float64()),
    }))
    t = t.filter(t.order_ts < ibis.literal(pd.Timestamp(as_of), type="timestamp")).mutate(paid=ibis.literal(True))
    try:
        out = con.to_pyarrow(btyd_summary_expr(t, as_of).order_by("person_id")).to_pandas()
    finally:
        if backend is None:
            con.disconnect()
    return out.set_index("person_id").rename_axis(customer_col)


# --- pandas scoring on the one-row-per-person table -------------------------------------------------------------

SCORE_DECIMALS = 6
"""R, F and M scores rank values rounded to this many decimals. A sum of prices differs in its last bits with the
order of the additions (DuckDB's parallel sums, Spark's partitions): 1254.32 arrives as 1254.3199999999997 on one
engine and 1254.3200000000002 on the other, and unrounded, those two are distinct values whose order moves
the quintile boundary between engines and runs (19 of 4.1M people changed M score between the DuckDB and the
Spark snapshot of the 5M-customer benchmark brand before this)."""


def _score_values(values: pd.Series) -> pd.Series:
    """``values`` as the scores rank them: floats rounded to ``SCORE_DECIMALS``, integers as they are."""
    return values.round(SCORE_DECIMALS) if pd.api.types.is_float_dtype(values.dtype) else values


def _quantile_scores(values: pd.Series, bins: int, *, higher_is_better: bool) -> pd.Series:
    """Scores 1..bins by rank; tied values share the score of the tie group's lowest position.

    ``score = 1 + floor(bins * (rank_min - 1) / n)`` where ``rank_min`` ranks from worst to best, so the
    result never depends on row order and equal values always score equally.
    """
    ranked = values.rank(method="min", ascending=higher_is_better)
    n = len(values)
    return (1 + np.floor(bins * (ranked - 1) / n)).clip(1, bins).astype("int64")


def _edge_scores(values: pd.Series, edges: list[float], *, higher_is_better: bool) -> pd.Series:
    """Scores from fixed ascending thresholds: value ≤ edges[0] → 1 (or bins when lower is better)."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), values.to_numpy(dtype=float), side="left")
    score = idx + 1
    if not higher_is_better:
        score = len(edges) + 2 - score
    return pd.Series(score, index=values.index, dtype="int64")


def rfm_scores(df: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """``r_score``, ``f_score``, ``m_score`` (1 = worst … bins = best) among people with ≥1 paid order.

    Returned as floats (missing for people without a paid order).

    R ranks ``recency_days`` (fewer days is better), F ranks ``orders`` and M ranks ``config.monetary_basis``
    (``total_spend`` by default). Quantile bins by default; fixed thresholds when ``*_edges`` are given.
    People without a paid order get missing scores.
    """
    buyers = (df["orders"] > 0).to_numpy()
    out = pd.DataFrame(np.nan, index=df.index, columns=["r_score", "f_score", "m_score"])
    if not buyers.any():
        return out
    specs = [
        ("r_score", "recency_days", False, config.recency_edges),
        ("f_score", "orders", True, config.frequency_edges),
        ("m_score", config.monetary_basis, True, config.monetary_edges),
    ]
    for name, col, higher, edges in specs:
        vals = _score_values(df[col][buyers])
        if edges is not None:
            s = _edge_scores(vals, edges, higher_is_better=higher)
        else:
            s = _quantile_scores(vals, config.rfm_bins, higher_is_better=higher)
        scores = np.full(len(df), np.nan)
        scores[buyers] = s.to_numpy(dtype=float)
        out[name] = scores
    return out


def rfm_segments(scores: pd.DataFrame, config: FeatureConfig) -> tuple[pd.Series, pd.Series]:
    """Map R/F/M scores to the 8 classic segments (Chinese and English names).

    A dimension is *high* when its score is above the mean score of the scored people (``high_rule="mean"``,
    the default), above the median (``"median"``) or at least ``high_threshold`` (``"fixed"``).
    """
    scored = scores["r_score"].notna().to_numpy()
    zh_all = np.full(len(scores), None, dtype=object)
    en_all = np.full(len(scores), None, dtype=object)
    if not scored.any():
        return pd.Series(zh_all, index=scores.index, dtype="str"), pd.Series(en_all, index=scores.index, dtype="str")
    highs = []
    for col in ("r_score", "f_score", "m_score"):
        s = scores.loc[scored, col].astype("float64")
        if config.high_rule == "mean":
            high = s > s.mean()
        elif config.high_rule == "median":
            high = s > s.median()
        else:
            high = s >= config.high_threshold
        highs.append(high.to_numpy())
    r, f, m = highs
    zh_vals = np.empty(len(r), dtype=object)
    en_vals = np.empty(len(r), dtype=object)
    for (rh, fh, mh), (name_zh, name_en) in SEGMENTS.items():
        sel = (r == rh) & (f == fh) & (m == mh)
        zh_vals[sel] = name_zh
        en_vals[sel] = name_en
    zh_all[scored] = zh_vals
    en_all[scored] = en_vals
    return pd.Series(zh_all, index=scores.index, dtype="str"), pd.Series(en_all, index=scores.index, dtype="str")


def lifecycle_stage(df: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Lifecycle stage per person from purchase timing (missing for people without a paid order).

    Purchase *days* are used (as in the BTYD summary). A person's expected gap ``g`` is their own mean
    interval between purchase days when they have at least ``config.personal_min_intervals`` intervals,
    otherwise the typical gap (median ``ipi_mean`` of everyone with at least one interval); ``g`` is clipped
    to ``[min_gap_days, max_gap_days]``. ``g_before`` is the same computed without the last interval (the gap
    the person kept before their latest purchase). Rules, first match wins:

    1. ``new`` — first paid order within the last ``new_days`` days (``tenure_days <= new_days``);
    2. ``reactivated`` — ``recency_days <= active_multiple * g`` and the interval before the last purchase day
       was longer than ``lapsed_multiple * g_before`` (they had lapsed and came back);
    3. ``active`` — ``recency_days <= active_multiple * g``;
    4. ``at_risk`` — ``recency_days <= lapsed_multiple * g``;
    5. ``lapsed`` — otherwise.

    Parameters
    ----------
    df
        Needs ``orders``, ``frequency``, ``recency``, ``ipi_mean``, ``recency_days``, ``tenure_days`` and
        ``_gap_before_last`` (days between the last two purchase days).
    config
        Thresholds.
    """
    buyers = (df["orders"] > 0).to_numpy()
    values = np.full(len(df), None, dtype=object)
    if not buyers.any():
        return pd.Series(values, index=df.index, dtype="str")
    cols = ["frequency", "recency", "ipi_mean", "recency_days", "tenure_days", "_gap_before_last"]
    b = df[cols][buyers]
    n_int = b["frequency"].fillna(0)
    typical = b.loc[n_int >= 1, "ipi_mean"].median()
    if not np.isfinite(typical):
        typical = float(config.max_gap_days)
    lo, hi = config.min_gap_days, config.max_gap_days
    g = b["ipi_mean"].where(n_int >= config.personal_min_intervals, typical).clip(lo, hi)
    gap_last = b["_gap_before_last"].fillna(0.0)
    earlier = (b["recency"] - gap_last) / (n_int - 1).where(n_int >= 2)
    g_before = earlier.where(n_int - 1 >= config.personal_min_intervals, typical).clip(lo, hi)
    rec = b["recency_days"]
    active = rec <= config.active_multiple * g
    came_back = (n_int >= 1) & (gap_last > config.lapsed_multiple * g_before)
    stage = np.select(
        [
            b["tenure_days"] <= config.new_days,
            active & came_back,
            active,
            rec <= config.lapsed_multiple * g,
        ],
        ["new", "reactivated", "active", "at_risk"],
        default="lapsed",
    )
    values[buyers] = stage
    return pd.Series(values, index=df.index, dtype="str")


# --- the same scoring as Ibis expressions (Spark: no per-person rows leave the cluster) -------------------------
#
# Each function gives the values of its pandas twin above (tested for equality on both engines).


def _between(x: ir.NumericValue, lo: float, hi: float) -> ir.NumericValue:
    """``x`` clipped to ``[lo, hi]``, NULL staying NULL (``pandas.Series.clip``; SQL ``greatest`` skips NULLs)."""
    return ibis.cases((x < lo, lo), (x > hi, hi), else_=x)


def _score_value(value: ir.NumericValue) -> ir.NumericValue:
    """``_score_values`` in Ibis: floats rounded to ``SCORE_DECIMALS``."""
    return value.round(SCORE_DECIMALS) if value.type().is_floating() else value


def _quantile_score_table(buyers: ir.Table, col: str, bins: int, *, higher_is_better: bool) -> ir.Table:
    """``(value, score)`` per distinct ``col`` value of the buyers: ``_quantile_scores`` as window functions.

    The rank of a value (ties at their lowest position) is the number of buyers with a worse value, so the
    window runs over the distinct values only: ``rank0 = Σ counts of the values before it − its own count``.
    """
    vals = buyers.group_by(_score_value(buyers[col]).name("_v")).aggregate(_c=buyers.count())
    order = vals._v if higher_is_better else vals._v.desc()
    upto = vals._c.sum().over(ibis.window(order_by=order, rows=(None, 0)))
    n = vals._c.sum().over(ibis.window())
    raw = 1 + ((bins * (upto - vals._c)).cast("float64") / n.cast("float64")).floor()
    return vals.select("_v", _score=_between(raw.cast("int64"), 1, bins))


def _edge_score(value: ir.NumericValue, edges: list[float], *, higher_is_better: bool) -> ir.IntegerValue:
    """``_edge_scores``: 1 + the number of edges strictly below ``value`` (reversed when lower is better)."""
    score = 1 + sum((value > float(e)).cast("int64") for e in edges)
    return (len(edges) + 2 - score) if not higher_is_better else score


def rfm_scores_expr(t: ir.Table, config: FeatureConfig) -> ir.Table:
    """``t`` with ``r_score``, ``f_score``, ``m_score`` (float64, NULL without a paid order): ``rfm_scores``."""
    buyer = t.orders > 0
    specs = [
        ("r_score", "recency_days", False, config.recency_edges),
        ("f_score", "orders", True, config.frequency_edges),
        ("m_score", config.monetary_basis, True, config.monetary_edges),
    ]
    for name, col, higher, edges in specs:
        if edges is not None:
            t = t.mutate(**{name: ibis.ifelse(buyer, _edge_score(_score_value(t[col]), edges, higher_is_better=higher),
                                              ibis.null()).cast("float64")})
            continue
        table = _quantile_score_table(t.filter(t.orders > 0), col, config.rfm_bins, higher_is_better=higher)
        joined = t.left_join(table, _score_value(t[col]) == table._v)
        t = joined.mutate(**{name: ibis.ifelse(joined.orders > 0, joined._score, ibis.null()).cast("float64")})
        t = t.drop("_v", "_score")
        buyer = t.orders > 0
    return t


def _segment_stats(t: ir.Table, config: FeatureConfig) -> ir.Table:
    """One row: the mean (or median) R, F and M score of the scored people, the ``high`` thresholds."""
    scored = t.filter(t.r_score.notnull())
    how = "mean" if config.high_rule == "mean" else "median"
    return scored.aggregate(**{f"_cut_{c}": getattr(scored[c], how)() for c in ("r_score", "f_score", "m_score")})


def rfm_segments_expr(t: ir.Table, config: FeatureConfig) -> ir.Table:
    """``t`` with ``rfm_segment`` and ``rfm_segment_en`` (NULL for the unscored): ``rfm_segments``."""
    if config.high_rule == "fixed":
        high = {c: t[c] >= config.high_threshold for c in ("r_score", "f_score", "m_score")}
        j = t
    else:
        j = t.cross_join(_segment_stats(t, config))
        high = {c: j[c] > j[f"_cut_{c}"] for c in ("r_score", "f_score", "m_score")}
    cases_zh, cases_en = [], []
    for (rh, fh, mh), (name_zh, name_en) in SEGMENTS.items():
        cond = (high["r_score"] == rh) & (high["f_score"] == fh) & (high["m_score"] == mh)
        cases_zh.append((cond, name_zh))
        cases_en.append((cond, name_en))
    scored = j.r_score.notnull()
    out = j.mutate(
        rfm_segment=ibis.ifelse(scored, ibis.cases(*cases_zh, else_=ibis.null("string")), ibis.null("string")),
        rfm_segment_en=ibis.ifelse(scored, ibis.cases(*cases_en, else_=ibis.null("string")), ibis.null("string")),
    )
    return out.drop(*[c for c in out.columns if c.startswith("_cut_")])


def lifecycle_stage_expr(t: ir.Table, config: FeatureConfig) -> ir.Table:
    """``t`` with ``lifecycle_stage`` (NULL without a paid order): ``lifecycle_stage`` as a case expression."""
    repeat = t.filter((t.orders > 0) & (t.frequency.fill_null(0) >= 1))  # (Spark: no filtered percentile)
    typical = repeat.aggregate(_typical=repeat.ipi_mean.median())
    j = t.cross_join(typical)
    typ = j._typical.fill_null(float(config.max_gap_days))
    lo, hi = float(config.min_gap_days), float(config.max_gap_days)
    n_int = j.frequency.fill_null(0)
    g = _between(ibis.ifelse(n_int >= config.personal_min_intervals, j.ipi_mean, typ), lo, hi)
    gap_last = j._gap_before_last.fill_null(0.0)
    earlier = ibis.ifelse(n_int >= 2, (j.recency - gap_last) / (n_int - 1).cast("float64"), ibis.null("float64"))
    g_before = _between(ibis.ifelse(n_int - 1 >= config.personal_min_intervals, earlier, typ), lo, hi)
    rec = j.recency_days
    active = rec <= config.active_multiple * g
    came_back = (n_int >= 1) & (gap_last > config.lapsed_multiple * g_before)
    stage = ibis.cases(
        (j.tenure_days <= config.new_days, "new"),
        (active & came_back, "reactivated"),
        (active, "active"),
        (rec <= config.lapsed_multiple * g, "at_risk"),
        else_="lapsed",
    )
    return j.mutate(lifecycle_stage=ibis.ifelse(j.orders > 0, stage, ibis.null("string"))).drop("_typical")
