"""Real-time push of warnings to connected terminals (Server-Sent Events) and to outgoing webhooks.

One small class per channel, as Frigate's communicators are: ``TerminalHub`` (browsers, SSE) and ``WebhookSender``
(HTTP POST with retries). Both listen to ``warning`` events on the bus, so a warning raised in a worker process or
on another node (NATS) reaches the terminals connected here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from anfang.bus.base import Bus, Subscription
from anfang.core.events import Event, EventKind
from anfang.security.scope import Principal
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
    """POSTs every new or escalated warning as JSON to the configured URLs, retrying with backoff."""

    def __init__(self, bus: Bus, urls: list[str], *, retries: int = 5) -> None:
        self.bus, self.urls, self.retries = bus, urls, retries
        self._sub: Subscription | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = self.failed = 0

    async def start(self) -> None:
        if self.urls:
            self._client = httpx.AsyncClient(timeout=5.0)
            self._sub = await self.bus.subscribe(self.on_warning, kinds=[EventKind.warning], durable="webhooks")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
        if self._client is not None:
            await self._client.aclose()

    async def on_warning(self, e: Event) -> None:
        if e.data.get("step") not in ("raised", "escalated") or self._client is None:
            return
        for url in self.urls:
            for attempt in range(self.retries):
                try:
                    r = await self._client.post(url, json=e.data)
                    if r.status_code < 500:
                        self.sent += 1
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
            else:
                self.failed += 1
                log.warning("webhook_failed", url=url, warning=e.data.get("warning", {}).get("uid"))
