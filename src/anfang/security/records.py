"""Tables of query authorisation (数据查询授权) and of the export log (导出登记).

Kept apart from security/models.py (users, sessions, audit) so each part of the data-security work owns its file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow


class QueryApproval(Base):
    """One request to run a sensitive or bulk query: pending → approved | rejected → used | expired."""

    __tablename__ = "query_approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query_kind: Mapped[str] = mapped_column(String(24))  # wide_search | face_search | track | bulk_export
    target: Mapped[str] = mapped_column(String(48))  # the endpoint it holds, e.g. "export:persons"
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # the held query's parameters, as asked
    params_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of target + canonical params
    summary: Mapped[str] = mapped_column(String(300), default="")  # readable description for the approver
    reason: Mapped[str] = mapped_column(Text)
    requester_id: Mapped[int | None] = mapped_column(Integer, index=True)
    requester: Mapped[str] = mapped_column(String(64))
    requester_role: Mapped[str] = mapped_column(String(24))
    # Who may decide, resolved from the jurisdiction hierarchy when the request was made (see approvals.py).
    approver_rule: Mapped[str] = mapped_column(String(200), default="")
    approver_label: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(12), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)  # pending: until decided; approved: until used
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_by_id: Mapped[int | None] = mapped_column(Integer)
    decision_note: Mapped[str | None] = mapped_column(String(300))
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_query_approvals_requester_hash", "requester_id", "params_hash"),
                      Index("ix_query_approvals_state", "state", "created_at"))


class ExportRecord(Base):
    """One file that left the system: who, when, which request, which rows, and its invisible fingerprint."""

    __tablename__ = "export_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32), unique=True)  # printed on the file (visible watermark)
    fingerprint: Mapped[str] = mapped_column(String(16), unique=True)  # hidden in the file (invisible watermark)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[str] = mapped_column(String(24))
    client: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # persons, doorplate-sheet, viid-image, circular, ...
    file_format: Mapped[str] = mapped_column(String(8))  # xlsx | csv | pdf | png | jpeg
    filename: Mapped[str] = mapped_column(String(200), default="")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    row_keys: Mapped[list] = mapped_column(JSON, default=list)  # record keys in file order (trace by pasted rows)
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    approval_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
