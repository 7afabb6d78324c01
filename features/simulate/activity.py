"""Orders, behaviour events and campaigns drawn from the latent people, all as flat numpy arrays.

Times are integer seconds since the first simulated day (00:00); days are integer indices. Nothing here loops
over people: every step draws counts per person, repeats the person index by its count and draws the
attributes of all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import CATEGORIES, CHANNELS, EVENT_TYPES, SimConfig
from .effects import send_effects, send_tau
from .festivals import HOUR_CDF, PEAK_HOUR_CDF
from .people import People, pick_slot

DAY = 86_400
EV = {name: i for i, name in enumerate(EVENT_TYPES)}
STORE = CHANNELS.index("store")
DOUYIN = CHANNELS.index("douyin")
#: Delay (days after the send) of an order caused by a campaign treatment: P(delay = k) for k = 1..14.
UPLIFT_DELAY = 0.8 ** np.arange(14)
UPLIFT_DELAY = UPLIFT_DELAY / UPLIFT_DELAY.sum()
#: How a campaign chooses the account it messages: the first of these channels the person holds.
MESSAGE_PRIORITY = ("wechat", "store", "tmall", "douyin", "jd")


@dataclass
class Calendar:
    """Calendar effects as arrays indexed by day (length ``n_days``)."""

    intensity: np.ndarray
    discount: np.ndarray
    refund: np.ndarray
    cancel: np.ndarray
    peak: np.ndarray
    festival: np.ndarray  # bool: any festival label

    @classmethod
    def from_frame(cls, cal: pd.DataFrame) -> Calendar:
        return cls(
            intensity=cal["intensity"].to_numpy(float),
            discount=cal["discount_rate"].to_numpy(float),
            refund=cal["refund_rate"].to_numpy(float),
            cancel=cal["cancel_rate"].to_numpy(float),
            peak=cal["peak"].to_numpy(bool),
            festival=(cal["festival"] != "").to_numpy(bool),
        )

    @property
    def n_days(self) -> int:
        return len(self.intensity)


@dataclass
class Rows:
    """Column arrays of one growing table."""

    cols: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, **arrays: np.ndarray) -> None:
        for name, values in arrays.items():
            self.cols.setdefault(name, []).append(np.asarray(values))

    def concat(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.cols.items()}


class EventRows:
    """Events collected from every source: account index (int32), seconds (int64), type and campaign (int8,
    -1 = none). Compact dtypes keep tens of millions of rows cheap."""

    def __init__(self) -> None:
        self.key: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.type: list[np.ndarray] = []
        self.campaign: list[np.ndarray] = []

    def add(self, key: np.ndarray, ts: np.ndarray, etype: int | np.ndarray, campaign: int = -1) -> None:
        n = len(key)
        self.key.append(np.asarray(key, dtype=np.int32))
        self.ts.append(np.asarray(ts, dtype=np.int64))
        self.type.append(np.broadcast_to(np.asarray(etype, dtype=np.int8), (n,)))
        self.campaign.append(np.full(n, campaign, dtype=np.int8))

    def concat(self, n_days: int) -> dict[str, np.ndarray]:
        """All rows inside the simulated range, as arrays."""
        ts = np.concatenate(self.ts)
        inside = (ts >= 0) & (ts < n_days * DAY)
        out = {"ts": ts[inside]}
        del ts
        for name in ("key", "type", "campaign"):
            parts = getattr(self, name)
            out[name] = np.concatenate(parts)[inside]
            parts.clear()
        self.ts.clear()
        return out


def poisson_days(rate, day0, day1, cum, rng):
    """Inhomogeneous Poisson events on whole days: person ``i`` has ``rate[i] * intensity[d]`` on days
    ``day0[i] <= d < day1[i]``. ``cum`` is the cumulative intensity (length n_days + 1).

    Returns the person index and the day of every event.
    """
    day1 = np.maximum(day1, day0)
    mass = cum[day1] - cum[day0]
    counts = rng.poisson(rate * mass)
    who = np.repeat(np.arange(len(rate)), counts)
    u = cum[day0][who] + rng.random(len(who)) * mass[who]
    day = np.searchsorted(cum, u, side="right") - 1
    day = np.clip(day, day0[who], day1[who] - 1)
    return who, day


def renewal_days(rate, day0, day1, cum, rng, *, regularity: float):
    """Habitual events on whole days: like :func:`poisson_days`, but the gaps between person ``i``'s events
    are Gamma(``regularity``) with mean ``1 / rate[i]`` in the calendar's intensity time, so counts are
    under-dispersed (``regularity`` = 1 is Poisson; 4 is someone who checks the shop about every so often).
    The first gap is the forward recurrence time of a stationary process (a uniform share of a length-biased
    Gamma(``regularity`` + 1) gap), so the count in any window has mean ``rate`` times the window's mass.

    Returns the person index and the day of every event.
    """
    day1 = np.maximum(day1, day0)
    mass = cum[day1] - cum[day0]
    expected = rate * mass
    n_draw = np.ceil(expected + 4.0 * np.sqrt(expected / regularity) + 3.0).astype(np.int64)
    n_draw[expected <= 0] = 0
    who = np.repeat(np.arange(len(rate)), n_draw)
    gaps = rng.gamma(regularity, 1.0, len(who)) / (regularity * rate[who])
    starts = np.concatenate([[0], np.cumsum(n_draw)[:-1]])[n_draw > 0]
    first = who[starts]
    gaps[starts] = rng.random(len(starts)) * rng.gamma(regularity + 1.0, 1.0, len(starts)) / (regularity * rate[first])
    pos = np.cumsum(gaps)
    pos -= np.repeat(pos[starts] - gaps[starts], n_draw[n_draw > 0])
    keep = pos < mass[who]
    who, pos = who[keep], pos[keep]
    u = cum[day0][who] + pos
    day = np.searchsorted(cum, u, side="right") - 1
    day = np.clip(day, day0[who], day1[who] - 1)
    return who, day


_HOUR_TABLE = np.concatenate([HOUR_CDF, PEAK_HOUR_CDF + 1.0])


def seconds_in_day(day: np.ndarray, cal: Calendar, rng: np.random.Generator) -> np.ndarray:
    """Timestamp (seconds) within each day following the hour-of-day profile (midnight rush on peak days)."""
    peak = cal.peak[day]
    hour = np.searchsorted(_HOUR_TABLE, rng.random(len(day)) + peak) - 24 * peak
    return day.astype(np.int64) * DAY + np.minimum(hour, 23) * 3600 + rng.integers(0, 3600, len(day))


def argsort_seconds(ts: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 seconds below 2**32 by two 16-bit radix passes (numpy's stable
    sort is a radix sort for 16-bit keys), faster than a comparison sort on tens of millions of rows."""
    if len(ts) and (ts.min() < 0 or ts.max() >= 1 << 32):
        return np.argsort(ts, kind="stable")
    first = np.argsort((ts & 0xFFFF).astype(np.uint16), kind="stable")
    second = np.argsort((ts[first] >> 16).astype(np.uint16), kind="stable")
    return first[second]


