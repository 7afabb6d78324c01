"""Interaction, campaign and profile features as Ibis expressions (events, campaign touches, identities)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import ibis
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir

EVENT_TYPES = (
    "view",
    "cart",
    "favorite",
    "search",
    "coupon_claim",
    "coupon_redeem",
    "message_open",
    "message_click",
    "livestream_view",
    "share",
    "review",
    "store_visit",
)


def event_aggregates(events: ir.Table, key_map: ir.Table, as_of: date, *, windows: tuple[int, ...]) -> ir.Table:
    """Per-person event counts per type and window, last event day per type, and all-history totals.

    Events are first rolled up per ``customer_key`` (tens of millions of rows → a few million), then mapped to
    ``person_id`` and summed, which keeps the join small.

    Parameters
    ----------
    events
        ``customer_key``, ``event_ts``, ``event_type``; already restricted to ``event_ts < as_of``.
    key_map
        ``customer_key`` → ``person_id``.
    as_of
        The cut-off date.
    windows
        Trailing windows in days for ``ev_<type>_<w>d``.
    """
    cutoff = pd.Timestamp(as_of)
    aggs: dict[str, ir.Value] = {}
    for et in EVENT_TYPES:
        is_t = events.event_type == et
        for w in windows:
            since = ibis.literal(cutoff - pd.Timedelta(days=w), type="timestamp")
            aggs[f"ev_{et}_{w}d"] = events.count(where=is_t & (events.event_ts >= since))
        aggs[f"_last_{et}"] = events.event_ts.max(where=is_t)
    aggs["_n_cart"] = events.count(where=events.event_type == "cart")
    aggs["_n_open"] = events.count(where=events.event_type == "message_open")
    aggs["_n_click"] = events.count(where=events.event_type == "message_click")
    aggs["_first_event_ts"] = events.event_ts.min()
    per_key = events.group_by("customer_key").aggregate(**aggs)
    per_key = per_key.join(key_map, "customer_key")
    person_aggs: dict[str, ir.Value] = {}
    for name in aggs:
        col = per_key[name]
        if name.startswith("_last_"):
            person_aggs[name] = col.max()
        elif name == "_first_event_ts":
            person_aggs[name] = col.min()
        else:
            person_aggs[name] = col.sum()
    agg = per_key.group_by("person_id").aggregate(**person_aggs)
    asof_lit = ibis.literal(as_of, type="date")
    days_since = {
        f"days_since_{et}": asof_lit.delta(agg[f"_last_{et}"].date(), unit="day").cast("float64") for et in EVENT_TYPES
    }
    return agg.mutate(**days_since).drop(*[f"_last_{et}" for et in EVENT_TYPES])


def campaign_aggregates(
    touches: ir.Table, paid_orders: ir.Table, as_of: date, *, response_window_days: int
) -> ir.Table:
    """Per-person campaign touches and responses, with no look-ahead.

    Only treatment touches whose whole response window ``[sent_ts, sent_ts + window)`` ends on or before
    ``as_of 00:00`` count; a touch is answered when the person's first paid order at or after ``sent_ts`` falls
    inside the window (an as-of join, so each touch meets at most one order).

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
    joined = eligible.asof_join(po, on=eligible.sent_ts <= po.order_ts, predicates=eligible.person_id == po.o_person)
    answered = joined.order_ts.notnull() & (
        joined.order_ts < joined.sent_ts + ibis.interval(days=response_window_days)
    )
    resp = joined.group_by("person_id").aggregate(
        _n_eligible=joined.count(),
        _n_responded=joined.count(where=answered),
    )
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
        aggs["marketing_opt_out"] = t.marketing_opt_out.fill_null(False).cast("boolean").any()
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
