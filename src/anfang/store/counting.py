"""Pager counts that stay cheap on big tables: count the matches up to a cap, and say "more than" above it.

An exact COUNT(*) visits every matching row (on the capture table, millions of them for a city-wide query), on
every page view, only to print "共 N 条". Above ``cap`` the exact figure is of no use to the reader (no one pages
through ten thousand rows), so the count stops there and the page says "超过 10,000 条".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

COUNT_CAP = 10_000


@dataclass(frozen=True)
class CappedCount:
    n: int  # the exact count, or ``cap`` when there are more
    more: bool  # True: more than ``n`` rows match

    def __int__(self) -> int:
        return self.n


def capped_count(session: Session, entity: Any, *conds: Any, cap: int | None = None) -> CappedCount:
    """How many rows of ``entity`` match ``conds``, reading at most ``cap + 1`` of them (default COUNT_CAP)."""
    cap = COUNT_CAP if cap is None else cap
    inner = select(literal(1)).select_from(entity).where(*conds).limit(cap + 1).subquery()
    n = session.scalar(select(func.count()).select_from(inner)) or 0
    return CappedCount(min(n, cap), n > cap)
