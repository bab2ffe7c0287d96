"""The importer of one kind of record (parse a row; resolve a batch against the database), the base of the
importers of regions.py, addresses.py, persons.py, houses.py, units.py and vehicles.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select

from anfang.registry import vocab
from anfang.registry.columns import (
    COLUMNS,
    KEY_FIELD,
)
from anfang.registry.importing.cells import _VERIFICATION, _enum, _id_number, _resolve_mask, _scope_fault
from anfang.registry.importing.report import RowFault, _Masked
from anfang.registry.models import Address, Person
from anfang.security import crypto
from anfang.security.roles import Role
from anfang.security.scope import Principal


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

    def parse_optional(self, cells: list[str], rec: dict[str, Any], bad: list[str], fld: str,
                       parse: Callable[[str], Any]) -> None:
        """An optional column: absent from the file → nothing (the stored value stays); present → rec[fld] is
        parse(cell), or the cell's fault goes to bad (the row's other faults are still collected)."""
        v = self.cell(cells, fld)
        if v is None:
            return
        try:
            rec[fld] = parse(v)
        except RowFault as e:
            bad.append(e.reason)

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

    def required_address(self, cells: list[str], rec: dict[str, Any], bad: list[str]) -> str:
        """The required 地址编码 column (houses, units): its address id in rec, or the row's fault in bad (missing,
        unknown code, outside the county administrator's county). Returns the code as given."""
        code = self.cell(cells, "address_code") or ""
        if not code:
            bad.append("缺少必填项：地址编码")
            return code
        aid = self.addresses.get(code)
        if aid is None:
            bad.append(f"地址编码不存在：{code}")
        elif self.in_county is not None and aid not in self.in_county:
            bad.append(_scope_fault(f"地址{code}").reason)
        rec["address_id"] = aid
        return code


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


def _parse_verification(kind: _Kind, cells: list[str], rec: dict[str, Any], bad: list[str]) -> None:
    v = kind.cell(cells, "verification")
    if v is None:
        return
    try:
        rec["verification"] = _enum(v, _VERIFICATION, vocab.VERIFICATION, "核实状态") if v else "unverified"
    except RowFault as e:
        bad.append(e.reason)
