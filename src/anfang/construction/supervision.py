"""Supervision (督导, seed 六、(五)): the yearly task allocation per county (an editable table, since the seed's
annexes 1 and 2 are not in its text), progress against it, a county ranking with a score, units lagging behind
flagged, and the monthly circular as XLSX.

Progress, as measured today: a community counts as *built* when its registered devices meet at least 基本型;
居安工程 channels are the video cameras (``attributes["channels"]``, default 1) registered in villages
(``Region.kind == "village"``); the online rate is the county's daily online rate from the status history.
*Accepted* counts the communities whose project reached 已验收 (``projects.py``). The circular is an XLSX here and a
PDF with charts in ``report_pdf.circular_pdf``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select

from anfang.construction import operations
from anfang.construction.tiers import evaluate, load_rules, subsystem_of
from anfang.core import timefmt
from anfang.core.errors import ValidationError
from anfang.devices.models import Device
from anfang.registry.models import Region
from anfang.store.engine import Store

HERE = Path(__file__).parent
EXAMPLE_PLAN = HERE / "plan_2021_example.csv"
PLAN_COLUMNS = ("县区代码", "县区", "小区任务数", "居安工程任务路数")


@dataclass(frozen=True)
class SupervisionRules:
    total_communities: int
    total_channels: int
    weights: Mapping[str, float]
    lagging_share_of_pro_rata: float


@cache
def load_supervision_rules(version: str = "2021") -> SupervisionRules:
    d = json.loads((HERE / f"supervision_{version}.json").read_text(encoding="utf-8"))
    return SupervisionRules(int(d["total_communities"]), int(d["total_channels"]), dict(d["weights"]),
                            float(d["lagging_share_of_pro_rata"]))


@dataclass(frozen=True, slots=True)
class PlanRow:
    county_code: str
    county: str
    communities: int
    channels: int


def load_plan(path: Path | str = EXAMPLE_PLAN) -> list[PlanRow]:
    """The task allocation per county from a CSV (UTF-8 or GB18030) or XLSX with the columns
    县区代码, 县区, 小区任务数, 居安工程任务路数."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        ws = load_workbook(path, read_only=True, data_only=True).active
        rows = [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)]
    else:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("gb18030")
        rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValidationError("计划表为空 / empty plan table")
    head = [h.strip() for h in rows[0]]
    missing = [c for c in PLAN_COLUMNS if c not in head]
    if missing:
        raise ValidationError(f"计划表缺少列：{'、'.join(missing)} / plan table lacks columns", detail=missing)
    idx = [head.index(c) for c in PLAN_COLUMNS]
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if not any(x.strip() for x in r):
            continue
        code, name, comm, chan = (r[i].strip() if i < len(r) else "" for i in idx)
        try:
            out.append(PlanRow(code, name, int(float(comm or 0)), int(float(chan or 0))))
        except ValueError as exc:
            raise ValidationError(f"计划表第 {n} 行任务数不是数字 / row {n}: task is not a number") from exc
    return out


def plan_for(data_dir: Path | str, year: int) -> tuple[list[PlanRow], list[str]]:
    """The year's plan: ``DATA_DIR/construction/plan_<year>.csv`` (or ``.xlsx``) when present, else the example
    plan — with the notes the circular prints (the example is not the official annex; totals differ from the
    seed's)."""
    base = Path(data_dir) / "construction"
    custom = next((p for p in (base / f"plan_{year}.csv", base / f"plan_{year}.xlsx") if p.is_file()), None)
    plan = load_plan(custom or EXAMPLE_PLAN)
    notes = plan_warnings(plan)
    if custom is None:
        notes.insert(0, f"未找到计划表 {base / f'plan_{year}.csv'}，使用示例任务分配（非正式附件）")
    return plan, notes


def plan_warnings(plan: list[PlanRow], rules: SupervisionRules | None = None) -> list[str]:
    """Differences between the plan's totals and the seed's (358 communities, 6,190 channels in 2021)."""
    r = rules or load_supervision_rules()
    out = []
    comm, chan = sum(p.communities for p in plan), sum(p.channels for p in plan)
    if comm != r.total_communities:
        out.append(f"计划表小区任务合计 {comm} 个，方案为 {r.total_communities} 个")
    if chan != r.total_channels:
        out.append(f"计划表居安工程任务合计 {chan} 路，方案为 {r.total_channels} 路")
    return out


