"""Honest backtests: train with data before ``as_of`` only, score through the shared path, evaluate after it.

Both models are trained exactly as ``scrm train`` would train them on that day (same time layout, same horizon
choice: see :mod:`training.horizons`; horizon ``H`` for both unless ``churn_horizon`` / ``clv_horizon`` say
otherwise), the snapshot at ``as_of`` is scored with :func:`training.scoring.score`, and the outcomes in
``[as_of, as_of + H)`` (each model's own ``H``) judge the scores next to simple baselines:

* churn ``btyd``: 1 − the BTYD model's P(at least one order in H) (fitted on the buyers at ``as_of``);
* churn ``recency``: days since the last paid order (a ranking, so only ranking figures are reported);
* CLV ``btyd_gg``: BG/NBD-family expected orders × Gamma-Gamma expected order value;
* CLV ``last_period``: each person's spend in the previous window ``[as_of − H, as_of)``.

The CLV block's ``ranking`` tells how each score ranks a window where most people spend nothing (who spends at
all, and how the spenders are ordered), with ``last_period``'s Spearman once its ties are broken by the model: last
period's spend is 0 for about as many people as spend nothing, and Spearman's average ranks reward that tie
(its ``note`` says so when that is what puts ``last_period`` above the model). The CLV block's ``level`` holds the model's level calibration (the factor, the validation totals it came from,
the brand's festival lifts) and the calendar features of the evaluated window (``features.spec.CALENDAR_SPEC``).

When the data directory holds the simulator's ``truth.parquet`` the ``oracle`` block adds the figures of the
true outcome distribution (``features.simulate.oracle`` per resolved ``person_id``, campaign effects included):
the ceiling of what any model could reach on that data.

The ``tiers`` block (:func:`training.tier_backtest.tier_backtest`) judges the predicted tier at the end of the CLV
horizon and the move probabilities against the tier each member realised then (trailing-12-month spend).

When the data has campaign touches with randomised control groups, the ``uplift`` block
(:mod:`training.uplift_campaigns`) trains an uplift model on the earlier campaigns and judges it on the latest
campaign whose response window ends by ``as_of + H``: Qini, AUUC and incremental conversions in the top 30% next
to targeting by churn risk (this backtest's churn model), by CLV, at random and, on the simulator, by the true
effect (``truth_campaign_effects``).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.dataset import Dataset
from training import plots, tracking
from training.fitting import DEFAULT_MAX_TRAIN_ROWS, family_note
from training.frames import FeatureCache, as_date
from training.horizons import fit_for_horizon
from training.metrics import churn_metrics, clv_metrics, spearman, spend_ranking, ties_broken
from training.report import attach_report
from training.scoring import Models, score
from training.tier_backtest import realised_trailing_spend, tier_backtest
from training.uplift_campaigns import WINDOW_DAYS, uplift_backtest

log = logging.getLogger(__name__)


def oracle_frame(truth_dir: Path, identity: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame | None:
    """The simulator's true P(purchase) and expected spend per resolved ``person_id`` (None without truth).

    Uses the data directory's ``truth.parquet``, ``truth_keys.parquet`` and (when present) the raw
    ``campaign_touches.parquet`` with ``truth_campaign_effects.parquet``, so campaign-caused orders in the window
    are part of the truth.
    """
    truth_dir = Path(truth_dir)
    truth_path, keys_path = truth_dir / "truth.parquet", truth_dir / "truth_keys.parquet"
    if not truth_path.exists() or not keys_path.exists():
        return None
    from features.simulate import oracle

    touches_path = truth_dir / "campaign_touches.parquet"
    touches = pd.read_parquet(touches_path) if touches_path.exists() else None
    if touches is not None and not {"customer_key", "sent_ts", "group"} <= set(touches.columns):
        touches = None
    effects_path = truth_dir / "truth_campaign_effects.parquet"
    effects = pd.read_parquet(effects_path) if touches is not None and effects_path.exists() else None
    return oracle(pd.read_parquet(truth_path), as_of, horizon_days, touches=touches,
                  truth_keys=pd.read_parquet(keys_path), effects=effects, key_to_person=identity)


def backtest(data: Dataset, as_of, horizon_days: int = 90, *, churn_horizon: int | None = None,
             clv_horizon: int | None = None, n_cutoffs: int = 8, step_days: int = 30,
             random_state: int = 0, max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
             churn_params: dict | None = None, clv_params: dict | None = None,
             cache: FeatureCache | None = None, progress=None,
             uplift_window: int | None = WINDOW_DAYS) -> tuple[dict, dict]:
    """Run the backtest; returns the JSON-ready result and the arrays behind its plots.

    When the data has campaign touches with control groups the ``uplift`` block
    (:func:`training.uplift_campaigns.uplift_backtest`, outcome window ``uplift_window`` days; None skips it)
    judges an uplift model trained on the earlier campaigns on the latest one whose window ends by
    ``as_of + H``, next to targeting by churn risk, by CLV, at random and (simulator) by the true effect.

    ``churn_horizon`` / ``clv_horizon`` (default ``horizon_days``) are the horizons asked of each model; each is
    served as :func:`training.horizons.choose_horizon` decides and judged on its own window.

    Raises
    ------
    ValueError
        When the data does not reach the end of the evaluation window, or is too short to train.
    """
    as_of = as_date(as_of)
    asked = {"churn": churn_horizon or horizon_days, "clv": clv_horizon or horizon_days}
    end = as_of + timedelta(days=max(asked.values()))
    if data.data_end < pd.Timestamp(end - timedelta(days=1)):
        raise ValueError(f"the data ends {data.data_end.date()}, before the end of the evaluation window "
                         f"[{as_of}, {end}); choose an earlier --as-of or a shorter --horizon")
    if cache is None:
        cache = FeatureCache(data, random_state=random_state)
    identity = cache.identity_at(as_of)
    common = dict(n_cutoffs=n_cutoffs, step_days=step_days, random_state=random_state,
                  max_train_rows=max_train_rows, progress=progress)
    churn = fit_for_horizon("churn", cache, as_of, asked["churn"], **common, **(churn_params or {}))
    clv = fit_for_horizon("clv", cache, as_of, asked["clv"], **common, **(clv_params or {}))
    hc, hv = churn.extra["horizon"].horizon, clv.extra["horizon"].horizon
    features = cache.features(as_of)
    scores = score(features, Models(churn.model, clv.model), as_of=as_of)
    ev = (scores[scores["eligible"]]
          .merge(cache.labels(as_of, hc)[["person_id", "churned"]], on="person_id", how="inner",
                 validate="one_to_one")
          .merge(cache.labels(as_of, hv)[["person_id", "future_spend"]], on="person_id", how="inner",
                 validate="one_to_one"))
    if ev.empty or ev["churned"].nunique() < 2:
        raise ValueError(f"nothing to evaluate as of {as_of}: {len(ev)} scored buyers, "
                         f"{ev['churned'].nunique() if len(ev) else 0} outcome class(es)")
    buyers = features.set_index("person_id").loc[ev["person_id"]].reset_index()
    btyd = cache.btyd(as_of)
    if btyd is not None:
        btyd_churn = 1.0 - btyd.predict_frame(buyers, hc, with_intervals=False)["p_purchase"].to_numpy()
        bp = btyd.predict_frame(buyers, hv, with_intervals=False)
        btyd_spend = bp["expected_spend"].to_numpy() if "expected_spend" in bp else np.zeros(len(ev))
    else:  # a failed BTYD fit is reported, and the baseline is uninformative
        log.warning("backtest: BTYD failed at %s (%s); its baselines are constant", as_of, cache.btyd_status(as_of))
        btyd_churn, btyd_spend = np.full(len(ev), 0.5), np.zeros(len(ev))
    prev_start = as_of - timedelta(days=hv)
    if pd.Timestamp(prev_start) > data.data_start:
        prev = cache.labels(prev_start, hv)
        last_period = (ev[["person_id"]].merge(prev[["person_id", "future_spend"]], on="person_id", how="left")
                       ["future_spend"].fillna(0.0).to_numpy())
    else:
        last_period = np.zeros(len(ev))

    y = ev["churned"].to_numpy(dtype=int)
    p = ev["churn_probability"].to_numpy(dtype=float)
    spend = ev["future_spend"].to_numpy(dtype=float)
    lo, hi = clv.model.quantiles
    recency = churn_metrics(y, _rank01(ev["recency_days"].to_numpy(dtype=float)))
    result = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "horizons": {"churn": churn.extra["horizon"].describe(), "clv": clv.extra["horizon"].describe()},
        "layout": {"churn": churn.plan.describe(), "clv": clv.plan.describe()},
        "n_customers": int(len(features)),
        "n_scored": int(len(ev)),
        "n_not_eligible": int((~scores["eligible"]).sum()),
        "not_eligible_reasons": scores.loc[~scores["eligible"], "ineligible_reason"].value_counts().to_dict(),
        "churn_rate": float(y.mean()),
        "total_spend": float(spend.sum()),
        "random_state": random_state,
        "cutoffs": {"churn": churn.plan.to_params(), "clv": clv.plan.to_params()},
        "btyd": {"status": cache.btyd_status(as_of), "model": getattr(btyd, "model_name_", None),
                 "params": getattr(btyd, "params_", None), "gg_params": getattr(btyd, "gg_params_", None)},
        "churn": {
            "family": churn.model.family_,
            "note": family_note(churn),
            "model": churn_metrics(y, p),
            "validation": churn.metrics,
            "selection": churn.model.selection_,
            "baselines": {
                "btyd": churn_metrics(y, btyd_churn),
                # a ranking, not a probability: only ranking figures are meaningful
                "recency": {k: recency[k] for k in ("auc", "pr_auc", "lift_at_10pct")},
            },
        },
        "clv": {
            "family": clv.model.family_,
            "note": family_note(clv),
            "interval_level": round(hi - lo, 4),
            "model": clv_metrics(spend, ev["clv_mean"], ev["clv_p10"], ev["clv_p90"]),
            "validation": clv.metrics,
            "selection": clv.model.selection_,
            "level": {**clv.model.level_info_, "factor_at_as_of": clv.model.level_factor(as_of),
                      "calendar": clv.model.window_calendar(as_of)},
            "baselines": {
                "btyd_gg": clv_metrics(spend, btyd_spend),
                "last_period": clv_metrics(spend, last_period),
            },
            "ranking": clv_ranking(spend, ev["clv_mean"].to_numpy(dtype=float), btyd_spend, last_period),
        },
    }
    if data.source is not None:
        orc = oracle_frame(Path(data.source), identity, as_of, hc)
        if orc is not None:
            o = ev[["person_id"]].merge(orc, on="person_id", how="left")
            if hv != hc:
                o = o.drop(columns="expected_spend").merge(
                    oracle_frame(Path(data.source), identity, as_of, hv)[["person_id", "expected_spend"]],
                    on="person_id", how="left")
            ok = (o["p_purchase"].notna() & o["expected_spend"].notna()).to_numpy()
            o_spend = o["expected_spend"].to_numpy(dtype=float)
            result["oracle"] = {
                "churn_auc": churn_metrics(y[ok], 1.0 - o["p_purchase"].to_numpy()[ok])["auc"],
                "clv_spearman": clv_metrics(spend[ok], o_spend[ok])["spearman"],
                "clv_gini": clv_metrics(spend[ok], o_spend[ok])["gini"],
                "coverage": float(ok.mean()),
            }
            result["oracle_gap"] = {
                "churn_auc": result["oracle"]["churn_auc"] - result["churn"]["model"]["auc"],
                "clv_spearman": result["oracle"]["clv_spearman"] - result["clv"]["model"]["spearman"],
            }
    if uplift_window and data.campaign_touches is not None:
        block = uplift_backtest(cache, pd.Timestamp(end), train_until=pd.Timestamp(as_of),
                                models=Models(churn.model, clv.model),
                                window_days=uplift_window, random_state=random_state)
        if block is not None:
            result["uplift"] = block
            if "oracle" in block:
                result.setdefault("oracle", {}).update({f"uplift_{k}": v for k, v in block["oracle"].items()})
    arrays = {"y": y, "p": p, "spend": spend, "clv": ev["clv_mean"].to_numpy(dtype=float),
              "importance": churn.model.feature_importance()}
    if "p_tier_up" in scores.columns:  # the tier forecast against the tier realised at as_of + H
        horizon = int(scores["clv_horizon_days"].dropna().iloc[0])
        realised = realised_trailing_spend(cache, scores, as_of, horizon)
        result["tiers"] = tier_backtest(scores, realised)
        arrays["tiers"] = scores.assign(realised_spend_365d=realised)
    return result, arrays


def clv_ranking(spend: np.ndarray, model: np.ndarray, btyd_spend: np.ndarray, last_period: np.ndarray) -> dict:
    """The ``clv.ranking`` block: :func:`spend_ranking` of the model and of each baseline, ``last_period``'s
    Spearman with its ties broken by the model (``spearman_ties_broken``), and a note when ``last_period``'s
    Spearman is above the model's although the model is better at both parts (who spends at all, how the
    spenders rank): then its tie is what puts it there."""
    m, lp = spend_ranking(spend, model), spend_ranking(spend, last_period)
    broken = spearman(spend, ties_broken(last_period, model))
    out = {"model": m, "baselines": {"btyd_gg": spend_ranking(spend, btyd_spend),
                                     "last_period": {**lp, "spearman_ties_broken": broken}}}
    sp_model, sp_last = spearman(spend, model), spearman(spend, last_period)
    if sp_last > sp_model and m["auc_spends"] > lp["auc_spends"] and m["spearman_spenders"] > lp["spearman_spenders"]:
        out["note"] = (
            f"last_period's Spearman {sp_last:.4f} is above the model's {sp_model:.4f} although the model tells "
            f"better who spends at all (AUC {m['auc_spends']:.4f} vs {lp['auc_spends']:.4f}) and ranks the spenders "
            f"better (Spearman {m['spearman_spenders']:.4f} vs {lp['spearman_spenders']:.4f}): {lp['tied_share']:.1%} "
            f"of people share one last_period value while {np.mean(spend <= 0):.1%} spend nothing in the window, and "
            f"Spearman gives tied values one average rank, which rewards a score tied where the outcome is; with its "
            f"ties broken by the model, last_period's Spearman is {broken:.4f}.")
    return out


def _rank01(x: np.ndarray) -> np.ndarray:
    """Map a score to [0, 1] by rank (a ranking baseline, not a probability)."""
    return pd.Series(x).rank(pct=True).fillna(0.5).to_numpy()


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """``{"churn": {"model": {"auc": .8}}}`` → ``{"churn.model.auc": .8}`` (finite numbers only)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) and np.isfinite(v):
            out[key] = float(v)
    return out


