"""GB/T 28181 tables of our own: alarms as received (the event stream carries them too; the console lists them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, Text
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


class GbTraceRequest(Base):
    """A SIP trace asked for one device (console or ``anfang gb28181 trace``): the server records its messages
    until ``until``, keeping the last ``keep``."""

    __tablename__ = "gb28181_trace_requests"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    keep: Mapped[int] = mapped_column(Integer, default=100)
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class GbTraceEntry(Base):
    """One SIP message to or from a traced device, as sent or received (bodies cut at 4 KB)."""

    __tablename__ = "gb28181_trace"
    __table_args__ = (Index("ix_gb28181_trace_device_id", "device_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    direction: Mapped[str] = mapped_column(String(4))  # in | out
    transport: Mapped[str] = mapped_column(String(8), default="")
    addr: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[str] = mapped_column(String(128), default="")  # start line (+ CmdType)
    text: Mapped[str] = mapped_column(Text, default="")
