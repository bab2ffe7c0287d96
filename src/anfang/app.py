"""Wiring: builds the FastAPI application from settings (the only place that knows every room)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from anfang import __version__
from anfang.config import Settings
from anfang.core.errors import AnfangError
from anfang.registry.service import RegistryService
from anfang.registry.views import router as registry_router
from anfang.security.views import router as auth_router
from anfang.store.engine import Store


def error_body(code: str, message: str, detail: object | None = None) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail}}


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    app = FastAPI(title="anfang 智慧安防小区平台", version=__version__,
                  description="一标三实 registry, security and console API of anfang.")
    app.state.settings = settings
    app.state.store = store or Store(settings.database_url)  # type: ignore[arg-type]
    app.state.registry = RegistryService(app.state.store)

    @app.exception_handler(AnfangError)
    async def _domain_error(request: Request, exc: AnfangError):  # noqa: ANN202
        if exc.status == 401 and _wants_html(request):
            from fastapi.responses import RedirectResponse

            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
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
        return JSONResponse(error_body("http", messages.get(exc.status_code, str(exc.detail))),
                            status_code=exc.status_code)

    @app.get("/healthz", tags=["ops"], summary="健康检查 / health")
    def healthz() -> dict:
        from sqlalchemy import text

        with app.state.store.session() as s:
            s.execute(text("SELECT 1"))
        return {"status": "ok", "role": settings.role.value, "node_id": settings.node_id, "version": __version__}

    app.include_router(auth_router)
    app.include_router(registry_router)
    try:
        from anfang.web.views import mount as mount_web
    except ImportError:  # the console package is optional while it is being built
        mount_web = None
    if mount_web is not None:
        mount_web(app)
    return app
