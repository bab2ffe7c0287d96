"""Demo devices for the construction room: every urban demo community gets a deterministic device set that puts it
at a tier (none / 基本型 with exactly the unit-entrance access control missing / 提高型 / 先进型), with camera
specifications, a month of status history and recent captures — and one camera whose captures stopped, so the
fault scan raises a work order."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from anfang.construction.tiers import Item, load_rules
from anfang.devices.models import Device, DeviceStatusChange
from anfang.registry.models import Region
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


def _items(profile: str) -> list[Item]:
    tiers = {t.code: t for t in load_rules().tiers}
    if profile == "none":
        return sorted(i for i in tiers["basic"].items if i.place != "elevator")  # no elevator camera
    if profile == "basic_no_unit_access":
        return sorted(tiers["basic"].items)
    return sorted(tiers[profile].items)


def seed_demo(store: Store, seed: int = 2021, now: datetime | None = None,
              limit: int | None = None) -> DemoConstruction:
    """Add the demo devices to the urban communities of a freshly generated demo database."""
    now = now or utcnow()
    rng = random.Random(seed)
    serial = 0
    stalled: str | None = None
    devices = 0
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
                    oid = f"{did}02{last:%Y%m%d%H%M%S}{serial:05d}06{serial:05d}"
                    s.add(ViidObject(kind="face", object_id=oid, device_id=did, shot_at=last, received_at=last,
                                     community_code=code,
                                     body=json.dumps({"FaceID": oid, "DeviceID": did,
                                                      "ShotTime": last.strftime("%Y%m%d%H%M%S")})))
    return DemoConstruction(len(codes), devices, stalled)
