"""Community tiers 基本型 / 提高型 / 先进型 (seed 三、(三)): which subsystem is required at which place.

The rules are data (``tiers_2021.json``, one file per version of the programme), not code branches. This module is
pure: it takes what a community has installed as ``(subsystem, place)`` pairs and answers which tier it meets and,
for the next tier, exactly which items are missing.

Where a device's subsystem comes from (see :func:`subsystem_of`): ``Device.attributes["subsystem"]`` when set (one of
the rule file's subsystem codes); otherwise a GB/T 28181 camera type code (131 摄像机, 132 IPC) means ``video``.
Its place is ``Device.place`` (one of the rule file's place codes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DEFAULT_VERSION = "2021"
CAMERA_TYPE_CODES = frozenset({"131", "132"})  # GB/T 28181 摄像机, 网络摄像机 IPC


@dataclass(frozen=True, slots=True, order=True)
class Item:
    """One requirement: ``subsystem`` installed at ``place``."""

    subsystem: str
    place: str


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    zh: str
    en: str
    items: frozenset[Item]


@dataclass(frozen=True)
class TierRules:
    version: str
    source: str
    subsystems: Mapping[str, Mapping[str, str]]
    places: Mapping[str, Mapping[str, str]]
    tiers: tuple[Tier, ...]  # lowest first

    def label_place(self, place: str, lang: str = "zh") -> str:
        return self.places.get(place, {}).get("zh" if lang.startswith("zh") else "en", place)

    def label(self, item: Item, lang: str = "zh") -> str:
        """``小区出入口 · 智能门禁`` (zh) or ``community entrance · smart access control``."""
        key = "zh" if lang.startswith("zh") else "en"
        place = self.places.get(item.place, {}).get(key, item.place)
        sub = self.subsystems.get(item.subsystem, {}).get(key, item.subsystem)
        return f"{place} · {sub}"


@dataclass(frozen=True)
class TierResult:
    met: Tier | None  # the highest tier met (and every tier below it); None: not even 基本型
    next: Tier | None  # the tier above ``met``; None when 先进型 is met
    missing: tuple[Item, ...]  # what ``next`` still lacks, sorted
    installed: frozenset[Item] = field(default_factory=frozenset)

    @property
    def met_code(self) -> str | None:
        return self.met.code if self.met else None


def parse_rules(data: Mapping[str, Any]) -> TierRules:
    """Build rules from their JSON form; unknown subsystem or place codes are an error (a typo would silently make
    a tier unreachable)."""
    subsystems, places = data["subsystems"], data["places"]
    tiers = []
    for t in data["tiers"]:
        items = set()
        for sub, wanted in t["require"].items():
            if sub not in subsystems:
                raise ValueError(f"tier {t['code']}: unknown subsystem {sub!r}")
            for place in wanted:
                if place not in places:
                    raise ValueError(f"tier {t['code']}: unknown place {place!r}")
                items.add(Item(sub, place))
        tiers.append(Tier(t["code"], t["zh"], t["en"], frozenset(items)))
    return TierRules(str(data["version"]), data.get("source", ""), subsystems, places, tuple(tiers))


@cache
def load_rules(version: str = DEFAULT_VERSION) -> TierRules:
    """The rule set of a programme version, from ``tiers_<version>.json`` next to this module."""
    path = HERE / f"tiers_{version}.json"
    if not path.is_file():
        raise LookupError(f"no tier rules for version {version!r}")
    return parse_rules(json.loads(path.read_text(encoding="utf-8")))


def subsystem_of(attributes: Mapping[str, Any] | None, type_code: str | None) -> str | None:
    """A device's subsystem: ``attributes["subsystem"]`` first, else ``video`` for a GB/T 28181 camera type."""
    sub = (attributes or {}).get("subsystem")
    if isinstance(sub, str) and sub:
        return sub
    if type_code in CAMERA_TYPE_CODES:
        return "video"
    return None


def evaluate(installed: Iterable[tuple[str | None, str | None]], rules: TierRules | None = None,
             not_applicable: Iterable[str] = ()) -> TierResult:
    """The tier a community meets given its installed ``(subsystem, place)`` pairs.

    A tier is met when every item of it and of every tier below it is installed. ``not_applicable`` lists place
    codes the community does not have (no elevator, no gas regulator station): their items are not required.
    """
    rules = rules or load_rules()
    have = frozenset(Item(s, p) for s, p in installed if s and p)
    skip = frozenset(not_applicable)
    met: Tier | None = None
    for tier in rules.tiers:
        lacking = sorted(it for it in tier.items if it not in have and it.place not in skip)
        if lacking:
            return TierResult(met, tier, tuple(lacking), have)
        met = tier
    return TierResult(met, None, (), have)