@dataclass(frozen=True, slots=True)
class Progress:
    communities_built: int = 0
    channels_built: int = 0
    online_rate: float | None = None
    communities_accepted: int = 0  # communities whose project was accepted (验收)
    retention_measured: int = 0  # cameras whose recording retention was measured (construction/retention.py)
    retention_short: int = 0  # of them, measured below the 30 days of the spec


@dataclass(frozen=True, slots=True)
class Standing:
    rank: int
    plan: PlanRow
    progress: Progress
    community_share: float  # built / task, capped at 1
    channel_share: float
    score: float  # 0..100
    lagging: bool
    lagging_reasons: tuple[str, ...]


def _share(done: int, task: int) -> float:
    return 1.0 if task <= 0 else min(done / task, 1.0)


def rank_counties(plan: Iterable[PlanRow], progress: Mapping[str, Progress], month: int,
                  rules: SupervisionRules | None = None) -> list[Standing]:
    """Score and rank the counties for ``month`` (1-12). Score = weighted completion of the community and channel
    tasks and the online rate (×100). A county lags when a task's completion is below ``lagging_share_of_pro_rata``
    of the pro-rata share of the year elapsed (month / 12)."""
    r = rules or load_supervision_rules()
    w = r.weights
    expected = r.lagging_share_of_pro_rata * month / 12
    rows = []
    for p in plan:
        pr = progress.get(p.county_code, Progress())
        cs, hs = _share(pr.communities_built, p.communities), _share(pr.channels_built, p.channels)
        score = 100 * (w.get("communities", 0) * cs + w.get("channels", 0) * hs
                       + w.get("online", 0) * (pr.online_rate or 0.0))
        reasons = []
        if cs < expected:
            reasons.append(f"小区建设完成 {cs:.0%}，低于进度要求 {expected:.0%}")
        if hs < expected:
            reasons.append(f"居安工程完成 {hs:.0%}，低于进度要求 {expected:.0%}")
        rows.append((p, pr, cs, hs, round(score, 1), tuple(reasons)))
    rows.sort(key=lambda x: (-x[4], x[0].county_code))
    out, last_score, last_rank = [], None, 0
    for i, (p, pr, cs, hs, score, reasons) in enumerate(rows, start=1):
        rank = last_rank if score == last_score else i  # equal scores share a rank
        out.append(Standing(rank, p, pr, cs, hs, score, bool(reasons), reasons))
        last_score, last_rank = score, rank
    return out


def village_channels(store: Store, cond: list[Any]) -> dict[str, int]:
    """Video channels per community among the devices in ``cond`` (``attributes["channels"]``, default 1), summed
    by the database."""
    sub = Device.attributes["subsystem"].as_string()
    n = func.coalesce(func.nullif(Device.attributes["channels"].as_integer(), 0), 1)
    out: dict[str, int] = defaultdict(int)
    with store.session() as s:
        for code, sub_v, type_code, total in s.execute(
                select(Device.community_code, sub, Device.type_code, func.sum(n))
                .where(*cond).group_by(Device.community_code, sub, Device.type_code)):
            if subsystem_of({"subsystem": sub_v} if sub_v else None, type_code) == "video":
                out[code] += int(total or 0)
    return dict(out)


