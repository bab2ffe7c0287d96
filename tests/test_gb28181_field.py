"""GB/T 28181 details a field roll-out meets (issue 18, item 9): channel state follows its device (here and up the
cascade), Catalog not held behind an unanswered DeviceInfo, a To tag on the 200 to MESSAGE, stale=true only for a
right digest, and the per-device SIP trace installers use to see why a device fails."""

from __future__ import annotations

import asyncio
import re
import time

from typer.testing import CliRunner

from anfang.devices.models import Channel
from anfang.devices.service import DeviceService
from anfang.gb28181.manscdp import build
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.store.engine import Store
from anfang.store.migrate import upgrade

UPPER_ID = "35000000002000000001"
LOWER_ID = "35040000002000000001"


def _config(**kw) -> GbConfig:
    base = dict(host="127.0.0.1", port=0, heartbeat_interval=0.4, heartbeat_count=3, tick=0.1,
                flush_interval=0.3, query_timeout=3.0)
    base.update(kw)
    return GbConfig(**base)


async def _wait(cond, timeout: float = 6.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def _statuses(svc: DeviceService, device_id: str, ids: list[str] | None = None) -> set[str]:
    return {c.status for c in svc.channels("gb28181", device_id) if ids is None or c.channel_id in ids}


def test_channels_follow_their_device_here_and_up_the_cascade(store: Store, tmp_path) -> None:
    upper_url = f"sqlite:///{tmp_path / 'upper.db'}"
    upgrade(upper_url)
    upper_store = Store(upper_url)

    async def scenario() -> None:
        upper = GbServer(GbConfig(server_id=UPPER_ID, host="127.0.0.1", port=0, password="upper-secret",
                                  heartbeat_interval=0.5, tick=0.1, query_on_register=False), upper_store)
        await upper.start()
        lower = GbServer(_config(server_id=LOWER_ID, uppers=[{"server_id": UPPER_ID, "host": "127.0.0.1",
                                                               "port": upper.port, "password": "upper-secret",
                                                               "keepalive": 0.2}]), store)
        await lower.start()
        sim = Simulator(("127.0.0.1", lower.port), count=1, channels=3, heartbeat=0.2, server_id=LOWER_ID)
        lower_svc, upper_svc = DeviceService(store), DeviceService(upper_store)
        try:
            await sim.start()
            dev = sim.devices[0]
            assert await _wait(lambda: _statuses(lower_svc, dev.device_id) == {"online"})
            shared = [c["channel_id"] for c in dev.channels[:2]]
            lower_svc.upsert("gb28181", dev.device_id, review="approved", community_code="350404001001")
            with store.session() as s:
                for ch in s.query(Channel).filter(Channel.channel_id.in_(shared)):
                    ch.shared = True
            await lower.cascade.refresh_shared()
            assert await _wait(lambda: upper.devices.get(LOWER_ID) is not None
                               and upper.devices[LOWER_ID].status == "online")
            assert await upper.subscribe(LOWER_ID, "Catalog")
            await upper.query(LOWER_ID, "Catalog")
            await upper.drain()
            assert _statuses(upper_svc, LOWER_ID, shared) == {"online"}
            # the camera loses power: its channels go offline with it, here and at the upper platform
            sim.power_off(dev)
            assert await _wait(lambda: lower.devices[dev.device_id].status == "offline")
            assert await _wait(lambda: _statuses(lower_svc, dev.device_id) == {"offline"})
            assert await _wait(lambda: _statuses(upper_svc, LOWER_ID, shared) == {"offline"})
            answer = await upper.query(LOWER_ID, "Catalog")
            assert {c["status"] for c in answer["channels"] if c["channel_id"] in shared} == {"offline"}
            # power back: the channels follow it back
            await sim.power_on(dev)
            assert await _wait(lambda: _statuses(lower_svc, dev.device_id) == {"online"})
            assert await _wait(lambda: _statuses(upper_svc, LOWER_ID, shared) == {"online"})
        finally:
            await sim.stop()
            await lower.stop()
            await upper.stop()

    asyncio.run(scenario())
    upper_store.dispose()


def test_catalog_is_not_held_behind_an_unanswered_device_info(store: Store) -> None:
    async def scenario() -> None:
        # A long DeviceInfo timeout (40 s): "held behind it" and "a slow, loaded machine" cannot be confused.
        server = GbServer(_config(query_timeout=40.0), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=4, heartbeat=0.2)
        sim.devices[0].silent = {"DeviceInfo"}  # firmware that never answers DeviceInfo
        svc = DeviceService(store)
        try:
            t0 = time.monotonic()
            await sim.start()
            dev = sim.devices[0]
            assert await _wait(lambda: len(svc.channels("gb28181", dev.device_id)) == 4, timeout=20)
            assert time.monotonic() - t0 < 20.0  # not after the 40 s DeviceInfo timeout
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


def test_200_to_message_carries_a_to_tag(store: Store) -> None:
    async def scenario() -> None:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=0, heartbeat=3600)
        try:
            await sim.start(keepalive=False)
            dev = sim.devices[0]
            ok = await sim.message(dev, build("Notify", "Keepalive", 1, dev.device_id, [("Status", "OK")]))
            assert ok.status == 200 and ok.to_tag  # RFC 3261 8.2.6.2
            refused = await sim.message(dev, b"<not xml")
            assert refused.status == 400 and refused.to_tag
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


