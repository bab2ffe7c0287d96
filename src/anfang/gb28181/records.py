"""Record search (GB/T 28181-2016 9.7): ``Query/RecordInfo`` for a channel over a time window.

A device answers with one or more ``Response/RecordInfo`` MESSAGEs, each with a page of ``<RecordList>`` items and the
total in ``SumNum``; ``RecordSearch`` installs one hook on the server's MESSAGE handling (``server.message_hooks``),
collects the pages of each query by device and SN, and ends the search when ``SumNum`` items have arrived (or at the
timeout, keeping what came). Times on the wire are local China time without a zone (``format_time`` /
``parse_time``); ``RecordSpan`` holds UTC.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from anfang.gb28181.manscdp import build
from anfang.gb28181.manscdp.xml import Manscdp, child, format_time, parse_time, text_of

if TYPE_CHECKING:
    from anfang.gb28181.host import SipHost as GbServer  # the server's interface (host.py): no import cycle
    from anfang.gb28181.sip.message import SipMessage
    from anfang.gb28181.sip.transport import Peer

log = structlog.get_logger(__name__)
CONTIGUOUS = timedelta(seconds=1)  # spans at most this far apart are one span on the timeline
MAX_ITEMS = 20_000  # a device claiming more is cut off (bounded memory)


@dataclass
class RecordSpan:
    start: datetime  # UTC
    end: datetime  # UTC
    type: str
    file_path: str
    secrecy: int
    device_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "type": self.type,
                "file_path": self.file_path, "secrecy": self.secrecy, "device_id": self.device_id}


@dataclass
class _Search:
    total: int | None = None
    received: int = 0
    spans: list[RecordSpan] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    pages: int = 0


def record_items(doc: Manscdp) -> tuple[int | None, list[RecordSpan]]:
    """(SumNum, spans) of one RecordInfo response page; items without a readable start / end are skipped."""
    raw = doc.get("SumNum")
    total = int(raw) if raw and raw.isdigit() else None
    spans = []
    for item in child(doc.element, "RecordList") or []:
        start, end = parse_time(text_of(item, "StartTime")), parse_time(text_of(item, "EndTime"))
        if start is None or end is None or end < start:
            continue
        secrecy = text_of(item, "Secrecy") or "0"
        spans.append(RecordSpan(start, end, (text_of(item, "Type") or "time")[:16],
                                (text_of(item, "FilePath") or "")[:256], int(secrecy) if secrecy.isdigit() else 0,
                                text_of(item, "DeviceID") or doc.device_id))
    return total, spans


def merge_spans(spans: list[RecordSpan], gap: timedelta = CONTIGUOUS) -> list[RecordSpan]:
    """Sorted by start; overlapping or contiguous spans of the same type and channel become one."""
    out: list[RecordSpan] = []
    for s in sorted(spans, key=lambda x: (x.start, x.end)):
        last = out[-1] if out else None
        if last is not None and s.start <= last.end + gap and s.type == last.type and s.device_id == last.device_id:
            if s.end > last.end:
                last.end = s.end
            continue
        out.append(RecordSpan(s.start, s.end, s.type, s.file_path, s.secrecy, s.device_id))
    return out


class RecordSearch:
    """One per GB/T 28181 server (``app.state.record_search``)."""

    def __init__(self, server: GbServer) -> None:
        self.server = server
        self._searches: dict[tuple[str, str], _Search] = {}
        server.message_hooks.append(self._hook)

    def close(self) -> None:
        if self._hook in self.server.message_hooks:
            self.server.message_hooks.remove(self._hook)

    def _hook(self, msg: SipMessage, peer: Peer, doc: Manscdp) -> bool:
        if doc.root != "Response" or doc.cmd_type != "RecordInfo":
            return False
        device_id = msg.from_user
        search = self._searches.get((device_id, doc.sn))
        if search is None:
            return False  # not ours: the server's own handling (record_info) answers it
        st = self.server.devices.get(device_id)
        # like the server: a MESSAGE is accepted only from the address the registered device registered from
        if st is None or not st.registered or (st.peer is not None and st.peer.addr[0] != peer.addr[0]):
            self.server.endpoint.reply(msg, msg.response(403), peer)
            return True
        self.server.endpoint.reply(msg, msg.response(200), peer)
        st.last_seen = time.monotonic()
        total, spans = record_items(doc)
        search.total = total if total is not None else search.total
        search.pages += 1
        search.received += len(spans)
        room = MAX_ITEMS - len(search.spans)
        search.spans.extend(spans[:max(room, 0)])
        if search.total is None or search.received >= search.total or room <= len(spans):
            search.done.set()
        return True

    async def search(self, device_id: str, channel_id: str, start: datetime, end: datetime,
                     timeout: float = 10.0, record_type: str = "all") -> list[RecordSpan]:
        """The recordings of ``channel_id`` (on device / lower platform ``device_id``) overlapping [start, end],
        sorted and merged; on timeout what has arrived (``TimeoutError`` when no page came at all). ``LookupError``
        when the device is unknown or unreachable, or refused the query."""
        st = self.server.devices.get(device_id)
        if st is None:
            raise LookupError(f"unknown device {device_id}")
        sn = str(next(self.server._sn))
        key = (device_id, sn)
        search = self._searches[key] = _Search()
        body = build("Query", "RecordInfo", sn, channel_id, [
            ("StartTime", format_time(start)), ("EndTime", format_time(end)), ("FilePath", channel_id),
            ("Address", "Address1"), ("Secrecy", 0), ("Type", record_type)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            resp = await self.server._request(st, "MESSAGE", body, timeout=min(timeout, 8.0))
            if (resp.status or 0) >= 300:
                raise LookupError(f"device answered {resp.status}")
            try:
                await asyncio.wait_for(search.done.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if not search.pages:  # nothing at all: not "no recordings"
                    raise
                log.info("gb28181_record_search_partial", device=device_id, channel=channel_id,
                         received=search.received, total=search.total)
        finally:
            self._searches.pop(key, None)
        return merge_spans(search.spans)
