"""Recording retention, measured (issue 16): the 30-day rule as a fact asked of each camera, not a declared figure.

Every ``retention_check_hours`` (default 24) ``RetentionCheck`` asks each online GB/T 28181 channel for its
recordings (RecordInfo, ``anfang.gb28181.records``) over the window 30–31 days back. When some exist, one more query
back to ``max_days`` finds the oldest; when none, a bisection over the last 30 days finds the oldest day that still
has recordings (at most 7 queries per channel in all). The result goes to the channel's attributes
(``retention_days``, ``retention_measured_at``) and the device's (``retention_days``: the least of its channels,
``retention_measured_at``, ``retention_source: "measured"``), which the construction spec check, acceptance, the
monthly circular and the operations faults read; a device below ``min_retention_days`` (30) gets an operations work
order with cause ``retention`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from anfang.construction.operations import Signal, load_ops_rules, raise_work_orders
from anfang.devices.models import Channel, Device
from anfang.devices.service import ONLINE
from anfang.gb28181.records import RecordSearch, RecordSpan
from anfang.store.base import utcnow
from anfang.store.engine import Store

if TYPE_CHECKING:
    from anfang.gb28181.server import GbServer

log = structlog.get_logger(__name__)
DAY = timedelta(days=1)


class RetentionCheck:
    """A Service (``start`` / ``stop``) for ``app.state.services``; ``run_once`` measures every online channel."""

    def __init__(self, server: GbServer, store: Store, *, interval_hours: float = 24.0, first_delay: float = 300.0,
                 search: RecordSearch | None = None, timeout: float = 10.0, max_days: int = 180,
                 concurrency: int = 4) -> None:
        self.server, self.store = server, store
        self.interval = max(0.01, interval_hours) * 3600.0
        self.first_delay = first_delay
        self._search = search
        self.timeout, self.max_days = timeout, max_days
        self.concurrency = concurrency
        self._task: asyncio.Task | None = None
        self.last_run: datetime | None = None

    @property
    def search(self) -> RecordSearch:
        if self._search is None:
            self._search = RecordSearch(self.server)
        return self._search

    @classmethod
    def from_settings(cls, server: GbServer, store: Store, settings: Any, search: RecordSearch | None = None
                      ) -> RetentionCheck:
        return cls(server, store, interval_hours=float(getattr(settings, "retention_check_hours", 24.0)),
                   search=search)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention-check")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay)  # devices register and report their catalogs first
        while True:
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - a failed round is logged and tried again next interval
                log.exception("retention_check_failed")
            await asyncio.sleep(self.interval)

    # ---- measuring
    async def measure(self, device_id: str, channel_id: str, now: datetime | None = None) -> float:
        """Days of recordings the channel keeps (0 when it has none in the last day); ``TimeoutError`` /
        ``LookupError`` when the device does not answer."""
        now = now or utcnow()
        min_days = load_ops_rules().min_retention_days
        cache: dict[tuple[int, int], list[RecordSpan]] = {}

        async def window(k0: int, k1: int) -> list[RecordSpan]:  # recordings k0..k1 days back
            if (k0, k1) not in cache:
                cache[(k0, k1)] = await self.search.search(device_id, channel_id, now - k1 * DAY, now - k0 * DAY,
                                                           timeout=self.timeout)
            return cache[(k0, k1)]

        found = await window(min_days, min_days + 1)
        if found:
            found = found + await window(min_days, self.max_days)
        else:
            if not await window(0, 1):
                return 0.0
            lo, hi = 0, min_days  # recordings lo..lo+1 days back; none hi..hi+1 days back
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if await window(mid, mid + 1):
                    lo = mid
                else:
                    hi = mid
            found = await window(lo, lo + 1)
        oldest = min(s.start for s in found)
        return round(max(0.0, (now - oldest) / DAY), 1)

    def _channels(self) -> list[tuple[str, str]]:
        with self.store.session() as s:
            rows = s.execute(select(Device.device_id, Channel.channel_id).join(Channel, Channel.device_pk == Device.id)
                             .where(Device.protocol == "gb28181", Device.status == ONLINE,
                                    Channel.status == "online").order_by(Device.device_id, Channel.channel_id)).all()
        return [(d, c) for d, c in rows
                if (st := self.server.devices.get(d)) is not None and st.registered and st.status == ONLINE]

    async def run_once(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Measure every online channel, store the results, open work orders; returns one dict per channel."""
        now = now or utcnow()
        sem = asyncio.Semaphore(self.concurrency)
        results: list[dict[str, Any]] = []

        async def one(device_id: str, channel_id: str) -> None:
            async with sem:
                try:
                    days = await self.measure(device_id, channel_id, now)
                except (TimeoutError, LookupError) as exc:
                    log.info("retention_unanswered", device=device_id, channel=channel_id, error=str(exc))
                    return
                results.append({"device_id": device_id, "channel_id": channel_id, "retention_days": days})

        await asyncio.gather(*(one(d, c) for d, c in await asyncio.to_thread(self._channels)))
        if results:
            orders = await asyncio.to_thread(self._store_results, results, now)
            log.info("retention_measured", channels=len(results), work_orders=orders)
        self.last_run = now
        return results

    def _store_results(self, results: list[dict[str, Any]], now: datetime) -> int:
        rules = load_ops_rules()
        by_device: dict[str, dict[str, float]] = {}
        for r in results:
            by_device.setdefault(r["device_id"], {})[r["channel_id"]] = r["retention_days"]
        signals: list[Signal] = []
        stamp = now.isoformat()
        with self.store.session() as s:
            for device_id, channels in by_device.items():
                dev = s.scalar(select(Device).where(Device.device_id == device_id, Device.protocol == "gb28181")
                               .limit(1))
                if dev is None:
                    continue
                for ch in s.scalars(select(Channel).where(Channel.device_pk == dev.id,
                                                          Channel.channel_id.in_(list(channels)))):
                    ch.attributes = {**(ch.attributes or {}), "retention_days": channels[ch.channel_id],
                                     "retention_measured_at": stamp}
                least = min(channels.values())
                dev.attributes = {**(dev.attributes or {}), "retention_days": least, "retention_measured_at": stamp,
                                  "retention_source": "measured"}
                if least < rules.min_retention_days:
                    signals.append(Signal(dev.id, dev.device_id, dev.name, dev.community_code, "retention",
                                          f"录像存储实测 {least:g} 天，少于 {rules.min_retention_days} 天 / measured "
                                          f"retention {least:g} days", (dev.attributes or {}).get("maintainer")))
        return len(raise_work_orders(self.store, signals, now)) if signals else 0
