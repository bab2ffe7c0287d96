"""Per-device SIP message trace, on demand: an installer (console device page or ``anfang gb28181 trace DEVICE``)
asks for one device; the SIP server, which polls the requests, records every message to and from it (REGISTER,
challenges, refusals with their reason, keepalives, queries) and keeps the last ``keep`` of them in the database,
where the console and the command line read them. Nothing is recorded for devices nobody asked about.

The request and the entries live in the database (not in the server's memory) so the command line, the console
and the SIP server need not be one process."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select

from anfang.gb28181.models import GbTraceEntry, GbTraceRequest
from anfang.gb28181.sip.message import SipMessage
from anfang.store.engine import Store

log = structlog.get_logger(__name__)
MAX_KEEP = 1000
MAX_TEXT = 4096


def start_trace(store: Store, device_id: str, *, minutes: float = 30.0, keep: int = 200, by: str = "") -> datetime:
    """Ask for a trace of ``device_id`` for ``minutes`` (renewing one already running); returns its end."""
    until = datetime.now(UTC) + timedelta(minutes=max(1.0, min(minutes, 24 * 60)))
    keep = max(10, min(keep, MAX_KEEP))
    with store.session() as s:
        req = s.get(GbTraceRequest, device_id)
        if req is None:
            s.add(GbTraceRequest(device_id=device_id, until=until, keep=keep, requested_by=by[:64]))
        else:
            req.until, req.keep, req.requested_by = until, keep, by[:64]
    return until


def stop_trace(store: Store, device_id: str) -> None:
    with store.session() as s:
        s.execute(delete(GbTraceRequest).where(GbTraceRequest.device_id == device_id))


def active_traces(store: Store) -> dict[str, int]:
    """device_id -> how many messages to keep, for the traces running now."""
    now = datetime.now(UTC)
    with store.session() as s:
        return {d: k for d, k in s.execute(select(GbTraceRequest.device_id, GbTraceRequest.keep)
                                           .where(GbTraceRequest.until > now))}


def trace_request(store: Store, device_id: str) -> GbTraceRequest | None:
    with store.session() as s:
        return s.get(GbTraceRequest, device_id)


def trace_entries(store: Store, device_id: str, after_id: int = 0, limit: int = MAX_KEEP) -> list[GbTraceEntry]:
    """The recorded messages of a device, oldest first (``after_id`` to follow new ones)."""
    with store.session() as s:
        rows = list(s.scalars(select(GbTraceEntry).where(GbTraceEntry.device_id == device_id,
                                                         GbTraceEntry.id > after_id)
                              .order_by(GbTraceEntry.id.desc()).limit(limit)))
    return rows[::-1]


def summary(msg: SipMessage) -> str:
    """``REGISTER``, ``MESSAGE Keepalive``, ``401 Unauthorized``, ``403 Wrong Password`` ..."""
    if msg.is_request:
        text = msg.method or ""
        if msg.body and b"<CmdType>" in msg.body:
            cmd = msg.body.split(b"<CmdType>", 1)[1].split(b"<", 1)[0].strip()
            text += " " + cmd.decode("ascii", "replace")[:32]
        return text[:128]
    return f"{msg.status} {msg.reason}".strip()[:128]


def entry(device_id: str, direction: str, msg: SipMessage, transport: str, addr: tuple[str, int]) -> dict:
    """One row (as a dict) for ``write_entries``; the text is the message as on the wire, cut at 4 KB."""
    raw = msg.to_bytes()
    text = raw[:MAX_TEXT].decode("utf-8", "replace")
    if len(raw) > MAX_TEXT:
        text += f"\n… ({len(raw)} bytes)"
    return {"device_id": device_id, "at": datetime.now(UTC), "direction": direction, "transport": transport,
            "addr": f"{addr[0]}:{addr[1]}"[:64], "summary": summary(msg), "text": text}


def write_entries(store: Store, rows: list[dict], keep: dict[str, int]) -> None:
    """Insert the buffered rows and drop what is beyond the last ``keep`` of each device written to."""
    if not rows:
        return
    with store.session() as s:
        s.add_all(GbTraceEntry(**r) for r in rows)
        s.flush()
        for device_id in {r["device_id"] for r in rows}:
            cut = s.scalar(select(GbTraceEntry.id).where(GbTraceEntry.device_id == device_id)
                           .order_by(GbTraceEntry.id.desc()).offset(keep.get(device_id, 200)).limit(1))
            if cut is not None:
                s.execute(delete(GbTraceEntry).where(GbTraceEntry.device_id == device_id, GbTraceEntry.id <= cut))


class TraceRecorder:
    """Runs inside the SIP server: polls the trace requests every ``poll`` seconds, hooks the endpoint only while
    some device is traced, and writes the recorded messages off the event loop."""

    MAX_BUFFER = 20_000

    def __init__(self, store: Store, endpoint: Any, poll: float = 2.0) -> None:
        self.store, self.endpoint, self.poll = store, endpoint, poll
        self.traced: dict[str, int] = {}
        self._rows: list[dict] = []
        self._task: asyncio.Task | None = None

    def record(self, direction: str, msg: SipMessage, peer: Any) -> None:
        for device_id in {msg.from_user, msg.to_user}:
            if device_id in self.traced:
                self._rows.append(entry(device_id, direction, msg, peer.transport, peer.addr))
        if len(self._rows) > self.MAX_BUFFER:  # the database is stuck: keep the newest
            del self._rows[:-self.MAX_BUFFER]

    async def start(self) -> None:
        await self._poll_once()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gb28181-trace")

    async def _poll_once(self) -> None:
        try:
            self.traced = await asyncio.to_thread(active_traces, self.store)
        except Exception:  # noqa: BLE001 - a diagnostic must never stop the server
            log.exception("gb28181_trace_poll_failed")
        self.endpoint.tracer = self.record if self.traced else None

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        if rows:
            try:
                await asyncio.to_thread(write_entries, self.store, rows, dict(self.traced))
            except Exception:  # noqa: BLE001
                log.exception("gb28181_trace_write_failed", rows=len(rows))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self._poll_once()
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.endpoint.tracer = None
        await self.flush()
