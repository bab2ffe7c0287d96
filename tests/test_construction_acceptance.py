"""Acceptance (验收): the month of stable running measured from status history and daily captures, and the Chinese
PDF report (tier check, specification check, uptime evidence, 一标三实 rates)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.acceptance import AcceptanceRules, judge_day, load_acceptance_rules, stability
from anfang.construction.report_pdf import acceptance_pdf
from anfang.construction.service import acceptance_facts
from anfang.devices.service import DeviceService
from anfang.doorplates.sheets import FontMissing, find_cjk_font
from anfang.store.base import utcnow
from anfang.viid.models import ViidObject
from test_web import login
from world import build

LIEDONG = "350404001001"
RULES = load_acceptance_rules()


def _font() -> None:
    try:
        find_cjk_font()
    except FontMissing as exc:
        pytest.skip(str(exc))


def _cameras(store, n: int = 2, days: int = 40, gap_day: int | None = None, outage_day: int | None = None) -> list[str]:
    """``n`` capture cameras in 列东, online for ``days`` days with one capture a day; optionally no capture on day
    ``gap_day`` back (for every camera) or one camera offline for all of day ``outage_day`` back."""
    svc = DeviceService(store)
    now = utcnow()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=days)
    ids = []
    with store.session() as s:
        for i in range(n):
            did = f"3504040000132000{i:04d}"
            ids.append(did)
            svc.upsert("gb28181", did, type_code="132", community_code=LIEDONG, place="community_entrance",
                       registered_at=since, attributes={"capture": ["face"], "megapixels": 4})
            svc.set_status("gb28181", did, "online", at=since)
            for d in range(1, days + 1):
                if d == gap_day:
                    continue
                at = today - timedelta(days=d) + timedelta(hours=12)
                s.add(ViidObject(kind="face", object_id=f"{did}{d:05d}", device_id=did, shot_at=at, received_at=at,
                                 community_code=LIEDONG, body="{}"))
    if outage_day is not None:
        down = today - timedelta(days=outage_day)
        svc.set_status("gb28181", ids[0], "offline", at=down)
        svc.set_status("gb28181", ids[0], "online", at=down + timedelta(days=1))
    return ids


def test_judge_day_thresholds() -> None:
    r = AcceptanceRules("", 30, 35, 0.95, 0.9, 1)
    assert judge_day(0.99, 10, 10, 10, r) == (True, ())
    ok, why = judge_day(0.90, 10, 10, 10, r)
    assert not ok and "在线率" in why[0]
    ok, why = judge_day(1.0, 10, 10, 8, r)
    assert not ok and "抓拍到达 8/10" in why[0]
    assert judge_day(None, 0, 0, 0, r)[0] is False  # nothing ran: not stable
    assert judge_day(1.0, 3, 0, 0, r)[0] is True  # no capture camera: uptime alone


def test_a_month_of_stable_running_makes_the_community_eligible(store) -> None:
    build(store)
    _cameras(store)
    st = stability(store, LIEDONG)
    assert len(st.days) == RULES.window_days and st.days[-1].day == (utcnow() - timedelta(days=1)).date()
    assert st.stable_days >= RULES.min_stable_days and st.eligible
    assert all(d.capturing == d.capture_cameras == 2 for d in st.days[-30:])


def test_a_day_without_captures_restarts_the_month(store) -> None:
    build(store)
    _cameras(store, gap_day=10)
    st = stability(store, LIEDONG)
    assert st.stable_days == 9 and not st.eligible
    bad = [d for d in st.days if not d.stable]
    assert bad[-1].reasons == ("抓拍到达 0/2 台，低于 90%",)


def test_a_day_offline_restarts_the_month(store) -> None:
    build(store)
    _cameras(store, outage_day=5)
    st = stability(store, LIEDONG)
    assert st.stable_days == 4 and not st.eligible
    assert st.days[-5].online_rate == pytest.approx(0.5)


def test_too_young_a_system_is_not_eligible(store) -> None:
    build(store)
    _cameras(store, days=20)
    st = stability(store, LIEDONG)
    assert st.stable_days == 20 and not st.eligible  # registered at midnight twenty days ago
    assert st.days[0].devices == 0 and st.days[0].reasons == ("无设备运行记录",)


def test_acceptance_report_pdf(store, tmp_path) -> None:
    _font()
    w = build(store)
    _cameras(store)
    facts = acceptance_facts(store, w.users["city"], LIEDONG)
    assert facts["stability"]["eligible"] and facts["tier"]["community_code"] == LIEDONG
    assert {m["key"] for m in facts["metrics"]} >= {"plate_installed", "persons_verified"}
    pdf = acceptance_pdf(facts)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", pdf)) >= 2
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")
        r = c.get(f"/api/construction/acceptance/{LIEDONG}/report.pdf")
        assert r.status_code == 200 and r.content.startswith(b"%PDF")
        assert r.headers["content-type"] == "application/pdf"
        ev = c.get(f"/api/construction/acceptance/{LIEDONG}").json()
        assert ev["eligible"] and len(ev["days"]) == RULES.window_days
        assert c.get("/api/construction/acceptance/350405001001").status_code == 404  # not his county
