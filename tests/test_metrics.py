"""The seed's figures on the hand-checked world (see tests/world.py for the counts)."""

from __future__ import annotations

import pytest

from anfang.core.errors import ValidationError
from anfang.registry import metrics
from world import build


def rows_by_code(store, principal, level):
    return {r.code: r for r in metrics.compute(store, principal, level)}


def test_community_figures_hand_checked(store) -> None:
    w = build(store)
    ld = rows_by_code(store, w.users["city"], "community")["350404001001"]
    # plated addresses (floors excluded): gate, 2 buildings, 2 unit doors, 3 rooms = 8
    assert ld.counts.addresses == 8
    assert ld.rates["plate_installed"] == pytest.approx(7 / 8)
    assert ld.rates["plate_accurate"] == pytest.approx(6 / 8)
    assert ld.rates["plate_labelled"] == pytest.approx(7 / 8)
    assert ld.rates["persons_verified"] == pytest.approx(2 / 4)
    assert ld.rates["houses_verified"] == pytest.approx(2 / 3)
    assert ld.rates["units_verified"] == pytest.approx(1.0)
    assert set(ld.below) == {"plate_installed", "plate_accurate", "plate_labelled", "persons_verified",
                             "houses_verified"}
    xy = rows_by_code(store, w.users["city"], "community")["350404001201"]
    assert xy.below == [] and xy.rates["units_verified"] is None  # no units: no rate, not 0%


def test_rollup_to_county_and_city(store) -> None:
    w = build(store)
    county = rows_by_code(store, w.users["city"], "county")
    sy, sx = county["350404"], county["350405"]
    assert sy.name == "三元区"
    assert (sy.counts.addresses, sy.counts.plate_installed, sy.counts.plate_accurate) == (10, 9, 8)
    assert (sy.counts.persons, sy.counts.persons_verified) == (5, 3)
    assert (sx.counts.units, sx.counts.units_verified) == (1, 0)
    city = rows_by_code(store, w.users["city"], "city")["350400"]
    assert (city.counts.addresses, city.counts.persons, city.counts.persons_verified) == (14, 6, 4)
    assert city.rates["houses_verified"] == pytest.approx(4 / 5)
    town = rows_by_code(store, w.users["city"], "town")
    assert set(town) == {"350404001000", "350405001000"}


def test_figures_respect_jurisdiction(store) -> None:
    w = build(store)
    assert set(rows_by_code(store, w.users["county"], "county")) == {"350404"}
    grid = rows_by_code(store, w.users["grid"], "community")["350404001001"]
    # grid G-LD-1 holds the gate, 1栋, its unit door and rooms 101/102: 5 plated addresses, 3 persons
    assert grid.counts.addresses == 5 and grid.counts.persons == 3


def test_below_target_lists_the_records(store) -> None:
    w = build(store)
    city = w.users["city"]
    persons = metrics.below_target(store, city, "persons_verified", "350404")
    assert {r["label"] for r in persons} == {"王芳", "陈强"}
    plates = metrics.below_target(store, city, "plate_accurate", "350404001001")
    assert {r["address"][-12:] for r in plates} == {"列东社区1栋1单元1层102室"[-12:], "列东社区2栋1单元1层101室"[-12:]}
    units = metrics.below_target(store, city, "units_verified")
    assert [r["label"] for r in units] == ["府西物业公司"]
    assert metrics.below_target(store, w.users["county"], "units_verified") == []
    with pytest.raises(ValidationError):
        metrics.below_target(store, city, "nonsense")
