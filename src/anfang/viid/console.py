"""Console pages of the 视图库: capture browser (filter by kind, device, time, plate), image view, APE list with
online state. Server-rendered like the rest of the console (offline, zh-CN first). Captures are personal data:
only police, county and city administrators see them, scoped to their jurisdiction by the capturing device's
community, and every page view is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import ColumnElement, and_, func, or_, select

from anfang.core.errors import Forbidden
from anfang.devices.models import Device
from anfang.registry.models import Address
from anfang.security import audit
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.store.counting import CappedCount, capped_count
from anfang.store.engine import Store
from anfang.viid import days, ids
from anfang.viid.models import ViidImage, ViidObject
from anfang.web import i18n
from anfang.web.views import ConsoleRoute, render

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
VIEWERS = {Role.city_admin, Role.county_admin, Role.police}
PAGE = 30
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

i18n.STRINGS.update({
    "nav_viid": ("视图库", "Video images"),
    "nav_viid_captures": ("抓拍记录", "Captures"),
    "nav_viid_apes": ("采集设备", "Capture devices"),
    "viid_captures_title": ("抓拍记录", "Captures"),
    "viid_apes_title": ("采集设备（APE）", "Capture devices (APE)"),
    "viid_kind": ("类别", "Kind"),
    "viid_kind_face": ("人脸", "Face"),
    "viid_kind_motor": ("机动车", "Vehicle"),
    "viid_kind_person": ("人员", "Person"),
    "viid_kind_nonmotor": ("非机动车", "Non-motor"),
    "viid_kind_all": ("全部", "All"),
    "viid_device": ("设备编码", "Device id"),
    "viid_from": ("开始时间", "From"),
    "viid_to": ("结束时间", "To"),
    "viid_shot_at": ("抓拍时间", "Captured at"),
    "viid_photo": ("照片", "Photo"),
    "viid_detail": ("特征", "Attributes"),
    "viid_no_face": ("未检出人脸", "no face found"),
    "viid_faces_found": ("检出 {n} 张人脸", "{n} face(s) found"),
    "viid_total": ("共 {n} 条", "{n} records"),
    "viid_total_more": ("超过 {n} 条（请缩小时间范围或指定设备）", "more than {n} records (narrow the time range or "
                        "name a device)"),
    "viid_online": ("在线", "Online"),
    "viid_offline": ("离线", "Offline"),
    "viid_unknown": ("未知", "Unknown"),
    "viid_status": ("状态", "Status"),
    "viid_last_seen": ("最后保活", "Last keepalive"),
    "viid_name": ("名称", "Name"),
    "viid_ip": ("IP 地址", "IP address"),
    "viid_community": ("社区/村", "Community"),
    "viid_forbidden": ("当前角色无权查看抓拍记录 / role may not view captures",
                       "This role may not view captures"),
})


def _scope(store: Store, p: Principal) -> ColumnElement[bool] | None:
    """SQL condition limiting captures to the principal's jurisdiction (None: everything)."""
    if p.role not in VIEWERS:
        raise Forbidden(i18n.translate("viid_forbidden"))
    if p.role is Role.city_admin:
        return None
    if p.role is Role.county_admin:
        # a range, not LIKE 'code%': an index range scan on both backends (SQLite's LIKE cannot use an index)
        county = p.county_code or "-"
        return and_(ViidObject.community_code >= county,
                    ViidObject.community_code < county[:-1] + chr(ord(county[-1]) + 1))
    # the communities of his 警务区 as values, not a subquery: PostgreSQL cannot estimate a subquery's rows and
    # joined it to every day's partition (a capped count of 0.66 s at city scale instead of 0.09 s)
    with store.session() as s:
        communities = list(s.scalars(select(Address.community_code)
                                     .where(Address.police_area_id == p.police_area_id).distinct()))
    return ViidObject.community_code.in_(communities)


def _summary(kind: str, body: dict[str, Any]) -> str:
    if kind == "motor":
        return " ".join(x for x in (body.get("PlateNo") or "", ids.COLORS.get(str(body.get("PlateColor")), ""),
                                    str(body.get("VehicleClass") or "")) if x)
    if kind == "nonmotor":
        return str(body.get("PlateNo") or "")
    return ids.GENDERS.get(str(body.get("GenderCode")), "") if body.get("GenderCode") not in (None, "") else ""


def cursor_of(shot_at: datetime, pk: int) -> str:
    """The "older than" cursor of a capture: its capture time (µs since the epoch) and id, URL-safe."""
    return f"{(shot_at - _EPOCH) // timedelta(microseconds=1)}_{pk}"


def parse_cursor(value: str) -> tuple[datetime, int] | None:
    try:
        us, pk = value.split("_", 1)
        return _EPOCH + timedelta(microseconds=int(us)), int(pk)
    except ValueError:
        return None


