"""The service's front door: bearer token, JSON only, bounded bodies, admission control, one-line 400 logs.

:class:`RequestGuard` is a plain ASGI middleware (added with ``ScrmService.add_asgi_middleware``) in front of
every route:

- ``/admin/*`` (``POST /admin/reload``) needs ``Authorization: Bearer <SCRM_ADMIN_TOKEN>`` (401 otherwise) and
  is refused with 403 when ``SCRM_ADMIN_TOKEN`` is unset; it is never turned away by admission control;
- when ``SCRM_API_TOKEN`` is set, a request without ``Authorization: Bearer <token>`` gets 401 (compared in
  constant time); health, readiness and the API docs (``/``, ``/docs.json``, ``/schema.json``) stay open so
  probes and schema readers keep working; ``/metrics`` needs the token too unless ``SCRM_METRICS_PUBLIC=1``;
- a request with two ``Content-Type``, ``Content-Length`` or ``Authorization`` headers gets 400 (the guard and
  BentoML would otherwise read different ones);
- a body with a ``Content-Type`` other than ``application/json`` gets 415 (no pickle, no forms; a missing
  content type is read as JSON, as BentoML does);
- a body larger than ``SCRM_MAX_BODY_BYTES`` (default 8 MiB: 200,000 seed ids fit) gets 413, whether it
  announces its length or streams it chunked; it is refused before the service parses it; a body that does not
  arrive within ``SCRM_BODY_TIMEOUT`` seconds (default 30) gets 408, and a client that disconnects half-way
  through its body is answered at once (so a shutdown never waits for it);
- **admission control**: at most ``SCRM_MAX_IN_FLIGHT`` API requests (default 16) are in progress per worker;
  one more is answered at once with 503 and ``Retry-After: SCRM_RETRY_AFTER`` (default 1 s) instead of queueing
  behind work whose callers may have gone, so the service recovers as soon as the burst ends.

Error bodies have the shape of BentoML's own: ``{"error": "...", "detail": [{"loc": [...], "msg": "..."}]}``.
:func:`install_one_line_4xx_logs` turns BentoML's ERROR traceback for a 400 (which prints the offending request
values) into one WARNING line naming the route and the fields.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("bentoml.scrm")

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_RETRY_AFTER = 1
DEFAULT_BODY_TIMEOUT = 30.0
#: Paths that never need the token: probes and the API documentation (``/metrics`` too when public).
PUBLIC_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/docs.json", "/schema.json"})
PUBLIC_PREFIXES = ("/static_content/", "/assets/")
METRICS_PATH = "/metrics"
ADMIN_PREFIX = "/admin/"
JSON_TYPES = ("application/json",)
#: Headers a request may carry at most once.
SINGLE_HEADERS = (b"content-type", b"content-length", b"authorization")


def positive_env(name: str, default: float, kind: type = int, *, zero: str | None = None) -> Any:
    """Environment variable ``name`` as a positive ``kind`` (``default`` when unset or empty).

    ``zero``: what 0 means when it is allowed too (e.g. "turns polling off"); refused otherwise.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    wanted = f"a {'non-negative' if zero else 'positive'} {'integer' if kind is int else 'number'}"
    if zero:
        wanted += f" (0 {zero})"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {wanted}, got {raw!r}") from None
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {wanted}, got {raw!r}")
    return value


