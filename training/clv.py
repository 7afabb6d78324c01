"""CLV: expected spend per person over the next ``horizon_days``, with an 80% interval.

Two families, chosen or blended on the latest complete time window (never a random split):

(a) BTYD — BG/NBD (or the fallback chosen by ``training.btyd``) for the number of orders times Gamma-Gamma for
    spend per order. Interval: posterior simulation (``BTYDModel.spend_quantiles``).
(b) LightGBM — a Tweedie regression of future spend on the features (plus the BTYD outputs as features).
    Interval: two LightGBM quantile regressions (alpha 0.1 and 0.9 by default).

``family="auto"`` fits both and keeps whichever of btyd / lgbm / blend (the mean of the two) has the higher
normalised Gini on the validation window; a failed BTYD fit simply leaves the LightGBM family. The blend's interval
is the mean of the two families' bounds. ``expected_orders``, ``p_alive`` and ``expected_next_order_date`` always
come from the BTYD model when it fitted; otherwise expected orders come from a LightGBM Poisson model and
``p_alive`` is left empty.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from training.churn import feature_columns, monotone_vector
from training.frames import add_btyd_features
from training.metrics import gini_normalized, spearman

log = logging.getLogger(__name__)

FAMILIES = ("auto", "btyd", "lgbm", "blend")

# More past orders or spend never lowers the predicted value.
CLV_MONOTONE = {
    "orders": 1,
    "frequency": 1,
    "total_spend": 1,
    "btyd_expected_orders": 1,
    "btyd_expected_spend": 1,
}


class CLVModel(BaseEstimator):
    """Expected spend over ``horizon_days`` with ``quantiles`` bounds (see the module docstring).

    Parameters
    ----------
    horizon_days : int
        Length of the value window after ``as_of``.
    family : {"auto", "btyd", "lgbm", "blend"}
        Which family predicts; "auto" chooses on the validation window.
    quantiles : tuple of float
        Lower and upper interval levels.
    n_estimators, learning_rate, num_leaves, min_child_samples, tweedie_variance_power : LightGBM settings.
    random_state : int
        Seed for LightGBM and for the BTYD posterior simulation of intervals.
    """

    def __init__(self, horizon_days: int = 365, *, family: str = "auto", quantiles: tuple[float, float] = (0.1, 0.9),
                 n_estimators: int = 300, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 50, tweedie_variance_power: float = 1.3, random_state: int = 0,
                 n_jobs: int = 2):
        self.horizon_days = horizon_days
        self.family = family
        self.quantiles = quantiles
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.tweedie_variance_power = tweedie_variance_power
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _lgbm(self, objective: str, **extra) -> LGBMRegressor:
        return LGBMRegressor(
            objective=objective,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            verbose=-1,
            **extra,
        )

    def fit(self, X: pd.DataFrame, y, *, orders=None, X_valid: pd.DataFrame | None = None,
            y_valid=None) -> CLVModel:
        """Fit on stacked cutoffs ``X`` (features with BTYD columns) and future spend ``y``.

        ``orders`` (future order counts) trains the Poisson fallback for expected orders; ``X_valid, y_valid``
        (the latest complete window) choose the family when ``family="auto"``.
        """
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        y = np.asarray(y, dtype=float)
        self.feature_names_ = feature_columns(X)
        mono = monotone_vector(self.feature_names_, CLV_MONOTONE)
        Xf = X[self.feature_names_]
        self.mean_model_ = self._lgbm(
            "tweedie", tweedie_variance_power=self.tweedie_variance_power, monotone_constraints=mono,
            monotone_constraints_method="advanced",
        ).fit(Xf, y)
        lo, hi = self.quantiles
        self.lower_model_ = self._lgbm("quantile", alpha=lo).fit(Xf, y)
        self.upper_model_ = self._lgbm("quantile", alpha=hi).fit(Xf, y)
        self.orders_model_ = None
        if orders is not None:
            self.orders_model_ = self._lgbm("poisson", monotone_constraints=mono,
                                            monotone_constraints_method="advanced").fit(Xf, np.asarray(orders))
        self.btyd_ = None
        self.selection_ = {}
        self.family_ = "lgbm" if self.family == "auto" else self.family
        if self.family == "auto" and X_valid is not None and len(X_valid):
            self.selection_ = self._compare_families(X_valid, np.asarray(y_valid, dtype=float))
            self.family_ = max(self.selection_, key=lambda k: self.selection_[k]["gini"])
        return self

    def _compare_families(self, X_valid: pd.DataFrame, y_valid: np.ndarray) -> dict[str, dict[str, float]]:
        lgbm = self.mean_model_.predict(X_valid[self.feature_names_])
        out = {"lgbm": {"gini": gini_normalized(y_valid, lgbm), "spearman": spearman(y_valid, lgbm)}}
        btyd = X_valid["btyd_expected_spend"].to_numpy(dtype=float)
        if np.isfinite(btyd).all():
            blend = (lgbm + btyd) / 2
            out["btyd"] = {"gini": gini_normalized(y_valid, btyd), "spearman": spearman(y_valid, btyd)}
            out["blend"] = {"gini": gini_normalized(y_valid, blend), "spearman": spearman(y_valid, blend)}
        else:
            log.warning("BTYD family unavailable on the validation window (fit failed); using LightGBM")
        return out

    def with_btyd(self, features: pd.DataFrame) -> pd.DataFrame:
        if "btyd_expected_spend" in features.columns:
            return features
        out, _ = add_btyd_features(features, self.horizon_days, btyd=self.btyd_, random_state=self.random_state)
        return out

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.predict_frame(features, with_intervals=False)["clv_mean"].to_numpy()

    def predict_frame(self, features: pd.DataFrame, *, as_of=None, with_intervals: bool = True) -> pd.DataFrame:
        """``clv_mean``, ``clv_p10``, ``clv_p90``, ``expected_orders``, ``p_alive``, ``expected_next_order_date``."""
        check_is_fitted(self, "mean_model_")
        X = self.with_btyd(features)
        Xf = X[self.feature_names_]
        lgbm_mean = np.maximum(self.mean_model_.predict(Xf), 0.0)
        btyd_mean = X["btyd_expected_spend"].to_numpy(dtype=float)
        family = self.family_
        if family in ("btyd", "blend") and (self.btyd_ is None or not np.isfinite(btyd_mean).all()):
            family = "lgbm"
        btyd_pred = None
        if self.btyd_ is not None:
            btyd_pred = self.btyd_.predict_frame(features, self.horizon_days, as_of=as_of,
                                                 random_state=self.random_state,
                                                 with_intervals=with_intervals and family != "lgbm")
        out = pd.DataFrame(index=features.index)
        if family == "lgbm":
            out["clv_mean"] = lgbm_mean
        elif family == "btyd":
            out["clv_mean"] = btyd_mean
        else:
            out["clv_mean"] = (lgbm_mean + btyd_mean) / 2
        if with_intervals:
            lo = np.maximum(self.lower_model_.predict(Xf), 0.0)
            hi = np.maximum(self.upper_model_.predict(Xf), 0.0)
            if family == "btyd":
                lo, hi = btyd_pred["spend_p10"].to_numpy(), btyd_pred["spend_p90"].to_numpy()
            elif family == "blend":
                lo = (lo + btyd_pred["spend_p10"].to_numpy()) / 2
                hi = (hi + btyd_pred["spend_p90"].to_numpy()) / 2
            mean = out["clv_mean"].to_numpy()
            out["clv_p10"] = np.minimum(lo, mean)
            out["clv_p90"] = np.maximum(hi, mean)
        if btyd_pred is not None:
            out["expected_orders"] = btyd_pred["expected_orders"].to_numpy()
            out["p_alive"] = btyd_pred["p_alive"].to_numpy()
            out["expected_next_order_date"] = btyd_pred["expected_next_order_date"].to_numpy()
        else:
            out["expected_orders"] = (np.maximum(self.orders_model_.predict(Xf), 0.0)
                                      if self.orders_model_ is not None else np.nan)
            out["p_alive"] = np.nan
            out["expected_next_order_date"] = pd.NaT
        return out

    def feature_importance(self) -> pd.Series:
        check_is_fitted(self, "mean_model_")
        gains = self.mean_model_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gains, index=self.feature_names_).sort_values(ascending=False)
