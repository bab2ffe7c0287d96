"""The GB/T 28181 SIP server: registrar (digest), device health, queries, subscriptions, alarms, positions.

State per device lives in memory (``DevState``): a keepalive touches a few attributes and answers, nothing else.
The database is written by one writer task off the event loop (``asyncio.to_thread``): status transitions at once
(batched per transaction when many arrive together, e.g. a registration storm), ``last_seen`` every
``flush_interval`` seconds, channels / alarms / positions as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from anfang.core.events import Event, EventKind
from anfang.devices.service import OFFLINE, ONLINE, DeviceService
from anfang.gb28181.ids import is_gb_id
from anfang.gb28181.manscdp import ManscdpError, alarm_fields, build, catalog_items, parse_manscdp
from anfang.gb28181.manscdp.xml import CHINA_TZ, CONTENT_TYPE, Manscdp
from anfang.gb28181.sip import auth
from anfang.gb28181.sip.message import SipMessage, parse_auth
from anfang.gb28181.sip.transport import Peer, SipEndpoint, new_tag
from anfang.store.engine import Store

log = structlog.get_logger(__name__)
PROTOCOL = "gb28181"


@dataclass
class GbConfig:
    server_id: str = "35040000002000000001"
    host: str = "0.0.0.0"
    port: int = 5060
    advertised_host: str | None = None
    password: str = "anfang28181"
    allow_unknown: bool = True
    heartbeat_interval: float = 60.0
    heartbeat_count: int = 3
    register_expires: int = 3600
    lockout_failures: int = 5
    lockout_minutes: float = 10.0
    nonce_ttl: float = 60.0
    query_on_register: bool = True
    subscribe_on_register: bool = False
    offline_warning_minutes: float = 30.0
    flush_interval: float = 30.0
    tick: float | None = None  # health scan period; default min(5 s, heartbeat / 2)
    query_timeout: float = 10.0
    udp: bool = True
    tcp: bool = True
    trace_poll: float = 2.0  # how often the per-device SIP trace requests are read (gb28181/trace.py)
    node_id: str | None = None
    uppers: list[dict] = field(default_factory=list)

    @property
    def realm(self) -> str:
        return self.server_id[:10]

    @classmethod
    def from_settings(cls, settings: Any) -> GbConfig:
        return cls(server_id=settings.sip_server_id, host=settings.sip_host, port=settings.sip_port,
                   advertised_host=settings.sip_advertised_host, password=settings.sip_password,
                   allow_unknown=settings.sip_allow_unknown, heartbeat_interval=settings.sip_heartbeat_interval,
                   heartbeat_count=settings.sip_heartbeat_count, register_expires=settings.sip_register_expires,
                   lockout_failures=settings.sip_lockout_failures, lockout_minutes=settings.sip_lockout_minutes,
                   query_on_register=settings.sip_query_on_register,
                   subscribe_on_register=settings.sip_subscribe_on_register,
                   offline_warning_minutes=settings.sip_offline_warning_minutes, node_id=settings.node_id,
                   uppers=list(settings.sip_uppers))


@dataclass(slots=True, eq=False)
class DevState:
    device_id: str
    password: str | None = None
    review: str = "approved"
    status: str = "unknown"
    name: str = ""
    peer: Peer | None = None
    registered: bool = False
    expires: float = 0.0  # monotonic
    last_seen: float = 0.0  # monotonic
    last_seen_wall: datetime | None = None
    dirty: bool = False
    offline_since: float | None = None
    warned: bool = False
    known: bool = True  # row exists (or is queued) in the database
    resync: bool = False  # its clock is off: its next keepalive is answered 404 so it registers (and syncs) again
    resync_at: float = -1e9  # monotonic time of the last forced re-registration (at most one an hour)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    first: float = 0.0
    locked_until: float = 0.0
    alert_id: int | None = None  # the security alert of the current lock-out; acknowledging it lifts the lock


@dataclass
class _CatalogBuffer:
    total: int | None
    items: dict[str, dict[str, Any]]
    updated: float
    future: asyncio.Future | None = None


def gb_date(now: datetime | None = None) -> str:
    """The ``Date`` header GB/T 28181 devices set their clocks from: local time, milliseconds, no zone."""
    t = (now or datetime.now(UTC)).astimezone(CHINA_TZ)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class GbServer:
    """A Service (``start``/``stop``) for ``app.state.services``; also usable standalone in tests."""

    def __init__(self, config: GbConfig, store: Store, bus: Any | None = None) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.devices_svc = DeviceService(store, node_id=config.node_id)
        self.endpoint = SipEndpoint(self.handle, host=config.host, port=config.port, udp=config.udp,
                                    tcp=config.tcp, advertised_host=config.advertised_host,
                                    user_agent="anfang-gb28181")
        self.nonces = auth.NonceStore(ttl=config.nonce_ttl)
        self.devices: dict[str, DevState] = {}
        self._failures: dict[str, _Failures] = {}
        self._ops: list[tuple] = []
        self._ops_event = asyncio.Event()
        self._writing = False  # the writer has a batch in a thread
        self._tasks: list[asyncio.Task] = []
        self._bg: set[asyncio.Task] = set()
        self._sn = itertools.count(1)
        self._pending: dict[tuple[str, str, str], asyncio.Future] = {}
        self._catalogs: dict[tuple[str, str], _CatalogBuffer] = {}
        self.subscriptions: dict[tuple[str, str], dict[str, Any]] = {}
        self.cascade: Any = None  # anfang.gb28181.cascade.Cascade when uppers are configured
        self.message_hooks: list[Callable[[SipMessage, Peer, Manscdp], bool]] = []
        self.stats = {"registered": 0, "keepalives": 0, "challenges": 0, "rejected": 0, "alarms": 0}
        self._writer_idle = asyncio.Event()
        from anfang.devices.clock import ClockWatch
        from anfang.gb28181.trace import TraceRecorder

        self.clocks = ClockWatch(store)

        self.tracer = TraceRecorder(store, self.endpoint, poll=config.trace_poll)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.endpoint.port

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        await self.tracer.start()
        await self.endpoint.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer(), name="gb28181-writer"),
                       loop.create_task(self._health(), name="gb28181-health")]
        if self.config.uppers:
            from anfang.gb28181.cascade import Cascade

            self.cascade = Cascade(self, self.config.uppers)
            await self.cascade.start()
        log.info("gb28181_started", port=self.port, devices=len(self.devices))

    async def stop(self) -> None:
        if self.cascade is not None:
            await self.cascade.stop()
        for task in [*self._tasks, *self._bg]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.endpoint.stop()
        await self.tracer.stop()
        ops, self._ops = self._ops, []
        if ops:  # transitions queued in the last moments are not lost
            with contextlib.suppress(Exception):
                for event in await asyncio.to_thread(self._write, ops):
                    await self._publish(event)
        await asyncio.to_thread(self._flush_now)

    def _load(self) -> None:
        from sqlalchemy import select

        from anfang.devices.models import Device

        with self.store.session() as s:
            rows = s.execute(select(Device.device_id, Device.password, Device.review, Device.status, Device.name)
                             .where(Device.protocol == PROTOCOL))
            for device_id, password, review, status, name in rows:
                st = DevState(device_id, password, review or "approved", status or "unknown", name or "")
                if st.status == ONLINE:  # we do not know whether it is alive: give it one heartbeat window
                    st.last_seen = time.monotonic()
                    st.registered, st.expires = True, time.monotonic() + self.config.register_expires
                self.devices[device_id] = st

    @property
    def traced(self) -> dict[str, int]:
        """Devices whose SIP messages are being recorded (device_id -> how many are kept)."""
        return self.tracer.traced

    def refresh(self, device_id: str) -> None:
        """Re-read one device (after a manual add / password change in the registry)."""
        dev = self.devices_svc.get(PROTOCOL, device_id)
        if dev is None:
            self.devices.pop(device_id, None)
            return
        st = self.devices.setdefault(device_id, DevState(device_id))
        st.password, st.review, st.name, st.known = dev.password, dev.review, dev.name, True

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ---- the writer ------------------------------------------------------------------------------------------
    def _queue(self, *op: Any) -> None:
        self._ops.append(op)
        self._ops_event.set()

    async def _writer(self) -> None:
        while True:
            await self._ops_event.wait()
            self._ops_event.clear()
            ops, self._ops = self._ops, []
            if not ops:
                continue
            self._writing = True
            try:
                events = await asyncio.to_thread(self._write, ops)
            except Exception:  # noqa: BLE001 - keep serving; the next transition retries the state
                log.exception("gb28181_write_failed", ops=len(ops))
                continue
            finally:
                self._writing = False
            for event in events:
                await self._publish(event)
            if not self._ops:
                self._writer_idle.set()

    async def drain(self) -> None:
        """Wait until every queued database write is done, the one in progress included (tests, shutdown); at most
        30 s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            if not self._ops and not self._ops_event.is_set() and not self._writing:
                await asyncio.sleep(0.02)  # a write the handlers are about to queue
                if not self._ops and not self._ops_event.is_set() and not self._writing:
                    return
            await asyncio.sleep(0.02)

    async def _publish(self, event: Event) -> None:
        if self.bus is not None:
            await self.bus.publish(event)

    def _write(self, ops: list[tuple]) -> list[Event]:
        from sqlalchemy import select

        from anfang.devices.models import Device
        from anfang.gb28181.models import GbAlarm

        events: list[Event] = []
        create: dict[str, dict[str, Any]] = {}
        statuses: list[tuple[str, str, str, datetime]] = []
        updates: dict[str, dict[str, Any]] = {}

        def flush_statuses() -> None:
            if statuses or create:
                events.extend(self.devices_svc.set_status_many(PROTOCOL, list(statuses), dict(create)))
                statuses.clear()
                create.clear()

        for op in ops:
            kind = op[0]
            if kind == "create":
                create[op[1]] = op[2]
            elif kind == "status":
                statuses.append(op[1:])
            elif kind == "update":
                updates.setdefault(op[1], {}).update(op[2])
            elif kind == "channels":
                flush_statuses()
                self.devices_svc.upsert_channels(PROTOCOL, op[1], op[2])
                from anfang.devices.placement import propose_from_catalog

                propose_from_catalog(self.store, op[1], op[2])  # an unplaced device's own CivilCode / Address / point
            elif kind == "alarm":
                with self.store.session() as s:
                    s.add(GbAlarm(**op[1]))
            elif kind == "touch":
                self.devices_svc.touch_many(PROTOCOL, op[1])
            elif kind == "clock":
                self.clocks.record(op[1])
        flush_statuses()
        if updates:
            with self.store.session() as s:
                for device_id, fields in updates.items():
                    dev = s.scalar(select(Device).where(Device.protocol == PROTOCOL, Device.device_id == device_id))
                    if dev is None:
                        continue
                    attrs = dict(dev.attributes or {})
                    for k, v in fields.items():
                        if k == "attributes":
                            attrs.update(v)
                        elif hasattr(Device, k):
                            setattr(dev, k, v)
                    dev.attributes = attrs
        return events

    def _flush_now(self) -> None:
        touched = self._collect_touched()
        if touched:
            self.devices_svc.touch_many(PROTOCOL, touched)

    def _collect_touched(self) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for st in self.devices.values():
            if st.dirty and st.last_seen_wall is not None and st.known:
                out[st.device_id] = st.last_seen_wall
                st.dirty = False
        return out

    def _set_status(self, st: DevState, status: str, reason: str) -> None:
        if st.status == status:
            return
        st.status = status
        st.offline_since = time.monotonic() if status == OFFLINE else None
        st.warned = False
        self._queue("status", st.device_id, status, reason, datetime.now(UTC))
        if self.cascade is not None:  # its shared channels follow it, up the cascade too
            self.cascade.device_status(st.device_id, status)

    # ---- health ----------------------------------------------------------------------------------------------
    async def _health(self) -> None:
        cfg = self.config
        tick = cfg.tick or min(5.0, cfg.heartbeat_interval / 2)
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            limit = cfg.heartbeat_interval * cfg.heartbeat_count
            warn_after = cfg.offline_warning_minutes * 60
            for st in list(self.devices.values()):
                if st.status == ONLINE:
                    if st.registered and st.expires < now:
                        st.registered = False
                        self._set_status(st, OFFLINE, "expired")
                    elif now - st.last_seen > limit:
                        self._set_status(st, OFFLINE, "timeout")
                elif (st.status == OFFLINE and st.offline_since is not None and not st.warned
                      and now - st.offline_since > warn_after):
                    st.warned = True
                    await self._publish(Event(kind=EventKind.warning, source=st.device_id, node_id=cfg.node_id,
                                              data={"type": "device_offline", "protocol": PROTOCOL,
                                                    "name": st.name, "minutes": round(warn_after / 60)}))
            for key, buf in list(self._catalogs.items()):
                if now - buf.updated > cfg.query_timeout:
                    self._finish_catalog(key, buf)
            if now - last_flush >= cfg.flush_interval:
                last_flush = now
                touched = self._collect_touched()
                if touched:
                    self._queue("touch", touched)

    # ---- dispatch --------------------------------------------------------------------------------------------
    def handle(self, msg: SipMessage, peer: Peer) -> None:
        method = msg.method
        if method == "REGISTER":
            self._register(msg, peer)
        elif method == "MESSAGE":
            self._message(msg, peer)
        elif method == "NOTIFY":
            self._notify(msg, peer)
        elif method == "OPTIONS":
            self.endpoint.reply(msg, msg.response(200, to_tag=new_tag()), peer)
        elif method == "ACK":
            return  # we answer INVITE only as a relay, which ACKs the device itself
        elif method in ("BYE", "CANCEL", "INFO", "INVITE", "SUBSCRIBE") and self.cascade is not None:
            self.cascade.handle_request(msg, peer)
        else:
            self.endpoint.reply(msg, msg.response(405 if method in ("INVITE", "BYE", "CANCEL") else 501), peer)

    # ---- registrar -------------------------------------------------------------------------------------------
    # Lock-out: wrong passwords count per device id only (a misconfigured camera must not lock out the correct
    # ones behind the same NAT); per address only garbage counts — ids that are not GB/T 28181 ids, malformed
    # digests — with a limit ADDR_GARBAGE_FACTOR times higher. Each lock-out is logged and raised as a security
    # alert (security/monitoring.py) with the device and the address; acknowledging the alert lifts it.
    ADDR_GARBAGE_FACTOR = 10

    def _locked(self, key: str, now: float) -> bool:
        f = self._failures.get(key)
        if f is None or f.locked_until <= now:
            return False
        self._check_lifted(now)
        return True

    def _check_lifted(self, now: float) -> None:
        """At most once a second, off the receive path: drop the lock-outs whose alert was acknowledged."""
        if now - getattr(self, "_lift_checked", 0.0) < 1.0:
            return
        self._lift_checked = now
        from anfang.security import monitoring

        by_alert = {f.alert_id: k for k, f in self._failures.items() if f.alert_id is not None and f.locked_until > now}
        if not by_alert:
            return

        async def check() -> None:
            for alert_id in await asyncio.to_thread(monitoring.lifted, self.store, list(by_alert)):
                key = by_alert[alert_id]
                self._failures.pop(key, None)
                log.info("gb28181_lockout_lifted", key=key, alert_id=alert_id)

        self._spawn(check())

    def _fail(self, keys: list[str], now: float, address: str = "") -> None:
        window = self.config.lockout_minutes * 60
        for key in keys:
            f = self._failures.get(key)
            if f is None or now - f.first > window:
                f = self._failures[key] = _Failures(0, now)
            f.count += 1
            limit = self.config.lockout_failures * (self.ADDR_GARBAGE_FACTOR if key.startswith("addr:") else 1)
            if f.count >= limit and f.locked_until <= now:
                f.locked_until = now + window
                self._lockout(key, f, address)
        if len(self._failures) > 200_000:
            self._failures = {k: v for k, v in self._failures.items() if v.locked_until > now}

    def _lockout(self, key: str, f: _Failures, address: str) -> None:
        from anfang.security import monitoring

        kind = "address" if key.startswith("addr:") else "device"
        device_id = "" if kind == "address" else key.split(":", 1)[1]
        minutes = self.config.lockout_minutes
        log.warning("gb28181_lockout", kind=kind, device_id=device_id, address=address, failures=f.count,
                    minutes=minutes)
        self.stats["lockouts"] = self.stats.get("lockouts", 0) + 1

        async def alert() -> None:
            try:
                f.alert_id = await asyncio.to_thread(
                    monitoring.gb_lockout_alert, self.store, "sip_garbage" if kind == "address" else "sip_lockout",
                    device_id, address, f.count, minutes)
            except Exception:  # noqa: BLE001 - the lock-out holds without its alert; the log line is there
                log.exception("gb28181_lockout_alert_failed", key=key)

        self._spawn(alert())

    def _challenge(self, msg: SipMessage, peer: Peer, stale: bool = False) -> None:
        self.stats["challenges"] += 1
        nonce = self.nonces.issue()
        value = f'Digest realm="{self.config.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
        if stale:
            value += ", stale=true"
        resp = msg.response(401, to_tag=new_tag())
        resp.add("WWW-Authenticate", value)
        self.endpoint.reply(msg, resp, peer)

    def _reject(self, msg: SipMessage, peer: Peer, status: int = 403, reason: str = "") -> None:
        self.stats["rejected"] += 1
        self.endpoint.reply(msg, msg.response(status, reason, to_tag=new_tag()), peer)

    def _register(self, msg: SipMessage, peer: Peer) -> None:
        now = time.monotonic()
        device_id = msg.from_user or msg.to_user
        addr_key = f"addr:{peer.addr[0]}"
        dev_key = f"dev:{device_id}"
        if self._locked(dev_key, now) or self._locked(addr_key, now):
            self._reject(msg, peer, 403, "Locked")
            return
        st = self.devices.get(device_id)
        if st is None and not (self.config.allow_unknown and is_gb_id(device_id)):
            if not is_gb_id(device_id):
                self._fail([addr_key], now, peer.addr[0])  # garbage: counted per address
            self._reject(msg, peer, 403, "Unknown Device")
            return
        if st is not None and st.review == "rejected":
            self._reject(msg, peer, 403, "Rejected")
            return
        header = msg.get("authorization")
        if not header:
            self._challenge(msg, peer)
            return
        if (header.split(None, 1) or [""])[0].lower() != "digest":
            self._challenge(msg, peer)  # another scheme (GB 35114 Capability ...): challenged, not garbage
            return
        creds = parse_auth(header)
        if not (creds.get("username") and creds.get("nonce") and creds.get("response")):
            self._fail([addr_key], now, peer.addr[0])  # a malformed digest: garbage, counted per address
            self._reject(msg, peer, 400, "Bad Authorization")
            return
        qop = creds.get("qop") or None
        state = self.nonces.check(creds.get("nonce", ""), qop, creds.get("nc", ""))
        password = (st.password if st is not None and st.password else None) or self.config.password
        if state != "ok":
            # stale=true tells the device "your password was right, only the nonce is old" (RFC 2617 3.2.1)
            self._challenge(msg, peer, stale=state == "stale" and auth.verify(
                creds, password=password, realm=self.config.realm, method="REGISTER"))
            return
        if not auth.verify(creds, password=password, realm=self.config.realm, method="REGISTER"):
            self._fail([dev_key], now, peer.addr[0])  # the device id only: its neighbours behind a NAT go on
            self._reject(msg, peer, 403, "Wrong Password")
            return
        self.nonces.consume(creds.get("nonce", ""), qop, creds.get("nc", ""))
        self._failures.pop(dev_key, None)
        expires = self._expires(msg)
        resp = msg.response(200, to_tag=new_tag())
        resp.add("Date", gb_date())
        resp.add("Expires", str(expires))
        contact = msg.get("contact")
        if contact:
            resp.add("Contact", contact)
        self.endpoint.reply(msg, resp, peer)
        if st is None:
            st = self.devices[device_id] = DevState(device_id, review="pending", known=True)
            self._queue("create", device_id, {"review": "pending", "type_code": device_id[10:13],
                                              "name": device_id, "status": "unknown"})
        if expires == 0:
            st.registered = False
            self._set_status(st, OFFLINE, "unregister")
            return
        was_online = st.status == ONLINE and st.registered
        st.peer, st.registered = peer, True
        st.expires = now + expires
        st.last_seen, st.last_seen_wall, st.dirty = now, datetime.now(UTC), True
        self.stats["registered"] += 1
        self._set_status(st, ONLINE, "register")
        self._queue("update", device_id, {"transport": peer.transport, "host": peer.addr[0], "port": peer.addr[1],
                                          "registered_at": datetime.now(UTC),
                                          "expires_at": datetime.now(UTC) + timedelta(seconds=expires)})
        if not was_online:
            if self.config.query_on_register:
                self._spawn(self._after_register(device_id))
            if self.config.subscribe_on_register:
                self._spawn(self.subscribe(device_id, "Catalog"))
                self._spawn(self.subscribe(device_id, "Alarm"))

    def _expires(self, msg: SipMessage) -> int:
        raw = msg.get("expires")
        if raw is None:
            contact = msg.get("contact") or ""
            for part in contact.split(";")[1:]:
                k, _, v = part.partition("=")
                if k.strip().lower() == "expires":
                    raw = v
        try:
            value = int(str(raw).strip()) if raw is not None else self.config.register_expires
        except ValueError:
            value = self.config.register_expires
        return max(0, min(value, 86_400))

    async def _after_register(self, device_id: str) -> None:
        await asyncio.sleep(0.2)
        # both at once: firmware that never answers DeviceInfo must not hold the catalog up for query_timeout
        await asyncio.gather(self._query_quietly(device_id, "DeviceInfo"), self._query_quietly(device_id, "Catalog"))

    async def _query_quietly(self, device_id: str, cmd_type: str) -> None:
        with contextlib.suppress(TimeoutError, LookupError):
            await self.query(device_id, cmd_type)

    # ---- MESSAGE / NOTIFY ------------------------------------------------------------------------------------
    def _doc(self, msg: SipMessage, peer: Peer) -> Manscdp | None:
        try:
            return parse_manscdp(msg.body, msg.get("content-type"))
        except ManscdpError:
            self.endpoint.reply(msg, msg.response(400, "Bad MANSCDP"), peer)
            return None

    def _message(self, msg: SipMessage, peer: Peer) -> None:
        doc = self._doc(msg, peer)
        if doc is None:
            return
        for hook in self.message_hooks:
            if hook(msg, peer, doc):
                return
        if self.cascade is not None and self.cascade.handle_message(msg, peer, doc):
            return
        device_id = msg.from_user
        st = self.devices.get(device_id)
        # MESSAGE carries no credentials: accept it only from the address the device registered from (a NAT may
        # change the port); otherwise 404/403 makes a genuine device register again, with digest
        if st is None or not st.registered or (st.peer is not None and st.peer.addr[0] != peer.addr[0]):
            self.endpoint.reply(msg, msg.response(404 if doc.cmd_type == "Keepalive" else 403), peer)
            return
        if st.resync and doc.cmd_type == "Keepalive":
            # GB/T 28181 devices set their clock from the Date of the 200 to REGISTER: make it register again
            st.resync, st.registered, st.resync_at = False, False, time.monotonic()
            self.endpoint.reply(msg, msg.response(404, "Register Again"), peer)
            return
        self.endpoint.reply(msg, msg.response(200), peer)
        now = time.monotonic()
        st.last_seen, st.last_seen_wall, st.dirty = now, datetime.now(UTC), True
        if peer.transport == "TCP" or st.peer is None or not st.peer.usable:
            st.peer = peer
        if doc.cmd_type == "Keepalive":
            self.stats["keepalives"] += 1
            if st.status != ONLINE:
                self._back_online(st, "keepalive")
            return
        if st.status != ONLINE:
            self._back_online(st, "message")
        self._content(st, doc)

    def _back_online(self, st: DevState, reason: str) -> None:
        """Online again without a new registration: its channels went offline with it, so ask for its catalog."""
        self._set_status(st, ONLINE, reason)
        if self.config.query_on_register:
            self._spawn(self._query_quietly(st.device_id, "Catalog"))

    def _notify(self, msg: SipMessage, peer: Peer) -> None:
        doc = self._doc(msg, peer)
        if doc is None:
            return
        st = self.devices.get(msg.from_user)
        if st is None or not st.registered or (st.peer is not None and st.peer.addr[0] != peer.addr[0]):
            self.endpoint.reply(msg, msg.response(481), peer)
            return
        self.endpoint.reply(msg, msg.response(200), peer)
        st.last_seen, st.last_seen_wall, st.dirty = time.monotonic(), datetime.now(UTC), True
        self._content(st, doc, notify=True)

    def _content(self, st: DevState, doc: Manscdp, notify: bool = False) -> None:
        cmd = doc.cmd_type
        if cmd == "Catalog":
            self._catalog_part(st, doc, notify)
        elif cmd == "Alarm":
            self._alarm(st, doc)
        elif cmd == "MobilePosition":
            self._position(st, doc)
        elif doc.root == "Response":
            self._answer(st, doc)

    def _catalog_part(self, st: DevState, doc: Manscdp, notify: bool) -> None:
        total, items = catalog_items(doc)
        if notify and total is None:
            self._queue("channels", st.device_id, items)
            return
        key = (st.device_id, doc.sn)
        buf = self._catalogs.get(key)
        if buf is None:
            pending = self._pending.get((st.device_id, "Catalog", doc.sn)) or next(
                (f for (d, c, _), f in self._pending.items() if d == st.device_id and c == "Catalog"), None)
            buf = self._catalogs[key] = _CatalogBuffer(total, {}, time.monotonic(), pending)
        buf.total = total if total is not None else buf.total
        buf.updated = time.monotonic()
        for item in items:
            buf.items[item["channel_id"]] = item
        if buf.total is None or len(buf.items) >= buf.total:
            self._finish_catalog(key, buf)

    def _finish_catalog(self, key: tuple[str, str], buf: _CatalogBuffer) -> None:
        self._catalogs.pop(key, None)
        items = list(buf.items.values())
        if items:
            self._queue("channels", key[0], items)
        if buf.future is not None and not buf.future.done():
            buf.future.set_result({"SumNum": buf.total, "channels": items})

    def _alarm(self, st: DevState, doc: Manscdp) -> None:
        self.stats["alarms"] += 1
        fields = alarm_fields(doc)
        at = datetime.fromisoformat(fields["alarm_time"]) if fields["alarm_time"] else datetime.now(UTC)
        self._clock(st, at if fields["alarm_time"] else None)
        event = Event(kind=EventKind.alarm, source=doc.device_id or st.device_id, at=at, node_id=self.config.node_id,
                      longitude=fields["longitude"], latitude=fields["latitude"],
                      data={"protocol": PROTOCOL, "device_id": st.device_id, "name": st.name, **fields})
        self._queue("alarm", {"device_id": st.device_id, "source_id": doc.device_id or st.device_id, "at": at,
                              "priority": fields["priority"], "method": fields["method"],
                              "alarm_type": fields["alarm_type"], "description": fields["description"][:256],
                              "longitude": fields["longitude"], "latitude": fields["latitude"],
                              "event_id": event.id})
        self._spawn(self._publish(event))
        if self.cascade is not None:
            self.cascade.forward_alarm(doc)
        # the platform confirms the alarm with a Response (GB/T 28181-2016 9.4.2)
        if st.peer is not None:
            body = build("Response", "Alarm", doc.sn, doc.device_id, [("Result", "OK")])
            self._spawn(self._send_quietly(st, body))

    def _clock(self, st: DevState, device_time: datetime | None) -> None:
        """Device time (alarm, DeviceStatus) against now: flag a clock that is off, and re-sync it."""
        reading = self.clocks.observe(PROTOCOL, st.device_id, device_time)
        if reading is not None:
            self._queue("clock", reading)
        # a device that ignores the Date is not made to register again and again: once an hour at most
        st.resync = self.clocks.is_off(PROTOCOL, st.device_id) and time.monotonic() - st.resync_at > 3600

    async def _send_quietly(self, st: DevState, body: bytes) -> None:
        with contextlib.suppress(TimeoutError, LookupError):
            await self._request(st, "MESSAGE", body, timeout=5)

    def _position(self, st: DevState, doc: Manscdp) -> None:
        from anfang.gb28181.manscdp.xml import _float, parse_time

        lon, lat = _float(doc.get("Longitude")), _float(doc.get("Latitude"))
        at = parse_time(doc.get("Time"))
        extra = {k: doc.get(k) for k in ("Speed", "Direction", "Altitude") if doc.get(k)}
        self._queue("update", st.device_id, {"longitude": lon, "latitude": lat, "attributes": {
            "position": {"time": at.isoformat() if at else None, "source": doc.device_id, **extra}}})

    def _answer(self, st: DevState, doc: Manscdp) -> None:
        fut = self._pending.pop((st.device_id, doc.cmd_type, doc.sn), None) or next(
            (self._pending.pop(k) for k in list(self._pending) if k[0] == st.device_id and k[1] == doc.cmd_type),
            None)
        result = {c.tag: (c.text or "").strip() for c in doc.element if len(c) == 0}
        if doc.cmd_type == "RecordInfo":
            from anfang.gb28181.manscdp.xml import child, text_of

            result["items"] = [{c.tag: (c.text or "").strip() for c in item}
                               for item in (child(doc.element, "RecordList") or [])]
            _ = text_of
        if doc.cmd_type == "DeviceInfo":
            fields = {k: result.get(src) or None for k, src in (("manufacturer", "Manufacturer"),
                                                                ("model", "Model"), ("firmware", "Firmware"))}
            fields = {k: v[:64] for k, v in fields.items() if v}
            if result.get("DeviceName"):
                fields["attributes"] = {"device_name": result["DeviceName"]}
                if not st.name or st.name == st.device_id:
                    st.name = result["DeviceName"][:128]
                    fields["name"] = st.name
            if result.get("Channel", "").isdigit():
                fields.setdefault("attributes", {})["channel_count"] = int(result["Channel"])
            self._queue("update", st.device_id, fields)
        elif doc.cmd_type == "DeviceStatus":
            self._queue("update", st.device_id, {"attributes": {"device_status": result}})
            from anfang.gb28181.manscdp.xml import parse_time

            self._clock(st, parse_time(result.get("DeviceTime")))
        if fut is not None and not fut.done():
            fut.set_result(result)

    # ---- requests to devices ---------------------------------------------------------------------------------
    def _request(self, st: DevState, method: str, body: bytes, timeout: float = 10.0,
                 extra: list[tuple[str, str]] | None = None, call_id: str | None = None,
                 cseq: int = 1) -> asyncio.Future[SipMessage]:
        peer = st.peer
        if peer is None or not peer.usable:
            raise LookupError(f"device {st.device_id} is not reachable")
        host, port = peer.addr
        cfg = self.config
        msg = self.endpoint.build_request(
            method, f"sip:{st.device_id}@{host}:{port}", from_uri=f"sip:{cfg.server_id}@{cfg.realm}",
            to_uri=f"sip:{st.device_id}@{cfg.realm}", transport=peer.transport, body=body,
            content_type=CONTENT_TYPE, extra=extra, call_id=call_id, cseq=cseq)
        return self.endpoint.request(msg, peer, timeout=timeout)

    async def query(self, device_id: str, cmd_type: str, fields: list[tuple[str, Any]] | None = None,
                    timeout: float | None = None) -> dict[str, Any]:
        """Send a MANSCDP Query (Catalog, DeviceInfo, DeviceStatus, RecordInfo ...) and wait for its answer;
        for Catalog the answer is every part assembled by SumNum (``{"SumNum", "channels"}``)."""
        st = self.devices.get(device_id)
        if st is None:
            raise LookupError(f"unknown device {device_id}")
        timeout = timeout or self.config.query_timeout
        sn = str(next(self._sn))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        key = (device_id, cmd_type, sn)
        self._pending[key] = fut
        body = build("Query", cmd_type, sn, device_id, fields)
        try:
            resp = await self._request(st, "MESSAGE", body, timeout=min(timeout, 8.0))
            if (resp.status or 0) >= 300:
                raise LookupError(f"device answered {resp.status}")
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            buf = self._catalogs.get((device_id, sn))
            if buf is not None:  # a catalog that never completed: keep what arrived
                self._finish_catalog((device_id, sn), buf)
                return fut.result()
            raise
        finally:
            self._pending.pop(key, None)

    async def record_info(self, device_id: str, channel_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        from anfang.gb28181.manscdp.xml import format_time

        st = self.devices.get(device_id)
        if st is None:
            raise LookupError(device_id)
        return await self.query(device_id, "RecordInfo", [("StartTime", format_time(start)),
                                                          ("EndTime", format_time(end)), ("Secrecy", 0),
                                                          ("Type", "all")])

    async def subscribe(self, device_id: str, event: str = "Catalog", expires: int = 3600,
                        timeout: float = 5.0) -> bool:
        """SUBSCRIBE to Catalog or Alarm; True when the device accepted. Devices that never answer are common:
        that is logged and changes nothing else."""
        st = self.devices.get(device_id)
        if st is None:
            return False
        sn = str(next(self._sn))
        fields: list[tuple[str, Any]] = []
        if event == "Alarm":
            fields = [("StartAlarmPriority", 0), ("EndAlarmPriority", 0), ("AlarmMethod", 0)]
        body = build("Query", event, sn, device_id, fields)
        try:
            resp = await self._request(st, "SUBSCRIBE", body, timeout=timeout,
                                       extra=[("Event", f"{event};id={sn}"), ("Expires", str(expires)),
                                              ("Contact", f"<sip:{self.config.server_id}@"
                                                          f"{self.endpoint.local_host}:{self.port}>")])
        except (TimeoutError, LookupError):
            log.info("gb28181_subscribe_unanswered", device=device_id, subscription=event)
            return False
        ok = (resp.status or 0) < 300
        if ok:
            self.subscriptions[(device_id, event)] = {"call_id": resp.call_id, "to_tag": resp.to_tag,
                                                      "expires": expires, "at": datetime.now(UTC)}
        return ok

    # ---- INVITE (signalling only: media flows between the device and the requester's media server) ------------
    async def invite(self, device_id: str, channel_id: str, sdp: bytes, *, subject: str | None = None,
                     timeout: float = 8.0) -> tuple[SipMessage, dict[str, Any] | None]:
        """INVITE a channel of a device (or of a lower platform); on 200 the ACK is sent and the dialog returned
        (for ``bye``)."""
        st = self.devices.get(device_id)
        if st is None or st.peer is None or not st.peer.usable:
            raise LookupError(f"device {device_id} is not reachable")
        cfg, peer = self.config, st.peer
        host, port = peer.addr
        subject = subject or f"{channel_id}:0000000001,{cfg.server_id}:0"
        msg = self.endpoint.build_request(
            "INVITE", f"sip:{channel_id}@{host}:{port}", from_uri=f"sip:{cfg.server_id}@{cfg.realm}",
            to_uri=f"sip:{channel_id}@{cfg.realm}", transport=peer.transport, body=sdp,
            content_type="APPLICATION/SDP",
            extra=[("Contact", f"<sip:{cfg.server_id}@{self.endpoint.local_host}:{self.port}>"),
                   ("Subject", subject)])
        resp = await self.endpoint.request(msg, peer, timeout=timeout)
        if resp.status != 200:
            return resp, None
        dialog = {"peer": peer, "uri": msg.uri, "call_id": msg.call_id, "from": msg.get("from"),
                  "to": resp.get("to"), "cseq": msg.cseq[0], "transport": peer.transport}
        self._in_dialog(dialog, "ACK", cseq=msg.cseq[0])
        return resp, dialog

    def _in_dialog(self, dialog: dict[str, Any], method: str, cseq: int) -> SipMessage:
        from anfang.gb28181.sip.transport import new_branch

        req = SipMessage(method=method, uri=dialog["uri"])
        req.add("Via", f"SIP/2.0/{dialog['transport']} {self.endpoint.local_host}:{self.port};rport;"
                       f"branch={new_branch()}")
        req.add("From", dialog["from"])
        req.add("To", dialog["to"])
        req.add("Call-ID", dialog["call_id"])
        req.add("CSeq", f"{cseq} {method}")
        req.add("Max-Forwards", "70")
        if method == "ACK":
            self.endpoint.send(req, dialog["peer"])
        return req

    async def bye(self, dialog: dict[str, Any], timeout: float = 5.0) -> int:
        dialog["cseq"] += 1
        req = self._in_dialog(dialog, "BYE", cseq=dialog["cseq"])
        try:
            resp = await self.endpoint.request(req, dialog["peer"], timeout=timeout)
        except TimeoutError:
            return 408
        return resp.status or 0
