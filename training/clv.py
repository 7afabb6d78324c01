"""CLV: expected spend per person over the next ``horizon_days``, with an interval (10th–90th percentile).

Two families, chosen or blended on the latest complete time window (never a random split):

(a) BTYD — the BG/NBD-family model chosen by ``training.btyd`` (fallbacks: penalizers, Pareto/NBD, MBG/NBD) for
    the number of orders times Gamma-Gamma for spend per order, fitted on the buyers at the training ``as_of``.
    Interval: posterior simulation (``BTYDModel.spend_quantiles``: draws of the person's purchase rate, lifetime
    and order value given their history).
(b) LightGBM — a Tweedie regression of future spend on the point-in-time features and the derived activity
    columns, trained on stacked rolling cutoffs, and beside it a least-squares regression of ``log1p(spend)`` on
    the same rows. People are ranked by the weighted geometric mean of the two (``log_blend``, the weight of the
    log model): the Tweedie loss is ruled by the few big spenders, the log loss by who buys at all, and most
    people spend nothing in a window. The ranking is put back on the Tweedie model's scale by an isotonic map
    fitted on the latest training cutoff's rows, so amounts, totals and deciles stay close to the Tweedie
    model's. Monotone constraints (on both models; the map is non-decreasing) make more past orders or spend
    never lower the prediction; the BTYD outputs are left out of this family on purpose, because BG/NBD's
    expected orders fall with frequency for frequent buyers who went quiet, which would break that guarantee.
    Interval: two LightGBM quantile regressions (``quantiles``, default 0.1 and 0.9) on the same rows.

``family="auto"`` fits both and keeps whichever of ``lgbm`` / ``btyd`` / ``blend`` (the mean of the two) has the
highest normalised Gini on the validation window, among the families that pass the "more past orders never
lower CLV" check on the validation rows (``monotone_orders=True``; the LightGBM family always passes). The
blend's interval is the mean of the two families' bounds. A failed BTYD fit leaves the LightGBM family (logged).

Level calibration (``level_calibration=True``): a budget is planned from the total, and a model that ranks well can
still be 20% off in total (the training windows' season, trend or price level is not the scored window's). After
the family is chosen, the ratio of the realised to the predicted total on the validation window (the newest
complete window: labels in ``[as_of - H, as_of)``, all before ``as_of``) sets a factor, and a brand seasonal index
(``features.calendar.SeasonalIndex``: festival lifts learned from the brand's daily revenue before ``as_of``) moves
it from the validation window's season to the scored one's::

    factor(as_of) = (realised / predicted total on the validation window)
                    × seasonal_index([as_of, as_of + H)) / seasonal_index(validation window)

so a window holding 618, 双11, Christmas or Chinese New Year is not scored like one that does not. The factor
multiplies ``clv_mean`` and both interval bounds; ranking figures do not change. A model refit on newer windows
takes the chosen model's calibrated total at ``as_of`` (:meth:`CLVModel.carry_level`), trusted less when the
chosen model's error drifted over the windows it had not seen.

``expected_orders``, ``p_alive`` and ``expected_next_order_date`` come from the BTYD model when it fitted;
otherwise expected orders come from a LightGBM Poisson regression and ``p_alive`` / the next order date are empty.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

from features import spec
from features.calendar import SeasonalIndex, window_features
from training.btyd import BTYDModel
from training.frames import BTYD_COLUMNS, as_date, latest_cutoff
from training.lgbm import TIE_BREAK, feature_columns, lgbm_settings, prepare, subsample, trees_by_time
from training.metrics import gini_normalized, spearman

log = logging.getLogger(__name__)

_FITTED = object()  # predict_frame's default: the BTYD model fitted at the training as_of

FAMILIES = ("auto", "btyd", "lgbm", "blend")

#: Columns counting past orders or spend: the LightGBM family is non-decreasing in each.
COUNT_COLUMNS = spec.clv_count_columns()
COUNT_PREFIXES = spec.clv_count_prefixes()


def clv_monotone(columns: list[str]) -> list[int]:
    """LightGBM ``monotone_constraints`` of the CLV regressions for ``columns``."""
    return [1 if c in COUNT_COLUMNS or c.startswith(COUNT_PREFIXES) else 0 for c in columns]


def more_orders(features: pd.DataFrame, extra: int = 1) -> pd.DataFrame:
    """The same people with ``extra`` more past paid orders on earlier purchase days, all else equal.

    ``orders``, ``frequency`` (repeat purchase days) and every ``orders_<w>d`` window count go up by ``extra``;
    the dates of the first and last order, the spend and every other column stay as they are.
    """
    out = features.copy()
    for c in ["orders", "frequency", *[c for c in out.columns if c.startswith("orders_") and c.endswith("d")]]:
        if c in out.columns:
            out[c] = out[c] + extra
    for c in ("order_rate", "days_since_activity"):  # derived columns are recomputed from the new counts
        if c in out.columns:
            out = out.drop(columns=c)
    return out


class CLVModel(BaseEstimator):
    """Expected spend over ``horizon_days`` with ``quantiles`` bounds (see the module docstring).

    Parameters
    ----------
    horizon_days : int
        Length of the value window after ``as_of``.
    family : {"auto", "btyd", "lgbm", "blend"}
        Which family predicts; "auto" chooses on the validation window.
    quantiles : tuple of float
        Lower and upper interval levels (nominal coverage ``quantiles[1] - quantiles[0]``).
    monotone_orders : bool
        With ``family="auto"``, only choose families whose validation predictions never fall when a person has
        more past orders (see :func:`more_orders`).
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree,
    tweedie_variance_power : LightGBM settings of the mean model.
    log_blend : float
        Weight in ``[0, 1]`` of the ``log1p(spend)`` model in the LightGBM family's ranking (see the module
        docstring); 0 ranks by the Tweedie model alone. On four simulated brands 0.5 raised the backtest
        Spearman by 0.011–0.013 and lowered the normalised Gini by 0.005–0.009 (docs/results.md).
    log_estimators : int
        Trees of the log-spend model (at most the mean model's). Its target is smooth: on the 20k simulated brand
        100 trees rank as well as 300, and each tree costs scoring time.
    early_stopping : bool
        Choose the mean model's number of trees (at most ``n_estimators``) on the latest training cutoff, see
        :func:`training.lgbm.trees_by_time`.
    interval_estimators : int
        Trees of each quantile model.
    max_rows, interval_max_rows : int, optional
        Fit the mean model / the quantile models on a seeded subsample of at most this many rows.
    interval_draws : int
        Posterior draws per distinct ``(frequency, T)`` of the BTYD interval simulation.
    level_calibration : bool
        Scale the predictions so the validation window's total is met, moved to the scored window's season (see
        the module docstring); needs ``X_valid`` in :meth:`fit`.
    level_drift_tolerance : float
        How far (log of the total, over one horizon) the chosen model's error may drift before the level it
        carries to the refit model is shrunk (see :meth:`carry_level`): a drift of this size halves the carried
        factor's logarithm; 0.2 is about the width of the ±10% band a total is held to.
    random_state : int
        Seed for LightGBM, the subsamples and the BTYD interval simulation.
    n_jobs : int
        LightGBM threads (see ``ChurnModel``).

    Attributes
    ----------
    n_trees_ : int
        Boosting rounds of the mean model (and of the orders model).
    log_model_ : LGBMRegressor or None
        The ``log1p(spend)`` model (None when ``log_blend=0``).
    scale_map_ : IsotonicRegression or None
        Blended log score -> the Tweedie model's amount, fitted on the latest training cutoff's rows.
    family_ : str
        The family that predicts ``clv_mean``.
    selection_ : dict
        Validation figures per candidate family (``gini``, ``spearman``, ``monotone_orders``).
    btyd_ : BTYDModel or None
        BTYD model fitted at the training ``as_of`` (None when every BTYD option failed).
    btyd_status_ : str
        ``"ok"`` or why the BTYD family is unavailable.
    level_ : float
        Realised over predicted total on the validation window (1 without level calibration).
    seasonal_ : SeasonalIndex or None
        The brand's festival lifts the factor is moved by (None: no seasonal adjustment).
    level_info_ : dict
        The level calibration's figures: totals, factor, validation cutoff, the seasonal lifts.
    """

    def __init__(self, horizon_days: int = 365, *, family: str = "auto", quantiles: tuple[float, float] = (0.1, 0.9),
                 monotone_orders: bool = True, n_estimators: int = 300, learning_rate: float = 0.05,
                 num_leaves: int = 15, min_child_samples: int = 100, subsample: float = 0.8,
                 colsample_bytree: float = 0.8, tweedie_variance_power: float = 1.3, log_blend: float = 0.5,
                 log_estimators: int = 100, early_stopping: bool = True,
                 interval_estimators: int = 150,
                 max_rows: int | None = None, interval_max_rows: int | None = 200_000, interval_draws: int = 300,
                 btyd_features: bool = False, level_calibration: bool = True, level_drift_tolerance: float = 0.2,
                 random_state: int = 0, n_jobs: int = 1):
        self.horizon_days = horizon_days
        self.family = family
        self.quantiles = quantiles
        self.monotone_orders = monotone_orders
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.tweedie_variance_power = tweedie_variance_power
        self.log_blend = log_blend
        self.log_estimators = log_estimators
        self.early_stopping = early_stopping
        self.interval_estimators = interval_estimators
        self.max_rows = max_rows
        self.interval_max_rows = interval_max_rows
        self.interval_draws = interval_draws
        self.btyd_features = btyd_features
        self.level_calibration = level_calibration
        self.level_drift_tolerance = level_drift_tolerance
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _lgbm(self, objective: str, n_estimators: int, **extra) -> LGBMRegressor:
        return LGBMRegressor(objective=objective, n_estimators=n_estimators, **lgbm_settings(self), **extra)

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y, *, orders=None, X_valid: pd.DataFrame | None = None, y_valid=None,
            btyd: BTYDModel | None = None, btyd_valid: BTYDModel | None = None,
            btyd_status: str | None = None, seasonal: SeasonalIndex | None = None) -> CLVModel:
        """Fit on stacked cutoffs ``X`` and future spend ``y``; choose the family on ``X_valid, y_valid``.

        Parameters
        ----------
        X : DataFrame
            Buyers' features at the training cutoffs (``FeatureCache.labelled``).
        y : array-like
            Spend in the horizon after each row's cutoff.
        orders : array-like, optional
            Paid orders in the horizon: trains the Poisson model for ``expected_orders`` when there is no BTYD.
        X_valid, y_valid : DataFrame and array-like, optional
            The latest complete window, with the BTYD columns of the BTYD model fitted at its cutoff.
        btyd : BTYDModel, optional
            BTYD model fitted at the training ``as_of`` (the BTYD family at scoring time).
        btyd_valid : BTYDModel, optional
            BTYD model fitted at the validation cutoff (for the monotonicity check of the BTYD family).
        btyd_status : str, optional
            Why ``btyd`` is missing, for the logs.
        seasonal : SeasonalIndex, optional
            The brand's festival lifts learned before ``as_of`` (``features.calendar.fit_seasonal_index``); the
            level factor is moved from the validation window's season to the scored window's with it.
        """
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        lo, hi = self.quantiles
        if not 0.0 < lo < hi < 1.0:
            raise ValueError(f"quantiles must satisfy 0 < low < high < 1, got {self.quantiles}")
        if not 0.0 <= self.log_blend <= 1.0:
            raise ValueError(f"log_blend must be in [0, 1], got {self.log_blend}")
        if not isinstance(X, pd.DataFrame) or X.empty:
            raise ValueError("X must be a non-empty DataFrame of buyers' features")
        y = np.asarray(y, dtype=float)
        if len(y) != len(X) or not np.isfinite(y).all() or (y < 0).any():
            raise ValueError("y must hold one finite, non-negative future spend per row of X")
        self.btyd_ = btyd
        self.btyd_status_ = "ok" if btyd is not None else (btyd_status or "no BTYD model given")
        if btyd is None:
            log.warning("CLV: BTYD family unavailable (%s); using the LightGBM family", self.btyd_status_)
        X = prepare(X, self.horizon_days, None, with_btyd=False)
        self.feature_names_ = feature_columns(X, exclude=() if self.btyd_features else BTYD_COLUMNS)
        mono = clv_monotone(self.feature_names_)
        rows = subsample(len(X), self.max_rows, self.random_state)
        Xf, yf = (X[self.feature_names_], y) if rows is None else (X[self.feature_names_].iloc[rows], y[rows])
        self.n_train_rows_ = len(Xf)

        def mean_model(n: int) -> LGBMRegressor:
            return self._lgbm("tweedie", n, tweedie_variance_power=self.tweedie_variance_power,
                              monotone_constraints=mono, monotone_constraints_method="intermediate")

        Xs = X if rows is None else X.iloc[rows]
        self.n_trees_ = (trees_by_time(mean_model, Xs, yf, self.feature_names_, self.n_estimators)
                         if self.early_stopping else self.n_estimators)
        self.mean_model_ = mean_model(self.n_trees_).fit(Xf, yf)
        self.log_model_ = self.scale_map_ = None
        if self.log_blend > 0:
            self.log_model_ = self._lgbm("regression", min(self.log_estimators, self.n_trees_),
                                         monotone_constraints=mono, monotone_constraints_method="intermediate")
            self.log_model_.fit(Xf, np.log1p(yf))
            # mapped on the latest training cutoff: the rows most like the snapshot the model will score
            tweedie, score = self._tweedie_and_score(Xf.loc[latest_cutoff(Xs)])
            self.scale_map_ = IsotonicRegression(y_min=0.0, out_of_bounds="clip").fit(score, tweedie)
        qrows = subsample(len(X), self.interval_max_rows, self.random_state + 1)
        Xq, yq = (X[self.feature_names_], y) if qrows is None else (X[self.feature_names_].iloc[qrows], y[qrows])
        self.lower_model_ = self._lgbm("quantile", self.interval_estimators, alpha=lo).fit(Xq, yq)
        self.upper_model_ = self._lgbm("quantile", self.interval_estimators, alpha=hi).fit(Xq, yq)
        self.orders_model_ = None
        if btyd is None and orders is not None:
            o = np.asarray(orders, dtype=float)
            of = o if rows is None else o[rows]
            self.orders_model_ = self._lgbm("poisson", self.n_trees_, monotone_constraints=mono,
                                            monotone_constraints_method="intermediate").fit(Xf, of)
        self.selection_: dict[str, dict] = {}
        self.family_ = "lgbm" if self.family == "auto" else self.family
        if self.family in ("btyd", "blend") and btyd is None:
            log.warning("CLV: family %r needs the BTYD model (%s); using 'lgbm'", self.family, self.btyd_status_)
            self.family_ = "lgbm"
        if X_valid is not None and len(X_valid):
            self.selection_ = self._compare_families(X_valid, np.asarray(y_valid, dtype=float), btyd_valid)
            if self.family == "auto":
                ok = {k: v for k, v in self.selection_.items()
                      if not self.monotone_orders or v.get("monotone_orders", True)}
                self.family_ = max(ok, key=lambda k: ok[k]["gini"])
        self._fit_level(X_valid, y_valid, btyd_valid, seasonal)
        return self

    def _fit_level(self, X_valid: pd.DataFrame | None, y_valid, btyd_valid: BTYDModel | None,
                   seasonal: SeasonalIndex | None) -> None:
        """The level factor: realised over predicted total of the chosen family on the validation window."""
        self.level_, self.seasonal_, self.valid_cutoff_ = 1.0, None, None
        self.level_info_: dict = {"applied": False}
        if not self.level_calibration:
            self.level_info_["reason"] = "level_calibration=False"
            return
        if X_valid is None or not len(X_valid) or "cutoff" not in X_valid.columns:
            self.level_info_["reason"] = "no validation window (with a cutoff column) to calibrate on"
            log.warning("CLV: level calibration skipped (%s)", self.level_info_["reason"])
            return
        if self.family_ != "lgbm" and btyd_valid is None:
            self.level_info_["reason"] = (f"no BTYD model at the validation cutoff to predict the {self.family_!r} "
                                          "family's validation total")
            log.warning("CLV: level calibration skipped (%s)", self.level_info_["reason"])
            return
        self.valid_cutoff_ = as_date(pd.Timestamp(X_valid["cutoff"].max()))
        raw = self._raw_frame(X_valid, btyd=btyd_valid, with_intervals=False)["clv_mean"].to_numpy(dtype=float)
        actual, predicted = float(np.sum(y_valid)), float(np.sum(raw))
        info = {"validation_cutoff": self.valid_cutoff_.isoformat(), "validation_actual_total": actual,
                "validation_predicted_total": predicted}
        if not (actual > 0 and predicted > 0 and np.isfinite(actual) and np.isfinite(predicted)):
            self.level_info_ = {**self.level_info_, **info, "reason": "a zero or missing validation total"}
            log.warning("CLV: level calibration skipped (%s)", self.level_info_["reason"])
            return
        self.level_, self.seasonal_ = actual / predicted, seasonal
        self.level_info_ = {**info, "applied": True, "factor": self.level_,
                            "validation_total_error_pct_before": 100.0 * (predicted - actual) / actual,
                            "validation_seasonal_index": self._seasonal_index(self.valid_cutoff_),
                            "seasonal": seasonal.to_dict() if seasonal is not None else None}

    def carry_level(self, chosen: CLVModel, features: pd.DataFrame, as_of,
                    windows: pd.DataFrame | None = None) -> CLVModel:
        """Take the level calibration of ``chosen``, the model selected before this one was refit on newer windows.

        The refit model has seen the validation window, so its own factor could not be measured out of sample.
        Instead it is set so that, at ``as_of``, this model's total over ``features`` (the buyers of the ``as_of``
        snapshot) equals ``chosen``'s calibrated total there:
        ``carried = chosen.level_ × chosen's raw total ÷ this model's raw total`` (raw: before any factor), with
        ``chosen``'s validation cutoff and seasonal index, so the factor still moves with the scored window's
        season. The level stays out of sample; the refit only changes who gets how much.

        That assumes ``chosen``'s error stays what it was on the validation window for one more horizon. It can
        be checked on ``windows``: ``chosen``'s raw predicted and realised totals (columns ``cutoff``,
        ``predicted``, ``actual``) on the labelled windows after its own training cutoffs, up to the validation
        one (all labels before ``as_of``). Their log errors are fitted by a line against the cutoff day, once as
        they are and once moved to the validation window's season; the smaller slope, times the days from the
        validation cutoff to ``as_of``, is the ``drift`` (a trend counts only if it shows with and without the
        seasonal index, whose lifts are learned from one or two occurrences on the short histories this is
        for and can make or hide a slope). A model fitted on few, young windows whose error grows as the people
        it scores age past what it was trained on drifts; then its calibrated total at ``as_of`` is no better
        than this model's own, and the carried factor is shrunk towards 1 (in log; the seasonal index still
        applies)::

            level_ = carried ** weight,   weight = 1 / (1 + (drift / level_drift_tolerance) ** 2)

        (no shrinkage with fewer than two windows: nothing to measure a drift on). ``level_info_`` keeps
        ``chosen``'s figures plus ``refit_total_ratio``, ``carried_factor``, the ``drift`` block and the ``factor``.
        """
        check_is_fitted(self, "mean_model_")
        self.level_calibration = chosen.level_calibration  # the refit is fitted with it off (nothing to measure on)
        self.level_, self.seasonal_, self.valid_cutoff_ = 1.0, chosen.seasonal_, chosen.valid_cutoff_
        self.level_info_ = dict(chosen.level_info_)
        if not chosen.level_info_.get("applied"):
            return self
        before = float(chosen._raw_frame(features, as_of=as_of, with_intervals=False)["clv_mean"].sum())
        after = float(self._raw_frame(features, as_of=as_of, with_intervals=False)["clv_mean"].sum())
        if not (before > 0 and after > 0 and np.isfinite(before) and np.isfinite(after)):
            self.seasonal_ = None
            self.level_info_ = {**self.level_info_, "applied": False,
                                "reason": "a zero or missing total at as_of before or after the refit"}
            log.warning("CLV: level calibration not carried to the refit model (%s)", self.level_info_["reason"])
            return self
        carried = chosen.level_ * before / after
        drift = self._level_drift(windows, as_of)
        self.level_ = carried ** drift["weight"]
        self.level_info_ = {**self.level_info_, "factor": self.level_, "chosen_factor": chosen.level_,
                            "refit_total_ratio": before / after, "carried_factor": carried, "drift": drift}
        if drift["weight"] < 1.0:
            log.info("CLV: the chosen model's error drifted by %.3f (log) over the windows after its training; "
                     "carried level factor %.3f shrunk to %.3f", drift["drift"], carried, self.level_)
        return self

    def _level_drift(self, windows: pd.DataFrame | None, as_of) -> dict:
        """The drift of the chosen model's error and the weight of the carried factor (see :meth:`carry_level`)."""
        tol = float(self.level_drift_tolerance)
        if not tol > 0:
            raise ValueError(f"level_drift_tolerance must be positive, got {self.level_drift_tolerance}")
        out: dict = {"tolerance": tol, "weight": 1.0, "drift": None, "windows": []}
        if windows is None or not len(windows):
            out["reason"] = "no labelled window after the chosen model's training cutoffs"
            return out
        w = windows[(windows["predicted"] > 0) & (windows["actual"] > 0)].sort_values("cutoff")
        cutoffs = [as_date(c) for c in w["cutoff"]]
        raw = np.log(w["predicted"].to_numpy(dtype=float) / w["actual"].to_numpy(dtype=float))
        season = np.log([self._seasonal_index(c) / self._seasonal_index(self.valid_cutoff_) for c in cutoffs])
        out["windows"] = [{"cutoff": c.isoformat(), "log_error": float(e), "log_error_seasonal": float(e + s)}
                          for c, e, s in zip(cutoffs, raw, season, strict=True)]
        if len(cutoffs) < 2:
            out["reason"] = "fewer than two labelled windows after the chosen model's training cutoffs"
            return out
        days = np.array([(c - cutoffs[-1]).days for c in cutoffs], dtype=float)
        gap = (as_date(as_of) - self.valid_cutoff_).days
        out["drift_raw"], out["drift_seasonal"] = (abs(float(np.polyfit(days, e, 1)[0])) * gap
                                                   for e in (raw, raw + season))
        drift = min(out["drift_raw"], out["drift_seasonal"])
        out.update(drift=drift, weight=1.0 / (1.0 + (drift / tol) ** 2))
        return out

    def _seasonal_index(self, start) -> float:
        return 1.0 if self.seasonal_ is None else self.seasonal_.window_index(start, self.horizon_days)

    def level_factor(self, as_of=None) -> float:
        """What :meth:`predict_frame` multiplies by for a window starting ``as_of`` (the training ``as_of``:
        the validation cutoff + H, when ``None``)."""
        check_is_fitted(self, "mean_model_")
        if not getattr(self, "level_info_", {}).get("applied"):
            return 1.0
        start = as_date(as_of) if as_of is not None else self.valid_cutoff_ + timedelta(days=self.horizon_days)
        return self.level_ * self._seasonal_index(start) / self._seasonal_index(self.valid_cutoff_)

    def window_calendar(self, as_of=None) -> dict[str, float]:
        """The calendar features (``features.spec.CALENDAR_SPEC``) of the window a prediction at ``as_of`` covers."""
        check_is_fitted(self, "mean_model_")
        if getattr(self, "seasonal_", None) is None:
            return {}
        start = as_date(as_of) if as_of is not None else self.valid_cutoff_ + timedelta(days=self.horizon_days)
        return window_features(self.seasonal_.calendar, start, self.horizon_days, self.seasonal_)

    def _compare_families(self, X_valid: pd.DataFrame, y_valid: np.ndarray,
                          btyd_valid: BTYDModel | None) -> dict[str, dict]:
        """Validation Gini and Spearman of each family, and whether more past orders ever lowered its value."""
        Xv = prepare(X_valid, self.horizon_days, None, with_btyd=False)
        lgbm = self._lgbm_mean(Xv[self.feature_names_])
        # the check compares repeat buyers (one-time buyers have no spend per repeat order to hold equal)
        rep = Xv["frequency"].to_numpy(dtype=float) >= 1
        more = more_orders(Xv[rep])
        lgbm_more = self._lgbm_mean(prepare(more, self.horizon_days, None, with_btyd=False)[self.feature_names_])
        out = {"lgbm": {"gini": gini_normalized(y_valid, lgbm), "spearman": spearman(y_valid, lgbm),
                        "monotone_orders": bool(np.all(lgbm_more >= lgbm[rep] - 1e-9))}}
        btyd = X_valid["btyd_expected_spend"].to_numpy(dtype=float) if "btyd_expected_spend" in X_valid else None
        if self.btyd_ is None or btyd is None or not np.isfinite(btyd).all():
            log.warning("CLV: BTYD family not compared on the validation window (%s)",
                        self.btyd_status_ if self.btyd_ is None else "no BTYD fit at the validation cutoff")
            return out
        blend = (lgbm + btyd) / 2
        btyd_more = None
        if btyd_valid is not None and btyd_valid.gg_params_ is not None:
            btyd_more = btyd_valid.expected_spend(more, self.horizon_days)
        mono_btyd = bool(btyd_more is not None and np.all(btyd_more >= btyd[rep] - 1e-9))
        mono_blend = bool(btyd_more is not None and np.all((lgbm_more + btyd_more) / 2 >= blend[rep] - 1e-9))
        out["btyd"] = {"gini": gini_normalized(y_valid, btyd), "spearman": spearman(y_valid, btyd),
                       "monotone_orders": mono_btyd}
        out["blend"] = {"gini": gini_normalized(y_valid, blend), "spearman": spearman(y_valid, blend),
                        "monotone_orders": mono_blend}
        return out

    # ------------------------------------------------------------------------------------------------ predict
    def _tweedie_and_score(self, Xf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The Tweedie model's expected spend and the blended log score that ranks people."""
        tweedie = np.maximum(self.mean_model_.predict(Xf), 0.0)
        if self.log_model_ is None:
            return tweedie, np.log(np.maximum(tweedie, 1e-12))
        w = self.log_blend
        return tweedie, (1.0 - w) * np.log(np.maximum(tweedie, 1e-12)) + w * self.log_model_.predict(Xf)

    def _lgbm_mean(self, Xf: pd.DataFrame) -> np.ndarray:
        """The LightGBM family's expected spend (``Xf``: the ``feature_names_`` columns), on the Tweedie scale."""
        tweedie, score = self._tweedie_and_score(Xf)
        if self.scale_map_ is None:
            return tweedie
        # the isotonic map has flat steps; a millionth of the blended amount keeps people it ranks apart apart
        return self.scale_map_.predict(score) + TIE_BREAK * np.exp(score)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Expected spend (``clv_mean``) per row."""
        return self.predict_frame(features, with_intervals=False)["clv_mean"].to_numpy()

    def predict_frame(self, features: pd.DataFrame, *, as_of=None, with_intervals: bool = True,
                      btyd=_FITTED) -> pd.DataFrame:
        """``clv_mean``, ``clv_p10``, ``clv_p90``, ``expected_orders``, ``p_alive``, ``expected_next_order_date``.

        Parameters
        ----------
        features : DataFrame
            Buyers' rows of a feature snapshot.
        as_of : date-like, optional
            The snapshot date (for ``expected_next_order_date`` and the season of the level factor; the training
            ``as_of`` when omitted).
        with_intervals : bool
            Compute ``clv_p10`` / ``clv_p90`` (NaN otherwise).
        btyd : BTYDModel or None, optional
            Use this BTYD model instead of ``btyd_`` (validation on an earlier cutoff; ``None``: LightGBM only).
        """
        out = self._raw_frame(features, as_of=as_of, with_intervals=with_intervals, btyd=btyd)
        factor = self.level_factor(as_of)
        if factor != 1.0:
            for col in ("clv_mean", "clv_p10", "clv_p90"):
                out[col] = out[col] * factor
        return out

    def _raw_frame(self, features: pd.DataFrame, *, as_of=None, with_intervals: bool = True,
                   btyd=_FITTED) -> pd.DataFrame:
        """:meth:`predict_frame` before the level factor."""
        check_is_fitted(self, "mean_model_")
        btyd = self.btyd_ if btyd is _FITTED else btyd
        X = prepare(features, self.horizon_days, btyd, with_btyd=self.btyd_features)
        Xf = X[self.feature_names_]
        lgbm_mean = self._lgbm_mean(Xf)
        family = self.family_ if btyd is not None else "lgbm"
        btyd_pred = None
        if btyd is not None:
            btyd_pred = btyd.predict_frame(features, self.horizon_days, as_of=as_of, random_state=self.random_state,
                                           with_intervals=with_intervals and family != "lgbm",
                                           n_draws=self.interval_draws)
            if family != "lgbm" and ("expected_spend" not in btyd_pred or
                                     not np.isfinite(btyd_pred["expected_spend"].to_numpy()).all()):
                family = "lgbm"
        out = pd.DataFrame(index=features.index)
        if family == "lgbm":
            mean = lgbm_mean
        elif family == "btyd":
            mean = btyd_pred["expected_spend"].to_numpy()
        else:
            mean = (lgbm_mean + btyd_pred["expected_spend"].to_numpy()) / 2
        out["clv_mean"] = mean
        if with_intervals:
            if family == "btyd":
                lo, hi = btyd_pred["spend_p10"].to_numpy(), btyd_pred["spend_p90"].to_numpy()
            else:
                lo = np.maximum(self.lower_model_.predict(Xf), 0.0)
                hi = np.maximum(self.upper_model_.predict(Xf), 0.0)
                if family == "blend":
                    lo = (lo + btyd_pred["spend_p10"].to_numpy()) / 2
                    hi = (hi + btyd_pred["spend_p90"].to_numpy()) / 2
            out["clv_p10"] = np.minimum(lo, mean)
            out["clv_p90"] = np.maximum(hi, mean)
        else:
            out["clv_p10"] = np.nan
            out["clv_p90"] = np.nan
        if btyd_pred is not None:
            out["expected_orders"] = btyd_pred["expected_orders"].to_numpy()
            out["p_alive"] = btyd_pred["p_alive"].to_numpy()
            out["expected_next_order_date"] = btyd_pred["expected_next_order_date"].to_numpy()
        else:
            out["expected_orders"] = (np.maximum(self.orders_model_.predict(Xf), 0.0)
                                      if self.orders_model_ is not None else np.nan)
            out["p_alive"] = np.nan
            out["expected_next_order_date"] = pd.Series(pd.NaT, index=features.index, dtype="datetime64[ns]")
        return out

    def feature_importance(self) -> pd.Series:
        """Total split gain per feature of the mean model, largest first."""
        check_is_fitted(self, "mean_model_")
        gains = self.mean_model_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gains, index=self.feature_names_).sort_values(ascending=False)
