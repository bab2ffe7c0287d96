"""In-process bus: the embedded default. Each subscriber has its own queue and task, so a slow consumer never
blocks a producer or another consumer; a failing handler is retried twice, then logged and counted, never re-raised
into the producer.

Durable consumers (``durable=`` name, given a store): the queue is memory, but the events are already committed to
``event_log`` before they are published (EventRecorder, the GA/T 1400 writer). Each durable consumer keeps a cursor
in the database (``bus_cursors``: everything recorded before it is handled; written at most once per
``save_every_s`` and when idle) and on start replays, in recorded order,
what was recorded after it (less a margin for writers whose commit and publish are not under one lock). Replay can
hand an event over twice, so durable handlers are idempotent by event id (the warning engine makes no second
warning for an event it already turned into one). A crash between commit and handling therefore delays an event,
never loses it — the same guarantee JetStream's durable consumers give with NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from anfang.bus.base import Handler
from anfang.core.events import Event, EventKind

log = structlog.get_logger(__name__)

RETRIES = (0.2, 1.0)  # delays before the second and third attempt of a failing handler
SEEN_MAX = 50_000  # ids remembered per durable consumer (replay overlapping the live queue)


class _Sub:
    def __init__(self, bus: InProcessBus, handler: Handler, kinds: frozenset[EventKind] | None, name: str) -> None:
        self.bus, self.handler, self.kinds, self.name = bus, handler, kinds, name
        self.queue: asyncio.Queue[tuple[Event, datetime]] = asyncio.Queue()
        self.failed = self.handled = 0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"bus:{name}")

    def wants(self, event: Event) -> bool:
        return self.kinds is None or event.kind in self.kinds

    async def _call(self, event: Event) -> None:
        for attempt in range(len(RETRIES) + 1):
            try:
                await self.handler(event)
                self.handled += 1
                return
            except Exception:  # noqa: BLE001 - a consumer's bug must not stop the bus
                if attempt < len(RETRIES):
                    await asyncio.sleep(RETRIES[attempt])
                    continue
                self.failed += 1
                log.exception("bus_handler_failed", subscriber=self.name, kind=event.kind.value, event_id=event.id)

    async def _run(self) -> None:
        while True:
            event, stamp = await self.queue.get()
            try:
                await self._call(event)
            finally:
                self.queue.task_done()

    async def ready(self) -> None:
        return None

    async def stop(self) -> None:
        self.bus._subs.discard(self)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class _DurableSub(_Sub):
    """A subscriber with a database cursor: replays ``event_log`` after it on start, then follows the live queue."""

    def __init__(self, bus: InProcessBus, handler: Handler, kinds: frozenset[EventKind] | None, name: str) -> None:
        self.position: datetime | None = None
        self.saved: datetime | None = None
        self.replayed = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ready = asyncio.Event()
        self._last_save = 0.0
        super().__init__(bus, handler, kinds, name)

    def _remember(self, event_id: str) -> bool:
        """False when the event was handled already (replay and live queue overlap)."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    def _load(self) -> tuple[datetime, bool]:
        from anfang.store.eventlog import load_cursor

        with self.bus.store.session() as s:
            return load_cursor(s, self.name)

    def _page(self, after: tuple[datetime, str]) -> list[tuple[Event, datetime]]:
        from anfang.store.eventlog import backlog

        with self.bus.store.session() as s:
            return backlog(s, self.kinds, after, node_id=self.bus.node_id)

    def _save(self, position: datetime) -> None:
        from anfang.store.eventlog import save_cursor

        with self.bus.store.session() as s:
            save_cursor(s, self.name, position)

    async def _flush(self, force: bool = False) -> None:
        if self.position is None or self.position == self.saved:
            return
        now = time.monotonic()
        if not force and now - self._last_save < self.bus.save_every_s:
            return  # at most one cursor write per save_every_s; the idle timer below writes the last step
        self._last_save, position = now, self.position
        try:
            await asyncio.to_thread(self._save, position)
            self.saved = position
        except Exception:  # noqa: BLE001 - the cursor is saved again at the next step; replay covers the gap
            log.exception("bus_cursor_save_failed", subscriber=self.name)

    async def _step(self, event: Event, stamp: datetime) -> None:
        if self._remember(event.id):
            await self._call(event)
        if self.position is None or stamp > self.position:
            self.position = stamp
        await self._flush()

    async def _run(self) -> None:
        try:
            self.position, new = await asyncio.to_thread(self._load)
            self.saved = self.position
            after = (self.position if new else self.position - self.bus.replay_margin, "")
            while True:
                page = await asyncio.to_thread(self._page, after)
                for event, recorded_at in page:
                    self.replayed += 1
                    await self._step(event, recorded_at)
                if len(page) < 500:
                    break
                after = (page[-1][1], page[-1][0].id)
            if self.replayed:
                log.info("bus_replayed", subscriber=self.name, events=self.replayed)
        except Exception:  # noqa: BLE001 - without its cursor the consumer still follows the live events
            log.exception("bus_replay_failed", subscriber=self.name)
        finally:
            self._ready.set()
        while True:
            try:
                event, stamp = await asyncio.wait_for(self.queue.get(), timeout=self.bus.save_every_s)
            except TimeoutError:
                await self._flush()  # idle: the position of the last event handled
                continue
            try:
                await self._step(event, stamp)
            finally:
                self.queue.task_done()

    async def ready(self) -> None:
        await self._ready.wait()

    async def stop(self) -> None:
        await super().stop()
        await self._flush(force=True)

    def lag(self) -> dict[str, Any]:
        return {"consumer": self.name, "position": self.position, "queued": self.queue.qsize(),
                "replayed": self.replayed, "handled": self.handled, "failed": self.failed}


class InProcessBus:
    """``store`` (optional) enables durable consumers; ``node_id`` limits their replay to this node's own events."""

    def __init__(self, store: Any = None, *, node_id: str | None = None, replay_margin_s: float = 10.0,
                 save_every_s: float = 1.0) -> None:
        self.store, self.node_id = store, node_id
        self.replay_margin = timedelta(seconds=replay_margin_s)
        self.save_every_s = save_every_s
        self._subs: set[_Sub] = set()
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.stop()

    async def publish(self, event: Event) -> None:
        self.published += 1
        stamp = datetime.now(UTC)
        for sub in list(self._subs):
            if sub.wants(event):
                sub.queue.put_nowait((event, stamp))

    async def subscribe(self, handler: Handler, *, kinds: Iterable[EventKind] | None = None,
                        durable: str | None = None) -> _Sub:
        frozen = frozenset(kinds) if kinds is not None else None
        name = durable or getattr(handler, "__qualname__", "handler")
        cls = _DurableSub if durable and self.store is not None else _Sub
        sub = cls(self, handler, frozen, name)
        self._subs.add(sub)
        return sub

    def cursors(self) -> list[dict[str, Any]]:
        """Each durable consumer's position and queue (metrics)."""
        return [s.lag() for s in self._subs if isinstance(s, _DurableSub)]

    async def drain(self) -> None:
        """Wait until every subscriber has replayed its backlog and handled what was published so far (tests,
        orderly shutdown)."""
        for sub in list(self._subs):
            await sub.ready()
            await sub.queue.join()
