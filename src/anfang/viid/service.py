"""GA/T 1400 domain operations (no HTTP): object validation, the group-committing ingest writer, queries, the
registration state of APEs and lower platforms, and the events a capture becomes.

Ingest path: the route decodes and checks each object (``prepare``) on the event loop, then hands the batch to the
``IngestWriter`` thread and awaits it. The writer takes every batch waiting at that moment (group commit across
concurrent requests), appends the new images to the image store with one fsync, inserts blobs, objects, images
and disposition hits in one transaction with bulk inserts on its own connection (SQLite: ``synchronous=FULL``, so
the commit is durable), commits, and only then resolves the requests' futures: a device is acknowledged only after
a durable commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import structlog
from sqlalchemy import delete, func, insert, select, update

from anfang.core.events import Event, EventKind
from anfang.devices.models import Device
from anfang.devices.service import OFFLINE, ONLINE, DeviceService
from anfang.store.engine import Store, is_sqlite
from anfang.store.eventlog import EventRecord
from anfang.viid import days, ids
from anfang.viid.images import BadImage, CheckedImage, ImageStore, decode_image
from anfang.viid.models import ViidBlob, ViidDisposition, ViidDispositionHit, ViidImage, ViidObject

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class KindSpec:
    kind: str
    path: str  # /VIID/<path>
    list_key: str  # FaceListObject
    item_key: str  # FaceObject
    id_field: str  # FaceID
    notif_key: str  # FaceObjectList (inside SubscribeNotificationObject)
    event: EventKind
    time_fields: tuple[str, ...]


KINDS: dict[str, KindSpec] = {
    "face": KindSpec("face", "Faces", "FaceListObject", "FaceObject", "FaceID", "FaceObjectList",
                     EventKind.face_capture, ("FaceAppearTime", "LocationMarkTime", "ShotTime")),
    "motor": KindSpec("motor", "MotorVehicles", "MotorVehicleListObject", "MotorVehicleObject", "MotorVehicleID",
                      "MotorVehicleObjectList", EventKind.vehicle_passage, ("PassTime", "AppearTime", "MarkTime")),
    "person": KindSpec("person", "Persons", "PersonListObject", "PersonObject", "PersonID", "PersonObjectList",
                       EventKind.person_capture, ("PersonAppearTime", "LocationMarkTime", "ShotTime")),
    "nonmotor": KindSpec("nonmotor", "NonMotorVehicles", "NonMotorVehicleListObject", "NonMotorVehicleObject",
                         "NonMotorVehicleID", "NonMotorVehicleObjectList", EventKind.nonmotor_capture,
                         ("AppearTime", "MarkTime", "LocationMarkTime")),
}
BY_PATH = {spec.path: spec for spec in KINDS.values()}
PLACE_TTL = 60.0  # seconds a device's place is cached for its captures (placement may change in the console)
_TIME_FIELDS = {"LocationMarkTime", "FaceAppearTime", "FaceDisAppearTime", "PersonAppearTime", "PersonDisAppearTime",
                "AppearTime", "DisappearTime", "MarkTime", "PassTime", "ShotTime"}


class BadObject(ValueError):
    """An object of a batch with bad content (StatusCode 8); ``object_id`` when it could be read."""

    def __init__(self, message: str, object_id: str = "") -> None:
        super().__init__(message)
        self.object_id = object_id


@dataclass(slots=True)
class Prepared:
    kind: str
    object_id: str
    source_id: str | None
    device_id: str
    shot_at: datetime
    plate_no: str | None
    plate_color: str | None
    gender: str | None
    id_number: str | None
    body: dict[str, Any]
    images: list[tuple[dict[str, Any], CheckedImage]] = field(default_factory=list)
    standalone_image: bool = False  # an ImageObject of /VIID/Images (no capture row)
    # sub-images refused (too large, not an image) while the rest of the object was kept: (ImageID, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Stored:
    object_id: str
    pk: int | None  # None for a duplicate (already stored: acknowledged, not stored twice)
    prepared: Prepared | None = None
    event: Event | None = None  # the capture event, in the event log with the record, to publish after commit


def _code(value: Any) -> str | None:
    return None if value is None or value == "" else str(value).strip()


def _check_code(obj: dict[str, Any], name: str, table: dict[str, str], object_id: str) -> str | None:
    value = _code(obj.get(name))
    if value is not None and value not in table and value.lstrip("0") not in table:
        raise BadObject(f"{name} 代码无效 / bad code {value!r}", object_id)
    return value


def prepare(kind: str, obj: Any, *, max_image: int) -> Prepared:
    """Check one object of a batch against the standard and decode its images; raises ``BadObject``."""
    spec = KINDS[kind]
    if not isinstance(obj, dict):
        raise BadObject(f"{spec.item_key} 应为对象 / must be an object")
    object_id = obj.get(spec.id_field)
    object_id = str(object_id) if isinstance(object_id, str | int) else ""
    bad = ids.check_object_id(object_id, kind)
    if bad:
        raise BadObject(f"{spec.id_field}: {bad}", object_id)
    source_id = _code(obj.get("SourceID"))
    if source_id is not None:
        bad = ids.check_source_id(source_id)
        if bad:
            raise BadObject(f"SourceID: {bad}", object_id)
    device_id = _code(obj.get("DeviceID")) or object_id[:20]
    bad = ids.check_device_id(device_id)
    if bad:
        raise BadObject(f"DeviceID: {bad}", object_id)
    _check_code(obj, "InfoKind", ids.INFO_KINDS, object_id)
    gender = _check_code(obj, "GenderCode", ids.GENDERS, object_id)
    plate_color = _check_code(obj, "PlateColor", ids.COLORS, object_id)
    _check_code(obj, "VehicleColor", ids.COLORS, object_id)
    shot_at = None
    for name in _TIME_FIELDS & obj.keys():
        if obj[name] not in (None, "") and ids.parse_time(obj[name]) is None:
            raise BadObject(f"{name} 时间格式无效 / bad time {obj[name]!r}", object_id)
    for name in spec.time_fields:
        shot_at = ids.parse_time(obj.get(name))
        if shot_at is not None:
            break
    if shot_at is None:
        shot_at = ids.parse_time(object_id[22:36]) or datetime.now(UTC)
    plate = ids.normalize_plate(obj.get("PlateNo")) or None
    body = dict(obj)
    refused: list[tuple[str, str]] = []
    images = _prepare_sub_images(body, object_id, device_id, shot_at, max_image=max_image, refused=refused)
    id_number = _code(obj.get("IDNumber"))
    return Prepared(kind, object_id, source_id, device_id, shot_at, plate, plate_color, gender, id_number, body,
                    images, refused=refused)


def _prepare_sub_images(body: dict[str, Any], object_id: str, device_id: str, shot_at: datetime, *,
                        max_image: int, refused: list[tuple[str, str]] | None = None
                        ) -> list[tuple[dict[str, Any], CheckedImage]]:
    """The object's sub-images, checked. A sub-image that is too large or no image is left out and listed in
    ``refused`` (the object and its other images are kept: an 8 MB scene must not cost the face crop); when no image
    with data is left, or without a ``refused`` list, the whole object is refused."""
    sub = body.get("SubImageList")
    if sub in (None, "", {}):
        return []
    items = sub.get("SubImageInfoObject") if isinstance(sub, dict) else sub
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise BadObject("SubImageList 格式无效 / bad SubImageList", object_id)
    out: list[tuple[dict[str, Any], CheckedImage]] = []
    kept: list[dict[str, Any]] = []
    bad: list[str] = []
    for n, raw in enumerate(items, 1):
        if not isinstance(raw, dict):
            raise BadObject("SubImageInfoObject 应为对象 / must be an object", object_id)
        meta = dict(raw)
        image_type = _check_code(meta, "Type", ids.IMAGE_TYPES, object_id)
        image_id = _code(meta.get("ImageID")) or f"{object_id[:36]}{n:05d}"
        meta["ImageID"] = image_id
        data = meta.pop("Data", None)
        if data in (None, ""):
            kept.append(meta)  # metadata only (StoragePath on the device): kept as sent
            continue
        try:
            img = decode_image(data, max_bytes=max_image)
        except BadImage as exc:
            if refused is None:
                raise BadObject(f"SubImageInfoObject[{n}]: {exc}", object_id) from None
            refused.append((image_id, f"SubImageInfoObject[{n}]: {exc}"))
            bad.append(f"SubImageInfoObject[{n}]: {exc}")
            continue
        if ids.parse_time(meta.get("ShotTime")) is None:
            meta["ShotTime"] = ids.format_time(shot_at)
        meta.setdefault("DeviceID", device_id)
        meta["FileFormat"] = meta.get("FileFormat") or img.format
        meta["Type"] = image_type or meta.get("Type")
        if img.width and not meta.get("Width"):
            meta["Width"], meta["Height"] = img.width, img.height
        meta["StoragePath"] = f"/VIID/Images/{image_id}/Data"
        kept.append(meta)
        out.append((meta, img))
    if bad and not out:  # nothing usable left: the object as a whole is refused
        raise BadObject(bad[0], object_id)
    body["SubImageList"] = {"SubImageInfoObject": kept}
    return out


def prepare_image_object(obj: Any, *, max_image: int) -> Prepared:
    """One ImageObject of /VIID/Images: ``{"ImageInfo": {...}, "Data": base64}``."""
    if not isinstance(obj, dict):
        raise BadObject("ImageObject 应为对象 / must be an object")
    info = obj.get("ImageInfo") if isinstance(obj.get("ImageInfo"), dict) else obj
    image_id = _code(info.get("ImageID")) or ""
    bad = ids.check_source_id(image_id)
    if bad:
        raise BadObject(f"ImageID: {bad}", image_id)
    device_id = _code(info.get("DeviceID")) or image_id[:20]
    shot_at = ids.parse_time(info.get("ShotTime")) or ids.parse_time(image_id[22:36]) or datetime.now(UTC)
    try:
        img = decode_image(obj.get("Data"), max_bytes=max_image)
    except BadImage as exc:
        raise BadObject(str(exc), image_id) from None
    meta = {k: v for k, v in info.items() if k != "Data"}
    meta.setdefault("FileFormat", img.format)
    meta["StoragePath"] = f"/VIID/Images/{image_id}/Data"
    if img.width and not meta.get("Width"):
        meta["Width"], meta["Height"] = img.width, img.height
    return Prepared("image", image_id, None, device_id, shot_at, None, None, None, None, meta, [(meta, img)],
                    standalone_image=True)


class _LoopFuture:
    """Resolves an asyncio future of the event loop from the writer thread."""

    __slots__ = ("fut", "loop")

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut, self.loop = fut, fut.get_loop()

    def _set(self, value: Any, exc: BaseException | None) -> None:
        if not self.fut.done():
            if exc is not None:
                self.fut.set_exception(exc)
            else:
                self.fut.set_result(value)

    def set_result(self, value: Any) -> None:
        self.loop.call_soon_threadsafe(self._set, value, None)

    def set_exception(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(self._set, None, exc)


@dataclass
class _Job:
    items: list[Prepared]
    origin: str | None
    done: Any  # concurrent.futures-like: set_result / set_exception via loop.call_soon_threadsafe


class Watchlist:
    """In-memory index of open dispositions (plates, ID numbers) consulted by the writer for every capture."""

    def __init__(self) -> None:
        self.plates: dict[str, set[str]] = {}
        self.id_numbers: dict[str, set[str]] = {}
        self.windows: dict[str, tuple[datetime | None, datetime | None]] = {}
        self._lock = threading.Lock()

    def load(self, store: Store) -> None:
        with store.session() as s:
            rows = list(s.scalars(select(ViidDisposition).where(ViidDisposition.status == 0)))
        with self._lock:
            self.plates.clear()
            self.id_numbers.clear()
            self.windows.clear()
        for d in rows:
            self.add(d)

    def add(self, d: ViidDisposition) -> None:
        with self._lock:
            if d.plate_no:
                self.plates.setdefault(d.plate_no, set()).add(d.disposition_id)
            if d.id_number:
                self.id_numbers.setdefault(d.id_number, set()).add(d.disposition_id)
            self.windows[d.disposition_id] = (d.begin_at, d.end_at)

    def remove(self, disposition_id: str) -> None:
        with self._lock:
            for index in (self.plates, self.id_numbers):
                for key in [k for k, v in index.items() if disposition_id in v]:
                    index[key].discard(disposition_id)
                    if not index[key]:
                        del index[key]
            self.windows.pop(disposition_id, None)

    def match(self, p: Prepared) -> list[str]:
        if not self.windows:
            return []
        found: set[str] = set()
        if p.plate_no and p.plate_no in self.plates:
            found |= self.plates[p.plate_no]
        if p.id_number and p.id_number in self.id_numbers:
            found |= self.id_numbers[p.id_number]
        out = []
        for did in found:
            begin, end = self.windows.get(did, (None, None))
            if (begin is None or p.shot_at >= begin) and (end is None or p.shot_at <= end):
                out.append(did)
        return sorted(out)


class IngestWriter:
    """The single writer thread: group commit of concurrent batches (see the module docstring)."""

    def __init__(self, store: Store, images: ImageStore, *, watchlist: Watchlist | None = None,
                 max_group: int = 2000) -> None:
        self.store = store
        self.images = images
        self.watchlist = watchlist or Watchlist()
        self.max_group = max_group
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._db_thread: threading.Thread | None = None
        self._staged: queue.Queue[tuple[list[_Job], dict[str, tuple[str, int, int]]] | None] = queue.Queue()
        self._conn = None
        self._stmts: dict[str, Any] | None = None
        # device id → (community code, address id, longitude, latitude) from the device registry, set by the node
        self.place_of: Any = lambda device_id: (None, None, None, None)
        self.node_id: str | None = None
        self._ids: dict[str, int] = {}
        self._days: set[date] = set()  # capture days whose partition is known to exist (PostgreSQL)
        self.groups = 0
        self.hits_written = threading.Event()  # set when a disposition hit was committed (wakes the notifier)
        self.committed = threading.Event()  # set after every commit (wakes subscription delivery)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run_images, name="viid-images", daemon=True)
            self._db_thread = threading.Thread(target=self._run_db, name="viid-writer", daemon=True)
            self._thread.start()
            self._db_thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self._db_thread is not None:
            self._db_thread.join(timeout=30)
            self._db_thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self):  # noqa: ANN202
        if self._conn is None:
            self._conn = self.store.engine.connect()
            if is_sqlite(self.store.engine):
                # Durable commits: WAL + NORMAL (the store's default) may lose the last commits on power loss.
                self._conn.exec_driver_sql("PRAGMA synchronous=FULL")
                self._conn.commit()
        return self._conn

    # -- API ---------------------------------------------------------------------------------------------------
    async def submit(self, items: list[Prepared], origin: str | None) -> list[Stored]:
        """Store ``items`` durably; returns once committed (one ``Stored`` per item, in order)."""
        if not items:
            return []
        if self._thread is None:
            self.start()
        fut: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(items, origin, _LoopFuture(fut)))
        return await fut

    def write(self, items: list[Prepared], origin: str | None = None) -> list[Stored]:
        """Synchronous store of one batch on the caller's thread (tools, benchmarks' direct baseline)."""
        group = [_Job(items, origin, None)]
        return self._write_group(group, self._stage_images(group))[0]

    # -- the two-stage pipeline --------------------------------------------------------------------------------
    # Stage 1 (viid-images) groups waiting batches and appends their images with one fsync; stage 2 (viid-writer)
    # commits the rows of every staged group waiting at that moment in one transaction. While one group's rows
    # commit, the next group's images are being made durable: the two fsyncs overlap instead of adding up.
    def _run_images(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._staged.put(None)
                return
            group, n = [job], len(job.items)
            stop = False
            while n < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                n += len(nxt.items)
            try:
                self._staged.put((group, self._stage_images(group)))
            except Exception as exc:  # noqa: BLE001 - reported to every waiting request, the writer lives on
                log.exception("viid_image_write_failed", objects=n)
                for j in group:
                    j.done.set_exception(exc)
            if stop:
                self._staged.put(None)
                return

    def _run_db(self) -> None:
        while True:
            staged = self._staged.get()
            if staged is None:
                return
            group, locations = staged
            stop = False
            while len(group) < 4 * self.max_group:
                try:
                    more = self._staged.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group = group + more[0]
                locations = {**locations, **more[1]}
            try:
                results = self._write_group(group, locations)
            except Exception as exc:  # noqa: BLE001 - reported to every waiting request, the writer lives on
                log.exception("viid_write_failed", batches=len(group))
                for j in group:
                    j.done.set_exception(exc)
            else:
                for j, res in zip(group, results, strict=True):
                    j.done.set_result(res)
            if stop:
                return

    def _stage_images(self, group: list[_Job]) -> dict[str, tuple[str, int, int]]:
        """Append every image of the group (identical content once, in the files of the newest capture day using
        it) with one fsync per day: sha256 → (location, size, day key)."""
        blobs: dict[str, tuple[date, bytes]] = {}
        for j in group:
            for p in j.items:
                day = days.day_of(p.shot_at)
                for _, img in p.images:
                    have = blobs.get(img.sha256)
                    if have is None or have[0] < day:
                        blobs[img.sha256] = (day, img.data)
        if not blobs:
            return {}
        by_day: dict[date, list[str]] = {}
        for h, (day, _) in blobs.items():
            by_day.setdefault(day, []).append(h)
        out: dict[str, tuple[str, int, int]] = {}
        for day, hashes in sorted(by_day.items()):
            locations = self.images.put_many([blobs[h][1] for h in hashes], day=day)
            key = days.day_key(day)
            for h, loc in zip(hashes, locations, strict=True):
                out[h] = (loc, len(blobs[h][1]), key)
        return out

    def _write_group(self, group: list[_Job], locations: dict[str, tuple[str, int, int]]) -> list[list[Stored]]:
        conn = self._connection()
        now = datetime.now(UTC)
        try:
            results = self._write(conn, group, now, locations)
            conn.commit()
        except BaseException:
            conn.rollback()
            self._ids.clear()  # re-read max(id) next time
            self._days.clear()  # and the partitions
            raise
        self.groups += 1
        self.committed.set()
        return results

    def _sql(self, conn) -> dict[str, Any]:  # noqa: ANN001
        """Plain INSERT statements in the driver's parameter style and the datetime bind processors: the hot path
        runs executemany on the driver directly (no per-row ORM / compiler work)."""
        if self._stmts is None:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"

            def ins(table: Any, cols: list[str], conflict: str = "") -> str:
                return (f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
                        + (f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""))

            dt = ViidObject.__table__.c.shot_at.type._cached_bind_processor(conn.dialect) or (lambda v: v)
            # content indexed earlier keeps its row; its bytes move to the newest day's copy (written anyway), so a
            # blob's day is never older than any image using it and retention can unlink old days whole
            blob = (ins(ViidBlob.__table__, ["sha256", "location", "size", "created_at", "day"])
                    + " ON CONFLICT (sha256) DO UPDATE SET location = excluded.location, day = excluded.day"
                    " WHERE viid_blobs.day IS NULL OR viid_blobs.day < excluded.day")
            self._stmts = {
                "blob": blob,
                "object": ins(ViidObject.__table__, _OBJECT_COLS),
                "image": ins(ViidImage.__table__, _IMAGE_COLS),
                "hit": ins(ViidDispositionHit.__table__, ["disposition_id", "object_pk", "at", "attempts"]),
                "dt": dt,
            }
        return self._stmts

    def _next_ids(self, conn, table: Any, n: int) -> int:  # noqa: ANN001
        """First of ``n`` new ids of ``table``. The writer owns the ids of its tables (one writer per database,
        which the subscription cursors rely on as well): read max(id) once, then count in memory."""
        if table.name not in self._ids:
            self._ids[table.name] = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
        first = self._ids[table.name] + 1
        self._ids[table.name] += n
        return first

    def _write(self, conn, group: list[_Job], now: datetime,  # noqa: ANN001, C901
               locations: dict[str, tuple[str, int, int]]) -> list[list[Stored]]:
        sql = self._sql(conn)
        dt = sql["dt"]
        now_db = dt(now)
        captures = [(j, p) for j in group for p in j.items if not p.standalone_image]
        keys: dict[str, set[str]] = {}
        for _, p in captures:
            keys.setdefault(p.kind, set()).add(p.object_id)
        # a re-sent object has the same capture time (its id embeds it): look only at the days of this group
        shots = [p.shot_at for _, p in captures]
        existing: set[tuple[str, str]] = set()
        on_days = days.day_keys_filter(conn.dialect.name, shots) if shots else None
        for kind, oids in keys.items():
            for chunk in _chunks(sorted(oids), 500):
                existing.update(conn.execute(select(ViidObject.kind, ViidObject.object_id).where(
                    ViidObject.kind == kind, ViidObject.object_id.in_(chunk), *_opt(on_days),
                    ViidObject.shot_at >= min(shots), ViidObject.shot_at <= max(shots))).all())
        # which captures are new (a duplicate, e.g. a device's retry, is acknowledged but not stored again)
        fresh: list[tuple[_Job, Prepared]] = []
        seen: set[tuple[str, str]] = set()
        for j, p in captures:
            key = (p.kind, p.object_id)
            if key in existing or key in seen:
                continue
            seen.add(key)
            fresh.append((j, p))
        standalone = [p for j in group for p in j.items if p.standalone_image]
        # images were appended and fsynced by stage 1; index the content of what is stored
        used = {img.sha256 for _, p in fresh for _, img in p.images} | {img.sha256 for p in standalone
                                                                          for _, img in p.images}
        if used:
            conn.exec_driver_sql(sql["blob"], [(h, locations[h][0], locations[h][1], now_db, locations[h][2])
                                               for h in sorted(used)])
        pks: dict[int, int] = {}
        new_days = {days.day_of(p.shot_at) for _, p in fresh} - self._days
        if new_days:  # PostgreSQL: the day's partition, made in this transaction (never a failed insert)
            days.ensure_for_rows(conn, new_days)
            self._days |= new_days
        if fresh:
            pk = self._next_ids(conn, ViidObject.__table__, len(fresh))
            rows = []
            for j, p in fresh:
                pks[id(p)] = pk
                rows.append((pk, p.kind, p.object_id, p.source_id, p.device_id, dt(p.shot_at), now_db, p.plate_no,
                             p.plate_color, p.gender, p.id_number,
                             self.place_of(p.device_id)[0], j.origin, orjson.dumps(p.body).decode()))
                pk += 1
            conn.exec_driver_sql(sql["object"], rows)
        image_rows = [_image_row(meta, img, p, pks[id(p)], None, dt) for _, p in fresh for meta, img in p.images]
        image_rows += [_image_row(meta, img, p, None, orjson.dumps(meta).decode(), dt)
                       for p in standalone for meta, img in p.images]
        if image_rows:
            first = self._next_ids(conn, ViidImage.__table__, len(image_rows))
            conn.exec_driver_sql(sql["image"], [(first + i, *row) for i, row in enumerate(image_rows)])
        hit_rows = [(did, pks[id(p)], now_db, 0) for _, p in fresh for did in self.watchlist.match(p)]
        if hit_rows:
            conn.exec_driver_sql(sql["hit"], hit_rows)
            self.hits_written.set()
        # every capture becomes an event, appended to the event log in this same transaction
        events = {id(p): capture_event(p, pks[id(p)], self.place_of(p.device_id), self.node_id) for _, p in fresh}
        if events:
            conn.execute(insert(EventRecord), [
                {"id": e.id, "kind": e.kind.value, "at": e.at, "source": e.source, "node_id": e.node_id,
                 "community_code": e.community_code, "address_id": e.address_id, "longitude": e.longitude,
                 "latitude": e.latitude, "data": e.data} for e in events.values()])
        return [[Stored(p.object_id, pks.get(id(p)), p if id(p) in pks else None, events.get(id(p)))
                 for p in j.items] for j in group]


_OBJECT_COLS = ["id", "kind", "object_id", "source_id", "device_id", "shot_at", "received_at", "plate_no",
                "plate_color", "gender", "id_number", "community_code", "origin", "body"]
_IMAGE_COLS = ["id", "image_id", "object_pk", "sha256", "type", "file_format", "width", "height", "size",
               "device_id", "shot_at", "body"]


def _image_row(meta: dict[str, Any], img: CheckedImage, p: Prepared, object_pk: int | None, body: str | None,
               dt: Any) -> tuple:
    return (str(meta.get("ImageID") or p.object_id)[:64], object_pk, img.sha256, _code(meta.get("Type")),
            img.format, img.width, img.height, len(img.data), p.device_id, dt(p.shot_at), body)


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# -- registration state ----------------------------------------------------------------------------------------

class Sessions:
    """Who is registered (APEs, lower platforms) and when each last kept alive. Kept in memory for the per-request
    check, persisted in the device registry (status online, ``last_seen``) so a restart keeps registrations."""

    def __init__(self, devices: DeviceService, timeout: float) -> None:
        self.devices = devices
        self.timeout = timeout
        self._seen: dict[str, float] = {}  # device id → wall-clock time of the last register / keepalive
        self.trusted: set[str] = set()  # ids always accepted (our upper 视图库 when cascading)
        self.places: dict[str, tuple[str | None, int | None, float | None, float | None]] = {}
        self._place_read: dict[str, float] = {}

    def load(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.timeout)
        with self.devices.store.session() as s:
            for dev in s.scalars(select(Device).where(Device.protocol == "viid", Device.status == ONLINE)):
                if dev.last_seen is not None and dev.last_seen >= cutoff:
                    self._seen[dev.device_id] = dev.last_seen.timestamp()

    def is_fresh(self, device_id: str) -> bool:
        if device_id in self.trusted:
            return True
        seen = self._seen.get(device_id)
        return seen is not None and time.time() - seen <= self.timeout

    def touch(self, device_id: str) -> None:
        self._seen[device_id] = time.time()

    def drop(self, device_id: str) -> None:
        self._seen.pop(device_id, None)

    def stale(self) -> list[str]:
        now = time.time()
        return [d for d, seen in self._seen.items() if now - seen > self.timeout]

    def place(self, device_id: str) -> tuple[str | None, int | None, float | None, float | None]:
        """(community code, address id, longitude, latitude) of a device from the registry, cached."""
        hit = self.places.get(device_id)
        now = time.monotonic()
        if hit is None or now - self._place_read.get(device_id, 0.0) > PLACE_TTL:  # placed from the console later
            dev = self.devices.get("viid", device_id)
            hit = (dev.community_code, dev.address_id, dev.longitude, dev.latitude) if dev else (None,) * 4
            self.places[device_id] = hit
            self._place_read[device_id] = now
        return hit


def capture_event(p: Prepared, pk: int, place: tuple[str | None, int | None, float | None, float | None],
                  node_id: str | None) -> Event:
    """The event a newly stored capture becomes, with the capturing device's community, address and position."""
    community, address_id, lon, lat = place
    data: dict[str, Any] = {"protocol": "viid", "object_id": p.object_id, "object_pk": pk, "device_id": p.device_id,
                            "image_ids": [m.get("ImageID") for m, _ in p.images]}
    if p.kind == "motor":
        data.update(plate_no=p.plate_no, plate_color=p.plate_color, vehicle_color=p.body.get("VehicleColor"),
                    vehicle_class=p.body.get("VehicleClass"))
    elif p.kind == "nonmotor":
        data.update(plate_no=p.plate_no)
    else:
        data.update(gender=p.gender, id_number=p.id_number)
    return Event(kind=KINDS[p.kind].event, source=p.device_id, at=p.shot_at, data=data, node_id=node_id,
                 community_code=community, address_id=address_id, longitude=lon, latitude=lat)


