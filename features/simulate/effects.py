"""The true effect of one campaign send on one person: the simulator's uplift truth.

A treated person alive on the send day ``t`` gets an extra order, ``1..14`` days later
(:data:`features.simulate.activity.UPLIFT_DELAY`), with probability

    tau_send = clip(tau · lifecycle(recency, tenure) · price(coupon / spend level) · channel(messaged account), 0, 0.8)

where ``tau`` is the person's base responsiveness (``truth.tau``: reads messages, price-sensitive, WeChat taste,
low organic rate) and the factors depend on the state at the send, all deterministic (no random draw):

* **lifecycle / recency** (days since the last order ``gap``, days since the first ``tenure``): people who just
  bought (``gap < 30``) are saturated (×0.45); new members (``tenure < 90``) ×1.4; active (30–120 days) ×1.1;
  lapsing (120–365 days) ×1.35, the people a reminder moves most; lapsed beyond a year ×0.7;
* **price sensitivity**: ``sqrt(coupon / spend_mean / 0.2)`` clipped to [0.5, 2]: a 30 CNY coupon moves a
  person whose orders average 150 CNY more than one whose orders average 600 CNY;
* **channel** of the messaged account (:data:`CHANNEL_EFFECT`): WeChat and store (member) messages work
  better than marketplace pushes.

:func:`send_effects` turns ``tau_send`` into what the brand can observe, over the uplift window (the rest of the
send day after the send and the ``W = uplift_window_days`` days after it): the effect on the probability of a
paid order (the caused order is paid, and the person would not have bought organically in the window anyway)
and on expected paid spend.
"""

from __future__ import annotations

import numpy as np

from .config import CHANNELS

#: Relative effect of a message by the channel of the account it goes to.
CHANNEL_EFFECT = {"tmall": 0.85, "jd": 0.75, "wechat": 1.25, "douyin": 1.0, "store": 1.15}
#: The cap of the per-send probability of a caused order.
TAU_SEND_MAX = 0.8
#: Share of the send day's orders that fall after the send (sends go out 10:00–12:00; hour profile of
#: ``features.simulate.festivals``: about 60 % of a day's orders come after 11:00).
SEND_DAY_REST = 0.6


def lifecycle_factor(gap: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """The effect multiplier of the person's lifecycle stage at the send (days since last / first order)."""
    return np.select([tenure < 90, gap < 30, gap < 120, gap < 365], [1.4, 0.45, 1.1, 1.35], 0.7)


def price_factor(coupon: float, spend_mean: np.ndarray) -> np.ndarray:
    """The effect multiplier of the coupon's depth relative to the person's usual order value."""
    return np.sqrt(np.clip(coupon / spend_mean / 0.2, 0.25, 4.0))


def channel_factor(chan: np.ndarray) -> np.ndarray:
    """The effect multiplier of the messaged account's channel (channel codes of ``CHANNELS``)."""
    return np.array([CHANNEL_EFFECT[c] for c in CHANNELS])[chan]


def send_tau(tau: np.ndarray, gap: np.ndarray, tenure: np.ndarray, coupon: float, spend_mean: np.ndarray,
             chan: np.ndarray) -> np.ndarray:
    """Per-send probability that a treatment causes an extra order (see the module docstring)."""
    factor = lifecycle_factor(gap, tenure) * price_factor(coupon, spend_mean) * channel_factor(chan)
    return np.clip(tau * factor, 0.0, TAU_SEND_MAX)


def send_effects(tau_send: np.ndarray, alive: np.ndarray, lam: np.ndarray, mu: np.ndarray,
                 spend_mean: np.ndarray, day: int, intensity: np.ndarray, paid: np.ndarray,
                 discount: np.ndarray, delay: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """True effects of a send on day ``day`` over the uplift window (people as arrays of equal length).

    Returns ``p_caused`` (a caused *paid* order in the window), ``effect_purchase`` (treated − untreated
    probability of at least one paid order in the window: the caused order only matters when no organic paid
    order comes anyway) and ``effect_spend`` (expected extra paid spend, CNY). Zero for people not alive at the
    send. ``delay`` is the distribution of the caused order's delay (days 1..len(delay)); the window must
    cover it.
    """
    if len(delay) > window:
        raise ValueError(f"the uplift window ({window} days) must cover the caused-order delay ({len(delay)} days)")
    days = day + 1 + np.arange(len(delay))
    p_paid = float((delay * paid[days]).sum())
    value = float((delay * paid[days] * (1.0 - discount[days])).sum())
    on = np.where(alive, tau_send, 0.0)
    # organic paid orders in the window given alive on the send day: M alive days, P(M = m) geometric
    span = np.arange(day, day + window + 1)
    g = intensity[span] * paid[span]
    g[0] *= SEND_DAY_REST
    cum_g = np.cumsum(lam[:, None] * g[None, :], axis=1)
    m = np.arange(1, window + 2)
    mm = mu[:, None]
    p_m = np.where(m <= window, np.exp(-mm * (m - 1)) * (1 - np.exp(-mm)), np.exp(-mm * window))
    p_none = (p_m * np.exp(-cum_g)).sum(axis=1)
    return {"p_caused": on * p_paid, "effect_purchase": on * p_paid * p_none,
            "effect_spend": on * value * spend_mean}
