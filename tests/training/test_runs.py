"""Run comparison: direction-aware verdicts, champion marking, fingerprint checks, renderers and the CLI.

Runs are created in the per-test MLflow store (tests/conftest.py) with known params, metrics and tags following
the MLflow conventions, with explicit start times so "latest" and "first" are unambiguous.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from training import tracking
from training.cli import app
from training.runs import (
    CSV_COLUMNS,
    RunsError,
    compare_runs,
    judge,
    list_runs,
    render_table,
    to_csv,
    to_json,
)


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


T0 = 1_750_000_000_000  # ms since the epoch; runs start one hour apart


def make_run(experiment, *, name, hour, params=None, metrics=None, fingerprint="fp_a", as_of="2025-06-01"):
    """Create a finished run the way training logs one; returns its run id."""
    from mlflow.entities import Metric, Param

    client = tracking.client()
    exp_id = tracking.get_or_create_experiment(experiment)
    tags = {"scrm.kind": experiment, "scrm.as_of": as_of}
    if fingerprint:
        tags["scrm.data_fingerprint"] = fingerprint
    start = T0 + hour * 3_600_000
    run = client.create_run(exp_id, start_time=start, tags=tags, run_name=name)
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), start, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in {"as_of": as_of, "horizon_days": 90, **(params or {})}.items()],
    )
    client.set_terminated(run_id, end_time=start + 60_000)
    return run_id


def register(model, run_id, *, alias=None):
    client = tracking.client()
    try:
        client.get_registered_model(model)
    except Exception:  # noqa: BLE001 - not registered yet
        client.create_registered_model(model)
    source = client.get_run(run_id).info.artifact_uri + "/model"
    version = client.create_model_version(model, source=source, run_id=run_id)
    if alias:
        client.set_registered_model_alias(model, alias, version.version)
    return version.version


@pytest.fixture
def churn_runs():
    """Three churn runs on the same data: B beats A on AUC but has a worse Brier; C is between."""
    a = make_run(
        "churn", name="churn old", hour=0,
        params={"lgbm.num_leaves": 15, "random_state": 0},
        metrics={"val.auc": 0.74, "val.brier": 0.18, "val.ece": 0.02, "data.orders.rows_read": 1000},
    )
    b = make_run(
        "churn", name="churn new", hour=1,
        params={"lgbm.num_leaves": 31, "random_state": 0},
        metrics={"val.auc": 0.81, "val.brier": 0.20, "val.ece": 0.02, "data.orders.rows_read": 1000},
    )
    c = make_run(
        "churn", name="churn mid", hour=2,
        params={"lgbm.num_leaves": 31, "random_state": 1},
        metrics={"val.auc": 0.78, "val.brier": 0.17, "val.ece": 0.03, "data.orders.rows_read": 1000},
    )
    return a, b, c


def test_judge_knows_each_direction():
    assert judge(0.81, 0.74, "higher") == "better"
    assert judge(0.20, 0.18, "lower") == "worse"
    assert judge(-3.0, 12.0, "abs_lower") == "better"
    assert judge(-15.0, 12.0, "abs_lower") == "worse"
    assert judge(0.78, 0.70, "closer_to_nominal", nominal=0.8) == "better"
    assert judge(0.95, 0.70, "closer_to_nominal", nominal=0.8) == "worse"
    assert judge(0.5, 0.5, "higher") == "same"
    assert judge(0.5, None, "higher") == "n/a"
    assert judge(0.5, 0.4, None) == "n/a"
    assert judge(float("nan"), 0.4, "higher") == "n/a"


def test_compare_two_runs_direction_aware(churn_runs):
    a, b, _ = churn_runs
    cmp = compare_runs("churn", run_ids=[a, b])
    assert cmp.baseline_run_id == a
    assert list(cmp.runs["run_id"]) == [a, b]
    assert cmp.verdict("val.auc", b) == "better"  # AUC up
    assert cmp.verdict("val.brier", b) == "worse"  # Brier up
    assert cmp.verdict("val.ece", b) == "same"
    assert cmp.verdict("val.auc", a) == "baseline"
    assert cmp.verdict("data.orders.rows_read", b) == "n/a"  # a count, not a quality measure
    auc = cmp.metrics[(cmp.metrics["metric"] == "val.auc") & (cmp.metrics["run_id"] == b)].iloc[0]
    assert auc["direction"] == "higher"
    assert auc["delta"] == pytest.approx(0.07)
    assert auc["baseline_value"] == pytest.approx(0.74)
    leaves = cmp.params[(cmp.params["param"] == "lgbm.num_leaves")].set_index("run_id")
    assert leaves.loc[b, "value"] == "31" and bool(leaves.loc[b, "changed"])
    seeds = cmp.params[(cmp.params["param"] == "random_state")].set_index("run_id")
    assert not bool(seeds.loc[b, "changed"])
    assert not cmp.fingerprint_mismatch and cmp.warnings == ()


def test_default_is_latest_runs_oldest_first(churn_runs):
    a, b, c = churn_runs
    cmp = compare_runs("churn")
    assert list(cmp.runs["run_id"]) == [a, b, c]
    assert compare_runs("churn", max_results=2).baseline_run_id == b
    listed = list_runs("churn", max_results=2)
    assert list(listed["run_id"]) == [c, b]  # newest first
    assert listed.loc[0, "run_name"] == "churn mid"
    assert listed.loc[0, "val.auc"] == pytest.approx(0.78)
    assert list(listed.columns[:9]) == [
        "run_id", "run_name", "start_time", "status", "kind", "as_of", "data_fingerprint", "role", "gate_decision",
    ]


def test_clv_total_error_pct_and_coverage_directions():
    a = make_run("clv", name="a", hour=0, params={"interval_level": 0.8},
                 metrics={"val.total_error_pct": 12.0, "val.interval_coverage": 0.70, "val.gini": 0.60})
    b = make_run("clv", name="b", hour=1, params={"interval_level": 0.8},
                 metrics={"val.total_error_pct": -3.0, "val.interval_coverage": 0.78, "val.gini": 0.55})
    c = make_run("clv", name="c", hour=2, params={"interval_level": 0.8},
                 metrics={"val.total_error_pct": -15.0, "val.interval_coverage": 0.95, "val.gini": 0.60})
    cmp = compare_runs("clv", run_ids=[a, b, c])
    assert cmp.verdict("val.total_error_pct", b) == "better"  # |−3| < |12| although −3 − 12 < 0
    assert cmp.verdict("val.total_error_pct", c) == "worse"
    assert cmp.verdict("val.interval_coverage", b) == "better"  # 0.78 is nearer the nominal 0.8 than 0.70
    assert cmp.verdict("val.interval_coverage", c) == "worse"  # 0.95 overshoots by more
    assert cmp.verdict("val.gini", b) == "worse"
    assert cmp.verdict("val.gini", c) == "same"


def test_champion_baseline_and_roles(churn_runs):
    a, b, c = churn_runs
    register("churn", a)
    register("churn", b, alias="champion")
    register("churn", c, alias="challenger")
    cmp = compare_runs("churn", run_ids=[a, c], baseline="champion")
    # the champion is not among --runs: it is added and becomes the first column
    assert list(cmp.runs["run_id"]) == [b, a, c]
    assert cmp.baseline_run_id == b
    roles = cmp.runs.set_index("run_id")["role"]
    assert roles[b] == "champion" and roles[c] == "challenger" and roles[a] == ""
    assert cmp.verdict("val.auc", a) == "worse" and cmp.verdict("val.brier", a) == "better"
    listed = list_runs("churn").set_index("run_id")
    assert listed.loc[b, "role"] == "champion" and listed.loc[c, "role"] == "challenger"
    text = _render(cmp)
    assert "★ champion" in text and "☆ challenger" in text and "(baseline)" in text


def test_fingerprint_mismatch_is_flagged():
    a = make_run("backtest", name="a", hour=0, metrics={"churn.model.auc": 0.8}, fingerprint="fp_a")
    b = make_run("backtest", name="b", hour=1, metrics={"churn.model.auc": 0.9}, fingerprint="fp_b")
    c = make_run("backtest", name="c", hour=2, metrics={"churn.model.auc": 0.7}, fingerprint="fp_a")
    cmp = compare_runs("backtest")
    assert cmp.fingerprint_mismatch
    assert list(cmp.runs["same_data"]) == [True, False, True]
    assert any("DIFFERENT DATA" in w and "fp_a" in w and "fp_b" in w for w in cmp.warnings)
    assert cmp.verdict("churn.model.auc", b) == "better" and cmp.verdict("churn.model.auc", c) == "worse"
    assert "DIFFERENT DATA" in _render(cmp)
    same = compare_runs("backtest", run_ids=[a, c])
    assert not same.fingerprint_mismatch and same.warnings == ()


def test_missing_fingerprint_is_warned():
    make_run("lookalike", name="a", hour=0, metrics={"recall_at_5pct": 0.3}, fingerprint="fp_a")
    make_run("lookalike", name="b", hour=1, metrics={"recall_at_5pct": 0.4}, fingerprint=None)
    cmp = compare_runs("lookalike")
    assert cmp.fingerprint_mismatch
    assert any("no data fingerprint" in w for w in cmp.warnings)


def test_json_and_csv(churn_runs):
    a, b, _ = churn_runs
    register("churn", b, alias="champion")
    cmp = compare_runs("churn", run_ids=[a, b])
    doc = json.loads(to_json(cmp))
    assert doc["experiment"] == "churn" and doc["baseline"] == "first" and doc["baseline_run_id"] == a
    assert doc["fingerprint_mismatch"] is False
    assert [r["run_id"] for r in doc["runs"]] == [a, b]
    assert doc["runs"][1]["role"] == "champion" and doc["runs"][1]["data_fingerprint"] == "fp_a"
    assert doc["metrics"]["val.auc"]["direction"] == "higher"
    assert doc["metrics"]["val.auc"]["runs"][b]["verdict"] == "better"
    assert doc["metrics"]["val.auc"]["runs"][b]["delta"] == pytest.approx(0.07)
    assert doc["metrics"]["val.brier"]["runs"][b]["verdict"] == "worse"
    assert doc["params"]["lgbm.num_leaves"] == {"changed": True, "values": {a: "15", b: "31"}}

    frame = pd.read_csv(io.StringIO(to_csv(cmp)), dtype={"value": str, "baseline_value": str})
    assert list(frame.columns) == CSV_COLUMNS
    row = frame[(frame["section"] == "metric") & (frame["name"] == "val.auc") & (frame["run_id"] == b)].iloc[0]
    assert row["verdict"] == "better" and float(row["delta"]) == pytest.approx(0.07)
    assert row["role"] == "champion" and row["run_name"] == "churn new"
    param = frame[(frame["section"] == "param") & (frame["name"] == "lgbm.num_leaves") & (frame["run_id"] == b)]
    assert param.iloc[0]["verdict"] == "changed" and param.iloc[0]["baseline_value"] == "15"
    assert len(frame) == 2 * (cmp.params["param"].nunique() + cmp.metrics["metric"].nunique())


def test_errors_name_the_problem(churn_runs):
    a, _, _ = churn_runs
    other = make_run("clv", name="x", hour=0, metrics={"val.gini": 0.5})
    with pytest.raises(RunsError, match="unknown experiment 'nope'.*churn"):
        compare_runs("nope")
    with pytest.raises(RunsError, match="unknown run id 'deadbeef'"):
        compare_runs("churn", run_ids=[a, "deadbeef"])
    with pytest.raises(RunsError, match="another experiment"):
        compare_runs("churn", run_ids=[a, other])
    with pytest.raises(RunsError, match="no 'champion' alias"):
        compare_runs("churn", baseline="champion")


def test_backtest_has_no_champion():
    make_run("backtest", name="a", hour=0, metrics={"churn.model.auc": 0.8})
    with pytest.raises(RunsError, match="no registered model"):
        compare_runs("backtest", baseline="champion")


def test_run_id_prefixes_resolve(churn_runs):
    a, b, _ = churn_runs
    cmp = compare_runs("churn", run_ids=[a[:8], b[:8]])
    assert list(cmp.runs["run_id"]) == [a, b]


# --- CLI ----------------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_compare_formats(churn_runs):
    a, b, _ = churn_runs
    register("churn", b, alias="champion")
    result = runner.invoke(app, ["runs", "compare", "--experiment", "churn", "--runs", f"{a},{b}", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["val.auc"]["runs"][b]["verdict"] == "better"

    result = runner.invoke(app, ["runs", "compare", "-e", "churn", "--runs", f"{a[:8]},{b[:8]}", "--format", "csv"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert set(frame["verdict"]) >= {"better", "worse", "baseline", "changed"}

    result = runner.invoke(app, ["runs", "compare", "--experiment", "churn", "--baseline", "champion"])
    assert result.exit_code == 0, result.output
    assert "★ champion" in result.stdout and "better" in result.stdout and "worse" in result.stdout


def test_cli_list(churn_runs):
    result = runner.invoke(app, ["runs", "list", "--experiment", "churn", "--max", "2"])
    assert result.exit_code == 0, result.output
    assert "churn mid" in result.stdout and "churn new" in result.stdout and "churn old" not in result.stdout
    assert "val.auc" in result.stdout


def test_cli_errors_exit_2(churn_runs):
    result = runner.invoke(app, ["runs", "compare", "--experiment", "nope"])
    assert result.exit_code == 2 and "unknown experiment" in result.output
    result = runner.invoke(app, ["runs", "list", "--experiment", "nope"])
    assert result.exit_code == 2 and "unknown experiment" in result.output
    result = runner.invoke(app, ["runs", "compare", "--experiment", "churn", "--runs", "deadbeef"])
    assert result.exit_code == 2 and "unknown run id" in result.output
    result = runner.invoke(app, ["runs", "compare", "--experiment", "churn", "--format", "xml"])
    assert result.exit_code == 2 and "--format" in result.output


def test_cli_help_teaches():
    result = runner.invoke(app, ["runs", "compare", "--help"])
    assert result.exit_code == 0
    for word in ("--baseline", "champion", "--format", "csv", "--runs"):
        assert word in result.output


def _render(cmp) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(render_table(cmp))
    return console.file.getvalue()


def test_backtests_compare_with_every_direction_right():
    """The defect: a widening oracle gap (0.0267 → 0.0305) was marked better because its measure is churn_auc."""
    common = {"oracle.churn_auc": 0.90, "clv.model.decile_mape": 0.3, "clv.model.total_error_pct": 4.0}
    a = make_run("backtest", name="a", hour=0, metrics={**common, "oracle_gap.churn_auc": 0.0267,
                                                         "churn.model.auc": 0.8733, "clv.model.gini": 0.60})
    b = make_run("backtest", name="b", hour=1, metrics={**common, "oracle_gap.churn_auc": 0.0305,
                                                         "churn.model.auc": 0.8695, "clv.model.gini": 0.62,
                                                         "clv.model.decile_mape": 0.25,
                                                         "clv.model.total_error_pct": -6.0})
    cmp = compare_runs("backtest", run_ids=[a, b])
    assert cmp.verdict("oracle_gap.churn_auc", b) == "worse"
    assert cmp.verdict("churn.model.auc", b) == "worse"
    assert cmp.verdict("clv.model.gini", b) == "better"
    assert cmp.verdict("clv.model.decile_mape", b) == "better"
    assert cmp.verdict("clv.model.total_error_pct", b) == "worse"
    assert cmp.verdict("oracle.churn_auc", b) == "same"
    directions = cmp.metrics.drop_duplicates("metric").set_index("metric")["direction"]
    assert directions["oracle_gap.churn_auc"] == "lower"
