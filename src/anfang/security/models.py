"""Users, login sessions and the hash-chained audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from anfang.security.crypto import EncryptedText
from anfang.store.base import Base, UtcDateTime, utcnow


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(24))
    # Jurisdiction: which of these is used depends on the role (see anfang.security.scope).
    county_code: Mapped[str | None] = mapped_column(String(6))
    community_code: Mapped[str | None] = mapped_column(String(12))
    police_area_id: Mapped[int | None] = mapped_column(ForeignKey("police_areas.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LoginSession(Base):
    __tablename__ = "login_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    client: Mapped[str | None] = mapped_column(String(64))
    # idle expiry (settings.session_idle_minutes): refreshed at most once a minute by resolve_session
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Append-only; each row's hash covers its content and the previous row's hash."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(16))  # read | create | update | delete | import | export | login
    entity: Mapped[str] = mapped_column(String(32))
    entity_ids: Mapped[list] = mapped_column(JSON, default=list)
    detail: Mapped[str] = mapped_column(Text, default="")
    client: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # the audit key (security/crypto.py) the row's HMAC is under; NULL: a plain SHA-256 row from before 0016
    key_id: Mapped[str | None] = mapped_column(String(16))


class UserSecurity(Base):
    """Login protection of one account (anfang.security.monitoring, anfang.security.totp): failed-login count and
    time-limited lockout, and the optional TOTP second factor (secret stored encrypted)."""

    __tablename__ = "user_security"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    totp_secret: Mapped[str | None] = mapped_column(EncryptedText("user_security.totp_secret"))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)  # replay guard: a code is accepted once
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class AccessAlert(Base):
    """An abnormal-access alert (数据访问监测): bulk reading above the account's baseline, access at unusual hours,
    attempts outside its jurisdiction, many failed logins, lockouts. Also appended to the audit chain."""

    __tablename__ = "access_alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    last_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(24), index=True)  # bulk_read | off_hours | out_of_scope | ...
    severity: Mapped[str] = mapped_column(String(8), default="medium")  # low | medium | high
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(24))
    county_code: Mapped[str | None] = mapped_column(String(6), index=True)  # the account's county (for 县级管理员)
    client: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=1)  # occurrences folded into this alert
    detail: Mapped[str] = mapped_column(Text, default="")
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class DailyReads(Base):
    """Persons one account read on one local day (access monitoring's bulk_read count, security/monitoring.py).

    Added to in the audit batch's own transaction (security/audit.py), so every server process — the primary and
    its reader processes — counts into the same figure, exactly once per audit entry."""

    __tablename__ = "access_daily_reads"
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD in monitor_timezone
    reads: Mapped[int] = mapped_column(Integer, default=0)
