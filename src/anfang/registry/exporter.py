"""Bulk export of the 一标三实 registry to XLSX or CSV, in the import format (anfang.registry.columns).

The rows are limited to the principal's jurisdiction (anfang.security.scope), personal fields are masked for his
role (anfang.security.masking), and each export is one audit entry. Masked cells re-import cleanly: the importer
keeps the stored value when a cell is that value's mask, and finds a person with a masked identity number by the
系统编号 column.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, select, true

from anfang.core.errors import Forbidden, ValidationError
from anfang.core.regions import PROVINCE_NAME
from anfang.registry import vocab
from anfang.registry.columns import COLUMNS, KINDS
from anfang.registry.models import Address, Grid, House, Person, PoliceArea, Region, Vehicle, WorkUnit
from anfang.security import audit
from anfang.security.masking import mask_value, may_see
from anfang.security.roles import BULK, Role
from anfang.security.scope import Principal, address_condition, person_condition
from anfang.security.watermark import CARRIERS, CHINA_TZ, ROW_KEY, Mark, log_export, new_mark, xlsx_decorate
from anfang.store.base import utcnow
from anfang.store.engine import Store

__all__ = ["export_csv", "export_xlsx", "export_rows", "export_authorised", "count_rows", "FILTERS"]

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


def _owner_flag(p: Principal) -> Any:
    """Whether the person owns a house in p's scope (his phone is then an owner's phone, security.masking);
    a constant for the roles that mask both alike."""
    if may_see(p.role, "phone") == may_see(p.role, "phone", owner=True):
        return literal(False).label("_owner")
    owners = select(House.owner_person_id).join(Address, House.address_id == Address.id).where(address_condition(p))
    return Person.id.in_(owners).label("_owner")


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
                       Person.verification.label("verification"), Person.id.label("record_id"),
                       _owner_flag(p))
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


def _check(kind: str, principal: Principal, approved: bool = False) -> None:
    if kind not in COLUMNS:
        raise ValidationError(f"未知的数据类别：{kind}（可选：{'、'.join(KINDS)}）")
    # Other roles export only what a supervisor approved (anfang.security.approvals), still within their scope.
    if principal.role not in BULK and not approved:
        raise Forbidden(f"当前角色无权批量导出 / role {principal.role.value} may not bulk export")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # not allowed in XML: openpyxl refuses the whole file


def neutralise(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd|...``, ``@SUM(...)``: CSV
    injection) gets a leading apostrophe, so Excel and WPS show it as text; the importer removes it again.
    Control characters (which a stored name may hold) are dropped: one of them made every XLSX export fail."""
    if not isinstance(v, str):
        return v
    v = _CONTROL_RE.sub("", v)
    return "'" + v if v.startswith(FORMULA_START) else v


def export_rows(store: Store, kind: str, principal: Principal, progress: Progress | None = None, *,
                mark: Mark | None = None, row_keys: list[Any] | None = None,
                **filters: Any) -> Iterator[list[Any]]:
    """The header row (Chinese column names, as import reads them), then one list of cell values per record,
    scoped and masked for principal. Not audited by itself: export_xlsx / export_csv audit the file.

    With a watermark ``mark``, one text cell of each row (a column of anfang.security.watermark.CARRIERS, in turn)
    carries its invisible fingerprint; ``row_keys`` collects each row's record key for the export log."""
    _check(kind, principal, approved=mark is not None and mark.approval_id is not None)
    stmt, formats = _query(kind, principal)
    stmt = _filtered(kind, stmt, filters)
    cols = COLUMNS[kind]
    fields = [c.field for c in cols]
    masked = [(c.field, c.mask_as) for c in cols if c.mask_as]
    carriers = [i for i, f in enumerate(fields) if f in CARRIERS.get(kind, ())] if mark is not None else []
    key_index = fields.index(ROW_KEY[kind]) if ROW_KEY.get(kind) in fields else 0
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
            owner = bool(m.get("_owner"))
            for fld, policy in masked:
                rec[fld] = mask_value(role, policy, rec[fld], owner=owner)
            out = []
            for f in fields:
                v = rec[f]
                fmt = formats.get(f)
                if fmt is not None:
                    v = fmt(v)
                elif isinstance(v, date):
                    v = v.isoformat()
                out.append("" if v is None else neutralise(v))
            if row_keys is not None:
                row_keys.append(out[key_index])
            if carriers:  # one carrier cell per row, the column rotating: every row carries the fingerprint
                i = carriers[done % len(carriers)]
                out[i] = mark.embed(out[i])  # type: ignore[union-attr]
            yield out
            done += 1
            if progress and done % 5000 == 0:
                progress(done, max(done, total))
        if progress:
            progress(done, done)


def _audit(store: Store, principal: Principal, kind: str, path: Path, rows: int, filters: dict[str, Any],
           mark: Mark | None = None) -> None:
    detail = {"file": path.name, "rows": rows}
    if filters:
        detail["filters"] = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    audit.record(store, principal, "export", kind, [mark.request_id] if mark else [],
                 detail=json.dumps(detail, ensure_ascii=False, separators=(",", ":")))


