"""The console tells every role the truth (issue 19): Beijing time labelled on every page, counts of the whole
query, viewing is not exporting, pages that do not mislead, Chinese mode in Chinese.

Against `anfang serve` over the demo (registry at scale 0.2, construction devices and captures, one warning at a
known instant, one access alert); each role walks every page it can reach from its navigation (tests/console_walk.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from anfang.config import Settings
from anfang.construction.demo import seed_demo
from anfang.demo.generator import generate
from anfang.registry.models import Address, Person
from anfang.security.models import User
from anfang.security.monitoring import AccessMonitor
from anfang.security.service import principal_of
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from anfang.warnings.service import Candidate, WarningService
from console_walk import Walk, walk
from liveserver import anfang_serve

ROLES = ["city_admin", "county_admin", "police", "grid_worker", "property_staff", "resident"]
START = ("/", "/m/warnings", "/warnings", "/devices", "/construction/dashboard", "/security/alerts",
         "/security/exports", "/security/trace", "/federation", "/viid/captures", "/viid/apes")
WARNING_AT = datetime(2026, 6, 1, 2, 3, 4, tzinfo=UTC)  # 10:03:04 in Beijing
WARNING_TITLE = "测试告警：单元门被强行打开"
DOOR = "truth-door-1"  # an MQTT door controller at the resident's home (in the demo officer's 警务区)
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?")


@dataclass
class Console:
    base: str
    store: Store
    data_dir: Path
    logins: dict[str, tuple[str, str]]
    walks: dict[tuple[str, str], Walk]

    def walk(self, role: str, lang: str = "zh-CN") -> Walk:
        if (role, lang) not in self.walks:
            username, password = self.logins[role]
            self.walks[role, lang] = walk(self.base, username, password, lang=lang, start=START)
        return self.walks[role, lang]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("truth")
    db_url = f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    try:
        summary = generate(store, scale=0.2, seed=2021)
        seed_demo(store, seed=2021)
        logins = {str(x.role): (x.username, x.password) for x in summary.logins}
        with store.session() as s:
            resident = s.scalar(select(User).where(User.username == logins["resident"][0]))
            home = s.scalar(select(Person.address_id).where(Person.id == resident.person_id))
            community = s.scalar(select(Address.community_code).where(Address.id == home))
            police = principal_of(s.scalar(select(User).where(User.username == logins["police"][0])))
        WarningService(store).raise_warning(Candidate(
            rule="access_forced", category="access", title=WARNING_TITLE, source="test", dedup_key="truth-1",
            severity=1, at=WARNING_AT, address_id=home, community_code=community))
        AccessMonitor(store, Settings(data_dir=data_dir)).raise_alert("off_hours", police, "测试：非工作时间查询")
        from anfang.devices.service import DeviceService

        DeviceService(store).upsert("mqtt", DOOR, name="测试单元门门禁", address_id=home, community_code=community)
        # simulated GA/T 1400 APEs post captures with images (the demo's VIID simulator)
        with anfang_serve(data_dir, env={"ANFANG_VIID_SIMULATE": "2"}) as base:
            yield Console(base, store, data_dir, logins, {})
    finally:
        store.dispose()


# ---- item 3: Beijing time, labelled, everywhere -----------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_every_time_on_every_page_is_labelled_beijing_time(console: Console, role: str) -> None:
    w = console.walk(role)
    assert len(w.pages) >= 3, sorted(w.pages)
    bad: dict[str, list[str]] = {}
    for path, page in w.pages.items():
        text = page.text
        wrong = [m.group(0) for m in DATETIME.finditer(text) if text[m.end():m.end() + 5] != " 北京时间"]
        wrong += ["UTC"] * len(re.findall(r"\bUTC\b", text))
        if wrong:
            bad[path] = wrong[:3]
    assert not bad, f"{role}: times without the Beijing-time label: {bad}"


def test_a_warning_shows_the_same_beijing_time_on_console_and_terminal(console: Console) -> None:
    shown = "2026-06-01 10:03:04 北京时间"
    w = console.walk("police")
    for path in ("/warnings", "/m/warnings"):
        assert WARNING_TITLE in w.pages[path].text, path
        assert shown in w.pages[path].text, (path, w.pages[path].text[:2000])


# ---- item 4: every count on a page is the count of the whole query ------------------------------------------------
@pytest.mark.parametrize("role", ["city_admin", "property_staff"])
def test_device_counts_are_of_the_whole_query(console: Console, role: str) -> None:
    import httpx

    from anfang.devices.models import Device
    from anfang.gb28181.views import PROTOCOL, device_condition

    with console.store.session() as s:
        p = principal_of(s.scalar(select(User).where(User.username == console.logins[role][0])))
        cond = (Device.protocol == PROTOCOL, device_condition(p))
        total = s.scalar(select(func.count()).select_from(Device).where(*cond))
        online = s.scalar(select(func.count()).select_from(Device).where(*cond, Device.status == "online"))
    assert total > 0
    with httpx.Client(base_url=console.base, timeout=30) as c:
        c.post("/api/auth/login", json={"username": console.logins[role][0], "password": console.logins[role][1]})
        text = c.get("/devices").text
        api = c.get("/api/devices").json()
    shown = re.search(r"共 (\d+) · 在线 (\d+)", text)
    assert shown, text[:3000]
    assert (int(shown[1]), int(shown[2])) == (total, online) == (api["total"], api["online"])


# ---- item 5: viewing is not exporting; export categories in Chinese -----------------------------------------------
def test_viewing_captures_is_audited_not_exported_and_downloads_are(console: Console) -> None:
    import time

    import httpx

    from anfang.security.models import AuditEntry

    username, password = console.logins["city_admin"]
    with httpx.Client(base_url=console.base, timeout=30) as c:
        c.post("/api/auth/login", json={"username": username, "password": password})
        deadline = time.monotonic() + 60
        while True:  # the simulated APEs post a capture every few seconds
            images = re.findall(r'<img src="/viid/images/(\d+)"', c.get("/viid/captures").text)
            if len(images) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert len(images) >= 3, "no captures with images from the simulated APEs"
        for pk in images[:3]:
            assert c.get(f"/viid/images/{pk}").status_code == 200
        assert c.get("/api/security/exports").json()["items"] == []  # three views: no export
        page = c.get("/security/exports").text
        assert "viid-image" not in page
        download = c.get(f"/viid/images/{images[0]}", params={"download": "1"})
        assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
        exports = c.get("/api/security/exports").json()["items"]
        assert len(exports) == 1 and exports[0]["kind"] == "viid-image"
        page = c.get("/security/exports").text
        assert "抓拍图片" in page and "viid-image" not in page  # the category in Chinese
    with console.store.session() as s:
        viewed = s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.username == username, AuditEntry.action == "viid_image"))
    assert viewed >= 4  # every view and the download are in the audit chain


def test_export_categories_are_named_in_chinese(console: Console) -> None:
    page = console.walk("city_admin").pages["/security/exports"]
    options = re.findall(r'<option value="(\w+)"[^>]*>([^<]+)</option>', page.html)
    kinds = {v: label for v, label in options if v in ("persons", "houses", "units", "vehicles", "addresses",
                                                        "regions")}
    assert len(kinds) == 6 and all(not re.search("[A-Za-z]", label) for label in kinds.values()), kinds


# ---- item 7: pages that mislead -----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_officer_terminal_and_siting_by_role(console: Console, role: str) -> None:
    w = console.walk(role)
    assert ("/m/warnings" in w.pages) == (role in ("police", "county_admin", "city_admin")), sorted(w.pages)
    home = w.pages["/"].html
    assert ('href="/siting"' in home) == (role != "resident")


def test_doorplate_coverage_rows_name_their_community(console: Console) -> None:
    page = console.walk("city_admin").pages["/doorplates"]
    rows = re.findall(r'<tr data-grid="\d+"><td>(.*?)</td>', page.html)
    assert len(rows) > 10
    named = [r for r in rows if re.search("(社区|村)", re.sub(r"第\d+网格", "", r))]
    assert len(named) == len(rows), rows[:5]


@contextlib.contextmanager
def police_phone(console: Console, *, has_touch: bool = False, before_login=None) -> Iterator:  # noqa: ANN001
    """Chromium at a phone's size, logged in as the police officer on his terminal (/m/warnings); ``before_login``
    gets the page first (to route requests)."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable

    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed; browsers are never downloaded")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    username, password = console.logins["police"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=has_touch,
                                      locale="zh-CN")
            pg = ctx.new_page()
            if before_login is not None:
                before_login(pg)
            pg.goto(console.base + "/login?next=%2Fm%2Fwarnings")
            pg.fill("input[name=username]", username)
            pg.fill("input[name=password]", password)
            pg.click("button[type=submit]")
            pg.wait_for_url("**/m/warnings")
            yield pg
        finally:
            browser.close()


