"""Subscriptions, dispositions and retention of the 视图库 (SQLite and PostgreSQL), receivers mocked in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anfang.app import create_app
from anfang.store.engine import Store
from anfang.viid import retention
from anfang.viid.models import ViidBlob
from anfang.viid.simulator import face, face_list, make_jpeg, vehicle, vehicle_list
from test_viid import APE, JPEG, hdr, make_settings, register

UPPER = "35040000005030000001"


class Receiver:
    """Records what is posted; answers 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.posts: list[dict] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        self.posts.append(orjson.loads(request.content))
        return httpx.Response(200, json={"ResponseStatusListObject": {"ResponseStatusObject": [
            {"RequestURL": "/x", "StatusCode": "0", "StatusString": "OK", "Id": "", "LocalTime": "20260101000000"}]}})


def _subscribe(c: TestClient, sid: str, detail: str, **extra) -> dict:
    obj = {"SubscribeID": sid, "Title": "t", "SubscribeDetail": detail, "ReceiveAddr": "http://upper/VIID/x",
           "ReportInterval": 0, "OperateType": 0, **extra}
    r = c.post("/VIID/Subscribes", json={"SubscribeListObject": {"SubscribeObject": [obj]}}, headers=hdr(UPPER))
    return r.json()["ResponseStatusListObject"]["ResponseStatusObject"][0]


def _service(c: TestClient, kind: type, receiver: Receiver):  # noqa: ANN202
    svc = next(s for s in c.app.state.services if isinstance(s, kind))
    c.portal.call(svc.stop)  # drive it by hand
    svc._client = httpx.AsyncClient(transport=httpx.MockTransport(receiver.handler))
    return svc


def test_subscription_delivers_only_subscribed_kinds_and_survives_receiver_down(store: Store, db_url: str,
                                                                               tmp_path) -> None:
    from anfang.viid.subscriptions import SubscriptionService

    app = create_app(make_settings(tmp_path, db_url, viid_upper_id=UPPER), store)
    with TestClient(app) as c:
        register(c)
        rx = Receiver()
        svc = _service(c, SubscriptionService, rx)
        assert _subscribe(c, "S1", "12")["StatusCode"] == 0
        assert _subscribe(c, "S2", "99")["StatusCode"] == 8  # unknown SubscribeDetail code
        c.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG) for _ in range(3)])), headers=hdr())
        c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list([vehicle(APE, JPEG, "闽G00001")])),
               headers=hdr())
        rx.down = True
        assert c.portal.call(svc.deliver_once) == 0
        rx.down = False
        svc._next_try.clear()
        assert c.portal.call(svc.deliver_once) == 3
        note = rx.posts[0]["SubscribeNotificationListObject"]["SubscribeNotificationObject"][0]
        assert note["SubscribeID"] == "S1" and "MotorVehicleObjectList" not in note
        sent = note["FaceObjectList"]["FaceObject"]
        assert len(sent) == 3 and sent[0]["SubImageList"]["SubImageInfoObject"][0]["Data"]
        assert note["InfoIDs"].split(",") == [f["FaceID"] for f in sent]
        assert c.portal.call(svc.deliver_once) == 0  # nothing twice
        # cancel (OperateType 1): nothing more is delivered
        assert _subscribe(c, "S1", "12", OperateType=1)["StatusCode"] == 0
        c.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG)])), headers=hdr())
        assert c.portal.call(svc.deliver_once) == 0
        listed = c.get("/VIID/Subscribes", headers=hdr(UPPER)).json()["SubscribeListObject"]["SubscribeObject"]
        assert listed[0]["SubscribeStatus"] == 1


