"""Camera specification check (seed 五、(二))."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from anfang.construction.specs import check_camera, load_spec_rules

NOW = datetime(2021, 6, 1, 12, tzinfo=UTC)
GOOD = {"megapixels": 4, "capture": ["face", "body", "vehicle"], "colour_day_night": True, "ip_rating": "IP66",
        "gb28181": "2016", "retention_days": 30, "city_platform": True}


def items(attrs: dict, last: datetime | None = NOW - timedelta(minutes=5)) -> list[str]:
    return [f.item for f in check_camera(attrs, last, NOW)]


def test_a_camera_meeting_the_seed_minimum_is_compliant() -> None:
    assert check_camera(GOOD, NOW - timedelta(hours=1), NOW) == []


def test_each_shortfall_is_reported_with_a_chinese_message() -> None:
    bad = {**GOOD, "megapixels": 2, "ip_rating": 54, "retention_days": 15}
    found = check_camera(bad, NOW, NOW)
    assert [f.item for f in found] == ["megapixels", "ip_rating", "retention"]
    assert "低于 4MP" in found[0].message and "IP54" in found[1].message and "15 天" in found[2].message


def test_missing_capture_kind_colour_standard_and_platform() -> None:
    bad = {**GOOD, "capture": ["face"], "colour_day_night": False, "gb28181": "2011", "city_platform": False}
    found = check_camera(bad, NOW, NOW)
    assert [f.item for f in found] == ["capture", "colour", "gb28181", "city_platform"]
    assert "人体、车辆" in found[0].message


def test_unrecorded_properties_are_non_compliant() -> None:
    assert items({}) == ["megapixels", "capture", "colour", "ip_rating", "gb28181", "retention", "city_platform"]


def test_captures_must_be_arriving() -> None:
    assert items(GOOD, None) == ["captures"]
    assert items(GOOD, NOW - timedelta(hours=25)) == ["captures"]
    assert items(GOOD, NOW - timedelta(hours=23)) == []


def test_thresholds_are_data_citing_the_seed() -> None:
    r = load_spec_rules()
    assert (r.min_megapixels, r.min_ip_rating, r.min_retention_days, r.gb28181_version) == (4, 65, 30, "2016")
    assert "五、(二)" in r.source
