"""Device placement (issue 18, items 1 and 2): a camera that registers itself arrives unplaced; it is placed from
the 待安置 list (address or map point), in bulk from CSV, or from the standard's own fields, and the officer's
device list and warnings follow the placement. A warning from an unplaced camera goes to its county's duty desk,
marked so, never to nobody."""

from __future__ import annotations

import csv

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.events import Event, EventKind
from anfang.devices.models import Device
from anfang.devices.service import DeviceService
from anfang.registry.models import Address
from anfang.warnings.service import Candidate, WarningService
from test_web import login
from world import build

LD = "350404001001"  # 列东社区 (警务区 LD-1)


def _app(store, tmp_path) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store))


def _face(device_id: str) -> Candidate:
    e = Event(kind=EventKind.face_capture, source=device_id, data={})
    return Candidate(rule="face.watchlist", category="face", title="布控人员出现", source=device_id,
                     dedup_key=f"face:1:{device_id}", severity=1, event=e)


def test_officer_and_grid_worker_see_the_devices_placed_in_their_community(store, tmp_path) -> None:
    build(store)
    svc = DeviceService(store)
    svc.upsert("gb28181", "35040400001320000001", name="列东社区南门", community_code=LD)  # how the demo places
    svc.upsert("gb28181", "35040500001320000001", name="府西社区北门", community_code="350405001001")
    for user, expected in (("property", 1), ("police", 1), ("grid", 1), ("county", 1)):
        with _app(store, tmp_path) as c:
            login(c, user)
            js = c.get("/api/devices").json()
            assert js["total"] == expected, (user, js)
            assert js["items"][0]["device_id"] == "35040400001320000001"
            if user == "police":
                assert "35040400001320000001" in c.get("/devices").text


def test_unplaced_camera_warns_the_county_duty_desk_then_follows_its_placement(store, tmp_path) -> None:
    build(store)
    dev_id = "35040400001320000009"  # registered itself: GB id of 三元区, no place
    DeviceService(store).upsert("gb28181", dev_id, name=dev_id, review="pending")
    warnings = WarningService(store)
    v = warnings.raise_warning(_face(dev_id))
    assert v["county_code"] == "350404" and v["data"]["unplaced_device"] is True
    assert "county" in warnings.recipients(v)  # the county duty desk, marked as from an unplaced device
    with _app(store, tmp_path) as c:
        login(c, "county")
        todo = c.get("/api/devices/unplaced").json()
        assert [d["device_id"] for d in todo["items"]] == [dev_id] and todo["items"][0]["placement"] == "unplaced"
        pk = todo["items"][0]["id"]
        page = c.get("/devices/unplaced")
        assert page.status_code == 200 and "待安置" in page.text and dev_id in page.text
        # the map to pick from: his county's addresses as dots (and the script that reads the click back)
        assert 'data-testid="place-map"' in page.text and "/static/placement.js" in page.text
        assert page.text.count('class="map-addr"') >= 2 and "府西" not in page.text.split("place-map")[1][:20000]
        # placed at a building address of 列东社区: community, 警务区 and grid follow
        with store.session() as s:
            addr = s.scalar(select(Address).where(Address.community_code == LD, Address.level == "building"))
        r = c.post(f"/api/devices/{pk}/placement", json={"address_code": addr.code})
        assert r.status_code == 200, r.text
        assert r.json()["community_code"] == LD and r.json()["placement"] == "placed"
        assert c.get("/api/devices/unplaced").json()["items"] == []
        # another county's admin cannot place it
        bad = c.post(f"/api/devices/{pk}/placement", json={"address_code": "no-such-address"})
        assert bad.status_code == 422 and bad.json()["error"]["code"]
    with _app(store, tmp_path) as c:
        login(c, "police")
        assert [d["device_id"] for d in c.get("/api/devices").json()["items"]] == [dev_id]
    w2 = _face(dev_id)
    w2.dedup_key += ":2"
    v2 = warnings.raise_warning(w2)
    assert v2["police_area_id"] == addr.police_area_id and not v2["data"].get("unplaced_device")
    assert "police" in warnings.recipients(v2) and "county" not in warnings.recipients(v2)