# --- orders ------------------------------------------------------------------------------------------------


def organic_orders(people: People, cal: Calendar, rng: np.random.Generator):
    """First orders on the acquisition day plus repeat orders on later days while alive.

    Returns person index and day per order (first orders first).
    """
    n_days = cal.n_days
    cum = np.concatenate([[0.0], np.cumsum(cal.intensity)])
    born = people.birth_day < n_days
    first_who = np.flatnonzero(born)
    day0 = np.minimum(people.birth_day + 1, n_days)
    day1 = np.minimum(people.death_day, n_days)
    who, day = poisson_days(people.lam, day0, day1, cum, rng)
    return np.concatenate([first_who, who]), np.concatenate([people.birth_day[first_who], day])


def order_rows(
    person, day, slot, people: People, cal: Calendar, cfg: SimConfig, rng
) -> dict[str, np.ndarray]:
    """Attributes of every order: account, time, status, category, amounts, store.

    ``slot`` is the account slot when fixed (campaign orders go to the messaged account), -1 to draw it from
    the person's channel mix.
    """
    n = len(person)
    drawn = pick_slot(people.chan_cum[person], rng.random(n))
    slot = np.where(slot >= 0, slot, drawn)
    channel = people.chan[person, slot]
    key = people.key_offset[person] + slot
    ts = seconds_in_day(day, cal, rng)
    u = rng.random(n)
    refund = cal.refund[day]
    status = np.where(u < refund, 1, np.where(u < refund + cal.cancel[day], 2, 0)).astype(np.int8)
    # category: a favourite most of the time, anything else occasionally
    fav = people.fav_cat[person, pick_slot(people.fav_cum[person], rng.random(n))]
    other = rng.integers(0, len(CATEGORIES), n)
    category = np.where(rng.random(n) < cfg.favourite_category_share, fav, other)
    level = np.array(list(CATEGORIES.values()))[category] / people.cat_norm[person]
    gross = people.spend_mean[person] * level * rng.gamma(cfg.spend_shape, 1.0 / cfg.spend_shape, n)
    r = cal.discount[day]
    rate = rng.beta(20.0 * r, 20.0 * (1.0 - r))
    amount = np.round(gross * (1.0 - rate), 2)
    discount = np.round(gross * rate, 2)
    items = 1 + rng.poisson(gross / 260.0)
    store = np.where(channel == STORE, people.home_store[person], -1)
    return {
        "person": person, "key": key, "channel": channel, "ts": ts, "day": day, "status": status,
        "category": category, "amount": amount, "discount": discount, "items": items, "store": store,
    }  # fmt: skip


