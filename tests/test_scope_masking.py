"""Each role sees exactly its jurisdiction, with personal data masked as its role requires (both backends)."""

from __future__ import annotations

import pytest

from anfang.core.errors import Forbidden, NotFound
from anfang.registry.schemas import PersonIn, PersonPatch
from anfang.registry.service import RegistryService
from anfang.security.scope import Principal
from world import World, build


@pytest.fixture
def world(store) -> World:
    return build(store)


@pytest.fixture
def svc(store) -> RegistryService:
    return RegistryService(store)


def visible_names(svc: RegistryService, p: Principal) -> set[str]:
    return {x["name"] for x in svc.search_persons(p, size=200).items}


EXPECTED = {
    "city": {"张伟", "李娜", "王芳", "陈强", "林秀英", "黄磊"},
    "county": {"张伟", "李娜", "王芳", "陈强", "林秀英"},  # 三元区 only, not 沙县区's 黄磊
    "police": {"张伟", "李娜", "王芳", "陈强"},  # 警务区 LD-1 = 列东社区
    "grid": {"张伟", "李娜", "王芳"},  # grid G-LD-1 = 列东 1栋 (陈强 lives in 2栋, grid G-LD-2)
    "property": {"张伟", "李娜", "王芳", "陈强"},  # 列东社区
    "resident": {"李娜"},  # himself only
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_person_search_is_scoped_by_role(world: World, svc: RegistryService, role: str) -> None:
    assert visible_names(svc, world.users[role]) == EXPECTED[role]


@pytest.mark.parametrize("role", ["county", "police", "grid", "property", "resident"])
def test_out_of_scope_person_is_not_found(world: World, svc: RegistryService, role: str) -> None:
    with pytest.raises(NotFound):
        svc.get_person(world.users[role], world.person["huang"])  # 沙县区: outside everyone's scope but city


def test_out_of_scope_lookup_by_id_number_finds_nothing(world: World, svc: RegistryService) -> None:
    page = svc.search_persons(world.users["grid"], id_number=world.id_number["chen"])
    assert page.items == []
    page = svc.search_persons(world.users["police"], id_number=world.id_number["chen"])
    assert [x["name"] for x in page.items] == ["陈强"]


def test_masking_per_role(world: World, svc: RegistryService) -> None:
    full_id, full_phone = world.id_number["zhang"], world.phone["zhang"]
    shown = {role: svc.get_person(world.users[role], world.person["zhang"])
             for role in ("city", "county", "police", "grid", "property")}
    # officer: full ID and phone
    assert shown["police"]["id_number"] == full_id and shown["police"]["phone"] == full_phone
    # grid worker: masked ID, full phone (he calls residents)
    assert shown["grid"]["id_number"] == full_id[:6] + "********" + full_id[-4:]
    assert shown["grid"]["phone"] == full_phone
    # admins: both masked; property staff: masked ID, and zhang's phone in full because he owns 101 (an owner's
    # phone is shown alike on his house and on his own record)
    for role in ("city", "county", "property"):
        assert shown[role]["id_number"] != full_id and "*" in shown[role]["id_number"]
    for role in ("city", "county"):
        assert shown[role]["phone"] == full_phone[:3] + "****" + full_phone[-4:]
    assert shown["property"]["phone"] == full_phone
    # the resident sees his own record in full
    me = svc.get_person(world.users["resident"], world.person["li"])
    assert me["id_number"] == world.id_number["li"]


def test_masked_search_results_never_leak_full_numbers(world: World, svc: RegistryService) -> None:
    for role in ("city", "county", "property"):
        for item in svc.search_persons(world.users[role], size=200).items:
            assert item["id_number"] not in world.id_number.values()
            if not (role == "property" and item["id"] == world.person["zhang"]):  # an owner: his phone in full
                assert item["phone"] not in world.phone.values()


def test_house_owner_phone_by_role(world: World, svc: RegistryService) -> None:
    prop = svc.get_house(world.users["property"], world.house["h-ld-101"])
    assert prop["owner_phone"] == "13905980000"
    grid = svc.get_house(world.users["grid"], world.house["h-ld-101"])
    assert grid["owner_phone"] == "13905980000"  # a role that sees phones sees owners' phones too
    county = svc.get_house(world.users["county"], world.house["h-ld-101"])
    assert county["owner_phone"] == "139****0000"
    # residents' ID numbers in a house view are masked for property staff
    assert all("*" in r["id_number"] for r in prop["residents"])


def test_writes_outside_scope_are_refused(world: World, svc: RegistryService) -> None:
    from anfang.core.ids import make_id_number

    new = PersonIn(id_number=make_id_number("350404", __import__("datetime").date(2000, 1, 1), 77), name="赵六",
                   address_id=world.addr["fx-101"])
    with pytest.raises(Forbidden):
        svc.create_person(world.users["police"], new)  # 府西 is not his 警务区
    with pytest.raises(Forbidden):
        svc.create_person(world.users["property"], new.model_copy(update={"address_id": world.addr["ld-101"]}))
    created = svc.create_person(world.users["grid"], new.model_copy(update={"address_id": world.addr["ld-102"]}))
    assert created["name"] == "赵六" and "*" in created["id_number"]
    with pytest.raises(NotFound):
        svc.update_person(world.users["grid"], world.person["chen"], PersonPatch(phone="13900000000"))


def test_verification_marks_who_and_when(world: World, svc: RegistryService) -> None:
    out = svc.set_verification(world.users["grid"], "person", world.person["wang"], "verified")
    assert out["verified_by"] == "grid" and out["verified_at"]
    with pytest.raises(Forbidden):
        svc.set_verification(world.users["property"], "person", world.person["wang"], "verified")
    with pytest.raises(Forbidden):
        svc.set_verification(world.users["grid"], "person", world.person["huang"], "verified")


def test_address_tree_scoped(world: World, svc: RegistryService) -> None:
    roots = {a["name"] for a in svc.address_roots(world.users["county"])}
    assert roots == {"列东社区", "下洋村"}
    grid_root = svc.get_address(world.users["grid"], world.addr["ld"])
    assert {c["name"] for c in grid_root["children"]} == {"1栋"}  # 2栋 belongs to the other grid
    assert {r["name"] for r in svc.regions(world.users["county"], "350400")} == {"三元区"}
    assert {r["name"] for r in svc.regions(world.users["city"], "350400")} == {"三元区", "沙县区"}


def test_address_prefix_search(world: World, svc: RegistryService) -> None:
    page = svc.search_persons(world.users["city"], address_prefix="三明市三元区列东街道列东社区1栋")
    assert [x["name"] for x in page.items] == ["张伟", "李娜", "王芳"]  # ordered by address, then person
    page = svc.search_persons(world.users["city"], address_prefix="350404001201")  # by address code
    assert [x["name"] for x in page.items] == ["林秀英"]
    first = svc.search_persons(world.users["city"], address_prefix="福建省三明市", size=4)
    second = svc.search_persons(world.users["city"], address_prefix="福建省三明市", size=4, page=2)
    assert first.has_more and not second.has_more
    assert len(first.items) == 4 and len(second.items) == 2


def test_search_by_plate_and_label(world: World, svc: RegistryService) -> None:
    page = svc.search_persons(world.users["city"], plate="闽G12345")
    assert [x["name"] for x in page.items] == ["张伟"]
    svc.update_person(world.users["police"], world.person["wang"], PersonPatch(labels=["独居老人"]))
    page = svc.search_persons(world.users["police"], label="elderly_alone")
    assert [(x["name"], x["labels"]) for x in page.items] == [("王芳", ["elderly_alone"])]
