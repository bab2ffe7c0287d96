"""Recordings in the API: playback sessions (played by the live player, controlled with pause / resume / speed /
seek) and downloads (a video export: the query policy's reason / approval rules, a progress to poll, a watermarked
MP4 for its requester only). Scope is the live video's (``channel_in_scope``); everything is audited."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from anfang.core import timefmt
from anfang.core.errors import Forbidden, NotFound
from anfang.media import tokens
from anfang.media.access import TOKEN_SECONDS, VideoFailed, VideoUnavailable, channel_in_scope, ws_url
from anfang.media.control import VideoError
from anfang.media.playback import PlaybackManager
from anfang.security import audit
from anfang.security.approvals import HELD_RESPONSES, authorise, load_policy
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal

log = structlog.get_logger(__name__)
api = APIRouter(prefix="/api/video", tags=["video 视频"])


class RangeIn(BaseModel):
    channel_id: str = Field(min_length=1, max_length=64)
    start: datetime
    end: datetime


class PlaybackIn(RangeIn):
    h265: bool = False


class ControlIn(BaseModel):
    action: str = Field(pattern="^(pause|resume|speed|seek)$")
    scale: float | None = Field(None, ge=0.25, le=8)
    at: datetime | None = None


class DownloadIn(RangeIn):
    speed: int = Field(4, ge=1, le=8)
    reason: str | None = Field(None, max_length=500)
    approval_id: int | None = Field(None, ge=1, le=2**62)


@dataclass(eq=False)
class DownloadJob:
    id: str
    user_id: int | None
    username: str
    channel_id: str
    start: datetime
    end: datetime
    session_key: str
    state: str = "downloading"  # downloading | watermarking | done | failed
    progress: float = 0.0
    bytes: int = 0
    file: Path | None = None
    request_id: str | None = None
    error: str = ""
    created: float = field(default_factory=time.time)
    task: Any = None


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _manager(request: Request) -> PlaybackManager:
    mgr = getattr(request.app.state, "playback", None)
    if mgr is None:
        raise VideoUnavailable()
    return mgr


@api.post("/playback", summary="录像回放：返回 WebSocket 地址和令牌 / play back a recording")
async def playback(request: Request, p: CurrentPrincipal, body: PlaybackIn) -> dict[str, Any]:
    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, body.channel_id)
    mgr = _manager(request)
    start, end = _utc(body.start), _utc(body.end)
    try:
        session = await mgr.open(channel.channel_id, device.device_id, start, end, kind="playback")
    except VideoError as err:
        raise VideoFailed(err) from None
    view = secrets.token_hex(6)
    claims = tokens.StreamClaims(session.key, channel.channel_id, p.username, str(p.role), p.user_id,
                                 time.time() + TOKEN_SECONDS, view)
    await run_in_threadpool(audit.record, store, p, "video.playback.open", "channel", [channel.channel_id],
                            f"view {view} {start.isoformat()} - {end.isoformat()}")
    return {"key": session.key, "channel_id": channel.channel_id, "name": channel.name,
            "start": start.isoformat(), "end": end.isoformat(),
            "ws_url": ws_url(request, session.node.url, session.key) + ("?h265=1" if body.h265 else "?h265=0"),
            "token": tokens.sign(request.app.state.media_secret, claims)}


@api.post("/playback/{key}/control", summary="回放控制：暂停、继续、倍速、跳转 / pause, resume, speed, seek")
async def control(request: Request, p: CurrentPrincipal, key: str, body: ControlIn) -> dict[str, Any]:
    mgr = getattr(request.app.state, "playback", None)
    session = mgr.sessions.get(key) if mgr is not None else None
    if session is None:
        raise NotFound("回放已结束 / the playback has ended")
    await run_in_threadpool(channel_in_scope, request.app.state.store, p, session.channel_id)
    try:
        return await mgr.control(key, body.action, scale=body.scale, at=_utc(body.at) if body.at else None)
    except VideoError as err:
        raise VideoFailed(err) from None


@api.post("/download", status_code=202, responses=HELD_RESPONSES,
          summary="录像下载（导出：须事由/审批，带水印） / download a recording (an export)")
async def download(request: Request, p: CurrentPrincipal, body: DownloadIn) -> dict[str, Any]:
    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, body.channel_id)
    mgr = _manager(request)
    start, end = _utc(body.start), _utc(body.end)
    minutes = (end - start).total_seconds() / 60
    policy = load_policy()
    kind = "video_download_long" if minutes > policy.video_download_minutes else "video_download"
    grant = await run_in_threadpool(
        lambda: authorise(store, p, query_kind=kind, target=f"video:{channel.channel_id}",
                          params={"channel_id": channel.channel_id, "start": start.isoformat(),
                                  "end": end.isoformat()},
                          summary=f"下载录像 {channel.name or channel.channel_id} {timefmt.local(start):%Y-%m-%d %H:%M}"
                                  f"–{timefmt.local(end):%H:%M} {timefmt.zone_label()}（{minutes:.0f} 分钟）",
                          reason=body.reason, approval_id=body.approval_id, policy=policy))
    try:
        session = await mgr.open(channel.channel_id, device.device_id, start, end, kind="download",
                                 speed=body.speed)
    except VideoError as err:
        raise VideoFailed(err) from None
    job = DownloadJob(secrets.token_hex(8), p.user_id, p.username, channel.channel_id, start, end, session.key)
    request.app.state.downloads[job.id] = job
    job.task = asyncio.get_running_loop().create_task(
        _run_download(request.app, p, job, session, grant.reason, grant.approval_id))
    await run_in_threadpool(audit.record, store, p, "video.download.start", "channel", [channel.channel_id],
                            f"job {job.id} {start.isoformat()} - {end.isoformat()}")
    return _job_view(job)


async def _run_download(app: FastAPI, p: Principal, job: DownloadJob, session: Any, reason: str | None,
                        approval_id: int | None) -> None:
    from anfang.media.export import export_recording

    mgr: PlaybackManager = app.state.playback
    folder = Path(app.state.settings.data_dir) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / f"{job.id}.raw.mp4"
    watcher = asyncio.get_running_loop().create_task(_progress(job, session))
    try:
        await mgr.download(session, raw)
        if not session.ended:
            raise RuntimeError(session.error or "录像未完整下载 / the recording did not arrive in full")
        job.state = "watermarking"
        stamp = job.start.strftime("%Y%m%d%H%M%S")
        dst = folder / f"recording-{job.channel_id}-{stamp}-{job.id[:6]}.mp4"
        mark, _frames = await asyncio.to_thread(
            export_recording, app.state.store, p, raw, dst, channel_id=job.channel_id,
            start=job.start.isoformat(), end=job.end.isoformat(), reason=reason, approval_id=approval_id)
        job.file, job.request_id, job.state, job.progress = dst, mark.request_id, "done", 1.0
    except Exception as exc:  # noqa: BLE001 - the job reports what went wrong; the server goes on
        job.state, job.error = "failed", str(exc)[:300]
        log.warning("video_download_failed", job=job.id, error=job.error)
    finally:
        watcher.cancel()
        raw.unlink(missing_ok=True)
        await mgr.close(session.key, "download-finished")


async def _progress(job: DownloadJob, session: Any) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            job.progress = round(session.progress(), 3)
            job.bytes = session.bytes_written
            await asyncio.sleep(0.25)


def _job_view(job: DownloadJob) -> dict[str, Any]:
    return {"id": job.id, "channel_id": job.channel_id, "start": job.start.isoformat(), "end": job.end.isoformat(),
            "state": job.state, "progress": job.progress, "bytes": job.bytes, "request_id": job.request_id,
            "error": job.error, "file": f"/api/video/download/{job.id}/file" if job.state == "done" else None}


def _own_job(request: Request, p: Principal, job_id: str) -> DownloadJob:
    job = request.app.state.downloads.get(job_id)
    if job is None:
        raise NotFound("下载任务不存在 / no such download")
    if job.user_id != p.user_id or job.username != p.username:
        raise Forbidden("只能查看自己的下载 / only your own downloads")
    return job


@api.get("/download/{job_id}", summary="下载进度 / download progress")
def download_status(request: Request, p: CurrentPrincipal, job_id: str) -> dict[str, Any]:
    return _job_view(_own_job(request, p, job_id))


@api.get("/download/{job_id}/file", summary="下载文件（带水印的 MP4） / the watermarked MP4",
         response_class=FileResponse)
def download_file(request: Request, p: CurrentPrincipal, job_id: str) -> FileResponse:
    job = _own_job(request, p, job_id)
    if job.state != "done" or job.file is None or not job.file.exists():
        raise NotFound("文件尚未就绪 / the file is not ready")
    audit.record(request.app.state.store, p, "video.download.file", "channel", [job.channel_id], job.request_id or "")
    return FileResponse(job.file, media_type="video/mp4", filename=job.file.name)


@api.get("/clips/{warning_id}", summary="预警录像片段（事发前后） / the warning's video clip",
         response_class=FileResponse)
def clip(request: Request, p: CurrentPrincipal, warning_id: int) -> FileResponse:
    from anfang.media.clips import clip_path
    from anfang.warnings.service import WarningService

    store = request.app.state.store
    if not 1 <= warning_id <= 2**62:
        raise NotFound("预警不存在 / warning not found")
    w = WarningService(store).get(p, warning_id)  # NotFound outside the principal's warnings
    path = clip_path(store, Path(request.app.state.settings.data_dir) / "clips", w)
    if path is None:
        raise NotFound("该预警暂无录像片段 / no clip for this warning yet")
    audit.record(store, p, "video.clip.view", "warning", [warning_id], (w.get("data") or {}).get("clip", {})
                 .get("channel_id", ""))
    return FileResponse(path, media_type="video/mp4")


def install(app: FastAPI) -> None:
    """Routes always; the playback manager (and the alarm clips) beside the live controller when video runs."""
    from anfang.media.clips import ClipService

    app.state.downloads = {}
    app.state.playback = None
    app.include_router(api)
    live = getattr(app.state, "live", None)
    if live is None:
        return
    mgr = PlaybackManager(live.gb, app.state.media_nodes)
    app.state.playback = mgr
    app.state.services.append(mgr)
    settings = app.state.settings
    if settings.media_clips:
        app.state.clips = ClipService(app.state.store, app.state.bus, mgr, Path(settings.data_dir) / "clips",
                                      before=settings.media_clip_before, after=settings.media_clip_after,
                                      keep_days=settings.viid_retention_days)
        app.state.services.append(app.state.clips)