def test_thousand_devices_placed_from_one_csv_with_row_report(store, tmp_path) -> None:
    w = build(store)
    ids = [f"3504040000132{i:07d}" for i in range(1000)]
    with store.session() as s:
        s.execute(insert(Device), [dict(protocol="gb28181", device_id=i, name=i, review="pending", status="online",
                                        attributes={}) for i in ids])
        building = s.scalar(select(Address).where(Address.community_code == LD, Address.level == "building"))
        # a point on the map: a building of 下洋村 with its own coordinates
        village = s.scalar(select(Address).where(Address.community_code == "350404001201",
                                                 Address.level == "building"))
        village.lon, village.lat = 117.70, 26.30
    path = tmp_path / "placement.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        out = csv.writer(f)
        out.writerow(["设备编码", "地址编码", "经度", "纬度"])
        for n, device_id in enumerate(ids):
            if n % 2:
                out.writerow([device_id, building.code, "", ""])
            else:
                out.writerow([device_id, "", "117.7001", "26.3001"])
        out.writerow(["35040400001329999999", building.code, "", ""])  # no such device
        out.writerow([ids[0], "", "200", "26.3"])  # not a coordinate
        out.writerow([ids[1], "nowhere", "", ""])  # no such address
    with _app(store, tmp_path) as c:
        login(c, "county")
        with path.open("rb") as f:
            r = c.post("/api/devices/placement/import", files={"file": ("placement.csv", f, "text/csv")})
        assert r.status_code == 200, r.text
        rep = r.json()
        assert rep["placed"] == 1000 and len(rep["errors"]) == 3
        assert {e["row"] for e in rep["errors"]} == {1002, 1003, 1004}
        assert c.get("/api/devices/unplaced").json()["items"] == []
    with store.session() as s:
        placed = dict(s.execute(select(Device.device_id, Device.community_code)).all())
    assert placed[ids[1]] == LD and placed[ids[0]] == "350404001201"
    with _app(store, tmp_path) as c:
        login(c, "police")  # LD-1 covers 列东社区, not 下洋村 (XY-1)
        assert c.get("/api/devices").json()["total"] == 500
    v = WarningService(store).raise_warning(_face(ids[1]))
    assert v["police_area_id"] == w.police_area["LD-1"]
    v0 = WarningService(store).raise_warning(_face(ids[0]))
    assert v0["police_area_id"] == w.police_area["XY-1"] and v0["community_code"] == "350404001201"


def test_devices_placed_from_an_xlsx_sheet(store, tmp_path) -> None:
    """The same bulk placement from XLSX (the file installers keep): good rows placed, a bad one reported by row."""
    from openpyxl import Workbook

    build(store)
    svc = DeviceService(store)
    for i in range(3):
        svc.upsert("gb28181", f"350404000013200001{i:02d}", name=f"IPC{i}", review="pending")
    with store.session() as s:
        building = s.scalar(select(Address.code).where(Address.community_code == LD, Address.level == "building"))
    wb = Workbook()
    ws = wb.active
    ws.append(["设备编码", "地址编码"])
    for i in range(3):
        ws.append([f"350404000013200001{i:02d}", building])
    ws.append(["35040400001320000199", building])  # no such device: row 5
    path = tmp_path / "安置.xlsx"
    wb.save(path)
    with _app(store, tmp_path) as c:
        login(c, "county")
        with path.open("rb") as f:
            r = c.post("/api/devices/placement/import", files={"file": ("安置.xlsx", f, "application/vnd.openxml"
                                                                        "formats-officedocument.spreadsheetml.sheet")})
        assert r.status_code == 200, r.text
        assert r.json()["placed"] == 3 and [e["row"] for e in r.json()["errors"]] == [5]
    assert {svc.get("gb28181", f"350404000013200001{i:02d}").community_code for i in range(3)} == {LD}


