"""Operations (运维): daily online rates per community / town / county from the status history, cameras whose
captures stopped arriving, work orders raised automatically from these signals, and the bandwidth and storage a
community needs. Thresholds are data (``operations_2021.json``).

Every query takes ``scope``: a SQLAlchemy condition on ``Device`` (the caller's jurisdiction; ``true()`` for all).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.exc import IntegrityError

from anfang.construction.models import WorkOrder
from anfang.construction.tiers import subsystem_of
from anfang.core import timefmt
from anfang.core.errors import NotFound, ValidationError
from anfang.devices import uptime
from anfang.devices.models import Device, DeviceStatusChange, DeviceUptimeDay, DeviceUptimeOpen
from anfang.devices.service import OFFLINE, ONLINE, online_share
from anfang.store.base import utcnow
from anfang.store.engine import Store, is_sqlite
from anfang.viid import days as viid_days
from anfang.viid.models import ViidObject

HERE = Path(__file__).parent
LEVELS = ("community", "town", "county")
CAPTURING_SUBSYSTEMS = frozenset({"video", "vehicle_recognition"})


@dataclass(frozen=True)
class OpsRules:
    no_capture_hours: float
    offline_hours: float
    min_retention_days: int
    storage_days: int
    default_bitrate_kbps: int
    deadline_hours: dict[str, float]
    causes: dict[str, str]


@cache
def load_ops_rules(version: str = "2021") -> OpsRules:
    d = json.loads((HERE / f"operations_{version}.json").read_text(encoding="utf-8"))
    return OpsRules(float(d["no_capture_hours"]), float(d["offline_hours"]), int(d["min_retention_days"]),
                    int(d["storage_days"]), int(d["default_bitrate_kbps"]),
                    {k: float(v) for k, v in d["deadline_hours"].items()}, dict(d["causes"]))


def region_of(community_code: str, level: str) -> str:
    """The GB/T 2260 code of a community's community / town (9 digits + 000) / county (6 digits)."""
    if level == "community":
        return community_code
    if level == "town":
        return community_code[:9] + "000"
    if level == "county":
        return community_code[:6]
    raise ValueError(f"bad level {level!r}")


# ---- online rates ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OnlineRate:
    code: str
    devices: int
    rate: float | None  # mean share of the day the devices were online (0..1)


def daily_online_rates(store: Store, day: datetime, level: str = "community",
                       scope: ColumnElement[bool] | None = None) -> list[OnlineRate]:
    """Online rate of each community (town, county) on the UTC day containing ``day``: the mean, over its devices,
    of the share of the day each was online. For today, the day so far. Read from the per-device per-day uptime
    rollup (``devices/uptime.py``): one query over the devices in scope, none over the status history."""
    start = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = min(start + timedelta(days=1), max(utcnow(), start + timedelta(seconds=1)))
    span = (end - start).total_seconds()
    groups: dict[str, list[float]] = defaultdict(list)
    with store.session() as s:
        rows = s.execute(
            select(Device.community_code, DeviceUptimeDay.online_s, DeviceUptimeOpen.status, DeviceUptimeOpen.since)
            .outerjoin(DeviceUptimeDay, (DeviceUptimeDay.device_pk == Device.id)
                       & (DeviceUptimeDay.day == uptime.day_key(start)))
            .outerjoin(DeviceUptimeOpen, DeviceUptimeOpen.device_pk == Device.id)
            .where(scope if scope is not None else true(), Device.community_code.is_not(None),
                   func.coalesce(Device.registered_at, Device.created_at) < end))
        for community, closed, status, since in rows:
            secs = closed or 0.0
            if status == ONLINE and since is not None and since < end:
                secs += (end - max(since, start)).total_seconds()
            groups[region_of(community, level)].append(secs / span)
    return [OnlineRate(code, len(v), sum(v) / len(v) if v else None) for code, v in sorted(groups.items())]


