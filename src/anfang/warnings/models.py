"""Warnings with their lifecycle steps, and plate watchlists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow


class Warning(Base):  # noqa: A001 - the domain's word; never used as the builtin here
    __tablename__ = "warnings"
    __table_args__ = (Index("ix_warnings_dedup_state", "dedup_key", "state"),
                      Index("ix_warnings_area_created", "police_area_id", "created_at"),
                      Index("ix_warnings_event_id", "event_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)  # global id (travels to parent nodes)
    rule: Mapped[str] = mapped_column(String(64))  # e.g. smoke.alarm, plate.watchlist, face.watchlist
    category: Mapped[str] = mapped_column(String(16))  # sensor | plate | face | behaviour | alarm | device
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[int] = mapped_column(Integer, default=2)
    state: Mapped[str] = mapped_column(String(16), default="new", index=True)
    source: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(36))
    dedup_key: Mapped[str] = mapped_column(String(160))
    hits: Mapped[int] = mapped_column(Integer, default=1)  # events folded into this warning by dedup
    county_code: Mapped[str | None] = mapped_column(String(6), index=True)
    community_code: Mapped[str | None] = mapped_column(String(12), index=True)
    address_id: Mapped[int | None] = mapped_column(Integer)
    police_area_id: Mapped[int | None] = mapped_column(Integer)
    station_id: Mapped[int | None] = mapped_column(Integer)
    grid_id: Mapped[int | None] = mapped_column(Integer)
    place: Mapped[str | None] = mapped_column(String(300))
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    notify_roles: Mapped[str] = mapped_column(String(64), default="police")  # comma-separated roles
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # readings, photos, similarity, plate ...
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_hit_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    feedback: Mapped[str | None] = mapped_column(String(16))  # true | false_alarm | resolved
    recovered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WarningStep(Base):
    __tablename__ = "warning_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    warning_id: Mapped[int] = mapped_column(ForeignKey("warnings.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # raised | dispatched | acknowledged | handled | closed ...
    note: Mapped[str] = mapped_column(Text, default="")


class PlateWatchlist(Base):
    __tablename__ = "plate_watchlists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    tolerant: Mapped[bool] = mapped_column(Boolean, default=True)
    severity: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PlateEntry(Base):
    __tablename__ = "plate_watchlist_entries"
    __table_args__ = (UniqueConstraint("watchlist_id", "plate"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("plate_watchlists.id", ondelete="CASCADE"), index=True)
    plate: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")


class WebhookDelivery(Base):
    """One warning step to POST to one webhook URL: written in the warning's own transaction (so a committed
    warning always has its deliveries), sent by ``WebhookSender`` with exponential back-off, kept across
    restarts until sent or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("warning_uid", "step", "url"),
                      Index("ix_webhook_deliveries_state_next", "state", "next_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    warning_uid: Mapped[str] = mapped_column(String(36))
    step: Mapped[str] = mapped_column(String(16))  # raised | escalated
    url: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(8), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
