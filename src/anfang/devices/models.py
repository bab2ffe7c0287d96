"""Devices (cameras, NVRs, APEs, door controllers, sensors), their channels, and every status change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow


class Device(Base):
    """One device as the platform knows it. ``device_id`` is its protocol id (20-digit GB/T 28181 id, GA/T 1400
    APE id, MQTT client id); ``protocol`` says which adapter owns it."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("protocol", "device_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))  # gb28181 | viid | mqtt | http
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    type_code: Mapped[str | None] = mapped_column(String(8))  # GB/T 28181 type (132 IPC, 118 NVR, ...)
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    firmware: Mapped[str | None] = mapped_column(String(64))
    password: Mapped[str | None] = mapped_column(String(128))  # per-device access password (digest needs it)
    review: Mapped[str] = mapped_column(String(16), default="approved")  # pending | approved | rejected
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # online | offline | unknown
    transport: Mapped[str | None] = mapped_column(String(8))  # UDP | TCP | HTTP
    host: Mapped[str | None] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer)
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # registration expiry
    community_code: Mapped[str | None] = mapped_column(String(12), index=True)
    address_id: Mapped[int | None] = mapped_column(ForeignKey("addresses.id"))
    # placement (devices/placement.py): the 警务区 and grid follow the address / community / map point
    police_area_id: Mapped[int | None] = mapped_column(ForeignKey("police_areas.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    placement: Mapped[str] = mapped_column(String(16), default="unplaced", server_default="unplaced",
                                           index=True)  # unplaced | pending (from the device's fields) | placed
    place: Mapped[str | None] = mapped_column(String(32))  # place category (community entrance, perimeter, ...)
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)  # protocol extras, specs (MP, IP rating, ...)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Channel(Base):
    """A video channel (or alarm input) of a device, as its catalog reports it."""

    __tablename__ = "device_channels"
    __table_args__ = (UniqueConstraint("device_pk", "channel_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    type_code: Mapped[str | None] = mapped_column(String(8))
    parent_id: Mapped[str | None] = mapped_column(String(64))
    civil_code: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # ON/OFF mapped to online/offline
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    address_text: Mapped[str | None] = mapped_column(String(256))
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    shared: Mapped[bool] = mapped_column(default=False)  # offered to upper platforms (cascade)
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class DeviceStatusChange(Base):
    """Every online/offline transition, kept for uptime (acceptance needs a month of it) and for operations."""

    __tablename__ = "device_status_history"
    __table_args__ = (Index("ix_device_status_history_device_at", "device_pk", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64), default="")  # register | keepalive | timeout | unregister ...


class DeviceUptimeDay(Base):
    """Rollup: seconds a device was online on one UTC day (``YYYY-MM-DD``), from its *closed* status intervals
    (an interval closes at the device's next status change). Kept by ``devices/uptime.py`` in the transaction that
    records the change; the still-open interval is in :class:`DeviceUptimeOpen`."""

    __tablename__ = "device_uptime_days"
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True, index=True)
    online_s: Mapped[float] = mapped_column(Float, default=0.0)


class DeviceUptimeOpen(Base):
    """Rollup: a device's newest status change (the interval still open): its status and since when."""

    __tablename__ = "device_uptime_open"
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(UtcDateTime)
