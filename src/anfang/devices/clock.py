"""Camera clocks: a device's own time (shot time, alarm time) against the platform's receive time.

A camera whose clock is off by more than ``tolerance_s`` (5 minutes) is flagged on its device row
(``attributes["clock"] = {"offset_s", "off", "checked_at"}``): the device page (GB/T 28181 ``/devices/{id}``;
GA/T 1400 ``/viid/apes``) shows it, operations opens a
``clock`` work order (construction/operations.py), and the GB/T 28181 server makes such a device register again, so
it sets its clock from the ``Date`` of the 200 (GB/T 28181-2016 9.10). Warnings never depend on it: their timers
run on receive time (warnings/service.py).

Observations are kept in memory per device; the database is written only when a device's state changes (off ↔ on
time) or its offset moves by more than a minute, so a camera posting 10 captures a second costs nothing here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from anfang.devices.models import Device
from anfang.store.engine import Store

TOLERANCE_S = 300.0


@dataclass
class ClockReading:
    protocol: str
    device_id: str
    offset_s: float  # device time − receive time (negative: the camera is behind)
    off: bool
    at: datetime


class ClockWatch:
    def __init__(self, store: Store, tolerance_s: float = TOLERANCE_S) -> None:
        self.store = store
        self.tolerance_s = tolerance_s
        self._last: dict[tuple[str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def observe(self, protocol: str, device_id: str, device_time: datetime | None,
                received: datetime | None = None) -> ClockReading | None:
        """Compare; returns a reading to :meth:`record` when the stored state must change (else None)."""
        if device_time is None:
            return None
        received = received or datetime.now(UTC)
        if device_time.tzinfo is None:
            device_time = device_time.replace(tzinfo=UTC)
        offset = (device_time - received).total_seconds()
        off = abs(offset) > self.tolerance_s
        key = (protocol, device_id)
        with self._lock:
            last = self._last.get(key)
            if last is not None and last[0] == off and (not off or abs(last[1] - offset) <= 60):
                return None
            self._last[key] = (off, offset)
        return ClockReading(protocol, device_id, round(offset, 1), off, received)

    def record(self, reading: ClockReading) -> None:
        """Write the reading on the device row (worker thread)."""
        with self.store.session() as s:
            dev = s.scalar(select(Device).where(Device.protocol == reading.protocol,
                                                Device.device_id == reading.device_id))
            if dev is None:
                return
            dev.attributes = {**(dev.attributes or {}), "clock": {
                "offset_s": reading.offset_s, "off": reading.off, "checked_at": reading.at.isoformat()}}

    def is_off(self, protocol: str, device_id: str) -> bool:
        last = self._last.get((protocol, device_id))
        return bool(last and last[0])


def clock_label(attributes: dict | None) -> str | None:
    """"时钟偏差 8.0 小时（设备时间慢）" for a flagged device, else None."""
    clock = (attributes or {}).get("clock") or {}
    if not clock.get("off"):
        return None
    offset = float(clock.get("offset_s") or 0)
    hours = abs(offset) / 3600
    amount = f"{hours:.1f} 小时" if hours >= 1 else f"{abs(offset) / 60:.0f} 分钟"
    return f"时钟偏差 {amount}（设备时间{'慢' if offset < 0 else '快'}）"
