"""MPEG-2 program stream (ISO/IEC 13818-1 section 2.5) as GB/T 28181 carries it in RTP (`PS/90000`).

Hand-written on purpose: FFmpeg's `mpeg` demuxer (PyAV) wants a seekable file or a blocking reader and probes
before it yields anything; a live relay needs a push parser that emits each access unit as soon as it is
complete, resyncs after loss, and bounds its memory against hostile input. The muxer is the small subset GB/T
28181 devices send (pack header, system header and PSM on keyframes, PES packets).
"""

from __future__ import annotations

from dataclasses import dataclass

from anfang.media import nal

PACK_START = b"\x00\x00\x01\xba"
SYSTEM_HEADER = 0xBB
PSM = 0xBC
END_CODE = 0xB9
PADDING = 0xBE
MAX_PES_PAYLOAD = 0xFFFF - 3 - 5  # PES_packet_length counts the 3 flag bytes and the 5 PTS bytes

STREAM_TYPES = {0x1B: "h264", 0x24: "h265", 0x90: "pcma", 0x91: "pcmu", 0x0F: "aac"}
TYPE_OF = {v: k for k, v in STREAM_TYPES.items()}
VIDEO_CODECS = ("h264", "h265")
AUDIO_CODECS = ("pcma", "pcmu", "aac")
VIDEO_ID = 0xE0
AUDIO_ID = 0xC0


@dataclass(slots=True)
class EsFrame:
    codec: str  # 'h264' | 'h265' | 'pcma' | 'pcmu' | 'aac'
    pts: int | None  # 90 kHz
    data: bytes  # video: one whole access unit in Annex B; audio: one PES payload
    keyframe: bool


def _read_pts(b: bytes | bytearray, i: int) -> int:
    return (((b[i] >> 1) & 0x07) << 30) | (b[i + 1] << 22) | ((b[i + 2] >> 1) << 15) | (b[i + 3] << 7) | (
        b[i + 4] >> 1)


