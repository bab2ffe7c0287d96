"""NATS JetStream bus against the local service: stored on publish, durable consumers lose nothing across a
restart, a queue group shares the work. Skips where NATS is absent (fails under ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from anfang.core.events import Event, EventKind
from conftest import _service_missing

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def nats_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError as exc:
        _service_missing(f"NATS not reachable at {NATS_URL}: {exc}")


def _bus():  # noqa: ANN202
    from anfang.bus.nats import NatsBus

    tag = uuid.uuid4().hex[:10]
    return NatsBus(NATS_URL, stream=f"T_{tag}", prefix=f"t{tag}")


async def _until(pred, timeout: float = 5.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_durable_consumer_resumes_after_restart(nats_up) -> None:
    async def scenario() -> list[str]:
        bus = _bus()
        await bus.start()
        got: list[str] = []

        async def handler(e: Event) -> None:
            got.append(e.source)

        sub = await bus.subscribe(handler, kinds=[EventKind.alarm], durable="warnings")
        await bus.publish(Event(kind=EventKind.alarm, source="a1"))
        await _until(lambda: got == ["a1"])
        await sub.stop()  # the consumer goes away; the durable stays on the server
        for i in (2, 3):
            await bus.publish(Event(kind=EventKind.alarm, source=f"a{i}"))
        await bus.publish(Event(kind=EventKind.sensor_reading, source="s1"))  # another kind: filtered
        again = Event(kind=EventKind.alarm, source="a3-dup")
        await bus.publish(again)
        await bus.publish(again)  # same id twice: stored once
        await bus.subscribe(handler, kinds=[EventKind.alarm], durable="warnings")
        await _until(lambda: len(got) >= 4)
        await asyncio.sleep(0.3)
        await bus.delete_stream()
        await bus.close()
        return got

    assert asyncio.run(scenario()) == ["a1", "a2", "a3", "a3-dup"]


def test_queue_group_shares_work_and_failed_handler_is_redelivered(nats_up) -> None:
    async def scenario() -> tuple[list[str], list[str], int]:
        bus = _bus()
        await bus.start()
        w1: list[str] = []
        w2: list[str] = []
        failures = {"n": 0}

        async def h1(e: Event) -> None:
            if e.source == "flaky" and failures["n"] == 0:
                failures["n"] += 1
                raise RuntimeError("transient")
            w1.append(e.source)

        async def h2(e: Event) -> None:
            if e.source == "flaky" and failures["n"] == 0:
                failures["n"] += 1
                raise RuntimeError("transient")
            w2.append(e.source)

        await bus.subscribe(h1, durable="faces")
        await bus.subscribe(h2, durable="faces")
        for i in range(40):
            await bus.publish(Event(kind=EventKind.face_capture, source=f"f{i}"))
        await bus.publish(Event(kind=EventKind.face_capture, source="flaky"))
        await _until(lambda: len(w1) + len(w2) >= 41, timeout=10)
        await bus.delete_stream()
        await bus.close()
        return w1, w2, failures["n"]

    w1, w2, failures = asyncio.run(scenario())
    assert sorted(w1 + w2) == sorted([f"f{i}" for i in range(40)] + ["flaky"])  # each exactly once
    assert failures == 1
