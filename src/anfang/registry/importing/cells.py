"""Cell values: enumerations, dates, booleans, numbers, phones, identity numbers and masked values."""

from __future__ import annotations

import re
from datetime import date

from anfang.core import ids
from anfang.core.errors import ValidationError
from anfang.registry import vocab
from anfang.registry.importing.report import RowFault, _Masked
from anfang.security.masking import mask_id_number, mask_phone


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