def test_phone_terminal_has_no_stray_badge_and_one_line_buttons(console: Console) -> None:
    with police_phone(console, has_touch=True) as pg:
        assert pg.locator("[data-testid=warning]").count() >= 1
        assert not pg.locator("#unread").is_visible()  # nothing unread: no red "0"
        button = pg.locator("[data-testid=handle]").first
        lines = button.evaluate("b => { const s = getComputedStyle(b); const lh = parseFloat(s.lineHeight) || "
                                "1.2 * parseFloat(s.fontSize); return (b.clientHeight - parseFloat(s.paddingTop)"
                                " - parseFloat(s.paddingBottom)) / lh; }")
        assert lines < 1.5, f"处置 wraps onto {lines:.1f} lines at 390 px"
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_warning_pushed_live_to_the_terminal_shows_beijing_time_in_chinese(console: Console) -> None:
    """A card the terminal builds from the live push (terminal.js), not the server-rendered page: the device's own
    time of the event in labelled Beijing time, and nothing in English in zh-CN."""
    import httpx

    ts = datetime(2026, 6, 1, 1, 2, 3, tzinfo=UTC)  # the door's clock: 09:02:03 in Beijing
    with police_phone(console) as pg:
        pg.locator("#live").wait_for(state="visible", timeout=10_000)  # the SSE stream is connected
        with httpx.Client(base_url=console.base, timeout=30) as c:
            r = c.post(f"/api/iot/door/{DOOR}", json={"event": "forced", "method": "card", "ts": ts.isoformat()})
            assert r.status_code == 202, r.text
        fresh = pg.locator("[data-testid=warning].fresh", has_text="强行打开")
        fresh.first.wait_for(timeout=15_000)
        text = fresh.first.inner_text()
    assert "2026-06-01 09:02:03 北京时间" in text, text
    assert "UTC" not in text, text
    assert not english_words(text), (english_words(text), text)


