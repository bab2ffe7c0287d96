"""Importer of 行政区划 (regions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.core.regions import PROVINCE_NAME
from anfang.registry.importing.cells import _REGION_KINDS, _scope_fault
from anfang.registry.importing.kind import _Kind, _rows_by
from anfang.registry.importing.report import RowFault
from anfang.registry.models import Region


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
