"""Latent people (purchase rate, lifetime, spend level, channel and category taste) and their channel accounts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .config import CATEGORIES, CHANNELS, CITIES, SimConfig

MAX_KEYS = 3
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass
class People:
    """One entry per true person (arrays of length n) plus their channel accounts (keys)."""

    n: int
    lam: np.ndarray  # repeat-purchase rate per day (orders of any status), before calendar intensity
    mu: np.ndarray  # daily dropout hazard
    spend_mean: np.ndarray  # mean list value of an order (CNY, before discount)
    birth_day: np.ndarray  # day index of the first order
    death_day: np.ndarray  # first day no longer alive (may lie beyond the simulated range)
    chan: np.ndarray  # (n, 3) channel codes of the person's accounts, -1 = none
    chan_cum: np.ndarray  # (n, 3) cumulative order-channel weights over those accounts
    chan_pref: np.ndarray  # (n, 5) share of orders per channel (0 for unused channels)
    n_keys: np.ndarray
    key_offset: np.ndarray  # index of the person's first key in the key arrays
    fav_cat: np.ndarray  # (n, 3) favourite category codes
    fav_cum: np.ndarray  # (n, 3) cumulative weights over favourites
    cat_norm: np.ndarray  # expected category price level for the person (keeps the person mean exact)
    views_per_order: np.ndarray
    cart_prob: np.ndarray
    browse: np.ndarray  # ongoing browsing events per alive day
    open_prob: np.ndarray  # probability of opening a campaign message while alive
    tau: np.ndarray  # probability a campaign treatment causes an extra order (true uplift)
    opt_out: np.ndarray
    birth_year: np.ndarray
    gender: np.ndarray  # 0 female, 1 male
    city: np.ndarray  # city code
    home_store: np.ndarray
    # keys
    key_person: np.ndarray
    key_channel: np.ndarray


def draw_people(
    n: int, n_days: int, acquisition: np.ndarray, cfg: SimConfig, rng: np.random.Generator
) -> People:
    """Draw the latent population.

    Parameters
    ----------
    n : int
        Number of people.
    n_days : int
        Days in the simulated range.
    acquisition : ndarray
        Relative acquisition intensity per day (length ``n_days``).
    cfg : SimConfig
        Parameters.
    rng : Generator
        Random source.
    """
    # demographics first: they shift rates and spend a little, so profiles carry lookalike signal
    city_names = list(CITIES)
    city_w = np.array([CITIES[c][0] for c in city_names])
    city = rng.choice(len(city_names), size=n, p=city_w / city_w.sum())
    city_spend = np.array([CITIES[c][1] for c in city_names])[city]
    gender = (rng.random(n) < 0.22).astype(np.int8)
    age = np.clip(rng.normal(32, 8, n), 18, 70)
    birth_year = (2024 - age).astype(np.int32)
    age_spend = np.where((age >= 27) & (age <= 42), 1.12, 0.92)

    lam = rng.gamma(cfg.lam_shape, cfg.lam_mean / cfg.lam_shape, n) * np.where(gender == 0, 1.08, 0.72)
    mu = rng.gamma(cfg.mu_shape, cfg.mu_mean / cfg.mu_shape, n)
    nu = rng.gamma(cfg.spend_q, 1.0, n)
    spend_mean = cfg.spend_mean * (cfg.spend_q - 1.0) / nu * city_spend * age_spend

    # acquisition day (first order), festival bumps come from the acquisition intensity
    cum = np.concatenate([[0.0], np.cumsum(acquisition)])
    birth_day = np.searchsorted(cum, rng.random(n) * cum[-1], side="right") - 1
    lifetime = 1 + np.floor(rng.exponential(1.0, n) / mu).astype(np.int64)
    death_day = birth_day + np.minimum(lifetime, 10 * n_days)

    # channels: Dirichlet taste over the five channels, the person uses their top 1-3
    pop = np.array([cfg.channel_popularity[c] for c in CHANNELS])
    pref = rng.dirichlet(pop / pop.sum() * len(CHANNELS) * cfg.channel_concentration, n)
    n_keys = rng.choice(np.arange(1, MAX_KEYS + 1), size=n, p=np.asarray(cfg.n_channels_probs))
    order = np.argsort(-pref, axis=1)[:, :MAX_KEYS]
    chan = np.where(np.arange(MAX_KEYS)[None, :] < n_keys[:, None], order, -1)
    w = np.where(chan >= 0, np.take_along_axis(pref, np.maximum(order, 0), axis=1), 0.0)
    w = w / w.sum(axis=1, keepdims=True)
    chan_cum = np.cumsum(w, axis=1)
    chan_cum[np.arange(n), n_keys - 1] = 1.0
    chan_pref = np.zeros((n, len(CHANNELS)))
    for j in range(MAX_KEYS):
        ok = chan[:, j] >= 0
        chan_pref[np.flatnonzero(ok), chan[ok, j]] = w[ok, j]
    key_offset = np.concatenate([[0], np.cumsum(n_keys)[:-1]])
    key_person = np.repeat(np.arange(n), n_keys)
    key_slot = np.arange(len(key_person)) - key_offset[key_person]
    key_channel = chan[key_person, key_slot]

    # categories: three favourites with Dirichlet weights, the rest of the catalogue occasionally
    n_cat = len(CATEGORIES)
    cat_level = np.array(list(CATEGORIES.values()))
    fav_cat = np.argsort(rng.random((n, n_cat)), axis=1)[:, :3]
    fav_w = rng.dirichlet(np.full(3, cfg.category_concentration * 3), n)
    fav_cum = np.cumsum(fav_w, axis=1)
    fav_cum[:, -1] = 1.0
    share = cfg.favourite_category_share
    cat_norm = share * (fav_w * cat_level[fav_cat]).sum(axis=1) + (1 - share) * cat_level.mean()

    # behaviour traits tied to the latent state
    views_per_order = rng.gamma(2.0, cfg.views_per_order / 2.0, n)
    cart_prob = rng.beta(3.0, 3.0, n)
    # browsing tracks purchase intent: proportional to the rate, with a person-level taste for browsing
    browse = cfg.browse_rate * rng.gamma(cfg.browse_shape, 1.0 / cfg.browse_shape, n) * (cfg.browse_floor + lam / cfg.lam_mean)
    open_prob = rng.beta(2.0, 5.0, n)
    wechat_share = chan_pref[:, CHANNELS.index("wechat")]
    price_sens = (cfg.spend_mean / spend_mean) ** 0.3
    # true uplift: higher for people who read messages, price-sensitive people, WeChat users and people
    # who would not buy soon anyway (low rate); relative factors average about 1 around uplift_mean
    responsiveness = open_prob / (2.0 / 7.0) * price_sens * (0.6 + 0.8 * wechat_share)
    tau = np.clip(cfg.uplift_mean * responsiveness * 2.0 / (1.0 + lam / cfg.lam_mean), 0.0, 0.6)
    opt_out = rng.random(n) < cfg.opt_out_rate
    # stores: a home store in the person's city when the brand has one there
    store_city = rng.choice(len(city_names), size=cfg.n_stores, p=city_w / city_w.sum())
    order_st = np.argsort(store_city, kind="stable")
    first = np.searchsorted(store_city[order_st], city, side="left")
    last = np.searchsorted(store_city[order_st], city, side="right")
    has = last > first
    pick = first + np.floor(rng.random(n) * np.maximum(last - first, 1)).astype(np.int64)
    home_store = np.where(has, order_st[np.minimum(pick, cfg.n_stores - 1)], rng.integers(0, cfg.n_stores, n))

    return People(
        n=n, lam=lam, mu=mu, spend_mean=spend_mean, birth_day=birth_day, death_day=death_day,
        chan=chan, chan_cum=chan_cum, chan_pref=chan_pref, n_keys=n_keys, key_offset=key_offset,
        fav_cat=fav_cat, fav_cum=fav_cum, cat_norm=cat_norm, views_per_order=views_per_order,
        cart_prob=cart_prob, browse=browse, open_prob=open_prob, tau=tau, opt_out=opt_out,
        birth_year=birth_year, gender=gender, city=city, home_store=home_store,
        key_person=key_person, key_channel=key_channel,
    )  # fmt: skip


def pick_slot(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the first cumulative weight above ``u`` per row (rows of ``cum`` end at 1)."""
    return (u[:, None] >= cum).sum(axis=1).clip(0, cum.shape[1] - 1)


