"""The HTML quality report: expected sections, embedded figures, plain-words baselines, offline viewing, CLI.

Runs are logged the way training and backtest log them (tracking.start_run, plots/<name>.png, eligibility.json,
feature_importance.json, data_fingerprint.json) into the per-test MLflow store from tests/conftest.py.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from training import tracking  # noqa: E402
from training.cli import app  # noqa: E402
from training.report import NOT_AVAILABLE, build_report, log_report  # noqa: E402


@pytest.fixture(scope="module")
def _template_store(tmp_path_factory):
    """An empty, fully migrated MLflow sqlite store, built once per module (migrations take seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _fast_store(_isolated_mlflow, _template_store):
    """Start each test's isolated store (tests/conftest.py) from a copy of the migrated template."""
    target = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    if not target.exists():
        shutil.copyfile(_template_store, target)


PNG = "data:image/png;base64,"
FINGERPRINT = {
    "orders": {"file": "/data/shop/orders.parquet", "sha256": "ab" * 32, "rows_read": 1200, "rows_used": 1180,
               "rows_rejected": 20},
}


def _figure(seed: int):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [seed, seed + 1, seed * 2])
    return fig


def log_run(experiment, *, params, metrics, plots=(), artifacts=None, tags=None):
    """Log a finished run like training does; returns its run id."""
    with tracking.start_run(experiment, run_name=f"{experiment} test", params=params,
                            tags={"scrm.as_of": params.get("as_of", ""), **(tags or {})}) as run:
        tracking.log_dataset_fingerprint(FINGERPRINT)
        mlflow.log_metrics(metrics)
        for i, name in enumerate(plots):
            fig = _figure(i)
            tracking.log_figure(fig, name)
            plt.close(fig)
        for name, obj in (artifacts or {}).items():
            tracking.log_json(obj, name)
    return run.info.run_id


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, flags=re.S)
    assert match, f"section {name!r} missing"
    return match.group(1)


