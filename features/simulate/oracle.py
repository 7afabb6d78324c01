"""The oracle: true purchase probability, expected orders and spend over a horizon, from the latent state.

The simulator's purchase process (see :class:`features.simulate.config.SimConfig`): a person alive on day
``d`` places ``Poisson(lam · intensity[d])`` orders that day; each order is paid with probability
``paid_rate[d]`` (else refunded or cancelled) and its paid amount has mean ``spend_mean · (1 − discount[d])``.
Lifetimes are geometric in whole days: ``P(alive on d+1 | alive on d) = exp(−mu)``. Given the state on day
``a`` (``as_of``) the number of alive days ``M`` in the window ``[a, a+H)`` has
``P(M = m) = e^{−mu(m−1)}(1 − e^{−mu})`` for ``m < H`` and ``P(M = H) = e^{−mu(H−1)}``, so

    P(no paid order) = Σ_m P(M = m) · exp(−lam · Σ_{k<m} intensity[a+k] · paid_rate[a+k])

and expected paid orders are ``lam · Σ_k e^{−mu k} intensity[a+k] paid_rate[a+k]``. Campaign treatments
(optional ``touches``) add, for a person alive on the send day, an extra order with probability ``tau_send``
(per send, from ``truth_campaign_effects``; see :mod:`features.simulate.effects`) ``1..14`` days later on the messaged account; the oracle adds those within the window exactly, including
sends shortly before ``as_of``.

Each organic order picks its account independently from the person's channel weights, so the orders of any
subset of a person's accounts are again a Poisson process with ``lam`` scaled by the subset's weight. That
makes the oracle exact per One-ID ``person_id`` too (``key_to_person``), even when One-ID splits a person
into fragments or merges people (independent people combine as ``1 − Π(1 − p)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .activity import UPLIFT_DELAY
from .config import CHANNELS
from .festivals import calendar

REQUIRED = ("true_person", "lam", "mu", "spend_mean", "birth_date", "death_date", "observed_until", "tau")
OUTPUT = ("p_alive", "p_purchase", "expected_orders", "expected_spend")


def oracle(
    truth: pd.DataFrame,
    as_of,
    horizon_days: int,
    *,
    touches: pd.DataFrame | None = None,
    truth_keys: pd.DataFrame | None = None,
    effects: pd.DataFrame | None = None,
    key_to_person: pd.DataFrame | None = None,
    chunk_size: int = 20_000,
) -> pd.DataFrame:
    """True outcome distribution of every person already acquired before ``as_of``.

    Parameters
    ----------
    truth : DataFrame
        The simulator's ``truth`` table.
    as_of : str or Timestamp
        Start of the window (a day); only people whose first order is before it are returned.
    horizon_days : int
        Window length H in days: ``[as_of, as_of + H)``.
    touches : DataFrame, optional
        ``campaign_touches`` of the same simulation: treated sends shortly before or inside the window add
        their caused orders. Without it the oracle describes the organic process only (no campaign effect).
    truth_keys : DataFrame, optional
        The simulator's ``truth_keys``; required with ``touches`` or ``key_to_person``.
    effects : DataFrame, optional
        The simulator's ``truth_campaign_effects``: each treated send causes an order with its own probability
        ``tau_send`` (lifecycle, coupon depth and channel at the send). Without it every send of a person uses the
        person's base ``tau`` (exact only for data simulated before per-send effects existed).
    key_to_person : DataFrame, optional
        One-ID output (``customer_key``, ``person_id``): report per ``person_id``, counting only the orders
        on that person's accounts. Accounts missing from it are left out.
    chunk_size : int
        Rows per vectorised block (memory is about ``chunk_size * H * 8`` bytes per array).

    Returns
    -------
    DataFrame
        One row per true person (or per ``person_id`` with ``key_to_person``): ``true_person`` (with
        ``key_to_person``: ``person_id``, the smallest ``true_person`` in it and ``n_true_persons``);
        ``p_alive`` (1/0 from the simulator's state when ``as_of`` is within the simulated range, else the
        probability given the state at the end); ``p_purchase`` (probability of at least one paid order in
        the window); ``expected_orders`` (paid orders); ``expected_spend`` (paid amount, CNY); ``tau``
        (true uplift: the probability a treatment causes an extra order).
    """
    missing = [c for c in REQUIRED if c not in truth.columns]
    if missing:
        raise ValueError(f"oracle: truth is missing column(s) {missing}")
    if int(horizon_days) < 1:
        raise ValueError(f"oracle: horizon_days must be >= 1, got {horizon_days!r}")
    if (touches is not None or key_to_person is not None) and truth_keys is None:
        raise ValueError("oracle: touches and key_to_person need truth_keys (customer_key → true_person)")
    horizon = int(horizon_days)
    a = pd.Timestamp(as_of).normalize()
    people = truth[pd.to_datetime(truth["birth_date"]) < a].reset_index(drop=True)

    # units: whole people, or (true_person, person_id) fragments holding a share of the person's orders
    if key_to_person is None:
        unit_person = np.arange(len(people))
        share = np.ones(len(people))
        key_unit = None
        if truth_keys is not None:
            pos = pd.Index(people["true_person"]).get_indexer(truth_keys["true_person"])
            key_unit = pd.Series(pos, index=truth_keys["customer_key"].to_numpy())
            key_unit = key_unit[key_unit >= 0]
    else:
        for col in ("customer_key", "person_id"):
            if col not in key_to_person.columns:
                raise ValueError(f"oracle: key_to_person is missing column {col!r}")
        keys = truth_keys[["customer_key", "true_person", "channel"]].merge(
            key_to_person[["customer_key", "person_id"]], on="customer_key", how="inner"
        )
        keys["row"] = pd.Index(people["true_person"]).get_indexer(keys["true_person"])
        keys = keys[keys["row"] >= 0]
        weights = people[[f"p_{c}" for c in CHANNELS]].to_numpy(float)
        keys["w"] = weights[keys["row"].to_numpy(), pd.Index(CHANNELS).get_indexer(keys["channel"])]
        units = keys.groupby(["row", "person_id"], sort=True)["w"].sum().reset_index()
        unit_person = units["row"].to_numpy()
        share = units["w"].to_numpy()
        unit_index = pd.Series(
            np.arange(len(units)), index=pd.MultiIndex.from_frame(units[["row", "person_id"]])
        )
        key_unit = pd.Series(
            unit_index.reindex(pd.MultiIndex.from_frame(keys[["row", "person_id"]])).to_numpy(),
            index=keys["customer_key"].to_numpy(),
        )

    sends = _sends(people, unit_person, key_unit, touches, effects, a, horizon) if touches is not None else None
    result = _evaluate(people, unit_person, share, sends, a, horizon, chunk_size)
    tau = people["tau"].to_numpy(float)[unit_person]
    true_person = people["true_person"].to_numpy()[unit_person]
    if key_to_person is None:
        return pd.DataFrame({"true_person": true_person, **result, "tau": tau})
    frame = pd.DataFrame(
        {"person_id": units["person_id"].to_numpy(), "true_person": true_person, **result, "tau": tau}
    )
    frame["log_none"] = np.log1p(-np.minimum(frame["p_purchase"], 1 - 1e-15))
    out = frame.groupby("person_id", sort=True).agg(
        true_person=("true_person", "min"),
        n_true_persons=("true_person", "nunique"),
        p_alive=("p_alive", "max"),
        log_none=("log_none", "sum"),
        expected_orders=("expected_orders", "sum"),
        expected_spend=("expected_spend", "sum"),
        tau=("tau", "max"),
    )
    out["p_purchase"] = -np.expm1(out.pop("log_none"))
    return out.reset_index()[["person_id", "true_person", "n_true_persons", *OUTPUT, "tau"]]


def _evaluate(people, unit_person, share, sends, a, horizon, chunk_size) -> dict[str, np.ndarray]:
    """The closed forms of the module docstring for every unit (a person or a fragment of one)."""
    cal = calendar(a, a + pd.Timedelta(days=horizon - 1))
    g_win = (cal["intensity"] * cal["paid_rate"]).to_numpy()  # paid-order intensity per day
    v_win = (1.0 - cal["discount_rate"]).to_numpy()  # expected paid share of the list value
    lam = people["lam"].to_numpy(float)[unit_person] * share
    mu = people["mu"].to_numpy(float)[unit_person]
    spend = people["spend_mean"].to_numpy(float)[unit_person]
    death = pd.to_datetime(people["death_date"]).to_numpy()[unit_person]
    end = pd.to_datetime(people["observed_until"]).to_numpy()[unit_person]
    dead = ~pd.isna(death) & (death <= a.to_datetime64())
    # alive on day a: known inside the simulated range, else exp(-mu * days past the end) given alive then
    beyond = np.maximum((a.to_datetime64() - end) / np.timedelta64(1, "D"), 0)
    p_alive = np.where(dead, 0.0, np.exp(-mu * beyond))

    n = len(unit_person)
    p_none, e_orders, e_spend = np.empty(n), np.empty(n), np.empty(n)
    k = np.arange(horizon)
    m = np.arange(1, horizon + 1)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        lm, mm = lam[lo:hi, None], mu[lo:hi, None]
        surv = np.exp(-mm * k[None, :])  # P(alive on a+k | alive on a)
        cum_g = np.cumsum(lm * g_win[None, :], axis=1)  # intensity over the first m alive days
        log_extra = np.zeros((hi - lo, horizon + 1))  # log P(no caused order) over the first m alive days
        if sends is not None:
            rows, off, prob = sends["unit"], sends["offset"], sends["prob"]
            sel = (rows >= lo) & (rows < hi)
            # a send on day offset t >= 0 counts only if the person is alive then, i.e. M > t
            np.add.at(log_extra, (rows[sel] - lo, np.clip(off[sel] + 1, 0, horizon)), np.log1p(-prob[sel]))
            log_extra = np.cumsum(log_extra, axis=1)
        p_m = np.where(m < horizon, np.exp(-mm * (m - 1)) * (1 - np.exp(-mm)), np.exp(-mm * (horizon - 1)))
        p_none[lo:hi] = (p_m * np.exp(-cum_g + log_extra[:, 1:])).sum(axis=1)
        e_orders[lo:hi] = (lm * surv * g_win[None, :]).sum(axis=1)
        e_spend[lo:hi] = spend[lo:hi] * (lm * surv * (g_win * v_win)[None, :]).sum(axis=1)
    p_purchase = p_alive * (1.0 - p_none)
    e_orders *= p_alive
    e_spend *= p_alive
    if sends is not None:
        rows, off, prob, val = sends["unit"], sends["offset"], sends["prob"], sends["value"]
        before = off < 0
        # alive on the send day: certain for people alive on a (they were targeted after their first
        # order), read from the state for people already gone; later sends need survival until then
        alive_send = np.where(before, np.where(p_alive[rows] > 0, 1.0, sends["alive_before"]),
                              p_alive[rows] * np.exp(-mu[rows] * np.maximum(off, 0)))  # fmt: skip
        np.add.at(e_orders, rows, alive_send * prob)
        np.add.at(e_spend, rows, alive_send * val * spend[rows])
        # people gone by a can still receive an order caused by a send before a
        gone = before & (p_alive[rows] == 0)
        log_pre = np.zeros(n)
        np.add.at(log_pre, rows[gone], np.log1p(-prob[gone] * alive_send[gone]))
        p_purchase = np.where(p_alive == 0, -np.expm1(log_pre), p_purchase)
    return {
        "p_alive": p_alive,
        "p_purchase": p_purchase,
        "expected_orders": e_orders,
        "expected_spend": e_spend,
    }


def _sends(people, unit_person, key_unit, touches, effects, a, horizon) -> dict[str, np.ndarray]:
    """Treated sends within ``[a − 14, a + H)`` mapped to units: day offset from ``a``, probability of a
    caused paid order inside the window, its expected value factor, and (for sends before ``a``) whether
    the person was alive on the send day."""
    pre = len(UPLIFT_DELAY)
    cal = calendar(a - pd.Timedelta(days=2 * pre), a + pd.Timedelta(days=horizon + 2 * pre))
    paid = cal["paid_rate"].to_numpy()
    value = (paid * (1.0 - cal["discount_rate"])).to_numpy()
    base = 2 * pre  # index of day a in cal
    t = touches[touches["group"] == "treatment"]
    day = pd.to_datetime(t["sent_ts"]).dt.normalize()
    off = (day - a).dt.days.to_numpy()
    unit = key_unit.reindex(t["customer_key"].to_numpy()).to_numpy()
    keep = (off >= -pre) & (off < horizon) & ~pd.isna(unit)
    off, unit = off[keep], unit[keep].astype(np.int64)
    row = unit_person[unit]
    if effects is None:
        tau = people["tau"].to_numpy(float)[row]
    else:
        per_send = effects.set_index(["campaign_id", "customer_key"])["tau_send"]
        sent = pd.MultiIndex.from_arrays([t["campaign_id"].to_numpy()[keep], t["customer_key"].to_numpy()[keep]])
        tau = per_send.reindex(sent).to_numpy(float)
        if np.isnan(tau).any():
            raise ValueError(f"oracle: {int(np.isnan(tau).sum())} treated send(s) have no row in effects")
    prob, val = np.zeros(len(unit)), np.zeros(len(unit))
    for j, w in enumerate(UPLIFT_DELAY):  # the caused order lands on a + off + 1 + j
        d = off + 1 + j
        inside = (d >= 0) & (d < horizon)
        prob += np.where(inside, w * paid[base + d], 0.0)
        val += np.where(inside, w * value[base + d], 0.0)
    send = (a + pd.to_timedelta(off, unit="D")).to_numpy()
    death = pd.to_datetime(people["death_date"]).to_numpy()[row]
    born = pd.to_datetime(people["birth_date"]).to_numpy()[row] < send
    alive_before = (born & (pd.isna(death) | (death > send))).astype(float)
    return {"unit": unit, "offset": off, "prob": tau * prob, "value": tau * val, "alive_before": alive_before}
