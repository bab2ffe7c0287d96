"""A small, hand-checked 一标三实 data set for tests (not the demo generator: every figure here is countable).

Layout (all in 三明市 350400):
  三元区 350404 / 列东街道 350404001000
      列东社区 350404001001 (urban)  警务区 LD-1, grids G-LD-1 and G-LD-2
          1栋 → 1单元 → 1层 → 101室, 102室      (grid G-LD-1)
          2栋 → 1单元 → 1层 → 101室             (grid G-LD-2)
      下洋村 350404001201 (village)  警务区 XY-1, grid G-XY-1
          下洋村1号 (building, house on it)
  沙县区 350405 / 凤岗街道 350405001000
      府西社区 350405001001 (urban)  警务区 FX-1, grid G-FX-1
          1栋 → 1单元 → 1层 → 101室
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import insert

from anfang.core.ids import make_credit_code, make_id_number
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
from anfang.security.scope import Principal
from anfang.security.service import create_user, principal_of
from anfang.store.engine import Store

PASSWORD = "test-pass-1"
P = "福建省三明市"


@dataclass
class World:
    addr: dict[str, int] = field(default_factory=dict)
    person: dict[str, int] = field(default_factory=dict)
    id_number: dict[str, str] = field(default_factory=dict)
    phone: dict[str, str] = field(default_factory=dict)
    house: dict[str, int] = field(default_factory=dict)
    unit: dict[str, int] = field(default_factory=dict)
    users: dict[str, Principal] = field(default_factory=dict)
    police_area: dict[str, int] = field(default_factory=dict)
    grid: dict[str, int] = field(default_factory=dict)


def build(store: Store) -> World:
    w = World()
    with store.session() as s:
        s.execute(insert(Region), [
            dict(code="350400", name="三明市", full_name=P, level="city", kind=None, parent_code=None),
            dict(code="350404", name="三元区", full_name=P + "三元区", level="county", kind=None, parent_code="350400"),
            dict(code="350405", name="沙县区", full_name=P + "沙县区", level="county", kind=None, parent_code="350400"),
            dict(code="350404001000", name="列东街道", full_name=P + "三元区列东街道", level="town", kind=None,
                 parent_code="350404"),
            dict(code="350405001000", name="凤岗街道", full_name=P + "沙县区凤岗街道", level="town", kind=None,
                 parent_code="350405"),
            dict(code="350404001001", name="列东社区", full_name=P + "三元区列东街道列东社区", level="community",
                 kind="urban", parent_code="350404001000"),
            dict(code="350404001201", name="下洋村", full_name=P + "三元区列东街道下洋村", level="community",
                 kind="village", parent_code="350404001000"),
            dict(code="350405001001", name="府西社区", full_name=P + "沙县区凤岗街道府西社区", level="community",
                 kind="urban", parent_code="350405001000"),
        ])
        st1 = PoliceStation(code="350404P1", name="列东派出所", county_code="350404")
        st2 = PoliceStation(code="350405P1", name="凤岗派出所", county_code="350405")
        s.add_all([st1, st2])
        s.flush()
        for code, name, st in (("LD-1", "列东警务区", st1), ("XY-1", "下洋警务区", st1), ("FX-1", "府西警务区", st2)):
            a = PoliceArea(code=code, name=name, station_id=st.id)
            s.add(a)
            s.flush()
            w.police_area[code] = a.id
        for code, name, comm in (("G-LD-1", "列东第一网格", "350404001001"), ("G-LD-2", "列东第二网格", "350404001001"),
                                 ("G-XY-1", "下洋网格", "350404001201"), ("G-FX-1", "府西网格", "350405001001")):
            g = Grid(code=code, name=name, community_code=comm)
            s.add(g)
            s.flush()
            w.grid[code] = g.id

        def add(key: str, parent: str | None, level: str, name: str, code: str, comm: str, area: str, grid: str,
                full: str, plate: tuple[bool, bool, bool] = (True, True, True)) -> None:
            a = Address(code=code, parent_id=w.addr.get(parent) if parent else None, level=level, name=name,
                        full_name=full, county_code=comm[:6], town_code=comm[:9] + "000", community_code=comm,
                        police_area_id=w.police_area[area], grid_id=w.grid[grid], lon=117.6, lat=26.26,
                        plate_installed=plate[0], plate_accurate=plate[1], plate_labelled=plate[2])
            s.add(a)
            s.flush()
            w.addr[key] = a.id

        ld = "350404001001"
        ldn = P + "三元区列东街道列东社区"
        add("ld", None, "community", "列东社区", ld, ld, "LD-1", "G-LD-1", ldn)
        add("ld-1", "ld", "building", "1栋", ld + "0001", ld, "LD-1", "G-LD-1", ldn + "1栋")
        add("ld-1-1", "ld-1", "unit", "1单元", ld + "000101", ld, "LD-1", "G-LD-1", ldn + "1栋1单元")
        add("ld-1-1-1", "ld-1-1", "floor", "1层", ld + "000101001", ld, "LD-1", "G-LD-1", ldn + "1栋1单元1层",
            plate=(False, False, False))  # floors carry no plate: must not count
        add("ld-101", "ld-1-1-1", "room", "101室", ld + "00010100101", ld, "LD-1", "G-LD-1", ldn + "1栋1单元1层101室")
        add("ld-102", "ld-1-1-1", "room", "102室", ld + "00010100102", ld, "LD-1", "G-LD-1", ldn + "1栋1单元1层102室",
            plate=(True, False, False))
        add("ld-2", "ld", "building", "2栋", ld + "0002", ld, "LD-1", "G-LD-2", ldn + "2栋")
        add("ld-2-1", "ld-2", "unit", "1单元", ld + "000201", ld, "LD-1", "G-LD-2", ldn + "2栋1单元")
        add("ld-2-1-1", "ld-2-1", "floor", "1层", ld + "000201001", ld, "LD-1", "G-LD-2", ldn + "2栋1单元1层")
        add("ld2-101", "ld-2-1-1", "room", "101室", ld + "00020100101", ld, "LD-1", "G-LD-2", ldn + "2栋1单元1层101室",
            plate=(False, False, True))
        xy = "350404001201"
        xyn = P + "三元区列东街道下洋村"
        add("xy", None, "community", "下洋村", xy, xy, "XY-1", "G-XY-1", xyn)
        add("xy-1", "xy", "building", "下洋村1号", xy + "0001", xy, "XY-1", "G-XY-1", xyn + "下洋村1号")
        fx = "350405001001"
        fxn = P + "沙县区凤岗街道府西社区"
        add("fx", None, "community", "府西社区", fx, fx, "FX-1", "G-FX-1", fxn)
        add("fx-1", "fx", "building", "1栋", fx + "0001", fx, "FX-1", "G-FX-1", fxn + "1栋")
        add("fx-1-1", "fx-1", "unit", "1单元", fx + "000101", fx, "FX-1", "G-FX-1", fxn + "1栋1单元")
        add("fx-1-1-1", "fx-1-1", "floor", "1层", fx + "000101001", fx, "FX-1", "G-FX-1", fxn + "1栋1单元1层")
        add("fx-101", "fx-1-1-1", "room", "101室", fx + "00010100101", fx, "FX-1", "G-FX-1", fxn + "1栋1单元1层101室")

        # persons: key -> (name, birth, seq, address key, verification, phone)
        people = {
            "zhang": ("张伟", date(1980, 5, 1), 11, "ld-101", "verified", "13805981001"),
            "li": ("李娜", date(1982, 3, 9), 22, "ld-101", "verified", "13805981002"),
            "wang": ("王芳", date(1950, 1, 2), 32, "ld-102", "unverified", "13805981003"),
            "chen": ("陈强", date(1990, 7, 7), 41, "ld2-101", "disputed", "13805981004"),
            "lin": ("林秀英", date(1945, 9, 9), 52, "xy-1", "verified", "13805981005"),
            "huang": ("黄磊", date(1975, 12, 12), 61, "fx-101", "verified", "13805981006"),
        }
        for key, (name, birth, seq, addr, ver, phone) in people.items():
            idn = make_id_number("350404", birth, seq)
            per = Person(id_number=idn, name=name, gender="M" if seq % 2 else "F", birth_date=birth, phone=phone,
                         hukou_address=P + "三元区", population_type="registered", labels=[],
                         address_id=w.addr[addr], verification=ver,
                         verified_by="seed" if ver == "verified" else None)
            s.add(per)
            s.flush()
            w.person[key], w.id_number[key], w.phone[key] = per.id, idn, phone
        # houses: 4 (ld-101 verified, ld-102 verified, ld2-101 unverified, xy-1 verified, fx-101 verified)
        for key, addr, use, ver, owner in (("h-ld-101", "ld-101", "self_occupied", "verified", "zhang"),
                                           ("h-ld-102", "ld-102", "rental", "verified", None),
                                           ("h-ld2-101", "ld2-101", "vacant", "unverified", None),
                                           ("h-xy-1", "xy-1", "self_occupied", "verified", "lin"),
                                           ("h-fx-101", "fx-101", "business", "verified", "huang")):
            h = House(address_id=w.addr[addr], use=use, verification=ver,
                      owner_person_id=w.person[owner] if owner else None,
                      owner_name=people[owner][0] if owner else "某公司", owner_phone="13905980000")
            s.add(h)
            s.flush()
            w.house[key] = h.id
        s.add_all([
            Residence(person_id=w.person["zhang"], house_id=w.house["h-ld-101"], role="owner", since=date(2015, 1, 1)),
            Residence(person_id=w.person["li"], house_id=w.house["h-ld-101"], role="family", since=date(2015, 1, 1)),
            Residence(person_id=w.person["wang"], house_id=w.house["h-ld-102"], role="tenant", since=date(2020, 1, 1)),
        ])
        u1 = WorkUnit(credit_code=make_credit_code("350404", "MA2Y00001"), name="列东便民超市", kind="商铺",
                      address_id=w.addr["ld-1"], legal_person="张伟", staff_count=3, verification="verified")
        u2 = WorkUnit(credit_code=make_credit_code("350405", "MA2Y00002"), name="府西物业公司", kind="企业",
                      address_id=w.addr["fx-1"], legal_person="黄磊", staff_count=12, verification="unverified")
        s.add_all([u1, u2])
        s.flush()
        w.unit = {"ld-shop": u1.id, "fx-prop": u2.id}
        s.add_all([Vehicle(plate="闽G12345", owner_person_id=w.person["zhang"], address_id=w.addr["ld-101"]),
                   Vehicle(plate="闽GD23456", plate_color="green", owner_person_id=w.person["huang"],
                           address_id=w.addr["fx-101"])])
        users = {
            "city": dict(role="city_admin"),
            "county": dict(role="county_admin", county_code="350404"),
            "police": dict(role="police", police_area_id=w.police_area["LD-1"]),
            "grid": dict(role="grid_worker", grid_id=w.grid["G-LD-1"]),
            "property": dict(role="property_staff", community_code="350404001001"),
            "resident": dict(role="resident", person_id=w.person["li"]),
        }
        for username, kw in users.items():
            u = create_user(s, username=username, password=PASSWORD, display_name=username, **kw)
            w.users[username] = principal_of(u, "test")
    return w
