"""GB/T 28181 tables of our own: alarms as received (the event stream carries them too; the console lists them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow


class GbAlarm(Base):
    __tablename__ = "gb28181_alarms"
    __table_args__ = (Index("ix_gb28181_alarms_device_at", "device_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))  # the registered device
    source_id: Mapped[str] = mapped_column(String(64))  # DeviceID in the alarm (channel or alarm input)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    priority: Mapped[str | None] = mapped_column(String(4))
    method: Mapped[str | None] = mapped_column(String(4))
    alarm_type: Mapped[str | None] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(256), default="")
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    event_id: Mapped[str] = mapped_column(String(40))
