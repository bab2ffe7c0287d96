"""Device placement: where a camera is, and so whose it is. A placed device carries its community, 警务区 and grid
(and its address when it has one), which scope it in the console and route its warnings.

A device that registers itself arrives ``unplaced``. It gets a place
- from an administrator: an address (code) or a point on the map (the nearest address with coordinates within 1 km
  gives community, 警务区 and grid), one device at a time from the 待安置 list or in bulk from CSV / XLSX;
- from the standard's own fields (GA/T 1400 ``PlaceCode`` / longitude / latitude, GB/T 28181 catalog ``CivilCode`` /
  ``Address`` / ``Longitude`` / ``Latitude``): ``pending`` until an administrator confirms it, never overwriting what
  an administrator placed.
Until then the device belongs to the county its 20-digit id names (GB/T 28181 and GA/T 1400 ids both start with the
GB/T 2260 code), so the county admin sees it in his 待安置 list and its warnings reach his duty desk."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true

from anfang.core.errors import Forbidden, NotFound, ValidationError
from anfang.devices.models import Device
from anfang.registry.models import Address, Region
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store

UNPLACED, PENDING, PLACED = "unplaced", "pending", "placed"
MANAGERS = frozenset({Role.city_admin, Role.county_admin})
POINT_RADIUS_M = 1000.0


@dataclass(frozen=True)
class Place:
    community_code: str
    police_area_id: int | None = None
    grid_id: int | None = None
    address_id: int | None = None
    longitude: float | None = None
    latitude: float | None = None


# ---- resolving a place ------------------------------------------------------------------------------------------
def community_place(s: Any, community_code: str) -> Place | None:
    """A community (or village) code: its 警务区 is the one covering most of its addresses, its grid the community
    address's."""
    region = s.get(Region, community_code)
    if region is None or region.level != "community":
        return None
    area = s.execute(select(Address.police_area_id).where(
        Address.community_code == community_code, Address.police_area_id.is_not(None))
        .group_by(Address.police_area_id).order_by(func.count().desc(), Address.police_area_id).limit(1)).scalar()
    top = s.execute(select(Address.grid_id, Address.lon, Address.lat).where(
        Address.community_code == community_code, Address.level == "community").limit(1)).first()
    grid = top[0] if top is not None else None
    if grid is None:
        grid = s.execute(select(Address.grid_id).where(
            Address.community_code == community_code, Address.grid_id.is_not(None))
            .group_by(Address.grid_id).order_by(func.count().desc(), Address.grid_id).limit(1)).scalar()
    return Place(community_code, area, grid)


def address_place(addr: Address) -> Place:
    return Place(addr.community_code, addr.police_area_id, addr.grid_id, addr.id, addr.lon, addr.lat)


def point_place(s: Any, longitude: float, latitude: float, radius_m: float = POINT_RADIUS_M) -> Place | None:
    """A point on the map: community, 警务区 and grid of the nearest address with coordinates within ``radius_m``
    (the point itself is kept as the device's position; it is no address)."""
    dlat = radius_m / 111_320.0
    dlon = dlat / max(math.cos(math.radians(latitude)), 0.01)
    rows = s.execute(select(Address.community_code, Address.police_area_id, Address.grid_id, Address.lon,
                            Address.lat).where(Address.lon.between(longitude - dlon, longitude + dlon),
                                               Address.lat.between(latitude - dlat, latitude + dlat))
                     .limit(5000)).all()
    best, best_d = None, radius_m
    for row in rows:
        d = _metres(longitude, latitude, row.lon, row.lat)
        if d <= best_d:
            best, best_d = row, d
    if best is None:
        return None
    return Place(best.community_code, best.police_area_id, best.grid_id, None, longitude, latitude)


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance (metres): enough for "which address is nearest within a kilometre"."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def _coordinate(value: Any, lo: float, hi: float) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if lo <= v <= hi and math.isfinite(v) else None


def apply(dev: Device, place: Place, state: str, source: str) -> None:
    dev.community_code, dev.police_area_id, dev.grid_id = place.community_code, place.police_area_id, place.grid_id
    dev.address_id = place.address_id
    if place.longitude is not None and place.latitude is not None:
        dev.longitude, dev.latitude = place.longitude, place.latitude
    dev.placement = state
    dev.attributes = {**(dev.attributes or {}), "placement_source": source}


