"""MQTT consumer (aiomqtt): subscribes to ``anfang/v1/#`` and hands each message to IotIngest. Reconnects with
backoff when the broker goes away; a bad message is counted by IotIngest and never stops the loop."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import structlog

from anfang.iot.schemas import TOPIC_PREFIX
from anfang.iot.service import IotIngest, Rejected

log = structlog.get_logger(__name__)


class MqttConsumer:
    def __init__(self, ingest: IotIngest, host: str, port: int = 1883, *, username: str | None = None,
                 password: str | None = None, client_id: str = "anfang-iot", max_inflight: int = 512) -> None:
        self.ingest, self.host, self.port = ingest, host, port
        self.username, self.password, self.client_id = username, password, client_id
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        self._slots = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task] = set()

    async def _one(self, topic: str, payload: bytes) -> None:
        try:
            await self.ingest.handle(topic, payload)
        except Rejected:
            pass
        except Exception:  # noqa: BLE001 - a storage hiccup must not end the consumer
            log.exception("mqtt_message_failed", topic=topic)
        finally:
            self._slots.release()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-consumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                                          identifier=self.client_id, clean_session=False) as client:
                    await client.subscribe(f"{TOPIC_PREFIX}/#", qos=1)
                    self.connected.set()
                    delay = 1.0
                    async for message in client.messages:
                        # Messages are handled concurrently (bounded) so that the event recorder can commit them
                        # in groups; tasks start in arrival order, which keeps each device's readings in order.
                        await self._slots.acquire()
                        task = asyncio.get_running_loop().create_task(
                            self._one(str(message.topic), bytes(message.payload or b"")))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("mqtt_disconnected", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
