"""The scheduled run of the behaviour models over the event log and the registry (hourly by default).

Reads the last week's passages from the event log, applies the pure models of ``behaviour.py`` and raises the
warnings through the service (dedup keeps one open warning per person / credential / plate / device)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Text, select

from anfang.bus.base import Bus
from anfang.core.events import Event, EventKind
from anfang.devices.models import Device
from anfang.registry.models import Person
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.store.eventlog import recent
from anfang.warnings import behaviour as bm
from anfang.warnings.service import Candidate, WarningService

log = structlog.get_logger(__name__)


class BehaviourJob:
    def __init__(self, store: Store, service: WarningService, bus: Bus | None = None, *,
                 config: bm.BehaviourConfig | None = None, every_s: float = 3600) -> None:
        self.store, self.service, self.bus = store, service, bus
        self.cfg = config or bm.BehaviourConfig()
        self.every_s = every_s
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                for v in await asyncio.to_thread(self.run_once):
                    if self.bus is not None:
                        await self.bus.publish(Event(kind=EventKind.warning, source=v["source"],
                                                     data={"step": "raised", "warning": v},
                                                     community_code=v.get("community_code")))
            except Exception:  # noqa: BLE001 - try again next hour
                log.exception("behaviour_job_failed")

    def run_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or utcnow()
        cfg = self.cfg
        with self.store.session() as s:
            passages = recent(s, [EventKind.person_passage], now - timedelta(days=7))
            vehicles = recent(s, [EventKind.vehicle_passage], now - timedelta(days=7))
            elderly = list(s.execute(select(Person.id, Person.name, Person.address_id)
                                     .where(Person.labels.cast(Text).contains('"elderly_alone"'))))
            devices = list(s.execute(select(Device.device_id, Device.name, Device.last_seen, Device.address_id,
                                            Device.community_code).where(Device.review == "approved")))
        found: list[Candidate] = []
        last_seen: dict[int, datetime | None] = {pid: None for pid, _, _ in elderly}
        for e in passages:
            pid = e.data.get("person_id")
            if pid in last_seen and (last_seen[pid] is None or e.at > last_seen[pid]):
                last_seen[pid] = e.at
        names = {pid: (name, addr) for pid, name, addr in elderly}
        for pid in bm.elderly_unseen(last_seen, now, cfg):
            name, addr = names[pid]
            found.append(Candidate(rule="behaviour.elderly_unseen", category="behaviour", severity=2,
                                   title=f"独居老人{name}超过{cfg.elderly_unseen_hours:.0f}小时未出入",
                                   source=f"person:{pid}", dedup_key=f"elderly:{pid}", address_id=addr, at=now,
                                   notify_roles=frozenset({"police", "grid_worker"}), data={"person_id": pid}))
        uses = [(str(e.data["credential"]), e.at) for e in passages if e.data.get("credential")]
        where = {str(e.data["credential"]): e for e in passages if e.data.get("credential")}
        for cred in bm.heavy_credentials(uses, cfg):
            e = where[cred]
            found.append(Candidate(rule="behaviour.group_rental", category="behaviour", severity=2,
                                   title=f"疑似群租：凭证{cred}连续{cfg.rental_consecutive_days}天每天使用超过"
                                         f"{cfg.rental_uses_per_day}次", source=e.source,
                                   dedup_key=f"rental:{cred}", event=e, at=now,
                                   notify_roles=frozenset({"police", "grid_worker"}), data={"credential": cred}))
        plate_of = {e.id: str(e.data.get("plate") or e.data.get("plate_no") or "") for e in vehicles}
        night = bm.night_vehicles([(plate_of[e.id], e.at) for e in vehicles if plate_of[e.id]], now, cfg)
        last_vehicle = {plate_of[e.id]: e for e in vehicles}
        for plate, n in night.items():
            e = last_vehicle[plate]
            found.append(Candidate(rule="behaviour.night_vehicle", category="behaviour", severity=3,
                                   title=f"车辆{plate}一周内夜间进入{n}次", source=e.source,
                                   dedup_key=f"night:{plate}", event=e, at=now, data={"plate": plate, "times": n}))
        info = {d[0]: d for d in devices}
        for dev in bm.silent_devices({d[0]: d[2] for d in devices}, now, cfg):
            _, name, _, addr, community = info[dev]
            found.append(Candidate(rule="behaviour.device_silent", category="device", severity=3,
                                   title=f"设备{name or dev}超过{cfg.device_silent_hours:.0f}小时无上报",
                                   source=dev, dedup_key=f"silent:{dev}", address_id=addr, community_code=community,
                                   at=now, notify_roles=frozenset({"police", "property_staff"})))
        raised = [v for c in found if (v := self.service.raise_warning(c)) is not None]
        return raised
