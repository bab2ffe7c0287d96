"""The web console as a browser without JavaScript sees it: login, jurisdiction, masking, CSRF, offline assets.

Runs on SQLite and PostgreSQL (the `store` fixture) over the hand-checked world of tests/world.py, whose logins
are the demo roles (city, county, police, grid, property, resident); the last test logs in with the demo
generator's accounts at scale 0.2.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from anfang.app import create_app
from anfang.config import Settings
from anfang.demo.generator import generate
from anfang.registry.models import Address, Person
from anfang.security.masking import mask_id_number
from anfang.security.models import User
from anfang.web import views
from world import PASSWORD, build

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PERSON_ROW_RE = re.compile(r'data-person-id="(\d+)"')
# src=, href=, action= (and CSS url()) that leave this origin: scheme-qualified or protocol-relative.
EXTERNAL_RE = re.compile(r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
                         r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//|@import""", re.IGNORECASE)


@pytest.fixture
def console(store, tmp_path):
    w = build(store)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        yield c, w


def csrf(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


def login(c: TestClient, user: str, password: str = PASSWORD, next_: str = "/") -> None:
    page = c.get("/login")
    assert page.status_code == 200
    r = c.post("/login", data={"username": user, "password": password, "next": next_, "csrf_token": csrf(page.text)},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == next_
    assert "anfang_session" in c.cookies


def person_ids(html: str) -> set[int]:
    return {int(x) for x in PERSON_ROW_RE.findall(html)}


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def assert_offline(html: str, where: str) -> None:
    bad = EXTERNAL_RE.findall(html)
    assert not bad, f"{where} references an external asset: {bad}"
    assert "http://" not in html and "https://" not in html, f"{where} contains an absolute URL"


# ---- login, logout, redirects ----------------------------------------------------------------------------------
def test_unauthenticated_pages_redirect_to_login(console) -> None:
    c, w = console
    for path in ("/", "/metrics", "/addresses", "/persons", f"/persons/{w.person['zhang']}", "/houses", "/units",
                 "/vehicles", "/metrics/below?metric=plate_installed"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        target = urlparse(r.headers["location"])
        assert target.path == "/login"
        assert parse_qs(target.query)["next"][0].startswith(path.split("?")[0])
    page = c.get("/persons")  # followed: the login form, remembering where to go back
    assert page.status_code == 200 and 'name="password"' in page.text and 'value="/persons"' in page.text


def test_login_logout_and_next(console) -> None:
    c, _ = console
    page = c.get("/login")
    bad = c.post("/login", data={"username": "police", "password": "wrong-pass", "csrf_token": csrf(page.text)})
    assert bad.status_code == 401 and "用户名或密码错误" in bad.text and "anfang_session" not in c.cookies
    login(c, "police", next_="/persons")
    home = c.get("/")
    assert home.status_code == 200
    r = c.post("/logout", data={"csrf_token": csrf(home.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/", follow_redirects=False).status_code == 303


def test_login_next_cannot_leave_the_site(console) -> None:
    c, _ = console
    page = c.get("/login")
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = c.post("/login", data={"username": "city", "password": PASSWORD, "next": evil,
                                   "csrf_token": csrf(page.text)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", evil
        page = c.get("/login")


def test_login_without_or_with_bad_csrf_is_403(console) -> None:
    c, _ = console
    c.get("/login")
    r = c.post("/login", data={"username": "city", "password": PASSWORD})
    assert r.status_code == 403 and "anfang_session" not in c.cookies
    r = c.post("/login", data={"username": "city", "password": PASSWORD, "csrf_token": "0" * 64})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]


# ---- top bar and jurisdiction ----------------------------------------------------------------------------------
@pytest.mark.parametrize("user, role_label, jurisdiction", [
    ("city", "市级管理员", "三明市（全市）"),
    ("county", "县级管理员", "福建省三明市三元区"),
    ("police", "社区民警", "列东派出所 列东警务区"),
    ("grid", "网格员", "列东第一网格"),
    ("property", "物业人员", "福建省三明市三元区列东街道列东社区"),
    ("resident", "居民", "本人信息"),
])
def test_each_role_logs_in_and_sees_its_top_bar(console, user, role_label, jurisdiction) -> None:
    c, _ = console
    login(c, user)
    r = c.get("/")
    assert r.status_code == 200
    bar = text_of(r.text.split('data-testid="whoami"', 1)[1].split("</div>", 1)[0])
    assert user in bar and role_label in bar and jurisdiction in bar


def test_city_dashboard_has_counties_and_charts(console) -> None:
    c, _ = console
    login(c, "city")
    html = c.get("/").text
    table = html.split('data-testid="metrics-table"', 1)[1].split("</table>", 1)[0]
    assert 'data-code="350404"' in table and 'data-code="350405"' in table
    assert html.count('<svg class="chart"') == 6
    assert 'class="target"' in html  # the target line
    # 三元区 has plates below target: that cell is highlighted and links to its records
    assert 'href="/metrics/below?metric=plate_accurate&amp;region_code=350404"' in table


def test_county_dashboard_lists_only_its_county(console) -> None:
    c, _ = console
    login(c, "county")
    html = c.get("/").text
    table = html.split('data-testid="metrics-table"', 1)[1].split("</table>", 1)[0]
    codes = set(re.findall(r'data-code="(\d+)"', table))
    assert codes == {"350404001001", "350404001201"}  # 列东社区, 下洋村 — not 沙县区's 府西社区
    assert "府西社区" not in html and "沙县区" not in text_of(html)
    for level in ("community", "town", "county", "city"):
        page = c.get(f"/metrics?level={level}")
        assert page.status_code == 200 and "府西" not in page.text and "350405" not in page.text


def test_below_target_list(console) -> None:
    c, w = console
    login(c, "county")
    r = c.get("/metrics/below", params={"metric": "plate_accurate", "region_code": "350404001001"})
    assert r.status_code == 200
    assert f'href="/addresses/{w.addr["ld-102"]}"' in r.text and f'href="/addresses/{w.addr["ld2-101"]}"' in r.text
    assert f'href="/addresses/{w.addr["ld-101"]}"' not in r.text
    r = c.get("/metrics/below", params={"metric": "persons_verified"})
    assert f'/persons/{w.person["wang"]}"' in r.text and f'/persons/{w.person["chen"]}"' in r.text
    assert f'/persons/{w.person["zhang"]}"' not in r.text


# ---- scoping of lists ------------------------------------------------------------------------------------------
def test_grid_worker_sees_only_his_grid(console) -> None:
    c, w = console
    login(c, "grid")
    html = c.get("/persons").text
    assert person_ids(html) == {w.person["zhang"], w.person["li"], w.person["wang"]}  # G-LD-1 only
    assert "列东社区1栋" in html and "2栋" not in html
    assert c.get(f"/persons/{w.person['chen']}").status_code == 404  # G-LD-2
    # the address tree walks straight down to his community
    tree = c.get("/addresses").text
    assert "列东社区" in tree and "下洋村" not in tree and "府西" not in tree


def test_property_staff_sees_only_his_community(console) -> None:
    c, w = console
    login(c, "property")
    html = c.get("/persons").text
    assert person_ids(html) == {w.person[k] for k in ("zhang", "li", "wang", "chen")}
    assert "林秀英" not in html and "黄磊" not in html
    assert "府西" not in c.get("/houses").text and "府西" not in c.get("/units").text
    assert "闽GD23456" not in c.get("/vehicles").text


def test_resident_sees_only_himself(console) -> None:
    c, w = console
    login(c, "resident")
    home = c.get("/").text
    assert person_ids(home) == {w.person["li"]}
    assert person_ids(c.get("/persons").text) == {w.person["li"]}
    assert person_ids(c.get("/persons", params={"name": "张伟"}).text) == set()
    me = c.get(f"/persons/{w.person['li']}")
    assert me.status_code == 200 and w.id_number["li"] in me.text  # his own ID in full
    other = c.get(f"/persons/{w.person['zhang']}")
    assert other.status_code == 404 and "人员不存在或不在您的辖区内" in other.text
    assert "text/html" in other.headers["content-type"] and "Traceback" not in other.text
    assert 'action="/persons/' not in me.text  # residents may not verify


# ---- masking ---------------------------------------------------------------------------------------------------
def test_masking_follows_the_role(console) -> None:
    c, w = console
    zhang = w.person["zhang"]
    full, masked = w.id_number["zhang"], mask_id_number(w.id_number["zhang"])
    login(c, "police")
    page = c.get(f"/persons/{zhang}").text
    assert full in page and masked not in page
    assert full in c.get("/persons").text
    c.cookies.clear()
    for user in ("grid", "property", "county", "city"):
        login(c, user)
        page = c.get(f"/persons/{zhang}").text
        assert masked in page and full not in page, user
        assert full not in c.get("/persons").text, user
        assert full not in c.get(f"/houses/{w.house['h-ld-101']}").text, user
        c.cookies.clear()
    login(c, "grid")  # grid workers call residents: phone in full
    assert w.phone["zhang"] in c.get(f"/persons/{zhang}").text


# ---- verification and plate forms ------------------------------------------------------------------------------
def test_verification_buttons_and_csrf(console) -> None:
    c, w = console
    chen = w.person["chen"]
    login(c, "police")
    page = c.get(f"/persons/{chen}").text
    assert f'action="/persons/{chen}/verify"' in page
    bad = c.post(f"/persons/{chen}/verify", data={"state": "verified", "csrf_token": "forged"})
    assert bad.status_code == 403 and "表单已过期或来源无效" in bad.text
    missing = c.post(f"/persons/{chen}/verify", data={"state": "verified"})
    assert missing.status_code == 403
    assert "有疑问" in c.get(f"/persons/{chen}").text  # unchanged: still disputed
    ok = c.post(f"/persons/{chen}/verify", data={"state": "verified", "csrf_token": csrf(page)},
                follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == f"/persons/{chen}?msg=verify_done"
    after = c.get(ok.headers["location"]).text
    assert "核实状态已更新" in after and "已核实" in after and "police" in after
    invalid = c.post(f"/persons/{chen}/verify", data={"state": "approved", "csrf_token": csrf(page)})
    assert invalid.status_code == 422 and "核实状态无效" in invalid.text
    house = c.post(f"/houses/{w.house['h-ld2-101']}/verify", data={"state": "disputed", "csrf_token": csrf(page)},
                   follow_redirects=False)
    assert house.status_code == 303
    unit = c.post(f"/units/{w.unit['ld-shop']}/verify", data={"state": "unverified", "csrf_token": csrf(page)},
                  follow_redirects=False)
    assert unit.status_code == 303
    outside = c.post(f"/units/{w.unit['fx-prop']}/verify", data={"state": "verified", "csrf_token": csrf(page)})
    assert outside.status_code == 403 and "辖区" in outside.text


def test_property_staff_cannot_verify_but_can_set_plates(console) -> None:
    c, w = console
    login(c, "property")
    page = c.get(f"/persons/{w.person['zhang']}").text
    assert "/verify" not in page
    r = c.post(f"/persons/{w.person['zhang']}/verify", data={"state": "verified", "csrf_token": csrf(page)})
    assert r.status_code == 403 and "无权" in r.text
    ld102 = w.addr["ld-102"]
    addr = c.get(f"/addresses/{ld102}").text
    assert f'action="/addresses/{ld102}/plate"' in addr
    r = c.post(f"/addresses/{ld102}/plate", data={"csrf_token": csrf(addr), "plate_installed": "1",
                                                  "plate_accurate": "1", "plate_labelled": "1"},
               follow_redirects=False)
    assert r.status_code == 303
    below = c.get("/metrics/below", params={"metric": "plate_accurate"}).text
    assert f"/addresses/{ld102}\"" not in below and f"/addresses/{w.addr['ld2-101']}\"" in below


# ---- addresses, houses, units, vehicles ------------------------------------------------------------------------
def test_address_tree_and_search(console) -> None:
    c, w = console
    login(c, "county")
    tree = c.get("/addresses").text  # 三明市 → 三元区 → 列东街道: two communities to choose from
    assert "列东社区" in tree and "下洋村" in tree and "府西" not in tree
    roots = c.get("/addresses", params={"region": "350404001001"}).text
    assert f'href="/addresses/{w.addr["ld"]}"' in roots
    room = c.get(f"/addresses/{w.addr['ld-101']}").text
    crumbs = text_of(room.split('class="crumbs"', 1)[1].split("</nav>", 1)[0])
    for part in ("三明市", "三元区", "列东街道", "列东社区", "1栋", "1单元", "1层", "101室"):
        assert part in crumbs
    assert f'href="/houses/{w.house["h-ld-101"]}"' in room and "张伟" in room and "李娜" in room
    building = c.get(f"/addresses/{w.addr['ld-1']}").text
    assert "列东便民超市" in building and f'href="/addresses/{w.addr["ld-1-1"]}"' in building
    found = c.get("/addresses", params={"q": "三明市三元区列东街道列东社区2栋"}).text
    assert f'/addresses/{w.addr["ld2-101"]}"' in found and f'/addresses/{w.addr["ld-101"]}"' not in found
    outside = c.get(f"/addresses/{w.addr['fx-101']}")
    assert outside.status_code == 403 and "该地址不在您的辖区内" in outside.text


def test_houses_units_vehicles(console) -> None:
    c, w = console
    login(c, "city")
    houses = c.get("/houses", params={"use": "rental"}).text
    assert f'/houses/{w.house["h-ld-102"]}"' in houses and f'/houses/{w.house["h-ld-101"]}"' not in houses
    house = c.get(f"/houses/{w.house['h-ld-101']}").text
    assert "张伟" in house and "产权人" in house and "家庭成员" in house
    units = c.get("/units", params={"name": "物业"}).text
    assert "府西物业公司" in units and "列东便民超市" not in units
    unit = c.get(f"/units/{w.unit['fx-prop']}").text
    assert "统一社会信用代码" in unit and "黄磊" in unit
    vehicles = c.get("/vehicles", params={"plate": "闽GD"}).text
    assert "闽GD23456" in vehicles and "闽G12345" not in vehicles
    assert f'href="/persons/{w.person["huang"]}"' in vehicles
    person = c.get(f"/persons/{w.person['zhang']}").text
    assert "闽G12345" in person and f'href="/houses/{w.house["h-ld-101"]}"' in person


def test_person_search_and_paging(console, monkeypatch) -> None:
    c, w = console
    login(c, "city")
    assert person_ids(c.get("/persons", params={"id_number": w.id_number["lin"]}).text) == {w.person["lin"]}
    assert person_ids(c.get("/persons", params={"phone": w.phone["huang"]}).text) == {w.person["huang"]}
    assert person_ids(c.get("/persons", params={"name": "王芳"}).text) == {w.person["wang"]}
    assert person_ids(c.get("/persons", params={"plate": "闽G12345"}).text) == {w.person["zhang"]}
    # a whole county is a wide search: the page asks for a reason first (数据查询授权, docs/security.md)
    assert c.get("/persons", params={"address_prefix": "三明市沙县区"}).status_code == 428
    assert person_ids(c.get("/persons", params={"address_prefix": "三明市沙县区", "reason": "核对沙县区人口"}).text) \
        == {w.person["huang"]}
    monkeypatch.setattr(views, "PAGE_SIZE", 4)
    first = c.get("/persons", params={"reason": "全市人口分页核对"}).text  # the reason rides along the pager
    assert len(person_ids(first)) == 4 and 'rel="next"' in first and 'rel="prev"' not in first
    next_href = unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    second = c.get(next_href).text
    assert len(person_ids(second)) == 2 and 'rel="next"' not in second and 'rel="prev"' in second
    assert person_ids(first) | person_ids(second) == set(w.person.values())


# ---- errors, language, offline ---------------------------------------------------------------------------------
def test_errors_are_friendly_pages(console) -> None:
    c, _ = console
    login(c, "city")
    for path, status, words in (("/persons/999999", 404, "人员不存在"), ("/metrics?level=planet", 422, "统计层级无效"),
                                ("/metrics/below?metric=happiness", 422, "指标无效"),
                                ("/persons?page=0", 422, "page"), ("/persons/abc", 422, "person_id")):
        r = c.get(path)
        assert r.status_code == status, path
        assert "text/html" in r.headers["content-type"] and words in r.text, path
        assert "Traceback" not in r.text and 'class="sidenav"' in r.text  # inside the console frame


def test_language_switch(console) -> None:
    c, _ = console
    r = c.get("/login?lang=en")
    assert "Log in" in r.text and '<html lang="en">' in r.text
    assert c.cookies.get("anfang_lang") == "en"
    login(c, "police")
    home = c.get("/").text
    assert "Registry dashboard" in home and "community police officer" in home and "Plate accuracy rate" in home
    person = c.get("/persons").text
    assert "ID number" in person and "Verification" in person
    zh = c.get("/?lang=zh-CN").text
    assert "一标三实工作台" in zh and c.cookies.get("anfang_lang") == "zh-CN"


def test_no_page_needs_the_internet(console) -> None:
    c, w = console
    assert_offline(c.get("/login").text, "/login")
    login(c, "police")
    pages = ["/", "/metrics", "/metrics?level=town", "/metrics/below?metric=plate_accurate", "/addresses",
             "/addresses?region=350404001001", f"/addresses/{w.addr['ld-101']}", "/persons",
             f"/persons/{w.person['zhang']}", "/houses", f"/houses/{w.house['h-ld-101']}", "/units",
             f"/units/{w.unit['ld-shop']}", "/vehicles", "/persons/999999", "/?lang=en"]
    for path in pages:
        r = c.get(path)
        assert r.status_code in (200, 404), path
        assert_offline(r.text, path)
        assert "default-src 'self'" in r.headers["content-security-policy"]
        for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)', r.text):
            assert c.get(asset).status_code == 200, asset
    css = c.get("/static/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert not EXTERNAL_RE.search(css.text) and "@font-face" not in css.text
    js = c.get("/static/console.js")
    assert js.status_code == 200 and "http" not in js.text and "fetch(" not in js.text


# ---- the demo generator's logins ------------------------------------------------------------------------------
def test_demo_logins(store, tmp_path) -> None:
    summary = generate(store, scale=0.2, seed=2021)
    by_role = {login_.role: login_ for login_ in summary.logins}
    assert {"city_admin", "county_admin", "police", "grid_worker", "property_staff", "resident"} <= set(by_role)
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        for demo in summary.logins:
            c.cookies.clear()
            login(c, demo.username, demo.password)
            home = c.get("/")
            assert home.status_code == 200 and demo.display_name in home.text
            assert c.get("/persons").status_code == 200
        c.cookies.clear()
        grid = by_role["grid_worker"]
        login(c, grid.username, grid.password)
        shown = person_ids(c.get("/persons").text)
        assert shown
        with store.session() as s:
            grid_id = s.scalar(select(User.grid_id).where(User.username == grid.username))
            grids = set(s.scalars(select(Address.grid_id).join(Person, Person.address_id == Address.id)
                                  .where(Person.id.in_(shown))))
        assert grids == {grid_id}
