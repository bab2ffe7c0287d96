"""GB/T 28181 server end to end over real sockets: simulator devices register with digest, keep alive, answer
catalogs with Chinese names, raise alarms, go offline; status history and events as the console will show them."""

from __future__ import annotations

import asyncio

from anfang.bus import InProcessBus
from anfang.core.events import EventKind
from anfang.devices.service import DeviceService
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.store.engine import Store


def _config(**kw) -> GbConfig:
    base = dict(host="127.0.0.1", port=0, heartbeat_interval=0.4, heartbeat_count=3, tick=0.1,
                flush_interval=0.3, query_timeout=3.0)
    base.update(kw)
    return GbConfig(**base)


async def _wait(cond, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_simulated_devices_register_show_channels_and_go_offline(store: Store) -> None:
    events = []

    async def scenario() -> None:
        bus = InProcessBus()

        async def collect(e):
            events.append(e)

        await bus.subscribe(collect)
        server = GbServer(_config(offline_warning_minutes=0.005), store, bus)
        await server.start()
        sims = [Simulator(("127.0.0.1", server.port), count=2, channels=5, heartbeat=0.2, catalog_page=2),
                Simulator(("127.0.0.1", server.port), count=1, channels=3, heartbeat=0.2, transport="TCP",
                          first_serial=50)]
        try:
            for sim in sims:
                await sim.start()
            assert all(d.registered for s in sims for d in s.devices)
            udp_dev, tcp_dev = sims[0].devices[0], sims[1].devices[0]
            svc = DeviceService(store)
            # the catalog (5 channels over 3 MESSAGEs, assembled by SumNum) is stored with its Chinese names
            assert await _wait(lambda: len(svc.channels("gb28181", udp_dev.device_id)) == 5)
            await asyncio.sleep(0.3)  # a late duplicate part must not add channels
            assert await _wait(lambda: len(svc.channels("gb28181", tcp_dev.device_id)) == 3)
            names = [c.name for c in svc.channels("gb28181", udp_dev.device_id)]
            assert all("社区" in n or "街道" in n for n in names)
            assert {c["name"] for c in udp_dev.channels} == set(names)
            dev = svc.get("gb28181", udp_dev.device_id)
            assert dev.status == "online" and dev.review == "pending" and dev.transport == "UDP"
            assert await _wait(lambda: (svc.get("gb28181", udp_dev.device_id).manufacturer == "anfang-sim"))
            assert svc.get("gb28181", tcp_dev.device_id).transport == "TCP"
            # keepalives keep it online beyond 3 heartbeat windows
            await asyncio.sleep(1.5)
            assert server.devices[udp_dev.device_id].status == "online"
            assert server.stats["keepalives"] > 5
            # queries the console/operator can make
            info = await server.query(tcp_dev.device_id, "DeviceStatus")
            assert info["Online"] == "ONLINE"
            from datetime import UTC, datetime, timedelta

            now = datetime.now(UTC)
            rec = await server.record_info(tcp_dev.device_id, tcp_dev.channels[0]["channel_id"],
                                           now - timedelta(hours=1), now)
            expected = sum(len(sims[1].recordings(ch, now - timedelta(hours=1), now)) for ch in tcp_dev.channels)
            assert rec["SumNum"] == str(expected) and len(rec["items"]) == expected  # the simulator's recordings
            # MobilePosition is stored on the device; a NOTIFY (subscription) Catalog adds a channel
            from anfang.gb28181.manscdp import build, catalog_item_xml

            pos = build("Notify", "MobilePosition", 5, udp_dev.device_id, [
                ("Time", "2026-11-29T10:00:00"), ("Longitude", "117.64"), ("Latitude", "26.26"), ("Speed", "3.5")])
            assert (await sims[0].message(udp_dev, pos)).status == 200
            extra = {"channel_id": "35040200001310099999", "name": "新增：梅列区碧湖路口"}
            note = build("Notify", "Catalog", 6, udp_dev.device_id, [
                ("DeviceList", ({"Num": 1}, [catalog_item_xml(extra)]))])
            assert (await sims[0].message(udp_dev, note, method="NOTIFY")).status == 200
            await server.drain()
            moved = svc.get("gb28181", udp_dev.device_id)
            assert (moved.longitude, moved.latitude) == (117.64, 26.26)
            assert moved.attributes["position"]["Speed"] == "3.5"
            assert await _wait(lambda: "新增：梅列区碧湖路口" in {c.name for c in svc.channels("gb28181",
                                                                                        udp_dev.device_id)})
            # alarm → event on the bus and a row
            assert await sims[0].alarm(udp_dev, description="周界入侵") == 200
            assert await _wait(lambda: any(e.kind == EventKind.alarm for e in events))
            alarm = next(e for e in events if e.kind == EventKind.alarm)
            assert alarm.data["description"] == "周界入侵" and alarm.source == udp_dev.channels[0]["channel_id"]
            # power off → offline within heartbeat × count; history kept; restart → online at once
            sims[0].power_off(udp_dev)
            assert await _wait(lambda: server.devices[udp_dev.device_id].status == "offline", 3)
            # offline longer than the threshold: an operations warning
            assert await _wait(lambda: any(e.kind == EventKind.warning and e.source == udp_dev.device_id
                                           for e in events), 3)
            assert server.devices[sims[0].devices[1].device_id].status == "online"
            assert await sims[0].power_on(udp_dev) == 200
            assert server.devices[udp_dev.device_id].status == "online"
            await server.drain()
            hist = [(h.status, h.reason) for h in svc.history(svc.get("gb28181", udp_dev.device_id).id)]
            assert hist == [("online", "register"), ("offline", "timeout"), ("online", "register")]
            # Expires: 0 unregisters
            assert await sims[1].register(tcp_dev, expires=0) == 200
            await server.drain()
            assert svc.get("gb28181", tcp_dev.device_id).status == "offline"
        finally:
            for sim in sims:
                await sim.stop()
            await server.stop()
            await bus.drain()
            await bus.close()

    asyncio.run(scenario())
    statuses = [(e.source, e.data["status"]) for e in events if e.kind == EventKind.device_status]
    assert len(statuses) >= 6


def test_wrong_password_403_and_lockout(store: Store) -> None:
    async def scenario() -> None:
        server = GbServer(_config(lockout_failures=3, query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=0)
        try:
            await sim.start(register=False, keepalive=False)
            dev = sim.devices[0]
            for _ in range(3):
                assert await sim.register(dev, password="wrong") == 403
            # locked: even the right password is refused now
            assert await sim.register(dev) == 403
            assert dev.device_id not in server.devices
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


def test_known_device_needs_its_own_password_and_unknown_refused_when_closed(store: Store) -> None:
    async def scenario() -> None:
        sim = Simulator(("127.0.0.1", 1), count=2, channels=0)
        known = sim.devices[0]
        DeviceService(store).upsert("gb28181", known.device_id, password="per-device-secret", name="南门NVR")
        server = GbServer(_config(allow_unknown=False, query_on_register=False), store)
        await server.start()
        sim.server = ("127.0.0.1", server.port)
        try:
            await sim.start(register=False, keepalive=False)
            assert await sim.register(known) == 403  # the shared password is not enough for it
            assert await sim.register(known, password="per-device-secret") == 200
            assert await sim.register(sim.devices[1]) == 403  # unknown, auto-add closed
            await server.drain()
            assert DeviceService(store).get("gb28181", known.device_id).status == "online"
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


def test_device_that_never_answers_subscribe_stays_online(tmp_path) -> None:
    from anfang.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    store = Store(url)

    async def scenario() -> None:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=2, channels=2, heartbeat=0.2)
        sim.devices[0].answer_subscribe = False
        try:
            await sim.start()
            assert await server.subscribe(sim.devices[0].device_id, "Catalog", timeout=1.0) is False
            assert await server.subscribe(sim.devices[1].device_id, "Alarm", timeout=1.0) is True
            await asyncio.sleep(0.5)
            assert server.devices[sim.devices[0].device_id].status == "online"
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())
    store.dispose()


