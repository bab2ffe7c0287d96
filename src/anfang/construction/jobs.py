"""The hourly fault scan: raises work orders from the current fault signals of every device (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from anfang.construction import operations
from anfang.store.engine import Store

log = logging.getLogger(__name__)


class WorkOrderJob:
    """A background service (``app.state.services``): every ``every_s`` seconds, first run after one interval."""

    def __init__(self, store: Store, every_s: float = 3600) -> None:
        self.store, self.every_s = store, every_s
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def run_once(self) -> int:
        created = operations.raise_work_orders(self.store, operations.fault_signals(self.store))
        return len(created)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                n = await asyncio.to_thread(self.run_once)
                if n:
                    log.info("work_orders_raised", extra={"count": n})
            except Exception:  # noqa: BLE001 - try again next interval
                log.exception("work_order_job_failed")
