"""`scrm refresh`: publishes atomically, leaves the published state alone when any step fails, is idempotent.

Each test runs on its own copy of the session data directory and MLflow store (the refresh writes
``DATA/published`` and may log drift runs or move aliases).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from training import publish, refresh

NO_TRAIN = {"retrain": "never", "log_mlflow": False}
BRAND = "data"  # the brand of the session setup (tests/serving/conftest.py): its data directory's name
CHURN = f"{BRAND}.churn_90d"


def private_copy(trained_setup, root):
    """The session setup with its own copy of the data directory (tables and snapshots) and MLflow store."""
    data = root / "data"
    data.mkdir(parents=True)
    for item in trained_setup.data_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, data / item.name)
    shutil.copytree(trained_setup.data_dir / "features", data / "features")
    return replace(trained_setup.copy_store(root / "store"), data_dir=data)


NEXT_DAY = date(2026, 2, 1)  # a month after the session setup's as_of (2026-01-01, the champions' date)


def next_month(data) -> date:
    """Append a month of orders (December's, shifted to end on 2026-01-31: new ids, same people) to the copy, as
    the nightly export would; returns :data:`NEXT_DAY`, the new default as_of, which the champions may score."""
    path = data / "orders.parquet"
    orders = pd.read_parquet(path)
    december = orders[orders["order_ts"] >= pd.Timestamp("2025-12-01")].copy()
    december["order_id"] = december["order_id"].astype(str) + "-next"
    december["order_ts"] += pd.Timestamp(NEXT_DAY) - pd.Timedelta(days=1) - december["order_ts"].max().normalize()
    pd.concat([orders, december], ignore_index=True).to_parquet(path, index=False)
    return NEXT_DAY


@pytest.fixture
def setup(trained_setup, tmp_path, monkeypatch):
    """A private copy of the session setup, with the env pointing at it."""
    copy = private_copy(trained_setup, tmp_path)
    for key, value in copy.env().items():
        monkeypatch.setenv(key, value)
    return copy


def state_of(data) -> tuple[str | None, dict | None, list[str]]:
    """The published state: the current pointer, its manifest and the directory listing of published/."""
    root = publish.published_root(data)
    current = publish.current_publication(data)
    names = sorted(p.name for p in root.iterdir()) if root.exists() else []
    return publish.current_name(data), (current.manifest if current else None), names


def test_refresh_publishes_snapshot_scores_and_drift(setup):
    result = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert result.status == "published", result.error
    assert result.exit_code == 0
    pub = result.publication
    assert publish.current_name(setup.data_dir) == pub.name
    assert (setup.data_dir / "published" / "current").is_symlink()
    assert pub.as_of == setup.as_of
    assert pub.model_versions == refresh.champion_versions(BRAND)
    assert pub.manifest["snapshot_source"] == str(setup.data_dir / "features" / f"as_of={setup.as_of}")  # reused
    scores = pd.read_parquet(pub.scores_path)
    features = pd.read_parquet(pub.snapshot_dir / "features.parquet")
    assert scores["person_id"].tolist() == features["person_id"].tolist()
    assert (scores["feature_as_of"] == pd.Timestamp(setup.as_of)).all()
    assert set(scores["churn_model_version"]) == {pub.model_versions["churn"]}
    assert "reason_1_feature" in scores.columns and pub.manifest["with_reasons"]
    drift = json.loads((pub.path / "drift.json").read_text())
    assert drift["status"] == pub.drift_status == "ok"  # the champions were validated on this very snapshot
    assert (pub.path / "drift.html").exists()
    assert set(result.seconds) == set(refresh.STEPS)


def test_second_run_for_the_same_day_does_no_work(setup, monkeypatch):
    first = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert first.status == "published"

    def must_not_run(run):
        raise AssertionError("a step ran although the day was already published")

    with monkeypatch.context() as m:
        for step in refresh.STEPS:
            m.setattr(refresh, f"step_{step}", must_not_run)
        again = refresh.refresh(setup.data_dir, **NO_TRAIN)
        assert again.status == "unchanged" and again.exit_code == 0
        assert again.publication.name == first.publication.name
        explicit = refresh.refresh(setup.data_dir, as_of=setup.as_of, **NO_TRAIN)  # the same day, spelled out
        assert explicit.status == "unchanged"
    # new data (an input file changes) is new work, and so is --force
    orders = next(p for p in setup.data_dir.iterdir() if p.name.startswith("orders."))
    os.utime(orders, ns=(orders.stat().st_atime_ns, orders.stat().st_mtime_ns + 10**9))
    changed = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert changed.status == "published" and changed.publication.name != first.publication.name
    forced = refresh.refresh(setup.data_dir, force=True, **NO_TRAIN)
    assert forced.status == "published" and forced.publication.name != changed.publication.name


@pytest.mark.parametrize("failing", refresh.STEPS)
def test_a_failed_step_leaves_the_published_state_unchanged(setup, monkeypatch, failing):
    first = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert first.status == "published"
    before = state_of(setup.data_dir)
    features_before = sorted(p.name for p in (setup.data_dir / "features").iterdir())
    real = getattr(refresh, f"step_{failing}")

    def broken(run):
        if failing == "publish":  # fail at the very last moment: the publication is renamed, the switch fails
            monkeypatch.setattr(publish, "switch_current", _raise)
            return real(run)
        raise OSError(f"injected failure in {failing}")

    monkeypatch.setattr(refresh, f"step_{failing}", broken)
    result = refresh.refresh(setup.data_dir, force=True, **NO_TRAIN)
    assert result.status == "failed" and result.exit_code == 1
    assert result.failed_step == failing
    assert "injected" in result.error
    after = state_of(setup.data_dir)
    assert after[:2] == before[:2]  # same pointer, same manifest
    if failing != "publish":  # the publish failure left a complete, unreferenced publication: pruned next run
        assert after[2] == before[2]
    assert not [n for n in after[2] if n.startswith(publish.STAGING_PREFIX)]
    assert sorted(p.name for p in (setup.data_dir / "features").iterdir()) == features_before


def _raise(*args, **kwargs):
    raise OSError("injected failure in the pointer switch")


def test_failure_after_training_restores_the_champions(setup, monkeypatch):
    from training import registry

    first = refresh.refresh(setup.data_dir, **NO_TRAIN)
    assert first.status == "published"
    old = registry.champion_version(CHURN)

    def fake_train(run):  # what a promoting gate does, without the minutes of training
        run.moved = {CHURN: old}
        registry.promote(CHURN, next(v for v in setup.churn_versions if v != old))
        run.retrained = True

    def broken_score(run):
        raise RuntimeError("injected failure in score")

    monkeypatch.setattr(refresh, "step_train", fake_train)
    monkeypatch.setattr(refresh, "step_score", broken_score)
    result = refresh.refresh(setup.data_dir, force=True, retrain="always", log_mlflow=False)
    assert result.failed_step == "score"
    assert registry.champion_version(CHURN) == old
    assert any("restored" in n for n in result.notes)
    assert publish.current_name(setup.data_dir) == first.publication.name


def test_auto_retrains_only_on_a_drift_alert(setup, monkeypatch):
    from training import drift

    trained = []
    monkeypatch.setattr("training.train.train_all", lambda *a, **k: trained.append(k) or {})
    calm = refresh.refresh(setup.data_dir, retrain="auto", log_mlflow=False)
    assert calm.status == "published" and trained == []
    assert "champions kept" in calm.retrain_reason
    # as if the champions had been validated 120 days ago: today's snapshot has drifted from theirs
    monkeypatch.setattr(drift, "champion_as_of", lambda name: setup.as_of - timedelta(days=120))
    strict = drift.DriftThresholds(psi={"warn": 0.01, "alert": 0.02})
    alert = refresh.refresh(setup.data_dir, retrain="auto", log_mlflow=False, thresholds=strict,
                            train_options={"n_cutoffs": 1}, force=True)
    assert alert.status == "published", alert.error
    assert alert.retrained and alert.retrain_reason == "drift alert"
    assert trained == [{"n_cutoffs": 1, "brand": "data"}]
    assert alert.exit_code == 3  # the (untrained) champions still see the alert


def test_cli_exit_codes(setup, tmp_path, monkeypatch):
    from training.cli import app

    runner = CliRunner()
    base = ["refresh", "--data", str(setup.data_dir), "--retrain", "never", "--no-mlflow"]
    ok = runner.invoke(app, base)
    assert ok.exit_code == 0, ok.output
    assert "published" in ok.output
    again = runner.invoke(app, base)
    assert again.exit_code == 0 and "already published" in again.output
    strict = tmp_path / "strict.yaml"
    strict.write_text("psi: {warn: 0.01, alert: 0.02}\n")  # a month of ageing shifts recency past it
    alert = runner.invoke(app, [*base, "--as-of", next_month(setup.data_dir).isoformat(), "--thresholds", str(strict)])
    assert alert.exit_code == 3, alert.output
    monkeypatch.setattr(refresh, "step_score", lambda run: (_ for _ in ()).throw(RuntimeError("disk full")))
    failed = runner.invoke(app, [*base, "--force"])
    assert failed.exit_code == 1
    assert "score" in failed.output and "disk full" in failed.output
    bad = runner.invoke(app, [*base, "--retrain", "sometimes"])
    assert bad.exit_code == 2
