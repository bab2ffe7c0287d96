"""The one typed event model for everything that happens: passages, captures, sensor readings, alarms, device status.

Adapters (GB/T 28181, GA/T 1400, MQTT, child nodes) turn what arrived into an ``Event``; consumers (warnings, device
health, the federation forwarder, console live updates) read them from the bus. Framework-free: plain dataclasses
and JSON, so an event crosses processes (NATS) and nodes unchanged.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class EventKind(StrEnum):
    person_passage = "person_passage"  # a door opened for / passed by a person (access control)
    vehicle_passage = "vehicle_passage"  # a vehicle passed a gate or a capture camera (plate)
    face_capture = "face_capture"  # GA/T 1400 Face, or a face found in a scene image
    person_capture = "person_capture"  # GA/T 1400 Person (body)
    nonmotor_capture = "nonmotor_capture"  # GA/T 1400 NonMotorVehicle
    sensor_reading = "sensor_reading"  # smoke, electrical fire, hydrant pressure, gas ...
    alarm = "alarm"  # device alarm: GB/T 28181 Alarm notify, perimeter intrusion, tamper
    device_status = "device_status"  # a device went online / offline
    warning = "warning"  # a warning raised by the early-warning engine


_id_lock = threading.Lock()
_last = [0, 0]  # last millisecond, counter within it


def new_event_id() -> str:
    """Time-ordered unique id (UUIDv7 layout: 48-bit ms timestamp, a 12-bit counter that keeps ids made in the same
    millisecond in order within this process, then 62 random bits), sortable as text."""
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last[0]:
            ms, counter = _last[0], _last[1] + 1
            if counter > 0xFFF:  # more than 4,096 ids in one millisecond: borrow the next one
                ms, counter = ms + 1, 0
        else:
            counter = 0
        _last[0], _last[1] = ms, counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    source: str  # the device / channel / node id the event came from
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    node_id: str | None = None  # the anfang node that accepted it
    community_code: str | None = None  # GB/T 2260-based code of the community / village, when known
    address_id: int | None = None
    longitude: float | None = None
    latitude: float | None = None
    version: int = SCHEMA_VERSION

    @property
    def subject(self) -> str:
        """The bus subject: ``anfang.events.<kind>``."""
        return f"anfang.events.{self.kind.value}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["at"] = self.at.astimezone(UTC).isoformat()
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        at = datetime.fromisoformat(raw["at"]) if isinstance(raw.get("at"), str) else raw.get("at")
        if at is None:
            at = datetime.now(UTC)
        elif at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        known = {k: raw[k] for k in ("id", "node_id", "community_code", "address_id", "longitude", "latitude",
                                     "version") if k in raw and raw[k] is not None}
        return cls(kind=EventKind(raw["kind"]), source=str(raw["source"]), at=at, data=dict(raw.get("data") or {}),
                   **known)

    @classmethod
    def from_json(cls, payload: bytes | str) -> Event:
        return cls.from_dict(json.loads(payload))
