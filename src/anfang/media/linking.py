"""Which cameras to show: the channel tree of a user's own channels (community → place → channel) and the cameras
linked to a warning (报警联动).

Links of a device or place (a door, a perimeter sensor, a capture camera) are configurable
(``Device.attributes["video_links"]``: channel ids in order); by default a warning shows
1. the channel that raised it (a GB/T 28181 alarm, or a capture camera that is also a GB/T 28181 channel),
2. else the cameras at the warning's own address,
3. else the cameras of the same community, nearest first.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import ColumnElement, or_, select

from anfang.core.errors import Forbidden, NotFound, ValidationError
from anfang.devices.models import Channel, Device
from anfang.registry.models import Region
from anfang.security import audit
from anfang.security.scope import Principal
from anfang.store.engine import Store

MAX_LINKED = 4
PROTOCOL = "gb28181"


def channel_tree(store: Store, p: Principal, scope: ColumnElement[bool], *, q: str = "",
                 live: dict[str, Any] | None = None, limit: int = 2000) -> dict[str, Any]:
    live = live or {}
    # the columns the tree shows, not whole rows: 2,000 channels with their devices' JSON attributes cost more to
    # load than to find at city scale (benchmarks/README.md, "City scale")
    stmt = (select(Channel.channel_id, Channel.name, Channel.status, Device.device_id, Device.name, Device.status,
                   Device.community_code)
            .join(Device, Device.id == Channel.device_pk)
            .where(Device.protocol == PROTOCOL, Device.review == "approved", scope))
    if q:
        stmt = stmt.where(or_(Channel.name.contains(q, autoescape=True), Channel.channel_id.startswith(q)))
    with store.session() as s:
        rows = s.execute(stmt.order_by(Device.community_code, Device.name, Channel.channel_id).limit(limit)).all()
        codes = {r[6] for r in rows if r[6]}
        names = dict(s.execute(select(Region.code, Region.name).where(Region.code.in_(codes))).all())
    communities: dict[str, dict[str, Any]] = {}
    for ch_id, ch_name, ch_status, dev_id, dev_name, dev_status, code in rows:
        code = code or ""
        community = communities.setdefault(code, {"code": code, "name": names.get(code) or "未安置 / unplaced",
                                                  "places": {}})
        place = community["places"].setdefault(dev_id, {"device_id": dev_id, "name": dev_name, "channels": []})
        st = live.get(dev_id)
        device_status = st.status if st is not None else dev_status
        status = "offline" if device_status != "online" or ch_status == "offline" else "online"
        place["channels"].append({"channel_id": ch_id, "name": ch_name or ch_id, "status": status})
    out = [{**c, "places": list(c["places"].values())} for c in communities.values()]
    return {"communities": out, "channels": len(rows), "truncated": len(rows) >= limit}


def _distance(lon1: float | None, lat1: float | None, lon2: float | None, lat2: float | None) -> float:
    if None in (lon1, lat1, lon2, lat2):
        return math.inf
    kx = math.cos(math.radians(lat1 or 0)) * 111_320
    return math.hypot(((lon1 or 0) - (lon2 or 0)) * kx, ((lat1 or 0) - (lat2 or 0)) * 110_540)


def _item(ch: Channel, dev: Device, reason: str) -> dict[str, Any]:
    return {"channel_id": ch.channel_id, "name": ch.name or ch.channel_id, "device_id": dev.device_id,
            "reason": reason}


def linked_channels(store: Store, warning: dict[str, Any]) -> list[dict[str, Any]]:
    """The cameras to open for a warning (the caller has checked the principal may see the warning)."""
    base = (select(Channel, Device).join(Device, Device.id == Channel.device_pk)
            .where(Device.protocol == PROTOCOL, Device.review == "approved"))
    source = str(warning.get("source") or "")
    data = warning.get("data") or {}
    candidates = [x for x in (source, data.get("device_id"), data.get("channel_id"), data.get("ape_id")) if x]
    with store.session() as s:
        for sid in candidates:  # 1a. configured links of the device / place that raised it
            dev = s.scalar(select(Device).where(Device.device_id == str(sid)).limit(1))
            links = (dev.attributes or {}).get("video_links") if dev is not None else None
            if links:
                rows = s.execute(base.where(Channel.channel_id.in_([str(x) for x in links]))).all()
                order = {c: i for i, c in enumerate(links)}
                rows.sort(key=lambda r: order.get(r[0].channel_id, 99))
                if rows:
                    return [_item(c, d, "configured") for c, d in rows[:MAX_LINKED]]
        for sid in candidates:  # 1b. the camera itself (alarm of a channel, capture camera = channel)
            rows = s.execute(base.where(or_(Channel.channel_id == str(sid), Device.device_id == str(sid)))
                             .order_by(Channel.channel_id).limit(MAX_LINKED)).all()
            if rows:
                exact = [r for r in rows if r[0].channel_id == str(sid)]
                return [_item(c, d, "source") for c, d in (exact or rows)]
        if warning.get("address_id"):  # 2. cameras at the same address
            rows = s.execute(base.where(Device.address_id == warning["address_id"])
                             .order_by(Channel.channel_id).limit(MAX_LINKED)).all()
            if rows:
                return [_item(c, d, "address") for c, d in rows]
        if warning.get("community_code"):  # 3. the same community, nearest first
            rows = s.execute(base.where(Device.community_code == warning["community_code"]).limit(500)).all()
            lon, lat = warning.get("longitude"), warning.get("latitude")
            rows.sort(key=lambda r: (_distance(lon, lat, r[0].longitude or r[1].longitude,
                                               r[0].latitude or r[1].latitude), r[0].channel_id))
            return [_item(c, d, "community") for c, d in rows[:MAX_LINKED]]
    return []


def set_links(store: Store, p: Principal, scope: ColumnElement[bool], device_id: str,
              channels: list[str]) -> dict[str, Any]:
    """Link a device or place to cameras; both must be inside the principal's scope."""
    with store.session() as s:
        dev = s.scalar(select(Device).where(Device.device_id == device_id).limit(1))
        if dev is None:
            raise NotFound("设备不存在 / device not found")
        if s.scalar(select(Device.id).where(Device.id == dev.id, scope)) is None:
            raise Forbidden("该设备不在您的辖区内 / this device is outside your jurisdiction")
        wanted = list(dict.fromkeys(str(c) for c in channels))
        found = set(s.scalars(select(Channel.channel_id).join(Device, Device.id == Channel.device_pk)
                              .where(Channel.channel_id.in_(wanted), scope))) if wanted else set()
        missing = [c for c in wanted if c not in found]
        if missing:
            raise ValidationError(f"通道不存在或不在辖区内 / unknown channels: {', '.join(missing[:5])}")
        dev.attributes = {**(dev.attributes or {}), "video_links": wanted}
    audit.record(store, p, "video.links", "device", [device_id], ",".join(wanted))
    return {"device_id": device_id, "channels": wanted}
