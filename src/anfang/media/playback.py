"""Recordings: playback in the browser and download to a file, from the device's (NVR's) storage.

Playback is an INVITE ``s=Playback`` with ``u=<channel>:0``, ``t=<start> <end>`` and an SSRC starting with 1; each
playback is its own stream (several of one channel at once), played through the live player. Pause, resume, seek
and speed are MANSRTSP in INFO within the dialog (``PLAY`` with ``Scale`` / ``Range: npt=``, ``PAUSE``). The device
announces the end of the file with ``MESSAGE Notify MediaStatus 121`` (in the dialog's Call-ID): the session is then
closed with BYE. Download is an INVITE ``s=Download`` with ``a=downloadspeed``; its fragments are written to a file
as they arrive and the file is finished as a watermarked export (see ``anfang.media.export``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from anfang.media import sdp
from anfang.media.control import NodeDirectory, VideoError, invite_to_node
from anfang.media.stream import Viewer

log = structlog.get_logger(__name__)
MAX_SPAN = 24 * 3600  # one request covers at most a day of recordings
MAX_SCALE = 8.0


@dataclass(eq=False)
class PlaybackSession:
    key: str
    kind: str  # playback | download
    channel_id: str
    device_id: str
    start: datetime
    end: datetime
    node: Any
    ssrc: str
    dialog: dict[str, Any] | None = None
    scale: float = 1.0
    paused: bool = False
    created: float = field(default_factory=time.monotonic)
    ended: bool = False  # the device said the file ended (MediaStatus 121)
    error: str = ""
    # download
    path: Path | None = None
    bytes_written: int = 0
    media_seconds: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    user: str = ""
    _seq: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def duration(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0)

    def progress(self) -> float:
        if self.ended:
            return 1.0
        return min(self.media_seconds / self.duration, 0.999)


class PlaybackManager:
    def __init__(self, gb: Any, nodes: NodeDirectory, *, linger: float = 5.0, invite_timeout: float = 8.0,
                 download_timeout: float = 3600.0) -> None:
        self.gb, self.nodes = gb, nodes
        self.linger, self.invite_timeout, self.download_timeout = linger, invite_timeout, download_timeout
        self.sessions: dict[str, PlaybackSession] = {}
        self._serial = itertools.count(1)
        self._task: asyncio.Task | None = None
        self._bg: set[asyncio.Task] = set()
        gb.message_hooks.append(self._media_status)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._reap(), name="media-playback")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await asyncio.gather(*(self.close(k, "shutdown") for k in list(self.sessions)), return_exceptions=True)

    # ---- sessions
    async def open(self, channel_id: str, device_id: str, start: datetime, end: datetime, *, kind: str = "playback",
                   speed: int = 4, transport: str = "UDP") -> PlaybackSession:
        span = (end - start).total_seconds()
        if span <= 0 or span > MAX_SPAN:
            raise VideoError(422, "bad_range", "回放时间段无效（最长 24 小时） / invalid time range (at most 24 h)")
        st = self.gb.devices.get(device_id)
        if st is None or st.peer is None or not st.registered or st.status != "online":
            raise VideoError(503, "device_offline", "设备离线，无法回放 / the device is offline")
        local = [n for n in self.nodes.alive() if not hasattr(n, "client")]
        node = (local[0] if kind == "download" and local else self.nodes.pick())  # files are written here
        cfg = self.gb.config
        ssrc = sdp.ssrc_for(cfg.realm, next(self._serial), playback=True)
        key = f"{'pb' if kind == 'playback' else 'dl'}-{channel_id}-{ssrc}"
        t0, t1 = int(start.timestamp()), int(end.timestamp())
        session = PlaybackSession(key, kind, channel_id, device_id, start, end, node, ssrc,
                                  scale=float(speed) if kind == "download" else 1.0)
        session.dialog = await invite_to_node(
            self.gb, node, key, channel_id, device_id, ssrc=ssrc, transport=transport, timeout=self.invite_timeout,
            subject="Playback" if kind == "playback" else "Download", start=t0, end=t1,
            speed=speed if kind == "download" else 0)
        self.sessions[key] = session
        self._position(session, t0)
        log.info("media_playback_started", kind=kind, channel=channel_id, start=start.isoformat(), key=key)
        return session

    def _position(self, session: PlaybackSession, t: float) -> None:
        stream = getattr(session.node, "node", None)
        stream = stream.streams.get(session.key) if stream is not None else None
        if stream is not None:
            stream.mark_position(t)

    async def control(self, key: str, action: str, *, scale: float | None = None,
                      at: datetime | None = None) -> dict[str, Any]:
        """pause | resume | speed (scale) | seek (at): MANSRTSP in INFO."""
        session = self.sessions.get(key)
        if session is None or session.dialog is None:
            raise VideoError(404, "no_session", "回放已结束 / the playback has ended")
        lines: list[str]
        if action == "pause":
            lines = ["PAUSE RTSP/1.0", "PauseTime: now"]
            session.paused = True
        elif action in ("resume", "speed", "seek"):
            lines = ["PLAY RTSP/1.0"]
            if action == "speed" or scale is not None:
                if scale is None or not 0.25 <= scale <= MAX_SCALE:
                    raise VideoError(422, "bad_scale", f"倍速须在 0.25–{MAX_SCALE:g} 之间 / scale out of range")
                session.scale = scale
                lines.append(f"Scale: {scale:g}")
            if action == "seek":
                if at is None or not session.start <= at <= session.end:
                    raise VideoError(422, "bad_seek", "跳转时间不在回放范围内 / seek outside the range")
                lines.append(f"Range: npt={int((at - session.start).total_seconds())}-")
                self._position(session, at.timestamp())
            session.paused = False
        else:
            raise VideoError(422, "bad_action", "未知的回放控制 / unknown action")
        body = ("\r\n".join([lines[0], f"CSeq: {next(session._seq)}", *lines[1:]]) + "\r\n\r\n").encode()
        status = await self._info(session, body)
        if status >= 300:
            raise VideoError(502, "device_refused", f"设备拒绝回放控制（{status}） / the device refused ({status})")
        return {"key": key, "scale": session.scale, "paused": session.paused}

    async def _info(self, session: PlaybackSession, body: bytes) -> int:
        dialog = session.dialog
        assert dialog is not None
        dialog["cseq"] += 1
        req = self.gb._in_dialog(dialog, "INFO", cseq=dialog["cseq"])  # noqa: SLF001 - in-dialog request builder
        req.body = body
        req.add("Content-Type", "Application/MANSRTSP")
        try:
            resp = await self.gb.endpoint.request(req, dialog["peer"], timeout=5)
        except TimeoutError:
            return 408
        return resp.status or 0

    def _media_status(self, msg: Any, peer: Any, doc: Any) -> bool:
        """MESSAGE Notify MediaStatus 121: the file ended. Found by the dialog's Call-ID."""
        if doc.cmd_type != "MediaStatus":
            return False
        for session in self.sessions.values():
            if session.dialog is not None and session.dialog["call_id"] == msg.call_id:
                if (doc.get("NotifyType") or "").strip() == "121":
                    session.ended = True
                    self._spawn(self._finish(session))
                break
        return False  # the server still answers 200 and counts the device as alive

    async def _finish(self, session: PlaybackSession) -> None:
        await asyncio.sleep(0.5)  # the last packets are still on their way
        node = getattr(session.node, "node", None)
        stream = node.streams.get(session.key) if node is not None else None
        if stream is not None:
            stream.announce({"type": "eof"})
        if session.kind == "download":
            await self.close(session.key, "eof")
        else:
            await self._bye(session)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _bye(self, session: PlaybackSession) -> None:
        if session.dialog is not None:
            dialog, session.dialog = session.dialog, None
            with contextlib.suppress(Exception):
                await self.gb.bye(dialog, timeout=2.0)

    async def close(self, key: str, reason: str = "closed") -> None:
        session = self.sessions.pop(key, None)
        if session is None:
            return
        await self._bye(session)
        await asyncio.sleep(0)
        with contextlib.suppress(Exception):
            await session.node.close(key)
        session.done.set()
        log.info("media_playback_ended", key=key, reason=reason)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                info = session.node.stream_info(session.key)
                if info is None:
                    await self.close(session.key, "gone")
                elif session.kind == "download":
                    if now - session.created > self.download_timeout or info["state"] == "failed":
                        session.error = info.get("error") or "timeout"
                        await self.close(session.key, "failed")
                elif info["state"] == "failed" and info["viewers"] == 0:
                    await self.close(session.key, "failed")
                elif info["viewers"] == 0 and (info["idle_for"] or 0) >= self.linger:
                    await self.close(session.key, "idle")

    # ---- download
    async def download(self, session: PlaybackSession, path: Path) -> None:
        """Write every fragment of a download session to ``path`` (fragmented MP4) until the file ends."""
        node = getattr(session.node, "node", None)
        stream = node.streams.get(session.key) if node is not None else None
        if stream is None:
            raise VideoError(409, "remote_node", "下载须在本机流媒体节点 / downloads run on the local node")
        session.path = path
        recorder = Viewer(queue=asyncio.Queue(), lossless=True)
        stream.add_viewer(recorder)
        first_media: float | None = None
        try:
            with path.open("wb") as out:
                while not session.done.is_set() or not recorder.queue.empty():
                    try:
                        item = await asyncio.wait_for(recorder.queue.get(), 0.5)
                    except TimeoutError:
                        continue
                    if isinstance(item, bytes):
                        out.write(item)
                        session.bytes_written += len(item)
                        media = _fragment_time(item)
                        if media is not None:
                            first_media = media if first_media is None else first_media
                            session.media_seconds = media - first_media
        finally:
            stream.remove_viewer(recorder)


def _fragment_time(fragment: bytes) -> float | None:
    """The decode time (seconds) of a moof's first sample: tfdt (version 1 = 64 bit) in the 90 kHz timescale."""
    i = fragment.find(b"tfdt")
    if i < 4 or fragment[:8][4:8] != b"moof":
        return None
    version = fragment[i + 4]
    raw = fragment[i + 8:i + 16] if version == 1 else fragment[i + 8:i + 12]
    return int.from_bytes(raw, "big") / 90_000
