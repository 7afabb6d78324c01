"""training.drift: PSI / JS per column, thresholds, the report files, and `scrm drift` on a small simulated brand."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from metric_inventory import unlisted
from model_data import AS_OF, fitted_churn, fitted_clv, small
from typer.testing import CliRunner

from training import drift
from training.cli import app
from training.drift import (
    DriftThresholds,
    Limits,
    compare_columns,
    compute_drift,
    js_distance,
    load_thresholds,
    numeric_bins,
    psi,
)

RNG_SEED = 11


def _rows(ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str], thresholds: DriftThresholds | None = None):
    t = thresholds or DriftThresholds()
    return {r["name"]: r for r in compare_columns(ref, cur, cols, limits=t.for_feature, bins=t.bins,
                                                   epsilon=t.epsilon)}


def test_psi_of_identical_distributions_is_zero_and_a_shift_alerts():
    rng = np.random.default_rng(RNG_SEED)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "n": rng.poisson(1.5, 20_000).astype(float)})
    same = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "n": rng.poisson(1.5, 20_000).astype(float)})
    shifted = pd.DataFrame({"x": rng.normal(0.8, 1, 20_000), "n": rng.poisson(3.0, 20_000).astype(float)})
    rows = _rows(ref, ref, ["x", "n"])
    assert rows["x"]["psi"] == pytest.approx(0.0, abs=1e-12) and rows["x"]["js"] == pytest.approx(0.0, abs=1e-6)
    rows = _rows(ref, same, ["x", "n"])
    assert rows["x"]["psi"] < 0.01 and rows["n"]["psi"] < 0.01 and {r["status"] for r in rows.values()} == {"ok"}
    rows = _rows(ref, shifted, ["x", "n"])
    assert rows["x"]["psi"] > 0.25 and rows["n"]["psi"] > 0.25
    assert rows["x"]["status"] == rows["n"]["status"] == "alert"
    assert 0 < rows["x"]["js"] < 1
    # decile bins on the reference: ten equal shares plus an empty missing bin
    assert np.allclose(rows["x"]["bins"]["reference"][:-1], 0.1, atol=1e-3)
    assert rows["x"]["bins"]["labels"][-1] == "missing"


def test_psi_formula_and_epsilon_for_empty_bins():
    assert psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(2.5))
    # an empty current bin counts as epsilon: finite, and larger with a smaller epsilon
    big, small_eps = psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-2), psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-6)
    assert math.isfinite(small_eps) and small_eps > big > 0.25
    assert js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert js_distance([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)


def test_categorical_psi_by_category_share():
    ref = pd.DataFrame({"stage": ["active"] * 50 + ["lapsing"] * 50, "opt": [True] * 10 + [False] * 90})
    cur = pd.DataFrame({"stage": ["active"] * 80 + ["lapsing"] * 15 + [None] * 5, "opt": [True] * 10 + [False] * 90})
    rows = _rows(ref, cur, ["stage", "opt"])
    stage = rows["stage"]
    assert stage["kind"] == "categorical"
    assert stage["bins"]["labels"] == ["active", "lapsing", "missing"]
    assert stage["bins"]["current"] == pytest.approx([0.8, 0.15, 0.05])
    assert stage["psi"] == pytest.approx(psi([0.5, 0.5, 0.0], [0.8, 0.15, 0.05]))
    assert stage["current_missing"] == pytest.approx(0.05) and stage["status"] == "alert"
    assert rows["opt"]["kind"] == "categorical" and rows["opt"]["psi"] == pytest.approx(0.0)


def test_empty_constant_and_missing_columns():
    n = 1000
    ref = pd.DataFrame({"const": np.full(n, 3.0), "empty": np.full(n, np.nan), "gone": np.arange(n, dtype=float)})
    cur = pd.DataFrame({"const": np.full(n, 3.0), "empty": np.full(n, np.nan)})
    rows = _rows(ref, cur, ["const", "empty", "gone"])
    assert rows["const"]["psi"] == pytest.approx(0.0) and rows["const"]["bins"]["labels"] == ["≤ 3", "> 3", "missing"]
    assert rows["empty"]["psi"] == pytest.approx(0.0) and rows["empty"]["bins"]["labels"] == ["any value", "missing"]
    assert rows["gone"]["status"] == "alert" and "missing from the current" in rows["gone"]["note"]
    # a constant reference and a current that moved above it; values appearing in an all-missing column
    moved = _rows(ref, pd.DataFrame({"const": np.full(n, 4.0), "empty": np.ones(n)}), ["const", "empty"])
    assert moved["const"]["psi"] > 1 and moved["empty"]["psi"] > 1
    b = numeric_bins(np.array([]), np.array([1.0, np.nan]))
    assert b["reference"].sum() == 0 and b["current"].tolist() == [0.5, 0.5]


def test_compute_drift_population_eligibility_and_status():
    rng = np.random.default_rng(RNG_SEED)

    def frame(n, no_order_share):
        orders = np.where(rng.random(n) < no_order_share, 0, rng.integers(1, 6, n)).astype(float)
        return pd.DataFrame({"person_id": [f"p{i}" for i in range(n)], "orders": orders,
                             "tenure_days": rng.integers(30, 900, n).astype(float),
                             "recency_days": rng.exponential(60, n), "lifecycle_stage": "active"})

    ref, cur = frame(4000, 0.10), frame(4600, 0.25)
    report = compute_drift(ref, cur)
    assert report.population == {"reference": 4000, "current": 4600, "change_pct": pytest.approx(15.0),
                                 "status": "warn"}
    elig = {r["group"]: r for r in report.eligibility}
    assert elig["scored"]["delta_pts"] == pytest.approx(-15.0, abs=2.5) and elig["scored"]["status"] == "alert"
    assert {r["name"] for r in report.features} == {"orders", "tenure_days", "recency_days"}
    assert report.status == "alert" and report.to_dict()["status"] == "alert"
    relaxed = DriftThresholds(psi=Limits(warn=5, alert=10), population_change_pct=Limits(warn=50, alert=90),
                              eligibility_share_pts=Limits(warn=30, alert=50), features={"nope": Limits(warn=1, alert=2)})
    calm = compute_drift(ref, cur, thresholds=relaxed)
    assert calm.status == "ok" and any("'nope'" in note for note in calm.notes)
    with pytest.raises(ValueError, match="reference snapshot has no rows"):
        compute_drift(ref.iloc[:0], cur)


def test_thresholds_yaml(tmp_path):
    good = tmp_path / "drift.yaml"
    good.write_text("psi: {warn: 0.2, alert: 0.5}\nfeatures:\n  recency_days: {warn: 0.3, alert: 0.6}\nbins: 20\n")
    t = load_thresholds(good)
    assert t.psi == Limits(warn=0.2, alert=0.5) and t.bins == 20
    assert t.for_feature("recency_days").alert == 0.6 and t.for_feature("orders").alert == 0.5
    assert t.scores == DriftThresholds().scores
    for text, match in (("psi_warn: 0.1\n", "psi_warn: Extra inputs are not permitted"),
                        ("psi: {warn: 0.1, alert: 0.2, critical: 0.5}\n", "psi.critical"),
                        ("psi: {warn: 0.3, alert: 0.2}\n", "must not exceed alert"),
                        ("- 1\n- 2\n", "must be a mapping"),
                        ("bins: 1\n", "bins")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as info:
            load_thresholds(bad)
        assert str(bad) in str(info.value)


def test_report_files_and_metrics(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    ref = pd.DataFrame({"person_id": ["a"] * 500, "orders": rng.integers(1, 4, 500).astype(float),
                        "tenure_days": rng.normal(300, 50, 500)})
    cur = ref.assign(tenure_days=ref["tenure_days"] + 200)
    report = compute_drift(ref, cur, reference_info={"as_of": "2025-01-01"}, current_info={"as_of": "2025-02-01"})
    json_path, html_path = drift.write_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["status"] == "alert" and data["features"][0]["name"] == "tenure_days"
    html = html_path.read_text()
    assert "tenure_days" in html and "2025-02-01" in html and "alert" in html and "<svg" in html
    m = drift.metrics(report)
    assert m["drift.tenure_days.psi"] > 0.25 and m["drift.orders.psi"] < 0.1 and m["drift.n_alert"] == 1.0


# --- the CLI on a small simulated brand -------------------------------------------------------------------------


@pytest.fixture
def brand(tmp_path):
    """The 1,500-customer simulated brand's tables, copied so snapshots written under features/ stay local."""
    data = tmp_path / "brand"
    shutil.copytree(small().data_dir, data, ignore=shutil.ignore_patterns("features", "drift"))
    return data


