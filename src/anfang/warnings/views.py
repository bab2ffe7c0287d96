"""Warning API (JSON, under /api), the live stream (SSE), the console's warning centre and the police terminal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from anfang.core import timefmt
from anfang.core.errors import Forbidden, NotFound
from anfang.security.roles import Role
from anfang.security.views import CurrentPrincipal
from anfang.warnings.push import TerminalHub
from anfang.warnings.service import FEEDBACK, STATE_LABELS, WarningService, hit_times
from anfang.web.views import ConsoleRoute, check_csrf, lang_of, render

api = APIRouter(prefix="/api", tags=["warnings 预警"])
pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

TEXT = {  # page strings, zh-CN first
    "title": ("预警中心", "Warning centre"), "terminal": ("民警终端", "Police terminal"),
    "open": ("待处置", "open"), "all": ("全部", "all"), "ack": ("签收", "Acknowledge"),
    "handle": ("处置", "Handle"), "close": ("关闭", "Close"), "place": ("地点", "Place"),
    "time": ("时间", "Time"), "state": ("状态", "State"), "category": ("类别", "Category"),
    "none": ("暂无预警", "No warnings"), "live": ("实时推送已连接", "live"), "hits": ("次数", "hits"),
    "feedback_true": ("属实", "confirmed"), "feedback_false_alarm": ("误报", "false alarm"),
    "feedback_resolved": ("已解决", "resolved"), "unread": ("未读", "unread"), "stats": ("统计", "Statistics"),
    "sensor": ("传感器", "sensor"), "plate": ("车辆布控", "plate watch"), "face": ("人像布控", "face watch"),
    "behaviour": ("行为研判", "behaviour"),
    "access": ("门禁", "access control"), "alarm": ("报警", "alarm"), "device": ("设备", "device"),
    "severity_1": ("紧急", "urgent"), "severity_2": ("重要", "important"), "severity_3": ("提示", "notice"),
    "detail": ("详情", "details"), "steps": ("处置记录", "history"), "similarity": ("相似度", "similarity"),
    "shot_at": ("抓拍时间（设备时钟）", "Shot at (device clock)"), "seen": ("出现次数", "Seen"),
    "capture": ("抓拍", "capture"), "watchlist": ("布控", "watchlist"), "distance": ("距离", "distance"),
    "photo": ("照片", "photo"),
}


def _t(lang: str) -> dict[str, str]:
    i = 0 if lang.startswith("zh") else 1
    return {k: v[i] for k, v in TEXT.items()}


def _svc(request: Request) -> WarningService:
    return request.app.state.warnings


class HandleIn(BaseModel):
    feedback: str = Field(description="true | false_alarm | resolved")
    note: str = ""


def in_language(item: dict[str, Any], lang: str) -> dict[str, Any]:
    """A pushed warning (built once for every terminal, in zh-CN) with its shown texts in this terminal's language:
    the state and the times, as the page itself renders them."""
    w = item.get("warning")
    if not isinstance(w, dict) or lang.startswith("zh"):
        return item
    zh, en = STATE_LABELS.get(w.get("state", ""), (w.get("state_label"), w.get("state_label")))
    w = {**w, "state_label": en, "created_at_text": timefmt.fmt(w.get("created_at"), lang),
         "shot_at_text": timefmt.fmt((w.get("data") or {}).get("shot_at"), lang, empty=""),
         "hit_times_text": hit_times(w.get("data"), lang)}
    return {**item, "warning": w}


# ---- JSON API -------------------------------------------------------------------------------------------------
@api.get("/warnings", summary="预警列表（按辖区） / warnings in my jurisdiction")
def list_warnings(request: Request, p: CurrentPrincipal, state: str | None = None, category: str | None = None,
                  page: int = Query(1, ge=1), size: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    return _svc(request).list(p, state=state, category=category, page=page, size=size)


@api.get("/warnings/stats", summary="预警统计 / counts by state and category")
def warning_stats(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    return _svc(request).stats(p)


@api.get("/warnings/stream", summary="实时预警推送（SSE） / live warnings (Server-Sent Events)")
async def warning_stream(request: Request, p: CurrentPrincipal) -> StreamingResponse:
    hub: TerminalHub = request.app.state.terminal_hub
    station = await run_in_threadpool(_svc(request).station_of_area, p.police_area_id)
    terminal = hub.connect(p, station)
    lang = lang_of(request)

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(terminal.queue.get(), timeout=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": ping\n\n"
                    continue
                item = in_language(item, lang)
                yield f"event: warning\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
        finally:
            hub.disconnect(terminal)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@api.get("/warnings/{warning_id}", summary="预警详情 / one warning with its history")
def get_warning(request: Request, p: CurrentPrincipal, warning_id: int) -> dict[str, Any]:
    return _svc(request).get(p, warning_id)


def _enrolled_photo_path(request: Request, warning_id: int) -> Path | None:
    """The watchlist photo of a face warning, from its entry (the API never carries server paths)."""
    from anfang.faces.models import FaceEntry
    from anfang.warnings.models import Warning

    with request.app.state.store.session() as s:
        w = s.get(Warning, warning_id)
        data = (w.data or {}) if w is not None else {}
        entry = s.get(FaceEntry, int(data["entry_id"])) if str(data.get("entry_id") or "").isdigit() else None
    if entry is not None:
        return Path(request.app.state.settings.data_dir) / entry.photo_path
    return Path(str(data["photo_path"])) if data.get("photo_path") else None  # warnings from before


@api.get("/warnings/{warning_id}/enrolled-photo", summary="布控照片 / the watchlist photo a face warning matched",
         response_class=Response)
def enrolled_photo(request: Request, p: CurrentPrincipal, warning_id: int) -> Response:
    _svc(request).get(p, warning_id)  # scoped and audited
    path = _enrolled_photo_path(request, warning_id)
    faces_dir = (Path(request.app.state.settings.data_dir) / "faces").resolve()
    if path is None or not path.resolve().is_relative_to(faces_dir) or not path.is_file():
        raise NotFound("该预警没有布控照片 / no watchlist photo for this warning")
    from anfang.security.watermark import export_image  # 导出水印: stamp + mark, logged (docs/security.md)

    data, media = export_image(request.app.state.store, p, path.read_bytes(), "watchlist-photo", path.name,
                               [f"warning:{warning_id}"], view=True)  # shown on the terminal: not an export
    return Response(data, media_type=media, headers={"Cache-Control": "private, no-store"})


@api.post("/warnings/{warning_id}/ack", summary="签收 / acknowledge")
def ack_warning(request: Request, p: CurrentPrincipal, warning_id: int) -> dict[str, Any]:
    return _svc(request).acknowledge(p, warning_id)


@api.post("/warnings/{warning_id}/handle", summary="处置反馈 / handle with feedback")
def handle_warning(request: Request, p: CurrentPrincipal, warning_id: int, body: HandleIn) -> dict[str, Any]:
    return _svc(request).handle(p, warning_id, body.feedback, body.note)


@api.post("/warnings/{warning_id}/close", summary="关闭 / close")
def close_warning(request: Request, p: CurrentPrincipal, warning_id: int) -> dict[str, Any]:
    return _svc(request).close(p, warning_id)


class PlateListIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    tolerant: bool = True
    severity: int = Field(1, ge=1, le=3)


class PlatesIn(BaseModel):
    plates: list[str] = Field(min_length=1)
    reason: str = ""


@api.post("/watchlists/plates", summary="新建车辆布控名单 / new plate watchlist", status_code=201)
def create_plate_list(request: Request, p: CurrentPrincipal, body: PlateListIn) -> dict[str, Any]:
    wid = _svc(request).create_plate_watchlist(p, body.name, tolerant=body.tolerant, severity=body.severity)
    return {"id": wid, "name": body.name}


@api.post("/watchlists/plates/{watchlist_id}/entries", summary="添加布控车牌 / add plates")
def add_plates(request: Request, p: CurrentPrincipal, watchlist_id: int, body: PlatesIn) -> dict[str, Any]:
    added = _svc(request).add_plates(p, watchlist_id, [(x, body.reason) for x in body.plates])
    return {"added": added}


# ---- pages ----------------------------------------------------------------------------------------------------
def _page(request: Request, p: Any, template: str, state: str, nav: str) -> HTMLResponse:
    lang = lang_of(request)
    svc = _svc(request)
    data = svc.list(p, state=state or None, size=50)
    return render(request, template, p, nav=nav, W=_t(lang), warnings=data["items"], stats=svc.stats(p),
                  state=state, feedbacks=FEEDBACK, state_labels=STATE_LABELS)


@pages.get("/warnings")
def warning_centre(request: Request, p: CurrentPrincipal, state: str = "open") -> HTMLResponse:
    return _page(request, p, "warnings.html", state, "warnings")


TERMINAL_ROLES = frozenset({Role.police, Role.county_admin, Role.city_admin})


@pages.get("/m/warnings")
def terminal(request: Request, p: CurrentPrincipal, state: str = "open") -> HTMLResponse:
    if p.role not in TERMINAL_ROLES:  # the officer's terminal; grid workers and property staff use /warnings
        raise Forbidden("民警终端仅供社区民警和管理员使用，预警请在「预警中心」查看 / the officer terminal is for "
                        "police officers and administrators; see /warnings")
    return _page(request, p, "terminal.html", state, "warnings")


@pages.post("/m/warnings/{warning_id}/ack")
def terminal_ack(request: Request, p: CurrentPrincipal, warning_id: int, csrf_token: str = Form(""),
                 back: str = Form("/m/warnings")) -> RedirectResponse:
    check_csrf(request, csrf_token)
    _svc(request).acknowledge(p, warning_id)
    return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/m/warnings", 303)


@pages.post("/m/warnings/{warning_id}/handle")
def terminal_handle(request: Request, p: CurrentPrincipal, warning_id: int, csrf_token: str = Form(""),
                    feedback: str = Form(""), note: str = Form(""),
                    back: str = Form("/m/warnings")) -> RedirectResponse:
    check_csrf(request, csrf_token)
    _svc(request).handle(p, warning_id, feedback, note)
    return RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/m/warnings", 303)
