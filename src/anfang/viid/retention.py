"""Retention: captures and images older than ``viid_retention_days`` (by reception time) are removed by a job that
runs hourly, except captures hit by an open disposition (status 0) — evidence of an open warning stays. Blob index
rows no longer referenced go too, and segment files with nothing live left are deleted."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from anfang.store.engine import Store
from anfang.viid.images import SegmentImageStore
from anfang.viid.models import ViidBlob, ViidDisposition, ViidDispositionHit, ViidImage, ViidObject

log = structlog.get_logger(__name__)


@dataclass
class PurgeResult:
    objects: int
    images: int
    blobs: int
    kept_for_dispositions: int


def purge(store: Store, images: SegmentImageStore | None, days: float, now: datetime | None = None) -> PurgeResult:
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with store.session() as s:
        protected = set(s.scalars(select(ViidDispositionHit.object_pk).join(
            ViidDisposition, ViidDisposition.disposition_id == ViidDispositionHit.disposition_id)
            .where(ViidDisposition.status == 0)))
        old = [pk for pk in s.scalars(select(ViidObject.id).where(ViidObject.received_at < cutoff))]
        doomed = [pk for pk in old if pk not in protected]
        n_img = 0
        for i in range(0, len(doomed), 500):
            chunk = doomed[i:i + 500]
            n_img += s.execute(delete(ViidImage).where(ViidImage.object_pk.in_(chunk))).rowcount or 0
            s.execute(delete(ViidDispositionHit).where(ViidDispositionHit.object_pk.in_(chunk)))
            s.execute(delete(ViidObject).where(ViidObject.id.in_(chunk)))
        n_img += s.execute(delete(ViidImage).where(ViidImage.object_pk.is_(None),
                                                   ViidImage.shot_at < cutoff)).rowcount or 0
        live = select(ViidImage.sha256).distinct()
        n_blobs = s.execute(delete(ViidBlob).where(ViidBlob.sha256.not_in(live),
                                                   ViidBlob.created_at < cutoff)).rowcount or 0
        locations = list(s.scalars(select(ViidBlob.location)))
    if images is not None and n_blobs:
        images.release([], live_segments={images.segment_of(loc) for loc in locations})
    return PurgeResult(len(doomed), n_img, n_blobs, len(old) - len(doomed))


class RetentionService:
    def __init__(self, node: Any, *, every: float = 3600.0, first_after: float = 60.0) -> None:
        self.node, self.every, self.first_after = node, every, first_after
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="viid-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            try:
                result = await run_in_threadpool(purge, self.node.store, self.node.images,
                                                 self.node.settings.viid_retention_days)
                log.info("viid_retention", **result.__dict__)
            except Exception:  # noqa: BLE001
                log.exception("viid_retention_failed")
            await asyncio.sleep(self.every)
