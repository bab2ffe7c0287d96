"""Tables of the construction room: operations work orders (运维工单), projects with their steps and funding,
六无 incidents."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, Numeric, String, Text, text
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


class Project(Base):
    """A new or retrofitted community's security project (同步设计、同步施工、同步验收): its state in the lifecycle
    (``lifecycle.STATES``), its design (the planned ``(subsystem, place)`` items, reviewed against the tier rules)
    and the dates the acceptance gate reads."""

    __tablename__ = "construction_projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="new")  # new | retrofit
    target_tier: Mapped[str] = mapped_column(String(16), default="basic")  # tier code of tiers_<version>.json
    rules_version: Mapped[str] = mapped_column(String(8), default="2021")
    state: Mapped[str] = mapped_column(String(16), default="design")
    design_items: Mapped[list] = mapped_column(JSON, default=list)  # [[subsystem, place], ...]
    not_applicable: Mapped[list] = mapped_column(JSON, default=list)  # place codes the community lacks
    design_round: Mapped[int] = mapped_column(Integer, default=0)  # submissions so far (1 = first, 2 = resubmitted)
    budget: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    running_since: Mapped[datetime | None] = mapped_column(UtcDateTime)  # construction finished, trial run began
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ProjectStep(Base):
    """One step of a project's history: submission, review comment, approval, build, acceptance (append-only)."""

    __tablename__ = "construction_project_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("construction_projects.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(24), default="")
    action: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # the design check at review time, ...


class Funding(Base):
    """Money for a project: ``fund`` (a source commits / pays in) or ``spend`` (paid out), in yuan."""

    __tablename__ = "construction_funding"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("construction_projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # fund | spend
    source: Mapped[str | None] = mapped_column(String(24))  # lifecycle_<v>.json funding_sources; spend: optional
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    on: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(256), default="")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LiuwuIncident(Base):
    """Incidents that count against a community's 六无 standing (crime, gambling, drugs, cults, dishonesty, group
    petitions): ``count`` incidents of ``category`` on ``occurred_on``."""

    __tablename__ = "liuwu_incidents"
    __table_args__ = (Index("ix_liuwu_community_day", "community_code", "occurred_on"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_code: Mapped[str] = mapped_column(String(12))
    category: Mapped[str] = mapped_column(String(16))
    occurred_on: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str] = mapped_column(String(256), default="")
    origin: Mapped[str] = mapped_column(String(16), default="entered")  # entered | import
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
