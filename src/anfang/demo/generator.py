"""Deterministic demo data for Sanming (三明市): regions, police organisation, grids, standard addresses, houses,
residents, work units, vehicles and one demo login per role.

Everything is drawn from one ``random.Random(seed)`` in a fixed order and every timestamp is derived from
REFERENCE_DATE, so the same seed and scale give byte-identical data on SQLite and PostgreSQL.

Size: scale 1 ≈ 70 communities / villages and about five thousand residents. The number of towns grows with
sqrt(scale), communities per town and the size of urban communities with scale ** 0.25 each, and villages with
scale ** 0.4 (the towns added at larger scales are mostly rural), so the totals grow about linearly.

Rows are written with SQLAlchemy Core bulk inserts in batches. Primary keys are assigned here (the target database
must be empty), which lets later rows refer to earlier ones without reading anything back; PostgreSQL's id
sequences are moved past the inserted ids at the end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from anfang.core.errors import Conflict, ValidationError
from anfang.core.ids import make_credit_code, make_id_number
from anfang.core.regions import CITY_CODE, CITY_NAME, COUNTIES, PROVINCE_NAME
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
from anfang.security.crypto import blind_id_number, blind_phone
from anfang.security.roles import Role, role_label
from anfang.security.service import create_user
from anfang.store.engine import Store

DEMO_PASSWORD = "anfang2021"
# The demo world's "today": ages, labels and timestamps are computed against it (fixed for reproducibility).
REFERENCE_DATE = date(2026, 9, 30)
REFERENCE_TIME = datetime(2026, 9, 30, 10, 0, tzinfo=UTC)
BATCH = 2000
DEMO_COUNTY = "350404"  # 三元区

Progress = Callable[[str, int, int], None]


@dataclass
class DemoLogin:
    username: str
    password: str
    role: str
    display_name: str
    scope: str  # human-readable zh-CN jurisdiction


@dataclass
class DemoSummary:
    counties: int
    towns: int
    communities: int
    addresses: int
    houses: int
    persons: int
    units: int
    vehicles: int
    logins: list[DemoLogin]


# --------------------------------------------------------------------------------------------------------------
# Reference data

# Approximate centre (lon, lat) of each county seat.
_COUNTY_CENTRES: dict[str, tuple[float, float]] = {
    "350404": (117.61, 26.23), "350405": (117.79, 26.40), "350421": (117.20, 26.36), "350423": (116.82, 26.12),
    "350424": (116.65, 26.26), "350425": (117.85, 25.69), "350426": (118.19, 26.17), "350428": (117.47, 26.73),
    "350429": (117.17, 26.90), "350430": (116.85, 26.83), "350481": (117.37, 25.94),
}
_LON = (116.40, 118.60)
_LAT = (25.50, 27.10)

_SURNAMES = (("陈", 12), ("林", 10), ("黄", 7), ("张", 6), ("李", 6), ("王", 5), ("吴", 5), ("刘", 5), ("罗", 4),
             ("邓", 3), ("杨", 3), ("郑", 3), ("肖", 3), ("余", 3), ("廖", 3), ("赖", 3), ("蔡", 2), ("邱", 2),
             ("魏", 2), ("江", 2), ("谢", 2), ("曾", 2), ("范", 2), ("朱", 2), ("严", 2), ("叶", 2), ("池", 1),
             ("官", 1), ("温", 1), ("钟", 1), ("翁", 1), ("卢", 1), ("徐", 1), ("饶", 1), ("胡", 1), ("詹", 1),
             ("涂", 1), ("巫", 1), ("雷", 1), ("姜", 1))
_SURNAME_LIST = [s for s, _ in _SURNAMES]
_SURNAME_WEIGHTS = [w for _, w in _SURNAMES]
_GIVEN_M = "伟强军华建明志勇杰涛斌辉鹏俊峰林文海荣祥德平东国龙晨宇浩子轩睿博泽宏金福水生家振永清"
_GIVEN_F = "芳娜敏静丽秀英华慧玲燕红霞梅琳婷雪颖莉萍兰凤洁晶欣怡涵诗雨梓萱思佳琪月桂珍"
_PHONE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
                   "155", "156", "157", "158", "159", "177", "180", "181", "182", "183", "185", "186", "187",
                   "188", "189", "191", "198", "199")

_URBAN_NAMES = ("江滨", "新南", "中山", "群英", "东乾", "三路", "龙岗", "建新", "红印山", "崇桂", "富华", "台江",
                "梅岭", "翠竹", "碧湖", "和平", "金星", "新亭", "沿江", "城东", "城西", "城南", "城北", "府前",
                "文昌", "解放", "人民", "胜利", "育才", "五一", "东门", "西门", "南门", "北门", "桥头", "滨江",
                "翠园", "玉华", "锦绣", "凤凰", "吉山", "下渡", "长安", "永康", "建设", "民主", "华林", "东安",
                "新城", "南山", "北山", "溪南", "府西", "水东", "园丁", "龙泉", "朝阳", "向阳", "兴华", "德安")
_ESTATE_PREFIXES = ("阳光", "翠竹", "金域", "碧水", "江滨", "华鑫", "东方", "明珠", "润和", "富兴", "中央", "欣隆",
                    "绿洲", "锦绣", "和园", "龙湖", "山水", "怡景", "福源", "新城")
_ESTATE_SUFFIXES = ("小区", "小区", "花园", "家园", "苑", "新村")
_VILLAGE_FIRST = "上下大小新东西南北前后高中石桂枫竹梅杉茶龙凤黄罗吉安和福丰长岭溪"
_VILLAGE_SECOND = ("洋", "坪", "坑", "溪", "口", "坂", "墩", "岭", "山", "田", "洲", "源", "厝", "坊", "湖", "桥",
                   "地", "岩", "头", "林", "塘", "畲", "岗", "埔", "峰")
_EXTRA_TOWNS = ("龙湖", "石门", "桂口", "高坪", "溪源", "大布", "吉口", "坂头", "梅林", "洋坊", "竹洲", "罗坑",
                "黄坑", "东坑", "岭下", "桃溪", "长坪", "双溪", "枫林", "溪尾", "湖美", "洪田", "下坊", "上坪")

# Hukou places of the floating population: (6-digit code, full name, weight).
_ORIGINS = (
    ("350102", "福建省福州市鼓楼区", 5), ("350203", "福建省厦门市思明区", 3), ("350503", "福建省泉州市丰泽区", 4),
    ("350582", "福建省晋江市", 3), ("350602", "福建省漳州市芗城区", 3), ("350702", "福建省南平市延平区", 6),
    ("350802", "福建省龙岩市新罗区", 6), ("350902", "福建省宁德市蕉城区", 2), ("360702", "江西省赣州市章贡区", 6),
    ("360781", "江西省瑞金市", 5), ("361002", "江西省抚州市临川区", 5), ("360521", "江西省新余市分宜县", 2),
    ("430102", "湖南省长沙市芙蓉区", 2), ("431002", "湖南省郴州市北湖区", 2), ("441502", "广东省汕尾市城区", 1),
    ("440511", "广东省汕头市金平区", 1), ("510105", "四川省成都市青羊区", 2), ("520502", "贵州省毕节市七星关区", 3),
    ("500101", "重庆市万州区", 2), ("411502", "河南省信阳市浉河区", 2), ("421002", "湖北省荆州市沙市区", 1),
    ("450102", "广西壮族自治区南宁市兴宁区", 1), ("330302", "浙江省温州市鹿城区", 2),
)
_ORIGIN_WEIGHTS = [w for _, _, w in _ORIGINS]
# Foreigners' permanent residence ID (2023): "9" + issuing province (35 福建) + nationality code (GB/T 2659).
_NATIONALITIES = (
    ("410", "韩国", ("金敏俊", "朴智贤", "李秀珍", "崔英浩")), ("392", "日本", ("佐藤健", "铃木美咲", "高桥翔")),
    ("704", "越南", ("阮文安", "陈氏兰", "黎明俊")), ("458", "马来西亚", ("陈伟杰", "林美玲", "黄志明")),
    ("764", "泰国", ("颂猜", "素拉差", "差猜")), ("840", "美国", ("马克", "约翰", "艾米丽")),
)

_SHOP_WORDS = ("好又多", "鑫源", "顺发", "惠民", "佳佳", "阿明", "福满多", "永辉", "兴旺", "家家乐", "金源", "老街",
               "合兴", "万家", "益民", "红星")
_SHOP_KINDS = ("便利店", "超市", "小吃店", "理发店", "药店", "五金店", "水果店", "早餐店", "茶叶店", "手机店",
               "快递驿站", "服装店", "沙县小吃", "烟酒商行", "农资店", "粮油店")
_COMPANY_KINDS = ("贸易有限公司", "商贸有限公司", "信息技术有限公司", "建材有限公司", "装饰工程有限公司",
                  "电子商务有限公司", "物流有限公司", "餐饮管理有限公司")
_COOP_PRODUCTS = ("茶叶", "毛竹", "食用菌", "蔬菜", "烟叶", "油茶", "蜜柚", "水稻", "生猪", "花卉")
_BRANDS = ("大众", "丰田", "本田", "日产", "吉利", "长安", "哈弗", "奇瑞", "别克", "五菱", "现代", "宝马", "奔驰",
           "奥迪", "比亚迪", "传祺")
_NEV_BRANDS = ("比亚迪", "特斯拉", "五菱", "蔚来", "小鹏", "理想", "吉利", "长安", "问界", "埃安")
_TRUCK_BRANDS = ("东风", "解放", "福田", "江淮", "五菱")
_CAR_COLOURS = ("白", "白", "黑", "黑", "银", "灰", "红", "蓝")
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _clamp(v: float, lo_hi: tuple[float, float]) -> float:
    return min(max(v, lo_hi[0]), lo_hi[1])


def _age(birth: date, today: date = REFERENCE_DATE) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _org_code(body8: str) -> str:
    """GB 11714 organisation code: 8 characters + check character."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c, 36) * w for c, w in zip(body8, weights, strict=True))
    check = 11 - total % 11
    return body8 + ("X" if check == 10 else "0" if check == 11 else str(check))


