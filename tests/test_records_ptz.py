"""Recordings and PTZ (issue 16): RecordInfo of a month assembled from several MESSAGEs, the PTZCmd bytes, the
simulator's camera turning on DeviceControl (also relayed from an upper platform), retention measured on the cameras
(a 15-day camera gets a work order, a 35-day one does not), and the API's scope and roles."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.models import WorkOrder
from anfang.construction.retention import RetentionCheck
from anfang.devices.models import Channel, Device
from anfang.devices.service import DeviceService
from anfang.gb28181.manscdp.xml import CHINA_TZ
from anfang.gb28181.ptz import ACTIONS, PtzError, device_control, parse_ptz, ptz_cmd
from anfang.gb28181.records import RecordSearch
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.registry.models import Address
from anfang.security.models import AuditEntry, User
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from test_video import SimThread
from test_video import _wait as wait_sync
from test_web import login
from world import build

# the storage layer is not what these tests are about (the store tests cover both databases)
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
LIEDONG, FUXI = "350404001001", "350405001001"


def _config(**kw) -> GbConfig:
    return GbConfig(**{"host": "127.0.0.1", "port": 0, "heartbeat_interval": 0.5, "tick": 0.1,
                       "query_timeout": 3.0, "query_on_register": True, **kw})


async def _wait(cond, timeout: float = 6.0) -> bool:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.03)
    return cond()


# ---- PTZCmd ------------------------------------------------------------------------------------------------------
def test_ptz_bytes_match_the_standard_and_round_trip() -> None:
    # GB/T 28181-2016 A.3: A5, version 0 + check nibble F, address 01, command, data, zoom/address, checksum
    assert ptz_cmd("up", speed=0xFA) == "A50F010800FA00B7"  # tilt up at speed FA: sum of bytes 1-7 = 0x1B7 → B7
    assert ptz_cmd("left", speed=0x1F) == "A50F01021F0000D6"
    assert ptz_cmd("stop") == "A50F0100000000B5"
    assert ptz_cmd("zoomin", speed=0x50)[6:8] == "10" and ptz_cmd("zoomin", speed=0x50)[12:14] == "50"
    assert ptz_cmd("preset_call", preset=3)[6:12] == "820003"
    for action in ACTIONS:
        raw = bytes.fromhex(ptz_cmd(action, speed=77, preset=9))
        assert len(raw) == 8 and raw[0] == 0xA5 and sum(raw[:7]) % 256 == raw[7]
        cmd = parse_ptz(raw.hex())
        if action == "right":
            assert (cmd.pan, cmd.tilt, cmd.pan_speed) == (1, 0, 77)
        if action == "downleft":
            assert (cmd.pan, cmd.tilt, cmd.pan_speed, cmd.tilt_speed) == (-1, -1, 77, 77)
        if action == "zoomout":
            assert (cmd.zoom, cmd.zoom_speed) == (-1, 77 >> 4)
        if action.startswith("preset_"):
            assert (cmd.preset_op, cmd.preset) == (action.split("_")[1], 9)
        if action == "irisopen":
            assert cmd.iris == 1 and cmd.focus == 0
    assert parse_ptz(ptz_cmd("stop")).stop
    bad = ptz_cmd("up", 0xFA)[:-2] + "B8"
    with pytest.raises(PtzError):
        parse_ptz(bad)
    with pytest.raises(PtzError):
        parse_ptz("A51F010800FA00C7")  # wrong check nibble
    with pytest.raises(PtzError):
        ptz_cmd("preset_set")  # without a preset number


# ---- record search -------------------------------------------------------------------------------------------------
@SQLITE
def test_a_month_of_recordings_arrives_in_pages_and_is_assembled(store: Store) -> None:
    async def scenario() -> None:
        server = GbServer(_config(), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=2, heartbeat=0.3, record_page=8)
        rs = RecordSearch(server)
        sent: list[bytes] = []
        original = sim.message

        async def counting(dev, body, timeout=5.0, method="MESSAGE"):  # noqa: ANN001, ANN202
            if b"RecordInfo" in body:
                sent.append(body)
            return await original(dev, body, timeout=timeout, method=method)

        sim.message = counting  # type: ignore[method-assign]
        try:
            await sim.start()
            dev = sim.devices[0]
            channel = dev.channels[1]
            now = datetime.now(UTC)
            start, end = now - timedelta(days=31), now
            spans = await rs.search(dev.device_id, channel["channel_id"], start, end, timeout=8)
            truth = sim.recordings(channel, start, end)
            pages = math.ceil(len(truth) / 8)
            assert pages >= 4 and len(sent) == pages  # a month is ~100 spans, 8 a MESSAGE, all assembled
            # sorted, disjoint, the day files joined at midnight, the gaps kept
            assert all(a.end < b.start for a, b in zip(spans, spans[1:], strict=False))
            assert 3 <= len(spans) < len(truth)
            covered = sum((s.end - s.start).total_seconds() for s in spans)
            assert abs(covered - sum((e - s).total_seconds() for s, e in truth)) < 2 * 31 + 5
            assert all(s.device_id == channel["channel_id"] for s in spans)
            assert all(b.start - a.end > timedelta(seconds=1) for a, b in zip(spans, spans[1:], strict=False))
            assert any(s.start.astimezone(CHINA_TZ).date() != s.end.astimezone(CHINA_TZ).date()
                       for s in spans)  # across midnight: one span
            # a device that stops answering half-way: what arrived is kept
            sent.clear()

            async def dropping(dev, body, timeout=5.0, method="MESSAGE"):  # noqa: ANN001, ANN202
                if b"RecordInfo" in body:
                    sent.append(body)
                    if len(sent) > 2:
                        return None
                return await original(dev, body, timeout=timeout, method=method)

            sim.message = dropping  # type: ignore[method-assign]
            partial = await rs.search(dev.device_id, channel["channel_id"], start, end, timeout=1.0)
            assert 0 < sum((s.end - s.start).total_seconds() for s in partial) < covered / 2
        finally:
            rs.close()
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


# ---- PTZ on the simulator, directly and through the cascade ------------------------------------------------------
@SQLITE
def test_simulated_camera_turns_with_ptz_and_presets(store: Store) -> None:
    async def scenario() -> None:
        server = GbServer(_config(query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=2, heartbeat=0.3)
        try:
            await sim.start()
            dev = sim.devices[0]
            cid = dev.channels[0]["channel_id"]
            assert await _wait(lambda: dev.device_id in server.devices and server.devices[dev.device_id].registered)
            assert await device_control(server, dev.device_id, cid, ptz_cmd("preset_set", preset=1)) == 200
            assert await _wait(lambda: 1 in dev.ptz.get(cid, {}).get("presets", {}))
            assert await device_control(server, dev.device_id, cid, ptz_cmd("upright", speed=100)) == 200
            assert await _wait(lambda: dev.ptz[cid]["pan"] > 10 and dev.ptz[cid]["tilt"] > 10)  # moving on its own
            assert await device_control(server, dev.device_id, cid, ptz_cmd("stop")) == 200
            await asyncio.sleep(0.1)
            stopped = sim.ptz_state(dev, cid)["pan"]
            await asyncio.sleep(0.2)
            assert sim.ptz_state(dev, cid)["pan"] == stopped > 10
            assert dev.channels[1]["channel_id"] not in dev.ptz  # the other channel did not move
            assert await device_control(server, dev.device_id, cid, ptz_cmd("preset_call", preset=1)) == 200
            assert await _wait(lambda: dev.ptz[cid]["pan"] == 0.0 and dev.ptz[cid]["tilt"] == 0.0)
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())


@SQLITE
def test_upper_platform_ptz_is_relayed_for_shared_channels_only(store: Store, tmp_path) -> None:
    upper_url = f"sqlite:///{tmp_path / 'upper.db'}"
    upgrade(upper_url)
    upper_store = Store(upper_url)
    upper_id, lower_id = "35000000002000000001", "35040000002000000001"

    async def scenario() -> None:
        upper = GbServer(_config(server_id=upper_id, password="upper-secret", query_on_register=False), upper_store)
        await upper.start()
        lower = GbServer(_config(server_id=lower_id, uppers=[{"server_id": upper_id, "host": "127.0.0.1",
                                                               "port": upper.port, "password": "upper-secret",
                                                               "keepalive": 0.2}]), store)
        await lower.start()
        sim = Simulator(("127.0.0.1", lower.port), count=1, channels=2, heartbeat=0.2, server_id=lower_id)
        svc = DeviceService(store)
        try:
            await sim.start()
            dev = sim.devices[0]
            assert await _wait(lambda: len(svc.channels("gb28181", dev.device_id)) == 2)
            shared, private = (c["channel_id"] for c in dev.channels)
            svc.upsert("gb28181", dev.device_id, review="approved", community_code=LIEDONG)
            with store.session() as s:
                s.scalar(select(Channel).where(Channel.channel_id == shared)).shared = True
            await lower.cascade.refresh_shared()
            assert await _wait(lambda: upper.devices.get(lower_id) is not None and upper.devices[lower_id].registered)
            assert await device_control(upper, lower_id, shared, ptz_cmd("left", speed=50)) == 200
            assert await _wait(lambda: shared in dev.ptz_motion)
            assert await _wait(lambda: dev.ptz[shared]["pan"] > 300)  # turning left from 0
            assert await device_control(upper, lower_id, private, ptz_cmd("left", speed=50)) == 404
            assert private not in dev.ptz
        finally:
            await sim.stop()
            await lower.stop()
            await upper.stop()

    asyncio.run(scenario())


# ---- retention measured --------------------------------------------------------------------------------------------
@SQLITE
def test_retention_is_measured_and_a_short_one_opens_a_work_order(store: Store) -> None:
    async def scenario() -> list[dict]:
        server = GbServer(_config(), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=2, channels=2, heartbeat=0.3, record_page=8)
        short, good = sim.devices
        for ch in short.channels[1:]:
            ch["retention_days"] = 15  # one channel of the first NVR overwrites after 15 days
        check = RetentionCheck(server, store, timeout=4)
        svc = DeviceService(store)
        try:
            await sim.start()
            assert await _wait(lambda: all(len(svc.channels("gb28181", d.device_id)) == 2 for d in sim.devices))
            await server.drain()
            t = datetime.now(UTC)
            results = await check.run_once(t)
            # what the camera really keeps: its oldest recording (the simulator's days have gaps, so an NVR that
            # overwrites after 35 days may hold a little less when the 35th day back starts in a gap)
            oldest = {c["channel_id"]: min(s_ for s_, _ in sim.recordings(c, t - timedelta(days=40), t, now=t))
                      for d in sim.devices for c in d.channels}
            return results, {c: round((t - o).total_seconds() / 86400, 1) for c, o in oldest.items()}
        finally:
            check.search.close()
            await sim.stop()
            await server.stop()

    results, kept = asyncio.run(scenario())
    measured = {r["channel_id"]: r["retention_days"] for r in results}
    assert measured.keys() == kept.keys() and len(measured) == 4
    assert all(measured[c] == pytest.approx(kept[c], abs=0.11) for c in kept), (measured, kept)
    assert sorted(v < 30 for v in measured.values()) == [False, False, False, True]  # one 15-day channel
    with store.session() as s:
        devices = {d.device_id: d for d in s.scalars(select(Device).where(Device.protocol == "gb28181"))}
        orders = s.scalars(select(WorkOrder).where(WorkOrder.cause == "retention")).all()
        chans = {c.channel_id: c.attributes for c in s.scalars(select(Channel))}
    by_days = sorted(devices.values(), key=lambda d: d.attributes["retention_days"])
    per_device: dict[str, list[float]] = {}
    for r in results:
        per_device.setdefault(r["device_id"], []).append(r["retention_days"])
    least = sorted(min(v) for v in per_device.values())
    assert [d.attributes["retention_days"] for d in by_days] == least and least[0] < 30 <= least[1]
    assert all(d.attributes["retention_source"] == "measured" for d in by_days)
    assert [o.device_pk for o in orders] == [by_days[0].id] and f"{least[0]:g}" in orders[0].detail
    assert all("retention_measured_at" in chans[c] for c in measured)
    # the construction spec check reads the measured value
    from anfang.construction.specs import check_camera

    now = datetime.now(UTC)
    findings = [{f.item for f in check_camera(d.attributes, now, now)} for d in by_days]
    assert "retention" in findings[0] and "retention" not in findings[1]


# ---- API -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def api(store, tmp_path) -> Iterator[tuple[TestClient, SimThread]]:
    build(store)
    sim = SimThread(count=2, channels=1, width=160, height=90)
    svc = DeviceService(store)
    for dev, comm in zip(sim.sim.devices, (LIEDONG, FUXI), strict=True):
        svc.upsert("gb28181", dev.device_id, name=f"{comm}NVR", community_code=comm, password=dev.password,
                   type_code="118", review="approved")
    with store.session() as s:  # the first NVR at an address of the officer's 警务区 (LD-1), the second elsewhere
        area = s.scalar(select(User.police_area_id).where(User.username == "police"))
        here = s.scalar(select(Address.id).where(Address.police_area_id == area).limit(1))
        there = s.scalar(select(Address.id).where(Address.police_area_id != area).limit(1))
        for dev, addr in zip(sim.sim.devices, (here, there), strict=True):
            s.scalar(select(Device).where(Device.device_id == dev.device_id)).address_id = addr
    settings = Settings(data_dir=tmp_path, database_url=store.url, sip_enabled=True, sip_port=0,
                        sip_host="127.0.0.1", media_bind_host="127.0.0.1")
    try:
        app = create_app(settings, store)
        if not any(getattr(r, "path", "") == "/api/video/ptz" for r in app.routes):
            from anfang.gb28181.records_views import install

            install(app)
        with TestClient(app) as c:
            sim.start(c.app.state.gb28181.port)
            assert wait_sync(lambda: all(len(svc.channels("gb28181", d.device_id)) == 1 for d in sim.sim.devices))
            yield c, sim
    finally:
        sim.stop()


@SQLITE
def test_records_and_ptz_api_scope_roles_and_audit(api) -> None:
    c, sim = api
    mine, theirs = (d.channels[0]["channel_id"] for d in sim.sim.devices)
    yesterday = (datetime.now(CHINA_TZ) - timedelta(days=1)).date().isoformat()
    login(c, "police")  # 列东 警务区 LD-1
    r = c.get(f"/api/video/records?channel_id={mine}&date={yesterday}")
    assert r.status_code == 200, r.text
    day = r.json()
    d = datetime.fromisoformat(yesterday).date()
    truth = sim.sim.day_spans(mine, d)
    midnight = datetime.fromisoformat(day["end"])
    if truth[-1][1] == midnight - timedelta(seconds=1) and sim.sim.day_spans(
            mine, d + timedelta(days=1))[0][0] == midnight:  # joined with tomorrow's, cut at midnight
        truth[-1] = (truth[-1][0], midnight)
    assert [(x["start"], x["end"]) for x in day["spans"]] == [(s.isoformat(), e.isoformat()) for s, e in truth]
    assert day["start"].endswith("16:00:00+00:00")  # local midnight in UTC
    assert c.get(f"/api/video/records?channel_id={theirs}&date={yesterday}").status_code == 403
    # today's timeline carries the camera's alarm
    assert sim.run(sim.sim.alarm(sim.sim.devices[0], description="周界入侵报警")) == 200
    today = datetime.now(CHINA_TZ).date().isoformat()
    assert wait_sync(lambda: any(e["kind"] == "alarm" and "周界" in e["title"] for e in c.get(
        f"/api/video/records?channel_id={mine}&date={today}").json()["events"]))
    assert c.get(f"/api/video/records?channel_id={mine}&date=2026-13-01").status_code == 422
    r = c.post("/api/video/ptz", json={"channel_id": mine, "action": "right", "speed": 60})
    assert r.status_code == 200 and r.json()["ptz_cmd"] == ptz_cmd("right", 60)
    dev = sim.sim.devices[0]
    assert wait_sync(lambda: dev.ptz.get(mine, {}).get("pan", 0) > 5)
    assert c.post("/api/video/ptz", json={"channel_id": mine, "action": "stop"}).status_code == 200
    assert c.post("/api/video/ptz", json={"channel_id": theirs, "action": "left"}).status_code == 403
    assert c.post("/api/video/ptz", json={"channel_id": mine, "action": "spin"}).status_code == 422
    login(c, "property")  # may watch 列东's cameras, may not steer them (ptz_roles)
    assert c.get(f"/api/video/records?channel_id={mine}&date={yesterday}").status_code == 200
    r = c.post("/api/video/ptz", json={"channel_id": mine, "action": "left"})
    assert r.status_code == 403 and "云台" in r.json()["error"]["message"]
    with c.app.state.store.session() as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.action.like("video.%"))))
    assert actions.count("video.ptz") == 2 and actions.count("video.records.search") >= 3


@SQLITE
def test_ptz_pad_is_shown_to_the_roles_of_the_setting(api) -> None:
    """The console's PTZ pad (device page and 监控中心) follows the setting ``ptz_roles``, as the API does."""
    c, sim = api
    mine = sim.sim.devices[0].channels[0]["channel_id"]
    with c.app.state.store.session() as s:
        pk = s.scalar(select(Device.id).where(Device.device_id == sim.sim.devices[0].device_id))
    login(c, "police")
    assert 'data-ptz="1"' in c.get(f"/devices/{pk}").text and 'data-ptz="1"' in c.get("/video/wall").text
    settings = c.app.state.settings
    old = settings.ptz_roles
    settings.ptz_roles = ["city_admin"]  # this city lets only its admins steer
    try:
        assert 'data-ptz="0"' in c.get(f"/devices/{pk}").text and 'data-ptz="0"' in c.get("/video/wall").text
        assert c.post("/api/video/ptz", json={"channel_id": mine, "action": "left"}).status_code == 403
        settings.ptz_roles = ["property_staff"]
        login(c, "property")
        assert 'data-ptz="1"' in c.get(f"/devices/{pk}").text
    finally:
        settings.ptz_roles = old
