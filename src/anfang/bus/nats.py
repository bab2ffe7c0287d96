"""NATS JetStream bus (production): events are stored in a stream before ``publish`` returns; durable consumers
resume where they stopped after a restart, and subscribers sharing a durable name form a queue group that shares
the work (more warning workers on more machines). Non-durable subscribers (terminal push) use plain NATS
subscriptions and see only what arrives while they are connected.

Message id = event id (``Nats-Msg-Id``), so a publisher retrying after a timeout does not store a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import nats
import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from anfang.bus.base import Handler
from anfang.core.events import Event, EventKind

log = structlog.get_logger(__name__)


class _NatsSub:
    def __init__(self, sub: Any) -> None:
        self._sub = sub
        self.failed = 0

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # already closed with the connection
            await self._sub.unsubscribe()


class NatsBus:
    def __init__(self, url: str, *, stream: str = "ANFANG_EVENTS", prefix: str = "anfang",
                 max_deliver: int = 10, max_age_days: float = 7) -> None:
        self.url, self.stream, self.prefix = url, stream, prefix
        self.max_deliver, self.max_age_days = max_deliver, max_age_days
        self.nc: Any = None
        self.js: Any = None
        self.published = 0

    def subject(self, kind: EventKind | str) -> str:
        return f"{self.prefix}.events.{EventKind(kind).value}"

    async def start(self) -> None:
        self.nc = await nats.connect(self.url, name="anfang", max_reconnect_attempts=-1)
        self.js = self.nc.jetstream()
        config = StreamConfig(name=self.stream, subjects=[f"{self.prefix}.events.>"], storage=StorageType.FILE,
                              max_age=self.max_age_days * 86400, duplicate_window=120)
        try:
            await self.js.stream_info(self.stream)
            await self.js.update_stream(config)
        except NotFoundError:
            await self.js.add_stream(config)

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            self.nc = None

    async def publish(self, event: Event) -> None:
        await self.js.publish(self.subject(event.kind), event.to_json(), headers={"Nats-Msg-Id": event.id})
        self.published += 1

    async def subscribe(self, handler: Handler, *, kinds: Iterable[EventKind] | None = None,
                        durable: str | None = None) -> _NatsSub:
        wanted = frozenset(kinds) if kinds is not None else None
        holder: list[_NatsSub] = []

        async def on_msg(msg: Msg) -> None:
            try:
                event = Event.from_json(msg.data)
            except Exception:  # noqa: BLE001 - a foreign or corrupt message is dropped, not redelivered forever
                log.warning("nats_bad_message", subject=msg.subject)
                if durable:
                    await msg.term()
                return
            if wanted is not None and event.kind not in wanted:
                if durable:
                    await msg.ack()
                return
            try:
                await handler(event)
            except Exception:  # noqa: BLE001 - redeliver later; the handler's bug must not kill the subscription
                holder[0].failed += 1
                log.exception("bus_handler_failed", durable=durable, event_id=event.id)
                if durable:
                    await msg.nak(delay=1.0)
                return
            if durable:
                await msg.ack()

        subject = f"{self.prefix}.events.>"
        if len(wanted or ()) == 1:
            subject = self.subject(next(iter(wanted)))  # type: ignore[arg-type]
        if durable:
            cfg = ConsumerConfig(durable_name=durable, deliver_group=durable, ack_policy=AckPolicy.EXPLICIT,
                                 deliver_policy=DeliverPolicy.ALL, max_deliver=self.max_deliver, ack_wait=30)
            sub = await self.js.subscribe(subject, queue=durable, durable=durable, cb=on_msg, manual_ack=True,
                                          stream=self.stream, config=cfg)
        else:
            sub = await self.nc.subscribe(subject, cb=on_msg)
        holder.append(_NatsSub(sub))
        return holder[0]

    async def drain(self) -> None:
        """Best effort for tests: let in-flight callbacks run."""
        await self.nc.flush()
        await asyncio.sleep(0.05)

    async def delete_stream(self) -> None:
        with contextlib.suppress(NotFoundError):
            await self.js.delete_stream(self.stream)
