"""Media wire layer for live video (issue 15): RTP, reordering, RFC 4571, MPEG-PS mux/demux, NAL parsing,
checked against independent peers (FFmpeg's ffprobe, PyAV's decoders) and against hostile input."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import shutil
import struct
import subprocess

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anfang.media import nal, testsrc
from anfang.media.ps import EsFrame, PsDemuxer, mux_ps
from anfang.media.rtp import Reorder, Rfc4571Decoder, RtpError, RtpPacket, build_rtp, frame_rfc4571, parse_rtp
from anfang.media.testsrc import RtpPsSender

REQUIRE_SERVICES = os.environ.get("ANFANG_REQUIRE_SERVICES") == "1"


def _need_ffprobe() -> str:
    path = shutil.which("ffprobe") or ("/usr/bin/ffprobe" if os.path.exists("/usr/bin/ffprobe") else None)
    if not path:
        reason = "ffprobe (Debian ffmpeg) not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"required tool unavailable under CI: {reason}")
        pytest.skip(reason)
    return path


def _ps_stream(frames: list[EsFrame], audio: bool = False) -> bytes:
    out = []
    for i, f in enumerate(frames):
        aud = [(bytes([0xD5]) * 320 + i.to_bytes(2, "big"), f.pts)] if audio else None
        out.append(mux_ps(f.data, codec=f.codec, pts=f.pts, keyframe=f.keyframe, audio=aud))
    return b"".join(out)


def _demux_all(data: bytes, demuxer: PsDemuxer | None = None, chunks: int | None = 1400,
               seed: int = 1) -> list[EsFrame]:
    d = demuxer or PsDemuxer()
    rng = random.Random(seed)
    out: list[EsFrame] = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, chunks) if chunks else len(data)
        out += d.feed(data[pos:pos + n])
        pos += n
    return out + d.flush()


# -- RTP -------------------------------------------------------------------------------------------------------
def test_rtp_build_parse_round_trip_and_header_fields() -> None:
    raw = build_rtp(b"\x00\x00\x01\xba" + b"x" * 100, seq=65535, timestamp=0xFFFFFFFF, ssrc=100000001,
                    payload_type=96, marker=True)
    assert len(raw) == 12 + 104
    pkt = parse_rtp(raw)
    assert pkt == RtpPacket(True, 96, 65535, 0xFFFFFFFF, 100000001, b"\x00\x00\x01\xba" + b"x" * 100)
    assert parse_rtp(build_rtp(b"", seq=70000, timestamp=1 << 33, ssrc=5)).seq == 70000 - 65536
    # CSRCs, a header extension and padding are all skipped to find the payload
    hdr = bytes([0x80 | 0x20 | 0x10 | 2, 96]) + struct.pack("!HII", 7, 90000, 42)
    raw = hdr + b"CSR1CSR2" + struct.pack("!HH", 0xBEDE, 1) + b"EXT!" + b"payload" + b"\x00\x00\x03"
    pkt = parse_rtp(raw)
    assert (pkt.seq, pkt.timestamp, pkt.ssrc, pkt.marker, pkt.payload) == (7, 90000, 42, False, b"payload")


@pytest.mark.parametrize("raw,why", [
    (b"\x80\x60\x00", "too short"),
    (bytes([0x40, 96]) + bytes(10), "version"),
    (bytes([0x8F, 96]) + bytes(10) + bytes(8), "CSRC"),
    (bytes([0x90, 96]) + bytes(10) + b"\xbe\xde", "extension truncated"),
    (bytes([0x90, 96]) + bytes(10) + b"\xbe\xde\x00\x09" + bytes(8), "extension longer"),
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x00", "padding 0"),
    (bytes([0xA0, 96]) + bytes(10) + b"ab\x09", "padding longer"),
])
def test_rtp_parse_rejects_malformed_packets(raw: bytes, why: str) -> None:
    with pytest.raises(RtpError):
        parse_rtp(raw)
    with pytest.raises(RtpError):
        build_rtp(b"", seq=0, timestamp=0, ssrc=0, payload_type=200)


def _unwrap(seqs: list[int]) -> list[int]:
    out, base, last = [], 0, None
    for s in seqs:
        if last is not None and s < last and last - s > 32768:
            base += 65536
        out.append(base + s)
        last = s
    return out


def test_reorder_releases_in_order_through_2pct_loss_2pct_reorder_duplicates_and_wrap() -> None:
    rng = random.Random(15)
    first, count = 60000, 30000  # wraps 65535 -> 0 after 5536 packets
    seqs = [(first + i) % 65536 for i in range(count)]
    sent = [s for s in seqs if rng.random() >= 0.02]
    dropped = count - len(sent)
    arrivals = list(sent)
    for i in range(len(arrivals) - 20):  # 2% of packets arrive up to 12 places late
        if rng.random() < 0.02:
            d = rng.randint(1, 12)
            arrivals.insert(i + d, arrivals.pop(i))
    dups = rng.sample(range(len(arrivals)), 50)
    for i in sorted(dups, reverse=True):
        arrivals.insert(i + 1, arrivals[i])
    r = Reorder(window=64)
    out: list[int] = []
    for s in arrivals:
        out += [p.seq for p in r.push(RtpPacket(False, 96, s, s * 3600, 1, b""))]
    out += [p.seq for p in r.flush()]
    assert out == sent  # every packet that was sent, once, in sequence order across the wrap
    assert r.stats["lost"] == dropped
    assert r.stats["duplicates"] == 50
    assert r.stats["reordered"] > 0 and r.stats["late"] == 0


def test_reorder_gives_up_on_a_gap_and_stays_bounded_under_a_random_flood() -> None:
    r = Reorder(window=32)
    out = r.push(RtpPacket(False, 96, 10, 0, 1, b""))
    assert [p.seq for p in out] == [10]
    released = []
    for s in range(12, 12 + 32):  # 11 never comes
        released += [p.seq for p in r.push(RtpPacket(False, 96, s, 0, 1, b""))]
    assert released == list(range(12, 44)) and r.stats["lost"] == 1
    assert r.push(RtpPacket(False, 96, 11, 0, 1, b"")) == [] and r.stats["late"] == 1
    rng = random.Random(3)
    for _ in range(20000):
        r.push(RtpPacket(False, 96, rng.randrange(65536), 0, 1, b"x" * 10))
        assert len(r._held) < 32
    # a sender that restarts its numbering is followed after a window of "old" packets
    r2 = Reorder(window=16)
    for s in range(1000, 1100):
        r2.push(RtpPacket(False, 96, s, 0, 1, b""))
    got = []
    for s in range(60000, 60100):  # "behind" the release point 1100 in modulo-65536 terms
        got += [p.seq for p in r2.push(RtpPacket(False, 96, s, 0, 1, b""))]
    assert got == list(range(60016, 60100)) and r2.stats["resyncs"] == 1


def test_rfc4571_across_odd_chunking() -> None:
    rng = random.Random(4571)
    pkts = [build_rtp(rng.randbytes(rng.randint(0, 1500)), seq=i, timestamp=i, ssrc=9) for i in range(300)]
    pkts.append(build_rtp(bytes(65535 - 12), seq=300, timestamp=0, ssrc=9))  # the largest frame
    framed = [frame_rfc4571(p) for p in pkts]
    framed.insert(10, frame_rfc4571(b""))  # a zero-length frame is skipped
    stream = b"".join(framed)
    for chunk_max in (1, 3, 1460, 70000):
        dec = Rfc4571Decoder()
        got: list[bytes] = []
        pos = 0
        while pos < len(stream):
            n = rng.randint(1, chunk_max)
            got += dec.feed(stream[pos:pos + n])
            pos += n
            assert dec.pending <= 65537
        assert [parse_rtp(g).seq for g in got if len(g) >= 12] == list(range(301))
    with pytest.raises(RtpError):
        frame_rfc4571(bytes(65536))


# -- NAL --------------------------------------------------------------------------------------------------------
def test_nal_split_keyframes_and_parameter_sets_of_encoded_clips() -> None:
    for codec, ps_names in (("h264", ("sps", "pps")), ("h265", ("vps", "sps", "pps"))):
        frames = testsrc.clip(codec, 320, 180, fps=25, gop=10, seconds=1)
        assert len(frames) == 25
        assert [f.keyframe for f in frames] == [i % 10 == 0 for i in range(25)]
        for f in frames:
            sets = nal.parameter_sets(f.data, codec)
            assert all(bool(sets[n]) == f.keyframe for n in ps_names)  # every keyframe carries its sets
            assert nal.is_keyframe(f.data, codec) == f.keyframe
        assert [f.pts for f in frames] == [i * 3600 for i in range(25)]
    assert nal.split_annexb(b"\x00\x00\x00\x01\x67AB\x00\x00\x01\x68C\x00\x00") == [b"\x67AB", b"\x68C"]
    assert not nal.is_keyframe(b"garbage", "h264")


def _encode_sps(width: int, height: int, **options: str) -> tuple[bytes, int, str]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = av.time_base and __import__("fractions").Fraction(1, 25)
    ctx.options = options
    frame = av.VideoFrame(width, height, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))
    return nal.parameter_sets(data, "h264")["sps"][0], ctx.profile, ctx.name


@pytest.mark.parametrize("width,height,options", [
    (1920, 1080, {"preset": "ultrafast"}),  # baseline, cropped 1088 -> 1080
    (640, 360, {"preset": "veryfast", "profile": "high"}),  # high profile: the chroma/scaling branch
    (1280, 720, {"preset": "veryfast", "profile": "main", "x264-params": "interlaced=1"}),  # field coding
    (176, 144, {"preset": "veryfast", "profile": "high444", "pix_fmt": "yuv420p"}),
])
def test_h264_sps_size_profile_and_codec_string(width: int, height: int, options: dict) -> None:
    sps, _, _ = _encode_sps(width, height, **options)
    w, h, profile, constraints, level = nal.h264_sps_info(sps)
    assert (w, h) == (width, height)
    assert nal.h264_codec_string(sps) == f"avc1.{sps[1]:02X}{sps[2]:02X}{sps[3]:02X}"
    assert profile == sps[1] and level == sps[3] and constraints == sps[2]
    with pytest.raises(ValueError):
        nal.h264_sps_info(sps[:5])


# -- PS ---------------------------------------------------------------------------------------------------------
def test_ps_mux_demux_round_trip_video_audio_and_big_access_units() -> None:
    for codec in ("h264", "h265"):
        frames = testsrc.clip(codec, 320, 180, seconds=1)
        big = EsFrame(codec, frames[-1].pts + 3600, frames[0].data + bytes(200_000), True)  # 4 PES packets
        frames = frames + [big]
        stream = _ps_stream(frames, audio=True)
        for chunks in (1, 188, 1400, None):
            got = _demux_all(stream, chunks=chunks, seed=len(stream))
            video = [f for f in got if f.codec == codec]
            audio = [f for f in got if f.codec == "pcma"]
            assert [(f.pts, f.data, f.keyframe) for f in video] == [(f.pts, f.data, f.keyframe) for f in frames]
            assert [a.pts for a in audio] == [f.pts for f in frames]
            assert all(len(a.data) == 322 for a in audio)


def test_ps_demuxer_emits_each_access_unit_when_the_next_one_starts_and_on_flush() -> None:
    frames = testsrc.clip("h264", 320, 180, seconds=1)
    d = PsDemuxer()
    assert d.feed(mux_ps(frames[0].data, codec="h264", pts=0, keyframe=True)) == []
    got = d.feed(mux_ps(frames[1].data, codec="h264", pts=3600, keyframe=False))
    assert [f.pts for f in got] == [0]
    assert [f.pts for f in d.flush()] == [3600]  # the RTP marker says the second AU is complete
    assert d.flush() == []


def test_ffprobe_reads_a_file_of_our_ps(tmp_path) -> None:
    ffprobe = _need_ffprobe()
    for codec, name in (("h264", "h264"), ("h265", "hevc")):
        path = tmp_path / f"clip-{codec}.ps"
        path.write_bytes(_ps_stream(testsrc.clip(codec, 640, 360)))
        res = subprocess.run([ffprobe, "-v", "error", "-show_streams", "-count_frames", "-of", "json",
                              str(path)], capture_output=True, text=True, timeout=60, check=True)
        streams = json.loads(res.stdout)["streams"]
        video = [s for s in streams if s["codec_type"] == "video"]
        assert len(video) == 1
        s = video[0]
        assert (s["codec_name"], s["width"], s["height"]) == (name, 640, 360)
        assert int(s["nb_read_frames"]) == 50


@pytest.mark.parametrize("codec,name", [("h264", "h264"), ("h265", "hevc")])
def test_ffmpeg_mpeg_demuxer_reads_our_ps_with_psm_codecs_and_pts(codec: str, name: str) -> None:
    """FFmpeg's own program-stream demuxer (in PyAV's wheel) is a second independent reader of our muxer."""
    data = _ps_stream(testsrc.clip(codec, 640, 360), audio=True)
    with av.open(io.BytesIO(data), format="mpeg") as container:
        kinds = sorted((s.type, s.codec_context.name) for s in container.streams)
        assert kinds == [("audio", "pcm_alaw"), ("video", name)]  # from our PSM stream types 0x90 / 0x1b, 0x24
        video = container.streams.video[0]
        pts, pictures = [], []
        for packet in container.demux(video):
            if packet.size:
                pts.append(packet.pts)
            pictures += packet.decode()
    assert pts == [i * 3600 for i in range(50)]
    assert len(pictures) == 50 and {(p.width, p.height) for p in pictures} == {(640, 360)}


def _decode(frames: list[EsFrame], codec: str) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    out = []
    for f in frames:
        out += dec.decode(av.Packet(f.data))
    return out + dec.decode(None)


@pytest.mark.parametrize("codec,size", [("h264", (640, 360)), ("h265", (640, 360)), ("h264", (1920, 1080))])
def test_pyav_decodes_demuxed_access_units_to_moving_pictures(codec: str, size: tuple[int, int]) -> None:
    src = testsrc.clip(codec, *size, seconds=1)
    got = [f for f in _demux_all(_ps_stream(src)) if f.codec == codec]
    pictures = _decode(got, codec)
    assert len(pictures) == len(src) == 25
    assert all((p.width, p.height) == size for p in pictures)
    a, b = pictures[0].to_ndarray(), pictures[12].to_ndarray()
    assert (a != b).mean() > 0.01  # the picture moves


# -- hostile input ----------------------------------------------------------------------------------------------
_CLIP_PS: list[bytes] = []


def _clip_ps() -> bytes:
    if not _CLIP_PS:
        _CLIP_PS.append(_ps_stream(testsrc.clip("h264", 320, 180, seconds=1), audio=True))
    return _CLIP_PS[0]


def _valid_tail_still_yields(d: PsDemuxer, *, told: bool) -> None:
    frames = testsrc.clip("h264", 320, 180, seconds=1)
    if told:  # the caller saw an RTP sequence gap: the whole next stream comes out intact
        d.discontinuity()
        got = [f for f in _demux_all(_clip_ps(), d) if f.codec == "h264"]
        assert [f.data for f in got] == [f.data for f in frames]
    else:  # not told: a lying length may swallow up to 64 KiB, then the demuxer is back in step
        got = [f for f in _demux_all(_clip_ps() * 2, d) if f.codec == "h264"]
        assert [f.data for f in got[-25:]] == [f.data for f in frames]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=4000), cut=st.integers(0, 20000), flips=st.lists(
    st.tuples(st.integers(0, 30000), st.integers(0, 255)), max_size=20), chunk=st.integers(1, 3000))
def test_ps_demuxer_fuzz_never_raises_stays_bounded_and_recovers(garbage: bytes, cut: int, flips: list,
                                                                   chunk: int) -> None:
    stream = bytearray(_clip_ps()[:cut] + garbage + _clip_ps()[cut:cut + 30000])
    for pos, val in flips:  # lying lengths, broken markers, bogus stream ids
        if pos < len(stream):
            stream[pos] = val
    d = PsDemuxer(max_au=300_000)
    for i in range(0, len(stream), chunk):
        for f in d.feed(bytes(stream[i:i + chunk])):
            assert f.codec in ("h264", "h265", "pcma", "pcmu", "aac")
        assert d.buffered <= 300_000 + 2 * 65542 + chunk
    _valid_tail_still_yields(d, told=False)


def test_ps_demuxer_absurd_sizes_random_bytes_and_truncation() -> None:
    rng = random.Random(28181)
    d = PsDemuxer(max_au=1 << 20)
    # an access unit that never ends: 30 MB of PES without a new PTS is dropped, not buffered
    pes = b"\x00\x00\x01\xe0\xff\xff\x80\x00\x00" + bytes(65532)
    d.feed(mux_ps(b"\x00\x00\x00\x01\x65" + bytes(10), codec="h264", pts=0, keyframe=True))
    for _ in range(460):
        assert d.feed(pes) == []
        assert d.buffered < (1 << 20) + 70_000
    assert d.stats["oversize_aus"] == 1
    assert d.flush() == []
    # megabytes of random bytes and lying 16-bit lengths
    for _ in range(200):
        d.feed(rng.randbytes(rng.randint(1, 20000)))
        d.feed(b"\x00\x00\x01\xba" + rng.randbytes(10) + b"\x00\x00\x01\xe0\xff\xff\x80\x80\xff")
        assert d.buffered < (1 << 20) + 70_000
    # truncated after every prefix length of a real pack: no exception, and the next stream decodes
    one = _clip_ps()[:3000]
    for n in range(0, len(one), 7):
        d2 = PsDemuxer()
        d2.feed(one[:n])
        d2.flush()
    _valid_tail_still_yields(d, told=True)


# -- the test sender and the simulator's live video ----------------------------------------------------------
class _Receiver:
    """A minimal platform-side receiver (the media node does the real job): RTP -> reorder -> PS -> frames."""

    def __init__(self) -> None:
        self.reorder = Reorder(window=64)
        self.demux = PsDemuxer()
        self.frames: list[EsFrame] = []
        self.ssrcs: set[int] = set()
        self.packets = 0
        self._last_seq: int | None = None
        self._tcp = Rfc4571Decoder()
        self.server: asyncio.AbstractServer | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.writers: list[asyncio.StreamWriter] = []

    def datagram(self, data: bytes) -> None:
        try:
            pkt = parse_rtp(data)
        except RtpError:
            return
        self.packets += 1
        self.ssrcs.add(pkt.ssrc)
        for p in self.reorder.push(pkt):
            if self._last_seq is not None and p.seq != (self._last_seq + 1) % 65536:
                self.demux.discontinuity()  # a gap: drop the damaged frame, resync at the next pack
            self._last_seq = p.seq
            self.frames += self.demux.feed(p.payload)
            if p.marker:
                self.frames += self.demux.flush()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(65536):
            for pkt in self._tcp.feed(data):
                self.datagram(pkt)

    async def listen_udp(self) -> int:
        loop = asyncio.get_running_loop()
        recv = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                recv.datagram(data)

        self.udp, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        return self.udp.get_extra_info("sockname")[1]

    async def listen_tcp(self) -> int:
        self.server = await asyncio.start_server(self._read, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def connect_tcp(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        asyncio.get_running_loop().create_task(self._read(reader, writer))

    def close(self) -> None:
        if self.udp:
            self.udp.close()
        if self.server:
            self.server.close()
        for w in self.writers:
            w.close()

    def video(self, codec: str) -> list[EsFrame]:
        return [f for f in self.frames if f.codec == codec]


async def _until(cond, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return bool(cond())


def test_sender_through_2pct_loss_and_reorder_playback_continues_in_order() -> None:
    src = testsrc.clip("h264", 640, 360, seconds=1)

    async def scenario() -> None:
        recv = _Receiver()
        port = await recv.listen_udp()
        sender = RtpPsSender(src, ssrc=100000001, fps=100, transport="UDP", loss=0.02, reorder=0.02, seed=7)
        await sender.start_udp("127.0.0.1", port)
        try:
            assert await _until(lambda: sender.frames_sent >= 100)  # the clip loops with continuous PTS
        finally:
            await sender.stop()
        await asyncio.sleep(0.1)
        recv.frames += recv.demux.flush()
        recv.close()
        assert sender.packets_dropped > 0 and sender.packets_reordered > 0
        assert recv.reorder.stats["reordered"] > 0 and recv.reorder.stats["lost"] > 0
        video = recv.video("h264")
        pts = [f.pts for f in video]
        assert pts == sorted(pts) and len(set(pts)) == len(pts)  # in order, none twice, across the loop
        assert len(video) >= 0.75 * sender.frames_sent
        assert pts[-1] >= 3600 * 90  # PTS continue past the end of the 25-frame clip
        pictures = _decode(video, "h264")
        assert len(pictures) >= 0.75 * sender.frames_sent
        assert all((p.width, p.height) == (640, 360) for p in pictures)

    asyncio.run(scenario())


def _sdp(port: int, proto: str = "RTP/AVP", setup: str | None = None, ssrc: str = "0350400001") -> bytes:
    lines = ["v=0", "o=35040000002000000001 0 0 IN IP4 127.0.0.1", "s=Play", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=video {port} {proto} 96", "a=recvonly", "a=rtpmap:96 PS/90000"]
    if setup:
        lines += [f"a=setup:{setup}", "a=connection:new"]
    lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


def _answer(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in body.decode().splitlines():
        k, _, v = line.partition("=")
        if k in ("m", "y", "c") or v.startswith("setup:"):
            out["setup" if v.startswith("setup:") else k] = v.removeprefix("setup:")
    return out


def _gb_store(tmp_path):
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'gb.db'}"
    upgrade(url)
    return Store(url)


def test_simulator_answers_invite_and_streams_over_udp_tcp_passive_and_tcp_active_until_bye(tmp_path) -> None:
    from anfang.gb28181.server import GbConfig, GbServer
    from anfang.gb28181.simulator import Simulator

    store = _gb_store(tmp_path)

    async def scenario() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=5, tick=0.1,
                                   query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=2, channels=3, heartbeat=5, h265_last_channel=True,
                        media_ports=(0, 0))
        try:
            await sim.start()
            await sim.prepare_media(("h264", "h265"))
            dev, dumb = sim.devices
            assert [c["codec"] for c in dev.channels] == ["h264", "h264", "h265"]
            cases = [  # (offer proto, offer setup, channel, codec, serial)
                ("RTP/AVP", None, 0, "h264", "0350400001"),
                ("TCP/RTP/AVP", "passive", 1, "h264", "0350400002"),  # we listen, the device connects
                ("TCP/RTP/AVP", "active", 2, "h265", "0350400003"),  # the device listens, we connect
            ]
            for proto, setup, ch, codec, ssrc in cases:
                recv = _Receiver()
                port = await (recv.listen_udp() if proto == "RTP/AVP" else
                              recv.listen_tcp() if setup == "passive" else asyncio.sleep(0, 9))
                channel_id = dev.channels[ch]["channel_id"]
                resp, dialog = await server.invite(dev.device_id, channel_id, _sdp(port, proto, setup, ssrc))
                assert resp.status == 200 and dialog is not None
                ans = _answer(resp.body)
                assert ans["y"] == ssrc and ans["m"].split()[2] == proto
                if setup:
                    assert ans["setup"] == {"passive": "active", "active": "passive"}[setup]
                if setup == "active":
                    await recv.connect_tcp("127.0.0.1", int(ans["m"].split()[1]))
                assert await _until(lambda r=recv, c=codec: len(r.video(c)) >= 12), (proto, setup, recv.packets)
                assert dev.streams == 1
                assert recv.ssrcs == {int(ssrc)}
                video = recv.video(codec)
                assert video[0].keyframe  # a stream starts with an IDR
                pictures = _decode(video, codec)
                assert len(pictures) >= 10 and all((p.width, p.height) == (640, 360) for p in pictures)
                assert (pictures[0].to_ndarray() != pictures[-1].to_ndarray()).mean() > 0.01
                assert await server.bye(dialog) == 200
                assert await _until(lambda: dev.streams == 0)
                await asyncio.sleep(0.2)
                seen = recv.packets
                await asyncio.sleep(0.3)
                assert recv.packets == seen  # BYE stopped the media
                recv.close()
            assert dev.invites == 3
            # a device that answers but never sends, and one that never answers (for the timeout paths)
            dumb.send_media = False
            recv = _Receiver()
            port = await recv.listen_udp()
            resp, dialog = await server.invite(dumb.device_id, dumb.channels[0]["channel_id"], _sdp(port))
            assert resp.status == 200 and await _until(lambda: dumb.streams == 1)
            await asyncio.sleep(0.5)
            assert recv.packets == 0
            assert await server.bye(dialog) == 200
            recv.close()
            dumb.answer_invite = False
            with pytest.raises(TimeoutError):
                await server.invite(dumb.device_id, dumb.channels[0]["channel_id"], _sdp(port), timeout=1.0)
            # an offer the device cannot serve is refused with 488, not a crash
            resp, _ = await server.invite(dev.device_id, dev.channels[0]["channel_id"], b"v=0\r\ns=Play\r\n")
            assert resp.status == 488
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())
    store.dispose()


def test_ps_without_psm_joined_mid_gop_guesses_the_codec_from_nal_headers() -> None:
    for codec in ("h264", "h265"):
        frames = testsrc.clip(codec, 320, 180, seconds=1)
        # no keyframe flag -> no PSM; start mid-GOP like a receiver that joined late
        stream = b"".join(mux_ps(f.data, codec=codec, pts=f.pts, keyframe=False) for f in frames[3:])
        got = _demux_all(stream)
        assert [f.codec for f in got] == [codec] * (len(frames) - 3)
        assert [f.data for f in got] == [f.data for f in frames[3:]]
        assert [nal.guess_codec(f.data) for f in frames] == [codec] * len(frames)


def test_playback_and_download_offers_carry_the_range_the_channel_and_a_playback_ssrc() -> None:
    """GB/T 28181 9.8 / 9.9: s=Playback (Download), u=<channel>:0, t=<start> <end>, y= starting with 1, and the
    download's a=downloadspeed; a live offer keeps s=Play, t=0 0 and a y= starting with 0."""
    from anfang.media import sdp

    realm = "3504000000"
    live_ssrc, pb_ssrc = sdp.ssrc_for(realm, 7), sdp.ssrc_for(realm, 7, playback=True)
    assert live_ssrc == "0400000007" and pb_ssrc == "1400000007" and len(pb_ssrc) == 10
    channel = "35040000001320000001"
    lines = sdp.build_offer(server_id="35040000002000000001", ip="127.0.0.1", port=30000, transport="UDP",
                            ssrc=pb_ssrc, subject="Playback", channel_id=channel, start=1700000000,
                            end=1700003600).decode().splitlines()
    assert {"s=Playback", f"u={channel}:0", "t=1700000000 1700003600", "y=1400000007"} <= set(lines)
    assert not any(x.startswith("a=downloadspeed") for x in lines)
    lines = sdp.build_offer(server_id="35040000002000000001", ip="127.0.0.1", port=30000, transport="TCP-passive",
                            ssrc=pb_ssrc, subject="Download", channel_id=channel, start=1700000000,
                            end=1700003600, speed=4).decode().splitlines()
    assert {"s=Download", f"u={channel}:0", "a=downloadspeed:4", "a=setup:passive"} <= set(lines)
    lines = sdp.build_offer(server_id="35040000002000000001", ip="127.0.0.1", port=30000, transport="UDP",
                            ssrc=live_ssrc).decode().splitlines()
    assert {"s=Play", "t=0 0", "y=0400000007"} <= set(lines) and not any(x.startswith("u=") for x in lines)
    assert sdp.parse("\r\n".join(lines)).subject == "Play"


def test_ring_buffer_keeps_whole_gops_back_to_its_seconds_and_stays_bounded(monkeypatch) -> None:
    from anfang.media import stream as stream_mod

    clock = [1000.0]
    monkeypatch.setattr(stream_mod.time, "time", lambda: clock[0])
    r = stream_mod.Rendition("h264", ring_seconds=3.0)
    r._keep(b"p" * 10, False)  # before the first keyframe: nothing to start from
    assert r.ring_start() is None
    for second in range(10):  # one GOP a second: a keyframe and 24 frames
        for i in range(25):
            clock[0] = 1000.0 + second + i / 25
            r._keep(bytes(100), i == 0)
    assert r.ring_start() == 1006.0  # the GOP holding now - 3 s (1006.96) starts at 1006: 3.96 s kept
    assert r.ring_bytes == 4 * 25 * 100 and all(len(gop) == 25 for _, gop in r.ring)
    monkeypatch.setattr(stream_mod, "RING_BYTES", 6000)  # a camera at a high bit rate: the byte bound wins
    clock[0] += 0.04
    r._keep(bytes(100), True)
    assert r.ring_bytes <= 6000 and r.ring[0][0] == 1008.0
