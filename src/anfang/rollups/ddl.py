"""The rollups' triggers and their full recomputation, generated for SQLite and PostgreSQL from one description.

Every source row contributes one row of values to one cell of a rollup (``contribution``). A write adds the new rows'
contributions and subtracts the old rows': SQLite with row triggers (``INSERT ... ON CONFLICT DO UPDATE`` per row),
PostgreSQL with statement triggers over the statement's transition tables (one grouped upsert per statement, so the
importer's batches cost one extra statement each). Both run inside the writing statement, hence in its transaction.

An address's contribution in an update or delete trigger also carries the persons, houses and units living at it, so
that an address that moves to another community, 警务区 or grid takes them along (and one deleted takes them away, as
the scan's inner join does). A new address has none: the foreign keys (on in both databases) forbid rows pointing at
an address that does not exist yet. ``recompute_sql`` counts the same from the raw tables, for ``anfang rollups
rebuild`` and the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, bindparam, text

from anfang.store.base import UtcDateTime

PLATED = "('community', 'building', 'unit', 'room')"  # metrics.PLATED_LEVELS


@dataclass(frozen=True)
class Source:
    table: str
    values: dict[str, str]  # target value column -> expression over the source row r (and joined a)
    keys: dict[str, str] | None = None  # overrides the rollup's key expressions
    join: tuple[str, str] | None = None  # ("addresses a", "a.id = r.address_id")
    where: str = "1 = 1"
    watch: tuple[str, ...] = ()  # columns whose change moves the row's contribution
    dependents: dict[str, str] = field(default_factory=dict)  # trigger-only additions (address moves)


@dataclass(frozen=True)
class Rollup:
    table: str
    keys: dict[str, str]  # key column -> expression
    values: tuple[str, ...]
    sources: tuple[Source, ...]


def _flag(col: str) -> str:
    return f"CASE WHEN {col} THEN 1 ELSE 0 END"


def _count(table: str, verified: bool = False) -> str:
    """Rows of `table` at address r (verified ones: a sum over the same rows, so that the planner looks them up by
    address_id and never by the verification index, which matches most of the table)."""
    what = "CASE WHEN x.verification = 'verified' THEN 1 ELSE 0 END" if verified else "1"
    return f"(SELECT coalesce(sum({what}), 0) FROM {table} x WHERE x.address_id = r.id)"


def _day(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"date({col}, '+8 hours')"
    return f"to_char(({col} AT TIME ZONE 'UTC') + interval '8 hours', 'YYYY-MM-DD')"


_CELL_A = {"county_code": "a.county_code", "community_code": "a.community_code",
           "police_area_id": "coalesce(a.police_area_id, 0)", "grid_id": "coalesce(a.grid_id, 0)"}
_VERIFIED = "CASE WHEN r.verification = 'verified' THEN 1 ELSE 0 END"


def _lived_in(table: str, total: str) -> Source:
    return Source(table, {total: "1", f"{total}_verified": _VERIFIED}, keys=_CELL_A,
                  join=("addresses a", "a.id = r.address_id"), watch=("address_id", "verification"))


def rollups(dialect: str) -> tuple[Rollup, ...]:
    plated = f"r.level IN {PLATED}"
    registry = Rollup(
        "rollup_registry",
        {"county_code": "r.county_code", "community_code": "r.community_code",
         "police_area_id": "coalesce(r.police_area_id, 0)", "grid_id": "coalesce(r.grid_id, 0)"},
        ("addresses", "plate_installed", "plate_accurate", "plate_labelled", "persons", "persons_verified",
         "houses", "houses_verified", "units", "units_verified"),
        (Source("addresses",
                {"addresses": _flag(plated), "plate_installed": _flag(f"{plated} AND r.plate_installed"),
                 "plate_accurate": _flag(f"{plated} AND r.plate_accurate"),
                 "plate_labelled": _flag(f"{plated} AND r.plate_labelled")},
                watch=("level", "county_code", "community_code", "police_area_id", "grid_id", "plate_installed",
                       "plate_accurate", "plate_labelled"),
                dependents={"persons": _count("persons"), "persons_verified": _count("persons", True),
                            "houses": _count("houses"), "houses_verified": _count("houses", True),
                            "units": _count("work_units"), "units_verified": _count("work_units", True)}),
         _lived_in("persons", "persons"), _lived_in("houses", "houses"), _lived_in("work_units", "units")))
    devices = Rollup("rollup_devices", {"county_code": "substr(coalesce(r.community_code, r.device_id), 1, 6)",
                                        "community_code": "coalesce(r.community_code, '')", "protocol": "r.protocol",
                                        "status": "r.status"}, ("n",),
                     (Source("devices", {"n": "1"}, watch=("community_code", "device_id", "protocol", "status")),))
    captures = Rollup("rollup_captures", {"day": _day("r.shot_at", dialect), "device_id": "r.device_id",
                                          "community_code": "coalesce(r.community_code, '')"}, ("n",),
                      (Source("viid_objects", {"n": "1"}, watch=("shot_at", "device_id", "community_code")),))
    warnings = Rollup("rollup_warnings", {"county_code": "coalesce(r.county_code, '')",
                                          "community_code": "coalesce(r.community_code, '')",
                                          "police_area_id": "coalesce(r.police_area_id, 0)",
                                          "grid_id": "coalesce(r.grid_id, 0)", "state": "r.state",
                                          "category": "r.category"}, ("n",),
                      (Source("warnings", {"n": "1"}, watch=("county_code", "community_code", "police_area_id",
                                                             "grid_id", "state", "category")),))
    warnings_daily = Rollup("rollup_warnings_daily", {"day": _day("r.created_at", dialect),
                                                      "county_code": "coalesce(r.county_code, '')",
                                                      "community_code": "coalesce(r.community_code, '')"}, ("n",),
                            (Source("warnings", {"n": "1"}, watch=("created_at", "county_code", "community_code")),))
    return registry, devices, captures, warnings, warnings_daily


TABLES = ("rollup_registry", "rollup_devices", "rollup_captures", "rollup_warnings", "rollup_warnings_daily")


def _exprs(ru: Rollup, src: Source, sign: str, with_dependents: bool) -> list[str]:
    keys = src.keys or ru.keys
    out = [f"{keys[k]} AS {k}" for k in ru.keys]
    for v in ru.values:
        e = src.values.get(v, "0")
        if with_dependents and v in src.dependents:
            e = src.dependents[v] if e == "0" else f"{e} + {src.dependents[v]}"
        out.append(f"{sign}({e}) AS {v}")
    return out


def _select(ru: Rollup, src: Source, rel: str, sign: str, with_dependents: bool) -> str:
    """The contributions of the rows of relation `rel` (a table or a transition table), aliased r."""
    cols = ", ".join(_exprs(ru, src, sign, with_dependents))
    join = f" JOIN {src.join[0]} ON {src.join[1]}" if src.join else ""
    return f"SELECT {cols} FROM {rel} r{join} WHERE {src.where}"


def _upsert_head(ru: Rollup) -> tuple[str, str]:
    cols = ", ".join([*ru.keys, *ru.values])
    conflict = ", ".join(ru.keys)
    sets = ", ".join(f"{v} = {ru.table}.{v} + excluded.{v}" for v in ru.values)
    return f"INSERT INTO {ru.table} ({cols}) ", f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"


def recompute_sql(ru: Rollup) -> str:
    """SELECT of the rollup's rows counted from the raw tables (cells with only zeros left out)."""
    parts = " UNION ALL ".join(_select(ru, s, s.table, "", False) for s in ru.sources)
    keys = ", ".join(ru.keys)
    sums = ", ".join(f"sum({v}) AS {v}" for v in ru.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in ru.values)
    return f"SELECT {keys}, {sums} FROM ({parts}) c GROUP BY {keys} HAVING {nonzero}"


