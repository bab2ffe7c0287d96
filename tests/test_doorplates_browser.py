"""Done-means for door plates, in Debian's chromium with a phone viewport against `anfang serve` (demo data):
a resident opens a household plate URL and declares an occupant, the grid worker verifies it on the same page,
the verification rate moves; the same URL shows the officer, the grid worker, property staff and an anonymous
visitor different content, field by field. Off-server requests are blocked and must not happen (offline)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from anfang.core.ids import make_id_number
from anfang.doorplates.service import DoorplateService
from anfang.doorplates.tokens import load_keyring
from anfang.registry import metrics
from anfang.registry.models import Address, House
from anfang.security.masking import mask_id_number
from anfang.security.models import User
from anfang.security.scope import Principal
from anfang.store.engine import Store
from test_browser import CHROMIUM_ARGS, Server, browser, server  # noqa: F401 - module-scoped fixtures

pytestmark = pytest.mark.browser
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "locale": "zh-CN"}
DECLARED_ID = make_id_number("350404", date(1996, 4, 18), 88)


@pytest.fixture(scope="module")
def plate(server: Server) -> dict:  # noqa: F811
    """A household plate in the demo grid worker's grid, and that community's code."""
    data_dir = Path(urlparse(server.db_url.replace("sqlite:///", "file:///")).path).parent
    store = Store(server.db_url)
    try:
        with store.session() as s:
            grid_id = s.scalar(select(User.grid_id).where(User.username == server.logins["grid_worker"][0]))
            a = s.execute(select(Address.id, Address.community_code, Address.full_name)
                          .join(House, House.address_id == Address.id)
                          .where(Address.grid_id == grid_id, Address.level == "room").order_by(Address.id)
                          .limit(1)).one()
        svc = DoorplateService(store, load_keyring(data_dir), data_dir=data_dir)
        token = svc.plate_for(a.id).token
    finally:
        store.dispose()
    return {"path": f"/p/{token}", "community": a.community_code, "full_name": a.full_name}


def rate(server: Server, community: str) -> float:  # noqa: F811
    store = Store(server.db_url)
    try:
        rows = {r.code: r for r in metrics.compute(store, Principal.system(), "community")}
    finally:
        store.dispose()
    return rows[community].rates["persons_verified"]


@pytest.fixture
def phone(browser, server: Server):  # noqa: ANN001, ANN201, F811
    contexts = []
    blocked: list[str] = []
    errors: list[str] = []
    local = urlparse(server.base).netloc

    def new_page():  # noqa: ANN202
        context = browser.new_context(**PHONE)

        def guard(route, request) -> None:  # noqa: ANN001
            url = urlparse(request.url)
            if url.scheme in ("data", "blob", "about") or url.netloc == local:
                route.continue_()
            else:
                blocked.append(request.url)
                route.abort()

        context.route("**/*", guard)
        contexts.append(context)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        return pg

    try:
        yield new_page
        assert blocked == [], f"the plate pages tried to reach outside the server: {blocked}"
        assert errors == [], f"browser errors (JS or CSP): {errors}"
    finally:
        for c in contexts:
            c.close()


def log_in_to(page, server: Server, role: str, path: str) -> None:  # noqa: ANN001, F811
    username, password, _ = server.logins[role]
    page.goto(server.base + "/login?next=" + path)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(server.base + path)


def test_resident_declares_grid_worker_verifies_rate_moves_and_roles_differ(phone, server: Server,  # noqa: F811
                                                                             plate: dict) -> None:
    url = server.base + plate["path"]
    before = rate(server, plate["community"])

    # a resident scans the plate with his phone: no app, no login
    resident = phone()
    resident.goto(url)
    assert resident.locator("[data-testid=address-full]").inner_text() == plate["full_name"]
    assert resident.locator("[data-testid=plate-address]").get_attribute("data-view") == "public"
    assert resident.locator("[data-testid=occupants]").count() == 0
    form = resident.locator("[data-testid=declare-form] form")
    form.locator("input[name=name]").fill("郑小明")
    form.locator("input[name=id_number]").fill(DECLARED_ID)
    form.locator("input[name=phone]").fill("13805987777")
    form.locator("select[name=relation]").select_option("tenant")
    form.locator("input[name=move_in]").fill("2026-10-01")
    form.locator("button[type=submit]").click()
    resident.wait_for_url(re.compile(r"msg=dp_declared"))
    assert "等待网格员或社区民警核实" in resident.locator("[data-testid=flash]").inner_text()
    assert rate(server, plate["community"]) == before  # pending changes nothing

    # the grid worker opens the same URL, sees the declaration (ID masked) and verifies it
    grid = phone()
    log_in_to(grid, server, "grid_worker", plate["path"])
    assert grid.locator("[data-testid=plate-address]").get_attribute("data-view") == "grid"
    item = grid.locator("[data-testid=pending] [data-declaration]").filter(has_text="郑小明")
    assert mask_id_number(DECLARED_ID) in item.inner_text() and DECLARED_ID not in item.inner_text()
    item.locator("button[value=accept]").click()
    grid.wait_for_url(re.compile(r"msg=dp_reviewed"))
    occupant = grid.locator("[data-testid=occupants] li").filter(has_text="郑小明")
    assert occupant.locator(".badge").inner_text() == "已核实"
    assert occupant.locator(".id-number").inner_text() == mask_id_number(DECLARED_ID)
    assert grid.locator("[data-testid=patrol-form]").is_visible()
    assert grid.locator("[data-testid=patrols]").count() == 0
    after = rate(server, plate["community"])
    assert after > before

    # the officer: full ID numbers, management categories, owner, patrol records, pending declarations
    officer = phone()
    log_in_to(officer, server, "police", plate["path"])
    assert officer.locator("[data-testid=plate-address]").get_attribute("data-view") == "officer"
    row = officer.locator("[data-testid=occupants] li").filter(has_text="郑小明")
    assert row.locator(".id-number").inner_text() == DECLARED_ID
    assert row.locator(".occ-phone").inner_text() == "13805987777"
    for section in ("owner-card", "patrols", "pending"):
        assert officer.locator(f"[data-testid={section}]").is_visible(), section

    # property staff: address, owner contact and house use — no occupants, no ID numbers
    prop = phone()
    log_in_to(prop, server, "property_staff", plate["path"])
    assert prop.locator("[data-testid=plate-address]").get_attribute("data-view") == "property"
    assert prop.locator("[data-testid=owner-card]").is_visible()
    assert prop.locator("[data-testid=house-use]").inner_text() not in ("", "—")
    assert prop.locator("[data-testid=occupants]").count() == 0
    assert prop.locator("[data-testid=pending]").count() == 0
    assert "郑小明" not in prop.content() and DECLARED_ID not in prop.content()

    # and the anonymous visitor still sees only the public address
    resident.goto(url)
    assert resident.locator("[data-testid=plate-address]").get_attribute("data-view") == "public"
    assert "郑小明" not in resident.content()
    assert resident.locator("[data-testid=owner-card]").count() == 0
