"""MLflow tracking and registry against a real sqlite store: runs, artifacts, model round trip, gate, aliases."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from mlflow import MlflowClient

from features.dataset import TableFingerprint
from training import plots, pyfunc, registry, tracking

FINGERPRINT = {
    "orders": {"file": "orders.parquet", "sha256": "a" * 64, "rows_read": 120, "rows_used": 118, "rows_rejected": 2},
    "events": {"file": "events.csv", "sha256": "b" * 64, "rows_read": 40, "rows_used": 40, "rows_rejected": 0},
}


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """One sqlite store with MLflow's schema migrations applied; tests copy it (migrating takes seconds)."""
    store = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
        tracking.client().search_experiments()
        tracking.client().search_registered_models()
    return store / "mlflow.db"


@pytest.fixture
def store(migrated_db, tmp_path, monkeypatch):
    """A fresh, isolated store for this test (a copy of the migrated template)."""
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_db, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("SCRM_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("SCRM_USER", "test-analyst")
    return tmp_path


@pytest.fixture(scope="module")
def training_frame():
    rng = np.random.default_rng(13)
    n = 400
    X = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 365, n),
            "orders": rng.integers(1, 20, n),
            "total_spend": rng.gamma(2.0, 150.0, n),
        }
    )
    logit = 0.01 * X["recency_days"] - 0.2 * X["orders"] + rng.normal(0, 0.5, n)
    y = (logit > np.median(logit)).astype(int)
    return X, y


@pytest.fixture(scope="module")
def lgbm(training_frame):
    X, y = training_frame
    return LGBMClassifier(n_estimators=20, num_leaves=7, random_state=13, verbose=-1).fit(X, y)


