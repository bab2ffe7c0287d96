"""One masking rule everywhere (issue 19 item 2): for every role, every page, API, export and plate view that
shows a person or a house owner shows his phone and ID number the same way, the way security/roles.py says.

Against `anfang serve` over the demo data (scale 0.2). For each role the test picks, in the role's scope, a house
whose owner lives in it and one other occupant of that address, then opens each view and finds, in the text the
user gets, the owner's phone, the occupant's phone and the owner's ID number either in full or masked - never
both, and always the same way on every view.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from anfang.demo.generator import generate
from anfang.doorplates.service import DoorplateService
from anfang.doorplates.tokens import load_keyring
from anfang.registry.exporter import export_rows
from anfang.registry.models import Address, House, Person
from anfang.security.masking import mask_id_number, mask_phone
from anfang.security.models import User
from anfang.security.roles import Role
from anfang.security.scope import Principal, address_condition
from anfang.security.service import principal_of
from anfang.security.watermark import Mark
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from liveserver import anfang_serve

ROLES = ["city_admin", "county_admin", "police", "grid_worker", "property_staff", "resident"]
# What the user must see, by role (docs/architecture.md, docs/security.md): owner's phone, another occupant's
# phone, the owner's ID number - True = in full.
EXPECTED = {
    "city_admin": (False, False, False),
    "county_admin": (False, False, False),
    "police": (True, True, True),
    "grid_worker": (True, True, False),
    "property_staff": (True, False, False),
    "resident": (True, True, True),
}
ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff]")  # export watermark characters


@dataclass
class Demo:
    base: str
    store: Store
    data_dir: Path
    logins: dict[str, tuple[str, str]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("masking")
    db_url = f"sqlite:///{(data_dir / 'anfang.db').as_posix()}"
    upgrade(db_url)
    store = Store(db_url)
    try:
        summary = generate(store, scale=0.2, seed=2021)
        logins = {str(x.role): (x.username, x.password) for x in summary.logins}
        with anfang_serve(data_dir) as base:
            yield Demo(base, store, data_dir, logins)
    finally:
        store.dispose()


def _principal(store: Store, username: str) -> Principal:
    with store.session() as s:
        u = s.scalar(select(User).where(User.username == username))
        assert u is not None
        return principal_of(u)


@dataclass
class Sample:
    owner: Person
    other: Person | None
    house_id: int
    address_id: int
    address: str


def _sample(store: Store, p: Principal) -> Sample:
    """An owner-occupied house in p's scope (the resident's own when p is a resident) and another occupant."""
    with store.session() as s:
        stmt = (select(House, Address).join(Address, House.address_id == Address.id)
                .join(Person, (Person.id == House.owner_person_id) & (Person.address_id == Address.id))
                .where(address_condition(p), Person.phone.is_not(None)).order_by(House.id))
        if p.role is Role.resident:
            stmt = stmt.where(Person.id == p.person_id)
        for house, a in s.execute(stmt.limit(50)):
            owner = s.get(Person, house.owner_person_id)
            others = [x for x in s.scalars(select(Person).where(Person.address_id == a.id, Person.id != owner.id,
                                                                 Person.phone.is_not(None)))]
            if others or p.role is Role.resident:
                s.expunge_all()
                return Sample(owner, others[0] if others and p.role is not Role.resident else None,
                              house.id, a.id, a.full_name)
    pytest.fail(f"no owner-occupied house with a phone in {p.role}'s scope in the demo data")


def _views(demo: Demo, p: Principal, x: Sample) -> dict[str, str]:
    """Every view of the sample the role can open: its text as the user gets it."""
    username, password = demo.logins[str(p.role)]
    token = DoorplateService(demo.store, load_keyring(demo.data_dir), data_dir=demo.data_dir).plate_for(
        x.address_id).token
    paths = [f"/persons?name={x.owner.name}", f"/persons/{x.owner.id}", f"/houses?address_prefix={x.address}",
             f"/houses/{x.house_id}", f"/addresses/{x.address_id}", f"/p/{token}",
             f"/api/persons?name={x.owner.name}", f"/api/persons/{x.owner.id}",
             f"/api/houses?address_prefix={x.address}", f"/api/houses/{x.house_id}", f"/api/addresses/{x.address_id}"]
    if x.other is not None:
        paths += [f"/persons/{x.other.id}", f"/api/persons/{x.other.id}"]
    out: dict[str, str] = {}
    with httpx.Client(base_url=demo.base, timeout=30) as c:
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        for path in paths:
            r = c.get(path)
            if r.status_code in (403, 404) and p.role is Role.resident:
                continue  # a resident sees only his own household
            assert r.status_code == 200, (p.role, path, r.status_code, r.text[:300])
            out[path] = r.text
    # the file an (approved, for roles that need approval) export writes
    for kind in ("persons", "houses"):
        if p.role is Role.resident:
            continue
        mark = Mark(request_id="t", fingerprint="0" * 12, username=p.username, display_name=p.username,
                    role=p.role.value, at=utcnow(), kind=kind, file_format="csv", approval_id=1)
        rows = export_rows(demo.store, kind, p, mark=mark, address_prefix=x.address)
        out[f"export:{kind}"] = ZERO_WIDTH.sub("", "\n".join(",".join(map(str, r)) for r in rows))
    return out


def _shown(path: str, text: str, full: str, masked: str) -> str | None:
    has_full, has_masked = full in text, masked in text
    assert not (has_full and has_masked), f"{full} shown both in full and masked on {path}"
    return "full" if has_full else "masked" if has_masked else None


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_a_person_the_same_way_on_every_view(demo: Demo, role: str) -> None:
    p = _principal(demo.store, demo.logins[role][0])
    x = _sample(demo.store, p)
    views = _views(demo, p, x)
    owner_phone, other_phone, owner_id = EXPECTED[role]
    checks = [("owner's phone", x.owner.phone, mask_phone(x.owner.phone), owner_phone),
              ("owner's ID number", x.owner.id_number, mask_id_number(x.owner.id_number), owner_id)]
    if x.other is not None:
        checks.append(("occupant's phone", x.other.phone, mask_phone(x.other.phone), other_phone))
    seen: dict[str, dict[str, str]] = {}
    for what, full, masked, in_full in checks:
        for path, text in views.items():
            shown = _shown(path, text, full, masked)
            if shown is not None:
                seen.setdefault(what, {})[path] = shown
        want = "full" if in_full else "masked"
        wrong = {path: s for path, s in seen.get(what, {}).items() if s != want}
        assert not wrong, f"{role}: {what} should be {want} everywhere, but: {wrong}"
    # the walk really covered the views: the owner's phone on his person record, his house and the plate list
    owner_views = seen["owner's phone"]
    assert f"/persons/{x.owner.id}" in owner_views and f"/api/houses/{x.house_id}" in owner_views, owner_views
    assert f"/houses/{x.house_id}" in owner_views and f"/addresses/{x.address_id}" in owner_views, owner_views
    if role != "resident":
        assert "export:persons" in owner_views and "export:houses" in owner_views, owner_views
