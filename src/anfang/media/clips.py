"""Alarm clips (报警录像): every new warning with a linked camera gets the video from ``before`` seconds before the
event to ``after`` seconds after it, pulled from the device's (NVR's) recording by a Download once that time has
passed, kept as ``data_dir/clips/<warning uid>.mp4`` and named in the warning's ``data.clip``. The card on the
warning page and the officer's terminal plays it; every viewing is audited.

Jobs wait in memory: a restart within ``after`` seconds of a warning loses its clip (noted in docs/video.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from anfang.core.events import Event, EventKind
from anfang.media import linking
from anfang.media.control import VideoError
from anfang.media.playback import PlaybackManager
from anfang.store.engine import Store

log = structlog.get_logger(__name__)
NO_CLIP = frozenset({"device"})  # a device going offline has nothing to film


class ClipService:
    def __init__(self, store: Store, bus: Any, playback: PlaybackManager, folder: Path, *, before: float = 30.0,
                 after: float = 60.0, speed: int = 4, keep_days: float = 90.0) -> None:
        self.store, self.bus, self.playback = store, bus, playback
        self.folder = Path(folder)
        self.before, self.after, self.speed = before, after, speed
        self.keep_days = keep_days  # clips older than this are deleted (the captures' retention by default)
        self._sub: Any = None
        self._tasks: set[asyncio.Task] = set()
        self.made = self.failed = 0

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sub = await self.bus.subscribe(self.on_warning, kinds=[EventKind.warning])
        task = asyncio.get_running_loop().create_task(self._expire_loop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def expire(self, now: float | None = None) -> int:
        """Delete the clips older than ``keep_days``; returns how many."""
        limit = (now or time.time()) - self.keep_days * 86400
        gone = 0
        for path in self.folder.glob("*.mp4"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < limit:
                    path.unlink()
                    gone += 1
        return gone

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(3600)
            gone = await asyncio.to_thread(self.expire)
            if gone:
                log.info("warning_clips_expired", clips=gone, days=self.keep_days)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
        for task in list(self._tasks):
            task.cancel()

    async def on_warning(self, e: Event) -> None:
        w = e.data.get("warning") or {}
        if e.data.get("step") != "raised" or not w.get("id") or w.get("category") in NO_CLIP:
            return
        task = asyncio.get_running_loop().create_task(self._clip(w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _clip(self, w: dict[str, Any]) -> None:
        try:
            at = datetime.fromisoformat(w["created_at"]).astimezone(UTC)
        except (KeyError, ValueError):
            return
        start, end = at - timedelta(seconds=self.before), at + timedelta(seconds=self.after)
        wait = (end - datetime.now(UTC)).total_seconds() + 2.0  # the recorder has written the last second
        if wait > 0:
            await asyncio.sleep(wait)
        linked = await asyncio.to_thread(linking.linked_channels, self.store, w)
        if not linked:
            return
        channel = linked[0]
        path = self.folder / f"{w.get('uid') or w['id']}.mp4"
        for attempt in range(3):
            try:
                session = await self.playback.open(channel["channel_id"], channel["device_id"], start, end,
                                                   kind="download", speed=self.speed)
                try:
                    await asyncio.wait_for(self.playback.download(session, path.with_suffix(".part")),
                                           timeout=(self.before + self.after) / self.speed + 60)
                finally:
                    await self.playback.close(session.key, "clip")
                if not session.ended:
                    raise VideoError(504, "clip_incomplete", "录像未完整 / the clip did not arrive in full")
                path.with_suffix(".part").replace(path)
                await asyncio.to_thread(self._attach, w["id"], channel, start, end, path)
                self.made += 1
                log.info("warning_clip_saved", warning=w["id"], channel=channel["channel_id"])
                return
            except (VideoError, TimeoutError, OSError) as exc:
                log.info("warning_clip_retry", warning=w["id"], attempt=attempt, error=str(exc)[:200])
                with contextlib.suppress(OSError):
                    path.with_suffix(".part").unlink(missing_ok=True)
                await asyncio.sleep(5 * (attempt + 1))
        self.failed += 1

    def _attach(self, warning_id: int, channel: dict[str, Any], start: datetime, end: datetime, path: Path) -> None:
        from anfang.warnings.models import Warning

        with self.store.session() as s:
            row = s.get(Warning, warning_id)
            if row is None:
                path.unlink(missing_ok=True)
                return
            row.data = {**(row.data or {}), "clip": {"channel_id": channel["channel_id"], "name": channel["name"],
                                                     "start": start.isoformat(), "end": end.isoformat(),
                                                     "url": f"/api/video/clips/{warning_id}",
                                                     "made_at": time.time()}}


def clip_path(store: Store, folder: Path, warning: dict[str, Any]) -> Path | None:
    clip = (warning.get("data") or {}).get("clip")
    if not clip:
        return None
    path = Path(folder) / f"{warning.get('uid') or warning['id']}.mp4"
    return path if path.exists() else None


