"""The media node: RTP receivers, live streams and their WebSocket viewers. Runs inside ``serve`` / ``demo``
(embedded) or alone as ``anfang media`` (scale-out). It never speaks SIP: the controller (beside the SIP server)
asks it to prepare a receiver, INVITEs the device with that address, then tells it what the device answered.

A node reports its load (streams, viewers, inbound bit rate) through its ``announcement()``; the controller picks
the least-loaded node for each new stream (see ``anfang.media.control``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from anfang.media import tokens
from anfang.media.stream import LiveStream, Viewer

log = structlog.get_logger(__name__)


@dataclass
class NodeConfig:
    node_id: str = "media-1"
    bind_host: str = "127.0.0.1"  # where RTP receivers listen
    rtp_ip: str = "127.0.0.1"  # the address devices send to (SDP c=)
    public_url: str = ""  # where browsers reach this node (ws/http); "" = the console's own origin (embedded)
    port_min: int = 0  # RTP port range (0 = any free port)
    port_max: int = 0
    media_timeout: float = 8.0  # seconds from INVITE to the first keyframe before the viewer is told
    stall_timeout: float = 10.0  # seconds without media in a playing stream -> failed
    keep_audio: bool = False
    ring_seconds: float = 0.0  # live streams keep this much in a ring buffer for alarm clips (0: none)


ViewEnd = Callable[[tokens.StreamClaims, float, float, str], Awaitable[None] | None]


class MediaNode:
    def __init__(self, config: NodeConfig, secret: bytes, on_view_end: ViewEnd | None = None) -> None:
        self.config = config
        self.secret = secret
        self.streams: dict[str, LiveStream] = {}
        self.on_view_end = on_view_end
        self._task: asyncio.Task | None = None
        self._next_port = config.port_min
        self._cpu0 = (time.monotonic(), time.process_time())
        self.cpu_percent = 0.0
        self.started = time.time()
        self._records: set[asyncio.Task] = set()

    # ---- lifecycle (a Service for app.state.services)
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"media-{self.config.node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key in list(self.streams):
            await self.close(key)
        if self._records:  # the audit records of the last viewings
            await asyncio.wait(set(self._records), timeout=5)

    async def _watch(self) -> None:
        """Fail streams that never delivered (no keyframe within ``media_timeout``) or stalled; measure CPU."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for stream in list(self.streams.values()):
                if stream.state == "waiting" and now - stream.created > self.config.media_timeout:
                    stream.fail("设备未发送视频 / the device sent no video")
                elif (stream.state == "playing" and stream.last_media
                      and now - stream.last_media > self.config.stall_timeout):
                    stream.fail("视频中断 / the video stopped")
            t0, c0 = self._cpu0
            t1, c1 = now, time.process_time()
            if t1 - t0 >= 2:
                self.cpu_percent = round(100 * (c1 - c0) / (t1 - t0), 1)
                self._cpu0 = (t1, c1)

    # ---- control API (called by the controller, locally or over HTTP)
    async def prepare(self, key: str, channel_id: str, *, ssrc: int | None, transport: str,
                      name: str = "") -> dict[str, Any]:
        """Open a receiver; returns the address and port to put in the INVITE's SDP."""
        old = self.streams.pop(key, None)
        if old is not None:
            await old.close()
        stream = LiveStream(key, channel_id, ssrc=ssrc, transport=transport, name=name,
                            keep_audio=self.config.keep_audio,
                            ring_seconds=self.config.ring_seconds if key.startswith("live-") else 0.0)
        port = await self._listen(stream)
        self.streams[key] = stream
        return {"ip": self.config.rtp_ip, "port": port, "node_id": self.config.node_id}

    async def _listen(self, stream: LiveStream) -> int:
        cfg = self.config
        if not cfg.port_min or stream.transport == "TCP-active":
            return await stream.listen(cfg.bind_host, 0)
        span = cfg.port_max - cfg.port_min + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = cfg.port_min + (self._next_port + 1 - cfg.port_min) % span
            try:
                return await stream.listen(cfg.bind_host, port)
            except OSError:
                continue
        raise OSError("no free RTP port in the configured range")

    async def answer(self, key: str, *, hosts: list[str], ssrc: int | None, connect: tuple[str, int] | None) -> None:
        """The device's SDP answer: accept media only from ``hosts`` with ``ssrc``; for TCP-active connect."""
        stream = self.streams.get(key)
        if stream is None:
            raise LookupError(key)
        stream.allowed_hosts = {h for h in hosts if h}
        if ssrc is not None:
            stream.ssrc = ssrc
        if connect is not None:
            await stream.connect(*connect)

    async def close(self, key: str) -> None:
        stream = self.streams.pop(key, None)
        if stream is not None:
            await stream.close()

    async def snapshot(self, key: str) -> bytes:
        """A JPEG of the stream's newest picture, waiting for its first keyframe when it is just starting."""
        stream = self.streams.get(key)
        if stream is None:
            raise LookupError("no such stream")
        if stream.idle_since is not None:
            stream.idle_since = time.monotonic()  # a snapshot counts as a short viewing: the linger starts now
        deadline = time.monotonic() + self.config.media_timeout
        while stream.state == "waiting" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if stream.state != "playing":
            raise ValueError(stream.error or "设备未发送视频 / the device sent no video")
        return await asyncio.to_thread(stream.snapshot)

    def stream_info(self, key: str) -> dict[str, Any] | None:
        stream = self.streams.get(key)
        return stream.info() if stream is not None else None

    def announcement(self) -> dict[str, Any]:
        streams = [s.info() for s in self.streams.values()]
        return {"node_id": self.config.node_id, "url": self.config.public_url, "rtp_ip": self.config.rtp_ip,
                "streams": len(streams), "viewers": sum(s["viewers"] for s in streams),
                "bytes_in": sum(s["bytes_in"] for s in streams), "cpu_percent": self.cpu_percent,
                "pid": os.getpid(), "at": time.time(), "stream_info": streams}

    # ---- viewers
    async def serve_viewer(self, ws: Any, key: str, token: str, h265_ok: bool = False) -> None:
        """Serve one WebSocket viewer (Starlette WebSocket): JSON status as text, MP4 as binary messages."""
        try:
            claims = tokens.verify(self.secret, token, stream=key)
        except tokens.TokenError as exc:
            await ws.close(code=4403, reason=str(exc))
            return
        stream = self.streams.get(key)
        if stream is None or stream.state in ("closed",):
            await ws.accept()
            await ws.send_json({"type": "error", "message": "视频流已结束 / the stream has ended"})
            await ws.close(code=4404)
            return
        await ws.accept()
        viewer = Viewer(h265_ok=h265_ok, claims=claims)
        stream.add_viewer(viewer)
        started = time.time()
        receiver = asyncio.get_running_loop().create_task(self._drain_client(ws, viewer))
        try:
            while True:  # one await per message: the browser's leaving arrives as a sentinel in the same queue
                item = await viewer.queue.get()
                if item is _GONE:
                    break
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_json(item)
                    if item.get("type") in ("error", "closed"):
                        break
        except Exception:  # noqa: BLE001 - the browser went away mid-send: end this viewer only
            pass
        finally:
            receiver.cancel()
            stream.remove_viewer(viewer)
            if self.on_view_end is not None:
                # its own task: the viewer's task may be cancelled as the browser leaves, the record must not be
                result = self.on_view_end(claims, started, time.time(), stream.channel_id)
                if asyncio.iscoroutine(result):
                    task = asyncio.get_running_loop().create_task(result)
                    self._records.add(task)
                    task.add_done_callback(self._records.discard)
            with contextlib.suppress(Exception):
                await ws.close()

    @staticmethod
    async def _drain_client(ws: Any, viewer: Viewer) -> None:
        with contextlib.suppress(Exception):
            while True:
                message = await ws.receive()
                if message.get("type") == "websocket.disconnect":
                    break
        try:
            viewer.queue.put_nowait(_GONE)  # the queue keeps room above its limit for this
        except asyncio.QueueFull:
            while not viewer.queue.empty():
                viewer.queue.get_nowait()
            viewer.queue.put_nowait(_GONE)


_GONE = object()
