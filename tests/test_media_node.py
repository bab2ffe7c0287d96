"""The media node on its own (issue 15): loss and reordering, bad input and floods, and the three GB/T 28181
transports (UDP, TCP passive, TCP active) from INVITE to BYE, with the simulator as the camera."""

from __future__ import annotations

import asyncio
import io
import random
import re
import socket
import time

import av
import pytest

from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.media.control import LiveController, LocalNode, NodeDirectory, VideoError
from anfang.media.node import MediaNode, NodeConfig
from anfang.media.rtp import build_rtp
from anfang.media.stream import LiveStream, Viewer
from anfang.media.testsrc import RtpPsSender, clip

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _collect(viewer: Viewer, seconds: float) -> tuple[list[bytes], float]:
    """Fragments a viewer received within ``seconds``, and the longest gap between two of them."""
    out: list[bytes] = []
    last = time.monotonic()
    gap = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            item = await asyncio.wait_for(viewer.queue.get(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if isinstance(item, bytes):
            now = time.monotonic()
            if out:
                gap = max(gap, now - last)
            last = now
            out.append(item)
    return out, gap


def _decodable_frames(segments: list[bytes]) -> int:
    """Frames FFmpeg decodes from the fMP4 a viewer received (init segment + fragments)."""
    with av.open(io.BytesIO(b"".join(segments)), format="mp4") as c:
        return sum(1 for _ in c.decode(video=0))


def test_playback_survives_two_percent_loss_and_reordering(store) -> None:
    frames = clip("h264", 320, 180, 25, 300_000, 25, 2)

    async def go() -> tuple[list[bytes], float, dict]:
        stream = LiveStream("k", "c", ssrc=77, transport="UDP")
        port = await stream.listen("127.0.0.1")
        viewer = Viewer()
        stream.add_viewer(viewer)
        sender = RtpPsSender(frames, ssrc=77, fps=25, loss=0.02, reorder=0.02, seed=7)
        await sender.start_udp("127.0.0.1", port)
        try:
            got, gap = await _collect(viewer, 4.0)
        finally:
            await sender.stop()
            await stream.close()
        return got, gap, stream.info()

    got, gap, info = asyncio.run(go())
    fragments = [g for g in got if g[4:8] == b"moof"]
    assert info["lost"] > 0  # the loss really happened
    assert len(fragments) > 60 and gap < 1.0, (len(fragments), gap)  # ~100 frames in 4 s, no stall
    assert _decodable_frames(got) >= 0.8 * len(fragments)  # damaged frames are dropped, the rest plays


def test_garbage_and_floods_are_dropped_and_the_stream_keeps_playing(store) -> None:
    frames = clip("h264", 320, 180, 25, 300_000, 25, 2)
    rng = random.Random(5)

    async def go() -> tuple[list[bytes], float, LiveStream]:
        stream = LiveStream("k", "c", ssrc=99, transport="UDP")
        port = await stream.listen("127.0.0.1")
        stream.allowed_hosts = {"127.0.0.1"}
        viewer = Viewer()
        stream.add_viewer(viewer)
        sender = RtpPsSender(frames, ssrc=99, fps=25)
        await sender.start_udp("127.0.0.1", port)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.2", 0))  # an address that was never INVITEd
        inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await asyncio.sleep(0.5)
            for i in range(3000):
                stranger.sendto(build_rtp(rng.randbytes(1200), seq=i, timestamp=i, ssrc=99), ("127.0.0.1", port))
                bad = [rng.randbytes(rng.randrange(0, 40)),  # truncated
                       build_rtp(rng.randbytes(900), seq=i, timestamp=i, ssrc=1234),  # other SSRC
                       bytes([0x80 | 0x20, 96]) + rng.randbytes(10) + b"\xff" * 4,  # padding longer than packet
                       bytes([0x8F, 96]) + rng.randbytes(20)]  # 15 CSRCs announced, none there
                inside.sendto(bad[i % 4], ("127.0.0.1", port))
                if i % 100 == 0:
                    await asyncio.sleep(0.01)
            got, gap = await _collect(viewer, 2.5)
        finally:
            stranger.close()
            inside.close()
            await sender.stop()
            await stream.close()
        return got, gap, stream

    got, gap, stream = asyncio.run(go())
    assert stream.dropped >= 3000  # every foreign or broken packet counted and dropped
    assert stream.demux.buffered < 5 << 20 and len(stream.reorder._held) <= stream.reorder.window  # bounded
    fragments = [g for g in got if g[4:8] == b"moof"]
    assert len(fragments) > 40 and gap < 1.0, (len(fragments), gap)


@pytest.mark.parametrize("transport", ["UDP", "TCP-passive", "TCP-active"])
def test_invite_streams_over_each_transport_and_bye_ends_it(store, transport: str) -> None:
    async def go() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=2, tick=0.1), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=1, heartbeat=2, width=320, height=180,
                        bitrate=300_000, first_serial=71)
        node = MediaNode(NodeConfig(media_timeout=5), b"secret")
        directory = NodeDirectory()
        directory.add(LocalNode(node))
        ctl = LiveController(server, directory, transport=transport, linger=0.3)
        await node.start()
        await ctl.start()
        try:
            await sim.prepare_media(("h264",))
            await sim.start()
            dev = sim.devices[0]
            for _ in range(100):
                if server.devices.get(dev.device_id) and server.devices[dev.device_id].status == "online":
                    break
                await asyncio.sleep(0.05)
            session = await ctl.open(dev.channels[0]["channel_id"], dev.device_id)
            stream = node.streams[session.key]
            # GB/T 28181 SSRC (y=): ten digits, 0 for live, digits 4-8 of the SIP domain id, a 4-digit serial;
            # the device was INVITEd with it and the node takes media with that SSRC only
            offer = next(iter(dev.calls.values())).offer
            realm = server.config.realm
            assert re.fullmatch(rf"0{realm[3:8]}\d{{4}}", session.ssrc) and offer["ssrc"] == session.ssrc
            assert stream.ssrc == int(session.ssrc)
            viewer = Viewer()
            stream.add_viewer(viewer)
            got, gap = await _collect(viewer, 2.0)
            assert stream.transport == transport and stream.state == "playing"
            assert len([g for g in got if g[4:8] == b"moof"]) > 20, transport
            stream.remove_viewer(viewer)
            for _ in range(60):
                if sim.streams == 0 and not ctl.sessions:
                    break
                await asyncio.sleep(0.05)
            assert sim.streams == 0 and not ctl.sessions and session.key not in node.streams  # BYE after linger
        finally:
            await ctl.stop()
            await node.stop()
            await sim.stop()
            await server.stop()

    asyncio.run(go())