def test_stale_true_only_when_the_digest_itself_was_right(store: Store) -> None:
    from anfang.gb28181.sip.auth import digest_response
    from anfang.gb28181.sip.message import parse_message

    dev = "35040200001320000078"
    realm, uri = "3504000000", "sip:35040000002000000001@3504000000"

    def register(cseq: int, nonce: str, password: str) -> bytes:
        resp = digest_response(username=dev, realm=realm, password=password, method="REGISTER", uri=uri,
                               nonce=nonce)
        auth = f'Digest username="{dev}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}"'
        lines = ["REGISTER sip:35040000002000000001@3504000000 SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKst{cseq}", f"From: <sip:{dev}@{realm}>;tag=a",
                 f"To: <sip:{dev}@{realm}>", "Call-ID: stale-1", f"CSeq: {cseq} REGISTER",
                 f"Contact: <sip:{dev}@127.0.0.1:5999>", f"Authorization: {auth}"]
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

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
            return parse_message(await asyncio.wait_for(queue.get(), 1.0))

        try:
            # an expired nonce with the right password: stale=true, the device retries at once without a prompt
            right = await send(register(1, "expired-nonce-1", "anfang28181"))
            assert right.status == 401 and "stale=true" in right.get("www-authenticate")
            # an unknown nonce with a wrong password: a plain challenge (stale=true would hide the wrong password)
            wrong = await send(register(2, "expired-nonce-2", "not-the-password"))
            assert wrong.status == 401 and "stale" not in wrong.get("www-authenticate")
        finally:
            tr.close()
            await server.stop()

    asyncio.run(scenario())


def test_sip_trace_of_one_device_on_demand_in_cli_and_console(store: Store, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from anfang.app import create_app
    from anfang.cli import app as cli_app
    from anfang.config import Settings
    from anfang.gb28181.trace import start_trace, trace_entries
    from test_web import login
    from world import build as build_world

    build_world(store)
    sim = Simulator(("127.0.0.1", 1), count=2, channels=1, heartbeat=0.2)
    traced, other = sim.devices
    start_trace(store, traced.device_id, minutes=5, keep=30, by="test")

    async def scenario() -> None:
        server = GbServer(_config(trace_poll=0.1), store)
        await server.start()
        sim.server = ("127.0.0.1", server.port)
        try:
            await _wait(lambda: traced.device_id in server.traced, timeout=2)
            await sim.start(register=False, keepalive=False)
            assert await sim.register(traced, password="wrong-password") == 403
            await sim.register_all()
            await sim.message(traced, build("Notify", "Keepalive", 7, traced.device_id, [("Status", "OK")]))
            await sim.message(other, build("Notify", "Keepalive", 7, other.device_id, [("Status", "OK")]))
            await asyncio.sleep(0.3)
            await server.drain()
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())
    entries = trace_entries(store, traced.device_id)
    summaries = [(e.direction, e.summary) for e in entries]
    assert ("in", "REGISTER") in summaries and ("out", "401 Unauthorized") in summaries
    assert ("out", "403 Wrong Password") in summaries  # the installer sees why the device fails
    assert ("in", "MESSAGE Keepalive") in summaries and ("out", "MESSAGE Catalog") in summaries
    assert len(entries) <= 30 and not trace_entries(store, other.device_id)  # only the device asked for
    # the command line shows the same trace
    env = {"ANFANG_DATABASE_URL": store.url, "ANFANG_DATA_DIR": str(tmp_path)}
    out = CliRunner().invoke(cli_app, ["gb28181", "trace", traced.device_id, "--no-follow"], env=env)
    assert out.exit_code == 0, out.output
    assert "403 Wrong Password" in out.output and "MESSAGE Keepalive" in out.output
    assert "北京时间" in out.output and "UTC" not in out.output and "Asia/Shanghai" not in out.output  # issue 19
    # and the device page in the console, where an administrator can start one
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "city")
        pk = DeviceService(store).get("gb28181", traced.device_id).id
        page = c.get(f"/devices/{pk}")
        assert "信令跟踪" in page.text and "403 Wrong Password" in page.text
        # times in labelled Beijing time, like every page (issue 19 item 3): the trace's end and the column
        assert "UTC" not in page.text and "Asia/Shanghai" not in page.text
        assert re.search(r"跟踪至\s*<span[^>]*>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} 北京时间", page.text), page.text
        assert "时间（北京时间）" in page.text
        js = c.get(f"/api/devices/{pk}/trace").json()
        assert any(e["summary"] == "MESSAGE Keepalive" and "Keepalive" in e["text"] for e in js["items"])
        other_pk = DeviceService(store).get("gb28181", other.device_id).id
        assert c.post(f"/api/devices/{other_pk}/trace", json={"minutes": 10}).status_code == 200
    login_police = TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store))
    with login_police as c:
        login(c, "police")
        assert c.post(f"/api/devices/{other_pk}/trace", json={"minutes": 10}).status_code in (403, 404)