def fill_jurisdiction(s: Any, dev: Device) -> None:
    """A device given an address or a community directly (demo, manual add): 警务区 and grid follow."""
    place: Place | None = None
    if dev.address_id is not None:
        addr = s.get(Address, dev.address_id)
        place = address_place(addr) if addr is not None else None
    elif dev.community_code:
        place = community_place(s, dev.community_code)
    if place is not None:
        dev.community_code, dev.police_area_id, dev.grid_id = place.community_code, place.police_area_id, place.grid_id
        if dev.placement != PENDING:
            dev.placement = PLACED


def county_of(device_id: str, community_code: str | None) -> str | None:
    """The county a device belongs to: its community's, else the GB/T 2260 county its 20-digit id names."""
    if community_code:
        return community_code[:6]
    return device_id[:6] if len(device_id) == 20 and device_id.isdigit() else None


# ---- scope ---------------------------------------------------------------------------------------------------------
def county_condition(county: str) -> ColumnElement[bool]:
    return or_(Device.community_code.startswith(county),
               and_(Device.community_code.is_(None), Device.device_id.startswith(county)))


def unplaced_condition(p: Principal) -> ColumnElement[bool]:
    """The 待安置 list: unplaced and pending devices, the county admin's by county, the city admin's all."""
    todo = Device.placement.in_((UNPLACED, PENDING))
    if p.role is Role.city_admin:
        return todo & true()
    if p.role is Role.county_admin and p.county_code:
        return todo & county_condition(p.county_code)
    return false()


def list_unplaced(store: Store, p: Principal, page: int = 1, size: int = 50) -> tuple[list[Device], int]:
    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可安置设备 / only administrators place devices")
    cond = unplaced_condition(p)
    with store.session() as s:
        total = s.scalar(select(func.count()).select_from(Device).where(cond)) or 0
        rows = list(s.scalars(select(Device).where(cond).order_by(Device.placement.desc(), Device.device_id)
                              .offset((page - 1) * size).limit(size)))
    return rows, total


# ---- placing -------------------------------------------------------------------------------------------------------
def _resolve(s: Any, p: Principal, address_code: str | None, longitude: Any, latitude: Any) -> Place:
    if address_code:
        addr = s.scalar(select(Address).where(Address.code == address_code.strip()))
        if addr is None:
            raise ValidationError(f"地址编码不存在：{address_code[:40]} / no such address")
        place = address_place(addr)
    elif longitude not in (None, "") or latitude not in (None, ""):
        lon, lat = _coordinate(longitude, 73, 136), _coordinate(latitude, 3, 54)
        if lon is None or lat is None:
            raise ValidationError("经纬度无效（经度 73–136，纬度 3–54）/ not a coordinate in China")
        found = point_place(s, lon, lat)
        if found is None:
            raise ValidationError("该点 1 公里内没有标准地址，请改选地址 / no address within 1 km of the point")
        place = found
    else:
        raise ValidationError("请填写地址编码或经纬度 / give an address code or a point")
    if p.role is Role.county_admin and not place.community_code.startswith(p.county_code or "-"):
        raise Forbidden("只能安置到本县区 / only places in your county")
    return place


def _check_device(p: Principal, dev: Device) -> None:
    if p.role is Role.county_admin and county_of(dev.device_id, dev.community_code) != p.county_code:
        raise NotFound("设备不存在 / device not found")


