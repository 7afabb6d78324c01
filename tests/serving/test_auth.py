"""RequestGuard (bearer token, JSON only, body limit) around a small echo ASGI app, driven over HTTP in-process."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from serving.auth import DEFAULT_MAX_BODY_BYTES, RequestGuard, is_public, max_body_bytes_from_env

TOKEN = "s3cret-token"


async def echo_app(scope, receive, send):
    """Answers 200 with the body it received (and its length), as JSON."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    payload = json.dumps({"path": scope["path"], "length": len(body), "body": body.decode("utf-8")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


class Client:
    """Synchronous calls into the guarded app over httpx's in-process ASGI transport."""

    def __init__(self, **options) -> None:
        self.app = RequestGuard(echo_app, **options)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(**options) -> Client:
    return Client(**options)


def test_without_a_token_everything_passes_through(monkeypatch):
    monkeypatch.delenv("SCRM_API_TOKEN", raising=False)
    r = client().post("/score", json={"customer_ids": ["a"]})
    assert r.status_code == 200 and json.loads(r.json()["body"]) == {"customer_ids": ["a"]}


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCRM_API_TOKEN", TOKEN)
    c = client()
    assert c.post("/score", json={}).status_code == 401
    assert c.post("/score", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, "Bearer", f"Bearer {TOKEN}x"])
def test_missing_or_wrong_token_is_401(header):
    headers = {"Authorization": header} if header is not None else {}
    r = client(token=TOKEN).post("/target", json={"campaign_id": "c"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["detail"][0]["loc"] == ["header", "Authorization"]


def test_right_token_passes_case_insensitive_scheme():
    for scheme in ("Bearer", "bearer"):
        r = client(token=TOKEN).post("/score", json={"x": 1}, headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json", "/",
                                  "/static_content/swagger-ui.css"])
def test_probes_metrics_and_docs_need_no_token(path):
    assert is_public(path)
    assert client(token=TOKEN).get(path).status_code == 200


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "application/vnd.bentoml+pickle",
                                   "multipart/form-data; boundary=x", "text/plain"])
def test_only_json_bodies(ctype):
    r = client().post("/score", content=b"customer_ids=a", headers={"Content-Type": ctype})
    assert r.status_code == 415 and r.json()["detail"][0]["loc"] == ["header", "Content-Type"]


def test_json_with_charset_and_missing_content_type_pass():
    assert client().post("/score", content=b"{}", headers={"Content-Type": "application/json; charset=utf-8"}
                         ).status_code == 200
    assert client().post("/score", content=b"{}").status_code == 200


def test_announced_oversized_body_is_413():
    r = client(max_body_bytes=1_000).post("/score", content=b"x" * 1_001, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "1,000 bytes" in r.json()["error"]


def test_streamed_oversized_body_is_413():
    async def chunks():
        for _ in range(10):
            yield b"y" * 300

    r = client(max_body_bytes=1_000).post("/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_body_at_the_limit_reaches_the_app_intact():
    async def chunks():
        for _ in range(4):
            yield b"z" * 250

    r = client(max_body_bytes=1_000).post("/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["length"] == 1_000 and r.json()["body"] == "z" * 1_000


def test_body_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv("SCRM_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes_from_env() == DEFAULT_MAX_BODY_BYTES
    monkeypatch.setenv("SCRM_MAX_BODY_BYTES", "2048")
    assert RequestGuard(echo_app).max_body_bytes == 2048
    for bad in ("0", "-1", "lots"):
        monkeypatch.setenv("SCRM_MAX_BODY_BYTES", bad)
        with pytest.raises(ValueError, match="SCRM_MAX_BODY_BYTES"):
            max_body_bytes_from_env()