def search(store: Store, p: Principal, *, kind: str, device: str, plate: str, start: datetime | None,
           end: datetime | None, page: int, before: tuple[datetime, int] | None = None
           ) -> tuple[CappedCount, list[dict[str, Any]]]:
    """One page of captures, newest first, and how many match: exact up to COUNT_CAP, "more than" above (an exact
    count of a city's month of captures would read millions of rows on every page view). With ``before`` (the
    cursor of the last capture of the page before) the page starts after that capture, whatever the page number:
    an index range from there, where OFFSET read and threw away every row of the pages before."""
    conds = []
    scope = _scope(store, p)
    if scope is not None:
        conds.append(scope)
    if kind in ("face", "motor", "person", "nonmotor"):
        conds.append(ViidObject.kind == kind)
    if device:
        conds.append(ViidObject.device_id == device.strip())
    if plate:
        conds.append(ViidObject.plate_no.startswith(ids.normalize_plate(plate), autoescape=True))  # % _ literal
    if start:
        conds.append(ViidObject.shot_at >= start)
    if end:
        conds.append(ViidObject.shot_at <= end)
    if device:  # SQLite: the camera's captures are read from the day-led index, one range per day
        on_days = days.day_filter(store.engine.dialect.name, start, end)
        if on_days is not None:
            conds.append(on_days)
    with store.session() as s:
        total = capped_count(s, ViidObject, *conds)
        stmt = select(ViidObject).where(*conds).order_by(ViidObject.shot_at.desc(), ViidObject.id.desc())
        if before is not None:
            stmt = stmt.where(or_(ViidObject.shot_at < before[0],
                                  and_(ViidObject.shot_at == before[0], ViidObject.id < before[1])))
        else:
            stmt = stmt.offset((page - 1) * PAGE)
        rows = list(s.scalars(stmt.limit(PAGE)))
        pks = [r.id for r in rows]
        thumbs: dict[int, int] = {}
        if pks:
            for obj_pk, img_pk in s.execute(select(ViidImage.object_pk, func.min(ViidImage.id))
                                            .where(ViidImage.object_pk.in_(pks)).group_by(ViidImage.object_pk)):
                thumbs[obj_pk] = img_pk
    out = []
    for r in rows:
        body = orjson.loads(r.body)
        out.append({"pk": r.id, "kind": r.kind, "object_id": r.object_id, "device_id": r.device_id,
                    "shot_at": r.shot_at.isoformat(),  # shown by the page with core.timefmt
                    "cursor": cursor_of(r.shot_at, r.id),
                    "summary": _summary(r.kind, body), "image": thumbs.get(r.id),
                    "faces": r.faces})  # faces the matcher found (None: not examined, 0: 未检出人脸)
    audit.record(store, p, "viid_search", "viid_objects", [o["object_id"] for o in out],
                 f"kind={kind} device={device} plate={plate}")
    return total, out


def _parse_local(value: str) -> datetime | None:
    return ids.parse_time(value.replace("T", " ")) if value else None


def _track_gate(request: Request, p: Principal, plate: str, device: str, start: str, end: str, kind: str,
                reason: str, approval_id: int | None) -> Response | None:
    """A full plate over every camera is one vehicle's movement track (数据查询授权: ``track``): it runs only with a
    reason and, by role, an approval; a partial plate, one camera's captures or a short time window (policy
    ``track_free_hours``) run as before."""
    from anfang.core.ids import validate_plate
    from anfang.security import approvals
    from anfang.web.views import held_page

    try:
        full = validate_plate(ids.normalize_plate(plate)) if plate and not device else None
    except Exception:  # noqa: BLE001 - not a whole plate: a prefix search, not a track
        full = None
    if not full:
        return None
    since, until = _parse_local(start), _parse_local(end)
    if since and until and until - since <= timedelta(hours=approvals.load_policy().track_free_hours):
        return None  # one plate around one incident's time: a check, not a movement track
    try:
        approvals.authorise(request.app.state.store, p, query_kind="track", target="track:plate",
                            params={"plate": full}, summary=f"车辆 {full} 的全部抓拍轨迹", reason=reason or None,
                            approval_id=approval_id)
    except (approvals.ReasonRequired, approvals.ApprovalPending) as exc:
        return held_page(request, p, exc, {"plate": plate, "kind": kind, "start": start, "end": end})
    return None


