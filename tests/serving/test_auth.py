"""RequestGuard (token, single headers, JSON only, body limit, admission control) around small ASGI apps, driven
over HTTP in-process."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from serving.auth import (
    DEFAULT_MAX_BODY_BYTES,
    OneLine4xx,
    RequestGuard,
    is_public,
    max_body_bytes_from_env,
    max_in_flight_from_env,
)

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


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/docs.json", "/schema.json", "/",
                                  "/static_content/swagger-ui.css"])
def test_probes_and_docs_need_no_token(path):
    assert is_public(path)
    assert client(token=TOKEN).get(path).status_code == 200


def test_metrics_need_the_token_unless_made_public(monkeypatch):
    monkeypatch.delenv("SCRM_METRICS_PUBLIC", raising=False)
    assert not is_public("/metrics")
    assert client(token=TOKEN).get("/metrics").status_code == 401
    assert client(token=TOKEN).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    monkeypatch.setenv("SCRM_METRICS_PUBLIC", "1")
    assert client(token=TOKEN).get("/metrics").status_code == 200
    assert client(token=None).get("/metrics").status_code == 200  # no token set: everything is open


@pytest.mark.parametrize("header", ["Content-Type", "Content-Length", "Authorization"])
def test_a_repeated_header_is_400_naming_it(header):
    values = {"Content-Type": ("application/json", "text/plain"), "Content-Length": ("2", "2"),
              "Authorization": (f"Bearer {TOKEN}", "Bearer other")}[header]
    r = client(token=TOKEN).post("/score", content=b"{}",
                                 headers=[(header, values[0]), (header, values[1]),
                                          *([] if header == "Authorization" else
                                            [("Authorization", f"Bearer {TOKEN}")])])
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["header", header]


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


# --- admission control, half-sent bodies, one-line 400 logs ------------------------------------------------------


def test_past_capacity_requests_get_503_with_retry_after_at_once_and_capacity_returns():
    """Five concurrent calls into a guard admitting two: two are served, three get 503 without waiting."""

    async def go() -> tuple[list[httpx.Response], httpx.Response, int]:
        release = asyncio.Event()
        started = 0

        async def slow_app(scope, receive, send):
            nonlocal started
            started += 1
            await release.wait()
            await echo_app(scope, receive, send)

        guard = RequestGuard(slow_app, token="", max_in_flight=2, retry_after=3)
        transport = httpx.ASGITransport(app=guard)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            calls = [asyncio.create_task(c.post("/score", json={"customer_ids": [str(i)]})) for i in range(5)]
            done, _ = await asyncio.wait(calls, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            while len(done) < 3:  # the three refused ones finish while the two admitted are still held
                more, _ = await asyncio.wait([t for t in calls if t not in done], timeout=30,
                                             return_when=asyncio.FIRST_COMPLETED)
                done |= more
            assert all(t.result().status_code == 503 for t in done) and guard.in_flight == 2
            release.set()
            responses = [await t for t in calls]
            after = await c.post("/score", json={"customer_ids": ["x"]})
            return responses, after, guard.in_flight

    responses, after, in_flight = asyncio.run(go())
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503, 503]
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "3" and "capacity" in r.json()["error"] for r in refused)
    assert after.status_code == 200 and in_flight == 0


def test_probes_are_never_refused_for_capacity():
    async def go() -> int:
        release = asyncio.Event()

        async def app(scope, receive, send):
            if scope["path"] == "/score":
                await release.wait()
            await echo_app(scope, receive, send)

        guard = RequestGuard(app, token="", max_in_flight=1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://t") as c:
            held = asyncio.create_task(c.post("/score", json={}))
            while guard.in_flight < 1:
                await asyncio.sleep(0.01)
            status = (await c.get("/readyz")).status_code
            release.set()
            await held
            return status

    assert asyncio.run(go()) == 200


def test_max_in_flight_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCRM_MAX_IN_FLIGHT", "5")
    assert max_in_flight_from_env() == 5 and RequestGuard(echo_app).max_in_flight == 5
    monkeypatch.setenv("SCRM_MAX_IN_FLIGHT", "0")
    with pytest.raises(ValueError, match="SCRM_MAX_IN_FLIGHT"):
        max_in_flight_from_env()


def _drive(guard: RequestGuard, messages: list[dict]) -> list[dict]:
    """Run one POST /score through ``guard`` with the given receive messages (then none); the messages sent."""
    sent: list[dict] = []

    async def go() -> None:
        queue = list(messages)

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.Event().wait()  # a client that neither sends nor leaves

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/score",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]}
        await asyncio.wait_for(guard(scope, receive, send), timeout=30)

    asyncio.run(go())
    return sent


def test_a_client_leaving_half_way_through_its_body_is_answered_at_once():
    """The guard ends the request (so BentoML's timeout middleware and a shutdown do not wait for it)."""
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    sent = _drive(RequestGuard(app, token=""), [{"type": "http.request", "body": b"{\"customer_ids\": [", "more_body": True},
                                               {"type": "http.disconnect"}])
    assert not reached and sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400


def test_a_body_that_stops_arriving_gets_408():
    sent = _drive(RequestGuard(echo_app, token="", body_timeout=0.2),
                  [{"type": "http.request", "body": b"{", "more_body": True}])
    assert sent[0]["status"] == 408 and b"did not arrive" in sent[1]["body"]


def test_400_logs_are_one_line_without_the_request_values():
    from pydantic import BaseModel, ValidationError

    class Req(BaseModel):
        customer_ids: list[str]

    try:
        Req(customer_ids="13800138000-secret-phone")
    except ValidationError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
                               "Exception on %s [%s]", ("/score", "POST"), exc_info)
    assert OneLine4xx().filter(record)
    line = record.getMessage()
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert line.startswith("400 on /score [POST]: customer_ids") and "\n" not in line and "secret" not in line

    server_error = logging.LogRecord("x", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/score", "POST"),
                                     (RuntimeError, RuntimeError("bug"), None))
    assert OneLine4xx().filter(server_error) and server_error.exc_info is not None  # 500s keep their traceback


def test_admin_routes_need_the_admin_token(monkeypatch):
    monkeypatch.delenv("SCRM_ADMIN_TOKEN", raising=False)
    disabled = client(token=TOKEN)
    assert disabled.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403
    guarded = client(token=TOKEN, admin_token="admin-1")
    assert guarded.post("/admin/reload", json={}).status_code == 401
    assert guarded.post("/admin/reload", json={}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    ok = guarded.post("/admin/reload", json={}, headers={"Authorization": "Bearer admin-1"})
    assert ok.status_code == 200 and ok.json()["path"] == "/admin/reload"
    # the admin token opens the admin routes only
    assert guarded.post("/score", json={}, headers={"Authorization": "Bearer admin-1"}).status_code == 401
    monkeypatch.setenv("SCRM_ADMIN_TOKEN", "from-env")
    assert client().post("/admin/reload", json={}, headers={"Authorization": "Bearer from-env"}).status_code == 200
