"""Simulated GB/T 28181 devices speaking real SIP (UDP or TCP, digest, keepalives, catalog with Chinese names,
alarms, live video): for the demo, the tests and the benchmarks. UDP devices of one simulator share one socket
(the server tells them apart by device id, as it would behind a NAT); TCP devices each hold their own connection.

An INVITE (s=Play) is answered with the device's SDP; after the ACK the channel streams a moving test pattern
(H.264, or H.265 per channel) as MPEG-PS over RTP: UDP, or TCP (RFC 4571) where the device connects when the
offer says `a=setup:passive` and listens on the port of its answer when the offer says `a=setup:active`.
BYE stops it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import socket
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from anfang.gb28181.ids import make_gb_id
from anfang.gb28181.manscdp import build, catalog_item_xml, parse_manscdp
from anfang.gb28181.manscdp.xml import CHINA_TZ, CONTENT_TYPE, format_time, parse_time
from anfang.gb28181.ptz import PtzError, parse_ptz
from anfang.gb28181.sip.auth import authorization_header
from anfang.gb28181.sip.message import SipMessage, parse_auth
from anfang.gb28181.sip.transport import Peer, SipEndpoint, new_tag
from anfang.media.testsrc import PlaybackSender, RtpPsSender, clip

log = structlog.get_logger(__name__)

PLACES = ["小区南门入口", "小区北门出口", "地下车库入口", "3号楼单元门", "周界东侧围墙", "瑄园路口", "儿童游乐场",
          "垃圾分类亭", "电动车充电棚", "物业服务中心"]
COMMUNITIES = ["三元区列东街道东霞社区", "梅列区徐碧街道碧湖社区", "永安市燕西街道", "沙县区凤岗街道西门社区"]


@dataclass(eq=False)
class SimDevice:
    device_id: str
    password: str
    channels: list[dict[str, Any]]
    transport: str = "UDP"
    name: str = ""
    running: bool = False
    registered: bool = False
    answer_subscribe: bool = True
    answer_queries: bool = True
    silent: set[str] = field(default_factory=set)  # query CmdTypes this device's firmware never answers
    clock_offset: float = 0.0  # seconds the device's clock is off (set from the Date of each 200 to REGISTER)
    peer: Peer | None = None
    call_id: str = ""
    from_tag: str = ""
    cseq: int = 0
    keepalive_sn: int = 0
    registrations: int = 0
    keepalives_sent: int = 0
    alarms_sent: int = 0
    invites: int = 0
    scheduled: bool = False
    received: list[str] = field(default_factory=list)
    answer_invite: bool = True
    send_media: bool = True
    calls: dict[str, MediaCall] = field(default_factory=dict)  # Call-ID -> live stream dialog
    # PTZ position per channel: {"pan", "tilt", "zoom", "presets": {n: (pan, tilt, zoom)}} (read by the picture)
    ptz: dict[str, dict[str, Any]] = field(default_factory=dict)
    ptz_motion: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # v_pan, v_tilt, v_zoom, t

    @property
    def streams(self) -> int:
        """Streams set up (INVITE answered and ACKed) and not ended by BYE or the receiver going away."""
        return sum(1 for c in self.calls.values() if c.acked and not c.sender.finished.is_set())


@dataclass(eq=False)
class MediaCall:
    channel_id: str
    codec: str
    offer: dict[str, Any]
    answer: bytes
    sender: RtpPsSender
    sock: socket.socket | None = None  # UDP: bound to the port in the answer, sent from after the ACK
    acked: bool = False


class SdpError(ValueError):
    pass


def parse_offer(body: bytes) -> dict[str, Any]:
    """The parts of a GB/T 28181 INVITE offer the device needs (c=, m=video, a=setup, y=, s=)."""
    try:
        text = body.decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001
        raise SdpError("undecodable SDP") from exc
    offer: dict[str, Any] = {"session": "", "host": "", "port": 0, "proto": "", "setup": "", "ssrc": "",
                             "uri": "", "range": None, "speed": 1}
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "s":
            offer["session"] = value.strip()
        elif key == "c":
            parts = value.split()
            if len(parts) == 3:
                offer["host"] = parts[2]
        elif key == "m" and value.startswith("video") and not offer["proto"]:
            parts = value.split()
            if len(parts) < 3 or not parts[1].isdigit():
                raise SdpError("bad m=video line")
            offer["port"], offer["proto"] = int(parts[1]), parts[2].upper()
        elif key == "a" and value.startswith("setup:"):
            offer["setup"] = value[6:].strip().lower()
        elif key == "y":
            offer["ssrc"] = value.strip()
        elif key == "u":
            offer["uri"] = value.strip()
        elif key == "t":
            parts = value.split()
            if len(parts) == 2 and all(p.isascii() and p.isdigit() for p in parts):
                offer["range"] = (int(parts[0]), int(parts[1]))
        elif key == "a" and value.startswith("downloadspeed:"):
            speed = value.split(":", 1)[1].strip()
            offer["speed"] = int(speed) if speed.isascii() and speed.isdigit() and 0 < int(speed) <= 16 else 1
    if not offer["proto"] or not offer["host"] or not 0 < offer["port"] < 65536:
        raise SdpError("offer without a usable c= / m=video")
    if offer["proto"] not in ("RTP/AVP", "TCP/RTP/AVP", "RTP/AVP/TCP"):
        raise SdpError(f"unsupported media protocol {offer['proto']}")
    offer["tcp"] = "TCP" in offer["proto"]
    if offer["tcp"] and offer["setup"] not in ("active", "passive"):
        offer["setup"] = "passive"  # GB/T 28181: TCP without a=setup means the platform listens
    if offer["ssrc"] and not (offer["ssrc"].isdigit() and len(offer["ssrc"]) <= 10):
        raise SdpError("bad y= SSRC")
    return offer


class Simulator:
    def __init__(self, server: tuple[str, int], *, count: int = 3, channels: int = 4, transport: str = "UDP",
                 password: str = "anfang28181", server_id: str = "35040000002000000001",
                 heartbeat: float = 60.0, region: str = "350402", first_serial: int = 1, catalog_page: int = 2,
                 type_code: str = "118", expires: int = 3600, local_host: str = "127.0.0.1",
                 width: int = 640, height: int = 360, fps: int = 25, bitrate: int = 1_000_000, gop: int | None = None,
                 clip_seconds: float = 2.0, loss: float = 0.0, reorder: float = 0.0, h265_last_channel: bool = False,
                 answer_invite: bool = True, send_media: bool = True, audio: bool = False,
                 live_timecode: bool = False,
                 media_ports: tuple[int, int] = (30000, 30999), record_page: int = 8,
                 retention_days: float = 35.0) -> None:
        self.server = server
        self.record_page = record_page  # RecordInfo items per MESSAGE
        self.retention_days = retention_days  # default per channel (channel dict key "retention_days")
        self.media = {"width": width, "height": height, "fps": fps, "bitrate": bitrate, "gop": gop or fps,
                      "seconds": clip_seconds}
        self.loss = loss
        self.audio = audio  # G.711 A-law beside the video, as cameras with a microphone send it
        self.live_timecode = live_timecode  # live picture made on the fly (time burnt in, PTZ moves it)
        self.reorder = reorder
        self.media_ports = media_ports
        self._next_media_port = media_ports[0]
        self.server_id = server_id
        self.realm = server_id[:10]
        self.heartbeat = heartbeat
        self.catalog_page = catalog_page
        self.expires = expires
        self.local_host = local_host
        self.endpoint = SipEndpoint(self._handle, host=local_host, port=0, udp=True, tcp=False,
                                    user_agent="anfang-simulator")
        self.devices: list[SimDevice] = []
        self.by_id: dict[str, SimDevice] = {}
        for i in range(count):
            serial = first_serial + i
            dev_id = make_gb_id(region + "00", type_code, serial)
            community = COMMUNITIES[serial % len(COMMUNITIES)]
            chans = [{"channel_id": make_gb_id(region + "00", "131", serial * 100 + c, network="0"),
                      "name": f"{community}{PLACES[(serial + c) % len(PLACES)]}",
                      "civil_code": region, "address_text": community, "parent_id": dev_id,
                      "status": "online",
                      "codec": "h265" if h265_last_channel and c == channels - 1 else "h264"}
                     for c in range(channels)]
            dev = SimDevice(dev_id, password, chans, transport=transport, name=f"{community}NVR{serial:03d}",
                            answer_invite=answer_invite, send_media=send_media)
            self.devices.append(dev)
            self.by_id[dev_id] = dev
            for ch in chans:  # INVITE / ACK / BYE are addressed to a channel
                self.by_id[ch["channel_id"]] = dev
        self._due: list[tuple[float, int, SimDevice]] = []  # heap: next keepalive of each registered device
        self._seq = itertools.count()
        self._rng = random.Random(first_serial)
        self._tasks: set[asyncio.Task] = set()
        self._sn = itertools.count(1)
        self.failures = 0
        self._ptz_task: asyncio.Task | None = None

    # ---- lifecycle
    async def start(self, *, register: bool = True, keepalive: bool = True, concurrency: int = 200) -> None:
        await self.endpoint.start()
        if keepalive:
            self.start_keepalives()
        if register:
            await self.register_all(concurrency=concurrency)

    def start_keepalives(self) -> None:
        """Each registered device sends a keepalive every ``heartbeat`` seconds (spread over the interval)."""
        self._spawn(self._keepalive_loop())

    async def stop(self) -> None:
        for dev in self.devices:
            dev.running = False
        for task in list(self._tasks):
            task.cancel()
        for dev in self.devices:
            for call_id in list(dev.calls):
                await self._end_call(dev, call_id)
        await self.endpoint.stop()

    async def prepare_media(self, codecs: tuple[str, ...] = ("h264",)) -> None:
        """Encode the test-pattern clips now (in a thread) so the first INVITE answers without that delay."""
        for codec in codecs:
            await asyncio.to_thread(clip, codec, **self.media)

    @property
    def streams(self) -> int:
        return sum(d.streams for d in self.devices)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _peer(self, dev: SimDevice) -> Peer:
        if dev.transport == "TCP":
            if dev.peer is None or not dev.peer.usable:
                dev.peer = await self.endpoint.connect(*self.server)
            return dev.peer
        return Peer("UDP", self.server)

    def _contact(self) -> str:
        return f"{self.endpoint.local_host}:{self.endpoint.port}"

    # ---- registration
    async def register(self, dev: SimDevice, expires: int | None = None, password: str | None = None) -> int:
        """REGISTER with digest; returns the final status (200 when registered)."""
        peer = await self._peer(dev)
        expires = self.expires if expires is None else expires
        dev.call_id = dev.call_id or f"{new_tag()}{new_tag()}@{self.local_host}"
        dev.from_tag = dev.from_tag or new_tag()
        uri = f"sip:{self.server_id}@{self.realm}"
        auth_value: str | None = None
        for _ in range(3):
            dev.cseq += 1
            extra = [("Contact", f"<sip:{dev.device_id}@{self._contact()}>"), ("Expires", str(expires))]
            if auth_value:
                extra.append(("Authorization", auth_value))
            msg = self.endpoint.build_request("REGISTER", uri, from_uri=f"sip:{dev.device_id}@{self.realm}",
                                              to_uri=f"sip:{dev.device_id}@{self.realm}", transport=dev.transport,
                                              call_id=dev.call_id, cseq=dev.cseq, from_tag=dev.from_tag,
                                              extra=extra)
            resp = await self.endpoint.request(msg, peer, timeout=10)
            if resp.status == 401 and resp.get("www-authenticate"):
                challenge = parse_auth(resp.get("www-authenticate") or "")
                auth_value = authorization_header(challenge, username=dev.device_id,
                                                  password=password or dev.password, method="REGISTER", uri=uri)
                continue
            if resp.status == 200:
                synced = parse_time(resp.get("date"))
                if synced is not None:  # GB/T 28181 9.10: the device sets its clock from the Date of the 200
                    dev.clock_offset = (synced - datetime.now(UTC)).total_seconds()
                dev.registered = expires > 0
                dev.running = expires > 0
                dev.registrations += 1
                if dev.registered and not dev.scheduled:  # first keepalive within one interval, then periodic
                    dev.scheduled = True
                    heapq.heappush(self._due, (time.monotonic() + self.heartbeat * self._rng.random(),
                                               next(self._seq), dev))
            return resp.status or 0
        return 401

    async def register_all(self, concurrency: int = 200, devices: list[SimDevice] | None = None) -> float:
        """Register every device, ``concurrency`` at a time; returns the seconds taken."""
        devices = self.devices if devices is None else devices
        sem = asyncio.Semaphore(concurrency)
        start = time.perf_counter()

        async def one(dev: SimDevice) -> None:
            async with sem:
                for _attempt in range(3):  # like a device: try again when the answer never came
                    try:
                        if await self.register(dev) == 200:
                            return
                        break
                    except (TimeoutError, OSError):
                        dev.call_id = ""
                self.failures += 1

        await asyncio.gather(*(one(d) for d in devices))
        return time.perf_counter() - start

    # ---- keepalive
    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.heartbeat / 10))
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                due, seq, dev = heapq.heappop(self._due)
                if dev.running and dev.registered:
                    self._keepalive(dev)
                heapq.heappush(self._due, (max(due + self.heartbeat, now), seq, dev))

    def _keepalive(self, dev: SimDevice) -> None:
        """Send one keepalive without a task per device (100,000 devices in one process): the answer is handled by
        a callback; 403/404 means the server forgot us (restart), so register again."""
        if dev.transport == "TCP" and (dev.peer is None or not dev.peer.usable):
            self._spawn(self._reconnect_register(dev))
            return
        dev.keepalive_sn += 1
        body = build("Notify", "Keepalive", dev.keepalive_sn, dev.device_id, [("Status", "OK")])
        peer = dev.peer if dev.transport == "TCP" else Peer("UDP", self.server)
        msg = self._message_request(dev, body, "MESSAGE")
        fut = self.endpoint.request(msg, peer, timeout=5)  # type: ignore[arg-type]

        def done(f: asyncio.Future[SipMessage]) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            dev.keepalives_sent += 1
            if f.result().status in (403, 404):
                dev.registered = False
                self._spawn(self._reconnect_register(dev))

        fut.add_done_callback(done)

    async def _reconnect_register(self, dev: SimDevice) -> None:
        with contextlib.suppress(TimeoutError, OSError):
            await self.register(dev)

    def _message_request(self, dev: SimDevice, body: bytes, method: str) -> SipMessage:
        return self.endpoint.build_request(method, f"sip:{self.server_id}@{self.server[0]}:{self.server[1]}",
                                           from_uri=f"sip:{dev.device_id}@{self.realm}",
                                           to_uri=f"sip:{self.server_id}@{self.realm}", transport=dev.transport,
                                           body=body, content_type=CONTENT_TYPE)

    async def message(self, dev: SimDevice, body: bytes, timeout: float = 5.0,
                      method: str = "MESSAGE") -> SipMessage:
        peer = await self._peer(dev)
        return await self.endpoint.request(self._message_request(dev, body, method), peer, timeout=timeout)

    def power_off(self, dev: SimDevice) -> None:
        """The device stops sending anything (cable pulled): the server should mark it offline."""
        dev.running = False
        for call_id in list(dev.calls):
            self._spawn(self._end_call(dev, call_id))

    async def power_on(self, dev: SimDevice) -> int:
        """A restart: a fresh registration (new Call-ID), then keepalives again."""
        dev.call_id, dev.from_tag, dev.cseq = "", "", 0
        return await self.register(dev)

    async def alarm(self, dev: SimDevice, *, channel: int = 0, priority: int = 1, method: int = 5,
                    alarm_type: int = 2, description: str = "周界入侵报警") -> int:
        source = dev.channels[channel]["channel_id"] if dev.channels else dev.device_id
        device_time = datetime.now(UTC) + timedelta(seconds=dev.clock_offset)
        body = build("Notify", "Alarm", next(self._sn), source, [
            ("AlarmPriority", priority), ("AlarmMethod", method), ("AlarmTime", format_time(device_time)),
            ("AlarmDescription", description), ("Longitude", "117.6358"), ("Latitude", "26.2634"),
            ("Info", [("AlarmType", alarm_type)])])
        dev.alarms_sent += 1
        resp = await self.message(dev, body)
        return resp.status or 0

    # ---- answering the server
    def _handle(self, msg: SipMessage, peer: Peer) -> None:
        dev = self.by_id.get(msg.to_user) or self.by_id.get(msg.uri.split(":", 1)[-1].split("@", 1)[0]
                                                                if msg.uri else "")
        if dev is None or not dev.running:
            return  # powered off: silence
        dev.received.append(msg.method or "")
        del dev.received[:-50]  # the last requests only (tests look at them)
        if msg.method == "SUBSCRIBE":
            if dev.answer_subscribe:
                resp = msg.response(200, to_tag=new_tag())
                resp.add("Expires", msg.get("expires") or "3600")
                self.endpoint.reply(msg, resp, peer)
            return
        if msg.method == "OPTIONS":
            if dev.answer_subscribe:
                self.endpoint.reply(msg, msg.response(200, to_tag=new_tag()), peer)
            return
        if msg.method == "INVITE":
            if dev.answer_invite:
                self._spawn(self._invite(dev, msg, peer))
            return
        if msg.method == "ACK":
            call = dev.calls.get(msg.call_id)
            if call is not None and not call.acked:
                call.acked = True
                self._spawn(self._start_media(dev, msg.call_id, call))
            return
        if msg.method == "BYE":
            known = msg.call_id in dev.calls
            self.endpoint.reply(msg, msg.response(200 if known else 481), peer)
            if known:
                self._spawn(self._end_call(dev, msg.call_id))
            return
        if msg.method == "INFO":
            self.endpoint.reply(msg, msg.response(200 if self._mansrtsp(dev, msg) else 481), peer)
            return
        if msg.method != "MESSAGE":
            self.endpoint.reply(msg, msg.response(405), peer)
            return
        self.endpoint.reply(msg, msg.response(200), peer)
        try:
            doc = parse_manscdp(msg.body, msg.get("content-type"))
        except ValueError:
            return
        if doc.root == "Query" and doc.cmd_type == "RecordInfo" and dev.answer_queries \
                and "RecordInfo" not in dev.silent:
            self._spawn(self._answer_records(dev, doc))
        elif doc.root == "Query" and dev.answer_queries and doc.cmd_type not in dev.silent:
            self._spawn(self._answer(dev, doc.cmd_type, doc.sn))
        elif doc.root == "Control" and doc.cmd_type == "DeviceControl" and doc.get("PTZCmd"):
            self._ptz_command(dev, doc.device_id, doc.get("PTZCmd") or "")

    # ---- live video
    def _reserve_udp(self) -> socket.socket:
        """A UDP socket on the next free port of ``media_ports`` (the port the answer announces)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lo, hi = self.media_ports
        for _ in range(hi - lo + 1):
            port = self._next_media_port
            self._next_media_port = lo if port >= hi else port + 1
            try:
                sock.bind((self.local_host, port))
                return sock
            except OSError:
                continue
        sock.bind((self.local_host, 0))
        return sock

    async def _invite(self, dev: SimDevice, msg: SipMessage, peer: Peer) -> None:
        call_id = msg.call_id
        if call_id in dev.calls:  # re-INVITE of a running dialog: same answer
            resp = msg.response(200, to_tag=msg.to_tag or new_tag(), body=dev.calls[call_id].answer,
                                content_type="APPLICATION/SDP")
            self.endpoint.reply(msg, resp, peer)
            return
        try:
            offer = parse_offer(msg.body)
            session = (offer["session"] or "Play").lower()
            if session not in ("play", "playback", "download"):
                raise SdpError(f"session {offer['session']} not supported by the simulator")
            if session != "play" and not offer["range"]:
                raise SdpError("playback without a t= range")
        except SdpError as exc:
            log.info("sim_invite_refused", device=dev.device_id, error=str(exc))
            self.endpoint.reply(msg, msg.response(488), peer)
            return
        channel = next((c for c in dev.channels if c["channel_id"] == msg.to_user), None)
        if channel is None and dev.channels:
            channel = dev.channels[0]
        codec = (channel or {}).get("codec", "h264")
        channel_id = channel["channel_id"] if channel else dev.device_id
        ssrc = offer["ssrc"] or f"0{self.realm[3:8]}{dev.invites % 10000:04d}"
        session = (offer["session"] or "Play").lower()
        transport = "TCP" if offer["tcp"] else "UDP"
        if session != "play" or self.live_timecode:  # recordings (and, when asked, live) are made on the fly
            # live: the current time (its offer says t=0 0); recordings: the t= range asked for
            start, end = offer["range"] if session != "play" and offer["range"] else (time.time(), 0)
            view = self._view(dev, channel_id)
            sender: RtpPsSender = await asyncio.to_thread(
                PlaybackSender, start=float(start), end=float(end) if session != "play" else None,
                ssrc=int(ssrc), fps=self.media["fps"], width=min(self.media["width"], 640),
                height=min(self.media["height"], 360), scale=float(offer["speed"]) if session == "download" else 1.0,
                transport=transport, view=view, on_end=lambda: self._spawn(self._media_end(dev, call_id)))
        else:
            frames = await asyncio.to_thread(clip, codec, **self.media)
            sender = RtpPsSender(frames, ssrc=int(ssrc), fps=self.media["fps"], transport=transport,
                                 loss=self.loss, reorder=self.reorder, seed=int(ssrc) ^ dev.invites,
                                 mute=not dev.send_media, audio=self.audio)
        sock = None
        setup_line = ""
        if offer["tcp"]:
            if offer["setup"] == "active":  # the platform connects: we listen on the port we answer
                port = await sender.listen_tcp_passive(self.local_host)
                setup_line = "a=setup:passive\r\na=connection:new\r\n"
            else:  # the platform listens: we connect after the ACK (RFC 4145: port 9 for the active side)
                port = 9
                setup_line = "a=setup:active\r\na=connection:new\r\n"
        else:
            sock = self._reserve_udp()
            port = sock.getsockname()[1]
        host = self.local_host
        subject = {"play": "Play", "playback": "Playback", "download": "Download"}[session]
        t_line = f"{offer['range'][0]} {offer['range'][1]}" if session != "play" else "0 0"
        answer = (f"v=0\r\no={channel_id} 0 0 IN IP4 {host}\r\ns={subject}\r\nc=IN IP4 {host}\r\nt={t_line}\r\n"
                  f"m=video {port} {offer['proto']} 96\r\na=rtpmap:96 PS/90000\r\na=sendonly\r\n{setup_line}"
                  f"y={ssrc}\r\nf=v/{2 if codec == 'h264' else 5}/////a///\r\n").encode()
        if not dev.running:  # powered off while we prepared
            await sender.stop()
            if sock is not None:
                sock.close()
            return
        dev.calls[call_id] = MediaCall(channel_id, codec, offer, answer, sender, sock)
        dev.invites += 1
        resp = msg.response(200, to_tag=new_tag(), body=answer, content_type="APPLICATION/SDP")
        resp.add("Contact", f"<sip:{msg.to_user}@{self._contact()}>")
        self.endpoint.reply(msg, resp, peer)

    async def _start_media(self, dev: SimDevice, call_id: str, call: MediaCall) -> None:
        offer = call.offer
        try:
            if not offer["tcp"]:
                sock, call.sock = call.sock, None
                await call.sender.start_udp(offer["host"], offer["port"], sock=sock)
            elif offer["setup"] == "passive":  # like a camera, retry a refused connection for a few seconds
                loop = asyncio.get_running_loop()
                give_up = loop.time() + 3.0
                while True:
                    try:
                        await call.sender.start_tcp_active(offer["host"], offer["port"], timeout=3.0)
                        break
                    except OSError:
                        if loop.time() > give_up or call.sender.finished.is_set():
                            raise
                        await asyncio.sleep(0.2)
        except (OSError, TimeoutError) as exc:
            log.info("sim_media_failed", device=dev.device_id, call_id=call_id, error=str(exc))
            await call.sender.stop()

    def _view(self, dev: SimDevice, channel_id: str) -> Any:
        """The channel's pan / tilt / zoom now (moved by PTZ commands), for the picture generator."""
        def view() -> tuple[float, float, float]:
            state = (getattr(dev, "ptz", None) or {}).get(channel_id) or {}
            return float(state.get("pan", 0.0)), float(state.get("tilt", 0.0)), float(state.get("zoom", 0.0))
        return view

    def _mansrtsp(self, dev: SimDevice, msg: SipMessage) -> bool:
        """MANSRTSP in INFO (GB/T 28181 annex B): PLAY [Scale] [Range: npt=N-], PAUSE, TEARDOWN."""
        call = dev.calls.get(msg.call_id)
        if call is None or not isinstance(call.sender, PlaybackSender):
            return False
        text = msg.body.decode("utf-8", "replace")
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        if not lines:
            return False
        method = lines[0].split()[0].upper()
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        sender = call.sender
        if method == "PAUSE":
            sender.pause()
        elif method == "PLAY":
            scale = at = None
            with contextlib.suppress(ValueError):
                scale = float(headers.get("scale", "")) if "scale" in headers else None
            rng = headers.get("range", "")
            if rng.startswith("npt="):
                with contextlib.suppress(ValueError):
                    first = rng[4:].split("-", 1)[0].strip()
                    if first and first != "now":
                        at = sender.start_t + float(first)
            sender.play(scale, at)
        elif method == "TEARDOWN":
            sender.pause()
        else:
            return False
        return True

    async def _media_end(self, dev: SimDevice, call_id: str) -> None:
        """End of the file: MESSAGE Notify MediaStatus 121 (GB/T 28181 9.7.4), the platform then sends BYE."""
        body = build("Notify", "MediaStatus", next(self._sn), dev.device_id, [("NotifyType", 121)])
        peer = await self._peer(dev)
        msg = self._message_request(dev, body, "MESSAGE")
        msg.set("Call-ID", call_id)  # in the playback's dialog: the platform knows which session ended
        with contextlib.suppress(TimeoutError, OSError):
            await self.endpoint.request(msg, peer, timeout=5)

    async def _end_call(self, dev: SimDevice, call_id: str) -> None:
        call = dev.calls.pop(call_id, None)
        if call is None:
            return
        if call.sock is not None:
            call.sock.close()
        await call.sender.stop()

    async def _answer(self, dev: SimDevice, cmd: str, sn: str) -> None:
        bodies: list[bytes] = []
        if cmd == "Catalog":
            total = len(dev.channels)
            page = max(1, self.catalog_page)
            for i in range(0, max(total, 1), page):
                part = dev.channels[i:i + page]
                bodies.append(build("Response", "Catalog", sn, dev.device_id, [
                    ("SumNum", total), ("DeviceList", ({"Num": len(part)}, [catalog_item_xml(c) for c in part]))]))
        elif cmd == "DeviceInfo":
            bodies.append(build("Response", "DeviceInfo", sn, dev.device_id, [
                ("DeviceName", dev.name), ("Result", "OK"), ("Manufacturer", "anfang-sim"), ("Model", "SIM-NVR"),
                ("Firmware", "V1.0"), ("Channel", len(dev.channels))]))
        elif cmd == "DeviceStatus":
            bodies.append(build("Response", "DeviceStatus", sn, dev.device_id, [
                ("Result", "OK"), ("Online", "ONLINE"), ("Status", "OK"), ("Encode", "ON"), ("Record", "OFF"),
                ("DeviceTime", format_time(datetime.now(UTC) + timedelta(seconds=dev.clock_offset)))]))
        for body in bodies:
            with contextlib.suppress(TimeoutError, OSError):
                await self.message(dev, body, timeout=5)

    # ---- recordings (RecordInfo): a month of daily spans with gaps, nothing older than the channel's retention
    def _channel(self, dev: SimDevice, channel_id: str) -> list[dict[str, Any]]:
        if channel_id == dev.device_id:
            return dev.channels
        return [c for c in dev.channels if c["channel_id"] == channel_id]

    @staticmethod
    def day_spans(channel_id: str, day: date) -> list[tuple[datetime, datetime]]:
        """The recordings of one local day: 00:00:00–23:59:59 with 0–3 gaps of minutes to hours, the same for the
        same channel and day on every run."""
        rng = random.Random(zlib.crc32(f"{channel_id}/{day.isoformat()}".encode()))
        midnight = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
        gaps = []
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            length = timedelta(minutes=rng.randint(2, 59)) if rng.random() < 0.6 else timedelta(
                hours=rng.randint(1, 4), minutes=rng.randint(0, 59))
            at = midnight + timedelta(seconds=rng.randint(0, 86_000))
            gaps.append((at, at + length))
        spans, cursor, last = [], midnight, midnight + timedelta(hours=23, minutes=59, seconds=59)
        for g0, g1 in sorted(gaps):
            if g0 > cursor:
                spans.append((cursor, min(g0, last)))
            cursor = max(cursor, g1)
        if cursor < last:
            spans.append((cursor, last))
        return [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in spans if e > s]

    def recordings(self, channel: dict[str, Any], start: datetime, end: datetime,
                   now: datetime | None = None) -> list[tuple[datetime, datetime]]:
        """The channel's recordings overlapping [start, end] (UTC), cut at the retention horizon and at now."""
        now = now or datetime.now(UTC)
        oldest = now - timedelta(days=float(channel.get("retention_days", self.retention_days)))
        lo, hi = max(start, oldest), min(end, now)
        out: list[tuple[datetime, datetime]] = []
        day = lo.astimezone(CHINA_TZ).date()
        while datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ) <= hi and lo < hi:
            for s, e in self.day_spans(channel["channel_id"], day):
                s, e = max(s, oldest), min(e, now)
                if s < e and s <= hi and e >= lo:
                    out.append((s, e))
            day += timedelta(days=1)
        return out

    async def _answer_records(self, dev: SimDevice, doc: Any) -> None:
        start, end = parse_time(doc.get("StartTime")), parse_time(doc.get("EndTime"))
        wanted = (doc.get("Type") or "all").lower()
        items: list[tuple[str, Any]] = []
        if start is not None and end is not None and wanted in ("all", "time"):
            for ch in self._channel(dev, doc.device_id):
                for s, e in self.recordings(ch, start, end):
                    items.append(("Item", [
                        ("DeviceID", ch["channel_id"]), ("Name", ch.get("name", "")),
                        ("FilePath", f"/record/{ch['channel_id']}/{format_time(s).replace(':', '')}.mp4"),
                        ("Address", ch.get("address_text") or ""), ("StartTime", format_time(s)),
                        ("EndTime", format_time(e)), ("Secrecy", 0), ("Type", "time"),
                        ("RecorderID", dev.device_id)]))
        total, page = len(items), max(1, self.record_page)
        for i in range(0, max(total, 1), page):
            part = items[i:i + page]
            body = build("Response", "RecordInfo", doc.sn, doc.device_id, [
                ("Name", dev.name), ("SumNum", total), ("RecordList", ({"Num": len(part)}, part))])
            with contextlib.suppress(TimeoutError, OSError):
                await self.message(dev, body, timeout=5)

    # ---- PTZ (DeviceControl PTZCmd): the position moves at the commanded speed (units per second) until stop
    def ptz_state(self, dev: SimDevice, channel_id: str) -> dict[str, Any]:
        """The channel's PTZ position, advanced to now."""
        state = dev.ptz.setdefault(channel_id, {"pan": 0.0, "tilt": 0.0, "zoom": 1.0, "presets": {}})
        motion = dev.ptz_motion.get(channel_id)
        if motion is not None:
            vp, vt, vz, since = motion
            now = time.monotonic()
            dt = now - since
            state["pan"] = (state["pan"] + vp * dt) % 360.0
            state["tilt"] = min(90.0, max(-90.0, state["tilt"] + vt * dt))
            state["zoom"] = min(30.0, max(1.0, state["zoom"] + vz * dt))
            dev.ptz_motion[channel_id] = (vp, vt, vz, now)
        return state

    def _ptz_command(self, dev: SimDevice, channel_id: str, cmd_hex: str) -> None:
        try:
            cmd = parse_ptz(cmd_hex)
        except PtzError as exc:
            log.info("sim_ptz_refused", device=dev.device_id, error=str(exc))
            return
        if channel_id == dev.device_id and dev.channels:
            channel_id = dev.channels[0]["channel_id"]
        state = self.ptz_state(dev, channel_id)
        if cmd.preset_op == "set":
            state["presets"][cmd.preset] = (state["pan"], state["tilt"], state["zoom"])
        elif cmd.preset_op == "delete":
            state["presets"].pop(cmd.preset, None)
        elif cmd.preset_op == "call":
            if cmd.preset in state["presets"]:
                dev.ptz_motion.pop(channel_id, None)
                state["pan"], state["tilt"], state["zoom"] = state["presets"][cmd.preset]
        elif cmd.focus or cmd.iris:
            pass  # lens commands change nothing the test pattern shows
        elif cmd.stop or not (cmd.pan or cmd.tilt or cmd.zoom):
            dev.ptz_motion.pop(channel_id, None)
        else:
            dev.ptz_motion[channel_id] = (float(cmd.pan * cmd.pan_speed), float(cmd.tilt * cmd.tilt_speed),
                                          float(cmd.zoom * cmd.zoom_speed), time.monotonic())
            if self._ptz_task is None or self._ptz_task.done():
                self._ptz_task = self._spawn(self._ptz_loop())

    async def _ptz_loop(self) -> None:
        """Keep ``dev.ptz`` current while anything moves (the picture generator reads it)."""
        while True:
            moving = [(d, c) for d in self.devices for c in list(d.ptz_motion)]
            if not moving:
                return
            for dev, channel_id in moving:
                self.ptz_state(dev, channel_id)
            await asyncio.sleep(0.04)
