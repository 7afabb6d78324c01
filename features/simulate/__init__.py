"""Omnichannel brand simulator: realistic tables with known ground truth.

``simulate(n, seed=...)`` returns the data-contract tables of a mid-sized beauty brand selling on Tmall, JD,
WeChat, Douyin and in stores, 2023-01-01 .. 2025-12-31 by default:

- ``orders``: order_id, customer_key, order_ts, amount (paid CNY), channel, status (paid | refunded |
  cancelled), discount (CNY off the list price), item_count, category, store_id (store orders only);
- ``events``: customer_key, event_ts, event_type (view, cart, favorite, search, coupon_claim, coupon_redeem,
  message_open, message_click, livestream_view, share, review, store_visit), channel, campaign_id;
- ``identities``: one row per customer_key: channel, phone (raw, messy formats), unionid, member_card,
  join_ts, linked_ts (the account's first use: when its identifiers become linkable), birth_year, gender, city, marketing_opt_out;
- ``campaign_touches``: campaign_id, customer_key, sent_ts, group (treatment | control), channel,
  offer_cost;

plus ground truth: ``truth`` (latent parameters per ``true_person``), ``truth_keys`` (customer_key →
true_person), ``truth_campaigns``, ``truth_campaign_effects`` (per campaign touch, treated or control: the
per-send probability ``tau_send`` of a caused order, ``alive_at_send``, ``days_since_last_order`` and the true
effect of treating the person on the probability of a paid order in the campaign's uplift window,
``effect_purchase``, and on expected paid spend, ``effect_spend``: the oracle uplift ranking) and, in dirty
mode, ``truth_dirty_rows``.

The generative model (all vectorised numpy, deterministic for a seed):

- people are acquired (first order) over the range with festival bumps; repeat orders follow a
  Pareto/NBD-like process: rate ``lam ~ Gamma`` times the daily calendar intensity (618, 双11, 双12,
  Chinese-New-Year dip, see :func:`calendar`) while alive, geometric lifetimes in days with hazard
  ``mu ~ Gamma``; order values are gamma–gamma around a person mean, discounts deeper at festivals;
- each person holds 1–3 channel accounts (``customer_key``) from a Dirichlet channel taste; phone, unionid
  and member card identify the person with per-channel missingness and never collide across people;
- behaviour events follow the latent state: views, searches and carts before orders; habitual browsing
  (about four views per expected order, with regular Gamma-renewal gaps) at a rate proportional to ``lam``
  that all but stops at dropout; livestreams for Douyin users, store visits for store users;
- campaigns target non-opted-out customers by recency, randomise a 10–20 % control group, and cause an extra
  order 1–14 days later with a per-send probability ``tau_send``: the person's base responsiveness ``tau``
  (message opening, price sensitivity, WeChat taste, low organic rate) times deterministic factors of the state
  at the send — lifecycle/recency (saturated right after an order, highest when lapsing, low once lapsed for a
  year, high for new members), coupon depth relative to the person's order value, and the messaged channel
  (:mod:`features.simulate.effects`). The factors draw no random numbers, so the random streams are those of a
  simulation with person-level ``tau`` (the organic order days are unchanged; later draws follow the caused
  orders).

:func:`oracle` turns the latent state into the true probability of a paid purchase, expected orders and
expected spend over any horizon; :func:`write_dataset` writes the tables.
"""

from .config import CATEGORIES, CHANNELS, EVENT_TYPES, GROUPS, STATUSES, SimConfig
from .core import simulate
from .festivals import calendar
from .oracle import oracle
from .writer import write_dataset

__all__ = [
    "simulate",
    "write_dataset",
    "oracle",
    "calendar",
    "SimConfig",
    "CHANNELS",
    "EVENT_TYPES",
    "STATUSES",
    "GROUPS",
    "CATEGORIES",
]