def max_body_bytes_from_env() -> int:
    """``SCRM_MAX_BODY_BYTES`` as a positive int (default 8 MiB)."""
    return positive_env("SCRM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)


def max_in_flight_from_env() -> int:
    """``SCRM_MAX_IN_FLIGHT``: API requests one worker works on at once (default 16)."""
    return positive_env("SCRM_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)


def metrics_public_from_env() -> bool:
    """``SCRM_METRICS_PUBLIC=1`` (or true/yes) leaves ``/metrics`` open when a token is set."""
    return os.environ.get("SCRM_METRICS_PUBLIC", "").strip().lower() in ("1", "true", "yes")


def is_public(path: str, *, metrics_public: bool = False) -> bool:
    """True for the paths that need no token (probes, docs; ``/metrics`` when ``metrics_public``)."""
    if path == METRICS_PATH:
        return metrics_public
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def _reply(send: Send, status: int, error: str, *, loc: list[str] | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body: dict[str, Any] = {"error": error}
    if loc is not None:
        body["detail"] = [{"loc": loc, "msg": error}]
    payload = json.dumps(body).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})


class _Disconnected(Exception):
    """The client went away before its body was complete."""


class RequestGuard:
    """ASGI middleware: token, single headers, JSON-only bounded bodies, admission control (see the module docstring).

    Parameters
    ----------
    app : ASGI application
    token : str, optional
        Required bearer token; default ``SCRM_API_TOKEN`` (no authentication when unset or empty).
    max_body_bytes : int, optional
        Largest accepted request body; default ``SCRM_MAX_BODY_BYTES`` or 8 MiB.
    max_in_flight : int, optional
        API requests in progress at once in this worker before one more gets 503; default ``SCRM_MAX_IN_FLIGHT``
        or 16.
    retry_after : int, optional
        Seconds sent in ``Retry-After`` with that 503; default ``SCRM_RETRY_AFTER`` or 1.
    body_timeout : float, optional
        Seconds a request body may take to arrive before 408; default ``SCRM_BODY_TIMEOUT`` or 30.
    metrics_public : bool, optional
        Serve ``/metrics`` without the token; default ``SCRM_METRICS_PUBLIC``.
    admin_token : str, optional
        Bearer token of ``/admin/*``; default ``SCRM_ADMIN_TOKEN`` (admin routes refused when unset or empty).
    """

    def __init__(self, app: ASGIApp, *, token: str | None = None, max_body_bytes: int | None = None,
                 max_in_flight: int | None = None, retry_after: int | None = None,
                 body_timeout: float | None = None, metrics_public: bool | None = None,
                 admin_token: str | None = None) -> None:
        self.app = app
        token = os.environ.get("SCRM_API_TOKEN", "") if token is None else token
        self.token = token.strip().encode("utf-8") or None
        admin_token = os.environ.get("SCRM_ADMIN_TOKEN", "") if admin_token is None else admin_token
        self.admin_token = admin_token.strip().encode("utf-8") or None
        self.max_body_bytes = max_body_bytes if max_body_bytes is not None else max_body_bytes_from_env()
        self.max_in_flight = max_in_flight if max_in_flight is not None else max_in_flight_from_env()
        self.retry_after = retry_after if retry_after is not None else positive_env("SCRM_RETRY_AFTER",
                                                                                    DEFAULT_RETRY_AFTER)
        self.body_timeout = body_timeout if body_timeout is not None else positive_env(
            "SCRM_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, float)
        self.metrics_public = metrics_public if metrics_public is not None else metrics_public_from_env()
        self.in_flight = 0  # one event loop per worker: a plain counter is enough

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        repeated = self._repeated_header(scope.get("headers", []))
        if repeated is not None:
            await _reply(send, 400, f"the {repeated} header is given more than once: send it once",
                         loc=["header", repeated])
            return
        if is_public(path, metrics_public=self.metrics_public):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if path.startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send, headers)
            return
        if self.token is not None and not self._authorized(headers.get(b"authorization", b"")):
            await _reply(send, 401, "missing or invalid bearer token: send 'Authorization: Bearer <token>'",
                         loc=["header", "Authorization"], headers=[(b"www-authenticate", b'Bearer realm="scrm"')])
            return
        if path == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await _reply(send, 503, f"the service is at capacity ({self.max_in_flight} requests in progress in "
                                    f"this worker); retry after {self.retry_after} s",
                         headers=[(b"retry-after", str(self.retry_after).encode())])
            return
        self.in_flight += 1
        try:
            await self._admitted(scope, receive, send, headers)
        finally:
            self.in_flight -= 1

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        if scope.get("method", "GET") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype and ctype not in JSON_TYPES:
            await _reply(send, 415, f"unsupported Content-Type {ctype!r}: send JSON with "
                                    "'Content-Type: application/json'", loc=["header", "Content-Type"])
            return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number", loc=["header", "Content-Length"])
                return
            if announced > self.max_body_bytes:
                await self._too_large(send)
                return
        try:
            body = await asyncio.wait_for(self._read_body(receive), timeout=self.body_timeout)
        except TimeoutError:
            await _reply(send, 408, f"the request body did not arrive within {self.body_timeout:g} s",
                         loc=["body"], headers=[(b"connection", b"close")])
            return
        except _Disconnected:
            # nobody reads this answer; sending it ends the request for every middleware around the guard
            # (BentoML's timeout middleware otherwise waits the full request timeout, holding up a shutdown)
            log.warning("%s %s: client disconnected before sending its whole body", scope.get("method"),
                        scope.get("path"))
            await _reply(send, 400, "client disconnected before sending the whole body", loc=["body"])
            return
        if body is None:
            await self._too_large(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body; ``None`` when it outgrows the limit; :class:`_Disconnected` if the client left."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _repeated_header(raw: list[tuple[bytes, bytes]]) -> str | None:
        seen: set[bytes] = set()
        for key, _ in raw:
            key = key.lower()
            if key in SINGLE_HEADERS:
                if key in seen:
                    return key.decode("latin-1").title()
                seen.add(key)
        return None

    async def _admin(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        if self.admin_token is None:
            await _reply(send, 403, "admin endpoints are disabled: start the service with SCRM_ADMIN_TOKEN set")
            return
        if not self._authorized(headers.get(b"authorization", b""), self.admin_token):
            await _reply(send, 401, "missing or invalid admin token: send 'Authorization: Bearer <SCRM_ADMIN_TOKEN>'",
                         loc=["header", "Authorization"], headers=[(b"www-authenticate", b'Bearer realm="scrm-admin"')])
            return
        await self._admitted(scope, receive, send, headers)

    def _authorized(self, header: bytes, token: bytes | None = None) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(value.strip(), token if token is not None else self.token)

    async def _too_large(self, send: Send) -> None:
        await _reply(send, 413, f"request body larger than {self.max_body_bytes:,} bytes "
                                "(split the ids over several requests)", loc=["body"])


class OneLine4xx(logging.Filter):
    """Rewrite BentoML's ``Exception on /score [POST]`` ERROR + traceback for a caller's mistake as one line.

    A pydantic ``ValidationError`` (BentoML answers 400) or a BentoML error below 500 becomes a WARNING
    ``400 on /score [POST]: customer_ids: <message>`` without the traceback and without the offending values
    (which may be the request body). Server errors keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not str(record.msg).startswith("Exception on "):
            return True
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            status = 400
            fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                               for e in exc.errors(include_input=False, include_context=False)[:5])
        elif isinstance(exc, BentoMLException) and int(exc.error_code.value) < 500:
            status, fields = int(exc.error_code.value), type(exc).__name__
        else:
            return True
        path, method = (record.args or ("?", "?"))[:2] if isinstance(record.args, tuple) else ("?", "?")
        record.msg = "%d on %s [%s]: %s"
        record.args = (status, path, method, fields.replace("\n", " "))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def install_one_line_4xx_logs() -> None:
    """Attach :class:`OneLine4xx` to the loggers BentoML reports request exceptions on (once)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML's log_exception writes
    if not any(isinstance(f, OneLine4xx) for f in logger.filters):
        logger.addFilter(OneLine4xx())
