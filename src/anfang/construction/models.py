"""Tables of the construction room: operations work orders (运维工单)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow


class WorkOrder(Base):
    """A fault to fix on one device. At most one *open* order per (device, cause): the partial unique index makes
    the automatic raising idempotent even when two workers race. ``overdue`` is derived (open and past deadline)."""

    __tablename__ = "work_orders"
    __table_args__ = (
        Index("uq_work_orders_open", "device_pk", "cause", unique=True,
              sqlite_where=text("state = 'open'"), postgresql_where=text("state = 'open'")),
        Index("ix_work_orders_community_state", "community_code", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_pk: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    community_code: Mapped[str | None] = mapped_column(String(12))
    cause: Mapped[str] = mapped_column(String(32))  # offline | no_captures | retention
    detail: Mapped[str] = mapped_column(String(256), default="")
    assignee: Mapped[str | None] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    close_cause: Mapped[str | None] = mapped_column(String(256))  # what the fault was / what was done
