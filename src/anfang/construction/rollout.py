"""Ju'an rollout (居安工程): cameras per county, town and village by siting category, the share of occupied village
residential buildings with a camera, and the 2021 early target — figures and targets from ``rollout_<v>.json``.

Measured from the registry and the device table:
- a 居安 camera is a video device (``subsystem`` video / vehicle_recognition, or a GB/T 28181 camera type) in a
  village (``Region.kind == "village"``), counted in channels (``attributes["channels"]``, default 1); its siting
  category is ``Device.place`` (village_entrance, intersection, construction_site, residence; anything else "other");
- an *occupied* residential building (实际居住楼幢) is a building address of a village holding a house that is not
  vacant; it *has a camera* when a camera's ``address_id`` is that building or an address below it;
- the early target counts channels registered (``registered_at``, else ``created_at``) by its date.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, text, true
from sqlalchemy.orm import aliased

from anfang.construction.operations import CAPTURING_SUBSYSTEMS
from anfang.construction.tiers import subsystem_of
from anfang.devices.models import Device
from anfang.registry.models import Address, House, Region
from anfang.store.engine import Store

HERE = Path(__file__).parent


@dataclass(frozen=True)
class RolloutRules:
    source: str
    places: dict[str, dict[str, str]]
    house_share_targets: dict[int, float]
    early_channels: int
    early_by: date
    early_source: str
    year_targets: dict[int, int]


@cache
def load_rollout_rules(version: str = "2021") -> RolloutRules:
    d = json.loads((HERE / f"rollout_{version}.json").read_text(encoding="utf-8"))
    e = d["early_target"]
    return RolloutRules(d["source"], d["places"], {int(k): float(v) for k, v in d["house_share_targets"].items()},
                        int(e["channels"]), date.fromisoformat(e["by"]), e["source"],
                        {int(k): int(v) for k, v in d["year_targets"].items()})


def house_share_target(year: int, rules: RolloutRules | None = None) -> float | None:
    """The target share for ``year``: the latest target at or before it (2022's 50% holds afterwards)."""
    r = rules or load_rollout_rules()
    past = [y for y in r.house_share_targets if y <= year]
    return r.house_share_targets[max(past)] if past else None


@dataclass
class Tally:
    code: str
    name: str = ""
    level: str = "village"
    channels: int = 0
    by_place: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    buildings: int = 0  # occupied residential buildings
    with_camera: int = 0

    @property
    def house_share(self) -> float | None:
        return self.with_camera / self.buildings if self.buildings else None

    def add(self, other: Tally) -> None:
        self.channels += other.channels
        for k, v in other.by_place.items():
            self.by_place[k] += v
        self.buildings += other.buildings
        self.with_camera += other.with_camera

    def to_dict(self, target: float | None = None) -> dict[str, Any]:
        share = self.house_share
        return {"code": self.code, "name": self.name, "level": self.level, "channels": self.channels,
                "by_place": dict(self.by_place), "buildings": self.buildings, "with_camera": self.with_camera,
                "house_share": share, "house_target": target,
                "house_below_target": share is not None and target is not None and share < target}


def _building_of(addr: int, tree: dict[int, tuple[int | None, str]]) -> int | None:
    seen = 0
    cur: int | None = addr
    while cur is not None and seen < 8:
        parent, level = tree.get(cur, (None, ""))
        if level == "building":
            return cur
        cur, seen = parent, seen + 1
    return None


def _building_expr() -> tuple[Any, list[Any]]:
    """The building above ``Address`` (itself, or one of its four nearest ancestors: room → floor → unit →
    building), as a SQL expression, and the parent aliases to outer-join for it."""
    parents = [aliased(Address) for _ in range(4)]
    cases = [(Address.level == "building", Address.id)]
    cases += [(p.level == "building", p.id) for p in parents]
    return case(*cases, else_=None), parents


def _occupied_below(building_id: Any, depth: int = 4) -> ColumnElement[bool]:
    """A non-vacant house at the building or at an address up to ``depth`` levels below it (unit, floor, room):
    EXISTS probes down the ``parent_id`` index that stop at the first house found, so the cost follows the
    buildings, not the houses."""
    probes = [select(House.id).where(House.address_id == building_id, House.use != "vacant").exists()]
    for n in range(1, depth + 1):
        chain = [aliased(Address) for _ in range(n)]
        q = select(House.id).select_from(chain[0])
        for up, down in zip(chain, chain[1:], strict=False):
            q = q.join(down, down.parent_id == up.id)
        q = q.join(House, House.address_id == chain[-1].id).where(chain[0].parent_id == building_id,
                                                                   House.use != "vacant")
        probes.append(q.exists())
    return or_(*probes)


def _with_parents(stmt: Any, parents: list[Any]) -> Any:
    prev: Any = Address
    for p in parents:
        stmt = stmt.outerjoin(p, p.id == prev.parent_id)
        prev = p
    return stmt


def village_tallies(store: Store, device_scope: ColumnElement[bool] | None = None,
                    address_scope: ColumnElement[bool] | None = None) -> dict[str, Tally]:
    """Per village code: channels by siting category, occupied residential buildings and those with a camera.
    Aggregated by the database: channels per (village, siting category) in one GROUP BY; the cameras' buildings by
    joins up the address tree from the cameras' addresses; the occupied buildings by EXISTS probes down from each
    village building (a house nested under two buildings counts for both; the tree is not walked in Python)."""
    places = load_rollout_rules().places
    village_codes = select(Region.code).where(Region.kind == "village")
    sub = Device.attributes["subsystem"].as_string()
    n = func.coalesce(func.nullif(Device.attributes["channels"].as_integer(), 0), 1)
    building, parents = _building_expr()
    ascope = address_scope if address_scope is not None else true()
    with store.session() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SET LOCAL jit = off"))  # compiling these probes costs more than running them
        villages = dict(s.execute(select(Region.code, Region.name).where(Region.level == "community",
                                                                         Region.kind == "village")).all())
        out = {c: Tally(c, nm) for c, nm in villages.items()}
        dcond = [device_scope if device_scope is not None else true(), Device.community_code.in_(village_codes),
                 Device.review != "rejected"]
        for code, sub_v, type_code, place, total in s.execute(
                select(Device.community_code, sub, Device.type_code, Device.place, func.sum(n)).where(*dcond)
                .group_by(Device.community_code, sub, Device.type_code, Device.place)):
            if subsystem_of({"subsystem": sub_v} if sub_v else None, type_code) not in CAPTURING_SUBSYSTEMS:
                continue
            tally = out.setdefault(code, Tally(code))
            tally.channels += int(total or 0)
            tally.by_place[place if place in places else "other"] += int(total or 0)
        cams = _with_parents(select(Device.attributes["subsystem"].as_string(), Device.type_code, building)
                             .join(Address, Address.id == Device.address_id), parents) \
            .where(*dcond, ascope, Address.community_code.in_(village_codes)).distinct()
        camera_buildings = {b for sub_v, type_code, b in s.execute(cams) if b is not None
                            and subsystem_of({"subsystem": sub_v} if sub_v else None, type_code)
                            in CAPTURING_SUBSYSTEMS}
        buildings: dict[str, set[int]] = defaultdict(set)
        for code, b in s.execute(select(Address.community_code, Address.id).where(
                ascope, Address.level == "building", Address.community_code.in_(village_codes),
                _occupied_below(Address.id))):
            buildings[code].add(b)
    for code, bs in buildings.items():
        tally = out.setdefault(code, Tally(code))
        tally.buildings = len(bs)
        tally.with_camera = len(bs & camera_buildings)
    return out


def village_tallies_full(store: Store, device_scope: ColumnElement[bool] | None = None,
                    address_scope: ColumnElement[bool] | None = None) -> dict[str, Tally]:
    """The reference computation of :func:`village_tallies` (walks the whole village address tree in Python);
    kept for the aggregate test."""
    places = load_rollout_rules().places
    with store.session() as s:
        villages = dict(s.execute(select(Region.code, Region.name).where(Region.level == "community",
                                                                         Region.kind == "village")).all())
        out = {c: Tally(c, n) for c, n in villages.items()}
        cams = s.execute(select(Device.community_code, Device.attributes, Device.type_code, Device.place,
                                Device.address_id)
                         .where(device_scope if device_scope is not None else true(),
                                Device.community_code.in_(select(Region.code).where(Region.kind == "village")),
                                Device.review != "rejected")).all()
        tree = {i: (parent, level) for i, parent, level in s.execute(
            select(Address.id, Address.parent_id, Address.level).where(
                address_scope if address_scope is not None else true(),
                Address.community_code.in_(select(Region.code).where(Region.kind == "village"))))}
        occupied = s.execute(select(Address.community_code, House.address_id).join(Address, Address.id ==
                                                                                 House.address_id)
                             .where(address_scope if address_scope is not None else true(),
                                    Address.community_code.in_(select(Region.code).where(Region.kind == "village")),
                                    House.use != "vacant")).all()
    camera_buildings: set[int] = set()
    for code, attrs, type_code, place, address_id in cams:
        if subsystem_of(attrs, type_code) not in CAPTURING_SUBSYSTEMS:
            continue
        t = out.setdefault(code, Tally(code))
        n = int((attrs or {}).get("channels") or 1)
        t.channels += n
        t.by_place[place if place in places else "other"] += n
        if address_id is not None and (b := _building_of(address_id, tree)) is not None:
            camera_buildings.add(b)
    buildings: dict[str, set[int]] = defaultdict(set)
    for code, addr in occupied:
        if (b := _building_of(addr, tree)) is not None:
            buildings[code].add(b)
    for code, bs in buildings.items():
        t = out.setdefault(code, Tally(code))
        t.buildings = len(bs)
        t.with_camera = len(bs & camera_buildings)
    return out


# ---- the village tallies, computed once a minute ------------------------------------------------------------
def cached_village_tallies(store: Store, villages: Callable[[str], bool] | None = None, *,
                           max_age_s: float = 60.0, background: bool = True) \
        -> tuple[dict[str, Tally], datetime]:
    """The village tallies of the whole city (:func:`village_tallies` without a scope), computed at most once per
    ``max_age_s`` per store, restricted to the villages ``villages`` accepts; and when they were computed.

    Each village's tally depends only on that village's devices, addresses and houses, so the unscoped tallies
    restricted to a user's villages are the scoped ones (scopes here are sets of communities). A copy older than
    ``max_age_s`` is still answered while one background thread recomputes it (``background=False``: recompute
    first); the figures are therefore at most about two minutes old — progress figures (channels installed,
    buildings covered) that change with installations, not by the second."""
    from anfang.construction import minutely

    tallies, at = minutely.cached(store, "village_tallies", lambda: village_tallies(store), max_age_s=max_age_s,
                                  background=background)
    keep = villages or (lambda _code: True)
    return {c: t for c, t in tallies.items() if keep(c)}, at


def roll_up(tallies: dict[str, Tally], level: str, names: dict[str, str] | None = None) -> list[Tally]:
    """Village tallies summed per town (9 digits + 000) or county (6 digits); ``village`` returns them as they are."""
    if level == "village":
        return [tallies[k] for k in sorted(tallies)]
    out: dict[str, Tally] = {}
    for code, t in tallies.items():
        key = code[:9] + "000" if level == "town" else code[:6]
        agg = out.setdefault(key, Tally(key, (names or {}).get(key, key), level))
        agg.add(t)
    return [out[k] for k in sorted(out)]


def channels_registered_by(store: Store, by: date, device_scope: ColumnElement[bool] | None = None) -> int:
    """Village camera channels registered by the end of ``by`` (UTC), summed by the database."""
    end = datetime.combine(by, time.max, UTC)
    sub = Device.attributes["subsystem"].as_string()
    n = func.coalesce(func.nullif(Device.attributes["channels"].as_integer(), 0), 1)
    total = 0
    with store.session() as s:
        for sub_v, type_code, k in s.execute(
                select(sub, Device.type_code, func.sum(n))
                .where(device_scope if device_scope is not None else true(), Device.review != "rejected",
                       Device.community_code.in_(select(Region.code).where(Region.kind == "village")),
                       func.coalesce(Device.registered_at, Device.created_at) <= end)
                .group_by(sub, Device.type_code)):
            if subsystem_of({"subsystem": sub_v} if sub_v else None, type_code) in CAPTURING_SUBSYSTEMS:
                total += int(k or 0)
    return total


def early_target(store: Store, device_scope: ColumnElement[bool] | None = None) -> dict[str, Any]:
    """The 2021 early target (seed 四、(1)): 1,750 channels by the end of April."""
    r = load_rollout_rules()
    done = channels_registered_by(store, r.early_by, device_scope)
    return {"target": r.early_channels, "by": r.early_by.isoformat(), "done": done,
            "share": min(done / r.early_channels, 1.0) if r.early_channels else None,
            "met": done >= r.early_channels, "source": r.early_source}
