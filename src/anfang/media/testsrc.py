"""Test sources: a moving test pattern encoded once with PyAV (libx264 / libx265), and an RTP/PS sender that
plays it like a GB/T 28181 camera over UDP, TCP active or TCP passive (RFC 4571), with optional loss/reorder."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from fractions import Fraction
from typing import Any

import av
import numpy as np

from anfang.media import nal
from anfang.media.ps import EsFrame, mux_ps
from anfang.media.rtp import build_rtp, frame_rfc4571

_CACHE: dict[tuple[str, int, int, int, int, int, float], list[EsFrame]] = {}
_LOCK = threading.Lock()
TICKS = 90_000


def _pattern(width: int, height: int, i: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    """One yuv420p frame as a (h*3/2, w) array: a gradient, a box moving left to right, a frame counter bar
    and some texture so the encoder spends bits the way it would on a real scene."""
    y = np.empty((height, width), dtype=np.uint8)
    y[:] = (np.arange(width, dtype=np.uint16) * 200 // max(width - 1, 1) + 16).astype(np.uint8)
    box = max(height // 4, 8)
    x0 = (i * max(width // (fps * 2), 2)) % max(width - box, 1)
    y0 = height // 2 - box // 2
    y[y0:y0 + box, x0:x0 + box] = 235
    bar_h = max(height // 20, 4)
    bits = i & 0xFF
    cell = width // 8
    for b in range(8):  # the frame number in binary, so a decoder can tell frames apart
        y[:bar_h, b * cell:(b + 1) * cell] = 235 if bits >> (7 - b) & 1 else 16
    tex_h = height // 4
    y[height - tex_h:] = rng.integers(16, 236, size=(tex_h, width), dtype=np.uint8)
    uv = np.full((height // 2, width), 128, dtype=np.uint8)
    uv[: height // 4, : width // 2] = (64 + 4 * i) % 256  # U drifts so the colour changes too
    return np.concatenate([y, uv])


def clip(codec: str = "h264", width: int = 640, height: int = 360, fps: int = 25, bitrate: int = 1_000_000,
         gop: int = 25, seconds: float = 2) -> list[EsFrame]:
    """A test-pattern clip as Annex B access units (no B-frames, so decode order = display order).

    The first frame is an IDR, and every keyframe carries its parameter sets (SPS/PPS, plus VPS for H.265).
    PTS are 90 kHz from 0. Encoded once per argument set and cached in memory."""
    if codec not in nal.CODECS:
        raise ValueError(f"unsupported codec {codec!r}")
    key = (codec, width, height, fps, bitrate, gop, float(seconds))
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _encode(*key)
        return list(_CACHE[key])


def _encode(codec: str, width: int, height: int, fps: int, bitrate: int, gop: int,
            seconds: float) -> list[EsFrame]:
    kbit = max(bitrate // 1000, 1)
    if codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1",
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:"
                                      f"vbv-maxrate={kbit}:vbv-bufsize={kbit}:repeat-headers=1"}
    else:
        ctx = av.CodecContext.create("libx265", "w")
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:"
                                      f"repeat-headers=1:log-level=error:vbv-maxrate={kbit}:vbv-bufsize={kbit}"}
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.bit_rate = bitrate
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    ctx.thread_count = 2
    rng = np.random.default_rng(15)
    n = max(int(round(seconds * fps)), 1)
    packets: list[av.Packet] = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(_pattern(width, height, i, fps, rng), format="yuv420p")
        frame.pts = i
        frame.time_base = ctx.time_base
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    frames: list[EsFrame] = []
    for i, pkt in enumerate(packets):
        data = bytes(pkt)
        pts = (pkt.pts if pkt.pts is not None else i) * TICKS // fps
        frames.append(EsFrame(codec, pts, data, nal.is_keyframe(data, codec)))
    frames.sort(key=lambda f: f.pts or 0)
    return frames


def tone_alaw(fps: float, seconds: float = 2.0, rate: int = 8000) -> list[bytes]:
    """A 440 Hz tone as G.711 A-law (PyAV's pcm_alaw encoder), cut in one chunk per video frame."""
    samples = int(rate * seconds)
    t = np.arange(samples) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
    enc = av.CodecContext.create("pcm_alaw", "w")
    enc.sample_rate, enc.layout, enc.format = rate, "mono", "s16"
    enc.time_base = Fraction(1, rate)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate, frame.pts = rate, 0
    data = b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
    per = max(1, int(round(rate / fps)))
    return [data[i:i + per] for i in range(0, len(data) - per + 1, per)]


class RtpPsSender:
    """Plays access units like a GB/T 28181 camera: MPEG-PS in RTP (payload type 96, 90 kHz timestamp = PTS,
    marker on the last packet of each frame), paced at `fps`, looping the clip with continuous PTS and sequence
    numbers. `loss` drops and `reorder` delays (by 1-3 packets) that fraction of packets, from a seeded RNG.

    Transports: UDP; TCP active (we connect to the receiver); TCP passive (we listen, the receiver connects).
    TCP uses RFC 4571 framing. Sending ends on `stop()` or when a TCP peer goes away. `mute=True` makes a
    device that sets up the transport but sends nothing.
    """

    def __init__(self, frames: list[EsFrame], *, ssrc: int, fps: float, transport: str = "UDP",
                 loss: float = 0.0, reorder: float = 0.0, seed: int = 0, mtu: int = 1400,
                 first_seq: int | None = None, mute: bool = False, audio: bool = False) -> None:
        video = [f for f in frames if f.codec in nal.CODECS]
        if not video:
            raise ValueError("no video frames to send")
        if transport.upper() not in ("UDP", "TCP"):
            raise ValueError(f"unknown transport {transport!r}")
        self.frames = video
        self.ssrc = ssrc
        self.fps = fps
        self.transport = transport.upper()
        self.loss = loss
        self.reorder = reorder
        self.mute = mute  # connect/listen as asked but send nothing (a device that never streams)
        self.audio = tone_alaw(fps) if audio else None  # G.711 A-law in the PS packs, one chunk per frame
        self.payload_size = max(mtu - 12, 64)
        self._rng = random.Random(seed)
        self._seq = self._rng.randrange(65536) if first_seq is None else first_seq
        step = int(round(TICKS / fps))
        self._clip_span = (video[-1].pts or 0) - (video[0].pts or 0) + step
        self._task: asyncio.Task | None = None
        self._server: asyncio.AbstractServer | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._delayed: list[tuple[int, bytes]] = []  # (packets still to send before it, packet)
        self.frames_sent = 0
        self.bytes_sent = 0
        self.packets_sent = 0
        self.packets_dropped = 0
        self.packets_reordered = 0
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()
        self.error: str | None = None

    # -- starting ---------------------------------------------------------------------------------------------
    async def start_udp(self, host: str, port: int, *, sock: socket.socket | None = None) -> None:
        """Send to host:port; from `sock` when given (a socket bound to the port announced in the SDP)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            sock.setblocking(False)
            sock.connect((host, port))
            self._udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        else:
            self._udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
        with contextlib.suppress(OSError):
            self._udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.connected.set()
        self._task = asyncio.create_task(self._run())

    async def start_tcp_active(self, host: str, port: int, timeout: float = 5.0) -> None:
        _, self._writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self.connected.set()
        self._task = asyncio.create_task(self._run())

    async def listen_tcp_passive(self, host: str = "127.0.0.1", port: int = 0) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._writer is not None or self.finished.is_set():  # one receiver per stream
                writer.close()
                return
            self._writer = writer
            self.connected.set()
            self._task = asyncio.create_task(self._run())
            with contextlib.suppress(Exception):
                await reader.read()  # hold the connection; an EOF from the receiver ends the stream
            await self.stop()

        self._server = await asyncio.start_server(accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    @property
    def local_port(self) -> int | None:
        if self._server is not None:
            return self._server.sockets[0].getsockname()[1]
        if self._udp is not None:
            return self._udp.get_extra_info("sockname")[1]
        return None

    async def stop(self) -> None:
        self.finished.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # -- sending ----------------------------------------------------------------------------------------------
    def packets_for(self, frame: EsFrame, pts: int) -> list[bytes]:
        """The RTP packets of one frame (advances the sequence number)."""
        audio = None
        if self.audio is not None:
            audio = [(self.audio[self.frames_sent % len(self.audio)], pts)]
        ps = mux_ps(frame.data, codec=frame.codec, pts=pts, keyframe=frame.keyframe, audio=audio)
        size = self.payload_size
        chunks = [ps[i:i + size] for i in range(0, len(ps), size)]
        out = []
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            out.append(build_rtp(chunk, seq=self._seq, timestamp=pts, ssrc=self.ssrc, marker=i == last))
            self._seq = (self._seq + 1) & 0xFFFF
        return out

    def _impair(self, packets: list[bytes]) -> list[bytes]:
        if not (self.loss or self.reorder or self._delayed):
            return packets
        out: list[bytes] = []
        rng = self._rng
        for pkt in packets:
            if self.loss and rng.random() < self.loss:
                self.packets_dropped += 1
                continue
            if self.reorder and rng.random() < self.reorder:
                self.packets_reordered += 1
                self._delayed.append((rng.randint(1, 3), pkt))
                continue
            out.append(pkt)
            still = []
            for n, held in self._delayed:
                if n <= 1:
                    out.append(held)
                else:
                    still.append((n - 1, held))
            self._delayed = still
        return out

    async def _send(self, packets: list[bytes]) -> None:
        if self._udp is not None:
            for pkt in packets:
                self._udp.sendto(pkt)
                self.bytes_sent += len(pkt)
        elif self._writer is not None:
            data = b"".join(frame_rfc4571(p) for p in packets)
            self._writer.write(data)
            self.bytes_sent += len(data)
            await self._writer.drain()
        self.packets_sent += len(packets)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.fps
        start = loop.time()
        n = 0
        base = self.frames[0].pts or 0
        try:
            if self.mute:
                await self.finished.wait()
            while not self.finished.is_set():
                frame = self.frames[n % len(self.frames)]
                pts = (n // len(self.frames)) * self._clip_span + (frame.pts or 0) - base
                await self._send(self._impair(self.packets_for(frame, pts)))
                self.frames_sent += 1
                n += 1
                delay = start + n * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:  # far behind (loaded machine): do not burst to catch up
                    start = loop.time() - n * interval
                else:
                    await asyncio.sleep(0)
        except (ConnectionError, OSError) as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            self.finished.set()


# ---- recorded video: a picture that says which second of the recording it shows ---------------------------------
TIMECODE_BITS = 32


def _timecode_picture(width: int, height: int, second: int, sub: int, view: tuple[float, float, float]) -> np.ndarray:
    """One yuv420p frame of a recording: the top strip carries ``second`` (Unix time) as 32 black / white blocks
    a test reads back (``read_timecode``); a box whose place follows the camera's pan / tilt / zoom (``view``)
    and moves within the second (``sub`` = frame within the second)."""
    y = np.empty((height, width), dtype=np.uint8)
    y[:] = (np.arange(width, dtype=np.uint16) * 120 // max(width - 1, 1) + 60).astype(np.uint8)
    strip = max(height // 12, 8)
    cell = width // TIMECODE_BITS
    for b in range(TIMECODE_BITS):
        y[:strip, b * cell:(b + 1) * cell] = 235 if (second >> (TIMECODE_BITS - 1 - b)) & 1 else 16
    pan, tilt, zoom = view
    box = int(max(height // 5, 8) * (1 + max(min(zoom, 3.0), 0.0)))
    box = min(box, height - strip - 2)
    x0 = int((width - box) * (0.5 + 0.5 * np.sin(np.radians(pan)))) + (sub * 2) % 8
    y0 = strip + 1 + int((height - strip - box - 2) * (0.5 + 0.5 * np.sin(np.radians(tilt))))
    x0 = max(0, min(width - box, x0))
    y[y0:y0 + box, x0:x0 + box] = 235
    uv = np.full((height // 2, width), 128, dtype=np.uint8)
    return np.concatenate([y, uv])


def read_timecode(luma: np.ndarray) -> int:
    """The Unix second written by ``_timecode_picture`` in a decoded frame's luma (or grey) plane."""
    height, width = luma.shape[:2]
    strip = max(height // 12, 8)
    cell = width // TIMECODE_BITS
    value = 0
    for b in range(TIMECODE_BITS):
        block = luma[strip // 4: strip * 3 // 4, b * cell + cell // 4: (b + 1) * cell - cell // 4]
        value = value << 1 | int(block.mean() > 128)
    return value


class TimecodeEncoder:
    """Encodes recording frames on demand (H.264, a keyframe each second, parameter sets in band)."""

    def __init__(self, width: int = 320, height: int = 180, fps: int = 25, bitrate: int = 400_000) -> None:
        self.width, self.height, self.fps = width, height, fps
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:repeat-headers=1"}
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base, ctx.framerate, ctx.bit_rate = Fraction(1, fps), Fraction(fps), bitrate
        ctx.gop_size, ctx.max_b_frames, ctx.thread_count = fps, 0, 1
        self.ctx = ctx
        self.n = 0

    def frame(self, t: float, view: tuple[float, float, float] = (0.0, 0.0, 0.0),
              key: bool = False) -> EsFrame | None:
        second, sub = int(t), int(round((t - int(t)) * self.fps))
        picture = av.VideoFrame.from_ndarray(_timecode_picture(self.width, self.height, second, sub, view),
                                             format="yuv420p")
        picture.pts, picture.time_base = self.n, self.ctx.time_base
        if key:
            picture.pict_type = av.video.frame.PictureType.I
        self.n += 1
        packets = self.ctx.encode(picture)
        if not packets:
            return None
        data = b"".join(bytes(p) for p in packets)
        return EsFrame("h264", None, data, nal.is_keyframe(data, "h264"))


class PlaybackSender(RtpPsSender):
    """A camera / NVR playing a recording (GB/T 28181 Playback / Download): frames for recording time
    ``start``…``end`` generated on the fly, sent ``scale`` times as fast as real time (Download: the download
    speed), with PAUSE / PLAY / ``Range`` seek / ``Scale`` from MANSRTSP; ``on_end`` runs when the end is reached.
    ``view`` returns the camera's pan / tilt / zoom so PTZ moves the picture (live view uses it too)."""

    def __init__(self, *, start: float, end: float | None, ssrc: int, fps: int = 25, width: int = 320,
                 height: int = 180, scale: float = 1.0, transport: str = "UDP",
                 view: Any = None, on_end: Any = None) -> None:
        self.encoder = TimecodeEncoder(width, height, fps)
        seed = self.encoder.frame(start, key=True)
        while seed is None:
            seed = self.encoder.frame(start, key=True)
        super().__init__([seed], ssrc=ssrc, fps=fps, transport=transport)
        self.start_t, self.end_t, self.position = start, end, start
        self.scale = scale
        self.paused = False
        self.view = view or (lambda: (0.0, 0.0, 0.0))
        self.on_end = on_end
        self._seek_to: float | None = None
        self._wake = asyncio.Event()

    def play(self, scale: float | None = None, at: float | None = None) -> None:
        if scale is not None and scale > 0:
            self.scale = min(scale, 16.0)
        if at is not None:
            self._seek_to = at
        self.paused = False
        self._wake.set()

    def pause(self) -> None:
        self.paused = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0  # frames sent: media time (PTS) keeps increasing through pauses and seeks
        next_at = loop.time()
        key = True
        try:
            while not self.finished.is_set():
                if self.paused:
                    self._wake.clear()
                    await self._wake.wait()
                    next_at = loop.time()
                    continue
                if self._seek_to is not None:
                    self.position, self._seek_to, key = self._seek_to, None, True
                if self.end_t is not None and self.position >= self.end_t:
                    if self.on_end is not None:
                        self.on_end()
                    await self.finished.wait()
                    break
                frame = await asyncio.to_thread(self.encoder.frame, self.position, self.view(), key)
                key = False
                if frame is not None:
                    pts = n * TICKS // self.fps
                    await self._send(self._impair(self.packets_for(frame, pts)))
                    self.frames_sent += 1
                    n += 1
                self.position += 1.0 / self.fps
                next_at += 1.0 / (self.fps * self.scale)
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:
                    next_at = loop.time()
                else:
                    await asyncio.sleep(0)
        except (ConnectionError, OSError) as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            self.finished.set()
