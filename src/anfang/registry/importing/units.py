"""Importer of 实有单位 (units)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.registry.importing.cells import _phone, _resolve_mask, _text
from anfang.registry.importing.kind import _AddressUser, _parse_verification, _rows_by
from anfang.registry.importing.report import RowFault, _Masked
from anfang.registry.models import Address, WorkUnit


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
        self.required_address(cells, rec, bad)
        self.parse_optional(cells, rec, bad, "kind", lambda v: _text(v, "单位类型", 32))
        self.parse_optional(cells, rec, bad, "legal_person", lambda v: _text(v, "法定代表人", 64))
        self.parse_optional(cells, rec, bad, "phone", lambda v: _phone(v, "联系电话", landline=True))
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