def export_xlsx(store: Store, kind: str, path: Path, principal: Principal, progress: Progress | None = None, *,
                mark: Mark | None = None, **filters: Any) -> int:
    """Write kind's records in the principal's scope to an XLSX file (openpyxl write-only); returns the number of
    data rows. Identity numbers and codes are written as text, so Excel does not turn them into numbers.

    Every file is watermarked (anfang.security.watermark; a fresh mark unless one is given) and logged in the
    export log with its row keys."""
    from openpyxl import Workbook

    path = Path(path)
    mark = mark or new_mark(store, principal, kind, "xlsx", path.name, filters=filters)
    keys: list[Any] = []
    rows = export_rows(store, kind, principal, progress, mark=mark, row_keys=keys, **filters)
    header = next(rows)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(kind)
    ws.append(header)
    n = 0
    for r in rows:
        ws.append(r)
        n += 1
    xlsx_decorate(wb, mark, [ws])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    log_export(store, mark, n, keys)
    _audit(store, principal, kind, path, n, filters, mark)
    return n


def export_csv(store: Store, kind: str, path: Path, principal: Principal, progress: Progress | None = None, *,
               mark: Mark | None = None, **filters: Any) -> int:
    """Like export_xlsx, as UTF-8 CSV with a BOM (Excel opens it with the right encoding); the last line is the
    visible watermark (「【导出水印】…」, skipped by the importer)."""
    path = Path(path)
    mark = mark or new_mark(store, principal, kind, "csv", path.name, filters=filters)
    keys: list[Any] = []
    rows = export_rows(store, kind, principal, progress, mark=mark, row_keys=keys, **filters)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = -1
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow(r)
            n += 1
        w.writerow([mark.visible_line()])
    log_export(store, mark, n, keys)
    _audit(store, principal, kind, path, n, filters, mark)
    return n


# ---- the gated export of the API and the console (数据查询授权 + 导出水印) ----------------------------------
KIND_LABELS: dict[str, str] = {"regions": "行政区划", "addresses": "标准地址", "persons": "实有人口",
                               "houses": "实有房屋", "units": "实有单位", "vehicles": "车辆"}
MEDIA_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "csv": "text/csv; charset=utf-8"}


def count_rows(store: Store, kind: str, principal: Principal, **filters: Any) -> int:
    """How many rows an export of kind with these filters would hold for principal (scope applied)."""
    if kind not in COLUMNS:
        raise ValidationError(f"未知的数据类别：{kind}（可选：{'、'.join(KINDS)}）")
    stmt, _ = _query(kind, principal)
    stmt = _filtered(kind, stmt, filters)
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


@dataclass
class ExportedFile:
    """A written export in its own temporary directory; serve ``path`` and call ``cleanup()`` afterwards."""

    path: Path
    filename: str
    media_type: str
    rows: int
    mark: Mark

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.path.parent, ignore_errors=True)


def export_authorised(store: Store, kind: str, fmt: str, principal: Principal, *, reason: str | None = None,
                 approval_id: int | None = None, **filters: Any) -> ExportedFile:
    """An export as the API and the console serve it: authorised by the query policy, then written with its
    watermark. A bulk export (more rows than the policy's threshold, an area of a town or wider, or a role that
    may not bulk export on its own) needs a reason and, by role, a supervisor's approval: it raises
    approvals.ReasonRequired or approvals.ApprovalPending (naming the request) until then."""
    import tempfile

    from anfang.security import approvals

    if fmt not in MEDIA_TYPES:
        raise ValidationError("格式应为 xlsx 或 csv / format must be xlsx or csv")
    filters = {k: str(v).strip() for k, v in filters.items() if v not in (None, "")}
    n = count_rows(store, kind, principal, **filters)
    policy = approvals.load_policy()
    level = approvals.requested_level(store, principal, filters)
    bulk = principal.role not in BULK or approvals.is_wide(level, policy) or n > policy.bulk_export_rows
    grant = None
    if bulk:
        area = approvals.AREA_LABELS[level][0]
        where = "，".join(f"{k}={v}" for k, v in filters.items()) or "全部辖区"
        summary = f"导出{KIND_LABELS.get(kind, kind)}{n}条，范围：{area}（{where}）"
        grant = approvals.authorise(store, principal, query_kind="bulk_export", target=f"export:{kind}",
                                    params=filters, summary=summary, reason=reason, approval_id=approval_id,
                                    policy=policy)
    stamp = utcnow().astimezone(CHINA_TZ).strftime("%Y%m%d-%H%M")
    filename = f"{kind}-{stamp}.{fmt}"
    mark = new_mark(store, principal, kind, fmt, filename, reason=grant.reason if grant else (reason or None),
                    approval_id=grant.approval_id if grant else None, filters=filters)
    path = Path(tempfile.mkdtemp(prefix="anfang-export-")) / filename  # streamed from disk, not held in memory
    writer = export_xlsx if fmt == "xlsx" else export_csv
    try:
        rows = writer(store, kind, path, principal, mark=mark, **filters)
    except BaseException:
        ExportedFile(path, filename, "", 0, mark).cleanup()
        raise
    return ExportedFile(path=path, filename=filename, media_type=MEDIA_TYPES[fmt], rows=rows, mark=mark)
