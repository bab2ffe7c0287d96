"""Captures kept per day (SQLite and PostgreSQL): per-day partitions / ranges, per-day segment files, retention of
whole days that keeps disposition evidence, partition pruning, and the migration of an existing capture table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from anfang.store.engine import Store
from anfang.store.migrate import upgrade
from anfang.viid import days, retention
from anfang.viid.images import SegmentImageStore
from anfang.viid.models import ViidBlob, ViidDisposition, ViidDispositionHit, ViidImage, ViidObject
from anfang.viid.service import IngestWriter, Query, list_objects, object_images, prepare
from anfang.viid.simulator import face, make_jpeg

CAM = "35040200001190000001"
CAM2 = "35040200001190000002"
NOW = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 China time
TODAY = days.day_of(NOW)


def _at(day_offset: int, hour: int = 10) -> datetime:
    """``hour`` o'clock China time, ``day_offset`` days from TODAY."""
    return days.day_start(TODAY + timedelta(days=day_offset)) + timedelta(hours=hour)


def _face(device: str, at: datetime, jpeg: bytes, serial: int):  # noqa: ANN202
    return prepare("face", face(device, jpeg, at=at, serial=serial), max_image=1 << 20)


@pytest.fixture
def writer(store: Store, tmp_path: Path) -> Iterator[IngestWriter]:
    w = IngestWriter(store, SegmentImageStore(tmp_path / "segments", fsync=False))
    yield w
    w.stop()
    w.images.close()


def _count(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(ViidObject)) or 0


def test_days_land_in_their_own_partitions_and_files_resends_stored_once_queries_pruned(store: Store,
                                                                               writer: IngestWriter) -> None:
    shared = make_jpeg(4000, seed=1)  # the same bytes on two days: indexed once, in the newer day's files
    items = [_face(CAM, _at(-10), shared, 1), _face(CAM, _at(-1), make_jpeg(4000, seed=2), 2),
             _face(CAM, _at(0), shared, 3), _face(CAM2, _at(30), make_jpeg(4000, seed=4), 4)]
    stored = writer.write(items)
    assert all(st.pk is not None for st in stored)
    # one directory of segment files a day; the shared bytes only in the newer day's
    assert writer.images.days() == [f"{days.day_key(TODAY + timedelta(days=d))}" for d in (-1, 0, 30)]
    again = writer.write([_face(CAM, _at(-10), shared, 1), _face(CAM2, _at(30), make_jpeg(4000, seed=4), 4)])
    assert [st.pk for st in again] == [None, None]  # a device's retry: acknowledged, not stored twice
    assert _count(store) == 4
    with store.session() as s:
        blob_days = dict(s.execute(select(ViidBlob.sha256, ViidBlob.day)).all())
        assert len(blob_days) == 3 and sorted(blob_days.values())[-2] == days.day_key(TODAY)
        conn = s.connection()
        if days.is_partitioned(conn):
            made = days.partition_days(conn)
            # made on demand for the days of the rows (10 days back too); 30 days ahead is no plausible capture
            # time: the default partition holds it
            assert {TODAY - timedelta(days=10), TODAY - timedelta(days=1), TODAY} <= set(made)
            assert TODAY + timedelta(days=30) not in made
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {days.DEFAULT_PARTITION}").scalar_one() == 1
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {days.partition_name(TODAY)}").scalar_one() == 1
    # every image readable through the index
    locs = object_images(store, [st.pk for st in stored])
    assert all(writer.images.get(loc) for per in locs.values() for loc in per.values())
    total, _ = list_objects(store, "face", Query(device_id=CAM, begin=_at(-1, 9), end=_at(-1, 10)))
    assert total == 1
    # the maintenance job makes the days ahead (idempotent); a time-range query touches only its days
    made = retention.maintain(store, now=NOW + timedelta(days=5))
    with store.session() as s:
        conn = s.connection()
        if not days.is_partitioned(conn):  # SQLite: a day is a range of the shot_at index by construction
            assert made == []
            return
        have = set(days.partition_days(conn))
        assert {TODAY + timedelta(days=5 + i) for i in range(days.AHEAD_DAYS + 1)} <= have
        assert days.ensure_ahead(conn, TODAY + timedelta(days=5)) == []
        # the shape of list_objects / the captures page: one camera, one hour, newest first
        plan = "\n".join(r[0] for r in conn.execute(text(
            "EXPLAIN SELECT id, body FROM viid_objects WHERE kind = 'face' AND device_id = :d AND shot_at >= :a "
            "AND shot_at <= :b ORDER BY shot_at DESC, id DESC LIMIT 20"), {"d": CAM, "a": _at(-1, 9),
                                                                          "b": _at(-1, 10)}))
        touched = {d for d in have if days.partition_name(d) in plan}
        assert touched == {TODAY - timedelta(days=1)}, plan
        assert days.DEFAULT_PARTITION not in plan


