"""Rebuilding the rollups from the raw tables, and comparing them with a full recomputation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from anfang.rollups import ddl
from anfang.store.engine import Store


def _rows(conn: Any, sql: str, n_keys: int) -> dict[tuple, tuple]:  # noqa: ANN401 - a Connection or Session
    out: dict[tuple, tuple] = {}
    for row in conn.execute(text(sql)):
        values = tuple(int(v or 0) for v in row[n_keys:])
        if any(values):
            out[tuple(row[:n_keys])] = values
    return out


def drift(store: Store) -> dict[str, dict[tuple, tuple[tuple | None, tuple | None]]]:
    """Per rollup, the cells whose kept counts differ from a full recomputation: key -> (kept, recomputed).
    Empty dicts everywhere when the rollups are right."""
    out: dict[str, dict[tuple, tuple[tuple | None, tuple | None]]] = {}
    with store.engine.connect() as conn:
        for ru in ddl.rollups(conn.dialect.name):
            cols = ", ".join([*ru.keys, *ru.values])
            kept = _rows(conn, f"SELECT {cols} FROM {ru.table}", len(ru.keys))
            fresh = _rows(conn, ddl.recompute_sql(ru), len(ru.keys))
            out[ru.table] = {k: (kept.get(k), fresh.get(k)) for k in kept.keys() | fresh.keys()
                             if kept.get(k) != fresh.get(k)}
    return out


def rebuild(store: Store, step: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Recompute every rollup from the raw tables, each in its own transaction; returns the rows written per
    rollup. step(table, rows) is called after each one."""
    written: dict[str, int] = {}
    for table in ddl.TABLES:
        with store.engine.begin() as conn:
            n = ddl.refill(conn, (table,))[table]
        written[table] = n
        if step:
            step(table, n)
    return written


def reinstall(store: Store) -> None:
    """Create the rollup triggers again (after a table was re-created, e.g. by SQLite's batch migrations)."""
    with store.engine.begin() as conn:
        ddl.install(conn)
