"""Churn: the probability that a buyer places no paid order in the next ``horizon_days``.

A LightGBM classifier on the point-in-time features, the derived activity columns of
:func:`training.frames.derive_features` and the BTYD outputs (P(alive), expected orders, P(purchase), expected
spend), calibrated (isotonic or sigmoid) out of fold on the training rows (trees refitted on the other folds, people
kept within one fold) or on a held-out time slice when one is given. When the BTYD P(no order) alone ranks the latest
complete window better than the trees (small brands), it is what gets calibrated and served (``family``).
Monotone constraints encode what marketers rightly expect: all else equal, a longer time since the last order or
the last activity never lowers the risk, and a higher BTYD probability of being alive or of buying never raises it.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from features import spec
from training.btyd import BTYDModel
from training.frames import BTYD_COLUMNS, DERIVED_DOCS, feature_docs
from training.lgbm import TIE_BREAK, feature_columns, lgbm_settings, prepare, subsample, trees_by_time
from training.metrics import auc

log = logging.getLogger(__name__)

CALIBRATIONS = ("isotonic", "sigmoid")
FAMILIES = ("auto", "lgbm", "btyd")

#: +1: the risk may only rise with the feature; -1: only fall. ``days_since_*`` columns count as recency.
CHURN_MONOTONE = spec.churn_monotone()


#: Reasons per person in :meth:`ChurnModel.reasons` and the batch scores.
REASON_TOP = 3
REASON_FIELDS = ("feature", "value", "contribution")


def churn_monotone(columns: list[str]) -> list[int]:
    """LightGBM ``monotone_constraints`` of the churn model for ``columns``."""
    return [CHURN_MONOTONE.get(c, 1 if c.startswith("days_since_") else 0) for c in columns]


class ChurnModel(BaseEstimator):
    """Calibrated LightGBM churn classifier.

    Parameters
    ----------
    horizon_days : int
        Churn means no paid order in ``[as_of, as_of + horizon_days)``.
    calibration : {"isotonic", "sigmoid"}
        How raw scores are mapped to probabilities on the calibration slice.
    calibration_folds : int
        Without a calibration slice, fit the calibrator on out-of-fold scores of the training rows: the trees are
        refitted ``calibration_folds`` times, each time without one fold of people (a person's rows at every
        cutoff stay in one fold). Below 2: no calibration without a slice.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree : LightGBM settings.
    early_stopping : bool
        Choose the number of trees (at most ``n_estimators``) on the latest training cutoff, see
        :func:`training.lgbm.trees_by_time`.
    family : {"auto", "lgbm", "btyd"}
        What scores people: the trees, or the BTYD model's P(no order in the horizon) alone (both calibrated on
        the calibration slice). "auto" keeps the trees unless the BTYD score ranks the validation window better
        (AUC) — small brands whose few training rows the trees cannot add to, such as CDNOW's 2,357 customers.
    max_rows : int, optional
        Fit the trees on a seeded subsample of at most this many rows (large brands).
    random_state : int
        Seed for LightGBM's bagging and column sampling and for the subsample.
    n_jobs : int
        LightGBM threads. One is the safe default on a shared machine: OpenMP threads spin while waiting and
        make busy machines many times slower; use 2+ only on idle cores (or with ``OMP_WAIT_POLICY=passive``).

    Attributes
    ----------
    feature_names_ : list of str
        Model inputs in order.
    n_trees_ : int
        Boosting rounds of the fitted model.
    booster_ : LGBMClassifier
        The fitted trees (uncalibrated).
    family_ : str
        "lgbm" or "btyd": what :meth:`predict_proba` calibrates.
    selection_ : dict
        Validation AUC of each family when "auto" compared them (empty otherwise).
    calibrator_ : IsotonicRegression, LogisticRegression or None
        Maps raw scores to probabilities; ``None`` without a usable calibration slice.
    btyd_ : BTYDModel or None
        The BTYD model that computes the BTYD inputs at scoring time (fitted at the training ``as_of``).
    uses_btyd_ : bool
        False when no BTYD model was available: the model then runs without BTYD inputs.
    """

    def __init__(self, horizon_days: int = 90, *, calibration: str = "isotonic", calibration_folds: int = 3,
                 n_estimators: int = 300,
                 learning_rate: float = 0.05, num_leaves: int = 15, min_child_samples: int = 100,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, early_stopping: bool = True,
                 family: str = "auto", max_rows: int | None = None, random_state: int = 0, n_jobs: int = 1):
        self.horizon_days = horizon_days
        self.early_stopping = early_stopping
        self.family = family
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_rows = max_rows
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y, *, X_calib: pd.DataFrame | None = None, y_calib=None,
            btyd: BTYDModel | None = None, X_valid: pd.DataFrame | None = None, y_valid=None) -> ChurnModel:
        """Fit the trees on ``X, y`` (1 = churned), then the calibrator on the held-out slice.

        Parameters
        ----------
        X : DataFrame
            Buyers' features at one or more cutoffs, with the BTYD columns fitted at each cutoff (see
            ``FeatureCache.labelled``); derived columns are added when missing.
        y : array-like
            1 (or True) when the person placed no paid order in the horizon after the row's cutoff.
        X_calib, y_calib : DataFrame and array-like, optional
            A later time slice held out from the trees, for calibration (default: out of fold on ``X``, see
            ``calibration_folds``).
        btyd : BTYDModel, optional
            The BTYD model fitted at the training ``as_of``, used to compute the BTYD inputs at scoring time.
            Without it the model is fitted without BTYD inputs.
        X_valid, y_valid : DataFrame and array-like, optional
            The latest complete window (with the BTYD columns fitted at its cutoff), on which ``family="auto"``
            compares the trees with the BTYD score.
        """
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not isinstance(X, pd.DataFrame) or X.empty:
            raise ValueError("X must be a non-empty DataFrame of buyers' features")
        y = np.asarray(y, dtype=int)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if len(np.unique(y)) < 2:
            raise ValueError("churn training rows hold a single class; need both churners and repeat buyers")
        self.btyd_ = btyd
        self.uses_btyd_ = btyd is not None and all(c in X.columns for c in BTYD_COLUMNS)
        X = self._prepare(X)
        self.feature_names_ = feature_columns(X, exclude=() if self.uses_btyd_ else BTYD_COLUMNS)
        rows = subsample(len(X), self.max_rows, self.random_state)
        Xf, yf = (X, y) if rows is None else (X.iloc[rows], y[rows])
        self.n_train_rows_ = len(Xf)

        def make(n: int) -> LGBMClassifier:
            return LGBMClassifier(n_estimators=n, monotone_constraints=churn_monotone(self.feature_names_),
                                  monotone_constraints_method="intermediate", **lgbm_settings(self))

        self.n_trees_ = (trees_by_time(make, Xf, yf, self.feature_names_, self.n_estimators)
                         if self.early_stopping else self.n_estimators)
        self.booster_ = make(self.n_trees_).fit(Xf[self.feature_names_], yf)
        self.base_logit_ = float(_logit(np.array([yf.mean()]))[0])
        self._choose_family(X_valid, y_valid)
        self.calibrator_ = None
        if X_calib is not None and len(X_calib):
            raw, yc = self._raw_proba(self._prepare(X_calib)), np.asarray(y_calib, dtype=int)
        elif self.calibration_folds >= 2:
            raw, yc = self._out_of_fold(Xf, yf, make), yf
        else:
            raw = yc = None
        if raw is not None:
            if len(np.unique(yc)) < 2:
                log.warning("calibration rows hold a single class; churn scores are left uncalibrated")
            elif self.calibration == "isotonic":
                self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, yc)
            else:
                self.calibrator_ = LogisticRegression().fit(_logit(raw).reshape(-1, 1), yc)
        return self

    def _out_of_fold(self, X: pd.DataFrame, y: np.ndarray, make) -> np.ndarray:
        """Raw scores of the training rows, each from trees fitted without its fold of people.

        The BTYD score learns nothing from labels, so with that family the rows' own scores are used.
        """
        if self.family_ == "btyd":
            return self._raw_proba(X)
        groups = X["person_id"].to_numpy() if "person_id" in X.columns else np.arange(len(X))
        _, inverse = np.unique(groups, return_inverse=True)
        fold = np.random.default_rng(self.random_state).integers(0, self.calibration_folds, inverse.max() + 1)[inverse]
        oof = np.empty(len(X), dtype=float)
        for f in range(self.calibration_folds):
            held = fold == f
            if not held.any():
                continue
            rest = np.flatnonzero(~held)
            if len(np.unique(y[rest])) < 2:  # a degenerate fold: the full model's own scores
                oof[held] = self._tree_proba(X.iloc[np.flatnonzero(held)])
                continue
            trees = make(self.n_trees_).fit(X.iloc[rest][self.feature_names_], y[rest])
            oof[held] = trees.predict_proba(X.iloc[np.flatnonzero(held)][self.feature_names_])[:, 1]
        return oof

    def _choose_family(self, X_valid: pd.DataFrame | None, y_valid) -> None:
        self.selection_: dict[str, dict] = {}
        self.family_ = "lgbm"
        if not self.uses_btyd_ or self.family == "lgbm":
            if self.family == "btyd":
                log.warning("churn: family 'btyd' needs the BTYD model; using the trees")
            return
        if self.family == "btyd":
            self.family_ = "btyd"
            return
        if X_valid is None or not len(X_valid) or len(np.unique(np.asarray(y_valid, dtype=int))) < 2:
            return
        Xv, yv = self._prepare(X_valid), np.asarray(y_valid, dtype=int)
        btyd = _btyd_churn(Xv)
        if not np.isfinite(btyd).all():
            return
        self.selection_ = {"lgbm": {"auc": auc(yv, self._tree_proba(Xv))}, "btyd": {"auc": auc(yv, btyd)}}
        if self.selection_["btyd"]["auc"] > self.selection_["lgbm"]["auc"]:
            self.family_ = "btyd"
            log.info("churn: the BTYD score ranks the validation window better (AUC %.4f vs %.4f); using it",
                     self.selection_["btyd"]["auc"], self.selection_["lgbm"]["auc"])

    # ------------------------------------------------------------------------------------------------ predict
    def _prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        return prepare(features, self.horizon_days, getattr(self, "btyd_", None), random_state=self.random_state,
                       with_btyd=getattr(self, "uses_btyd_", True))

    def _tree_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict_proba(X[self.feature_names_])[:, 1]

    def _raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        if getattr(self, "family_", "lgbm") != "btyd":
            return self._tree_proba(X)
        raw = _btyd_churn(X)
        missing = ~np.isfinite(raw)
        if missing.any():  # rows without a BTYD value fall back to the trees
            raw[missing] = self._tree_proba(X[missing])
        return raw

    def model_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model's inputs for a snapshot (BTYD and derived columns added), in ``feature_names_`` order."""
        check_is_fitted(self, "booster_")
        return self._prepare(features)[self.feature_names_]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated ``[P(stays), P(churns)]`` per row of a snapshot (or of a frame holding the BTYD columns)."""
        check_is_fitted(self, "booster_")
        raw = self._raw_proba(self._prepare(X))
        if self.calibrator_ is None:
            p = raw
        elif isinstance(self.calibrator_, IsotonicRegression):
            # isotonic steps are flat; a tie-breaker far below any reported precision keeps the raw ranking
            p = (1.0 - TIE_BREAK) * self.calibrator_.predict(raw) + TIE_BREAK * raw
        else:
            p = self.calibrator_.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]
        p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def predict_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """``churn_probability`` per row of a feature snapshot (buyers only; see ``training.scoring``)."""
        return pd.DataFrame({"churn_probability": self.predict_proba(features)[:, 1]}, index=features.index)

    def reasons(self, features: pd.DataFrame, *, top: int = REASON_TOP) -> list[list[dict]]:
        """The ``top`` features pushing each person's churn score up, from LightGBM's ``pred_contrib``.

        Each reason is ``{"feature", "description", "value", "contribution"}`` with the contribution in log-odds
        of the uncalibrated model; only features that raise the risk are listed, largest first. With the BTYD
        family the score has one input: the reason is a low BTYD purchase probability, its contribution the
        log-odds above the training churn rate. The same as ``reasons_from_table(self.reason_table(features))``.
        """
        return reasons_from_table(self.reason_table(features, top=top), top=top)

    def reason_table(self, features: pd.DataFrame, *, top: int = REASON_TOP,
                     num_threads: int | None = None) -> pd.DataFrame:
        """:meth:`reasons` as flat columns (:func:`reason_columns`), one row per row of ``features``, same index.

        ``reason_<k>_feature`` is the k-th feature raising the risk (None when fewer than k do),
        ``reason_<k>_value`` its value (NaN when missing), ``reason_<k>_contribution`` its contribution in
        log-odds rounded to 4 decimals (NaN when there is no k-th reason). ``num_threads``: LightGBM threads
        for ``pred_contrib`` (default: the model's ``n_jobs``).
        """
        check_is_fitted(self, "booster_")
        n = len(features)
        names_out = np.full((n, top), None, dtype=object)
        vals = np.full((n, top), np.nan)
        cons = np.full((n, top), np.nan)
        if n and getattr(self, "family_", "lgbm") == "btyd":
            X = self._prepare(features)
            c = _logit(_btyd_churn(X)) - self.base_logit_
            ok = np.isfinite(c) & (c > 0)
            names_out[ok, 0] = "btyd_p_purchase"
            vals[ok, 0] = X["btyd_p_purchase"].to_numpy(dtype=float)[ok]
            cons[ok, 0] = np.round(c[ok], 4)
        elif n:
            X = self.model_frame(features)
            kw = {} if num_threads is None else {"num_threads": num_threads}
            contrib = np.asarray(self.booster_.predict(X, pred_contrib=True, **kw))[:, :-1]
            k = min(top, contrib.shape[1])
            idx = np.argpartition(-contrib, k - 1, axis=1)[:, :k] if k < contrib.shape[1] else np.tile(
                np.arange(contrib.shape[1]), (n, 1))
            part = np.take_along_axis(contrib, idx, axis=1)
            order = np.argsort(-part, axis=1, kind="stable")
            idx = np.take_along_axis(idx, order, axis=1)[:, :k]
            c = np.take_along_axis(contrib, idx, axis=1)
            v = np.take_along_axis(X.to_numpy(dtype=float, na_value=np.nan), idx, axis=1)
            ok = c > 0  # sorted largest first, so the reasons are a prefix of each row
            names = np.asarray(self.feature_names_, dtype=object)
            names_out[:, :k] = np.where(ok, names[idx], None)
            vals[:, :k] = np.where(ok, v, np.nan)
            cons[:, :k] = np.where(ok, np.round(c, 4), np.nan)
        cols = {}
        for j in range(top):
            cols[f"reason_{j + 1}_feature"] = names_out[:, j]
            cols[f"reason_{j + 1}_value"] = vals[:, j]
            cols[f"reason_{j + 1}_contribution"] = cons[:, j]
        return pd.DataFrame(cols, index=features.index)

    def feature_importance(self) -> pd.Series:
        """Total split gain per feature, largest first."""
        check_is_fitted(self, "booster_")
        gains = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gains, index=self.feature_names_).sort_values(ascending=False)


def reason_columns(top: int = REASON_TOP) -> list[str]:
    """The flat reason columns of :meth:`ChurnModel.reason_table` (and of ``scrm score`` with reasons)."""
    return [f"reason_{k}_{f}" for k in range(1, top + 1) for f in REASON_FIELDS]


@functools.lru_cache(maxsize=1024)
def reason_description(feature: str) -> str:
    """The plain-words description a reason carries for a model input."""
    return feature_docs().get(feature, DERIVED_DOCS.get(feature, feature.replace("_", " ")))


def reasons_from_table(table, *, top: int = REASON_TOP) -> list[list[dict]]:
    """Rows of a reason table (:func:`reason_columns`; a DataFrame or a dict of arrays) as
    :meth:`ChurnModel.reasons` lists, in row order."""
    out: list[list[dict]] | None = None
    for k in range(1, top + 1):
        names = np.asarray(table[f"reason_{k}_feature"], dtype=object)
        if out is None:
            out = [[] for _ in range(len(names))]
        has = pd.notna(names)
        if not has.any():
            break
        values = np.asarray(table[f"reason_{k}_value"], dtype=float)
        contribs = np.asarray(table[f"reason_{k}_contribution"], dtype=float)
        for i in np.flatnonzero(has).tolist():
            name = str(names[i])
            v = float(values[i])
            out[i].append({"feature": name, "description": reason_description(name), "value": None if v != v else v,
                           "contribution": float(contribs[i])})
    return out if out is not None else []


def _btyd_churn(X: pd.DataFrame) -> np.ndarray:
    """The BTYD model's P(no order in the horizon) per row (NaN where BTYD gave no value)."""
    return 1.0 - X["btyd_p_purchase"].to_numpy(dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
