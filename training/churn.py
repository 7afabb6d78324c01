"""Churn: the probability that a buyer places no paid order in the next ``horizon_days``.

A LightGBM classifier on the point-in-time features plus BTYD outputs, calibrated (isotonic or sigmoid) on a
held-out time slice. Monotone constraints encode what marketers rightly expect: all else equal, a longer time
since the last order never lowers the risk, and a higher BTYD probability of being alive never raises it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from features.pipeline import FEATURE_DOCS, model_columns
from training.frames import add_btyd_features

LABEL_COLUMNS = ("churned", "future_spend", "future_orders", "cutoff")

# +1: risk may only rise with the feature; -1: only fall.
CHURN_MONOTONE = {
    "recency_days": 1,
    "btyd_p_alive": -1,
    "btyd_p_purchase": -1,
    "btyd_expected_orders": -1,
}


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric model inputs of a features (+ labels) frame: the pipeline's model columns minus labels."""
    return [c for c in model_columns(frame) if c not in LABEL_COLUMNS]


def monotone_vector(columns: list[str], constraints: dict[str, int]) -> list[int]:
    """LightGBM's ``monotone_constraints`` for ``columns``; ``days_since_*`` columns count as recency."""
    out = []
    for c in columns:
        if c in constraints:
            out.append(constraints[c])
        elif c.startswith("days_since_") and constraints is CHURN_MONOTONE:
            out.append(1)
        else:
            out.append(0)
    return out


class ChurnModel(BaseEstimator):
    """Calibrated LightGBM churn classifier.

    Parameters
    ----------
    horizon_days : int
        Churn means no paid order in ``[as_of, as_of + horizon_days)``.
    calibration : {"isotonic", "sigmoid"}
        How raw scores are mapped to probabilities on the calibration slice.
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM hyper-parameters.
    random_state : int
        Seed for LightGBM's bagging and column sampling.
    n_jobs : int
        LightGBM threads.
    """

    def __init__(self, horizon_days: int = 90, *, calibration: str = "isotonic", n_estimators: int = 300,
                 learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 50,
                 random_state: int = 0, n_jobs: int = 2):
        self.horizon_days = horizon_days
        self.calibration = calibration
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y, *, X_calib: pd.DataFrame | None = None, y_calib=None) -> ChurnModel:
        """Fit trees on ``X, y`` (1 = churned), then the calibrator on the held-out slice ``X_calib, y_calib``."""
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ValueError(f"calibration must be 'isotonic' or 'sigmoid', got {self.calibration!r}")
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise ValueError("churn training rows hold a single class; need both churners and repeat buyers")
        self.feature_names_ = feature_columns(X)
        self.booster_ = LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            monotone_constraints=monotone_vector(self.feature_names_, CHURN_MONOTONE),
            monotone_constraints_method="advanced",
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            verbose=-1,
        ).fit(X[self.feature_names_], y)
        if X_calib is None or len(X_calib) == 0:
            self.calibrator_ = None
        else:
            raw = self._raw_proba(X_calib)
            yc = np.asarray(y_calib, dtype=int)
            if self.calibration == "isotonic":
                self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, yc)
            else:
                self.calibrator_ = LogisticRegression().fit(_logit(raw).reshape(-1, 1), yc)
        self.btyd_ = None
        return self

    def _raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict_proba(X[self.feature_names_])[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated ``[P(stays), P(churns)]`` per row of a frame that already holds the BTYD columns."""
        check_is_fitted(self, "booster_")
        raw = self._raw_proba(X)
        if self.calibrator_ is None:
            p = raw
        elif isinstance(self.calibrator_, IsotonicRegression):
            p = self.calibrator_.predict(raw)
        else:
            p = self.calibrator_.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def with_btyd(self, features: pd.DataFrame) -> pd.DataFrame:
        """Add the BTYD columns (from the BTYD model fitted at the training ``as_of``) when they are missing."""
        if all(c in features.columns for c in ("btyd_p_alive", "btyd_p_purchase")):
            return features
        out, _ = add_btyd_features(features, self.horizon_days, btyd=self.btyd_, random_state=self.random_state)
        return out

    def predict_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """``churn_probability`` per row of a feature snapshot (buyers only; see ``training.scoring``)."""
        X = self.with_btyd(features)
        return pd.DataFrame({"churn_probability": self.predict_proba(X)[:, 1]}, index=features.index)

    def reasons(self, features: pd.DataFrame, *, top: int = 3) -> list[list[dict]]:
        """The ``top`` features pushing each person's churn score up, from LightGBM's ``pred_contrib``.

        Each reason is ``{"feature", "description", "value", "contribution"}`` with the contribution in log-odds of
        the uncalibrated model; only features that raise the risk are listed.
        """
        check_is_fitted(self, "booster_")
        X = self.with_btyd(features)[self.feature_names_]
        contrib = self.booster_.predict(X, pred_contrib=True)[:, :-1]
        order = np.argsort(-contrib, axis=1)[:, :top]
        values = X.to_numpy(dtype=float, na_value=np.nan)
        out = []
        for i in range(len(X)):
            row = []
            for j in order[i]:
                c = float(contrib[i, j])
                if c <= 0:
                    break
                name = self.feature_names_[j]
                v = values[i, j]
                row.append({
                    "feature": name,
                    "description": FEATURE_DOCS.get(name, name.replace("_", " ")),
                    "value": None if np.isnan(v) else float(v),
                    "contribution": round(c, 4),
                })
            out.append(row)
        return out

    def feature_importance(self) -> pd.Series:
        check_is_fitted(self, "booster_")
        gains = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gains, index=self.feature_names_).sort_values(ascending=False)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