def test_retention_drops_whole_days_keeps_evidence_and_its_images(store: Store, writer: IngestWriter) -> None:
    shared = make_jpeg(4000, seed=11)
    evidence_jpeg = make_jpeg(4000, seed=12)
    old = writer.write([_face(CAM, _at(-40), evidence_jpeg, 1), _face(CAM, _at(-40, 11), shared, 2),
                        _face(CAM, _at(-40, 12), make_jpeg(4000, seed=13), 3)])
    young = writer.write([_face(CAM, _at(-2), shared, 4), _face(CAM, _at(0), make_jpeg(4000, seed=14), 5)])
    with store.session() as s:
        s.add(ViidDisposition(disposition_id="D1", category="1", body="{}", status=0))
        s.add(ViidDisposition(disposition_id="D9", category="1", body="{}", status=1))  # closed: no protection
        s.flush()
        s.add(ViidDispositionHit(disposition_id="D1", object_pk=old[0].pk))
        s.add(ViidDispositionHit(disposition_id="D9", object_pk=old[2].pk))
    assert len(writer.images.days()) == 3
    result = retention.purge(store, writer.images, days=30, now=NOW)
    assert (result.objects, result.kept_for_dispositions) == (2, 1)
    # the old day's files are gone whole; the evidence's bytes moved to today's files first
    assert writer.images.days() == [str(days.day_key(TODAY - timedelta(days=2))), str(days.day_key(TODAY))]
    left = object_images(store, [old[0].pk, young[0].pk, young[1].pk])
    assert set(left) == {old[0].pk, young[0].pk, young[1].pk}
    assert writer.images.get(next(iter(left[old[0].pk].values()))) == evidence_jpeg
    assert writer.images.get(next(iter(left[young[0].pk].values()))) == shared
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(ViidDispositionHit)) == 1  # the closed one's hit went
        assert s.scalar(select(func.count()).select_from(ViidImage)) == 3
        conn = s.connection()
        if days.is_partitioned(conn):
            assert TODAY - timedelta(days=40) not in days.partition_days(conn)
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {days.DEFAULT_PARTITION}").scalar_one() == 1
    # a late upload for the dropped day: its partition comes back on demand and takes the kept row in
    late = writer.write([_face(CAM2, _at(-40, 15), make_jpeg(4000, seed=15), 6)])
    assert late[0].pk is not None
    total, rows = list_objects(store, "face", Query(begin=_at(-41), end=_at(-39)))
    assert total == 2 and {pk for pk, _ in rows} == {old[0].pk, late[0].pk}
    # the disposition closes: the next run takes the evidence too
    with store.session() as s:
        s.get(ViidDisposition, "D1").status = 2
    result = retention.purge(store, writer.images, days=30, now=NOW)
    assert (result.objects, result.kept_for_dispositions) == (2, 0)
    assert _count(store) == 2




def _captures_at_0018(url: str) -> tuple[Store, list[dict]]:
    """A database at migration 0018 holding three captures of CAM, one a day, in the table as 0018 had it."""
    upgrade(url, "0018")
    store = Store(url)
    rows = [{"kind": "face", "object_id": f"{CAM}02{i:019d}0600001", "device_id": CAM, "shot_at": _at(-i),
             "received_at": _at(-i), "body": "{}"} for i in range(3)]
    with store.session() as s:
        s.execute(insert(ViidObject.__table__).values(rows))
    return store, rows


def test_migration_converts_an_existing_capture_table(empty_url: str) -> None:
    store, rows = _captures_at_0018(empty_url)
    try:
        store.dispose()
        upgrade(empty_url, "0019b")
        with store.session() as s:
            got = s.execute(select(ViidObject.id, ViidObject.object_id).order_by(ViidObject.id)).all()
            assert [r[1] for r in got] == [r["object_id"] for r in rows]
            conn = s.connection()
            if days.is_partitioned(conn):
                assert {TODAY - timedelta(days=i) for i in range(3)} <= set(days.partition_days(conn))
                assert conn.exec_driver_sql(f"SELECT count(*) FROM {days.DEFAULT_PARTITION}").scalar_one() == 0
            # new rows still get ids after the old ones (the id sequence was kept)
            s.add(ViidObject(kind="face", object_id="x", device_id=CAM, shot_at=NOW, received_at=NOW, body="{}"))
            s.flush()
            assert s.scalar(select(func.max(ViidObject.id))) == got[-1][0] + 1
    finally:
        store.dispose()


