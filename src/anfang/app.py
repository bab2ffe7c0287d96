"""Wiring: builds the FastAPI application from settings (the only place that knows every room)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol
from urllib.parse import quote

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
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


class Service(Protocol):
    """A long-running part of the node started with the server (SIP server, forwarders, schedulers)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
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


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    # Swagger UI is served from the swagger-ui-bundle package, not FastAPI's default CDN: the console must work
    # on a police network with no internet.
    app = FastAPI(title="anfang 智慧安防小区平台", version=__version__, docs_url=None, redoc_url=None,
                  description="一标三实 registry, security and console API of anfang.", lifespan=_lifespan)
    app.state.settings = settings
    app.state.store = store or Store(settings.database_url)  # type: ignore[arg-type]
    app.state.registry = RegistryService(app.state.store)
    app.state.bus = InProcessBus()
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
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    app.include_router(auth_router)
    app.include_router(registry_router)
    mount_console(app)
    return app
