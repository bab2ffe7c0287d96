"""Importer of 车辆 (vehicles)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.registry import vocab
from anfang.registry.importing.cells import _PLATE_COLORS, _enum, _text
from anfang.registry.importing.kind import _Kind, _Owned, _rows_by
from anfang.registry.importing.report import RowFault
from anfang.registry.models import Address, Person, Vehicle


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
        self.parse_optional(cells, rec, bad, "plate_color",
                            lambda v: _enum(v, _PLATE_COLORS, vocab.PLATE_COLORS, "号牌颜色") if v
                            else "green" if len(rec.get("plate", "")) == 8 else "blue")
        self.parse_optional(cells, rec, bad, "brand", lambda v: _text(v, "品牌", 32))
        self.parse_optional(cells, rec, bad, "color", lambda v: _text(v, "车身颜色", 16))
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
