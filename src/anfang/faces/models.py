"""Face watchlists (人像布控库), their enrolled photos with embeddings, and the index generation counter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from anfang.security.crypto import EncryptedBytes
from anfang.store.base import Base, UtcDateTime, utcnow


class FaceWatchlist(Base):
    """A named list of people to watch for. ``threshold`` is the largest Euclidean distance between a captured
    face and an enrolled one that counts as a match (dlib's "same person" rule is < 0.6; 0.5 by default)."""

    __tablename__ = "face_watchlists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(String(512), default="")
    threshold: Mapped[float] = mapped_column(Float, default=0.5)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FaceEntry(Base):
    """One enrolled photo of one person in one watchlist. Its id is the key in the ANN index; ids are never
    reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so an index file can be diffed against the table."""

    __tablename__ = "face_entries"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("face_watchlists.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    photo_path: Mapped[str] = mapped_column(String(256))  # relative to the data directory
    photo_sha256: Mapped[str] = mapped_column(String(64))
    # 128 little-endian float32 = 512 bytes, stored AES-GCM encrypted (anfang.security.crypto)
    embedding: Mapped[bytes] = mapped_column(EncryptedBytes("face_entries.embedding"))
    box: Mapped[str] = mapped_column(String(64), default="")  # "left,top,right,bottom" in the photo
    detected: Mapped[bool] = mapped_column(Boolean, default=True)  # False: whole crop taken as the face
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FaceIndexState(Base):
    """One row: bumped in the same transaction as every enrolment or removal, and saved beside the index file,
    so any process can tell that its index is stale with one primary-key read."""

    __tablename__ = "face_index_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