def test_raw_digest_tolerances_replay_and_date(store: Store) -> None:
    """RFC 2069 answer (no qop) with a uri unlike the Request-URI is accepted; the same nonce replayed gets a new
    challenge, not a registration; the 200 carries Date and Expires; a Contact ;expires=0 unregisters."""
    from anfang.gb28181.sip.auth import digest_response
    from anfang.gb28181.sip.message import parse_auth, parse_message

    dev = "35040200001320000077"

    def register(cseq: int, auth: str | None = None, contact_expires: str | None = None) -> bytes:
        lines = ["REGISTER sip:35040000002000000001@3504000000 SIP/2.0",
                 f"v: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{cseq}x", f"f: <sip:{dev}@3504000000>;tag=a",
                 f"t: <sip:{dev}@3504000000>", "i: raw-1", f"CSeq: {cseq} REGISTER",
                 f"m: <sip:{dev}@127.0.0.1:5999>" + (f";expires={contact_expires}" if contact_expires else "")]
        if auth:
            lines.append(f"Authorization: {auth}")
        return ("\r\n".join(lines) + "\r\nl: 0\r\n\r\n").encode()

    async def scenario() -> None:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):  # noqa: ANN001
                queue.put_nowait(data)

        tr, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))

        async def send(data: bytes):
            tr.sendto(data, ("127.0.0.1", server.port))
            return parse_message(await asyncio.wait_for(queue.get(), 1.0))  # devices wait about a second

        try:
            challenge = parse_auth((await send(register(1))).get("www-authenticate"))
            assert challenge["qop"] == "auth" and challenge["realm"] == "3504000000"
            nonce, uri = challenge["nonce"], "sip:3504000000"
            resp = digest_response(username=dev, realm="3504000000", password="anfang28181", method="REGISTER",
                                   uri=uri, nonce=nonce)
            auth = f'Digest username="{dev}", realm="3504000000", nonce="{nonce}", uri="{uri}", response="{resp}"'
            ok = await send(register(2, auth))
            assert ok.status == 200 and ok.get("expires") == "3600" and len(ok.get("date") or "") == 23
            replay = await send(register(3, auth))
            assert replay.status == 401  # a nonce without qop is good once
            assert server.devices[dev].status == "online"
            bye = await send(register(4, auth.replace(nonce, "forged")))
            # a digest that does not match the (forged) nonce is no "stale" case: a plain challenge
            assert bye.status == 401 and "stale" not in bye.get("www-authenticate")
            # retransmission of CSeq 2 (same branch) gets the cached 200 again and is not processed twice
            again = await send(register(2, auth))
            assert again.status == 200 and server.stats["registered"] == 1
        finally:
            tr.close()
            await server.stop()

    asyncio.run(scenario())


def test_keepalive_from_another_address_is_refused(store: Store) -> None:
    """MESSAGE has no credentials: a keepalive or alarm forged from another address is refused (the real device,
    if it moved, registers again with digest)."""
    from anfang.gb28181.manscdp import build

    async def scenario() -> None:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        real = Simulator(("127.0.0.1", server.port), count=1, channels=0, heartbeat=3600)
        forger = Simulator(("127.0.0.1", server.port), count=1, channels=0, local_host="127.0.0.2")
        try:
            await real.start(keepalive=False)
            await forger.start(register=False, keepalive=False)
            dev = forger.devices[0]
            assert dev.device_id == real.devices[0].device_id
            resp = await forger.message(dev, build("Notify", "Keepalive", 1, dev.device_id, [("Status", "OK")]))
            assert resp.status == 404 and server.stats["keepalives"] == 0
            assert await forger.alarm(dev) == 403 and server.stats["alarms"] == 0
            ok = await real.message(real.devices[0], build("Notify", "Keepalive", 1, dev.device_id, [("Status", "OK")]))
            assert ok.status == 200 and server.stats["keepalives"] == 1
        finally:
            await real.stop()
            await forger.stop()
            await server.stop()

    asyncio.run(scenario())
