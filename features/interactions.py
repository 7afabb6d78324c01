"""Interaction, campaign and profile features as Ibis expressions (events, campaign touches, identities)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.vocab import EVENT_TYPES

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir


def event_key_aggregates(events: ir.Table, as_of: date, *, windows: tuple[int, ...]) -> ir.Table:
    """The one heavy pass over raw events: per ``customer_key`` and ``event_type``, counts and timestamps.

    A narrow group-by (a handful of aggregates per key and type) is several times cheaper than one wide
    group-by with a filtered aggregate per type and window.

    Parameters
    ----------
    events
        ``customer_key``, ``event_ts``, ``event_type``; already restricted to ``event_ts < as_of``.
    as_of
        The cut-off date.
    windows
        Trailing windows in days.

    Returns
    -------
    ibis.Table
        ``customer_key``, ``event_type``, ``_first``, ``_last`` (timestamps), ``_n`` and ``_n_<w>d``.
    """
    cutoff = pd.Timestamp(as_of)
    aggs: dict[str, ir.Value] = {
        "_first": events.event_ts.min(),
        "_last": events.event_ts.max(),
        "_n": events.count(),
    }
    for w in windows:
        since = ibis.literal(cutoff - pd.Timedelta(days=w), type="timestamp")
        aggs[f"_n_{w}d"] = events.count(where=events.event_ts >= since)
    return events.group_by(["customer_key", "event_type"]).aggregate(**aggs)


def event_key_days(per_key: ir.Table, key_map: ir.Table, as_of: date) -> ir.Table:
    """``event_key_aggregates`` rows mapped to ``person_id``, with days since the last event of the type.

    Parameters
    ----------
    per_key
        Output of ``event_key_aggregates``.
    key_map
        ``customer_key`` → ``person_id``.
    """
    t = per_key.join(key_map, "customer_key")
    days = ibis.literal(as_of, type="date").delta(t._last.date(), unit="day").cast("float64")
    return t.mutate(_days_since=days).drop("customer_key", "_first", "_last")


def pivot_events(long: pa.Table, n_people: int, *, windows: tuple[int, ...]) -> pa.Table:
    """Reshape ``event_key_days`` output to one row per person (numpy scatter; sums and minima over keys).

    Parameters
    ----------
    long
        Arrow table with integer ``person_id`` in ``0..n_people-1``, ``event_type``, ``_n``, ``_n_<w>d`` and
        ``_days_since``; a person with several keys has several rows per type, which are added up (counts) or
        take the smallest value (days since).
    n_people
        Number of people.

    Returns
    -------
    pyarrow.Table
        One row per person with an event: ``person_id`` (pidx), ``ev_<type>_<w>d``, ``days_since_<type>``,
        ``_n_cart``, ``_n_open``, ``_n_click``.
    """
    k = len(EVENT_TYPES)
    enc = pc.dictionary_encode(long.column("event_type")).combine_chunks()
    lookup = np.array([EVENT_TYPES.index(v) if v in EVENT_TYPES else -1 for v in enc.dictionary.to_pylist()],
                      dtype=np.int64)
    code = lookup[enc.indices.to_numpy(zero_copy_only=False)] if len(lookup) else np.zeros(0, dtype=np.int64)
    ok = code >= 0
    pidx = np.asarray(long.column("person_id").to_numpy(), dtype=np.int64)[ok]
    present = np.zeros(n_people, dtype=bool)
    present[pidx] = True
    people = np.flatnonzero(present)  # only people with an event get a row
    row = (np.cumsum(present) - 1)[pidx]
    n_rows = len(people)
    flat = code[ok] * n_rows + row  # type-major: each type's column is contiguous

    def column(name: str) -> np.ndarray:
        return np.asarray(long.column(name).to_numpy(zero_copy_only=False))[ok]

    def add(name: str) -> np.ndarray:
        m = np.zeros(k * n_rows, dtype=np.int64)
        np.add.at(m, flat, column(name).astype(np.int64, copy=False))
        return m.reshape(k, n_rows)

    counts = {w: add(f"_n_{w}d") for w in windows}
    total = add("_n")
    days = np.full(k * n_rows, np.inf)
    np.minimum.at(days, flat, column("_days_since").astype(np.float64, copy=False))
    days[np.isinf(days)] = np.nan
    days = days.reshape(k, n_rows)
    cols: dict[str, np.ndarray] = {"person_id": people}
    for i, et in enumerate(EVENT_TYPES):
        for w in windows:
            cols[f"ev_{et}_{w}d"] = counts[w][i]
    for i, et in enumerate(EVENT_TYPES):
        cols[f"days_since_{et}"] = days[i]
    cols["_n_cart"] = total[EVENT_TYPES.index("cart")]
    cols["_n_open"] = total[EVENT_TYPES.index("message_open")]
    cols["_n_click"] = total[EVENT_TYPES.index("message_click")]
    return pa.table(cols)


def pivot_events_expr(long: ir.Table, *, windows: tuple[int, ...]) -> ir.Table:
    """``pivot_events`` as conditional aggregates (one group-by per person, any backend; used on Spark).

    Gives the same rows and values as ``pivot_events``, except that a count of a type the person has no row of
    is NULL instead of 0 (the pipeline zero-fills every ``ev_``/``_n_`` column).

    Parameters
    ----------
    long
        ``person_id``, ``event_type``, ``_n``, ``_n_<w>d`` and ``_days_since`` (``event_key_days`` output).
    """
    t = long.filter(long.event_type.isin(list(EVENT_TYPES)))
    aggs: dict[str, ir.Value] = {}
    for et in EVENT_TYPES:
        for w in windows:
            aggs[f"ev_{et}_{w}d"] = t[f"_n_{w}d"].sum(where=t.event_type == et)
    for et in EVENT_TYPES:
        aggs[f"days_since_{et}"] = t._days_since.min(where=t.event_type == et)
    for name, et in (("_n_cart", "cart"), ("_n_open", "message_open"), ("_n_click", "message_click")):
        aggs[name] = t._n.sum(where=t.event_type == et)
    return t.group_by("person_id").aggregate(**aggs)


def campaign_aggregates(
    touches: ir.Table, paid_orders: ir.Table, as_of: date, *, response_window_days: int
) -> ir.Table:
    """Per-person campaign touches and responses, with no look-ahead.

    Only treatment touches whose whole response window ``[sent_ts, sent_ts + window)`` ends on or before
    ``as_of 00:00`` count; a touch is answered when the person has a paid order inside its window (a range join
    on the person's paid orders, each touch counted once).

    Parameters
    ----------
    touches
        ``person_id``, ``sent_ts``, ``group``, ``touch_id`` (all touches, any time).
    paid_orders
        ``person_id``, ``order_ts`` of paid orders strictly before ``as_of``.
    """
    cutoff = pd.Timestamp(as_of)
    window = pd.Timedelta(days=response_window_days)
    before = touches.filter(touches.sent_ts < ibis.literal(cutoff, type="timestamp"))
    counts = before.group_by("person_id").aggregate(
        _n_touches=before.count(),
        _n_treat=before.count(where=before.group == "treatment"),
    )
    eligible = before.filter(
        (before.group == "treatment") & (before.sent_ts <= ibis.literal(cutoff - window, type="timestamp"))
    ).select("person_id", "sent_ts", "touch_id")
    po = paid_orders.select(o_person="person_id", order_ts="order_ts")
    hits = eligible.join(
        po,
        [
            eligible.person_id == po.o_person,
            po.order_ts >= eligible.sent_ts,
            po.order_ts < eligible.sent_ts + ibis.interval(days=response_window_days),
        ],
    )
    responded = hits.group_by("person_id").aggregate(_n_responded=hits.touch_id.nunique())
    n_eligible = eligible.group_by("person_id").aggregate(_n_eligible=eligible.count())
    resp = n_eligible.left_join(responded, n_eligible.person_id == responded.person_id).drop("person_id_right")
    return counts.left_join(resp, "person_id").drop("person_id_right")


def profile_aggregates(identities: ir.Table, key_map: ir.Table, as_of: date) -> ir.Table:
    """Per-person profile: age, membership tenure, opt-out, membership (only what was known before ``as_of``).

    A ``join_ts`` on or after ``as_of`` is ignored (the key joined later), and so is its member card.
    """
    cols = set(identities.columns)
    t = identities.join(key_map, "customer_key")
    cutoff = ibis.literal(pd.Timestamp(as_of), type="timestamp")
    aggs: dict[str, ir.Value] = {}
    joined_before = t.join_ts < cutoff if "join_ts" in cols else None
    if "birth_year" in cols:
        aggs["_birth_year"] = t.birth_year.cast("float64").max()
    if "join_ts" in cols:
        aggs["_first_join_ts"] = t.join_ts.min(where=joined_before)
    if "marketing_opt_out" in cols:
        # any account opted out → True; else any recorded False → False; no recorded value → NULL (unknown)
        aggs["marketing_opt_out"] = t.marketing_opt_out.cast("boolean").any()
    if "member_card" in cols:
        has_card = t.member_card.notnull() & (t.member_card.cast("string") != "")
        if joined_before is not None:
            has_card = has_card & (t.join_ts.isnull() | joined_before)
        aggs["is_member"] = has_card.any()
    if not aggs:
        return t.group_by("person_id").aggregate(_n_identity_rows=t.count())
    agg = t.group_by("person_id").aggregate(**aggs)
    muts: dict[str, ir.Value] = {}
    if "_birth_year" in aggs:
        muts["age"] = ibis.literal(float(as_of.year)) - agg._birth_year
    if "_first_join_ts" in aggs:
        muts["member_tenure_days"] = (
            ibis.literal(as_of, type="date").delta(agg._first_join_ts.date(), unit="day").cast("float64")
        )
    return agg.mutate(**muts) if muts else agg
