"""Face watchlist warnings end to end over GA/T 1400: an APE posts a face capture; when the face is on a
watchlist, the officer of the APE's 警务区 gets a warning with the similarity and both photos; a stranger's face
raises nothing. The photos come from the installed packages (demo/media.py): the public-domain photo scikit-image
ships, enrolled, and another crop of it captured; a drawn stranger's face."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.demo import media
from anfang.devices.service import DeviceService
from anfang.viid.simulator import ape_id, face, face_list
from world import PASSWORD, build

APE = ape_id(7)
APE_PASSWORD = "ape-secret"
VIID = "application/VIID+JSON;charset=UTF-8"


@pytest.fixture
def live(store, tmp_path):
    w = build(store)
    app = create_app(Settings(data_dir=tmp_path, database_url=store.url, viid_password=APE_PASSWORD), store)
    with TestClient(app) as c:
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": APE}}),
                   headers={"Content-Type": VIID}, auth=httpx.DigestAuth(APE, APE_PASSWORD))
        assert r.status_code == 200, r.text
        DeviceService(store).upsert("viid", APE, name="列东社区东门人脸抓拍", address_id=w.addr["ld"],
                                    community_code="350404001001")
        wl = app.state.faces.create_watchlist("在逃人员")
        app.state.faces.enrol(wl.id, "柯林斯", media.watchlist_photo())
        yield c, w


def _token(c: TestClient, user: str) -> dict:
    r = c.post("/api/auth/login", json={"username": user, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _post_face(c: TestClient, photo: bytes) -> None:
    body = face_list([face(APE, photo)])
    r = c.post("/VIID/Faces", content=orjson.dumps(body), headers={"User-Identify": APE, "Content-Type": VIID})
    assert r.status_code == 200, r.text
    status = r.json()["ResponseStatusListObject"]["ResponseStatusObject"][0]
    assert status["StatusCode"] == 0, status


def test_watchlisted_face_warns_the_right_officer_and_a_stranger_does_not(live) -> None:
    c, _ = live
    police = _token(c, "police")
    _post_face(c, media.synthetic_face(7))  # not enrolled
    _post_face(c, media.watchlisted_capture(1))
    deadline = time.monotonic() + 30
    items: list = []
    while time.monotonic() < deadline and not items:
        items = c.get("/api/warnings", headers=police).json()["items"]
        time.sleep(0.2)
    assert [i["rule"] for i in items] == ["face.watchlist"]
    w = items[0]
    assert w["title"].startswith("布控人员：柯林斯（在逃人员") and w["place"].endswith("列东社区")
    assert 0.5 < w["data"]["similarity"] <= 1.0 and w["data"]["distance"] <= 0.5
    capture = c.get(w["data"]["image"], headers=police)
    assert capture.status_code == 200 and capture.content[:2] == b"\xff\xd8"
    enrolled = c.get(f"/api/warnings/{w['id']}/enrolled-photo", headers=police)
    assert enrolled.status_code == 200 and enrolled.content[:2] == b"\xff\xd8"
    time.sleep(1.0)  # the stranger was posted first: had it matched, it would be here by now
    assert len(c.get("/api/warnings", headers=police).json()["items"]) == 1
    other = _token(c, "grid")  # face warnings go to the officer only
    assert c.get("/api/warnings", headers=other).json()["items"] == []
    assert c.get(f"/api/warnings/{w['id']}/enrolled-photo", headers=other).status_code == 404
