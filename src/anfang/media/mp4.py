"""Fragmented MP4 for Media Source Extensions, H.265 → H.264 transcoding and JPEG snapshots, all through PyAV.

``Fmp4Muxer`` hands each access unit to FFmpeg's mp4 muxer (``frag_every_frame+empty_moov+default_base_moof``):
FFmpeg writes the init segment (ftyp + moov, with avcC/hvcC built from the Annex B parameter sets) and then one
moof + mdat per frame, which we cut out of the byte stream by box size and send to the viewers as they come (one
frame of latency: FFmpeg closes a fragment when the next frame arrives and its duration is known).
"""

from __future__ import annotations

import contextlib
import fractions
import io
from dataclasses import dataclass
from typing import Any

import av
import structlog

from anfang.media import nal
from anfang.media.ps import EsFrame

log = structlog.get_logger(__name__)
TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_RATE = 16_000  # AAC sample rate of the audio track (G.711 is 8 kHz; 16 kHz plays everywhere)
VIDEO_TRACK = 1
FRAME_TICKS = 3600  # 25 fps in 90 kHz ticks: the duration assumed when the source gives no usable timestamp


class _Sink(io.RawIOBase):
    """The muxer's output: bytes accumulate here and are cut into top-level MP4 boxes."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buf += data
        return len(data)

    def boxes(self) -> list[tuple[bytes, bytes]]:
        out = []
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[:4], "big")
            if size < 8:  # FFmpeg never writes these for fragments; resynchronising is not possible: drop
                self.buf.clear()
                break
            if len(self.buf) < size:
                break
            out.append((bytes(self.buf[4:8]), bytes(self.buf[:size])))
            del self.buf[:size]
        return out


@dataclass(slots=True)
class StreamInfo:
    codec: str  # h264 | h265
    width: int
    height: int
    mime: str  # the MSE type: video/mp4; codecs="avc1.640028"


def _hevc_codec_string() -> str:
    # Main profile, level 4.0: what 1080p cameras send; the browser only uses it for isTypeSupported
    return "hvc1.1.6.L120.90"


def probe_keyframe(frame: EsFrame) -> tuple[int, int]:
    """Width and height of a keyframe, decoding it (cheap once per stream; works for H.264 and H.265)."""
    if frame.codec == "h264":
        sps = nal.parameter_sets(frame.data, "h264")["sps"]
        if sps:
            with contextlib.suppress(ValueError, IndexError):
                info = nal.h264_sps_info(sps[0])
                return info[0], info[1]
    ctx = av.CodecContext.create("hevc" if frame.codec == "h265" else "h264", "r")
    try:  # an access unit is a whole packet: no parser needed
        for f in [*ctx.decode(av.Packet(frame.data)), *ctx.decode(None)]:
            return f.width, f.height
    except av.FFmpegError as exc:
        raise ValueError(f"undecodable keyframe: {exc}") from None
    raise ValueError("undecodable keyframe")


def _children(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The boxes between ``start`` and ``end``: (type, payload start, box end)."""
    out = []
    while start + 8 <= end:
        size = int.from_bytes(data[start:start + 4], "big")
        if size < 8 or start + size > end:
            break
        out.append((data[start + 4:start + 8], start + 8, start + size))
        start += size
    return out


def _starts_with_keyframe(moof: bytes, track: int) -> bool:
    """Whether this fragment's first sample of ``track`` is a sync sample (ISO/IEC 14496-12 sample flags:
    trun first-sample-flags, else the first sample's own flags, else tfhd's default; non-sync bit 0x10000)."""
    for kind, a, b in _children(moof, 8, len(moof)):
        if kind != b"traf":
            continue
        flags = None
        track_id = -1
        for sub, c, d in _children(moof, a, b):
            box = moof[c:d]
            tf = int.from_bytes(box[1:4], "big")
            if sub == b"tfhd" and len(box) >= 8:
                track_id = int.from_bytes(box[4:8], "big")
                pos = 8 + (8 if tf & 0x1 else 0) + (4 if tf & 0x2 else 0) + (4 if tf & 0x8 else 0) + \
                    (4 if tf & 0x10 else 0)
                if tf & 0x20 and len(box) >= pos + 4:
                    flags = int.from_bytes(box[pos:pos + 4], "big")
            elif sub == b"trun" and len(box) >= 8:
                pos = 8 + (4 if tf & 0x1 else 0)
                if tf & 0x4 and len(box) >= pos + 4:
                    flags = int.from_bytes(box[pos:pos + 4], "big")
                elif tf & 0x400:
                    pos += (4 if tf & 0x4 else 0) + (4 if tf & 0x100 else 0) + (4 if tf & 0x200 else 0)
                    if len(box) >= pos + 4:
                        flags = int.from_bytes(box[pos:pos + 4], "big")
        if track_id == track:
            return flags is not None and not flags & 0x10000
    return False


