"""The bus interface every producer and consumer uses; implementations are in-process and NATS JetStream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from anfang.core.events import Event, EventKind

Handler = Callable[[Event], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None:
        """Hand the event to the bus; returns once the bus has accepted it (for JetStream: stored)."""

    async def subscribe(self, handler: Handler, *, kinds: Iterable[EventKind] | None = None,
                        durable: str | None = None) -> Subscription:
        """Call ``handler`` for every event of ``kinds`` (all when None). ``durable`` names a consumer that
        resumes where it stopped (JetStream); competing subscribers with the same name share the work."""
