"""The seed's 一标三实 figures per community, town, county and city.

Seed 三、(四) 一: 地址门牌安装率、准确率、标注率达100%，实有人口、实有房屋、实有单位信息核实率达95%以上.
Rates are computed over the records within the asking principal's jurisdiction; the records that keep a rate
below its target are listed by ``below_target``.

The counts come from the rollup ``rollup_registry`` (anfang.rollups), kept per jurisdiction cell (county, community,
警务区, grid) by triggers in the transaction of every write: a page view sums a few hundred rows instead of scanning
the registry. ``compute_from_scan`` counts the raw tables (a resident's one address, the rollup test, the benchmark).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Integer, case, false, func, select, true
from sqlalchemy.orm import Session

from anfang.core.errors import ValidationError
from anfang.registry.models import Address, House, Person, Region, WorkUnit
from anfang.rollups.models import RegistryRollup
from anfang.security.roles import Role
from anfang.security.scope import Principal, address_condition
from anfang.store.engine import Store

# metric key -> (target, zh-CN label, English label); the seed section is named above.
TARGETS: dict[str, tuple[float, str, str]] = {
    "plate_installed": (1.00, "门牌安装率", "plate installation rate"),
    "plate_accurate": (1.00, "门牌准确率", "plate accuracy rate"),
    "plate_labelled": (1.00, "门牌标注率", "plate labelling rate"),
    "persons_verified": (0.95, "实有人口核实率", "population verification rate"),
    "houses_verified": (0.95, "实有房屋核实率", "housing verification rate"),
    "units_verified": (0.95, "实有单位核实率", "work-unit verification rate"),
}
# Floors carry no door plate; every other address node (gate, building, unit door, household door) does.
PLATED_LEVELS = ("community", "building", "unit", "room")
LEVELS = ("community", "town", "county", "city")


@dataclass
class Counts:
    addresses: int = 0
    plate_installed: int = 0
    plate_accurate: int = 0
    plate_labelled: int = 0
    persons: int = 0
    persons_verified: int = 0
    houses: int = 0
    houses_verified: int = 0
    units: int = 0
    units_verified: int = 0

    def add(self, other: Counts) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


_DENOMINATOR = {"plate_installed": "addresses", "plate_accurate": "addresses", "plate_labelled": "addresses",
                "persons_verified": "persons", "houses_verified": "houses", "units_verified": "units"}


@dataclass
class MetricRow:
    code: str
    name: str
    level: str
    counts: Counts
    rates: dict[str, float | None] = field(default_factory=dict)
    below: list[str] = field(default_factory=list)  # metric keys below target

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "level": self.level, "counts": asdict(self.counts),
                "rates": self.rates, "below": self.below}


def _finish(row: MetricRow) -> MetricRow:
    for key, (target, _, _) in TARGETS.items():
        denominator = getattr(row.counts, _DENOMINATOR[key])
        rate = getattr(row.counts, key) / denominator if denominator else None
        row.rates[key] = rate
        if rate is not None and rate < target:
            row.below.append(key)
    return row


def _flag(column) -> Any:  # noqa: ANN001
    return func.coalesce(func.sum(case((column, 1), else_=0)), 0).cast(Integer)


def _verified(column) -> Any:  # noqa: ANN001
    return func.coalesce(func.sum(case((column == "verified", 1), else_=0)), 0).cast(Integer)


_COUNT_FIELDS = tuple(Counts.__dataclass_fields__)


def rollup_condition(p: Principal) -> Any:
    """address_condition(p) on the rollup's cells; None for a resident (his one address: counted from the rows)."""
    r = RegistryRollup
    match p.role:
        case Role.city_admin:
            return true()
        case Role.county_admin:
            return r.county_code == p.county_code if p.county_code else false()
        case Role.police:
            return r.police_area_id == p.police_area_id if p.police_area_id else false()
        case Role.grid_worker:
            return r.grid_id == p.grid_id if p.grid_id else false()
        case Role.property_staff:
            return r.community_code == p.community_code if p.community_code else false()
        case Role.resident:
            return None
    return false()


def community_counts(s: Session, p: Principal) -> dict[str, Counts]:
    """Counts per community code, within p's jurisdiction, summed from the rollup's cells."""
    cond = rollup_condition(p)
    if cond is None:
        return community_counts_from_scan(s, p)
    out: dict[str, Counts] = {}
    for row in s.execute(select(RegistryRollup.community_code,
                                *[func.sum(getattr(RegistryRollup, f)) for f in _COUNT_FIELDS])
                         .where(cond).group_by(RegistryRollup.community_code)):
        values = [int(v or 0) for v in row[1:]]
        if any(values):
            out[row[0]] = Counts(*values)
    return out


