"""The city dashboard (大屏) with the bundled county map, the monthly circular as PDF with charts, and the project
console pages — over HTTP as the city, a county officer, the police; and the dashboard in Debian's chromium."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.dashboard import county_shapes, map_svg
from anfang.core.regions import COUNTIES
from anfang.devices.service import DeviceService
from anfang.doorplates.sheets import FontMissing, find_cjk_font
from anfang.store.base import utcnow
from anfang.viid.models import ViidObject
from liveserver import anfang_serve
from test_web import csrf, login
from world import build

LIEDONG = "350404001001"
CHROMIUM = Path("/usr/bin/chromium")


def test_bundled_map_covers_every_county_of_today() -> None:
    shapes = county_shapes()
    assert {f["code"] for f in shapes["features"]} == set(COUNTIES)
    assert "echarts-china-cities-pypkg" in shapes["source"]
    svg = map_svg({"350404": 1.0, "350405": 0.0}, {"350404": "100%"}, highlight="350405")
    assert svg.startswith("<svg") and svg.count("<path") == len(shapes["features"])
    assert set(re.findall(r'data-county="(\d+)"', svg)) == set(COUNTIES)
    assert "三元区" in svg and "沙县区" in svg and "梅列区" not in svg.split("</path>")[-1]
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def _devices(store) -> None:
    svc = DeviceService(store)
    svc.upsert("gb28181", "35040400001320000001", type_code="132", community_code=LIEDONG, place="perimeter",
               attributes={"capture": ["face"]}, registered_at=utcnow() - timedelta(days=2))
    svc.set_status("gb28181", "35040400001320000001", "online", at=utcnow() - timedelta(days=2))
    now = utcnow()
    with store.session() as s:
        for i in range(3):
            s.add(ViidObject(kind="face", object_id=f"x{i}", device_id="35040400001320000001",
                             shot_at=now - timedelta(minutes=i), received_at=now, community_code=LIEDONG, body="{}"))


def test_dashboard_api_and_page(store, tmp_path) -> None:
    build(store)
    _devices(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "city")
        d = c.get("/api/construction/dashboard").json()
        assert len(d["counties"]) == 11 and "map_svg" not in d
        assert d["totals"]["plan_communities"] == 358 and d["totals"]["plan_channels"] == 6190
        assert d["totals"]["captures_today"] >= 1 and d["early"]["target"] == 1750
        sanyuan = next(r for r in d["counties"] if r["code"] == "350404")
        assert sanyuan["devices"] == 1 and sanyuan["online_today"] is not None
        page = c.get("/construction/dashboard")
        assert page.status_code == 200 and 'data-testid="city-map"' in page.text
        assert "/static/construction.css" in page.text and "<script src=\"http" not in page.text
        login(c, "county")
        d = c.get("/api/construction/dashboard").json()
        assert [r["code"] for r in d["counties"]] == ["350404"]
        login(c, "police")
        assert c.get("/api/construction/dashboard").status_code == 403


def test_circular_pdf_with_charts(store, tmp_path) -> None:
    try:
        find_cjk_font()
    except FontMissing as exc:
        pytest.skip(str(exc))
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "city")
        r = c.get("/api/construction/circular.pdf?year=2021&month=6")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        assert r.headers["content-type"] == "application/pdf"
        assert len(re.findall(rb"/Type /Page\b", r.content)) >= 2
        login(c, "police")
        assert c.get("/api/construction/circular.pdf").status_code == 403


def test_project_pages_create_design_review(store, tmp_path) -> None:
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "property")
        page = c.get("/construction/projects")
        assert page.status_code == 200 and 'data-testid="project-create"' in page.text
        r = c.post("/construction/projects", data={"csrf_token": csrf(page.text), "community_code": LIEDONG,
                                                   "name": "列东社区改造", "kind": "retrofit",
                                                   "target_tier": "basic", "budget": "120000"},
                   follow_redirects=False)
        assert r.status_code == 303
        url = r.headers["location"]
        pid = int(url.rsplit("/", 1)[1])
        page = c.get(url)
        assert 'data-state="design"' in page.text and 'data-testid="design-missing"' in page.text
        items = re.findall(r'name="item" value="([^"]+)"', page.text)
        basic = [v for v in items if not v.endswith("|unit_entrance") and not v.startswith("perimeter_alarm")
                 and v not in ("vehicle_recognition|parking_entrance",) and not v.endswith(
                     ("|gas_station", "|water_pump_room", "|power_room"))]
        r = c.post(f"/construction/projects/{pid}/design",
                   data={"csrf_token": csrf(page.text), "target_tier": "basic", "item": basic},
                   follow_redirects=False)
        assert r.status_code == 303
        page = c.get(url)
        assert 'data-testid="design-missing"' not in page.text, page.text
        r = c.post(f"/construction/projects/{pid}/act", data={"csrf_token": csrf(page.text), "action": "submit"},
                   follow_redirects=False)
        assert r.status_code == 303
        r = c.post(f"/construction/projects/{pid}/funding",
                   data={"csrf_token": csrf(page.text), "kind": "fund", "source": "maintenance_fund",
                         "amount": "50000", "on": "2026-11-01"}, follow_redirects=False)
        assert r.status_code == 303
        login(c, "police")
        page = c.get(url)
        assert 'data-action="return"' in page.text and 'data-action="approve"' in page.text
        r = c.post(f"/construction/projects/{pid}/act", data={"csrf_token": csrf(page.text), "action": "approve",
                                                              "comment": "同意"}, follow_redirects=False)
        assert r.status_code == 303
        pr = c.get(f"/api/construction/projects/{pid}").json()
        assert pr["state"] == "approved" and pr["funding"]["funded"] == "50000.00"
        assert c.post(f"/api/construction/projects/{pid}/actions/start_build").status_code == 403


@pytest.mark.browser
def test_dashboard_in_chromium(tmp_path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("ANFANG_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} missing")
        pytest.skip(f"{CHROMIUM} not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    from anfang.construction.demo import seed_demo
    from anfang.demo.generator import generate
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade

    db_url = f"sqlite:///{(tmp_path / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    try:
        logins = {x.role: (x.username, x.password) for x in generate(store, scale=0.05, seed=2021).logins}
        seed_demo(store, seed=2021)
    finally:
        store.dispose()
    with anfang_serve(tmp_path) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
        outside: list[str] = []
        errors: list[str] = []

        def guard(route, request) -> None:  # noqa: ANN001
            if request.url.startswith(base) or request.url.startswith(("data:", "blob:", "about:")):
                route.continue_()
            else:
                outside.append(request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base + "/login")
        user, password = logins["city_admin"]
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.goto(base + "/construction/dashboard")
        svg = page.locator("[data-testid=city-map]")
        assert svg.is_visible()
        assert svg.locator("path").count() == len(county_shapes()["features"])
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 250
        assert page.locator("[data-testid=county-table] tbody tr").count() == 11
        assert page.locator("[data-testid=kpi-built]").inner_text().endswith("/ 358")
        # the stylesheet applied: the dark screen, not the console's white
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(7, 17, 31)"
        page.screenshot(path="/tmp/anfang-construction-dashboard.png", full_page=True)
        assert outside == [] and errors == []
        browser.close()


def test_cli_circular_xlsx_and_pdf(tmp_path, monkeypatch) -> None:
    from openpyxl import load_workbook
    from typer.testing import CliRunner

    from anfang.cli import app

    for k in [k for k in os.environ if k.startswith("ANFANG_") and k != "ANFANG_CJK_FONT"]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["construction", "circular", str(tmp_path / "c.xlsx"), "--year", "2021", "--month", "6",
                            "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    ws = load_workbook(tmp_path / "c.xlsx")["月度通报"]
    assert any(row[0] == "排名" for row in ws.iter_rows(values_only=True))
    (tmp_path / "construction").mkdir()
    (tmp_path / "construction" / "plan_2021.csv").write_text(
        "县区代码,县区,小区任务数,居安工程任务路数\n350404,三元区,358,6190\n", encoding="utf-8")
    try:
        find_cjk_font()
    except FontMissing:
        return
    r = runner.invoke(app, ["construction", "circular", str(tmp_path / "c.pdf"), "--year", "2021", "--month", "6",
                            "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF") and "示例" not in r.output
