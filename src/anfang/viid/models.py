"""GA/T 1400 tables: captured objects, images and their content index, subscriptions, dispositions and hits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow

# SQLite: the leading key of the day-led capture indexes (migration 0021), the capture's UTC date of the stored
# ``YYYY-MM-DD HH:MM:SS.ffffff`` text. SQLite uses an index on an expression only where a query repeats the
# expression itself, literals included: anfang.viid.days builds its conditions from this text.
SQLITE_DAY = "substr(shot_at, 1, 10)"

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite's rowid alias must be INTEGER


class ViidObject(Base):
    """One captured object: kind face | motor | person | nonmotor. ``body`` is the object as received (JSON text,
    image data removed, StoragePath pointing at our copy); the searched fields are columns.

    Kept per day of ``shot_at`` (``anfang.viid.days``): on PostgreSQL the table is partitioned by range of
    ``shot_at``, one partition a day, and its primary key there is (id, shot_at) since a partitioned table's keys
    must hold the partition key (``id`` stays unique: one writer allocates it, the rest use the sequence). The
    unique key (kind, object_id, shot_at) keeps a re-sent object once: its capture time is the same every time.
    Rows are inserted by ``IngestWriter._write`` (one INSERT statement) — the place for per-insert hooks."""

    __tablename__ = "viid_objects"
    __table_args__ = (
        # camera-major keys: on PostgreSQL per partition (one day each); on SQLite led by the capture's UTC day
        # (migration 0021, anfang.viid.days): either way a commit from many cameras writes into today's pages only
        UniqueConstraint("kind", "object_id", "shot_at", name="uq_viid_objects_kind").ddl_if(dialect="postgresql"),
        Index("ix_viid_objects_device_shot", "device_id", "shot_at").ddl_if(dialect="postgresql"),
        Index("uq_viid_objects_day_kind", text(SQLITE_DAY), "kind", "object_id", "shot_at",
              unique=True).ddl_if(dialect="sqlite"),
        Index("ix_viid_objects_day_device_shot", text(SQLITE_DAY), "device_id", "shot_at").ddl_if(dialect="sqlite"),
        Index("ix_viid_objects_kind_shot", "kind", "shot_at"),
        Index("ix_viid_objects_plate", "plate_no"),
        Index("ix_viid_objects_shot_id", "shot_at", "id"),  # newest first: the capture browser's order
        # a county administrator's or an officer's captures (their communities, one kind or all) and their capped count
        Index("ix_viid_objects_community_kind_shot", "community_code", "kind", "shot_at"),
        {"postgresql_partition_by": "RANGE (shot_at)"},
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    object_id: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64))
    shot_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    plate_no: Mapped[str | None] = mapped_column(String(16))
    plate_color: Mapped[str | None] = mapped_column(String(4))
    gender: Mapped[str | None] = mapped_column(String(2))
    id_number: Mapped[str | None] = mapped_column(String(32))
    community_code: Mapped[str | None] = mapped_column(String(12))
    origin: Mapped[str | None] = mapped_column(String(64))  # who sent it (APE or lower platform id)
    body: Mapped[str] = mapped_column(Text)
    # faces the detector found in the capture's images (face matching; None: not examined, 0: 未检出人脸)
    faces: Mapped[int | None] = mapped_column(Integer)


class ViidImage(Base):
    """One image: a SubImageInfoObject of a captured object, or an ImageObject posted to /VIID/Images."""

    __tablename__ = "viid_images"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(String(64), index=True)
    object_pk: Mapped[int | None] = mapped_column(BigId, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    type: Mapped[str | None] = mapped_column(String(4))
    file_format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str | None] = mapped_column(String(64))
    shot_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    body: Mapped[str | None] = mapped_column(Text)  # ImageInfo of a standalone ImageObject


class ViidBlob(Base):
    """Content index: SHA-256 → where the image store keeps the bytes. ``day`` (``20261207``) is the day whose
    segment files hold them: never older than the day of any image using the blob (the writer moves the index to
    the newest day's copy; retention moves the bytes of kept evidence before unlinking a day). None: a segment of
    the store before per-day segments."""

    __tablename__ = "viid_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    location: Mapped[str] = mapped_column(String(256))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    day: Mapped[int | None] = mapped_column(Integer, index=True)


class ViidSubscription(Base):
    """A subscription someone (an upper platform, a consumer) made to us; delivered by ``SubscriptionService``.
    ``cursor`` is the last ``viid_objects.id`` acknowledged by the receiver: nothing after it is ever skipped."""

    __tablename__ = "viid_subscriptions"
    subscribe_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[str] = mapped_column(String(64))  # SubscribeDetail codes, comma separated
    receive_addr: Mapped[str] = mapped_column(String(512))
    report_interval: Mapped[int] = mapped_column(Integer, default=0)  # seconds
    begin_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[int] = mapped_column(Integer, default=0)  # 0 active, 1 cancelled, 2 expired
    subscriber: Mapped[str | None] = mapped_column(String(64))  # User-Identify of who subscribed
    with_images: Mapped[bool] = mapped_column(default=True)
    cursor: Mapped[int] = mapped_column(BigId, default=0)
    delivered: Mapped[int] = mapped_column(BigId, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ViidDisposition(Base):
    """A 布控 (watch) order: a vehicle plate or a person ID number, watched between begin and end."""

    __tablename__ = "viid_dispositions"
    disposition_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(128), default="")
    category: Mapped[str] = mapped_column(String(4))  # DispositionCategory: 1 person, 2 vehicle
    plate_no: Mapped[str | None] = mapped_column(String(16), index=True)
    id_number: Mapped[str | None] = mapped_column(String(32), index=True)
    receive_addr: Mapped[str | None] = mapped_column(String(512))
    begin_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[int] = mapped_column(Integer, default=0)  # DispositionStatus 0 active, 1 cancelled, 2 ended
    subscriber: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ViidDispositionHit(Base):
    """A capture matching an open disposition; ``notified_at`` is set once ReceiveAddr acknowledged it."""

    __tablename__ = "viid_disposition_hits"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    disposition_id: Mapped[str] = mapped_column(String(64), index=True)
    object_pk: Mapped[int] = mapped_column(BigId, index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