def daily_online_rates_full(store: Store, day: datetime, level: str = "community",
                       scope: ColumnElement[bool] | None = None) -> list[OnlineRate]:
    """The reference computation of :func:`daily_online_rates` from the raw status history (every change of every
    device in scope): kept for the rollup test and for repair checks, never called by a page."""
    start = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = min(start + timedelta(days=1), max(utcnow(), start + timedelta(seconds=1)))
    with store.session() as s:
        devices = dict(s.execute(select(Device.id, Device.community_code).where(
            scope if scope is not None else true(), Device.community_code.is_not(None),
            func.coalesce(Device.registered_at, Device.created_at) < end)).all())
        before: dict[int, str] = {}
        changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        ids = list(devices)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            last = (select(DeviceStatusChange.device_pk, func.max(DeviceStatusChange.at).label("at"))
                    .where(DeviceStatusChange.device_pk.in_(chunk), DeviceStatusChange.at < start)
                    .group_by(DeviceStatusChange.device_pk).subquery())
            for pk, st in s.execute(select(DeviceStatusChange.device_pk, DeviceStatusChange.status).join(
                    last, (last.c.device_pk == DeviceStatusChange.device_pk) & (last.c.at == DeviceStatusChange.at))
                    .order_by(DeviceStatusChange.id)):
                before[pk] = st
            for pk, at, st in s.execute(select(DeviceStatusChange.device_pk, DeviceStatusChange.at,
                                               DeviceStatusChange.status)
                                        .where(DeviceStatusChange.device_pk.in_(chunk),
                                               DeviceStatusChange.at >= start, DeviceStatusChange.at < end)
                                        .order_by(DeviceStatusChange.at, DeviceStatusChange.id)):
                changes[pk].append((at, st))
    groups: dict[str, list[float]] = defaultdict(list)
    for pk, community in devices.items():
        groups[region_of(community, level)].append(online_share(before.get(pk), changes.get(pk, []), start, end))
    return [OnlineRate(code, len(v), sum(v) / len(v) if v else None) for code, v in sorted(groups.items())]


# ---- captures -------------------------------------------------------------------------------------------------
def viid_id(dev: Device) -> str:
    """The device id its GA/T 1400 captures carry."""
    return str((dev.attributes or {}).get("viid_device_id") or dev.device_id)


def expects_captures(dev: Device) -> bool:
    """A capture camera: a GA/T 1400 APE, or a video / plate camera declaring capture kinds."""
    if dev.protocol == "viid":
        return True
    return (subsystem_of(dev.attributes, dev.type_code) in CAPTURING_SUBSYSTEMS
            and bool((dev.attributes or {}).get("capture")))


def last_captures(store: Store, viid_ids: Iterable[str]) -> dict[str, datetime]:
    """Newest capture time (shot_at) per GA/T 1400 device id."""
    ids = sorted(set(viid_ids))
    out: dict[str, datetime] = {}
    if ids and is_sqlite(store.engine):
        return viid_days.sqlite_last_shots(store, ids)
    with store.session() as s:
        for i in range(0, len(ids), 500):
            out.update(dict(s.execute(select(ViidObject.device_id, func.max(ViidObject.shot_at))
                                      .where(ViidObject.device_id.in_(ids[i:i + 500]))
                                      .group_by(ViidObject.device_id)).all()))
    return out


@dataclass(frozen=True, slots=True)
class Signal:
    """A fault signal on one device: what a work order is raised from."""

    device_pk: int
    device_id: str
    name: str
    community_code: str | None
    cause: str  # offline | no_captures | retention
    detail: str
    assignee: str | None = None


def _scoped_devices(store: Store, scope: ColumnElement[bool] | None) -> list[Device]:
    with store.session() as s:
        return list(s.scalars(select(Device).where(scope if scope is not None else true(),
                                                   Device.review != "rejected").order_by(Device.id)))