# --- identifiers: bijective scrambles guarantee uniqueness across people --------------------------------------


def _mulmod(idx: np.ndarray, a: int, b: int, modulus: int) -> np.ndarray:
    """(a·idx + b) mod modulus in int64 without overflow (modulus ≤ 2**48; Horner over 12-bit chunks of a)."""
    idx = idx.astype(np.int64) % modulus
    r = np.zeros_like(idx)
    for shift in range(36, -1, -12):
        r = (r * (1 << 12) + idx * ((a >> shift) & 0xFFF)) % modulus
    return (r + b) % modulus


def scrambled(
    idx: np.ndarray, modulus: int, rng: np.random.Generator, forbidden: tuple[int, ...]
) -> np.ndarray:
    """A random bijection of ``idx`` onto ``[0, modulus)`` of the form (a·x + b) mod m with a coprime to m."""
    while True:
        a = int(rng.integers(modulus // 3, modulus - 1))
        if all(a % p for p in forbidden):
            break
    b = int(rng.integers(0, modulus))
    return _mulmod(idx, a, b, modulus)


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """pyarrow may return chunked arrays for large inputs; the simulator wants one contiguous array."""
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def key_strings(people: People, rng: np.random.Generator) -> pa.Array:
    """``"<channel>:<12 hex>"`` per key, unique."""
    n_keys = len(people.key_person)
    code = scrambled(np.arange(n_keys), 1 << 48, rng, (2,))
    shifts = np.arange(44, -1, -4, dtype=np.int64)
    digits = _HEX[(code[:, None] >> shifts[None, :]) & 0xF]
    hexes = pa.array(np.ascontiguousarray(digits).view("S12").ravel()).cast(pa.string())
    chans = pa.array(list(CHANNELS), pa.string()).take(pa.array(people.key_channel.astype(np.int64)))
    return _flat(pc.binary_join_element_wise(_flat(chans), _flat(hexes), ":"))


def phone_numbers(n: int, rng: np.random.Generator) -> np.ndarray:
    """One Chinese mobile number per person, 1[3-9]XXXXXXXXX, unique."""
    v = scrambled(np.arange(n), 7 * 10**9, rng, (2, 5, 7))
    return 10**10 + (3 + v // 10**9) * 10**9 + v % 10**9


def format_phones(numbers: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Messy renderings of the same numbers: "+86 138-0013-8000", "8613800138000", "138 0013 8000", ..."""
    s = pa.array(numbers).cast(pa.string())
    a = pc.utf8_slice_codeunits(s, 0, 3)
    b = pc.utf8_slice_codeunits(s, 3, 7)
    c = pc.utf8_slice_codeunits(s, 7, 11)
    dashed = pc.binary_join_element_wise(a, b, c, "-")
    spaced = pc.binary_join_element_wise(a, b, c, " ")
    variants = [
        s,
        pc.binary_join_element_wise("+86 ", dashed, ""),
        pc.binary_join_element_wise("86", s, ""),
        spaced,
        pc.binary_join_element_wise("+86", s, ""),
        dashed,
    ]
    which = rng.choice(len(variants), size=len(numbers), p=[0.4, 0.15, 0.12, 0.13, 0.1, 0.1])
    return _flat(pc.choose(pa.array(which.astype(np.int8)), *[_flat(v) for v in variants]))


def unionids(n: int, rng: np.random.Generator) -> pa.Array:
    """WeChat-style unionids: ``"o"`` + 27 URL-safe characters, the first 8 a unique code of the person."""
    code = scrambled(np.arange(n), 1 << 48, rng, (2,))
    shifts = np.arange(42, -1, -6, dtype=np.int64)
    head = _B64[(code[:, None] >> shifts[None, :]) & 0x3F]
    tail = _B64[rng.integers(0, 64, size=(n, 19))]
    chars = np.concatenate([np.full((n, 1), ord("o"), np.uint8), head, tail], axis=1)
    return _flat(pa.array(np.ascontiguousarray(chars).view("S28").ravel()).cast(pa.string()))


def member_cards(n: int, rng: np.random.Generator) -> pa.Array:
    """Membership card numbers ``"M"`` + 10 digits, unique per person."""
    v = scrambled(np.arange(n), 10**10, rng, (2, 5))
    return _flat(pc.binary_join_element_wise("M", pc.utf8_lpad(pa.array(v).cast(pa.string()), 10, "0"), ""))