def capture_events(stored: list[Stored]) -> list[Event]:
    """The events of newly stored captures (duplicates and standalone images give none)."""
    return [st.event for st in stored if st.event is not None]


# -- queries -----------------------------------------------------------------------------------------------------

@dataclass
class Query:
    device_id: str | None = None
    begin: datetime | None = None
    end: datetime | None = None
    plate_no: str | None = None
    object_ids: list[str] | None = None
    gender: str | None = None
    start_no: int = 1  # RecordStartNo, 1-based
    page: int = 20  # PageRecordNum


def _opt(cond: Any) -> list[Any]:
    """[cond], or [] for None (a condition only one database needs)."""
    return [] if cond is None else [cond]


def list_objects(store: Store, kind: str, q: Query) -> tuple[int, list[tuple[int, str]]]:
    """(total, [(pk, body JSON)]) of ``kind`` matching ``q``, newest first."""
    conds = [ViidObject.kind == kind]
    if q.device_id:
        conds.append(ViidObject.device_id == q.device_id)
    if q.begin:
        conds.append(ViidObject.shot_at >= q.begin)
    if q.end:
        conds.append(ViidObject.shot_at <= q.end)
    if q.plate_no:
        plate = ids.normalize_plate(q.plate_no)
        conds.append(ViidObject.plate_no.startswith(plate, autoescape=True) if len(plate) < 7  # % _ literal
                     else ViidObject.plate_no == plate)
    if q.object_ids:
        conds.append(ViidObject.object_id.in_(q.object_ids))
    if q.gender:
        conds.append(ViidObject.gender == q.gender)
    if q.device_id or q.object_ids:  # SQLite: these read the day-led indexes, one range per day
        conds += _opt(days.day_filter(store.engine.dialect.name, q.begin, q.end))
    with store.session() as s:
        total = s.scalar(select(func.count()).select_from(ViidObject).where(*conds)) or 0
        rows = s.execute(select(ViidObject.id, ViidObject.body).where(*conds)
                         .order_by(ViidObject.shot_at.desc(), ViidObject.id.desc())
                         .offset(max(q.start_no, 1) - 1).limit(max(min(q.page, 1000), 1))).all()
    return total, [(pk, body) for pk, body in rows]