def place_device(store: Store, p: Principal, pk: int, *, address_code: str | None = None,
                 longitude: Any = None, latitude: Any = None, confirm: bool = False) -> Device:
    """Place one device at an address or a point (an administrator's placement: ``placed``), audited. With
    ``confirm`` (and no address or point) the place the device reported itself (``pending``) is accepted as it is."""
    from anfang.security import audit

    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可安置设备 / only administrators place devices")
    given = bool(address_code) or longitude not in (None, "") or latitude not in (None, "")
    with store.session() as s:
        dev = s.get(Device, pk)
        if dev is None:
            raise NotFound("设备不存在 / device not found")
        _check_device(p, dev)
        if confirm and not given:
            if dev.placement != PENDING or not dev.community_code:
                raise ValidationError("该设备没有待确认的自报位置，请选择地址或地图点 / "
                                      "no reported place to confirm: give an address or a point")
            if p.role is Role.county_admin and not dev.community_code.startswith(p.county_code or "-"):
                raise Forbidden("只能安置到本县区 / only places in your county")
            place = Place(dev.community_code, dev.police_area_id, dev.grid_id, dev.address_id)
            apply(dev, place, PLACED, f"confirmed:{(dev.attributes or {}).get('placement_source', 'device')}")
        else:
            place = _resolve(s, p, address_code, longitude, latitude)
            apply(dev, place, PLACED, "console")
        s.flush()
        s.expunge(dev)
    audit.record(store, p, "update", "device_placement", [dev.device_id],
                 f"community={place.community_code} address={place.address_id or ''}"
                 + (" confirmed" if confirm and not given else ""))
    return dev


def propose(store: Store, protocol: str, device_id: str, *, place_code: str | None = None,
            civil_code: str | None = None, address_text: str | None = None, longitude: Any = None,
            latitude: Any = None) -> bool:
    """A place from the device's own fields (``pending`` until confirmed); False when nothing usable was sent or an
    administrator has placed the device already."""
    with store.session() as s:
        dev = s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))
        if dev is None or dev.placement == PLACED:
            return False
        place: Place | None = None
        if address_text:
            addr = s.scalar(select(Address).where(Address.full_name == address_text.strip()).limit(1))
            place = address_place(addr) if addr is not None else None
        lon, lat = _coordinate(longitude, 73, 136), _coordinate(latitude, 3, 54)
        if place is None and lon is not None and lat is not None:
            place = point_place(s, lon, lat)
        for code in (place_code, civil_code):
            if place is None and code and len(code.strip()) >= 12:
                place = community_place(s, code.strip()[:12])
        if place is None:
            return False
        if (dev.community_code, dev.address_id, dev.placement) == (place.community_code, place.address_id, PENDING):
            return False
        apply(dev, place, PENDING, f"{protocol}-device")
        return True


def propose_from_catalog(store: Store, device_id: str, channels: list[dict[str, Any]]) -> bool:
    """GB/T 28181: the catalog's ``CivilCode`` / ``Address`` / ``Longitude`` / ``Latitude`` (of the device's own item,
    else of its first channel that has them) proposes a place for a device not placed yet."""
    ordered = sorted(channels, key=lambda c: c.get("channel_id") != device_id)
    for ch in ordered:
        if (ch.get("address_text") or ch.get("longitude") or len(ch.get("civil_code") or "") >= 12) and propose(
                store, "gb28181", device_id, civil_code=ch.get("civil_code"), address_text=ch.get("address_text"),
                longitude=ch.get("longitude"), latitude=ch.get("latitude")):
            return True
    return False


# ---- bulk ----------------------------------------------------------------------------------------------------------
COLUMNS = {"device_id": ("设备编码", "device_id", "设备国标编码", "设备ID"),
           "address_code": ("地址编码", "address_code", "标准地址编码"),
           "longitude": ("经度", "longitude", "lon"), "latitude": ("纬度", "latitude", "lat")}


