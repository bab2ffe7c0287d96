"""Federation tables: the outbox (what this node still owes each parent), what it received from its children
(latest version per entity, image bytes), and what it knows of each child node."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from anfang.store.base import Base, UtcDateTime, utcnow

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite's rowid alias must be INTEGER


class FedOutbox(Base):
    """One record still to be sent to one parent. Written by the store hook in the transaction of the record
    itself; deleted by the forwarder once the parent (or its JetStream stream) acknowledged it."""

    __tablename__ = "fed_outbox"
    __table_args__ = (Index("ix_fed_outbox_parent_id", "parent", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    parent: Mapped[str] = mapped_column(String(32))
    gid: Mapped[str] = mapped_column(String(64))  # global id of this change (idempotency key at every tier)
    entity: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    envelope: Mapped[str] = mapped_column(Text)  # the Envelope as JSON (schema.py)


class FedRecord(Base):
    """The newest version of every entity received from below (warnings, devices, 一标三实, captures ...).
    Events themselves land in ``event_log`` with their own ids."""

    __tablename__ = "fed_records"
    origin: Mapped[str] = mapped_column(String(32), primary_key=True)
    entity: Mapped[str] = mapped_column(String(24), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    gid: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))  # upsert | delete | append
    via: Mapped[str] = mapped_column(String(32))  # the child node that delivered it
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class FedBlob(Base):
    """Image bytes of captures received from below, by SHA-256 (stored once whatever the number of senders)."""

    __tablename__ = "fed_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FedNode(Base):
    """A child node as this node sees it: last contact, schema, what it delivered, its own uplink figures."""

    __tablename__ = "fed_nodes"
    node_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str | None] = mapped_column(String(16))
    parent: Mapped[str | None] = mapped_column(String(32))  # the node that delivers its data here (itself if direct)
    schema_version: Mapped[int | None] = mapped_column(Integer)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(String(400))
    uplink: Mapped[dict] = mapped_column(JSON, default=dict)  # the child's own backlog / lag at last contact