@router.get("/viid/captures")
def captures_page(request: Request, p: CurrentPrincipal, kind: str = "", device: str = "", plate: str = "",
                  start: str = "", end: str = "", page: int = 1, reason: str = "",
                  approval_id: int | None = None, before: str = "") -> Response:
    page = max(page, 1)
    cursor = parse_cursor(before) if before else None
    held = _track_gate(request, p, plate, device, start, end, kind, reason, approval_id)
    if held is not None:
        return held
    total, rows = search(request.app.state.store, p, kind=kind, device=device, plate=plate,
                         start=_parse_local(start), end=_parse_local(end), page=page, before=cursor)
    q = {"kind": kind, "device": device, "plate": plate, "start": start, "end": end}
    base = "&".join(f"{k}={v}" for k, v in q.items() if v)
    pager = {"page": page,
             "prev": f"/viid/captures?{base}&page={page - 1}" if page > 1 else None,
             # the next page by the cursor of this page's last capture (the page number is only shown); the
             # previous one by its number (OFFSET: as deep as the reader walked, and page numbers typed in work)
             "next": f"/viid/captures?{base}&page={page + 1}&before={rows[-1]['cursor']}"
             if rows and len(rows) == PAGE and (total.more or page * PAGE < total.n) else None}
    return render(request, "viid_captures.html", p, nav="viid_captures", rows=rows, total=total, form=q,
                  pager=pager)


def _image(store: Store, images: Any, p: Principal, pk: int, download: bool = False) -> tuple[bytes, str] | None:
    with store.session() as s:
        row = s.execute(select(ViidImage, ViidObject.community_code, ViidObject.object_id)
                        .outerjoin(ViidObject, ViidObject.id == ViidImage.object_pk)
                        .where(ViidImage.id == pk)).first()
        if row is None:
            return None
        img, community, object_id = row
        scope = _scope(store, p)
        if scope is not None and object_id is not None:
            allowed = s.scalar(select(func.count()).select_from(ViidObject).where(
                ViidObject.id == img.object_pk, scope))
            if not allowed:
                return None
    from anfang.viid import service

    found = service.image_location(store, pk=pk)
    if found is None:
        return None
    audit.record(store, p, "viid_image", "viid_images", [img.image_id],
                 f"object={object_id or ''};{'download' if download else 'view'}")
    # A corner stamp (user, time, request) and an invisible mark (docs/security.md); only a download is an export.
    from anfang.security.watermark import export_image

    data, media = export_image(store, p, images.get(found[0]), "viid-image", img.image_id, [img.image_id],
                               view=not download)
    return data, "Png" if media == "image/png" else "Jpeg"


@router.get("/viid/images/{pk}")
async def image_view(request: Request, p: CurrentPrincipal, pk: int, download: bool = False) -> Response:
    """The capture image: viewed (audited) or, with ?download=1, downloaded (an export: 我的导出记录)."""
    node = request.app.state.viid
    got = await run_in_threadpool(_image, request.app.state.store, node.images, p, pk, download)
    if got is None:
        return Response(status_code=404)
    ext = "png" if got[1] == "Png" else "jpg"
    return Response(got[0], media_type="image/png" if got[1] == "Png" else "image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                             "Content-Disposition": f'{"attachment" if download else "inline"}; filename="{pk}.{ext}"'})


APES_PAGE = 200  # APEs a page (a city has thousands; the whole list was one page of every device)


@router.get("/viid/apes")
def apes_page(request: Request, p: CurrentPrincipal, page: int = 1) -> Response:
    from anfang.devices.clock import clock_label
    from anfang.gb28181.views import device_condition

    if p.role not in VIEWERS:
        raise Forbidden(i18n.translate("viid_forbidden"))
    page = max(page, 1)
    store: Store = request.app.state.store
    sessions = request.app.state.viid.sessions
    with store.session() as s:
        # the device scope of /devices (placement: the county's unplaced cameras to its admin, the officer's 警务区)
        stmt = select(Device).where(Device.protocol == "viid", device_condition(p))
        devs = list(s.scalars(stmt.order_by(Device.device_id).offset((page - 1) * APES_PAGE).limit(APES_PAGE + 1)))
    more = len(devs) > APES_PAGE
    rows = [{"device_id": d.device_id, "name": d.name, "host": d.host or "", "community": d.community_code or "",
             "status": "online" if d.status == "online" and sessions.is_fresh(d.device_id) else
             ("unknown" if d.status == "unknown" else "offline"),
             "last_seen": d.last_seen.isoformat() if d.last_seen else "",
             "clock": clock_label(d.attributes)}  # 时钟偏差 … (devices/clock.py), None when on time
            for d in devs[:APES_PAGE]]
    pager = {"page": page, "prev": f"/viid/apes?page={page - 1}" if page > 1 else None,
             "next": f"/viid/apes?page={page + 1}" if more else None}
    return render(request, "viid_apes.html", p, nav="viid_apes", rows=rows, pager=pager)
