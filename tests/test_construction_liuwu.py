"""六无 communities: incidents entered or imported (CSV in UTF-8 or GB18030, XLSX) give each community's standing on
the six "none"s over the period, with a monthly trend."""

from __future__ import annotations

import io
from datetime import date

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.liuwu import (
    import_table,
    load_liuwu_rules,
    month_start,
    parse_table,
    record,
    report,
    standing,
)
from anfang.core.errors import ValidationError
from anfang.registry.models import Region
from test_web import csrf, login
from world import build

LIEDONG, XIAYANG, FUXI = "350404001001", "350404001201", "350405001001"
TODAY = date(2026, 11, 15)


def test_six_categories_and_aliases_from_the_rule_file() -> None:
    r = load_liuwu_rules()
    assert list(r.categories) == ["crime", "gambling", "drugs", "cults", "dishonesty", "petitions"]
    assert [r.category(x) for x in ("刑事案件", "赌博", "吸毒", "邪教", "失信被执行人", "群体性上访", "crime",
                                    "无涉毒")] == ["crime", "gambling", "drugs", "cults", "dishonesty",
                                                  "petitions", "crime", "drugs"]
    with pytest.raises(ValidationError):
        r.category("乱停车")


def test_standing_is_pure() -> None:
    clean = standing({})
    assert clean.liuwu and all(clean.holds.values()) and set(clean.counts) == set(load_liuwu_rules().categories)
    one = standing({"gambling": 2})
    assert not one.liuwu and one.holds["gambling"] is False and one.holds["crime"] is True


def test_month_start() -> None:
    assert month_start(date(2026, 1, 31), 0) == date(2026, 1, 1)
    assert month_start(date(2026, 1, 31), 1) == date(2025, 12, 1)
    assert month_start(date(2026, 11, 15), 11) == date(2025, 12, 1)


def test_import_csv_gb18030_and_xlsx_then_report(store) -> None:
    build(store)
    csv_text = ("小区代码,类别,日期,起数,说明\n"
                f"{LIEDONG},赌博,2026-10-03,2,棋牌室聚赌\n"
                f"{LIEDONG},刑事案件,2026/11/01,,入室盗窃\n"
                f"{LIEDONG},涉毒,2025-06-01,1,超出评定期\n")
    assert import_table(store, csv_text.encode("gb18030"), "incidents.csv") == 3
    wb = Workbook()
    ws = wb.active
    ws.append(["小区代码", "类别", "日期"])
    ws.append([FUXI, "群体性上访", "2026-09-09"])
    buf = io.BytesIO()
    wb.save(buf)
    assert import_table(store, buf.getvalue(), "x.xlsx") == 1
    record(store, FUXI, "dishonesty", date(2026, 11, 2), by="police")

    rep = report(store, today=TODAY)
    items = {i["community_code"]: i for i in rep["items"]}
    assert items[LIEDONG]["counts"]["gambling"] == 2 and items[LIEDONG]["counts"]["crime"] == 1
    assert items[LIEDONG]["counts"]["drugs"] == 0  # 2025-06 is outside the twelve months
    assert items[LIEDONG]["held"] == 4 and not items[LIEDONG]["liuwu"]
    assert items[XIAYANG]["liuwu"] and items[FUXI]["held"] == 4
    assert rep["liuwu_communities"] == 1 and rep["communities"] == 3
    trend = {m["month"]: m["counts"] for m in rep["trend"]}
    assert len(trend) == 12 and list(trend)[0] == "2025-12" and list(trend)[-1] == "2026-11"
    assert trend["2026-10"]["gambling"] == 2 and trend["2026-11"] == {
        "crime": 1, "gambling": 0, "drugs": 0, "cults": 0, "dishonesty": 1, "petitions": 0}
    scoped = report(store, Region.code.like("350405%"), TODAY)
    assert [i["community_code"] for i in scoped["items"]] == [FUXI]


def test_bad_tables_are_rejected_whole(store) -> None:
    build(store)
    with pytest.raises(ValidationError, match="缺少列"):
        parse_table("小区代码,日期\n".encode())
    with pytest.raises(ValidationError, match="第 3 行"):
        parse_table(f"小区代码,类别,日期\n{LIEDONG},赌博,2026-01-01\n{LIEDONG},打架,2026-01-01\n".encode())
    with pytest.raises(ValidationError, match="不存在"):
        import_table(store, f"小区代码,类别,日期\n{LIEDONG},赌博,2026-01-01\n999999999999,赌博,2026-01-01\n"
                     .encode(), "x.csv")
    assert report(store, today=TODAY)["liuwu_communities"] == 3  # nothing was written
    with pytest.raises(ValidationError):
        import_table(store, f"小区代码,类别,日期\n{FUXI},赌博,2026-01-01\n".encode(), "x.csv",
                     allowed=Region.code.like("350404%"))  # outside the importer's county


def test_liuwu_api_page_and_scope(store, tmp_path) -> None:
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")
        assert c.post("/api/construction/liuwu", json={"community_code": LIEDONG, "category": "赌博",
                                                       "occurred_on": date.today().isoformat()}).status_code == 201
        assert c.post("/api/construction/liuwu", json={"community_code": FUXI, "category": "赌博",
                                                       "occurred_on": "2026-01-01"}).status_code == 404
        r = c.post("/api/construction/liuwu/import", headers={"content-type": "text/csv"},
                   content=f"小区代码,类别,日期\n{XIAYANG},失信,{date.today()}\n".encode("gb18030"))
        assert r.json() == {"imported": 1}
        rep = c.get("/api/construction/liuwu").json()
        assert {i["community_code"]: i["liuwu"] for i in rep["items"]} == {LIEDONG: False, XIAYANG: False}
        page = c.get("/construction/liuwu")
        assert page.status_code == 200 and "无群体性上访" in page.text and 'data-testid="liuwu-trend"' in page.text
        r = c.post("/construction/liuwu/import", data={"csrf_token": csrf(page.text)},
                   files={"file": ("x.csv", f"小区代码,类别,日期\n{LIEDONG},赌博,2020-01-01\n".encode(), "text/csv")},
                   follow_redirects=False)
        assert r.status_code == 303
        r = c.post("/construction/liuwu", data={"csrf_token": csrf(page.text), "community_code": LIEDONG,
                                                "category": "cults", "occurred_on": date.today().isoformat(),
                                                "count": "1"}, follow_redirects=False)
        assert r.status_code == 303
        assert c.get(f"/api/construction/liuwu?community={LIEDONG}").json()["items"][0]["counts"]["cults"] == 1
        login(c, "property")
        assert c.get("/api/construction/liuwu").status_code == 403