class FrameModel:
    """A small sklearn-style estimator with ``predict_frame``, like the project's churn/CLV models."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.mean_ = X["total_spend"].mean()
        return self

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": self.scale * X["total_spend"].to_numpy() / self.mean_}, index=X.index)


def _register(name: str, value: float, training_frame, *, metric: str = "val.auc", scale: float = 1.0) -> int:
    """Train, log and register one version; log its validation metric; return the version number."""
    X, _ = training_frame
    with tracking.start_run(name, params={"random_state": 13}):
        model = FrameModel(scale).fit(X)
        info = pyfunc.log_model(model, input_example=X, registered_model_name=name)
        if not math.isnan(value):
            import mlflow

            mlflow.log_metric(metric, value)
    return int(info.registered_model_version)


# ------------------------------------------------------------------------------------------------ URIs
def test_default_uri_is_embedded_sqlite_under_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SCRM_ARTIFACT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert tracking.artifact_root() == str(tmp_path.resolve() / "mlruns" / "artifacts")


def test_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.delenv("SCRM_ARTIFACT_ROOT", raising=False)
    assert tracking.tracking_uri() == "http://mlflow.internal:5000"
    assert tracking.artifact_root() is None  # a tracking server decides itself
    monkeypatch.setenv("SCRM_ARTIFACT_ROOT", str(tmp_path / "art"))
    assert tracking.artifact_root() == str((tmp_path / "art").resolve())
    monkeypatch.setenv("SCRM_ARTIFACT_ROOT", "s3://bucket/scrm")
    assert tracking.artifact_root() == "s3://bucket/scrm"


def test_first_use_of_a_new_store_is_quiet(tmp_path, monkeypatch, capfd):
    import logging

    for name in ("alembic", "mlflow.store.db.utils"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/new/mlflow.db")
    capfd.readouterr()
    tracking.client().search_experiments()  # creates the database and runs MLflow's migrations
    err = capfd.readouterr().err
    assert "Creating initial MLflow database tables" not in err
    assert "alembic" not in err
    assert (tmp_path / "new" / "mlflow.db").exists()


def test_import_sets_no_tracking_state():
    code = "import sys, training.tracking, training.registry, training.pyfunc; print('mlflow' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------ runs
def test_start_run_logs_params_tags_and_artifact_location(store):
    cutoffs = [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-04-01")]
    with tracking.start_run(
        "churn", run_name="unit", params={"cutoffs": cutoffs, "horizon_days": 90}, tags={"scrm.as_of": "2024-07-01"}
    ) as run:
        run_id = run.info.run_id
    c = tracking.client()
    r = c.get_run(run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params == {"cutoffs": "2024-01-01,2024-04-01", "horizon_days": "90"}
    assert r.data.tags["scrm.kind"] == "churn"
    assert r.data.tags["scrm.as_of"] == "2024-07-01"
    assert r.data.tags["mlflow.runName"] == "unit"
    exp = c.get_experiment_by_name("churn")
    assert exp.artifact_location == (store / "artifacts" / "churn").resolve().as_uri()


def test_failed_run_is_marked_and_reraised(store):
    with pytest.raises(ZeroDivisionError):
        with tracking.start_run("clv") as run:
            run_id = run.info.run_id
            1 / 0  # noqa: B018
    r = tracking.client().get_run(run_id)
    assert r.info.status == "FAILED"
    assert r.data.tags[tracking.TAG_ERROR] == "ZeroDivisionError"
    import mlflow

    assert mlflow.active_run() is None


def test_logging_outside_a_run_is_a_clear_error(store):
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        tracking.log_json({"a": 1}, "x")


def test_data_fingerprint_is_order_independent_and_content_sensitive():
    fp = tracking.data_fingerprint(FINGERPRINT)
    assert len(fp) == 16 and int(fp, 16) >= 0
    reordered = dict(reversed(list(FINGERPRINT.items())))
    moved = {k: {**v, "file": f"/elsewhere/{v['file']}"} for k, v in FINGERPRINT.items()}
    assert tracking.data_fingerprint(reordered) == fp
    assert tracking.data_fingerprint(moved) == fp
    changed = {**FINGERPRINT, "orders": {**FINGERPRINT["orders"], "sha256": "c" * 64}}
    assert tracking.data_fingerprint(changed) != fp
    as_objects = {k: TableFingerprint(**v) for k, v in FINGERPRINT.items()}
    assert tracking.data_fingerprint(as_objects) == fp
    with pytest.raises(ValueError, match="sha256"):
        tracking.data_fingerprint({"orders": {"file": "orders.csv"}})


def test_run_artifacts_fingerprint_features_plots_json(store, training_frame):
    X, y = training_frame
    with tracking.start_run("churn") as run:
        short = tracking.log_dataset_fingerprint({k: TableFingerprint(**v) for k, v in FINGERPRINT.items()})
        tracking.log_feature_list(X.columns)
        fig = plots.roc_plot(y, X["recency_days"])
        assert tracking.log_figure(fig, "roc") == "plots/roc.png"
        tracking.log_json({"auc": np.float64(0.71), "ece": math.nan, "n": np.int64(3)}, "summary")
        run_id = run.info.run_id
    c = tracking.client()
    r = c.get_run(run_id)
    assert r.data.tags["scrm.data_fingerprint"] == short == tracking.data_fingerprint(FINGERPRINT)
    assert r.data.metrics["data.orders.rows_rejected"] == 2
    assert r.data.metrics["data.events.rows_used"] == 40
    local = Path(c.download_artifacts(run_id, "", str(store / "dl")))
    assert json.loads((local / "data_fingerprint.json").read_text()) == FINGERPRINT
    assert json.loads((local / "features.json").read_text()) == ["recency_days", "orders", "total_spend"]
    assert (local / "plots" / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((local / "summary.json").read_text()) == {"auc": 0.71, "ece": None, "n": 3}


# ------------------------------------------------------------------------------------------------ models
def test_lightgbm_round_trip_in_a_fresh_process(store, lgbm, training_frame):
    """Log + register in this process; load by alias in a fresh interpreter with a fresh MlflowClient."""
    X, _ = training_frame
    with tracking.start_run("churn") as run:
        info = pyfunc.log_model(lgbm, input_example=X, registered_model_name="churn")
        run_id = run.info.run_id
    assert info.registered_model_version == 1
    registry.promotion_gate("churn", 1, metric="val.auc", value=0.7)
    X.to_parquet(store / "X.parquet")
    script = textwrap.dedent(
        f"""
        import pandas as pd
        from training import registry
        loaded = registry.load_model("churn")
        X = pd.read_parquet({str(store / "X.parquet")!r})
        out = pd.DataFrame({{
            "estimator": loaded.estimator.predict_proba(X)[:, 1],
            "pyfunc": loaded.pyfunc.predict(X)["prediction"].to_numpy(),
        }})
        out.attrs = {{}}
        out.to_parquet({str(store / "pred.parquet")!r})
        print(loaded.name, loaded.version, loaded.run_id, type(loaded.estimator).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["churn", "1", run_id, "LGBMClassifier"]
    pred = pd.read_parquet(store / "pred.parquet")
    np.testing.assert_allclose(pred["estimator"], lgbm.predict_proba(X)[:, 1], rtol=0, atol=0)
    np.testing.assert_array_equal(pred["pyfunc"], lgbm.predict(X))


def test_predict_frame_model_round_trip_and_signature(store, training_frame):
    X, _ = training_frame
    model = FrameModel(2.0).fit(X)
    with tracking.start_run("clv"):
        info = pyfunc.log_model(model, input_example=X, registered_model_name="clv")
    assert info.signature.inputs.input_names() == list(X.columns)
    assert info.signature.outputs.input_names() == ["score"]
    loaded = registry.load_model("clv", version=info.registered_model_version)
    assert isinstance(loaded.estimator, FrameModel) and loaded.estimator.scale == 2.0
    pd.testing.assert_frame_equal(loaded.estimator.predict_frame(X), model.predict_frame(X))
    pd.testing.assert_frame_equal(
        loaded.pyfunc.predict(X).reset_index(drop=True), model.predict_frame(X).reset_index(drop=True)
    )
    fresh = MlflowClient(tracking_uri=tracking.tracking_uri(), registry_uri=tracking.tracking_uri())
    mv = fresh.get_model_version("clv", str(info.registered_model_version))
    assert mv.run_id == loaded.run_id


def test_unknown_consent_in_the_input_example_does_not_break_logging_or_predict(store, training_frame):
    """An orders-only brand: ``marketing_opt_out`` is all empty (nullable boolean), which MLflow cannot enforce."""
    X, _ = training_frame
    model = FrameModel(2.0).fit(X)
    snap = X.assign(marketing_opt_out=pd.array([pd.NA] * len(X), dtype="boolean"))
    with tracking.start_run("clv"):
        info = pyfunc.log_model(model, input_example=snap, registered_model_name="clv")
    assert info.signature.inputs.input_names() == list(X.columns)  # a passthrough, not a model input
    loaded = registry.load_model("clv", version=info.registered_model_version)
    pd.testing.assert_frame_equal(loaded.pyfunc.predict(snap).reset_index(drop=True),
                                  model.predict_frame(X).reset_index(drop=True))


def test_pyfunc_wrapper_is_pickled_by_reference_from_training_pyfunc():
    cls = pyfunc.EstimatorPyfunc
    assert (cls.__module__, cls.__qualname__) == ("training.pyfunc", "EstimatorPyfunc")
    assert tracking.EstimatorPyfunc is cls  # models logged before the split pickled training.tracking's name


def test_log_model_needs_an_input_example(store, training_frame):
    X, _ = training_frame
    with tracking.start_run("clv"):
        with pytest.raises(ValueError, match="input_example"):
            pyfunc.log_model(FrameModel().fit(X), input_example=X.iloc[:0])


def test_load_model_without_champion_is_a_clear_error(store):
    with pytest.raises(LookupError, match="'nothing' has no alias 'champion'"):
        registry.load_model("nothing")
    assert registry.champion_version("nothing") is None


# ------------------------------------------------------------------------------------------------ gate
def test_gate_first_then_better_then_worse(store, training_frame):
    v1 = _register("churn", 0.70, training_frame)
    d1 = registry.promotion_gate("churn", v1, metric="val.auc", value=0.70)
    assert (d1.decision, d1.promoted, d1.champion_version) == ("first_champion", True, None)
    assert registry.champion_version("churn") == v1

    v2 = _register("churn", 0.75, training_frame)
    d2 = registry.promotion_gate("churn", v2, metric="val.auc", value=0.75)
    assert (d2.decision, d2.champion_version, d2.champion_value) == ("promoted", v1, pytest.approx(0.70))
    assert registry.champion_version("churn") == v2

    v3 = _register("churn", 0.72, training_frame)
    d3 = registry.promotion_gate("churn", v3, metric="val.auc", value=0.72)
    assert (d3.decision, d3.promoted) == ("challenger", False)
    assert registry.champion_version("churn") == v2
    assert registry.challenger_version("churn") == v3

    # both numbers and the decision are on the new run
    c = tracking.client()
    run = c.get_run(c.get_model_version("churn", str(v3)).run_id)
    assert run.data.tags["scrm.gate_decision"] == "challenger"
    assert run.data.tags["scrm.gate_metric"] == "val.auc"
    assert run.data.tags["scrm.gate_champion_version"] == str(v2)
    assert run.data.metrics["gate.new_value"] == pytest.approx(0.72)
    assert run.data.metrics["gate.champion_value"] == pytest.approx(0.75)
    assert c.get_model_version("churn", str(v3)).tags["gate_decision"] == "challenger"
    # a challenger that later wins loses its challenger alias
    v4 = _register("churn", 0.80, training_frame)
    assert registry.promotion_gate("churn", v4, metric="val.auc", value=0.80).decision == "promoted"
    assert registry.champion_version("churn") == v4
    assert registry.challenger_version("churn") == v3


def test_gate_lower_is_better_ties_and_nan(store, training_frame):
    v1 = _register("clv", 0.20, training_frame, metric="val.brier")
    registry.promotion_gate("clv", v1, metric="val.brier", value=0.20, higher_is_better=False)
    v2 = _register("clv", 0.15, training_frame, metric="val.brier")
    assert registry.promotion_gate("clv", v2, metric="val.brier", value=0.15, higher_is_better=False).promoted
    v3 = _register("clv", 0.15, training_frame, metric="val.brier")
    tie = registry.promotion_gate("clv", v3, metric="val.brier", value=0.15, higher_is_better=False)
    assert tie.decision == "challenger"  # only strictly better wins
    v4 = _register("clv", math.nan, training_frame, metric="val.brier")
    nan = registry.promotion_gate("clv", v4, metric="val.brier", value=math.nan, higher_is_better=False)
    assert nan.decision == "challenger"
    assert registry.champion_version("clv") == v2


def test_failed_run_leaves_champion_untouched(store, training_frame):
    X, _ = training_frame
    v1 = _register("churn", 0.70, training_frame)
    registry.promotion_gate("churn", v1, metric="val.auc", value=0.70)
    with pytest.raises(RuntimeError, match="disk full"):
        with tracking.start_run("churn") as run:
            info = pyfunc.log_model(FrameModel(3.0).fit(X), input_example=X, registered_model_name="churn")
            import mlflow

            mlflow.log_metric("val.auc", 0.99)
            raise RuntimeError("disk full while writing plots")
    assert registry.champion_version("churn") == v1
    assert tracking.client().get_run(run.info.run_id).info.status == "FAILED"
    # and the version from the failed run can never be gated in later
    with pytest.raises(ValueError, match="FAILED"):
        registry.promotion_gate("churn", info.registered_model_version, metric="val.auc", value=0.99)
    assert registry.champion_version("churn") == v1
    assert registry.load_model("churn").version == v1


def test_promote_and_rollback_walk_back_through_history(store, training_frame):
    versions = [_register("churn", v, training_frame) for v in (0.70, 0.75, 0.72)]
    v1, v2, v3 = versions
    registry.promotion_gate("churn", v1, metric="val.auc", value=0.70)
    registry.promotion_gate("churn", v2, metric="val.auc", value=0.75)
    registry.promotion_gate("churn", v3, metric="val.auc", value=0.72)  # challenger
    assert registry.champion_version("churn") == v2

    change = registry.promote("churn", v3)
    assert (change.version, change.previous_version, change.action, change.by) == (v3, v2, "promote", "test-analyst")
    assert registry.champion_version("churn") == v3
    assert registry.challenger_version("churn") is None
    mv = tracking.client().get_model_version("churn", str(v3))
    assert mv.tags["champion_set_by"] == "test-analyst" and mv.tags["champion_set_at"]

    back = registry.rollback("churn")
    assert (back.version, back.previous_version, back.action) == (v2, v3, "rollback")
    assert registry.champion_version("churn") == v2
    assert registry.rollback("churn").version == v1
    with pytest.raises(LookupError, match="no earlier champion"):
        registry.rollback("churn")
    assert registry.champion_version("churn") == v1

    history = registry.champion_history("churn")
    assert [(h["version"], h["action"]) for h in history] == [
        (v1, "gate"), (v2, "gate"), (v3, "promote"), (v2, "rollback"), (v1, "rollback"),
    ]
    assert all(h["by"] == "test-analyst" and h["at"] for h in history)


def test_promote_unknown_version_and_rollback_without_champion(store, training_frame):
    v1 = _register("clv", 0.5, training_frame)
    with pytest.raises(LookupError, match="no version"):
        registry.promote("clv", 99)
    with pytest.raises(LookupError, match="no champion"):
        registry.rollback("clv")
    registry.promote("clv", v1)
    with pytest.raises(LookupError, match="no earlier champion"):
        registry.rollback("clv")
