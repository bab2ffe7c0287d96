"""Live video in the console and the API: ``/api/video`` (open a live stream, snapshot, channel tree, camera
links), the viewers' WebSocket ``/media/ws/{stream}`` of the embedded media node, and the pages (监控中心 wall).

Who may watch what is the device scope of the console (``device_condition``: property staff their community,
officers their 警务区, admins their county / city). Opening a stream issues a short-lived token for that one stream;
every viewing is in the audit chain (opened, and closed with its duration); a snapshot is an export (watermarked,
in the export log).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from anfang.core.errors import Forbidden
from anfang.media import linking, tokens
from anfang.media.access import (
    TOKEN_SECONDS,
    VIEWERS,
    VideoFailed,
    VideoUnavailable,
    _device_scope,
    channel_in_scope,
    warning_links,
    ws_url,
)
from anfang.media.control import LiveController, LocalNode, NodeDirectory, VideoError
from anfang.media.node import MediaNode, NodeConfig
from anfang.security import audit
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.store.engine import Store

log = structlog.get_logger(__name__)

api = APIRouter(prefix="/api/video", tags=["video 视频"])


class LiveIn(BaseModel):
    channel_id: str = Field(min_length=1, max_length=64)
    h265: bool = Field(False, description="the browser can decode H.265 in MSE (else H.265 is transcoded)")
    warning_id: int | None = Field(None, ge=1, le=2**62, description="opened from this warning (报警联动)")


def _ctx(request: Request) -> tuple[LiveController, bytes]:
    ctl = getattr(request.app.state, "live", None)
    if ctl is None:
        raise VideoUnavailable()
    return ctl, request.app.state.media_secret


async def open_live(request: Request, p: Principal, channel_id: str, h265: bool = False,
                    warning_id: int | None = None) -> dict[str, Any]:
    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, channel_id, warning_id)
    ctl, secret = _ctx(request)
    try:
        session = await ctl.open(channel.channel_id, device.device_id, name=channel.name or channel.channel_id,
                                 transport=(device.attributes or {}).get("media_transport"))
    except VideoError as err:
        raise VideoFailed(err) from None
    view = secrets.token_hex(6)
    claims = tokens.StreamClaims(session.key, channel.channel_id, p.username, str(p.role), p.user_id,
                                 time.time() + TOKEN_SECONDS, view)
    await run_in_threadpool(audit.record, store, p, "video.live.open", "channel", [channel.channel_id],
                            f"view {view} device {device.device_id}")
    return {"channel_id": channel.channel_id, "name": channel.name, "device_id": device.device_id,
            "ws_url": ws_url(request, session.node.url, session.key) + ("?h265=1" if h265 else "?h265=0"),
            "token": tokens.sign(secret, claims),
            "node_id": session.node.node_id, "expires_in": TOKEN_SECONDS}


@api.post("/live", summary="调阅实时视频：返回 WebSocket 地址和令牌 / open a live stream")
async def live(request: Request, p: CurrentPrincipal, body: LiveIn) -> dict[str, Any]:
    return await open_live(request, p, body.channel_id, body.h265, body.warning_id)


@api.get("/snapshot/{channel_id}", summary="抓图（导出，带水印） / JPEG snapshot (an export: watermarked, logged)",
         response_class=Response)
async def snapshot(request: Request, p: CurrentPrincipal, channel_id: str) -> Response:
    from anfang.security.watermark import export_image

    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, channel_id)
    ctl, _ = _ctx(request)
    try:
        session = await ctl.open(channel.channel_id, device.device_id, name=channel.name)
    except VideoError as err:
        raise VideoFailed(err) from None
    try:
        jpeg = await session.node.snapshot(session.key)
    except (LookupError, ValueError, TimeoutError) as exc:
        raise VideoFailed(VideoError(504, "no_picture", f"暂无画面 / no picture: {exc}")) from None
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = f"snapshot-{channel.channel_id}-{stamp}.jpg"
    data, media_type = await run_in_threadpool(export_image, store, p, jpeg, "video-snapshot", name)
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@api.get("/tree", summary="我的视频通道树：社区 → 点位 → 通道 / my channels")
def tree(request: Request, p: CurrentPrincipal, q: str = Query("", max_length=64)) -> dict[str, Any]:
    if p.role not in VIEWERS:
        raise Forbidden("无权调阅视频 / not allowed to watch video")
    return linking.channel_tree(request.app.state.store, p, _device_scope(p), q=q, live=_gb_live(request))


@api.get("/links", summary="预警联动的摄像机 / cameras linked to a warning")
def links(request: Request, p: CurrentPrincipal, warning_id: int = Query(ge=1, le=2**62)) -> dict[str, Any]:
    if p.role not in VIEWERS:
        raise Forbidden("无权调阅视频 / not allowed to watch video")
    return {"warning_id": warning_id, "channels": warning_links(request.app.state.store, p, warning_id)}


class LinksIn(BaseModel):
    channels: list[str] = Field(default_factory=list, max_length=16)


@api.put("/links/{device_id}", summary="设置设备/点位联动的摄像机 / link a device to cameras")
def set_links(request: Request, p: CurrentPrincipal, device_id: str, body: LinksIn) -> dict[str, Any]:
    if p.role not in (Role.city_admin, Role.county_admin, Role.property_staff):
        raise Forbidden("无权设置联动 / not allowed to set camera links")
    return linking.set_links(request.app.state.store, p, _device_scope(p), device_id, body.channels)


@api.get("/nodes", summary="流媒体节点与负载 / media nodes and their load")
def nodes(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    if p.role not in (Role.city_admin, Role.county_admin):
        raise Forbidden("仅管理员 / administrators only")
    out = []
    node = getattr(request.app.state, "media_node", None)
    if node is not None:
        ann = node.announcement()
        ann.pop("stream_info", None)
        out.append(ann)
    directory = getattr(request.app.state, "media_nodes", None)
    for handle in (directory.alive() if directory is not None else []):
        if node is None or handle.node_id != node.config.node_id:
            out.append({"node_id": handle.node_id, "url": handle.url, "streams": handle.load()[0],
                        "viewers": handle.load()[1]})
    return {"nodes": out}


def _gb_live(request: Request) -> dict[str, Any]:
    server = getattr(request.app.state, "gb28181", None)
    return server.devices if server is not None else {}


def _view_ended(store: Store):  # noqa: ANN202
    async def record(claims: tokens.StreamClaims, start: float, end: float, channel_id: str) -> None:
        p = Principal(user_id=claims.user_id, username=claims.user, role=Role(claims.role), client="media")
        span = (f"view {claims.view} from {datetime.fromtimestamp(start, UTC).isoformat(timespec='seconds')} "
                f"to {datetime.fromtimestamp(end, UTC).isoformat(timespec='seconds')} ({end - start:.0f} s)")
        await run_in_threadpool(audit.record, store, p, "video.live.close", "channel", [channel_id], span)

    return record


def node_router(node: MediaNode, control: bool = False) -> APIRouter:
    """The viewers' WebSocket of a media node (mounted by the console for the embedded node, and by
    ``anfang media``); with ``control`` also the controller's signed HTTP API (a node in its own process)."""
    from fastapi.responses import JSONResponse

    from anfang.media import remote

    router = APIRouter(include_in_schema=False)

    @router.websocket("/media/ws/{key}")
    async def viewer(ws: WebSocket, key: str, token: str = "", h265: int = 0) -> None:
        await node.serve_viewer(ws, key, token, h265_ok=bool(h265))

    if not control:
        return router

    async def body_of(request: Request) -> dict[str, Any] | None:
        payload = await request.body()
        if len(payload) > 16_384 or not remote.check(node.secret, payload, request.headers.get(remote.SIGNATURE)):
            return None
        import json

        try:
            body = json.loads(payload)
        except ValueError:
            return None
        return body if isinstance(body, dict) and isinstance(body.get("key"), str) else None

    def refused() -> JSONResponse:
        return JSONResponse({"error": {"code": "forbidden", "message": "签名无效 / bad signature"}}, 403)

    @router.post("/media/api/prepare")
    async def prepare(request: Request) -> Any:
        body = await body_of(request)
        if body is None:
            return refused()
        return await node.prepare(body["key"], str(body.get("channel_id", "")), ssrc=body.get("ssrc"),
                                  transport=str(body.get("transport", "UDP")), name=str(body.get("name", "")))

    @router.post("/media/api/answer")
    async def answer(request: Request) -> Any:
        body = await body_of(request)
        if body is None:
            return refused()
        connect = body.get("connect")
        try:
            await node.answer(body["key"], hosts=[str(h) for h in body.get("hosts") or []], ssrc=body.get("ssrc"),
                              connect=(str(connect[0]), int(connect[1])) if connect else None)
        except LookupError:
            return JSONResponse({"error": {"code": "not_found", "message": "no such stream"}}, 404)
        return {"ok": True}

    @router.post("/media/api/close")
    async def close(request: Request) -> Any:
        body = await body_of(request)
        if body is None:
            return refused()
        await node.close(body["key"])
        return {"ok": True}

    @router.post("/media/api/snapshot")
    async def snapshot(request: Request) -> Any:
        body = await body_of(request)
        if body is None:
            return refused()
        try:
            return Response(await node.snapshot(body["key"]), media_type="image/jpeg")
        except (LookupError, ValueError, TimeoutError) as exc:
            return JSONResponse({"error": {"code": "no_picture", "message": str(exc)}}, 504)

    @router.get("/healthz")
    def health() -> dict[str, Any]:
        ann = node.announcement()
        ann.pop("stream_info", None)
        return {"status": "ok", **ann}

    return router


