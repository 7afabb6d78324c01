"""``simulate``: draw people, their orders, events, accounts and campaigns, and return the tables."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pyarrow as pa

from .activity import (
    DAY,
    Calendar,
    EventRows,
    argsort_seconds,
    campaign_schedule,
    last_order_before,
    ongoing_events,
    order_events,
    order_rows,
    organic_orders,
    run_campaigns,
)
from .config import CATEGORIES, CHANNELS, CITIES, EVENT_TYPES, STATUSES, SimConfig
from .festivals import calendar
from .people import (
    draw_people,
    format_phones,
    key_strings,
    member_cards,
    phone_numbers,
    unionids,
)

__all__ = ["simulate"]


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]simulate[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _str(values, codes: np.ndarray, valid: np.ndarray | None = None) -> pd.Series:
    """A pandas string column ``values[codes]`` (null where ``valid`` is False), built in Arrow.

    Small vocabularies are taken as 32-bit-offset strings and widened afterwards, large ones (account keys)
    taken as large strings directly: each is the faster path in pyarrow for its case.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    large = len(arr) > 4096
    arr = arr.cast(pa.large_string() if large else pa.string())
    idx = pa.array(
        np.asarray(codes, dtype=np.int64), mask=None if valid is None else ~np.asarray(valid, bool)
    )
    return pd.Series(arr.take(idx), dtype="str")


def _ts(start: pd.Timestamp, seconds: np.ndarray) -> np.ndarray:
    stamps = np.datetime64(start.to_datetime64(), "s") + np.asarray(seconds, dtype="timedelta64[s]")
    return stamps.astype("datetime64[us]")


