"""Bulk import / export of the registry (anfang.registry.importer / exporter), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from anfang.core.errors import Forbidden, ValidationError
from anfang.core.ids import make_credit_code, make_id_number
from anfang.registry.columns import COLUMNS, KINDS, columns_markdown
from anfang.registry.exporter import export_csv, export_xlsx
from anfang.registry.importer import ImportReport, import_file
from anfang.registry.models import Address, House, Person, Region, Vehicle, WorkUnit
from anfang.security import audit
from anfang.security.models import AuditEntry
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store

DOCS = Path(__file__).resolve().parent.parent / "docs"
CITY = Principal(user_id=None, username="city", role=Role.city_admin, client="test")
COUNTY = Principal(user_id=None, username="county", role=Role.county_admin, county_code="350404", client="test")
POLICE = Principal(user_id=None, username="police", role=Role.police, police_area_id=1, client="test")

LD, FX = "350404001001", "350405001001"  # 列东社区 (三元区), 府西社区 (沙县区)
LD101, LD102 = LD + "00010100101", LD + "00010100102"
FX101 = FX + "0001001"

REGIONS = """区划代码,名称,上级区划代码,类型
350400,三明市,,
350404,三元区,350400,
350405,沙县区,350400,
350404001000,列东街道,350404,
350405001000,凤岗街道,350405,
350404001001,列东社区,350404001000,社区
350405001001,府西社区,350405001000,社区
"""

ADDRESSES = f"""code,parent_code,level,name,community_code,lon,lat,plate_installed
{LD},,小区/村,列东社区,{LD},117.63,26.27,是
{LD}0001,{LD},楼栋,1栋,,,,是
{LD}000101,{LD}0001,单元,1单元,,,,否
{LD}000101001,{LD}000101,楼层,1层,,,,
{LD101},{LD}000101001,房间,101室,,,,是
{LD102},{LD}000101001,房间,102室,,,,是
{FX},,小区/村,府西社区,{FX},117.78,26.39,
{FX}0001,{FX},楼栋,1栋,,,,
{FX101},{FX}0001,房间,101室,,,,
"""

ZHANG = make_id_number("350404", date(1980, 5, 1), 11)  # male
LI = make_id_number("350404", date(1982, 3, 9), 22)  # female
WANG = make_id_number("350405", date(1950, 1, 2), 31)  # male
CHEN = make_id_number("350404", date(2010, 7, 7), 42)  # female
HEADER = ["身份证号", "姓名", "性别", "出生日期", "手机号", "户籍地址", "人口类型", "管理类别", "现住址编码",
          "核实状态"]
GOOD = [
    [ZHANG, "张伟", "男", "1980-05-01", "13805981001", "福建省三明市三元区", "户籍人口", "退役军人", LD101, "已核实"],
    [LI, "李娜", "", "", "138 0598 1002", "", "流动人口", "", LD101, ""],
    [WANG, "王强", "男", "19500102", "", "", "registered", "elderly_alone;重点人员", FX101, "未核实"],
    [CHEN, "陈思", "女", "2010/7/7", "+8613805981004", "", "", "未成年人、留守儿童", LD102, "有疑问"],
]


def write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def setup_world(store: Store, tmp_path: Path) -> None:
    """Regions and standard addresses of two communities in two counties, created by importing files."""
    r = import_file(store, "regions", write_text(tmp_path / "regions.csv", REGIONS), CITY)
    assert (r.inserted, r.errors) == (7, [])
    a = import_file(store, "addresses", write_text(tmp_path / "addresses.csv", ADDRESSES), CITY)
    assert (a.inserted, a.errors) == (9, [])


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def counts(r: ImportReport) -> tuple[int, int, int, int]:
    assert r.total == r.inserted + r.updated + r.unchanged + len(r.errors)  # every row accounted for
    return r.inserted, r.updated, r.unchanged, len(r.errors)


def persons(store: Store) -> dict[str, Person]:
    with store.session() as s:
        return {p.id_number: p for p in s.scalars(select(Person))}


# ---- regions and addresses ---------------------------------------------------------------------------------------
def test_addresses_hang_below_parents_in_the_same_file(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    with store.session() as s:
        rows = {a.code: a for a in s.scalars(select(Address))}
        by_id = {a.id: a for a in rows.values()}
        region = s.get(Region, LD)
        assert region is not None and region.full_name == "福建省三明市三元区列东街道列东社区"
    room = rows[LD101]
    assert room.full_name == "福建省三明市三元区列东街道列东社区1栋1单元1层101室"
    assert by_id[room.parent_id].code == LD + "000101001"
    assert (room.county_code, room.town_code, room.community_code) == ("350404", "350404001000", LD)
    assert (room.lon, room.lat) == (117.63, 26.27)  # inherited from the community
    assert rows[LD].parent_id is None and rows[LD].full_name == region.full_name
    assert rows[LD + "000101"].plate_installed is False and rows[LD101].plate_installed is True
    assert rows[FX101].level == "room" and by_id[rows[FX101].parent_id].code == FX + "0001"
    # idempotent
    again = import_file(store, "addresses", tmp_path / "addresses.csv", CITY)
    assert counts(again) == (0, 0, 9, 0)


def test_address_rows_with_faults(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    bad = write_text(tmp_path / "bad_addresses.csv", f"""地址编码,上级地址编码,层级,名称,社区编码
{LD}0009,{LD}8888,楼栋,9栋,
{LD}0002,{LD},楼层,2栋,
{LD}0003,{LD},楼栋,,
{LD}0004,,楼栋,4栋,{LD}
{LD}0005,{LD},层级X,5栋,
9{LD}0006,{LD},楼栋,6栋,
{LD}0007,{LD},楼栋,7栋,{FX}
{LD}000701,{LD}0007,单元,1单元,
""")
    r = import_file(store, "addresses", bad, CITY)
    reasons = {e.row: e.reason for e in r.errors}
    assert "上级地址编码不存在" in reasons[2] and f"{LD}8888" in reasons[2]
    assert reasons.get(3) is None  # a floor directly under the community is allowed (deeper level)
    assert "缺少必填项：名称" in reasons[4]
    assert "缺少上级地址编码" in reasons[5]
    assert "层级取值无效" in reasons[6]
    assert "须以上级地址编码" in reasons[7]
    assert "社区编码" in reasons[8] and "不一致" in reasons[8]
    assert "上级地址编码不存在" in reasons[9]  # its parent was the bad row 8
    assert counts(r) == (1, 0, 0, 7)


# ---- persons: validation -----------------------------------------------------------------------------------------
def test_bad_rows_are_reported_and_good_rows_imported(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    bad_check = ZHANG[:-1] + ("0" if ZHANG[-1] != "0" else "1")
    other = make_id_number("350404", date(1990, 1, 1), 51)
    rows = [
        *GOOD,  # rows 2-5
        [bad_check, "坏校验", "", "", "", "", "", "", LD101, ""],  # 6
        [make_id_number("350404", date(1991, 2, 2), 61), "坏日期", "", "1991-13-40", "", "", "", "", LD101, ""],  # 7
        [make_id_number("350404", date(1992, 2, 2), 71), "错地址", "", "", "", "", "", "", "999999", ""],  # 8
        [make_id_number("350404", date(1993, 2, 2), 81), "坏手机", "", "", "12345", "", "", "", LD101, ""],  # 9
        [make_id_number("350404", date(1994, 2, 2), 91), "坏枚举", "", "", "", "", "外星人", "", LD101, ""],  # 10
        [other, "", "", "", "", "", "", "", LD101, ""],  # 11: name missing
        [LI, "李娜重复", "", "", "", "", "", "", LD101, ""],  # 12: duplicate of row 3
        [make_id_number("350404", date(1995, 2, 2), 11), "性别错", "女", "1996-01-01", "", "", "", "", LD101, ""],  # 13
        [make_id_number("350404", date(1996, 2, 2), 21), "坏标签", "", "", "", "", "", "吸烟者", LD101, "已核实"],  # 14
        ["", "", "", "", "", "", "", "", "", ""],  # blank line: skipped, not counted
    ]
    r = import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, rows), CITY)
    assert counts(r) == (4, 0, 0, 9)
    reasons = {e.row: e.reason for e in r.errors}
    assert sorted(reasons) == [6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert "校验位" in reasons[6]
    assert "出生日期无效" in reasons[7] and "1991-13-40" in reasons[7]
    assert reasons[8] == "现住址编码不存在：999999"
    assert "手机号无效" in reasons[9] and "12345" in reasons[9]
    assert "人口类型取值无效：外星人" in reasons[10] and "户籍人口" in reasons[10]
    assert "缺少必填项：姓名" in reasons[11]
    assert "文件内重复" in reasons[12] and "第3行" in reasons[12]
    assert "性别与身份证号不符" in reasons[13] and "出生日期与身份证号不符" in reasons[13]  # all faults of a row
    assert "管理类别取值无效：吸烟者" in reasons[14]
    assert r.errors[0].raw["身份证号"] == bad_check and r.errors[0].raw["姓名"] == "坏校验"

    got = persons(store)
    assert set(got) == {ZHANG, LI, WANG, CHEN}
    li, wang, chen = got[LI], got[WANG], got[CHEN]
    assert (li.gender, li.birth_date) == ("F", date(1982, 3, 9))  # filled from the identity number
    assert li.phone == "13805981002" and li.population_type == "floating" and li.verification == "unverified"
    assert wang.labels == ["elderly_alone", "key_person"] and wang.hukou_address is None
    assert chen.labels == ["minor", "left_behind_child"] and chen.phone == "13805981004"
    assert chen.population_type == "registered" and chen.verification == "disputed"
    assert got[ZHANG].verification == "verified" and got[ZHANG].verified_by == "city"
    assert got[ZHANG].verified_at is not None


def test_missing_required_column_refuses_the_file(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    path = write_csv(tmp_path / "no_name.csv", ["身份证号", "手机号"], [[ZHANG, "13805981001"]])
    with pytest.raises(ValidationError, match="缺少必需的列：姓名"):
        import_file(store, "persons", path, CITY)
    with pytest.raises(ValidationError, match="未知的数据类别"):
        import_file(store, "people", path, CITY)


def test_english_headers_and_extra_columns(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    path = write_csv(tmp_path / "en.csv", ["ID_Number", "name", "phone", "address_code", "序号", "note"],
                     [[ZHANG, "张伟", "13805981001", LD101, "1", "x"]])
    r = import_file(store, "persons", path, CITY)
    assert counts(r) == (1, 0, 0, 0)
    assert r.ignored_columns == ["note"]


# ---- persons: idempotence and updates ----------------------------------------------------------------------------
def test_reimport_is_idempotent_and_changes_are_updates(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    path = write_csv(tmp_path / "p.csv", HEADER, GOOD)
    assert counts(import_file(store, "persons", path, CITY)) == (4, 0, 0, 0)
    assert counts(import_file(store, "persons", path, CITY)) == (0, 0, 4, 0)

    changed = [list(r) for r in GOOD]
    changed[1][4] = "13905989999"  # 李娜's phone
    changed[2][8] = LD102  # 王强 moves
    r = import_file(store, "persons", write_csv(tmp_path / "p2.csv", HEADER, changed), CITY)
    assert counts(r) == (0, 2, 2, 0)
    got = persons(store)
    assert got[LI].phone == "13905989999"
    with store.session() as s:
        assert s.scalar(select(Address.code).where(Address.id == got[WANG].address_id)) == LD102

    # a file without a column leaves that field alone
    partial = write_csv(tmp_path / "partial.csv", ["身份证号", "姓名"], [[LI, "李娜"]])
    assert counts(import_file(store, "persons", partial, CITY)) == (0, 0, 1, 0)
    assert persons(store)[LI].phone == "13905989999"


def test_xlsx_and_gb18030_inputs(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    for row in GOOD:
        cells: list = list(row)
        if cells[4].isdigit():
            cells[4] = int(cells[4])  # a phone typed as a number
        if cells[3] == "1980-05-01":
            cells[3] = datetime(1980, 5, 1)  # a real date cell
        ws.append(cells)
    ws.append([None] * len(HEADER))  # empty row inside the sheet: skipped
    ws.append([make_id_number("350404", date(1970, 1, 1), 11), "坏行", None, None, None, None, None, None, "nope"])
    xlsx = tmp_path / "p.xlsx"
    wb.save(xlsx)
    r = import_file(store, "persons", xlsx, CITY)
    assert counts(r) == (4, 0, 0, 1)
    assert r.errors[0].row == 7 and "现住址编码不存在：nope" in r.errors[0].reason
    assert persons(store)[ZHANG].phone == "13805981001"

    gb = write_csv(tmp_path / "p_gb.csv", HEADER, GOOD, encoding="gb18030")
    assert gb.read_bytes().decode("gb18030").startswith("身份证号")
    assert counts(import_file(store, "persons", gb, CITY)) == (0, 0, 4, 0)
    bom = write_csv(tmp_path / "p_bom.csv", HEADER, GOOD, encoding="utf-8-sig")
    assert counts(import_file(store, "persons", bom, CITY)) == (0, 0, 4, 0)


def test_parsing_process_gives_the_same_result(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    rows = [*GOOD, [LI, "重复", "", "", "", "", "", "", LD101, ""], ["123", "坏", "", "", "", "", "", "", LD101, ""]]
    path = write_csv(tmp_path / "p.csv", HEADER, rows)
    seen: list[tuple[int, int]] = []
    r = import_file(store, "persons", path, CITY, parallel=True, batch_size=2,
                    progress=lambda done, total: seen.append((done, total)))
    assert counts(r) == (4, 0, 0, 2)
    assert [e.row for e in r.errors] == [6, 7]
    assert seen[-1] == (6, 6)
    again = import_file(store, "persons", path, CITY, parallel=True, batch_size=3)  # an even number of chunks
    assert counts(again) == (0, 0, 4, 2) and [e.row for e in again.errors] == [6, 7]
    assert counts(import_file(store, "persons", path, CITY, parallel=False)) == (0, 0, 4, 2)


# ---- jurisdiction, permissions, audit ----------------------------------------------------------------------------
def test_county_admin_imports_only_within_his_county(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    r = import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, GOOD), COUNTY)
    assert counts(r) == (3, 0, 0, 1)
    assert r.errors[0].row == 4 and r.errors[0].reason.startswith("超出辖区")  # 王强 lives in 沙县区
    # the city admin registers him there; the county admin may not move him into his county either
    import_file(store, "persons", write_csv(tmp_path / "w.csv", HEADER, [GOOD[2]]), CITY)
    moved = [list(GOOD[2])]
    moved[0][8] = LD102
    r = import_file(store, "persons", write_csv(tmp_path / "w2.csv", HEADER, moved), COUNTY)
    assert counts(r) == (0, 0, 0, 1) and "超出辖区" in r.errors[0].reason
    # addresses outside his county are refused row by row too
    r = import_file(store, "addresses", write_text(tmp_path / "a.csv", f"""地址编码,上级地址编码,层级,名称
{FX}0002,{FX},楼栋,2栋
{LD}0002,{LD},楼栋,2栋
"""), COUNTY)
    assert counts(r) == (1, 0, 0, 1) and r.errors[0].row == 2 and "超出辖区" in r.errors[0].reason


def test_only_bulk_roles_import_and_export(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    path = write_csv(tmp_path / "p.csv", HEADER, GOOD)
    with pytest.raises(Forbidden):
        import_file(store, "persons", path, POLICE)
    with pytest.raises(Forbidden):
        export_xlsx(store, "persons", tmp_path / "out.xlsx", POLICE)


def test_one_audit_entry_per_import_and_export(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    with store.session() as s:
        before = s.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))
    path = write_csv(tmp_path / "p.csv", HEADER, [*GOOD, ["bad", "x", "", "", "", "", "", "", "", ""]])
    import_file(store, "persons", path, CITY)
    export_xlsx(store, "persons", tmp_path / "out.xlsx", COUNTY, community_code=LD)
    with store.session() as s:
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.seq > before).order_by(AuditEntry.seq)))
    assert [(e.action, e.entity, e.username) for e in entries] == [("import", "persons", "city"),
                                                                   ("export", "persons", "county")]
    imp = json.loads(entries[0].detail)
    assert imp["file"] == "p.csv" and (imp["total"], imp["inserted"], imp["errors"]) == (5, 4, 1)
    exp = json.loads(entries[1].detail)
    assert exp == {"file": "out.xlsx", "rows": 3, "filters": {"community_code": LD}}
    assert audit.verify(store).ok


# ---- export ------------------------------------------------------------------------------------------------------
def read_xlsx(path: Path) -> list[list[str]]:
    """The cells as a user sees them: without the export's invisible zero-width watermark."""
    from anfang.security.watermark import strip_zero_width

    wb = load_workbook(path, read_only=True)
    rows = [["" if v is None else strip_zero_width(str(v)) for v in r]
            for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


def test_export_is_scoped_and_masked(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, GOOD), CITY)
    n = export_xlsx(store, "persons", tmp_path / "county.xlsx", COUNTY)
    rows = read_xlsx(tmp_path / "county.xlsx")
    assert n == 3 and rows[0] == [c.zh for c in COLUMNS["persons"]]
    by_name = {r[1]: r for r in rows[1:]}
    assert set(by_name) == {"张伟", "李娜", "陈思"}  # not 王强 (沙县区)
    zhang = by_name["张伟"]
    assert zhang[0] == ZHANG[:6] + "********" + ZHANG[-4:]  # county admins see identity numbers masked
    assert zhang[4] == "138****1001"
    assert zhang[2:4] == ["男", "1980-05-01"] and zhang[6:10] == ["户籍人口", "退役军人", LD101, "已核实"]
    assert by_name["陈思"][7] == "未成年人、留守儿童"
    assert ZHANG not in (tmp_path / "county.xlsx").read_bytes().decode("latin-1")

    n = export_csv(store, "persons", tmp_path / "city.csv", CITY, address_prefix="三明市沙县区")
    with (tmp_path / "city.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert n == 1 and rows[1][1] == "王强" and "*" in rows[1][0]
    with pytest.raises(ValidationError, match="不支持的筛选条件"):
        export_xlsx(store, "persons", tmp_path / "x.xlsx", CITY, colour="red")


def test_export_reimports_cleanly(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, GOOD), CITY)
    unit_code = make_credit_code("350404", "MA2Y00001")
    import_file(store, "houses", write_csv(tmp_path / "h.csv", ["地址编码", "房屋用途", "产权人身份证号", "产权人电话",
                                                                "建筑面积", "核实状态"],
                                           [[LD101, "自住", ZHANG, "13905980000", "89.5", "已核实"],
                                            [LD102, "出租", "", "", "", ""]]), CITY)
    import_file(store, "units", write_csv(tmp_path / "u.csv", ["统一社会信用代码", "单位名称", "地址编码", "联系电话"],
                                          [[unit_code, "列东便民超市", f"{LD}0001", "0598-8221234"]]), CITY)
    import_file(store, "vehicles", write_csv(tmp_path / "v.csv", ["车牌号", "品牌", "车主身份证号"],
                                             [["闽G12345", "比亚迪", ZHANG], ["闽GD23456", "", WANG]]), CITY)
    expected = {"regions": 7, "addresses": 9, "persons": 4, "houses": 2, "units": 1, "vehicles": 2}
    for kind in KINDS:
        for suffix, export in ((".xlsx", export_xlsx), (".csv", export_csv)):
            out = tmp_path / f"export_{kind}{suffix}"
            assert export(store, kind, out, CITY) == expected[kind]
            r = import_file(store, kind, out, CITY)
            assert counts(r) == (0, 0, expected[kind], 0), (kind, suffix, r.errors)

    # an edited export: the masked cells keep their stored values, the edit is applied
    rows = read_xlsx(tmp_path / "export_persons.xlsx")
    li = next(r for r in rows if r[1] == "李娜")
    li[9] = "已核实"
    r = import_file(store, "persons", write_csv(tmp_path / "edited.csv", rows[0], [li]), CITY)
    assert counts(r) == (0, 1, 0, 0)
    got = persons(store)[LI]
    assert got.verification == "verified" and got.phone == "13805981002"
    # a masked value that does not match the record is an error, not a silent overwrite
    li[4] = "139****0000"
    r = import_file(store, "persons", write_csv(tmp_path / "edited2.csv", rows[0], [li]), CITY)
    assert counts(r) == (0, 0, 0, 1) and "脱敏" in r.errors[0].reason
    li[0], li[10] = li[0], ""
    r = import_file(store, "persons", write_csv(tmp_path / "edited3.csv", rows[0], [li]), CITY)
    assert "系统编号" in r.errors[0].reason


