"""Device registry operations (no HTTP, no protocol): add/update devices and channels, status transitions with
history, uptime per day. Adapters call these (from a worker thread: they are synchronous database work) and
publish the ``Event`` a transition returns on the bus."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from anfang.core.events import Event, EventKind
from anfang.devices import uptime
from anfang.devices.models import Channel, Device, DeviceStatusChange
from anfang.store.base import utcnow
from anfang.store.engine import Store

ONLINE, OFFLINE, UNKNOWN = "online", "offline", "unknown"

_DEVICE_FIELDS = {c.name for c in Device.__table__.columns} - {"id", "protocol", "device_id", "created_at"}
_CHANNEL_FIELDS = {c.name for c in Channel.__table__.columns} - {"id", "device_pk", "channel_id", "updated_at"}


@dataclass(frozen=True)
class StatusResult:
    changed: bool
    event: Event | None  # the device_status event to publish when the status changed


class DeviceService:
    def __init__(self, store: Store, *, node_id: str | None = None) -> None:
        self.store = store
        self.node_id = node_id

    def get(self, protocol: str, device_id: str) -> Device | None:
        with self.store.session() as s:
            return s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))

    def upsert(self, protocol: str, device_id: str, **fields: Any) -> Device:
        """Create the device or update the given fields; unknown field names are an error."""
        unknown = set(fields) - _DEVICE_FIELDS
        if unknown:
            raise TypeError(f"unknown device fields: {sorted(unknown)}")
        with self.store.session() as s:
            dev = s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))
            if dev is None:
                dev = Device(protocol=protocol, device_id=device_id, attributes={})
                s.add(dev)
            for key, value in fields.items():
                setattr(dev, key, value)
            if ({"community_code", "address_id"} & set(fields)
                    and not {"police_area_id", "grid_id"} & set(fields)):
                from anfang.devices.placement import fill_jurisdiction

                fill_jurisdiction(s, dev)  # given a community or an address: 警务区 and grid follow
            s.flush()
            return dev

    def set_status(self, protocol: str, device_id: str, status: str, reason: str = "",
                   at: datetime | None = None) -> StatusResult:
        """Record a transition (history row + device row) when ``status`` differs from the current one."""
        if status not in (ONLINE, OFFLINE, UNKNOWN):
            raise ValueError(f"bad status {status!r}")
        at = at or utcnow()
        with self.store.session() as s:
            dev = s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))
            if dev is None:
                raise LookupError(f"unknown device {protocol}:{device_id}")
            if status == ONLINE:
                dev.last_seen = at
            if dev.status == status:
                return StatusResult(False, None)
            previous = dev.status
            dev.status = status
            s.add(DeviceStatusChange(device_pk=dev.id, at=at, status=status, reason=reason))
            s.flush()
            uptime.append(s, {dev.id: [(at, status)]})  # the uptime rollup, in the same transaction
            if status == OFFLINE:
                _channels_offline(s, [dev.id])
            event = Event(kind=EventKind.device_status, source=device_id, at=at, node_id=self.node_id,
                          community_code=dev.community_code, address_id=dev.address_id, longitude=dev.longitude,
                          latitude=dev.latitude,
                          data={"protocol": protocol, "status": status, "previous": previous, "reason": reason,
                                "name": dev.name})
        return StatusResult(True, event)

    def set_status_many(self, protocol: str, changes: list[tuple[str, str, str, datetime]],
                        create: dict[str, dict[str, Any]] | None = None) -> list[Event]:
        """Many ``(device_id, status, reason, at)`` transitions in one transaction (a registration storm); devices
        in ``create`` (device_id -> fields) are added first when missing. Returns the events to publish."""
        events: list[Event] = []
        with self.store.session() as s:
            ids = list({c[0] for c in changes} | set(create or {}))
            devs: dict[str, Device] = {}
            for i in range(0, len(ids), 500):
                devs.update({d.device_id: d for d in s.scalars(select(Device).where(
                    Device.protocol == protocol, Device.device_id.in_(ids[i:i + 500])))})
            for device_id, fields in (create or {}).items():
                if device_id not in devs:
                    devs[device_id] = Device(protocol=protocol, device_id=device_id, attributes={}, **fields)
                    s.add(devs[device_id])
            s.flush()
            gone: list[int] = []
            added: dict[int, list[tuple[datetime, str]]] = {}
            for device_id, status, reason, at in changes:
                dev = devs.get(device_id)
                if dev is None or status not in (ONLINE, OFFLINE, UNKNOWN):
                    continue
                if status == ONLINE:
                    dev.last_seen = at
                if dev.status == status:
                    continue
                previous, dev.status = dev.status, status
                s.add(DeviceStatusChange(device_pk=dev.id, at=at, status=status, reason=reason))
                added.setdefault(dev.id, []).append((at, status))
                if status == OFFLINE:
                    gone.append(dev.id)
                events.append(Event(kind=EventKind.device_status, source=device_id, at=at, node_id=self.node_id,
                                    community_code=dev.community_code, address_id=dev.address_id,
                                    longitude=dev.longitude, latitude=dev.latitude,
                                    data={"protocol": protocol, "status": status, "previous": previous,
                                          "reason": reason, "name": dev.name}))
            _channels_offline(s, gone)
            s.flush()
            uptime.append(s, added)  # the uptime rollup, in the same transaction
        return events

    def touch_many(self, protocol: str, last_seen: dict[str, datetime]) -> None:
        """Batch ``last_seen`` update (keepalives are kept in memory and flushed periodically)."""
        if not last_seen:
            return
        from sqlalchemy import bindparam, update

        stmt = (update(Device).where(Device.protocol == protocol, Device.device_id == bindparam("did"))
                .values(last_seen=bindparam("ts")).execution_options(synchronize_session=False))
        with self.store.session() as s:
            s.connection().execute(stmt, [{"did": k, "ts": v} for k, v in last_seen.items()])

    def upsert_channels(self, protocol: str, device_id: str, channels: list[dict[str, Any]]) -> int:
        """Insert or update channels by ``channel_id``; returns how many were written."""
        with self.store.session() as s:
            dev = s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))
            if dev is None:
                raise LookupError(f"unknown device {protocol}:{device_id}")
            existing = {c.channel_id: c for c in s.scalars(select(Channel).where(Channel.device_pk == dev.id))}
            for raw in channels:
                data = dict(raw)
                cid = str(data.pop("channel_id"))
                unknown = set(data) - _CHANNEL_FIELDS
                if unknown:
                    raise TypeError(f"unknown channel fields: {sorted(unknown)}")
                ch = existing.get(cid)
                if ch is None:
                    ch = Channel(device_pk=dev.id, channel_id=cid, attributes={})
                    s.add(ch)
                    existing[cid] = ch
                for key, value in data.items():
                    setattr(ch, key, value)
            return len(channels)

    def channels(self, protocol: str, device_id: str) -> list[Channel]:
        with self.store.session() as s:
            dev = s.scalar(select(Device).where(Device.protocol == protocol, Device.device_id == device_id))
            if dev is None:
                return []
            return list(s.scalars(select(Channel).where(Channel.device_pk == dev.id).order_by(Channel.channel_id)))

    def history(self, device_pk: int, since: datetime | None = None) -> list[DeviceStatusChange]:
        with self.store.session() as s:
            stmt = select(DeviceStatusChange).where(DeviceStatusChange.device_pk == device_pk)
            if since is not None:
                stmt = stmt.where(DeviceStatusChange.at >= since)
            return list(s.scalars(stmt.order_by(DeviceStatusChange.at, DeviceStatusChange.id)))

    def uptime(self, device_pk: int, start: datetime, end: datetime) -> float:
        """Share of [start, end) the device was online, from its status history (0.0 – 1.0)."""
        if end <= start:
            raise ValueError("end must be after start")
        with self.store.session() as s:
            before = s.scalar(select(DeviceStatusChange.status).where(
                DeviceStatusChange.device_pk == device_pk, DeviceStatusChange.at < start)
                .order_by(DeviceStatusChange.at.desc(), DeviceStatusChange.id.desc()).limit(1))
            changes = list(s.execute(select(DeviceStatusChange.at, DeviceStatusChange.status).where(
                DeviceStatusChange.device_pk == device_pk, DeviceStatusChange.at >= start,
                DeviceStatusChange.at < end).order_by(DeviceStatusChange.at, DeviceStatusChange.id)))
        return online_share(before, [(at, st) for at, st in changes], start, end)

    def daily_uptime(self, device_pk: int, first_day: datetime, days: int) -> list[float]:
        """Uptime of each UTC day from ``first_day`` (midnight) on."""
        day0 = first_day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return [self.uptime(device_pk, day0 + timedelta(days=i), day0 + timedelta(days=i + 1)) for i in range(days)]


def _channels_offline(s: Any, device_pks: list[int]) -> None:
    """A device that goes offline takes its channels with it (a channel cannot be seen through a dead NVR); they
    come back with the device's next catalog, which the adapters ask for when it is online again."""
    from sqlalchemy import update

    for i in range(0, len(device_pks), 500):
        s.execute(update(Channel).where(Channel.device_pk.in_(device_pks[i:i + 500]), Channel.status != OFFLINE)
                  .values(status=OFFLINE).execution_options(synchronize_session=False))


def online_share(initial: str | None, changes: list[tuple[datetime, str]], start: datetime, end: datetime) -> float:
    """Pure: the online share of [start, end) given the status before ``start`` and the ordered transitions."""
    online_s, state, t = 0.0, initial, start
    for at, status in changes:
        at = max(start, min(at, end))
        if state == ONLINE:
            online_s += (at - t).total_seconds()
        state, t = status, at
    if state == ONLINE:
        online_s += (end - t).total_seconds()
    return online_s / (end - start).total_seconds()
