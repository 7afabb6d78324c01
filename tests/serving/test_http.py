"""A real `scrm serve` (→ `bentoml serve`) on a free port, called over HTTP with bentoml.SyncHTTPClient and httpx.

The server runs with SCRM_API_TOKEN set, on its own copy of the session MLflow store; the last test moves the
churn champion to the other registered version and restarts the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
START_TIMEOUT = 300


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`scrm serve` in its own process group (so stopping it stops BentoML's workers too)."""

    def __init__(self, setup, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.setup = setup
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**os.environ, **self.setup.env(), "SCRM_API_TOKEN": TOKEN, "BENTOML_DO_NOT_TRACK": "true",
               # its own BentoML home: Prometheus' multiprocess files there are per server, not per machine
               "BENTOML_HOME": str(self.log_path.parent / f"bentoml-{self.port}"), **self.extra_env}
        scrm = Path(sys.executable).with_name("scrm")
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(scrm), "serve", "--data", str(self.setup.data_dir), "--port", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scrm serve exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"scrm serve not ready after {START_TIMEOUT} s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = self._children()  # BentoML workers run in process groups of their own
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            for pid in workers:  # normally already stopped by the arbiter
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None

    def _children(self) -> list[int]:
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    out.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def client(self, token: str | None = TOKEN) -> bentoml.SyncHTTPClient:
        return bentoml.SyncHTTPClient(self.url, token=token, timeout=300)


@pytest.fixture(scope="module")
def setup_copy(trained_setup, tmp_path_factory):
    return trained_setup.copy_store(tmp_path_factory.mktemp("http-store"))


@pytest.fixture(scope="module")
def server(setup_copy, tmp_path_factory):
    srv = Server(setup_copy, tmp_path_factory.mktemp("http-logs") / "serve.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    with server.client() as c:
        yield c


@pytest.fixture
def store_env(setup_copy, monkeypatch):
    for key, value in setup_copy.env().items():
        monkeypatch.setenv(key, value)
    return setup_copy


def post(server, path: str, *, token: str | None = TOKEN, **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}{path}", headers=headers, timeout=300, **kwargs)


# --- every endpoint --------------------------------------------------------------------------------------------


def test_every_endpoint_over_http(server, api, people, service):
    versions = service.state.model_versions
    ids = people["person_id"].head(5).tolist()
    scored = api.score(customer_ids=[*ids, "nobody"])
    assert [r["person_id"] for r in scored["results"]] == ids and scored["not_found"] == ["nobody"]
    assert scored["model_versions"] == versions and scored["feature_as_of"] == "2026-01-01"
    direct = json.loads(asyncio.run(service.score(customer_ids=[*ids, "nobody"])).model_dump_json())
    assert scored == direct  # the HTTP answer is the service method's answer

    tiers = api.tier(customer_ids=ids)
    assert [t["person_id"] for t in tiers["tiers"]] == ids and tiers["rules"]["member_tiers"]
    assert tiers == json.loads(asyncio.run(service.tier(customer_ids=ids)).model_dump_json())
    assert all({"predicted_tier", "tier_move", "tier_move_probability", "predicted_at"} <= set(t)
               for t in tiers["tiers"])

    seeds = people[people["eligible"]].sort_values("spend_365d", ascending=False)["person_id"].head(80).tolist()
    look = api.lookalike(seed_customer_ids=seeds, fraction=0.05)
    assert look["audience"] and not {a["person_id"] for a in look["audience"]} & set(seeds)
    assert look["mlflow_run_id"] and look["holdout"]["n_seeds"] == 16

    campaign = {"campaign_id": "lk-1", "objective": "lookalike", "budget": 40, "cost_per_contact": 0.5,
                "seed_customer_ids": seeds}
    target = api.target(**campaign)
    assert target["summary"]["spend"] <= 40 and target["lookalike"]["n_seeds"] == 16
    assert not {a["person_id"] for a in target["audience"]} & set(seeds)
    csv = pd.read_csv(io.StringIO(api.target_csv(**campaign)))
    assert csv["person_id"].tolist() == [a["person_id"] for a in target["audience"]]

    touches = pd.read_parquet(server.setup.data_dir / "campaign_touches.parquet")
    evaluation = api.evaluate_campaign(campaign_id=str(touches["campaign_id"].iloc[0]))
    assert evaluation["treatment"]["persons"] > 0 and evaluation["model_versions"] == versions

    for body in (scored, tiers, look, target, evaluation):
        assert body["model_versions"] == versions and body["feature_as_of"] == "2026-01-01"


def test_openapi_schema_documents_every_endpoint(server):
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    for path in ("/score", "/tier", "/lookalike", "/target", "/target.csv", "/evaluate_campaign"):
        assert "post" in spec["paths"][path], path
    text = json.dumps(spec)
    for name in ("customer_ids", "seed_customer_ids", "control_fraction", "model_versions", "feature_as_of",
                 "not_found", "expected_roi", "absolute_ci", "predicted_tier", "tier_move_probability"):
        assert name in text


# --- safety ----------------------------------------------------------------------------------------------------


def test_token_required_except_probes_and_docs(server):
    for path in ("/healthz", "/livez", "/readyz", "/docs.json"):
        assert httpx.get(f"{server.url}{path}", timeout=30).status_code == 200, path
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert metrics.status_code == 200 and "scrm_feature_as_of_timestamp_seconds" in metrics.text
    body = {"customer_ids": ["x"]}
    assert post(server, "/score", token=None, json=body).status_code == 401
    assert post(server, "/score", token="wrong", json=body).status_code == 401
    assert post(server, "/score", json=body).status_code == 200
    with pytest.raises(bentoml.exceptions.BentoMLException) as exc, server.client(token="wrong") as c:
        c.score(customer_ids=["x"])
    assert exc.value.error_code == 401 and "bearer token" in str(exc.value)


CAMPAIGN = {"campaign_id": "c-1", "objective": "retain", "budget": 50, "cost_per_contact": 1}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/score", b'{"customer_ids": ["a", ', []),
        ("/score", {"customer_ids": "p_1"}, ["customer_ids"]),
        ("/score", {"customer_ids": [1, 2]}, ["customer_ids", 0]),
        ("/score", {"customer_ids": []}, ["customer_ids"]),
        ("/score", {"customer_ids": [f"id{i}" for i in range(10_001)]}, ["customer_ids"]),
        ("/score", {"ids": ["a"]}, ["customer_ids"]),
        ("/tier", {"customer_ids": [""]}, ["customer_ids", 0]),
        ("/target", {**CAMPAIGN, "budget": -10}, ["budget"]),
        ("/target", {**CAMPAIGN, "objective": "acquire"}, ["objective"]),
        ("/target", {**CAMPAIGN, "budget": "a lot"}, ["budget"]),
        ("/target", {**CAMPAIGN, "filters": {"tiers": ["gld"]}}, ["filters", "tiers"]),
        ("/target.csv", {**CAMPAIGN, "control_fraction": 2}, ["control_fraction"]),
        ("/lookalike", {"seed_customer_ids": ["p_1"] * 3, "size": 10}, ["seed_customer_ids"]),
        ("/lookalike", {"seed_customer_ids": ["p_1"], "size": 0}, ["size"]),
        ("/evaluate_campaign", {"campaign_id": "nope"}, ["campaign_id"]),
        ("/evaluate_campaign", {"campaign_id": "x", "level": 2}, ["level"]),
    ],
)
def test_bad_requests_are_400_naming_the_field(server, path, body, loc):
    if isinstance(body, bytes):
        r = post(server, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = post(server, path, json=body)
    assert r.status_code == 400, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]], r.text


