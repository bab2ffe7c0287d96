"""Query authorisation (数据查询授权): held queries, supervisors from the jurisdiction, expiry, audit — over HTTP and
the console, on SQLite and PostgreSQL (docs/security.md)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select, update

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.errors import Forbidden
from anfang.security import approvals, audit
from anfang.security.models import AuditEntry
from anfang.security.records import QueryApproval
from anfang.security.watermark import strip_zero_width
from anfang.store.base import utcnow
from world import PASSWORD, build

TOWN = "350404001000"  # 列东街道: the grid worker's town


@pytest.fixture
def env(store, tmp_path):
    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        yield c, w, store


def login(c: TestClient, user: str) -> dict:
    r = c.post("/api/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def names_in(xlsx: bytes) -> set[str]:
    ws = load_workbook(io.BytesIO(xlsx)).worksheets[0]
    return {strip_zero_width(str(r[1])) for r in list(ws.iter_rows(values_only=True))[1:]}


def test_grid_workers_town_export_is_held_and_visible_to_his_supervisor(env) -> None:
    c, w, store = env
    grid = login(c, "grid")
    ask = {"town_code": TOWN}
    r = c.get("/api/export/persons", headers=grid, params=ask)
    assert r.status_code == 428 and r.json()["error"]["code"] == "reason_required"
    assert "事由" in r.json()["error"]["message"]

    r = c.get("/api/export/persons", headers=grid, params=ask | {"reason": "入户走访名单核对"})
    assert r.status_code == 202 and r.json()["error"]["code"] == "approval_pending"
    held = r.json()["error"]["detail"]
    assert held["state"] == "pending" and held["requester"] == "grid" and held["reason"] == "入户走访名单核对"
    assert f"#{held['id']}" in r.json()["error"]["message"] and "列东" in held["approver"]
    # asking again does not pile up requests: the same one is named
    again = c.get("/api/export/persons", headers=grid, params=ask | {"reason": "入户走访名单核对"})
    assert again.status_code == 202 and again.json()["error"]["detail"]["id"] == held["id"]

    # his supervisors (the officer of his grid's 警务区, his county's admin) see it; the city admin, a resident
    # and he himself do not, and he may not approve his own request
    police, county, city = login(c, "police"), login(c, "county"), login(c, "city")
    for h in (police, county):
        todo = c.get("/api/security/approvals", headers=h, params={"box": "todo"}).json()["items"]
        assert [x["id"] for x in todo] == [held["id"]] and todo[0]["summary"].startswith("导出实有人口")
    for user in ("city", "grid", "resident"):
        assert c.get("/api/security/approvals", headers=login(c, user), params={"box": "todo"}).json()["items"] == []
    assert c.post(f"/api/security/approvals/{held['id']}/approve", headers=grid, json={}).status_code == 403
    assert c.post(f"/api/security/approvals/{held['id']}/approve", headers=city, json={}).status_code == 403
    page = c.get("/security/approvals", headers=police)
    assert page.status_code == 200 and f'data-approval="{held["id"]}"' in page.text and "入户走访名单核对" in page.text
    mine = c.get("/security/approvals", headers=grid).text
    assert "待审批" in mine and f'data-approval="{held["id"]}"' in mine

    r = c.post(f"/api/security/approvals/{held['id']}/approve", headers=police, json={"note": "同意，限走访使用"})
    assert r.status_code == 200 and r.json()["state"] == "approved" and r.json()["decided_by"] == "police"
    assert c.get("/api/security/approvals", headers=county, params={"box": "todo"}).json()["items"] == []

    # the same query now runs — still scoped to his own grid (approval never widens jurisdiction)
    r = c.get("/api/export/persons", headers=grid, params=ask)
    assert r.status_code == 200 and r.headers["x-anfang-export-request"].startswith("EX")
    assert names_in(r.content) == {"张伟", "李娜", "王芳"}
    state = c.get("/api/security/approvals", headers=grid).json()["items"][0]
    assert state["state"] == "used" and state["used_at"]
    exports = c.get("/api/security/exports", headers=grid).json()["items"]
    assert exports[0]["approval_id"] == held["id"] and exports[0]["reason"] == "入户走访名单核对"

    with store.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    for a in ("approval_request", "approval_approve", "approval_use", "export"):
        assert a in actions
    assert actions.index("approval_request") < actions.index("approval_approve") < actions.index("approval_use")
    assert audit.verify(store).ok


def test_rejection_needs_a_note_and_a_rejected_or_expired_request_never_runs(env) -> None:
    c, w, store = env
    grid, county = login(c, "grid"), login(c, "county")
    ask = {"town_code": TOWN, "format": "csv", "reason": "核对出租屋人员"}
    rid = c.get("/api/export/persons", headers=grid, params=ask).json()["error"]["detail"]["id"]
    assert c.post(f"/api/security/approvals/{rid}/reject", headers=county, json={"note": ""}).status_code == 422
    r = c.post(f"/api/security/approvals/{rid}/reject", headers=county, json={"note": "范围过大，请按网格申请"})
    assert r.json()["state"] == "rejected" and r.json()["decision_note"] == "范围过大，请按网格申请"
    r = c.get("/api/export/persons", headers=grid, params=ask | {"approval_id": rid})
    assert r.status_code == 403 and "已驳回" in r.json()["error"]["message"]
    # asking again is a new request, pending again
    again = c.get("/api/export/persons", headers=grid, params=ask).json()["error"]["detail"]
    assert again["id"] != rid and again["state"] == "pending"

    # a pending request past its time expires and leaves the supervisor's list
    with store.session() as s:
        s.execute(update(QueryApproval).where(QueryApproval.id == again["id"])
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
    assert c.get("/api/security/approvals", headers=county, params={"box": "todo"}).json()["items"] == []
    mine = {x["id"]: x["state"] for x in c.get("/api/security/approvals", headers=grid).json()["items"]}
    assert mine == {rid: "rejected", again["id"]: "expired"}
    # an approval past its validity no longer runs the query
    third = c.get("/api/export/persons", headers=grid, params=ask).json()["error"]["detail"]["id"]
    c.post(f"/api/security/approvals/{third}/approve", headers=county, json={})
    with store.session() as s:
        s.execute(update(QueryApproval).where(QueryApproval.id == third)
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
    r = c.get("/api/export/persons", headers=grid, params={k: v for k, v in ask.items() if k != "reason"})
    assert r.status_code == 428  # nothing valid left: a fresh reason is needed
    with store.session() as s:
        expired = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "approval_expire")))
    assert len(expired) == 2 and audit.verify(store).ok


def test_wide_searches_need_a_reason_or_an_approval_by_role(env) -> None:
    c, w, store = env
    county, police = login(c, "county"), login(c, "police")
    # a county admin listing his whole county states a reason; it runs at once and the reason is audited
    assert c.get("/api/persons", headers=county).status_code == 428
    r = c.get("/api/persons", headers=county, params={"reason": "季度人口核查"})
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    with store.session() as s:
        e = s.scalar(select(AuditEntry).where(AuditEntry.action == "query_reason"))
    assert e is not None and json.loads(e.detail)["reason"] == "季度人口核查"
    # a lookup of one person is not a wide search
    assert c.get("/api/persons", headers=county, params={"name": "张伟"}).status_code == 200
    # an officer's own 警务区 is not wide; a whole town is, and needs his station's (county's) approval
    assert c.get("/api/persons", headers=police).status_code == 200
    town = {"address_prefix": "三明市三元区列东街道"}
    r = c.get("/api/persons", headers=police, params=town | {"reason": "可疑人员排查"})
    assert r.status_code == 202 and "三元区县级管理员" in r.json()["error"]["detail"]["approver"]
    rid = r.json()["error"]["detail"]["id"]
    c.post(f"/api/security/approvals/{rid}/approve", headers=county, json={"note": "同意"})
    for page in (1, 2):  # within its validity the approved query runs again (its next pages)
        r = c.get("/api/persons", headers=police, params={"address_prefix": "三明市三元区列东街道", "page": page,
                                                          "size": 2})
        assert r.status_code == 200
    # property staff may not run a wide export at all
    r = c.get("/api/export/persons", headers=login(c, "property"), params={"reason": "物业登记核对"})
    assert r.status_code == 403


def test_levels_and_policy_are_data(store, tmp_path) -> None:
    w = build(store)
    grid = w.users["grid"]
    assert approvals.requested_level(store, grid, {}) == "grid"
    assert approvals.requested_level(store, grid, {"town_code": TOWN}) == "town"
    assert approvals.requested_level(store, grid, {"address_prefix": "三明市三元区"}) == "county"
    building = "三明市三元区列东街道列东社区1栋"
    assert approvals.requested_level(store, grid, {"address_prefix": building}) == "police_area"
    assert approvals.requested_level(store, w.users["county"], {"community_code": "350404001001"}) == "community"
    raw = json.loads(approvals.POLICY_FILE.read_text(encoding="utf-8"))
    raw["roles"]["grid_worker"]["bulk_export"] = "forbidden"
    strict = approvals.parse_policy(raw)
    with pytest.raises(Forbidden):
        approvals.authorise(store, grid, query_kind="bulk_export", target="export:persons", params={}, summary="x",
                            reason="理由充分的说明", policy=strict)
    raw["roles"]["grid_worker"]["bulk_export"] = "sometimes"
    with pytest.raises(ValueError):
        approvals.parse_policy(raw)


def console_login(c: TestClient, user: str) -> None:
    import re

    c.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": token, "next": "/"},
               follow_redirects=False)
    assert r.status_code == 303, r.text


def test_console_flow_held_export_approved_on_the_page_then_downloaded(env) -> None:
    import re

    c, w, store = env
    console_login(c, "grid")
    ask = {"kind": "persons", "format": "csv", "town_code": TOWN}
    page = c.get("/security/exports/download", params=ask)
    assert page.status_code == 428 and "事由" in page.text
    page = c.get("/security/exports/download", params=ask | {"reason": "走访名单核对"})
    assert page.status_code == 202 and "已提交审批" in page.text
    rid = int(re.search(r"/security/approvals#a(\d+)", page.text).group(1))

    console_login(c, "police")
    todo = c.get("/security/approvals")
    assert f'data-approval="{rid}" data-state="pending"' in todo.text and "待我审批 (1)" in todo.text
    assert '<span class="badge" data-testid="approvals-pending">1</span>' in c.get("/").text  # in the navigation
    token = re.search(r'name="csrf_token" value="([^"]+)"', todo.text).group(1)
    assert c.post(f"/security/approvals/{rid}/decide", data={"decision": "approve"}).status_code == 403  # no token
    r = c.post(f"/security/approvals/{rid}/decide", data={"decision": "approve", "note": "同意", "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303

    console_login(c, "grid")
    mine = c.get("/security/approvals").text
    assert f'data-approval="{rid}" data-state="approved"' in mine and "下载" in mine
    got = c.get("/security/exports/download", params=ask)
    assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
    text = got.content.decode("utf-8-sig")
    assert "【导出水印】grid" in text and got.headers["x-anfang-export-request"] in text
    assert got.headers["x-anfang-export-request"] in c.get("/security/exports").text


def test_a_whole_plate_over_every_camera_is_a_track(env) -> None:
    c, w, store = env
    console_login(c, "police")
    assert c.get("/viid/captures", params={"plate": "闽G222"}).status_code == 200  # a prefix: not a track
    window = {"plate": "闽G12345", "start": "2026-11-28T08:00", "end": "2026-11-28T10:00"}
    assert c.get("/viid/captures", params=window).status_code == 200  # around one incident: a check, not a track
    held = c.get("/viid/captures", params={"plate": "闽G12345"})
    assert held.status_code == 428 and 'name="reason"' in held.text
    held = c.get("/viid/captures", params={"plate": "闽G12345", "reason": "盗窃案车辆查证"})
    assert held.status_code == 202 and "三元区县级管理员" in held.text
    county = login(c, "county")
    rid = c.get("/api/security/approvals", headers=county, params={"box": "todo"}).json()["items"][0]["id"]
    c.post(f"/api/security/approvals/{rid}/approve", headers=county, json={"note": "同意"})
    console_login(c, "police")
    assert c.get("/viid/captures", params={"plate": "闽G12345"}).status_code == 200
    console_login(c, "grid")  # grid workers do not see captures at all
    assert c.get("/viid/captures", params={"plate": "闽G12345"}).status_code == 403
