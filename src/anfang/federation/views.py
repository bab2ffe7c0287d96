"""HTTP side of the federation: the ingest API children push to, the uplink / overview API, the /federation page,
and ``install`` which wires the room into the app (outbox hook, forwarders, NATS receiver)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from anfang.core.errors import Forbidden
from anfang.federation.links import children_of, parents_of
from anfang.federation.schema import SCHEMA_HEADER, SchemaMismatch
from anfang.federation.service import NODE_HEADER, AuthError, FederationService, verify
from anfang.security.roles import Role
from anfang.security.views import CurrentPrincipal

log = structlog.get_logger(__name__)
api = APIRouter(prefix="/api/federation", tags=["federation 级联汇聚"])
ADMINS = (Role.city_admin, Role.county_admin)


def _svc(request: Request) -> FederationService:
    return request.app.state.federation


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "detail": None}}, status_code=status)


@api.post("/ingest", summary="下级节点推送数据 / a child node pushes a batch (HMAC-signed, versioned schema)")
async def ingest(request: Request) -> JSONResponse:
    svc = _svc(request)
    body = await request.body()
    sender = request.headers.get(NODE_HEADER, "?")
    try:
        verify(svc.children, request.headers, body)
    except AuthError as exc:
        return _err(401, "node_auth", str(exc))
    try:
        batch = svc.parse(body, request.headers.get(SCHEMA_HEADER), sender)
    except SchemaMismatch as exc:
        await run_in_threadpool(svc.record_rejection, sender, exc.message, exc.theirs)
        return _err(426, "schema_upgrade_required", exc.message)
    except (ValidationError, ValueError) as exc:
        return _err(422, "invalid_batch", f"批次格式错误 / invalid batch: {str(exc)[:500]}")
    if batch.sender != sender:
        return _err(401, "node_auth", f"批次发送方 {batch.sender} 与签名节点 {sender} 不符 / sender mismatch")
    result = await run_in_threadpool(svc.apply, batch, sender)
    return JSONResponse(result)


def _admin(p: Any) -> None:
    if p.role not in ADMINS:
        raise Forbidden("仅管理员可查看 / admins only")


@api.get("/status", summary="本节点上联状态 / this node's uplink state (backlog, oldest pending, lag)")
def status(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    _admin(p)
    svc = _svc(request)
    return {"node_id": svc.node_id, "role": svc.role, "uplinks": svc.uplinks()}


@api.get("/overview", summary="下级节点汇总 / aggregated view of the nodes below")
def overview(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    _admin(p)
    return _svc(request).overview()


def install(app: FastAPI, settings: Any) -> None:
    """The federation room: service, outbox hook (when this node has parents), forwarders (unless run as their own
    process), the NATS receiver (when children push over NATS), the API and the console page."""
    from anfang.web.views import ConsoleRoute, render

    parents = parents_of(settings)
    svc = FederationService(app.state.store, node_id=settings.node_id, role=settings.role.value, parents=parents,
                            children=children_of(settings))
    app.state.federation = svc
    svc.install_outbox()
    nats_url = settings.federation_nats_url or settings.nats_url
    if parents and settings.federation_forwarder:
        from anfang.federation.forwarder import Forwarder, make_transport

        def read_image(location: str) -> bytes | None:
            viid = getattr(app.state, "viid", None)
            return viid.images.get(location) if viid is not None else None

        for link in parents:
            app.state.services.append(Forwarder(svc, link, make_transport(link, settings.node_id, nats_url),
                                                batch=settings.federation_batch, image_reader=read_image))
    if settings.federation_children and settings.federation_receive_nats and nats_url:
        from anfang.federation.transports import NatsReceiver

        app.state.services.append(NatsReceiver(svc, nats_url))
    app.include_router(api)
    pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    @pages.get("/federation")
    async def federation_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
        _admin(p)
        data = {"uplinks": await run_in_threadpool(svc.uplinks), "overview": await run_in_threadpool(svc.overview)}
        return await run_in_threadpool(render, request, "federation.html", p, nav="federation", node=svc, **data)

    app.include_router(pages)
