"""Door plates over the hand-checked world (tests/world.py), on SQLite and PostgreSQL: the same plate URL shows
each role its own fields, forged and revoked plates are refused and logged, declarations move the verification
rate only once verified, installers' positions move the plate rates, patrol coverage, visitor passes, tip-offs.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from anfang.app import create_app
from anfang.config import Settings
from anfang.core.errors import Conflict, Forbidden
from anfang.core.ids import make_id_number
from anfang.doorplates.models import Declaration, DoorPlate, PatrolRecord, Visit, VisitorPass
from anfang.doorplates.ratelimit import RateLimiter
from anfang.doorplates.service import current_month
from anfang.registry import metrics
from anfang.registry.models import Address, Person, Residence
from anfang.security.masking import mask_id_number
from anfang.security.models import AuditEntry
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.web.svg import pct
from test_web import csrf, login, text_of
from world import build

NEW_ID = make_id_number("350404", date(1995, 6, 1), 77)


@pytest.fixture
def env(store, tmp_path, monkeypatch):
    monkeypatch.delenv("ANFANG_PLATE_KEYS", raising=False)
    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    app = create_app(settings, store)
    with TestClient(app) as c:
        yield c, w, app.state.doorplates, store


def plate_path(svc, w, key: str) -> str:
    return f"/p/{svc.plate_for(w.addr[key]).token}"


def fresh(c: TestClient, user: str | None) -> TestClient:
    c.cookies.clear()
    if user:
        login(c, user)
    return c


def community_rate(store, principal: Principal, key: str, code: str = "350404001001") -> float:
    rows = {r.code: r for r in metrics.compute(store, principal, "community")}
    return rows[code].rates[key]


# ---- the same URL, by role -------------------------------------------------------------------------------------
def test_same_plate_url_shows_each_role_its_fields(env) -> None:
    c, w, svc, store = env
    path = plate_path(svc, w, "ld-101")
    full = "福建省三明市三元区列东街道列东社区1栋1单元1层101室"
    li_id, zhang_id = w.id_number["li"], w.id_number["zhang"]

    anon = text_of(fresh(c, None).get(path).text)
    assert full in anon and "公开信息" in anon
    for secret in ("张伟", "李娜", li_id, mask_id_number(li_id), w.phone["li"], "13905980000", "巡查记录"):
        assert secret not in anon, secret
    assert "申报居住人员" in anon  # resident self-service is open to anyone on a household plate

    officer = text_of(fresh(c, "police").get(path).text)
    assert "社区民警视图" in officer and full in officer
    assert "张伟" in officer and "李娜" in officer
    assert li_id in officer and zhang_id in officer  # full ID numbers
    assert w.phone["li"] in officer
    assert "巡查记录" in officer and "待核实申报" in officer and "产权人" in officer

    grid = text_of(fresh(c, "grid").get(path).text)
    assert "网格员视图" in grid and "李娜" in grid
    assert li_id not in grid and mask_id_number(li_id) in grid  # masked ID numbers
    assert w.phone["li"] in grid  # grid workers call residents
    assert "巡查签到" in grid and "待核实申报" in grid
    assert "巡查记录" not in grid and "13905980000" not in grid

    prop = text_of(fresh(c, "property").get(path).text)
    assert "物业视图" in prop and full in prop
    assert "张伟" in prop and "13905980000" in prop and "自住" in prop  # owner, owner's phone, house use
    assert "李娜" not in prop and li_id not in prop and mask_id_number(li_id) not in prop
    assert "巡查签到" not in prop and "待核实申报" not in prop

    county = text_of(fresh(c, "county").get(path).text)  # anyone else: the public address only
    assert "公开信息" in county and full in county and "李娜" not in county

    with store.session() as s:
        views = s.scalars(select(AuditEntry.detail).where(AuditEntry.entity == "doorplate",
                                                          AuditEntry.action == "read")).all()
    assert sorted(v.split(";")[0] for v in views) == sorted(
        ["view=public", "view=officer", "view=grid", "view=property", "view=public"])


def test_grid_worker_outside_his_grid_sees_public_only(env) -> None:
    c, w, svc, _store = env
    page = text_of(fresh(c, "grid").get(plate_path(svc, w, "ld2-101")).text)  # 2栋 is grid G-LD-2
    assert "公开信息" in page and "陈强" not in page


def test_forged_and_revoked_plates_are_refused_and_logged(env) -> None:
    c, w, svc, store = env
    fresh(c, None)
    path = plate_path(svc, w, "ld-101")
    forged = path[:-1] + ("a" if path[-1] != "a" else "b")
    r = c.get(forged)
    assert r.status_code == 404 and "无效的门牌二维码" in text_of(r.text)
    svc.revoke(w.users["police"], w.addr["ld-101"], "损坏")
    r = c.get(path)
    assert r.status_code == 404 and "已作废" in text_of(r.text)
    new = plate_path(svc, w, "ld-101")
    assert new != path and c.get(new).status_code == 200
    with store.session() as s:
        rejected = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "scan_rejected")).all()
        assert s.scalar(select(DoorPlate.revoke_reason).where(DoorPlate.revoked_at.is_not(None))) == "损坏"
    assert [d.split(";")[0] for d in rejected] == ["reason=bad_signature", "reason=revoked"]


def test_english_scan_page(env) -> None:
    c, w, svc, _ = env
    page = text_of(fresh(c, None).get(plate_path(svc, w, "ld-101") + "?lang=en").text)
    assert "Public information" in page and "Declare an occupant" in page


# ---- declarations ----------------------------------------------------------------------------------------------
def declare(c: TestClient, path: str, **fields: str):  # noqa: ANN201
    page = c.get(path)
    data = {"csrf_token": csrf(page.text), "name": "赵新", "id_number": NEW_ID, "phone": "13805989999",
            "relation": "tenant", "move_in": "2026-10-01", **fields}
    return c.post(path + "/declare", data=data, follow_redirects=False)


def test_declaration_verified_by_grid_worker_moves_the_rate(env) -> None:
    c, w, svc, store = env
    city = Principal.system()
    before = community_rate(store, city, "persons_verified")
    path = plate_path(svc, w, "ld-102")
    r = declare(fresh(c, None), path)
    assert r.status_code == 303 and "msg=dp_declared" in r.headers["location"]
    assert "等待网格员或社区民警核实" in text_of(c.get(r.headers["location"]).text)
    assert community_rate(store, city, "persons_verified") == before  # pending: nothing in the registry yet
    with store.session() as s:
        assert s.scalar(select(Person.id).where(Person.id_number == NEW_ID)) is None

    grid = fresh(c, "grid")
    page = grid.get(path)
    assert "赵新" in text_of(page.text) and mask_id_number(NEW_ID) in text_of(page.text)
    decl_id = svc.pending_declarations(w.users["grid"])[0]["id"]
    r = grid.post(f"/doorplates/declarations/{decl_id}/review",
                  data={"csrf_token": csrf(page.text), "decision": "accept", "next": path}, follow_redirects=False)
    assert r.status_code == 303
    with store.session() as s:
        p = s.scalar(select(Person).where(Person.id_number == NEW_ID))
        assert p.verification == "verified" and p.name == "赵新" and p.address_id == w.addr["ld-102"]
        assert s.scalar(select(Residence.role).where(Residence.person_id == p.id)) == "tenant"
    assert community_rate(store, city, "persons_verified") > before
    assert "赵新" in text_of(grid.get(path).text)


def test_declaration_form_checks_the_id_number(env) -> None:
    c, w, svc, _ = env
    bad = NEW_ID[:-1] + ("0" if NEW_ID[-1] != "0" else "1")
    r = declare(fresh(c, None), plate_path(svc, w, "ld-102"), id_number=bad)
    assert r.status_code == 422 and "身份证" in text_of(r.text)


def test_declaration_needs_csrf(env) -> None:
    c, w, svc, _ = env
    r = fresh(c, None).post(plate_path(svc, w, "ld-102") + "/declare",
                            data={"csrf_token": "x", "name": "a", "id_number": NEW_ID}, follow_redirects=False)
    assert r.status_code == 403


def test_declaration_never_overwrites_verified_data(env) -> None:
    c, w, svc, store = env
    r = declare(fresh(c, None), plate_path(svc, w, "ld-101"), name="冒名者", id_number=w.id_number["zhang"],
                phone="13800000000")
    assert r.status_code == 303
    decl_id = svc.pending_declarations(w.users["police"])[0]["id"]
    with pytest.raises(Conflict):
        svc.review(w.users["police"], decl_id, True)
    with store.session() as s:
        zhang = s.get(Person, w.person["zhang"])
        assert (zhang.name, zhang.phone, zhang.verification) == ("张伟", w.phone["zhang"], "verified")
        assert s.get(Declaration, decl_id).status == "pending"


def test_only_verifiers_in_scope_review(env) -> None:
    _c, w, svc, _ = env
    token = svc.plate_for(w.addr["ld-102"]).token
    decl = svc.declare(Principal.anonymous(), token, name="赵新", id_number=NEW_ID, phone=None, relation="family",
                       move_in=None)
    with pytest.raises(Forbidden):
        svc.review(w.users["property"], decl, True)
    with pytest.raises(Forbidden):  # a grid worker of another community
        svc.review(Principal(user_id=None, username="fx", role=w.users["grid"].role, grid_id=w.grid["G-FX-1"]),
                   decl, True)
    assert svc.review(w.users["grid"], decl, False)["status"] == "rejected"


def test_resident_confirms_his_household(env) -> None:
    c, w, svc, store = env
    path = plate_path(svc, w, "ld-102")
    with store.session() as s:  # make the resident live at ld-102 with 王芳 (unverified)
        s.execute(update(Person).where(Person.id == w.person["li"]).values(address_id=w.addr["ld-102"]))
    r = fresh(c, "resident")
    page = r.get(path)
    assert "本户登记人员" in text_of(page.text) and "王芳" in text_of(page.text)
    resp = r.post(path + "/confirm", data={"csrf_token": csrf(page.text)}, follow_redirects=False)
    assert resp.status_code == 303
    decl = svc.pending_declarations(w.users["police"])[0]
    assert decl["kind"] == "confirm"
    out = svc.review(w.users["police"], decl["id"], True)
    assert w.person["wang"] in out["person_ids"]


# ---- installation ----------------------------------------------------------------------------------------------
def test_installer_position_sets_installed_and_accurate(env) -> None:
    c, w, svc, store = env
    city = Principal.system()
    assert community_rate(store, city, "plate_installed") < 1
    token = svc.plate_for(w.addr["ld2-101"]).token  # not installed, coordinates 117.6, 26.26
    far = svc.confirm_installation(w.users["property"], token, 117.61, 26.26)  # ~1 km away
    assert far["installed"] and not far["accurate"] and far["distance_m"] > 900
    with store.session() as s:
        a = s.get(Address, w.addr["ld2-101"])
        assert (a.plate_installed, a.plate_accurate) == (True, False)
    before_acc = community_rate(store, city, "plate_accurate")
    page = fresh(c, "property").get(f"/p/{token}")
    r = c.post(f"/p/{token}/install", data={"csrf_token": csrf(page.text), "lon": "117.60005", "lat": "26.26003"})
    assert r.status_code == 200 and "已确认安装" in text_of(r.text) and "✔" in text_of(r.text)
    assert community_rate(store, city, "plate_accurate") > before_acc
    with store.session() as s:
        assert s.get(Address, w.addr["ld2-101"]).plate_accurate is True


def test_installation_outside_scope_is_refused(env) -> None:
    _c, w, svc, _ = env
    with pytest.raises(Forbidden):
        svc.confirm_installation(w.users["grid"], svc.plate_for(w.addr["fx-101"]).token, 117.6, 26.26)


# ---- patrols ---------------------------------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def test_patrol_check_in_and_coverage(env, tmp_path) -> None:
    c, w, svc, store = env
    grid_p = w.users["grid"]
    rows = {r["code"]: r for r in svc.coverage(grid_p)}
    assert rows["G-LD-1"]["points"] == 3 and rows["G-LD-1"]["covered"] == 0  # gate, 1栋, 1栋1单元
    g = fresh(c, "grid")
    path = plate_path(svc, w, "ld-1")
    page = g.get(path)
    r = g.post(path + "/patrol", data={"csrf_token": csrf(page.text), "lon": "117.6", "lat": "26.26",
                                      "note": "消防通道畅通"}, files={"photo": ("a.png", PNG, "image/png")},
               follow_redirects=False)
    assert r.status_code == 303
    svc.check_in(grid_p, svc.plate_for(w.addr["ld-1-1"]).token, lon=None, lat=None, note="")
    svc.check_in(grid_p, svc.plate_for(w.addr["ld-1-1"]).token, lon=None, lat=None, note="again")
    rows = {r["code"]: r for r in svc.coverage(grid_p)}
    assert (rows["G-LD-1"]["covered"], rows["G-LD-1"]["checkins"]) == (2, 3)
    assert rows["G-LD-1"]["rate"] == pytest.approx(2 / 3)
    assert svc.coverage(grid_p, "2020-01")[0]["covered"] == 0
    with store.session() as s:
        photo = s.scalar(select(PatrolRecord.photo).where(PatrolRecord.note == "消防通道畅通"))
    assert (tmp_path / photo).read_bytes() == PNG
    officer = text_of(fresh(c, "police").get(path).text)
    assert "消防通道畅通" in officer
    hub = text_of(c.get(f"/doorplates?month={current_month()}").text)
    assert "列东第一网格" in hub and pct(2 / 3) in hub


def test_property_staff_cannot_check_in(env) -> None:
    _c, w, svc, _ = env
    with pytest.raises(Forbidden):
        svc.check_in(w.users["property"], svc.plate_for(w.addr["ld-1"]).token, lon=None, lat=None)


# ---- visitor passes --------------------------------------------------------------------------------------------
def test_visitor_pass_opens_the_doors_on_the_way_and_is_recorded(env) -> None:
    c, w, svc, store = env
    household = plate_path(svc, w, "ld-101")
    r = fresh(c, "resident")  # 李娜 lives at ld-101
    page = r.get(household)
    resp = r.post(household + "/pass", data={"csrf_token": csrf(page.text), "visitor_name": "王师傅", "hours": "2"})
    assert resp.status_code == 200 and "通行码已生成" in text_of(resp.text)
    pass_token = svc.issue_pass(w.users["resident"], household[3:], "快递", 1)
    gate, other = svc.plate_for(w.addr["ld"]).token, svc.plate_for(w.addr["fx"]).token
    key = svc.door_key("door-1")
    hdr = {"X-Door-Id": "door-1", "X-Door-Key": key}
    body = {"pass_token": pass_token, "door_plate": gate}
    assert c.post("/api/doorplates/access/check", json=body, headers=hdr).json()["granted"] is True
    wrong = c.post("/api/doorplates/access/check", json={**body, "door_plate": other}, headers=hdr).json()
    assert wrong == {"granted": False, "reason": "wrong_door", "valid_until": None}
    assert c.post("/api/doorplates/access/check", json=body, headers={**hdr, "X-Door-Key": "0" * 64}).status_code \
        == 401
    with store.session() as s:
        s.execute(update(VisitorPass).values(valid_until=utcnow() - timedelta(seconds=1)))
    assert svc.check_pass(pass_token, gate, "door-1")["reason"] == "expired"
    with store.session() as s:
        assert [v.reason for v in s.scalars(select(Visit).order_by(Visit.id))] == ["granted", "wrong_door", "expired"]


def test_only_residents_of_the_household_issue_passes(env) -> None:
    _c, w, svc, _ = env
    with pytest.raises(Forbidden):
        svc.issue_pass(w.users["resident"], svc.plate_for(w.addr["ld-102"]).token, "x", 1)
    with pytest.raises(Forbidden):
        svc.issue_pass(Principal.anonymous(), svc.plate_for(w.addr["ld-101"]).token, "x", 1)


# ---- notices and tip-offs --------------------------------------------------------------------------------------
def test_notice_reaches_plates_of_its_building_only(env) -> None:
    c, w, svc, _ = env
    svc.post_notice(w.users["police"], w.addr["ld-1"], "anti_fraud", "谨防电信诈骗", "不要向陌生账户转账。")
    assert "谨防电信诈骗" in text_of(fresh(c, None).get(plate_path(svc, w, "ld-101")).text)
    assert "谨防电信诈骗" not in text_of(c.get(plate_path(svc, w, "ld2-101")).text)


def test_tipoff_reaches_grid_worker_and_is_tracked_to_a_reply(env) -> None:
    c, w, svc, _ = env
    path = plate_path(svc, w, "ld-1")
    anon = fresh(c, None)
    page = anon.get(path)
    r = anon.post(path + "/report", data={"csrf_token": csrf(page.text), "kind": "hazard", "text": "楼道堆放杂物",
                                          "place": "1栋1单元", "contact": ""}, follow_redirects=False)
    assert r.status_code == 303
    ticket_url = r.headers["location"].split("?")[0]
    assert "处理中" in text_of(c.get(ticket_url).text)
    assert [t["text"] for t in svc.tipoffs(w.users["grid"])] == ["楼道堆放杂物"]
    assert svc.tipoffs(w.users["police"])  # the 警务区's officer sees it too
    fx_grid = Principal(user_id=None, username="fx", role=w.users["grid"].role, grid_id=w.grid["G-FX-1"])
    assert svc.tipoffs(fx_grid) == []
    g = fresh(c, "grid")
    hub = g.get("/doorplates")
    assert "楼道堆放杂物" in text_of(hub.text)
    tid = svc.tipoffs(w.users["grid"])[0]["id"]
    g.post(f"/doorplates/tipoffs/{tid}/reply", data={"csrf_token": csrf(hub.text), "text": "已清理"})
    page = text_of(fresh(c, None).get(ticket_url).text)
    assert "已答复" in page and "已清理" in page


# ---- abuse -----------------------------------------------------------------------------------------------------
def test_public_pages_are_rate_limited_per_client(env) -> None:
    c, w, svc, _ = env
    path = plate_path(svc, w, "ld-101")
    fresh(c, None)
    limiter = c.app.state.ratelimiter  # a stopped clock: a loaded machine's slow requests refill no token
    limiter.allow = lambda rule, client, now=None: RateLimiter.allow(limiter, rule, client, now=1000.0)
    codes = [c.get(path).status_code for _ in range(31)]
    assert codes[:30] == [200] * 30 and codes[30] == 429
    assert "操作过于频繁" in text_of(c.get(path).text)


# ---- console pages ---------------------------------------------------------------------------------------------
def test_console_plate_page_and_sheets(env) -> None:
    c, w, svc, _ = env
    g = fresh(c, "police")
    assert "门牌二维码" in g.get(f"/addresses/{w.addr['ld-101']}").text
    page = g.get(f"/doorplates/addresses/{w.addr['ld-101']}")
    assert page.status_code == 200 and "<svg" in page.text and svc.plate_for(w.addr["ld-101"]).token in page.text
    svg = g.get(f"/doorplates/sheet/{w.addr['ld-1']}.svg")
    assert svg.status_code == 200 and svg.text.count('class="plate"') == 4  # 1栋, 1单元, 101室, 102室
    assert g.get(f"/doorplates/sheet/{w.addr['fx']}.svg").status_code in (403, 404)
    pdf = g.get(f"/doorplates/sheet/{w.addr['ld-1']}.pdf")
    if pdf.status_code == 500:  # no Chinese font on this machine: the page says what to install
        assert "fonts-wqy-microhei" in text_of(pdf.text)
    else:
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
