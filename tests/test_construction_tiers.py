"""Community tiers (seed 三、(三)): each tier rule checked against hand-built communities."""

from __future__ import annotations

import pytest

from anfang.construction.tiers import Item, evaluate, load_rules, parse_rules, subsystem_of

BASIC_VIDEO = ["community_entrance", "parking_entrance", "perimeter", "elevator", "monitoring_centre",
               "public_area", "main_passage", "parking_area"]


def basic_community() -> list[tuple[str, str]]:
    return ([("vehicle_recognition", "vehicle_entrance"), ("access_control", "community_entrance")]
            + [("video", p) for p in BASIC_VIDEO])


def improved_community() -> list[tuple[str, str]]:
    return basic_community() + [("access_control", "unit_entrance")]


def advanced_community() -> list[tuple[str, str]]:
    return improved_community() + [
        ("perimeter_alarm", "perimeter"), ("vehicle_recognition", "parking_entrance"),
        ("monitoring_centre", "monitoring_centre"),
        *[("video", p) for p in ["unit_entrance", "gas_station", "water_pump_room", "power_room"]]]


def test_missing_only_unit_entrance_access_control_is_basic_with_exactly_that_missing() -> None:
    r = evaluate(basic_community())
    assert r.met is not None and r.met.zh == "基本型"
    assert r.next is not None and r.next.zh == "提高型"
    assert r.missing == (Item("access_control", "unit_entrance"),)
    assert load_rules().label(r.missing[0]) == "楼栋（楼道）单元出入口 · 智能门禁"


def test_empty_community_meets_no_tier_and_lacks_every_basic_item() -> None:
    r = evaluate([])
    assert r.met is None and r.next is not None and r.next.code == "basic"
    assert len(r.missing) == 10


@pytest.mark.parametrize("drop", [("vehicle_recognition", "vehicle_entrance"),
                                  ("access_control", "community_entrance"),
                                  *[("video", p) for p in BASIC_VIDEO]])
def test_basic_requires_each_of_its_items(drop: tuple[str, str]) -> None:
    r = evaluate([x for x in basic_community() if x != drop])
    assert r.met is None
    assert r.missing == (Item(*drop),)


def test_video_at_the_wrong_place_does_not_count() -> None:
    have = [x for x in basic_community() if x != ("video", "elevator")] + [("video", "gas_station")]
    assert evaluate(have).missing == (Item("video", "elevator"),)


def test_improved_community_lacks_exactly_the_advanced_extras() -> None:
    r = evaluate(improved_community())
    assert r.met is not None and r.met.zh == "提高型" and r.next is not None and r.next.zh == "先进型"
    assert set(r.missing) == {
        Item("perimeter_alarm", "perimeter"), Item("vehicle_recognition", "parking_entrance"),
        Item("monitoring_centre", "monitoring_centre"), Item("video", "unit_entrance"),
        Item("video", "gas_station"), Item("video", "water_pump_room"), Item("video", "power_room")}


@pytest.mark.parametrize("drop", [("perimeter_alarm", "perimeter"), ("vehicle_recognition", "parking_entrance"),
                                  ("monitoring_centre", "monitoring_centre"), ("video", "unit_entrance"),
                                  ("video", "gas_station"), ("video", "water_pump_room"), ("video", "power_room")])
def test_advanced_requires_each_of_its_extra_items(drop: tuple[str, str]) -> None:
    r = evaluate([x for x in advanced_community() if x != drop])
    assert r.met_code == "improved" and r.missing == (Item(*drop),)


def test_advanced_community_meets_the_top_tier() -> None:
    r = evaluate(advanced_community())
    assert r.met_code == "advanced" and r.next is None and r.missing == ()


def test_advanced_items_do_not_lift_a_community_missing_a_basic_item() -> None:
    have = [x for x in advanced_community() if x != ("access_control", "community_entrance")]
    r = evaluate(have)
    assert r.met is None and r.missing == (Item("access_control", "community_entrance"),)


def test_places_the_community_does_not_have_are_not_required() -> None:
    have = [x for x in basic_community() if x != ("video", "elevator")]
    assert evaluate(have).met is None
    assert evaluate(have, not_applicable=["elevator"]).met_code == "basic"


def test_subsystem_from_attributes_or_camera_type_code() -> None:
    assert subsystem_of({"subsystem": "access_control"}, "132") == "access_control"
    assert subsystem_of({}, "132") == "video"
    assert subsystem_of(None, "118") is None


def test_rules_with_a_typo_are_rejected() -> None:
    data = {"version": "x", "subsystems": {"video": {}}, "places": {"perimeter": {}},
            "tiers": [{"code": "basic", "zh": "基本型", "en": "basic", "require": {"video": ["perimetre"]}}]}
    with pytest.raises(ValueError, match="perimetre"):
        parse_rules(data)
    with pytest.raises(LookupError):
        load_rules("1999")
