from datetime import date

import pytest

from anfang.core import ids
from anfang.core.errors import ValidationError

# Published GB 11643 example number (the standard's annex) and a Fujian one built by the algorithm.
KNOWN_VALID = ["11010519491231002X", "440524188001010014"]


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_known_valid_id_numbers_parse(number: str) -> None:
    info = ids.parse_id_number(number)
    assert info.number == number
    assert info.gender in ("M", "F")


def test_id_number_fields_decoded() -> None:
    info = ids.parse_id_number("11010519491231002x")  # lower-case x accepted
    assert info.birth_date == date(1949, 12, 31)
    assert info.gender == "F"  # 17th digit 2 is even
    assert info.region_code == "110105"


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("11010519491231002", "18位"),
        ("110105194912310021", "校验位"),
        ("11010519491331002X", "出生日期"),
        ("1101051949123100AX", "非法字符"),
        ("00010519491231002X", "地区码"),
    ],
)
def test_invalid_id_numbers_name_the_fault(number: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ids.parse_id_number(number)
    assert fragment in exc.value.message


def test_made_id_numbers_roundtrip() -> None:
    n = ids.make_id_number("350404", date(1990, 2, 3), 123)
    info = ids.parse_id_number(n)
    assert info.birth_date == date(1990, 2, 3) and info.gender == "M"


def test_credit_code_check_character() -> None:
    assert ids.validate_credit_code("91350100M000100Y43") == "91350100M000100Y43"  # a published valid code
    with pytest.raises(ValidationError):
        ids.validate_credit_code("91350100M000100Y44")
    made = ids.make_credit_code("350404", "MA2Y00001")
    assert ids.validate_credit_code(made) == made


@pytest.mark.parametrize("plate", ["闽G12345", "闽GD12345", "闽G12345D", "闽G1234学", "闽 G·A1234"])
def test_valid_plates(plate: str) -> None:
    assert ids.validate_plate(plate).startswith("闽G")


@pytest.mark.parametrize("plate", ["G12345", "闽I12345", "闽G1234", "ABCDEFG"])
def test_invalid_plates(plate: str) -> None:
    with pytest.raises(ValidationError):
        ids.validate_plate(plate)


def test_phone_and_region_levels() -> None:
    assert ids.validate_phone("+86 138-0598-1001") == "13805981001"
    with pytest.raises(ValidationError):
        ids.validate_phone("12345")
    assert ids.region_level("350400") == "city"
    assert ids.region_level("350404") == "county"
    assert ids.region_level("350404001000") == "town"
    assert ids.region_level("350404001001") == "community"