# ---- SQLite: row triggers ----------------------------------------------------------------------------------------
def _sqlite_row(ru: Rollup, src: Source, row: str, sign: str, with_dependents: bool = True) -> str:
    """Upsert of one row's contribution; `row` is NEW or OLD (SQLite has no FROM over them: the row's columns are
    substituted, the join becomes a correlated lookup)."""
    cols = ", ".join(_exprs(ru, src, sign, with_dependents))
    cols = re.sub(r"\br\.", f"{row}.", cols)
    if src.join:
        cond = re.sub(r"\br\.", f"{row}.", f"{src.join[1]} AND {src.where}")
        body = f"SELECT {cols} FROM {src.join[0]} WHERE {cond}"
    else:
        body = f"SELECT {cols} WHERE " + re.sub(r"\br\.", f"{row}.", src.where)
    head, tail = _upsert_head(ru)
    return head + body + tail + ";"


def _sqlite_triggers(ru: Rollup, src: Source) -> list[str]:
    name = f"trg_{ru.table}_{src.table}"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in src.watch)
    return [
        f"CREATE TRIGGER {name}_ins AFTER INSERT ON {src.table} BEGIN {_sqlite_row(ru, src, 'NEW', '', False)} END",
        f"CREATE TRIGGER {name}_del AFTER DELETE ON {src.table} BEGIN {_sqlite_row(ru, src, 'OLD', '-')} END",
        f"CREATE TRIGGER {name}_upd AFTER UPDATE ON {src.table} WHEN {changed} BEGIN "
        f"{_sqlite_row(ru, src, 'OLD', '-')} {_sqlite_row(ru, src, 'NEW', '')} END",
    ]