# --- campaigns -----------------------------------------------------------------------------------------------


def campaign_schedule(start: pd.Timestamp, n_days: int, cfg: SimConfig) -> pd.DataFrame:
    """Campaigns around the brand's year: 3.8 and 618 warm-ups, a summer win-back, the 双11 presale."""
    plan = [
        ("38", "03-01", "active", 20.0, 0.5),
        ("618", "06-08", "active", 30.0, 0.6),
        ("winback", "08-20", "winback", 40.0, 1.0),
        ("d11", "10-27", "active", 50.0, 0.6),
    ][: cfg.campaigns_per_year]
    rows = []
    end = start + pd.Timedelta(days=n_days - 1)
    for year in range(start.year, end.year + 1):
        for name, md, kind, coupon, share in plan:
            send = pd.Timestamp(f"{year}-{md}")
            d = (send - start).days
            if 45 <= d <= n_days - 21:
                rows.append(
                    {
                        "campaign_id": f"C{year}_{name}",
                        "day": d,
                        "kind": kind,
                        "coupon": coupon,
                        "share": share,
                    }
                )
    return pd.DataFrame(rows, columns=["campaign_id", "day", "kind", "coupon", "share"])


class LastOrder:
    """Answers "day of each person's last order strictly before day t" for many t (-10**6 when none)."""

    def __init__(self, person: np.ndarray, day: np.ndarray, n_people: int):
        self.n = n_people
        self.key = np.sort(person.astype(np.int64) * (1 << 20) + day)

    def before(self, day: int) -> np.ndarray:
        key = self.key
        people = np.arange(self.n, dtype=np.int64)
        pos = np.searchsorted(key, people * (1 << 20) + day, side="left") - 1
        hit = key[np.maximum(pos, 0)]
        found = (pos >= 0) & (hit >> 20 == people)
        return np.where(found, hit & ((1 << 20) - 1), -(10**6))


def last_order_before(order_person, order_day, n_people, day) -> np.ndarray:
    """Day of each person's last order strictly before ``day`` (-10**6 when none)."""
    return LastOrder(order_person, order_day, n_people).before(day)


