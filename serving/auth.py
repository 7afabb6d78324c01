"""The service's front door: optional bearer token, JSON only, bounded request bodies.

:class:`RequestGuard` is a plain ASGI middleware (added with ``ScrmService.add_asgi_middleware``) in front of
every API route:

- when ``SCRM_API_TOKEN`` is set, a request without ``Authorization: Bearer <token>`` gets 401 (compared in
  constant time); health, readiness, metrics and the API docs (``/``, ``/docs.json``, ``/schema.json``) stay
  open so probes and schema readers keep working;
- a body with a ``Content-Type`` other than ``application/json`` gets 415 (no pickle, no forms; a missing
  content type is read as JSON, as BentoML does);
- a body larger than ``SCRM_MAX_BODY_BYTES`` (default 8 MiB: 200,000 seed ids fit) gets 413, whether it
  announces its length or streams it chunked; it is refused before the service parses it.

Error bodies have the shape of BentoML's own: ``{"error": "...", "detail": [{"loc": [...], "msg": "..."}]}``.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: Paths that never need the token: probes, metrics and the API documentation.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json"})
PUBLIC_PREFIXES = ("/static_content/", "/assets/")
JSON_TYPES = ("application/json",)


def max_body_bytes_from_env() -> int:
    """``SCRM_MAX_BODY_BYTES`` as a positive int (default 8 MiB)."""
    raw = os.environ.get("SCRM_MAX_BODY_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"SCRM_MAX_BODY_BYTES must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"SCRM_MAX_BODY_BYTES must be a positive integer, got {raw!r}")
    return value


def is_public(path: str) -> bool:
    """True for the paths that need no token (probes, metrics, docs)."""
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


class RequestGuard:
    """ASGI middleware: bearer token, JSON-only bodies and a body size limit (see the module docstring).

    Parameters
    ----------
    app : ASGI application
    token : str, optional
        Required bearer token; default ``SCRM_API_TOKEN`` (no authentication when unset or empty).
    max_body_bytes : int, optional
        Largest accepted request body; default ``SCRM_MAX_BODY_BYTES`` or 8 MiB.
    """

    def __init__(self, app: ASGIApp, *, token: str | None = None, max_body_bytes: int | None = None) -> None:
        self.app = app
        token = os.environ.get("SCRM_API_TOKEN", "") if token is None else token
        self.token = token.strip().encode("utf-8") or None
        self.max_body_bytes = max_body_bytes if max_body_bytes is not None else max_body_bytes_from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self.token is not None and not self._authorized(headers.get(b"authorization", b"")):
            await _reply(send, 401, "missing or invalid bearer token: send 'Authorization: Bearer <token>'",
                         loc=["header", "Authorization"], headers=[(b"www-authenticate", b'Bearer realm="scrm"')])
            return
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
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(value.strip(), self.token)

    async def _too_large(self, send: Send) -> None:
        await _reply(send, 413, f"request body larger than {self.max_body_bytes:,} bytes "
                                "(split the ids over several requests)", loc=["body"])
