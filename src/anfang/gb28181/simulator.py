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
from dataclasses import dataclass, field
from typing import Any

import structlog

from anfang.gb28181.ids import make_gb_id
from anfang.gb28181.manscdp import build, catalog_item_xml, parse_manscdp
from anfang.gb28181.manscdp.xml import CONTENT_TYPE, format_time
from anfang.gb28181.sip.auth import authorization_header
from anfang.gb28181.sip.message import SipMessage, parse_auth
from anfang.gb28181.sip.transport import Peer, SipEndpoint, new_tag
from anfang.media.testsrc import RtpPsSender, clip

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
    offer: dict[str, Any] = {"session": "", "host": "", "port": 0, "proto": "", "setup": "", "ssrc": ""}
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
                 media_ports: tuple[int, int] = (30000, 30999)) -> None:
        self.server = server
        self.media = {"width": width, "height": height, "fps": fps, "bitrate": bitrate, "gop": gop or fps,
                      "seconds": clip_seconds}
        self.loss = loss
        self.audio = audio  # G.711 A-law beside the video, as cameras with a microphone send it
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
        body = build("Notify", "Alarm", next(self._sn), source, [
            ("AlarmPriority", priority), ("AlarmMethod", method), ("AlarmTime", format_time()),
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
        if msg.method != "MESSAGE":
            self.endpoint.reply(msg, msg.response(405), peer)
            return
        self.endpoint.reply(msg, msg.response(200), peer)
        try:
            doc = parse_manscdp(msg.body, msg.get("content-type"))
        except ValueError:
            return
        if doc.root == "Query" and dev.answer_queries:
            self._spawn(self._answer(dev, doc.cmd_type, doc.sn))

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
            if offer["session"] and offer["session"].lower() != "play":
                raise SdpError(f"session {offer['session']} not supported by the simulator")
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
        frames = await asyncio.to_thread(clip, codec, **self.media)
        sender = RtpPsSender(frames, ssrc=int(ssrc), fps=self.media["fps"], transport="TCP" if offer["tcp"] else "UDP",
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
        answer = (f"v=0\r\no={channel_id} 0 0 IN IP4 {host}\r\ns=Play\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
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
                ("DeviceTime", format_time())]))
        elif cmd == "RecordInfo":
            bodies.append(build("Response", "RecordInfo", sn, dev.device_id, [
                ("Name", dev.name), ("SumNum", 0), ("RecordList", ({"Num": 0}, []))]))
        for body in bodies:
            with contextlib.suppress(TimeoutError, OSError):
                await self.message(dev, body, timeout=5)
