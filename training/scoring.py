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
from features.config import FeatureConfig, check_config
from training.churn import ChurnModel
from training.clv import CLVModel
from training.decisions.tiers import assign_tiers, load_tier_rules

PASSTHROUGH = spec.passthrough_columns()
SCORE_COLUMNS = (
    "person_id", "eligible", "ineligible_reason", "churn_probability", "clv_mean", "clv_p10", "clv_p90",
    "expected_orders", "p_alive", "expected_next_order_date",
)


@dataclass
class Models:
    """The models scoring needs, with the registry versions they came from (None when not registered)."""

    churn: ChurnModel
    clv: CLVModel
    churn_version: str | None = None
    clv_version: str | None = None
    brand: str | None = None
    churn_name: str | None = None  # registered model names, e.g. ``acme.churn_90d``
    clv_name: str | None = None
    feature_config: dict | None = None  # the FeatureConfig both were trained on (None: the defaults)

    def check_snapshot(self, manifest: dict) -> None:
        """Refuse (``FeatureConfigMismatch``) a snapshot built with another feature config than the models'."""
        check_config(manifest.get("config"), self.feature_config)

    def features_config(self) -> FeatureConfig:
        """The config to build features with for these models."""
        return FeatureConfig.from_dict(self.feature_config or {}, source="the models' feature config")

    @property
    def versions(self) -> dict[str, str | None]:
        return {"churn": self.churn_version, "clv": self.clv_version}

    @property
    def horizons(self) -> dict[str, int | None]:
        """The models' horizons in days: churn over ``churn``, CLV value over ``clv``."""
        return {kind: _horizon(getattr(self, kind)) for kind in ("churn", "clv")}


def _horizon(model) -> int | None:
    value = getattr(model, "horizon_days", None)
    return int(value) if value is not None else None


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
    for kind, days in models.horizons.items():  # what churn_probability and clv_* are about
        out[f"{kind}_horizon_days"] = pd.array([days] * len(out), dtype="Int64")
    if ok.any():
        buyers = features.loc[ok]
        churn = models.churn.predict_frame(buyers)
        clv = models.clv.predict_frame(buyers, as_of=as_of, with_intervals=with_intervals)
        out.loc[ok, "churn_probability"] = churn["churn_probability"].to_numpy()
        for col in ("clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive", "expected_next_order_date"):
            out.loc[ok, col] = clv[col].to_numpy()
    for col in PASSTHROUGH:
        if col in features.columns:
            out[col] = features[col].to_numpy()
    # nullable: <NA> = no recorded consent (features.brand's consent policy decides what that allows)
    out["marketing_opt_out"] = (pd.array(features["marketing_opt_out"].to_numpy(dtype=object), dtype="boolean")
                                if "marketing_opt_out" in features.columns
                                else pd.array([pd.NA] * len(out), dtype="boolean"))
    tiers = assign_tiers(out, tier_rules if tier_rules is not None else load_tier_rules(), clv_cut=clv_cut)
    out = out.merge(tiers, on="person_id", how="left", validate="one_to_one")
    if with_reasons:
        reasons = pd.Series([[] for _ in range(len(out))], dtype=object)
        if ok.any():
            reasons[ok] = pd.Series(models.churn.reasons(features.loc[ok]), index=np.flatnonzero(ok), dtype=object)
        out["reasons"] = reasons.to_numpy()
    return out


def load_champions(alias: str = "champion", *, brand: str, as_of=None, churn_horizon: int = 90,
                   clv_horizon: int = 365, data_hint: str = "D") -> Models:
    """Brand ``brand``'s churn and CLV models behind ``alias``, checked for scoring as of ``as_of``.

    Raises
    ------
    LookupError
        No such model, a version of another brand or horizon, one trained after ``as_of``, or artifacts changed
        since registration (:func:`training.registry.load_for_scoring`); the message names the fix.
    """
    from training import registry

    as_of = pd.Timestamp(as_of).date() if as_of is not None else None
    churn = registry.load_for_scoring(brand, "churn", churn_horizon, as_of=as_of, alias=alias, data_hint=data_hint)
    clv = registry.load_for_scoring(brand, "clv", clv_horizon, as_of=as_of, alias=alias, data_hint=data_hint)
    configs = [_feature_config(m.run_id) for m in (churn, clv)]
    check_config(*configs, labels=(f"{churn.name} v{churn.version}", f"{clv.name} v{clv.version}"),
                 fix="retrain both on one config (`scrm train all --feature-config FILE`)")
    return Models(churn.estimator, clv.estimator, str(churn.version), str(clv.version), brand=brand,
                  churn_name=churn.name, clv_name=clv.name, feature_config=configs[0])


def _feature_config(run_id: str) -> dict | None:
    """The ``scrm.feature_config`` tag of a model's run (None for models trained before it was logged)."""
    import json

    from training import tracking

    value = tracking.client().get_run(run_id).data.tags.get(tracking.TAG_FEATURE_CONFIG)
    return json.loads(value) if value else None
