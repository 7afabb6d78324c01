"""Parameters of the simulated brand. Defaults give about 10 orders and 30 events per person over 3 years."""

from __future__ import annotations

from dataclasses import dataclass, field

from features import vocab

#: The subset of ``features.vocab.CHANNELS`` the simulated brand sells on.
CHANNELS = vocab.subset(("tmall", "jd", "wechat", "douyin", "store"), vocab.CHANNELS, "channel")
EVENT_TYPES = vocab.EVENT_TYPES
STATUSES = vocab.STATUSES
GROUPS = vocab.GROUPS

#: A beauty and personal-care brand: category and its list-price level relative to the person's average.
CATEGORIES = {
    "serum": 1.6,
    "cream": 1.3,
    "cleanser": 0.55,
    "toner": 0.8,
    "mask": 0.5,
    "sunscreen": 0.75,
    "lipstick": 0.9,
    "foundation": 1.1,
    "fragrance": 1.9,
    "haircare": 0.6,
    "bodycare": 0.6,
    "mens": 0.8,
    "gift_set": 2.4,
}

#: Cities with a weight (share of people) and a spend multiplier (tier-1 cities spend more).
CITIES = {
    "上海": (0.09, 1.30),
    "北京": (0.08, 1.30),
    "深圳": (0.06, 1.25),
    "广州": (0.06, 1.20),
    "杭州": (0.06, 1.15),
    "成都": (0.06, 1.00),
    "南京": (0.045, 1.05),
    "武汉": (0.045, 1.00),
    "重庆": (0.045, 0.95),
    "西安": (0.04, 0.95),
    "苏州": (0.04, 1.05),
    "天津": (0.035, 0.95),
    "长沙": (0.035, 0.95),
    "郑州": (0.035, 0.90),
    "青岛": (0.03, 0.95),
    "厦门": (0.025, 1.05),
    "沈阳": (0.03, 0.85),
    "昆明": (0.025, 0.85),
    "合肥": (0.03, 0.90),
    "福州": (0.025, 0.95),
    "哈尔滨": (0.025, 0.85),
    "南宁": (0.02, 0.80),
    "贵阳": (0.02, 0.80),
    "石家庄": (0.025, 0.80),
    "温州": (0.02, 0.95),
    "佛山": (0.025, 1.00),
    "东莞": (0.025, 0.95),
}


@dataclass
class SimConfig:
    """Knobs of the simulated brand; the defaults describe a mid-sized beauty brand.

    Rates are per day. Purchases follow a Pareto/NBD-like process: person ``i`` buys at rate
    ``lam_i * intensity(day)`` while alive; lifetimes are geometric in whole days with daily dropout hazard
    ``mu_i`` (``P(alive tomorrow | alive today) = exp(-mu_i)``); ``lam ~ Gamma(lam_shape, lam_mean/lam_shape)``
    and ``mu ~ Gamma(mu_shape, mu_mean/mu_shape)``. Order values are gamma–gamma: the person's mean list
    value ``spend_mean_i = spend_mean * (spend_q - 1) / nu_i`` with ``nu_i ~ Gamma(spend_q, 1)`` (so the
    population mean is ``spend_mean``), times a city and age factor; each order is
    ``spend_mean_i * Gamma(spend_shape, 1/spend_shape)`` times the category's price level relative to the
    person's average, less a discount whose mean depends on the day.

    Habitual browsing (views, searches, favourites, carts; store visits for store accounts) runs while the
    person is alive at ``browse_rate * taste * (browse_floor + lam_i / lam_mean)`` events per day, with
    ``taste ~ Gamma(browse_shape, 1/browse_shape)`` and Gamma(``browse_regularity``) gaps (a habit, less
    random than Poisson), and at ``browse_after_dropout`` of that rate after dropout: about four views per
    expected order, so engagement tells an alive low-frequency buyer from a lapsed one. ``views_per_order``
    more views come in the days before each online order.
    """

    lam_shape: float = 0.85
    lam_mean: float = 0.025
    mu_shape: float = 1.4
    mu_mean: float = 1.0 / 650.0
    spend_shape: float = 5.0
    spend_q: float = 3.2
    spend_mean: float = 230.0
    channel_popularity: dict[str, float] = field(
        default_factory=lambda: {"tmall": 0.34, "jd": 0.17, "wechat": 0.2, "douyin": 0.17, "store": 0.12}
    )
    channel_concentration: float = 1.2
    n_channels_probs: tuple[float, float, float] = (0.5, 0.33, 0.17)
    category_concentration: float = 0.6
    favourite_category_share: float = 0.85
    opt_out_rate: float = 0.05
    # Missingness of each identifier on a key, by the key's channel (probability the field is empty).
    phone_missing: dict[str, float] = field(
        default_factory=lambda: {"tmall": 0.35, "jd": 0.3, "wechat": 0.3, "douyin": 0.5, "store": 0.05}
    )
    unionid_missing: dict[str, float] = field(
        default_factory=lambda: {"tmall": 1.0, "jd": 1.0, "wechat": 0.03, "douyin": 0.6, "store": 1.0}
    )
    member_card_missing: dict[str, float] = field(
        default_factory=lambda: {"tmall": 1.0, "jd": 1.0, "wechat": 0.45, "douyin": 1.0, "store": 0.08}
    )
    profile_missing: dict[str, float] = field(
        default_factory=lambda: {"tmall": 0.5, "jd": 0.45, "wechat": 0.25, "douyin": 0.55, "store": 0.1}
    )
    n_stores: int = 180
    # Behaviour
    views_per_order: float = 0.6
    browse_rate: float = 0.1
    browse_floor: float = 0.1
    browse_shape: float = 30.0
    browse_regularity: float = 4.0
    browse_after_dropout: float = 0.01
    livestream_rate: float = 0.03
    store_visit_rate: float = 0.012
    review_prob: float = 0.07
    share_prob: float = 0.025
    # Campaigns
    campaigns_per_year: int = 4
    control_fraction: tuple[float, float] = (0.1, 0.2)
    uplift_mean: float = 0.08
    uplift_window_days: int = 14
