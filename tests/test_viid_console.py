"""Console pages of the 视图库: capture browser with filters and jurisdiction, image view, APE list."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.viid import console
from anfang.viid.simulator import ape_id, face, face_list, vehicle, vehicle_list
from test_viid import JPEG, PASSWORD, hdr, make_settings, register
from test_web import login
from world import build

SANYUAN, SHAXIAN = ape_id(1), ape_id(2)


def test_capture_browser_filters_scope_and_images(store, db_url, tmp_path, monkeypatch) -> None:
    build(store)
    app = create_app(make_settings(tmp_path, db_url), store)
    with TestClient(app) as c:
        devices = app.state.viid.devices
        devices.upsert("viid", SANYUAN, name="列东社区东门", community_code="350404001001")
        devices.upsert("viid", SHAXIAN, name="府西社区北门", community_code="350405001001")
        for d in (SANYUAN, SHAXIAN):
            assert register(c, d, PASSWORD).status_code == 200
        c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list([vehicle(SANYUAN, JPEG, "闽G11111"),
                                                                         vehicle(SANYUAN, JPEG, "闽G22222")])),
               headers=hdr(SANYUAN))
        c.post("/VIID/Faces", content=orjson.dumps(face_list([face(SHAXIAN, JPEG)])), headers=hdr(SHAXIAN))
        login(c, "city")
        page = c.get("/viid/captures")
        assert page.status_code == 200 and "抓拍记录" in page.text and "共 3 条" in page.text
        by_plate = c.get("/viid/captures", params={"plate": "闽G222"})
        assert "闽G22222" in by_plate.text and "闽G11111" not in by_plate.text
        faces = c.get("/viid/captures", params={"kind": "face"})
        assert "共 1 条" in faces.text
        # the count stops a bounded way past the page (a page costs the same at any table size)
        monkeypatch.setattr(console, "COUNT_CAP", 2)
        assert "超过 2 条" in c.get("/viid/captures").text and "共 1 条" in faces.text
        monkeypatch.setattr(console, "COUNT_CAP", 10_000)
        img = faces.text.split('src="/viid/images/')[1].split('"')[0]
        photo = c.get(f"/viid/images/{img}")
        # served as a watermarked copy: corner stamp and metadata naming the viewer (docs/security.md)
        assert photo.status_code == 200 and photo.content[:3] == b"\xff\xd8\xff" and photo.content != JPEG
        assert b"anfang-fp:" in photo.content
        apes = c.get("/viid/apes")
        assert "列东社区东门" in apes.text and 'data-status="online"' in apes.text
        # the 三元区 county administrator sees only 三元区 devices' captures, not 沙县区's face
        c.post("/logout", data={})
        c.cookies.clear()
        login(c, "county")
        mine = c.get("/viid/captures")
        assert "共 2 条" in mine.text
        assert c.get(f"/viid/images/{img}").status_code == 404
        c.cookies.clear()
        login(c, "grid")
        assert c.get("/viid/captures").status_code == 403