def run_campaigns(people: People, cal: Calendar, schedule: pd.DataFrame, org_person, org_day, ev, cfg, rng):
    """Target, randomise and send every campaign; draw the treated people's responses.

    Adds the message and coupon events to ``ev``; returns (touches, induced orders) as column dicts; the touches
    carry each target's true effect (:mod:`features.simulate.effects`: ``tau``, ``alive``, ``gap``, ``p_caused``,
    ``effect_purchase``, ``effect_spend``), treated or not. Targeting uses each person's
    purchase history before the send (organic orders plus orders caused by earlier campaigns). Opted-out
    people are never messaged. Control members get a touch row (their would-be send time) and nothing else.
    """
    touches, induced = Rows(), Rows()
    # the account a campaign messages: the first held channel in MESSAGE_PRIORITY
    prio = np.array([MESSAGE_PRIORITY.index(c) for c in CHANNELS])
    rank = np.where(people.chan >= 0, prio[np.maximum(people.chan, 0)], 99)
    msg_slot = rank.argmin(axis=1)
    history = LastOrder(org_person, org_day, people.n)
    last_caused = np.full(people.n, -(10**6))  # last order caused by an earlier campaign
    for c, camp in enumerate(schedule.itertuples(index=False)):
        t = int(camp.day)
        last = np.maximum(history.before(t), np.where(last_caused < t, last_caused, -(10**6)))
        gap = t - last
        if camp.kind == "winback":
            eligible = (gap >= 120) & (gap <= 730)
        else:
            eligible = gap <= 365
        eligible &= ~people.opt_out & (people.birth_day < t)
        target = np.flatnonzero(eligible & (rng.random(people.n) < camp.share))
        cf = rng.uniform(*cfg.control_fraction)
        control = rng.random(len(target)) < cf
        slot = msg_slot[target]
        key = people.key_offset[target] + slot
        sent = t * DAY + 10 * 3600 + rng.integers(0, 7200, len(target))
        # the true effect of the send on every target (treated or not): deterministic, no random draw
        tau_send = send_tau(people.tau[target], gap[target], t - people.birth_day[target], camp.coupon,
                            people.spend_mean[target], people.chan[target, slot])
        alive_all = (people.death_day[target] > t) & (people.birth_day[target] < t)
        effects = send_effects(tau_send, alive_all, people.lam[target], people.mu[target],
                               people.spend_mean[target], t, cal.intensity, 1.0 - cal.refund - cal.cancel,
                               cal.discount, UPLIFT_DELAY, cfg.uplift_window_days)
        treated = target[~control]
        t_key, t_slot, t_sent = key[~control], slot[~control], sent[~control]
        alive = alive_all[~control]
        caused = alive & (rng.random(len(treated)) < tau_send[~control])
        delay = 1 + rng.choice(len(UPLIFT_DELAY), size=len(treated), p=UPLIFT_DELAY)
        ind_day = t + delay
        keep = caused & (ind_day < cal.n_days)
        last_caused[treated[keep]] = ind_day[keep]
        # responses of the treated: opens, clicks, coupon claims (redeems are attached to the caused orders)
        p_open = np.where(
            caused, 0.85, np.where(alive, people.open_prob[treated], 0.25 * people.open_prob[treated])
        )
        opened = rng.random(len(treated)) < p_open
        clicked = opened & (rng.random(len(treated)) < np.where(caused, 0.7, 0.25))
        claimed = clicked & (rng.random(len(treated)) < np.where(caused, 0.9, 0.4))
        t_open = t_sent + rng.exponential(4 * 3600, len(treated)).astype(np.int64)
        t_click = t_open + rng.integers(5, 600, len(treated))
        t_claim = t_click + rng.integers(5, 300, len(treated))
        for mask, ts, name in ((opened, t_open, "message_open"), (clicked, t_click, "message_click"),
                             (claimed, t_claim, "coupon_claim")):  # fmt: skip
            ev.add(t_key[mask], ts[mask], EV[name], campaign=c)
        redeemed = keep & claimed
        induced.add(
            person=treated[keep],
            day=ind_day[keep],
            slot=t_slot[keep],
            campaign=np.full(keep.sum(), c),
            redeem=redeemed[keep],
        )
        cost = np.zeros(len(target))
        cost[~control] = 0.05 + np.where(redeemed, camp.coupon, 0.0)
        touches.add(
            person=target, key=key, sent=sent, control=control, campaign=np.full(len(target), c), cost=cost,
            tau=tau_send, alive=alive_all, gap=gap[target], **effects,
        )
    return touches.concat(), induced.concat()


# --- events ---------------------------------------------------------------------------------------------------


