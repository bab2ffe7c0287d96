"""One live stream on a media node: RTP in (UDP, or TCP with RFC 4571 framing, either side connecting), reordered,
PS demultiplexed, video muxed to fragmented MP4 once and fanned out to every viewer of the channel.

Media is accepted only from the addresses the INVITE named (the device's signalling and SDP addresses) and only
with the SSRC it answered; anything else is counted and dropped. Every buffer is bounded: a viewer that cannot
keep up skips to the next keyframe instead of growing a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from anfang.media.mp4 import Fmp4Muxer, Transcoder, snapshot_jpeg
from anfang.media.ps import EsFrame, PsDemuxer
from anfang.media.rtp import Reorder, Rfc4571Decoder, RtpError, parse_rtp

log = structlog.get_logger(__name__)

VIEWER_QUEUE = 200  # fragments (8 s at 25 fps) a viewer may fall behind before it skips to the next keyframe
GOP_LIMIT = 150  # frames kept from the last keyframe (a second viewer starts at once); more: keep only newer
GOP_BYTES = 16 * 1024 * 1024
RING_BYTES = 48 * 1024 * 1024  # the ring buffer of one live stream (alarm clips) never holds more


@dataclass(eq=False)
class Viewer:
    """One WebSocket viewer: a bounded queue of messages (bytes = MP4, dict = JSON status)."""

    h265_ok: bool = False
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE + 8))
    waiting_key: bool = True
    started: float = field(default_factory=time.time)
    skipped: int = 0
    claims: Any = None
    lossless: bool = False  # a download: every fragment is kept (written to a file as fast as it arrives)
    header: list = field(default_factory=list)

    def offer(self, item: bytes | dict, key: bool = False, *, head: bool = False) -> None:
        """Queue a message. MP4 fragments wait for a keyframe; a viewer more than ``VIEWER_QUEUE`` fragments
        behind loses its backlog and resumes at the next keyframe (after the init segment again)."""
        if head or isinstance(item, dict):
            if head and isinstance(item, dict):
                self.header = [item]
            elif head:
                self.header.append(item)
            if self.queue.qsize() >= VIEWER_QUEUE + 4:  # room stays for the node's end-of-viewer sentinel
                return
            self.queue.put_nowait(item)
            return
        if self.waiting_key and not key:
            return
        if self.lossless:
            self.waiting_key = False
            self.queue.put_nowait(item)
            return
        if self.queue.qsize() >= VIEWER_QUEUE:
            self.skipped += self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            for h in self.header:
                self.queue.put_nowait(h)
            self.waiting_key = True
            if not key:
                return
        self.waiting_key = False
        self.queue.put_nowait(item)


class Rendition:
    """One output of the stream (the source codec, or H.264 transcoded from H.265) with its GOP cache and, when
    ``ring_seconds`` is set, a ring buffer of whole GOPs covering at least the last ``ring_seconds`` (alarm clips
    cut from a stream that was already open: ``anfang.media.clips``)."""

    def __init__(self, codec: str, audio: bool = False, ring_seconds: float = 0.0) -> None:
        self.muxer = Fmp4Muxer(codec, audio=audio)
        self.viewers: set[Viewer] = set()
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.ring_seconds = ring_seconds
        self.ring: deque[tuple[float, list[bytes]]] = deque()  # (wall time of the keyframe, the GOP's fragments)
        self.ring_bytes = 0

    def header(self) -> list[bytes | dict]:
        info = self.muxer.info
        if info is None or self.muxer.init is None:
            return []
        return [{"type": "init", "mime": info.mime, "codec": info.codec, "width": info.width,
                 "height": info.height}, self.muxer.init]

    def push(self, frame: EsFrame) -> None:
        before = self.muxer.init
        fragments = self.muxer.push(frame) if frame.codec in ("h264", "h265") else self.muxer.push_audio(frame)
        if self.muxer.init is not None and self.muxer.init is not before:
            head = self.header()
            self.gop, self.gop_bytes = [], 0
            self.ring.clear()  # a new init segment: the older fragments do not belong to it
            self.ring_bytes = 0
            for viewer in self.viewers:
                viewer.waiting_key = True
                for item in head:
                    viewer.offer(item, head=True)
        for data, key in fragments:
            if key:
                self.gop, self.gop_bytes = [], 0
            if len(self.gop) < GOP_LIMIT and self.gop_bytes < GOP_BYTES:
                self.gop.append(data)
                self.gop_bytes += len(data)
            if self.ring_seconds > 0:
                self._keep(data, key)
            for viewer in self.viewers:
                viewer.offer(data, key)

    def _keep(self, data: bytes, key: bool) -> None:
        now = time.time()
        if key:
            self.ring.append((now, []))
        elif not self.ring:
            return  # the ring starts at a keyframe
        self.ring[-1][1].append(data)
        self.ring_bytes += len(data)
        # drop whole GOPs: the oldest kept one starts at or before now - ring_seconds
        while len(self.ring) > 1 and (self.ring[1][0] <= now - self.ring_seconds or self.ring_bytes > RING_BYTES):
            self.ring_bytes -= sum(len(x) for x in self.ring.popleft()[1])

    def ring_start(self) -> float | None:
        """Wall time (Unix seconds) of the oldest picture in the ring buffer."""
        return self.ring[0][0] if self.ring else None

    def attach(self, viewer: Viewer, since: float | None = None) -> None:
        """Start ``viewer`` at the newest keyframe (the GOP cache), or with ``since`` (Unix seconds) at the ring
        buffer's last keyframe at or before that time."""
        self.viewers.add(viewer)
        head = self.header()
        if head:
            viewer.waiting_key = True
            for item in head:
                viewer.offer(item, head=True)
            if since is not None and self.ring:
                first = max((i for i, (t, _) in enumerate(self.ring) if t <= since), default=0)
                for _t, gop in list(self.ring)[first:]:
                    for i, data in enumerate(gop):
                        viewer.offer(data, key=i == 0)
                return
            for i, data in enumerate(self.gop):
                viewer.offer(data, key=i == 0)

    def close(self) -> None:
        self.muxer.close()


