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
           "ANFANG_SIP_SIMULATE": "2", "ANFANG_SIP_HEARTBEAT_INTERVAL": "10",
           "ANFANG_MEDIA_CLIP_BEFORE": "3", "ANFANG_MEDIA_CLIP_AFTER": "4"}  # alarm clips of 7 s, not 90
    with anfang_serve(data_dir, env) as base:
        yield {"base": base, "logins": logins, "other": ("property_other", police_pw), "db_url": db_url}


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


def test_device_page_and_channel_page_play_live(live, browser) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="zh-CN")
    page = context.new_page()
    try:
        _login(page, live["base"], *live["logins"]["police"])
        tree = page.request.get(live["base"] + "/api/video/tree").json()
        place = tree["communities"][0]["places"][0]
        devices = page.request.get(live["base"] + "/api/devices?q=" + place["device_id"]).json()
        pk = next(d["id"] for d in devices["items"] if d["device_id"] == place["device_id"])
        page.goto(f"{live['base']}/devices/{pk}")
        page.locator("[data-testid=live-open]").first.click()  # 实时视频 in the channel table
        size = _plays(page, "[data-testid=device-live]")
        assert (size["w"], size["h"]) == (640, 360)
        page.locator("[data-testid=channel-open]").first.click()  # the channel's own page plays by itself
        page.wait_for_url(f"{live['base']}/video/channel/**")
        size = _plays(page, "[data-testid=channel-live]")
        assert (size["w"], size["h"]) == (640, 360)
    finally:
        context.close()


def test_perimeter_alarm_opens_the_linked_camera_on_the_warning_page(live, browser) -> None:  # noqa: ANN001
    r = httpx.post(live["base"] + "/api/iot/perimeter/perimeter-demo-01",
                   json={"zone": "东侧围墙", "alarm": True, "type": "intrusion"}, timeout=10)
    assert r.status_code == 202, r.text
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="zh-CN")
    page = context.new_page()
    try:
        _login(page, live["base"], *live["logins"]["police"])
        page.goto(live["base"] + "/warnings")  # 预警中心
        card = page.locator("[data-testid=warning]", has_text="周界").first
        card.wait_for(timeout=15_000)
        card.locator("[data-testid=live-linked]").click()
        size = _plays(page, "[data-testid=warning] .live-box")
        assert (size["w"], size["h"]) == (640, 360)
    finally:
        context.close()


def test_wall_tile_shows_name_time_state_and_reconnects_by_itself(live, browser) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="zh-CN")
    page = context.new_page()
    tile = "[data-testid=tile][data-index='0']"
    try:
        _login(page, live["base"], *live["logins"]["police"])
        page.goto(live["base"] + "/video/wall?layout=9")
        assert page.locator("[data-testid=tile]").count() == 9
        channel = page.locator("[data-testid=tree-channel]").first
        name = channel.inner_text()
        channel.click()
        _plays(page, tile)
        assert page.inner_text(f"{tile} .ov-name") == name
        assert "北京时间" in page.inner_text(f"{tile} .ov-time")
        assert page.get_attribute(tile, "data-state") == "playing"
        # the connection drops (a network blip): the tile says so and comes back by itself
        before = page.eval_on_selector(f"{tile} video", "v => v.currentTime")
        page.eval_on_selector(tile, "t => { window.__states = []; new MutationObserver(() => "
                                    "window.__states.push(t.dataset.state)).observe(t, {attributes: true}); "
                                    "t.player.ws.close(); }")
        page.wait_for_function("() => (window.__states || []).includes('reconnecting')", timeout=10_000)
        page.wait_for_function(
            """([sel, t0]) => { const t = document.querySelector(sel), v = t.querySelector('video');
                                return t.dataset.state === 'playing' && v.currentTime > t0 + 1.5; }""",
            arg=[tile, before], timeout=20_000, polling=200)
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


# ---- recordings and PTZ (issue 16) ---------------------------------------------------------------------------------
READ_TIMECODE = """sel => { const v = document.querySelector(sel + ' video');
    if (!v || !v.videoWidth) return null;
    const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d'); g.drawImage(v, 0, 0);
    const strip = Math.max(Math.floor(c.height / 12), 8), cell = Math.floor(c.width / 32);
    let value = 0;
    for (let b = 0; b < 32; b++) {
      const d = g.getImageData(b * cell + Math.floor(cell / 4), Math.floor(strip / 4),
                               Math.max(1, Math.floor(cell / 2)), Math.max(1, Math.floor(strip / 2))).data;
      let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i];
      value = value * 2 + (sum / (d.length / 4) > 128 ? 1 : 0);
    }
    return value; }"""
