"""The background loop both GA/T 1400 notifiers share (subscription deliveries, disposition hits): one httpx
client, ``once()`` every ``poll`` seconds, a failed round logged and the loop going on."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import structlog

log = structlog.get_logger(__name__)


class HttpPoller:
    """A Service (``start`` / ``stop``) for ``app.state.services``; subclasses implement :meth:`once`."""

    task_name = "viid-poller"
    http_timeout = 10.0

    def __init__(self, node: Any, *, poll: float = 0.5) -> None:
        self.node, self.poll = node, poll
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    async def once(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.http_timeout)
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception:  # noqa: BLE001 - a round's failure must not end the loop
                log.exception("viid_poll_round_failed", task=self.task_name)
            await asyncio.sleep(self.poll)