def order_events(ev: EventRows, orders: dict[str, np.ndarray], people: People, cal: Calendar, cfg: SimConfig, rng,
                 redeem: np.ndarray) -> None:  # fmt: skip
    """Events around orders: views, searches and carts before online orders, a store visit with store orders,
    coupon claims and redemptions, shares and reviews after paid orders."""
    person, key, ts, day = orders["person"], orders["key"], orders["ts"], orders["day"]
    online = orders["channel"] != STORE
    paid = orders["status"] == 0
    n = len(person)

    def before(mask, mean_days, floor):
        return ts[mask] - (rng.exponential(mean_days * DAY, int(mask.sum())) + floor).astype(np.int64)

    # views in the days before an online order
    idx = np.repeat(np.arange(n), rng.poisson(people.views_per_order[person] * online))
    ev.add(key[idx], ts[idx] - (rng.exponential(1.3 * DAY, len(idx)) + 60).astype(np.int64), EV["view"])
    m = rng.random(n) < np.clip(people.cart_prob[person] + 0.2 * cal.festival[day], 0, 1) * online
    ev.add(key[m], before(m, 0.4, 30), EV["cart"])
    m = online & (rng.random(n) < 0.3)
    ev.add(key[m], before(m, 1.6, 120), EV["search"])
    m = ~online
    ev.add(key[m], ts[m] - rng.integers(300, 2400, int(m.sum())), EV["store_visit"])
    # coupons: festival orders often use a platform coupon; campaign orders carry the campaign coupon
    m = paid & (rng.random(n) < np.where(cal.festival[day], 0.35, 0.06) * (orders["campaign"] < 0))
    ev.add(key[m], before(m, 2.0, 60), EV["coupon_claim"])
    m = m | redeem
    ev.add(key[m], ts[m] + 1, EV["coupon_redeem"])
    # after paid orders
    m = paid & (rng.random(n) < cfg.review_prob)
    ev.add(key[m], ts[m] + rng.integers(3 * DAY, 10 * DAY, int(m.sum())), EV["review"])
    m = paid & (rng.random(n) < cfg.share_prob)
    ev.add(key[m], ts[m] + rng.integers(60, 2 * DAY, int(m.sum())), EV["share"])


def ongoing_events(ev: EventRows, people: People, cal: Calendar, cfg: SimConfig, rng) -> None:
    """Browsing while alive (and a trickle after dropout), livestream views of Douyin people, store visits."""
    n_days = cal.n_days
    soft = np.sqrt(cal.intensity)  # browsing follows the calendar less sharply than buying
    cum = np.concatenate([[0.0], np.cumsum(soft)])
    cum_hard = np.concatenate([[0.0], np.cumsum(cal.intensity)])
    b0 = np.clip(people.birth_day - 21, 0, n_days)
    alive_end = np.minimum(people.death_day, n_days)
    b1 = np.minimum(people.birth_day, n_days)
    b_end = np.clip(b1, b0, n_days)
    never = np.full(people.n, n_days)

    def browse(rate, day0, day1, curve, regularity=1.0):
        day0, day1 = np.minimum(day0, n_days), np.minimum(day1, n_days)
        if regularity == 1.0:
            who, day = poisson_days(rate, day0, day1, curve, rng)
        else:
            who, day = renewal_days(rate, day0, day1, curve, rng, regularity=regularity)
        return who, seconds_in_day(day, cal, rng)

    # browsing before the first order, habitual browsing while alive, and a trickle after dropout
    for rate, d0, d1, regularity in (
        (people.browse * 0.5, b0, b_end, 1.0),
        (people.browse, b1, alive_end, cfg.browse_regularity),
        (people.browse * cfg.browse_after_dropout, alive_end, never, 1.0),
    ):
        who, ts = browse(rate, d0, d1, cum, regularity)
        slot = pick_slot(people.chan_cum[who], rng.random(len(who)))
        chan = people.chan[who, slot]
        kind = np.searchsorted(np.cumsum([0.62, 0.2, 0.1, 0.08]), rng.random(len(who)), side="right")
        etype = np.array([EV["view"], EV["search"], EV["favorite"], EV["cart"], EV["view"]], np.int8)[kind]
        etype = np.where(chan == STORE, EV["store_visit"], etype)
        keep = (chan != STORE) | (rng.random(len(who)) < 0.35)
        ev.add((people.key_offset[who] + slot)[keep], ts[keep], etype[keep])
    # livestreams: people with a Douyin account, more during festivals
    has = people.chan == DOUYIN
    douyin_slot = has.argmax(axis=1)
    rate = np.where(has.any(axis=1), cfg.livestream_rate * people.chan_pref[:, DOUYIN], 0.0)
    rate = rate * np.sqrt(people.lam / cfg.lam_mean)
    for r, d0, d1 in ((rate, b1, alive_end), (rate * 0.05, alive_end, never)):
        w, t = browse(r, d0, d1, cum_hard)
        ev.add(people.key_offset[w] + douyin_slot[w], t, EV["livestream_view"])
    # store visits without a purchase
    has = people.chan == STORE
    store_slot = has.argmax(axis=1)
    rate = np.where(has.any(axis=1), cfg.store_visit_rate * people.chan_pref[:, STORE], 0.0)
    w, t = browse(rate, b1, alive_end, cum_hard)
    ev.add(people.key_offset[w] + store_slot[w], t, EV["store_visit"])