def _monitoring_runs():
    from training import tracking

    exp = tracking.client().get_experiment_by_name("monitoring")
    return tracking.client().search_runs([exp.experiment_id]) if exp is not None else []


def test_cli_drift_features_only_exit_codes_and_files(brand, tmp_path):
    runner = CliRunner()
    calm = tmp_path / "calm.yaml"
    calm.write_text("psi: {warn: 5, alert: 10}\npopulation_change_pct: {warn: 90, alert: 99}\n"
                    "eligibility_share_pts: {warn: 50, alert: 90}\n")
    result = runner.invoke(app, ["drift", "--data", str(brand), "--from", "2025-05-01", "--to", "2025-06-01",
                                 "--thresholds", str(calm), "--out", str(tmp_path / "calm")])
    assert result.exit_code == 0, result.output
    assert "features and eligibility only" in result.output
    calm_json = json.loads((tmp_path / "calm" / "drift.json").read_text())
    assert calm_json["status"] == "ok" and calm_json["scores"] == [] and calm_json["models"] is None
    assert calm_json["reference"]["built"] and (brand / "features" / "as_of=2025-05-01" / "manifest.json").exists()

    # far apart with the default thresholds: the population more than doubles -> alert, exit 3
    result = runner.invoke(app, ["drift", "--data", str(brand), "--from", "2023-06-01", "--to", "2025-06-01",
                                 "--json", str(tmp_path / "copy.json")])
    assert result.exit_code == 3, result.output
    out_dir = brand / "drift" / "as_of=2025-06-01"
    report = json.loads((out_dir / "drift.json").read_text())
    assert report["status"] == "alert" and report["population"]["status"] == "alert"
    assert report["current"]["built"] is False  # the 2025-06-01 snapshot of the first run was reused
    assert json.loads((tmp_path / "copy.json").read_text()) == report
    assert "<html" in (out_dir / "drift.html").read_text()
    psis = [r["psi"] for r in report["features"] if r["status"] == report["features"][0]["status"]]
    assert psis == sorted(psis, reverse=True)  # worst first
    runs = _monitoring_runs()
    assert len(runs) == 2
    alert_run = next(r for r in runs if r.data.tags["scrm.drift_status"] == "alert")
    assert alert_run.data.tags["scrm.kind"] == "monitoring" and alert_run.data.params["reference_as_of"] == "2023-06-01"
    top = report["features"][0]
    assert alert_run.data.metrics[f"drift.{top['name']}.psi"] == pytest.approx(top["psi"])
    assert unlisted(alert_run.data.metrics) == []  # every drift metric has a direction (metric_inventory)

    bad = tmp_path / "bad.yaml"
    bad.write_text("psi: {warn: 0.1, alert: 0.2}\nunknown: 1\n")
    result = runner.invoke(app, ["drift", "--data", str(brand), "--from", "2025-05-01", "--thresholds", str(bad)])
    assert result.exit_code == 2 and "unknown" in result.output
    result = runner.invoke(app, ["drift", "--data", str(brand), "--to", "2025-06-01", "--no-mlflow"])
    assert result.exit_code == 2 and "give --from" in result.output


