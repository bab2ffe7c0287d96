"""The one versioned contract of what travels between tiers (HTTPS body and NATS message alike).

A batch is ``{"schema": N, "sender": node, "role": ..., "items": [Envelope...], "blobs": {sha256: base64}}``.
Each Envelope is one change of one entity at its origin node: ``gid`` makes it idempotent at every tier,
``(origin, entity, key)`` names the entity and ``version`` orders its changes (a receiver keeps the highest).

Compatibility: a receiver accepts schemas ``MIN_SCHEMA..SCHEMA``. Anything else is refused with a 4xx naming
which side must upgrade, before a single item is applied.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA = 1
MIN_SCHEMA = 1
SCHEMA_HEADER = "X-Anfang-Schema"


class Envelope(BaseModel):
    gid: str = Field(max_length=64)
    origin: str = Field(max_length=32)  # the node where the change happened
    entity: str = Field(max_length=24)  # event | warning | device | device_status | person | address | ...
    key: str = Field(max_length=128)
    version: int
    op: Literal["upsert", "delete", "append"] = "upsert"
    at: str  # ISO time of the change at its origin
    data: dict[str, Any] = Field(default_factory=dict)
    blobs: list[str] = Field(default_factory=list)  # SHA-256 of image bytes that travel in the batch
    path: list[str] = Field(default_factory=list)  # nodes it passed through (origin first)
    # fields of ``data`` that are personal data encrypted at rest (ID numbers, phones): sealed with the holding
    # node's data key in its outbox and fed_records, in clear only inside the TLS / NATS channel
    sealed: list[str] = Field(default_factory=list)


class Uplink(BaseModel):
    """A sender's own uplink figures, carried in every batch so that its parent can show them."""

    backlog: int = 0
    oldest_pending_s: float | None = None


class Batch(BaseModel):
    schema_: int = Field(alias="schema")
    sender: str = Field(max_length=32)
    role: str = "community"
    items: list[Envelope]
    blobs: dict[str, str] = Field(default_factory=dict)
    uplink: Uplink = Field(default_factory=Uplink)


class SchemaMismatch(Exception):
    """The other side speaks a schema this node cannot read; ``message`` says who must upgrade to what."""

    def __init__(self, message: str, *, theirs: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.theirs = theirs


def check_schema(theirs: Any, *, me: str, sender: str) -> None:
    """Raise SchemaMismatch unless a batch of schema ``theirs`` can be applied here."""
    try:
        v = int(theirs)
    except (TypeError, ValueError):
        raise SchemaMismatch(f"缺少或无效的数据规范版本 / missing or invalid schema version {theirs!r}: "
                             f"send header {SCHEMA_HEADER} (this node {me} reads {MIN_SCHEMA}..{SCHEMA})") from None
    if v < MIN_SCHEMA:
        raise SchemaMismatch(
            f"节点 {sender} 的数据规范版本 {v} 过旧，请升级该节点至规范 ≥ {MIN_SCHEMA} / "
            f"node {sender} sends schema {v}; this node {me} reads {MIN_SCHEMA}..{SCHEMA}: upgrade {sender} to an "
            f"anfang release with schema ≥ {MIN_SCHEMA}. Its data stays in its outbox until then.", theirs=v)
    if v > SCHEMA:
        raise SchemaMismatch(
            f"节点 {sender} 的数据规范版本 {v} 新于上级 {me}（{SCHEMA}），请升级上级节点 / node {sender} sends schema "
            f"{v}, newer than this node {me} reads ({MIN_SCHEMA}..{SCHEMA}): upgrade {me} to an anfang release "
            f"with schema ≥ {v}. Its data stays in its outbox until then.", theirs=v)
