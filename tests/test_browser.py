"""The console in a real browser: Debian's chromium driven by Playwright against `anfang serve`.

The server is the real entry point (a subprocess on a free port, data directory filled by the demo generator
at scale 0.2).
Every request the browser makes to anything but the server is blocked and recorded: the console must work on a
police network without internet, so the list must stay empty. No browser is ever downloaded: without
/usr/bin/chromium the tests skip (fail under ANFANG_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from anfang.demo.generator import generate
from anfang.registry.models import Address, Person
from anfang.security.models import User
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from liveserver import anfang_serve

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REQUIRE_SERVICES = os.environ.get("ANFANG_REQUIRE_SERVICES") == "1"
SCREENSHOT = Path("/tmp/anfang-console-dashboard.png")
ID_FULL = re.compile(r"^\d{17}[\dX]$")


def _unavailable(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable under CI: {reason}")
    pytest.skip(reason)


@dataclass
class Server:
    base: str
    db_url: str
    logins: dict[str, tuple[str, str, str]]  # role -> (username, password, display name)


def _fill(db_url: str) -> dict[str, tuple[str, str, str]]:
    store = Store(db_url)
    try:
        summary = generate(store, scale=0.2, seed=2021)
    finally:
        store.dispose()
    return {str(x.role): (x.username, x.password, x.display_name) for x in summary.logins}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed (apt-get install chromium); browsers are never downloaded")
    data_dir = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(db_url)
    logins = _fill(db_url)
    with anfang_serve(data_dir) as base:
        yield Server(base, db_url, logins)


@pytest.fixture(scope="module")
def browser(server: Server):  # noqa: ANN201 - playwright Browser
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server: Server):  # noqa: ANN001, ANN201
    """A fresh context (no cookies) whose every request off the server is blocked — and must not happen."""
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="zh-CN")
    blocked: list[str] = []
    local = urlparse(server.base).netloc

    def guard(route, request) -> None:  # noqa: ANN001
        url = urlparse(request.url)
        if url.scheme in ("data", "blob", "about") or url.netloc == local:
            route.continue_()
        else:
            blocked.append(request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield pg
        assert blocked == [], f"the console tried to reach outside the server: {blocked}"
        assert errors == [], f"browser errors (JS or CSP): {errors}"
    finally:
        context.close()


def log_in(page, server: Server, role: str) -> None:  # noqa: ANN001
    username, password, _ = server.logins[role]
    page.goto(server.base + "/")
    assert urlparse(page.url).path == "/login"  # not logged in: sent to the form
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(server.base + "/")
    assert page.locator("[data-testid=whoami]").is_visible()


def first_person(page, server: Server) -> None:  # noqa: ANN001
    page.goto(server.base + "/persons")
    page.locator("[data-testid=person-table] tbody tr[data-person-id] a").first.click()
    page.wait_for_url(re.compile(r"/persons/\d+"))


def shown_person_ids(page) -> set[int]:  # noqa: ANN001
    return {int(x) for x in page.locator("tr[data-person-id]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-person-id'))")}


@pytest.mark.parametrize("role", ["city_admin", "county_admin", "police", "grid_worker", "property_staff",
                                  "resident"])
def test_each_role_logs_in_through_the_form(page, server: Server, role: str) -> None:
    log_in(page, server, role)
    whoami = page.locator("[data-testid=whoami]").inner_text()
    assert server.logins[role][2] in whoami
    if role == "resident":
        assert len(shown_person_ids(page)) == 1
    else:
        assert page.locator("svg.chart").count() == 6
        assert page.locator("[data-testid=metrics-table] tbody tr").count() >= 1
    page.click("button:has-text('退出')")
    page.wait_for_url(re.compile(r"/login"))


def test_police_sees_full_id_and_screenshot(page, server: Server) -> None:
    log_in(page, server, "police")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    first_person(page, server)
    id_number = page.locator("[data-testid=id-number]").inner_text().strip()
    assert ID_FULL.match(id_number), id_number


def test_grid_worker_sees_masked_id(page, server: Server) -> None:
    log_in(page, server, "grid_worker")
    first_person(page, server)
    id_number = page.locator("[data-testid=id-number]").inner_text().strip()
    assert "*" in id_number and not ID_FULL.match(id_number), id_number


def test_property_staff_sees_only_his_community(page, server: Server) -> None:
    log_in(page, server, "property_staff")
    page.goto(server.base + "/persons")
    shown = shown_person_ids(page)
    assert shown
    store = Store(server.db_url)
    try:
        with store.session() as s:
            community = s.scalar(select(User.community_code).where(User.username == server.logins["property_staff"][0]))
            communities = set(s.scalars(select(Address.community_code).join(Person, Person.address_id == Address.id)
                                        .where(Person.id.in_(shown))))
    finally:
        store.dispose()
    assert communities == {community}
    assert "*" in page.locator("[data-testid=person-table] .id-number").first.inner_text()


def test_resident_sees_only_himself(page, server: Server) -> None:
    log_in(page, server, "resident")
    page.goto(server.base + "/persons")
    assert len(shown_person_ids(page)) == 1


def test_verification_with_confirm_and_language_switch(page, server: Server) -> None:
    log_in(page, server, "police")
    first_person(page, server)
    page.on("dialog", lambda d: d.accept())
    buttons = page.locator("section.verify button:not([disabled])")
    assert buttons.count() == 2
    buttons.first.click()
    page.wait_for_url(re.compile(r"msg=verify_done"))
    assert page.locator(".flash").is_visible()
    page.click("nav.lang >> text=English")
    assert page.locator("h1").first.inner_text().startswith("Person")
    page.goto(server.base + "/")
    assert "Registry dashboard" in page.locator("h1").first.inner_text()


def test_county_admin_places_a_device_by_clicking_the_map(page, server: Server) -> None:
    """待安置 (issue 18): the device's 地图选点 button, a click on an address dot, 安置 — placed at that address."""
    from anfang.devices.models import Device
    from anfang.devices.service import DeviceService

    store = Store(server.db_url)
    try:
        with store.session() as s:
            county = s.scalar(select(User.county_code).where(User.username == server.logins["county_admin"][0]))
        device_id = f"{county}00001329990001"
        DeviceService(store).upsert("gb28181", device_id, name="自注册摄像机", review="pending")
        log_in(page, server, "county_admin")
        page.goto(server.base + "/devices/unplaced")
        row = page.locator(f"tr:has-text('{device_id}')")
        row.locator("[data-pick]").click()
        dot = page.locator("[data-testid=place-map] circle.map-addr").first
        dot.click()
        assert row.locator("input[name=address_code]").input_value() == dot.get_attribute("data-code")
        row.locator("button[type=submit]").click()
        page.wait_for_url(server.base + "/devices/unplaced")
        assert page.locator(f"tr:has-text('{device_id}')").count() == 0
        with store.session() as s:
            dev = s.scalar(select(Device).where(Device.device_id == device_id))
            assert dev.placement == "placed" and dev.address_id is not None and dev.police_area_id is not None
    finally:
        store.dispose()