def import_placements(store: Store, p: Principal, path: Path | str) -> dict[str, Any]:
    """Place devices from CSV / XLSX (设备编码 + 地址编码, or 设备编码 + 经度/纬度): every good row is placed in one
    transaction, every bad one reported with its row number and reason."""
    from anfang.registry.importer import read_rows
    from anfang.security import audit

    if p.role not in MANAGERS:
        raise Forbidden("仅管理员可安置设备 / only administrators place devices")
    t0 = time.perf_counter()
    src = read_rows(Path(path))
    try:
        header = [h.strip().lower() for h in src.header]
        col = {k: next((header.index(n.lower()) for n in names if n.lower() in header), None)
               for k, names in COLUMNS.items()}
        if col["device_id"] is None:
            raise ValidationError("缺少“设备编码”列 / the device_id column is missing")
        rows = [(n, cells) for n, cells in src.rows]
    finally:
        src.close()

    def cell(cells: list[str], key: str) -> str:
        i = col[key]
        return cells[i].strip() if i is not None and i < len(cells) else ""

    errors: list[dict[str, Any]] = []
    placed: list[str] = []
    with store.session() as s:
        ids = list({cell(c, "device_id") for _, c in rows if cell(c, "device_id")})
        devices: dict[str, list[Device]] = {}
        for i in range(0, len(ids), 500):
            for d in s.scalars(select(Device).where(Device.device_id.in_(ids[i:i + 500]))):
                devices.setdefault(d.device_id, []).append(d)
        points: dict[tuple[str, str, str], Place] = {}
        for n, cells in rows:
            if not any(c.strip() for c in cells):
                continue
            device_id = cell(cells, "device_id")
            try:
                found = devices.get(device_id)
                if not found:
                    raise ValidationError(f"设备不存在：{device_id[:24]} / no such device")
                for dev in found:
                    _check_device(p, dev)
                key = (cell(cells, "address_code"), cell(cells, "longitude"), cell(cells, "latitude"))
                place = points.get(key)
                if place is None:
                    place = points[key] = _resolve(s, p, key[0] or None, key[1], key[2])
                for dev in found:
                    apply(dev, place, PLACED, "import")
                placed.append(device_id)
            except (ValidationError, Forbidden, NotFound) as exc:
                errors.append({"row": n, "device_id": device_id[:24], "reason": exc.message})
    if placed:
        audit.record(store, p, "import", "device_placement", placed[:50],
                     f"placed={len(placed)} errors={len(errors)} file={Path(path).name[:60]}")
    return {"total": len(placed) + len(errors), "placed": len(placed), "errors": errors,
            "seconds": round(time.perf_counter() - t0, 3)}


# ---- the map on the 待安置 page ------------------------------------------------------------------------------------
def map_points(store: Store, p: Principal, limit: int = 3000) -> list[tuple[float, float, str, str]]:
    """(lon, lat, full name, code) of the standard addresses with coordinates an administrator may place devices
    at: his county's (the city admin's: all), community gates and buildings, at most ``limit``."""
    cond = [Address.lon.is_not(None), Address.lat.is_not(None), Address.level.in_(("community", "building"))]
    if p.role is Role.county_admin:
        cond.append(Address.county_code == (p.county_code or "-"))
    elif p.role is not Role.city_admin:
        return []
    with store.session() as s:
        rows = s.execute(select(Address.lon, Address.lat, Address.full_name, Address.code).where(*cond)
                         .order_by(Address.level.desc(), Address.code).limit(limit)).all()
    return [(float(lon), float(lat), name, code) for lon, lat, name, code in rows]


def map_svg(points: list[tuple[float, float, str, str]], width: int = 640) -> str:
    """The addresses as dots on an equirectangular map (scaled by cos(latitude)), with what the page's script
    (static/placement.js) needs to turn a click back into longitude / latitude. Empty without points."""
    from html import escape

    if not points:
        return ""
    lon0, lon1 = min(q[0] for q in points), max(q[0] for q in points)
    lat0, lat1 = min(q[1] for q in points), max(q[1] for q in points)
    margin = max(lon1 - lon0, lat1 - lat0, 0.004) * 0.1  # room around the outermost addresses
    lon0, lon1, lat0, lat1 = lon0 - margin, lon1 + margin, lat0 - margin, lat1 + margin
    k = math.cos(math.radians((lat0 + lat1) / 2))
    scale = width / ((lon1 - lon0) * k)
    height = max(120, int((lat1 - lat0) * scale))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="place-map" '
           f'data-testid="place-map" data-lon0="{lon0:.6f}" data-lat1="{lat1:.6f}" data-k="{k:.6f}" '
           f'data-scale="{scale:.3f}" role="img" aria-label="地图选点 / pick a point">',
           f'<rect x="0" y="0" width="{width}" height="{height}" class="map-bg"/>']
    for lon, lat, name, code in points:
        x, y = (lon - lon0) * k * scale, (lat1 - lat) * scale
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" class="map-addr" data-code="{escape(code)}">'
                   f'<title>{escape(name)}</title></circle>')
    out.append('<circle cx="-10" cy="-10" r="6" class="map-pick" id="map-pick"/></svg>')
    return "".join(out)
