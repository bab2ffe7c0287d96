"""Camera clocks (issue 18, item 5): a camera 8 hours behind must not get its warning escalated seconds after it
arrived — lifecycle timers run on receive time, the shot time is kept and shown; a device whose clock is off is
flagged (device page, operations work order), and a GB/T 28181 device is made to register again and syncs its
clock from the Date of the 200."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.operations import fault_signals, raise_work_orders
from anfang.core.events import Event, EventKind
from anfang.devices.service import DeviceService
from anfang.gb28181.server import GbConfig, GbServer
from anfang.gb28181.simulator import Simulator
from anfang.viid.simulator import ape_id, face, face_list, make_jpeg
from anfang.warnings.service import Candidate, WarningService
from test_web import login
from world import build

EIGHT_HOURS = timedelta(hours=8)


def test_warning_timers_run_on_receive_time_and_keep_the_shot_time(store) -> None:
    w = build(store)
    svc = WarningService(store, dedup_minutes=10, escalate_minutes=15)
    now = datetime.now(UTC)
    shot = now - EIGHT_HOURS  # the camera's clock is 8 hours behind
    ev = Event(kind=EventKind.face_capture, source="cam-slow", at=shot, address_id=w.addr["ld-101"])
    c = Candidate(rule="face.watchlist", category="face", title="布控人员", source="cam-slow",
                  dedup_key="face:1:cam-slow", severity=1, event=ev)
    v = svc.raise_warning(c)
    created = datetime.fromisoformat(v["created_at"])
    assert abs((created - now).total_seconds()) < 60  # received now, not 8 hours ago
    assert v["data"]["shot_at"] == shot.isoformat()  # the camera's own time is kept
    assert svc.escalate_overdue(now + timedelta(seconds=7)) == []  # not escalated 7 s after it arrived
    assert [e["id"] for e in svc.escalate_overdue(now + timedelta(minutes=16))] == [v["id"]]
    # a repeat shot 20 camera-minutes later but received within the dedup window folds into it
    again = Candidate(**{**c.__dict__, "event": Event(kind=EventKind.face_capture, source="cam-slow",
                                                      at=shot + timedelta(minutes=20))})
    assert svc.raise_warning(again) is None


def test_viid_camera_with_a_wrong_clock_is_flagged_with_a_work_order(store, tmp_path) -> None:
    build(store)
    ape = ape_id(5)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url, viid_password="pw-1"),
                               store)) as c:
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": ape}}),
                   headers={"Content-Type": "application/VIID+JSON"}, auth=httpx.DigestAuth(ape, "pw-1"))
        assert r.status_code == 200
        DeviceService(store).upsert("viid", ape, name="列东南门抓拍", community_code="350404001001")
        for at in (datetime.now(UTC), datetime.now(UTC) - EIGHT_HOURS):
            body = face_list([face(ape, make_jpeg(5_000, seed=2), at=at)])
            r = c.post("/VIID/Faces", content=orjson.dumps(body),
                       headers={"User-Identify": ape, "Content-Type": "application/VIID+JSON"})
            assert r.status_code == 200
        login(c, "county")  # the capture-device list shows the flag (GA/T 1400 devices are listed there)
        page = c.get("/viid/apes").text
        row = page.split(ape)[1].split("</tr>")[0]
        assert 'data-testid="clock-off"' in row and "时钟偏差 8.0 小时（设备时间慢）" in row
    clock = DeviceService(store).get("viid", ape).attributes["clock"]
    assert clock["off"] is True and -8 * 3600 - 120 < clock["offset_s"] < -8 * 3600 + 120
    signals = [s for s in fault_signals(store) if s.device_id == ape]
    assert [s.cause for s in signals] == ["clock"] and "8.0 小时" in signals[0].detail
    assert [o.cause for o in raise_work_orders(store, signals)] == ["clock"]


def test_gb_device_with_a_wrong_clock_registers_again_and_syncs_from_date(store, tmp_path) -> None:
    build(store)

    async def scenario() -> str:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=0.3, tick=0.1,
                                   query_on_register=False), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=1, heartbeat=0.2)
        try:
            await sim.start()
            dev = sim.devices[0]
            assert abs(dev.clock_offset) < 5 and dev.registrations == 1  # synced from the first 200's Date
            dev.clock_offset = -EIGHT_HOURS.total_seconds()  # its clock drifts (battery, lost NTP)
            assert await sim.alarm(dev) == 200
            for _ in range(100):  # the next keepalive is refused: it registers again and takes the Date
                if dev.registrations >= 2:
                    break
                await asyncio.sleep(0.05)
            assert dev.registrations >= 2 and abs(dev.clock_offset) < 5
            await server.drain()
            flagged = DeviceService(store).get("gb28181", dev.device_id).attributes["clock"]
            assert flagged["off"] is True
            assert await sim.alarm(dev) == 200  # on time now: the flag is cleared
            await server.drain()
            return dev.device_id
        finally:
            await sim.stop()
            await server.stop()

    device_id = asyncio.run(scenario())
    assert DeviceService(store).get("gb28181", device_id).attributes["clock"]["off"] is False
