"""Backtests: the JSON of the issue, the same numbers in MLflow, orders-only data, and the simulator acceptance."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from metric_inventory import unlisted
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, N_CUTOFFS, cdnow_dir, small

from training import tracking
from training.backtest import backtest, flatten, run_backtest
from training.frames import FeatureCache

#: The JSON layout of issue 3 (every key must be there; more are welcome).
ISSUE_KEYS = {
    "as_of": None, "horizon_days": None, "n_customers": None,
    "churn": {"model": {"auc": None, "pr_auc": None, "brier": None, "lift_at_10pct": None, "ece": None},
              "baselines": {"btyd": {"auc": None}, "recency": {"auc": None}}},
    "clv": {"model": {"gini": None, "spearman": None, "total_error_pct": None, "decile_mape": None,
                      "interval_coverage": None},
            "baselines": {"btyd_gg": {"gini": None, "spearman": None, "total_error_pct": None},
                          "last_period": {"gini": None, "spearman": None}}},
    "oracle": {"churn_auc": None, "clv_spearman": None},
    "mlflow_run_id": None,
}


def missing_keys(schema: dict, got: dict, prefix: str = "") -> list[str]:
    out = []
    for k, sub in schema.items():
        if k not in got:
            out.append(prefix + k)
        elif isinstance(sub, dict):
            out += missing_keys(sub, got[k], f"{prefix}{k}.")
    return out


def test_backtest_json_has_the_issue_keys_and_matches_mlflow(tmp_path):
    s = small()
    path = tmp_path / "bt.json"
    result = run_backtest(s.dataset, AS_OF, HORIZON, json_path=path, n_cutoffs=N_CUTOFFS, cache=s.cache,
                          churn_params=FAST, clv_params=FAST_CLV)
    written = json.loads(path.read_text())
    assert missing_keys(ISSUE_KEYS, written) == []
    assert written["as_of"] == "2025-07-01" and written["horizon_days"] == HORIZON
    assert written["n_customers"] == len(s.cache.features(AS_OF))
    assert written["mlflow_run_id"] == result["mlflow_run_id"]
    assert 0 < written["oracle"]["coverage"] <= 1 and written["oracle"]["churn_auc"] > 0.8
    level = written["clv"]["level"]  # the level calibration and the evaluated window's calendar features
    assert level["applied"] and level["validation_cutoff"] == "2025-04-02"
    assert level["calendar"]["cal_days_d618"] == 0 and "cal_seasonal_index" in level["calendar"]
    run = tracking.client().get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["scrm.kind"] == "backtest"
    assert run.data.tags["scrm.brand"] == s.data_dir.name and run.data.tags["scrm.horizon_days"] == str(HORIZON)
    logged = run.data.metrics
    assert unlisted(logged) == []  # every backtest metric has a direction (metric_inventory)
    for key, value in flatten({k: written[k] for k in ("churn", "clv", "oracle")}).items():
        assert logged[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    root = Path(mlflow.artifacts.download_artifacts(run_id=result["mlflow_run_id"]))
    for plot in ("roc", "calibration", "gains", "clv_deciles", "feature_importance"):
        assert (root / "plots" / f"{plot}.png").stat().st_size > 1000
    assert json.loads((root / "backtest.json").read_text())["churn"] == written["churn"]
    tiers = written["tiers"]  # the tier forecast against the tiers realised at as_of + the CLV horizon
    assert tiers["horizon_days"] == HORIZON and tiers["members"] == written["n_customers"] - written["n_not_eligible"]
    assert set(tiers["moves"]) == {"up", "down", "stay"} and set(tiers["movers"]) == {"up", "down"}
    for move in ("up", "down", "stay"):
        m = tiers["moves"][move]
        assert 0 <= m["brier"] < m["brier_constant"] and sum(b["n"] for b in m["reliability"]) == tiers["members"]
        assert logged[f"tiers.moves.{move}.brier"] == pytest.approx(m["brier"])
    # the simulated brand has campaigns with control groups: the uplift block, its metrics and the report rows
    uplift = written["uplift"]
    assert uplift["evaluation_campaign"] == "C2025_winback" and uplift["learner"] == "txl"
    assert set(uplift["baselines"]) == {"by_churn_risk", "by_clv", "random"}
    for key in ("uplift.model.qini", "uplift.baselines.by_clv.incremental_at_30pct", "oracle.uplift_qini"):
        assert key in logged, key
    assert logged["oracle.uplift_qini"] == pytest.approx(uplift["oracle"]["qini"])
    report = (root / "report.html").read_text()
    assert "Campaign uplift" in report and "targeting the highest CLV" in report
    assert run.data.params["as_of"] == "2025-07-01" and "data_fingerprint.json" in {p.name for p in root.iterdir()}


def test_backtest_figures_are_sane(tmp_path):
    s = small()
    result, arrays = backtest(s.dataset, AS_OF, HORIZON, n_cutoffs=N_CUTOFFS, cache=s.cache, churn_params=FAST,
                              clv_params=FAST_CLV)
    churn, clv = result["churn"], result["clv"]
    assert result["n_scored"] == len(arrays["y"]) and 0 < result["churn_rate"] < 1
    assert churn["model"]["auc"] > churn["baselines"]["recency"]["auc"] > 0.6
    assert set(churn["baselines"]["recency"]) == {"auc", "pr_auc", "lift_at_10pct"}  # a ranking: no Brier/ECE
    assert clv["model"]["gini"] > clv["baselines"]["last_period"]["gini"]
    assert 0.5 < clv["model"]["interval_coverage"] <= 1
    assert result["oracle"]["churn_auc"] >= churn["model"]["auc"] - 0.01  # nobody beats the truth
    assert result["oracle_gap"]["churn_auc"] == pytest.approx(result["oracle"]["churn_auc"] - churn["model"]["auc"])
    assert np.isclose(arrays["spend"].sum(), result["total_spend"])


def test_orders_only_data_backtests():
    """CDNOW: orders only (no events, identities or campaigns), no truth: no oracle block."""
    from features.contract import load_dataset

    data = load_dataset(cdnow_dir())
    result, _ = backtest(data, "1998-01-01", 90, n_cutoffs=2, cache=FeatureCache(data), churn_params=FAST,
                         clv_params=FAST_CLV)
    assert "oracle" not in result and result["btyd"]["status"] == "ok"
    assert missing_keys({k: v for k, v in ISSUE_KEYS.items() if k not in ("oracle", "mlflow_run_id")}, result) == []
    assert result["n_customers"] == 2357 and result["churn"]["model"]["auc"] > 0.6
    assert np.isfinite(result["clv"]["model"]["gini"])


def test_backtest_needs_the_whole_evaluation_window():
    s = small()
    with pytest.raises(ValueError, match="before the end of the evaluation window"):
        backtest(s.dataset, "2025-11-01", 90, cache=s.cache)


# ---------------------------------------------------------------------------------------------- acceptance
ACCEPT_N, ACCEPT_SEED = 10_000, 7


@pytest.fixture(scope="module")
def acceptance():
    """Default settings on a 10k-customer simulated brand (as `scrm backtest` would run)."""
    s = small(ACCEPT_N, ACCEPT_SEED)
    result, _ = backtest(s.dataset, AS_OF, 90, cache=s.cache)
    return result


@pytest.mark.slow
def test_simulator_models_beat_every_baseline(acceptance):
    churn, clv = acceptance["churn"], acceptance["clv"]
    for name in ("btyd", "recency"):
        assert churn["model"]["auc"] > churn["baselines"][name]["auc"], name
    for name in ("btyd_gg", "last_period"):
        assert clv["model"]["gini"] > clv["baselines"][name]["gini"], name
    assert churn["model"]["ece"] < 0.05 and abs(clv["model"]["total_error_pct"]) <= 10  # the budget bar (issue 10)


@pytest.mark.slow
def test_simulator_uplift_model_beats_churn_risk_and_random_targeting(acceptance):
    """The uplift block on the 10k brand (the 20k figures are in docs/decisions.md "Uplift")."""
    u = acceptance["uplift"]
    model, base, oracle = u["model"], u["baselines"], u["oracle"]
    true = "true_incremental_at_30pct"
    assert model[true] > 1.5 * base["random"][true] and model[true] > 2 * base["by_churn_risk"][true]
    assert oracle[true] >= max(model[true], *(b[true] for b in base.values()))
    assert model["true_qini"] > base["random"]["true_qini"] and model["true_qini"] > base["by_churn_risk"]["true_qini"]


@pytest.mark.slow
def test_simulator_uplift_ranking_improves_with_training_rows():
    """The gap to the oracle is mostly the learner's noise (docs/decisions.md "more people"): on the same
    evaluation campaigns, the campaign model fitted on a quarter of the training people ranks worse on the truth than
    the one fitted on all of them. On the acceptance brand (its snapshots cached when the backtest ran first)."""
    from training.uplift_campaigns import (
        campaign_sends,
        evaluation_rows,
        feature_columns,
        fit_campaign_model,
        true_qini,
        truth_effects,
    )

    cache = small(ACCEPT_N, ACCEPT_SEED).cache
    sends = campaign_sends(cache.data.campaign_touches)
    gains = []
    for as_of, until in (("2025-04-01", "2025-06-30"), (AS_OF.isoformat(), "2025-09-29")):  # 618, win-back
        _, _, train, rows = evaluation_rows(cache, sends, until, train_until=as_of)
        effect = truth_effects(cache.data.source, rows)["effect_purchase"].to_numpy(float)
        people = train["person_id"].unique()

        def ranked(part: pd.DataFrame, rows: pd.DataFrame = rows, effect: np.ndarray = effect) -> float:
            return true_qini(effect, fit_campaign_model(part)[0].predict(rows[feature_columns(rows)]))

        # three draws of a quarter: one draw alone is noisy (measured 0.29, 0.31, 0.40 on the 618, 0.38 with all)
        quarters = [ranked(train[train["person_id"].isin(rng.choice(people, size=len(people) // 4, replace=False))])
                    for rng in map(np.random.default_rng, range(3))]
        gains.append(ranked(train) - float(np.mean(quarters)))
    assert min(gains) > 0, gains  # measured 0.05 (618) and 0.13 (win-back)


@pytest.mark.slow
def test_simulator_churn_within_0_03_of_the_oracle(acceptance):
    assert acceptance["oracle_gap"]["churn_auc"] <= 0.03  # measured 0.021 (docs/results.md)


@pytest.mark.slow
def test_simulator_clv_within_0_05_of_the_oracle(acceptance):
    """Measured 0.043 here (0.055 before the log-spend blend of the LightGBM family; docs/results.md)."""
    assert acceptance["oracle_gap"]["clv_spearman"] <= 0.05
