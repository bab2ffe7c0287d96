"""The warning engine: a bus consumer that turns events into warnings and publishes each new warning back on the
bus (kind ``warning``) for the push hub and the federation forwarder. Database work runs in worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import select

from anfang.bus.base import Bus, Subscription
from anfang.core.events import Event, EventKind
from anfang.registry.models import Person
from anfang.store.engine import Store
from anfang.warnings.rules import ACCESS_RULES, SensorEvaluator
from anfang.warnings.service import Candidate, WarningService

log = structlog.get_logger(__name__)

FaceMatcher = Callable[[Event], Awaitable[list[dict[str, Any]]]]
DOOR_METHODS = {"face": "刷脸", "card": "刷卡", "qrcode": "扫码", "password": "密码", "remote": "远程",
                "exit_button": "出门按钮"}


def face_dedup_key(match: dict[str, Any], source: str) -> str:
    """One warning per watchlisted person and camera: keyed by the person (registry id, else the label), never by
    the enrolled photo that matched best — a person enrolled with several photos matches a different one from
    capture to capture, and each repeat must update the same warning."""
    who = match.get("person_id")
    if who is None:
        who = "l" + hashlib.sha256(str(match.get("label") or match.get("entry_id")).encode()).hexdigest()[:16]
    return f"face:{match.get('watchlist_id')}:{who}:{source}"


class WarningEngine:
    kinds = (EventKind.sensor_reading, EventKind.vehicle_passage, EventKind.alarm, EventKind.device_status,
             EventKind.face_capture, EventKind.person_passage)

    def __init__(self, store: Store, bus: Bus, service: WarningService, *,
                 evaluator: SensorEvaluator | None = None, face_matcher: FaceMatcher | None = None,
                 escalate_every_s: float = 30.0) -> None:
        self.store, self.bus, self.service = store, bus, service
        self.evaluator = evaluator or SensorEvaluator()
        self.face_matcher = face_matcher
        self.escalate_every_s = escalate_every_s
        self._sub: Subscription | None = None
        self._ticker: asyncio.Task | None = None
        self.raised = 0

    async def start(self) -> None:
        self._sub = await self.bus.subscribe(self.on_event, kinds=self.kinds, durable="warnings")
        self._ticker = asyncio.get_running_loop().create_task(self._escalation_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._sub is not None:
            await self._sub.stop()

    def _capture_photos(self, image_ids: list[str]) -> dict[str, str]:
        """The console links of a vehicle capture's images: the scene (GA/T 1400 type 01) as ``image``, the plate
        crop (type 02) as ``plate_image`` - shown on the warning like a face hit's capture."""
        from anfang.viid.models import ViidImage

        with self.store.session() as s:
            rows = list(s.execute(select(ViidImage.id, ViidImage.type)
                                  .where(ViidImage.image_id.in_([str(i) for i in image_ids if i]))
                                  .order_by(ViidImage.id)))
        by_type: dict[str, int] = {}
        for pk, kind in rows:
            by_type.setdefault(kind or "", pk)
        scene = by_type.get("01", next((pk for kind, pk in by_type.items() if kind != "02"), None))
        out = {"image": f"/viid/images/{scene}"} if scene is not None else {}
        if "02" in by_type:
            out["plate_image"] = f"/viid/images/{by_type['02']}"
        return out

    async def _escalation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.escalate_every_s)
            try:
                for v in await asyncio.to_thread(self.service.escalate_overdue):
                    await self._publish(v, "escalated")
            except Exception:  # noqa: BLE001 - keep escalating after a database hiccup
                log.exception("escalation_failed")

    async def on_event(self, e: Event) -> None:
        candidates, recoveries = await self.evaluate(e)
        for key in recoveries:
            v = await asyncio.to_thread(self.service.recover, key, e.at)
            if v is not None:
                await self._publish(v, "recovered")
        for c in candidates:
            out = await asyncio.to_thread(self.service.raise_or_update, c)
            if out is not None:
                step, v = out
                self.raised += step == "raised"
                await self._publish(v, step)  # "updated": a repeat sighting with a new photo, to the terminal

    async def _publish(self, v: dict[str, Any], step: str) -> None:
        await self.bus.publish(Event(kind=EventKind.warning, source=v["source"], data={"step": step, "warning": v},
                                     community_code=v.get("community_code"), address_id=v.get("address_id"),
                                     longitude=v.get("longitude"), latitude=v.get("latitude")))

    async def evaluate(self, e: Event) -> tuple[list[Candidate], list[str]]:
        """The candidates an event gives rise to, and the dedup keys of warnings it recovers."""
        d = e.data
        match e.kind:
            case EventKind.sensor_reading:
                out, rec = [], []
                for o in self.evaluator.evaluate(e.source, str(d.get("sensor_type", "")), d.get("readings") or {}):
                    key = f"{o.rule.code}:{e.source}"
                    if o.action == "recover":
                        rec.append(key)
                        continue
                    name = d.get("device_name") or e.source
                    out.append(Candidate(rule=o.rule.code, category="sensor", title=f"{o.rule.title_zh}（{name}）",
                                         source=e.source, dedup_key=key, severity=o.rule.severity, event=e,
                                         notify_roles=o.rule.notify,
                                         data={"metric": o.rule.metric, "value": o.value, "low": o.rule.low,
                                               "high": o.rule.high, "readings": d.get("readings"),
                                               "title_en": o.rule.title_en}))
                return out, rec
            case EventKind.vehicle_passage:
                plate = str(d.get("plate") or d.get("plate_no") or "")  # MQTT gates: plate; GA/T 1400: plate_no
                if not plate:
                    return [], []
                matches = await asyncio.to_thread(self.service.match_plate, plate)
                photos = {"image": d.get("image"), "scene_image": d.get("scene_image")}
                if matches and not photos["image"] and d.get("image_ids"):  # a GA/T 1400 capture: its stored images
                    photos.update(await asyncio.to_thread(self._capture_photos, d["image_ids"]))
                return [Candidate(rule="plate.watchlist", category="plate", severity=m["severity"],
                                  title=f"布控车辆：{m['listed']}（识别为{plate}，{m['watchlist']}）",
                                  source=e.source, dedup_key=f"plate:{m['watchlist_id']}:{m['listed']}:{e.source}",
                                  event=e, data={**m, **photos})
                        for m in matches], []
            case EventKind.face_capture:
                if self.face_matcher is None:
                    return [], []
                matches = await self.face_matcher(e)
                return [Candidate(rule="face.watchlist", category="face", severity=1,
                                  title=f"布控人员：{m.get('label')}（{m.get('watchlist')}，相似度"
                                        f"{round(100 * float(m.get('similarity', 0)))}%）",
                                  source=e.source, dedup_key=face_dedup_key(m, e.source), event=e,
                                  data={**m, "capture_image": m.get("image") or d.get("image")}) for m in matches], []
            case EventKind.alarm:
                kind = str(d.get("alarm_type") or d.get("type") or "alarm")
                prio = int(d.get("priority") or 2)
                title = d.get("title") or d.get("description") or "设备报警"
                return [Candidate(rule=f"alarm.{kind}", category="alarm", severity=max(1, min(3, prio)),
                                  title=f"{title}（{d.get('device_name') or e.source}）", source=e.source,
                                  dedup_key=f"alarm:{kind}:{e.source}:{d.get('zone', '')}", event=e, data=dict(d),
                                  notify_roles=frozenset({"police", "property_staff"}))], []
            case EventKind.device_status:
                key = f"device.offline:{e.source}"
                if d.get("status") == "online":
                    return [], [key]
                if d.get("status") != "offline":
                    return [], []
                return [Candidate(rule="device.offline", category="device", severity=3,
                                  title=f"设备离线：{d.get('name') or e.source}", source=e.source, dedup_key=key,
                                  event=e, data=dict(d), notify_roles=frozenset({"police", "property_staff"}))], []
            case EventKind.person_passage:
                access = ACCESS_RULES.get(str(d.get("event") or ""))
                if access is not None:  # a door forced or held open: an alarm whoever (if anyone) passed
                    name = d.get("device_name") or e.source
                    return [Candidate(rule=access.code, category="access", severity=access.severity,
                                      title=f"{access.title_zh}（{name}）", source=e.source,
                                      dedup_key=f"{access.code}:{e.source}", event=e, notify_roles=access.notify,
                                      data={"event": d.get("event"), "method": d.get("method"),
                                            "image": d.get("image"), "title_en": access.title_en})], []
                pid = d.get("person_id")
                if pid is None:
                    return [], []
                labels = await asyncio.to_thread(self._labels, int(pid))
                if "key_person" not in labels:
                    return [], []
                return [Candidate(rule="behaviour.key_person", category="behaviour", severity=2,
                                  title=f"重点人员出现（{DOOR_METHODS.get(str(d.get('method')), '通行')}）",
                                  source=e.source, dedup_key=f"key_person:{pid}:{e.source}", event=e,
                                  data={"person_id": pid, "method": d.get("method"), "image": d.get("image")})], []
        return [], []

    def _labels(self, person_id: int) -> list[str]:
        with self.store.session() as s:
            return list(s.scalar(select(Person.labels).where(Person.id == person_id)) or [])
