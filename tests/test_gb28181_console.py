"""Devices in the console and /api/devices: online state, last keepalive, channels with Chinese names, history,
alarms — scoped to the role's jurisdiction; and the app running its SIP server with demo devices."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from anfang.app import create_app
from anfang.config import Settings
from anfang.devices.models import Device
from anfang.devices.service import DeviceService
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.warnings.models import Warning as WarningRow
from test_web import login
from world import build


def _populate(store) -> tuple[str, str, list[str]]:
    sim = Simulator(("127.0.0.1", 1), count=2, channels=3, heartbeat=0.2, catalog_page=2)
    a, b = sim.devices
    svc = DeviceService(store)
    svc.upsert("gb28181", a.device_id, name="列东社区南门NVR", community_code="350404001001", password="pw-a")
    svc.upsert("gb28181", b.device_id, name="凤岗NVR", community_code="350405001001", password="pw-b")
    a.password, b.password = "pw-a", "pw-b"

    async def scenario() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=0.4, tick=0.1), store)
        await server.start()
        sim.server = ("127.0.0.1", server.port)
        try:
            await sim.start()
            for _ in range(100):
                if all(len(svc.channels("gb28181", d.device_id)) == 3 for d in sim.devices):
                    break
                await asyncio.sleep(0.05)
            await sim.alarm(a, description="烟感报警")
            sim.power_off(b)
            for _ in range(60):
                if server.devices[b.device_id].status == "offline":
                    break
                await asyncio.sleep(0.05)
            await server.drain()
        finally:
            await sim.stop()
            await server.stop()

    asyncio.run(scenario())
    return a.device_id, b.device_id, [c["name"] for c in a.channels]


def test_device_pages_and_api_scoped(store, tmp_path) -> None:
    build(store)
    a, b, names = _populate(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "city")
        items = {d["device_id"]: d for d in c.get("/api/devices").json()["items"]}
        assert items[a]["status"] == "online" and items[b]["status"] == "offline"
        assert items[a]["channels"] == 3 and items[a]["last_seen"]
        page = c.get("/devices")
        assert page.status_code == 200 and a in page.text and "在线" in page.text and "离线" in page.text
        detail = c.get(f"/devices/{items[a]['id']}")
        assert all(n in detail.text for n in names)  # Chinese channel names, undamaged
        assert "烟感报警" in detail.text and "注册" in detail.text
        js = c.get(f"/api/devices/{items[b]['id']}").json()
        assert [h["reason"] for h in js["history"]] == ["timeout", "register"]
        assert c.get("/devices?lang=en").text.count("Video devices") >= 1
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")  # 三元区: sees the 列东 device, not the 沙县 one
        ids = {d["device_id"] for d in c.get("/api/devices").json()["items"]}
        assert ids == {a}
        assert c.get(f"/api/devices/{items[b]['id']}").status_code == 404
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "resident")
        assert c.get("/api/devices").status_code == 403


def test_app_runs_sip_server_with_demo_devices(store, tmp_path) -> None:
    build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url, sip_enabled=True, sip_port=0,
                        sip_host="127.0.0.1", sip_simulate=3, sip_heartbeat_interval=1.0)
    with TestClient(create_app(settings, store)) as c:
        login(c, "city")
        deadline = time.monotonic() + 10
        items: list[dict] = []
        while time.monotonic() < deadline:
            items = c.get("/api/devices").json()["items"]
            if len(items) == 3 and all(i["status"] == "online" and i["channels"] for i in items):
                break
            time.sleep(0.2)
        assert len(items) == 3 and all(i["status"] == "online" for i in items), items
        assert {i["transport"] for i in items} == {"UDP", "TCP"}
        assert all(i["community_code"] for i in items)  # placed in the demo's communities


def test_demo_keeps_recorded_cameras_alive_instead_of_flooding_offline_warnings(store, tmp_path) -> None:
    """Cameras the demo data records as online (construction demo) have no live peer: the demo registers them and
    sends their keepalives, so they stay online past the heartbeat timeout and raise no 设备离线 warning."""
    build(store)
    recorded = ["35040400001320000101", "35040400001320000102"]
    svc = DeviceService(store)
    for did in recorded:
        svc.upsert("gb28181", did, name="小区出入口摄像机", community_code="350404001001", type_code="132")
    with store.session() as s:
        s.execute(update(Device).where(Device.device_id.in_(recorded)).values(status="online"))
    settings = Settings(data_dir=tmp_path, database_url=store.url, sip_enabled=True, sip_port=0,
                        sip_host="127.0.0.1", sip_simulate=1, sip_heartbeat_interval=2.0)
    with TestClient(create_app(settings, store)) as c:
        login(c, "city")
        time.sleep(8)  # past the 6 s timeout (3 keepalives missed) of a device that sends none
        status = {i["device_id"]: i["status"] for i in c.get("/api/devices").json()["items"]}
        assert all(status[d] == "online" for d in recorded), status
    with store.session() as s:
        assert not s.scalars(select(WarningRow).where(WarningRow.rule == "device.offline",
                                                      WarningRow.source.in_(recorded))).all()


def test_manual_add_with_password(store, tmp_path) -> None:
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")
        body = {"device_id": "35040400001320000001", "name": "列东社区东门", "password": "secret-1",
                "community_code": "350404001001"}
        r = c.post("/api/devices", json=body)
        assert r.status_code == 201 and r.json()["review"] == "approved" and r.json()["type_code"] == "132"
        assert DeviceService(store).get("gb28181", body["device_id"]).password == "secret-1"
        other = dict(body, device_id="35040500001320000001", community_code="350405001001")
        assert c.post("/api/devices", json=other).status_code == 403  # another county
        bad = dict(body, device_id="123")
        assert c.post("/api/devices", json=bad).status_code == 422
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "police")
        assert c.post("/api/devices", json=body).status_code == 403
