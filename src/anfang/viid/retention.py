"""Retention: captures are kept per day of capture time (``anfang.viid.days``); a job that runs hourly drops every
day that ended more than ``viid_retention_days`` ago, whole: on PostgreSQL the day's partition is detached and
dropped, on SQLite the day is one range of the ``shot_at`` index; its image rows go, and its segment files are
unlinked. Captures hit by an open disposition (status 0) are kept — evidence of an open warning stays: their rows
move to the default partition before the day's partition is dropped, and the bytes of their images move to
today's segment files before the day's files are unlinked. The same job makes the partitions of the days ahead."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, exists, func, or_, select, update
from starlette.concurrency import run_in_threadpool

from anfang.store.engine import Store
from anfang.viid import days as capture_days
from anfang.viid.images import SegmentImageStore
from anfang.viid.models import ViidBlob, ViidDisposition, ViidDispositionHit, ViidImage, ViidObject

log = structlog.get_logger(__name__)


@dataclass
class PurgeResult:
    objects: int
    images: int
    blobs: int
    kept_for_dispositions: int
    days_dropped: int = 0


def cutoff_day(days: float, now: datetime | None = None) -> date:
    """The oldest day kept: every day before it ended more than ``days`` ago."""
    return capture_days.day_of((now or datetime.now(UTC)) - timedelta(days=days))


def _protected() -> Any:
    return (select(ViidDispositionHit.object_pk).join(
        ViidDisposition, ViidDisposition.disposition_id == ViidDispositionHit.disposition_id)
        .where(ViidDisposition.status == 0))


def maintain(store: Store, now: datetime | None = None) -> list[date]:
    """Make the partitions of today and the days ahead (PostgreSQL; nothing on SQLite)."""
    with store.session() as s:
        return capture_days.ensure_ahead(s.connection(), capture_days.day_of(now or datetime.now(UTC)))


def purge(store: Store, images: SegmentImageStore | None, days: float, now: datetime | None = None) -> PurgeResult:
    now = now or datetime.now(UTC)
    first_kept = cutoff_day(days, now)
    cutoff = capture_days.day_start(first_kept)
    n_obj = n_days = 0
    # 1. capture rows: PostgreSQL drops each old day's partition (one short transaction a day)
    with store.session() as s:
        old_days = [d for d in capture_days.partition_days(s.connection()) if d < first_kept]
    for day in old_days:
        with store.session() as s:
            keep = list(s.scalars(_protected()))
            dropped, _ = capture_days.drop_day(s.connection(), day, keep)
            n_obj += dropped
            n_days += 1
    with store.session() as s:
        # SQLite: the old days are one index range; PostgreSQL: what sits in the default partition
        n_obj += s.execute(delete(ViidObject).where(ViidObject.shot_at < cutoff,
                                                    ViidObject.id.not_in(_protected()))).rowcount or 0
        kept = s.scalar(select(func.count()).select_from(ViidObject).where(ViidObject.shot_at < cutoff)) or 0
        s.execute(delete(ViidDispositionHit).where(~exists().where(ViidObject.id == ViidDispositionHit.object_pk)))
        n_img = s.execute(delete(ViidImage).where(
            ViidImage.shot_at < cutoff,
            or_(ViidImage.object_pk.is_(None), ViidImage.object_pk.not_in(_protected())))).rowcount or 0
        # 2. the blobs of the old days still used (by kept evidence) move to today's files; the rest go
        key = capture_days.day_key(first_kept)
        moving = s.execute(select(ViidBlob.sha256, ViidBlob.location).where(
            ViidBlob.day < key, ViidBlob.sha256.in_(select(ViidImage.sha256).where(ViidImage.shot_at < cutoff)))
        ).all()
        if moving and images is not None:
            today = capture_days.day_of(now)
            data = [images.get(loc) for _, loc in moving]
            for (sha, _), loc in zip(moving, images.put_many(data, day=today), strict=True):
                s.execute(update(ViidBlob).where(ViidBlob.sha256 == sha).values(
                    location=loc, day=capture_days.day_key(today)))
        n_blobs = s.execute(delete(ViidBlob).where(ViidBlob.day < key)).rowcount or 0
        # blobs of segment files written before per-day files: by reference, as before
        live = select(ViidImage.sha256).distinct()
        legacy = s.execute(delete(ViidBlob).where(ViidBlob.day.is_(None), ViidBlob.sha256.not_in(live),
                                                  ViidBlob.created_at < cutoff)).rowcount or 0
        legacy_locations = list(s.scalars(select(ViidBlob.location).where(ViidBlob.day.is_(None))))
    # 3. the old days' files (after the commit: an image is never unlinked while a committed row points at it)
    if images is not None:
        images.drop_days_before(first_kept)
        if legacy:
            images.release([], live_segments={n for loc in legacy_locations
                                              if (n := images.segment_of(loc)) is not None})
    return PurgeResult(n_obj, n_img, n_blobs + legacy, kept, n_days)


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
                made = await run_in_threadpool(maintain, self.node.store)
                result = await run_in_threadpool(purge, self.node.store, self.node.images,
                                                 self.node.settings.viid_retention_days)
                log.info("viid_retention", partitions_made=len(made), **result.__dict__)
            except Exception:  # noqa: BLE001
                log.exception("viid_retention_failed")
            await asyncio.sleep(self.every)