def measure_progress(store: Store, day: datetime,
                     rates: dict[str, float | None] | None = None) -> dict[str, Progress]:
    """Per county: communities meeting at least 基本型, village video channels, the day's online rate (``rates``:
    the county rates of that day when the caller has them already)."""
    from anfang.construction.service import installed_by_community

    rules = load_rules()
    villages = select(Region.code).where(Region.level == "community", Region.kind == "village")
    base = [Device.community_code.is_not(None), Device.review != "rejected"]
    built: dict[str, int] = defaultdict(int)
    for code, (_, items) in installed_by_community(store, [*base, Device.community_code.not_in(villages)]).items():
        if evaluate(items, rules).met is not None:
            built[code[:6]] += 1
    channels: dict[str, int] = defaultdict(int)
    for code, n in village_channels(store, [*base, Device.community_code.in_(villages)]).items():
        channels[code[:6]] += n
    if rates is None:
        rates = {r.code: r.rate for r in operations.daily_online_rates(store, day, "county")}
    from anfang.construction.projects import accepted_communities

    accepted = accepted_communities(store)
    kept = measured_retention(store, base)
    return {c: Progress(built.get(c, 0), channels.get(c, 0), rates.get(c), accepted.get(c, 0), *kept.get(c, (0, 0)))
            for c in set(built) | set(channels) | set(rates) | set(accepted) | set(kept)}


def measured_retention(store: Store, cond: list[Any]) -> dict[str, tuple[int, int]]:
    """Per county: ``(cameras with a measured recording retention, of them below min_retention_days)`` — the
    value ``RetentionCheck`` asks of each camera (``retention_source: "measured"``), never a declared figure."""
    from anfang.construction.specs import load_spec_rules

    least = load_spec_rules().min_retention_days
    days = Device.attributes["retention_days"].as_float()
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    with store.session() as s:
        for code, n, short in s.execute(
                select(Device.community_code, func.count(), func.sum(case((days < least, 1), else_=0)))
                .where(*cond, Device.attributes["retention_source"].as_string() == "measured")
                .group_by(Device.community_code)):
            out[code[:6]][0] += int(n)
            out[code[:6]][1] += int(short or 0)
    return {c: (v[0], v[1]) for c, v in out.items()}


def circular_xlsx(standings: list[Standing], year: int, month: int, warnings: Iterable[str] = ()) -> bytes:
    """The monthly circular (月度通报) as an XLSX workbook: the ranking sheet and the plan sheet."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "月度通报"
    ws.append([f"{year}年{month}月 “智慧安防小区”“居安工程”建设进展通报"])
    ws["A1"].font = Font(bold=True, size=14)
    w = load_supervision_rules().weights
    formula = (f"小区完成率×{w.get('communities', 0) * 100:g} + 居安工程完成率×{w.get('channels', 0) * 100:g}"
               f" + 在线率×{w.get('online', 0) * 100:g}")
    ws.append([f"生成时间 {timefmt.fmt(datetime.now(UTC), seconds=False)}；得分 = {formula}"])
    for w in warnings:
        ws.append([f"注意：{w}"])
    ws.append(["录像存储为各摄像机的实测值（每日查询设备最早的录像），未实测的不计"])
    ws.append([])
    head = ["排名", "县（市、区）", "小区任务（个）", "已建小区（个）", "小区完成率", "居安工程任务（路）",
            "已建（路）", "居安完成率", "在线率", "得分", "进度滞后", "滞后原因", "已验收（个）", "录像存储实测（台）",
            "实测不足30天（台）"]
    ws.append(head)
    head_row = ws.max_row
    for cell in ws[head_row]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    red = PatternFill("solid", fgColor="FFE0E0")
    for st in standings:
        ws.append([st.rank, st.plan.county, st.plan.communities, st.progress.communities_built,
                   st.community_share, st.plan.channels, st.progress.channels_built, st.channel_share,
                   st.progress.online_rate, st.score, "是" if st.lagging else "否", "；".join(st.lagging_reasons),
                   st.progress.communities_accepted, st.progress.retention_measured,
                   st.progress.retention_short])
        row = ws[ws.max_row]
        for i in (4, 7, 8):
            row[i].number_format = "0.0%"
        if st.lagging:
            for cell in row:
                cell.fill = red
    for col, width in zip("ABCDEFGHIJKLMNO", (6, 12, 10, 10, 10, 12, 10, 10, 8, 8, 8, 48, 10, 12, 12), strict=True):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = ws.cell(row=head_row + 1, column=1)
    plan = wb.create_sheet("任务分配")
    plan.append(list(PLAN_COLUMNS))
    for st in sorted(standings, key=lambda s: s.plan.county_code):
        plan.append([st.plan.county_code, st.plan.county, st.plan.communities, st.plan.channels])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
