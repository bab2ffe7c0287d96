"""Real-time push of warnings to connected terminals (Server-Sent Events) and to outgoing webhooks.

One small class per channel, as Frigate's communicators are: ``TerminalHub`` (browsers, SSE) listens to ``warning``
events on the bus, so a warning raised in a worker process or on another node (NATS) reaches the terminals
connected here; it is live only by nature (a terminal that (re)connects loads the warning list, the durable record).
``WebhookSender`` (HTTP POST) sends from a delivery outbox written in the warning's own transaction, with retries
and back-off that survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update

from anfang.bus.base import Bus, Subscription
from anfang.core.events import Event, EventKind
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.warnings.models import WebhookDelivery
from anfang.warnings.service import visible_to

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Terminal:
    principal: Principal
    station_id: int | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))


class TerminalHub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.terminals: set[Terminal] = set()
        self._sub: Subscription | None = None
        self.delivered = 0

    async def start(self) -> None:
        self._sub = await self.bus.subscribe(self.on_warning, kinds=[EventKind.warning])

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()

    def connect(self, p: Principal, station_id: int | None) -> Terminal:
        t = Terminal(p, station_id)
        self.terminals.add(t)
        return t

    def disconnect(self, t: Terminal) -> None:
        self.terminals.discard(t)

    async def on_warning(self, e: Event) -> None:
        w = e.data.get("warning") or {}
        for t in list(self.terminals):
            if visible_to(t.principal, w, t.station_id):
                with contextlib.suppress(asyncio.QueueFull):  # a stalled terminal reloads the list on reconnect
                    t.queue.put_nowait(e.data)
                    self.delivered += 1


class WebhookSender:
    """POSTs every new or escalated warning as JSON to the configured URLs.

    ``enqueue`` is a ``WarningService`` hook: it writes one ``webhook_deliveries`` row per URL in the warning's own
    transaction, so a warning that is committed always gets its webhooks, even if the process dies right after.
    The send loop POSTs due rows; 2xx/3xx is done, 5xx / 408 / 429 / network errors retry with exponential
    back-off (``base_delay_s`` · 2^attempt, at most ``max_delay_s``) kept in the row, so the schedule survives a
    restart; other 4xx, or ``max_attempts`` failures, give up (logged). A row is claimed by a conditional update
    before it is sent, so two processes on one database never both send it."""

    def __init__(self, store: Store, urls: list[str], *, max_attempts: int = 12, base_delay_s: float = 1.0,
                 max_delay_s: float = 600.0, poll_s: float = 0.5, timeout_s: float = 5.0) -> None:
        self.store, self.urls = store, list(urls)
        self.max_attempts, self.base_delay_s, self.max_delay_s = max_attempts, base_delay_s, max_delay_s
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = self.failed = 0

    def enqueue(self, s: Any, v: dict[str, Any], step: str) -> None:
        if step not in ("raised", "escalated"):
            return
        for url in self.urls:
            s.add(WebhookDelivery(warning_uid=v["uid"], step=step, url=url, payload={"step": step, "warning": v},
                                  next_at=utcnow()))

    async def start(self) -> None:
        if self.urls:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while True:
            due: list[tuple[int, str, dict[str, Any], int]] = []
            unsent: list[int] = []
            try:
                due = await asyncio.to_thread(self._claim)
                unsent = [d[0] for d in due]
                for row_id, url, payload, attempts in due:
                    await self._send(row_id, url, payload, attempts)
                    unsent.remove(row_id)
            except asyncio.CancelledError:
                if unsent:  # an orderly stop hands its claimed rows back at once (a crash: when the lease ends)
                    self._release(unsent)
                raise
            except Exception:  # noqa: BLE001 - keep delivering after a database hiccup
                log.exception("webhook_loop_failed")
            if not due:
                await asyncio.sleep(self.poll_s)

    def _claim(self, limit: int = 20) -> list[tuple[int, str, dict[str, Any], int]]:
        """Due pending rows, each claimed for ``timeout_s`` + a margin (a crash mid-send frees it again)."""
        now = utcnow()
        lease = now + timedelta(seconds=self.timeout_s + 30)
        out = []
        with self.store.session() as s:
            rows = list(s.execute(select(WebhookDelivery.id, WebhookDelivery.url, WebhookDelivery.payload,
                                         WebhookDelivery.attempts, WebhookDelivery.next_at)
                                  .where(WebhookDelivery.state == "pending", WebhookDelivery.next_at <= now)
                                  .order_by(WebhookDelivery.id).limit(limit)))
            for r in rows:
                got = s.execute(update(WebhookDelivery).where(WebhookDelivery.id == r.id,
                                                              WebhookDelivery.state == "pending",
                                                              WebhookDelivery.next_at == r.next_at)
                                .values(next_at=lease))
                if got.rowcount == 1:
                    out.append((r.id, r.url, r.payload, r.attempts))
        return out

    async def _send(self, row_id: int, url: str, payload: dict[str, Any], attempts: int) -> None:
        assert self._client is not None
        error: str | None
        try:
            r = await self._client.post(url, json=payload)
            retry = r.status_code >= 500 or r.status_code in (408, 429)
            error = None if r.status_code < 400 else f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            retry, error = True, f"{type(exc).__name__}: {exc}"[:300]
        attempts += 1
        if error is None:
            self.sent += 1
            values: dict[str, Any] = {"state": "sent", "sent_at": utcnow(), "attempts": attempts, "last_error": None}
        elif retry and attempts < self.max_attempts:
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempts - 1))
            values = {"attempts": attempts, "last_error": error, "next_at": utcnow() + timedelta(seconds=delay)}
        else:
            self.failed += 1
            values = {"state": "failed", "attempts": attempts, "last_error": error}
            log.warning("webhook_failed", url=url, warning=payload.get("warning", {}).get("uid"), error=error,
                        attempts=attempts)
        await asyncio.to_thread(self._update, row_id, values)

    def _release(self, ids: list[int]) -> None:
        with self.store.session() as s:
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids), WebhookDelivery.state == "pending")
                      .values(next_at=utcnow()))

    def _update(self, row_id: int, values: dict[str, Any]) -> None:
        with self.store.session() as s:
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == row_id).values(**values))