def test_the_players_error_is_shown_in_the_pages_language(console: Console) -> None:
    """The live player shows why a video does not play with the API's message: in zh-CN its Chinese half only."""
    import json

    def fake_api(pg) -> None:  # noqa: ANN001
        pg.route("**/api/video/links*", lambda route: route.fulfill(  # a linked camera for the warning
            status=200, content_type="application/json",
            body=json.dumps({"channels": [{"channel_id": "35040200001310000001", "name": "测试摄像机"}]})))
        pg.route("**/api/video/live", lambda route: route.fulfill(  # the API's bilingual error, as it sends it
            status=409, content_type="application/json",
            body=json.dumps({"error": {"code": "device_offline", "message": "设备不在线 / device offline",
                                       "detail": None}}, ensure_ascii=False)))

    with police_phone(console, before_login=fake_api) as pg:
        pg.locator("[data-testid=live-linked]").first.click()
        state = pg.locator(".ov-state.st-error").first
        state.wait_for(timeout=15_000)
        assert state.inner_text() == "设备不在线", state.inner_text()


# ---- item 6: Chinese mode is Chinese --------------------------------------------------------------------------------
# Words that may stand in Chinese text: the language switch's own name, and names/codes (protocols, units, product
# and user names of the demo). A snake_case key (city_admin) or any other English word is a leftover.
ALLOWED_WORDS = {"English", "anfang", "http", "https", "demo", "city", "county", "police", "grid", "property",
                 "resident", "system",
                 "HiGHS", "GeoJSON",  # proper names (a solver, a file format)
                 "trace"}  # a command's name as typed (anfang gb28181 trace), a code like the ids beside it
WORD = re.compile(r"(?<![\w./:@-])([A-Za-z][A-Za-z_]*[a-z][A-Za-z_]*)(?![\w./:@-])")
ZH_EXEMPT: tuple[str, ...] = ()