BOX_X = """sel => { const v = document.querySelector(sel + ' video');
    const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d'); g.drawImage(v, 0, 0);
    const strip = Math.max(Math.floor(c.height / 12), 8);
    let best = -1, bestX = 0;
    for (let y = strip + 4; y < c.height; y += 8) {
      const d = g.getImageData(0, y, c.width, 1).data;
      let run = 0;
      for (let x = 0; x < c.width; x++) {
        if (d[x * 4] > 220) { run++; if (run > best) { best = run; bestX = x - run / 2; } } else run = 0; }
    }
    return bestX; }"""


def _officer_page(live, browser, width: int = 1400):  # noqa: ANN001, ANN202
    context = browser.new_context(viewport={"width": width, "height": 950}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    _login(page, live["base"], *live["logins"]["police"])
    return context, page


def _first_channel(page, base: str) -> str:  # noqa: ANN001
    tree = page.request.get(base + "/api/video/tree").json()
    return tree["communities"][0]["places"][0]["channels"][0]["channel_id"]


def test_timeline_playback_speed_seek_and_download(live, browser, tmp_path) -> None:  # noqa: ANN001
    import time
    from datetime import datetime, timedelta, timezone

    base = live["base"]
    context, page = _officer_page(live, browser)
    try:
        channel = _first_channel(page, base)
        cst = timezone(timedelta(hours=8))
        day = (datetime.now(cst) - timedelta(days=1)).date()
        page.goto(f"{base}/video/playback?channel={channel}&date={day.isoformat()}")
        page.wait_for_selector("[data-testid=span]", timeout=20_000)  # the simulator's recordings on the timeline
        assert page.locator("[data-testid=span]").count() >= 2  # a day with gaps
        line = page.locator("[data-testid=timeline]").bounding_box()
        day_start = datetime(day.year, day.month, day.day, tzinfo=cst).timestamp()

        def click_at(hour: float) -> float:
            page.mouse.click(line["x"] + line["width"] * hour / 24, line["y"] + line["height"] / 2)
            return day_start + hour * 3600

        def shown() -> int | None:
            return page.evaluate(READ_TIMECODE, "#pb-player")

        target = click_at(10.0)
        page.wait_for_function("() => document.querySelector('#pb-pos').dataset.unix", timeout=20_000)
        page.wait_for_function(f"() => Math.abs(({READ_TIMECODE})('#pb-player') - {target}) < 120", timeout=20_000)
        assert abs(shown() - target) <= 60  # the picture is of the clicked time (one pixel ≈ a minute)
        page.select_option("[data-testid=pb-speed]", "2")
        time.sleep(1.5)
        t0, w0 = shown(), time.monotonic()
        time.sleep(4)
        t1, w1 = shown(), time.monotonic()
        ratio = (t1 - t0) / (w1 - w0)
        assert 1.4 <= ratio <= 2.8, ratio  # 2x plays about twice as fast as the clock
        target = click_at(15.0)  # seek within the open playback
        clicked = time.monotonic()
        chosen = int(page.get_attribute("[data-testid=timeline]", "data-chosen"))  # the second the click chose
        assert abs(chosen - target) <= 120  # one pixel of the 24-hour bar is about a minute
        page.wait_for_function(f"() => Math.abs(({READ_TIMECODE})('#pb-player') - {chosen}) < 200", timeout=20_000)
        landed = shown()
        # the picture lands within 2 s of the chosen second, then plays on at 2x until it is read
        assert chosen - 2 <= landed <= chosen + 2 + 2 * (time.monotonic() - clicked), (landed, chosen)
        # download 10 s: a watermarked file that anfang trace attributes to the officer
        page.fill("#dl-from", "08:00:00")
        page.fill("#dl-to", "08:00:10")
        page.fill("#dl-reason", "核查周界报警")
        page.click("[data-testid=dl-start]")
        page.wait_for_selector("[data-testid=dl-file]:not([hidden])", timeout=60_000)
        with page.expect_download() as dl:
            page.click("[data-testid=dl-file]")
        path = tmp_path / "clip.mp4"
        dl.value.save_as(path)
    finally:
        context.close()
    import av

    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert 200 <= frames <= 300  # 10 s at 25 fps: the file plays
    from anfang.security.trace import trace_file

    store = Store(live["db_url"])
    try:
        result = trace_file(store, path)
    finally:
        store.dispose()
    assert result.findings and result.findings[0].username == live["logins"]["police"][0]


def test_ptz_button_turns_the_camera(live, browser) -> None:  # noqa: ANN001
    import time

    base = live["base"]
    context, page = _officer_page(live, browser)
    try:
        page.click("[data-testid=nav-wall]")
        page.wait_for_url(base + "/video/wall")
        page.locator("[data-testid=tree-channel]").nth(1).click()
        tile = "[data-testid=tile][data-index='0']"
        _plays(page, tile)
        before = page.evaluate(BOX_X, tile)
        button = page.locator(f"{tile} [data-testid=ptz-right]")
        page.hover(tile)
        button.hover()
        page.mouse.down()
        time.sleep(1.5)
        page.mouse.up()
        time.sleep(1.5)
        after = page.evaluate(BOX_X, tile)
        assert abs(after - before) > 20, (before, after)  # the picture moved with the camera
        # presets: number 7 set here, the camera turned away, then called back
        page.fill(f"{tile} [data-testid=ptz-preset]", "7")
        page.click(f"{tile} [data-testid=ptz-preset_set]")
        time.sleep(0.5)
        page.select_option(f"{tile} [data-testid=ptz-speed]", "255")
        page.locator(f"{tile} [data-testid=ptz-left]").hover()
        page.mouse.down()
        time.sleep(1.0)
        page.mouse.up()
        time.sleep(1.5)
        away = page.evaluate(BOX_X, tile)
        assert abs(away - after) > 20, (after, away)
        page.click(f"{tile} [data-testid=ptz-preset_call]")
        time.sleep(1.5)
        back = page.evaluate(BOX_X, tile)
        assert abs(back - after) <= 6, (after, away, back)  # the preset's view again
        for lens in ("zoomin", "focusnear", "irisopen", "preset_delete"):  # every button of the pad is there
            assert page.locator(f"{tile} [data-testid=ptz-{lens}]").count() == 1
    finally:
        context.close()


def test_cli_download_with_progress_is_traced_to_its_user(live, tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys
    from datetime import datetime, timedelta

    base = live["base"]
    user, password = live["logins"]["police"]
    with httpx.Client(base_url=base, timeout=10, headers={"Origin": base}) as c:
        c.post("/api/auth/login", json={"username": user, "password": password})
        channel = c.get("/api/video/tree").json()["communities"][0]["places"][0]["channels"][0]["channel_id"]
    start = (datetime.now() - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    out = tmp_path / "cli.mp4"
    proc = subprocess.run([sys.executable, "-c", "from anfang.cli import app; app()", "video", "download", channel,
                           "--start", start.isoformat(), "--end", (start + timedelta(seconds=8)).isoformat(),
                           "--out", str(out), "--reason", "命令行调取录像", "--url", base, "--user", user,
                           "--password", password], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EX" in proc.stdout and out.stat().st_size > 10_000
    assert "100%" in proc.stdout and "━" in proc.stdout, proc.stdout  # the Rich progress bar, ended full
    from anfang.security.trace import trace_file

    store = Store(live["db_url"])
    try:
        assert trace_file(store, out).findings[0].username == user
    finally:
        store.dispose()


def test_perimeter_warning_plays_its_clip_on_the_console_and_the_phone_terminal(live, browser) -> None:  # noqa: ANN001
    """Done means: on a perimeter warning the officer watches the clip around it (here 3 s before to 4 s after;
    the service's 30 s / 60 s are settings) on the 预警中心 page and on the phone terminal's card."""
    import time

    r = httpx.post(live["base"] + "/api/iot/perimeter/perimeter-demo-01",
                   json={"zone": "东侧围墙", "alarm": True, "type": "intrusion"}, timeout=10)
    assert r.status_code == 202, r.text
    played = {}
    for path, viewport, mobile in (("/warnings", {"width": 1400, "height": 950}, False),
                                   ("/m/warnings", {"width": 390, "height": 844}, True)):
        context = browser.new_context(viewport=viewport, locale="zh-CN", is_mobile=mobile, has_touch=mobile)
        page = context.new_page()
        try:
            _login(page, live["base"], *live["logins"]["police"])
            clip = page.locator("[data-testid=warning]", has_text="周界").locator("[data-testid=warning-clip]").first
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                page.goto(live["base"] + path)
                if clip.count():
                    break
                time.sleep(2)
            assert clip.count(), f"no clip on {path}"
            clip.evaluate("v => v.play()")
            page.wait_for_function("v => v.currentTime > 1.5", arg=clip.element_handle(), timeout=15_000)
            played[path] = clip.evaluate("v => ({d: v.duration, w: v.videoWidth, x: v.getBoundingClientRect().width})")
        finally:
            context.close()
    assert all(5.5 <= v["d"] <= 9 and v["w"] > 0 for v in played.values()), played  # the 7 s around the event
    assert played["/m/warnings"]["x"] <= 390  # fits the phone screen
