"""Turns MQTT / HTTP messages into events: validate, find the device, record durably, publish. Malformed messages
and unknown devices are counted and kept for the report, never raised into the consumer loop."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from anfang.core.events import Event, EventKind
from anfang.devices.models import Device
from anfang.devices.service import DeviceService
from anfang.iot.schemas import MESSAGES, DoorMsg, PerimeterMsg, parse_topic
from anfang.store.base import utcnow
from anfang.store.eventlog import EventRecorder


@dataclass(frozen=True)
class DeviceRef:
    device_id: str
    name: str
    community_code: str | None
    address_id: int | None
    longitude: float | None
    latitude: float | None
    secret: str | None = None  # the device's key, required on HTTP posts when set


class Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class IotIngest:
    PROTOCOL = "mqtt"

    def __init__(self, devices: DeviceService, recorder: EventRecorder, *, node_id: str | None = None,
                 cache_seconds: float = 30.0) -> None:
        self.devices, self.recorder, self.node_id = devices, recorder, node_id
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[DeviceRef | None, float]] = {}
        self.counts: Counter[str] = Counter()
        self.problems: deque[dict[str, Any]] = deque(maxlen=200)

    def _device(self, device_id: str) -> DeviceRef | None:
        hit = self._cache.get(device_id)
        now = time.monotonic()
        if hit is not None and now - hit[1] < self.cache_seconds:
            return hit[0]
        dev: Device | None = self.devices.get(self.PROTOCOL, device_id)
        ref = None if dev is None or dev.review == "rejected" else DeviceRef(
            dev.device_id, dev.name, dev.community_code, dev.address_id, dev.longitude, dev.latitude, dev.password)
        self._cache[device_id] = (ref, now)
        return ref

    def forget(self, device_id: str) -> None:
        self._cache.pop(device_id, None)

    def _reject(self, reason: str, message: str, topic: str) -> Rejected:
        self.counts[reason] += 1
        self.problems.append({"at": utcnow().isoformat(), "reason": reason, "topic": topic[:200],
                              "message": message[:300]})
        return Rejected(reason, message)

    def to_event(self, kind: str, ref: DeviceRef, msg: Any) -> Event:
        at = msg.ts or utcnow()
        common = {"source": ref.device_id, "at": at, "node_id": self.node_id, "community_code": ref.community_code,
                  "address_id": ref.address_id, "longitude": ref.longitude, "latitude": ref.latitude}
        body = msg.model_dump(exclude={"ts"}, exclude_none=True)
        if isinstance(msg, DoorMsg):
            return Event(kind=EventKind.person_passage, data={"device_name": ref.name, **body}, **common)
        if isinstance(msg, PerimeterMsg):
            if not msg.alarm:
                return Event(kind=EventKind.sensor_reading, data={"sensor_type": "perimeter", "device_name": ref.name,
                                                                   "readings": {"alarm": 0}, "zone": msg.zone},
                             **common)
            title = "周界入侵报警" if msg.type == "intrusion" else "周界设备报警"
            return Event(kind=EventKind.alarm, data={"alarm_type": f"perimeter_{msg.type}", "priority": 1,
                                                     "title": title,
                                                     "zone": msg.zone, "device_name": ref.name}, **common)
        readings = {k: (1.0 if v is True else 0.0 if v is False else v) for k, v in body.items()
                    if isinstance(v, int | float)}
        return Event(kind=EventKind.sensor_reading, data={"sensor_type": kind, "device_name": ref.name,
                                                          "readings": readings}, **common)

    def parse(self, topic: str, payload: bytes | str | dict[str, Any]) -> Event:
        """Validate one message into an event (no I/O but the cached device lookup)."""
        try:
            kind, device_id = parse_topic(topic)
        except ValueError as exc:
            raise self._reject("bad_topic", str(exc), topic) from None
        try:
            raw = payload if isinstance(payload, dict) else json.loads(payload)
            if not isinstance(raw, dict):
                raise ValueError("payload must be a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._reject("malformed", f"JSON 无法解析 / not JSON: {exc}", topic) from None
        try:
            msg = MESSAGES[kind].model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise self._reject("invalid", f"字段有误 / invalid fields: {problems}", topic) from None
        ref = self._device(device_id)
        if ref is None:
            raise self._reject("unknown_device", f"未登记的设备 / unknown device {device_id}", topic)
        return self.to_event(kind, ref, msg)

    async def handle(self, topic: str, payload: bytes | str | dict[str, Any], *, key: str | None = None,
                     check_key: bool = False) -> Event:
        """Parse, record durably and publish; raises Rejected (already counted) for a bad message. With
        ``check_key`` (HTTP), a device that has a key must present it."""
        if self._stale(topic):
            await asyncio.to_thread(self._warm, topic)  # the device lookup is a database read: off the loop
        event = self.parse(topic, payload)
        if check_key:
            ref = self._device(event.source)
            if ref is not None and ref.secret and not hmac.compare_digest(ref.secret, key or ""):
                raise self._reject("bad_key", f"设备密钥错误 / wrong device key for {event.source}", topic)
        await self.recorder.record(event)
        self.counts["accepted"] += 1
        return event

    def _stale(self, topic: str) -> bool:
        """Whether the topic's device is missing from the cache (then it is looked up in a worker thread)."""
        device_id = topic.rsplit("/", 1)[-1]
        hit = self._cache.get(device_id)
        return hit is None or time.monotonic() - hit[1] >= self.cache_seconds

    def _warm(self, topic: str) -> None:
        try:
            _, device_id = parse_topic(topic)
        except ValueError:
            return
        self._device(device_id)

    def report(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "recent_problems": list(self.problems)[-50:]}
