"""居安工程 rollout: cameras per village / town / county by siting category, the share of occupied village buildings
with a camera against the 10% (2021) / 50% (2022) targets, and the early target of 1,750 channels by end of April
2021 — all targets from the rule file."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import insert

from anfang.app import create_app
from anfang.config import Settings
from anfang.construction.rollout import (
    cached_village_tallies,
    early_target,
    house_share_target,
    load_rollout_rules,
    roll_up,
    village_tallies,
    village_tallies_full,
)
from anfang.devices.service import DeviceService
from anfang.registry.models import Address, House
from test_web import login
from world import build

XIAYANG = "350404001201"  # 下洋村 (village), one occupied building 下洋村1号


def test_targets_come_from_the_rule_file() -> None:
    r = load_rollout_rules()
    assert (r.early_channels, r.early_by.isoformat()) == (1750, "2021-04-30")
    assert r.year_targets[2021] == 6190
    assert (house_share_target(2020), house_share_target(2021), house_share_target(2022),
            house_share_target(2025)) == (None, 0.10, 0.50, 0.50)
    assert set(r.places) == {"village_entrance", "intersection", "construction_site", "residence"}


def _village(store, w) -> None:
    svc = DeviceService(store)
    april = datetime(2021, 4, 20, tzinfo=UTC)
    may = datetime(2021, 5, 20, tzinfo=UTC)
    svc.upsert("gb28181", "35040400001320000001", type_code="132", community_code=XIAYANG,
               place="village_entrance", registered_at=april, attributes={"channels": 2})
    svc.upsert("gb28181", "35040400001320000002", type_code="132", community_code=XIAYANG, place="intersection",
               registered_at=april)
    svc.upsert("gb28181", "35040400001320000003", type_code="132", community_code=XIAYANG, place="residence",
               address_id=w.addr["xy-1"], registered_at=may)
    svc.upsert("mqtt", "xy-door", community_code=XIAYANG, place="village_entrance",
               attributes={"subsystem": "access_control"}, registered_at=april)  # not a camera
    with store.session() as s:  # a second occupied building without a camera, and a vacant one
        for n, use in ((2, "rental"), (3, "vacant")):
            a = s.execute(insert(Address).returning(Address.id), [dict(
                code=f"{XIAYANG}000{n}", parent_id=w.addr["xy"], level="building", name=f"下洋村{n}号",
                full_name=f"福建省三明市三元区列东街道下洋村下洋村{n}号", county_code="350404",
                town_code="350404001000", community_code=XIAYANG)]).scalar_one()
            s.add(House(address_id=a, use=use))


def test_village_tallies_computed_once_a_minute_equal_the_full_walk_per_scope(store) -> None:
    """The 大屏 and the rollout pages read the city's village tallies computed at most once a minute: restricted to
    a user's villages they equal the full walk with his scope; a camera added shows after the refresh, not before."""
    from sqlalchemy import true

    from anfang.devices.models import Device

    w = build(store)
    _village(store, w)
    tallies, at = cached_village_tallies(store)
    assert {k: x.to_dict() for k, x in tallies.items()} == \
        {k: x.to_dict() for k, x in village_tallies_full(store).items()}
    county, _ = cached_village_tallies(store, lambda c: c.startswith("350404"))
    scoped = village_tallies_full(store, Device.community_code.like("350404%"), true())
    assert {k: x.to_dict() for k, x in county.items()} == \
        {k: x.to_dict() for k, x in scoped.items() if k.startswith("350404")}
    assert cached_village_tallies(store, lambda c: False)[0] == {}
    DeviceService(store).upsert("gb28181", "35040400001320000009", type_code="132", community_code=XIAYANG,
                                place="intersection")
    again, at2 = cached_village_tallies(store)  # within the minute: the same computation
    assert again[XIAYANG].channels == 4 and at2 == at
    fresh, at3 = cached_village_tallies(store, max_age_s=0, background=False)
    assert fresh[XIAYANG].channels == 5 and at3 > at
    assert {k: x.to_dict() for k, x in fresh.items()} == \
        {k: x.to_dict() for k, x in village_tallies_full(store).items()}


def test_cameras_and_house_share_per_village_town_county(store) -> None:
    w = build(store)
    _village(store, w)
    t = village_tallies(store)
    v = t[XIAYANG]
    assert v.channels == 4 and dict(v.by_place) == {"village_entrance": 2, "intersection": 1, "residence": 1}
    assert (v.buildings, v.with_camera, v.house_share) == (2, 1, 0.5)
    # the database's aggregates give what the walk over the whole address tree gives
    assert {k: x.to_dict() for k, x in t.items()} == {k: x.to_dict() for k, x in village_tallies_full(store).items()}
    town = roll_up(t, "town", {"350404001000": "列东街道"})
    assert [(x.code, x.name, x.channels) for x in town] == [("350404001000", "列东街道", 4)]
    county = {x.code: x for x in roll_up(t, "county")}
    assert county["350404"].to_dict(0.5)["house_below_target"] is False
    assert county["350404"].to_dict(0.6)["house_below_target"] is True


def test_early_target_counts_channels_registered_by_end_of_april(store) -> None:
    w = build(store)
    _village(store, w)
    e = early_target(store)
    assert (e["target"], e["done"], e["met"]) == (1750, 3, False)  # the May camera does not count


def test_rollout_api_and_page_scoped(store, tmp_path) -> None:
    w = build(store)
    _village(store, w)
    DeviceService(store).upsert("gb28181", "35040500001320000009", type_code="132",
                                community_code="350405001001", place="intersection")  # urban: not 居安
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        login(c, "county")
        r = c.get("/api/construction/rollout?level=village&year=2021").json()
        assert [i["code"] for i in r["items"]] == [XIAYANG] and r["house_target"] == 0.1
        assert r["items"][0]["house_share"] == 0.5 and r["early"]["done"] == 3
        county = c.get("/api/construction/rollout").json()["items"]
        assert [(i["code"], i["channels"]) for i in county] == [("350404", 4)]
        page = c.get("/construction/rollout?level=town")
        assert page.status_code == 200 and "4月底前先行任务" in page.text and "列东街道" in page.text
        login(c, "resident")
        assert c.get("/api/construction/rollout").status_code == 403
