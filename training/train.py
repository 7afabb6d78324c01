"""Training runs: fit on rolling cutoffs, validate on the latest complete window, log to MLflow, register, gate.

``training.fitting.fit_churn`` / ``fit_clv`` are pure (no MLflow) and shared with the backtest; ``train_churn`` /
``train_clv`` / ``train_all`` wrap them in tracked runs that register a new model version and move the ``champion`` alias only
when the new version beats it on the validation metric (churn: ``val.auc``, CLV: ``val.gini``).

Failure safety: the gate runs last, after every model of the command has been fitted, logged and registered, so
a command that fails part-way (bad data, a crash while fitting or logging) never moves ``champion``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from features.brand import check_brand_id, load_brand
from features.dataset import Dataset
from features.pii import pii_key_fingerprint
from training import plots, pyfunc, registry, tracking
from training.churn import ChurnModel
from training.clv import CLVModel
from training.fitting import DEFAULT_MAX_TRAIN_ROWS, Fitted, family_note, validate
from training.frames import FeatureCache, widen
from training.horizons import fit_for_horizon
from training.report import attach_report
from training.scoring import eligibility, eligibility_table

log = logging.getLogger(__name__)

GATE_METRIC = {"churn": "val.auc", "clv": "val.gini"}
LGBM_PARAMS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree",
               "tweedie_variance_power", "interval_estimators", "max_rows", "interval_max_rows", "n_jobs")


@dataclass
class TrainResult:
    """What a tracked training run produced."""

    name: str
    model: ChurnModel | CLVModel
    run_id: str
    version: str | None
    decision: object | None
    metrics: dict[str, float]
    registered_name: str | None = None  # e.g. ``acme.churn_90d`` (see ``registry.model_name``)
    #: the horizon choice and the time layout, in words (printed once by the CLI)
    notes: tuple[str, ...] = ()
    #: who is scored at ``as_of`` and who is not, and why (``training.scoring.eligibility_table``)
    eligibility: pd.DataFrame | None = None


# ---------------------------------------------------------------------------------------------------- tracked runs


def _params(fitted: Fitted, cache: FeatureCache, random_state: int) -> dict:
    model = fitted.model
    choice = fitted.extra.get("horizon")
    params = {"as_of": fitted.plan.as_of.isoformat(), "horizon_days": served_horizon(fitted),
              "random_state": random_state, "n_customers": int(len(cache.features(fitted.plan.as_of))),
              "n_train_rows": fitted.n_train, "n_valid_rows": len(fitted.valid), **fitted.plan.to_params(),
              **(choice.to_params() if choice is not None else {})}
    if fitted.extra.get("sample") is not None:
        params.update(fitted.extra["sample"].to_params())
    for key, value in model.get_params().items():
        if key in ("horizon_days", "random_state"):
            continue
        if key == "family":
            key = "family_requested"
        params[f"lgbm.{key}" if key in LGBM_PARAMS else f"{fitted.kind}.{key}"] = value
    if fitted.kind == "churn":
        params["calibration"] = model.calibration
        params["churn.uses_btyd"] = model.uses_btyd_
        params["churn.family"] = model.family_
    else:
        params["clv.family"] = model.family_
        params["clv.level_factor"] = round(float(model.level_factor()), 6)
        params["interval_level"] = round(model.quantiles[1] - model.quantiles[0], 4)
    btyd = getattr(model, "btyd_", None)
    params["btyd.status"] = "ok" if btyd is not None else "failed"
    if btyd is not None:
        params["btyd.model"] = btyd.model_name_
        params["btyd.penalizer"] = btyd.penalizer_
        for k, v in btyd.params_.items():
            params[f"btyd.{k}"] = round(float(v), 6)
        for k, v in (btyd.gg_params_ or {}).items():
            params[f"btyd.gg_{k}"] = round(float(v), 6)
    return params


def _log_run(data: Dataset, cache: FeatureCache, fitted: Fitted, *, random_state: int, register: bool,
             brand: str):
    """One tracked run: params, metrics, plots, artifacts and the model (registered when ``register``, as
    ``registry.model_name(brand, kind, horizon_days)``).

    Returns ``(run_id, version)``; the gate is left to the caller.
    """
    import mlflow

    name = fitted.kind
    as_of = fitted.plan.as_of
    features = cache.features(as_of)
    tags = {"scrm.kind": name, "scrm.as_of": as_of.isoformat(),
            "scrm.btyd_status": "ok" if fitted.model.btyd_ is not None else "failed",
            registry.TAG_BRAND: brand, registry.TAG_HORIZON: str(served_horizon(fitted)),
            registry.TAG_VALIDATION: fitted.plan.validation.isoformat(),
            tracking.TAG_FEATURE_CONFIG: json.dumps(cache.config.model_dump(mode="json"), sort_keys=True)}
    pii = pii_key_fingerprint(required=False)
    if pii:
        tags[registry.TAG_PII] = pii
    with tracking.start_run(name, run_name=f"{name} {as_of}", params=_params(fitted, cache, random_state),
                            tags=tags) as run:
        tracking.log_dataset_fingerprint(data.fingerprint_dict())
        tracking.log_feature_list(fitted.model.feature_names_)
        reasons = eligibility(features).value_counts().to_dict()
        tracking.log_json({"eligible": int(eligibility(features).isna().sum()), "not_eligible": reasons},
                          "eligibility.json")
        btyd = fitted.model.btyd_
        tracking.log_json({"status": cache.btyd_status(as_of),
                           "model": getattr(btyd, "model_name_", None), "params": getattr(btyd, "params_", None),
                           "gg_params": getattr(btyd, "gg_params_", None),
                           "fit_log": getattr(btyd, "fit_log_", None)}, "btyd.json")
        if btyd is None:
            log.warning("%s: BTYD failed at %s (%s): %s", name, as_of, cache.btyd_status(as_of),
                        "CLV uses the LightGBM family" if name == "clv" else "churn runs without BTYD inputs")
        mlflow.log_metrics({f"val.{k}": float(v) for k, v in fitted.metrics.items() if np.isfinite(v)})
        if fitted.extra.get("sample") is not None:  # the person sample and the noise of the validation figure
            sample = fitted.extra["sample"]
            mlflow.log_metrics({"sample.people": sample.kept,
                                "sample.fraction": sample.kept / sample.buyers if sample.buyers else 1.0,
                                **{f"sample.val_{k}": v for k, v in fitted.extra.get("valid_se", {}).items()}})
        imp = fitted.model.feature_importance()
        tracking.log_figure(plots.feature_importance_plot(list(imp.index), imp.to_numpy()), "feature_importance")
        tracking.log_json({k: float(v) for k, v in imp.items()}, "feature_importance.json")
        for fam, figures in fitted.extra.get("selection", {}).items():
            mlflow.log_metrics({f"selection.{fam}.{k}": float(v) for k, v in figures.items()})
        if fitted.extra.get("selection"):
            tracking.log_json(fitted.extra["selection"], "family_selection.json")
        if fitted.extra.get("level"):
            if fitted.extra["level"].get("applied"):  # the validation total is met by construction after it
                mlflow.log_metric("val.total_error_pct_before_level",
                                  float(fitted.extra["level"]["validation_total_error_pct_before"]))
            tracking.log_json({**fitted.extra["level"], "calendar": fitted.model.window_calendar()},
                              "level_calibration.json")
        if name == "churn":
            y, p = fitted.valid["churned"].to_numpy(dtype=int), fitted.valid_pred["churn_probability"].to_numpy()
            tracking.log_figure(plots.roc_plot(y, p), "roc")
            tracking.log_figure(plots.calibration_plot(y, p), "calibration")
            tracking.log_figure(plots.gains_plot(y, p), "gains")
        else:
            tracking.log_figure(plots.clv_decile_plot(fitted.valid["future_spend"].to_numpy(),
                                                      fitted.valid_pred["clv_mean"].to_numpy()), "clv_deciles")
        example = widen(features[eligibility(features).isna()].head(5))  # the dtypes snapshots have
        info = pyfunc.log_model(fitted.model, input_example=example,
                                registered_model_name=registry.model_name(brand, name, served_horizon(fitted))
                                if register else None)
        version = str(info.registered_model_version) if register else None
        run_id = run.info.run_id
    attach_report(run_id)
    return run_id, version


def _gate(name: str, version: str | None, fitted: Fitted, cache: FeatureCache, brand: str):
    if version is None:
        return None
    metric = GATE_METRIC[name]
    key = metric.split(".", 1)[1]
    registered = registry.model_name(brand, name, served_horizon(fitted))

    def rescore(champion_version: int) -> float:
        champion = registry.load_model(registered, version=champion_version).estimator
        return float(validate(champion, fitted, cache)[key])

    return registry.promotion_gate(registered, version, metric=metric, value=fitted.metrics[key],
                                   higher_is_better=True, rescore=rescore)


def _cache(data: Dataset, cache: FeatureCache | None, random_state: int,
           sample_size: int | None = None) -> FeatureCache:
    return cache or FeatureCache(data, random_state=random_state, sample_size=sample_size)


def train_churn(data: Dataset, as_of, *, cache: FeatureCache | None = None, horizon_days: int = 90,
                n_cutoffs: int = 8, step_days: int = 30, random_state: int = 0, register: bool = True,
                max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, model_params: dict | None = None,
                progress=None, brand: str | None = None) -> TrainResult:
    """Fit, validate, log and register a churn model; the gate then decides whether it becomes champion."""
    return train_all(data, as_of, cache=cache, churn_horizon=horizon_days, n_cutoffs=n_cutoffs,
                     step_days=step_days, random_state=random_state, register=register,
                     max_train_rows=max_train_rows, churn_params=model_params, models=("churn",),
                     progress=progress, brand=brand)["churn"]


def train_clv(data: Dataset, as_of, *, cache: FeatureCache | None = None, horizon_days: int = 365,
              n_cutoffs: int = 8, step_days: int = 30, random_state: int = 0, family: str = "auto",
              register: bool = True, max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
              model_params: dict | None = None, progress=None, brand: str | None = None) -> TrainResult:
    """Fit, validate, log and register a CLV model; the gate then decides whether it becomes champion."""
    return train_all(data, as_of, cache=cache, clv_horizon=horizon_days, n_cutoffs=n_cutoffs,
                     step_days=step_days, random_state=random_state, register=register,
                     max_train_rows=max_train_rows, clv_params={"family": family, **(model_params or {})},
                     models=("clv",), progress=progress, brand=brand)["clv"]


def train_all(data: Dataset, as_of, *, cache: FeatureCache | None = None, churn_horizon: int = 90,
              clv_horizon: int = 365, n_cutoffs: int = 8, step_days: int = 30, random_state: int = 0,
              register: bool = True, max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
              churn_params: dict | None = None, clv_params: dict | None = None,
              models: tuple[str, ...] = ("churn", "clv"), progress=None,
              brand: str | None = None, sample_size: int | None = None) -> dict[str, TrainResult]:
    """Train churn and CLV on shared feature snapshots (each cutoff computed once), then gate each.

    Each horizon is served as :func:`training.horizons.choose_horizon` decides from the history before ``as_of``
    (fitted directly, CLV extrapolated from a shorter window, or the longest supported horizon), with the time
    layout of :func:`training.frames.plan_cutoffs`. Models are registered per brand and the horizon they answer
    for (``registry.model_name``; an extrapolated CLV under the requested horizon, its fitted window in the
    params): ``brand`` defaults to the data directory's (``features.brand.load_brand``). Every model is fitted,
    logged and registered before any alias moves: a failure part-way leaves both ``champion`` aliases untouched
    (already registered versions stay without an alias, tagged ``gate_decision=not_gated``). ``sample_size``:
    buyers per cutoff of the training person sample when no ``cache`` is given (``FeatureCache(sample_size=)``).
    """
    brand = dataset_brand(data, brand)
    unknown = set(models) - set(GATE_METRIC)
    if unknown or not models:
        raise ValueError(f"models must be a non-empty subset of {tuple(GATE_METRIC)}, got {models}")
    cache = _cache(data, cache, random_state, sample_size)
    common = dict(n_cutoffs=n_cutoffs, step_days=step_days, max_train_rows=max_train_rows,
                  random_state=random_state, progress=progress)
    fitted: dict[str, Fitted] = {}
    if "churn" in models:
        fitted["churn"] = fit_for_horizon("churn", cache, as_of, churn_horizon, **common, **(churn_params or {}))
        if "clv" in models and clv_horizon != churn_horizon:  # the CLV cutoffs differ: free the churn ones
            cache.release(fitted["churn"].plan.all_cutoffs, keep=[as_of])
    if "clv" in models:
        fitted["clv"] = fit_for_horizon("clv", cache, as_of, clv_horizon, **common, **(clv_params or {}))
    logged = {name: _log_run(data, cache, f, random_state=random_state, register=register, brand=brand)
              for name, f in fitted.items()}
    results = {}
    table = eligibility_table(eligibility(cache.features(as_of)))
    for name, f in fitted.items():
        run_id, version = logged[name]
        decision = _gate(name, version, f, cache, brand)
        results[name] = TrainResult(name, f.model, run_id, version, decision, f.metrics,
                                    registry.model_name(brand, name, served_horizon(f)), notes=_notes(name, f),
                                    eligibility=table)
    return results


def served_horizon(fitted: Fitted) -> int:
    """The horizon a fitted model answers for: the requested one when CLV is extrapolated from a shorter window
    (``training.horizons``), else the window it was fitted on."""
    choice = fitted.extra.get("horizon")
    return int(choice.horizon) if choice is not None else int(fitted.plan.horizon_days)


def _notes(name: str, fitted: Fitted) -> tuple[str, ...]:
    choice = fitted.extra.get("horizon")
    head = (f"{name}: {choice.horizon}-day horizon, {choice.mode}" if choice is not None
            else f"{name}: {fitted.plan.horizon_days}-day horizon")
    out = [f"{head} — {choice.reason}" if choice is not None and choice.mode != "direct" else head,
           f"{name} layout {fitted.plan.layout}: {fitted.plan.reason}; days per part "
           + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fitted.plan.parts().items())]
    out.append(f"{name}: {family_note(fitted)}")
    if fitted.extra.get("refit"):
        cuts = fitted.model.train_cutoffs_
        out.append(f"{name}: chosen on cutoffs up to {fitted.extra['candidate_cutoffs'][-1]}, then refit on "
                   f"{len(cuts)} cutoffs {cuts[0]} … {cuts[-1]}")
    return tuple(out)


def dataset_brand(data: Dataset, brand: str | None = None) -> str:
    """The brand id of a data set: ``brand`` (``--brand``), else its directory's ``brand.yaml`` or name."""
    if brand is not None:
        return check_brand_id(brand)
    if data.source is None:
        raise ValueError("the data set has no directory to take its brand from: pass brand=...")
    return load_brand(data.source).brand


def default_as_of(data: Dataset) -> date:
    """The day after the last accepted order or event: "today" for a daily scoring job.

    Accepted rows only: the contract quarantines timestamps after the run's time or the plausible end of the data
    (``future_timestamp``), so a few orders dated 2030 cannot move it.
    """
    return (data.data_end + pd.Timedelta(days=1)).date()


__all__ = ["GATE_METRIC", "TrainResult", "dataset_brand", "default_as_of", "train_all", "train_churn", "train_clv"]