def _extradata(params: dict[str, list[bytes]]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for k in ("vps", "sps", "pps") for unit in params.get(k, []))


class Fmp4Muxer:
    """One video track, H.264 or H.265, Annex B access units in, MP4 boxes out."""

    def __init__(self, codec: str, audio: bool = False) -> None:
        if codec not in ("h264", "h265"):
            raise ValueError(f"unsupported video codec {codec}")
        self.codec = codec
        self.audio = audio  # G.711 from the camera → AAC track (browsers' MSE cannot play G.711)
        self._astream: Any = None
        self._adec: Any = None
        self._resampler: Any = None
        self._fifo: Any = None
        self._apts = 0
        self.info: StreamInfo | None = None
        self.init: bytes | None = None
        self._sink = _Sink()
        self._out: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._last_dts: int | None = None
        self._params: bytes = b""
        self._pending_init: list[bytes] = []

    def _open(self, frame: EsFrame) -> None:
        params = nal.parameter_sets(frame.data, frame.codec)
        width, height = probe_keyframe(frame)
        if self.codec == "h264":
            mime = f'video/mp4; codecs="{nal.h264_codec_string(params["sps"][0])}"'
        else:
            mime = f'video/mp4; codecs="{_hevc_codec_string()}"'
        extradata = _extradata(params)
        self._sink = _Sink()
        # max_interleave_delta: with an audio track FFmpeg waits for both tracks before writing; never > 150 ms
        out = av.open(self._sink, "w", format="mp4",
                      options={"movflags": "frag_every_frame+empty_moov+default_base_moof",
                               "max_interleave_delta": "150000"})
        stream = out.add_stream("hevc" if self.codec == "h265" else "h264", rate=25)
        stream.width, stream.height = width, height
        stream.time_base = TIME_BASE
        stream.codec_context.extradata = extradata
        if self.codec == "h265":
            stream.codec_tag = "hvc1"  # Safari and MSE want hvc1 (parameter sets in the sample entry)
        self._astream = None
        if self.audio:
            astream = out.add_stream("aac", rate=AUDIO_RATE)
            astream.codec_context.layout = "mono"
            astream.codec_context.bit_rate = 32_000
            astream.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._astream = astream
            self._fifo = av.AudioFifo()
            self._apts = (frame.pts or 0) * AUDIO_RATE // 90_000
            mime = mime[:-1] + ', mp4a.40.2"'
        self._out, self._stream = out, stream
        self.info = StreamInfo(self.codec, width, height, mime)
        self._params = extradata
        self._last_dts = None
        self.init = None

    def push(self, frame: EsFrame) -> list[tuple[bytes, bool]]:
        """Mux one access unit; returns the finished fragments ``(moof+mdat, starts_with_keyframe)``. Frames
        before the first keyframe are dropped; a keyframe with new parameter sets starts a new init segment."""
        if frame.keyframe:
            extradata = _extradata(nal.parameter_sets(frame.data, frame.codec))
            if self._out is None and not extradata:
                return []  # a keyframe without its parameter sets cannot start a stream
            if self._out is None or (extradata and extradata != self._params):
                self.close()
                try:
                    self._open(frame)
                except (ValueError, IndexError, av.FFmpegError) as exc:
                    log.info("media_bad_keyframe", error=str(exc)[:200])
                    return []
        if self._out is None or self._stream is None:
            return []
        dts = frame.pts if frame.pts is not None else None
        if dts is None or self._last_dts is None and dts < 0:
            dts = (self._last_dts + FRAME_TICKS) if self._last_dts is not None else 0
        elif self._last_dts is not None and (dts <= self._last_dts or dts - self._last_dts > 90_000 * 10):
            dts = self._last_dts + FRAME_TICKS  # a jump or a step back in the source's clock: keep time flowing
        self._last_dts = dts
        packet = av.Packet(frame.data)
        packet.stream = self._stream
        packet.pts = packet.dts = dts
        packet.time_base = TIME_BASE
        packet.is_keyframe = frame.keyframe
        try:
            self._out.mux(packet)
        except av.FFmpegError as exc:
            log.info("media_mux_failed", error=str(exc)[:200])
            return []
        return self._collect()

    def push_audio(self, frame: EsFrame) -> list[tuple[bytes, bool]]:
        """G.711 (A-law / µ-law) from the camera → AAC in the same fragments (only with ``audio``)."""
        if self._astream is None or self._out is None or frame.codec not in ("pcma", "pcmu"):
            return []
        try:
            if self._adec is None:
                self._adec = av.CodecContext.create("pcm_alaw" if frame.codec == "pcma" else "pcm_mulaw", "r")
                self._adec.sample_rate, self._adec.layout = 8000, "mono"
                self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
            for decoded in self._adec.decode(av.Packet(frame.data)):
                for chunk in self._resampler.resample(decoded):
                    chunk.pts = None
                    self._fifo.write(chunk)
            packets = []
            size = self._astream.codec_context.frame_size or 1024
            while self._fifo.samples >= size:
                chunk = self._fifo.read(size)
                chunk.pts, chunk.time_base = self._apts, fractions.Fraction(1, AUDIO_RATE)
                self._apts += size
                packets += self._astream.encode(chunk)
            for packet in packets:
                self._out.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            log.info("media_audio_failed", error=str(exc)[:200])
            return []
        return self._collect()

    def _collect(self) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        for kind, box in self._sink.boxes():
            if kind in (b"ftyp", b"moov"):
                self._pending_init.append(box)
                if kind == b"moov":
                    self.init = b"".join(self._pending_init)
                    self._pending_init = []
            elif kind == b"moof":
                self._moof = box
            elif kind == b"mdat" and getattr(self, "_moof", None) is not None:
                out.append((self._moof + box, _starts_with_keyframe(self._moof, VIDEO_TRACK)))
                self._moof = None
        return out

    def close(self) -> None:
        if self._out is not None:
            with contextlib.suppress(Exception):  # closing a half-written fragment stream cannot fail anyone
                self._out.close()
        self._out = self._stream = None


