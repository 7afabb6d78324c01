"""Pure fits (no MLflow): churn and CLV fitted for one ``as_of`` on stacked cutoffs, validated, then refit.

Shared by the tracked training runs (:mod:`training.train`) and the backtest (:mod:`training.backtest`). The time
layout comes from :func:`training.frames.plan_cutoffs`: candidate models are fitted on training cutoffs whose
label windows end before the validation window, the family and tree count are chosen there, and the chosen
model is refit (same settings, no further choice) on the cutoffs ending at ``as_of - H`` — what is served has
seen the newest complete window. The validation figures are the candidate's, on a window it never saw.
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


def plan(cache: FeatureCache, as_of, horizon_days: int, *, n_cutoffs: int, step_days: int,
         max_train_rows: int | None, layout: str = "auto") -> CutoffPlan:
    """The layout for ``as_of`` on this data (:func:`plan_cutoffs`), with as many cutoffs as the row budget allows."""
    out = plan_cutoffs(as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days,
                       data_start=cache.data.data_start, layout=layout)
    for part in ("train", "refit"):
        cutoffs = getattr(out, part)
        n = scaled_cutoffs(cache.n_rows(cutoffs[-1]), len(cutoffs), max_rows=max_train_rows)
        if n < len(cutoffs):
            log.info("%d training rows per cutoff: stacking %d of %d %s cutoffs", cache.n_rows(cutoffs[-1]), n,
                     len(cutoffs), part)
            setattr(out, part, cutoffs[-n:])
    log.info("%d-day horizon as of %s: %s layout (%s)", horizon_days, out.as_of, out.layout, out.reason)
    return out


def _cutoffs_of(frame: pd.DataFrame) -> list[str]:
    return sorted({pd.Timestamp(c).date().isoformat() for c in frame["cutoff"].unique()})


class BTYDUnavailable(ValueError):
    """The layout needs the BTYD family alone, and the BTYD fit at ``day`` failed."""

    def __init__(self, message: str, *, day):
        super().__init__(message)
        self.day = day


def _needs_btyd(plan_: CutoffPlan, cache: FeatureCache) -> None:
    if plan_.layout == "btyd":
        for day in (plan_.as_of, plan_.validation):
            if cache.btyd(day) is None:
                raise BTYDUnavailable(f"{plan_.reason}; but the BTYD fit at {day} failed "
                                      f"({cache.btyd_status(day)}): use a shorter horizon or a later --as-of",
                                      day=day)


def _layout_rows(cache: FeatureCache, as_of, horizon_days: int, params: dict, *, n_cutoffs: int, step_days: int,
                 max_train_rows: int | None, layout: str, progress):
    """The layout's plan, the model parameters it implies (the BTYD layout serves the BTYD family) and the
    labelled training and validation rows: what :func:`fit_churn` and :func:`fit_clv` both start from.
    With a ``sample_size`` on the cache, every cutoff's rows are those of one person sample drawn at ``as_of``
    (:meth:`FeatureCache.use_sample`)."""
    cache.use_sample(as_of)
    p = plan(cache, as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, max_train_rows=max_train_rows,
             layout=layout)
    _needs_btyd(p, cache)
    if p.layout == "btyd":
        params = {**params, "family": "btyd"}
    train = cache.labelled(p.train, horizon_days, progress=progress)
    valid = cache.labelled([p.validation], horizon_days, progress=progress)
    return p, params, train, valid


def fit_churn(cache: FeatureCache, as_of, *, horizon_days: int = 90, n_cutoffs: int = 8, step_days: int = 30,
              max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, random_state: int = 0,
              progress: Callable[[], None] | None = None, refit: bool = True, layout: str = "auto",
              **params) -> Fitted:
    """Fit the churn model for ``as_of``: choose and validate on the layout's windows, then refit on the newest.

    ``params`` go to :class:`ChurnModel` (``calibration``, ``family``, LightGBM settings); the family is chosen
    on the validation window, as CLV's is, and calibration is cross-fitted out of fold on the training rows. The
    BTYD model fitted at ``as_of`` computes the BTYD inputs at scoring time; validation uses the one fitted at
    the validation cutoff, exactly as scoring on that day would have. ``refit=False`` serves the candidate.
    """
    p, params, train, valid = _layout_rows(cache, as_of, horizon_days, params, n_cutoffs=n_cutoffs,
                                           step_days=step_days, max_train_rows=max_train_rows, layout=layout,
                                           progress=progress)
    btyd = cache.btyd(p.as_of)
    model = ChurnModel(horizon_days, random_state=random_state, **params)
    model.fit(train, train["churned"], btyd=btyd, X_valid=valid, y_valid=valid["churned"])
    p_valid = model.predict_frame(valid)
    metrics = churn_metrics(valid["churned"], p_valid["churn_probability"])
    candidate_cutoffs, n_train = _cutoffs_of(train), len(train)
    if refit and p.layout == "trees" and p.refit != p.train:
        rows = cache.labelled(p.refit, horizon_days, progress=progress)
        chosen = model
        model = ChurnModel(horizon_days, random_state=random_state,
                           **{**params, "family": chosen.family_, "n_estimators": chosen.n_trees_,
                              "early_stopping": False})
        model.fit(rows, rows["churned"], btyd=btyd)
        model.selection_ = chosen.selection_
        train, n_train = rows, len(rows)
    model.train_cutoffs_ = _cutoffs_of(train)
    return Fitted(kind="churn", model=model, plan=p, valid=valid, valid_pred=p_valid, metrics=metrics,
                  n_train=n_train,
                  extra={"btyd_status": cache.btyd_status(p.as_of), "family": model.family_,
                         "selection": model.selection_, "candidate_cutoffs": candidate_cutoffs,
                         "refit": model.train_cutoffs_ != candidate_cutoffs, "sample": cache.sample,
                         "valid_se": validation_se("churn", valid, p_valid, random_state=random_state)})


def fit_clv(cache: FeatureCache, as_of, *, horizon_days: int = 365, n_cutoffs: int = 8, step_days: int = 30,
            max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, random_state: int = 0,
            progress: Callable[[], None] | None = None, refit: bool = True, layout: str = "auto",
            calendar=None, **params) -> Fitted:
    """Fit the CLV model for ``as_of``: choose the family and validate on the latest window, then refit.

    ``params`` go to :class:`CLVModel` (``family``, ``quantiles``, LightGBM settings, ``level_calibration``).
    The level factor's seasonal index is learned from the brand's daily paid revenue before ``as_of`` with the
    festival calendar ``calendar`` (a path); when ``None``, the data directory's ``brand.yaml`` ``calendar``, else
    ``features.calendar.load_calendar``'s default (``$SCRM_CALENDAR``, else the packaged one).

    The level factor is measured out of sample by the chosen (pre-refit) model on the validation window. The
    refit model has seen that window, so it does not measure its own: :meth:`CLVModel.carry_level` gives it
    ``chosen factor × (chosen raw total ÷ refit raw total)`` over the buyers at ``as_of`` (the calibrated total
    at ``as_of`` is the chosen model's; the refit only redistributes it), with the same seasonal index, shrunk
    towards 1 when the chosen model's error drifted over the refit windows it had not seen. With the
    BTYD layout nothing is validated on labelled rows, so there is no level factor (``level_info_`` says why).
    """
    p, params, train, valid = _layout_rows(cache, as_of, horizon_days, params, n_cutoffs=n_cutoffs,
                                           step_days=step_days, max_train_rows=max_train_rows, layout=layout,
                                           progress=progress)
    btyd, btyd_valid = cache.btyd(p.as_of), cache.btyd(p.validation)
    if calendar is None and cache.data.source is not None and Path(cache.data.source).is_dir():
        calendar = load_brand(cache.data.source).calendar
    seasonal = fit_seasonal_index(daily_paid_revenue(cache.data.orders, p.as_of), load_calendar(calendar))
    model = CLVModel(horizon_days, random_state=random_state, **params)
    # with the BTYD layout the only labelled rows are the validation window's: nothing is chosen on them
    trees = p.layout == "trees"
    model.fit(train, train["future_spend"], orders=train["future_orders"],
              X_valid=valid if trees else None, y_valid=valid["future_spend"] if trees else None, btyd=btyd,
              btyd_valid=btyd_valid, btyd_status=cache.btyd_status(p.as_of), seasonal=seasonal)
    pred = model.predict_frame(valid, as_of=p.validation, btyd=btyd_valid)
    metrics = clv_metrics(valid["future_spend"], pred["clv_mean"], pred["clv_p10"], pred["clv_p90"])
    candidate_cutoffs, n_train = _cutoffs_of(train), len(train)
    if refit and trees and p.refit != p.train:
        rows = cache.labelled(p.refit, horizon_days, progress=progress)
        chosen = model
        model = CLVModel(horizon_days, random_state=random_state,
                         **{**params, "family": chosen.family_, "n_estimators": chosen.n_trees_,
                            "early_stopping": False, "level_calibration": False})  # carried, not measured
        model.fit(rows, rows["future_spend"], orders=rows["future_orders"], btyd=btyd,
                  btyd_status=cache.btyd_status(p.as_of))
        snapshot = cache.features(p.as_of)
        model.carry_level(chosen, snapshot[snapshot["orders"] >= 1], p.as_of,
                          windows=_unseen_windows(chosen, rows, max(p.train), cache))
        model.selection_ = chosen.selection_
        train, n_train = rows, len(rows)
    model.train_cutoffs_ = _cutoffs_of(train)
    return Fitted(kind="clv", model=model, plan=p, valid=valid, valid_pred=pred, metrics=metrics, n_train=n_train,
                  extra={"family": model.family_, "selection": model.selection_,
                         "btyd_status": cache.btyd_status(p.as_of), "candidate_cutoffs": candidate_cutoffs,
                         "refit": model.train_cutoffs_ != candidate_cutoffs, "level": model.level_info_,
                         "sample": cache.sample,
                         "valid_se": validation_se("clv", valid, pred, random_state=random_state)})


#: Bootstrap resamples of the validation rows behind :func:`validation_se`.
VALIDATION_BOOTSTRAP = 40


def validation_se(kind: str, valid: pd.DataFrame, pred: pd.DataFrame, *, random_state: int = 0,
                  n_boot: int = VALIDATION_BOOTSTRAP) -> dict[str, float]:
    """Bootstrap standard error of the gate metric (churn ``auc``, CLV ``gini``) over the validation rows: how
    much of a difference between runs (e.g. trained on samples of different sizes) is noise of the window."""
    import numpy as np

    from training.metrics import auc, gini_normalized

    if kind == "churn":
        key, fn, y, p = "auc", auc, valid["churned"].to_numpy(dtype=float), pred["churn_probability"].to_numpy()
    else:
        key, fn, y, p = "gini", gini_normalized, valid["future_spend"].to_numpy(dtype=float), \
            pred["clv_mean"].to_numpy()
    if len(y) < 2:
        return {}
    rng = np.random.default_rng(random_state)
    values = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        value = fn(y[rows], p[rows])
        if np.isfinite(value):
            values.append(value)
    return {f"{key}_se": float(np.std(values, ddof=1))} if len(values) > 1 else {}


def _unseen_windows(chosen: CLVModel, rows: pd.DataFrame, last_train, cache: FeatureCache) -> pd.DataFrame:
    """``chosen``'s raw predicted and the realised totals on the labelled windows of ``rows`` after its newest
    training cutoff ``last_train`` (out of its sample; every label is before ``as_of``), one row per cutoff."""
    out = []
    for cutoff in sorted(c for c in rows["cutoff"].unique() if pd.Timestamp(c) > pd.Timestamp(last_train)):
        part = rows[rows["cutoff"] == cutoff]
        day = pd.Timestamp(cutoff).date()
        pred = chosen._raw_frame(part, as_of=day, btyd=cache.btyd(day), with_intervals=False)["clv_mean"]
        out.append({"cutoff": day, "predicted": float(pred.sum()), "actual": float(part["future_spend"].sum())})
    return pd.DataFrame(out, columns=["cutoff", "predicted", "actual"])


def family_note(fitted: Fitted) -> str:
    """Which family serves and why, in words (the layout's reason, or the validation figures that chose it)."""
    family = fitted.model.family_
    if fitted.plan.layout == "btyd":
        return f"{family} family: {fitted.plan.reason}"
    sel = fitted.extra.get("selection") or {}
    metric = "auc" if fitted.kind == "churn" else "gini"
    if not sel or family not in sel:
        return f"{family} family (no comparison on the validation window)"
    others = ", ".join(f"{k} {v[metric]:.4f}" + ("" if v.get("monotone_orders", True) else
                                                 " (excluded: more past orders lowered its value)")
                       for k, v in sel.items() if k != family)
    return (f"{family} family chosen on the validation window from {fitted.plan.validation}: {metric} "
            f"{sel[family][metric]:.4f} against {others}")


def validate(model, fitted: Fitted, cache: FeatureCache) -> dict[str, float]:
    """Validation figures of another fitted ``model`` of the same kind on ``fitted``'s validation rows.

    Exactly as the fits above validate their own model (CLV with the BTYD model fitted at the validation
    cutoff); the promotion gate uses it to re-score the champion on a challenger's window.
    """
    valid, validation = fitted.valid, fitted.plan.validation
    if fitted.kind == "churn":
        return churn_metrics(valid["churned"], model.predict_frame(valid)["churn_probability"])
    pred = model.predict_frame(valid, as_of=validation, btyd=cache.btyd(validation))
    return clv_metrics(valid["future_spend"], pred["clv_mean"], pred["clv_p10"], pred["clv_p90"])


__all__ = ["DEFAULT_MAX_TRAIN_ROWS", "BTYDUnavailable", "Fitted", "family_note", "fit_churn", "fit_clv", "plan",
           "validate"]
