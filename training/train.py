"""Training runs: fit on rolling cutoffs, validate on the latest complete window, log to MLflow, register, gate.

``fit_churn`` / ``fit_clv`` are pure (no MLflow) and shared with the backtest; ``train_churn`` / ``train_clv`` /
``train_all`` wrap them in tracked runs that register a new model version and move the ``champion`` alias only
when the new version beats it on the validation metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from features.dataset import Dataset
from features.identity import resolve_identities
from training import metrics as M
from training import plots, tracking
from training.churn import ChurnModel
from training.clv import CLVModel
from training.frames import CutoffPlan, FeatureCache, as_date, plan_cutoffs
from training.scoring import eligibility

log = logging.getLogger(__name__)

GATE_METRIC = {"churn": "val.auc", "clv": "val.gini"}


@dataclass
class Fitted:
    """A fitted model with the plan it was trained on and its validation figures."""

    model: ChurnModel | CLVModel
    plan: CutoffPlan
    valid: pd.DataFrame
    valid_pred: np.ndarray
    metrics: dict[str, float]
    n_train: int
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    name: str
    model: ChurnModel | CLVModel
    run_id: str
    version: str | None
    decision: object | None
    metrics: dict[str, float]


def churn_metrics(y_churned, p) -> dict[str, float]:
    """Churn quality figures (``y_churned`` = 1 for churners, ``p`` = predicted churn probability)."""
    y = np.asarray(y_churned, dtype=int)
    p = np.asarray(p, dtype=float)
    return {
        "auc": M.auc(y, p),
        "pr_auc": M.pr_auc(y, p),
        "brier": M.brier(y, p),
        "lift_at_10pct": M.lift_at(y, p, frac=0.1),
        "ece": M.ece(y, p),
    }


def clv_metrics(actual, pred, lo=None, hi=None) -> dict[str, float]:
    """CLV quality figures; interval coverage only when bounds are given."""
    out = {
        "gini": M.gini_normalized(actual, pred),
        "spearman": M.spearman(actual, pred),
        "total_error_pct": M.total_error_pct(actual, pred),
        "decile_mape": M.decile_mape(actual, pred),
    }
    if lo is not None and hi is not None:
        out["interval_coverage"] = M.interval_coverage(actual, lo, hi)
    return out


def fit_churn(cache: FeatureCache, as_of, *, horizon_days: int = 90, n_cutoffs: int = 4, step_days: int = 30,
              random_state: int = 0, calibration: str = "isotonic", progress=None, **lgbm) -> Fitted:
    """Fit the churn model for ``as_of`` (trees on stacked cutoffs, calibrator on the next slice) and validate it."""
    plan = plan_cutoffs(as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, calibration=True,
                        data_start=cache.data.data_start)
    train = cache.labelled(plan.train, horizon_days, random_state=random_state, progress=progress)
    calib = cache.labelled([plan.calibration], horizon_days, random_state=random_state, progress=progress)
    valid = cache.labelled([plan.validation], horizon_days, random_state=random_state, progress=progress)
    model = ChurnModel(horizon_days, calibration=calibration, random_state=random_state, **lgbm)
    model.fit(train, train["churned"], X_calib=calib, y_calib=calib["churned"])
    p_valid = model.predict_proba(valid)[:, 1]
    model.btyd_ = cache.btyd(plan.as_of)
    return Fitted(model=model, plan=plan, valid=valid, valid_pred=p_valid,
                  metrics=churn_metrics(valid["churned"], p_valid), n_train=len(train),
                  extra={"n_calibration": len(calib)})


def fit_clv(cache: FeatureCache, as_of, *, horizon_days: int = 365, n_cutoffs: int = 4, step_days: int = 30,
            random_state: int = 0, family: str = "auto", progress=None, **lgbm) -> Fitted:
    """Fit the CLV model for ``as_of`` on stacked cutoffs and validate it on the latest complete window."""
    plan = plan_cutoffs(as_of, horizon_days, n_cutoffs=n_cutoffs, step_days=step_days, calibration=False,
                        data_start=cache.data.data_start)
    train = cache.labelled(plan.train, horizon_days, random_state=random_state, progress=progress)
    valid = cache.labelled([plan.validation], horizon_days, random_state=random_state, progress=progress)
    model = CLVModel(horizon_days, family=family, random_state=random_state, **lgbm)
    model.fit(train, train["future_spend"], orders=train["future_orders"], X_valid=valid,
              y_valid=valid["future_spend"])
    model.btyd_ = cache.btyd(plan.validation)  # validate exactly as scoring works: BTYD fitted at the cutoff
    pred = model.predict_frame(valid, as_of=plan.validation)
    model.btyd_ = cache.btyd(plan.as_of)
    return Fitted(model=model, plan=plan, valid=valid, valid_pred=pred["clv_mean"].to_numpy(),
                  metrics=clv_metrics(valid["future_spend"], pred["clv_mean"], pred["clv_p10"], pred["clv_p90"]),
                  n_train=len(train), extra={"family": model.family_, "selection": model.selection_})


def _log_common(data: Dataset, fitted: Fitted, features: pd.DataFrame, random_state: int) -> None:
    tracking.log_dataset_fingerprint(data.fingerprint_dict())
    tracking.log_feature_list(fitted.model.feature_names_)
    reasons = eligibility(features).value_counts().to_dict()
    tracking.log_json({"eligible": int((features["orders"] >= 1).sum()), "not_eligible": reasons},
                      "eligibility.json")
    imp = fitted.model.feature_importance()
    tracking.log_figure(plots.feature_importance_plot(list(imp.index), imp.to_numpy()), "feature_importance")
    tracking.log_json({k: float(v) for k, v in imp.items()}, "feature_importance.json")


def _register(name: str, fitted: Fitted, features: pd.DataFrame, register: bool):
    buyers = features[features["orders"] >= 1]
    info = tracking.log_model(fitted.model, input_example=buyers.head(5),
                              registered_model_name=name if register else None)
    if not register:
        return None, None
    version = str(info.registered_model_version)
    metric = GATE_METRIC[name]
    decision = tracking.promotion_gate(name, version, metric=metric, value=fitted.metrics[metric.split(".", 1)[1]],
                                       higher_is_better=True)
    return version, decision


def _params(kind: str, fitted: Fitted, cache: FeatureCache, random_state: int) -> dict:
    params = {"as_of": fitted.plan.as_of.isoformat(), "horizon_days": fitted.plan.horizon_days,
              "random_state": random_state, "n_customers": int(len(cache.features(fitted.plan.as_of))),
              "n_train_rows": fitted.n_train, "n_valid_rows": len(fitted.valid), **fitted.plan.to_params()}
    model = fitted.model
    for key in ("n_estimators", "learning_rate", "num_leaves", "min_child_samples"):
        params[f"lgbm.{key}"] = getattr(model, key)
    if kind == "churn":
        params["calibration"] = model.calibration
    else:
        params["clv.family"] = model.family_
        params["interval_level"] = round(model.quantiles[1] - model.quantiles[0], 4)
    btyd = getattr(model, "btyd_", None)
    if btyd is not None:
        params["btyd.model"] = btyd.model_name_
        params["btyd.penalizer"] = btyd.penalizer_
    return params


def train_churn(data: Dataset, as_of, *, cache: FeatureCache | None = None, horizon_days: int = 90,
                n_cutoffs: int = 4, step_days: int = 30, random_state: int = 0, register: bool = True,
                progress=None) -> TrainResult:
    """Fit, validate, log and register a churn model; the gate decides whether it becomes champion."""
    cache = cache or FeatureCache(data, resolve_identities(data).key_to_person, random_state=random_state)
    fitted = fit_churn(cache, as_of, horizon_days=horizon_days, n_cutoffs=n_cutoffs, step_days=step_days,
                       random_state=random_state, progress=progress)
    features = cache.features(as_of)
    with tracking.start_run("churn", run_name=f"churn {as_date(as_of)}", params=_params("churn", fitted, cache,
                            random_state), tags={"scrm.kind": "churn", "scrm.as_of": str(as_date(as_of))}) as run:
        _log_common(data, fitted, features, random_state)
        y, p = fitted.valid["churned"].to_numpy(), fitted.valid_pred
        import mlflow

        mlflow.log_metrics({f"val.{k}": v for k, v in fitted.metrics.items()})
        tracking.log_figure(plots.roc_plot(y, p), "roc")
        tracking.log_figure(plots.calibration_plot(y, p), "calibration")
        tracking.log_figure(plots.gains_plot(y, p), "gains")
        version, decision = _register("churn", fitted, features, register)
        run_id = run.info.run_id
    attach_report(run_id)
    return TrainResult("churn", fitted.model, run_id, version, decision, fitted.metrics)


def train_clv(data: Dataset, as_of, *, cache: FeatureCache | None = None, horizon_days: int = 365,
              n_cutoffs: int = 4, step_days: int = 30, random_state: int = 0, family: str = "auto",
              register: bool = True, progress=None) -> TrainResult:
    """Fit, validate, log and register a CLV model; the gate decides whether it becomes champion."""
    cache = cache or FeatureCache(data, resolve_identities(data).key_to_person, random_state=random_state)
    fitted = fit_clv(cache, as_of, horizon_days=horizon_days, n_cutoffs=n_cutoffs, step_days=step_days,
                     random_state=random_state, family=family, progress=progress)
    features = cache.features(as_of)
    with tracking.start_run("clv", run_name=f"clv {as_date(as_of)}", params=_params("clv", fitted, cache,
                            random_state), tags={"scrm.kind": "clv", "scrm.as_of": str(as_date(as_of))}) as run:
        _log_common(data, fitted, features, random_state)
        import mlflow

        mlflow.log_metrics({f"val.{k}": v for k, v in fitted.metrics.items()})
        for fam, figures in fitted.extra["selection"].items():
            mlflow.log_metrics({f"selection.{fam}.{k}": v for k, v in figures.items()})
        tracking.log_figure(plots.clv_decile_plot(fitted.valid["future_spend"].to_numpy(), fitted.valid_pred),
                            "clv_deciles")
        version, decision = _register("clv", fitted, features, register)
        run_id = run.info.run_id
    attach_report(run_id)
    return TrainResult("clv", fitted.model, run_id, version, decision, fitted.metrics)


def train_all(data: Dataset, as_of, *, churn_horizon: int = 90, clv_horizon: int = 365, n_cutoffs: int = 4,
              step_days: int = 30, random_state: int = 0, register: bool = True,
              progress=None) -> dict[str, TrainResult]:
    """Train churn and CLV on shared feature snapshots (each cutoff computed once)."""
    cache = FeatureCache(data, resolve_identities(data).key_to_person, random_state=random_state)
    return {
        "churn": train_churn(data, as_of, cache=cache, horizon_days=churn_horizon, n_cutoffs=n_cutoffs,
                             step_days=step_days, random_state=random_state, register=register, progress=progress),
        "clv": train_clv(data, as_of, cache=cache, horizon_days=clv_horizon, n_cutoffs=n_cutoffs,
                         step_days=step_days, random_state=random_state, register=register, progress=progress),
    }


def attach_report(run_id: str) -> None:
    """Attach the HTML quality report to the run; a report failure never fails training."""
    try:
        from training.report import log_report

        log_report(run_id)
    except Exception as exc:  # noqa: BLE001 - the report is a courtesy artifact
        log.warning("could not build the HTML report for run %s: %s", run_id, exc)


def default_as_of(data: Dataset) -> date:
    """The day after the last order or event: "today" for a daily scoring job."""
    return (data.data_end + pd.Timedelta(days=1)).date()
