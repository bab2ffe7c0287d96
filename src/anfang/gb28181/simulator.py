"""Simulated GB/T 28181 devices speaking real SIP (UDP or TCP, digest, keepalives, catalog with Chinese names,
alarms): for the demo, the tests and the benchmarks. UDP devices of one simulator share one socket (the server
tells them apart by device id, as it would behind a NAT); TCP devices each hold their own connection."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from anfang.gb28181.ids import make_gb_id
from anfang.gb28181.manscdp import build, catalog_item_xml, parse_manscdp
from anfang.gb28181.manscdp.xml import CONTENT_TYPE, format_time, parse_time
from anfang.gb28181.sip.auth import authorization_header
from anfang.gb28181.sip.message import SipMessage, parse_auth
from anfang.gb28181.sip.transport import Peer, SipEndpoint, new_tag

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


class Simulator:
    def __init__(self, server: tuple[str, int], *, count: int = 3, channels: int = 4, transport: str = "UDP",
                 password: str = "anfang28181", server_id: str = "35040000002000000001",
                 heartbeat: float = 60.0, region: str = "350402", first_serial: int = 1, catalog_page: int = 2,
                 type_code: str = "118", expires: int = 3600, local_host: str = "127.0.0.1") -> None:
        self.server = server
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
                      "status": "online"} for c in range(channels)]
            dev = SimDevice(dev_id, password, chans, transport=transport, name=f"{community}NVR{serial:03d}")
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
        await self.endpoint.stop()

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
            ssrc = "0000000001"
            sdp = (f"v=0\r\no={msg.to_user} 0 0 IN IP4 {self.local_host}\r\ns=Play\r\n"
                   f"c=IN IP4 {self.local_host}\r\nt=0 0\r\nm=video 30000 RTP/AVP 96\r\n"
                   f"a=rtpmap:96 PS/90000\r\na=sendonly\r\ny={ssrc}\r\n").encode()
            resp = msg.response(200, to_tag=new_tag(), body=sdp, content_type="APPLICATION/SDP")
            resp.add("Contact", f"<sip:{msg.to_user}@{self._contact()}>")
            self.endpoint.reply(msg, resp, peer)
            dev.invites += 1
            return
        if msg.method in ("ACK", "BYE"):
            if msg.method == "BYE":
                self.endpoint.reply(msg, msg.response(200), peer)
            return
        if msg.method != "MESSAGE":
            self.endpoint.reply(msg, msg.response(405), peer)
            return
        self.endpoint.reply(msg, msg.response(200), peer)
        try:
            doc = parse_manscdp(msg.body, msg.get("content-type"))
        except ValueError:
            return
        if doc.root == "Query" and dev.answer_queries and doc.cmd_type not in dev.silent:
            self._spawn(self._answer(dev, doc.cmd_type, doc.sn))

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
        elif cmd == "RecordInfo":
            bodies.append(build("Response", "RecordInfo", sn, dev.device_id, [
                ("Name", dev.name), ("SumNum", 0), ("RecordList", ({"Num": 0}, []))]))
        for body in bodies:
            with contextlib.suppress(TimeoutError, OSError):
                await self.message(dev, body, timeout=5)
