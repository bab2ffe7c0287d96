"""Image URLs (issue 18, item 6): a sub-image sent with only StoragePath (a URL) is fetched — from the sending
device's own address only (no server-side request forgery), within size and time limits, with retry — and the
record is stored with it; what cannot be fetched is refused alone, said so per image."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.viid.models import ViidImage, ViidObject
from anfang.viid.simulator import ape_id, face, face_list, make_jpeg

APE = ape_id(4)
VIID = "application/VIID+JSON;charset=UTF-8"
JPEG = make_jpeg(8_000, seed=9)


@pytest.fixture
def camera_http():
    """The camera's own web server on 127.0.0.1 (where its captures come from)."""
    hits: dict[str, int] = {}

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits[self.path] = hits.get(self.path, 0) + 1
            if self.path == "/flaky.jpg" and hits[self.path] == 1:
                self.send_response(503)
                self.end_headers()
                return
            if self.path == "/moved.jpg":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                self.end_headers()
                return
            body = make_jpeg(200_000, seed=1) if self.path == "/huge.jpg" else JPEG
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def _url_only(obj: dict, url: str, n: int) -> dict:
    meta = dict(obj["SubImageList"]["SubImageInfoObject"][0])
    meta.pop("Data")
    meta.update(ImageID=meta["ImageID"][:-5] + f"{n:05d}", StoragePath=url, Type="14")
    return meta


def test_url_only_images_fetched_from_the_device_itself_only(store, tmp_path, camera_http) -> None:
    base, hits = camera_http
    port = base.rsplit(":", 1)[1]
    settings = Settings(data_dir=tmp_path, database_url=store.url, viid_password="pw-1", viid_max_image=50_000)
    app = create_app(settings, store)
    with TestClient(app) as c:
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": APE}}),
                   headers={"Content-Type": VIID}, auth=httpx.DigestAuth(APE, "pw-1"))
        assert r.status_code == 200
        obj = face(APE, JPEG)
        obj["SubImageList"]["SubImageInfoObject"] = [
            _url_only(obj, f"{base}/scene.jpg", 2),  # the camera itself: fetched
            _url_only(obj, f"{base}/flaky.jpg", 3),  # 503 once: fetched on retry
            _url_only(obj, f"http://127.0.0.2:{port}/scene.jpg", 4),  # another host: never contacted
            _url_only(obj, "http://169.254.169.254/latest/meta-data", 5),  # cloud metadata: never
            _url_only(obj, f"{base}/moved.jpg", 6),  # a redirect is not followed
            _url_only(obj, f"{base}/huge.jpg", 7),  # over the size limit
        ]
        ids = [m["ImageID"] for m in obj["SubImageList"]["SubImageInfoObject"]]

        async def post() -> httpx.Response:  # from the camera's own address, as in the field
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
            async with httpx.AsyncClient(transport=transport, base_url="http://anfang") as h:
                return await h.post("/VIID/Faces", content=orjson.dumps(face_list([obj])),
                                    headers={"User-Identify": APE, "Content-Type": VIID})

        r = c.portal.call(post)
        assert r.status_code == 200, r.text
        statuses = {s["Id"]: s for s in r.json()["ResponseStatusListObject"]["ResponseStatusObject"]}
        assert statuses[obj["FaceID"]]["StatusCode"] == 0
        assert {i for i, s in statuses.items() if s["StatusCode"] != 0} == set(ids[2:])
        assert "本机" in statuses[ids[2]]["StatusString"] and "本机" in statuses[ids[3]]["StatusString"]
        assert "302" in statuses[ids[4]]["StatusString"] and "50000" in statuses[ids[5]]["StatusString"]
        assert hits.get("/flaky.jpg") == 2 and hits.get("/scene.jpg") == 1  # retried once; 127.0.0.2 not asked
    with store.session() as s:
        pk = s.scalar(select(ViidObject.id).where(ViidObject.object_id == obj["FaceID"]))
        stored = set(s.scalars(select(ViidImage.image_id).where(ViidImage.object_pk == pk)))
    assert stored == set(ids[:2])  # stored with the fetched images: the capture event names them for matching