class PsDemuxer:
    """Push demuxer: feed RTP payloads in order (any chunking), get elementary-stream frames.

    A video access unit is emitted when the next one starts (a PES with a different PTS) or on `flush()`
    (call it on the RTP marker bit or a timestamp change). Never raises on bad input: garbage is skipped up to
    the next pack start code (00 00 01 BA); a unit whose lengths do not add up is dropped. Memory is bounded:
    the parse buffer holds at most one PS unit (16-bit lengths) and an access unit over `max_au` bytes is
    dropped and counted.
    """

    def __init__(self, *, max_au: int = 4 << 20, default_video: str = "h264", default_audio: str = "pcma") -> None:
        self.max_au = max_au
        self.default_video = default_video
        self.default_audio = default_audio
        self.stream_codecs: dict[int, str] = {}  # stream_id -> codec, from the PSM
        self._buf = bytearray()
        self._synced = False
        self._au: list[bytes] = []
        self._au_size = 0
        self._au_pts: int | None = None
        self._au_codec = default_video
        self._au_dropping = False
        self.stats = {"bytes": 0, "packs": 0, "pes": 0, "video_frames": 0, "audio_frames": 0, "resyncs": 0,
                      "skipped_bytes": 0, "bad_units": 0, "oversize_aus": 0, "psm": 0, "guessed": 0}

    # -- public -------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[EsFrame]:
        out: list[EsFrame] = []
        self.stats["bytes"] += len(data)
        self._buf += data
        try:
            self._parse(out)
        except Exception:  # noqa: BLE001 - defensive: the parser must never take the stream down
            self.stats["bad_units"] += 1
            self._lose_sync()
        return out

    def flush(self) -> list[EsFrame]:
        """Emit the pending access unit (the caller knows it is complete: RTP marker or timestamp change)."""
        out: list[EsFrame] = []
        self._emit_au(out)
        return out

    def discontinuity(self) -> None:
        """Packets were lost: drop the partial unit and access unit, resync at the next pack header."""
        self._reset_au()
        self._buf.clear()
        self._synced = False

    @property
    def buffered(self) -> int:
        return len(self._buf) + self._au_size

    # -- parsing ------------------------------------------------------------------------------------------
    def _lose_sync(self) -> None:
        self.stats["resyncs"] += 1
        self._synced = False

    def _parse(self, out: list[EsFrame]) -> None:
        buf = self._buf
        pos = 0
        while True:
            size = len(buf)
            if not self._synced:
                i = buf.find(PACK_START, pos)
                if i < 0:
                    keep = max(pos, size - 3)  # a start code may straddle chunks
                    self.stats["skipped_bytes"] += keep - pos
                    pos = keep
                    break
                self.stats["skipped_bytes"] += i - pos
                pos = i
                self._synced = True
            if size - pos < 4:
                break
            if buf[pos] != 0 or buf[pos + 1] != 0 or buf[pos + 2] != 1:
                self._lose_sync()
                pos += 1
                continue
            sid = buf[pos + 3]
            if sid == 0xBA:
                if size - pos < 14:
                    break
                if buf[pos + 4] >> 6 != 1:  # MPEG-1 pack headers are not used by GB/T 28181
                    self.stats["bad_units"] += 1
                    self._lose_sync()
                    pos += 4
                    continue
                n = 14 + (buf[pos + 13] & 0x07)
                if size - pos < n:
                    break
                self.stats["packs"] += 1
                pos += n
                continue
            if sid == END_CODE:
                pos += 4
                continue
            if sid < 0xB9:  # not a PS unit (e.g. a stray video start code): lost sync
                self.stats["bad_units"] += 1
                self._lose_sync()
                pos += 4
                continue
            if size - pos < 6:
                break
            n = 6 + ((buf[pos + 4] << 8) | buf[pos + 5])
            if size - pos < n:
                break
            unit = bytes(buf[pos:pos + n])
            pos += n
            if sid == PSM:
                self._parse_psm(unit)
            elif 0xC0 <= sid <= 0xEF:
                self._parse_pes(sid, unit, out)
            # system header, padding, private streams: skipped
        if pos:
            del buf[:pos]

    def _parse_psm(self, unit: bytes) -> None:
        if len(unit) < 16:
            self.stats["bad_units"] += 1
            return
        info_len = (unit[8] << 8) | unit[9]
        i = 10 + info_len
        if i + 2 > len(unit):
            self.stats["bad_units"] += 1
            return
        map_len = (unit[i] << 8) | unit[i + 1]
        i += 2
        end = min(i + map_len, len(unit) - 4)
        codecs: dict[int, str] = {}
        while i + 4 <= end:
            stype, sid = unit[i], unit[i + 1]
            es_info = (unit[i + 2] << 8) | unit[i + 3]
            codec = STREAM_TYPES.get(stype)
            if codec:
                codecs[sid] = codec
            i += 4 + es_info
        if codecs:
            self.stream_codecs = codecs
            self.stats["psm"] += 1

    def _parse_pes(self, sid: int, unit: bytes, out: list[EsFrame]) -> None:
        self.stats["pes"] += 1
        if len(unit) < 9 or unit[6] >> 6 != 2:  # MPEG-2 PES header ('10' marker)
            self.stats["bad_units"] += 1
            return
        hdr_end = 9 + unit[8]
        if hdr_end > len(unit):
            self.stats["bad_units"] += 1
            return
        pts = _read_pts(unit, 9) if unit[7] & 0x80 and unit[8] >= 5 else None
        payload = unit[hdr_end:]
        if sid >= 0xE0:
            self._video(sid, pts, payload, out)
        else:
            codec = self.stream_codecs.get(sid, self.default_audio)
            if codec in AUDIO_CODECS and payload:
                self.stats["audio_frames"] += 1
                out.append(EsFrame(codec, pts, payload, True))

    def _video(self, sid: int, pts: int | None, payload: bytes, out: list[EsFrame]) -> None:
        codec = self.stream_codecs.get(sid, "")
        if not codec:  # no PSM yet (joined mid-GOP, or a device that sends none): guess from the NAL headers
            if self._au_size and (pts is None or pts == self._au_pts):
                codec = self._au_codec  # a continuation of the current access unit
            elif payload.find(nal.START, 0, 8) >= 0:
                codec = nal.guess_codec(payload[:512])
            else:
                codec = self.default_video
            self.stats["guessed"] += 1
        if codec not in VIDEO_CODECS:
            return
        if pts is not None and (pts != self._au_pts or codec != self._au_codec):
            self._emit_au(out)
            self._au_pts = pts
            self._au_codec = codec
            self._au_dropping = False
        if self._au_dropping:
            return
        self._au.append(payload)
        self._au_size += len(payload)
        if self._au_size > self.max_au:
            self.stats["oversize_aus"] += 1
            self._au.clear()
            self._au_size = 0
            self._au_dropping = True  # until the next access unit starts

    def _emit_au(self, out: list[EsFrame]) -> None:
        if self._au_size:
            data = b"".join(self._au)
            codec = self._au_codec
            self.stats["video_frames"] += 1
            out.append(EsFrame(codec, self._au_pts, data, nal.is_keyframe(data, codec)))
        self._au.clear()
        self._au_size = 0
        self._au_dropping = False
        # keep _au_pts so continuation PES with the same PTS after a flush do not start a new AU by mistake

    def _reset_au(self) -> None:
        self._au.clear()
        self._au_size = 0
        self._au_pts = None
        self._au_dropping = False


