"""Tamper-evident audit log: every read and write of personal data, hash-chained and keyed.

Row n's hash = HMAC-SHA256 under an audit key (kept outside the database, in the data key file; the row names its
key id) over its own content and row n-1's hash, so editing a row breaks its own hash, deleting or inserting one
breaks the chain at the next row, and recomputing the hashes after an edit needs the key — the package's own
functions are not enough. Rows written before revision 0016 carry a plain SHA-256 (``entry_hash``, key id NULL);
they verify as such, but only before the first keyed row (the first keyed row's HMAC covers their head).

Truncating the newest rows leaves a consistent chain; it shows against a head recorded elsewhere: ``anchor_head``
appends (seq, full hash, time, HMAC) to an append-only head file every few minutes (``AuditAnchor``, a server
service), and ``verify(heads=FILE)`` / ``anfang audit verify --heads FILE`` checks every anchored head is still
in the chain with the same hash. ``anfang audit verify`` walks the chain and names every broken row.

Entries are written in their own short transaction so a read is recorded even if the caller's work fails
afterwards; appends are serialised (an in-process lock, PostgreSQL's advisory lock across processes, and a retry
when another process took the same sequence number).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from anfang.security import crypto
from anfang.security.models import AuditEntry
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

GENESIS = "0" * 64
_ADVISORY_KEY = 0x616E66616E67  # "anfang"
_lock = threading.Lock()


log = structlog.get_logger(__name__)


def _payload(seq: int, at: datetime, user_id: int | None, username: str, role: str, action: str, entity: str,
             entity_ids: list, detail: str, client: str | None, prev_hash: str) -> bytes:
    return json.dumps(
        [seq, at.isoformat(timespec="microseconds"), user_id, username, role, action, entity,
         [str(i) for i in entity_ids], detail, client, prev_hash],
        ensure_ascii=False, separators=(",", ":"),
    ).encode("utf-8")


def entry_hash(seq: int, at: datetime, user_id: int | None, username: str, role: str, action: str, entity: str,
               entity_ids: list, detail: str, client: str | None, prev_hash: str) -> str:
    """The unkeyed SHA-256 of rows written before revision 0016 (key id NULL)."""
    return hashlib.sha256(_payload(seq, at, user_id, username, role, action, entity, entity_ids, detail, client,
                                   prev_hash)).hexdigest()


def keyed_hash(key_id: str, seq: int, at: datetime, user_id: int | None, username: str, role: str, action: str,
               entity: str, entity_ids: list, detail: str, client: str | None, prev_hash: str) -> str:
    """HMAC-SHA256 under audit key ``key_id`` (the key id is part of the message, so a row cannot change key)."""
    body = _payload(seq, at, user_id, username, role, action, entity, entity_ids, detail, client, prev_hash)
    return crypto.keyring().audit_mac(key_id, key_id.encode() + b"\x00" + body)


@dataclass(eq=False)
class _Pending:
    store: Store
    p: Principal
    action: str
    entity: str
    ids: list[str]
    detail: str
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    error: BaseException | None = None
    day_total: int | None = None  # the account's persons read today, this entry included (store.audit_counter)


_pending: list[_Pending] = []
_pending_lock = threading.Lock()


def record(store: Store, p: Principal, action: str, entity: str, entity_ids: Iterable = (), detail: str = "") -> int:
    """Append one audit entry and commit it; returns its sequence number once the entry is committed.

    Group commit, as ``EventRecorder`` does for events: concurrent callers (request threads) queue their entries;
    whoever holds the writer lock appends every queued entry of the same store in one transaction, and each caller
    returns when its own entry is committed. One caller alone costs one commit, as before; 100 concurrent reads
    cost a few commits instead of 100 (reads no longer queue behind one synchronous commit each)."""
    item = _Pending(store, p, action, entity, [str(i) for i in entity_ids], detail)
    with _pending_lock:
        _pending.append(item)
    while not item.done.is_set():
        with _lock:  # the writer: the first caller to get it writes the whole queue of its store
            if item.done.is_set():
                break
            with _pending_lock:
                batch = [x for x in _pending if x.store is store]
                _pending[:] = [x for x in _pending if x.store is not store]
            _write_batch(store, batch)
    if item.error is not None:
        raise item.error
    # access monitoring (anfang.security.monitoring) watches the chain as it grows: bulk reads, unusual hours
    hook = getattr(store, "audit_hook", None)
    if hook is not None:
        hook(p, action, entity, item.ids, detail, day_total=item.day_total)
    return item.seq


_LAST = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)


def _write_batch(store: Store, batch: list[_Pending]) -> None:
    """Append ``batch`` in one transaction (retried on a sequence conflict with another process).

    The hashing is done here, by the writer, for the whole batch; the rows go in with one Core ``INSERT``
    (executemany), not as ORM objects: a search's audit entry costs a small share of one commit.

    ``store.audit_counter`` (set by the access monitor) adds the batch's reads to the per-account daily count in the
    same transaction: every server process (primary and readers) counts into one figure, each entry exactly once."""
    table = AuditEntry.__table__
    counter = getattr(store, "audit_counter", None)
    totals: list[int | None] = [None] * len(batch)
    try:
        for attempt in range(20):
            try:
                with store.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
                    else:  # SQLite: the write lock before reading the head (waits, instead of a conflict + retry)
                        conn.exec_driver_sql("BEGIN IMMEDIATE")
                    last = conn.execute(_LAST).first()
                    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
                    kid = crypto.keyring().audit_primary
                    at = utcnow()
                    rows, seqs = [], []
                    for x in batch:
                        seq += 1
                        p = x.p
                        role = str(p.role)
                        h = keyed_hash(kid, seq, at, p.user_id, p.username, role, x.action, x.entity, x.ids,
                                       x.detail, p.client, prev)
                        rows.append({"seq": seq, "at": at, "user_id": p.user_id, "username": p.username,
                                     "role": role, "action": x.action, "entity": x.entity, "entity_ids": x.ids,
                                     "detail": x.detail, "client": p.client, "prev_hash": prev, "hash": h,
                                     "key_id": kid})
                        seqs.append(seq)
                        prev = h
                    conn.execute(table.insert(), rows)
                    if counter is not None:
                        totals = counter(conn, at, [(x.p, x.action, x.entity, x.ids, x.detail) for x in batch])
                break
            except (IntegrityError, OperationalError):
                if attempt == 19:
                    raise
            time.sleep(0.01 * (attempt + 1))
        for x, seq, total in zip(batch, seqs, totals, strict=True):
            x.seq, x.day_total = seq, total
    except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
        for x in batch:
            x.error = exc
    finally:
        for x in batch:
            x.done.set()


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    problems: list[str]
    legacy: int = 0  # unkeyed rows from before revision 0016
    anchors: int = 0  # heads checked against the head file
    keys: dict[str, int] = field(default_factory=dict)  # rows per audit key


def _row_hash(e: AuditEntry) -> str | None:
    args = (e.seq, e.at, e.user_id, e.username, e.role, e.action, e.entity, list(e.entity_ids or []), e.detail,
            e.client, e.prev_hash)
    if e.key_id is None:
        return entry_hash(*args)
    try:
        return keyed_hash(e.key_id, *args)
    except KeyError:
        return None


def verify(store: Store, *, batch: int = 5000, heads: Path | str | None = None) -> VerifyResult:
    """Walk the whole chain; report every row whose hash or link does not hold, and (``heads``) every anchored
    head that is no longer in the chain as it was."""
    problems: list[str] = []
    prev_hash, expected_seq, checked, legacy = GENESIS, 1, 0, 0
    keyed_seen = False
    per_key: dict[str, int] = {}
    anchored = _read_heads(Path(heads), problems) if heads is not None else []
    wanted = {seq: h for seq, h in anchored}
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
                if e.key_id is None:
                    legacy += 1
                    if keyed_seen:
                        problems.append(f"第{e.seq}条无密钥签名却在密钥链之后（被重写） / row {e.seq}: unkeyed row "
                                        "after keyed rows (rewritten)")
                else:
                    keyed_seen = True
                    per_key[e.key_id] = per_key.get(e.key_id, 0) + 1
                calc = _row_hash(e)
                if calc is None:
                    problems.append(f"第{e.seq}条的审计密钥{e.key_id}不在密钥集中 / row {e.seq}: audit key "
                                    f"{e.key_id} not in the key set")
                elif not hmac.compare_digest(calc, e.hash):
                    problems.append(f"第{e.seq}条内容与哈希不符（被篡改） / row {e.seq}: content altered")
                if e.seq in wanted and wanted[e.seq] != e.hash:
                    problems.append(f"第{e.seq}条与头文件记录的哈希不同（被重写） / row {e.seq}: hash differs from "
                                    f"the anchored head #{e.seq}")
                prev_hash, expected_seq, checked = e.hash, e.seq + 1, checked + 1
            after = rows[-1].seq
            s.expunge_all()
    head_seq = expected_seq - 1
    for seq, _h in anchored:
        if seq > head_seq:
            problems.append(f"头文件记录的第{seq}条已不在链中（尾部被截断） / anchored head #{seq} is beyond the "
                            f"chain's head #{head_seq}: rows truncated")
    return VerifyResult(ok=not problems, checked=checked, head_seq=head_seq, head_hash=prev_hash,
                        problems=problems, legacy=legacy, anchors=len(anchored), keys=per_key)


# ---- head anchoring ----------------------------------------------------------------------------------------------
def head(store: Store) -> tuple[int, str] | None:
    with store.session() as s:
        row = s.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def _head_mac(kid: str, seq: int, hash_: str, at: str, node: str) -> str:
    return crypto.keyring().audit_mac(kid, f"head\x00{seq}\x00{hash_}\x00{at}\x00{node}".encode())


def head_line(seq: int, hash_: str, node: str = "") -> dict[str, Any]:
    """One anchored head: sequence, full hash, UTC time, node, and an HMAC under the current audit key."""
    kid = crypto.keyring().audit_primary
    at = utcnow().isoformat(timespec="seconds")
    return {"seq": seq, "hash": hash_, "at": at, "node": node, "key_id": kid,
            "mac": _head_mac(kid, seq, hash_, at, node)}


def check_head_line(d: dict[str, Any]) -> bool:
    try:
        calc = _head_mac(str(d["key_id"]), int(d["seq"]), str(d["hash"]), str(d["at"]), str(d.get("node", "")))
    except (KeyError, TypeError, ValueError):
        return False
    return hmac.compare_digest(calc, str(d.get("mac", "")))


def anchor_head(store: Store, path: Path | str, node: str = "",
                sink: Callable[[dict[str, Any]], Any] | None = None) -> int | None:
    """Append the chain's head to the append-only head file when it moved since the last line; returns the
    anchored sequence (None: nothing new). The file is opened O_APPEND and fsync'd; make it append-only on the
    file system too (``chattr +a``) so that not even this process can rewrite it."""
    current = head(store)
    path = Path(path)
    if current is None:
        return None
    last = _last_line(path)
    if last is not None and last.get("seq") == current[0] and last.get("hash") == current[1]:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = head_line(current[0], current[1], node)
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if sink is not None:  # e.g. up the federation link (federation.outbox.send_audit_head), wired by the app
        sink(entry)
    return current[0]


def _last_line(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 4096))
        lines = [x for x in f.read().splitlines() if x.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def _read_heads(path: Path, problems: list[str]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if not path.exists():
        problems.append(f"头文件不存在 / head file {path} not found")
        return out
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            d = json.loads(raw)
        except ValueError:
            d = None
        if not isinstance(d, dict) or not check_head_line(d):
            problems.append(f"头记录第{n}行无效或被改动 / head file line {n}: malformed or altered")
            continue
        out.append((int(d["seq"]), str(d["hash"])))
    return out


class AuditAnchor:
    """Server service: anchors the audit head to the head file every ``every_s`` seconds (and at stop)."""

    def __init__(self, store: Store, path: Path, *, node: str = "", every_s: float = 300.0,
                 sink: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.store, self.path, self.node, self.every_s, self.sink = store, Path(path), node, every_s, sink
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="audit-anchor")

    async def _loop(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self.every_s)

    async def once(self) -> int | None:
        try:
            return await asyncio.to_thread(anchor_head, self.store, self.path, self.node, self.sink)
        except Exception:  # noqa: BLE001 - try again at the next tick
            log.exception("audit_anchor_failed", path=str(self.path))
            return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.once()