def community_counts_from_scan(s: Session, p: Principal) -> dict[str, Counts]:
    """Counts per community code, within p's jurisdiction: one grouped query per record kind over the raw tables."""
    scope = address_condition(p)
    out: dict[str, Counts] = {}

    def get(code: str) -> Counts:
        return out.setdefault(code, Counts())

    for code, n, inst, acc, lab in s.execute(
        select(Address.community_code, func.count(), _flag(Address.plate_installed), _flag(Address.plate_accurate),
               _flag(Address.plate_labelled))
        .where(scope, Address.level.in_(PLATED_LEVELS)).group_by(Address.community_code)
    ):
        c = get(code)
        c.addresses, c.plate_installed, c.plate_accurate, c.plate_labelled = n, inst, acc, lab
    for model, total_attr, ok_attr in ((Person, "persons", "persons_verified"), (House, "houses", "houses_verified"),
                                       (WorkUnit, "units", "units_verified")):
        for code, n, ok in s.execute(
            select(Address.community_code, func.count(), _verified(model.verification))
            .join(Address, model.address_id == Address.id).where(scope).group_by(Address.community_code)
        ):
            c = get(code)
            setattr(c, total_attr, n)
            setattr(c, ok_attr, ok)
    return out


def _parent_code(code: str, level: str) -> str:
    """Region code at `level` that contains the 12-digit community code."""
    if level == "community":
        return code
    if level == "town":
        return code[:9] + "000"
    if level == "county":
        return code[:6]
    return code[:4] + "00"


def compute(store: Store, p: Principal, level: str = "county") -> list[MetricRow]:
    """Figures at one level (community | town | county | city) over p's jurisdiction, ordered by code."""
    return _compute(store, p, level, community_counts)


def compute_from_scan(store: Store, p: Principal, level: str = "county") -> list[MetricRow]:
    """compute() counted from the raw tables (the rollups' reference: the test, the benchmark's "before")."""
    return _compute(store, p, level, community_counts_from_scan)


def _compute(store: Store, p: Principal, level: str, counts: Any) -> list[MetricRow]:  # noqa: ANN401
    if level not in LEVELS:
        raise ValidationError(f"统计层级无效：{level}（可选：{'、'.join(LEVELS)}）")
    with store.session() as s:
        per_community = counts(s, p)
        rolled: dict[str, Counts] = {}
        for code, counts in per_community.items():
            rolled.setdefault(_parent_code(code, level), Counts()).add(counts)
        names = dict(s.execute(select(Region.code, Region.name).where(Region.code.in_(list(rolled)))).all())
    return [_finish(MetricRow(code=c, name=names.get(c, c), level=level, counts=rolled[c])) for c in sorted(rolled)]


def below_target(store: Store, p: Principal, metric: str, region_code: str | None = None,
                 limit: int = 200) -> list[dict[str, Any]]:
    """The records keeping `metric` below target in the region (any level's code), within p's jurisdiction."""
    if metric not in TARGETS:
        raise ValidationError(f"指标无效：{metric}（可选：{'、'.join(TARGETS)}）")
    cond = [address_condition(p)]
    if region_code:
        cond.append(Address.community_code.startswith(_region_prefix(region_code)))
    with store.session() as s:
        if metric.startswith("plate_"):
            column = getattr(Address, metric)
            rows = s.execute(select(Address.id, Address.code, Address.full_name, Address.level)
                             .where(*cond, Address.level.in_(PLATED_LEVELS), column.is_(False))
                             .order_by(Address.code).limit(limit))
            return [{"entity": "address", "id": i, "code": c, "address": n, "level": lv} for i, c, n, lv in rows]
        model = {"persons_verified": Person, "houses_verified": House, "units_verified": WorkUnit}[metric]
        label = {Person: Person.name, House: House.use, WorkUnit: WorkUnit.name}[model]
        rows = s.execute(select(model.id, label, model.verification, Address.full_name)
                         .join(Address, model.address_id == Address.id)
                         .where(*cond, model.verification != "verified").order_by(Address.full_name).limit(limit))
        entity = {Person: "person", House: "house", WorkUnit: "unit"}[model]
        return [{"entity": entity, "id": i, "label": lb, "verification": v, "address": a} for i, lb, v, a in rows]


def _region_prefix(code: str) -> str:
    code = code.strip()
    if len(code) == 6:
        return code[:4] if code.endswith("00") else code
    if len(code) == 12 and code.endswith("000"):
        return code[:9]
    return code
