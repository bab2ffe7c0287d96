"""The append-only event log: every event an adapter accepted, stored before it is acknowledged to the sender and
published on the bus, so a crash loses nothing acknowledged and the behaviour models can read history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, and_, insert, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from anfang.core.events import Event, EventKind
from anfang.store.base import Base, UtcDateTime, utcnow
from anfang.store.engine import Store


class EventRecord(Base):
    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_kind_at", "kind", "at"), Index("ix_event_log_source_at", "source", "at"),
                      Index("ix_event_log_recorded_at", "recorded_at"))
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(32))
    community_code: Mapped[str | None] = mapped_column(String(12))
    address_id: Mapped[int | None] = mapped_column(Integer)
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    # server time of the insert (the device's ``at`` may be anything): the order the consumers' cursors follow;
    # NULL on rows written before revision 0016 (never replayed)
    recorded_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=utcnow)


class BusCursor(Base):
    """Where a consumer of the embedded bus stands: every event recorded before ``position`` is handled (give or
    take the replay margin, which idempotent handling absorbs)."""

    __tablename__ = "bus_cursors"
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def load_cursor(session: Session, consumer: str) -> tuple[datetime, bool]:
    """(the consumer's position, whether it is new): a consumer seen for the first time starts now (no replay of
    older history)."""
    row = session.get(BusCursor, consumer)
    if row is None:
        row = BusCursor(consumer=consumer, position=utcnow())
        session.add(row)
        return row.position, True
    return row.position, False


def save_cursor(session: Session, consumer: str, position: datetime) -> None:
    row = session.get(BusCursor, consumer)
    if row is None:
        session.add(BusCursor(consumer=consumer, position=position))
    elif position > row.position:
        row.position, row.updated_at = position, utcnow()


def backlog(session: Session, kinds: Iterable[EventKind] | None, after: tuple[datetime, str], *,
            node_id: str | None = None, limit: int = 500) -> list[tuple[Event, datetime]]:
    """Events recorded after ``after`` = (recorded_at, id), in recorded order (keyset pages), with their time.
    With ``node_id``: only this node's own events (not those its children forwarded up, which the bus never
    carried live here either)."""
    at, eid = after
    stmt = select(EventRecord).where(or_(EventRecord.recorded_at > at,
                                         and_(EventRecord.recorded_at == at, EventRecord.id > eid)))
    if node_id is not None:
        stmt = stmt.where(or_(EventRecord.node_id == node_id, EventRecord.node_id.is_(None)))
    if kinds is not None:
        stmt = stmt.where(EventRecord.kind.in_([k.value for k in kinds]))
    stmt = stmt.order_by(EventRecord.recorded_at, EventRecord.id).limit(limit)
    return [(to_event(r), r.recorded_at) for r in session.scalars(stmt)]  # type: ignore[misc]


def append_events(session: Session, events: Iterable[Event]) -> int:
    """Insert events in the caller's transaction (one statement); returns how many."""
    now = utcnow()
    rows = [{"id": e.id, "kind": e.kind.value, "at": e.at, "source": e.source, "node_id": e.node_id,
             "community_code": e.community_code, "address_id": e.address_id, "longitude": e.longitude,
             "latitude": e.latitude, "data": e.data, "recorded_at": now} for e in events]
    if rows:
        session.execute(insert(EventRecord), rows)
    return len(rows)


def to_event(r: EventRecord) -> Event:
    return Event(kind=EventKind(r.kind), source=r.source, at=r.at, data=dict(r.data or {}), id=r.id,
                 node_id=r.node_id, community_code=r.community_code, address_id=r.address_id,
                 longitude=r.longitude, latitude=r.latitude)


def recent(session: Session, kinds: Iterable[EventKind], since: datetime) -> list[Event]:
    stmt = (select(EventRecord).where(EventRecord.kind.in_([k.value for k in kinds]), EventRecord.at >= since)
            .order_by(EventRecord.at))
    return [to_event(r) for r in session.scalars(stmt)]


class EventRecorder:
    """Group commit for events: ``await record(event)`` returns once the event is committed to the event log and
    handed to the bus. Concurrent callers share one transaction (a batch forms while the previous one commits), so
    a burst of MQTT or HTTP messages costs one commit per batch instead of one per message."""

    def __init__(self, store: Store, bus: Any, *, max_batch: int = 500) -> None:
        self.store, self.bus, self.max_batch = store, bus, max_batch
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()
        self.recorded = 0

    async def record(self, event: Event) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        async with self._lock:
            if not fut.done():
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                try:
                    await asyncio.to_thread(self._write, [e for e, _ in batch])
                except BaseException as exc:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    raise
                self.recorded += len(batch)
                for e, f in batch:
                    await self.bus.publish(e)
                    if not f.done():
                        f.set_result(None)
        await fut

    def _write(self, events: list[Event]) -> None:
        with self.store.session() as s:
            append_events(s, events)