def get_object(store: Store, kind: str, object_id: str) -> str | None:
    with store.session() as s:
        return s.scalar(select(ViidObject.body).where(ViidObject.kind == kind, ViidObject.object_id == object_id,
                                                      *_opt(days.day_filter(store.engine.dialect.name))))


def delete_objects(store: Store, kind: str, object_ids: list[str]) -> set[str]:
    """Delete objects (and their image rows); returns the ids that existed."""
    with store.session() as s:
        found = dict(s.execute(select(ViidObject.object_id, ViidObject.id).where(
            ViidObject.kind == kind, ViidObject.object_id.in_(object_ids),
            *_opt(days.day_filter(store.engine.dialect.name)))).all())
        if found:
            s.execute(delete(ViidImage).where(ViidImage.object_pk.in_(list(found.values()))))
            s.execute(delete(ViidObject).where(ViidObject.id.in_(list(found.values()))))
    return set(found)


def image_location(store: Store, image_id: str | None = None, pk: int | None = None) -> tuple[str, str] | None:
    """(location, file format) of an image by its ImageID (newest of that id) or by row id."""
    stmt = select(ViidBlob.location, ViidImage.file_format).join(ViidBlob, ViidBlob.sha256 == ViidImage.sha256)
    stmt = stmt.where(ViidImage.id == pk) if pk is not None else stmt.where(ViidImage.image_id == image_id)
    with store.session() as s:
        row = s.execute(stmt.order_by(ViidImage.id.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def mark_offline(devices: DeviceService, sessions: Sessions, device_id: str, reason: str) -> Event | None:
    sessions.drop(device_id)
    with contextlib.suppress(LookupError):
        return devices.set_status("viid", device_id, OFFLINE, reason).event
    return None


def update_body(store: Store, pk: int, body: dict[str, Any]) -> None:
    with store.session() as s:
        s.execute(update(ViidObject).where(ViidObject.id == pk).values(body=orjson.dumps(body).decode()))


def list_images(store: Store, q: Query) -> list[dict[str, Any]]:
    """ImageInfo of stored images (standalone ImageObjects keep their info; sub-images are summarised)."""
    conds = []
    if q.device_id:
        conds.append(ViidImage.device_id == q.device_id)
    if q.begin:
        conds.append(ViidImage.shot_at >= q.begin)
    if q.end:
        conds.append(ViidImage.shot_at <= q.end)
    if q.object_ids:
        conds.append(ViidImage.image_id.in_(q.object_ids))
    with store.session() as s:
        rows = list(s.scalars(select(ViidImage).where(*conds).order_by(ViidImage.shot_at.desc(), ViidImage.id.desc())
                              .offset(max(q.start_no, 1) - 1).limit(max(min(q.page, 1000), 1))))
    out = []
    for r in rows:
        info = orjson.loads(r.body) if r.body else {}
        info.update({"ImageID": r.image_id, "DeviceID": r.device_id or "", "FileFormat": r.file_format,
                     "ShotTime": ids.format_time(r.shot_at), "Width": r.width or 0, "Height": r.height or 0,
                     "FileSize": r.size, "FileHash": r.sha256, "StoragePath": f"/VIID/Images/{r.image_id}/Data"})
        if r.type:
            info.setdefault("Type", r.type)
        out.append(info)
    return out


def object_images(store: Store, pks: list[int]) -> dict[int, dict[str, str]]:
    """{object pk: {ImageID: location}} for the given objects."""
    out: dict[int, dict[str, str]] = {}
    if not pks:
        return out
    with store.session() as s:
        for pk, image_id, loc in s.execute(
                select(ViidImage.object_pk, ViidImage.image_id, ViidBlob.location)
                .join(ViidBlob, ViidBlob.sha256 == ViidImage.sha256).where(ViidImage.object_pk.in_(pks))):
            out.setdefault(pk, {})[image_id] = loc
    return out


def with_image_data(body: dict[str, Any], locations: dict[str, str], images: ImageStore) -> dict[str, Any]:
    """A copy of an object's body with each stored sub-image's bytes back in ``Data`` (base64)."""
    import base64

    sub = body.get("SubImageList")
    items = sub.get("SubImageInfoObject") if isinstance(sub, dict) else None
    if not items:
        return body
    out = dict(body)
    new_items = []
    for meta in items:
        loc = locations.get(str(meta.get("ImageID")))
        if loc is not None:
            with contextlib.suppress(KeyError):
                meta = {**meta, "Data": base64.b64encode(images.get(loc)).decode()}
        new_items.append(meta)
    out["SubImageList"] = {"SubImageInfoObject": new_items}
    return out
