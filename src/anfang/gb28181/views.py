"""Devices in the console and the JSON API: ``/api/devices`` and ``/devices`` (zh-CN first), scoped like the
registry: a county admin sees the devices of his county's communities, property staff their community, police and
grid workers the devices linked to addresses in their 警务区 / grid; devices not yet placed (pending review) are
seen by the city admin only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, false, func, or_, select, true

from anfang.core import timefmt
from anfang.core.errors import Forbidden, NotFound
from anfang.devices.clock import clock_label
from anfang.devices.models import Channel, Device, DeviceStatusChange
from anfang.devices.placement import county_condition
from anfang.gb28181.ids import GbIdError, parse_gb_id
from anfang.gb28181.models import GbAlarm
from anfang.registry.models import Address
from anfang.rollups.models import DeviceRollup
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.store.engine import Store

PROTOCOL = "gb28181"
MANAGERS = frozenset({Role.city_admin, Role.county_admin})

api = APIRouter(prefix="/api/devices", tags=["devices 设备"])


def device_condition(p: Principal) -> ColumnElement[bool]:
    match p.role:
        case Role.city_admin:
            return true()
        case Role.county_admin:  # his communities' devices, and the unplaced ones his county's ids name
            return county_condition(p.county_code) if p.county_code else false()
        case Role.property_staff:
            return Device.community_code == p.community_code if p.community_code else false()
        case Role.police:  # placed in his 警务区 (devices/placement.py fills it from the address or community)
            if not p.police_area_id:
                return false()
            return or_(Device.police_area_id == p.police_area_id,
                       Device.address_id.in_(select(Address.id).where(Address.police_area_id == p.police_area_id)))
        case Role.grid_worker:
            if not p.grid_id:
                return false()
            return or_(Device.grid_id == p.grid_id,
                       Device.address_id.in_(select(Address.id).where(Address.grid_id == p.grid_id)))
    return false()


def _live(request: Request) -> dict[str, Any]:
    server = getattr(request.app.state, "gb28181", None)
    return server.devices if server is not None else {}


def _last_seen(dev: Device, live: dict[str, Any]) -> datetime | None:
    st = live.get(dev.device_id)
    if st is not None and st.last_seen_wall is not None:
        return st.last_seen_wall
    return dev.last_seen


def _device_dict(dev: Device, live: dict[str, Any], channels: int | None = None) -> dict[str, Any]:
    st = live.get(dev.device_id)
    seen = _last_seen(dev, live)
    return {"id": dev.id, "device_id": dev.device_id, "protocol": dev.protocol, "name": dev.name,
            "type_code": dev.type_code, "status": st.status if st is not None else dev.status,
            "review": dev.review, "transport": dev.transport, "host": dev.host, "port": dev.port,
            "manufacturer": dev.manufacturer, "model": dev.model, "firmware": dev.firmware,
            "community_code": dev.community_code, "address_id": dev.address_id, "placement": dev.placement,
            "police_area_id": dev.police_area_id, "grid_id": dev.grid_id, "clock": clock_label(dev.attributes),
            "last_seen": seen.isoformat() if seen else None,
            "registered_at": dev.registered_at.isoformat() if dev.registered_at else None,
            "longitude": dev.longitude, "latitude": dev.latitude, "channels": channels}


def _rollup_scope(p: Principal) -> ColumnElement[bool] | None:
    """device_condition(p) on the device rollup's cells, for the roles whose scope is whole counties or
    communities; None where the scope follows addresses (police, grid workers: counted from the rows)."""
    match p.role:
        case Role.city_admin:
            return true()
        case Role.county_admin:
            return DeviceRollup.county_code == p.county_code if p.county_code else false()
        case Role.property_staff:
            return DeviceRollup.community_code == p.community_code if p.community_code else false()
    return None


def list_devices(store: Store, p: Principal, *, status: str | None = None, q: str | None = None,
                 page: int = 1, size: int = 50) -> tuple[list[tuple[Device, int]], int, int]:
    """One page of the devices p may see, the count of the whole query and how many of those are online."""
    if p.role is Role.resident or p.role is Role.anonymous:
        raise Forbidden("无权查看设备 / not allowed to list devices")
    cond = [Device.protocol == PROTOCOL, device_condition(p)]
    if status:
        cond.append(Device.status == status)
    if q:
        # autoescape: % and _ in the search text are literal, not LIKE wildcards
        cond.append(or_(Device.device_id.startswith(q, autoescape=True), Device.name.contains(q, autoescape=True)))
    scope = None if q else _rollup_scope(p)
    with store.session() as s:
        if scope is not None:  # the counts from the rollup kept by the writes' triggers, not a scan of devices
            by_status = dict(s.execute(select(DeviceRollup.status, func.sum(DeviceRollup.n))
                                       .where(scope, DeviceRollup.protocol == PROTOCOL)
                                       .group_by(DeviceRollup.status)).all())
            total = int(by_status.get(status, 0) or 0) if status else sum(int(n or 0) for n in by_status.values())
            online = int(by_status.get("online", 0) or 0) if status in (None, "online") else 0
        else:
            total = s.scalar(select(func.count()).select_from(Device).where(*cond)) or 0
            online = s.scalar(select(func.count()).select_from(Device).where(*cond, Device.status == "online")) or 0
        devices = list(s.scalars(select(Device).where(*cond).order_by(Device.device_id)
                                 .offset((page - 1) * size).limit(size)))
        # channels of this page's devices only (grouping every channel of the city, then joining, cost more than
        # the page itself at 25,000 devices)
        counts = dict(s.execute(select(Channel.device_pk, func.count()).where(
            Channel.device_pk.in_([d.id for d in devices])).group_by(Channel.device_pk)).all()) if devices else {}
    return [(d, counts.get(d.id, 0)) for d in devices], total, online


def device_detail(store: Store, p: Principal, pk: int) -> dict[str, Any]:
    with store.session() as s:
        dev = s.scalar(select(Device).where(Device.id == pk, Device.protocol == PROTOCOL, device_condition(p)))
        if dev is None or p.role in (Role.resident, Role.anonymous):
            raise NotFound("设备不存在 / device not found")
        channels = list(s.scalars(select(Channel).where(Channel.device_pk == pk).order_by(Channel.channel_id)))
        history = list(s.scalars(select(DeviceStatusChange).where(DeviceStatusChange.device_pk == pk)
                                 .order_by(DeviceStatusChange.at.desc(), DeviceStatusChange.id.desc()).limit(50)))
        alarms = list(s.scalars(select(GbAlarm).where(GbAlarm.device_id == dev.device_id)
                                .order_by(GbAlarm.at.desc(), GbAlarm.id.desc()).limit(50)))
    return {"device": dev, "channels": channels, "history": history, "alarms": alarms}


def _detail_json(detail: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    dev = detail["device"]
    return {**_device_dict(dev, live, len(detail["channels"])),
            "channel_list": [{"channel_id": c.channel_id, "name": c.name, "status": c.status,
                              "civil_code": c.civil_code, "address": c.address_text, "shared": c.shared}
                             for c in detail["channels"]],
            "history": [{"at": h.at.isoformat(), "status": h.status, "reason": h.reason} for h in detail["history"]],
            "alarms": [{"at": a.at.isoformat(), "source_id": a.source_id, "priority": a.priority,
                        "method": a.method, "alarm_type": a.alarm_type, "description": a.description,
                        "event_id": a.event_id} for a in detail["alarms"]]}


@api.get("", summary="设备列表 / devices (GB/T 28181)")
def api_list(request: Request, p: CurrentPrincipal, status: str | None = None, q: str | None = None,
             page: int = Query(1, ge=1), size: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    rows, total, online = list_devices(request.app.state.store, p, status=status, q=q, page=page, size=size)
    live = _live(request)
    return {"total": total, "online": online, "page": page, "items": [_device_dict(d, live, n) for d, n in rows]}


@api.get("/unplaced", summary="待安置设备（未安置、待确认）/ devices to place")
def api_unplaced(request: Request, p: CurrentPrincipal, page: int = Query(1, ge=1),
                 size: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    from anfang.devices.placement import list_unplaced

    rows, total = list_unplaced(request.app.state.store, p, page, size)
    return {"total": total, "page": page, "items": [_device_dict(d, {}) for d in rows]}


class PlacementIn(BaseModel):
    address_code: str | None = Field(None, max_length=40, description="标准地址编码")
    longitude: float | None = Field(None, description="经度（地图选点）")
    latitude: float | None = Field(None, description="纬度（地图选点）")
    confirm: bool = Field(False, description="确认设备自报的位置（待确认）/ accept the place the device reported")


@api.post("/{pk}/placement", summary="安置设备：选地址或地图点，社区、警务区、网格随之确定 / place a device")
def api_place(request: Request, p: CurrentPrincipal, pk: int, body: PlacementIn) -> dict[str, Any]:
    from anfang.devices.placement import place_device

    dev = place_device(request.app.state.store, p, pk, address_code=body.address_code, longitude=body.longitude,
                       latitude=body.latitude, confirm=body.confirm)
    return _device_dict(dev, _live(request))


@api.post("/placement/import", summary="批量安置（CSV/XLSX：设备编码 + 地址编码或经纬度）/ place devices in bulk")
async def api_place_import(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    return await _import_upload(request, p)


async def _import_upload(request: Request, p: Principal) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    from anfang.core.errors import ValidationError
    from anfang.devices.placement import import_placements

    if p.role not in MANAGERS:  # before reading anything
        raise Forbidden("仅管理员可安置设备 / only administrators place devices")
    form = await request.form()
    upload = form.get("file")
    if upload is None or not hasattr(upload, "read"):
        raise ValidationError("请上传 CSV 或 XLSX 文件 / upload a CSV or XLSX file")
    suffix = Path(upload.filename or "x.csv").suffix.lower()[:6] or ".csv"
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise ValidationError("文件过大（上限 20 MB）/ file too large")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"placement{suffix}"
        path.write_bytes(data)
        return await run_in_threadpool(import_placements, request.app.state.store, p, path)


MAX_UPLOAD = 20 * 1024 * 1024


@api.get("/{pk}", summary="设备详情：通道、状态历史、报警 / device detail")
def api_detail(request: Request, p: CurrentPrincipal, pk: int) -> dict[str, Any]:
    return _detail_json(device_detail(request.app.state.store, p, pk), _live(request))


def _trace_json(store: Store, p: Principal, pk: int) -> dict[str, Any]:
    from anfang.gb28181 import trace

    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可查看信令跟踪 / only administrators see SIP traces")
    dev = device_detail(store, p, pk)["device"]
    req = trace.trace_request(store, dev.device_id)
    return {"device_id": dev.device_id,
            "until": req.until.isoformat() if req is not None else None,
            "items": [{"id": e.id, "at": e.at.isoformat(), "direction": e.direction, "transport": e.transport,
                       "addr": e.addr, "summary": e.summary, "text": e.text}
                      for e in trace.trace_entries(store, dev.device_id)]}


class TraceIn(BaseModel):
    minutes: float = Field(30.0, ge=1, le=1440, description="跟踪分钟数")
    keep: int = Field(200, ge=10, le=1000, description="保留最近多少条")


def start_device_trace(store: Store, p: Principal, pk: int, body: TraceIn) -> dict[str, Any]:
    from anfang.gb28181 import trace
    from anfang.security import audit

    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可开始信令跟踪 / only administrators start SIP traces")
    dev = device_detail(store, p, pk)["device"]
    until = trace.start_trace(store, dev.device_id, minutes=body.minutes, keep=body.keep, by=p.username)
    audit.record(store, p, "create", "gb28181_trace", [dev.device_id], f"minutes={body.minutes:g}")
    return {"device_id": dev.device_id, "until": until.isoformat()}


@api.get("/{pk}/trace", summary="设备信令跟踪（最近的 SIP 消息）/ the device's SIP trace")
def api_trace(request: Request, p: CurrentPrincipal, pk: int) -> dict[str, Any]:
    return _trace_json(request.app.state.store, p, pk)


@api.post("/{pk}/trace", summary="开始信令跟踪 / start recording the device's SIP messages")
def api_trace_start(request: Request, p: CurrentPrincipal, pk: int, body: TraceIn) -> dict[str, Any]:
    return start_device_trace(request.app.state.store, p, pk, body)


class DeviceIn(BaseModel):
    device_id: str = Field(description="20 位国标编码")
    name: str = ""
    password: str = Field(min_length=4, max_length=64)
    community_code: str | None = None
    address_id: int | None = None


@api.post("", status_code=201, summary="手工添加设备（含接入密码）/ add a device with its password")
def api_add(request: Request, p: CurrentPrincipal, body: DeviceIn) -> dict[str, Any]:
    from anfang.core.errors import ValidationError

    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可添加设备 / only administrators add devices")
    try:
        gid = parse_gb_id(body.device_id)
    except GbIdError as exc:
        raise ValidationError(str(exc)) from None
    if p.role is Role.county_admin and not (body.community_code or "").startswith(p.county_code or "-"):
        raise Forbidden("只能添加本县区的设备 / only devices of your county")
    from anfang.devices.service import DeviceService

    dev = DeviceService(request.app.state.store).upsert(
        PROTOCOL, gid.value, name=body.name or gid.value, password=body.password, type_code=gid.type_code,
        community_code=body.community_code, address_id=body.address_id, review="approved")
    server = getattr(request.app.state, "gb28181", None)
    if server is not None:
        server.refresh(gid.value)
    return _device_dict(dev, _live(request))


# ---- console pages ---------------------------------------------------------------------------------------------
_T = {
    "devices": ("视频设备", "Video devices"), "device_id": ("国标编码", "GB id"), "name": ("名称", "Name"),
    "status": ("状态", "Status"), "last_seen": ("最后心跳", "Last keepalive"), "channels": ("通道", "Channels"),
    "transport": ("传输", "Transport"), "review": ("审核", "Review"), "history": ("状态历史", "Status history"),
    "alarms": ("报警", "Alarms"), "online": ("在线", "online"), "offline": ("离线", "offline"),
    "unknown": ("未知", "unknown"), "pending": ("待审核", "pending"), "approved": ("已审核", "approved"),
    "rejected": ("已拒绝", "rejected"), "at": ("时间", "Time"), "reason": ("原因", "Reason"),
    "register": ("注册", "register"), "keepalive": ("心跳", "keepalive"), "timeout": ("心跳超时", "timeout"),
    "unregister": ("注销", "unregister"), "expired": ("注册过期", "expired"), "message": ("消息", "message"),
    "priority": ("级别", "Priority"), "description": ("描述", "Description"), "source": ("来源", "Source"),
    "manufacturer": ("厂商", "Manufacturer"), "model": ("型号", "Model"), "address": ("地址", "Address"),
    "civil_code": ("行政区划", "Civil code"), "all": ("全部", "All"), "search": ("查询", "Search"),
    "total": ("共", "Total"), "none": ("暂无", "none"), "online_count": ("在线", "Online"),
    "type": ("类型", "Type"), "shared": ("共享上级", "Shared"), "live": ("实时视频", "Live video"),
    "playback": ("录像回放", "Playback"),
    "clock": ("时钟", "Clock"), "trace": ("信令跟踪", "SIP trace"),
    "trace_start": ("开始跟踪 30 分钟", "Record 30 minutes"),
    "trace_until": ("跟踪至", "Recording until"), "trace_help": (
        "记录该设备收发的 SIP 消息（注册、鉴权、拒绝原因、心跳、查询），用于排查接入故障；命令行：anfang gb28181 trace",
        "Records the SIP messages to and from this device (register, digest, refusal reasons, keepalives, queries) "
        "to find out why it fails; command line: anfang gb28181 trace"),
    "in": ("设备→平台", "device→platform"), "out": ("平台→设备", "platform→device"),
    "unplaced": ("待安置", "Devices to place"), "placed": ("已安置", "placed"),
    "unplaced_help": ("自行注册的设备没有位置：选择标准地址或地图点位（经纬度），社区、警务区、网格随之确定；"
                      "“待确认”为设备自报的位置。未安置设备的预警发往县级值班台。",
                      "Self-registered devices have no place: pick a standard address or a map point; community, "
                      "police area and grid follow. 'pending' is the place the device reported. Warnings of unplaced "
                      "devices go to the county duty desk."),
    "bulk": ("批量安置", "Place in bulk"), "bulk_help": ("CSV / XLSX：设备编码，地址编码 或 经度、纬度",
                                                       "CSV / XLSX: device_id, address_code or longitude, latitude"),
    "import": ("导入", "Import"), "import_done": ("导入完成", "Imported"), "errors": ("错误", "errors"),
    "row": ("行号", "Row"), "protocol": ("协议", "Protocol"), "placement": ("安置状态", "Placement"),
    "community": ("社区", "Community"), "place_it": ("安置", "Place"),
    "confirm_place": ("确认自报位置", "Confirm reported place"),
    "place_pending": ("待确认", "reported, to confirm"), "address_code": ("地址编码", "address code"),
    "longitude": ("经度", "longitude"), "latitude": ("纬度", "latitude"),
    "map_pick": ("地图选点", "Pick on the map"),
    "map_help": ("先点某台设备的“地图选点”，再点地图：点在地址圆点上即选该地址，点在空白处即取该点经纬度"
                 "（1 公里内最近的地址决定社区、警务区、网格）。",
                 "Press a device's 'Pick on the map', then click the map: a dot picks that address, elsewhere the "
                 "point (the nearest address within 1 km gives community, police area, grid)."),
}


def mount(app: FastAPI) -> None:
    from anfang.web.views import ConsoleRoute, lang_of, render

    pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    def g(request: Request):  # noqa: ANN202
        zh = lang_of(request).startswith("zh")
        return lambda key: (_T.get(key, (key, key))[0 if zh else 1])

    @pages.get("/devices")
    async def devices_page(request: Request, p: CurrentPrincipal, status: str = "", q: str = "",
                           page: int = Query(1, ge=1)) -> HTMLResponse:
        rows, total, online = await run_in_threadpool(list_devices, request.app.state.store, p, status=status or None,
                                              q=q or None, page=page, size=50)
        live = _live(request)
        items = [_device_dict(d, live, n) for d, n in rows]
        return await run_in_threadpool(
            render, request, "gb_devices.html", p, nav="devices", g=g(request), items=items, total=total,
            form={"status": status, "q": q}, page=page, has_more=page * 50 < total,
            online=online, type_name=_type_name, can_place=p.role in MANAGERS)  # counts of the whole query

    async def _unplaced_page(request: Request, p: Principal, **extra: Any) -> HTMLResponse:
        from anfang.devices.placement import list_unplaced, map_points, map_svg

        rows, total = await run_in_threadpool(list_unplaced, request.app.state.store, p, 1, 200)
        points = await run_in_threadpool(map_points, request.app.state.store, p)
        return await run_in_threadpool(render, request, "gb_unplaced.html", p, nav="devices", g=g(request),
                                       items=[_device_dict(d, {}) for d in rows], total=total,
                                       place_map=map_svg(points), **extra)

    @pages.get("/devices/unplaced")
    async def unplaced_page(request: Request, p: CurrentPrincipal, error: str = "") -> HTMLResponse:
        return await _unplaced_page(request, p, report=None, error=error[:200] or None)

    @pages.post("/devices/placement/import")
    async def unplaced_import(request: Request, p: CurrentPrincipal) -> HTMLResponse:
        from anfang.core.errors import AnfangError
        from anfang.web.views import check_csrf

        form = await request.form()
        check_csrf(request, str(form.get("csrf_token") or ""))
        try:
            report = await _import_upload(request, p)
        except AnfangError as exc:
            if isinstance(exc, Forbidden):
                raise
            return await _unplaced_page(request, p, report=None, error=exc.message)
        return await _unplaced_page(request, p, report=report, error=None)

    @pages.post("/devices/{pk}/placement")
    def place_form(request: Request, p: CurrentPrincipal, pk: int, csrf_token: str = Form(""),
                   address_code: str = Form(""), longitude: str = Form(""), latitude: str = Form(""),
                   confirm: str = Form("")) -> Response:
        from anfang.core.errors import ValidationError
        from anfang.devices.placement import place_device
        from anfang.web.views import check_csrf

        check_csrf(request, csrf_token)
        try:
            place_device(request.app.state.store, p, pk, address_code=address_code or None,
                         longitude=longitude or None, latitude=latitude or None, confirm=confirm == "1")
        except ValidationError as exc:
            from urllib.parse import quote

            return RedirectResponse(f"/devices/unplaced?error={quote(exc.message)}", 303)
        return RedirectResponse("/devices/unplaced", 303)

    @pages.get("/devices/{pk}")
    async def device_page(request: Request, p: CurrentPrincipal, pk: int) -> HTMLResponse:
        detail = await run_in_threadpool(device_detail, request.app.state.store, p, pk)
        data = _detail_json(detail, _live(request))
        trace = None
        if p.role in MANAGERS:
            trace = await run_in_threadpool(_trace_json, request.app.state.store, p, pk)
            lang = lang_of(request)
            for e in trace["items"]:  # milliseconds, under a column header naming the zone (core.timefmt)
                e["local"] = timefmt.local(e["at"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            trace["at_header"] = timefmt.header(g(request)("at"), lang)
            trace["until_text"] = timefmt.fmt(trace["until"], lang) if trace["until"] else None
        from anfang.gb28181.ptz import may_steer

        return await run_in_threadpool(render, request, "gb_device.html", p, nav="devices", g=g(request), d=data,
                                       type_name=_type_name, trace=trace,
                                       ptz=may_steer(request.app.state.settings, p.role))

    @pages.post("/devices/{pk}/trace")
    def device_trace_start(request: Request, p: CurrentPrincipal, pk: int, csrf_token: str = Form(""),
                           minutes: float = Form(30.0)) -> RedirectResponse:
        from anfang.web.views import check_csrf

        check_csrf(request, csrf_token)
        start_device_trace(request.app.state.store, p, pk, TraceIn(minutes=max(1.0, min(minutes, 1440.0))))
        return RedirectResponse(f"/devices/{pk}#trace", 303)

    app.include_router(api)
    app.include_router(pages)


def _type_name(code: str | None) -> str:
    from anfang.gb28181.ids import TYPES

    return TYPES.get(code or "", code or "—")