def simulate(
    n_customers: int,
    *,
    seed: int,
    start: str = "2023-01-01",
    end: str = "2025-12-31",
    dirty: float = 0.0,
    progress: bool = False,
    config: SimConfig | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """Simulate an omnichannel beauty brand with known ground truth.

    Parameters
    ----------
    n_customers : int
        Number of true people (each acquired, i.e. first order, inside the range).
    seed : int
        Seed of ``np.random.default_rng``; the same seed and arguments give identical tables.
    start, end : str
        First and last simulated day (inclusive).
    dirty : float
        Fraction (0–0.5) of malformed rows added to every table (see :mod:`features.simulate.dirty`); the
        timestamp columns then become strings so unparseable values survive a Parquet round trip.
    progress : bool
        Show a rich progress bar on stderr.
    config : SimConfig, optional
        Parameters of the brand.
    timings : dict, optional
        When given, filled with the wall seconds (``STEP``) and CPU seconds (``STEP cpu``) of each step.

    Returns
    -------
    dict of DataFrame
        ``orders``, ``events``, ``identities``, ``campaign_touches`` (the data contract tables),
        ``truth`` (one row per true person with the latent parameters), ``truth_keys`` (customer_key →
        true_person, channel), ``truth_campaigns`` (one row per campaign: send date, kind, coupon value,
        uplift window), ``truth_campaign_effects`` (one row per campaign touch, treated or control: the true
        effect of treating that person, see :mod:`features.simulate.effects`) and, when ``dirty > 0``, ``truth_dirty_rows`` (table, row position, kind and column of every
        malformed row).
    """
    if not isinstance(n_customers, int | np.integer) or n_customers < 1:
        raise ValueError(f"simulate: n_customers must be a positive integer, got {n_customers!r}")
    if not 0.0 <= dirty <= 0.5:
        raise ValueError(f"simulate: dirty must be a fraction in [0, 0.5], got {dirty!r}")
    cfg = config or SimConfig()
    start_ts, end_ts = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if end_ts <= start_ts + pd.Timedelta(days=60):
        raise ValueError(f"simulate: the range {start}..{end} must span more than 60 days")
    rng = np.random.default_rng(seed)
    cal_frame = calendar(start_ts, end_ts)
    cal = Calendar.from_frame(cal_frame)
    n_days = cal.n_days
    steps = ["people", "orders", "campaigns", "events", "identities", "tables"] + (
        ["dirty rows"] if dirty else []
    )

    with _progress(progress) as bar:
        task = bar.add_task(steps[0], total=len(steps)) if bar else None

        clock = [time.perf_counter(), time.process_time()]

        def step(i: int) -> None:
            now = [time.perf_counter(), time.process_time()]
            if timings is not None:
                timings[steps[i - 1]] = now[0] - clock[0]
                timings[steps[i - 1] + " cpu"] = now[1] - clock[1]
            clock[:] = now
            if bar:
                bar.update(task, completed=i, description=steps[i] if i < len(steps) else "done")
                bar.refresh()

        acquisition = cal.intensity**0.6 * (1.0 + 0.5 * np.arange(n_days) / n_days)
        people = draw_people(int(n_customers), n_days, acquisition, cfg, rng)
        step(1)
        org_person, org_day = organic_orders(people, cal, rng)
        step(2)
        schedule = campaign_schedule(start_ts, n_days, cfg)
        ev = EventRows()
        touches, induced = run_campaigns(people, cal, schedule, org_person, org_day, ev, cfg, rng)
        if not touches:
            touches = {
                k: np.zeros(0, dtype=np.int64)
                for k in ("person", "key", "sent", "control", "campaign", "cost", "alive", "gap")
            } | {k: np.zeros(0) for k in ("tau", "p_caused", "effect_purchase", "effect_spend")}
            induced = {
                k: np.zeros(0, dtype=np.int64) for k in ("person", "day", "slot", "campaign", "redeem")
            }
        step(3)
        person = np.concatenate([org_person, induced["person"]])
        day = np.concatenate([org_day, induced["day"]])
        slot = np.concatenate([np.full(len(org_person), -1), induced["slot"]])
        del org_person, org_day
        orders = order_rows(person, day, slot, people, cal, cfg, rng)
        organic = len(slot) - len(induced["slot"])
        orders["campaign"] = np.concatenate([np.full(organic, -1), induced["campaign"]])
        redeem = np.concatenate([np.zeros(organic, bool), induced["redeem"].astype(bool)])
        order_events(ev, orders, people, cal, cfg, rng, redeem)
        ongoing_events(ev, people, cal, cfg, rng)
        events = ev.concat(n_days)
        step(4)
        keys = key_strings(people, rng).cast(pa.large_string())
        identities = _identities(people, keys, orders, events, touches, start_ts, n_days, cfg, rng)
        step(5)
        tables = _tables(
            people, keys, orders, events, touches, schedule, identities, start_ts, end_ts, n_days, cfg
        )
        step(6)
        if dirty:
            from .dirty import make_dirty

            tables = make_dirty(tables, dirty, rng)
            step(7)
        if bar:
            bar.update(task, completed=len(steps), description="done")
    return tables


def _identities(people, keys, orders, events, touches, start, n_days, cfg: SimConfig, rng) -> pd.DataFrame:
    """One row per account: channel, messy phone, unionid, member card, join time, profile, opt-out."""
    n_keys = len(people.key_person)
    kp, kc = people.key_person, people.key_channel
    # join time: shortly before the account's first activity; accounts never used joined while alive
    first = np.full(n_keys, np.iinfo(np.int64).max)
    np.minimum.at(first, orders["key"], orders["ts"])
    np.minimum.at(first, events["key"], events["ts"])
    unused = first == np.iinfo(np.int64).max
    life = np.maximum(np.minimum(people.death_day, n_days) - people.birth_day, 1)[kp]
    fallback = (people.birth_day[kp] + rng.random(n_keys) * life) * DAY
    first = np.where(unused, fallback.astype(np.int64), first)
    join = np.maximum(first - (rng.exponential(4 * DAY, n_keys) + 60).astype(np.int64), 0)

    def present(missing: dict[str, float]) -> np.ndarray:
        p = np.array([missing[c] for c in CHANNELS])[kc]
        return rng.random(n_keys) >= p

    phone = format_phones(phone_numbers(people.n, rng)[kp], rng)
    union = unionids(people.n, rng).take(pa.array(kp))
    card = member_cards(people.n, rng).take(pa.array(kp))
    has_profile = present(cfg.profile_missing)
    has_city = present(cfg.profile_missing)
    return pd.DataFrame(
        {
            "key": np.arange(n_keys),
            "phone": _str(phone, np.arange(n_keys), present(cfg.phone_missing)),
            "unionid": _str(union, np.arange(n_keys), present(cfg.unionid_missing)),
            "member_card": _str(card, np.arange(n_keys), present(cfg.member_card_missing)),
            "join_ts": _ts(start, join),
            # the account's identifiers are bound when it is first used (One-ID may link it from then on)
            "linked_ts": _ts(start, first),
            "birth_year": pd.arrays.IntegerArray(people.birth_year[kp].astype(np.int64), ~has_profile),
            "gender": _str(["F", "M"], people.gender[kp], has_profile),
            "city": _str(list(CITIES), people.city[kp], has_city),
            "marketing_opt_out": people.opt_out[kp],
        }
    )


def _tables(
    people, keys, orders, events, touches, schedule, ident, start, end, n_days, cfg
) -> dict[str, pd.DataFrame]:
    chan_names = list(CHANNELS)
    # orders, in time order, ids numbered in that order (scrambled so they do not reveal the sequence)
    o = argsort_seconds(orders["ts"])
    n_orders = len(o)
    seq = (np.arange(n_orders, dtype=np.int64) * 7_919 + 104_729) % (
        10**11 - 1
    )  # 7919 is coprime to 10**11-1
    oid = pa.compute.binary_join_element_wise(
        "O", pa.compute.utf8_lpad(pa.array(seq).cast(pa.string()), 11, "0"), ""
    )
    store = orders["store"][o]
    order_df = pd.DataFrame(
        {
            "order_id": pd.Series(oid, dtype="str"),
            "customer_key": _str(keys, orders["key"][o]),
            "order_ts": _ts(start, orders["ts"][o]),
            "amount": orders["amount"][o],
            "channel": _str(chan_names, orders["channel"][o]),
            "status": _str(list(STATUSES), orders["status"][o]),
            "discount": orders["discount"][o],
            "item_count": orders["items"][o].astype(np.int64),
            "category": _str(list(CATEGORIES), orders["category"][o]),
            "store_id": _str([f"S{i:04d}" for i in range(cfg.n_stores)], np.maximum(store, 0), store >= 0),
        }
    )
    e = argsort_seconds(events["ts"])
    camp = events["campaign"][e]
    camp_ids = list(schedule["campaign_id"]) or ["none"]
    event_df = pd.DataFrame(
        {
            "customer_key": _str(keys, events["key"][e]),
            "event_ts": _ts(start, events["ts"][e]),
            "event_type": _str(list(EVENT_TYPES), events["type"][e]),
            "channel": _str(chan_names, people.key_channel[events["key"][e]]),
            "campaign_id": _str(camp_ids, np.maximum(camp, 0), camp >= 0),
        }
    )
    t = np.lexsort((touches["key"], touches["sent"]))
    tc = touches["campaign"][t].astype(np.int64)
    touch_df = pd.DataFrame(
        {
            "campaign_id": _str(camp_ids, tc),
            "customer_key": _str(keys, touches["key"][t]),
            "sent_ts": _ts(start, touches["sent"][t]),
            "group": _str(["treatment", "control"], touches["control"][t].astype(np.int64)),
            "channel": _str(chan_names, people.key_channel[touches["key"][t]]),
            "offer_cost": np.round(touches["cost"][t].astype(float), 2),
        }
    )
    # the true effect of every send (treated or control: what treating the person would change)
    effects_df = pd.DataFrame(
        {
            "campaign_id": touch_df["campaign_id"],
            "customer_key": touch_df["customer_key"],
            "true_person": touches["person"][t].astype(np.int64),
            "send_date": _ts(start, touches["sent"][t] // DAY * DAY),
            "group": touch_df["group"],
            "alive_at_send": touches["alive"][t].astype(bool),
            "days_since_last_order": touches["gap"][t].astype(np.int64),
            "tau_send": touches["tau"][t].astype(float),
            "p_caused": touches["p_caused"][t].astype(float),
            "effect_purchase": touches["effect_purchase"][t].astype(float),
            "effect_spend": touches["effect_spend"][t].astype(float),
        }
    )
    ident_df = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_key": _str(keys, ident["key"].to_numpy()),
                    "channel": _str(chan_names, people.key_channel),
                }
            ),  # fmt: skip
            ident.drop(columns="key"),
        ],
        axis=1,
    )
    keys_df = pd.DataFrame(
        {
            "customer_key": _str(keys, np.arange(len(people.key_person))),
            "true_person": people.key_person.astype(np.int64),
            "channel": _str(chan_names, people.key_channel),
        }
    )
    # truth: latent parameters per person
    death_known = people.death_day <= n_days
    top_cat = people.fav_cat[
        np.arange(people.n), np.argmax(np.diff(people.fav_cum, prepend=0.0, axis=1), axis=1)
    ]
    last_order = last_order_before(orders["person"], orders["day"], people.n, n_days)
    truth = pd.DataFrame(
        {
            "true_person": np.arange(people.n, dtype=np.int64),
            "lam": people.lam,
            "mu": people.mu,
            "spend_mean": people.spend_mean,
            "spend_shape": np.full(people.n, cfg.spend_shape),
            "birth_date": _ts(start, people.birth_day * DAY).astype("datetime64[us]"),
            "death_date": pd.Series(
                _ts(start, np.minimum(people.death_day, n_days) * DAY).astype("datetime64[us]")
            ).where(death_known),
            "alive_at_end": ~death_known,
            "observed_until": np.full(people.n, (end + pd.Timedelta(days=1)).to_datetime64()).astype(
                "datetime64[us]"
            ),
            "last_order_date": pd.Series(
                _ts(start, np.maximum(last_order, 0) * DAY).astype("datetime64[us]")
            ),
            "tau": people.tau,
            "marketing_opt_out": people.opt_out,
            "n_keys": people.n_keys.astype(np.int64),
            **{f"p_{c}": people.chan_pref[:, j] for j, c in enumerate(CHANNELS)},
            "top_category": _str(list(CATEGORIES), top_cat),
            "browse_rate": people.browse,
            "open_prob": people.open_prob,
            "views_per_order": people.views_per_order,
            "cart_prob": people.cart_prob,
            "city": _str(list(CITIES), people.city),
            "gender": _str(["F", "M"], people.gender),
            "birth_year": people.birth_year.astype(np.int64),
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign_id": schedule["campaign_id"].astype("str"),
            "send_date": (start + pd.to_timedelta(schedule["day"], unit="D")).astype("datetime64[us]"),
            "kind": schedule["kind"].astype("str"),
            "coupon_value": schedule["coupon"].astype(float),
            "target_share": schedule["share"].astype(float),
            "uplift_window_days": np.full(len(schedule), cfg.uplift_window_days, dtype=np.int64),
        }
    )
    return {
        "orders": order_df,
        "events": event_df,
        "identities": ident_df,
        "campaign_touches": touch_df,
        "truth": truth,
        "truth_keys": keys_df,
        "truth_campaigns": campaigns,
        "truth_campaign_effects": effects_df,
    }
