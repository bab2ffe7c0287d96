"""Captures kept per day: the day of a capture, and the per-day storage of ``viid_objects`` on both databases.

A capture's day is the China-local calendar day of its ``shot_at`` (the capture time). Every time-range query
(GA/T 1400 searches, the captures page, the dashboards' "today" counts) filters on ``shot_at``, and a device that
re-sends an object sends the same capture time (the object id embeds it, ``ids.py``), so the same object always
falls on the same day: ``shot_at`` is the partition key, and the retention drops whole days of capture time.

PostgreSQL: ``viid_objects`` is a table partitioned ``BY RANGE (shot_at)`` with one partition per day
(``viid_objects_p20261207``) and a default partition (``viid_objects_default``) as a safety net. Partitions are
created ahead (today + ``AHEAD_DAYS``) by the retention job and on demand by the ingest writer, in the same
transaction as the first row of a day (never a failed insert); a day whose rows sit in the default partition is
moved into its new partition when the partition is made. Retention detaches and drops a day's partition.

SQLite has no partitions. What is really constant-time there is only unlinking a file (``DROP TABLE`` frees every
page of the table, ``DELETE`` also updates every index per row); one database file per day would need an ATTACH per
day (10 by default) and a UNION over them behind every query of the code base. So SQLite keeps one table whose
day is a range of the ``shot_at`` index, and retention deletes a day as one index range: bounded by the size of
the day deleted, independent of how many other days the table holds.

What a partition gives the writer, SQLite gets from its indexes' keys: the two camera-major indexes (the unique
key of an object and the camera's captures by time) begin with the capture's UTC date, ``substr(shot_at, 1, 10)``
(``SQLITE_DAY``; SQLite stores ``shot_at`` as ``YYYY-MM-DD HH:MM:SS.ffffff`` text). A commit of captures from a
hundred cameras then dirties leaf pages of today's part of each index only — as small as a day, like today's
partition — where a camera-major key sent each record to its own camera's pages among the whole month's (the
writer's CPU per record grew ×1.7 from an empty table to 3 M rows, ``benchmarks/diag_capture_ingest.py``). A query
by camera or by object id names its days (``day_filter``): the days present in its time range, found by one index
seek each, so it reads one index range per day — what PostgreSQL's partition pruning does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Select, String, func, literal_column, select, table, text
from sqlalchemy.engine import Connection

from anfang.rollups import ddl as rollup_ddl
from anfang.store.engine import Store
from anfang.viid.ids import CHINA_TZ
from anfang.viid.models import SQLITE_DAY

TABLE = "viid_objects"
DEFAULT_PARTITION = "viid_objects_default"
AHEAD_DAYS = 3  # partitions made ahead of today by the maintenance job
ON_DEMAND_PAST = 400  # the writer makes a partition on demand for a day at most this many days back …
ON_DEMAND_FUTURE = 7  # … or ahead; rows outside (a camera with a wrong clock) go to the default partition
_LOCK = 20_019_002  # advisory lock id serialising partition changes (writer, retention, migration)
_sqlite_day = literal_column(SQLITE_DAY.replace("shot_at", f"{TABLE}.shot_at"), String)


def day_of(at: datetime) -> date:
    """The China-local calendar day of an aware datetime."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CHINA_TZ).date()


def day_start(day: date) -> datetime:
    """00:00 China time of ``day``, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=CHINA_TZ).astimezone(UTC)


def day_key(day: date) -> int:
    """``20261207``: the day as an integer (``viid_blobs.day``, segment directory names)."""
    return day.year * 10000 + day.month * 100 + day.day


def partition_name(day: date) -> str:
    return f"{TABLE}_p{day_key(day)}"


def is_partitioned(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"),
                        {"t": TABLE}).scalar() == "p"


def partition_days(conn: Connection) -> list[date]:
    """The days that have their own partition (PostgreSQL), oldest first; [] elsewhere."""
    if not is_partitioned(conn):
        return []
    names = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = to_regclass(:t)"), {"t": TABLE}).scalars()
    prefix = f"{TABLE}_p"
    return sorted(date(int(n[-8:-4]), int(n[-4:-2]), int(n[-2:])) for n in names
                  if n.startswith(prefix) and n[len(prefix):].isdigit())


def _lit(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def ensure_days(conn: Connection, days: Iterable[date]) -> list[date]:
    """Make the partitions of ``days`` that do not exist yet (PostgreSQL; nothing elsewhere) in the caller's
    transaction; rows of such a day already in the default partition move into it. Returns the days made."""
    wanted = set(days)
    if not wanted or not is_partitioned(conn):
        return []
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    made = sorted(wanted - set(partition_days(conn)))
    for day in made:
        name, lo, hi = partition_name(day), day_start(day), day_start(day + timedelta(days=1))
        conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS)")
        conn.execute(text(f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE shot_at >= :lo AND shot_at < :hi "
                          f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"), {"lo": lo, "hi": hi})
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT ck_{name}_day "
                             f"CHECK (shot_at >= '{_lit(lo)}' AND shot_at < '{_lit(hi)}')")
        conn.exec_driver_sql(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} "
                             f"FOR VALUES FROM ('{_lit(lo)}') TO ('{_lit(hi)}')")
        conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT ck_{name}_day")  # implied by the bounds now
    return made


def ensure_for_rows(conn: Connection, days: Iterable[date], today: date | None = None) -> list[date]:
    """The writer's on-demand call: partitions for the days of new rows within the plausible window."""
    today = today or day_of(datetime.now(UTC))
    lo, hi = today - timedelta(days=ON_DEMAND_PAST), today + timedelta(days=ON_DEMAND_FUTURE)
    return ensure_days(conn, [d for d in days if lo <= d <= hi])


