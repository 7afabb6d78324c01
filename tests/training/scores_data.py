"""A synthetic scores frame for the targeting tests (shaped like ``training.scoring.score``'s output)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.rfm import SEGMENTS as RFM_SEGMENTS

STAGES = np.array(["new", "active", "at_risk", "lapsed", "reactivated"])
SEGMENTS = list(RFM_SEGMENTS.values())  # (Chinese, English) names of the 8 RFM segments


def make_scores(n: int, seed: int) -> pd.DataFrame:
    """A scores frame shaped like training.scoring.score's output, with random but plausible values."""
    rng = np.random.default_rng(seed)
    churn = rng.beta(2.0, 2.0, size=n)
    clv = rng.gamma(1.5, 400.0, size=n)
    eligible = rng.uniform(size=n) > 0.1
    seg = rng.integers(0, len(SEGMENTS), size=n)
    opt_out = (rng.uniform(size=n) < 0.05).astype(object)
    opt_out[rng.uniform(size=n) < 0.01] = None  # unknown consent
    p_alive = 1.0 - churn * rng.uniform(0.5, 1.0, size=n)
    p_alive[rng.uniform(size=n) < 0.05] = np.nan
    frame = pd.DataFrame(
        {
            "person_id": [f"p_{seed:03d}{i:07x}" for i in range(n)],
            "eligible": eligible,
            "ineligible_reason": np.where(eligible, None, "history shorter than 90 days"),
            "churn_probability": np.where(eligible, churn, np.nan),
            "clv_mean": np.where(eligible, clv, np.nan),
            "clv_p10": clv * 0.4,
            "clv_p90": clv * 1.9,
            "expected_orders": clv / 150.0,
            "p_alive": p_alive,
            "spend_365d": rng.gamma(1.0, 3000.0, size=n),
            "recency_days": rng.integers(1, 700, size=n),
            "orders": rng.integers(1, 30, size=n),
            "r_score": rng.integers(1, 6, size=n),
            "f_score": rng.integers(1, 6, size=n),
            "m_score": rng.integers(1, 6, size=n),
            "rfm_segment": [SEGMENTS[i][0] for i in seg],
            "rfm_segment_en": [SEGMENTS[i][1] for i in seg],
            "lifecycle_stage": STAGES[rng.integers(0, len(STAGES), size=n)],
            "marketing_opt_out": pd.Series(opt_out, dtype=object),
        }
    )
    return frame