# ---- PostgreSQL: statement triggers over transition tables ---------------------------------------------------------
def _pg_apply(ru: Rollup, parts: list[str]) -> str:
    keys = ", ".join(ru.keys)
    sums = ", ".join(f"sum({v})" for v in ru.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in ru.values)
    head, tail = _upsert_head(ru)
    # ORDER BY: concurrent statements lock the rollup rows they change in one order (no deadlock between them)
    return (head + f"SELECT {keys}, {sums} FROM ({' UNION ALL '.join(parts)}) d GROUP BY {keys} HAVING {nonzero} "
            f"ORDER BY {keys}" + tail + ";")


def _pg_triggers(ru: Rollup, src: Source) -> list[str]:
    name = f"trg_{ru.table}_{src.table}"
    out = []
    changed = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in src.watch)
    # an update touches only the rows whose watched columns changed (a re-import rewrites every row unchanged)
    upd_old = f"(SELECT o.* FROM old_rows o JOIN new_rows n ON o.id = n.id WHERE {changed})"
    upd_new = f"(SELECT n.* FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE {changed})"
    events = {
        "ins": ("INSERT", "REFERENCING NEW TABLE AS new_rows", [_select(ru, src, "new_rows", "", False)]),
        "del": ("DELETE", "REFERENCING OLD TABLE AS old_rows", [_select(ru, src, "old_rows", "-", True)]),
        "upd": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                [_select(ru, src, upd_old, "-", True),
                 _select(ru, src, upd_new, "", True)]),
    }
    for suffix, (event, referencing, parts) in events.items():
        fn = f"{name}_{suffix}"
        # jit off: compiling the statement costs seconds, running it milliseconds
        out.append(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$ BEGIN "
                   f"{_pg_apply(ru, parts)} RETURN NULL; END $$")
        out.append(f"CREATE TRIGGER {fn} AFTER {event} ON {src.table} {referencing} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
    return out


def trigger_statements(dialect: str) -> list[str]:
    out: list[str] = []
    for ru in rollups(dialect):
        for src in ru.sources:
            out += _sqlite_triggers(ru, src) if dialect == "sqlite" else _pg_triggers(ru, src)
    return out


def drop_statements(dialect: str) -> list[str]:
    out: list[str] = []
    for ru in rollups(dialect):
        for src in ru.sources:
            for suffix in ("ins", "del", "upd"):
                name = f"trg_{ru.table}_{src.table}_{suffix}"
                if dialect == "sqlite":
                    out.append(f"DROP TRIGGER IF EXISTS {name}")
                else:
                    out.append(f"DROP TRIGGER IF EXISTS {name} ON {src.table}")
                    out.append(f"DROP FUNCTION IF EXISTS {name}()")
    return out


def install(conn: Connection) -> None:
    """(Re)create every rollup trigger on this connection's database."""
    dialect = conn.dialect.name
    for stmt in drop_statements(dialect) + trigger_statements(dialect):
        conn.exec_driver_sql(stmt)


def refill(conn: Connection, only: tuple[str, ...] = TABLES) -> dict[str, int]:
    """Replace the rollups' rows by a full recomputation from the raw tables, in the caller's transaction; returns
    the rows written per rollup. On PostgreSQL each rollup is locked first: a concurrent write waits and adds its
    change after this one commits."""
    dialect = conn.dialect.name
    written: dict[str, int] = {}
    for ru in rollups(dialect):
        if ru.table not in only:
            continue
        if dialect == "postgresql":
            conn.exec_driver_sql(f"LOCK TABLE {ru.table} IN SHARE ROW EXCLUSIVE MODE")
        conn.exec_driver_sql(f"DELETE FROM {ru.table}")
        cols = ", ".join([*ru.keys, *ru.values])
        res = conn.execute(text(f"INSERT INTO {ru.table} ({cols}) {recompute_sql(ru)}"))
        written[ru.table] = res.rowcount
    return written


def recount_capture_day(conn: Connection, day: date) -> None:
    """Count one (Beijing) day's captures afresh into rollup_captures, in the caller's transaction: for the one write
    no trigger sees — PostgreSQL's DROP of a day's partition by retention (and the kept evidence copied back)."""
    dialect = conn.dialect.name
    lo = datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=8)
    conn.execute(text("DELETE FROM rollup_captures WHERE day = :day"), {"day": day.isoformat()})
    conn.execute(text(
        f"INSERT INTO rollup_captures (day, device_id, community_code, n) "
        f"SELECT {_day('r.shot_at', dialect)}, r.device_id, coalesce(r.community_code, ''), count(*) "
        f"FROM viid_objects r WHERE r.shot_at >= :lo AND r.shot_at < :hi GROUP BY 1, 2, 3"
    ).bindparams(bindparam("lo", type_=UtcDateTime()), bindparam("hi", type_=UtcDateTime())),
        {"lo": lo, "hi": lo + timedelta(days=1)})