def test_wrong_content_type_oversized_body_and_wrong_method(server):
    assert post(server, "/score", content=b"customer_ids=a",
                headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 415
    assert post(server, "/score", content=b"\x80\x04", headers={"Content-Type": "application/vnd.bentoml+pickle"}
                ).status_code == 415
    big = json.dumps({"customer_ids": ["p_" + "0" * 100] * 90_000}).encode()
    assert len(big) > 8 * 1024 * 1024
    assert post(server, "/score", content=big, headers={"Content-Type": "application/json"}).status_code == 413
    r = httpx.get(f"{server.url}/score", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 405


# --- targeting properties over HTTP ----------------------------------------------------------------------------


def test_budget_and_control_group_properties_over_http(api, people):
    opted_out = set(people.loc[people["marketing_opt_out"].fillna(True).astype(bool), "person_id"])
    rng = np.random.default_rng(11)
    for i in range(6):
        campaign = {
            "campaign_id": f"http-{i}",
            "objective": ["retain", "winback", "upsell"][i % 3],
            "budget": float(np.round(rng.uniform(5, 300), 2)),
            "cost_per_contact": float(np.round(rng.uniform(0.05, 2), 2)),
            "offer_cost": float(np.round(rng.uniform(0, 1), 2)),
            "control_fraction": float(np.round(rng.uniform(0, 0.5), 2)),
        }
        first, second = api.target(**campaign), api.target(**campaign)
        s = first["summary"]
        assert first["audience"] == second["audience"]  # the same split on every call
        assert s["spend"] <= campaign["budget"] + 1e-9
        assert abs(s["control"] - campaign["control_fraction"] * s["audience"]) <= 1
        groups = [a["group"] for a in first["audience"]]
        assert groups.count("control") == s["control"] and groups.count("treatment") == s["contacts"]
        assert not {a["person_id"] for a in first["audience"]} & opted_out


# --- champion change -------------------------------------------------------------------------------------------


def test_champion_change_is_picked_up_after_restart(server, people, store_env):
    """Keep this test last in the module: it restarts the shared server on a moved champion."""
    from training import registry
    from training.scoring import Models, score

    CHURN, CLV = registry.model_name("data", "churn"), registry.model_name("data", "clv")
    before = registry.champion_version(CHURN)
    other = next(v for v in store_env.churn_versions if v != before)
    ids = people["person_id"].head(50).tolist()
    with server.client() as c:
        old = c.score(customer_ids=ids, with_reasons=False)
    assert old["model_versions"]["churn"] == str(before)
    assert (old["brand"], old["horizon_days"]) == ("data", {"churn": 90, "clv": 365})

    registry.promote(CHURN, other)
    server.stop()
    server.start()
    with server.client() as c:
        new = c.score(customer_ids=ids, with_reasons=False)
    assert new["model_versions"] == {"churn": str(other), "clv": old["model_versions"]["clv"]}

    churn = registry.load_model(CHURN, version=other).estimator
    clv = registry.load_model(CLV).estimator
    features = pd.read_parquet(store_env.data_dir / "features" / "as_of=2026-01-01" / "features.parquet")
    expected = score(features, Models(churn, clv, str(other), old["model_versions"]["clv"]),
                     as_of=store_env.as_of).set_index("person_id").loc[ids, "churn_probability"]
    got = pd.Series({r["person_id"]: r["churn_probability"] for r in new["results"]}, dtype=float)
    assert got.loc[ids].to_numpy() == pytest.approx(expected.to_numpy(), nan_ok=True)
    assert not np.allclose(got.to_numpy(dtype=float), [r["churn_probability"] or np.nan for r in old["results"]],
                           equal_nan=True)
