"""Wiring: builds the FastAPI application from settings (the only place that knows every room)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote_to_bytes

import fastapi_offline
import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from anfang import __version__
from anfang.bus import InProcessBus
from anfang.config import Settings
from anfang.core.errors import AnfangError
from anfang.registry.service import RegistryService
from anfang.registry.views import router as registry_router
from anfang.security.views import router as auth_router
from anfang.store.engine import Store
from anfang.web.views import error_page
from anfang.web.views import mount as mount_console


def error_body(code: str, message: str, detail: object | None = None) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail}}


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


class RejectNul:
    """A NUL byte in the URL is never meaningful and is treated differently by each backend (PostgreSQL cannot
    bind it; SQLite ends a LIKE pattern at it, so ``?name=%00`` would match every record in scope): 422 with the
    JSON error object, before any route sees it. GA/T 1400 (/VIID) answers in its own shape and is left alone."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope.get("path", "").startswith("/VIID") and (
                "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))):
            response = JSONResponse(error_body("invalid", "请求中含有空字符 / NUL byte in the request"), 422)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


READER_MESSAGE = ("此端口只读：写操作请发往主服务端口 / this is a read-only reader port: send write requests to the "
                  "primary port")
PRIMARY_MESSAGE = ("此功能依赖主服务进程的实时状态，请访问主服务端口 / this needs the primary server's live state "
                   "(video, SIP devices, warning push, federation, metrics): use the primary port")
# GET routes whose answer comes from state only the primary process holds (never started in a reader): live video,
# recordings and snapshots over SIP, device on-line state, the terminal's warning push (SSE), federation links,
# this process's metrics, GA/T 1400 device sessions (/VIID), and the per-client rate limits of the public door-plate
# pages (/p/, /t/: N processes would allow N times the limit). A reader answers them 421 like a write, so a proxy
# sends them to the primary (docs/deployment.md).
PRIMARY_ONLY_GET = ("/api/warnings/stream", "/m/", "/api/video", "/video/", "/media", "/api/devices", "/devices",
                    "/api/federation", "/federation", "/metrics", "/VIID", "/p/", "/t/")