def stalled_cameras(store: Store, now: datetime | None = None, hours: float | None = None,
                    scope: ColumnElement[bool] | None = None) -> list[Signal]:
    """Online capture cameras with no capture for ``hours`` (or none ever, once registered that long)."""
    now = now or utcnow()
    rules = load_ops_rules()
    limit = now - timedelta(hours=rules.no_capture_hours if hours is None else hours)
    cams = [d for d in _scoped_devices(store, scope) if d.status == ONLINE and expects_captures(d)]
    last = last_captures(store, (viid_id(d) for d in cams))
    out = []
    for d in cams:
        seen = last.get(viid_id(d))
        since = d.registered_at or d.created_at
        if (seen is not None and seen < limit) or (seen is None and since is not None and since < limit):
            when = timefmt.fmt(seen, seconds=False) if seen else "从未"
            out.append(Signal(d.id, d.device_id, d.name, d.community_code, "no_captures",
                              f"在线但无抓拍，最后抓拍 {when}", (d.attributes or {}).get("maintainer")))
    return out


def fault_signals(store: Store, now: datetime | None = None, scope: ColumnElement[bool] | None = None) -> list[Signal]:
    """Every current fault: offline longer than ``offline_hours``, captures stopped, retention below 30 days."""
    now = now or utcnow()
    rules = load_ops_rules()
    devices = _scoped_devices(store, scope)
    offline_since: dict[int, datetime] = {}
    off = [d.id for d in devices if d.status == OFFLINE]
    with store.session() as s:
        for i in range(0, len(off), 500):
            offline_since.update(dict(s.execute(
                select(DeviceStatusChange.device_pk, func.max(DeviceStatusChange.at))
                .where(DeviceStatusChange.device_pk.in_(off[i:i + 500]), DeviceStatusChange.status == OFFLINE)
                .group_by(DeviceStatusChange.device_pk)).all()))
    out: list[Signal] = []
    for d in devices:
        who = (d.attributes or {}).get("maintainer")
        since = offline_since.get(d.id)
        if d.status == OFFLINE and since is not None and now - since >= timedelta(hours=rules.offline_hours):
            out.append(Signal(d.id, d.device_id, d.name, d.community_code, "offline",
                              f"离线 {(now - since).total_seconds() / 3600:.1f} 小时", who))
        days = (d.attributes or {}).get("retention_days")
        if isinstance(days, int | float) and not isinstance(days, bool) and days < rules.min_retention_days:
            out.append(Signal(d.id, d.device_id, d.name, d.community_code, "retention",
                              f"录像存储 {days:g} 天，少于 {rules.min_retention_days} 天", who))
        clock = (d.attributes or {}).get("clock") or {}
        if clock.get("off"):  # devices/clock.py: shot times off by more than the tolerance
            from anfang.devices.clock import clock_label

            out.append(Signal(d.id, d.device_id, d.name, d.community_code, "clock",
                              clock_label(d.attributes) or "时钟偏差", who))
    out += stalled_cameras(store, now, scope=scope)
    return out


# ---- work orders ----------------------------------------------------------------------------------------------
def raise_work_orders(store: Store, signals: Iterable[Signal], now: datetime | None = None) -> list[WorkOrder]:
    """Open a work order for each signal unless one is already open for that device and cause. Returns the new
    ones. Safe to run repeatedly and concurrently (the partial unique index has the last word)."""
    now = now or utcnow()
    rules = load_ops_rules()
    created: list[WorkOrder] = []
    with store.session() as s:
        open_now = set(s.execute(select(WorkOrder.device_pk, WorkOrder.cause).where(WorkOrder.state == "open")).all())
        for sig in signals:
            if (sig.device_pk, sig.cause) in open_now:
                continue
            order = WorkOrder(device_pk=sig.device_pk, community_code=sig.community_code, cause=sig.cause,
                              detail=sig.detail[:256], assignee=sig.assignee, opened_at=now, state="open",
                              deadline=now + timedelta(hours=rules.deadline_hours.get(sig.cause, 48)))
            try:
                with s.begin_nested():
                    s.add(order)
                    s.flush()
            except IntegrityError:
                continue
            open_now.add((sig.device_pk, sig.cause))
            created.append(order)
    return created