def run_backtest(data: Dataset, as_of, horizon_days: int = 90, *, churn_horizon: int | None = None,
                 clv_horizon: int | None = None, json_path: Path | None = None,
                 random_state: int = 0, n_cutoffs: int = 8, step_days: int = 30,
                 max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS, churn_params: dict | None = None,
                 clv_params: dict | None = None, cache: FeatureCache | None = None, progress=None,
                 brand: str | None = None) -> dict:
    """Backtest and log everything to the ``backtest`` experiment; optionally write the JSON file.

    The run is tagged ``scrm.brand`` (``brand``, else the data directory's brand id) and ``scrm.horizon_days``.

    The metrics logged are the JSON's ``churn``, ``clv``, ``oracle``, ``oracle_gap`` and ``tiers`` blocks flattened
    with dots (``churn.model.auc``, ``clv.baselines.btyd_gg.gini``, ``oracle.churn_auc``, ...), and of the ``uplift``
    block its ``model``, ``baselines``, ``ate`` and counts (``uplift.model.qini``, ...; the oracle's as
    ``oracle.uplift_qini``, ...); the JSON itself is the
    ``backtest.json`` artifact, with plots ``roc``, ``calibration``, ``gains``, ``clv_deciles`` and
    ``feature_importance``.
    """
    import mlflow

    result, arrays = backtest(data, as_of, horizon_days, churn_horizon=churn_horizon, clv_horizon=clv_horizon,
                              random_state=random_state, n_cutoffs=n_cutoffs,
                              step_days=step_days, max_train_rows=max_train_rows, churn_params=churn_params,
                              clv_params=clv_params, cache=cache, progress=progress)
    params = {"as_of": result["as_of"], "horizon_days": horizon_days, "random_state": random_state,
              "n_customers": result["n_customers"], "clv.family": result["clv"]["family"],
              "churn.family": result["churn"]["family"],
              "interval_level": result["clv"]["interval_level"], "cutoffs": result["cutoffs"]["churn"]["cutoffs"],
              "clv_cutoffs": result["cutoffs"]["clv"]["cutoffs"], "btyd.status": result["btyd"]["status"][:200]}
    for kind in ("churn", "clv"):
        lay, hz = result["layout"][kind], result["horizons"][kind]
        params.update({f"{kind}.layout": lay["layout"], f"{kind}.layout.reason": lay["reason"][:500],
                       f"{kind}.refit_cutoffs": ",".join(lay["refit_cutoffs"]),
                       **{f"{kind}.layout.{k}_days": v for k, v in lay["days"].items()},
                       f"{kind}.horizon_days": hz["horizon_days"], f"{kind}.horizon.fit_days": hz["fit_days"],
                       f"{kind}.horizon.mode": hz["mode"], f"{kind}.horizon.reason": hz["reason"][:500]})
    tags = {"scrm.kind": "backtest", "scrm.as_of": result["as_of"], "scrm.horizon_days": str(horizon_days)}
    if brand is not None or data.source is not None:
        from features.brand import check_brand_id, load_brand

        tags["scrm.brand"] = check_brand_id(brand) if brand is not None else load_brand(data.source).brand
    with tracking.start_run("backtest", run_name=f"backtest {result['as_of']} h{horizon_days}", params=params,
                            tags=tags) as run:
        result["mlflow_run_id"] = run.info.run_id
        tracking.log_dataset_fingerprint(data.fingerprint_dict())
        mlflow.log_metrics(flatten({k: result[k] for k in ("churn", "clv", "oracle", "oracle_gap", "tiers")
                                    if k in result}))
        if "uplift" in result:
            logged = ("model", "baselines", "validation_qini", "ate", "true_ate", "n_train", "n_eval", "engaged_share")
            mlflow.log_metrics(flatten({"uplift": {k: v for k, v in result["uplift"].items() if k in logged}}))
            mlflow.log_params({f"uplift.{k}": result["uplift"].get(k)
                               for k in ("evaluation_campaign", "learner", "skipped") if k in result["uplift"]})
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
