"""Honest backtests: train with data before ``as_of`` only, score through the shared path, evaluate after it.

Both models are trained exactly as ``scrm train`` would train them on that day (same rolling cutoffs, same
calibration slice), the snapshot at ``as_of`` is scored with :func:`training.scoring.score`, and the outcomes in
``[as_of, as_of + horizon)`` judge the scores next to simple baselines (and to the simulator's oracle when the data
directory holds ``truth.parquet``).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.dataset import Dataset
from features.identity import resolve_identities
from training import plots, tracking
from training.frames import FeatureCache, as_date
from training.scoring import Models, score
from training.train import attach_report, churn_metrics, clv_metrics, fit_churn, fit_clv

log = logging.getLogger(__name__)


def oracle_frame(data: Dataset, identity: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame | None:
    """The simulator's true P(purchase) and expected spend per resolved ``person_id`` (None without truth).

    Uses the simulator's exact oracle per One-ID person (campaign effects included through the touches).
    """
    truth_dir = Path(data.source) if data.source is not None else None
    if truth_dir is None or not (truth_dir / "truth.parquet").exists() or not (truth_dir / "truth_keys.parquet").exists():
        return None
    from features.simulate import oracle

    return oracle(pd.read_parquet(truth_dir / "truth.parquet"), as_of, horizon_days, touches=data.campaign_touches,
                  truth_keys=pd.read_parquet(truth_dir / "truth_keys.parquet"), key_to_person=identity)


def backtest(data: Dataset, as_of, horizon_days: int = 90, *, n_cutoffs: int = 4, step_days: int = 30,
             random_state: int = 0, progress=None) -> tuple[dict, dict]:
    """Run the backtest; returns the JSON-ready result and the arrays behind its plots."""
    as_of = as_date(as_of)
    end = as_of + timedelta(days=horizon_days)
    if data.data_end < pd.Timestamp(end - timedelta(days=1)):
        raise ValueError(f"the data ends {data.data_end.date()}, before the end of the evaluation window "
                         f"[{as_of}, {end}); choose an earlier --as-of or a shorter --horizon")
    identity = resolve_identities(data).key_to_person
    cache = FeatureCache(data, identity, random_state=random_state)
    churn = fit_churn(cache, as_of, horizon_days=horizon_days, n_cutoffs=n_cutoffs, step_days=step_days,
                      random_state=random_state, progress=progress)
    clv = fit_clv(cache, as_of, horizon_days=horizon_days, n_cutoffs=n_cutoffs, step_days=step_days,
                  random_state=random_state, progress=progress)
    features = cache.features(as_of)
    scores = score(features, Models(churn.model, clv.model), as_of=as_of)
    labels = cache.labels(as_of, horizon_days)
    ev = scores[scores["eligible"]].merge(labels, on="person_id", how="inner", validate="one_to_one")
    buyers = churn.model.with_btyd(features[features["person_id"].isin(ev["person_id"])])
    ev = ev.merge(buyers[["person_id", "btyd_p_purchase", "btyd_expected_spend"]], on="person_id", how="left")
    prev = cache.labels(as_of - timedelta(days=horizon_days), horizon_days) if (
        pd.Timestamp(as_of - timedelta(days=horizon_days)) > data.data_start) else None
    last_period = (ev[["person_id"]].merge(prev[["person_id", "future_spend"]], on="person_id", how="left")
                   ["future_spend"].fillna(0.0).to_numpy() if prev is not None else np.zeros(len(ev)))

    y = ev["churned"].to_numpy(dtype=int)
    p = ev["churn_probability"].to_numpy(dtype=float)
    spend = ev["future_spend"].to_numpy(dtype=float)
    result = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "n_customers": int(len(features)),
        "n_scored": int(len(ev)),
        "n_not_eligible": int((~scores["eligible"]).sum()),
        "not_eligible_reasons": scores.loc[~scores["eligible"], "ineligible_reason"].value_counts().to_dict(),
        "churn_rate": float(y.mean()) if len(y) else float("nan"),
        "random_state": random_state,
        "cutoffs": churn.plan.to_params(),
        "churn": {
            "model": churn_metrics(y, p),
            "validation": churn.metrics,
            "baselines": {
                "btyd": churn_metrics(y, 1.0 - ev["btyd_p_purchase"].fillna(0.5).to_numpy()),
                "recency": churn_metrics(y, _rank01(ev["recency_days"].to_numpy(dtype=float))),
            },
        },
        "clv": {
            "family": clv.model.family_,
            "model": clv_metrics(spend, ev["clv_mean"], ev["clv_p10"], ev["clv_p90"]),
            "validation": clv.metrics,
            "baselines": {
                "btyd_gg": clv_metrics(spend, ev["btyd_expected_spend"].fillna(0.0).to_numpy()),
                "last_period": clv_metrics(spend, last_period),
            },
        },
    }
    # Ranking-only baselines: their probabilities are not calibrated, so only ranking figures are meaningful.
    for name in ("recency",):
        for k in ("brier", "ece"):
            result["churn"]["baselines"][name].pop(k)
    orc = oracle_frame(data, identity, as_of, horizon_days)
    if orc is not None:
        o = ev[["person_id"]].merge(orc, on="person_id", how="left")
        ok = o["p_purchase"].notna().to_numpy()
        result["oracle"] = {
            "churn_auc": churn_metrics(y[ok], 1.0 - o["p_purchase"].to_numpy()[ok])["auc"],
            "clv_spearman": clv_metrics(spend[ok], o["expected_spend"].to_numpy()[ok])["spearman"],
            "coverage": float(ok.mean()),
        }
    arrays = {"y": y, "p": p, "spend": spend, "clv": ev["clv_mean"].to_numpy(dtype=float),
              "importance": churn.model.feature_importance()}
    return result, arrays


def _rank01(x: np.ndarray) -> np.ndarray:
    """Map a score to [0, 1] by rank (a ranking baseline, not a probability)."""
    return pd.Series(x).rank(pct=True).fillna(0.5).to_numpy()


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """``{"churn": {"model": {"auc": .8}}}`` → ``{"churn.model.auc": .8}`` (numbers only)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, int | float | np.floating) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def run_backtest(data: Dataset, as_of, horizon_days: int = 90, *, json_path: Path | None = None,
                 random_state: int = 0, n_cutoffs: int = 4, step_days: int = 30, progress=None) -> dict:
    """Backtest and log everything to the ``backtest`` experiment; optionally write the JSON file."""
    import mlflow

    result, arrays = backtest(data, as_of, horizon_days, random_state=random_state, n_cutoffs=n_cutoffs,
                              step_days=step_days, progress=progress)
    params = {"as_of": result["as_of"], "horizon_days": horizon_days, "random_state": random_state,
              "n_customers": result["n_customers"], "clv.family": result["clv"]["family"], **result["cutoffs"]}
    with tracking.start_run("backtest", run_name=f"backtest {result['as_of']} h{horizon_days}", params=params,
                            tags={"scrm.kind": "backtest", "scrm.as_of": result["as_of"]}) as run:
        result["mlflow_run_id"] = run.info.run_id
        tracking.log_dataset_fingerprint(data.fingerprint_dict())
        mlflow.log_metrics(flatten({k: result[k] for k in ("churn", "clv", "oracle") if k in result}))
        tracking.log_json({"eligible": result["n_scored"], "not_eligible": result["not_eligible_reasons"]},
                          "eligibility.json")
        tracking.log_figure(plots.roc_plot(arrays["y"], arrays["p"]), "roc")
        tracking.log_figure(plots.calibration_plot(arrays["y"], arrays["p"]), "calibration")
        tracking.log_figure(plots.gains_plot(arrays["y"], arrays["p"]), "gains")
        tracking.log_figure(plots.clv_decile_plot(arrays["spend"], arrays["clv"]), "clv_deciles")
        imp = arrays["importance"]
        tracking.log_figure(plots.feature_importance_plot(list(imp.index), imp.to_numpy()), "feature_importance")
        tracking.log_json(result, "backtest.json")
    attach_report(result["mlflow_run_id"])
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return result
