"""Per-object results (issue 18, item 7): a face object whose scene image exceeds the size limit keeps its face
crop; only the oversize image is refused, and the ResponseStatusList says so by the image's id."""

from __future__ import annotations

import base64
import copy

import httpx
import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anfang.app import create_app
from anfang.config import Settings
from anfang.viid.models import ViidImage, ViidObject
from anfang.viid.simulator import ape_id, face, face_list, make_jpeg

APE = ape_id(3)
VIID = "application/VIID+JSON;charset=UTF-8"


def test_oversize_scene_refused_alone_face_crop_kept(store, tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=store.url, viid_password="pw-1", viid_max_image=40_000)
    with TestClient(create_app(settings, store)) as c:
        r = c.post("/VIID/System/Register", content=orjson.dumps({"RegisterObject": {"DeviceID": APE}}),
                   headers={"Content-Type": VIID}, auth=httpx.DigestAuth(APE, "pw-1"))
        assert r.status_code == 200
        obj = face(APE, make_jpeg(10_000, seed=4))
        crop = obj["SubImageList"]["SubImageInfoObject"][0]
        scene = copy.deepcopy(crop)
        scene.update(ImageID=crop["ImageID"][:-5] + "00002", Type="14", Width=3840, Height=2160,
                     Data=base64.b64encode(make_jpeg(80_000, seed=5)).decode())  # over the 40 kB limit
        obj["SubImageList"]["SubImageInfoObject"].append(scene)
        r = c.post("/VIID/Faces", content=orjson.dumps(face_list([obj])),
                   headers={"User-Identify": APE, "Content-Type": VIID})
        assert r.status_code == 200
        statuses = {s["Id"]: s for s in r.json()["ResponseStatusListObject"]["ResponseStatusObject"]}
        assert statuses[obj["FaceID"]]["StatusCode"] == 0  # the face is stored
        assert "1" in statuses[obj["FaceID"]]["StatusString"]
        refused = statuses[scene["ImageID"]]
        assert refused["StatusCode"] != 0 and "40000" in refused["StatusString"]
    with store.session() as s:
        pk = s.scalar(select(ViidObject.id).where(ViidObject.object_id == obj["FaceID"]))
        kept = s.scalars(select(ViidImage.type).where(ViidImage.object_pk == pk)).all()
        assert pk is not None and kept == ["11"]  # the face crop, not the oversize scene
        assert s.scalar(select(func.count()).select_from(ViidImage).where(ViidImage.type == "14")) == 0