def _town_kind(name: str) -> str:
    if name.endswith("街道"):
        return "street"
    return "township" if name.endswith("乡") else "town"


def _short(name: str) -> str:
    for suffix in ("街道", "社区", "镇", "乡", "村"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _chunks(n: int, k: int) -> list[int]:
    """Index of the chunk (0..k-1) for each of n items split into k contiguous, near-equal chunks."""
    return [i * k // n for i in range(n)]


# --------------------------------------------------------------------------------------------------------------
# Plan of the region / police / grid structure


@dataclass
class _Town:
    code: str
    name: str
    kind: str  # street | town | township
    county_code: str
    full_name: str
    lon: float
    lat: float
    station_id: int = 0
    communities: list[_Community] = field(default_factory=list)


@dataclass
class _Area:
    id: int
    code: str
    name: str
    officer: str
    communities: list[_Community] = field(default_factory=list)


@dataclass
class _Grid:
    id: int
    code: str
    name: str
    worker: str
    community: _Community
    persons: int = 0
    resident: tuple[int, str, str] | None = None  # (person id, name, address segments) for the demo login


@dataclass
class _Community:
    code: str
    name: str
    kind: str  # urban | village
    town: _Town
    full_name: str
    lon: float
    lat: float
    size: int  # buildings (urban) or house numbers (village)
    verify_rate: float
    plate_rate: float
    area: _Area | None = None
    grids: list[_Grid] = field(default_factory=list)
    root_id: int = 0  # the community's root address node


@dataclass(slots=True)
class _Leaf:
    """An address that carries a house: a room (urban) or a house number (village)."""

    address_id: int
    community: _Community
    grid: _Grid
    full_name: str
    segments: str  # below the community, e.g. "3栋2单元5层502室"
    floor: int  # 0 for village houses
    shopfront: bool
    era: str  # old | new | village


@dataclass(slots=True)
class _P:
    """What later stages need to know about a generated person."""

    id: int
    name: str
    gender: str
    age: int
    phone: str | None


class _Generator:
    def __init__(self, session: Session, rng: random.Random, scale: float, progress: Progress | None) -> None:
        self.s = session
        self.rng = rng
        self.scale = scale
        self.progress = progress
        self.next_id: dict[str, int] = {}
        self.buffers: dict[Table, list[dict[str, Any]]] = {t: [] for t in _ORDER}
        self.counts: dict[Table, int] = {t: 0 for t in _ORDER}
        self.towns: list[_Town] = []
        self.communities: list[_Community] = []
        self.areas: list[_Area] = []
        self.leaves: list[_Leaf] = []
        self.id_numbers: set[str] = set()
        self.phones: set[str] = set()
        self.plates: set[str] = set()
        self.credit_codes: set[str] = set()
        self.owner_pool: dict[str, list[_P]] = {c: [] for c in COUNTIES}  # adults, per county
        self.car_owners: list[tuple[_P, int, str]] = []  # (person, address id, community kind)
        self.business: list[tuple[_Leaf, str, str | None]] = []  # (leaf, owner name, owner phone)

    # ---- plumbing

    def new_id(self, table: str) -> int:
        n = self.next_id.get(table, 0) + 1
        self.next_id[table] = n
        return n

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self.buffers[table].append(row)

    def pending(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def flush(self) -> None:
        for table in _ORDER:  # parents before children
            rows = self.buffers[table]
            if rows:
                self.s.execute(insert(table), rows)
                self.counts[table] += len(rows)
                self.buffers[table] = []

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    # ---- small random helpers

    def name(self, gender: str, surname: str | None = None) -> str:
        rng = self.rng
        surname = surname or rng.choices(_SURNAME_LIST, _SURNAME_WEIGHTS)[0]
        pool = _GIVEN_M if gender == "M" else _GIVEN_F
        given = rng.choice(pool) if rng.random() < 0.3 else rng.choice(pool) + rng.choice(pool)
        return surname + given

    def phone(self) -> str:
        while True:
            p = self.rng.choice(_PHONE_PREFIXES) + f"{self.rng.randrange(100_000_000):08d}"
            if p not in self.phones:
                self.phones.add(p)
                return p

    def stamp(self, max_days: int) -> datetime:
        """A working-hours moment within max_days before the reference time."""
        rng = self.rng
        return REFERENCE_TIME - timedelta(days=rng.randrange(max_days), seconds=rng.randrange(0, 9 * 3600))

    def verification(self, rate: float, by: str) -> dict[str, Any]:
        r = self.rng.random()
        if r < rate:
            at = self.stamp(365)
            return {"verification": "verified", "verified_by": by, "verified_at": at, "updated_at": at}
        state = "unverified" if r < rate + (1 - rate) * 0.6 else "disputed"
        return {"verification": state, "verified_by": None, "verified_at": None, "updated_at": self.stamp(500)}

    # ---- stage 1: regions, police stations and areas, grids

    def plan_regions(self) -> None:
        rng, s = self.rng, self.scale
        t_region = _T["regions"]
        self.add(t_region, {"code": CITY_CODE, "name": CITY_NAME, "full_name": PROVINCE_NAME + CITY_NAME,
                            "level": "city", "kind": None, "parent_code": None})
        city_full = PROVINCE_NAME + CITY_NAME
        for county_code, (county_name, real_towns) in COUNTIES.items():
            county_full = city_full + county_name
            self.add(t_region, {"code": county_code, "name": county_name, "full_name": county_full,
                                "level": "county", "kind": None, "parent_code": CITY_CODE})
            base = 3 if county_code == DEMO_COUNTY else 2
            # The demo county keeps at least two towns so that a 警务区 never covers the whole county.
            n_towns = max(2 if county_code == DEMO_COUNTY else 1, round(base * math.sqrt(s)))
            # Codes follow the real list order (streets 001.., towns 101.., townships 201..) so that a town keeps
            # its code whatever the scale.
            counters = {"street": 0, "town": 100, "township": 200}
            named: list[tuple[str, str]] = []
            for town_name in real_towns:
                kind = _town_kind(town_name)
                counters[kind] += 1
                named.append((town_name, f"{county_code}{counters[kind]:03d}000"))
            used = {_short(n) for n in real_towns}
            extra = [n for n in _EXTRA_TOWNS if n not in used]
            i = 0
            while len(named) < n_towns:
                base_name = extra[i % len(extra)] + ("" if i < len(extra) else str(i // len(extra) + 1))
                kind = "town" if i % 3 else "township"
                counters[kind] += 1
                named.append((base_name + ("镇" if kind == "town" else "乡"),
                              f"{county_code}{counters[kind]:03d}000"))
                i += 1
            centre = _COUNTY_CENTRES[county_code]
            urban_used: set[str] = set()
            village_used: set[str] = set(used)
            for t_index, (town_name, town_code) in enumerate(named[:n_towns]):
                spread = 0.01 if t_index == 0 else 0.12
                town = _Town(code=town_code, name=town_name, kind=_town_kind(town_name), county_code=county_code,
                             full_name=county_full + town_name,
                             lon=_clamp(centre[0] + rng.uniform(-spread, spread), _LON),
                             lat=_clamp(centre[1] + rng.uniform(-spread, spread), _LAT))
                self.towns.append(town)
                self.add(t_region, {"code": town.code, "name": town.name, "full_name": town.full_name,
                                    "level": "town", "kind": None, "parent_code": county_code})
                self.plan_communities(town, urban_used, village_used)

        self.plan_police_and_grids()
        self.flush()

    def plan_communities(self, town: _Town, urban_used: set[str], village_used: set[str]) -> None:
        rng, s = self.rng, self.scale
        f = s ** 0.25
        if town.kind == "street":
            n_urban, n_village = max(2, round(3 * f)), 0
        elif town.kind == "town":
            n_urban, n_village = 1, max(1, round(2 * f))
        else:
            n_urban, n_village = 0, max(2, round(2 * f))
        names: list[tuple[str, str]] = []
        for i in range(n_urban):
            if town.kind == "town" and i == 0 and _short(town.name) not in urban_used:
                short = _short(town.name)  # the town seat's community is named after the town
            else:
                free = [n for n in _URBAN_NAMES if n not in urban_used]
                short = rng.choice(free) if free else f"{rng.choice(_URBAN_NAMES)}{len(urban_used)}"
            urban_used.add(short)
            names.append((short + "社区", "urban"))
        for _ in range(n_village):
            for _attempt in range(50):
                short = rng.choice(_VILLAGE_FIRST) + rng.choice(_VILLAGE_SECOND)
                if short not in village_used:
                    break
            else:
                short = f"{short}{len(village_used)}"
            village_used.add(short)
            names.append((short + "村", "village"))
        n_u = n_v = 0
        for i, (name, kind) in enumerate(names):
            if kind == "urban":
                n_u += 1
                code = town.code[:9] + f"{n_u:03d}"
                spread = 0.015
                size = max(1, round(rng.uniform(1.0, 2.2) * f))
                if town.kind == "street" and i == 0:
                    size = max(2, size)  # the demo logins need a community with at least two grids
            else:
                n_v += 1
                code = town.code[:9] + f"{200 + n_v:03d}"
                spread = 0.05
                size = max(6, round(rng.uniform(14, 30) * s ** 0.4))
            perfect = rng.random() < 0.6
            c = _Community(code=code, name=name, kind=kind, town=town, full_name=town.full_name + name,
                           lon=_clamp(town.lon + rng.uniform(-spread, spread), _LON),
                           lat=_clamp(town.lat + rng.uniform(-spread, spread), _LAT),
                           size=size, verify_rate=rng.uniform(0.90, 1.0),
                           plate_rate=1.0 if perfect else rng.uniform(0.85, 0.98))
            town.communities.append(c)
            self.communities.append(c)
            self.add(_T["regions"], {"code": c.code, "name": c.name, "full_name": c.full_name, "level": "community",
                                     "kind": kind, "parent_code": town.code})

    def plan_police_and_grids(self) -> None:
        rng = self.rng
        for town in self.towns:
            station_id = self.new_id("police_stations")
            town.station_id = station_id
            self.add(_T["police_stations"], {"id": station_id, "code": f"{town.county_code}P{town.code[6:9]}",
                                             "name": _short(town.name) + "派出所", "county_code": town.county_code})
            # Group the town's communities into 警务区: the first two urban communities of a street share one
            # (so a 警务区 is strictly wider than a community somewhere), others alone or with a neighbour;
            # villages in groups of one to three.
            groups: list[list[_Community]] = []
            urban = [c for c in town.communities if c.kind == "urban"]
            villages = [c for c in town.communities if c.kind == "village"]
            i = 0
            while i < len(urban):
                take = 2 if (i == 0 and town.kind == "street") or rng.random() < 0.3 else 1
                groups.append(urban[i:i + take])
                i += take
            i = 0
            while i < len(villages):
                take = rng.choice((1, 2, 2, 3))
                groups.append(villages[i:i + take])
                i += take
            for n, members in enumerate(groups, 1):
                first = _short(members[0].name)
                if members[0].kind == "urban":
                    area_name = f"{first}社区警务区"
                else:
                    area_name = f"{first}片区警务区" if len(members) > 1 else f"{first}村警务区"
                area = _Area(id=self.new_id("police_areas"), code=f"{town.county_code}P{town.code[6:9]}-{n:02d}",
                             name=area_name, officer=self.name(rng.choice("MMMF")), communities=members)
                self.areas.append(area)
                self.add(_T["police_areas"], {"id": area.id, "code": area.code, "name": area.name,
                                              "station_id": station_id})
                for c in members:
                    c.area = area
            for c in town.communities:
                if c.kind == "urban":
                    n_grids = 1 if c.size == 1 else min(4, max(2, round(c.size / 2)))
                else:
                    n_grids = 1 if c.size < 25 else 2 if c.size < 55 else 3 if c.size < 90 else 4
                for k in range(1, n_grids + 1):
                    g = _Grid(id=self.new_id("grids"), code=f"{c.code}G{k:02d}", name=f"第{k}网格",
                              worker=self.name(rng.choice("MFF")), community=c)
                    c.grids.append(g)
                    self.add(_T["grids"], {"id": g.id, "code": g.code, "name": g.name, "community_code": c.code})

    # ---- stage 2: addresses

    def address_row(self, c: _Community, grid: _Grid, *, code: str, parent: int | None, level: str, name: str,
                    full_name: str, lon: float, lat: float, updated: datetime) -> int:
        rng = self.rng
        if level == "floor":
            plate = (False, False, False)  # floors carry no door plate
        elif c.plate_rate >= 1.0 or level == "community":
            plate = (True, True, True)
        else:
            installed = rng.random() < c.plate_rate
            plate = (installed, installed and rng.random() < 0.97, installed and rng.random() < 0.93)
        address_id = self.new_id("addresses")
        assert c.area is not None
        self.add(_T["addresses"], {
            "id": address_id, "code": code, "parent_id": parent, "level": level, "name": name,
            "full_name": full_name, "county_code": c.town.county_code, "town_code": c.town.code,
            "community_code": c.code, "police_area_id": c.area.id, "grid_id": grid.id,
            "lon": round(lon, 6), "lat": round(lat, 6), "plate_installed": plate[0], "plate_accurate": plate[1],
            "plate_labelled": plate[2], "updated_at": updated,
        })
        return address_id

    def addresses(self) -> None:
        stage, total = "生成地址", len(self.communities)
        self.report(stage, 0, total)
        for n, c in enumerate(self.communities, 1):
            if c.kind == "urban":
                self.urban_addresses(c)
            else:
                self.village_addresses(c)
            if self.pending() >= BATCH:
                self.flush()
                self.report(stage, n, total)
        self.flush()
        self.report(stage, total, total)

    def urban_addresses(self, c: _Community) -> None:
        rng = self.rng
        updated = self.stamp(900)
        era = "old" if rng.random() < 0.6 else "new"
        estate = (_short(c.name) if era == "old" else rng.choice(_ESTATE_PREFIXES)) + rng.choice(_ESTATE_SUFFIXES)
        root = c.root_id = self.address_row(c, c.grids[0], code=c.code, parent=None, level="community",
                                            name=estate, full_name=c.full_name, lon=c.lon, lat=c.lat,
                                            updated=updated)
        suffix = rng.choice("栋幢")
        grid_of = _chunks(c.size, len(c.grids))
        for b in range(1, c.size + 1):
            grid = c.grids[grid_of[b - 1]]
            lon, lat = c.lon + rng.uniform(-0.003, 0.003), c.lat + rng.uniform(-0.003, 0.003)
            b_code, b_name = f"{c.code}{b:04d}", f"{b}{suffix}"
            b_id = self.address_row(c, grid, code=b_code, parent=root, level="building", name=b_name,
                                    full_name=c.full_name + b_name, lon=lon, lat=lat, updated=updated)
            units = rng.randint(1, 2)
            floors = rng.randint(5, 7) if era == "old" else rng.randint(8, 11)
            shopfront = era == "old" and (b == 1 or rng.random() < 0.25)
            for u in range(1, units + 1):
                u_code, u_seg = f"{b_code}{u:02d}", f"{b_name}{u}单元"
                u_id = self.address_row(c, grid, code=u_code, parent=b_id, level="unit", name=f"{u}单元",
                                        full_name=c.full_name + u_seg, lon=lon, lat=lat, updated=updated)
                for fl in range(1, floors + 1):
                    f_code, f_seg = f"{u_code}{fl:03d}", f"{u_seg}{fl}层"
                    f_id = self.address_row(c, grid, code=f_code, parent=u_id, level="floor", name=f"{fl}层",
                                            full_name=c.full_name + f_seg, lon=lon, lat=lat, updated=updated)
                    for r in range(1, 3):
                        room = f"{fl}{r:02d}室"
                        full = c.full_name + f_seg + room
                        r_id = self.address_row(c, grid, code=f"{f_code}{r:02d}", parent=f_id, level="room",
                                                name=room, full_name=full, lon=lon, lat=lat, updated=updated)
                        self.leaves.append(_Leaf(r_id, c, grid, full, f_seg + room, fl, shopfront and fl == 1, era))

    def village_addresses(self, c: _Community) -> None:
        rng = self.rng
        updated = self.stamp(900)
        root = c.root_id = self.address_row(c, c.grids[0], code=c.code, parent=None, level="community",
                                            name=c.name, full_name=c.full_name, lon=c.lon, lat=c.lat,
                                            updated=updated)
        grid_of = _chunks(c.size, len(c.grids))
        number = 0
        for i in range(c.size):
            number += 1 if rng.random() < 0.85 else 2  # a few numbers are unused (demolished houses)
            grid = c.grids[grid_of[i]]
            # The village name is already the last segment of the region's full name: "…岩前镇下洋村12号".
            full = f"{c.full_name}{number}号"
            a_id = self.address_row(c, grid, code=f"{c.code}{number:04d}", parent=root, level="building",
                                    name=f"{c.name}{number}号", full_name=full,
                                    lon=c.lon + rng.uniform(-0.006, 0.006), lat=c.lat + rng.uniform(-0.006, 0.006),
                                    updated=updated)
            self.leaves.append(_Leaf(a_id, c, grid, full, f"{number}号", 0, False, "village"))

    # ---- stage 3: houses, persons, residences

    def birth_for_age(self, age: int) -> date:
        lo = int(age * 365.2425) + 1
        return REFERENCE_DATE - timedelta(days=self.rng.randrange(lo, lo + 364))

    def person(self, leaf: _Leaf, *, age: int, gender: str, pop: str, surname: str | None = None,
               labels: tuple[str, ...] = (), hukou_here: bool = True, alone: bool = False) -> tuple[_P, dict[str, Any]]:
        rng = self.rng
        age = max(0, age)
        birth = self.birth_for_age(age)
        age = _age(birth)
        county = leaf.community.town.county_code
        if pop == "overseas":
            code, _country, names = rng.choice(_NATIONALITIES)
            region6, hukou, name = "935" + code, None, rng.choice(names)
        elif pop == "floating":
            region6, hukou, _w = rng.choices(_ORIGINS, _ORIGIN_WEIGHTS)[0]
            name = self.name(gender, surname)
        else:
            born_in = county if rng.random() < 0.92 else rng.choice(list(COUNTIES))
            region6 = _historic_code(born_in, birth, rng)
            if hukou_here and born_in == county:
                hukou = leaf.full_name
            else:
                hukou = PROVINCE_NAME + CITY_NAME + COUNTIES[born_in][0]
            name = self.name(gender, surname)
        while True:
            seq = rng.randrange(500) * 2 + (1 if gender == "M" else 0)  # digit 17: odd = male
            id_number = make_id_number(region6, birth, seq)
            if id_number not in self.id_numbers:
                self.id_numbers.add(id_number)
                break
        phone = None
        if age >= 16 and (age < 80 or rng.random() < 0.5):
            phone = self.phone()
        tags = set(labels)
        if age < 18:
            tags.add("minor")
        if alone and age >= 70:
            tags.add("elderly_alone")
        if rng.random() < 0.015:
            tags.add("disabled")
        if gender == "M" and 25 <= age <= 85 and rng.random() < 0.04:
            tags.add("veteran")
        if 18 <= age <= 65 and rng.random() < 0.003:
            tags.add("key_person")
        rate = leaf.community.verify_rate - (0.04 if pop != "registered" else 0.0)
        by = leaf.grid.worker if rng.random() < 0.7 else (leaf.community.area.officer if leaf.community.area else "")
        row = {"id": self.new_id("persons"), "id_number": id_number, "id_number_hash": blind_id_number(id_number),
               "name": name, "gender": gender, "birth_date": birth, "phone": phone,
               "phone_hash": blind_phone(phone) if phone else None, "hukou_address": hukou, "population_type": pop,
               "labels": [k for k in _LABEL_ORDER if k in tags], "address_id": leaf.address_id,
               **self.verification(rate, by)}
        return _P(row["id"], name, gender, age, phone), row

    def household(self, leaf: _Leaf) -> list[tuple[_P, dict[str, Any], str]]:
        """An owner-occupier household: list of (person, row, residence role), the owner first."""
        rng = self.rng
        village = leaf.era == "village"
        kinds = ("elder_single", "elder_couple", "single", "couple", "family", "three_gen", "left_behind")
        weights = (10, 14, 4, 6, 30, 22, 14) if village else (6, 10, 8, 10, 42, 20, 3)
        kind = rng.choices(kinds, weights)[0]
        surname = rng.choices(_SURNAME_LIST, _SURNAME_WEIGHTS)[0]
        specs: list[tuple[int, str, str | None, tuple[str, ...]]] = []  # (age, gender, surname, labels)
        if kind == "elder_single":
            specs.append((rng.randint(70, 93), rng.choice("MFF"), None, ()))
        elif kind == "elder_couple":
            h = rng.randint(62, 88)
            specs += [(h, "M", surname, ()), (max(58, h - rng.randint(0, 5)), "F", None, ())]
        elif kind == "single":
            specs.append((rng.randint(22, 65), rng.choice("MF"), None, ()))
        elif kind == "couple":
            h = rng.randint(24, 45)
            specs += [(h, "M", surname, ()), (max(21, h - rng.randint(-2, 5)), "F", None, ())]
        elif kind in ("family", "three_gen"):
            h = rng.randint(28, 55)
            parents = [(h, "M", surname, ()), (max(22, h - rng.randint(-2, 5)), "F", None, ())]
            kids = [(rng.randint(0, min(h - 22, 30)), rng.choice("MF"), surname, ())
                    for _ in range(2 if rng.random() < (0.6 if village else 0.4) else 1)]
            if kind == "family":
                specs += parents + kids
            else:
                g = min(90, h + rng.randint(22, 32))
                grandparents = [(g, "M", None, ()), (max(h + 20, g - rng.randint(0, 5)), "F", None, ())]
                specs += (parents + kids + grandparents) if rng.random() < 0.5 else (grandparents + parents + kids)
        else:  # grandparents raising grandchildren whose parents work elsewhere (留守儿童)
            g = rng.randint(55, 78)
            specs += [(g, "M", surname, ()), (max(52, g - rng.randint(0, 5)), "F", None, ())]
            specs += [(rng.randint(3, 15), rng.choice("MF"), surname, ("left_behind_child",))
                      for _ in range(rng.choice((1, 1, 2)))]
        out: list[tuple[_P, dict[str, Any], str]] = []
        for i, (age, gender, sn, labels) in enumerate(specs):
            p, row = self.person(leaf, age=age, gender=gender, pop="registered", surname=sn, labels=labels,
                                 alone=len(specs) == 1)
            out.append((p, row, "owner" if i == 0 else "family"))
        return out

    def tenants(self, leaf: _Leaf) -> list[tuple[_P, dict[str, Any], str]]:
        rng = self.rng
        if leaf.era != "village" and rng.random() < 0.03:
            pop = "overseas"
        else:
            pop = "floating" if rng.random() < 0.7 else "registered"
        kind = rng.choices(("single", "couple", "family"), (40, 35, 25))[0]
        surname = rng.choices(_SURNAME_LIST, _SURNAME_WEIGHTS)[0]
        h = rng.randint(20, 50)
        specs = [(h, rng.choice("MF") if kind == "single" else "M", surname)]
        if pop != "overseas" and kind != "single":
            specs.append((max(20, h - rng.randint(-2, 5)), "F", None))
            if kind == "family":
                specs.append((rng.randint(0, max(0, min(h - 21, 15))), rng.choice("MF"), surname))
        out = []
        for age, gender, sn in specs:
            p, row = self.person(leaf, age=age, gender=gender, pop=pop, surname=sn, hukou_here=False)
            out.append((p, row, "tenant"))
        return out

    def absent_owner(self, county: str) -> tuple[int | None, str, str | None]:
        """Owner of a house he does not live in: a resident elsewhere in the county, or someone unregistered."""
        pool = self.owner_pool[county]
        if pool and self.rng.random() < 0.7:
            p = self.rng.choice(pool)
            return p.id, p.name, p.phone
        return None, self.name(self.rng.choice("MF")), self.phone()

    def houses_and_persons(self) -> None:
        rng = self.rng
        stage, total = "生成房屋和人口", len(self.leaves)
        self.report(stage, 0, total)
        t_person, t_house, t_res = _T["persons"], _T["houses"], _T["residences"]
        for n, leaf in enumerate(self.leaves, 1):
            c = leaf.community
            county = c.town.county_code
            village = leaf.era == "village"
            r = rng.random()
            if leaf.shopfront and rng.random() < 0.7:
                use = "business"
            elif village:
                use = "business" if r < 0.04 else "self_occupied" if r < 0.84 else "rental" if r < 0.89 else "vacant"
            else:
                use = "self_occupied" if r < 0.68 else "rental" if r < 0.88 else "vacant"
            members: list[tuple[_P, dict[str, Any], str]] = []
            if use == "self_occupied":
                members = self.household(leaf)
                owner = members[0][0]
                phone = next((m[0].phone for m in members if m[0].phone), None)
                owner_id, owner_name, owner_phone = owner.id, owner.name, phone
            else:
                owner_id, owner_name, owner_phone = self.absent_owner(county)
                if use == "rental":
                    members = self.tenants(leaf)
            if use == "business":
                self.business.append((leaf, owner_name, owner_phone))
            if village:
                area = rng.uniform(100, 260)
            elif use == "business":
                area = rng.uniform(20, 80)
            else:
                area = rng.uniform(50, 100) if leaf.era == "old" else rng.uniform(80, 140)
            house_id = self.new_id("houses")
            for _p, row, _role in members:
                self.add(t_person, row)
            self.add(t_house, {"id": house_id, "address_id": leaf.address_id, "use": use,
                               "owner_person_id": owner_id, "owner_name": owner_name, "owner_phone": owner_phone,
                               "area_m2": round(area, 1), **self.verification(c.verify_rate, leaf.grid.worker)})
            moved_in = REFERENCE_DATE - timedelta(days=rng.randrange(365, 25 * 365))
            for p, row, role in members:
                since = (REFERENCE_DATE - timedelta(days=rng.randrange(30, 1000))) if role == "tenant" else moved_in
                since = max(since, row["birth_date"])
                self.add(t_res, {"id": self.new_id("residences"), "person_id": p.id, "house_id": house_id,
                                 "role": role, "since": since, "until": None})
            leaf.grid.persons += len(members)
            if use == "self_occupied":
                adults = [m for m in members if m[0].age >= 18]
                self.owner_pool[county].extend(m[0] for m in adults if m[0].age < 80)
                drivers = [m[0] for m in adults if m[0].age <= 70]
                head = members[0][0]
                if leaf.grid.resident is None and 18 <= head.age <= 70 and head.phone:
                    # The grid's first owner-occupier of working age is its candidate demo resident.
                    leaf.grid.resident = (head.id, head.name, leaf.segments)
                if drivers and rng.random() < (0.3 if village else 0.45):
                    self.car_owners.append((drivers[0], leaf.address_id, leaf.era))
                    if len(drivers) > 1 and rng.random() < 0.15:
                        self.car_owners.append((drivers[1], leaf.address_id, leaf.era))
            elif use == "rental" and members[0][0].age >= 20 and rng.random() < 0.15:
                self.car_owners.append((members[0][0], leaf.address_id, leaf.era))
            if self.pending() >= BATCH:
                self.flush()
                self.report(stage, n, total)
        self.flush()
        self.report(stage, total, total)

    # ---- stage 4: work units

    def credit_code(self, county: str, kind: str) -> str:
        while True:
            body = "".join(self.rng.choice(_USCC_CHARS) for _ in range(8))
            code = make_credit_code(county, _org_code(body), registry="9", kind=kind)
            if code not in self.credit_codes:
                self.credit_codes.add(code)
                return code

    def work_unit(self, c: _Community, address_id: int, *, name: str, kind: str, code_kind: str,
                  legal: str, phone: str | None, staff: int) -> None:
        county = c.town.county_code
        self.add(_T["work_units"], {
            "id": self.new_id("work_units"), "credit_code": self.credit_code(county, code_kind), "name": name,
            "kind": kind, "address_id": address_id, "legal_person": legal, "phone": phone or self.phone(),
            "staff_count": staff, **self.verification(c.verify_rate - 0.02, c.area.officer if c.area else ""),
        })

    def work_units(self) -> None:
        rng = self.rng
        stage, total = "生成实有单位", len(self.business) + len(self.communities)
        self.report(stage, 0, total)
        names: set[str] = set()

        def unique(name: str) -> str:
            base, k = name, 1
            while name in names:
                k += 1
                name = f"{base}（{k}店）" if base.endswith("店") else f"{base}{k}"
            names.add(name)
            return name

        done = 0
        for leaf, owner_name, owner_phone in self.business:
            c = leaf.community
            county_name = COUNTIES[c.town.county_code][0]
            if leaf.era != "village" and rng.random() < 0.15:
                name = unique(f"三明市{rng.choice(_SHOP_WORDS)}{rng.choice(_COMPANY_KINDS)}")
                self.work_unit(c, leaf.address_id, name=name, kind="企业", code_kind="1",
                               legal=self.name(rng.choice("MF")), phone=None, staff=rng.randint(5, 60))
            else:
                name = unique(f"{county_name}{_short(c.name)}{rng.choice(_SHOP_WORDS)}{rng.choice(_SHOP_KINDS)}")
                self.work_unit(c, leaf.address_id, name=name, kind="商铺", code_kind="2", legal=owner_name,
                               phone=owner_phone, staff=rng.randint(1, 8))
            done += 1
            if self.pending() >= BATCH:
                self.flush()
                self.report(stage, done, total)
        # Property management companies at urban estates, farmers' co-operatives at some villages.
        for c in self.communities:
            done += 1
            county_name = COUNTIES[c.town.county_code][0]
            if c.kind == "urban" and rng.random() < 0.7:
                name = unique(f"三明市{rng.choice(_ESTATE_PREFIXES)}物业服务有限公司")
                self.work_unit(c, c.root_id, name=name, kind="物业企业", code_kind="1",
                               legal=self.name(rng.choice("MF")), phone=None, staff=rng.randint(6, 40))
            elif c.kind == "village" and rng.random() < 0.4:
                name = unique(f"{county_name}{_short(c.name)}{rng.choice(_COOP_PRODUCTS)}专业合作社")
                self.work_unit(c, c.root_id, name=name, kind="农民专业合作社", code_kind="3",
                               legal=self.name(rng.choice("MMF")), phone=None, staff=rng.randint(5, 30))
        self.flush()
        self.report(stage, total, total)

    # ---- stage 5: vehicles

    def plate(self, kind: str) -> str:
        rng = self.rng
        while True:
            if kind == "green":
                second = rng.choice(_PLATE_LETTERS) if rng.random() < 0.4 else str(rng.randrange(10))
                tail = rng.choice("DDDF") + second + f"{rng.randrange(10_000):04d}"
            else:
                chars = [str(rng.randrange(10)) for _ in range(5)]
                for pos in rng.sample(range(5), rng.choice((0, 1, 1, 2))):
                    chars[pos] = rng.choice(_PLATE_LETTERS)
                tail = "".join(chars)
            plate = "闽G" + tail
            if plate not in self.plates:
                self.plates.add(plate)
                return plate

    def vehicles(self) -> None:
        rng = self.rng
        stage, total = "生成车辆", len(self.car_owners)
        self.report(stage, 0, total)
        for n, (p, address_id, era) in enumerate(self.car_owners, 1):
            r = rng.random()
            if r < 0.15:
                colour, brand = "green", rng.choice(_NEV_BRANDS)
            elif era == "village" and r < 0.25:
                colour, brand = "yellow", rng.choice(_TRUCK_BRANDS)
            else:
                colour, brand = "blue", rng.choice(_BRANDS)
            self.add(_T["vehicles"], {"id": self.new_id("vehicles"), "plate": self.plate(colour),
                                      "plate_color": colour, "brand": brand, "color": rng.choice(_CAR_COLOURS),
                                      "owner_person_id": p.id, "address_id": address_id,
                                      "updated_at": self.stamp(700)})
            if self.pending() >= BATCH:
                self.flush()
                self.report(stage, n, total)
        self.flush()
        self.report(stage, total, total)

    # ---- stage 6: demo logins

    def logins(self) -> list[DemoLogin]:
        stage = "创建演示账号"
        self.report(stage, 0, 6)
        county_name = COUNTIES[DEMO_COUNTY][0]
        town = next(t for t in self.towns if t.county_code == DEMO_COUNTY and t.kind == "street")
        # The first 警务区 of a street covers its first two communities; the first has at least two grids.
        community = town.communities[0]
        area = community.area
        assert area is not None and len(area.communities) >= 2 and len(community.grids) >= 2
        grid = next(g for g in community.grids if g.resident is not None and g.persons >= 2)
        assert grid.resident is not None
        person_id, person_name, segments = grid.resident
        place = f"{county_name} {town.name} {community.name}"
        members = "、".join(c.name for c in area.communities)
        specs = [
            ("city", Role.city_admin, role_label(Role.city_admin), CITY_NAME, {}),
            ("county", Role.county_admin, f"{role_label(Role.county_admin)}（{county_name}）",
             f"{CITY_NAME} {county_name}", {"county_code": DEMO_COUNTY}),
            ("police", Role.police, f"{role_label(Role.police)} {area.officer}",
             f"{county_name} {town.name} {area.name}（{members}）", {"police_area_id": area.id}),
            ("grid", Role.grid_worker, f"{role_label(Role.grid_worker)} {grid.worker}", f"{place} {grid.name}",
             {"grid_id": grid.id}),
            ("property", Role.property_staff, f"{role_label(Role.property_staff)} {self.name(self.rng.choice('MF'))}",
             place, {"community_code": community.code}),
            ("resident", Role.resident, f"{role_label(Role.resident)} {person_name}",
             f"{place} {grid.name} {segments}", {"person_id": person_id}),
        ]
        out = []
        for n, (username, role, display, scope, kw) in enumerate(specs, 1):
            create_user(self.s, username=username, password=DEMO_PASSWORD, role=role, display_name=display, **kw)
            out.append(DemoLogin(username=username, password=DEMO_PASSWORD, role=role.value, display_name=display,
                                 scope=scope))
            self.report(stage, n, 6)
        return out


_LABEL_ORDER = ("elderly_alone", "minor", "key_person", "disabled", "left_behind_child", "veteran")
_T: dict[str, Table] = {m.__tablename__: m.__table__ for m in (  # type: ignore[misc]
    Region, PoliceStation, PoliceArea, Grid, Address, Person, House, Residence, WorkUnit, Vehicle)}
_ORDER: tuple[Table, ...] = tuple(_T.values())
_SEQUENCED = ("police_stations", "police_areas", "grids", "addresses", "persons", "houses", "residences",
              "work_units", "vehicles")


def _historic_code(county: str, birth: date, rng: random.Random) -> str:
    """Region code printed on the ID card: the code in force at birth registration (it never changes).

    梅列区 (350402) and the old 三元区 (350403) became 三元区 350404, and 沙县 (350427) became 沙县区 350405, in 2021.
    """
    if birth.year >= 2021:
        return county
    if county == "350404":
        return rng.choice(("350402", "350403"))
    if county == "350405":
        return "350427"
    return county


def generate(store: Store, scale: float = 1.0, seed: int = 2021,
             progress: Callable[[str, int, int], None] | None = None) -> DemoSummary:
    """Fill an empty, migrated database with deterministic demo data of Sanming; returns counts and logins."""
    if not scale > 0:
        raise ValidationError(f"数据规模必须大于0：{scale}")
    rng = random.Random(seed)
    with store.session() as session:
        if session.scalar(select(func.count()).select_from(_T["regions"])):
            raise Conflict("数据库中已有行政区划数据，演示数据只能生成到空数据库")
        g = _Generator(session, rng, scale, progress)
        g.report("生成行政区划", 0, 1)
        g.plan_regions()
        g.report("生成行政区划", 1, 1)
        g.addresses()
        g.houses_and_persons()
        g.work_units()
        g.vehicles()
        if store.engine.dialect.name == "postgresql":
            for table in _SEQUENCED:
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"))
        logins = g.logins()
    counts = {t.name: n for t, n in g.counts.items()}
    return DemoSummary(counties=len(COUNTIES), towns=len(g.towns), communities=len(g.communities),
                       addresses=counts["addresses"], houses=counts["houses"], persons=counts["persons"],
                       units=counts["work_units"], vehicles=counts["vehicles"], logins=logins)
