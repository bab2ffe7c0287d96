"""Tamper-evident audit log: every read and write of personal data, hash-chained.

Row n's hash = SHA-256 over its own content and row n-1's hash, so editing a row breaks its own hash and deleting
or inserting one breaks the chain at the next row; ``anfang audit verify`` walks the chain and names the first
broken row. Entries are written in their own short transaction so a read is recorded even if the caller's work
fails afterwards; appends are serialised (an in-process lock, PostgreSQL's advisory lock across processes, and a
retry when another process took the same sequence number).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from anfang.security.models import AuditEntry
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

GENESIS = "0" * 64
_ADVISORY_KEY = 0x616E66616E67  # "anfang"
_lock = threading.Lock()


def entry_hash(seq: int, at: datetime, user_id: int | None, username: str, role: str, action: str, entity: str,
               entity_ids: list, detail: str, client: str | None, prev_hash: str) -> str:
    payload = json.dumps(
        [seq, at.isoformat(timespec="microseconds"), user_id, username, role, action, entity,
         [str(i) for i in entity_ids], detail, client, prev_hash],
        ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _append(session: Session, p: Principal, action: str, entity: str, ids: list, detail: str) -> AuditEntry:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = utcnow()
    entry = AuditEntry(seq=seq, at=at, user_id=p.user_id, username=p.username, role=str(p.role), action=action,
                       entity=entity, entity_ids=ids, detail=detail, client=p.client, prev_hash=prev)
    entry.hash = entry_hash(seq, at, p.user_id, p.username, str(p.role), action, entity, ids, detail, p.client, prev)
    session.add(entry)
    return entry


def record(store: Store, p: Principal, action: str, entity: str, entity_ids: Iterable = (), detail: str = "") -> int:
    """Append one audit entry and commit it; returns its sequence number."""
    ids = [str(i) for i in entity_ids]
    for attempt in range(20):
        with _lock:
            try:
                with store.session() as s:
                    entry = _append(s, p, action, entity, ids, detail)
                break
            except (IntegrityError, OperationalError):
                if attempt == 19:
                    raise
        time.sleep(0.01 * (attempt + 1))
    else:  # pragma: no cover
        raise AssertionError("unreachable")
    # access monitoring (anfang.security.monitoring) watches the chain as it grows: bulk reads, unusual hours
    hook = getattr(store, "audit_hook", None)
    if hook is not None:
        hook(p, action, entity, ids, detail)
    return entry.seq


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problems: list[str]


def verify(store: Store, *, batch: int = 5000) -> VerifyResult:
    """Walk the whole chain; report every row whose hash or link does not hold."""
    problems: list[str] = []
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    with store.session() as s:
        after = 0
        while True:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch))
            rows = list(rows)
            if not rows:
                break
            for e in rows:
                if e.seq != expected_seq:
                    problems.append(
                        f"第{expected_seq}至{e.seq - 1}条记录缺失（被删除） / rows {expected_seq}-{e.seq - 1} missing")
                if e.prev_hash != prev_hash:
                    problems.append(f"第{e.seq}条的前序哈希不符（前一条被改动或删除） / row {e.seq}: chain link broken")
                calc = entry_hash(e.seq, e.at, e.user_id, e.username, e.role, e.action, e.entity,
                                  list(e.entity_ids or []), e.detail, e.client, e.prev_hash)
                if calc != e.hash:
                    problems.append(f"第{e.seq}条内容与哈希不符（被篡改） / row {e.seq}: content altered")
                prev_hash, expected_seq, checked = e.hash, e.seq + 1, checked + 1
            after = rows[-1].seq
            s.expunge_all()
    return VerifyResult(ok=not problems, checked=checked, head_seq=expected_seq - 1, head_hash=prev_hash,
                        problems=problems)
