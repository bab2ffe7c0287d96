"""Importer of 实有房屋 (houses)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anfang.registry import vocab
from anfang.registry.importing.cells import _HOUSE_USES, _enum, _parse_float, _phone, _resolve_mask
from anfang.registry.importing.kind import _Owned, _parse_verification, _rows_by
from anfang.registry.importing.report import RowFault, _Masked
from anfang.registry.models import Address, House, Person


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
        rec["address_code"] = self.required_address(cells, rec, bad)
        self.parse_optional(cells, rec, bad, "use",
                            lambda v: _enum(v, _HOUSE_USES, vocab.HOUSE_USES, "房屋用途") if v else "self_occupied")
        self.parse_owner(cells, rec, bad, "产权人身份证号")
        v = self.cell(cells, "owner_name")
        if v is not None:
            if len(v) > 64:
                bad.append("产权人姓名超过64字")
            rec["owner_name"] = v or None
        self.parse_optional(cells, rec, bad, "owner_phone", lambda v: _phone(v, "产权人电话"))
        self.parse_optional(cells, rec, bad, "area_m2", lambda v: _parse_float(v, "建筑面积", 0.0, 1e6) if v else None)
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