def ensure_ahead(conn: Connection, today: date | None = None, ahead: int = AHEAD_DAYS) -> list[date]:
    """The maintenance job's call: today's partition and the next ``ahead`` days'."""
    today = today or day_of(datetime.now(UTC))
    return ensure_days(conn, [today + timedelta(days=i) for i in range(ahead + 1)])


def drop_day(conn: Connection, day: date, keep_ids: Iterable[int]) -> tuple[int, int]:
    """Drop the partition of ``day`` (PostgreSQL) in the caller's transaction: DETACH, copy the rows whose id is in
    ``keep_ids`` back into the table (they land in the default partition, the day having none any more), DROP.
    Returns (rows dropped, rows kept)."""
    name = partition_name(day)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    total = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
    keep = sorted(set(keep_ids))
    kept = 0
    if keep:
        kept = conn.execute(text(f"INSERT INTO {TABLE} SELECT * FROM {name} WHERE id = ANY(:ids)"),
                            {"ids": keep}).rowcount or 0
    conn.exec_driver_sql(f"DROP TABLE {name}")
    rollup_ddl.recount_capture_day(conn, day)  # no trigger sees a dropped partition
    return total - kept, kept


def utc_day_key(at: datetime) -> str:
    """``2026-12-07``: the UTC date of ``at`` as SQLite's day-led indexes key it."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def day_filter(dialect: str, begin: datetime | None = None, end: datetime | None = None
               ) -> ColumnElement[bool] | None:
    """SQLite: the condition naming the capture days between ``begin`` and ``end`` (either open) for a query by
    camera or by object id, so that it reads one range of a day-led index per day present; None on PostgreSQL,
    where the partitions do this. The days are those present in the table, found one index seek each by a
    recursive query (SQLite has no loose index scan), so an open range or a camera with a wrong clock costs one
    seek per stored day, never a scan."""
    if dialect != "sqlite":
        return None
    return _sqlite_day.in_(_days_present(begin, end))


def _days_present(begin: datetime | None = None, end: datetime | None = None) -> Select:
    """SQLite: the UTC days holding captures between ``begin`` and ``end``, one index seek per day."""
    lo = utc_day_key(begin) if begin else "0000-00-00"
    hi = utc_day_key(end) if end else "9999-99-99"
    objects = table(TABLE)
    first = select(func.min(_sqlite_day).label("d")).select_from(objects).where(_sqlite_day >= lo)
    present = first.cte("capture_days", recursive=True)
    step = select(func.min(_sqlite_day)).select_from(objects).where(_sqlite_day > present.c.d).scalar_subquery()
    present = present.union_all(select(step).where(present.c.d.is_not(None), present.c.d < hi))
    return select(present.c.d).where(present.c.d.is_not(None), present.c.d <= hi)


def day_keys_filter(dialect: str, moments: Iterable[datetime]) -> ColumnElement[bool] | None:
    """SQLite: the condition naming exactly the UTC days of ``moments`` (the writer's duplicate check: a re-sent
    object has the capture time it had, so it can only be on one of those days); None on PostgreSQL."""
    if dialect != "sqlite":
        return None
    return _sqlite_day.in_(sorted({utc_day_key(m) for m in moments}))


def sqlite_last_shots(store: Store, device_ids: Iterable[str]) -> dict[str, datetime]:
    """SQLite: the newest capture time of each camera in ``device_ids`` that has one. The camera index is led by
    the day, so the newest day of each camera comes from the captures rollup (``rollup_captures``, one row per
    China day, camera and community, kept by the insert trigger): one scan of that small table, then per camera
    one index seek in each of the two UTC days its China day spans. A camera without captures costs nothing."""
    wanted = set(device_ids)
    out: dict[str, datetime] = {}
    with store.engine.connect() as conn:
        newest = [(dev, day) for dev, day in conn.exec_driver_sql(
            "SELECT device_id, max(day) FROM rollup_captures WHERE n > 0 GROUP BY device_id") if dev in wanted]
        if not newest:
            return out
        triples = []
        for dev, day in newest:
            d = date.fromisoformat(day)
            triples.append([dev, (d - timedelta(days=1)).isoformat(), d.isoformat()])
        seek = f"(SELECT max(shot_at) FROM {TABLE} WHERE {SQLITE_DAY} = json_extract(j.value, '$[%d]') " \
               "AND device_id = json_extract(j.value, '$[0]'))"
        rows = conn.exec_driver_sql(f"SELECT json_extract(j.value, '$[0]'), {seek % 1}, {seek % 2} "
                                    "FROM json_each(?) AS j", (json.dumps(triples),)).all()
    for dev, a, b in rows:
        shot = max((x for x in (a, b) if x is not None), default=None)
        if shot is not None:
            out[dev] = datetime.fromisoformat(shot).replace(tzinfo=UTC)
    return out
