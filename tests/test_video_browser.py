"""Live video in Debian's chromium (issue 15): `anfang serve` with its SIP server, simulated cameras streaming
H.264 over RTP/PS, the officer's 监控中心 wall playing a tile, and a perimeter alarm opening the linked camera live
on the phone-viewport terminal. Skips without chromium (fails under ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from anfang.demo.generator import generate
from anfang.registry.models import Address
from anfang.security.service import create_user
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from liveserver import anfang_serve
from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not installed (apt-get install chromium); browsers are never downloaded")
    data_dir = tmp_path_factory.mktemp("video")
    db_url = f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    summary = generate(store, scale=0.2, seed=2021)
    logins = {str(x.role): (x.username, x.password) for x in summary.logins}
    police_pw = logins["police"][1]
    with store.session() as s:  # property staff of a community outside the officer's 警务区
        from anfang.security.models import User

        area = s.scalar(select(User.police_area_id).where(User.username == logins["police"][0]))
        other = s.scalar(select(Address.community_code).where(Address.police_area_id != area).limit(1))
        create_user(s, username="property_other", password=police_pw, role="property_staff",
                    community_code=other)
    store.dispose()
    env = {"ANFANG_SIP_ENABLED": "1", "ANFANG_SIP_PORT": str(_free_port()), "ANFANG_SIP_HOST": "127.0.0.1",
           "ANFANG_SIP_SIMULATE": "2", "ANFANG_SIP_HEARTBEAT_INTERVAL": "10"}
    with anfang_serve(data_dir, env) as base:
        yield {"base": base, "logins": logins, "other": ("property_other", police_pw)}


@pytest.fixture(scope="module")
def browser(live):  # noqa: ANN001, ANN201
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()


def _login(page, base: str, username: str, password: str) -> None:  # noqa: ANN001
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def _plays(page, selector: str, timeout: float = 20_000) -> dict:  # noqa: ANN001
    """Wait until the <video> under ``selector`` has advanced by 1.5 s of playback; return its size and time."""
    page.wait_for_function(
        """sel => { const v = document.querySelector(sel + ' video');
                    if (!v) return false;
                    if (v.dataset.t0 === undefined && v.currentTime > 0) v.dataset.t0 = v.currentTime;
                    return v.dataset.t0 !== undefined && v.currentTime - Number(v.dataset.t0) > 1.5; }""",
        arg=selector, timeout=timeout, polling=200)
    return page.eval_on_selector(selector + " video", "v => ({w: v.videoWidth, h: v.videoHeight, t: v.currentTime})")


def test_officer_wall_plays_live_video(live, browser) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _login(page, live["base"], *live["logins"]["police"])
        page.click("[data-testid=nav-wall]")
        page.wait_for_url(live["base"] + "/video/wall")
        page.locator("[data-testid=tree-channel]").first.click()
        size = _plays(page, "[data-testid=tile][data-index='0']")
        assert (size["w"], size["h"]) == (640, 360)  # the simulator's picture, decoded by the browser
        state = page.get_attribute("[data-testid=tile][data-index='0']", "data-state")
        assert state == "playing"
        page.screenshot(path="/tmp/anfang-video-wall.png")
        assert errors == [], errors
    finally:
        context.close()


def test_perimeter_alarm_opens_the_linked_camera_on_the_phone_terminal(live, browser) -> None:  # noqa: ANN001
    r = httpx.post(live["base"] + "/api/iot/perimeter/perimeter-demo-01",
                   json={"zone": "东侧围墙", "alarm": True, "type": "intrusion"}, timeout=10)
    assert r.status_code == 202, r.text
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        _login(page, live["base"], *live["logins"]["police"])
        page.goto(live["base"] + "/m/warnings")
        card = page.locator("[data-testid=warning]", has_text="周界").first
        card.wait_for(timeout=15_000)
        card.locator("[data-testid=live-linked]").click()
        size = _plays(page, "[data-testid=warning] .live-box")
        assert size["w"] == 640
        box = page.locator("[data-testid=warning] .live-box").first.bounding_box()
        assert box is not None and box["width"] <= 390  # fits the phone screen
        page.screenshot(path="/tmp/anfang-video-terminal.png")
    finally:
        context.close()


def test_property_staff_of_another_community_gets_403(live) -> None:  # noqa: ANN001
    base = live["base"]
    with httpx.Client(base_url=base, timeout=10) as officer:
        page = officer.get("/login")
        import re

        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        user, pw = live["logins"]["police"]
        officer.post("/login", data={"username": user, "password": pw, "csrf_token": token, "next": "/"})
        tree = officer.get("/api/video/tree").json()
        channel = tree["communities"][0]["places"][0]["channels"][0]["channel_id"]
        assert officer.post("/api/video/live", json={"channel_id": channel},
                            headers={"Origin": base}).status_code == 200
    with httpx.Client(base_url=base, timeout=10) as other:
        page = other.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        user, pw = live["other"]
        other.post("/login", data={"username": user, "password": pw, "csrf_token": token, "next": "/"})
        r = other.post("/api/video/live", json={"channel_id": channel}, headers={"Origin": base})
        assert r.status_code == 403 and "辖区" in r.json()["error"]["message"]
        assert other.get("/api/video/tree").json()["channels"] == 0