def _node_origins(directory: NodeDirectory) -> list[str]:
    """The WebSocket origins of the live media nodes, for the pages' Content-Security-Policy."""
    from urllib.parse import urlsplit

    out = []
    for handle in directory.alive():
        parts = urlsplit(handle.url or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            out.append(f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}")
    return sorted(set(out))


def media_app(settings: Any) -> FastAPI:
    """``anfang media``: a media node in its own process, announced on NATS (scale-out, docs/video.md)."""
    from anfang.media.remote import Announcer

    secret = tokens.load_secret(settings.data_dir, settings.media_secret)
    public = settings.media_public_url or f"http://{settings.host}:{settings.port}"
    node = MediaNode(NodeConfig(node_id=settings.media_node_id or f"{settings.node_id}-media-{settings.port}",
                                bind_host=settings.media_bind_host or settings.host,
                                rtp_ip=settings.media_rtp_ip or settings.host, public_url=public,
                                port_min=settings.media_port_min, port_max=settings.media_port_max,
                                media_timeout=settings.media_timeout, keep_audio=settings.media_audio), secret)
    nats_url = settings.media_nats_url or settings.nats_url
    announcer = Announcer(node, nats_url, secret, prefix=settings.media_subject) if nats_url else None
    if announcer is not None:
        node.on_view_end = announcer.view_ended

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await node.start()
        if announcer is not None:
            await announcer.start()
        try:
            yield
        finally:
            if announcer is not None:
                await announcer.stop()
            await node.stop()

    app = FastAPI(title="anfang media node", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.media_node = node
    app.include_router(node_router(node, control=True))
    return app


def install(app: FastAPI, settings: Any) -> None:
    """Pages and API always; the embedded media node and the controller when the SIP server runs."""
    app.state.live = None
    app.state.media_node = None
    app.include_router(api)
    gb = getattr(app.state, "gb28181", None)
    if gb is None or not getattr(settings, "media_enabled", True):
        return
    app.state.media_secret = tokens.load_secret(settings.data_dir, settings.media_secret)
    directory = NodeDirectory()
    controller = LiveController(gb, directory, transport=settings.media_transport, linger=settings.media_linger)
    app.state.media_nodes, app.state.live = directory, controller
    app.state.services.append(controller)
    nats_url = settings.media_nats_url or settings.nats_url
    if nats_url:  # media nodes in other processes announce themselves here
        from anfang.media.remote import Listener

        app.state.csp_connect = lambda: _node_origins(directory)
        app.state.services.append(Listener(directory, nats_url, app.state.media_secret,
                                           _view_ended(app.state.store), prefix=settings.media_subject,
                                           local_ids={f"{settings.node_id}-media"}))
    if not settings.media_embedded:
        return
    rtp_ip = settings.media_rtp_ip or settings.sip_advertised_host or (
        settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1")
    bind = settings.media_bind_host or settings.sip_host
    node = MediaNode(NodeConfig(node_id=f"{settings.node_id}-media", bind_host=bind,
                                rtp_ip=rtp_ip, public_url="", port_min=settings.media_port_min,
                                port_max=settings.media_port_max, media_timeout=settings.media_timeout,
                                keep_audio=settings.media_audio,
                                ring_seconds=settings.media_ring_seconds if settings.media_clips else 0.0),
                     app.state.media_secret, on_view_end=_view_ended(app.state.store))
    directory.add(LocalNode(node))
    app.state.media_node = node
    app.state.services.insert(app.state.services.index(controller), node)  # the node starts first
    app.include_router(node_router(node))
