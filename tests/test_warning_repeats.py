"""Repeat sightings (issue 18, item 8): repeats of one person at one camera within the dedup window update the
warning — latest photo, best distance, hit list with times — and push an update to the terminal; the API returns
photo links, never server paths; capture_image is filled. Real photos from ../shared/testdata/faces."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.events import EventKind
from anfang.devices.service import DeviceService
from anfang.viid.simulator import ape_id, face, face_list
from test_web import login
from world import PASSWORD, build

FACES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "faces"
APE = ape_id(9)
VIID = "application/VIID+JSON;charset=UTF-8"


def test_repeat_sightings_update_the_warning_and_push_it(store, tmp_path) -> None:
    if not (FACES / "train" / "obama").is_dir():
        pytest.skip(f"face photos not found at {FACES}")
    w = build(store)
    app = create_app(Settings(data_dir=tmp_path, database_url=store.url, viid_password="ape-secret"), store)
    pushed: list[dict] = []

    async def collect(e) -> None:  # noqa: ANN001
        pushed.append(e.data)

    with TestClient(app) as c:
        c.portal.call(functools.partial(app.state.bus.subscribe, collect, kinds=[EventKind.warning]))
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": APE}}),
                   headers={"Content-Type": VIID}, auth=httpx.DigestAuth(APE, "ape-secret"))
        assert r.status_code == 200
        DeviceService(store).upsert("viid", APE, name="列东社区东门人脸抓拍", address_id=w.addr["ld"],
                                    community_code="350404001001")
        wl = app.state.faces.create_watchlist("在逃人员")
        app.state.faces.enrol(wl.id, "奥巴马", (FACES / "train" / "obama" / "obama.jpg").read_bytes())
        police = {"Authorization": "Bearer " + c.post("/api/auth/login", json={
            "username": "police", "password": PASSWORD}).json()["token"]}

        def warnings() -> list[dict]:
            return c.get("/api/warnings", headers=police).json()["items"]

        def wait(cond, timeout: float = 40.0) -> list[dict]:  # noqa: ANN001
            end = time.monotonic() + timeout
            items = warnings()
            while time.monotonic() < end and not cond(items):
                time.sleep(0.2)
                items = warnings()
            return items

        for n, photo in enumerate(("obama1.jpg", "obama1.jpg")):
            body = face_list([face(APE, (FACES / "test" / photo).read_bytes())])
            assert c.post("/VIID/Faces", content=orjson.dumps(body),
                          headers={"User-Identify": APE, "Content-Type": VIID}).status_code == 200
            items = wait(lambda it, n=n: bool(it) and it[0]["hits"] == n + 1)
        assert len(items) == 1 and items[0]["hits"] == 2
        v = items[0]
        hits = v["data"]["hit_list"]
        assert len(hits) == 2 and all(h["at"] and h["image"].startswith("/viid/images/") for h in hits)
        assert hits[0]["image"] != hits[1]["image"] and v["data"]["image"] == hits[1]["image"]  # latest photo
        assert v["data"]["distance"] == min(h["distance"] for h in hits)  # best distance
        assert v["data"]["capture_image"] == hits[0]["image"] or v["data"]["capture_image"] == hits[1]["image"]
        text = json.dumps(v, ensure_ascii=False)
        assert "photo_path" not in text and str(tmp_path) not in text  # links only, never server paths
        assert c.get(v["data"]["enrolled_photo"], headers=police).status_code == 200
        assert c.get(v["data"]["image"], headers=police).status_code == 200
        for _ in range(50):
            if any(p.get("step") == "updated" for p in pushed):
                break
            time.sleep(0.1)
        steps = [p["step"] for p in pushed]
        assert steps[:1] == ["raised"] and "updated" in steps  # the terminal is told of the repeat
        login(c, "police")  # the officer's terminal lists the sightings with their times
        page = c.get("/m/warnings").text
        hit_list = page.split('data-testid="hit-list"')[1].split("</ol>")[0]
        assert hit_list.count("<li") == 2 and hit_list.count("<time") == 2


def test_one_person_enrolled_with_several_photos_is_one_warning_per_camera(store) -> None:
    """A person is enrolled with several photos; the best-matching photo differs from capture to capture. Repeats of
    that person at one camera are still one warning (hits 2), not one warning per enrolled photo."""
    import asyncio
    import itertools
    from datetime import UTC, datetime

    from anfang.core.events import Event
    from anfang.warnings.engine import WarningEngine
    from anfang.warnings.service import WarningService

    w = build(store)
    DeviceService(store).upsert("viid", APE, name="列东社区东门人脸抓拍", address_id=w.addr["ld"],
                                community_code="350404001001")
    entries = itertools.cycle((11, 12))  # best enrolled photo: differs per capture

    async def matcher(e: Event) -> list[dict]:
        n = next(entries)
        return [{"watchlist_id": 1, "watchlist": "在逃人员", "entry_id": n, "label": "奥巴马", "person_id": None,
                 "distance": 0.40 if n == 11 else 0.35, "similarity": 0.7, "image": f"/viid/images/{n}",
                 "face_box": [0, 0, 10, 10], "face_detected": True, "faces_in_capture": 1}]

    svc = WarningService(store)
    engine = WarningEngine(store, None, svc, face_matcher=matcher)  # type: ignore[arg-type]

    async def run(*sources: str) -> list[tuple[str, dict]]:
        out = []
        for source in sources:
            ev = Event(kind=EventKind.face_capture, source=source, at=datetime.now(UTC), data={"image_ids": ["x"]})
            for c in (await engine.evaluate(ev))[0]:
                got = svc.raise_or_update(c)
                if got is not None:
                    out.append(got)
        return out

    steps = asyncio.run(run(APE, APE))
    assert [s for s, _ in steps] == ["raised", "updated"]
    v = steps[-1][1]
    assert v["hits"] == 2 and v["data"]["distance"] == 0.35 and len(v["data"]["hit_list"]) == 2
    # the same person at another camera is a warning of its own
    assert [s for s, _ in asyncio.run(run(ape_id(10)))] == ["raised"]
