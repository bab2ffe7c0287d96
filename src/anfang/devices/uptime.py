"""Per-device per-day uptime rollup (issue 20): online seconds per UTC day, kept at status-change time.

``device_uptime_days`` holds the online seconds of each device's *closed* status intervals split by UTC day;
``device_uptime_open`` holds its newest change (the interval still open). The online share of a device on a day is
``(closed seconds of that day + the open interval's overlap with the day) / day length`` — the same figure
``service.online_share`` computes from the raw history, read without touching ``device_status_history``.

Writers call :func:`refresh` in the transaction that adds history rows (``DeviceService.set_status*``); code that
writes history rows directly (demo data, benchmarks, the migration) calls :func:`rebuild`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from anfang.devices.models import DeviceStatusChange, DeviceUptimeDay, DeviceUptimeOpen

ONLINE = "online"
DAY = timedelta(days=1)


def day_start(at: datetime) -> datetime:
    """Midnight (UTC) of the UTC day containing ``at``."""
    return datetime.combine(at.astimezone(UTC).date(), time.min, UTC)


def day_key(at: datetime | date) -> str:
    return (at.astimezone(UTC).date() if isinstance(at, datetime) else at).isoformat()


def split_by_day(start: datetime, end: datetime) -> Iterable[tuple[str, float]]:
    """``[start, end)`` cut at UTC midnights: ``(day, seconds)`` pieces (pure)."""
    t = start
    while t < end:
        nxt = min(day_start(t) + DAY, end)
        yield day_key(t), (nxt - t).total_seconds()
        t = nxt


def closed_seconds(changes: Iterable[tuple[datetime, str]], not_before: datetime | None = None) \
        -> dict[str, float]:
    """Online seconds per day of the closed intervals of ordered ``(at, status)`` changes, clipped to
    ``>= not_before`` (pure)."""
    out: dict[str, float] = defaultdict(float)
    prev: tuple[datetime, str] | None = None
    for at, status in changes:
        if prev is not None and prev[1] == ONLINE:
            a = prev[0] if not_before is None else max(prev[0], not_before)
            for day, secs in split_by_day(a, at):
                out[day] += secs
        prev = (at, status)
    return dict(out)


def refresh(s: Any, device_pk: int, from_at: datetime) -> None:
    """Recompute the rollup of one device from the UTC day of ``from_at`` on (every day an added change at or after
    ``from_at`` can touch), and its open interval. Reads only that device's changes from the day before on."""
    d0 = day_start(from_at)
    base = s.execute(select(DeviceStatusChange.at, DeviceStatusChange.status)
                     .where(DeviceStatusChange.device_pk == device_pk, DeviceStatusChange.at < d0)
                     .order_by(DeviceStatusChange.at.desc(), DeviceStatusChange.id.desc()).limit(1)).first()
    rows = [(at, st) for at, st in s.execute(
        select(DeviceStatusChange.at, DeviceStatusChange.status)
        .where(DeviceStatusChange.device_pk == device_pk, DeviceStatusChange.at >= d0)
        .order_by(DeviceStatusChange.at, DeviceStatusChange.id))]
    changes = ([tuple(base)] if base is not None else []) + rows
    s.execute(delete(DeviceUptimeDay).where(DeviceUptimeDay.device_pk == device_pk,
                                            DeviceUptimeDay.day >= day_key(d0)))
    per_day = closed_seconds(changes, d0)
    if per_day:
        s.execute(insert(DeviceUptimeDay), [{"device_pk": device_pk, "day": d, "online_s": v}
                                            for d, v in sorted(per_day.items())])
    s.execute(delete(DeviceUptimeOpen).where(DeviceUptimeOpen.device_pk == device_pk))
    if changes:
        at, st = changes[-1]
        s.execute(insert(DeviceUptimeOpen), [{"device_pk": device_pk, "status": st, "since": at}])


