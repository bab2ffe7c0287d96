"""MQTT consumer (aiomqtt): subscribes to ``anfang/v1/#`` and hands each message to IotIngest. Reconnects with
backoff when the broker goes away; a bad message is counted by IotIngest and never stops the loop.

Acknowledgement after commit: paho (under aiomqtt) would send the PUBACK of a QoS 1 message as soon as it arrives,
so a crash before the event-log commit lost it. The consumer switches paho to manual acknowledgement and sends each
PUBACK only once the message is committed (or refused as bad input, which a redelivery would not cure). The
session is persistent (``clean_session=False``) under a client id derived from the node id, so the broker keeps
what arrives while the node is down and redelivers what was never acknowledged. A storage failure closes the
connection so that the broker redelivers the unacknowledged messages on the next one. aiomqtt 2.5 has no option
for manual acknowledgement; its documented escape hatch ``client._client`` (the paho client) is used for it."""

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
        self._failed = asyncio.Event()
        self.acked = 0

    async def _one(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        try:
            await self.ingest.handle(topic, bytes(message.payload or b""))  # type: ignore[arg-type]
        except Rejected:
            pass  # counted; acknowledged, since a redelivery would be refused the same way
        except Exception:  # noqa: BLE001 - a storage hiccup must not end the consumer
            log.exception("mqtt_message_failed", topic=topic)
            self._failed.set()  # not acknowledged: reconnect, and the broker redelivers it
            return
        finally:
            self._slots.release()
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)  # noqa: SLF001 - see the module docstring
            self.acked += 1

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
                client = aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                                        identifier=self.client_id, clean_session=False)
                client._client.manual_ack_set(True)  # noqa: SLF001 - PUBACK after commit (module docstring)
                self._failed.clear()
                async with client:
                    await client.subscribe(f"{TOPIC_PREFIX}/#", qos=1)
                    self.connected.set()
                    delay = 1.0
                    async for message in client.messages:
                        # Messages are handled concurrently (bounded) so that the event recorder can commit them
                        # in groups; tasks start in arrival order, which keeps each device's readings in order.
                        await self._slots.acquire()
                        if self._failed.is_set():
                            self._slots.release()
                            raise aiomqtt.MqttError("storage failure: reconnecting for redelivery")
                        task = asyncio.get_running_loop().create_task(self._one(client, message))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("mqtt_disconnected", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
