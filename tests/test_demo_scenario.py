"""The demo from the repository alone (issue 19 item 8): pictures that look like what they are, from installed
packages; and the demo's story raising a face hit, a plate hit, a perimeter intrusion, a smoke alarm and a forced
door in the officer's 警务区, each through the same API a real device uses."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from anfang.app import create_app
from anfang.config import Settings
from anfang.demo import media
from anfang.demo.scenario import STEPS, DemoScenario, seed_watchlists
from anfang.faces.embedder import FaceEmbedder
from anfang.faces.service import DEFAULT_THRESHOLD
from anfang.viid.simulator import make_jpeg
from world import PASSWORD, build


@pytest.fixture(scope="module")
def embedder() -> FaceEmbedder:
    return FaceEmbedder()


def test_demo_reads_no_photo_directory_by_default() -> None:
    assert Settings().viid_faces_dir is None  # the demo used ../shared/testdata/faces, outside the repository
    assert media.astronaut_path().is_file()  # shipped by scikit-image, a dependency


def test_drawn_faces_look_like_faces_and_match_nobody(embedder: FaceEmbedder) -> None:
    enrolled = embedder.embed_one(media.watchlist_photo())
    assert enrolled is not None
    drawn = [embedder.embed_faces(media.synthetic_face(k)) for k in range(10)]
    assert sum(1 for f in drawn if f) >= 8  # dlib's face detector sees a face in (nearly) every drawn capture
    assert embedder.embed_faces(make_jpeg(10_000, 1)) == []  # the old random-noise thumbnails: no face
    assert min(float(np.linalg.norm(f[0].vector - enrolled)) for f in drawn if f) > DEFAULT_THRESHOLD + 0.05
    captures = [embedder.embed_one(media.watchlisted_capture(k)) for k in range(3)]
    assert max(float(np.linalg.norm(v - enrolled)) for v in captures) < DEFAULT_THRESHOLD - 0.1
    assert all(media.watchlisted_capture(k) != media.watchlist_photo() for k in range(3))  # other pictures


def test_plate_pictures_show_a_plate() -> None:
    import io

    blue = np.asarray(Image.open(io.BytesIO(media.plate_image("闽G12345"))).convert("RGB")).astype(int)
    assert (blue[..., 2] > blue[..., 0] + 60).mean() > 0.6  # a blue plate
    green = np.asarray(Image.open(io.BytesIO(media.plate_image("闽GD23456"))).convert("RGB")).astype(int)
    assert (green[..., 1] > green[..., 2] + 20).mean() > 0.5  # a new-energy plate is green
    car = Image.open(io.BytesIO(media.vehicle_image("闽G12345")))
    assert car.format == "JPEG" and car.width > car.height


def test_demo_story_reaches_the_officers_terminal(store, tmp_path) -> None:
    w = build(store)
    lines = seed_watchlists(store, tmp_path)
    assert any("public domain" in line for line in lines)  # the photo's licence is said
    app = create_app(Settings(data_dir=tmp_path, database_url=store.url), store)
    scenario = DemoScenario(app, pace=0.05, first_delay=0.1, repeat_every=3600,
                            base_url="http://demo", transport=httpx.ASGITransport(app=app))
    app.state.services.append(scenario)
    wanted = {"face.watchlist", "plate.watchlist", "alarm.perimeter_intrusion", "smoke.alarm", "access.forced"}
    with TestClient(app) as c:
        token = c.post("/api/auth/login", json={"username": "police", "password": PASSWORD}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            items = c.get("/api/warnings", headers=headers, params={"limit": 100}).json()["items"]
            rules = {i["rule"] for i in items}
            if wanted <= rules or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert scenario.played[:len(STEPS)] == list(STEPS)
        assert wanted <= rules, (rules, scenario.played)
        mine = [i for i in items if i["rule"] in wanted]
        assert {i["police_area_id"] for i in mine} == {w.police_area["LD-1"]}  # the officer's 警务区
        face = next(i for i in items if i["rule"] == "face.watchlist")
        assert media.WATCHLIST_LABEL in face["title"]
        image = c.get(face["data"]["image"], headers=headers)
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"  # the capture, a JPEG of her
        plate = next(i for i in items if i["rule"] == "plate.watchlist")
        scene = c.get(plate["data"]["image"], headers=headers)  # the vehicle capture, as on the face hit
        assert scene.status_code == 200 and scene.content[:2] == b"\xff\xd8"
        assert Image.open(io.BytesIO(scene.content)).width > Image.open(io.BytesIO(scene.content)).height
        crop = c.get(plate["data"]["plate_image"], headers=headers)  # the plate crop the camera sent with it
        assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
        page = c.get("/m/warnings", headers=headers).text
        card = page[page.index(f'data-id="{plate["id"]}"'):]
        card = card[:card.index("</article>")]
        assert f'src="{plate["data"]["image"]}"' in card and f'src="{plate["data"]["plate_image"]}"' in card, card