def test_placement_proposed_from_the_devices_own_fields(store) -> None:
    from anfang.devices.placement import propose

    build(store)
    svc = DeviceService(store)
    svc.upsert("viid", "35040400001190000001", name="APE")
    svc.upsert("gb28181", "35040400001180000002", name="NVR")
    assert propose(store, "viid", "35040400001190000001", place_code=LD)  # GA/T 1400 PlaceCode
    assert propose(store, "gb28181", "35040400001180000002", civil_code="350404001201")  # catalog CivilCode
    a, b = svc.get("viid", "35040400001190000001"), svc.get("gb28181", "35040400001180000002")
    assert (a.community_code, a.placement) == (LD, "pending")
    assert (b.community_code, b.placement) == ("350404001201", "pending")
    # a position (GA/T 1400 Longitude/Latitude, GB/T 28181 catalog Longitude/Latitude) and a catalog Address
    with store.session() as s:
        village = s.scalar(select(Address).where(Address.community_code == "350404001201",
                                                 Address.level == "building"))
        village.lon, village.lat = 117.70, 26.30
        ld_building = s.scalar(select(Address).where(Address.community_code == LD, Address.level == "building"))
        ld_name, ld_id = ld_building.full_name, ld_building.id
    svc.upsert("viid", "35040400001190000003", name="APE3")
    svc.upsert("gb28181", "35040400001180000004", name="NVR4")
    assert propose(store, "viid", "35040400001190000003", longitude="117.7003", latitude="26.3002")
    assert propose(store, "gb28181", "35040400001180000004", address_text=ld_name)
    c, d = svc.get("viid", "35040400001190000003"), svc.get("gb28181", "35040400001180000004")
    assert (c.community_code, c.placement, c.longitude) == ("350404001201", "pending", 117.7003)
    assert (d.community_code, d.address_id, d.placement) == (LD, ld_id, "pending")
    # what an administrator placed is never overwritten by what the device says
    svc.upsert("gb28181", "35040400001180000002", community_code=LD, placement="placed")
    assert not propose(store, "gb28181", "35040400001180000002", civil_code="350405001001")
    assert svc.get("gb28181", "35040400001180000002").community_code == LD


def test_county_admin_confirms_the_place_a_device_reported(store, tmp_path) -> None:
    """A place the device reported (pending) is confirmed from the 待安置 list with one action, without typing
    the address again; a device that reported nothing has nothing to confirm."""
    from anfang.devices.placement import propose

    build(store)
    svc = DeviceService(store)
    svc.upsert("viid", "35040400001190000001", name="APE")
    svc.upsert("gb28181", "35040400001320000009", name="IPC")  # reported nothing: unplaced
    assert propose(store, "viid", "35040400001190000001", place_code=LD)
    with _app(store, tmp_path) as c:
        login(c, "county")
        todo = {d["device_id"]: d for d in c.get("/api/devices/unplaced").json()["items"]}
        pending, unplaced = todo["35040400001190000001"], todo["35040400001320000009"]
        assert pending["placement"] == "pending" and pending["community_code"] == LD
        page = c.get("/devices/unplaced").text
        assert page.count('data-testid="confirm-place"') == 1  # offered for the pending device only
        assert '<tr data-placement="pending"><td class="mono">35040400001190000001</td><td>APE</td><td>VIID</td>' \
               '<td>待确认</td>' in page  # as the help text calls it (not 待审核, the registration review)
        bad = c.post(f"/api/devices/{unplaced['id']}/placement", json={"confirm": True})
        assert bad.status_code == 422 and bad.json()["error"]["message"]
        r = c.post(f"/api/devices/{pending['id']}/placement", json={"confirm": True})
        assert r.status_code == 200, r.text
        assert (r.json()["placement"], r.json()["community_code"]) == ("placed", LD)
        assert r.json()["police_area_id"] == pending["police_area_id"] is not None
        assert [d["device_id"] for d in c.get("/api/devices/unplaced").json()["items"]] == ["35040400001320000009"]
        # the console form does the same
        assert propose(store, "viid", "35040400001190000001", place_code=LD) is False  # placed: never overwritten
        svc.upsert("gb28181", "35040400001320000008", name="IPC2")
        assert propose(store, "gb28181", "35040400001320000008", civil_code="350404001201")
        pk = svc.get("gb28181", "35040400001320000008").id
        page = c.get("/devices/unplaced").text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        form = c.post(f"/devices/{pk}/placement", data={"csrf_token": token, "confirm": "1"},
                      follow_redirects=False)
        assert form.status_code == 303 and "error" not in form.headers["location"]
    dev = svc.get("gb28181", "35040400001320000008")
    assert (dev.placement, dev.community_code) == ("placed", "350404001201")


