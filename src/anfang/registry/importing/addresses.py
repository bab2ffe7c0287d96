"""Importer of 标准地址 (addresses)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from anfang.registry import vocab
from anfang.registry.importing.cells import (
    _ADDRESS_LEVELS,
    _DIGITS,
    _LEVEL_RANK,
    _enum,
    _parse_bool,
    _parse_float,
    _scope_fault,
)
from anfang.registry.importing.kind import _Kind, _rows_by
from anfang.registry.importing.report import RowFault
from anfang.registry.models import Address, Grid, PoliceArea, PoliceStation, Region


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
