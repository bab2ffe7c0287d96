"""Identifier codes of the national standards used by the registry.

- GB 11643-1999 citizen identity numbers (18 characters, ISO 7064 MOD 11-2 check character).
- GB 32100-2015 unified social credit codes of organisations (18 characters, MOD 31 check character).
- GB/T 2260 administrative division codes (6 digits) and their 12-digit statistical extension
  (town: 9 digits + 000, community / village: 12 digits).
- Motor vehicle plates (GA 36), e.g. 闽G12345 / 闽GD12345 (new-energy).

These are a few lines of arithmetic each; no maintained PyPI package covers all of them together with
the Chinese error messages we need, so they are written here and tested against known-valid numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from anfang.core.errors import ValidationError

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$", re.ASCII)  # ASCII: \d alone also matches '٣', '３' ...



def ascii_digits(value: object, max_len: int | None = None) -> bool:
    """True for a non-empty str of ASCII digits 0-9 only (and at most ``max_len`` of them). ``str.isdigit`` also
    accepts '²' (which ``int`` then refuses) and ``int`` accepts '٣' or '３' — a number from the wire is checked
    with this before ``int``."""
    return (isinstance(value, str) and value.isascii() and value.isdigit()
            and (max_len is None or len(value) <= max_len))


# GB/T 2260 province-level codes (first two digits), plus 9x used by foreigners' permanent residence IDs (2023).
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54,
     61, 62, 63, 64, 65, 71, 81, 82, 83, 91, 92, 93, 94, 95, 96, 97, 98, 99}
)


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


@dataclass(frozen=True, slots=True)
class IdNumberInfo:
    number: str
    region_code: str
    birth_date: date
    gender: str  # "M" | "F"


def parse_id_number(raw: str, *, today: date | None = None) -> IdNumberInfo:
    """Validate an 18-character identity number and return what it encodes.

    Raises ValidationError with a zh-CN message naming the first fault found.
    """
    if raw is None:
        raise ValidationError("身份证号为空")
    number = str(raw).strip().upper()
    if len(number) != 18:
        raise ValidationError(f"身份证号应为18位，实际{len(number)}位")
    if not _ID_RE.match(number):
        raise ValidationError("身份证号含非法字符（前17位须为数字，末位为数字或X）")
    if int(number[:2]) not in PROVINCE_CODES:
        raise ValidationError(f"身份证号地区码无效：{number[:6]}")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValidationError(f"身份证号出生日期无效：{number[6:14]}") from None
    today = today or date.today()
    if birth > today or birth.year < 1880:
        raise ValidationError(f"身份证号出生日期不合理：{birth.isoformat()}")
    expected = id_check_char(number[:17])
    if number[17] != expected:
        raise ValidationError(f"身份证号校验位错误：应为{expected}，实际为{number[17]}")
    gender = "M" if int(number[16]) % 2 == 1 else "F"
    return IdNumberInfo(number=number, region_code=number[:6], birth_date=birth, gender=gender)


def make_id_number(region6: str, birth: date, seq3: int) -> str:
    """Build a valid identity number (used by the demo generator and tests)."""
    first17 = f"{region6}{birth:%Y%m%d}{seq3:03d}"
    return first17 + id_check_char(first17)


# GB 32100-2015 unified social credit code.
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def validate_credit_code(raw: str) -> str:
    code = str(raw or "").strip().upper()
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        raise ValidationError("统一社会信用代码应为18位数字或大写字母（不含I、O、Z、S、V）")
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        raise ValidationError(f"统一社会信用代码校验位错误：应为{expected}")
    return code


def make_credit_code(region6: str, serial9: str, registry: str = "9", kind: str = "1") -> str:
    first17 = f"{registry}{kind}{region6}{serial9}"
    return first17 + uscc_check_char(first17)


_PHONE_RE = re.compile(r"^1[3-9]\d{9}$", re.ASCII)


def validate_phone(raw: str) -> str:
    phone = re.sub(r"[\s-]", "", str(raw or ""))
    if phone.startswith("+86"):
        phone = phone[3:]
    if not _PHONE_RE.match(phone):
        raise ValidationError(f"手机号码无效：{raw}")
    return phone


_PROVINCE_ABBR = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_RE = re.compile(
    rf"^[{_PROVINCE_ABBR}][A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{{5}}|[DF][A-HJ-NP-Z0-9]{{5}}|[A-HJ-NP-Z0-9]{{5}}[DF]"
    r"|[A-HJ-NP-Z0-9]{4}[挂学警港澳])$"
)


def validate_plate(raw: str) -> str:
    plate = str(raw or "").strip().upper().replace(" ", "").replace("·", "")
    if not _PLATE_RE.match(plate):
        raise ValidationError(f"车牌号无效：{raw}")
    return plate


# Statistical division codes (GB/T 2260 extended to 12 digits: 6 county + 3 town + 3 village).
def region_level(code: str) -> str:
    """'province' | 'city' | 'county' | 'town' | 'community' for a 6/9/12-digit code."""
    if not code.isdigit() or len(code) not in (6, 9, 12):
        raise ValidationError(f"行政区划代码无效：{code}")
    if len(code) == 6:
        if code[2:] == "0000":
            return "province"
        if code[4:] == "00":
            return "city"
        return "county"
    if len(code) == 9 or code[9:] == "000":
        return "town"
    return "community"


def normalize_region_code(code: str) -> str:
    """12-digit form of a town code given as 9 digits; other forms unchanged."""
    code = code.strip()
    return code + "000" if len(code) == 9 else code
