"""Alarm clips (报警录像): every new warning with a linked camera gets the video from ``before`` seconds before the
event to ``after`` seconds after it, kept as ``data_dir/clips/<warning uid>.mp4`` and named in the warning's
``data.clip`` (``source``: ``live`` or ``recording``). When a live stream of the camera is open on this node and its
ring buffer reaches back to ``before`` seconds before the event, the clip is cut from it: the ring's seconds, then
the stream's until ``after`` (``source: "live"``, nothing asked of the NVR). Otherwise, or when that stream ends
early, it is pulled from the device's (NVR's) recording by a Download once that time has passed. The card on the
warning page and the officer's terminal plays it; every viewing is audited.

Jobs wait in memory; when the service starts it looks for the warnings of the last ``catch_up`` seconds (an hour)
that have no clip (a restart lost their jobs) and pulls theirs from the recording."""

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
from anfang.media.stream import LiveStream, Viewer
from anfang.store.engine import Store

log = structlog.get_logger(__name__)
NO_CLIP = frozenset({"device"})  # a device going offline has nothing to film


class ClipService:
    def __init__(self, store: Store, bus: Any, playback: PlaybackManager, folder: Path, *, before: float = 30.0,
                 after: float = 60.0, speed: int = 4, keep_days: float = 90.0, catch_up: float = 3600.0) -> None:
        self.store, self.bus, self.playback = store, bus, playback
        self.folder = Path(folder)
        self.before, self.after, self.speed = before, after, speed
        self.keep_days = keep_days  # clips older than this are deleted (the captures' retention by default)
        self.catch_up_seconds = catch_up  # at start: the warnings this recent without a clip get theirs
        self._sub: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._pending: set[int] = set()  # warnings whose clip job runs
        self.made = self.failed = 0

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._sub = await self.bus.subscribe(self.on_warning, kinds=[EventKind.warning])
        self._spawn(self._expire_loop())
        await self.catch_up()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def catch_up(self) -> int:
        """Start the clips of the recent warnings that have none (their jobs were lost with a restart); returns
        how many were started."""
        missing = await asyncio.to_thread(self.missing, datetime.now(UTC))
        for w in missing:
            self._pending.add(w["id"])
            self._spawn(self._clip(w))
        if missing:
            log.info("warning_clips_catch_up", warnings=len(missing))
        return len(missing)

    def missing(self, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
        """The newest warnings raised within ``catch_up_seconds`` of ``now`` that could have a clip and have none
        (nor a job running)."""
        from sqlalchemy import select

        from anfang.warnings.models import Warning
        from anfang.warnings.service import view

        since = now - timedelta(seconds=self.catch_up_seconds)
        with self.store.session() as s:
            rows = s.scalars(select(Warning).where(Warning.created_at >= since, Warning.category.not_in(NO_CLIP))
                             .order_by(Warning.id.desc()).limit(limit)).all()
            return [view(w) for w in rows if not (w.data or {}).get("clip") and w.id not in self._pending]

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
        self._pending.add(w["id"])
        self._spawn(self._clip(w))

    async def _clip(self, w: dict[str, Any]) -> None:
        try:
            await self._make(w)
        finally:
            self._pending.discard(w["id"])

    async def _make(self, w: dict[str, Any]) -> None:
        try:
            at = datetime.fromisoformat(w["created_at"]).astimezone(UTC)
        except (KeyError, ValueError):
            return
        start, end = at - timedelta(seconds=self.before), at + timedelta(seconds=self.after)
        linked = await asyncio.to_thread(linking.linked_channels, self.store, w)
        if not linked:
            return
        channel = linked[0]
        path = self.folder / f"{w.get('uid') or w['id']}.mp4"
        if await self._from_live(channel["channel_id"], start, end, path):
            await asyncio.to_thread(self._attach, w["id"], channel, start, end, path, "live")
            self.made += 1
            log.info("warning_clip_saved", warning=w["id"], channel=channel["channel_id"], source="live")
            return
        wait = (end - datetime.now(UTC)).total_seconds() + 2.0  # the recorder has written the last second
        if wait > 0:
            await asyncio.sleep(wait)
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
                await asyncio.to_thread(self._attach, w["id"], channel, start, end, path, "recording")
                self.made += 1
                log.info("warning_clip_saved", warning=w["id"], channel=channel["channel_id"])
                return
            except (VideoError, TimeoutError, OSError) as exc:
                log.info("warning_clip_retry", warning=w["id"], attempt=attempt, error=str(exc)[:200])
                with contextlib.suppress(OSError):
                    path.with_suffix(".part").unlink(missing_ok=True)
                await asyncio.sleep(5 * (attempt + 1))
        self.failed += 1

    def _live_stream(self, channel_id: str) -> LiveStream | None:
        """A playing live stream of the channel on a node of this process (its ring buffer is readable here)."""
        for handle in self.playback.nodes.alive():
            node = getattr(handle, "node", None)
            for stream in list(getattr(node, "streams", {}).values()):
                if stream.channel_id == channel_id and stream.key.startswith("live-") and stream.state == "playing":
                    return stream
        return None

    async def _from_live(self, channel_id: str, start: datetime, end: datetime, path: Path) -> bool:
        """Cut the clip from an open live stream: its ring buffer from ``start``, then the stream until ``end``.
        False (nothing written) when no stream reaches back to ``start`` or it stops before ``end``."""
        stream = self._live_stream(channel_id)
        recorder = Viewer(queue=asyncio.Queue(), lossless=True, h265_ok=True)
        if stream is None or stream.source_codec != "h264":  # H.265: the recording's copy is transcoded to H.264
            return False
        if not stream.record_from(recorder, start.timestamp()):
            return False
        part = path.with_suffix(".live.part")
        complete = False
        try:
            with part.open("wb") as out:
                inits = 0
                while True:
                    left = end.timestamp() + 0.5 - time.time()  # + what is still on its way
                    if left <= 0:
                        complete = True
                        break
                    try:
                        item = await asyncio.wait_for(recorder.queue.get(), min(left, 1.0))
                    except TimeoutError:
                        if stream.state != "playing":
                            break
                        continue
                    if isinstance(item, dict):
                        if item.get("type") in ("closed", "error"):
                            break
                        continue
                    if item[4:8] == b"ftyp":
                        inits += 1
                        if inits > 1:  # the camera changed its picture format mid-clip: take the recording
                            break
                    out.write(item)
            if complete:
                await asyncio.to_thread(remux_from_zero, part, path)
        except (OSError, ValueError) as exc:  # av errors are ValueErrors
            log.info("warning_clip_live_failed", channel=channel_id, error=str(exc)[:200])
            complete = False
        finally:
            stream.remove_viewer(recorder)
            part.unlink(missing_ok=True)
        return complete

    def _attach(self, warning_id: int, channel: dict[str, Any], start: datetime, end: datetime, path: Path,
                source: str) -> None:
        from anfang.warnings.models import Warning

        with self.store.session() as s:
            row = s.get(Warning, warning_id)
            if row is None:
                path.unlink(missing_ok=True)
                return
            row.data = {**(row.data or {}), "clip": {"channel_id": channel["channel_id"], "name": channel["name"],
                                                     "start": start.isoformat(), "end": end.isoformat(),
                                                     "url": f"/api/video/clips/{warning_id}", "source": source,
                                                     "made_at": time.time()}}


def clip_path(store: Store, folder: Path, warning: dict[str, Any]) -> Path | None:
    clip = (warning.get("data") or {}).get("clip")
    if not clip:
        return None
    path = Path(folder) / f"{warning.get('uid') or warning['id']}.mp4"
    return path if path.exists() else None




def remux_from_zero(src: Path, dst: Path) -> None:
    """Copy the video of a fragmented MP4 cut from a live stream into a plain MP4 (index first) whose time starts at
    0: the fragments carry the stream's decode times since it opened."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        video = inp.streams.video[0]
        copy = out.add_stream_from_template(video)
        first: int | None = None
        for packet in inp.demux(video):
            if packet.dts is None:
                continue
            first = packet.dts if first is None else first
            packet.dts -= first
            if packet.pts is not None:
                packet.pts -= first
            packet.stream = copy
            out.mux(packet)
