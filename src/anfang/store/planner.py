"""Planner statistics after a migration re-makes a table or adds an index (issue 20).

A table re-made by a migration (PostgreSQL: the per-day partitions the rows were moved into) has no statistics
until autovacuum gets to it, and an index created after the last ``ANALYZE`` of a SQLite database has none either
while every other index has: the planner then takes the new index for selective (SQLite: the addresses'
(level, code) index over the county's code index) or the moved table for empty (PostgreSQL: 2 rows a partition),
and a page that took tens of ms takes 0.5–0.9 s at city scale. Migrations that do either call these.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import Connection


def _sqlite_has_statistics(conn: Connection) -> bool:
    return conn.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").scalar_one() > 0


def analyze_table(conn: Connection, table: str) -> None:
    """Statistics of ``table`` (PostgreSQL: every partition too). SQLite: only when the database has statistics
    at all (a database without any is planned by rules alone, consistently)."""
    if conn.dialect.name == "sqlite" and not _sqlite_has_statistics(conn):
        return
    conn.exec_driver_sql(f'ANALYZE "{table}"')


def analyze_sqlite_indexes(conn: Connection, indexes: Iterable[str]) -> None:
    """SQLite: statistics of new indexes when the database has statistics (PostgreSQL keeps none per index: the
    columns' statistics serve, nothing to do)."""
    if conn.dialect.name != "sqlite" or not _sqlite_has_statistics(conn):
        return
    for name in indexes:
        conn.exec_driver_sql(f'ANALYZE "{name}"')