# -- muxer --------------------------------------------------------------------------------------------------
def _crc32_mpeg2(data: bytes) -> int:
    # CRC-32/MPEG-2 (poly 0x04C11DB7, MSB first, no reflection): zlib/binascii only offer the reflected CRC-32,
    # and this runs once per keyframe over a few bytes.
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def _pack_header(scr: int, mux_rate: int = 0x3FFF) -> bytes:
    scr &= (1 << 33) - 1
    v = (1 << 46) | (((scr >> 30) & 0x7) << 43) | (1 << 42) | (((scr >> 15) & 0x7FFF) << 27) | (1 << 26) | (
        (scr & 0x7FFF) << 11) | (1 << 10) | 1  # SCR extension 0
    return PACK_START + v.to_bytes(6, "big") + ((mux_rate << 2) | 3).to_bytes(3, "big") + b"\xf8"


def _system_header(has_audio: bool, rate_bound: int = 0x3FFF) -> bytes:
    body = bytearray(((1 << 23) | (rate_bound << 1) | 1).to_bytes(3, "big"))
    body.append((1 if has_audio else 0) << 2)  # audio_bound, fixed_flag 0, CSPS_flag 0
    body.append(0xE1)  # audio/video lock, marker, video_bound 1
    body.append(0x7F)  # packet_rate_restriction_flag 0, reserved
    body += bytes([VIDEO_ID]) + (0xE000 | 1024).to_bytes(2, "big")  # P-STD scale 1024 B x 1024
    if has_audio:
        body += bytes([AUDIO_ID]) + (0xC000 | 64).to_bytes(2, "big")  # scale 128 B x 64
    return b"\x00\x00\x01\xbb" + len(body).to_bytes(2, "big") + bytes(body)


def _psm(video: str, audio: str | None) -> bytes:
    es_map = bytes([TYPE_OF[video], VIDEO_ID, 0, 0])
    if audio:
        es_map += bytes([TYPE_OF[audio], AUDIO_ID, 0, 0])
    body = b"\xe0\xff\x00\x00" + len(es_map).to_bytes(2, "big") + es_map
    head = b"\x00\x00\x01\xbc" + (len(body) + 4).to_bytes(2, "big") + body
    return head + _crc32_mpeg2(head).to_bytes(4, "big")


def _pts_bytes(pts: int) -> bytes:
    pts &= (1 << 33) - 1
    return bytes([0x21 | (((pts >> 30) & 0x07) << 1), (pts >> 22) & 0xFF, (((pts >> 15) & 0x7F) << 1) | 1,
                  (pts >> 7) & 0xFF, ((pts & 0x7F) << 1) | 1])


def _pes(stream_id: int, payload: bytes, pts: int | None) -> list[bytes]:
    parts: list[bytes] = []
    first = True
    view = memoryview(payload)
    for off in range(0, max(len(payload), 1), MAX_PES_PAYLOAD):
        chunk = view[off:off + MAX_PES_PAYLOAD]
        if first and pts is not None:
            hdr = b"\x80\x80\x05" + _pts_bytes(pts)
        else:
            hdr = b"\x80\x00\x00"
        first = False
        parts.append(b"\x00\x00\x01" + bytes([stream_id]) + (len(hdr) + len(chunk)).to_bytes(2, "big") + hdr)
        parts.append(bytes(chunk))
    return parts


def mux_ps(au: bytes, *, codec: str, pts: int, keyframe: bool, audio: list[tuple[bytes, int]] | None = None,
           audio_codec: str = "pcma") -> bytes:
    """One PS pack for a video access unit (Annex B) and optional audio frames [(payload, pts)].

    Keyframes carry the system header and the PSM (with the audio stream when `audio` is given, even empty).
    Each PES stays under 65,535 bytes; only the first PES of the access unit carries the PTS."""
    if codec not in VIDEO_CODECS:
        raise ValueError(f"unsupported video codec {codec!r}")
    if audio is not None and audio_codec not in AUDIO_CODECS:
        raise ValueError(f"unsupported audio codec {audio_codec!r}")
    parts = [_pack_header(pts)]
    if keyframe:
        parts.append(_system_header(audio is not None))
        parts.append(_psm(codec, audio_codec if audio is not None else None))
    parts += _pes(VIDEO_ID, au, pts)
    for payload, apts in audio or ():
        parts += _pes(AUDIO_ID, payload, apts)
    return b"".join(parts)
