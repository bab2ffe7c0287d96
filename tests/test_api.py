"""The HTTP API as a client sees it: login, scoped results, clear JSON errors, OpenAPI."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.ids import make_id_number
from world import PASSWORD, build


@pytest.fixture
def client_world(store, tmp_path):
    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        yield c, w


def login(c: TestClient, user: str) -> dict:
    r = c.post("/api/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_healthz_and_openapi(client_world) -> None:
    c, _ = client_world
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert "/api/persons" in c.get("/openapi.json").json()["paths"]
    docs = c.get("/docs")
    assert docs.status_code == 200 and "https://" not in docs.text  # offline: no CDN
    assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_unknown_paths(client_world) -> None:
    c, _ = client_world
    r = c.get("/api/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["message"].startswith("资源不存在")
    r = c.get("/nothing-here", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "资源不存在" in r.text and r.headers["content-type"].startswith("text/html")


def test_login_wrong_password_is_401_json(client_world) -> None:
    c, _ = client_world
    r = c.post("/api/auth/login", json={"username": "police", "password": "nope-nope"})
    assert r.status_code == 401
    assert "密码错误" in r.json()["error"]["message"]


def test_api_requires_login(client_world) -> None:
    c, _ = client_world
    r = c.get("/api/persons")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = c.get("/api/persons", headers={"Authorization": "Bearer forged"})
    assert r.status_code == 401


def test_scoped_search_over_http(client_world) -> None:
    c, w = client_world
    h = login(c, "grid")
    names = {x["name"] for x in c.get("/api/persons", headers=h, params={"size": 100}).json()["items"]}
    assert names == {"张伟", "李娜", "王芳"}
    r = c.get(f"/api/persons/{w.person['huang']}", headers=h)
    assert r.status_code == 404 and "辖区" in r.json()["error"]["message"]
    me = c.get("/api/auth/me", headers=h).json()
    assert me["role"] == "grid_worker" and me["role_label"] == "网格员"


def test_create_person_validation_errors_are_clear(client_world) -> None:
    c, w = client_world
    h = login(c, "police")
    bad = {"id_number": "350404198005010112", "name": "测试", "address_id": w.addr["ld-101"]}
    r = c.post("/api/persons", headers=h, json=bad)
    assert r.status_code == 422
    assert "校验位" in r.json()["error"]["message"]
    good = dict(bad, id_number=make_id_number("350404", __import__("datetime").date(1980, 5, 1), 991),
                phone="13900001111", labels=["重点人员"])
    r = c.post("/api/persons", headers=h, json=good)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["gender"] == "M" and body["birth_date"] == "1980-05-01" and body["labels"] == ["key_person"]
    r = c.post("/api/persons", headers=h, json=good)
    assert r.status_code == 409
    r = c.post("/api/persons", headers=h, json=dict(good, address_id=w.addr["fx-101"], id_number=make_id_number(
        "350404", __import__("datetime").date(1980, 5, 1), 993)))
    assert r.status_code == 403


def test_paging_bounds(client_world) -> None:
    c, _ = client_world
    h = login(c, "city")
    assert c.get("/api/persons", headers=h, params={"size": 1000}).status_code == 422
    assert c.get("/api/persons", headers=h, params={"page": 0}).status_code == 422
    # listing the whole city is a wide search: the city admin states a reason (数据查询授权, docs/security.md)
    assert c.get("/api/persons", headers=h, params={"size": 2, "page": 1}).status_code == 428
    r = c.get("/api/persons", headers=h, params={"size": 2, "page": 1, "reason": "核查分页显示"})
    assert r.json()["has_more"] is True and len(r.json()["items"]) == 2


def test_metrics_endpoint(client_world) -> None:
    c, _ = client_world
    h = login(c, "county")
    body = c.get("/api/metrics", headers=h, params={"level": "community"}).json()
    assert {r["code"] for r in body["rows"]} == {"350404001001", "350404001201"}
    assert body["targets"]["persons_verified"]["target"] == 0.95
    assert c.get("/api/metrics", headers=h, params={"level": "galaxy"}).status_code == 422


def test_crud_house_unit_vehicle_address(client_world) -> None:
    c, w = client_world
    h = login(c, "police")
    r = c.post("/api/addresses", headers=h, json={"parent_id": w.addr["ld-1-1-1"], "name": "103室"})
    assert r.status_code == 201, r.text
    addr = r.json()
    assert addr["full_name"].endswith("1栋1单元1层103室") and addr["level"] == "room"
    assert addr["code"].startswith("350404001001000101001") and addr["grid_id"] == w.grid["G-LD-1"]
    r = c.post("/api/houses", headers=h, json={"address_id": addr["id"], "use": "出租"})
    assert r.status_code == 201 and r.json()["use"] == "rental"
    r = c.post("/api/vehicles", headers=h, json={"plate": "闽GO8888", "owner_person_id": w.person["li"]})
    assert r.status_code == 422 and "车牌号无效" in r.json()["error"]["message"]  # letter O is never issued
    r = c.post("/api/vehicles", headers=h, json={"plate": "闽GA888B", "owner_person_id": w.person["li"]})
    assert r.status_code == 201, r.text
    r = c.patch(f"/api/addresses/{addr['id']}/plate", headers=h, json={"plate_installed": True})
    assert r.json()["plate_installed"] is True
    r = c.post(f"/api/persons/{w.person['wang']}/verification", headers=h, json={"state": "已核实"})
    assert r.status_code == 200 and r.json()["verified_by"] == "police"