class LiveStream:
    """Receives one device stream and serves it to any number of viewers."""

    def __init__(self, key: str, channel_id: str, *, ssrc: int | None, transport: str, name: str = "",
                 keep_audio: bool = False, on_state: Callable[[LiveStream], None] | None = None,
                 ring_seconds: float = 0.0) -> None:
        self.key, self.channel_id, self.name = key, channel_id, name
        self.ring_seconds = ring_seconds  # the source rendition keeps this much for alarm clips (0: none)
        self.ssrc = ssrc
        self.transport = transport  # UDP | TCP-passive (the device connects) | TCP-active (we connect)
        self.allowed_hosts: set[str] = set()
        self.keep_audio = keep_audio
        self.state = "waiting"  # waiting -> playing -> closed | failed
        self.error = ""
        self.created = time.monotonic()
        self.last_media = 0.0
        self.first_frame_at: float | None = None
        self.idle_since: float | None = time.monotonic()
        self.reorder = Reorder(window=24)  # live: a lost packet stalls at most 24 packets (~70 ms at 4 Mbit/s)
        self.demux = PsDemuxer()
        self._ts: int | None = None
        self._seq: int | None = None
        self.renditions: dict[str, Rendition] = {}
        self.transcoder: Transcoder | None = None
        self.source_codec: str | None = None
        self.viewers: set[Viewer] = set()
        self.frames = self.bytes_in = self.packets = self.dropped = 0
        self.recent: list[EsFrame] = []  # raw access units since the last keyframe (snapshots, late transcoder)
        self.ready = asyncio.Event()
        self.on_state = on_state
        self._transport_obj: Any = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0
        self.anchor: dict | None = None  # playback: recording time of a media time (for the player's clock)
        self._pending_position: float | None = None
        self.recorders: list[Any] = []  # downloads: every fragment, nothing dropped

    # ---- receiving
    def accept_from(self, host: str) -> bool:
        return not self.allowed_hosts or host in self.allowed_hosts

    def on_rtp(self, data: bytes, host: str) -> None:
        if not self.accept_from(host):
            self.dropped += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.dropped += 1
            return
        if self.ssrc is not None and packet.ssrc != self.ssrc:
            self.dropped += 1
            return
        self.packets += 1
        self.bytes_in += len(data)
        self.last_media = time.monotonic()
        for pkt in self.reorder.push(packet):
            if self._seq is not None and pkt.seq != (self._seq + 1) & 0xFFFF:
                self.demux.discontinuity()  # a lost packet: drop the damaged frame, resync at the next pack
            self._seq = pkt.seq
            if self._ts is not None and pkt.timestamp != self._ts:
                self._frames(self.demux.flush())
            self._ts = pkt.timestamp
            self._frames(self.demux.feed(pkt.payload))
            if pkt.marker:
                self._frames(self.demux.flush())

    def _frames(self, frames: list[EsFrame]) -> None:
        for frame in frames:
            if frame.codec not in ("h264", "h265"):
                if self.keep_audio and frame.codec in ("pcma", "pcmu"):
                    for rendition in self.renditions.values():
                        if rendition.muxer.audio:
                            rendition.push(frame)
                continue  # dropped unless kept: G.711 becomes AAC in the same fragments
            self.frames += 1
            if self.source_codec != frame.codec:
                if self.source_codec is not None:  # the camera switched codec: start over
                    for r in self.renditions.values():
                        r.close()
                    self.renditions.clear()
                    self.transcoder = None
                self.source_codec = frame.codec
            if frame.keyframe:
                self.recent = [frame]
            elif self.recent and len(self.recent) < GOP_LIMIT:
                self.recent.append(frame)
            native = self.renditions.get(frame.codec)
            if native is None:
                native = self.renditions[frame.codec] = Rendition(frame.codec, audio=self._has_audio(),
                                                                  ring_seconds=self.ring_seconds)
            native.push(frame)
            if frame.keyframe and self._pending_position is not None and native.muxer._last_dts is not None:
                self.anchor = {"type": "position", "t": self._pending_position,
                               "media": native.muxer._last_dts / 90_000}
                self._pending_position = None
                for viewer in self.viewers:
                    viewer.offer(self.anchor)
            if frame.codec == "h265" and self._needs_h264():
                self._transcode(frame)
            if self.state == "waiting" and native.muxer.init is not None:
                self.state = "playing"
                self.first_frame_at = time.monotonic()
                self.ready.set()
                self._attach_waiting()
                if self.on_state:
                    self.on_state(self)

    def _has_audio(self) -> bool:
        """Keep audio and the camera sends G.711 (its PSM lists it)."""
        return self.keep_audio and any(c in ("pcma", "pcmu") for c in self.demux.stream_codecs.values())

    def _needs_h264(self) -> bool:
        return any(not v.h265_ok for v in self.viewers)

    def _transcode(self, frame: EsFrame) -> None:
        if self.transcoder is None:
            if not frame.keyframe:
                return
            self.transcoder = Transcoder()
            self.renditions["h264"] = Rendition("h264", audio=self._has_audio())
        target = self.renditions["h264"]
        for out in self.transcoder.push(frame):
            target.push(out)

    def _rendition_for(self, viewer: Viewer) -> Rendition | None:
        if self.source_codec == "h265" and not viewer.h265_ok:
            return self.renditions.get("h264")
        return self.renditions.get(self.source_codec or "")

    def _attach_waiting(self) -> None:
        for viewer in self.viewers:
            if not any(viewer in r.viewers for r in self.renditions.values()):
                self._attach(viewer)

    def _attach(self, viewer: Viewer) -> None:
        if self.source_codec == "h265" and not viewer.h265_ok and self.transcoder is None:
            # start transcoding from the newest keyframe we hold, so this viewer starts within a GOP
            self.transcoder = Transcoder()
            self.renditions["h264"] = Rendition("h264", audio=self._has_audio())
            for fr in self.recent:
                for out in self.transcoder.push(fr):
                    self.renditions["h264"].push(out)
        rendition = self._rendition_for(viewer)
        if rendition is not None:
            rendition.attach(viewer)

    # ---- viewers
    def mark_position(self, t: float) -> None:
        """Playback: the next keyframe shows recording time ``t`` (Unix seconds); viewers get the mapping."""
        self._pending_position = t

    def announce(self, message: dict) -> None:
        for viewer in self.viewers:
            viewer.offer(message)

    def add_viewer(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)
        self.idle_since = None
        viewer.offer({"type": "state", "state": self.state, "message": self.error})
        if self.anchor is not None:
            viewer.offer(self.anchor)
        if self.state == "playing":
            self._attach(viewer)

    def record_from(self, viewer: Viewer, since: float, slack: float = 1.0) -> bool:
        """Attach a recorder (a lossless viewer) to the source rendition starting from the ring buffer's keyframe at
        or before ``since`` (Unix seconds); False when the stream is not playing or its ring does not reach back
        to ``since`` (within ``slack`` seconds: one GOP)."""
        native = self.renditions.get(self.source_codec or "")
        oldest = native.ring_start() if native is not None else None
        if self.state != "playing" or native is None or oldest is None or oldest > since + slack:
            return False
        self.viewers.add(viewer)
        self.idle_since = None
        native.attach(viewer, since=since)
        return True

    def remove_viewer(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        for r in self.renditions.values():
            r.viewers.discard(viewer)
        if self.transcoder is not None and not self._needs_h264():
            self.transcoder = None  # nobody needs H.264 any more: stop spending the CPU
            h264 = self.renditions.pop("h264", None) if self.source_codec == "h265" else None
            if h264 is not None:
                h264.close()
        if not self.viewers:
            self.idle_since = time.monotonic()

    def fail(self, message: str) -> None:
        if self.state in ("failed", "closed"):
            return
        self.state, self.error = "failed", message
        for viewer in self.viewers:
            viewer.offer({"type": "error", "message": message})
        self.ready.set()
        if self.on_state:
            self.on_state(self)

    def snapshot(self) -> bytes:
        return snapshot_jpeg(list(self.recent))

    # ---- sockets
    async def listen(self, host: str, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        if self.transport == "UDP":
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpIn(self), local_addr=(host, port))
            self._transport_obj = transport
            self.port = transport.get_extra_info("sockname")[1]
            with contextlib.suppress(OSError, AttributeError):  # room for a burst of a 4 Mbit/s keyframe
                import socket

                transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        elif self.transport == "TCP-passive":
            self._server = await asyncio.start_server(self._accepted, host, port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self.port = 0  # we connect out (TCP-active): nothing to listen on; SDP carries port 9 (discard)
        return self.port

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = writer.get_extra_info("peername")[0]
        if not self.accept_from(host) or self._transport_obj is not None:
            self.dropped += 1
            writer.close()
            return
        self._transport_obj = writer
        await self._read_tcp(reader, host)

    async def connect(self, host: str, port: int) -> None:
        """TCP-active: connect to the device's media port from its SDP answer."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        self._transport_obj = writer
        task = asyncio.get_running_loop().create_task(self._read_tcp(reader, host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_tcp(self, reader: asyncio.StreamReader, host: str) -> None:
        decoder = Rfc4571Decoder()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                try:
                    packets = decoder.feed(chunk)
                except ValueError:
                    self.dropped += 1
                    break
                for pkt in packets:
                    self.on_rtp(pkt, host)
        except (ConnectionError, OSError):
            pass

    async def close(self) -> None:
        self.state = "closed" if self.state != "failed" else self.state
        for viewer in list(self.viewers):
            viewer.offer({"type": "closed"})
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
        if self._transport_obj is not None:
            with contextlib.suppress(Exception):
                self._transport_obj.close()
        for r in self.renditions.values():
            r.close()

    def info(self) -> dict[str, Any]:
        return {"key": self.key, "channel_id": self.channel_id, "state": self.state, "error": self.error,
                "viewers": len(self.viewers), "frames": self.frames, "bytes_in": self.bytes_in,
                "packets": self.packets, "dropped": self.dropped, "codec": self.source_codec,
                "transcoding": self.transcoder is not None, "lost": self.reorder.stats.get("lost", 0),
                "idle_for": None if self.idle_since is None else time.monotonic() - self.idle_since,
                "port": self.port, "transport": self.transport}


class _UdpIn(asyncio.DatagramProtocol):
    def __init__(self, stream: LiveStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.stream.on_rtp(data, addr[0])
