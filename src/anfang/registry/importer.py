"""Bulk import of the 一标三实 registry from CSV or XLSX, with a row-level error report.

Rules (docs/import-format.md is the user-facing version):

- Columns per kind are the table in anfang.registry.columns; headers may be Chinese or English.
- Every data row ends in exactly one of: inserted, updated, unchanged, or an error naming the row and the reason.
  Nothing is dropped silently; wholly blank rows are skipped and not counted.
- Records are matched on their natural key (identity number, address code, credit code, plate, region code) and
  upserted (INSERT ... ON CONFLICT DO UPDATE), so re-importing a file is idempotent: the second run reports every
  row as unchanged.
- A column missing from the file leaves that field of existing records untouched (new records get the default);
  a column present with a blank cell sets the field's default / empty value.
- A key that occurs twice in one file: the first row is imported, later rows are errors naming the first row.
  Two different records for one person in one file is a data fault the user should resolve, not a silent choice.
- Masked values (with ``*``, as written by export for roles that see masked data) are accepted when they match the
  stored value's mask, and then keep the stored value; a masked identity number needs the 系统编号 column.
- A county administrator may only import records whose address lies in his county; other rows are errors
  (超出辖区). Only roles in anfang.security.roles.BULK may import.
- Rows are written in batches of batch_size, committed every COMMIT_ROWS rows; a failure part-way leaves the
  committed rows imported, and re-running the file completes it (idempotent). One audit entry per import.

Speed (2.5 million persons from CSV into SQLite at > 20,000 rows/s on a 2-vCPU VM; benchmarks/bench_import.py):
the csv module; lookups loaded once per import (address code -> id); a large file is read and checked by two
parsing processes (every other chunk each), which for persons also probe which identity numbers are stored and
put the inserts of new persons in the driver's form; this process drops in-file duplicates, resolves the rest
against the stored records (one pre-select per batch) and writes: executemany of a compiled
INSERT ... ON CONFLICT DO UPDATE over plain tuples on SQLite, COPY into a staging table then
INSERT ... SELECT ... ON CONFLICT DO UPDATE on PostgreSQL.

Federation (docs/federation.md): these writes pass no store hook, so on a node with a parent (the store carries
the federation Outbox) the writer reads back each batch's inserted / updated records in the same transaction and
writes their outbox rows with the outbox's own envelope (Outbox.write_records); unchanged rows make none. A
standalone node skips all of it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import json
import operator
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Date, MetaData, Table, bindparam, select
from sqlalchemy import Column as SAColumn
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from anfang.core import ids
from anfang.core.errors import Forbidden, ValidationError
from anfang.core.regions import PROVINCE_NAME
from anfang.federation.outbox import TRACKED, Outbox
from anfang.registry import vocab
from anfang.registry.columns import (
    COLUMNS,
    KEY_FIELD,
    KIND_LABELS,
    KINDS,
    Column,
    header_index,
    normalize_header,
)
from anfang.registry.models import Address, Grid, House, Person, PoliceArea, PoliceStation, Region, Vehicle, WorkUnit
from anfang.security import audit, crypto
from anfang.security.masking import mask_id_number, mask_phone
from anfang.security.roles import BULK, Role
from anfang.security.scope import Principal
from anfang.security.watermark import WATERMARK_PREFIX, ZERO_WIDTH, strip_zero_width
from anfang.store.base import utcnow
from anfang.store.engine import Store

__all__ = ["ImportReport", "RowError", "import_file", "read_rows", "KINDS"]

Progress = Callable[[int, int], None]


# ---- results -----------------------------------------------------------------------------------------------------
@dataclass
class RowError:
    row: int  # 1-based row number as the user sees it (header = 1, first data row = 2)
    reason: str  # zh-CN
    raw: dict  # header text -> original cell text


@dataclass
class ImportReport:
    kind: str
    total: int  # non-blank data rows
    inserted: int
    updated: int
    unchanged: int
    errors: list[RowError]
    seconds: float
    file: str = ""
    headers: list[str] = field(default_factory=list)  # the file's header row, for the error report
    ignored_columns: list[str] = field(default_factory=list)  # headers that match no column of the kind

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rows_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{KIND_LABELS[self.kind]}：共{self.total}行，新增{self.inserted}，更新{self.updated}，"
                f"未变{self.unchanged}，错误{len(self.errors)}（{self.seconds:.1f}秒）")

    def write_report(self, path: Path | str) -> Path:
        """Write the bad rows (row number, reason, original values) as CSV or XLSX (by the file suffix), so the
        user can fix them and import the report file itself: extra 行号/错误原因 columns are ignored on import."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from anfang.registry.exporter import neutralise  # the file's own cells may be formulas: written as text

        header = ["行号", "错误原因", *self.headers]
        rows = ([e.row, e.reason, *(neutralise(e.raw.get(h, "")) for h in self.headers)] for e in self.errors)
        if path.suffix.lower() == ".xlsx":
            from openpyxl import Workbook

            wb = Workbook(write_only=True)
            ws = wb.create_sheet("错误行")
            ws.append(header)
            for r in rows:
                ws.append(r)
            wb.save(path)
        else:
            with path.open("w", encoding="utf-8-sig", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
        return path


class RowFault(Exception):
    """A row cannot be imported; the message is the zh-CN reason shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Masked(str):
    """A cell value that is a mask (contains *): resolved against the stored value at write time."""


# ---- reading files -----------------------------------------------------------------------------------------------
def _detect_encoding(path: Path) -> tuple[str, int]:
    """('utf-8-sig' | 'gb18030', number of newline bytes). UTF-8 unless the bytes are not valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    encoding, newlines, evidence = "utf-8-sig", 0, 0
    last = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
            if encoding == "utf-8-sig" and evidence < 4:
                try:
                    decoder.decode(chunk)
                    evidence += not chunk.isascii()
                except UnicodeDecodeError:
                    encoding = "gb18030"
    if last and last != b"\n":
        newlines += 1
    return encoding, newlines


def _as_typed(text: str) -> str:
    """A text cell without what an export added: the invisible watermark (anfang.security.watermark) and the
    apostrophe before formula-like text (anfang.registry.exporter.neutralise), so a re-import is idempotent."""
    if not text.isascii() and _ZERO_WIDTH_ANY.search(text):  # the common cell has none: one C-level scan
        text = strip_zero_width(text)
    return text[1:] if text[:1] == "'" and text[1:2] and text[1] in "=+-@\t\r" else text


_ZERO_WIDTH_ANY = re.compile("[" + "".join(sorted(ZERO_WIDTH)) + "]")


def _cell_text(v: Any) -> str:
    """Text of an XLSX cell as the user typed it (numbers without a trailing .0, dates as YYYY-MM-DD)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return _as_typed(v)
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, datetime):
        return v.date().isoformat() if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0) else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


@dataclass
class _Source:
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]  # (row number, cells)
    estimated_rows: int
    close: Callable[[], None]


def read_rows(path: Path) -> _Source:
    """Open a CSV (UTF-8 with or without BOM, or GB18030) or XLSX file: header row, then numbered data rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise ValidationError(f"无法读取 Excel 文件：{exc} / cannot read the XLSX file") from None
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        first = next(it, None)
        if first is None:
            wb.close()
            raise ValidationError("文件为空 / the file is empty")
        header = [_cell_text(v).strip() for v in first]
        estimated = max((ws.max_row or 1) - 1, 0)

        def xrows() -> Iterator[tuple[int, list[str]]]:
            for n, row in enumerate(it, start=2):
                cells = [_cell_text(v) for v in row]
                if cells and cells[0].startswith(WATERMARK_PREFIX):
                    continue  # an export's visible watermark line
                yield n, cells

        return _Source(header, xrows(), estimated, wb.close)
    if suffix not in (".csv", ".txt"):
        raise ValidationError(f"不支持的文件类型：{path.suffix}（请使用 CSV 或 XLSX） / unsupported file type")
    encoding, newlines = _detect_encoding(path)
    f = path.open("r", encoding=encoding, newline="")
    reader = csv.reader(f)
    try:
        first = next(reader, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        f.close()
        raise ValidationError(f"无法读取 CSV 文件：{exc} / cannot read the CSV file") from None
    if first is None:
        f.close()
        raise ValidationError("文件为空 / the file is empty")
    header = [h.replace("\ufeff", "").strip() for h in first]

    def crows() -> Iterator[tuple[int, list[str]]]:
        try:
            for n, cells in enumerate(reader, start=2):
                if cells and cells[0].startswith(WATERMARK_PREFIX):
                    continue  # an export's visible watermark line
                row = "".join(cells)  # most rows need no cleaning: one check of the whole row first
                if "'" in row or (not row.isascii() and _ZERO_WIDTH_ANY.search(row)):
                    cells = [_as_typed(c) for c in cells]
                yield n, cells
        except UnicodeDecodeError:
            raise ValidationError("文件编码无法识别（请保存为 UTF-8 或 GB18030） / unknown encoding") from None
        except csv.Error as exc:
            raise ValidationError(f"CSV 格式错误（第{reader.line_num}行附近）：{exc}") from None

    return _Source(header, crows(), max(newlines - 1, 0), f.close)


# ---- value parsing -----------------------------------------------------------------------------------------------
def _enum_map(voc: dict[str, tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, (zh, en) in voc.items():
        for spelling in (key, zh, en):
            out[spelling] = key
            out[spelling.lower()] = key
    return out


_POPULATION = _enum_map(vocab.POPULATION_TYPES)
_LABELS = _enum_map(vocab.PERSON_LABELS)
_LABEL_ORDER = {k: i for i, k in enumerate(vocab.PERSON_LABELS)}
_LABEL_CHOICES = "、".join(zh for zh, _ in vocab.PERSON_LABELS.values())
_VERIFICATION = _enum_map(vocab.VERIFICATION)
_HOUSE_USES = _enum_map(vocab.HOUSE_USES)
_PLATE_COLORS = _enum_map(vocab.PLATE_COLORS) | {f"{zh}色": k for k, (zh, _) in vocab.PLATE_COLORS.items()}
_GENDERS = _enum_map(vocab.GENDERS) | {"男性": "M", "女性": "F", "1": "M", "2": "F"}
_ADDRESS_LEVELS = _enum_map(vocab.ADDRESS_LEVELS) | {"小区": "community", "村": "community", "楼栋": "building",
                                                     "门牌": "building", "楼": "building", "层": "floor",
                                                     "房": "room", "室": "room"}
_LEVEL_RANK = {k: i for i, k in enumerate(vocab.ADDRESS_LEVELS)}
_REGION_KINDS = {"urban": "urban", "社区": "urban", "居委会": "urban", "village": "village", "行政村": "village",
                 "村": "village", "村委会": "village"}
_TRUE = {"是", "1", "true", "yes", "y", "t", "√", "已安装", "准确", "已标注"}
_FALSE = {"否", "0", "false", "no", "n", "f", "", "未安装", "不准确", "未标注"}
_LABEL_SPLIT = re.compile(r"[;；、,，|/\s]+")
_DATE_SEP = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T]00:00(?::00)?)?$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}(?:-\d{1,6})?$")
_DIGITS = re.compile(r"^\d+$")
_MASKERS = {"id_number": mask_id_number, "phone": mask_phone, "owner_phone": mask_phone}


def _enum(value: str, mapping: dict[str, str], voc: dict[str, tuple[str, str]], what: str) -> str:
    key = mapping.get(value) or mapping.get(value.lower())
    if key is None:
        raise RowFault(f"{what}取值无效：{value}（可选：{'、'.join(zh for zh, _ in voc.values())}）")
    return key


def _parse_date(value: str, what: str) -> date:
    s = value.strip()
    try:
        if len(s) == 8 and s.isdigit():
            return date(int(s[:4]), int(s[4:6]), int(s[6:]))
        m = _DATE_SEP.match(s)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        pass
    raise RowFault(f"{what}无效：{value}（格式如 1980-05-01）")


def _parse_bool(value: str, what: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise RowFault(f"{what}取值无效：{value}（可填 是 / 否）")


def _parse_float(value: str, what: str, lo: float, hi: float) -> float:
    try:
        x = float(value.replace(",", ""))
    except ValueError:
        raise RowFault(f"{what}不是数字：{value}") from None
    if not lo <= x <= hi:
        raise RowFault(f"{what}超出范围（{lo:.10g}～{hi:.10g}）：{value}")
    return x


def _text(value: str, what: str, limit: int) -> str | None:
    v = value.strip()
    if len(v) > limit:
        raise RowFault(f"{what}超过{limit}字")
    return v or None


def _phone(value: str, what: str, landline: bool = False) -> str | None:
    v = value.strip()
    if not v:
        return None
    if "*" in v:
        return _Masked(v)
    try:
        return ids.validate_phone(v)
    except ValidationError as e:
        if landline and _LANDLINE.match(v.replace(" ", "")):
            return v.replace(" ", "")
        raise RowFault(e.message.replace("手机号码", what)) from None


def _id_number(value: str, what: str) -> str:
    try:
        return ids.parse_id_number(value).number
    except ValidationError as e:
        raise RowFault(e.message.replace("身份证号", what, 1)) from None


def _resolve_mask(value: str, stored: str | None, policy: str, what: str) -> str | None:
    """A masked cell keeps the stored value when it is that value's mask; anything else is an error."""
    if stored is not None and _MASKERS[policy](stored) == value:
        return stored
    raise RowFault(f"{what}为脱敏值（{value}），与系统中记录不符，无法导入；请填写完整的{what}")


def _scope_fault(what: str) -> RowFault:
    return RowFault(f"超出辖区：{what}不在您管辖的县（市、区）内 / outside your jurisdiction")


# ---- the kinds ---------------------------------------------------------------------------------------------------
class _Kind:
    """One kind of record: parse a row (no database), then resolve a batch against the database and write it."""

    kind: str
    table: Table
    key: str  # key column of the table
    conflict: str | None = None  # the unique column of the upsert when not key (persons: the ID number's hash)
    probe: str | None = None  # the column probed for stored keys when not key (a record field of the same name)
    write_cols: tuple[str, ...]  # every column written (inserts need all of them)
    always: tuple[str, ...]  # columns set on every upsert, whatever columns the file has
    optional: dict[str, tuple[str, ...]] = {}  # file column -> table columns it sets
    verified = False  # has verification / verified_by / verified_at
    speculative = False  # resolve(rec, None) needs nothing from the database: new rows can be prepared early

    def __init__(self, conn: Connection, principal: Principal, present: dict[str, int], now: datetime,
                 load: bool = True) -> None:
        self.conn = conn
        self.load = load  # False: only write (the parsing process loads the lookups)
        self.principal = principal
        self.county = principal.county_code if principal.role is Role.county_admin else None
        self.present = present  # field -> column index in the row
        self.now = now
        set_cols = list(self.always)
        for fld, cols in self.optional.items():
            if fld in present:
                set_cols += [c for c in cols if c not in set_cols]
        if self.verified and "verification" in present:
            set_cols += ["verified_by", "verified_at"]
        self.set_cols = tuple(set_cols)
        self.has_verification = self.verified and "verification" in present
        self.compare_cols = tuple(c for c in set_cols if c not in ("updated_at", "verified_by", "verified_at"))
        self.seen: dict[Any, int] = {}  # key -> row number of its first occurrence in the file

    # parse -------------------------------------------------------------------------------------------------------
    def cell(self, cells: list[str], fld: str) -> str | None:
        """The stripped cell of a column, or None when the file has no such column."""
        i = self.present.get(fld)
        return None if i is None else cells[i].strip()

    def parse(self, cells: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def dedupe_key(self, rec: dict[str, Any]) -> Any:
        return rec[self.key]

    @property
    def key_label(self) -> str:
        return next(c.zh for c in COLUMNS[self.kind] if c.field == KEY_FIELD[self.kind])

    # resolve -----------------------------------------------------------------------------------------------------
    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        """Load what the batch needs from the database (existing records, owners, parents)."""

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def stored_keys(self, conn: Connection, keys: list[Any]) -> list[Any]:
        """Which of keys are stored."""
        return _stored_keys(conn, self.table.name, self.key, keys)

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        """The full parameter dict (every write column) for rec, given the stored record ex."""
        raise NotImplementedError

    def verification(self, params: dict[str, Any], rec: dict[str, Any], ex: dict[str, Any] | None) -> None:
        if not self.verified:
            return
        state = rec.get("verification", ex["verification"] if ex else "unverified")
        params["verification"] = state
        if ex is not None and ex["verification"] == state:
            params["verified_by"], params["verified_at"] = ex["verified_by"], ex["verified_at"]
        elif state == "unverified":
            params["verified_by"], params["verified_at"] = None, None
        else:
            params["verified_by"], params["verified_at"] = self.principal.username, self.now

    def base(self, ex: dict[str, Any] | None) -> dict[str, Any]:
        if ex is not None:
            params = {c: ex[c] for c in self.write_cols if c in ex}
        else:
            params = self.defaults()
        params["updated_at"] = self.now
        return params

    def defaults(self) -> dict[str, Any]:
        return {}


def _rows_by(conn: Connection, stmt: Any, key: str) -> dict[Any, dict[str, Any]]:
    return {m[key]: m for m in (dict(r._mapping) for r in conn.execute(stmt))}


def _stored_keys(conn: Connection, table: str, column: str, keys: list[str]) -> list[str]:
    """Which of keys are stored: one index probe each, the keys passed as a single parameter (binding thousands
    of IN parameters one by one costs more than the probes)."""
    if conn.dialect.name == "sqlite":
        sql = f'SELECT "{column}" FROM "{table}" WHERE "{column}" IN (SELECT value FROM json_each(?))'
        return [r[0] for r in conn.exec_driver_sql(sql, (json.dumps(keys),))]
    sql = f'SELECT "{column}" FROM "{table}" WHERE "{column}" = ANY(%s)'
    return [r[0] for r in conn.exec_driver_sql(sql, (keys,))]


class _Regions(_Kind):
    kind = "regions"
    table = Region.__table__
    key = "code"
    write_cols = ("code", "name", "full_name", "level", "kind", "parent_code")
    always = ("name", "full_name", "level", "kind", "parent_code")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.regions = _rows_by(self.conn, select(*self.table.c), "code")

    def parse(self, cells: list[str]) -> dict[str, Any]:
        bad: list[str] = []
        code = ids.normalize_region_code(self.cell(cells, "code") or "")
        level = None
        try:
            level = ids.region_level(code) if code else None
            if code and level == "province":
                bad.append(f"区划代码为省级，不能导入：{code}")
        except ValidationError as e:
            bad.append(e.message)
        if not code:
            bad.append("缺少必填项：区划代码")
        name = self.cell(cells, "name") or ""
        if not name:
            bad.append("缺少必填项：名称")
        elif len(name) > 64:
            bad.append("名称超过64字")
        parent = ids.normalize_region_code(self.cell(cells, "parent_code") or "")
        kind = self.cell(cells, "kind") or ""
        rkind = None
        if level == "community":
            if kind:
                rkind = _REGION_KINDS.get(kind.lower())
                if rkind is None:
                    bad.append(f"类型取值无效：{kind}（可选：社区、行政村）")
            else:
                rkind = "village" if code[9] == "2" else "urban"
        full = self.cell(cells, "full_name") or ""
        if len(full) > 200:
            bad.append("完整名称超过200字")
        if bad:
            raise RowFault("；".join(bad))
        return {"code": code, "name": name, "level": level, "kind": rkind, "parent_code": parent or None,
                "full_name": full or None}

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        return self.regions.get(rec["code"])

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        code, parent_code, level = rec["code"], rec["parent_code"], rec["level"]
        if self.county and code[:6] != self.county:
            raise _scope_fault(f"区划{code}")
        full = rec["full_name"]
        if level == "city":
            if parent_code:
                raise RowFault("市级区划不应填写上级区划代码")
            full = full or PROVINCE_NAME + rec["name"]
        else:
            if not parent_code:
                raise RowFault("缺少必填项：上级区划代码")
            parent = self.regions.get(parent_code)
            if parent is None:
                raise RowFault(f"上级区划代码不存在：{parent_code}")
            expected = {"county": ("city",), "town": ("county",), "community": ("town",)}[level]
            if parent["level"] not in expected:
                raise RowFault(f"上级区划层级不符：{parent_code}为{parent['level']}级")
            if not code.startswith(_region_prefix(parent_code, parent["level"])):
                raise RowFault(f"区划代码{code}不在上级区划{parent_code}之下")
            full = full or parent["full_name"] + rec["name"]
        params = {"code": code, "name": rec["name"], "full_name": full, "level": level, "kind": rec["kind"],
                  "parent_code": parent_code}
        self.regions[code] = params  # later rows of the file may hang below it
        return params

    def base(self, ex: dict[str, Any] | None) -> dict[str, Any]:
        return {}


def _region_prefix(code: str, level: str) -> str:
    return {"city": code[:4], "county": code[:6], "town": code[:9]}.get(level, code)


class _Addresses(_Kind):
    kind = "addresses"
    table = Address.__table__
    key = "code"
    # parent_code is not a column: the writer turns it into parent_id with a subquery on the code, so rows never
    # wait for their parent's id and a child may follow its parent in the same batch.
    write_cols = ("code", "parent_code", "level", "name", "full_name", "county_code", "town_code", "community_code",
                  "police_area_id", "grid_id", "lon", "lat", "plate_installed", "plate_accurate", "plate_labelled",
                  "updated_at")
    always = ("parent_code", "level", "name", "full_name", "county_code", "town_code", "community_code",
              "updated_at")
    optional = {"police_area_code": ("police_area_id",), "grid_code": ("grid_id",), "lon": ("lon",),
                "lat": ("lat",), "plate_installed": ("plate_installed",), "plate_accurate": ("plate_accurate",),
                "plate_labelled": ("plate_labelled",)}
    # what a child needs of its parent; kept for every non-room row of the file (rooms have no children)
    _parent_info = ("level", "full_name", "county_code", "town_code", "community_code", "police_area_id", "grid_id",
                    "lon", "lat")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        c = self.conn
        self.regions = {r.code: r for r in c.execute(select(Region.code, Region.level, Region.full_name,
                                                            Region.name, Region.parent_code))}
        self.areas = {r.code: (r.id, r.county_code) for r in c.execute(
            select(PoliceArea.code, PoliceArea.id, PoliceStation.county_code)
            .join(PoliceStation, PoliceArea.station_id == PoliceStation.id))}
        self.grids = {r.code: (r.id, r.community_code) for r in c.execute(
            select(Grid.code, Grid.id, Grid.community_code))}
        self.known: dict[str, dict[str, Any]] = {}  # code -> parent info (stored, or written by this import)
        self.by_key: dict[str, dict[str, Any]] = {}

    def parse(self, cells: list[str]) -> dict[str, Any]:
        bad: list[str] = []
        rec: dict[str, Any] = {}
        code = self.cell(cells, "code") or ""
        if not code:
            bad.append("缺少必填项：地址编码")
        elif not _DIGITS.match(code) or len(code) > 40:
            bad.append(f"地址编码应为不超过40位的数字：{code}")
        rec["code"] = code
        rec["parent_code"] = self.cell(cells, "parent_code") or None
        level = self.cell(cells, "level") or ""
        try:
            rec["level"] = _enum(level, _ADDRESS_LEVELS, vocab.ADDRESS_LEVELS, "层级") if level else None
            if not level:
                bad.append("缺少必填项：层级")
        except RowFault as e:
            bad.append(e.reason)
        name = self.cell(cells, "name") or ""
        if not name:
            bad.append("缺少必填项：名称")
        elif len(name) > 64:
            bad.append("名称超过64字")
        rec["name"] = name
        rec["community_code"] = self.cell(cells, "community_code") or None
        rec["full_name"] = self.cell(cells, "full_name") or None
        if rec["full_name"] and len(rec["full_name"]) > 300:
            bad.append("完整地址超过300字")
        for fld in ("police_area_code", "grid_code"):
            if fld in self.present:
                rec[fld] = self.cell(cells, fld) or None
        for fld, what, lo, hi in (("lon", "经度", 73.0, 136.0), ("lat", "纬度", 3.0, 54.0)):
            v = self.cell(cells, fld)
            if v is not None:
                try:
                    rec[fld] = _parse_float(v, what, lo, hi) if v else None
                except RowFault as e:
                    bad.append(e.reason)
        for fld, what in (("plate_installed", "门牌已安装"), ("plate_accurate", "门牌准确"),
                          ("plate_labelled", "门牌已标注")):
            v = self.cell(cells, fld)
            if v is not None:
                try:
                    rec[fld] = _parse_bool(v, what)
                except RowFault as e:
                    bad.append(e.reason)
        if bad:
            raise RowFault("；".join(bad))
        return rec

    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        t, parent = self.table, self.table.alias("parent")
        cols = [t.c[c] for c in self.write_cols if c != "parent_code"]
        stmt = select(*cols, t.c.id, parent.c.code.label("parent_code")).outerjoin(parent, t.c.parent_id == parent.c.id)
        self.by_key = _rows_by(self.conn, stmt.where(t.c.code.in_([r["code"] for r in recs])), "code")
        wanted = {r["parent_code"] for r in recs if r["parent_code"]} - self.known.keys() - self.by_key.keys()
        if wanted:
            info = [t.c.code, *(t.c[c] for c in self._parent_info)]
            for r in self.conn.execute(select(*info).where(t.c.code.in_(wanted))):
                self.known[r.code] = dict(r._mapping)

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_key.get(rec["code"])

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        code, parent_code, level = rec["code"], rec["parent_code"], rec["level"]
        params = self.base(ex)
        parent = None
        if parent_code:
            parent = self.known.get(parent_code) or self.by_key.get(parent_code)
            if parent is None:
                raise RowFault(f"上级地址编码不存在：{parent_code}（上级须已导入或在本文件前面的行中）")
            if not code.startswith(parent_code) or code == parent_code:
                raise RowFault(f"地址编码{code}须以上级地址编码{parent_code}开头")
            if _LEVEL_RANK[level] <= _LEVEL_RANK[parent["level"]]:
                raise RowFault(f"层级{vocab.label(vocab.ADDRESS_LEVELS, level)}不能在"
                               f"{vocab.label(vocab.ADDRESS_LEVELS, parent['level'])}之下")
            community = parent["community_code"]
            if rec["community_code"] and rec["community_code"] != community:
                raise RowFault(f"社区编码{rec['community_code']}与上级地址的社区{community}不一致")
            region = self.regions[community]
            full = rec["full_name"] or parent["full_name"] + rec["name"]
            inherit = parent
        else:
            if level != "community":
                raise RowFault("缺少上级地址编码（只有小区/村级地址可以没有上级）")
            community = rec["community_code"] or (ex["community_code"] if ex else None)
            if not community:
                raise RowFault("缺少必填项：社区编码（顶层地址须填写）")
            region = self.regions.get(community)
            if region is None:
                raise RowFault(f"社区编码不存在：{community}（请先导入区划）")
            if region.level != "community":
                raise RowFault(f"社区编码{community}不是社区/村级区划")
            if not code.startswith(community):
                raise RowFault(f"地址编码{code}须以社区编码{community}开头")
            full = rec["full_name"] or (region.full_name if rec["name"] == region.name
                                        else region.full_name + rec["name"])
            inherit = None
        county = community[:6]
        if self.county and (county != self.county or (ex is not None and ex["county_code"] != self.county)):
            raise _scope_fault(f"地址{code}")
        params.update(code=code, parent_code=parent_code, level=level, name=rec["name"], full_name=full,
                      county_code=county, town_code=region.parent_code or community[:9] + "000",
                      community_code=community)
        if "police_area_code" in rec or ex is None:
            area = rec.get("police_area_code")
            if area:
                found = self.areas.get(area)
                if found is None:
                    raise RowFault(f"警务区编码不存在：{area}")
                if found[1] != county:
                    raise RowFault(f"警务区{area}不属于该地址所在县（市、区）")
                params["police_area_id"] = found[0]
            else:
                params["police_area_id"] = inherit["police_area_id"] if inherit else None
        if "grid_code" in rec or ex is None:
            grid = rec.get("grid_code")
            if grid:
                found = self.grids.get(grid)
                if found is None:
                    raise RowFault(f"网格编码不存在：{grid}")
                if found[1] != community:
                    raise RowFault(f"网格{grid}不属于社区{community}")
                params["grid_id"] = found[0]
            else:
                params["grid_id"] = inherit["grid_id"] if inherit else None
        for fld in ("lon", "lat"):
            if fld in rec or ex is None:
                v = rec.get(fld)
                params[fld] = v if v is not None else (inherit[fld] if inherit else None)
        for fld in ("plate_installed", "plate_accurate", "plate_labelled"):
            if fld in rec:
                params[fld] = rec[fld]
        if level != "room":
            self.known[code] = {c: params[c] for c in self._parent_info}
        return params

    def defaults(self) -> dict[str, Any]:
        return {"plate_installed": False, "plate_accurate": False, "plate_labelled": False}


class _AddressUser(_Kind):
    """Kinds that reference an address by code: the code -> id lookup is loaded once per import."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.addresses: dict[str, int] = {}
        self.in_county: set[int] | None = None
        if not self.load:
            return
        t = Address.__table__
        self.addresses = {code: aid for code, aid in self.conn.execute(select(t.c.code, t.c.id))}
        self.in_county: set[int] | None = None
        if self.county:
            self.in_county = set(self.conn.scalars(select(t.c.id).where(t.c.county_code == self.county)))


class _Persons(_AddressUser):
    kind = "persons"
    table = Person.__table__
    key = "id_number"
    conflict = probe = "id_number_hash"  # id_number is stored encrypted (anfang.security.crypto); its hash is unique
    write_cols = ("id_number", "id_number_hash", "name", "gender", "birth_date", "phone", "phone_hash",
                  "hukou_address", "population_type", "labels", "address_id", "verification", "verified_by",
                  "verified_at", "updated_at")
    always = ("name", "gender", "birth_date", "updated_at")
    optional = {"phone": ("phone", "phone_hash"), "hukou_address": ("hukou_address",),
                "population_type": ("population_type",), "labels": ("labels",),
                "address_code": ("address_id",), "verification": ("verification",)}
    verified = True
    speculative = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        get = self.present.get
        self.i_id, self.i_name, self.i_gender, self.i_birth = get("id_number"), get("name"), get("gender"), \
            get("birth_date")
        self.i_phone, self.i_hukou, self.i_ptype, self.i_labels = get("phone"), get("hukou_address"), \
            get("population_type"), get("labels")
        self.i_addr, self.i_ver, self.i_rid = get("address_code"), get("verification"), get("record_id")
        self.today = date.today()
        self.fresh = {**self.defaults(), "updated_at": self.now}  # parameters of a new person before its row
        self.by_key: dict[str, dict[str, Any]] = {}
        self.by_id: dict[int, dict[str, Any]] = {}
        ring = crypto.keyring()
        self.blind = ring.blind  # keyed hashes of the encrypted ID number and phone
        self.blind_id, self.blind_phone = ring.blinder("id_number"), ring.blinder("phone")

    def stored_keys(self, conn: Connection, keys: list[Any]) -> list[Any]:
        by_hash = {self.blind(k, "id_number"): k for k in keys}
        return [by_hash[h] for h in _stored_keys(conn, self.table.name, "id_number_hash", list(by_hash))]

    def parse(self, cells: list[str]) -> dict[str, Any]:
        # The hot path of a 2.5-million-row import: plain locals, no per-column indirection.
        bad: list[str] = []
        raw_id = cells[self.i_id].strip()
        info = None
        rec: dict[str, Any] = {}
        if "*" in raw_id:
            rid = cells[self.i_rid].strip() if self.i_rid is not None else ""
            if not rid.isdigit():
                bad.append("身份证号为脱敏值，无法导入：请填写完整身份证号，或保留导出文件中的系统编号")
            else:
                rec["record_id"] = int(rid)
            rec["id_number"] = _Masked(raw_id)
        elif not raw_id:
            bad.append("缺少必填项：身份证号")
        else:
            try:
                info = ids.parse_id_number(raw_id, today=self.today)
                rec["id_number"] = info.number
                rec["id_number_hash"] = self.blind_id(info.number)
                rec["gender"] = info.gender
                rec["birth_date"] = info.birth_date
            except ValidationError as e:
                bad.append(e.message)
        name = cells[self.i_name].strip()
        if not name:
            bad.append("缺少必填项：姓名")
        elif len(name) > 64:
            bad.append("姓名超过64字")
        rec["name"] = name
        i = self.i_gender
        if i is not None and (v := cells[i].strip()):
            g = _GENDERS.get(v) or _GENDERS.get(v.lower())
            if g is None:
                bad.append(f"性别取值无效：{v}（可选：男、女）")
            elif info is not None and g != info.gender:
                bad.append(f"性别与身份证号不符：身份证号表示{'男' if info.gender == 'M' else '女'}")
            rec["gender_given"] = g
        i = self.i_birth
        if i is not None and (v := cells[i].strip()) and (info is None or v != info.birth_date.isoformat()):
            try:
                b = _parse_date(v, "出生日期")
                if info is not None and b != info.birth_date:
                    bad.append(f"出生日期与身份证号不符：身份证号为{info.birth_date.isoformat()}")
                rec["birth_given"] = b
            except RowFault as e:
                bad.append(e.reason)
        i = self.i_phone
        if i is not None:
            try:
                phone = rec["phone"] = _phone(cells[i], "手机号")
                rec["phone_hash"] = self.blind_phone(crypto.normalise_phone(phone)) \
                    if phone and not isinstance(phone, _Masked) else None
            except RowFault as e:
                bad.append(e.reason)
        i = self.i_hukou
        if i is not None:
            v = cells[i].strip()
            if len(v) > 200:
                bad.append("户籍地址超过200字")
            rec["hukou_address"] = v or None
        i = self.i_ptype
        if i is not None:
            v = cells[i].strip()
            if v:
                key = _POPULATION.get(v) or _POPULATION.get(v.lower())
                if key is None:
                    bad.append(f"人口类型取值无效：{v}（可选：户籍人口、流动人口、境外人员）")
                rec["population_type"] = key
            else:
                rec["population_type"] = "registered"
        i = self.i_labels
        if i is not None:
            v = cells[i].strip()
            labels: list[str] = []
            if v:
                for part in _LABEL_SPLIT.split(v):
                    if not part:
                        continue
                    key = _LABELS.get(part) or _LABELS.get(part.lower())
                    if key is None:
                        bad.append(f"管理类别取值无效：{part}（可选：{_LABEL_CHOICES}）")
                    elif key not in labels:
                        labels.append(key)
                labels.sort(key=_LABEL_ORDER.__getitem__)
            rec["labels"] = labels
        i = self.i_addr
        if i is not None:
            v = cells[i].strip()
            if v:
                aid = self.addresses.get(v)
                if aid is None:
                    bad.append(f"现住址编码不存在：{v}")
                elif self.in_county is not None and aid not in self.in_county:
                    bad.append(f"超出辖区：现住址{v}不在您管辖的县（市、区）内 / outside your jurisdiction")
                rec["address_id"] = aid
            else:
                if self.in_county is not None:
                    bad.append("超出辖区：县级管理员导入的人员须填写本县的现住址编码")
                rec["address_id"] = None
        i = self.i_ver
        if i is not None:
            v = cells[i].strip()
            if v:
                key = _VERIFICATION.get(v) or _VERIFICATION.get(v.lower())
                if key is None:
                    bad.append(f"核实状态取值无效：{v}（可选：未核实、已核实、有疑问）")
                rec["verification"] = key
            else:
                rec["verification"] = "unverified"
        if bad:
            raise RowFault("；".join(bad))
        return rec

    def dedupe_key(self, rec: dict[str, Any]) -> Any:
        idn = rec["id_number"]
        # an int of the first 17 digits (the 18th is their check character): half the memory of the string
        return ("rid", rec["record_id"]) if isinstance(idn, _Masked) else int(idn[:17])

    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        t, a = self.table, Address.__table__
        stmt = select(*[t.c[c] for c in self.write_cols], t.c.id, a.c.county_code.label("_county")) \
            .outerjoin(a, t.c.address_id == a.c.id)
        keys = [r["id_number"] for r in recs if not isinstance(r["id_number"], _Masked)]
        rids = [r["record_id"] for r in recs if isinstance(r["id_number"], _Masked)]
        if keys:  # probe the unique index first (no row decoding); load whole rows only for the ones stored
            keys = self.stored_keys(self.conn, keys)
        hashes = [self.blind(k, "id_number") for k in keys]
        self.by_key = _rows_by(self.conn, stmt.where(t.c.id_number_hash.in_(hashes)), "id_number") if keys else {}
        self.by_id = _rows_by(self.conn, stmt.where(t.c.id.in_(rids)), "id") if rids else {}

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        idn = rec["id_number"]
        if not isinstance(idn, _Masked):
            return self.by_key.get(idn)
        ex = self.by_id.get(rec["record_id"])
        if ex is None:
            raise RowFault(f"系统编号不存在：{rec['record_id']}（身份证号为脱敏值时须保留导出的系统编号）")
        if mask_id_number(ex["id_number"]) != idn:
            raise RowFault(f"系统编号{rec['record_id']}与身份证号{idn}不符")
        return ex

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        if ex is None and not isinstance(rec["id_number"], _Masked):  # a new person: the common case, kept short
            params = self.fresh | rec
            if isinstance(params["phone"], _Masked):
                raise RowFault(f"手机号为脱敏值（{params['phone']}），无法导入；请填写完整的手机号")
            if self.has_verification and params["verification"] != "unverified":
                params["verified_by"], params["verified_at"] = self.principal.username, self.now
            return params
        if isinstance(rec["id_number"], _Masked):
            assert ex is not None  # existing() raised otherwise
            key = int(ex["id_number"][:17])
            first = self.seen.get(key)
            if first is not None:
                raise RowFault(f"文件内重复：与第{first}行为同一人员，本行未导入 / duplicate of row {first}")
            info = ids.parse_id_number(ex["id_number"])
            if rec.get("gender_given", info.gender) != info.gender:
                raise RowFault(f"性别与身份证号不符：身份证号表示{'男' if info.gender == 'M' else '女'}")
            if rec.get("birth_given", info.birth_date) != info.birth_date:
                raise RowFault(f"出生日期与身份证号不符：身份证号为{info.birth_date.isoformat()}")
            rec["id_number"], rec["gender"], rec["birth_date"] = info.number, info.gender, info.birth_date
            rec["id_number_hash"] = self.blind(info.number, "id_number")
        if self.county and ex is not None and ex["_county"] != self.county:
            raise RowFault("超出辖区：该人员现登记的住址不在您管辖的县（市、区）内 / outside your jurisdiction")
        params = self.base(ex)
        params.update(rec)  # rec holds table columns plus a few private keys, which the writer ignores
        phone = rec.get("phone")
        if phone is not None and isinstance(phone, _Masked):
            params["phone"] = _resolve_mask(phone, ex and ex["phone"], "phone", "手机号")
        phone = params.get("phone")
        params["phone_hash"] = self.blind(crypto.normalise_phone(phone), "phone") if phone else None
        if self.has_verification:
            self.verification(params, rec, ex)
        return params

    def defaults(self) -> dict[str, Any]:
        return {"phone": None, "phone_hash": None, "hukou_address": None, "population_type": "registered", "labels": [],
                "address_id": None, "verification": "unverified", "verified_by": None, "verified_at": None}


class _Owned(_AddressUser):
    """Houses and vehicles: an optional owner given by identity number, looked up per batch."""

    def parse_owner(self, cells: list[str], rec: dict[str, Any], bad: list[str], what: str) -> None:
        v = self.cell(cells, "owner_id_number")
        if v is None:
            return
        if not v:
            rec["owner_id_number"] = None
        elif "*" in v:
            rec["owner_id_number"] = _Masked(v)
        else:
            try:
                rec["owner_id_number"] = _id_number(v, what)
            except RowFault as e:
                bad.append(e.reason)

    def prefetch_owners(self, recs: list[dict[str, Any]]) -> None:
        wanted = [r["owner_id_number"] for r in recs
                  if r.get("owner_id_number") and not isinstance(r["owner_id_number"], _Masked)]
        p, a = Person.__table__, Address.__table__
        stmt = select(p.c.id, p.c.id_number, p.c.name, p.c.address_id, a.c.county_code.label("_county")) \
            .outerjoin(a, p.c.address_id == a.c.id)
        blind = crypto.keyring().blind
        self.owners = _rows_by(self.conn, stmt.where(p.c.id_number_hash.in_([blind(w, "id_number") for w in wanted])),
                               "id_number") if wanted else {}

    def owner(self, rec: dict[str, Any], ex: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
        """The owner person row for rec (None: no owner), or the stored owner when the cell is masked."""
        idn = rec["owner_id_number"]
        if idn is None:
            return None
        if isinstance(idn, _Masked):
            stored = ex["_owner_id_number"] if ex else None
            _resolve_mask(idn, stored, "id_number", what)
            return {"id": ex["owner_person_id"], "name": ex["_owner_name"], "address_id": ex["_owner_address_id"],
                    "_county": ex["_owner_county"]}
        found = self.owners.get(idn)
        if found is None:
            raise RowFault(f"{what}未登记：{idn}（请先导入该人员）")
        return found


class _Houses(_Owned):
    kind = "houses"
    table = House.__table__
    key = "address_id"
    write_cols = ("address_id", "use", "owner_person_id", "owner_name", "owner_phone", "area_m2", "verification",
                  "verified_by", "verified_at", "updated_at")
    always = ("updated_at",)
    optional = {"use": ("use",), "owner_id_number": ("owner_person_id",), "owner_name": ("owner_name",),
                "owner_phone": ("owner_phone",), "area_m2": ("area_m2",), "verification": ("verification",)}
    verified = True

    def parse(self, cells: list[str]) -> dict[str, Any]:
        bad: list[str] = []
        rec: dict[str, Any] = {}
        code = self.cell(cells, "address_code") or ""
        if not code:
            bad.append("缺少必填项：地址编码")
        else:
            aid = self.addresses.get(code)
            if aid is None:
                bad.append(f"地址编码不存在：{code}")
            elif self.in_county is not None and aid not in self.in_county:
                bad.append(_scope_fault(f"地址{code}").reason)
            rec["address_id"] = aid
        rec["address_code"] = code
        v = self.cell(cells, "use")
        if v is not None:
            try:
                rec["use"] = _enum(v, _HOUSE_USES, vocab.HOUSE_USES, "房屋用途") if v else "self_occupied"
            except RowFault as e:
                bad.append(e.reason)
        self.parse_owner(cells, rec, bad, "产权人身份证号")
        v = self.cell(cells, "owner_name")
        if v is not None:
            if len(v) > 64:
                bad.append("产权人姓名超过64字")
            rec["owner_name"] = v or None
        v = self.cell(cells, "owner_phone")
        if v is not None:
            try:
                rec["owner_phone"] = _phone(v, "产权人电话")
            except RowFault as e:
                bad.append(e.reason)
        v = self.cell(cells, "area_m2")
        if v is not None:
            try:
                rec["area_m2"] = _parse_float(v, "建筑面积", 0.0, 1e6) if v else None
            except RowFault as e:
                bad.append(e.reason)
        _parse_verification(self, cells, rec, bad)
        if bad:
            raise RowFault("；".join(bad))
        return rec

    def dedupe_key(self, rec: dict[str, Any]) -> Any:
        return rec["address_code"]

    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        self.prefetch_owners(recs)
        h, p, a = self.table, Person.__table__, Address.__table__
        stmt = (select(*[h.c[c] for c in self.write_cols], h.c.id, p.c.id_number.label("_owner_id_number"),
                       p.c.name.label("_owner_name"), p.c.address_id.label("_owner_address_id"),
                       a.c.county_code.label("_owner_county"))
                .outerjoin(p, h.c.owner_person_id == p.c.id).outerjoin(a, p.c.address_id == a.c.id)
                .where(h.c.address_id.in_([r["address_id"] for r in recs])))
        self.by_key = _rows_by(self.conn, stmt, "address_id")

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_key.get(rec["address_id"])

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        params = self.base(ex)
        params["address_id"] = rec["address_id"]
        for c in ("use", "area_m2"):
            if c in rec:
                params[c] = rec[c]
        if "owner_id_number" in rec:
            owner = self.owner(rec, ex, "产权人身份证号")
            params["owner_person_id"] = owner["id"] if owner else None
            if owner and not rec.get("owner_name"):
                rec["owner_name"] = owner["name"]
        if "owner_name" in rec:
            params["owner_name"] = rec["owner_name"]
        if "owner_phone" in rec:
            v = rec["owner_phone"]
            params["owner_phone"] = _resolve_mask(v, ex and ex["owner_phone"], "owner_phone", "产权人电话") \
                if isinstance(v, _Masked) else v
        self.verification(params, rec, ex)
        return params

    def defaults(self) -> dict[str, Any]:
        return {"use": "self_occupied", "owner_person_id": None, "owner_name": None, "owner_phone": None,
                "area_m2": None, "verification": "unverified", "verified_by": None, "verified_at": None}


def _parse_verification(kind: _Kind, cells: list[str], rec: dict[str, Any], bad: list[str]) -> None:
    v = kind.cell(cells, "verification")
    if v is None:
        return
    try:
        rec["verification"] = _enum(v, _VERIFICATION, vocab.VERIFICATION, "核实状态") if v else "unverified"
    except RowFault as e:
        bad.append(e.reason)


class _Units(_AddressUser):
    kind = "units"
    table = WorkUnit.__table__
    key = "credit_code"
    write_cols = ("credit_code", "name", "kind", "address_id", "legal_person", "phone", "staff_count",
                  "verification", "verified_by", "verified_at", "updated_at")
    always = ("name", "address_id", "updated_at")
    optional = {"kind": ("kind",), "legal_person": ("legal_person",), "phone": ("phone",),
                "staff_count": ("staff_count",), "verification": ("verification",)}
    verified = True

    def parse(self, cells: list[str]) -> dict[str, Any]:
        bad: list[str] = []
        rec: dict[str, Any] = {}
        code = self.cell(cells, "credit_code") or ""
        if not code:
            bad.append("缺少必填项：统一社会信用代码")
        else:
            try:
                rec["credit_code"] = ids.validate_credit_code(code)
            except ValidationError as e:
                bad.append(e.message)
        name = self.cell(cells, "name") or ""
        if not name:
            bad.append("缺少必填项：单位名称")
        elif len(name) > 128:
            bad.append("单位名称超过128字")
        rec["name"] = name
        addr = self.cell(cells, "address_code") or ""
        if not addr:
            bad.append("缺少必填项：地址编码")
        else:
            aid = self.addresses.get(addr)
            if aid is None:
                bad.append(f"地址编码不存在：{addr}")
            elif self.in_county is not None and aid not in self.in_county:
                bad.append(_scope_fault(f"地址{addr}").reason)
            rec["address_id"] = aid
        for fld, what, limit in (("kind", "单位类型", 32), ("legal_person", "法定代表人", 64)):
            v = self.cell(cells, fld)
            if v is not None:
                try:
                    rec[fld] = _text(v, what, limit)
                except RowFault as e:
                    bad.append(e.reason)
        v = self.cell(cells, "phone")
        if v is not None:
            try:
                rec["phone"] = _phone(v, "联系电话", landline=True)
            except RowFault as e:
                bad.append(e.reason)
        v = self.cell(cells, "staff_count")
        if v is not None:
            if not v:
                rec["staff_count"] = 0
            elif v.isdigit():
                rec["staff_count"] = int(v)
            else:
                bad.append(f"从业人数应为不小于0的整数：{v}")
        _parse_verification(self, cells, rec, bad)
        if bad:
            raise RowFault("；".join(bad))
        return rec

    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        u, a = self.table, Address.__table__
        stmt = (select(*[u.c[c] for c in self.write_cols], u.c.id, a.c.county_code.label("_county"))
                .join(a, u.c.address_id == a.c.id).where(u.c.credit_code.in_([r["credit_code"] for r in recs])))
        self.by_key = _rows_by(self.conn, stmt, "credit_code")

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_key.get(rec["credit_code"])

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        if self.county and ex is not None and ex["_county"] != self.county:
            raise RowFault("超出辖区：该单位现登记的地址不在您管辖的县（市、区）内 / outside your jurisdiction")
        params = self.base(ex)
        for c in ("credit_code", "name", "address_id", "kind", "legal_person", "staff_count"):
            if c in rec:
                params[c] = rec[c]
        if "phone" in rec:
            v = rec["phone"]
            params["phone"] = _resolve_mask(v, ex and ex["phone"], "phone", "联系电话") \
                if isinstance(v, _Masked) else v
        self.verification(params, rec, ex)
        return params

    def defaults(self) -> dict[str, Any]:
        return {"kind": None, "legal_person": None, "phone": None, "staff_count": 0, "verification": "unverified",
                "verified_by": None, "verified_at": None}


class _Vehicles(_Owned):
    kind = "vehicles"
    table = Vehicle.__table__
    key = "plate"
    write_cols = ("plate", "plate_color", "brand", "color", "owner_person_id", "address_id", "updated_at")
    always = ("updated_at",)
    optional = {"plate_color": ("plate_color",), "brand": ("brand",), "color": ("color",),
                "owner_id_number": ("owner_person_id", "address_id")}

    def __init__(self, *args: Any, **kw: Any) -> None:
        _Kind.__init__(self, *args, **kw)  # no address codes in a vehicle file: skip loading them
        self.in_county = None

    def parse(self, cells: list[str]) -> dict[str, Any]:
        bad: list[str] = []
        rec: dict[str, Any] = {}
        plate = self.cell(cells, "plate") or ""
        if not plate:
            bad.append("缺少必填项：车牌号")
        else:
            try:
                rec["plate"] = ids.validate_plate(plate)
            except ValidationError as e:
                bad.append(e.message)
        v = self.cell(cells, "plate_color")
        if v is not None:
            try:
                if v:
                    rec["plate_color"] = _enum(v, _PLATE_COLORS, vocab.PLATE_COLORS, "号牌颜色")
                else:
                    rec["plate_color"] = "green" if len(rec.get("plate", "")) == 8 else "blue"
            except RowFault as e:
                bad.append(e.reason)
        for fld, what, limit in (("brand", "品牌", 32), ("color", "车身颜色", 16)):
            v = self.cell(cells, fld)
            if v is not None:
                try:
                    rec[fld] = _text(v, what, limit)
                except RowFault as e:
                    bad.append(e.reason)
        self.parse_owner(cells, rec, bad, "车主身份证号")
        if self.county and not rec.get("owner_id_number") and not bad:
            bad.append("超出辖区：县级管理员导入的车辆须填写本县的车主身份证号")
        if bad:
            raise RowFault("；".join(bad))
        return rec

    def prefetch(self, recs: list[dict[str, Any]]) -> None:
        self.prefetch_owners(recs)
        v, p, a, pa = self.table, Person.__table__, Address.__table__, Address.__table__.alias("owner_address")
        stmt = (select(*[v.c[c] for c in self.write_cols], v.c.id, a.c.county_code.label("_county"),
                       p.c.id_number.label("_owner_id_number"), p.c.name.label("_owner_name"),
                       p.c.address_id.label("_owner_address_id"), pa.c.county_code.label("_owner_county"))
                .outerjoin(a, v.c.address_id == a.c.id).outerjoin(p, v.c.owner_person_id == p.c.id)
                .outerjoin(pa, p.c.address_id == pa.c.id).where(v.c.plate.in_([r["plate"] for r in recs])))
        self.by_key = _rows_by(self.conn, stmt, "plate")

    def existing(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_key.get(rec["plate"])

    def resolve(self, rec: dict[str, Any], ex: dict[str, Any] | None) -> dict[str, Any]:
        if self.county and ex is not None and ex["_county"] != self.county:
            raise RowFault("超出辖区：该车辆现登记的地址不在您管辖的县（市、区）内 / outside your jurisdiction")
        params = self.base(ex)
        for c in ("plate", "plate_color", "brand", "color"):
            if c in rec:
                params[c] = rec[c]
        if "owner_id_number" in rec:
            owner = self.owner(rec, ex, "车主身份证号")
            if self.county and (owner is None or owner["_county"] != self.county):
                raise RowFault("超出辖区：车主现住址不在您管辖的县（市、区）内 / outside your jurisdiction")
            params["owner_person_id"] = owner["id"] if owner else None
            params["address_id"] = owner["address_id"] if owner else None
        return params

    def defaults(self) -> dict[str, Any]:
        return {"plate_color": "blue", "brand": None, "color": None, "owner_person_id": None, "address_id": None}


_KIND_CLASSES: dict[str, type[_Kind]] = {"regions": _Regions, "addresses": _Addresses, "persons": _Persons,
                                         "houses": _Houses, "units": _Units, "vehicles": _Vehicles}


# ---- writing -----------------------------------------------------------------------------------------------------
class _Writer:
    """Upserts batches, statements built with SQLAlchemy Core; split in two halves so that the first can run in
    the parsing process.

    prepare(): parameter dicts -> the driver's form (pure Python, no database).
    send(): SQLite runs the compiled INSERT ... ON CONFLICT DO UPDATE with executemany over plain tuples
    (SQLAlchemy's per-row parameter processing costs more than the insert itself); PostgreSQL COPYs into a
    temporary staging table, then runs INSERT ... SELECT ... ON CONFLICT DO UPDATE.

    Addresses carry parent_code instead of parent_id; the statement looks the id up by code. On PostgreSQL a
    statement does not see its own rows, so a batch is inserted level by level, parents first.
    """

    def __init__(self, conn: Connection, k: _Kind) -> None:
        self.conn, self.k = conn, k
        self.outbox: Outbox | None = None
        self.outbox_key, self.outbox_index = "", -1
        self.dialect = conn.dialect.name
        table = k.table
        cols = k.write_cols
        parent = table.alias("parent")
        by_code = "parent_code" in cols and "parent_code" not in table.c  # addresses: parent given by code

        def pseudo(c: str) -> bool:
            return by_code and c == "parent_code"

        def parent_id(code: Any) -> Any:
            return select(parent.c.id).where(parent.c.code == code).scalar_subquery()

        def target(c: str) -> str:
            return "parent_id" if pseudo(c) else c

        def col_type(c: str) -> Any:
            return table.c.code.type if pseudo(c) else table.c[c].type

        set_cols = [target(c) for c in k.set_cols]
        self.levels: list[str] = []
        if self.dialect == "postgresql":
            self.stage = f"_anfang_import_{table.name}"
            stage = Table(self.stage, MetaData(), *[SAColumn(c, col_type(c)) for c in cols])
            values = [parent_id(stage.c[c]).label("parent_id") if pseudo(c) else stage.c[c] for c in cols]
            sel = select(*values)
            if by_code:
                self.levels = list(vocab.ADDRESS_LEVELS)
                sel = sel.where(stage.c.level == bindparam("level"))
            stmt = pg_insert(table).from_select([target(c) for c in cols], sel)
            self.stage_types = {c: col_type(c) for c in cols}
            json_cols = {c for c in cols if isinstance(col_type(c), JSON)}
            # COPY takes the values as they are: JSON as text, encrypted columns through their bind processor
            self.plan = [(c, _json_text if c in json_cols else
                          _driver_form(col_type(c), conn.dialect) if getattr(col_type(c), "encrypted", False)
                          else None) for c in cols]
        elif self.dialect == "sqlite":
            stmt = sqlite_insert(table).values({target(c): parent_id(bindparam(c)) if pseudo(c) else bindparam(c)
                                                for c in cols})
        else:  # pragma: no cover - only the two supported backends
            raise ValidationError(f"不支持的数据库：{self.dialect}")
        self.stmt = stmt.on_conflict_do_update(index_elements=[k.conflict or k.key],
                                               set_={c: stmt.excluded[c] for c in set_cols})
        if self.dialect == "sqlite":
            compiled = self.stmt.compile(dialect=conn.dialect)
            order = tuple(compiled.positiontup or ())
            if sorted(order) != sorted(cols):  # pragma: no cover - a column default crept in
                raise AssertionError(f"unexpected parameters {order}")
            self.sql = compiled.string
            self.plan = [(c, _driver_form(col_type(c), conn.dialect)) for c in order]

    def prepare(self, rows: list[dict[str, Any]]) -> list[tuple]:
        get = operator.itemgetter(*[c for c, _ in self.plan])
        convert = [(i, f) for i, (_, f) in enumerate(self.plan) if f is not None]
        if not convert:
            return [get(r) for r in rows]
        out = []
        for r in rows:
            v = list(get(r))
            for i, f in convert:
                v[i] = f(v[i])
            out.append(tuple(v))
        return out

    def with_outbox(self, outbox: Outbox | None) -> None:
        """Write the federation outbox rows of every batch sent (docs/federation.md): the outbox of a node with a
        parent, and a kind whose table travels up; otherwise (a standalone node, regions) nothing is done."""
        if outbox is None or not outbox.parents or self.k.table.name not in TRACKED:
            return
        self.outbox = outbox
        self.outbox_key = self.k.conflict or self.k.key  # unique column of the upsert, in the driver's form as is
        self.outbox_index = [c for c, _ in self.plan].index(self.outbox_key)

    def send(self, payload: list[tuple]) -> None:
        if not payload:
            return
        self._send(payload)
        if self.outbox is not None:  # the records just written, read back in this transaction
            i = self.outbox_index
            self.outbox.write_records(self.conn, self.k.table, self.outbox_key, [r[i] for r in payload])

    def _send(self, payload: list[tuple]) -> None:
        if self.dialect == "sqlite":
            self.conn.exec_driver_sql(self.sql, payload)
            return
        names = ", ".join(f'"{c}"' for c in self.k.write_cols)
        types = ", ".join(f'"{c}" {t.compile(dialect=self.conn.dialect)}' for c, t in self.stage_types.items())
        # ON COMMIT DELETE ROWS: each transaction leaves the staging table empty; TRUNCATE between batches
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({types}) ON COMMIT DELETE ROWS")
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {self.stage} ({names}) FROM STDIN") as cp:
            for r in payload:
                cp.write_row(r)
        if self.levels:
            for level in self.levels:
                self.conn.execute(self.stmt, {"level": level})
        else:
            self.conn.execute(self.stmt)
        self.conn.exec_driver_sql(f"TRUNCATE {self.stage}")

    def close(self) -> None:
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.stage}")
            self.conn.commit()


def _json_text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _driver_form(typ: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The function turning a Python value into what the DBAPI driver receives (None: as is), i.e. SQLAlchemy's
    bind processor of the type, with a fast path for dates and memoisation for values that repeat (timestamps,
    label lists)."""
    proc = typ.dialect_impl(dialect).bind_processor(dialect)
    if proc is None:
        return None
    if getattr(typ, "encrypted", False):  # a fresh nonce per value: never memoised
        return typ.bulk_encryptor() if hasattr(typ, "bulk_encryptor") else proc
    if isinstance(typ, Date):
        sample = date(1901, 2, 3)
        if proc(sample) == sample.isoformat():
            return _iso_or_none
    cache: dict[Any, Any] = {}

    def memo(v: Any) -> Any:
        if v is None:
            return None
        key = tuple(v) if isinstance(v, list) else v
        try:
            return cache[key]
        except KeyError:
            if len(cache) > 10_000:
                cache.clear()
            out = cache[key] = proc(v)
            return out
        except TypeError:  # unhashable
            return proc(v)

    return memo


def _iso_or_none(v: date | None) -> str | None:
    return None if v is None else v.isoformat()


# ---- the import --------------------------------------------------------------------------------------------------
def _map_header(kind: str, header: list[str]) -> tuple[dict[str, int], list[str]]:
    index = header_index(kind)
    present: dict[str, int] = {}
    ignored: list[str] = []
    for i, h in enumerate(header):
        norm = normalize_header(h)
        if not norm:
            continue
        col = index.get(norm)
        if col is None:
            if norm not in ("行号", "错误原因", "row", "reason", "序号", "no"):
                ignored.append(h)
            continue
        if col.field in present:
            raise ValidationError(f"列重复：{h}（与第{present[col.field] + 1}列同为{col.zh}） / duplicate column")
        present[col.field] = i
    missing: list[Column] = [c for c in COLUMNS[kind] if (c.required or c.header_required) and c.field not in present]
    if missing:
        names = "、".join(f"{c.zh}（{c.field}）" for c in missing)
        raise ValidationError(f"缺少必需的列：{names} / missing required column(s)",
                              detail={"missing": [c.field for c in missing]})
    return present, ignored


# Kinds whose rows are read and checked in a second process while this one resolves and writes them (regions are
# few and stay in process).
_PARALLEL_KINDS = frozenset({"addresses", "persons", "houses", "units", "vehicles"})
PARALLEL_MIN_ROWS = 50_000  # below this, starting processes costs more than it saves
PARSERS = 2  # parsing processes (each reads the whole file and parses every other chunk)
SQLITE_IMPORT_CACHE_KIB = 1_048_576  # page cache of the importing connection (grown only as pages are used)
SQLITE_IMPORT_CHECKPOINT_PAGES = 65_536  # WAL checkpoint after ~256 MB instead of 4 MB while importing
COMMIT_ROWS = 100_000  # rows written per transaction (SQLite writes each dirty page to the WAL once per commit)


@dataclass
class _Batch:
    """What the writer sends: rows in the driver's form, their counts and the bad rows."""

    payload: list[tuple]
    count: int  # non-blank rows of the chunk
    inserted: int
    updated: int
    unchanged: int
    errors: list[RowError]


def import_file(store: Store, kind: str, path: Path, principal: Principal,
                progress: Progress | None = None, batch_size: int = 5000, *,
                parallel: bool | None = None) -> ImportReport:
    """Import one CSV / XLSX file of kind ("regions", "addresses", "houses", "persons", "units", "vehicles").

    Raises Forbidden for roles outside BULK, ValidationError for a file that cannot be imported at all (unknown
    kind, unreadable file, missing required column); every problem with a single row is in report.errors.
    progress(rows_done, rows_expected) is called after each batch (rows_expected is estimated from the file
    until the end). batch_size: rows per executemany / COPY and per database pre-select. parallel: read and
    check rows in PARSERS separate processes (None: when the file has PARALLEL_MIN_ROWS rows or more; never for
    regions or an in-memory database).
    """
    if kind not in _KIND_CLASSES:
        raise ValidationError(f"未知的数据类别：{kind}（可选：{'、'.join(KINDS)}）")
    if principal.role not in BULK:
        raise Forbidden(f"当前角色无权批量导入 / role {principal.role.value} may not bulk import")
    if principal.role is Role.county_admin and not principal.county_code:
        raise Forbidden("县级管理员未指定所辖县（市、区） / county admin without a county")
    path = Path(path)
    started = time.perf_counter()
    src = read_rows(path)
    report = ImportReport(kind=kind, total=0, inserted=0, updated=0, unchanged=0, errors=[], seconds=0.0,
                          file=path.name, headers=src.header)
    aborted: str | None = None
    try:
        present, report.ignored_columns = _map_header(kind, src.header)
        width = len(src.header)
        if parallel is None:
            parallel = src.estimated_rows >= PARALLEL_MIN_ROWS
        memory_db = store.engine.url.get_backend_name() == "sqlite" and store.engine.url.database in (
            None, "", ":memory:")
        parallel = parallel and kind in _PARALLEL_KINDS and not memory_db
        now = utcnow()
        with store.engine.connect() as conn:
            restore = _tune_connection(conn)
            k = _KIND_CLASSES[kind](conn, principal, present, now, load=not parallel)
            writer = _Writer(conn, k)
            writer.with_outbox(getattr(store, "outbox", None))  # set by the federation when the node has a parent
            try:
                if parallel:
                    src.close()
                    parsed = _from_children(store.url, kind, path, principal, present, now, width, batch_size,
                                            PARSERS)
                else:
                    parsed = _parse_rows(k, writer, src, width, batch_size, probe=conn)
                batches = _resolve_batches(k, writer, src.header, parsed)
                _consume(conn, k, writer, batches, report, progress, src.estimated_rows)
            finally:
                if conn.in_transaction():
                    conn.rollback()
                writer.close()
                restore()
    except BaseException as exc:
        aborted = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        src.close()
        report.seconds = time.perf_counter() - started
        if aborted is None or report.inserted or report.updated:
            detail = {"file": path.name, "total": report.total, "inserted": report.inserted,
                      "updated": report.updated, "unchanged": report.unchanged, "errors": len(report.errors),
                      "seconds": round(report.seconds, 2)}
            if aborted:
                detail["aborted"] = aborted[:200]
            audit.record(store, principal, "import", kind, [],
                         detail=json.dumps(detail, ensure_ascii=False, separators=(",", ":")))
    return report


def _tune_connection(conn: Connection) -> Callable[[], None]:
    """Settings of the importing SQLite connection; returns the function that puts the pooled connection back.

    - A larger page cache: every row goes into several indexes at random places.
    - No per-row foreign-key probes: every reference a row makes (address, parent address, community, police
      area, grid, owner) was looked up and validated by the importer before the row is written, and the
      registry never deletes addresses, regions or persons' referents; the probes would cost a third of the
      write time at 2.5 million rows. PostgreSQL keeps its checks (they cannot be deferred per session).
    """
    if conn.dialect.name != "sqlite":
        return lambda: None
    if conn.in_transaction():
        conn.commit()
    old_cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    old_fk = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    old_ckpt = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={SQLITE_IMPORT_CHECKPOINT_PAGES}")
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_IMPORT_CACHE_KIB}")
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # only outside a transaction; this connection only
    conn.commit()

    def restore() -> None:
        if conn.in_transaction():
            conn.rollback()
        conn.exec_driver_sql(f"PRAGMA cache_size={int(old_cache)}")
        conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if old_fk else 'OFF'}")
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={int(old_ckpt)}")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        conn.commit()

    return restore


def _consume(conn: Connection, k: _Kind, writer: _Writer, batches: Iterator[_Batch], report: ImportReport,
             progress: Progress | None, estimated: int) -> None:
    """Write the batches, committing every COMMIT_ROWS rows; counts enter the report when their rows commit."""
    pending = [0, 0, 0]
    pending_rows = 0
    commit_every = max(COMMIT_ROWS, 1)
    for b in batches:
        writer.send(b.payload)
        report.errors.extend(b.errors)
        report.total += b.count
        pending[0] += b.inserted
        pending[1] += b.updated
        pending[2] += b.unchanged
        pending_rows += len(b.payload)
        if pending_rows >= commit_every:
            conn.commit()
            report.inserted += pending[0]
            report.updated += pending[1]
            report.unchanged += pending[2]
            pending, pending_rows = [0, 0, 0], 0
        if progress:
            progress(report.total, max(report.total, estimated))
    conn.commit()
    report.inserted += pending[0]
    report.updated += pending[1]
    report.unchanged += pending[2]
    report.errors.sort(key=lambda e: e.row)
    if progress:
        progress(report.total, report.total)


@dataclass
class _Parsed:
    """A chunk of rows in file order, read and checked, and the rows that failed.

    Each row is (row number, cells joined by _SEP, record, prepared row, dedupe key). The cells travel as one
    string (cheaper to send to the writing process) and are only split again if the row turns out bad. Either
    the record is set (the row still has to be resolved against the stored one), or, for a kind that allows it,
    the prepared row: the key was not stored when the chunk was read, so the row is an insert and was already
    put in the writer's form."""

    rows: list[tuple[int, str, dict[str, Any] | None, tuple | None, Any]]
    errors: list[RowError]
    count: int  # non-blank rows of the chunk


_SEP = "\x1f"  # ASCII unit separator: does not occur in the cells of a text file


def _raw(header: list[str], cells: list[str] | str) -> dict[str, str]:
    if isinstance(cells, str):
        cells = cells.split(_SEP)
    return {h: cells[i] if i < len(cells) else "" for i, h in enumerate(header) if h}


def _parse_rows(k: _Kind, writer: _Writer, src: _Source, width: int, chunk: int,
                probe: Connection | None = None, end_reads: bool = False, part: int = 0,
                parts: int = 1) -> Iterator[_Parsed]:
    """Read and check rows (the lookups were loaded when k was made). With a probe connection and a kind whose
    new records need nothing from the database (persons), also find which keys are stored and prepare the
    inserts of the others, so that the writing side only writes them. end_reads: the parsing process ends
    each probe's read transaction.

    The file is cut in chunks of `chunk` data rows (blank ones included, so every reader cuts it alike); this
    call handles the chunks whose number n has n % parts == part, one _Parsed each, in order, and skips the
    others unread but for the CSV/XLSX row structure."""
    header, parse, dedupe_key = src.header, k.parse, k.dedupe_key
    speculate = probe is not None and k.speculative
    rows: list[tuple[int, str, dict[str, Any]]] = []
    errors: list[RowError] = []
    count = 0

    def chunk_out() -> _Parsed:
        nonlocal rows, errors, count
        out: list[tuple[int, str, dict[str, Any] | None, tuple | None, Any]] = []
        if speculate:
            pk = k.probe or k.key  # persons: the ID number's keyed hash, computed while parsing
            keys = [rec[pk] for _, _, rec in rows if not isinstance(rec[k.key], _Masked)]
            stored = set(_stored_keys(probe, k.table.name, pk, keys)) if keys else set()
            if end_reads:
                probe.rollback()  # the parsing process: do not hold a read snapshot while the writer commits
            fresh: list[dict[str, Any]] = []
            fresh_rows: list[tuple[int, str, Any]] = []
            for rownum, joined, rec in rows:
                if isinstance(rec[k.key], _Masked) or rec[pk] in stored:
                    out.append((rownum, joined, rec, None, dedupe_key(rec)))
                    continue
                try:
                    fresh.append(k.resolve(rec, None))
                    fresh_rows.append((rownum, joined, dedupe_key(rec)))
                except RowFault as e:
                    errors.append(RowError(rownum, e.reason, _raw(header, joined)))
            for (rownum, joined, key), prepared in zip(fresh_rows, writer.prepare(fresh), strict=True):
                out.append((rownum, joined, None, prepared, key))
            out.sort(key=operator.itemgetter(0))
        else:
            out = [(rownum, joined, rec, None, dedupe_key(rec)) for rownum, joined, rec in rows]
        parsed = _Parsed(out, errors, count)
        rows, errors, count = [], [], 0
        return parsed

    index, mine, pending = -1, parts == 1, False
    for index, (rownum, cells) in enumerate(src.rows):
        if index % chunk == 0:
            if pending:
                yield chunk_out()
            mine = (index // chunk) % parts == part
            pending = mine
        if not mine:
            continue
        if len(cells) < width:
            if not any(c.strip() for c in cells):
                continue
            cells = cells + [""] * (width - len(cells))
        try:
            rows.append((rownum, _SEP.join(cells), parse(cells)))
        except RowFault as e:
            if not any(c.strip() for c in cells):
                continue
            errors.append(RowError(rownum, e.reason, _raw(header, cells)))
        count += 1
    if pending:
        yield chunk_out()


def _resolve_batches(k: _Kind, writer: _Writer, header: list[str], parsed: Iterator[_Parsed]) -> Iterator[_Batch]:
    """Drop in-file duplicates, resolve each chunk against the database and turn it into what the writer sends.

    Lazy: chunk n+1 is read and resolved after chunk n was written (in the same transaction), so a row sees the
    rows before it, e.g. an address the parent written just before.
    """
    seen, compare = k.seen, k.compare_cols
    key_label = k.key_label
    is_persons = isinstance(k, _Persons)
    for chunk in parsed:
        errors = chunk.errors
        batch = []
        payload: list[tuple] = []
        for rownum, joined, rec, prepared, key in chunk.rows:
            first = seen.get(key)
            if first is not None:
                errors.append(RowError(rownum, f"文件内重复：与第{first}行的{key_label}相同，本行未导入 / duplicate "
                                               f"of row {first}", _raw(header, joined)))
                continue
            seen[key] = rownum
            if prepared is not None:
                payload.append(prepared)
            else:
                batch.append((rownum, joined, rec))
        written: list[dict[str, Any]] = []
        inserted, updated, unchanged = len(payload), 0, 0
        if batch:
            k.prefetch([rec for _, _, rec in batch])
        for rownum, joined, rec in batch:
            try:
                ex = k.existing(rec)
                params = k.resolve(rec, ex)
            except RowFault as e:
                errors.append(RowError(rownum, e.reason, _raw(header, joined)))
                seen.pop(k.dedupe_key(rec), None)
                continue
            if ex is None:
                inserted += 1
                written.append(params)
            elif any(params[c] != ex[c] for c in compare):
                updated += 1
                written.append(params)
            else:
                unchanged += 1
            if is_persons and isinstance(rec.get("record_id"), int):  # masked key: known now by its real one
                seen[int(params["id_number"][:17])] = rownum
        if written:
            payload += writer.prepare(written)
        yield _Batch(payload, chunk.count, inserted, updated, unchanged, errors)


# ---- the parsing process -----------------------------------------------------------------------------------------
def _from_children(url: str, kind: str, path: Path, principal: Principal, present: dict[str, int], now: datetime,
                   width: int, chunk: int, parts: int) -> Iterator[_Parsed]:
    """Start `parts` parsing processes, process i handling chunks n with n % parts == i, and yield the chunks in
    file order. They are stopped if the writing side fails."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork: the caller may be a threaded web server
    procs, receivers = [], []
    for part in range(parts):
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, name=f"anfang-import-parser-{part}", daemon=True,
                           args=(sender, url, kind, str(path), principal, present, now, width, chunk, part, parts,
                                 crypto.exported()))
        proc.start()
        sender.close()
        procs.append(proc)
        receivers.append(receiver)

    def receive(part: int) -> Any:
        try:
            msg = receivers[part].recv()
        except EOFError:
            raise RuntimeError("导入解析进程意外退出 / a parsing process died") from None
        if msg[0] == "fail":
            exc = msg[1]
            raise exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        return msg

    finished = False
    try:
        n = 0
        while True:
            msg = receive(n % parts)
            if msg[0] == "done":  # chunk n does not exist, nor any after it
                for part in range(parts):
                    if part != n % parts:
                        receive(part)
                finished = True
                return
            yield msg[1]
            n += 1
    finally:
        for receiver in receivers:
            receiver.close()
        for proc in procs:
            if finished:
                proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)


def _child_main(sender: Any, url: str, kind: str, path: str, principal: Principal, present: dict[str, int],
                now: datetime, width: int, chunk: int, part: int, parts: int, keys: str) -> None:
    """Entry point of the parsing process: load the lookups, then read and check rows in file order. keys: the
    parent's data keys (the parsing process encrypts the new persons' ID numbers and phones)."""
    crypto.configure(crypto.Keyring(crypto.KeyMaterial.from_json(keys)))
    gc.disable()  # this process makes no reference cycles; the collector would walk millions of live rows
    with contextlib.suppress(OSError, AttributeError):
        os.nice(5)  # the single writer is the pipeline's bottleneck: let it have the CPU when it can use it
    store = None
    try:
        store = Store(url)
        src = read_rows(Path(path))
        try:
            with store.engine.connect() as conn:
                k = _KIND_CLASSES[kind](conn, principal, present, now)
                conn.rollback()
                writer = _Writer(conn, k)  # its prepare() half
                probe = conn if k.speculative else None
                for parsed in _parse_rows(k, writer, src, width, chunk, probe=probe, end_reads=True, part=part,
                                          parts=parts):
                    sender.send(("chunk", parsed))
        finally:
            src.close()
        sender.send(("done",))
    except BaseException as exc:  # noqa: BLE001 - reported to the writing process
        try:
            sender.send(("fail", exc))
        except Exception:  # noqa: BLE001 - unpicklable exception
            sender.send(("fail", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()
        if store is not None:
            store.dispose()
