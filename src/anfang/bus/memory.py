"""In-process bus: the embedded default. Each subscriber has its own queue and task, so a slow consumer never
blocks a producer or another consumer; a failing handler is logged and the event counted, never re-raised into the
producer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from anfang.bus.base import Handler
from anfang.core.events import Event, EventKind

log = structlog.get_logger(__name__)


class _Sub:
    def __init__(self, bus: InProcessBus, handler: Handler, kinds: frozenset[EventKind] | None, name: str) -> None:
        self.bus, self.handler, self.kinds, self.name = bus, handler, kinds, name
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.failed = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"bus:{name}")

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.handler(event)
            except Exception:  # noqa: BLE001 - a consumer's bug must not stop the bus
                self.failed += 1
                log.exception("bus_handler_failed", subscriber=self.name, kind=event.kind.value, event_id=event.id)
            finally:
                self.queue.task_done()

    async def stop(self) -> None:
        self.bus._subs.discard(self)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class InProcessBus:
    def __init__(self) -> None:
        self._subs: set[_Sub] = set()
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.stop()

    async def publish(self, event: Event) -> None:
        self.published += 1
        for sub in list(self._subs):
            if sub.kinds is None or event.kind in sub.kinds:
                sub.queue.put_nowait(event)

    async def subscribe(self, handler: Handler, *, kinds: Iterable[EventKind] | None = None,
                        durable: str | None = None) -> _Sub:
        sub = _Sub(self, handler, frozenset(kinds) if kinds is not None else None,
                   durable or getattr(handler, "__qualname__", "handler"))
        self._subs.add(sub)
        return sub

    async def drain(self) -> None:
        """Wait until every subscriber has handled what was published so far (tests, orderly shutdown)."""
        for sub in list(self._subs):
            await sub.queue.join()
