"""RTP (RFC 3550) packets, sequence reordering, and RFC 4571 framing over TCP.

Hand-written on purpose: the issue asks for our own RTP layer (PyAV/FFmpeg's RTP demuxer wants an SDP and a
socket of its own, and cannot enforce the per-INVITE SSRC/address filtering and bounded buffers we need).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
HALF = 1 << 15


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet strictly: version 2, CSRC list, header extension and padding must fit the size."""
    size = len(data)
    if size < HEADER.size:
        raise RtpError(f"RTP packet too short ({size} bytes)")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    offset = HEADER.size + 4 * (b0 & 0x0F)
    if offset > size:
        raise RtpError("CSRC list longer than the packet")
    if b0 & 0x10:
        if offset + 4 > size:
            raise RtpError("header extension truncated")
        (ext_words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * ext_words
        if offset > size:
            raise RtpError("header extension longer than the packet")
    end = size
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or offset + pad > size:
            raise RtpError(f"bad padding length {pad}")
        end -= pad
    return RtpPacket(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]))


def build_rtp(payload: bytes, *, seq: int, timestamp: int, ssrc: int, payload_type: int = 96,
              marker: bool = False) -> bytes:
    """One RTP packet without CSRCs, extension or padding."""
    if not 0 <= payload_type <= 127:
        raise RtpError(f"payload type {payload_type} out of range")
    return HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc & 0xFFFFFFFF) + payload


class Reorder:
    """Release RTP packets in sequence order (with 16-bit wrap-around).

    Out-of-order packets are held until the gap before them fills; once `window` packets are held the gap is
    given up (its packets count as lost). Duplicates and packets older than the release point are dropped.
    Memory is bounded: at most `window` held packets plus a 64 KiB seen-map, whatever arrives. A long run of
    "old" packets (a sender that restarted its sequence numbers) resynchronises on the new numbering.
    """

    def __init__(self, window: int = 128) -> None:
        if not 1 <= window < HALF:
            raise ValueError("window must be in 1..32767")
        self.window = window
        self._next: int | None = None  # next sequence number to release
        self._top = 0  # highest sequence number received (for the reordered count)
        self._held: dict[int, RtpPacket] = {}
        self._released = bytearray(SEQ_MOD)  # 1 = that seq was released since the release point passed it
        self._old_run = 0
        self.stats = {"received": 0, "released": 0, "lost": 0, "reordered": 0, "duplicates": 0, "late": 0,
                      "resyncs": 0}

    def push(self, pkt: RtpPacket) -> list[RtpPacket]:
        stats = self.stats
        stats["received"] += 1
        seq = pkt.seq & 0xFFFF
        if self._next is None:
            self._next = self._top = seq
        ahead = (seq - self._next) % SEQ_MOD
        if ahead >= HALF:  # before the release point: already released (duplicate) or given up (late)
            if self._released[seq]:
                stats["duplicates"] += 1
            else:
                stats["late"] += 1
            self._old_run += 1
            if self._old_run > self.window:  # the sender restarted its numbering
                return self._resync(pkt)
            return []
        self._old_run = 0
        if seq in self._held:
            stats["duplicates"] += 1
            return []
        if (seq - self._top) % SEQ_MOD < HALF:
            self._top = seq
        else:
            stats["reordered"] += 1
        if ahead == 0:
            out = [pkt]
            self._mark(seq)
            self._next = (seq + 1) % SEQ_MOD
            if self._held:
                self._drain(out)
            return out
        self._held[seq] = pkt
        if len(self._held) < self.window:
            return []
        out: list[RtpPacket] = []
        while len(self._held) >= self.window:
            self._skip_to_first_held()
            self._drain(out)
        return out

    def flush(self) -> list[RtpPacket]:
        """Release everything held, in order, giving up every gap (e.g. at stream end)."""
        out: list[RtpPacket] = []
        while self._held:
            self._skip_to_first_held()
            self._drain(out)
        return out

    def _mark(self, seq: int) -> None:
        self._released[seq] = 1
        self.stats["released"] += 1

    def _drain(self, out: list[RtpPacket]) -> None:
        held = self._held
        nxt = self._next
        while nxt in held:
            out.append(held.pop(nxt))
            self._mark(nxt)
            nxt = (nxt + 1) % SEQ_MOD
        self._next = nxt

    def _skip_to_first_held(self) -> None:
        assert self._next is not None
        nxt = self._next
        first = min(self._held, key=lambda s: (s - nxt) % SEQ_MOD)
        gap = (first - nxt) % SEQ_MOD
        self.stats["lost"] += gap
        # clear the seen-map over the skipped range so a later arrival counts as late, not duplicate
        end = nxt + gap
        if end <= SEQ_MOD:
            self._released[nxt:end] = bytes(gap)
        else:
            self._released[nxt:] = bytes(SEQ_MOD - nxt)
            self._released[: end - SEQ_MOD] = bytes(end - SEQ_MOD)
        self._next = first

    def _resync(self, pkt: RtpPacket) -> list[RtpPacket]:
        out = self.flush()
        self.stats["resyncs"] += 1
        self._released = bytearray(SEQ_MOD)
        self._old_run = 0
        self._next = self._top = (pkt.seq + 1) % SEQ_MOD
        self._mark(pkt.seq & 0xFFFF)
        out.append(pkt)
        return out


def frame_rfc4571(pkt: bytes) -> bytes:
    """Prefix one RTP packet with its 16-bit big-endian length (RFC 4571)."""
    if len(pkt) > 0xFFFF:
        raise RtpError(f"RTP packet of {len(pkt)} bytes does not fit RFC 4571 framing")
    return struct.pack("!H", len(pkt)) + pkt


class Rfc4571Decoder:
    """Split a TCP byte stream into RTP packets (RFC 4571: 2-byte big-endian length prefix).

    The pending buffer never holds more than one incomplete frame (at most 65,537 bytes) because the length
    prefix is 16 bits; `max_buffer` additionally caps what one `feed` call may leave pending (defensive).
    Zero-length frames are skipped and counted.
    """

    def __init__(self, max_buffer: int = 1 << 20) -> None:
        self.max_buffer = max(max_buffer, 2 + 0xFFFF)
        self._buf = bytearray()
        self.stats = {"frames": 0, "empty": 0, "bytes": 0, "dropped_bytes": 0}

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        self.stats["bytes"] += len(data)
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            n = (buf[pos] << 8) | buf[pos + 1]
            if n == 0:
                self.stats["empty"] += 1
                pos += 2
                continue
            if size - pos - 2 < n:
                break
            out.append(bytes(buf[pos + 2: pos + 2 + n]))
            pos += 2 + n
        if pos:
            del buf[:pos]
        if len(buf) > self.max_buffer:  # cannot happen with 16-bit lengths; keep the bound explicit anyway
            self.stats["dropped_bytes"] += len(buf)
            buf.clear()
        self.stats["frames"] += len(out)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
