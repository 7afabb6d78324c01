"""Shared fixtures: small fixed-seed data built once per session."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path_factory, monkeypatch):
    """Every test writes MLflow runs to its own throwaway store, never to the project's mlruns/."""
    store = tmp_path_factory.mktemp("mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    monkeypatch.setenv("SCRM_ARTIFACT_ROOT", str(store / "artifacts"))
    monkeypatch.setenv("SCRM_PII_KEY", os.environ.get("SCRM_PII_KEY", "test-pii-key"))
    yield