# ---- houses, units, vehicles -------------------------------------------------------------------------------------
def test_houses_units_vehicles(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, GOOD), CITY)
    stranger = make_id_number("350404", date(1960, 6, 6), 33)
    r = import_file(store, "houses", write_csv(
        tmp_path / "h.csv", ["address_code", "use", "owner_id_number", "owner_phone", "area_m2"],
        [[LD101, "出租", ZHANG, "", "90"], [LD102, "仓库", "", "", ""], [FX101, "", stranger, "", ""],
         [LD + "000101001", "自住", "", "", "-1"], [LD101, "自住", "", "", ""]]), CITY)
    reasons = {e.row: e.reason for e in r.errors}
    assert counts(r) == (1, 0, 0, 4)
    assert "房屋用途取值无效：仓库" in reasons[3]
    assert "产权人身份证号未登记" in reasons[4]
    assert "建筑面积超出范围" in reasons[5]
    assert "文件内重复" in reasons[6]
    with store.session() as s:
        house = s.scalar(select(House))
        assert house is not None and house.use == "rental" and house.owner_name == "张伟" and house.area_m2 == 90

    good_code = make_credit_code("350404", "MA2Y00001")
    r = import_file(store, "units", write_csv(
        tmp_path / "u.csv", ["统一社会信用代码", "单位名称", "地址编码", "从业人数"],
        [[good_code, "列东便民超市", f"{LD}0001", "3"],
         [good_code[:-1] + ("0" if good_code[-1] != "0" else "1"), "坏代码", f"{LD}0001", ""],
         [make_credit_code("350404", "MA2Y00003"), "负人数", f"{LD}0001", "-2"]]), CITY)
    assert counts(r) == (1, 0, 0, 2)
    assert "校验位" in r.errors[0].reason and "从业人数" in r.errors[1].reason

    r = import_file(store, "vehicles", write_csv(
        tmp_path / "v.csv", ["车牌号", "号牌颜色", "车主身份证号"],
        [["闽G12345", "", ZHANG], ["闽GD23456", "", CHEN], ["京A1", "", ""], ["闽G54321", "紫", ""]]), COUNTY)
    assert counts(r) == (2, 0, 0, 2)
    assert "车牌号无效" in r.errors[0].reason and "号牌颜色取值无效" in r.errors[1].reason
    with store.session() as s:
        cars = {v.plate: v for v in s.scalars(select(Vehicle))}
        units = list(s.scalars(select(WorkUnit)))
    assert cars["闽GD23456"].plate_color == "green" and cars["闽G12345"].plate_color == "blue"
    assert cars["闽G12345"].address_id == persons(store)[ZHANG].address_id
    assert units[0].staff_count == 3


