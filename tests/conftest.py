"""Shared fixtures: every test gets its own MLflow store, copied from one migrated template per session."""

from __future__ import annotations

import os
import shutil

import pytest

# The PII key for module- and session-scoped fixtures too (an unset key is an error outside SCRM_DEV=1); the
# same value as the per-test setting below, so data hashed by a shared fixture links with a test's own hashing.
os.environ["SCRM_PII_KEY"] = "test-pii-key"


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    """A sqlite store with MLflow's schema migrations applied once (migrating takes seconds per store)."""
    from training import tracking

    store = tmp_path_factory.mktemp("mlflow-template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
        tracking.client().search_experiments()
        tracking.client().search_registered_models()
    return store / "mlflow.db"


@pytest.fixture(autouse=True)
def _isolated_mlflow(_mlflow_template, tmp_path_factory, monkeypatch):
    """Every test writes MLflow runs to its own throwaway store, never to the project's mlruns/."""
    store = tmp_path_factory.mktemp("mlruns")
    shutil.copy(_mlflow_template, store / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    monkeypatch.setenv("SCRM_ARTIFACT_ROOT", str(store / "artifacts"))
    monkeypatch.setenv("SCRM_PII_KEY", "test-pii-key")
    monkeypatch.setenv("SCRM_USER", "test-user")
    yield


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole test run (2 cores, UI off, few shuffle partitions), stopped at the end.

    Tests that need it are skipped when pyspark or a Java runtime is missing.
    """
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs a Java runtime (Java 17)")
    from features.spark import spark_session

    session = spark_session(master="local[2]", test=True)
    yield session
    session.stop()
