"""The OpenAPI document at ``/docs.json`` says what the service really accepts and answers.

BentoML 1.4 builds it from the pydantic request and response models, with three gaps that a client generated from
the document (or a schema-driven test such as ``tests/serving/test_fuzz.py``) trips over:

- it declares ``openapi: 3.0.2`` while pydantic 2 writes JSON Schema 2020-12 (numeric ``exclusiveMinimum``,
  ``prefixItems``, ``{"type": "null"}``) — the dialect of OpenAPI **3.1**, which the document now declares;
- it keeps only the first branch of a top-level ``anyOf``, so a field that may be ``null`` (``lookalike`` of
  ``/target``, ``incremental_revenue`` of ``/evaluate_campaign``, ``size`` / ``fraction`` of ``/lookalike``) is
  documented as never null; the ``null`` branch is kept now;
- its 400 schema gives ``detail`` as a string, while every 400 carries pydantic's list of ``{loc, msg, type}``.

:func:`install_openapi_fixes` patches the two BentoML functions involved (idempotent; like
:func:`serving.metrics.install_route_labels`, it is checked against the pinned BentoML version by the tests).
"""

from __future__ import annotations

import importlib
from typing import Any

OPENAPI_VERSION = "3.1.0"


def _error_detail_schema():
    from bentoml._internal.service.openapi.specification import Schema

    return Schema(
        type="array",
        title="Error Detail",
        description="One entry per problem; loc names the field (e.g. [\"filters\", \"tiers\"] or [\"budget\"]).",
        items=Schema(
            type="object",
            required=["loc", "msg"],
            properties={
                "loc": Schema(type="array", items=Schema(anyOf=[Schema(type="string"), Schema(type="integer")])),
                "msg": Schema(type="string"),
                "type": Schema(type="string"),
            },
        ),
    )


def install_openapi_fixes() -> None:
    """Make BentoML's OpenAPI document declare 3.1, keep nullable fields nullable and describe 400 bodies."""
    method = importlib.import_module("_bentoml_sdk.method")
    openapi = importlib.import_module("_bentoml_sdk.service.openapi")

    if getattr(method._flatten_field, "scrm_keeps_null", False):
        return
    flatten = method._flatten_field

    def flatten_keeping_null(schema: dict[str, Any], defs: dict[str, Any], max_depth: int | None = None,
                             _depth: int = 0) -> dict[str, Any]:
        branches = schema.get("anyOf")
        if isinstance(branches, list) and {"type": "null"} in branches:
            schema["anyOf"] = [flatten(dict(b), defs, max_depth, _depth) for b in branches]
            return schema
        return flatten(schema, defs, max_depth, _depth)

    flatten_keeping_null.scrm_keeps_null = True  # type: ignore[attr-defined]
    method._flatten_field = flatten_keeping_null

    generate = openapi.generate_spec

    def generate_spec(svc: Any, *, openapi_version: str = OPENAPI_VERSION):
        spec = generate(svc, openapi_version=openapi_version)
        invalid = spec.components.get("schemas", {}).get("InvalidArgument")
        if invalid is not None and invalid.properties is not None:
            invalid.properties["detail"] = _error_detail_schema()
        return spec

    openapi.generate_spec = generate_spec
