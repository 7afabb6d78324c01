"""Pure fits (no MLflow): churn and CLV fitted for one ``as_of`` on stacked cutoffs and validated.

Shared by the tracked training runs (:mod:`training.train`) and the backtest (:mod:`training.backtest`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.brand import load_brand
from features.calendar import daily_paid_revenue, fit_seasonal_index, load_calendar
from training.churn import ChurnModel
from training.clv import CLVModel
from training.frames import CutoffPlan, FeatureCache, plan_cutoffs, scaled_cutoffs
from training.metrics import churn_metrics, clv_metrics

log = logging.getLogger(__name__)

#: Stacked training rows to aim for: big brands stack fewer cutoffs (see ``frames.scaled_cutoffs``).
DEFAULT_MAX_TRAIN_ROWS = 600_000


@dataclass
class Fitted:
    """A fitted model with the plan it was trained on and its validation figures."""

    kind: str
    model: ChurnModel | CLVModel
    plan: CutoffPlan
    valid: pd.DataFrame
    valid_pred: pd.DataFrame
    metrics: dict[str, float]
    n_train: int
    extra: dict = field(default_factory=dict)



def _plan(cache: FeatureCache, as_of, horizon_days: int, *, n_cutoffs: int, step_days: int, calibration: bool,
          max_train_rows: int | None) -> CutoffPlan:
    plan = plan_cutoffs(as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, calibration=calibration,
                        data_start=cache.data.data_start)
    n = scaled_cutoffs(cache.n_buyers(plan.train[-1]), len(plan.train), max_rows=max_train_rows)
    if n < len(plan.train):
        log.info("%d buyers per cutoff: stacking %d of %d training cutoffs", cache.n_buyers(plan.train[-1]), n,
                 len(plan.train))
        plan.train = plan.train[-n:]
    return plan


def fit_churn(cache: FeatureCache, as_of, *, horizon_days: int = 90, n_cutoffs: int = 8, step_days: int = 30,
              max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, random_state: int = 0,
              progress: Callable[[], None] | None = None, **params) -> Fitted:
    """Fit the churn model for ``as_of`` (trees on stacked cutoffs, calibrator on the next slice) and validate it.

    ``params`` go to :class:`ChurnModel` (``calibration``, ``family``, LightGBM settings); the family is chosen
    on the validation window, as CLV's is. The BTYD model fitted at
    ``as_of`` computes the BTYD inputs at scoring time; validation uses the one fitted at the validation cutoff,
    exactly as scoring on that day would have.
    """
    plan = _plan(cache, as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, calibration=True,
                 max_train_rows=max_train_rows)
    train = cache.labelled(plan.train, horizon_days, progress=progress)
    calib = cache.labelled([plan.calibration], horizon_days, progress=progress)
    valid = cache.labelled([plan.validation], horizon_days, progress=progress)
    btyd = cache.btyd(plan.as_of)
    model = ChurnModel(horizon_days, random_state=random_state, **params)
    model.fit(train, train["churned"], X_calib=calib, y_calib=calib["churned"], btyd=btyd, X_valid=valid,
              y_valid=valid["churned"])
    p_valid = model.predict_frame(valid)
    return Fitted(kind="churn", model=model, plan=plan, valid=valid, valid_pred=p_valid,
                  metrics=churn_metrics(valid["churned"], p_valid["churn_probability"]), n_train=len(train),
                  extra={"n_calibration": len(calib), "btyd_status": cache.btyd_status(plan.as_of),
                         "family": model.family_, "selection": model.selection_})


def fit_clv(cache: FeatureCache, as_of, *, horizon_days: int = 365, n_cutoffs: int = 8, step_days: int = 30,
            max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, random_state: int = 0,
            progress: Callable[[], None] | None = None, calendar=None, **params) -> Fitted:
    """Fit the CLV model for ``as_of`` on stacked cutoffs; choose the family and validate on the latest window.

    ``params`` go to :class:`CLVModel` (``family``, ``quantiles``, LightGBM settings, ``level_calibration``).
    The level factor's seasonal index is learned from the brand's daily paid revenue before ``as_of`` with the
    festival calendar ``calendar`` (a path); when ``None``, the data directory's ``brand.yaml`` ``calendar``, else
    ``features.calendar.load_calendar``'s default (``$SCRM_CALENDAR``, else the packaged one).
    """
    plan = _plan(cache, as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, calibration=False,
                 max_train_rows=max_train_rows)
    train = cache.labelled(plan.train, horizon_days, progress=progress)
    valid = cache.labelled([plan.validation], horizon_days, progress=progress)
    btyd, btyd_valid = cache.btyd(plan.as_of), cache.btyd(plan.validation)
    model = CLVModel(horizon_days, random_state=random_state, **params)
    if calendar is None and cache.data.source is not None and Path(cache.data.source).is_dir():
        calendar = load_brand(cache.data.source).calendar
    seasonal = fit_seasonal_index(daily_paid_revenue(cache.data.orders, plan.as_of), load_calendar(calendar))
    model.fit(train, train["future_spend"], orders=train["future_orders"], X_valid=valid,
              y_valid=valid["future_spend"], btyd=btyd, btyd_valid=btyd_valid,
              btyd_status=cache.btyd_status(plan.as_of), seasonal=seasonal)
    pred = model.predict_frame(valid, as_of=plan.validation, btyd=btyd_valid)
    return Fitted(kind="clv", model=model, plan=plan, valid=valid, valid_pred=pred,
                  metrics=clv_metrics(valid["future_spend"], pred["clv_mean"], pred["clv_p10"], pred["clv_p90"]),
                  n_train=len(train),
                  extra={"family": model.family_, "selection": model.selection_,
                         "btyd_status": cache.btyd_status(plan.as_of), "level": model.level_info_})



def validate(model: ChurnModel | CLVModel, fitted: Fitted, cache: FeatureCache) -> dict[str, float]:
    """Validation figures of another fitted ``model`` of the same kind on ``fitted``'s validation rows.

    Exactly as the fits above validate their own model (CLV with the BTYD model fitted at the validation
    cutoff); the promotion gate uses it to re-score the champion on a challenger's window.
    """
    valid, validation = fitted.valid, fitted.plan.validation
    if fitted.kind == "churn":
        return churn_metrics(valid["churned"], model.predict_frame(valid)["churn_probability"])
    pred = model.predict_frame(valid, as_of=validation, btyd=cache.btyd(validation))
    return clv_metrics(valid["future_spend"], pred["clv_mean"], pred["clv_p10"], pred["clv_p90"])
