"""/api/construction and the /construction console page, as a county officer and the city see them."""

from __future__ import annotations

import io
from datetime import timedelta

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from anfang.app import create_app
from anfang.config import Settings
from anfang.devices.service import DeviceService
from anfang.store.base import utcnow
from test_web import csrf, login
from world import build

LIEDONG = "350404001001"  # 三元区 (the county admin's county)
FENGGANG = "350405001001"  # 沙县区
BASIC_VIDEO = ["community_entrance", "parking_entrance", "perimeter", "elevator", "monitoring_centre",
               "public_area", "main_passage", "parking_area"]


def _devices(store) -> None:
    svc = DeviceService(store)
    # 列东: every 基本型 item, no unit-entrance access control
    for i, place in enumerate(BASIC_VIDEO):
        svc.upsert("gb28181", f"350404000013200000{i:02d}", name=f"列东{place}", type_code="132",
                   community_code=LIEDONG, place=place,
                   attributes={"capture": ["face", "body", "vehicle"], "megapixels": 4}, registered_at=utcnow()
                   - timedelta(days=3))
    svc.upsert("gb28181", "35040400001320000099", type_code="132", community_code=LIEDONG,
               place="vehicle_entrance", attributes={"subsystem": "vehicle_recognition"})
    svc.upsert("mqtt", "liedong-gate", community_code=LIEDONG, place="community_entrance",
               attributes={"subsystem": "access_control"})
    svc.upsert("gb28181", "35040500001320000001", type_code="132", community_code=FENGGANG, place="perimeter",
               attributes={})
    # one 列东 camera online for two days without a capture
    svc.set_status("gb28181", "35040400001320000000", "online", at=utcnow() - timedelta(days=2))


def test_tiers_specs_and_work_orders_scoped(store, tmp_path) -> None:
    build(store)
    _devices(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")
        tiers = c.get("/api/construction/tiers").json()["items"]
        assert [t["community_code"] for t in tiers] == [LIEDONG]  # 沙县区 is not his
        assert tiers[0]["tier_label"] == "基本型" and tiers[0]["next_label"] == "提高型"
        assert [m["label"] for m in tiers[0]["missing"]] == ["楼栋（楼道）单元出入口 · 智能门禁"]
        specs = c.get("/api/construction/specs").json()["items"]
        assert specs[0]["cameras"] == 8 and specs[0]["compliant"] == 0

        page = c.get("/construction")
        assert page.status_code == 200
        assert "基本型" in page.text and "楼栋（楼道）单元出入口 · 智能门禁" in page.text
        assert 'href="/construction"' in page.text  # nav link

        r = c.post("/construction/scan", data={"csrf_token": csrf(page.text)}, follow_redirects=False)
        assert r.status_code == 303
        orders = c.get("/api/construction/work-orders?state=open").json()["items"]
        assert [(o["device_id"], o["cause"]) for o in orders] == [("35040400001320000000", "no_captures")]
        page = c.get("/construction")
        assert "抓拍中断" in page.text
        r = c.post(f"/construction/work-orders/{orders[0]['id']}/close",
                   data={"csrf_token": csrf(page.text), "cause": "抓拍服务未启用，已开启"}, follow_redirects=False)
        assert r.status_code == 303
        closed = c.get("/api/construction/work-orders?state=closed").json()["items"]
        assert closed[0]["close_cause"] == "抓拍服务未启用，已开启"
        assert c.get(f"/api/construction/storage/{FENGGANG}").status_code == 404
        need = c.get(f"/api/construction/storage/{LIEDONG}").json()
        assert need["channels"] == 9 and need["days"] == 30

    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "city")
        assert {t["community_code"] for t in c.get("/api/construction/tiers").json()["items"]} == {LIEDONG, FENGGANG}
        xlsx = c.get("/api/construction/circular.xlsx?year=2021&month=6")
        assert xlsx.status_code == 200 and "attachment" in xlsx.headers["content-disposition"]
        ws = load_workbook(io.BytesIO(xlsx.content))["月度通报"]
        rows = list(ws.iter_rows(values_only=True))
        head = next(i for i, r in enumerate(rows) if r[0] == "排名")
        ranked = rows[head + 1:]
        assert len(ranked) == 11 and ranked[0][0] == 1 and "示例" in str(rows[2][0])
        today = utcnow().date().isoformat()
        rates = {r["code"]: r for r in c.get(f"/api/construction/online-rates?level=county&day={today}")
                 .json()["items"]}
        assert set(rates) == {"350404", "350405"} and rates["350404"]["devices"] == 10
        assert rates["350405"]["rate"] == 0.0 and rates["350404"]["rate"] == 0.1  # 1 of 10 online all day


def test_resident_is_refused(store, tmp_path) -> None:
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "resident")
        assert c.get("/api/construction/tiers").status_code == 403
        assert c.get("/api/construction/circular.xlsx").status_code == 403
        assert 'href="/construction"' not in c.get("/").text
