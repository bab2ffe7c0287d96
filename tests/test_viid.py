"""GA/T 1400 视图库: registration, per-object replies, images, queries, events (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import copy

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.events import EventKind
from anfang.store.engine import Store
from anfang.viid import ids
from anfang.viid.simulator import ape_id, face, face_list, make_jpeg, vehicle, vehicle_list

APE = ape_id(1)
PASSWORD = "ape-secret"
JPEG = make_jpeg(10_000, seed=3)
VIID = "application/VIID+JSON;charset=UTF-8"


def make_settings(tmp_path, db_url: str, **extra) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db_url, viid_password=PASSWORD, **extra)


@pytest.fixture
def client(store: Store, db_url: str, tmp_path):
    app = create_app(make_settings(tmp_path, db_url), store)
    with TestClient(app) as c:
        yield c


def register(c: TestClient, device_id: str = APE, password: str = PASSWORD) -> httpx.Response:
    return c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": device_id}}),
                  headers={"Content-Type": VIID}, auth=httpx.DigestAuth(device_id, password))


def hdr(device_id: str = APE, ctype: str = VIID) -> dict[str, str]:
    return {"User-Identify": device_id, "Content-Type": ctype}


def assert_status_shape(obj: dict) -> None:
    assert set(obj) == {"RequestURL", "StatusCode", "StatusString", "Id", "LocalTime"}
    assert isinstance(obj["StatusCode"], int)
    assert len(obj["LocalTime"]) == 14 and obj["LocalTime"].isdigit()


def test_register_needs_digest_then_succeeds(client: TestClient) -> None:
    first = client.post("/VIID/System/Register", json={"RegisterObject": {"DeviceID": APE}})
    assert first.status_code == 401
    assert first.headers["www-authenticate"].startswith("Digest ")
    assert_status_shape(first.json()["ResponseStatusObject"])
    bad = register(client, password="wrong")
    assert bad.status_code == 401
    ok = register(client)
    assert ok.status_code == 200
    assert ok.headers["content-type"].lower().startswith("application/viid+json")
    status = ok.json()["ResponseStatusObject"]
    assert_status_shape(status)
    assert status["StatusCode"] == 0 and status["Id"] == APE
    # bare body (no RegisterObject wrapper) is accepted too
    other = ape_id(2)
    resp = client.post("/VIID/System/Register", json={"DeviceID": other}, auth=httpx.DigestAuth(other, PASSWORD))
    assert resp.status_code == 200
    assert client.app.state.devices.get("viid", APE).status == "online"


def test_unknown_identity_is_refused_with_status_object(client: TestClient) -> None:
    resp = client.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG)])), headers=hdr())
    assert resp.status_code == 401
    assert_status_shape(resp.json()["ResponseStatusObject"])
    resp = client.get("/VIID/Faces")
    assert resp.status_code == 401 and "error" not in resp.json()


def test_keepalive_unregister_and_time(client: TestClient) -> None:
    assert client.post("/VIID/System/Keepalive", json={"KeepaliveObject": {"DeviceID": APE}},
                       headers=hdr()).status_code == 401
    register(client)
    ka = client.post("/VIID/System/Keepalive", json={"KeepaliveObject": {"DeviceID": APE}}, headers=hdr())
    assert ka.status_code == 200 and ka.json()["ResponseStatusObject"]["StatusCode"] == 0
    t = client.get("/VIID/System/Time").json()["SystemTimeObject"]
    assert set(t) == {"VIIDServerID", "TimeMode", "LocalTime", "TimeZone"} and len(t["LocalTime"]) == 14
    un = client.post("/VIID/System/UnRegister", json={"UnRegisterObject": {"DeviceID": APE}}, headers=hdr())
    assert un.status_code == 200
    assert client.get("/VIID/Faces", headers=hdr()).status_code == 401
    assert client.app.state.devices.get("viid", APE).status == "offline"


def test_batch_with_good_and_bad_objects(client: TestClient) -> None:
    register(client)
    good = face(APE, JPEG)
    bad_id = copy.deepcopy(face(APE, JPEG))
    bad_id["FaceID"] = "123"
    bad_img = face(APE, JPEG)
    bad_img["SubImageList"]["SubImageInfoObject"][0]["Data"] = base64.b64encode(b"GIF89a not a jpeg").decode()
    bad_gender = face(APE, JPEG)
    bad_gender["GenderCode"] = "7"
    # vendor content type, StatusCode-bearing clients etc.: content type is read leniently
    resp = client.post("/VIID/Faces", content=orjson.dumps(face_list([good, bad_id, bad_img, bad_gender])),
                       headers=hdr(ctype="application/json"))
    assert resp.status_code == 200
    statuses = resp.json()["ResponseStatusListObject"]["ResponseStatusObject"]
    assert [s["StatusCode"] for s in statuses] == [0, 8, 8, 8]
    for s in statuses:
        assert_status_shape(s)
        assert s["RequestURL"] == "/VIID/Faces"
    assert statuses[0]["Id"] == good["FaceID"]
    listed = client.get("/VIID/Faces", headers=hdr()).json()["FaceListObject"]["FaceObject"]
    assert [f["FaceID"] for f in listed] == [good["FaceID"]]
    # the same face again (a device retrying) is acknowledged, not stored twice
    again = client.post("/VIID/Faces", content=orjson.dumps(face_list([good])), headers=hdr()).json()
    assert again["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == 0
    assert len(client.get("/VIID/Faces", headers=hdr()).json()["FaceListObject"]["FaceObject"]) == 1


def test_malformed_json_and_oversized_body(store: Store, db_url: str, tmp_path) -> None:
    app = create_app(make_settings(tmp_path, db_url, viid_max_body=50_000), store)
    with TestClient(app) as c:
        register(c)
        resp = c.post("/VIID/Faces", content=b'{"FaceListObject": {"FaceObject": [', headers=hdr())
        assert resp.json()["ResponseStatusObject"]["StatusCode"] == 7
        big = face_list([face(APE, make_jpeg(40_000, 1, 200, 200)) for _ in range(2)])
        resp = c.post("/VIID/Faces", content=orjson.dumps(big), headers=hdr())
        assert resp.status_code == 413
        assert_status_shape(resp.json()["ResponseStatusObject"])
        # ingest still works afterwards
        ok = c.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG)])), headers=hdr())
        assert ok.json()["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == 0


def test_image_stored_and_served_by_id(client: TestClient) -> None:
    register(client)
    f = face(APE, JPEG)
    client.post("/VIID/Faces", content=orjson.dumps(face_list([f])), headers=hdr())
    stored = client.get(f"/VIID/Faces/{f['FaceID']}", headers=hdr()).json()["FaceObject"]
    sub = stored["SubImageList"]["SubImageInfoObject"][0]
    assert "Data" not in sub and sub["StoragePath"] == f"/VIID/Images/{sub['ImageID']}/Data"
    data = client.get(sub["StoragePath"], headers=hdr())
    assert data.status_code == 200 and data.content == JPEG and data.headers["content-type"] == "image/jpeg"


def test_vehicles_query_paging_delete_and_events(client: TestClient) -> None:
    register(client)
    bus = client.app.state.bus
    seen = []

    async def handler(ev):  # noqa: ANN001, ANN202
        seen.append(ev)

    client.portal.call(lambda: bus.subscribe(handler, kinds=[EventKind.vehicle_passage, EventKind.face_capture]))
    client.app.state.devices.upsert("viid", APE, community_code="350402001001")
    client.app.state.viid.sessions.places.clear()
    cars = [vehicle(APE, JPEG, f"闽G1234{i}") for i in range(5)]
    resp = client.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list(cars)), headers=hdr())
    assert [s["StatusCode"] for s in resp.json()["ResponseStatusListObject"]["ResponseStatusObject"]] == [0] * 5
    page = client.get("/VIID/MotorVehicles", params={"RecordStartNo": 2, "PageRecordNum": 2}, headers=hdr())
    assert len(page.json()["MotorVehicleListObject"]["MotorVehicleObject"]) == 2
    assert page.headers["x-total-count"] == "5"
    by_plate = client.get("/VIID/MotorVehicles", params={"MotorVehicle.PlateNo": "闽G12343"}, headers=hdr())
    assert [v["PlateNo"] for v in by_plate.json()["MotorVehicleListObject"]["MotorVehicleObject"]] == ["闽G12343"]
    gone = client.delete(f"/VIID/MotorVehicles/{cars[0]['MotorVehicleID']}", headers=hdr())
    assert gone.json()["ResponseStatusObject"]["StatusCode"] == 0
    assert client.get(f"/VIID/MotorVehicles/{cars[0]['MotorVehicleID']}", headers=hdr()).status_code == 404
    client.portal.call(bus.drain)
    passages = [e for e in seen if e.kind is EventKind.vehicle_passage]
    assert len(passages) == 5
    assert passages[0].community_code == "350402001001" and passages[0].data["plate_no"] == "闽G12340"
    # the same events are in the event log, written in the transaction that stored the records
    from sqlalchemy import select

    from anfang.store.eventlog import EventRecord

    with client.app.state.store.session() as s:
        logged = set(s.scalars(select(EventRecord.id).where(EventRecord.kind == "vehicle_passage")))
    assert logged == {e.id for e in passages}


def test_apes_listed_with_online_state(client: TestClient) -> None:
    register(client)
    other = ape_id(9)
    resp = client.post("/VIID/APEs", json={"APEListObject": {"APEObject": [
        {"ApeID": other, "Name": "三元区岩前村口", "Model": "IPC", "IPAddr": "10.0.0.9", "Port": 80,
         "Longitude": 117.6, "Latitude": 26.2, "IsOnline": "1"}, {"ApeID": "bad"}]}}, headers=hdr())
    assert [s["StatusCode"] for s in resp.json()["ResponseStatusListObject"]["ResponseStatusObject"]] == [0, 8]
    apes = {a["ApeID"]: a for a in client.get("/VIID/APEs", headers=hdr()).json()["APEListObject"]["APEObject"]}
    assert apes[APE]["IsOnline"] == "1" and apes[other]["IsOnline"] == "2"
    assert apes[other]["Name"] == "三元区岩前村口"


def test_ids_and_codes() -> None:
    assert ids.check_source_id("66000000001190123456022017120110101000007") is None
    assert ids.check_object_id("650100000011900000010220171219100515999830656599", "face") is None
    assert ids.check_object_id("650100000011900000010220171219100515999830256599", "face") is not None
    assert ids.check_source_id("6600000000119012345602201713011010100000x") is not None
    assert ids.IMAGE_TYPES["11"] == "人脸图" and ids.IMAGE_TYPES["14"] == "场景图"
    assert ids.normalize_plate("闽g·12345") == "闽G12345"
    assert ids.format_time(ids.parse_time("20260101080000")) == "20260101080000"


def test_standalone_images_and_lenient_bodies(client: TestClient) -> None:
    register(client)
    image_id = ids.make_source_id(APE, ids.parse_time("20261129080000"), 42)
    png = _png()
    body = {"ImageListObject": {"ImageObject": [
        {"ImageInfo": {"ImageID": image_id, "InfoKind": 1, "DeviceID": APE, "ShotTime": "20261129080000",
                       "Type": "14", "FileFormat": "Png"}, "Data": base64.b64encode(png).decode()},
        {"ImageInfo": {"ImageID": "short"}, "Data": base64.b64encode(png).decode()}]}}
    resp = client.post("/VIID/Images", content=orjson.dumps(body), headers=hdr(ctype="application/VIID+JSON"))
    assert [s["StatusCode"] for s in resp.json()["ResponseStatusListObject"]["ResponseStatusObject"]] == [0, 8]
    listed = client.get("/VIID/Images", headers=hdr()).json()["ImageListObject"]["ImageObject"]
    assert listed[0]["ImageInfo"]["ImageID"] == image_id and listed[0]["ImageInfo"]["FileFormat"] == "Png"
    data = client.get(f"/VIID/Images/{image_id}/Data", headers=hdr())
    assert data.content == png and data.headers["content-type"] == "image/png"
    # a vendor posting GB18030 text with an odd content type and the bare object list
    f = face(APE, JPEG)
    f["Name"] = "张三"
    raw = orjson.dumps([f]).decode().encode("gb18030")
    resp = client.post("/VIID/Faces", content=raw, headers=hdr(ctype="text/plain; charset=GBK"))
    assert resp.json()["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == 0
    got = client.get(f"/VIID/Faces/{f['FaceID']}", headers=hdr()).json()["FaceObject"]
    assert got["Name"] == "张三"


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()
