"""The SDP of a GB/T 28181 INVITE (RFC 4566 plus the standard's ``y=`` SSRC and ``f=`` media lines): just what a
media session needs, built and read strictly (no SDP library covers ``y=``/``f=``, and the subset is small)."""

from __future__ import annotations

from dataclasses import dataclass


class SdpError(ValueError):
    pass


@dataclass(slots=True)
class MediaDescription:
    host: str  # c= address
    port: int
    proto: str  # RTP/AVP | TCP/RTP/AVP
    setup: str | None  # active | passive (TCP), the SENDER of this SDP's role
    ssrc: str | None  # y= value, ten digits
    subject: str = "Play"  # s=


def ssrc_for(realm: str, serial: int, playback: bool = False) -> str:
    """GB/T 28181-2016 annex: 10 digits, the first 0 for live (1 for playback/download), then digits 4-8 of the
    SIP domain id, then a 4-digit serial."""
    return f"{1 if playback else 0}{realm[3:8]}{serial % 10_000:04d}"


def build_offer(*, server_id: str, ip: str, port: int, transport: str, ssrc: str, subject: str = "Play",
                channel_id: str = "", start: int = 0, end: int = 0, speed: int = 0) -> bytes:
    """The platform's offer: receive only, PS/90000 (also H264 / MPEG4 for devices that cannot send PS). Playback
    and Download carry ``u=<channel>:0`` and ``t=<start> <end>`` (Unix seconds); Download its speed."""
    tcp = transport.startswith("TCP")
    lines = ["v=0", f"o={server_id} 0 0 IN IP4 {ip}", f"s={subject}"]
    if subject != "Play":
        lines.append(f"u={channel_id}:0")
    lines += [f"c=IN IP4 {ip}", f"t={start} {end}" if subject != "Play" else "t=0 0",
             f"m=video {port or 9} {'TCP/RTP/AVP' if tcp else 'RTP/AVP'} 96 98 97", "a=recvonly",
             "a=rtpmap:96 PS/90000", "a=rtpmap:98 H264/90000", "a=rtpmap:97 MPEG4/90000"]
    if tcp:
        lines += [f"a=setup:{'passive' if transport == 'TCP-passive' else 'active'}", "a=connection:new"]
    if subject == "Download" and speed:
        lines.append(f"a=downloadspeed:{speed}")
    lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


def parse(body: bytes | str) -> MediaDescription:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(text) > 16_384:
        raise SdpError("SDP too large")
    host = port = proto = setup = ssrc = None
    subject = "Play"
    session_host = None
    in_video = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "s":
            subject = value[:32]
        elif kind == "c":
            parts = value.split()
            if len(parts) == 3 and parts[0] == "IN":
                if in_video:
                    host = parts[2]
                else:
                    session_host = parts[2]
        elif kind == "m":
            parts = value.split()
            in_video = parts[:1] == ["video"]
            if in_video and len(parts) >= 3:
                if not parts[1].isascii() or not parts[1].isdigit() or not 0 <= int(parts[1]) <= 65535:
                    raise SdpError("bad media port")
                port, proto = int(parts[1]), parts[2].upper()
        elif kind == "a" and in_video and value.startswith("setup:"):
            setup = value[6:].strip().lower()
        elif kind == "y":
            if not (value.isascii() and value.isdigit() and len(value) <= 10):
                raise SdpError("bad y= SSRC")
            ssrc = value
    host = host or session_host
    if host is None or port is None or proto is None:
        raise SdpError("no video media description")
    return MediaDescription(host, port, proto, setup, ssrc, subject)
