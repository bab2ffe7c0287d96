"""六无 communities (seed 三、(四) 二): no crime, gambling, drugs, cults, dishonesty, group petitions.

Incidents per community are entered one by one or imported from a CSV (UTF-8 / GB18030) or XLSX table with the
columns 小区代码, 类别, 日期, 起数 (optional, default 1), 说明 (optional). A community *holds* one of the six "none"s
over the assessment period (``period_months``, default twelve) when no incident of that category was recorded; it
is a 六无 community when it holds all six. The monthly trend counts incidents per category per month.
Categories, their aliases in imported tables and the period are data (``liuwu_<v>.json``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, select, true

from anfang.construction.models import LiuwuIncident
from anfang.core.errors import ValidationError
from anfang.registry.models import Region
from anfang.store.engine import Store

HERE = Path(__file__).parent
COLUMNS = ("小区代码", "类别", "日期", "起数", "说明")


@dataclass(frozen=True)
class LiuwuRules:
    source: str
    categories: dict[str, dict[str, str]]
    aliases: dict[str, str]
    period_months: int

    def category(self, raw: str) -> str:
        raw = raw.strip()
        if raw in self.categories:
            return raw
        for code, labels in self.categories.items():
            if raw in (labels["zh"], labels["none"], labels["en"]):
                return code
        if raw in self.aliases:
            return self.aliases[raw]
        raise ValidationError(f"未知的六无类别 {raw!r} / unknown category", detail=sorted(self.categories))


@cache
def load_liuwu_rules(version: str = "2021") -> LiuwuRules:
    d = json.loads((HERE / f"liuwu_{version}.json").read_text(encoding="utf-8"))
    return LiuwuRules(d["source"], d["categories"], d.get("aliases", {}), int(d["period_months"]))


def month_start(d: date, back: int = 0) -> date:
    """The first day of the month ``back`` months before ``d``'s month."""
    m = d.year * 12 + d.month - 1 - back
    return date(m // 12, m % 12 + 1, 1)


@dataclass(frozen=True)
class Standing:
    community_code: str
    counts: dict[str, int]  # per category over the period
    holds: dict[str, bool]  # category -> holds its "none"
    liuwu: bool  # holds all six


def standing(counts: dict[str, int], community_code: str = "", rules: LiuwuRules | None = None) -> Standing:
    """A community's standing from its incident counts per category (pure)."""
    r = rules or load_liuwu_rules()
    full = {c: int(counts.get(c, 0)) for c in r.categories}
    holds = {c: n == 0 for c, n in full.items()}
    return Standing(community_code, full, holds, all(holds.values()))


def record(store: Store, community_code: str, category: str, occurred_on: date, count: int = 1, note: str = "",
           by: str = "", origin: str = "entered") -> int:
    r = load_liuwu_rules()
    cat = r.category(category)
    if count < 1:
        raise ValidationError("起数须至少为 1 / count must be at least 1")
    with store.session() as s:
        if s.get(Region, community_code) is None:
            raise ValidationError(f"小区代码 {community_code} 不存在 / unknown community code")
        row = LiuwuIncident(community_code=community_code, category=cat, occurred_on=occurred_on, count=count,
                            note=note[:256], origin=origin, created_by=by[:64])
        s.add(row)
        s.flush()
        return row.id


def parse_table(data: bytes, filename: str = "incidents.csv") -> list[tuple[str, str, date, int, str]]:
    """Rows ``(community_code, category, day, count, note)`` of an incident table; a bad row is an error naming it."""
    try:
        if filename.lower().endswith(".xlsx"):
            from openpyxl import load_workbook

            ws = load_workbook(io.BytesIO(data), read_only=True, data_only=True).active
            rows = [["" if v is None else (v.date().isoformat() if isinstance(v, datetime) else str(v)) for v in r]
                    for r in ws.iter_rows(values_only=True)]
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("gb18030")
            rows = list(csv.reader(io.StringIO(text, newline="")))
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable upload (bad zip, bad CSV quoting, bad encoding) is a 4xx
        raise ValidationError(f"无法读取表格 / unreadable table: {exc}") from exc
    if not rows:
        raise ValidationError("表格为空 / empty table")
    head = [h.strip() for h in rows[0]]
    lacking = [c for c in COLUMNS[:3] if c not in head]
    if lacking:
        raise ValidationError(f"表格缺少列：{'、'.join(lacking)} / missing columns", detail=lacking)
    idx = {c: head.index(c) for c in COLUMNS if c in head}
    r = load_liuwu_rules()
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(str(x).strip() for x in row):
            continue

        def cell(col: str, row: list[str] = row) -> str:
            i = idx.get(col)
            return str(row[i]).strip() if i is not None and i < len(row) else ""

        try:
            day = date.fromisoformat(cell("日期")[:10].replace("/", "-"))
            count = int(float(cell("起数") or 1))
            out.append((cell("小区代码"), r.category(cell("类别")), day, count, cell("说明")))
        except (ValueError, ValidationError) as exc:
            raise ValidationError(f"第 {n} 行有误：{exc} / row {n} is invalid") from exc
    return out


def import_table(store: Store, data: bytes, filename: str, by: str = "",
                 allowed: ColumnElement[bool] | None = None) -> int:
    """Import every row of an incident table in one transaction (all or nothing). ``allowed``: a condition on
    ``Region.code`` limiting the communities the importer may write."""
    rows = parse_table(data, filename)
    codes = {r[0] for r in rows}
    with store.session() as s:
        known = set(s.scalars(select(Region.code).where(Region.code.in_(codes), Region.level == "community",
                                                        allowed if allowed is not None else true())))
        bad = sorted(codes - known)
        if bad:
            raise ValidationError(f"小区代码不存在或不在辖区内：{'、'.join(bad[:10])} / unknown community codes",
                                  detail=bad)
        for code, cat, day, count, note in rows:
            if count < 1:
                raise ValidationError("起数须至少为 1 / count must be at least 1")
            s.add(LiuwuIncident(community_code=code, category=cat, occurred_on=day, count=count, note=note[:256],
                                origin="import", created_by=by[:64]))
    return len(rows)


def report(store: Store, scope: ColumnElement[bool] | None = None, today: date | None = None,
           communities: Iterable[str] | None = None) -> dict[str, Any]:
    """Each community's standing over the period, and the monthly trend per category (oldest month first).
    ``scope``: a condition on ``Region.code`` (the caller's communities); ``communities``: the codes to list
    (default: every community in scope)."""
    r = load_liuwu_rules()
    today = today or date.today()
    start = month_start(today, r.period_months - 1)
    months = [month_start(today, b) for b in range(r.period_months - 1, -1, -1)]
    with store.session() as s:
        regions = dict(s.execute(select(Region.code, Region.full_name).where(
            Region.level == "community", scope if scope is not None else true())).all())
        rows = s.execute(select(LiuwuIncident.community_code, LiuwuIncident.category, LiuwuIncident.occurred_on,
                                func.sum(LiuwuIncident.count))
                         .where(LiuwuIncident.community_code.in_(select(Region.code).where(
                             scope if scope is not None else true())), LiuwuIncident.occurred_on >= start,
                                LiuwuIncident.occurred_on <= today)
                         .group_by(LiuwuIncident.community_code, LiuwuIncident.category,
                                   LiuwuIncident.occurred_on)).all()
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    trend: dict[str, dict[str, int]] = {m.isoformat()[:7]: dict.fromkeys(r.categories, 0) for m in months}
    for code, cat, day, n in rows:
        per[code][cat] += int(n)
        key = day.isoformat()[:7]
        if key in trend and cat in trend[key]:
            trend[key][cat] += int(n)
    codes = sorted(set(communities) if communities is not None else set(regions))
    items = []
    for code in codes:
        st = standing(per.get(code, {}), code, r)
        items.append({"community_code": code, "name": regions.get(code, code), "counts": st.counts,
                      "holds": st.holds, "liuwu": st.liuwu, "held": sum(st.holds.values())})
    return {"period": {"from": start.isoformat(), "to": today.isoformat()},
            "categories": [{"code": c, **v} for c, v in r.categories.items()], "items": items,
            "liuwu_communities": sum(1 for i in items if i["liuwu"]), "communities": len(items),
            "trend": [{"month": m, "counts": c} for m, c in trend.items()], "source": r.source}


def community_trend(store: Store, community_code: str, today: date | None = None) -> list[dict[str, Any]]:
    """One community's monthly counts per category over the period (oldest month first)."""
    return report(store, Region.code == community_code, today, [community_code])["trend"]
