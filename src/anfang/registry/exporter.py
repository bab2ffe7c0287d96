"""Bulk export of the 一标三实 registry to XLSX or CSV, in the import format (anfang.registry.columns).

The rows are limited to the principal's jurisdiction (anfang.security.scope), personal fields are masked for his
role (anfang.security.masking), and each export is one audit entry. Masked cells re-import cleanly: the importer
keeps the stored value when a cell is that value's mask, and finds a person with a masked identity number by the
系统编号 column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select, true

from anfang.core.errors import Forbidden, ValidationError
from anfang.core.regions import PROVINCE_NAME
from anfang.registry import vocab
from anfang.registry.columns import COLUMNS, KINDS
from anfang.registry.models import Address, Grid, House, Person, PoliceArea, Region, Vehicle, WorkUnit
from anfang.security import audit
from anfang.security.masking import mask_fields
from anfang.security.roles import BULK, Role
from anfang.security.scope import Principal, address_condition, person_condition
from anfang.store.engine import Store

__all__ = ["export_csv", "export_xlsx", "export_rows", "FILTERS"]

Progress = Callable[[int, int], None]
_TOP = "\U0010ffff"  # sorts after every character: [prefix, prefix + _TOP) is the prefix range

# Filters each kind accepts (keyword arguments of export_xlsx / export_csv).
FILTERS: dict[str, tuple[str, ...]] = {
    "regions": ("county_code",),
    "addresses": ("county_code", "town_code", "community_code", "address_prefix", "level"),
    "persons": ("county_code", "town_code", "community_code", "address_prefix", "verification", "population_type"),
    "houses": ("county_code", "town_code", "community_code", "address_prefix", "verification", "use"),
    "units": ("county_code", "town_code", "community_code", "address_prefix", "verification"),
    "vehicles": ("county_code", "town_code", "community_code", "address_prefix"),
}


def _yes_no(v: bool | None) -> str:
    return "是" if v else "否"


def _label_of(voc: dict[str, tuple[str, str]]) -> Callable[[str | None], str]:
    return lambda v: vocab.label(voc, v) if v else ""


def _labels(v: list[str] | None) -> str:
    return "、".join(vocab.label(vocab.PERSON_LABELS, x) for x in (v or []))


def _region_kind(v: str | None) -> str:
    return {"urban": "社区", "village": "行政村"}.get(v or "", "")


def _query(kind: str, p: Principal) -> tuple[Select, dict[str, Callable[[Any], Any]]]:
    """The SELECT of kind's export columns (labelled by column field) within p's scope, and value formatters."""
    a = Address
    if kind == "regions":
        cond = Region.code.startswith(p.county_code) if p.role is Role.county_admin else true()
        stmt = select(Region.code.label("code"), Region.name.label("name"), Region.parent_code.label("parent_code"),
                      Region.kind.label("kind"), Region.full_name.label("full_name")).where(cond)
        return stmt.order_by(Region.code), {"kind": _region_kind}
    if kind == "addresses":
        parent = Address.__table__.alias("parent")
        stmt = (select(a.code.label("code"), parent.c.code.label("parent_code"), a.level.label("level"),
                       a.name.label("name"), a.community_code.label("community_code"), a.full_name.label("full_name"),
                       PoliceArea.code.label("police_area_code"), Grid.code.label("grid_code"), a.lon.label("lon"),
                       a.lat.label("lat"), a.plate_installed.label("plate_installed"),
                       a.plate_accurate.label("plate_accurate"), a.plate_labelled.label("plate_labelled"))
                .outerjoin(parent, a.parent_id == parent.c.id)
                .outerjoin(PoliceArea, a.police_area_id == PoliceArea.id).outerjoin(Grid, a.grid_id == Grid.id)
                .where(address_condition(p)))
        # a child's code starts with its parent's, so code order puts parents first (re-import needs that)
        return stmt.order_by(a.code), {"level": _label_of(vocab.ADDRESS_LEVELS), "plate_installed": _yes_no,
                                       "plate_accurate": _yes_no, "plate_labelled": _yes_no}
    if kind == "persons":
        stmt = (select(Person.id_number.label("id_number"), Person.name.label("name"), Person.gender.label("gender"),
                       Person.birth_date.label("birth_date"), Person.phone.label("phone"),
                       Person.hukou_address.label("hukou_address"), Person.population_type.label("population_type"),
                       Person.labels.label("labels"), a.code.label("address_code"),
                       Person.verification.label("verification"), Person.id.label("record_id"))
                .outerjoin(a, Person.address_id == a.id).where(person_condition(p)))
        return stmt.order_by(Person.id), {"gender": _label_of(vocab.GENDERS),
                                          "population_type": _label_of(vocab.POPULATION_TYPES), "labels": _labels,
                                          "verification": _label_of(vocab.VERIFICATION)}
    if kind == "houses":
        stmt = (select(a.code.label("address_code"), House.use.label("use"), Person.id_number.label("owner_id_number"),
                       House.owner_name.label("owner_name"), House.owner_phone.label("owner_phone"),
                       House.area_m2.label("area_m2"), House.verification.label("verification"))
                .join(a, House.address_id == a.id).outerjoin(Person, House.owner_person_id == Person.id)
                .where(address_condition(p)))
        return stmt.order_by(a.code), {"use": _label_of(vocab.HOUSE_USES),
                                       "verification": _label_of(vocab.VERIFICATION)}
    if kind == "units":
        stmt = (select(WorkUnit.credit_code.label("credit_code"), WorkUnit.name.label("name"),
                       WorkUnit.kind.label("kind"), a.code.label("address_code"),
                       WorkUnit.legal_person.label("legal_person"), WorkUnit.phone.label("phone"),
                       WorkUnit.staff_count.label("staff_count"), WorkUnit.verification.label("verification"))
                .join(a, WorkUnit.address_id == a.id).where(address_condition(p)))
        return stmt.order_by(WorkUnit.credit_code), {"verification": _label_of(vocab.VERIFICATION)}
    # vehicles: located by the owner's residence (Vehicle.address_id)
    stmt = (select(Vehicle.plate.label("plate"), Vehicle.plate_color.label("plate_color"),
                   Vehicle.brand.label("brand"), Vehicle.color.label("color"),
                   Person.id_number.label("owner_id_number"))
            .outerjoin(Person, Vehicle.owner_person_id == Person.id).outerjoin(a, Vehicle.address_id == a.id)
            .where(address_condition(p)))
    return stmt.order_by(Vehicle.plate), {"plate_color": _label_of(vocab.PLATE_COLORS)}


def _filtered(kind: str, stmt: Select, filters: dict[str, Any]) -> Select:
    allowed = FILTERS[kind]
    unknown = sorted(set(filters) - set(allowed))
    if unknown:
        raise ValidationError(f"不支持的筛选条件：{'、'.join(unknown)}（可用：{'、'.join(allowed)}）")
    conds: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if value in (None, ""):
            continue
        value = str(value).strip()
        if kind == "regions":
            conds.append(Region.code.startswith(value))
        elif name in ("county_code", "town_code", "community_code"):
            conds.append(getattr(Address, name) == value)
        elif name == "address_prefix":
            if value.isdigit():
                column = Address.code
            else:
                column = Address.full_name
                if not value.startswith(PROVINCE_NAME):
                    value = PROVINCE_NAME + value
            conds.append(and_(column >= value, column < value + _TOP))
        elif name == "level":
            conds.append(Address.level == value)
        else:
            table = {"persons": Person, "houses": House, "units": WorkUnit}[kind]
            conds.append(getattr(table, name) == value)
    return stmt.where(*conds) if conds else stmt


def _check(kind: str, principal: Principal) -> None:
    if kind not in COLUMNS:
        raise ValidationError(f"未知的数据类别：{kind}（可选：{'、'.join(KINDS)}）")
    if principal.role not in BULK:
        raise Forbidden(f"当前角色无权批量导出 / role {principal.role.value} may not bulk export")


def export_rows(store: Store, kind: str, principal: Principal, progress: Progress | None = None,
                **filters: Any) -> Iterator[list[Any]]:
    """The header row (Chinese column names, as import reads them), then one list of cell values per record,
    scoped and masked for principal. Not audited by itself: export_xlsx / export_csv audit the file."""
    _check(kind, principal)
    stmt, formats = _query(kind, principal)
    stmt = _filtered(kind, stmt, filters)
    cols = COLUMNS[kind]
    fields = [c.field for c in cols]
    masked = [(c.field, c.mask_as) for c in cols if c.mask_as]
    role = principal.role
    yield [c.zh for c in cols]
    with store.engine.connect() as conn:
        total = 0
        if progress:
            total = conn.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
            progress(0, total)
        done = 0
        result = conn.execution_options(yield_per=5000).execute(stmt)
        for row in result:
            m = row._mapping
            rec = {f: m.get(f) for f in fields}
            for fld, policy in masked:
                if rec[fld]:
                    rec[fld] = mask_fields(role, {policy: rec[fld]})[policy]
            out = []
            for f in fields:
                v = rec[f]
                fmt = formats.get(f)
                if fmt is not None:
                    v = fmt(v)
                elif isinstance(v, date):
                    v = v.isoformat()
                out.append("" if v is None else v)
            yield out
            done += 1
            if progress and done % 5000 == 0:
                progress(done, max(done, total))
        if progress:
            progress(done, done)


def _audit(store: Store, principal: Principal, kind: str, path: Path, rows: int, filters: dict[str, Any]) -> None:
    detail = {"file": path.name, "rows": rows}
    if filters:
        detail["filters"] = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    audit.record(store, principal, "export", kind, [], detail=json.dumps(detail, ensure_ascii=False,
                                                                         separators=(",", ":")))


def export_xlsx(store: Store, kind: str, path: Path, principal: Principal, progress: Progress | None = None,
                **filters: Any) -> int:
    """Write kind's records in the principal's scope to an XLSX file (openpyxl write-only); returns the number of
    data rows. Identity numbers and codes are written as text, so Excel does not turn them into numbers."""
    from openpyxl import Workbook

    path = Path(path)
    rows = export_rows(store, kind, principal, progress, **filters)
    header = next(rows)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(kind)
    ws.append(header)
    n = 0
    for r in rows:
        ws.append(r)
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    _audit(store, principal, kind, path, n, filters)
    return n


def export_csv(store: Store, kind: str, path: Path, principal: Principal, progress: Progress | None = None,
               **filters: Any) -> int:
    """Like export_xlsx, as UTF-8 CSV with a BOM (Excel opens it with the right encoding)."""
    path = Path(path)
    rows = export_rows(store, kind, principal, progress, **filters)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = -1
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow(r)
            n += 1
    _audit(store, principal, kind, path, n, filters)
    return n
