"""Behaviour models over event histories — pure functions, thresholds as parameters (configured in BehaviourConfig).

Each takes plain tuples (what the engine reads from the event log) and returns what should become a warning.
Day boundaries and "night" are in local time (China Standard Time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class BehaviourConfig:
    elderly_unseen_hours: float = 48  # 关爱: an elderly person living alone not seen passing any door
    rental_uses_per_day: int = 10  # one card / face used more than this many times a day ...
    rental_consecutive_days: int = 3  # ... on this many consecutive days
    rental_people_per_week: int = 8  # more distinct people than this in one rental house within 7 days
    stranger_times: int = 5  # an unregistered face seen at least this often ...
    stranger_days: int = 7  # ... within this many days
    night_start_hour: int = 22
    night_end_hour: int = 6
    night_entries_per_week: int = 4  # a vehicle entering at night at least this often in 7 days
    occupant_days: int = 5  # passages on at least this many days of a week make a "regular occupant"
    device_silent_hours: float = 24  # a device or camera that stopped reporting


def _local_day(at: datetime) -> date:
    return at.astimezone(LOCAL).date()


def elderly_unseen(last_seen: dict[int, datetime | None], now: datetime, cfg: BehaviourConfig) -> list[int]:
    """Persons (elderly living alone) whose last door passage is older than the threshold, or who were never seen."""
    limit = now - timedelta(hours=cfg.elderly_unseen_hours)
    return sorted(pid for pid, at in last_seen.items() if at is None or at < limit)


def heavy_credentials(uses: Iterable[tuple[Hashable, datetime]], cfg: BehaviourConfig) -> list[Hashable]:
    """Cards or faces used more than N times a day on K consecutive days (suspected group rental)."""
    per_day: dict[Hashable, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for cred, at in uses:
        per_day[cred][_local_day(at)] += 1
    flagged = []
    for cred, days in per_day.items():
        heavy = sorted(d for d, n in days.items() if n > cfg.rental_uses_per_day)
        run = best = 0
        for i, d in enumerate(heavy):
            run = run + 1 if i and d - heavy[i - 1] == timedelta(days=1) else 1
            best = max(best, run)
        if best >= cfg.rental_consecutive_days:
            flagged.append(cred)
    return flagged


def crowded_houses(visits: Iterable[tuple[int, Hashable, datetime]], now: datetime,
                   cfg: BehaviourConfig) -> dict[int, int]:
    """Rental houses with more distinct people than the threshold in the last 7 days: house id → people."""
    since = now - timedelta(days=7)
    people: dict[int, set[Hashable]] = defaultdict(set)
    for house, who, at in visits:
        if since <= at <= now:
            people[house].add(who)
    return {h: len(p) for h, p in people.items() if len(p) > cfg.rental_people_per_week}


def repeated_strangers(sightings: Iterable[tuple[Hashable, datetime]], now: datetime,
                       cfg: BehaviourConfig) -> dict[Hashable, int]:
    """Unregistered faces (clustered ids) seen at least N times within M days: face key → times."""
    since = now - timedelta(days=cfg.stranger_days)
    counts: dict[Hashable, int] = defaultdict(int)
    for key, at in sightings:
        if since <= at <= now:
            counts[key] += 1
    return {k: n for k, n in counts.items() if n >= cfg.stranger_times}


def is_night(at: datetime, cfg: BehaviourConfig) -> bool:
    hour = at.astimezone(LOCAL).hour
    return hour >= cfg.night_start_hour or hour < cfg.night_end_hour


def night_vehicles(entries: Iterable[tuple[str, datetime]], now: datetime, cfg: BehaviourConfig) -> dict[str, int]:
    """Plates entering at night at least N times in the last 7 days: plate → entries."""
    since = now - timedelta(days=7)
    counts: dict[str, int] = defaultdict(int)
    for plate, at in entries:
        if since <= at <= now and is_night(at, cfg):
            counts[plate] += 1
    return {p: n for p, n in counts.items() if n >= cfg.night_entries_per_week}


def unregistered_occupancy(visits: Iterable[tuple[int, Hashable, datetime]], registered: dict[int, int],
                           now: datetime, cfg: BehaviourConfig) -> list[int]:
    """Houses with regular occupants (a person passing on ≥ K days of the last week) but no registered resident
    (suspected unregistered rental). ``registered``: house id → registered residents."""
    since = now - timedelta(days=7)
    days: dict[tuple[int, Hashable], set[date]] = defaultdict(set)
    for house, who, at in visits:
        if since <= at <= now:
            days[(house, who)].add(_local_day(at))
    regular = {house for (house, _), d in days.items() if len(d) >= cfg.occupant_days}
    return sorted(h for h in regular if registered.get(h, 0) == 0)


def silent_devices(last_report: dict[str, datetime | None], now: datetime, cfg: BehaviourConfig) -> list[str]:
    """Devices whose last report (event or keepalive) is older than the threshold."""
    limit = now - timedelta(hours=cfg.device_silent_hours)
    return sorted(d for d, at in last_report.items() if at is None or at < limit)
