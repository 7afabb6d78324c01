"""The oracle: true purchase probability, expected orders and spend over a horizon, from the latent state.

The simulator's purchase process (see :class:`features.simulate.config.SimConfig`): a person alive on day
``d`` places ``Poisson(lam · intensity[d])`` orders that day; each order is paid with probability
``paid_rate[d]`` (else refunded or cancelled) and its paid amount has mean ``spend_mean · (1 − discount[d])``.
Lifetimes are geometric in whole days: ``P(alive on d+1 | alive on d) = exp(−mu)``. Given the state on day
``a`` (``as_of``) the number of alive days ``M`` in the window ``[a, a+H)`` has
``P(M = m) = e^{−mu(m−1)}(1 − e^{−mu})`` for ``m < H`` and ``P(M = H) = e^{−mu(H−1)}``, so

    P(no paid order) = Σ_m P(M = m) · exp(−lam · Σ_{k<m} intensity[a+k] · paid_rate[a+k])

and expected paid orders are ``lam · Σ_k e^{−mu k} intensity[a+k] paid_rate[a+k]``. Campaign treatments
(optional ``touches``) add, for a person alive on the send day, an extra order with probability ``tau``
``1..14`` days later; the oracle adds those within the window exactly, including sends shortly before
``as_of``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .activity import UPLIFT_DELAY
from .festivals import calendar

REQUIRED = ("true_person", "lam", "mu", "spend_mean", "birth_date", "death_date", "observed_until", "tau")


def oracle(
    truth: pd.DataFrame,
    as_of,
    horizon_days: int,
    *,
    touches: pd.DataFrame | None = None,
    truth_keys: pd.DataFrame | None = None,
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
        Required with ``touches`` (maps ``customer_key`` to ``true_person``).
    chunk_size : int
        People per vectorised block (memory is about ``chunk_size * H * 8`` bytes per array).

    Returns
    -------
    DataFrame
        One row per person: ``true_person``; ``p_alive`` (1/0 from the simulator's state when ``as_of`` is
        within the simulated range, else the probability given the state at the end); ``p_purchase``
        (probability of at least one paid order in the window); ``expected_orders`` (paid orders);
        ``expected_spend`` (paid amount, CNY); ``tau`` (true uplift: the probability a treatment causes an
        extra order).
    """
    missing = [c for c in REQUIRED if c not in truth.columns]
    if missing:
        raise ValueError(f"oracle: truth is missing column(s) {missing}")
    if int(horizon_days) < 1:
        raise ValueError(f"oracle: horizon_days must be >= 1, got {horizon_days!r}")
    if touches is not None and truth_keys is None:
        raise ValueError("oracle: touches need truth_keys to map customer_key to true_person")
    horizon = int(horizon_days)
    a = pd.Timestamp(as_of).normalize()
    pre = len(UPLIFT_DELAY)
    cal = calendar(a - pd.Timedelta(days=pre), a + pd.Timedelta(days=horizon + pre))
    g = (cal["intensity"] * cal["paid_rate"]).to_numpy()  # paid-order intensity per day
    value = (1.0 - cal["discount_rate"]).to_numpy()  # expected paid share of the list value
    g_win, v_win = g[pre : pre + horizon], value[pre : pre + horizon]

    people = truth[pd.to_datetime(truth["birth_date"]) < a]
    lam = people["lam"].to_numpy(float)
    mu = people["mu"].to_numpy(float)
    spend = people["spend_mean"].to_numpy(float)
    death = pd.to_datetime(people["death_date"])
    end = pd.to_datetime(people["observed_until"])
    # alive on day a: known when a is within the simulated range, else exp(-mu * days past the end)
    alive_known = (death.isna() | (death > a)).to_numpy()
    beyond = np.maximum((a - end).dt.days.to_numpy(), 0)
    p_alive = np.where(death.notna().to_numpy() & (death <= a).to_numpy(), 0.0, np.exp(-mu * beyond))
    p_alive = np.where(alive_known, p_alive, 0.0)

    n = len(people)
    p_none = np.empty(n)
    e_orders = np.empty(n)
    e_spend = np.empty(n)
    k = np.arange(horizon)
    # campaign sends that can cause orders in the window, as (person row, day offset from a, tau-scaled terms)
    sends = _sends(people, touches, truth_keys, a, horizon, pre) if touches is not None else None
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        lm, mm = lam[lo:hi, None], mu[lo:hi, None]
        surv = np.exp(-mm * k[None, :])  # P(alive on a+k | alive on a)
        cum_g = np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(lm * g_win[None, :], axis=1)], axis=1)
        log_extra = np.zeros((hi - lo, horizon + 1))  # log P(no caused order) accumulated over alive days
        if sends is not None:
            rows, off, prob = sends[0], sends[1], sends[2]
            sel = (rows >= lo) & (rows < hi)
            # a send on offset t >= 0 counts only if the person is alive then, i.e. M > t
            np.add.at(log_extra, (rows[sel] - lo, np.clip(off[sel] + 1, 0, horizon)), np.log1p(-prob[sel]))
            log_extra = np.cumsum(log_extra, axis=1)
        m = np.arange(1, horizon + 1)
        p_m = np.where(m < horizon, np.exp(-mm * (m - 1)) * (1 - np.exp(-mm)), np.exp(-mm * (horizon - 1)))
        p_none[lo:hi] = (p_m * np.exp(-cum_g[:, 1:] + log_extra[:, 1:])).sum(axis=1)
        e_orders[lo:hi] = (lm * surv * g_win[None, :]).sum(axis=1)
        e_spend[lo:hi] = spend[lo:hi] * (lm * surv * (g_win * v_win)[None, :]).sum(axis=1)
    p_purchase = p_alive * (1.0 - p_none)
    e_orders *= p_alive
    e_spend *= p_alive
    if sends is not None:
        rows, off, prob, val = sends[0], sends[1], sends[2], sends[3]
        # expected caused orders: alive at the send (relative to alive on a) times the in-window probability
        before = off < 0
        alive_send = np.where(before, np.where(p_alive[rows] > 0, 1.0, _alive_at_send(people, rows, off, a)),
                              p_alive[rows] * np.exp(-mu[rows] * np.maximum(off, 0)))  # fmt: skip
        np.add.at(e_orders, rows, alive_send * prob)
        np.add.at(e_spend, rows, alive_send * val * spend[rows])
        # people dead on a can still receive an order caused by a send before a
        dead_before = before & (p_alive[rows] == 0)
        log_pre = np.zeros(n)
        np.add.at(log_pre, rows[dead_before], np.log1p(-prob[dead_before] * alive_send[dead_before]))
        p_purchase = np.where(p_alive == 0, 1.0 - np.exp(log_pre), p_purchase)
    return pd.DataFrame(
        {
            "true_person": people["true_person"].to_numpy(),
            "p_alive": p_alive,
            "p_purchase": p_purchase,
            "expected_orders": e_orders,
            "expected_spend": e_spend,
            "tau": people["tau"].to_numpy(float),
        }
    )


