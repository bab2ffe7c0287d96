"""The demo generator: reproducible, valid identifiers, consistent jurisdiction and nested demo logins.

Runs on SQLite and PostgreSQL (the `store` fixture); the second store of the determinism test is a SQLite file, so on
the PostgreSQL half it also checks that both backends receive identical data.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from anfang.core.errors import Conflict, ValidationError
from anfang.core.ids import parse_id_number, validate_credit_code, validate_phone, validate_plate
from anfang.core.regions import COUNTIES
from anfang.demo.generator import DEMO_PASSWORD, REFERENCE_DATE, DemoSummary, generate
from anfang.registry.models import (
    Address,
    Grid,
    House,
    Person,
    PoliceArea,
    PoliceStation,
    Region,
    Residence,
    Vehicle,
    WorkUnit,
)
from anfang.registry.vocab import PERSON_LABELS
from anfang.security.scope import address_condition, person_condition
from anfang.security.service import authenticate, principal_of
from anfang.store.engine import Store
from anfang.store.migrate import upgrade

SCALE = 0.2
TABLES = (Region, PoliceStation, PoliceArea, Grid, Address, Person, House, Residence, WorkUnit, Vehicle)


def _dump(store: Store) -> dict[str, list[tuple]]:
    out = {}
    with store.session() as s:
        for model in TABLES:
            table = model.__table__
            order = table.primary_key.columns.values()
            out[table.name] = [tuple(r) for r in s.execute(select(table).order_by(*order)).all()]
    return out


def _age(birth: date) -> int:
    t = REFERENCE_DATE
    return t.year - birth.year - ((t.month, t.day) < (birth.month, birth.day))


def test_same_seed_same_data(store: Store, tmp_path) -> None:
    stages: list[tuple[str, int, int]] = []
    first = generate(store, scale=SCALE, seed=7, progress=lambda *a: stages.append(a))
    url = f"sqlite:///{tmp_path / 'second.db'}"
    upgrade(url)
    other = Store(url)
    try:
        second = generate(other, scale=SCALE, seed=7)
        assert first == second
        a, b = _dump(store), _dump(other)
        for table in a:
            assert a[table] == b[table], table
    finally:
        other.dispose()
    expected = {"生成行政区划", "生成地址", "生成房屋和人口", "生成实有单位", "生成车辆", "创建演示账号"}
    assert expected <= {s for s, _, _ in stages}
    assert all(0 <= done <= total for _, done, total in stages)
    # The summary counts what was written.
    assert len(a["persons"]) == first.persons > 500
    assert len(a["addresses"]) == first.addresses
    assert len(a["houses"]) == first.houses
    assert len(a["work_units"]) == first.units
    assert len(a["vehicles"]) == first.vehicles
    assert first.counties == 11 and first.communities == sum(1 for r in a["regions"] if r[3] == "community")


def test_records_are_valid(store: Store) -> None:
    summary = generate(store, scale=SCALE)
    assert isinstance(summary, DemoSummary)
    with store.session() as s:
        regions = {r.code: r for r in s.scalars(select(Region))}
        assert {c for c, r in regions.items() if r.level == "county"} == set(COUNTIES)
        for r in regions.values():
            if r.level != "city":
                parent = regions[r.parent_code]
                assert r.full_name == parent.full_name + r.name
                assert r.code.startswith(parent.code[: {"county": 4, "town": 6, "community": 9}[r.level]])
            if r.level == "community":
                assert r.kind in ("urban", "village") and len(r.code) == 12
                assert r.name.endswith("社区" if r.kind == "urban" else "村")
        grids = {g.id: g for g in s.scalars(select(Grid))}
        area_of_community: dict[str, set[int]] = {}
        plated = missing = 0
        for a in s.scalars(select(Address)):
            community = regions[a.community_code]
            assert a.full_name.startswith(community.full_name)
            assert a.code.startswith(a.community_code)
            assert a.county_code == a.community_code[:6] and a.town_code == a.community_code[:9] + "000"
            assert a.police_area_id is not None and a.grid_id is not None
            assert grids[a.grid_id].community_code == a.community_code
            area_of_community.setdefault(a.community_code, set()).add(a.police_area_id)
            assert 116.4 <= a.lon <= 118.6 and 25.5 <= a.lat <= 27.1
            if a.level != "floor":
                plated += 1
                missing += not (a.plate_installed and a.plate_accurate and a.plate_labelled)
        assert all(len(areas) == 1 for areas in area_of_community.values())
        assert set(area_of_community) == {c for c, r in regions.items() if r.level == "community"}
        assert 0 < missing < plated * 0.1  # metrics fall short of 100% somewhere, but not by much

        persons = list(s.scalars(select(Person)))
        verified = 0
        for p in persons:
            info = parse_id_number(p.id_number, today=REFERENCE_DATE)
            assert info.gender == p.gender and info.birth_date == p.birth_date
            assert p.population_type in ("registered", "floating", "overseas")
            if p.population_type == "overseas":
                assert p.id_number[0] == "9"
            elif p.population_type == "registered":
                assert p.id_number.startswith("3504")
            else:
                assert not p.id_number.startswith("3504")
            if p.phone is not None:
                assert validate_phone(p.phone) == p.phone
            assert set(p.labels) <= set(PERSON_LABELS)
            assert ("minor" in p.labels) == (_age(p.birth_date) < 18)
            if "elderly_alone" in p.labels:
                assert _age(p.birth_date) >= 70
            assert p.address_id is not None
            if p.verification == "verified":
                verified += 1
                assert p.verified_by and p.verified_at is not None
        assert 0.9 < verified / len(persons) < 0.99
        assert len({p.phone for p in persons if p.phone}) == sum(1 for p in persons if p.phone)

        houses = {h.id: h for h in s.scalars(select(House))}
        leaf_ids = {a_id for (a_id,) in s.execute(
            select(Address.id).where(Address.level.in_(("room", "building")), ~Address.id.in_(
                select(Address.parent_id).where(Address.parent_id.is_not(None)))))}
        assert {h.address_id for h in houses.values()} == leaf_ids
        by_id = {p.id: p for p in persons}
        for r in s.scalars(select(Residence)):
            house = houses[r.house_id]
            assert by_id[r.person_id].address_id == house.address_id
            assert (r.role == "tenant") == (house.use == "rental")
        for u in s.scalars(select(WorkUnit)):
            assert validate_credit_code(u.credit_code) == u.credit_code
            assert u.credit_code[2:8] == regions[u.credit_code[2:8]].code
        for v in s.scalars(select(Vehicle)):
            assert validate_plate(v.plate) == v.plate and v.plate.startswith("闽G")
            assert (v.plate_color == "green") == (len(v.plate) == 8)
            assert by_id[v.owner_person_id].address_id == v.address_id


def test_demo_logins_nest(store: Store) -> None:
    summary = generate(store, scale=SCALE)
    logins = {login.username: login for login in summary.logins}
    assert list(logins) == ["city", "county", "police", "grid", "property", "resident"]
    with store.session() as s:
        principals = {}
        for name, login in logins.items():
            assert login.password == DEMO_PASSWORD and login.scope and login.display_name
            user = authenticate(s, name, DEMO_PASSWORD)
            assert user.role == login.role
            principals[name] = principal_of(user, "test")

        def addresses(name: str) -> set[int]:
            return set(s.scalars(select(Address.id).where(address_condition(principals[name]))))

        def persons(name: str) -> set[int]:
            p = principals[name]
            return set(s.scalars(select(Person.id).outerjoin(Address, Person.address_id == Address.id)
                                 .where(person_condition(p))))

        chain = ["city", "county", "police", "property", "grid", "resident"]
        for see in (addresses, persons):
            sets = [see(n) for n in chain]
            for i in range(1, len(chain)):
                assert sets[i] and sets[i] < sets[i - 1], (see.__name__, chain[i - 1], chain[i])

        p = principals
        assert p["county"].county_code == "350404"
        resident = s.get(Person, p["resident"].person_id)
        home = s.get(Address, resident.address_id)
        assert home.grid_id == p["grid"].grid_id
        assert home.community_code == p["property"].community_code
        assert home.police_area_id == p["police"].police_area_id
        assert home.county_code == p["county"].county_code
        assert s.get(Grid, p["grid"].grid_id).community_code == p["property"].community_code
        assert logins["grid"].scope.startswith(logins["property"].scope)

    with pytest.raises(Conflict):
        generate(store, scale=SCALE)


def test_scale_must_be_positive(store: Store) -> None:
    with pytest.raises(ValidationError):
        generate(store, scale=0)
