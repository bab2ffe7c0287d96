"""Supervision: the editable plan table, the county ranking and the monthly circular XLSX."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from anfang.construction.demo import seed_demo
from anfang.construction.supervision import (
    PlanRow,
    Progress,
    circular_xlsx,
    load_plan,
    measure_progress,
    plan_warnings,
    rank_counties,
)
from anfang.core.errors import ValidationError
from anfang.demo.generator import generate

PLAN = [PlanRow("350404", "三元区", 10, 100), PlanRow("350405", "沙县区", 10, 100),
        PlanRow("350421", "明溪县", 10, 100)]


def test_example_plan_matches_the_seed_totals() -> None:
    plan = load_plan()
    assert len(plan) == 11 and plan_warnings(plan) == []
    assert sum(p.communities for p in plan) == 358 and sum(p.channels for p in plan) == 6190


def test_an_edited_plan_in_gb18030_is_read_and_its_totals_checked(tmp_path) -> None:
    f = tmp_path / "plan.csv"
    f.write_bytes("县区,县区代码,小区任务数,居安工程任务路数\n三元区,350404,70,500\n".encode("gb18030"))
    plan = load_plan(f)
    assert plan == [PlanRow("350404", "三元区", 70, 500)]
    assert plan_warnings(plan) == ["计划表小区任务合计 70 个，方案为 358 个",
                                   "计划表居安工程任务合计 500 路，方案为 6190 路"]
    (tmp_path / "bad.csv").write_text("县区,小区任务数\n三元区,1\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="县区代码"):
        load_plan(tmp_path / "bad.csv")


def test_ranking_scores_and_flags_laggards() -> None:
    progress = {"350404": Progress(10, 50, 0.99), "350405": Progress(2, 10, 0.9), "350421": Progress(5, 100, 0.5)}
    st = rank_counties(PLAN, progress, month=6)
    assert [s.plan.county for s in st] == ["三元区", "明溪县", "沙县区"]
    assert [s.rank for s in st] == [1, 2, 3]
    assert st[0].score == pytest.approx(100 * (0.4 * 1 + 0.4 * 0.5 + 0.2 * 0.99), abs=0.1)
    # June: 40% of the year's tasks expected (80% of pro-rata 50%)
    assert not st[0].lagging and not st[1].lagging
    assert st[2].lagging and st[2].lagging_reasons == ("小区建设完成 20%，低于进度要求 40%",
                                                        "居安工程完成 10%，低于进度要求 40%")


def test_equal_scores_share_a_rank_and_no_progress_is_last() -> None:
    st = rank_counties(PLAN, {"350404": Progress(5, 50), "350405": Progress(5, 50)}, month=1)
    assert [(s.plan.county, s.rank) for s in st] == [("三元区", 1), ("沙县区", 1), ("明溪县", 3)]
    assert st[2].score == 0 and st[2].lagging


def test_circular_xlsx_opens_and_shows_the_ranking() -> None:
    st = rank_counties(PLAN, {"350404": Progress(10, 50, 0.99), "350421": Progress(5, 100, 0.5)}, month=6)
    data = circular_xlsx(st, 2021, 6, ["计划表小区任务合计 30 个，方案为 358 个"])
    wb = load_workbook(io.BytesIO(data))
    ws = wb["月度通报"]
    rows = [r for r in ws.iter_rows(values_only=True)]
    assert rows[0][0] == "2021年6月 “智慧安防小区”“居安工程”建设进展通报"
    head = next(i for i, r in enumerate(rows) if r[0] == "排名")
    table = rows[head + 1:head + 4]
    assert [(r[0], r[1], r[10]) for r in table] == [(1, "三元区", "否"), (2, "明溪县", "否"), (3, "沙县区", "是")]
    assert any("方案为 358 个" in str(r[0]) for r in rows[:head])
    assert [r[1] for r in wb["任务分配"].iter_rows(min_row=2, values_only=True)] == ["三元区", "沙县区", "明溪县"]


def test_progress_measured_from_the_demo_devices(store) -> None:
    generate(store, scale=0.02, seed=2021)
    seed_demo(store, seed=2021, limit=8)
    progress = measure_progress(store, datetime.now(UTC))
    assert sum(p.communities_built for p in progress.values()) == 6  # 8 communities, 2 below 基本型
    assert all(p.online_rate is None or 0 <= p.online_rate <= 1 for p in progress.values())


def test_circular_reports_the_measured_recording_retention_per_county(store) -> None:
    """The 30-day rule as measured on the cameras (RetentionCheck): the circular counts, per county, the cameras
    whose retention was measured and those below 30 days; a declared figure is not a measurement."""
    from sqlalchemy import select

    from anfang.construction.report_pdf import circular_pdf
    from anfang.devices.models import Device

    generate(store, scale=0.02, seed=2021)
    seed_demo(store, seed=2021, limit=8)
    with store.session() as s:
        cams = s.scalars(select(Device).where(Device.community_code.like("350404%"))
                         .order_by(Device.id).limit(3)).all()
        assert len(cams) == 3
        measured = [("measured", 15.2), ("measured", 35.0), (None, 12.0)]  # the last one only declared
        for d, (source, days) in zip(cams, measured, strict=True):
            d.attributes = {**(d.attributes or {}), "retention_days": days,
                            **({"retention_source": source} if source else {})}
    progress = measure_progress(store, datetime.now(UTC))
    assert (progress["350404"].retention_measured, progress["350404"].retention_short) == (2, 1)
    st = rank_counties(PLAN, progress, month=6)
    rows = list(load_workbook(io.BytesIO(circular_xlsx(st, 2021, 6))).active.iter_rows(values_only=True))
    head = next(r for r in rows if r[0] == "排名")
    sanyuan = next(r for r in rows if r[1] == "三元区")
    cols = dict(zip(head, sanyuan, strict=True))
    assert (cols["录像存储实测（台）"], cols["实测不足30天（台）"]) == (2, 1)
    assert circular_pdf(st, 2021, 6, []).startswith(b"%PDF")