def test_device_that_refuses_or_never_answers(store) -> None:
    async def go() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=2, tick=0.1), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=2, channels=1, heartbeat=2, first_serial=81)
        node = MediaNode(NodeConfig(media_timeout=5), b"secret")
        directory = NodeDirectory()
        directory.add(LocalNode(node))
        ctl = LiveController(server, directory, invite_timeout=1.5)
        try:
            await sim.start()
            quiet, refusing = sim.devices
            quiet.running = False  # registered, then silent: the INVITE is never answered
            refusing.answer_invite = False
            await asyncio.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(VideoError) as exc:
                await ctl.open(quiet.channels[0]["channel_id"], quiet.device_id)
            assert exc.value.status == 504 and time.monotonic() - started < 3
            with pytest.raises(VideoError) as exc:
                await ctl.open(refusing.channels[0]["channel_id"], refusing.device_id)
            assert exc.value.status in (502, 504)
            assert not node.streams  # no receiver left open behind a failed INVITE
        finally:
            await node.stop()
            await sim.stop()
            await server.stop()

    asyncio.run(go())


@pytest.mark.parametrize("keep", [True, False])
def test_g711_audio_kept_as_aac_or_dropped_by_the_setting(store, keep: bool) -> None:
    frames = clip("h264", 320, 180, 25, 300_000, 25, 2)

    async def go() -> list[bytes]:
        stream = LiveStream("k", "c", ssrc=55, transport="UDP", keep_audio=keep)
        port = await stream.listen("127.0.0.1")
        viewer = Viewer()
        stream.add_viewer(viewer)
        sender = RtpPsSender(frames, ssrc=55, fps=25, audio=True)
        await sender.start_udp("127.0.0.1", port)
        try:
            got, _gap = await _collect(viewer, 2.5)
        finally:
            await sender.stop()
            await stream.close()
        return got

    got = asyncio.run(go())
    init = next(g for g in got if g[4:8] == b"ftyp")
    assert (b"mp4a" in init) is keep
    with av.open(io.BytesIO(b"".join(got)), format="mp4") as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == (1 if keep else 0)
        if keep:
            samples = sum(f.samples for f in c.decode(audio=0))
            assert samples > 16_000  # more than a second of sound at 16 kHz
