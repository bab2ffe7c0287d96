"""Cascade upward: this platform as a lower platform of one or more upper platforms (GB/T 28181-2016 §9.10 ff.).

For each configured upper (``sip_uppers``: ``server_id``, ``host``, ``port``, ``password``, optional ``transport``,
``expires``, ``keepalive``) we register with digest from our own SIP port, send keepalives, re-register when they
fail, answer the upper's Catalog / DeviceInfo / DeviceStatus queries with the channels chosen for sharing
(``Channel.shared``, approved devices only) under one virtual organisation (type 216) carrying their civil codes,
accept its SUBSCRIBE, forward alarms of shared channels upward, relay its DeviceControl (PTZ) for a shared channel
to the owning device (the device's SIP status goes back up), and relay its INVITE for a shared channel to the
owning device (signalling only, as a B2BUA: the device's SDP answer goes back up; media flows from the device to
the upper's media server; the upper's BYE ends the device's dialog).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from anfang.gb28181.host import SipHost
from anfang.gb28181.manscdp import build, catalog_item_xml
from anfang.gb28181.manscdp.xml import CONTENT_TYPE, Manscdp
from anfang.gb28181.sip.auth import authorization_header
from anfang.gb28181.sip.message import SipMessage, header_params, parse_auth
from anfang.gb28181.sip.transport import Peer, new_tag

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Upper:
    server_id: str
    host: str
    port: int
    password: str
    transport: str = "UDP"
    expires: int = 3600
    keepalive: float = 60.0
    realm: str = ""
    registered: bool = False
    peer: Peer | None = None
    call_id: str = ""
    from_tag: str = ""
    cseq: int = 0
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_ok: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Upper:
        up = cls(server_id=str(raw["server_id"]), host=str(raw["host"]), port=int(raw.get("port", 5060)),
                 password=str(raw["password"]), transport=str(raw.get("transport", "UDP")).upper(),
                 expires=int(raw.get("expires", 3600)), keepalive=float(raw.get("keepalive", 60)))
        up.realm = str(raw.get("realm") or up.server_id[:10])
        return up


class Cascade:
    def __init__(self, server: SipHost, uppers: list[dict[str, Any]]) -> None:
        self.server = server
        self.uppers = [Upper.from_dict(u) for u in uppers]
        self.by_id = {u.server_id: u for u in self.uppers}
        self._tasks: list[asyncio.Task] = []
        self._sn = itertools.count(1)
        self._shared: set[str] = set()
        self._dialogs: dict[str, dict[str, Any]] = {}  # upper's Call-ID -> our dialog with the device
        self.group_id = server.config.server_id[:10] + "216" + "0000001"

    # ---- lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await self.refresh_shared()
        self._tasks = [loop.create_task(self._run(up), name=f"gb28181-upper-{up.server_id}") for up in self.uppers]

    async def stop(self) -> None:
        for up in self.uppers:
            if up.registered:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.register(up, expires=0), 2)
        for task in self._tasks:
            task.cancel()

    async def _peer(self, up: Upper) -> Peer:
        if up.transport == "TCP":
            if up.peer is None or not up.peer.usable:
                up.peer = await self.server.endpoint.connect(up.host, up.port)
            return up.peer
        up.peer = up.peer or Peer("UDP", (up.host, up.port))
        return up.peer

    async def _run(self, up: Upper) -> None:
        backoff = 1.0
        while True:
            try:
                status = await self.register(up)
            except (TimeoutError, OSError) as exc:
                status = 0
                log.info("gb28181_upper_unreachable", upper=up.server_id, error=str(exc))
            if status != 200:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60)
                continue
            backoff = 1.0
            registered_at = time.monotonic()
            failures = 0
            while failures < 3 and time.monotonic() - registered_at < up.expires * 0.8:
                await asyncio.sleep(up.keepalive)
                try:
                    resp = await self._message(up, build("Notify", "Keepalive", next(self._sn),
                                                         self.server.config.server_id, [("Status", "OK")]))
                    failures = 0 if (resp.status or 0) < 300 else 3
                except (TimeoutError, OSError):
                    failures += 1
            up.registered = False

    # ---- registration
    async def register(self, up: Upper, expires: int | None = None) -> int:
        cfg = self.server.config
        expires = up.expires if expires is None else expires
        peer = await self._peer(up)
        up.call_id = up.call_id or f"{new_tag()}{new_tag()}@{self.server.endpoint.local_host}"
        up.from_tag = up.from_tag or new_tag()
        uri = f"sip:{up.server_id}@{up.realm}"
        auth_value = None
        for _ in range(3):
            up.cseq += 1
            extra = [("Contact", f"<sip:{cfg.server_id}@{self.server.endpoint.local_host}:{self.server.port}>"),
                     ("Expires", str(expires))]
            if auth_value:
                extra.append(("Authorization", auth_value))
            msg = self.server.endpoint.build_request(
                "REGISTER", uri, from_uri=f"sip:{cfg.server_id}@{cfg.realm}", to_uri=f"sip:{cfg.server_id}@{cfg.realm}",
                transport=up.transport, call_id=up.call_id, cseq=up.cseq, from_tag=up.from_tag, extra=extra)
            resp = await self.server.endpoint.request(msg, peer, timeout=10)
            if resp.status == 401 and resp.get("www-authenticate"):
                auth_value = authorization_header(parse_auth(resp.get("www-authenticate") or ""),
                                                  username=cfg.server_id, password=up.password, method="REGISTER",
                                                  uri=uri)
                continue
            up.registered = resp.status == 200 and expires > 0
            if up.registered:
                up.last_ok = time.monotonic()
            log.info("gb28181_upper_register", upper=up.server_id, status=resp.status, expires=expires)
            return resp.status or 0
        return 401

    def _message(self, up: Upper, body: bytes, timeout: float = 5.0) -> asyncio.Future[SipMessage]:
        cfg = self.server.config
        peer = up.peer or Peer("UDP", (up.host, up.port))
        msg = self.server.endpoint.build_request(
            "MESSAGE", f"sip:{up.server_id}@{up.realm}", from_uri=f"sip:{cfg.server_id}@{cfg.realm}",
            to_uri=f"sip:{up.server_id}@{up.realm}", transport=peer.transport, body=body,
            content_type=CONTENT_TYPE)
        return self.server.endpoint.request(msg, peer, timeout=timeout)

    # ---- requests from an upper
    def handle_message(self, msg: SipMessage, peer: Peer, doc: Manscdp) -> bool:
        up = self.by_id.get(msg.from_user)
        if up is None:
            return False
        ep = self.server.endpoint
        if doc.root == "Control" and doc.cmd_type == "DeviceControl":
            self.server._spawn(self._relay_control(msg, peer, doc))  # PTZ of a shared channel
            return True
        if doc.root != "Query":
            ep.reply(msg, msg.response(200), peer)  # responses / notifications from the upper: acknowledged
            return True
        if doc.cmd_type not in ("Catalog", "DeviceInfo", "DeviceStatus"):
            ep.reply(msg, msg.response(501), peer)
            return True
        ep.reply(msg, msg.response(200), peer)
        if up.peer is None or (peer.transport == "TCP" and peer.usable):
            up.peer = peer
        self.server._spawn(self._answer(up, doc))
        return True

    def handle_request(self, msg: SipMessage, peer: Peer) -> None:
        ep = self.server.endpoint
        up = self.by_id.get(msg.from_user)
        if up is None:
            ep.reply(msg, msg.response(403 if msg.method == "SUBSCRIBE" else 405), peer)
            return
        if msg.method == "SUBSCRIBE":
            event = (msg.get("event") or "").split(";", 1)[0].strip() or "Catalog"
            expires = msg.get("expires") or "3600"
            tag = new_tag()
            up.subscriptions[event] = {"call_id": msg.call_id, "expires": expires, "tag": tag,
                                       "event": msg.get("event") or event, "from": msg.get("from") or ""}
            resp = msg.response(200, to_tag=tag)
            resp.add("Expires", expires)
            ep.reply(msg, resp, peer)
            return
        if msg.method == "INVITE":
            ep.send(msg.response(100), peer)
            self.server._spawn(self._relay_invite(up, msg, peer))
            return
        if msg.method == "BYE":
            dialog = self._dialogs.pop(msg.call_id, None)
            ep.reply(msg, msg.response(200 if dialog else 481), peer)
            if dialog is not None:
                self.server._spawn(self.server.bye(dialog))
            return
        ep.reply(msg, msg.response(501), peer)

    def _owner(self, channel_id: str) -> str | None:
        from sqlalchemy import select

        from anfang.devices.models import Channel, Device

        with self.server.store.session() as s:
            return s.scalar(select(Device.device_id).join(Channel, Channel.device_pk == Device.id).where(
                Channel.channel_id == channel_id, Channel.shared.is_(True), Device.protocol == "gb28181",
                Device.review == "approved").limit(1))

    async def _relay_invite(self, up: Upper, msg: SipMessage, peer: Peer) -> None:
        ep = self.server.endpoint
        channel_id = msg.to_user
        owner = await asyncio.to_thread(self._owner, channel_id)
        if owner is None:  # only shared channels can be opened from above
            ep.reply(msg, msg.response(404), peer)
            return
        try:
            resp, dialog = await self.server.invite(owner, channel_id, msg.body, subject=msg.get("subject"))
        except LookupError:
            ep.reply(msg, msg.response(480, "Temporarily Unavailable"), peer)
            return
        except TimeoutError:
            ep.reply(msg, msg.response(408), peer)
            return
        if dialog is None:
            ep.reply(msg, msg.response(resp.status or 500), peer)
            return
        self._dialogs[msg.call_id] = dialog
        answer = msg.response(200, to_tag=new_tag(), body=resp.body, content_type="APPLICATION/SDP")
        answer.add("Contact", f"<sip:{channel_id}@{ep.local_host}:{self.server.port}>")
        ep.reply(msg, answer, peer)

    async def _relay_control(self, msg: SipMessage, peer: Peer, doc: Manscdp) -> None:
        """Relay an upper's DeviceControl (PTZCmd) for a shared channel to the owning device; the device's status
        goes back up (404 for a channel not shared, 400 for a malformed PTZCmd)."""
        from anfang.gb28181.ptz import PtzError, device_control

        ep = self.server.endpoint
        channel_id = doc.device_id
        owner = await asyncio.to_thread(self._owner, channel_id) if channel_id else None
        if owner is None:
            ep.reply(msg, msg.response(404), peer)
            return
        cmd = doc.get("PTZCmd") or ""
        try:
            status = await device_control(self.server, owner, channel_id, cmd)
        except PtzError:
            status = 400
        ep.reply(msg, msg.response(status), peer)
        log.info("gb28181_upper_control", upper=msg.from_user, channel=channel_id, status=status)

    def _shared_channels(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """The shared channels (of one device when given); a channel of a device that is not online is offline."""
        from sqlalchemy import select

        from anfang.devices.models import Channel, Device

        cond = [Channel.shared.is_(True), Device.protocol == "gb28181", Device.review == "approved"]
        if device_id is not None:
            cond.append(Device.device_id == device_id)
        with self.server.store.session() as s:
            rows = s.execute(select(Channel, Device.community_code, Device.status)
                             .join(Device, Device.id == Channel.device_pk).where(*cond)
                             .order_by(Channel.channel_id)).all()
        out = []
        for ch, community, dev_status in rows:
            out.append({"channel_id": ch.channel_id, "name": ch.name, "manufacturer": ch.manufacturer,
                        "model": ch.model, "civil_code": ch.civil_code or (community or "")[:6] or None,
                        "address_text": ch.address_text, "parent_id": self.group_id,
                        "status": ch.status if dev_status == "online" else "offline",
                        "longitude": ch.longitude, "latitude": ch.latitude})
        if device_id is None:
            self._shared = {c["channel_id"] for c in out}
        return out

    # ---- channel state up the cascade
    def device_status(self, device_id: str, status: str) -> None:
        """A device went online / offline: uppers subscribed to the catalog get its shared channels' ON / OFF
        (GB/T 28181-2016 9.6.4 catalog notification), so they do not keep showing a dead camera 在线."""
        if any(up.registered and "Catalog" in up.subscriptions for up in self.uppers):
            self.server._spawn(self._notify_status(device_id, status))

    async def _notify_status(self, device_id: str, status: str) -> None:
        channels = await asyncio.to_thread(self._shared_channels, device_id)
        if not channels:
            return
        event = "ON" if status == "online" else "OFF"
        items = []
        for ch in channels:
            tag, fields = catalog_item_xml({**ch, "status": status})
            items.append((tag, [*fields, ("Event", event)]))
        cfg = self.server.config
        for up in self.uppers:
            sub = up.subscriptions.get("Catalog")
            if not up.registered or sub is None:
                continue
            for i in range(0, len(items), 20):
                part = items[i:i + 20]
                body = build("Notify", "Catalog", next(self._sn), cfg.server_id,
                             [("DeviceList", ({"Num": len(part)}, part))])
                peer = up.peer or Peer("UDP", (up.host, up.port))
                msg = self.server.endpoint.build_request(
                    "NOTIFY", f"sip:{up.server_id}@{up.host}:{up.port}", from_uri=f"sip:{cfg.server_id}@{cfg.realm}",
                    to_uri=f"sip:{up.server_id}@{up.realm}", transport=peer.transport, body=body,
                    content_type=CONTENT_TYPE, call_id=sub["call_id"], from_tag=sub["tag"],
                    to_tag=header_params(sub["from"]).get("tag") or None, cseq=next(self._sn),
                    extra=[("Event", sub["event"]), ("Subscription-State", "active")])
                with contextlib.suppress(TimeoutError, OSError):
                    await self.server.endpoint.request(msg, peer, timeout=5)

    async def _answer(self, up: Upper, doc: Manscdp) -> None:
        cfg = self.server.config
        bodies: list[bytes] = []
        if doc.cmd_type == "Catalog":
            channels = await asyncio.to_thread(self._shared_channels)
            group = ("Item", [("DeviceID", self.group_id), ("Name", f"anfang {cfg.node_id or cfg.server_id}"),
                              ("ParentID", cfg.server_id)])
            items = [group] + [catalog_item_xml(c) for c in channels]
            total = len(items)
            for i in range(0, total, 20):
                part = items[i:i + 20]
                bodies.append(build("Response", "Catalog", doc.sn, cfg.server_id, [
                    ("SumNum", total), ("DeviceList", ({"Num": len(part)}, part))]))
        elif doc.cmd_type == "DeviceInfo":
            bodies.append(build("Response", "DeviceInfo", doc.sn, cfg.server_id, [
                ("DeviceName", f"anfang {cfg.node_id or ''}".strip()), ("Result", "OK"), ("Manufacturer", "anfang"),
                ("Model", "platform"), ("Firmware", "0.1"), ("Channel", len(self._shared))]))
        else:
            bodies.append(build("Response", "DeviceStatus", doc.sn, cfg.server_id, [
                ("Result", "OK"), ("Online", "ONLINE"), ("Status", "OK")]))
        for body in bodies:
            with contextlib.suppress(TimeoutError, OSError):
                await self._message(up, body)

    def forward_alarm(self, doc: Manscdp) -> None:
        """Forward an alarm of a shared channel (or of a device with shared channels) to every upper."""
        if doc.device_id not in self._shared:
            return
        fields = [(c.tag, c.text or "") if len(c) == 0 else (c.tag, [(g.tag, g.text or "") for g in c])
                  for c in doc.element if c.tag not in ("CmdType", "SN", "DeviceID")]
        body = build("Notify", "Alarm", next(self._sn), doc.device_id, fields)
        for up in self.uppers:
            if up.registered:
                self.server._spawn(self._send(up, body))

    async def _send(self, up: Upper, body: bytes) -> None:
        with contextlib.suppress(TimeoutError, OSError):
            await self._message(up, body)

    async def refresh_shared(self) -> None:
        await asyncio.to_thread(self._shared_channels)
