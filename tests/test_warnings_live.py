"""Early warning end to end with real processes: `anfang serve` with the MQTT consumer on the local Mosquitto,
and the police terminal in Debian's chromium (phone viewport). A smoke alarm published over MQTT must reach the
responsible officer's terminal within a second, and not another officer's. Skips where Mosquitto or chromium is
absent (fails under ANFANG_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from anfang.demo.generator import generate
from anfang.devices.service import DeviceService
from anfang.registry.models import Address
from anfang.security.models import User
from anfang.security.service import create_user
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from conftest import _service_missing
from liveserver import anfang_serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError as exc:
        _service_missing(f"Mosquitto not reachable at 127.0.0.1:1883: {exc}")
    data_dir = tmp_path_factory.mktemp("ew")
    db_url = f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    summary = generate(store, scale=0.2, seed=2021)
    police = next(x for x in summary.logins if str(x.role) == "police")
    tag = os.urandom(4).hex()
    with store.session() as s:
        me = s.scalar(select(User).where(User.username == police.username))
        room = s.scalar(select(Address).where(Address.police_area_id == me.police_area_id, Address.level == "room")
                        .limit(1))
        other = s.scalar(select(Address).where(Address.police_area_id != me.police_area_id,
                                               Address.police_area_id.is_not(None), Address.level == "room").limit(1))
        create_user(s, username="police_other", password=police.password, role="police",
                    police_area_id=other.police_area_id)
        room_id, room_name, community = room.id, room.full_name, room.community_code
    DeviceService(store).upsert("mqtt", f"smoke-{tag}", name="测试烟感", address_id=room_id, community_code=community)
    store.dispose()
    with anfang_serve(data_dir, {"ANFANG_MQTT_HOST": "127.0.0.1", "ANFANG_NODE_ID": f"t{tag}"}) as base:
        time.sleep(1.0)  # the MQTT consumer subscribes right after start-up
        yield {"base": base, "police": police, "device": f"smoke-{tag}", "room": room_name,
               "log": data_dir / "server.log"}


def _publish(topic: str, payload: dict) -> None:
    import aiomqtt

    async def go() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as c:
            await c.publish(topic, json.dumps(payload), qos=1)

    # its own thread: Playwright's sync API keeps an event loop running in this one
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(go())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    if errors:
        raise errors[0]


def _token(base: str, user: str, password: str) -> dict:
    r = httpx.post(base + "/api/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_mqtt_smoke_alarm_reaches_the_officers_terminal_in_a_browser(live) -> None:
    if not CHROMIUM.exists():
        _service_missing(f"{CHROMIUM} not installed; browsers are never downloaded")
    sync_api = pytest.importorskip("playwright.sync_api")
    police = live["police"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            pages = {}
            for user in (police.username, "police_other"):
                ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN")
                pg = ctx.new_page()
                pg.goto(live["base"] + "/login?next=%2Fm%2Fwarnings")
                pg.fill("input[name=username]", user)
                pg.fill("input[name=password]", police.password)
                pg.click("button[type=submit]")
                pg.wait_for_url("**/m/warnings")
                pg.wait_for_selector("#live:not([hidden])", timeout=5000)  # the live stream is connected
                pages[user] = pg
            before = pages[police.username].locator("[data-testid=warning]").count()
            t0 = time.monotonic()
            _publish(f"anfang/v1/smoke/{live['device']}", {"alarm": True, "battery_percent": 90})
            mine = pages[police.username]
            mine.locator("[data-testid=warning]").nth(before).wait_for(timeout=5000)  # a card more than before
            elapsed = time.monotonic() - t0
            title = mine.locator("[data-testid=warning-title]").first.inner_text()
            assert title == "烟感报警（测试烟感）"
            assert mine.locator("[data-testid=unread]").inner_text() == "1"
            assert live["room"] in mine.locator("[data-testid=warning]").first.inner_text()
            assert elapsed < 1.0, f"warning took {elapsed:.2f} s to reach the terminal"
            time.sleep(0.5)
            other_titles = pages["police_other"].locator("[data-testid=warning-title]").all_inner_texts()
            assert "烟感报警（测试烟感）" not in other_titles
            # one tap to acknowledge
            mine.locator("[data-testid=warning]").first.locator("[data-testid=ack]").click()
            mine.wait_for_url("**/m/warnings")
            assert "已签收" in mine.locator("[data-testid=warning]").first.inner_text()
        finally:
            browser.close()
    # the MQTT consumer counted it; a malformed message is counted too and the consumer keeps going
    _publish(f"anfang/v1/smoke/{live['device']}", {"alarm": "yes please"})
    _publish("anfang/v1/smoke/not-registered", {"alarm": True})
    city = _token(live["base"], "city", police.password)
    deadline = time.monotonic() + 5
    while True:
        counts = httpx.get(live["base"] + "/api/iot/report", headers=city).json()["counts"]
        if counts.get("unknown_device") and counts.get("invalid") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert counts["accepted"] >= 1 and counts["invalid"] >= 1 and counts["unknown_device"] >= 1
