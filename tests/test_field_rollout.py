"""Issue 18 "done means", end to end: a camera registers itself in a community (unplaced), is placed from the
county's 待安置 list, then sends a face capture of two people from a clock 8 hours behind; the officer of that
警务区 gets one warning for the watchlisted (smaller) face, on time, with both photos, and a later hit updates it
on his terminal. Real photos from ../shared/testdata/faces (skips where absent)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.events import EventKind
from anfang.registry.models import Address
from anfang.viid.simulator import face, face_list
from test_web import login
from world import PASSWORD, build

FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
APE = "35040400001190000777"  # a 三元区 id: the county admin's 待安置 list
VIID = "application/VIID+JSON;charset=UTF-8"


def test_self_registered_camera_placed_then_warns_the_right_officer_on_time(store, tmp_path) -> None:
    if not (FACES / "test" / "obama_and_biden.jpg").is_file():
        pytest.skip(f"face photos not found at {FACES}")
    w = build(store)
    app = create_app(Settings(data_dir=tmp_path, database_url=store.url, viid_password="ape-secret"), store)
    pushed: list[dict] = []

    async def collect(e) -> None:  # noqa: ANN001
        pushed.append(e.data)

    with TestClient(app) as c:
        c.portal.call(functools.partial(app.state.bus.subscribe, collect, kinds=[EventKind.warning]))
        wl = app.state.faces.create_watchlist("在逃人员")
        for photo in sorted((FACES / "train" / "biden").glob("*.jpg")):
            app.state.faces.enrol(wl.id, "拜登", photo.read_bytes())
        # 1. the camera registers itself: unplaced
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": APE}}),
                   headers={"Content-Type": VIID}, auth=httpx.DigestAuth(APE, "ape-secret"))
        assert r.status_code == 200
        # 2. the county admin places it from the 待安置 list at 列东社区 1栋
        login(c, "county")
        todo = c.get("/api/devices/unplaced").json()["items"]
        pk = next(d["id"] for d in todo if d["device_id"] == APE)
        with store.session() as s:
            code = s.scalar(select(Address.code).where(Address.id == w.addr["ld-1"]))
        assert c.post(f"/api/devices/{pk}/placement", json={"address_code": code}).status_code == 200
        c.cookies.clear()  # the county admin is done; the officer uses his terminal token
        # 3. a capture of two people, the watchlisted one the smaller face, from a clock 8 hours behind
        shot = datetime.now(UTC) - timedelta(hours=8)

        def post(photo: str) -> None:
            obj = face(APE, (FACES / "test" / photo).read_bytes(), at=shot)
            obj["SubImageList"]["SubImageInfoObject"][0]["Type"] = "14"
            r = c.post("/VIID/Faces", content=orjson.dumps(face_list([obj])),
                       headers={"User-Identify": APE, "Content-Type": VIID})
            assert r.status_code == 200

        post("obama_and_biden.jpg")
        police = {"Authorization": "Bearer " + c.post("/api/auth/login", json={
            "username": "police", "password": PASSWORD}).json()["token"]}
        deadline, items = time.monotonic() + 60, []
        while time.monotonic() < deadline and not items:
            items = c.get("/api/warnings", headers=police).json()["items"]
            time.sleep(0.2)
        assert len(items) == 1 and "拜登" in items[0]["title"]  # the right officer, the watchlisted face
        v = items[0]
        created = datetime.fromisoformat(v["created_at"])
        assert abs((created - datetime.now(UTC)).total_seconds()) < 120  # on time: receive time, not 8 h ago
        assert v["data"]["shot_at"].startswith(shot.isoformat()[:16]) and v["escalated_at"] is None
        assert c.get(v["data"]["image"], headers=police).status_code == 200  # both photos
        assert c.get(v["data"]["enrolled_photo"], headers=police).status_code == 200
        # 4. a later hit updates it on his terminal
        post("obama_and_biden.jpg")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and items[0]["hits"] < 2:
            items = c.get("/api/warnings", headers=police).json()["items"]
            time.sleep(0.2)
        assert len(items) == 1 and items[0]["hits"] == 2 and len(items[0]["data"]["hit_list"]) == 2
        assert any(p.get("step") == "updated" for p in pushed)
