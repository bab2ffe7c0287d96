"""Importer of 实有人口 (persons)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, select

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.registry.importing.cells import (
    _GENDERS,
    _LABEL_CHOICES,
    _LABEL_ORDER,
    _LABEL_SPLIT,
    _LABELS,
    _POPULATION,
    _VERIFICATION,
    _parse_date,
    _phone,
    _resolve_mask,
)
from anfang.registry.importing.kind import _AddressUser, _rows_by, _stored_keys
from anfang.registry.importing.report import RowFault, _Masked
from anfang.registry.models import Address, Person
from anfang.security import crypto
from anfang.security.masking import mask_id_number


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