def test_upgrade_leaves_the_planner_statistics_of_the_moved_captures_and_new_indexes(empty_url: str) -> None:
    """After the upgrade the database still knows its sizes: without statistics for the re-made capture table
    (PostgreSQL: partitions never analysed, estimated at 2 rows each) and the new indexes (SQLite: the
    (level, code) index assumed selective), the planner chose plans that took 0.5–0.9 s at city scale for a
    county's face captures and the door-plate coverage (tens of ms with statistics)."""
    store, _ = _captures_at_0018(empty_url)
    try:
        if store.engine.dialect.name == "sqlite":
            with store.session() as s:
                s.execute(text("ANALYZE"))  # a database whose planner had statistics before the upgrade
        store.dispose()
        upgrade(empty_url)
        with store.session() as s:
            if store.engine.dialect.name == "sqlite":
                have = {r[0] for r in s.execute(text("SELECT coalesce(idx, tbl) FROM sqlite_stat1"))}
                assert {"ix_viid_objects_community_kind_shot", "ix_viid_objects_shot_id"} <= have
            else:
                day = s.connection().exec_driver_sql(
                    f"SELECT reltuples FROM pg_class WHERE relname = '{days.partition_name(TODAY)}'").scalar_one()
                assert day >= 0  # -1: never analysed
    finally:
        store.dispose()


def test_camera_and_object_id_lookups_read_one_day_range_each_and_answer_as_before(store: Store,
                                                                                  writer: IngestWriter) -> None:
    """SQLite keys its camera-major indexes by day (like PostgreSQL's day partitions): a query by camera or by object
    id names the days present, and still finds every capture — a wrong-clock one 30 days ahead included."""
    from sqlalchemy import event

    from anfang.construction.operations import last_captures
    from anfang.viid.service import delete_objects, get_object

    offsets = {CAM: [-12, -3, -3, 0], CAM2: [-20, 30]}
    serial, made = 100, {}
    for cam, offs in offsets.items():
        for n, off in enumerate(offs):
            serial += 1
            p = _face(cam, _at(off, 8 + n), make_jpeg(3000, seed=serial), serial)
            writer.write([p])
            made[p.object_id] = (cam, p.shot_at)
    seen: list[tuple[str, object]] = []

    def spy(conn, cursor, statement, params, context, executemany):  # noqa: ANN001, ARG001
        if "viid_objects" in statement and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", spy)
    try:
        assert list_objects(store, "face", Query(device_id=CAM))[0] == 4
        assert list_objects(store, "face", Query(device_id=CAM, begin=_at(-3, 0), end=_at(-3, 23)))[0] == 2
        total, rows = list_objects(store, "face", Query(device_id=CAM2))
        assert total == 2 and len(rows) == 2
        future = next(oid for oid, (cam, at) in made.items() if at > NOW + timedelta(days=20))
        assert get_object(store, "face", future) is not None
        assert last_captures(store, [CAM, CAM2, "35040200001190009999"]) == {
            cam: max(at for c, at in made.values() if c == cam) for cam in offsets}
    finally:
        event.remove(store.engine, "before_cursor_execute", spy)
    assert len(seen) >= 5
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            for statement, params in seen:
                plan = " / ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
                assert "SCAN viid_objects" not in plan, (statement, plan)
                if "device_id" in statement or "object_id =" in statement:
                    assert ("ix_viid_objects_day_device_shot" in plan or "uq_viid_objects_day_kind" in plan), plan
    assert delete_objects(store, "face", [future, "nope"]) == {future}
    assert get_object(store, "face", future) is None
    # the newest capture deleted: the camera's last capture is the one before it (an emptied day counts for nothing)
    assert last_captures(store, [CAM2]) == {CAM2: min(at for c, at in made.values() if c == CAM2)}
    # the unique key still holds: a device's retry of any of them is acknowledged, not stored again
    oid, (cam, at) = next(iter(made.items()))
    again = writer.write([prepare("face", face(cam, make_jpeg(3000, seed=101), at=at, serial=101),
                                  max_image=1 << 20)])
    assert again[0].pk is None and again[0].object_id == oid
