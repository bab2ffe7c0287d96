"""Request bodies bounded while they are read: an ASGI middleware, because the limit must hold before FastAPI or
Starlette parse anything (they read a body in full first; Starlette has no per-route body limit of its own).

Route classes (limits in the settings, bytes):
- not authenticated — no session, or a session that does not resolve — ``max_body_preauth`` everywhere: login,
  device messages on /api/iot (device keys are checked after parsing), any route tried without logging in;
- /api/federation/ingest — HMAC-signed batches of a child node: ``max_body_federation``;
- /p/... — the door-plate phone pages (plate token, photos): ``max_body_doorplate``;
- uploads (leak trace, 六无 import, siting OSM) with a live session: ``max_body_upload``;
- everything else with a live session: ``max_body_api`` (JSON API and console forms).
/VIID is left alone: GA/T 1400 has its own limit and status object (viid.views.read_json).

A declared Content-Length past the limit is refused before a byte is read; a body without one is counted as it
arrives and refused at the chunk that crosses the limit. The answer is 413 with the JSON error object; whatever the
application would have answered after its read failed is discarded. The session is resolved (one indexed read) only
for a body larger than the pre-authentication limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

import anyio
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

UPLOAD_PATHS = ("/api/security/trace", "/security/trace", "/api/construction/liuwu/import",
                "/construction/liuwu/import", "/siting")
COOKIE = "anfang_session"


class _TooLarge(Exception):
    pass


def _token(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    raw = headers.get(b"cookie")
    if raw:
        cookie = SimpleCookie()
        try:
            cookie.load(raw.decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
            return None
        if COOKIE in cookie:
            return cookie[COOKIE].value or None
    return None


class BodyLimit:
    def __init__(self, app: Any, *, settings: Any, store: Any) -> None:
        self.app, self.settings, self.store = app, settings, store

    def route_limit(self, path: str) -> tuple[int, bool]:
        """(limit, whether it needs a live session — else the pre-authentication limit applies)."""
        s = self.settings
        if path.startswith("/api/auth/") or path.startswith("/api/iot/") or path == "/login":
            return s.max_body_preauth, False
        if path.startswith("/api/federation/ingest"):
            return s.max_body_federation, False
        if path.startswith("/p/"):
            return s.max_body_doorplate, False
        if path.startswith(UPLOAD_PATHS):
            return s.max_body_upload, True
        return s.max_body_api, True

    def _session_ok(self, token: str) -> bool:
        from anfang.core.errors import AnfangError
        from anfang.security.service import resolve_session

        try:
            with self.store.session() as s:
                resolve_session(s, token, idle_minutes=self.settings.session_idle_minutes)
            return True
        except AnfangError:
            return False

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/VIID"):
            await self.app(scope, receive, send)
            return
        class_limit, needs_session = self.route_limit(path)
        pre = min(self.settings.max_body_preauth, class_limit)
        resolved: list[int] = [] if needs_session else [class_limit]

        async def limit_for(size: int) -> int:
            """The limit that applies, resolving the session only when ``size`` is past the pre-login limit."""
            if resolved:
                return resolved[0]
            if size <= pre:
                return pre
            token = _token(scope)
            ok = token is not None and await anyio.to_thread.run_sync(self._session_ok, token)
            resolved.append(class_limit if ok else pre)
            return resolved[0]

        declared = None
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = None
        if declared is not None:
            limit = await limit_for(declared)
            if declared > limit:
                await self._refuse(scope, receive, send, limit)
                return

        received = 0
        exceeded: list[int] = []
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                limit = await limit_for(received)
                if received > limit:
                    exceeded.append(limit)
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's own answer to its failed read (FastAPI: 400) is replaced below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, exceeded[0])

    async def _refuse(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        body = {"error": {"code": "too_large",
                          "message": f"请求体超过 {limit} 字节 / request body larger than {limit} bytes",
                          "detail": {"limit": limit}}}
        await JSONResponse(body, status_code=413, headers={"connection": "close"})(scope, receive, send)
