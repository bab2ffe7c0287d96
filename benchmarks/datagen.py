"""Fast generator of benchmark import files: regions, standard addresses and persons of Sanming as CSV.

The files use the import format of anfang.registry.importer (Chinese headers). Identity numbers are valid
(GB 11643 check character) and unique: row i maps through a multiplicative permutation of the space
(birth-place region x birth day x sequence number), so they look random but never collide.

Sizes: about 2.5 persons per room; a building has 2 units x 6 floors x 4 rooms, so 2.5M persons give
1M rooms and about 1.3M address rows in all.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from anfang.core.ids import id_check_char
from anfang.core.regions import CITY_CODE, CITY_NAME, COUNTIES, PROVINCE_NAME

OUT = Path(__file__).parent / "out"

UNITS, FLOORS, ROOMS = 2, 6, 4  # per building, per unit, per floor
PERSONS_PER_ROOM = 2.5
COMMUNITIES_PER_TOWN = 20

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许邓冯韩曹曾彭萧蔡潘田董袁于余"
    "叶蒋杜苏魏程吕丁沈任姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江阎薛尹段"
    "雷黎史龙陶贺顾毛郝龚邵万钱严赖覃洪武莫孔"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英霞平刚桂兰辉玉萍红华建国文斌鹏宇浩然子涵欣"
    "怡晨阳思远婷雪梅海燕春林志峰俊凯"
)
_HUKOU = [f"{PROVINCE_NAME}{CITY_NAME}{name}" for name, _ in COUNTIES.values()] + [
    "福建省福州市鼓楼区", "福建省厦门市思明区", "江西省南昌市东湖区", "浙江省温州市鹿城区", "广东省广州市天河区"]
# birth-place regions: Sanming's counties (registered) and a few others (floating population)
_BIRTH_REGIONS = list(COUNTIES) + ["350102", "350203", "350503", "360102", "330302", "440106", "350802", "350702"]
_LABELS = ["独居老人", "未成年人", "重点人员", "残疾人", "留守儿童", "退役军人"]
_DAY0 = date(1935, 1, 1)
_DAYS = (date(2020, 12, 31) - _DAY0).days


@dataclass
class Files:
    regions: Path
    addresses: Path
    persons: Path
    n_regions: int
    n_addresses: int
    n_persons: int


def _towns() -> list[tuple[str, str, str]]:
    """(county code, town code (12), town name)."""
    out = []
    for county, (_, towns) in COUNTIES.items():
        for i, name in enumerate(towns, start=1):
            out.append((county, f"{county}{i:03d}000", name))
    return out


def write_regions(path: Path) -> tuple[int, list[tuple[str, str, str]]]:
    """Regions file; returns (rows, [(community code, community full name, community name)])."""
    communities = []
    rows = [(CITY_CODE, CITY_NAME, "", "")]
    for county, (cname, _) in COUNTIES.items():
        rows.append((county, cname, CITY_CODE, ""))
    for county, town, tname in _towns():
        rows.append((town, tname, county, ""))
        cname = COUNTIES[county][0]
        for j in range(1, COMMUNITIES_PER_TOWN + 1):
            village = j > COMMUNITIES_PER_TOWN // 2
            code = f"{town[:9]}{(200 + j) if village else j:03d}"
            name = f"{tname[:2]}{j}{'村' if village else '社区'}"
            rows.append((code, name, town, "行政村" if village else "社区"))
            communities.append((code, f"{PROVINCE_NAME}{CITY_NAME}{cname}{tname}{name}", name))
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["区划代码", "名称", "上级区划代码", "类型"])
        w.writerows(rows)
    return len(rows), communities


def write_addresses(path: Path, communities: list[tuple[str, str, str]], rooms_wanted: int,
                    tick: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
    """Addresses file, top-down; returns (rows, room codes)."""
    per_building = UNITS * FLOORS * ROOMS
    buildings_total = max(1, math.ceil(rooms_wanted / per_building))
    per_community = max(1, math.ceil(buildings_total / len(communities)))
    rooms: list[str] = []
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["地址编码", "上级地址编码", "层级", "名称", "社区编码"])
        built = 0
        for comm, _full, cname in communities:
            if built >= buildings_total:
                break
            w.writerow([comm, "", "小区/村", cname, comm])
            n += 1
            for b in range(1, per_community + 1):
                if built >= buildings_total:
                    break
                built += 1
                bcode = f"{comm}{b:04d}"
                w.writerow([bcode, comm, "楼栋", f"{b}栋", ""])
                n += 1
                for u in range(1, UNITS + 1):
                    ucode = f"{bcode}{u:02d}"
                    w.writerow([ucode, bcode, "单元", f"{u}单元", ""])
                    n += 1
                    for fl in range(1, FLOORS + 1):
                        fcode = f"{ucode}{fl:03d}"
                        w.writerow([fcode, ucode, "楼层", f"{fl}层", ""])
                        n += 1
                        for r in range(1, ROOMS + 1):
                            rcode = f"{fcode}{r:02d}"
                            w.writerow([rcode, fcode, "房间", f"{fl}{r:02d}室", ""])
                            rooms.append(rcode)
                            n += 1
                if tick:
                    tick(per_building)
    return n, rooms


def write_persons(path: Path, n: int, rooms: list[str], seed: int = 7,
                  tick: Callable[[int], None] | None = None) -> int:
    rnd = random.Random(seed)
    space = len(_BIRTH_REGIONS) * _DAYS * 1000
    mult = 2_654_435_761
    while math.gcd(mult, space) != 1:
        mult += 2
    offset = rnd.randrange(space)
    surnames, given, hukou, labels = _SURNAMES, _GIVEN, _HUKOU, _LABELS
    n_regions = len(_BIRTH_REGIONS)
    regions, day0, rooms_n = _BIRTH_REGIONS, _DAY0, len(rooms)
    day_cache: dict[int, str] = {}
    rand = rnd.random
    randrange = rnd.randrange
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["身份证号", "姓名", "性别", "出生日期", "手机号", "户籍地址", "人口类型", "管理类别", "现住址编码",
                    "核实状态"])
        rows = []
        for i in range(n):
            x = (i * mult + offset) % space
            seq, x = x % 1000, x // 1000
            day, reg = x % _DAYS, x // _DAYS
            region = regions[reg % n_regions]
            ymd = day_cache.get(day)
            if ymd is None:
                ymd = day_cache[day] = (day0 + timedelta(days=day)).strftime("%Y%m%d")
            first17 = f"{region}{ymd}{seq:03d}"
            idn = first17 + id_check_char(first17)
            male = seq % 2 == 1
            name = surnames[randrange(len(surnames))] + given[randrange(len(given))] + (
                given[randrange(len(given))] if rand() < 0.6 else "")
            local = region in COUNTIES
            r = rand()
            label = labels[randrange(6)] if r < 0.08 else (f"{labels[0]}、{labels[5]}" if r < 0.09 else "")
            rows.append((idn, name, "男" if male else "女", f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}",
                         f"1{randrange(3, 10)}{randrange(100_000_000, 1_000_000_000)}",
                         hukou[randrange(len(hukou))] if not local else f"{PROVINCE_NAME}{CITY_NAME}"
                         f"{COUNTIES[region][0]}", "户籍人口" if local else "流动人口", label,
                         rooms[randrange(rooms_n)], "已核实" if r > 0.3 else "未核实"))
            if len(rows) == 50_000:
                w.writerows(rows)
                rows.clear()
                if tick:
                    tick(50_000)
        w.writerows(rows)
        if tick:
            tick(len(rows))
    return n


def generate(persons: int, out: Path = OUT, seed: int = 7, force: bool = False,
             tick: Callable[[str, int, int], None] | None = None) -> Files:
    """Write (or reuse) regions / addresses / persons CSVs for `persons` persons; tick(stage, advance, total)."""
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{persons}"
    rp, ap, pp = out / f"regions_{tag}.csv", out / f"addresses_{tag}.csv", out / f"persons_{tag}.csv"
    n_reg, communities = write_regions(rp)
    rooms_wanted = max(1, int(persons / PERSONS_PER_ROOM))
    if force or not ap.exists() or not pp.exists():
        n_addr, rooms = write_addresses(ap, communities, rooms_wanted,
                                        (lambda k: tick("addresses", k, rooms_wanted)) if tick else None)
        write_persons(pp, persons, rooms, seed, (lambda k: tick("persons", k, persons)) if tick else None)
    else:
        with ap.open("rb") as f:
            n_addr = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b"")) - 1
    return Files(rp, ap, pp, n_reg, n_addr, persons)
