"""The demo's patrols (``anfang demo``): this month's check-ins of the grid workers at part of their grids' patrol
points (gates, buildings, unit doors), so the door-plate hub's patrol coverage per grid shows what a working
programme looks like instead of 0 % everywhere. Deterministic for a seed."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from anfang.doorplates.models import PatrolRecord
from anfang.doorplates.service import PATROL_LEVELS, current_month, month_range
from anfang.registry.models import Address
from anfang.security.models import User
from anfang.store.base import utcnow
from anfang.store.engine import Store

NOTES = ("例行巡查", "消防通道畅通", "单元门门禁正常", "楼道照明正常", None, None)


def seed_patrols(store: Store, seed: int = 2021, now: datetime | None = None) -> int:
    """Add this month's patrol check-ins (between the month's start and ``now``); returns how many."""
    rng = random.Random(seed)
    now = now or utcnow()
    start, _ = month_range(current_month())
    span = max((now - start).total_seconds(), 60.0)
    added = 0
    with store.session() as s:
        workers = {u.grid_id: u for u in s.scalars(select(User).where(User.role == "grid_worker",
                                                                      User.grid_id.is_not(None)).order_by(User.id))}
        points: dict[int, list[tuple[int, float | None, float | None]]] = defaultdict(list)
        for pk, grid_id, lon, lat in s.execute(select(Address.id, Address.grid_id, Address.lon, Address.lat)
                                               .where(Address.level.in_(PATROL_LEVELS), Address.grid_id.is_not(None))
                                               .order_by(Address.id)):
            points[grid_id].append((pk, lon, lat))
        for grid_id in sorted(points):
            share = rng.uniform(0.3, 0.95)  # grids differ: some workers are behind this month
            worker = workers.get(grid_id)
            for pk, lon, lat in points[grid_id]:
                if rng.random() >= share:
                    continue
                for _ in range(rng.randint(1, 3)):
                    at = min(start + timedelta(seconds=rng.uniform(0, span)), now)
                    s.add(PatrolRecord(address_id=pk, grid_id=grid_id, user_id=worker.id if worker else None,
                                       username=worker.username if worker else "演示网格员", role="grid_worker",
                                       at=at, lon=lon, lat=lat, note=rng.choice(NOTES)))
                    added += 1
    return added


__all__ = ["seed_patrols"]
