"""Console pages of the 视图库: capture browser with filters and jurisdiction, image view, APE list."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from anfang.app import create_app
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
        # the officer of 列东 (警务区 LD-1) sees his communities' captures only (the 三元区 vehicles, not 沙县's face)
        c.post("/logout", data={})
        c.cookies.clear()
        login(c, "police")
        assert "共 2 条" in c.get("/viid/captures").text and "共 0 条" in c.get("/viid/captures?kind=face").text
        assert c.get(f"/viid/images/{img}").status_code == 404
        c.cookies.clear()
        login(c, "grid")
        assert c.get("/viid/captures").status_code == 403


def _vehicles_from_the_east_gate(app, c, plates: list[str]) -> None:  # noqa: ANN001
    """列东社区东门 (a placed GA/T 1400 camera) registers and sends one vehicle capture per plate."""
    app.state.viid.devices.upsert("viid", SANYUAN, name="列东社区东门", community_code="350404001001")
    assert register(c, SANYUAN, PASSWORD).status_code == 200
    r = c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list([vehicle(SANYUAN, JPEG, p) for p in plates])),
               headers=hdr(SANYUAN))
    assert r.status_code == 200, r.text


def test_capture_count_is_capped_on_a_big_table(store, db_url, tmp_path, monkeypatch) -> None:
    """Above the cap the page says "超过 N 条" (no COUNT over a city's month of captures) and still pages on."""
    from anfang.store import counting

    build(store)
    app = create_app(make_settings(tmp_path, db_url), store)
    with TestClient(app) as c:
        _vehicles_from_the_east_gate(app, c, [f"闽G1000{i}" for i in range(4)])
        login(c, "city")
        assert "共 4 条" in c.get("/viid/captures").text
        monkeypatch.setattr(counting, "COUNT_CAP", 3)
        page = c.get("/viid/captures")
        assert "超过 3 条" in page.text and "共 4 条" not in page.text
        monkeypatch.setattr("anfang.viid.console.PAGE", 2)
        assert "page=2" in c.get("/viid/captures").text  # a next page, though the exact total is not known
        with store.session() as s:
            from anfang.viid.models import ViidObject

            assert counting.capped_count(s, ViidObject, cap=10) == counting.CappedCount(4, False)
            assert counting.capped_count(s, ViidObject, ViidObject.kind == "motor", cap=2) == \
                counting.CappedCount(2, True)


def test_ape_list_is_paged(store, db_url, tmp_path, monkeypatch) -> None:
    """A city's thousands of APEs come a page at a time, every one reachable through the pager."""
    build(store)
    app = create_app(make_settings(tmp_path, db_url), store)
    monkeypatch.setattr("anfang.viid.console.APES_PAGE", 2)
    with TestClient(app) as c:
        for i in range(5):
            app.state.viid.devices.upsert("viid", ape_id(10 + i), name=f"卡口{i}", community_code="350404001001")
        login(c, "city")
        seen, url = [], "/viid/apes"
        while url:
            page = c.get(url).text
            seen += [n for n in (f"卡口{i}" for i in range(5)) if n in page]
            url = page.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0] if 'rel="next"' in page else None
        assert sorted(seen) == [f"卡口{i}" for i in range(5)]
        assert "卡口2" not in c.get("/viid/apes").text  # the first page holds two


def test_capture_pages_go_on_by_an_older_than_cursor_every_capture_once(store, db_url, tmp_path, monkeypatch) -> None:
    """"下一页" continues from the last capture shown (keyset, no OFFSET: page 500 costs what page 1 does);
    walking the pages shows every capture once, newest first, and a page number typed in still works."""
    import re

    build(store)
    app = create_app(make_settings(tmp_path, db_url), store)
    with TestClient(app) as c:
        _vehicles_from_the_east_gate(app, c, [f"闽G2000{i}" for i in range(5)])
        login(c, "city")
        monkeypatch.setattr("anfang.viid.console.PAGE", 2)
        every = re.findall(r"闽G2000\d", c.get("/viid/captures", params={"page": 1}).text) + \
            re.findall(r"闽G2000\d", c.get("/viid/captures", params={"page": 2}).text) + \
            re.findall(r"闽G2000\d", c.get("/viid/captures", params={"page": 3}).text)
        assert sorted(set(every)) == [f"闽G2000{i}" for i in range(5)] and len(every) == 5  # page numbers
        seen, url, pages = [], "/viid/captures", 0
        while url and pages < 10:
            html = c.get(url).text
            seen += re.findall(r"闽G2000\d", html)
            pages += 1
            nxt = re.search(r'href="([^"]+)" rel="next"', html)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
            if url:
                assert "before=" in url  # the next page is asked for by cursor, not by offset
        assert seen == every and pages == 3
        assert "第 3 页" in html  # the page number is still shown
