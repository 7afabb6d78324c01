"""Property-based fuzz of the HTTP API from its own OpenAPI document (Schemathesis + Hypothesis).

A real ``scrm serve`` (token set) on the small trained setup of ``conftest.py``. For every POST endpoint the
document at ``/docs.json`` describes, Schemathesis generates request bodies that follow the schema (positive) and
bodies that break it (negative); every answer must be:

- never a 5xx;
- for a positive body: a 2xx matching the documented response schema, or a 400 (a request can follow the schema
  and still be refused: unknown seeds, an unknown campaign);
- for a negative body: a 4xx (Schemathesis' ``negative_data_rejection``);
- every 4xx a 400 whose ``detail`` names the field: each ``loc`` starts with a field of the request model or a key
  the caller sent (empty only when the body is not a JSON object);
- never an enumeration of data: a 4xx carries no ``person_id`` the caller did not send, and no campaign id.

The default run is bounded (``EXAMPLES`` per endpoint and mode, derandomised: the same cases on every run); the
slow-marked run explores ``SLOW_EXAMPLES`` per endpoint and mode, and runs real lookalike fits (generated
``/lookalike`` and lookalike ``/target`` bodies given 60 known seeds).

The document must be one a schema-driven tool accepts as it is served: OpenAPI 3.1 (the dialect of pydantic's
schemas), nullable fields nullable, the 400 body described (``serving/openapi.py``); it is used unchanged.
"""

from __future__ import annotations

import collections
import json
import re

import httpx
import pandas as pd
import pytest
from test_http import TOKEN, Server

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the importorskip
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from serving import schemas  # noqa: E402

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 25
SLOW_EXAMPLES = 300
#: POST endpoint → the request model whose fields a 400's ``loc`` may name.
ADMIN_PATHS = {"/admin/reload"}
REQUEST_MODELS = {
    "/score": schemas.ScoreRequest,
    "/tier": schemas.TierRequest,
    "/lookalike": schemas.LookalikeRequest,
    "/target": schemas.TargetRequest,
    "/target.csv": schemas.TargetRequest,
    "/evaluate_campaign": schemas.EvaluateRequest,
}
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
PERSON_ID = re.compile(r"p_[0-9a-f]{12}")


@pytest.fixture(scope="module")
def server(trained_setup, tmp_path_factory):
    setup = trained_setup.copy_store(tmp_path_factory.mktemp("fuzz-store"))
    srv = Server(setup, tmp_path_factory.mktemp("fuzz-logs") / "serve.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/docs.json", timeout=30)


@pytest.fixture(scope="module")
def campaign_ids(server) -> set[str]:
    touches = pd.read_parquet(server.setup.data_dir / "campaign_touches.parquet", columns=["campaign_id"])
    return set(touches["campaign_id"].astype(str))


def test_the_document_describes_every_endpoint(server, schema):
    posts = {op.ok().path for op in schema.get_all_operations() if op.ok().method.upper() == "POST"}
    # a new endpoint needs its request model here, so it gets fuzzed; the admin endpoints need the admin token
    # (403 without it) and are tested with it in test_reload.py
    assert posts - ADMIN_PATHS == set(REQUEST_MODELS)
    document = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"  # numeric exclusiveMinimum, prefixItems, {"type": "null"} are 3.1
    target = document["paths"]["/target"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"type": "null"} in target["properties"]["lookalike"]["anyOf"]  # null for other objectives
    assert document["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]["type"] == "array"


def _names_the_field(path: str, case, response, campaign_ids: set[str]) -> None:
    sent = case.body if isinstance(case.body, dict) else None
    where = f"{path} answered {response.status_code} to {json.dumps(case.body, default=str)[:500]}: {response.text[:500]}"
    assert response.status_code == 400, where
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), list) and body["detail"], where
    fields = set(REQUEST_MODELS[path].model_fields) | set(sent or ())
    for item in body["detail"]:
        loc = item.get("loc")
        assert isinstance(loc, list) and isinstance(item.get("msg"), str), where
        if sent is not None:
            assert loc and loc[0] in fields, where
    request_text = json.dumps(case.body, default=str, ensure_ascii=False)
    leaked = {p for p in PERSON_ID.findall(response.text) if p not in request_text}
    assert not leaked, f"{where}: lists person ids the caller did not send: {sorted(leaked)[:3]}"
    named = {c for c in campaign_ids if len(c) > 3 and c in response.text and c not in request_text}
    assert not named, f"{where}: lists campaign ids: {sorted(named)[:3]}"


def _fuzz(server, schema, path: str, mode: GenerationMode, examples: int, campaign_ids: set[str],
          seeds: list[str] | None = None) -> None:
    operation = schema[path]["POST"]
    strategy = operation.as_strategy(generation_mode=mode)
    if seeds is not None:  # known seeds, so lookalike fits run with generated sizes, fractions and money
        strategy = strategy.map(lambda case: _with_seeds(case, seeds))
    statuses: collections.Counter = collections.Counter()
    checks = [not_a_server_error, content_type_conformance, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def run(case) -> None:
        response = case.call(base_url=server.url, headers=AUTH, timeout=300)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=AUTH)
        if response.status_code >= 400:
            _names_the_field(path, case, response, campaign_ids)

    run()
    print(f"\nfuzz {path} {mode.value}: {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) > 0 and not [s for s in statuses if s >= 500]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("path", list(REQUEST_MODELS))
def test_fuzz_no_server_errors_and_4xx_name_the_field(server, schema, campaign_ids, path, mode):
    _fuzz(server, schema, path, mode, EXAMPLES, campaign_ids)


def _with_seeds(case, seeds: list[str]):
    """The case with known seeds, as a lookalike /target, and with exactly one of size and fraction."""
    body = case.body
    if isinstance(body, dict):
        body["seed_customer_ids"] = seeds
        if "objective" in body:
            body["objective"] = "lookalike"
        elif body.get("size") is None and body.get("fraction") is None:
            body["fraction"] = 0.05
        elif body.get("size") is not None and body.get("fraction") is not None:
            body["fraction"] = None
    return case


@pytest.fixture(scope="module")
def seeds(server) -> list[str]:
    """60 known people with orders (a lookalike needs at least 50 known seeds)."""
    snapshot = next((server.setup.data_dir / "features").glob("as_of=*"))
    features = pd.read_parquet(snapshot / "features.parquet", columns=["person_id", "orders", "spend_365d"])
    buyers = features[features["orders"] >= 1].sort_values(["spend_365d", "person_id"], ascending=[False, True])
    return buyers["person_id"].head(60).tolist()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/lookalike", "/target"])
def test_fuzz_lookalike_fits_with_known_seeds(server, schema, campaign_ids, seeds, path):
    """Generated sizes, fractions, random states and money around real lookalike fits (each logs an MLflow run)."""
    _fuzz(server, schema, path, GenerationMode.POSITIVE, 15, campaign_ids, seeds=seeds)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("path", list(REQUEST_MODELS))
def test_fuzz_longer_run(server, schema, campaign_ids, path, mode):
    _fuzz(server, schema, path, mode, SLOW_EXAMPLES, campaign_ids)
