"""The transactional outbox: a hook on the store that writes, in the same transaction as the record itself, one
outbox row per parent for every record that must travel up.

Two hooks cover the write points of every room without touching them:
- ``after_flush`` of the store's sessions: ORM inserts / updates / deletes of the tracked tables (warnings, devices
  and their status history, 一标三实: addresses, houses, persons, residences, work units, vehicles);
- ``after_execute`` of the engine: Core inserts into ``event_log`` (the event recorder, the GA/T 1400 writer's
  capture events, device status events) — captures travel with their images, which the forwarder attaches.
A rolled-back transaction takes its outbox rows with it; a committed record always has its outbox rows.

The registry's bulk importer writes with Core / driver-level SQL that these hooks do not see; it calls
``Outbox.write_records`` after each batch instead (same transaction, same envelope as the ORM hook).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Table, event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.sql.dml import Insert

from anfang.core.events import new_event_id
from anfang.federation.models import FedOutbox
from anfang.federation.schema import Envelope
from anfang.store.engine import Store

# table → entity name of the ORM-tracked tables
TRACKED: dict[str, str] = {
    "warnings": "warning", "devices": "device", "device_status_history": "device_status",
    "addresses": "address", "houses": "house", "persons": "person", "residences": "residence",
    "work_units": "work_unit", "vehicles": "vehicle",
}
EVENT_TABLE = "event_log"
_READBACK_CHUNK = 2000  # keys per read-back statement of write_records


_PLAIN = frozenset({str, int, float, bool, type(None)})  # jsonable() returns these as they are
_FIELDS: dict[Mapper[Any], list[tuple[str, bool]]] = {}


def _fields(mapper: Mapper[Any]) -> list[tuple[str, bool]]:
    """(attribute key, encrypted at rest) of every column of a tracked mapper, in mapper order."""
    got = _FIELDS.get(mapper)
    if got is None:
        got = _FIELDS[mapper] = [(a.key, bool(getattr(a.columns[0].type, "encrypted", False)))
                                 for a in mapper.column_attrs]
    return got


_OUTBOX_COLS = ("parent", "gid", "entity", "created_at", "envelope")


def _insert_outbox(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert many outbox rows on conn, in order (the forwarder sends by id): COPY on PostgreSQL (an executemany
    there is one round trip per row), executemany on SQLite."""
    if conn.dialect.name != "postgresql":
        conn.execute(FedOutbox.__table__.insert(), rows)
        return
    names = ", ".join(_OUTBOX_COLS)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {FedOutbox.__tablename__} ({names}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(tuple(r[c] for c in _OUTBOX_COLS))


def _mapper_of(table: Table) -> Mapper[Any]:
    """The ORM mapper of a tracked table (its attribute keys name the fields of the envelope's data)."""
    from anfang.store.base import Base

    for m in Base.registry.mappers:
        if m.local_table is table or m.local_table.name == table.name:
            return m
    raise KeyError(table.name)

_suppress: ContextVar[bool] = ContextVar("anfang_fed_suppress", default=False)


@contextmanager
def suppressed() -> Iterator[None]:
    """Writes inside this block make no outbox rows (the ingest writes its own, keeping the origin's ids)."""
    token = _suppress.set(True)
    try:
        yield
    finally:
        _suppress.reset(token)


_vlock = threading.Lock()
_last_version = [0]


def next_version() -> int:
    """Per-entity change order: microseconds since the epoch, strictly increasing within the process. Two changes
    of one row in two processes are ordered by the row lock (the second transaction waits for the first), so the
    later change draws the later clock value."""
    with _vlock:
        v = max(time.time_ns() // 1000, _last_version[0] + 1)
        _last_version[0] = v
        return v


SEAL_CONTEXT = "federation"


def seal(value: Any) -> Any:
    """Encrypt a personal-data value with this node's data key (anfang.security.crypto) for storage."""
    from anfang.security.crypto import keyring

    return None if value is None else keyring().encrypt_text(str(value), SEAL_CONTEXT)


def unseal(value: Any) -> Any:
    from anfang.security.crypto import keyring

    return None if value is None else keyring().decrypt_text(value, SEAL_CONTEXT)


def seal_fields(data: dict[str, Any], fields: list[str]) -> None:
    for f in fields:
        if f in data:
            data[f] = seal(data[f])


def unseal_fields(data: dict[str, Any], fields: list[str]) -> None:
    for f in fields:
        if f in data:
            data[f] = unseal(data[f])


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return None  # no tracked table holds bytes; images travel as blobs
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def event_envelope(row: dict[str, Any], origin: str) -> Envelope:
    data = {k: jsonable(v) for k, v in row.items()}
    at = data.get("at") or datetime.now(UTC).isoformat()
    return Envelope(gid=str(row["id"]), origin=origin, entity="event", key=str(row["id"]), version=1, op="append",
                    at=at, data=data, path=[origin])


class Outbox:
    """Turns changes into outbox rows, one per parent; ``install`` hooks it onto a store."""

    def __init__(self, node_id: str, parents: Iterable[str]) -> None:
        self.node_id = node_id
        self.parents = list(parents)

    def rows(self, envelopes: Iterable[Envelope]) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        out = []
        for env in envelopes:
            blob = orjson.dumps(env.model_dump()).decode()
            out.extend({"parent": p, "gid": env.gid, "entity": env.entity, "created_at": now, "envelope": blob}
                       for p in self.parents)
        return out

    def install(self, store: Store) -> None:
        if not self.parents:
            return
        event.listen(store.sessionmaker, "after_flush", self._after_flush)
        event.listen(store.engine, "after_execute", self._after_execute)
        store.outbox = self  # type: ignore[attr-defined]

    def uninstall(self, store: Store) -> None:
        if event.contains(store.sessionmaker, "after_flush", self._after_flush):
            event.remove(store.sessionmaker, "after_flush", self._after_flush)
            event.remove(store.engine, "after_execute", self._after_execute)
        if getattr(store, "outbox", None) is self:
            del store.outbox  # type: ignore[attr-defined]  # the bulk importer asks the store for it

    # -- one change of one tracked record (the ORM hook and the bulk importer alike) -----------------------------
    def record_envelope(self, mapper: Mapper[Any], key: str, values: Callable[[str], Any] | None, op: str,
                        now: str) -> Envelope:
        """The envelope of one change of a record of a tracked table: ``values(attribute key)`` gives the
        record's values as Python objects (None for a delete); encrypted columns are sealed."""
        data: dict[str, Any] = {}
        sealed: list[str] = []
        if values is not None and op != "delete":
            for k, encrypted in _fields(mapper):
                v = values(k)
                data[k] = v = v if type(v) in _PLAIN else jsonable(v)
                if encrypted and v is not None:
                    sealed.append(k)  # encrypted at rest here: stays encrypted in the outbox
            seal_fields(data, sealed)
        return Envelope(gid=new_event_id(), origin=self.node_id, entity=TRACKED[mapper.local_table.name], key=key,
                        version=next_version(), op=op, at=now, data=data, path=[self.node_id],  # type: ignore[arg-type]
                        sealed=sealed)

    def write_records(self, conn: Connection, table: Table, column: str, keys: Sequence[Any]) -> int:
        """Outbox rows for records written by Core statements the hooks do not see (the registry's bulk
        importer): the records of tracked ``table`` whose ``column`` is one of ``keys`` are read back on ``conn``
        (inside the writer's transaction, so they commit or roll back with it) and each becomes one ``upsert``
        change per parent, with the same envelope as an ORM write of the record. Returns the records found."""
        if not self.parents or _suppress.get() or not keys or table.name not in TRACKED:
            return 0
        mapper = _mapper_of(table)
        names = [a.key for a in mapper.column_attrs]
        cols = [a.columns[0] for a in mapper.column_attrs]
        pk = list(mapper.primary_key)
        pk_names = [mapper.get_property_by_column(c).key for c in pk]
        col = table.c[column]
        now = datetime.now(UTC).isoformat()
        envs: list[Envelope] = []
        for i in range(0, len(keys), _READBACK_CHUNK):
            chunk = list(keys[i:i + _READBACK_CHUNK])
            for row in conn.execute(select(*cols).where(col.in_(chunk)).order_by(*pk)):
                by_attr = dict(zip(names, row, strict=True))
                key = "/".join([str(by_attr[k]) for k in pk_names])
                envs.append(self.record_envelope(mapper, key, by_attr.get, "upsert", now))
        if envs:
            _insert_outbox(conn, self.rows(envs))
        return len(envs)

    # -- ORM unit of work ---------------------------------------------------------------------------------------
    def _entity_envelope(self, obj: Any, op: str, now: str) -> Envelope | None:
        state = sa_inspect(obj)
        if state.mapper.local_table.name not in TRACKED:
            return None
        key = "/".join(str(v) for v in state.identity or state.mapper.primary_key_from_instance(obj))
        return self.record_envelope(state.mapper, key, state.dict.get, op, now)

    def _after_flush(self, session: Session, _ctx: Any) -> None:
        if _suppress.get():
            return
        now = datetime.now(UTC).isoformat()
        envs: list[Envelope] = []
        for obj in session.new:
            if (e := self._entity_envelope(obj, "upsert", now)) is not None:
                envs.append(e)
        for obj in session.dirty:
            if session.is_modified(obj, include_collections=False) and \
                    (e := self._entity_envelope(obj, "upsert", now)) is not None:
                envs.append(e)
        for obj in session.deleted:
            if (e := self._entity_envelope(obj, "delete", now)) is not None:
                envs.append(e)
        if envs:
            session.connection().execute(FedOutbox.__table__.insert(), self.rows(envs))

    # -- Core inserts into the event log ------------------------------------------------------------------------
    def _after_execute(self, conn: Any, clause: Any, multiparams: Any, params: Any, _opts: Any,
                       _result: Any) -> None:
        if _suppress.get() or not isinstance(clause, Insert) or getattr(clause.table, "name", None) != EVENT_TABLE:
            return
        rows = list(multiparams) if multiparams else ([params] if params else [])
        if not rows and clause._values:  # insert(...).values(...) with literal values
            rows = [{c.key if hasattr(c, "key") else str(c): v.value for c, v in clause._values.items()}]
        envs = [event_envelope(r, self.node_id) for r in rows if isinstance(r, dict) and r.get("id")]
        if envs:
            conn.execute(FedOutbox.__table__.insert(), self.rows(envs))


# ---- audit heads (security/audit.py): anchored up the link, kept by the parent ----------------------------------
AUDIT_HEAD = "audit_head"


def send_audit_head(store: Store, line: dict[str, Any]) -> int:
    """Queue one anchored audit head (seq, full hash, time, HMAC) for every parent; returns the outbox rows written
    (0 on a node without parents). The parent keeps each head as an ``audit_head`` record of this node."""
    outbox: Outbox | None = getattr(store, "outbox", None)
    if outbox is None or not outbox.parents:
        return 0
    node = str(line.get("node") or outbox.node_id)
    env = Envelope(gid=f"{AUDIT_HEAD}:{node}:{line['seq']}"[:64], origin=node, entity=AUDIT_HEAD,
                   key=f"{int(line['seq']):012d}", version=1, op="append", at=str(line["at"]), data=dict(line),
                   path=[node])
    rows = outbox.rows([env])
    with store.session() as s:
        s.execute(FedOutbox.__table__.insert(), rows)
    return len(rows)


def audit_heads_of(store: Store, child: str) -> list[dict[str, Any]]:
    """The audit heads a child node sent up, oldest first, as lines of a head file (``anfang audit verify
    --heads`` at the child checks its chain against them)."""
    from anfang.federation.models import FedRecord

    with store.session() as s:
        return [dict(r.data) for r in s.scalars(select(FedRecord).where(FedRecord.origin == child,
                                                                        FedRecord.entity == AUDIT_HEAD)
                                                 .order_by(FedRecord.key))]
