"""Demo devices for the construction room: every urban demo community gets a deterministic device set that puts it
at a tier (none / 基本型 with exactly the unit-entrance access control missing / 提高型 / 先进型), with camera
specifications, a month of status history and daily captures — and one camera whose captures stopped, so the
fault scan raises a work order.

Then (``extras``): 居安工程 cameras in the villages (entrances, intersections, construction sites, some residential
buildings), projects in every lifecycle state with review comments and funding, and 六无 incidents."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from anfang.construction.tiers import Item, load_rules
from anfang.core.errors import ValidationError
from anfang.devices.models import Device, DeviceStatusChange
from anfang.registry.models import Address, House, Region
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.viid.models import ViidObject

PROFILES = ("basic_no_unit_access", "improved", "advanced", "none")
GOOD_SPEC = {"megapixels": 4, "capture": ["face", "body", "vehicle"], "colour_day_night": True, "ip_rating": 66,
             "gb28181": "2016", "retention_days": 30, "city_platform": True, "bitrate_kbps": 4096}


@dataclass(frozen=True)
class DemoConstruction:
    communities: int
    devices: int
    stalled_device_id: str | None  # the camera whose captures stopped
    village_channels: int = 0
    projects: int = 0
    incidents: int = 0


def _items(profile: str) -> list[Item]:
    tiers = {t.code: t for t in load_rules().tiers}
    if profile == "none":
        return sorted(i for i in tiers["basic"].items if i.place != "elevator")  # no elevator camera
    if profile == "basic_no_unit_access":
        return sorted(tiers["basic"].items)
    return sorted(tiers[profile].items)


def seed_demo(store: Store, seed: int = 2021, now: datetime | None = None,
              limit: int | None = None, extras: bool = True) -> DemoConstruction:
    """Add the demo devices to the urban communities of a freshly generated demo database (and, with ``extras``,
    village cameras, projects and 六无 incidents)."""
    now = now or utcnow()
    rng = random.Random(seed)
    serial = 0
    stalled: str | None = None
    devices = 0
    captures = 0
    with store.session() as s:
        codes = list(s.scalars(select(Region.code).where(Region.level == "community", Region.kind == "urban")
                               .order_by(Region.code)))[:limit]
        for n, code in enumerate(codes):
            profile = PROFILES[n % len(PROFILES)]
            for item in _items(profile):
                sub, place = item.subsystem, item.place
                serial += 1
                video = sub in ("video", "vehicle_recognition")
                if video:
                    did = f"{code[:6]}0000132{serial:07d}"
                    protocol, type_code = "gb28181", "132"
                    attrs: dict = {**GOOD_SPEC, "subsystem": sub, "maintainer": f"维保{code[6:9]}组"}
                    if rng.random() < 0.15:
                        attrs["megapixels"] = 2  # an older 200万 camera: a specification finding
                    if rng.random() < 0.05:
                        attrs["retention_days"] = 15
                else:
                    did, protocol, type_code = f"{sub}-{code}-{serial}", "mqtt", None
                    attrs = {"subsystem": sub}
                since = now - timedelta(days=35 + rng.randint(0, 20))
                dev = Device(protocol=protocol, device_id=did, name=f"{load_rules().label_place(place)}"
                             f"{'摄像机' if video else ''}", type_code=type_code, community_code=code, place=place,
                             status="online", registered_at=since, last_seen=now, attributes=attrs)
                s.add(dev)
                s.flush()
                devices += 1
                s.add(DeviceStatusChange(device_pk=dev.id, at=since, status="online", reason="register"))
                if rng.random() < 0.1:  # a short outage last week
                    down = now - timedelta(days=rng.randint(2, 7), hours=rng.randint(0, 12))
                    s.add(DeviceStatusChange(device_pk=dev.id, at=down, status="offline", reason="timeout"))
                    s.add(DeviceStatusChange(device_pk=dev.id, at=down + timedelta(hours=rng.randint(1, 6)),
                                             status="online", reason="register"))
                if video:
                    last = now - timedelta(minutes=rng.randint(1, 120))
                    if stalled is None and profile == "improved":
                        stalled, last = did, now - timedelta(hours=40)  # captures stopped 40 hours ago
                    captures += _captures(s, did, code, serial, last, since, rng)
    if not extras:
        _rebuild_uptime(store)
        return DemoConstruction(len(codes), devices, stalled)
    channels = seed_villages(store, rng, now)
    _rebuild_uptime(store)
    n_projects = seed_projects(store, codes, now)
    n_incidents = seed_liuwu(store, rng, now)
    return DemoConstruction(len(codes), devices, stalled, channels, n_projects, n_incidents)


def _rebuild_uptime(store: Store) -> None:
    """The demo writes status history rows directly: the uptime rollup is recomputed from them."""
    from anfang.devices.uptime import rebuild

    with store.session() as s:
        rebuild(s)


def _captures(s: Session, did: str, code: str, serial: int, last: datetime, since: datetime,
              rng: random.Random) -> int:
    """One face capture per UTC day from registration until ``last`` (the acceptance gate reads daily arrival)."""
    rows = []
    day = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    at = last
    n = 0
    while at >= since:
        oid = f"{did}02{at:%Y%m%d%H%M%S}{serial:05d}06{n:05d}"
        rows.append({"kind": "face", "object_id": oid, "device_id": did, "shot_at": at, "received_at": at,
                     "community_code": code, "body": json.dumps({"FaceID": oid, "DeviceID": did,
                                                                 "ShotTime": at.strftime("%Y%m%d%H%M%S")})})
        n += 1
        day -= timedelta(days=1)
        at = day + timedelta(seconds=rng.randint(0, 86399))
    if rows:
        s.execute(insert(ViidObject), rows)
    return len(rows)


def seed_villages(store: Store, rng: random.Random, now: datetime) -> int:
    """居安工程 cameras in every demo village: entrances, intersections, sometimes a construction site, and cameras
    on about one in eight occupied residential buildings. Returns the channels added."""
    channels = 0
    with store.session() as s:
        villages = list(s.scalars(select(Region.code).where(Region.level == "community", Region.kind == "village")
                                  .order_by(Region.code)))
        for n, code in enumerate(villages):
            buildings = list(s.scalars(select(Address.id).join(House, House.address_id == Address.id).where(
                Address.community_code == code, House.use != "vacant").order_by(Address.id)))
            places = (["village_entrance"] * rng.randint(1, 2) + ["intersection"] * rng.randint(1, 3)
                      + (["construction_site"] if rng.random() < 0.3 else []))
            homes = [b for b in buildings if rng.random() < 0.12]
            for i, place in enumerate(places + ["residence"] * len(homes)):
                since = now - timedelta(days=20 + rng.randint(0, 60))
                did = f"{code[:6]}0000132{9000000 + n * 100 + i:07d}"
                dev = Device(protocol="gb28181", device_id=did, name=f"{_ROLLOUT_PLACES.get(place, place)}摄像机",
                             type_code="132", community_code=code, place=place, status="online",
                             registered_at=since, last_seen=now,
                             address_id=homes[i - len(places)] if place == "residence" else None,
                             attributes={**GOOD_SPEC, "subsystem": "video", "channels": 1,
                                         "maintainer": f"居安维保{code[6:9]}组"})
                s.add(dev)
                s.flush()
                s.add(DeviceStatusChange(device_pk=dev.id, at=since, status="online", reason="register"))
                _captures(s, did, code, 800 + i, now - timedelta(minutes=rng.randint(1, 120)),
                          max(since, now - timedelta(days=3)), rng)
                channels += 1
    return channels


_ROLLOUT_PLACES = {"village_entrance": "村口", "intersection": "路口", "construction_site": "工地",
                   "residence": "村民住宅"}
# profile → the lifecycle steps the demo project goes through (taken as the system user, so every gate applies)
_PROJECT_PATHS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("design", ()),
    ("submitted", (("submit", ""),)),
    ("returned", (("submit", ""), ("return", "缺楼栋单元出入口智能门禁及视频监控，请补充后重新报审"))),
    ("approved", (("submit", ""), ("return", "监控中心位置需标注"), ("submit", "已补充"), ("approve", "同意"))),
    ("building", (("submit", ""), ("approve", "同意"), ("start_build", ""))),
    ("running", (("submit", ""), ("approve", "同意"), ("start_build", ""), ("finish_build", ""))),
    ("accepted", (("submit", ""), ("approve", "同意"), ("start_build", ""), ("finish_build", ""),
                  ("apply", ""), ("accept", "验收合格"))),
)


def seed_projects(store: Store, codes: list[str], now: datetime) -> int:
    """One project per lifecycle state on the first urban communities, designed to the tier the community's
    devices meet (the design of the 'returned' one lacks an item), with funding from several sources."""
    from decimal import Decimal

    from anfang.construction import projects
    from anfang.construction.tiers import load_rules
    from anfang.security.scope import Principal

    system = Principal.system("demo")
    tiers = {t.code: t for t in load_rules().tiers}
    with store.session() as s:
        names = dict(s.execute(select(Region.code, Region.name).where(Region.code.in_(codes))).all())
    made = 0
    for n, (code, (target_state, path)) in enumerate(zip(codes, _PROJECT_PATHS, strict=False)):
        profile = PROFILES[n % len(PROFILES)]
        target = {"advanced": "advanced", "improved": "improved"}.get(profile, "basic")
        items = sorted(tiers[target].items | tiers["basic"].items)
        if target_state == "returned":
            items = [i for i in items if i.place != "unit_entrance"]
        title = f"{names.get(code, code)}智慧安防{'改造' if n % 2 else '建设'}"
        pr = projects.create_project(store, system, code, title,
                                     "retrofit" if n % 2 else "new", target,
                                     [(i.subsystem, i.place) for i in items], (), Decimal(300000 + 50000 * n),
                                     now=now - timedelta(days=60))
        for k, (action, comment) in enumerate(path):
            at = {"apply": now - timedelta(hours=2), "accept": now - timedelta(hours=1)}.get(
                action, now - timedelta(days=50 - 4 * k))
            try:
                projects.act(store, system, pr["id"], action, comment, now=at)
            except ValidationError:  # a gate (the month of stable running) not met: the project stays where it is
                break
        sources = [("county_budget", 150000), ("maintenance_fund", 80000)]
        if target_state == "accepted":
            sources.append(("subsidy", 50000))  # 以奖代补: after acceptance
        for source, amount in sources:
            projects.add_funding(store, system, pr["id"], "fund", source, Decimal(amount + 1000 * n),
                                 (now - timedelta(days=60)).date(), "演示资金")
        projects.add_funding(store, system, pr["id"], "spend", "county_budget", Decimal(120000 + 500 * n),
                             (now - timedelta(days=30)).date(), "设备采购")
        made += 1
    return made


def seed_liuwu(store: Store, rng: random.Random, now: datetime) -> int:
    """六无 incidents over the last year: most communities clean, some with a few incidents of one or two kinds."""
    from anfang.construction.liuwu import load_liuwu_rules
    from anfang.construction.models import LiuwuIncident

    cats = list(load_liuwu_rules().categories)
    weights = (5, 3, 2, 1, 4, 2)
    n = 0
    with store.session() as s:
        for code in s.scalars(select(Region.code).where(Region.level == "community").order_by(Region.code)):
            if rng.random() < 0.55:
                continue
            for _ in range(rng.randint(1, 4)):
                day = (now - timedelta(days=rng.randint(0, 360))).date()
                s.add(LiuwuIncident(community_code=code, category=rng.choices(cats, weights)[0], occurred_on=day,
                                    count=1, note="演示", origin="entered", created_by="demo"))
                n += 1
    return n