def work_order_dict(order: WorkOrder, device: Device | None, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    rules = load_ops_rules()
    return {"id": order.id, "device_pk": order.device_pk, "device_id": device.device_id if device else None,
            "device_name": device.name if device else None, "community_code": order.community_code,
            "cause": order.cause, "cause_label": rules.causes.get(order.cause, order.cause), "detail": order.detail,
            "assignee": order.assignee, "opened_at": order.opened_at.isoformat(),
            "deadline": order.deadline.isoformat(), "state": order.state,
            "overdue": order.state == "open" and order.deadline < now,
            "closed_at": order.closed_at.isoformat() if order.closed_at else None,
            "closed_by": order.closed_by, "close_cause": order.close_cause}


def list_work_orders(store: Store, scope: ColumnElement[bool] | None = None, state: str | None = None,
                     now: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Work orders on devices in ``scope``, newest first; ``overdue`` computed against ``now``."""
    stmt = select(WorkOrder, Device).join(Device, Device.id == WorkOrder.device_pk).where(
        scope if scope is not None else true())
    if state:
        stmt = stmt.where(WorkOrder.state == state)
    with store.session() as s:
        rows = s.execute(stmt.order_by(WorkOrder.opened_at.desc(), WorkOrder.id.desc()).limit(limit)).all()
    return [work_order_dict(o, d, now) for o, d in rows]


def assign_work_order(store: Store, order_id: int, assignee: str, scope: ColumnElement[bool] | None = None,
                      deadline: datetime | None = None) -> dict[str, Any]:
    with store.session() as s:
        row = s.execute(select(WorkOrder, Device).join(Device, Device.id == WorkOrder.device_pk).where(
            WorkOrder.id == order_id, scope if scope is not None else true())).first()
        if row is None:
            raise NotFound("工单不存在 / work order not found")
        order, dev = row
        order.assignee = assignee[:64]
        if deadline is not None:
            order.deadline = deadline
        s.flush()
        return work_order_dict(order, dev)


def close_work_order(store: Store, order_id: int, by: str, cause: str, scope: ColumnElement[bool] | None = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """Close an open order with the fault's cause (required: the circular counts causes)."""
    if not cause.strip():
        raise ValidationError("请填写关闭原因 / a closing cause is required")
    now = now or utcnow()
    with store.session() as s:
        row = s.execute(select(WorkOrder, Device).join(Device, Device.id == WorkOrder.device_pk).where(
            WorkOrder.id == order_id, scope if scope is not None else true())).first()
        if row is None:
            raise NotFound("工单不存在 / work order not found")
        order, dev = row
        if order.state != "open":
            raise ValidationError("工单已关闭 / work order already closed")
        order.state, order.closed_at, order.closed_by, order.close_cause = "closed", now, by[:64], cause.strip()[:256]
        s.flush()
        return work_order_dict(order, dev, now)


# ---- bandwidth and storage ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Need:
    channels: int
    bandwidth_mbps: float  # sustained upstream for all channels
    storage_tb: float  # recordings kept ``days`` days (decimal TB)


def storage_need(streams: Iterable[tuple[float, int]], days: int = 30) -> Need:
    """Bandwidth and storage for ``(bitrate_kbps, channels)`` streams kept ``days`` days:
    bitrate × channels × days."""
    kbps = 0.0
    channels = 0
    for bitrate, n in streams:
        kbps += bitrate * n
        channels += n
    return Need(channels, kbps / 1000, kbps * 1000 / 8 * 86400 * days / 1e12)


def community_storage_need(store: Store, community_code: str) -> Need:
    """What a community's video devices need: each device's ``attributes["bitrate_kbps"]`` (default from the
    rules) × its channel count (``attributes["channels"]``, default 1) × ``storage_days``."""
    rules = load_ops_rules()
    streams = []
    for d in _scoped_devices(store, Device.community_code == community_code):
        if subsystem_of(d.attributes, d.type_code) not in CAPTURING_SUBSYSTEMS:
            continue
        a = d.attributes or {}
        streams.append((float(a.get("bitrate_kbps") or rules.default_bitrate_kbps), int(a.get("channels") or 1)))
    return storage_need(streams, rules.storage_days)