class ReaderOnly:
    """Reader processes (``anfang serve --read-workers``, docs/architecture.md) serve GET and HEAD only: any other
    method, and a GET of PRIMARY_ONLY_GET, answers 421 Misdirected Request with the JSON error object naming the
    primary's port, before any route sees it; a WebSocket (live video: state of the primary) is refused at the
    handshake."""

    def __init__(self, app: Any, primary_port: int) -> None:
        self.app, self.primary_port = app, primary_port

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "read-only reader: use the primary port"})
            return
        if scope["type"] == "http":
            message = None
            if scope.get("method") not in ("GET", "HEAD"):
                message = READER_MESSAGE
            elif scope.get("path", "").startswith(PRIMARY_ONLY_GET):
                message = PRIMARY_MESSAGE
            if message is not None:
                response = JSONResponse(error_body("read_only", message, {"primary_port": self.primary_port}), 421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Service(Protocol):
    """A long-running part of the node started with the server (SIP server, forwarders, schedulers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    if app.state.reader:  # a reader process starts nothing: bus consumers, SIP, ingest, schedulers are the primary's
        yield
        return
    await app.state.bus.start()
    started: list[Service] = []
    try:
        for service in app.state.services:
            await service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            await service.stop()
        await app.state.bus.close()


def _wire_early_warning(app: FastAPI, settings: Settings) -> None:
    """Event recorder, IoT ingest (HTTP always, MQTT when configured), warning engine, terminal push, webhooks."""
    from anfang.devices.service import DeviceService
    from anfang.iot.service import IotIngest
    from anfang.iot.views import router as iot_router
    from anfang.store.eventlog import EventRecorder
    from anfang.warnings.engine import WarningEngine
    from anfang.warnings.jobs import BehaviourJob
    from anfang.warnings.push import TerminalHub, WebhookSender
    from anfang.warnings.service import WarningService
    from anfang.warnings.views import api as warnings_api
    from anfang.warnings.views import pages as warnings_pages

    store, bus = app.state.store, app.state.bus
    app.state.devices = DeviceService(store, node_id=settings.node_id)
    app.state.recorder = EventRecorder(store, bus)
    app.state.iot = IotIngest(app.state.devices, app.state.recorder, node_id=settings.node_id)
    app.state.warnings = WarningService(store, dedup_minutes=settings.warning_dedup_minutes,
                                        escalate_minutes=settings.warning_escalate_minutes)
    app.state.warning_engine = WarningEngine(store, bus, app.state.warnings)
    app.state.terminal_hub = TerminalHub(bus)
    app.state.webhooks = WebhookSender(store, settings.warning_webhooks)
    app.state.warnings.hooks.append(app.state.webhooks.enqueue)  # deliveries commit with the warning
    app.state.services += [app.state.terminal_hub, app.state.warning_engine, app.state.webhooks,
                           BehaviourJob(store, app.state.warnings, bus)]
    if settings.mqtt_host:
        from anfang.iot.mqtt import MqttConsumer

        app.state.services.append(MqttConsumer(app.state.iot, settings.mqtt_host, settings.mqtt_port,
                                               client_id=f"anfang-{settings.node_id}"))
    app.include_router(iot_router)
    app.include_router(warnings_api)
    app.include_router(warnings_pages)


def create_app(settings: Settings, store: Store | None = None, *, reader: bool = False) -> FastAPI:
    """The whole node's application. ``reader``: for a reader process (``serve --read-workers``) — the same routes,
    but no background service is started and only GET/HEAD are answered (ReaderOnly)."""
    # Swagger UI is served from the fastapi-offline package, not FastAPI's default CDN: the console must work
    # on a police network with no internet.
    app = FastAPI(title="anfang 智慧安防小区平台", version=__version__, docs_url=None, redoc_url=None,
                  description="一标三实 registry, security and console API of anfang.", lifespan=_lifespan)
    app.state.settings = settings
    app.state.reader = reader
    from anfang.security import crypto

    crypto.configure_from_settings(settings)  # data keys for the encrypted columns (docs/security.md)
    from anfang.core import timefmt

    timefmt.configure(settings.timezone)  # the zone every page, terminal, PDF, XLSX shows times in
    from anfang.security import service as security_service

    security_service.session_cache.ttl_s = settings.session_cache_seconds  # validated sessions, per process
    security_service.session_cache.clear()
    app.state.store = store or Store(settings.database_url)  # type: ignore[arg-type]
    app.state.registry = RegistryService(app.state.store)
    if settings.nats_url:
        from anfang.bus.nats import NatsBus

        app.state.bus = NatsBus(settings.nats_url)
    else:
        # durable consumers keep their cursor in the store and replay event_log on start (bus/memory.py)
        app.state.bus = InProcessBus(app.state.store, node_id=settings.node_id)
    # Rooms append their background services here; the lifespan starts them in order and stops them in reverse.
    app.state.services = []

    @app.exception_handler(AnfangError)
    async def _domain_error(request: Request, exc: AnfangError):  # noqa: ANN202
        if exc.status == 401 and _wants_html(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse(error_body(exc.code, exc.message, exc.detail), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):  # noqa: ANN202
        problems = [{"field": ".".join(str(x) for x in e.get("loc", ())[1:]), "message": e.get("msg", "")}
                    for e in exc.errors()]
        text = "；".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse(error_body("invalid", f"请求参数有误 / invalid request: {text}", problems),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        messages = {404: "资源不存在 / not found", 405: "不支持的请求方法 / method not allowed"}
        if _wants_html(request):
            return await run_in_threadpool(error_page, request, exc.status_code,
                                           messages.get(exc.status_code, str(exc.detail)))
        return JSONResponse(error_body("http", messages.get(exc.status_code, str(exc.detail))),
                            status_code=exc.status_code)

    async def _bad_value(request: Request, exc: Exception):  # noqa: ANN202
        # Input the database cannot hold: an id or page number past 64 bits (SQLite: OverflowError), a NUL byte,
        # a number out of range or a string too long for its column (PostgreSQL: SQLSTATE class 22, DataError).
        # The request is wrong, not the server: 422 with the JSON error object, never a 500. Logged, because a value
        # the server itself made too long for its column would land here too.
        structlog.get_logger(__name__).warning("unstorable_value", path=request.url.path, error=str(exc)[:300])
        message = "请求中的取值超出范围或含非法字符 / a value in the request is out of range or not storable"
        if _wants_html(request):
            return await run_in_threadpool(error_page, request, 422, message)
        return JSONResponse(error_body("invalid", message), status_code=422)

    app.add_exception_handler(OverflowError, _bad_value)
    app.add_exception_handler(DataError, _bad_value)
    app.add_middleware(RejectNul)

    @app.get("/healthz", tags=["ops"], summary="健康检查 / health")
    def healthz() -> dict:
        from sqlalchemy import text

        with app.state.store.session() as s:
            s.execute(text("SELECT 1"))
        return {"status": "ok", "role": settings.role.value, "node_id": settings.node_id, "version": __version__}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="anfang API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")

    # fastapi-offline ships Swagger UI 5 (reads the OpenAPI 3.1 FastAPI emits; swagger-ui-bundle's 4.15 cannot)
    docs_assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=docs_assets), name="docs-assets")
    app.include_router(auth_router)
    app.include_router(registry_router)
    _wire_early_warning(app, settings)
    from anfang.viid.views import install as install_viid

    install_viid(app)  # GA/T 1400 视图库 under /VIID (own error replies) + its background services
    from anfang.faces.service import FaceWatchlistService
    from anfang.warnings.facematch import make_face_matcher

    # 人像布控: every GA/T 1400 face capture is embedded and searched 1:N against the face watchlists.
    app.state.faces = FaceWatchlistService(app.state.store, settings.data_dir)
    app.state.warning_engine.face_matcher = make_face_matcher(
        app.state.store, lambda loc: app.state.viid.images.get(loc), app.state.faces)
    if settings.demo_scenario_pace > 0:  # `anfang demo`: each kind of warning within the first minutes
        from anfang.demo.scenario import DemoScenario

        app.state.services.append(DemoScenario(app, pace=settings.demo_scenario_pace))
    from anfang.siting.views import pages as siting_pages

    app.include_router(siting_pages)  # 点位规划 console page (/siting)
    from anfang.doorplates.views import mount as mount_doorplates

    mount_doorplates(app)  # QR door plates: /p/{token} scan pages, /doorplates staff pages, door access API
    from anfang.gb28181.service import install as install_gb28181

    install_gb28181(app, settings)  # GB/T 28181: /devices, /api/devices; the SIP server when sip_enabled
    if app.state.gb28181 is not None:  # recording retention measured on the cameras (docs/gb28181.md)
        from anfang.construction.retention import RetentionCheck

        app.state.services.append(RetentionCheck.from_settings(app.state.gb28181, app.state.store, settings))
    from anfang.media.wiring import install_all as install_video

    install_video(app, settings)  # live video: /api/video, /media/ws, /video/wall; media node beside the SIP server
    from anfang.construction.views import mount as mount_construction

    mount_construction(app)  # 建设运维: /api/construction (tiers, specs, work orders), /construction
    from anfang.security.approval_views import mount as mount_data_security

    mount_data_security(app)  # 数据查询授权, 导出水印, 泄露溯源: /api/security, /security/* (docs/security.md)
    from anfang.federation.views import install as install_federation

    install_federation(app, settings)  # 级联汇聚: outbox hook, forwarders, /api/federation, /federation
    from anfang.security.headers import SecurityMiddleware
    from anfang.security.monitoring import AccessMonitor
    from anfang.web.security_pages import mount as mount_security

    # 数据安全: access monitoring on the audit chain, alerts and TOTP pages, security headers + CSRF origin check
    app.state.access_monitor = AccessMonitor(app.state.store, settings).attach()
    from anfang.federation.outbox import send_audit_head
    from anfang.security.audit import AuditAnchor

    store = app.state.store
    app.state.services.append(AuditAnchor(  # the audit head: to the head file every few minutes, and up to parents
        store, settings.audit_heads_file or settings.data_dir / "audit-heads.jsonl", node=settings.node_id,
        every_s=settings.audit_anchor_minutes * 60, sink=lambda line: send_audit_head(store, line)))
    mount_security(app)
    from anfang.security.bodylimit import BodyLimit

    app.add_middleware(BodyLimit, settings=settings, store=app.state.store)  # 413 while reading (route classes)
    app.add_middleware(SecurityMiddleware, settings=settings, monitor=app.state.access_monitor,
                       store=app.state.store)
    from anfang.metrics import install as install_metrics

    install_metrics(app, settings)  # /metrics for Prometheus (allow-list or token), request latencies
    mount_console(app)
    if reader:
        app.add_middleware(ReaderOnly, primary_port=settings.port)
    return app