def test_cli_drift_scores_with_champions(brand, tmp_path):
    import mlflow

    from features.brand import load_brand
    from training import pyfunc, registry, tracking

    snapshot = small().cache.features(AS_OF)
    brand_id = load_brand(brand).brand  # drift scores with this brand's champions (default horizons)
    for name, fitted in (("churn", fitted_churn()), ("clv", fitted_clv())):
        metric = "val.auc" if name == "churn" else "val.gini"
        registered = registry.model_name(brand_id, name)
        with tracking.start_run(name, run_name=f"{name} drift test", tags={"scrm.as_of": AS_OF.isoformat()}):
            mlflow.log_metric(metric, 0.5)
            info = pyfunc.log_model(fitted.model, input_example=snapshot[snapshot["orders"] >= 1].head(5),
                                    registered_model_name=registered)
        registry.promotion_gate(registered, info.registered_model_version, metric=metric, value=0.5)
    assert drift.champion_as_of(registry.model_name(brand_id, "churn")) == AS_OF
    result = CliRunner().invoke(app, ["drift", "--data", str(brand), "--to", "2025-08-01", "--no-mlflow",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code in (0, 3), result.output
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert report["reference"]["as_of"] == AS_OF.isoformat() and f"champion {brand_id}.churn_90d v1" in report["reference"]["source"]
    assert report["models"] == {"churn": "1", "clv": "1"}
    names = {r["name"]: r for r in report["scores"]}
    assert set(names) >= {"churn_probability", "clv_mean"} and names["churn_probability"]["kind"] == "numeric"
    assert names["tier"]["kind"] == "categorical"
    # eligibility shares come from the scores' ineligible_reason and add up to one
    assert sum(r["current_share"] for r in report["eligibility"]) == pytest.approx(1.0)
    assert (result.exit_code == 3) == (report["status"] == "alert")
    assert _monitoring_runs() == []