def english_words(text: str) -> list[str]:
    """English words in a page's visible text: lower-case or snake_case words of 3+ letters that are not part of
    a path, a host, a file name or an identifier with digits, and not an allowed name."""
    found = []
    for m in WORD.finditer(text):
        w = m.group(1)
        if len(w) < 3 or w in ALLOWED_WORDS or w.isupper():
            continue
        found.append(w)
    return found


@pytest.mark.parametrize("role", ROLES)
def test_chinese_mode_shows_no_english_words(console: Console, role: str) -> None:
    w = console.walk(role)
    leftovers = {path: sorted(set(english_words(page.text)))[:12] for path, page in w.pages.items()
                 if not path.startswith(ZH_EXEMPT)}
    leftovers = {k: v for k, v in leftovers.items() if v}
    assert not leftovers, f"{role}: English in zh-CN pages: {leftovers}"


# ---- the same walk in Chromium: what the user sees once the page's scripts have run --------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_every_page_in_chromium_shows_labelled_beijing_time_and_no_english(console: Console, role: str) -> None:
    """Each page the role reaches (the walk above), opened in Chromium as that role: the rendered text
    (document.body.innerText, after the page's scripts ran: the terminal's cards, the wall's channel tree, the
    dashboards' charts) has every time labelled 北京时间, no UTC, and no English word in zh-CN (items 3, 6)."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable

    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed; browsers are never downloaded")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    paths = sorted(console.walk(role).pages)
    username, password = console.logins[role]
    bad: dict[str, list[str]] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 900})
            pg = ctx.new_page()
            pg.goto(console.base + "/login")
            pg.fill("input[name=username]", username)
            pg.fill("input[name=password]", password)
            pg.click("button[type=submit]")
            pg.wait_for_load_state("load")
            for path in paths:
                pg.goto(console.base + path, wait_until="load")
                pg.wait_for_timeout(300)  # the page's scripts fetch and draw (channel trees, maps, live cards)
                text = re.sub(r"\s+", " ", pg.locator("body").inner_text())
                wrong = [m.group(0) for m in DATETIME.finditer(text) if text[m.end():m.end() + 5] != " 北京时间"]
                wrong += ["UTC"] * len(re.findall(r"\bUTC\b", text))
                wrong += english_words(text)
                if wrong:
                    bad[path] = sorted(set(wrong))[:6]
        finally:
            browser.close()
    assert not bad, f"{role} in Chromium: {bad}"


def test_a_repeat_sighting_pushed_to_the_terminal_tells_the_officer(console: Console) -> None:
    """Issue 18 item 8: a new sighting of a watchlisted person updates the open warning and the officer is told —
    the updated card comes to the top and counts as unread, like a new warning."""
    import json

    warning = {"id": 987654, "uid": "w-987654", "rule": "face.watchlist", "category": "face",
               "title": "布控人员再次出现", "severity": 1, "state": "dispatched", "state_label": "已派发", "hits": 2,
               "source": "cam",
               "created_at": "2026-06-01T01:02:03+00:00", "created_at_text": "2026-06-01 09:02:03 北京时间",
               "shot_at_text": "", "hit_times_text": ["2026-06-01 09:02:03 北京时间", "2026-06-01 09:04:00 北京时间"],
               "data": {"hit_list": [{"at": "2026-06-01T01:02:03+00:00", "distance": 0.41},
                                     {"at": "2026-06-01T01:04:00+00:00", "distance": 0.38}]}}
    body = "retry: 60000\nevent: warning\ndata: " + json.dumps({"step": "updated", "warning": warning},
                                                               ensure_ascii=False) + "\n\n"

    def one_update(pg) -> None:  # noqa: ANN001
        pg.route("**/api/warnings/stream*", lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=body))

    with police_phone(console, before_login=one_update) as pg:
        card = pg.locator('[data-testid=warning][data-id="987654"]')
        card.wait_for(timeout=15_000)
        assert "布控人员再次出现" in card.inner_text() and "09:04:00 北京时间" in card.inner_text()
        badge = pg.locator("[data-testid=unread]")
        assert badge.is_visible() and badge.inner_text() == "1"