def _alive_at_send(people: pd.DataFrame, rows: np.ndarray, off: np.ndarray, a: pd.Timestamp) -> np.ndarray:
    """1/0: was the person alive on the send day ``a + off`` (off < 0)?"""
    death = pd.to_datetime(people["death_date"]).to_numpy()[rows]
    send = (a + pd.to_timedelta(off, unit="D")).to_numpy()
    born = pd.to_datetime(people["birth_date"]).to_numpy()[rows] < send
    return (born & (pd.isna(death) | (death > send))).astype(float)


def _sends(people, touches, truth_keys, a, horizon, pre):
    """Treated sends within ``[a − 14, a + H)``: (row in ``people``, day offset, P(caused paid order in the
    window), expected value factor)."""
    cal = calendar(a - pd.Timedelta(days=2 * pre), a + pd.Timedelta(days=horizon + 2 * pre))
    paid = cal["paid_rate"].to_numpy()
    value = (paid * (1.0 - cal["discount_rate"])).to_numpy()
    base = 2 * pre  # index of day a in cal
    t = touches[touches["group"] == "treatment"][["customer_key", "sent_ts"]]
    t = t.merge(truth_keys[["customer_key", "true_person"]], on="customer_key", how="inner")
    day = pd.to_datetime(t["sent_ts"]).dt.normalize()
    off = ((day - a).dt.days).to_numpy()
    keep = (off >= -pre) & (off < horizon)
    t, off = t[keep], off[keep]
    pos = pd.Index(people["true_person"]).get_indexer(t["true_person"])
    ok = pos >= 0
    pos, off = pos[ok], off[ok]
    tau = people["tau"].to_numpy(float)[pos]
    prob = np.zeros(len(pos))
    val = np.zeros(len(pos))
    for j, w in enumerate(UPLIFT_DELAY):  # caused order lands on a + off + 1 + j
        d = off + 1 + j
        inside = (d >= 0) & (d < horizon)
        prob += np.where(inside, w * paid[base + d], 0.0)
        val += np.where(inside, w * value[base + d], 0.0)
    return pos, off, tau * prob, tau * val