def test_ape_put_with_place_code_and_gb_catalog_civil_code_propose_a_place(store, tmp_path) -> None:
    """GA/T 1400 PUT /VIID/APEs PlaceCode and a GB/T 28181 catalog's CivilCode no longer land in attributes only:
    the device is placed ``pending`` (the county admin confirms it from the 待安置 list)."""
    import asyncio

    import httpx
    import orjson

    from anfang.gb28181.server import GbConfig, GbServer
    from anfang.gb28181.simulator import Simulator
    from anfang.viid.simulator import ape_id

    build(store)
    ape = ape_id(1)
    settings = Settings(data_dir=tmp_path, database_url=store.url, viid_password="ape-secret")
    with TestClient(create_app(settings, store)) as c:
        reg = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": ape}}),
                     headers={"Content-Type": "application/VIID+JSON"}, auth=httpx.DigestAuth(ape, "ape-secret"))
        assert reg.status_code == 200
        r = c.put("/VIID/APEs", json={"APEListObject": {"APEObject": [
            {"ApeID": ape, "Name": "列东社区南门抓拍", "PlaceCode": LD, "Longitude": 0, "Latitude": 0}]}},
            headers={"User-Identify": ape, "Content-Type": "application/VIID+JSON"})
        assert r.status_code == 200
    dev = DeviceService(store).get("viid", ape)
    assert (dev.community_code, dev.placement) == (LD, "pending") and dev.police_area_id is not None

    async def scenario() -> None:
        server = GbServer(GbConfig(host="127.0.0.1", port=0, heartbeat_interval=0.4, tick=0.1), store)
        await server.start()
        sim = Simulator(("127.0.0.1", server.port), count=1, channels=2, heartbeat=0.2)
        for ch in sim.devices[0].channels:
            ch["civil_code"] = "350404001201"  # 下洋村
        try:
            await sim.start()
            for _ in range(100):
                d = DeviceService(store).get("gb28181", sim.devices[0].device_id)
                if d is not None and d.placement == "pending":
                    break
                await asyncio.sleep(0.05)
        finally:
            await sim.stop()
            await server.stop()
        d = DeviceService(store).get("gb28181", sim.devices[0].device_id)
        assert (d.community_code, d.placement) == ("350404001201", "pending")

    asyncio.run(scenario())


def test_capture_device_list_scoped_like_the_device_list(store, tmp_path) -> None:
    """/viid/apes uses the same device scope as /devices: the county admin sees the unplaced GA/T 1400 camera his
    county's id names (his to place), the officer the cameras placed in his 警务区, nobody another county's."""
    build(store)
    svc = DeviceService(store)
    svc.upsert("viid", "35040400001190000007", name="自注册卡口", review="pending")  # registered itself, unplaced
    svc.upsert("viid", "35040400001190000008", name="列东卡口", community_code=LD)
    svc.upsert("viid", "35040500001190000009", name="府西卡口", community_code="350405001001")
    seen = {}
    for user in ("county", "police"):
        with _app(store, tmp_path) as c:
            login(c, user)
            page = c.get("/viid/apes")
            assert page.status_code == 200
            seen[user] = {d for d in ("35040400001190000007", "35040400001190000008", "35040500001190000009")
                          if d in page.text}
    assert seen["county"] == {"35040400001190000007", "35040400001190000008"}
    assert seen["police"] == {"35040400001190000008"}
