"""A small trained setup shared by the serving tests, built once per session.

3,000 simulated customers (seed 7), a feature snapshot as of 2026-01-01 and churn + CLV models registered in a
session MLflow store with small settings (one rolling cutoff, 40 trees, one thread). Churn gets two versions
(different seeds), so a test can move ``champion`` to the other one and restart the service.

``tests/conftest.py`` points every test at a fresh empty MLflow store; :func:`serving_env` points the serving
tests back at the session store (read-only by convention: a test that changes the registry copies it first).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

AS_OF = date(2026, 1, 1)
N_CUSTOMERS = 3_000
SMALL = {"n_cutoffs": 1, "n_estimators": 40, "n_jobs": 1}
PII_KEY = "test-pii-key"
BRAND = "data"  # the data directory's name: its brand id (no brand.yaml)
CHURN, CLV = f"{BRAND}.churn_90d", f"{BRAND}.clv_365d"  # registry.model_name(BRAND, kind)


@dataclass(frozen=True)
class TrainedSetup:
    data_dir: Path
    store: Path  # the sqlite file
    artifacts: Path
    as_of: date
    churn_versions: tuple[int, int]
    clv_version: int

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.store}"

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "SCRM_ARTIFACT_ROOT": str(self.artifacts),
                "SCRM_DATA_DIR": str(self.data_dir), "SCRM_PII_KEY": PII_KEY, "SCRM_USER": "test-user"}

    def copy_store(self, dest: Path) -> TrainedSetup:
        """The same setup with its own copy of the MLflow store (for tests that move aliases)."""
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.store, dest / "mlflow.db")
        return TrainedSetup(self.data_dir, dest / "mlflow.db", self.artifacts, self.as_of, self.churn_versions,
                            self.clv_version)


def _register(name: str, fitted, features: pd.DataFrame) -> int:
    """Log a fitted model the way training does (metrics, pyfunc, registry) and run the promotion gate."""
    import mlflow

    from training import pyfunc, registry, tracking

    metric = {"churn": "auc", "clv": "gini"}[name]
    registered = registry.model_name(BRAND, name, fitted.plan.horizon_days)
    with tracking.start_run(name, run_name=f"{name} test", params={"as_of": AS_OF.isoformat()},
                            tags={"scrm.kind": name, "scrm.as_of": AS_OF.isoformat(), "scrm.brand": BRAND,
                                  "scrm.horizon_days": str(fitted.plan.horizon_days)}):
        mlflow.log_metrics({f"val.{k}": v for k, v in fitted.metrics.items()})
        info = pyfunc.log_model(fitted.model, input_example=features[features["orders"] >= 1].head(5),
                                  registered_model_name=registered)
    version = int(info.registered_model_version)
    registry.promotion_gate(registered, version, metric=f"val.{metric}", value=fitted.metrics[metric])
    return version


@pytest.fixture(scope="session")
def trained_setup(tmp_path_factory) -> TrainedSetup:
    from features.contract import load_dataset
    from features.pipeline import build_snapshot
    from features.simulate import simulate, write_dataset
    from training.fitting import fit_churn, fit_clv
    from training.frames import FeatureCache

    root = tmp_path_factory.mktemp("serving-setup")
    data_dir, store, artifacts = root / "data", root / "mlruns" / "mlflow.db", root / "mlruns" / "artifacts"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRM_PII_KEY", PII_KEY)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        mp.setenv("SCRM_ARTIFACT_ROOT", str(artifacts))
        mp.setenv("SCRM_USER", "test-user")
        write_dataset(simulate(N_CUSTOMERS, seed=7), data_dir)
        dataset = load_dataset(data_dir)
        snapshot = build_snapshot(dataset, AS_OF, out_dir=data_dir / "features" / f"as_of={AS_OF.isoformat()}")
        cache = FeatureCache(dataset)  # One-ID as known before each cutoff
        lgbm = {k: v for k, v in SMALL.items() if k != "n_cutoffs"}
        churn_a = fit_churn(cache, AS_OF, n_cutoffs=SMALL["n_cutoffs"], random_state=0, **lgbm)
        churn_b = fit_churn(cache, AS_OF, n_cutoffs=SMALL["n_cutoffs"], random_state=1, num_leaves=7, **lgbm)
        clv = fit_clv(cache, AS_OF, n_cutoffs=SMALL["n_cutoffs"], random_state=0, **lgbm)
        versions = (_register("churn", churn_a, snapshot.features), _register("churn", churn_b, snapshot.features))
        clv_version = _register("clv", clv, snapshot.features)
    return TrainedSetup(data_dir, store, artifacts, AS_OF, versions, clv_version)


@pytest.fixture
def serving_env(trained_setup, monkeypatch) -> TrainedSetup:
    """Point MLflow and SCRM_DATA_DIR at the session setup for this test."""
    for key, value in trained_setup.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCRM_API_TOKEN", raising=False)
    return trained_setup


@pytest.fixture(scope="session")
def service(trained_setup):
    """One loaded ScrmService instance (its methods are called directly)."""
    from serving.service import ScrmService

    with pytest.MonkeyPatch.context() as mp:
        for key, value in trained_setup.env().items():
            mp.setenv(key, value)
        svc = ScrmService()
        svc.wait_until_ready(timeout=600)
    return svc


@pytest.fixture(scope="session")
def people(service) -> pd.DataFrame:
    """The batch scores the service holds, with the identity map's first customer_key per person."""
    state = service.state
    keys = state.identity.drop_duplicates("person_id").set_index("person_id")["customer_key"]
    out = state.scores.copy()
    out["customer_key"] = out["person_id"].map(keys)
    return out


@pytest.fixture(scope="session")
def sample_ids(people):
    """``sample_ids(n, seed=..., eligible=None)``: person_ids drawn without replacement with a fixed seed."""

    def draw(n: int, *, seed: int, eligible: bool | None = None) -> list[str]:
        pool = people if eligible is None else people[people["eligible"] == eligible]
        rng = np.random.default_rng(seed)
        return pool["person_id"].to_numpy()[rng.choice(len(pool), size=min(n, len(pool)), replace=False)].tolist()

    return draw
