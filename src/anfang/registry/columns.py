"""The column table of bulk import / export: one entry per column of each kind of file.

Import and export both read this table, so an exported file re-imports cleanly, and docs/import-format.md is
written from it (``columns_markdown``; a test keeps the two in step).

A header cell matches a column by its Chinese name, its English field name or one of its aliases; matching ignores
case, spaces, a trailing ``*`` (required marker) and a parenthesised note, so ``身份证号（必填）*`` matches
``身份证号``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    field: str  # English name, also accepted as header
    zh: str  # Chinese header, written by export
    required: bool = False  # a value is required in every row (so the column must be present)
    header_required: bool = False  # the column must be present, a blank cell is allowed
    aliases: tuple[str, ...] = ()
    doc: str = ""  # zh-CN description for docs/import-format.md
    mask_as: str | None = None  # field name in anfang.security.masking policy; None = never masked


# Record reference written by export; on import only used to find the record when its key cell is masked.
RECORD_ID = Column("record_id", "系统编号", aliases=("id", "记录编号"),
                   doc="导出文件中的系统内部编号。导入时仅在关键字段为脱敏值（含*）时用于定位原记录；新增记录留空")
VERIFICATION = Column("verification", "核实状态", aliases=("核实情况",),
                      doc="未核实 / 已核实 / 有疑问（或 unverified / verified / disputed）；留空为未核实")

COLUMNS: dict[str, tuple[Column, ...]] = {
    "regions": (
        Column("code", "区划代码", required=True, aliases=("行政区划代码", "代码"),
               doc="GB/T 2260 代码：市/县6位，乡镇街道9位或12位（末3位000），社区/行政村12位"),
        Column("name", "名称", required=True, aliases=("区划名称",), doc="不超过64字"),
        Column("parent_code", "上级区划代码", header_required=True, aliases=("上级代码",),
               doc="上级区划须已存在或在本文件前面的行中；只有市级可留空"),
        Column("kind", "类型", aliases=("社区类型",),
               doc="仅社区/村级：社区（urban）或 行政村（village）；留空按代码第10位判断（2开头为村）"),
        Column("full_name", "完整名称", aliases=("全称",),
               doc="留空则为上级完整名称加本级名称（市级为“福建省”加名称）"),
    ),
    "addresses": (
        Column("code", "地址编码", required=True, aliases=("标准地址编码",),
               doc="纯数字，不超过40位；下级地址编码须以上级地址编码开头；顶层地址须以社区编码开头"),
        Column("parent_code", "上级地址编码", header_required=True, aliases=("上级编码",),
               doc="上级地址须已存在或在本文件前面的行中；顶层（小区/村）留空"),
        Column("level", "层级", required=True, aliases=("地址层级",),
               doc="小区/村、楼栋/门牌、单元、楼层、房间（或 community / building / unit / floor / room）；"
                   "须比上级层级低；顶层须为小区/村"),
        Column("name", "名称", required=True, aliases=("地址名称",), doc="本级名称，如“1栋”“101室”，不超过64字"),
        Column("community_code", "社区编码", aliases=("所属社区编码", "社区/村编码"),
               doc="12位社区/行政村区划代码（须已导入区划）；顶层地址必填，下级地址留空则沿用上级，填写时须与上级一致"),
        Column("full_name", "完整地址", aliases=("地址全称",),
               doc="留空则为上级完整地址加本级名称（顶层为社区完整名称，名称与社区不同时再加名称）"),
        Column("police_area_code", "警务区编码", doc="留空则沿用上级地址的警务区"),
        Column("grid_code", "网格编码", doc="留空则沿用上级地址的网格"),
        Column("lon", "经度", doc="73～136，留空则沿用上级"),
        Column("lat", "纬度", doc="3～54，留空则沿用上级"),
        Column("plate_installed", "门牌已安装", doc="是/否（或 1/0、true/false）；留空为否"),
        Column("plate_accurate", "门牌准确", doc="是/否；留空为否"),
        Column("plate_labelled", "门牌已标注", doc="是/否；留空为否"),
    ),
    "persons": (
        Column("id_number", "身份证号", required=True, aliases=("公民身份号码", "身份证号码", "证件号码"),
               doc="18位公民身份号码，按 GB 11643 检查校验位", mask_as="id_number"),
        Column("name", "姓名", required=True, doc="不超过64字"),
        Column("gender", "性别", doc="男/女（或 M/F）；留空按身份证号填写，填写时须与身份证号一致"),
        Column("birth_date", "出生日期",
               doc="YYYY-MM-DD、YYYYMMDD、YYYY/MM/DD 或 YYYY年M月D日；留空按身份证号填写，填写时须一致"),
        Column("phone", "手机号", aliases=("手机号码", "手机", "联系电话"), doc="11位手机号，可带 +86",
               mask_as="phone"),
        Column("hukou_address", "户籍地址", aliases=("户籍地",), doc="不超过200字"),
        Column("population_type", "人口类型",
               doc="户籍人口 / 流动人口 / 境外人员（或 registered / floating / overseas）；留空为户籍人口"),
        Column("labels", "管理类别", aliases=("人员类别", "标签"),
               doc="独居老人、未成年人、重点人员、残疾人、留守儿童、退役军人（或其英文键），多个用 ; 或 、 分隔"),
        Column("address_code", "现住址编码", aliases=("地址编码", "住址编码"),
               doc="现住址的标准地址编码（须已导入）；县级管理员导入时必填且须在本县"),
        VERIFICATION,
        RECORD_ID,
    ),
    "houses": (
        Column("address_code", "地址编码", required=True, aliases=("房屋地址编码", "现住址编码"),
               doc="房屋所在标准地址编码（须已导入）；每个地址一套房屋，按此编码新增或更新"),
        Column("use", "房屋用途", aliases=("用途",),
               doc="自住 / 出租 / 空置 / 经营（或 self_occupied / rental / vacant / business）；留空为自住"),
        Column("owner_id_number", "产权人身份证号", aliases=("房主身份证号",),
               doc="产权人须已作为人员导入；留空表示无登记产权人", mask_as="id_number"),
        Column("owner_name", "产权人姓名", aliases=("房主姓名", "产权人"),
               doc="留空则取产权人身份证号对应人员的姓名"),
        Column("owner_phone", "产权人电话", aliases=("房主电话",), doc="11位手机号", mask_as="owner_phone"),
        Column("area_m2", "建筑面积", aliases=("面积", "建筑面积(平方米)"), doc="平方米，不小于0"),
        VERIFICATION,
        RECORD_ID,
    ),
    "units": (
        Column("credit_code", "统一社会信用代码", required=True, aliases=("信用代码",),
               doc="18位，按 GB 32100 检查校验位"),
        Column("name", "单位名称", required=True, aliases=("名称",), doc="不超过128字"),
        Column("kind", "单位类型", aliases=("类型",), doc="自由填写，如 企业、商铺"),
        Column("address_code", "地址编码", required=True, aliases=("单位地址编码",),
               doc="单位所在标准地址编码（须已导入）"),
        Column("legal_person", "法定代表人", aliases=("负责人",), doc="不超过64字"),
        Column("phone", "联系电话", aliases=("电话",), doc="手机号或固定电话（如 0598-8221234）", mask_as="phone"),
        Column("staff_count", "从业人数", aliases=("员工人数",), doc="不小于0的整数；留空为0"),
        VERIFICATION,
        RECORD_ID,
    ),
    "vehicles": (
        Column("plate", "车牌号", required=True, aliases=("号牌号码", "车牌"), doc="如 闽G12345、闽GD12345（新能源）"),
        Column("plate_color", "号牌颜色", aliases=("车牌颜色",),
               doc="蓝/黄/绿/白/黑（或 blue/yellow/green/white/black）；留空时8位新能源号牌为绿，其余为蓝"),
        Column("brand", "品牌", aliases=("车辆品牌",), doc="不超过32字"),
        Column("color", "车身颜色", aliases=("颜色",), doc="不超过16字"),
        Column("owner_id_number", "车主身份证号", aliases=("所有人身份证号",),
               doc="车主须已作为人员导入；车辆归属地址取车主现住址。县级管理员导入时必填", mask_as="id_number"),
        RECORD_ID,
    ),
}

KINDS: tuple[str, ...] = tuple(COLUMNS)

# Natural key of each kind: records are matched (upserted) on it.
KEY_FIELD: dict[str, str] = {"regions": "code", "addresses": "code", "persons": "id_number",
                             "houses": "address_code", "units": "credit_code", "vehicles": "plate"}

KIND_LABELS: dict[str, str] = {"regions": "行政区划", "addresses": "标准地址", "persons": "实有人口",
                               "houses": "实有房屋", "units": "实有单位", "vehicles": "车辆"}

_NOTE_RE = re.compile(r"[（(][^）)]*[）)]")


def normalize_header(text: object) -> str:
    """Canonical form of a header cell for matching."""
    s = str(text or "").replace("\ufeff", "").strip()
    s = _NOTE_RE.sub("", s)
    return "".join(s.split()).rstrip("*＊").lower()


def header_index(kind: str) -> dict[str, Column]:
    """normalized header text -> Column, for every accepted spelling of each column of kind."""
    out: dict[str, Column] = {}
    for col in COLUMNS[kind]:
        for name in (col.zh, col.field, *col.aliases):
            out.setdefault(normalize_header(name), col)
    return out


def columns_markdown(kind: str) -> str:
    """The markdown table of kind's columns (docs/import-format.md is written from it)."""
    lines = ["| 列名（中文） | 列名（英文） | 必填 | 说明 |", "|---|---|---|---|"]
    for col in COLUMNS[kind]:
        req = "是" if col.required else ("列必须有，可留空" if col.header_required else "")
        doc = col.doc + (f"（也接受：{'、'.join(col.aliases)}）" if col.aliases else "")
        lines.append(f"| {col.zh} | {col.field} | {req} | {doc} |")
    return "\n".join(lines)
