"""Seeded synthetic experiment exports for the uplift tests: one row per person, features, group, outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd


def experiment_table(n: int = 6000, *, effect: bool = True, random_state: int = 0) -> pd.DataFrame:
    """A randomised email test: ``group`` is control / mail_a / mail_b (a third each), ``converted`` 0/1.

    Features: ``recency_days`` and ``spend_12m`` (numbers), ``channel`` and ``tier`` (text), ``customer_id``
    (an identifier). With ``effect`` the mailing moves only recent members of the app channel (+25 points of
    conversion) and puts off 钻石 members a little (−5 points): a heterogeneous effect that a ranking by predicted
    uplift can find. Without it, the outcome does not depend on the group at all.
    """
    rng = np.random.default_rng(random_state)
    recency = rng.integers(1, 365, n)
    spend = rng.gamma(2.0, 300.0, n).round(2)
    channel = rng.choice(["app", "store", "web"], n, p=[0.3, 0.4, 0.3])
    tier = rng.choice(["普通", "银卡", "钻石"], n, p=[0.6, 0.3, 0.1])
    group = rng.choice(["control", "mail_a", "mail_b"], n)
    base = 0.05 + 0.10 * (recency < 90) + 0.05 * (spend > 600)
    lift = np.zeros(n)
    if effect:
        lift = 0.25 * ((recency < 120) & (channel == "app")) - 0.05 * (tier == "钻石")
    p = np.clip(base + lift * (group != "control"), 0, 1)
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)], "recency_days": recency, "spend_12m": spend,
        "channel": channel, "tier": tier, "group": group, "converted": (rng.random(n) < p).astype(int),
    })