def append(s: Any, added: dict[int, list[tuple[datetime, str]]]) -> None:
    """Record changes added to the history (``device_pk -> [(at, status), ...]`` in the order they were added).
    A device whose changes all come at or after its newest known change (the usual case: keepalives, a
    registration storm) is rolled forward without reading its history — its open interval and each new interval
    but the last are closed and their online seconds added per day (an upsert); any other device is recomputed
    from the day concerned (:func:`refresh`)."""
    if not added:
        return
    opens: dict[int, tuple[str, datetime]] = {}
    pks = list(added)
    for i in range(0, len(pks), 500):
        for pk, st, since in s.execute(select(DeviceUptimeOpen.device_pk, DeviceUptimeOpen.status,
                                              DeviceUptimeOpen.since)
                                       .where(DeviceUptimeOpen.device_pk.in_(pks[i:i + 500]))):
            opens[pk] = (st, since)
    sums: dict[tuple[int, str], float] = defaultdict(float)
    new_open: list[dict[str, Any]] = []
    for pk, changes in added.items():
        first = min(at for at, _ in changes)
        prev = opens.get(pk)
        if prev is not None and first < prev[1]:  # out of time order: recompute from that day
            refresh(s, pk, first)
            continue
        chain = ([(prev[1], prev[0])] if prev is not None else []) + sorted(changes, key=lambda c: c[0])
        for (d, secs) in closed_seconds(chain).items():
            sums[(pk, d)] += secs
        new_open.append({"device_pk": pk, "status": chain[-1][1], "since": chain[-1][0]})
    if sums:
        rows = [{"device_pk": pk, "day": d, "online_s": v} for (pk, d), v in sorted(sums.items())]
        ins = _dialect_insert(s)(DeviceUptimeDay)
        s.execute(ins.on_conflict_do_update(index_elements=["device_pk", "day"],
                                            set_={"online_s": DeviceUptimeDay.online_s + ins.excluded.online_s}),
                  rows)
    if new_open:
        ins = _dialect_insert(s)(DeviceUptimeOpen)
        s.execute(ins.on_conflict_do_update(index_elements=["device_pk"],
                                            set_={"status": ins.excluded.status, "since": ins.excluded.since}),
                  new_open)


def _dialect_insert(s: Any) -> Any:
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def open_since(s: Any, device_pks: list[int]) -> dict[int, datetime]:
    """The newest change time per device, from the rollup (to know where an added change starts to matter)."""
    out: dict[int, datetime] = {}
    for i in range(0, len(device_pks), 500):
        out.update(dict(s.execute(select(DeviceUptimeOpen.device_pk, DeviceUptimeOpen.since)
                                  .where(DeviceUptimeOpen.device_pk.in_(device_pks[i:i + 500]))).all()))
    return out


def rebuild(s: Any, batch: int = 5000) -> int:
    """Recompute the whole rollup from ``device_status_history`` (migration, demo data, benchmarks, repair).
    Streams the history in (device, time) order; returns the number of day rows written."""
    s.execute(delete(DeviceUptimeDay))
    s.execute(delete(DeviceUptimeOpen))
    days: list[dict[str, Any]] = []
    opens: list[dict[str, Any]] = []
    written = 0

    def flush(final: bool = False) -> None:
        nonlocal written
        if days and (final or len(days) >= batch):
            s.execute(insert(DeviceUptimeDay), days)
            written += len(days)
            days.clear()
        if opens and (final or len(opens) >= batch):
            s.execute(insert(DeviceUptimeOpen), opens)
            opens.clear()

    cur: int | None = None
    changes: list[tuple[datetime, str]] = []

    def close_device() -> None:
        if cur is None or not changes:
            return
        for d, v in sorted(closed_seconds(changes).items()):
            days.append({"device_pk": cur, "day": d, "online_s": v})
        opens.append({"device_pk": cur, "status": changes[-1][1], "since": changes[-1][0]})
        flush()

    result = s.execute(select(DeviceStatusChange.device_pk, DeviceStatusChange.at, DeviceStatusChange.status)
                       .order_by(DeviceStatusChange.device_pk, DeviceStatusChange.at, DeviceStatusChange.id)
                       .execution_options(yield_per=batch))
    for pk, at, st in result:
        if pk != cur:
            close_device()
            cur, changes = pk, []
        changes.append((at, st))
    close_device()
    flush(final=True)
    return written
