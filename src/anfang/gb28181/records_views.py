"""Recordings and PTZ in the API (issue 16): ``GET /api/video/records`` (one local day of a channel's recordings
for the timeline, with that channel's warnings and alarms of the day) and ``POST /api/video/ptz`` (DeviceControl
PTZCmd). Both use the live-video scope rule (``anfang.media.views.channel_in_scope``) and are audited
(``video.records.search``, ``video.ptz``); PTZ is further limited to the roles of the setting ``ptz_roles``.
Mounted by ``install(app)``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from anfang.core.errors import Forbidden, ValidationError
from anfang.gb28181.manscdp.xml import CHINA_TZ
from anfang.gb28181.ptz import ACTIONS, device_control, may_steer, ptz_cmd
from anfang.gb28181.records import RecordSearch
from anfang.media.access import VideoFailed, VideoUnavailable
from anfang.media.control import VideoError
from anfang.security import audit
from anfang.security.views import CurrentPrincipal

api = APIRouter(prefix="/api/video", tags=["video 视频"])


def record_search(app: Any) -> RecordSearch:
    """The app's one ``RecordSearch`` (its hook on the SIP server), made on first use."""
    rs = getattr(app.state, "record_search", None)
    if rs is None:
        server = getattr(app.state, "gb28181", None)
        if server is None:
            raise VideoUnavailable()
        rs = app.state.record_search = RecordSearch(server)
    return rs


def _day_events(store: Any, channel_id: str, device_id: str, start: datetime, end: datetime) -> list[dict]:
    from anfang.gb28181.models import GbAlarm
    from anfang.warnings.models import Warning as WarningRow

    with store.session() as s:
        warnings = s.scalars(select(WarningRow).where(WarningRow.source.in_([channel_id, device_id]),
                                                      WarningRow.created_at >= start, WarningRow.created_at < end)
                             .order_by(WarningRow.created_at).limit(500)).all()
        alarms = s.scalars(select(GbAlarm).where(or_(GbAlarm.source_id == channel_id, GbAlarm.device_id == device_id),
                                                 GbAlarm.at >= start, GbAlarm.at < end)
                           .order_by(GbAlarm.at).limit(500)).all()
        out = [{"kind": "warning", "id": w.id, "at": w.created_at.astimezone(UTC).isoformat(), "title": w.title,
                "severity": w.severity, "state": w.state} for w in warnings]
        out += [{"kind": "alarm", "id": a.id, "at": a.at.astimezone(UTC).isoformat(),
                 "title": a.description or "设备报警 / device alarm", "priority": a.priority}
                for a in alarms if a.source_id in (channel_id, device_id)]
    return sorted(out, key=lambda e: e["at"])


@api.get("/records", summary="录像检索：某日的录像时间轴与预警/报警 / a day of recordings for the timeline")
async def records(request: Request, p: CurrentPrincipal, channel_id: str = Query(min_length=1, max_length=64),
                  day: date = Query(alias="date", description="本地日期 / local date YYYY-MM-DD")) -> dict[str, Any]:
    from anfang.media.access import channel_in_scope

    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, channel_id)
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).astimezone(UTC)
    end = start + timedelta(days=1)
    rs = record_search(request.app)
    await run_in_threadpool(audit.record, store, p, "video.records.search", "channel", [channel.channel_id],
                            f"date {day.isoformat()} device {device.device_id}")
    try:
        spans = await rs.search(device.device_id, channel.channel_id, start, end)
    except LookupError as exc:
        raise VideoFailed(VideoError(502, "device_refused",
                                     f"设备未响应录像检索 / the device refused the record search: {exc}")) from None
    except TimeoutError:
        raise VideoFailed(VideoError(504, "device_timeout", "设备未应答 / the device did not answer")) from None
    events = await run_in_threadpool(_day_events, store, channel.channel_id, device.device_id, start, end)
    return {"channel_id": channel.channel_id, "name": channel.name, "device_id": device.device_id,
            "date": day.isoformat(), "zone": "Asia/Shanghai", "start": start.isoformat(), "end": end.isoformat(),
            "spans": [{"start": max(s.start, start).isoformat(), "end": min(s.end, end).isoformat(), "type": s.type}
                      for s in spans if s.end > start and s.start < end],
            "events": events}


class PtzIn(BaseModel):
    channel_id: str = Field(min_length=1, max_length=64)
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    speed: int = Field(128, ge=0, le=255)
    preset: int | None = Field(None, ge=1, le=255)


@api.post("/ptz", summary="云台控制 / PTZ (DeviceControl PTZCmd)")
async def ptz(request: Request, p: CurrentPrincipal, body: PtzIn) -> dict[str, Any]:
    from anfang.media.access import channel_in_scope

    if not may_steer(getattr(request.app.state, "settings", None), p.role):
        raise Forbidden("无权控制云台 / not allowed to steer cameras")
    store = request.app.state.store
    channel, device = await run_in_threadpool(channel_in_scope, store, p, body.channel_id)
    if body.action.startswith("preset_") and body.preset is None:
        raise ValidationError("预置位编号必填 / preset number required")
    cmd = ptz_cmd(body.action, body.speed, body.preset)
    server = getattr(request.app.state, "gb28181", None)
    if server is None:
        raise VideoUnavailable()
    status = await device_control(server, device.device_id, channel.channel_id, cmd)
    await run_in_threadpool(audit.record, store, p, "video.ptz", "channel", [channel.channel_id],
                            f"{body.action} speed {body.speed} preset {body.preset} cmd {cmd} status {status}")
    if status == 408:
        raise VideoFailed(VideoError(504, "device_timeout", "设备未应答 / the device did not answer"))
    if status >= 300:
        raise VideoFailed(VideoError(502, "device_refused",
                                     f"设备拒绝云台控制 / the device refused the PTZ command (SIP {status})"))
    return {"channel_id": channel.channel_id, "action": body.action, "ptz_cmd": cmd, "status": status}


def install(app: FastAPI) -> None:
    """Mount ``/api/video/records`` and ``/api/video/ptz``."""
    app.include_router(api)