def test_error_report_can_be_fixed_and_reimported(store: Store, tmp_path: Path) -> None:
    setup_world(store, tmp_path)
    rows = [GOOD[0], [LI, "李娜", "", "", "12345", "", "", "", LD101, ""]]
    r = import_file(store, "persons", write_csv(tmp_path / "p.csv", HEADER, rows), CITY)
    assert counts(r) == (1, 0, 0, 1)
    for name in ("report.csv", "report.xlsx"):
        r.write_report(tmp_path / name)
    got = read_xlsx(tmp_path / "report.xlsx")
    assert got[0] == ["行号", "错误原因", *HEADER] and got[1][:2] == ["3", r.errors[0].reason]
    with (tmp_path / "report.csv").open(encoding="utf-8-sig") as f:
        fixed = list(csv.reader(f))
    fixed[1][2 + HEADER.index("手机号")] = "13805981002"
    again = import_file(store, "persons", write_csv(tmp_path / "fixed.csv", fixed[0], fixed[1:]), CITY)
    assert counts(again) == (1, 0, 0, 0) and again.ignored_columns == []


def test_docs_describe_every_column() -> None:
    doc = (DOCS / "import-format.md").read_text(encoding="utf-8")
    for kind in KINDS:
        assert columns_markdown(kind) in doc, f"docs/import-format.md is out of date for {kind}"
        assert (DOCS / "examples" / f"{kind}.csv").exists()


def test_example_files_import(store: Store) -> None:
    examples = DOCS / "examples"
    for kind in KINDS:
        r = import_file(store, kind, examples / f"{kind}.csv", CITY)
        assert r.errors == [] and r.inserted == r.total > 0, (kind, r.errors)
