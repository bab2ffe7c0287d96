"""HTTP security middleware: security headers on every response, CSRF origin check, Secure cookies under TLS,
and 403 answers to logged-in accounts reported to the access monitor.

Headers (set when the response has none of its own): Content-Security-Policy (the offline console's: nothing but
this origin; Swagger UI at /docs also needs its inline start-up script), X-Frame-Options DENY and CSP
frame-ancestors 'none', X-Content-Type-Options nosniff, Referrer-Policy same-origin, Cross-Origin-Opener-Policy,
and Strict-Transport-Security when the request came over TLS.

CSRF: the console's forms carry a token bound to the session (anfang.web.views.check_csrf); in addition every
state-changing request (POST, PUT, PATCH, DELETE) that carries the console's cookies and no Authorization header
must come from this origin: its Origin header (or, where a browser sends ``Origin: null`` or none, its
Sec-Fetch-Site / Referer) must name this host or one of ``csrf_trusted_origins``. Requests without cookies —
devices on /VIID (digest) and /api/iot (device keys), API clients with a bearer token, federation peers — are
not cookie-authenticated and pass untouched; ``csrf_exempt_paths`` lists prefixes never checked.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import anyio
import structlog

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SESSION_COOKIE = "anfang_session"
PRELOGIN_COOKIE = "anfang_csrf"
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    raw = _header(scope, b"cookie")
    if not raw:
        return {}
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
        return {}
    return {k: m.value for k, m in jar.items()}


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Any, monitor: Any = None, store: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.monitor = monitor
        self.store = store
        self.hsts = f"max-age={int(settings.hsts_seconds)}; includeSubDomains" if settings.hsts_seconds else None
        self.trusted = {o.rstrip("/").lower() for o in settings.csrf_trusted_origins}
        public = getattr(settings, "public_url", None)  # the address users type (door plates print it too)
        if public:
            parts = urlsplit(public)
            self.trusted.add(f"{parts.scheme}://{parts.netloc}".lower())
        self.exempt = tuple(settings.csrf_exempt_paths)

    # ---- CSRF ----------------------------------------------------------------------------------------------------
    def csrf_problem(self, scope: Scope) -> str | None:
        """Why this state-changing request is refused, or None."""
        if scope["method"] in SAFE_METHODS or (self.exempt and scope["path"].startswith(self.exempt)):
            return None
        auth = _header(scope, b"authorization") or ""
        cookies = _cookies(scope)
        if auth.lower().startswith("bearer ") or not (SESSION_COOKIE in cookies or PRELOGIN_COOKIE in cookies):
            return None  # not authenticated by an ambient cookie: nothing to forge
        host = (_header(scope, b"host") or "").lower()
        origin = (_header(scope, b"origin") or "").strip().lower()
        if origin and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc == host or origin.rstrip("/") in self.trusted:
                return None
            return f"origin {origin} is not {host}"
        site = (_header(scope, b"sec-fetch-site") or "").lower()
        if site:
            return None if site in ("same-origin", "none") else f"sec-fetch-site {site}"
        referer = _header(scope, b"referer")
        if referer:
            parts = urlsplit(referer)
            ref_origin = f"{parts.scheme}://{parts.netloc}".lower()
            return None if parts.netloc.lower() == host or ref_origin in self.trusted else f"referer {referer}"
        if origin == "null":
            return "origin null"
        return None  # no browser signal at all: a non-browser client (the cookie is SameSite=Strict anyway)

    async def _refuse(self, scope: Scope, send: Send, why: str) -> None:
        log.warning("csrf_refused", path=scope["path"], method=scope["method"], why=why)
        message = ("请求来源校验失败（跨站请求伪造防护），请刷新页面后重试 / cross-site request refused: reload the "
                   "page and try again")
        body = json.dumps({"error": {"code": "csrf", "message": message, "detail": None}},
                          ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json; charset=utf-8"),
                   (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": self._secured(scope, headers)})
        await send({"type": "http.response.body", "body": body})

    # ---- headers -------------------------------------------------------------------------------------------------
    def _secured(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        https = scope.get("scheme") == "https"
        present = {k.lower() for k, _ in headers}
        out = []
        for k, v in headers:
            if https and k.lower() == b"set-cookie" and b"secure" not in v.lower():
                v = v + b"; Secure"
            out.append((k, v))
        docs = scope["path"] == "/docs" or scope["path"].startswith("/docs/")

        def add(name: bytes, value: str) -> None:
            if name not in present:
                out.append((name, value.encode("latin-1")))

        add(b"content-security-policy", DOCS_CSP if docs else CONSOLE_CSP)
        add(b"x-frame-options", "DENY")
        add(b"x-content-type-options", "nosniff")
        add(b"referrer-policy", "same-origin")
        add(b"cross-origin-opener-policy", "same-origin")
        if https and self.hsts:
            add(b"strict-transport-security", self.hsts)
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = self.csrf_problem(scope)
        if why is not None:
            await self._refuse(scope, send, why)
            return
        status = 0

        async def send_secured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = self._secured(scope, list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_secured)
        state = scope.get("state") or {}
        if status == 403 and self.monitor is not None and not state.get("no_access_alert"):
            token = _bearer(scope) or _cookies(scope).get(SESSION_COOKIE)
            if token:
                await anyio.to_thread.run_sync(self._report_forbidden, token, scope["method"], scope["path"],
                                               (scope.get("client") or (None,))[0])

    def _report_forbidden(self, token: str, method: str, path: str, client: str | None) -> None:
        from anfang.core.errors import AnfangError
        from anfang.security import service

        try:
            with self.store.session() as s:
                user = service.resolve_session(s, token)
                p = service.principal_of(user, client)
        except AnfangError:
            return
        self.monitor.forbidden(p, method, path)


def _bearer(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization") or ""
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None
