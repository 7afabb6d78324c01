"""Tracked training runs: what `scrm train all` logs to MLflow, registers and gates."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from metric_inventory import unlisted
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, N_CUTOFFS, small

from training import registry, tracking
from training.fitting import DEFAULT_MAX_TRAIN_ROWS
from training.train import default_as_of, train_all


@pytest.fixture
def trained():
    s = small()
    return train_all(s.dataset, AS_OF, cache=s.cache, churn_horizon=HORIZON, clv_horizon=HORIZON,
                     n_cutoffs=N_CUTOFFS, churn_params=FAST, clv_params=FAST_CLV)


def _artifacts(run_id: str) -> set[str]:
    root = Path(mlflow.artifacts.download_artifacts(run_id=run_id))
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_train_all_logs_registers_and_gates(trained):
    c = tracking.client()
    for name, metric in (("churn", "val.auc"), ("clv", "val.gini")):
        result = trained[name]
        run = c.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        assert p["as_of"] == AS_OF.isoformat() and p["horizon_days"] == str(HORIZON) and p["random_state"] == "0"
        assert len(p["cutoffs"].split(",")) == N_CUTOFFS and p["validation_cutoff"] == "2025-04-02"
        assert int(p["n_customers"]) == len(small().cache.features(AS_OF))
        assert p["lgbm.n_estimators"] == "40" and p["btyd.model"] == "bg_nbd" and p["btyd.status"] == "ok"
        assert t["scrm.kind"] == name and t["scrm.as_of"] == "2025-07-01" and len(t["scrm.data_fingerprint"]) == 16
        assert t["scrm.gate_decision"] == "first_champion"
        # the time layout, the days per part and why; the refit ends at as_of - H; the horizon choice
        assert p["layout"] == "trees" and p["layout.reason"] and p["refit_cutoffs"].split(",")[-1] == "2025-04-02"
        assert p["layout.validation_window_days"] == str(HORIZON) and p["layout.required_days"] == "240"
        assert p["horizon.mode"] == "direct" and p["horizon.fit_days"] == str(HORIZON)
        assert any("layout trees" in note for note in result.notes)
        assert result.eligibility["people"].sum() == len(small().cache.features(AS_OF))
        assert m[metric] == pytest.approx(result.metrics[metric.split(".")[1]])
        assert unlisted(m) == []  # every training metric has a direction (metric_inventory)
        assert result.version == "1" and result.decision.promoted
        assert result.registered_name == f"{small().data_dir.name}.{name}_{HORIZON}d"
        assert registry.champion_version(result.registered_name) == 1
        assert t["scrm.brand"] == small().data_dir.name and t["scrm.horizon_days"] == str(HORIZON)
        from features.pii import pii_key_fingerprint

        mv = c.get_model_version(result.registered_name, "1")
        assert t["scrm.pii_key_fingerprint"] == mv.tags["scrm.pii_key_fingerprint"] == pii_key_fingerprint()
        assert mv.tags["scrm.validation_cutoff"] == "2025-04-02" and len(mv.tags["scrm.artifact_sha256"]) == 64
        files = _artifacts(result.run_id)
        assert {"data_fingerprint.json", "features.json", "eligibility.json", "btyd.json",
                "plots/feature_importance.png", "report.html"} <= files
        features = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                                       artifact_path="features.json")).read_text())
        assert features == result.model.feature_names_
    churn_files = _artifacts(trained["churn"].run_id)
    assert {"plots/roc.png", "plots/calibration.png", "plots/gains.png"} <= churn_files
    clv_run = c.get_run(trained["clv"].run_id)
    assert "plots/clv_deciles.png" in _artifacts(trained["clv"].run_id)
    assert clv_run.data.params["clv.family"] == trained["clv"].model.family_
    assert clv_run.data.params["interval_level"] == "0.8"
    level = trained["clv"].model.level_info_  # the level calibration is logged with the run
    assert float(clv_run.data.params["clv.level_factor"]) == pytest.approx(trained["clv"].model.level_factor(),
                                                                           rel=1e-5)
    assert clv_run.data.metrics["val.total_error_pct_before_level"] == pytest.approx(
        level["validation_total_error_pct_before"])
    assert "level_calibration.json" in _artifacts(trained["clv"].run_id)
    assert {"selection.lgbm.gini", "selection.btyd.gini", "val.interval_coverage"} <= set(clv_run.data.metrics)
    churn, clv = trained["churn"].metrics, trained["clv"].metrics
    assert 0.5 < churn["auc"] <= 1 and 0 <= churn["brier"] < 0.25 and 0 <= churn["ece"] < 0.2
    assert 0 < clv["gini"] <= 1 and np.isfinite(clv["total_error_pct"])

    # the registered versions carry a signature and predict exactly like the estimators in memory
    snap = small().cache.features(AS_OF)
    buyers = snap[(snap["orders"] >= 1) & (snap["tenure_days"] >= 7)].head(30)
    for name in ("churn", "clv"):
        loaded = registry.load_model(trained[name].registered_name)
        assert loaded.version == 1 and loaded.horizon_days == HORIZON
        assert "2025-04-02" in loaded.estimator.train_cutoffs_  # the champion has seen the newest window
        assert loaded.pyfunc.metadata.signature is not None
        assert "recency_days" in loaded.pyfunc.metadata.signature.inputs.input_names()
        got = loaded.pyfunc.predict(buyers.reset_index(drop=True))
        want = trained[name].model.predict_frame(buyers.reset_index(drop=True))
        num = want.select_dtypes("number").columns
        pd.testing.assert_frame_equal(got[num].reset_index(drop=True), want[num].reset_index(drop=True))


def test_default_as_of_and_defaults():
    data = small().dataset
    assert default_as_of(data) == (data.data_end + pd.Timedelta(days=1)).date()
    assert DEFAULT_MAX_TRAIN_ROWS >= 100_000
    with pytest.raises(ValueError, match="subset"):
        train_all(data, AS_OF, cache=small().cache, models=("lookalike",))


@pytest.mark.slow
def test_train_all_cli_on_a_short_history_extrapolates_and_says_why(tmp_path):
    """`scrm train all` with its defaults (90 / 365 days) on 200 days of orders exits 0 and says what it did."""
    from typer.testing import CliRunner

    from training.cli import app

    orders = small().dataset.orders
    cut = orders[orders["order_ts"] >= pd.Timestamp("2024-12-13")]
    cut.to_parquet(tmp_path / "orders.parquet", index=False)
    result = CliRunner().invoke(app, ["train", "all", "--data", str(tmp_path), "--as-of", "2025-07-01",
                                      "--cutoffs", "2"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "clv: 365-day horizon, extrapolated" in out and "CLV fitted on 60-day windows" in out
    assert "churn layout btyd" in out and "BTYD family alone" in out
    assert "who is scored" in out and "scored" in out
    from features.brand import load_brand

    brand = load_brand(tmp_path).brand  # the extrapolated CLV is registered under the 365 days it answers for
    assert registry.champion_version(registry.model_name(brand, "churn", 90)) == 1
    assert registry.champion_version(registry.model_name(brand, "clv", 365)) == 1
    # scoring with those champions: the horizons are columns, and one table says who is scored and why
    scored = CliRunner().invoke(app, ["score", "--data", str(tmp_path), "--as-of", "2025-07-01",
                                      "--out", str(tmp_path / "scores.csv")])
    assert scored.exit_code == 0, scored.output
    text = " ".join(scored.output.split())
    assert "who is scored" in text and "(90-day horizon)" in text and "(365-day horizon)" in text
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert (scores["churn_horizon_days"] == 90).all() and (scores["clv_horizon_days"] == 365).all()
    not_scored = scores.loc[~scores["eligible"], "ineligible_reason"].value_counts()
    for reason, people in not_scored.items():
        assert f"{reason} │ {people:,}" in scored.output or reason in text


def test_the_absent_tables_note_is_printed_once_per_dataset_not_per_cutoff(capsys):
    """`scrm train` builds a snapshot per rolling cutoff: the note on absent optional tables appeared 11 times."""
    from datetime import timedelta

    from features.dataset import Dataset
    from training.frames import FeatureCache

    cache = FeatureCache(Dataset(orders=small().dataset.orders))
    for k in range(3):
        cache.features(AS_OF - timedelta(days=30 * k))
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "no events, touches, identities table(s)" in err
