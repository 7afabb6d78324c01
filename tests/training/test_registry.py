"""The registry keeps brands and horizons apart, cannot be raced or tampered with, and marks what it did not gate.

Versions are registered the way training registers them (a run tagged with brand, horizon, as_of, validation
cutoff and data fingerprint; ``pyfunc.log_model``) with a tiny scikit-learn model, in the per-test store of
``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from training import pyfunc, registry, tracking
from training.cli import app
from training.integrity import ArtifactIntegrityError, artifact_sha256, lock_path, registry_lock

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({"recency_days": rng.integers(0, 365, 60).astype(float),
                         "orders": rng.integers(1, 9, 60).astype(float)})


@pytest.fixture(scope="module")
def model(frame):
    return LogisticRegression().fit(frame, (frame["recency_days"] > 180).astype(int))


def register(model, frame, *, brand="acme", kind="churn", horizon=90, auc=0.7, as_of="2025-07-01",
             validation="2025-04-02", data="fp-a", name=None) -> tuple[str, int]:
    """Log and register one version as training does; returns (registered name, version)."""
    import mlflow

    name = name or registry.model_name(brand, kind, horizon)
    tags = {"scrm.kind": kind, "scrm.brand": brand, "scrm.horizon_days": str(horizon), "scrm.as_of": as_of,
            "scrm.validation_cutoff": validation, "scrm.data_fingerprint": data}
    with tracking.start_run(kind, tags=tags):
        mlflow.log_metric("val.auc", auc)
        info = pyfunc.log_model(model, input_example=frame, registered_model_name=name)
    return name, int(info.registered_model_version)


# --- names ---------------------------------------------------------------------------------------------------------


def test_model_names_carry_brand_kind_and_horizon():
    assert registry.model_name("acme", "churn") == "acme.churn_90d"
    assert registry.model_name("acme", "clv") == "acme.clv_365d"
    assert registry.model_name("acme-2", "churn", 30) == "acme-2.churn_30d"
    assert registry.parse_model_name("acme.clv_365d") == registry.ModelIdentity("acme", "clv", 365)
    assert registry.parse_model_name("churn") is None
    with pytest.raises(ValueError, match="brand id"):
        registry.model_name("a b", "churn")
    with pytest.raises(ValueError, match="kind"):
        registry.model_name("acme", "ltv")
    assert registry.resolve_name("churn", brand="b", horizon_days=30) == "b.churn_30d"
    with pytest.raises(registry.ModelIdentityError, match="brand a's model, not brand b's"):
        registry.resolve_name("a.churn_90d", brand="b")
    with pytest.raises(registry.ModelIdentityError, match="over 30 days, not 90"):
        registry.resolve_name("a.churn_30d", horizon_days=90)


def test_versions_carry_identity_sha256_and_not_gated(model, frame):
    name, v = register(model, frame)
    mv = tracking.client().get_model_version(name, str(v))
    assert mv.tags["scrm.brand"] == "acme" and mv.tags["scrm.horizon_days"] == "90"
    assert mv.tags["scrm.validation_cutoff"] == "2025-04-02" and mv.tags["scrm.as_of"] == "2025-07-01"
    assert len(mv.tags["scrm.artifact_sha256"]) == 64
    assert mv.tags["gate_decision"] == "not_gated"  # registered, never gated
    assert tracking.client().get_run(mv.run_id).data.tags["scrm.gate_decision"] == "not_gated"
    rm = tracking.client().get_registered_model(name)
    assert (rm.tags["scrm.brand"], rm.tags["scrm.kind"], rm.tags["scrm.horizon_days"]) == ("acme", "churn", "90")
    registry.promotion_gate(name, v, metric="val.auc", value=0.7)
    assert tracking.client().get_model_version(name, str(v)).tags["gate_decision"] == "first_champion"


def test_a_run_of_another_horizon_is_never_registered_under_this_name(model, frame):
    with pytest.raises(registry.ModelIdentityError, match="scrm.horizon_days=30.*acme.churn_90d"):
        register(model, frame, horizon=30, name="acme.churn_90d")


# --- the gate --------------------------------------------------------------------------------------------------------


def test_the_gate_compares_only_comparable_windows(model, frame):
    name, v1 = register(model, frame, auc=0.70)
    registry.promotion_gate(name, v1, metric="val.auc", value=0.70)
    # validated on a later window: the logged 0.70 is not comparable with 0.75
    _, v2 = register(model, frame, auc=0.75, as_of="2025-08-01", validation="2025-05-03", data="fp-b")
    d2 = registry.promotion_gate(name, v2, metric="val.auc", value=0.75)
    assert d2.decision == "challenger" and "not comparable" in d2.reason and "2025-04-02" in d2.reason
    assert registry.champion_version(name) == v1
    # re-scored on the new window, the champion makes 0.80: still better
    calls = []
    d3 = registry.promotion_gate(name, v2, metric="val.auc", value=0.75,
                                 rescore=lambda champion: calls.append(champion) or 0.80)
    assert calls == [v1] and d3.decision == "challenger" and d3.champion_value == pytest.approx(0.80)
    assert "re-scored" in d3.reason
    d4 = registry.promotion_gate(name, v2, metric="val.auc", value=0.75, rescore=lambda champion: 0.60)
    assert d4.decision == "promoted" and registry.champion_version(name) == v2
    run = tracking.client().get_run(tracking.client().get_model_version(name, str(v2)).run_id)
    assert run.data.tags["scrm.gate_basis"] == "rescored"
    # a version trained on an earlier date is never judged by a champion that saw its window
    _, v3 = register(model, frame, auc=0.99, as_of="2025-06-01", validation="2025-03-03", data="fp-c")
    d5 = registry.promotion_gate(name, v3, metric="val.auc", value=0.99, rescore=lambda champion: 0.1)
    assert d5.decision == "challenger" and "later date" in d5.reason


def test_a_thirty_day_model_never_becomes_the_ninety_day_champion(model, frame):
    name90, v90 = register(model, frame, horizon=90, auc=0.70)
    registry.promotion_gate(name90, v90, metric="val.auc", value=0.70)
    name30, v30 = register(model, frame, horizon=30, auc=0.95)
    assert registry.promotion_gate(name30, v30, metric="val.auc", value=0.95).decision == "first_champion"
    assert (name90, name30) == ("acme.churn_90d", "acme.churn_30d")
    assert registry.champion_version(name90) == v90 and registry.load_model(name90).horizon_days == 90
    result = CliRunner().invoke(app, ["promote", "acme.churn_30d", str(v30), "--horizon", "90"])
    assert result.exit_code == 2 and "predicts over 30 days, not 90" in " ".join(result.output.split())
    assert registry.champion_version(name90) == v90


def test_promote_across_brands_exits_2(model, frame, tmp_path):
    name_a, va = register(model, frame, brand="brand-a")
    register(model, frame, brand="brand-b")
    data_b = tmp_path / "brand-b-data"
    data_b.mkdir()
    (data_b / "brand.yaml").write_text("brand: brand-b\n")
    for args in (["promote", name_a, str(va), "--data", str(data_b)], ["promote", name_a, str(va), "--brand", "brand-b"]):
        result = CliRunner().invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert "brand-a.churn_90d is brand brand-a's model, not brand brand-b's" in text
    assert registry.champion_version(name_a) is None
    ok = CliRunner().invoke(app, ["promote", "churn", str(va), "--brand", "brand-a"])
    assert ok.exit_code == 0 and registry.champion_version(name_a) == va


def test_a_version_whose_tags_name_another_brand_is_refused(model, frame):
    name, v = register(model, frame, brand="brand-a")
    tracking.client().set_model_version_tag(name, str(v), "scrm.brand", "brand-b")  # forged / mixed-up store
    with pytest.raises(registry.ModelIdentityError, match="scrm.brand=brand-b"):
        registry.promote(name, v)
    with pytest.raises(registry.ModelIdentityError, match="scrm.brand=brand-b"):
        registry.promotion_gate(name, v, metric="val.auc", value=0.7)
    with pytest.raises(registry.ModelIdentityError, match="not trained for brand brand-a"):
        tracking.client().set_registered_model_alias(name, "champion", str(v))
        registry.load_for_scoring("brand-a", "churn", as_of=pd.Timestamp("2025-08-01").date())


def test_scoring_refuses_a_model_trained_after_as_of(model, frame):
    name, v = register(model, frame, brand="acme", as_of="2025-07-01")
    registry.promotion_gate(name, v, metric="val.auc", value=0.7)
    with pytest.raises(registry.ModelIdentityError, match="trained as of 2025-07-01, after the scoring date "
                                                          "2023-01-01.*Score as of 2025-07-01 or later"):
        registry.load_for_scoring("acme", "churn", as_of=pd.Timestamp("2023-01-01").date())
    assert registry.load_for_scoring("acme", "churn", as_of=pd.Timestamp("2025-07-01").date()).version == v
    with pytest.raises(LookupError, match="brand other has no champion churn model over 90 days"):
        registry.load_for_scoring("other", "churn")


# --- integrity -------------------------------------------------------------------------------------------------------


def test_a_tampered_artifact_is_refused_before_it_is_unpickled(model, frame, tmp_path):
    name, v = register(model, frame)
    registry.promotion_gate(name, v, metric="val.auc", value=0.7)
    assert isinstance(registry.load_model(name).estimator, LogisticRegression)
    mv = tracking.client().get_model_version(name, str(v))
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(artifact_uri=f"models:/{name}/{v}", dst_path=str(tmp_path / "dl")))
    assert artifact_sha256(local) == mv.tags["scrm.artifact_sha256"]
    logged = tracking.client().get_logged_model(mv.source.removeprefix("models:/"))
    pkl = Path(logged.artifact_location.removeprefix("file://")) / "python_model.pkl"
    assert pkl.exists()
    marker = tmp_path / "payload-ran"
    pkl.write_bytes(pickle.dumps(_Payload(str(marker))))  # a pickle that runs code when loaded
    with pytest.raises(ArtifactIntegrityError, match=r"SHA-256 .* was recorded at registration"):
        registry.load_model(name)
    with pytest.raises(ArtifactIntegrityError):
        registry.load_for_scoring("acme", "churn")
    assert not marker.exists()  # refused before unpickling: the payload never ran


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_version_without_a_checksum_is_not_loaded(model, frame):
    name, v = register(model, frame)
    tracking.client().delete_model_version_tag(name, str(v), "scrm.artifact_sha256")
    with pytest.raises(ArtifactIntegrityError, match="no scrm.artifact_sha256"):
        registry.load_model(name, version=v)


# --- races and killed runs -------------------------------------------------------------------------------------------

_GATE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from training import registry
    name, me, barrier = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    trials = json.loads(sys.argv[4])

    def meet(label):
        (barrier / f"{label}.{me}").touch()
        while len(list(barrier.glob(f"{label}.*"))) < 2:
            time.sleep(0.005)

    registry.champion_version(name)  # imports and store connection done before the first trial
    out = []
    for i, (version, value) in enumerate(trials):
        meet(f"go{i}")
        d = registry.promotion_gate(name, version, metric="val.auc", value=value)
        meet(f"done{i}")
        out.append({"version": version, "decision": d.decision, "champion_after": registry.champion_version(name)})
        meet(f"read{i}")
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_two_gates_racing_in_two_processes_leave_the_better_version_and_a_full_history(model, frame, tmp_path):
    name, v0 = register(model, frame, auc=0.50)
    registry.promotion_gate(name, v0, metric="val.auc", value=0.50)
    worse, better = [], []
    for i in range(4):  # each trial beats the previous one; within a trial `better` wins
        base = 0.6 + 0.08 * i
        worse.append((register(model, frame, auc=base)[1], base))
        better.append((register(model, frame, auc=base + 0.04)[1], base + 0.04))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _GATE, name, who, str(barrier), json.dumps(trials)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for who, trials in (("worse", worse), ("better", better))]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    for i, (version, _) in enumerate(better):
        assert outs[0][i]["champion_after"] == outs[1][i]["champion_after"] == version  # the better one, every time
        assert outs[1][i]["decision"] == "promoted"
    history = registry.champion_history(name)
    promoted = [v0] + [o["version"] for trial in zip(*outs, strict=True) for o in trial if o["decision"] == "promoted"]
    assert sorted(e["version"] for e in history) == sorted(promoted)  # no move lost
    assert history[-1]["version"] == better[-1][0] and registry.champion_version(name) == better[-1][0]


def test_the_gate_waits_for_the_registry_lock(model, frame):
    name, v = register(model, frame)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = (f"from training import registry; registry.champion_version({name!r}); print('ready', flush=True); "
              f"print(registry.promotion_gate({name!r}, {v}, metric='val.auc', value=0.7).decision)")
    with registry_lock(tracking.tracking_uri()) as path:
        assert path == lock_path(tracking.tracking_uri()) and path.name == "mlflow.db.registry.lock"
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout.readline().strip() == "ready"  # imported and connected: next comes the gate
        time.sleep(2.0)
        # while we hold the lock, the other process's gate cannot read, compare or move anything
        assert proc.poll() is None and registry.champion_version(name) is None
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert stdout.split()[-1] == "first_champion" and registry.champion_version(name) == v


def test_a_run_killed_mid_way_is_marked_failed_by_the_next_command():
    script = textwrap.dedent(
        """
        import os, signal
        from training import tracking
        with tracking.start_run("churn", run_name="killed") as run:
            print(run.info.run_id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == -9
    run_id = out.stdout.split()[0]
    from mlflow import MlflowClient

    raw = MlflowClient(tracking.tracking_uri())  # a plain client: no scrm command has run yet
    assert raw.get_run(run_id).info.status == "RUNNING"  # nobody could end it
    tracking._CHECKED_STORES.discard(tracking.tracking_uri())  # "the next command": a fresh process's first call
    result = CliRunner().invoke(app, ["runs", "list", "--experiment", "churn"])
    assert result.exit_code == 0, result.output
    c = tracking.client()
    run = raw.get_run(run_id)
    assert run.info.status == "FAILED" and "killed: process" in run.data.tags["scrm.error"]
    with tracking.start_run("churn", run_name="alive") as alive:  # a live run of this process is left alone
        assert tracking.mark_dead_runs_failed() == []
        assert c.get_run(alive.info.run_id).info.status == "RUNNING"


def test_scoring_refuses_a_model_trained_under_another_pii_key(model, frame, monkeypatch):
    name, v = register(model, frame)
    from features.pii import pii_key_fingerprint

    c = tracking.client()
    assert c.get_run(c.get_model_version(name, str(v)).run_id).data.tags.get("scrm.pii_key_fingerprint") is None
    c.set_model_version_tag(name, str(v), "scrm.pii_key_fingerprint", pii_key_fingerprint())
    registry.promotion_gate(name, v, metric="val.auc", value=0.7)
    assert registry.load_for_scoring("acme", "churn").version == v
    monkeypatch.setenv("SCRM_PII_KEY", "another-key")
    with pytest.raises(registry.ModelIdentityError, match="trained under the PII key with fingerprint .* Set "
                                                          "SCRM_PII_KEY to the key the model was trained with"):
        registry.load_for_scoring("acme", "churn")
