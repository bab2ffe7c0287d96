"""In-process bus: delivery by kind, isolation of a failing consumer."""

from __future__ import annotations

import asyncio

from anfang.bus import InProcessBus
from anfang.core.events import Event, EventKind


def test_subscribers_get_their_kinds_and_a_failing_one_does_not_stop_the_others() -> None:
    async def scenario() -> tuple[list[str], list[str], int]:
        bus = InProcessBus()
        alarms: list[str] = []
        everything: list[str] = []

        async def on_alarm(e: Event) -> None:
            alarms.append(e.source)

        async def on_any(e: Event) -> None:
            everything.append(e.kind.value)

        async def broken(e: Event) -> None:
            raise RuntimeError("consumer bug")

        await bus.subscribe(on_alarm, kinds=[EventKind.alarm])
        await bus.subscribe(on_any)
        bad = await bus.subscribe(broken)
        await bus.publish(Event(kind=EventKind.alarm, source="a1"))
        await bus.publish(Event(kind=EventKind.sensor_reading, source="s1"))
        await bus.publish(Event(kind=EventKind.alarm, source="a2"))
        await bus.drain()
        failed = bad.failed
        await bus.close()
        return alarms, everything, failed

    alarms, everything, failed = asyncio.run(scenario())
    assert alarms == ["a1", "a2"]
    assert everything == ["alarm", "sensor_reading", "alarm"]
    assert failed == 3