def assert_offline(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower()
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith(PNG)


@pytest.fixture
def churn_run():
    return log_run(
        "churn",
        params={"as_of": "2025-07-01", "horizon_days": 90, "n_customers": 1500, "n_train_rows": 4200,
                "cutoffs": "2025-01-02,2025-02-01", "lgbm.num_leaves": 31, "note": "<script>alert(1)</script>"},
        metrics={"val.auc": 0.812, "val.brier": 0.171, "val.baselines.recency.auc": 0.743},
        plots=("roc", "calibration", "gains", "feature_importance"),
        artifacts={
            "eligibility.json": {"eligible": 1320, "not_eligible": {"no_paid_order": 150, "opted_out": 30}},
            "feature_importance.json": {"recency_days": 120.0, "orders_365d": 80.0, "spend_90d": 10.0},
        },
    )


def test_churn_report_sections_and_figures(churn_run, tmp_path):
    out = build_report(churn_run, tmp_path / "sub" / "churn.html")
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for name in ("prediction", "data", "quality", "charts", "features", "details"):
        section(html, name)
    assert "Churn risk model" in html
    prediction = section(html, "prediction")
    assert "90 days after 2025-07-01" in prediction and "no paid order" in prediction
    data = section(html, "data")
    assert "1,500" in data and "4,200" in data  # customers, training rows
    assert "no paid order" in data and "opted out" in data and "180" in data  # reasons and total not eligible
    assert "2025-07-01 to 2025-09-28" in data  # the 90-day prediction window
    assert "orders.parquet" in data and "1,180" in data  # input table accounting
    quality = section(html, "quality")
    assert "ranks customers better than the simple recency rule: AUC 0.812 vs 0.743" in quality
    charts = section(html, "charts")
    for chart in ("roc", "calibration", "gains"):
        assert f'id="chart-{chart}"' in charts
    assert charts.count(PNG) == 3 and NOT_AVAILABLE not in charts
    features = section(html, "features")
    assert features.count(PNG) == 1
    assert features.index("recency_days") < features.index("orders_365d") < features.index("spend_90d")
    assert html.count(PNG) == 4
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # params are escaped
    assert_offline(html)


def test_backtest_report_baselines_in_plain_words(tmp_path):
    run_id = log_run(
        "backtest",
        params={"as_of": "2025-04-01", "horizon_days": 90, "n_customers": 2000},
        metrics={
            "churn.model.auc": 0.81, "churn.baselines.recency.auc": 0.74, "churn.baselines.btyd.auc": 0.83,
            "churn.model.brier": 0.15,
            "clv.model.total_error_pct": -3.2, "clv.baselines.btyd_gg.total_error_pct": 12.5,
            "clv.model.spearman": 0.61, "clv.baselines.last_period.spearman": 0.61,
            "clv.model.interval_coverage": 0.78,
            "oracle.churn_auc": 0.84, "oracle.coverage": 1.0,
            "data.orders.rows_read": 1200,
        },
        plots=("roc", "calibration", "gains", "clv_deciles", "feature_importance"),
        artifacts={"eligibility.json": {"eligible": 1800, "not_eligible": {"no_paid_order": 200}}},
    )
    html = build_report(run_id, tmp_path / "bt.html").read_text(encoding="utf-8")
    assert "Backtest" in html
    quality = section(html, "quality")
    assert "The churn model ranks customers better than the simple recency rule: AUC 0.810 vs 0.740." in quality
    assert "worse than the BG/NBD buy-till-you-die formula: AUC 0.810 vs 0.830" in quality
    assert ("The CLV model predicts total spend better than the BG/NBD + Gamma-Gamma formula: "
            "total spend error -3.2% vs +12.5%") in quality
    assert "as well as the “same as last period” rule" in quality
    assert "best possible AUC would be 0.840" in quality
    assert "rows read" not in quality  # counts are not quality figures
    assert "range coverage" in quality and "nominal 80%" in quality
    charts = section(html, "charts")
    assert 'id="chart-clv_deciles"' in charts and charts.count(PNG) == 4
    assert "Outcomes checked over" in section(html, "data")
    assert html.count(PNG) == 5
    assert_offline(html)


def test_clv_report_without_plots_says_not_available(tmp_path):
    run_id = log_run(
        "clv",
        params={"as_of": "2025-07-01", "horizon_days": 365, "interval_level": 0.8, "lgbm.n_estimators": 300,
                "clv.family": "lgbm"},
        metrics={"val.gini": 0.55, "val.spearman": 0.6, "val.decile_mape": 31.0,
                 "selection.btyd.gini": 0.50, "selection.lgbm.gini": 0.55, "selection.btyd.spearman": 0.58},
    )
    html = build_report(run_id, tmp_path / "clv.html").read_text(encoding="utf-8")
    assert "expected to spend in the 365 days after 2025-07-01" in section(html, "prediction")
    charts = section(html, "charts")
    assert "CLV by decile: predicted vs actual: " + NOT_AVAILABLE in charts
    assert "roc" not in charts.lower()  # churn charts are not expected on a CLV run
    assert "Feature importance " + NOT_AVAILABLE in section(html, "features")
    assert "Eligibility breakdown " + NOT_AVAILABLE in section(html, "data")
    quality = section(html, "quality")
    # the families not chosen are the baselines
    assert ("The model ranks customers by value better than the BG/NBD + Gamma-Gamma formula alone: "
            "Gini 0.550 vs 0.500.") in quality
    assert "LightGBM alone" not in quality  # the chosen family is the model itself
    assert ("The model orders customers by future spend better than the BG/NBD + Gamma-Gamma formula alone: "
            "Spearman correlation 0.600 vs 0.580.") in quality
    assert "random guessing" not in quality  # chance levels only stand in when a run logged no baselines
    assert "no baseline logged" in quality  # decile error has no chance level
    assert "estimators" not in section(html, "data")  # a hyper-parameter, not a customer count
    assert PNG not in html
    assert_offline(html)


def test_churn_family_not_chosen_is_named_as_the_churn_formula(tmp_path):
    run_id = log_run(
        "churn",
        params={"as_of": "2025-07-01", "horizon_days": 90, "churn.family": "lgbm"},
        metrics={"val.auc": 0.82, "selection.lgbm.auc": 0.82, "selection.btyd.auc": 0.78},
    )
    quality = section(build_report(run_id, tmp_path / "churn.html").read_text(encoding="utf-8"), "quality")
    assert "the BG/NBD buy-till-you-die formula" in quality and "0.820 vs 0.780" in quality
    assert "Gamma-Gamma" not in quality  # churn's BTYD family is BG/NBD's P(no order), no spend model


def test_lookalike_report_has_expansion_curve(tmp_path):
    run_id = log_run(
        "lookalike",
        params={"as_of": "2025-07-01", "n_seeds_given": 420, "audience_size": 5000},
        metrics={"holdout.recall_at_1pct": 0.12, "holdout.recall_at_5pct": 0.35, "holdout.recall_at_10pct": 0.52,
                 "holdout.lift_at_5pct": 7.0, "holdout.auc": 0.9, "holdout.n_seeds": 80},
        plots=("expansion_curve",),
        artifacts={"seed_report.json": {"n_given": 420, "n_missing": 0, "n_duplicates": 15, "n_unknown": 5,
                                        "n_valid": 400, "unknown_examples": ["cust-zz-unknown"], "duplicate_examples": []}},
    )
    html = build_report(run_id, tmp_path / "ll.html").read_text(encoding="utf-8")
    assert "Lookalike audience" in html
    charts = section(html, "charts")
    assert 'id="chart-expansion_curve"' in charts and charts.count(PNG) == 1
    quality = section(html, "quality")
    assert "recall in the top 5%" in quality and "35%" in quality
    assert ("The lookalike ranking finds held-out seed customers better than random guessing: "
            "recall in the top 5% 35% vs 5%") in quality
    assert "lift in the top 5%" in quality and "7.00" in quality
    assert "held-out seed customer ranks above" in quality
    assert "random guessing: 0.500 <span class=\"better\">(model better)</span>" in quality  # AUC chance level
    data = section(html, "data")
    assert "seed ids supplied" in data and "420" in data and "seed customers usable" in data
    assert "audience size delivered" in data and "5,000" in data
    assert "Seed ids not used, and why" in data
    assert "duplicate id" in data and "not found among the customers" in data and "empty id" not in data
    assert "cust-zz-unknown" not in html  # seed id examples stay out of the shareable page
    assert_offline(html)


def test_log_report_attaches_artifact(churn_run):
    uri = log_report(churn_run)
    assert uri.endswith("/report.html")
    client = tracking.client()
    assert "report.html" in {f.path for f in client.list_artifacts(churn_run)}
    local = client.download_artifacts(churn_run, "report.html")
    assert "Churn risk model" in open(local, encoding="utf-8").read()


def test_unknown_run_raises(tmp_path):
    with pytest.raises(LookupError, match="unknown run id"):
        build_report("0" * 32, tmp_path / "x.html")


def test_cli_report(churn_run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--run-id", churn_run, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.read_text(encoding="utf-8").count(PNG) == 4
    result = runner.invoke(app, ["report", "--run-id", churn_run[:8], "--out", str(tmp_path / "short.html")])
    assert result.exit_code == 0, result.output  # the 8 characters `scrm runs list` shows are enough
    result = runner.invoke(app, ["report", "--run-id", "nope", "--out", str(tmp_path / "n.html")])
    assert result.exit_code == 2 and "unknown run id" in result.output
    assert not (tmp_path / "n.html").exists()


def test_top_features_table_explains_derived_and_btyd_features():
    """The churn model's top inputs are often derived ones (gap_ratio, days_since_activity, ...): each has words."""
    from types import SimpleNamespace

    from training.report import _feature_importance

    names = ["gap_ratio", "days_since_activity", "recency_ratio", "order_rate", "btyd_p_alive", "browse_90d",
             "events_30d", "days_since_browse", "btyd_expected_spend", "recency_days", "ev_view_30d"]
    run = SimpleNamespace(json_artifacts={"feature_importance.json": {n: 100.0 - i for i, n in enumerate(names)}})
    rows = _feature_importance(run)[0]["rows"]
    assert [r["feature"] for r in rows] == names
    blank = [r["feature"] for r in rows if not r["doc"]]
    assert blank == []
    assert "average gap between purchase days" in rows[0]["doc"]