class Transcoder:
    """H.265 → H.264 for viewers whose browser cannot decode H.265 (Debian's Chromium): decode, re-encode with
    libx264 ``ultrafast`` / ``zerolatency``, keyframe every ``gop`` frames, parameter sets in band."""

    def __init__(self, bitrate: int = 2_000_000, gop: int = 50) -> None:
        self.decoder = av.CodecContext.create("hevc", "r")
        self.encoder: av.CodecContext | None = None
        self.bitrate, self.gop = bitrate, gop
        self.frames_in = self.frames_out = 0
        self._next_pts = 0

    def _encoder(self, width: int, height: int) -> av.CodecContext:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = TIME_BASE
        enc.bit_rate = self.bitrate
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(self.gop), "bf": "0",
                       "threads": "1"}
        return enc

    def push(self, frame: EsFrame) -> list[EsFrame]:
        out: list[EsFrame] = []
        self.frames_in += 1
        try:
            decoded = self.decoder.decode(av.Packet(frame.data))
        except av.FFmpegError:
            return out
        for picture in decoded:
            if self.encoder is None or (picture.width, picture.height) != (self.encoder.width, self.encoder.height):
                self.encoder = self._encoder(picture.width, picture.height)
            pts = frame.pts if frame.pts is not None else self._next_pts
            self._next_pts = pts + FRAME_TICKS
            picture = picture.reformat(format="yuv420p")
            picture.pts, picture.time_base = pts, TIME_BASE
            picture.pict_type = av.video.frame.PictureType.NONE
            for packet in self.encoder.encode(picture):
                data = bytes(packet)
                self.frames_out += 1
                out.append(EsFrame("h264", packet.pts, data, nal.is_keyframe(data, "h264")))
        return out


def snapshot_jpeg(frames: list[EsFrame], quality: int = 85) -> bytes:
    """Decode from the last keyframe up to the newest frame and return it as JPEG."""
    if not frames:
        raise ValueError("no picture yet")
    ctx = av.CodecContext.create("hevc" if frames[0].codec == "h265" else "h264", "r")
    last = None
    for fr in frames:
        try:
            for picture in ctx.decode(av.Packet(fr.data)):
                last = picture
        except av.FFmpegError:
            continue
    try:
        for picture in ctx.decode(None):
            last = picture
    except av.FFmpegError:
        pass
    if last is None:
        raise ValueError("no decodable picture")
    buf = io.BytesIO()
    last.to_image().save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
