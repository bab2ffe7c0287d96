"""The console tells every role the truth (issue 19): Beijing time labelled on every page, counts of the whole
query, viewing is not exporting, pages that do not mislead, Chinese mode in Chinese.

Against `anfang serve` over the demo (registry at scale 0.2, construction devices and captures, one warning at a
known instant, one access alert); each role walks every page it can reach from its navigation (tests/console_walk.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

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
        with anfang_serve(data_dir) as base:
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
        wrong = [m.group(0) for m in DATETIME.finditer(text) if not text[m.end():m.end() + 5] == " 北京时间"]
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