def test_report_interval_batches(store: Store, db_url: str, tmp_path) -> None:
    from anfang.viid.subscriptions import SubscriptionService

    app = create_app(make_settings(tmp_path, db_url, viid_upper_id=UPPER), store)
    with TestClient(app) as c:
        register(c)
        rx = Receiver()
        svc = _service(c, SubscriptionService, rx)
        _subscribe(c, "S9", "12,13", ReportInterval=3600)
        c.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG)])), headers=hdr())
        assert c.portal.call(svc.deliver_once) == 1
        c.post("/VIID/Faces", content=orjson.dumps(face_list([face(APE, JPEG)])), headers=hdr())
        assert c.portal.call(svc.deliver_once) == 0  # waits for the next report interval
        svc._last_sent.clear()
        assert c.portal.call(svc.deliver_once) == 1


def test_disposition_plate_match_notifies(store: Store, db_url: str, tmp_path) -> None:
    from anfang.viid.dispositions import DispositionNotifier

    app = create_app(make_settings(tmp_path, db_url, viid_upper_id=UPPER), store)
    with TestClient(app) as c:
        register(c)
        rx = Receiver()
        svc = _service(c, DispositionNotifier, rx)
        r = c.post("/VIID/Dispositions", json={"DispositionListObject": {"DispositionObject": [{
            "DispositionID": "D1", "Title": "盗抢车辆", "DispositionCategory": "2", "TargetFeature": "闽G·8888A",
            "BeginTime": "20200101000000", "EndTime": "20991231235959", "ReceiveAddr": "http://upper/VIID/DN",
            "OperateType": 0}]}}, headers=hdr(UPPER))
        assert r.json()["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == 0
        cars = [vehicle(APE, JPEG, "闽G8888A"), vehicle(APE, JPEG, "闽G12345")]
        c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list(cars)), headers=hdr())
        assert c.portal.call(svc.notify_once) == 1
        note = rx.posts[0]["DispositionNotificationListObject"]["DispositionNotificationObject"][0]
        assert note["DispositionID"] == "D1" and note["CntObjectID"] == cars[0]["MotorVehicleID"]
        assert note["MotorVehicleObject"]["PlateNo"] == "闽G8888A"
        assert c.portal.call(svc.notify_once) == 0
        # cancelled: no more hits
        c.delete("/VIID/Dispositions/D1", headers=hdr(UPPER))
        c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list([vehicle(APE, JPEG, "闽G8888A")])),
               headers=hdr())
        assert c.portal.call(svc.notify_once) == 0


def test_retention_keeps_disposition_evidence(store: Store, db_url: str, tmp_path) -> None:
    app = create_app(make_settings(tmp_path, db_url, viid_upper_id=UPPER), store)
    with TestClient(app) as c:
        register(c)
        c.post("/VIID/Dispositions", json={"DispositionObject": {"DispositionID": "D2", "DispositionCategory": "2",
                                                                 "TargetFeature": "闽G77777"}}, headers=hdr(UPPER))
        cars = [vehicle(APE, make_jpeg(8000, seed=i), p) for i, p in enumerate(["闽G77777", "闽G11111", "闽G22222"])]
        c.post("/VIID/MotorVehicles", content=orjson.dumps(vehicle_list(cars)), headers=hdr())
        # retention is by capture day (whole days are dropped): 100 days on, today's captures are past 90 days
        images = c.app.state.viid.images
        assert len(images.days()) == 1
        result = retention.purge(store, images, days=90, now=datetime.now(UTC) + timedelta(days=100))
        assert (result.objects, result.kept_for_dispositions) == (2, 1)
        assert images.days() == [(datetime.now(UTC) + timedelta(days=100, hours=8)).strftime("%Y%m%d")]
        left = c.get("/VIID/MotorVehicles", headers=hdr()).json()["MotorVehicleListObject"]["MotorVehicleObject"]
        assert [v["PlateNo"] for v in left] == ["闽G77777"]
        with store.session() as s:
            assert s.scalar(select(func.count()).select_from(ViidBlob)) == 1
        sub = left[0]["SubImageList"]["SubImageInfoObject"][0]
        assert c.get(sub["StoragePath"], headers=hdr()).status_code == 200
