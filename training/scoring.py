"""The one scoring path: batch scoring, the backtest and the HTTP service all call :func:`score`.

Given a feature snapshot and the churn and CLV models, it returns one row per person with the churn probability,
CLV with its interval, expected orders, P(alive), RFM scores and segment, lifecycle stage, member tier and action
segment, and (optionally) the top reasons behind the churn score. People who cannot be scored honestly (no paid
order before ``as_of``, or a first order too recent) come back with ``eligible=False`` and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import spec
from training.churn import ChurnModel
from training.clv import CLVModel
from training.decisions.tiers import assign_tiers, load_tier_rules

PASSTHROUGH = spec.passthrough_columns()
SCORE_COLUMNS = (
    "person_id", "eligible", "ineligible_reason", "churn_probability", "clv_mean", "clv_p10", "clv_p90",
    "expected_orders", "p_alive", "expected_next_order_date",
)
#: Columns naming each model's horizon in days (the same on every row).
HORIZON_COLUMNS = ("churn_horizon_days", "clv_horizon_days")


@dataclass
class Models:
    """The models scoring needs, with the registry versions they came from (None when not registered)."""

    churn: ChurnModel
    clv: CLVModel
    churn_version: str | None = None
    clv_version: str | None = None

    @property
    def versions(self) -> dict[str, str | None]:
        return {"churn": self.churn_version, "clv": self.clv_version}


def eligibility(features: pd.DataFrame, *, min_tenure_days: int = 7) -> pd.Series:
    """Why each person cannot be scored (``None`` when they can)."""
    reason = pd.Series(None, index=features.index, dtype=object)
    orders = features["orders"].fillna(0)
    reason[orders < 1] = "no paid order before as_of"
    too_new = (orders >= 1) & (features["tenure_days"].fillna(0) < min_tenure_days)
    reason[too_new] = f"first order less than {min_tenure_days} days before as_of"
    return reason


def eligibility_table(reasons: pd.Series) -> pd.DataFrame:
    """Who is scored and who is not, and why: one row per outcome (``status``, ``reason``, ``people``, ``share``).

    ``reasons`` is :func:`eligibility`'s (or ``score``'s ``ineligible_reason``): ``None`` for people scored.
    The scored row comes first, then the reasons, most people first.
    """
    n = len(reasons)
    scored = int(reasons.isna().sum())
    counts = reasons.dropna().value_counts()
    rows = [("scored", "", scored)] + [("not scored", str(r), int(c)) for r, c in counts.items()]
    table = pd.DataFrame(rows, columns=["status", "reason", "people"])
    table["share"] = table["people"] / n if n else 0.0
    return table


def score(features: pd.DataFrame, models: Models, *, as_of=None, tier_rules=None, clv_cut: float | None = None,
          with_reasons: bool = False, with_intervals: bool = True, min_tenure_days: int = 7) -> pd.DataFrame:
    """Score every person of a feature snapshot (see the module docstring).

    Parameters
    ----------
    features : DataFrame
        A snapshot from ``features.pipeline.build_features`` (any subset of its rows).
    models : Models
        Fitted churn and CLV models.
    as_of : date, optional
        The snapshot date, used for ``expected_next_order_date``.
    tier_rules : TierRules, optional
        Tier and action-segment rules (default: ``training/tiers.yaml``).
    clv_cut : float, optional
        The population's high-value CLV cut; pass it when ``features`` holds only a few people (the service
        does), otherwise it is computed over the rows scored here.
    with_reasons : bool
        Add ``reasons``: the top three features raising each person's churn score.
    with_intervals : bool
        Compute ``clv_p10`` / ``clv_p90`` (NaN otherwise; the BTYD family's interval is a posterior simulation,
        the slowest part of scoring when that family is chosen).
    min_tenure_days : int
        People whose first order is more recent than this are not scored.
    """
    features = features.reset_index(drop=True)
    reason = eligibility(features, min_tenure_days=min_tenure_days)
    ok = reason.isna().to_numpy()
    out = pd.DataFrame({"person_id": features["person_id"].to_numpy(), "eligible": ok,
                        "ineligible_reason": reason.to_numpy()})
    for col in SCORE_COLUMNS[3:]:
        out[col] = pd.NaT if col == "expected_next_order_date" else np.nan
    if ok.any():
        buyers = features.loc[ok]
        churn = models.churn.predict_frame(buyers)
        clv = models.clv.predict_frame(buyers, as_of=as_of, with_intervals=with_intervals)
        out.loc[ok, "churn_probability"] = churn["churn_probability"].to_numpy()
        for col in ("clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive", "expected_next_order_date"):
            out.loc[ok, col] = clv[col].to_numpy()
    out["churn_horizon_days"] = int(models.churn.horizon_days)
    out["clv_horizon_days"] = int(models.clv.horizon_days)
    for col in PASSTHROUGH:
        if col in features.columns:
            out[col] = features[col].to_numpy()
    if "marketing_opt_out" not in out.columns:
        out["marketing_opt_out"] = False
    tiers = assign_tiers(out, tier_rules if tier_rules is not None else load_tier_rules(), clv_cut=clv_cut)
    out = out.merge(tiers, on="person_id", how="left", validate="one_to_one")
    if with_reasons:
        reasons = pd.Series([[] for _ in range(len(out))], dtype=object)
        if ok.any():
            reasons[ok] = pd.Series(models.churn.reasons(features.loc[ok]), index=np.flatnonzero(ok), dtype=object)
        out["reasons"] = reasons.to_numpy()
    return out


def load_champions(alias: str = "champion") -> Models:
    """The registered ``churn`` and ``clv`` models behind ``alias`` (``LookupError`` names the fix)."""
    from training import registry

    churn = registry.load_model("churn", alias)
    clv = registry.load_model("clv", alias)
    return Models(churn.estimator, clv.estimator, str(churn.version), str(clv.version))
