"""The forwarder: drains this node's outbox to one parent, in id order, a batch at a time, at least once.

A batch is deleted from the outbox only after the parent acknowledged it (HTTPS 200 once committed there; JetStream
ack once stored in the stream). Killed between the two, the batch is sent again and the parent drops the copy
(by global id / version). Runs inside ``anfang serve`` or as its own process (``anfang federation forward``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import delete, select

from anfang.federation.links import ParentLink
from anfang.federation.models import FedBlob, FedOutbox
from anfang.federation.outbox import unseal_fields
from anfang.federation.schema import SCHEMA, SchemaMismatch
from anfang.federation.service import FederationService
from anfang.federation.transports import HttpsTransport, NatsTransport, Rejected, Transport

log = structlog.get_logger(__name__)

BlobReader = Callable[[str], bytes | None]


def make_transport(link: ParentLink, node_id: str, nats_url: str | None = None) -> Transport:
    if link.transport == "nats":
        return NatsTransport(link, node_id, nats_url)
    return HttpsTransport(link, node_id)


def batch_id(node: str, rows: list[tuple[int, str, str]]) -> str:
    """The batch's message id (JetStream de-duplication): a digest of the global ids it carries, so the same rows
    sent again after a crash get the same id, and different rows never do (outbox row ids can be reused by
    SQLite once the table is empty, so they are not used)."""
    digest = hashlib.blake2b(digest_size=16)
    for r in rows:
        digest.update(r[2].encode())
        digest.update(b"\n")
    return f"{node}:{digest.hexdigest()}"


class CaptureAttacher:
    """Attaches a GA/T 1400 capture's body and photos to its event envelope (origin node only): the outbox row
    names the event; the forwarder reads the capture as stored, so the outbox stays small."""

    def __init__(self, store: Any, image_reader: BlobReader | None) -> None:
        self.store, self.read_image = store, image_reader

    def attach(self, envs: list[dict[str, Any]]) -> None:
        from anfang.viid.models import ViidBlob, ViidImage, ViidObject

        pks = {int(e["data"]["data"]["object_pk"]): e for e in envs}
        with self.store.session() as s:
            objs = {o.id: o for o in s.scalars(select(ViidObject).where(ViidObject.id.in_(list(pks))))}
            imgs = s.execute(select(ViidImage.object_pk, ViidImage.image_id, ViidImage.sha256, ViidImage.file_format,
                                    ViidImage.type, ViidBlob.location)
                             .join(ViidBlob, ViidBlob.sha256 == ViidImage.sha256)
                             .where(ViidImage.object_pk.in_(list(pks)))).all()
        by_obj: dict[int, list[Any]] = {}
        for row in imgs:
            by_obj.setdefault(row.object_pk, []).append(row)
        for pk, env in pks.items():
            o = objs.get(pk)
            if o is None:
                continue
            images = [{"image_id": r.image_id, "sha256": r.sha256, "format": r.file_format, "type": r.type,
                       "location": r.location} for r in by_obj.get(pk, [])]
            env["data"]["capture"] = {"kind": o.kind, "object_id": o.object_id, "device_id": o.device_id,
                                      "body": orjson.loads(o.body) if isinstance(o.body, str) else o.body,
                                      "images": [{k: v for k, v in i.items() if k != "location"} for i in images]}
            env["blobs"] = [i["sha256"] for i in images]
            env["_locations"] = {i["sha256"]: i["location"] for i in images}


class Forwarder:
    def __init__(self, service: FederationService, link: ParentLink, transport: Transport, *, batch: int = 500,
                 idle: float = 0.2, image_reader: BlobReader | None = None, max_bytes: int = 8 << 20) -> None:
        self.service, self.link, self.transport = service, link, transport
        self.max_bytes = max_bytes  # bytes per batch; over NATS also the server's max_payload (1 MB by default)
        self.store = service.store
        self.batch, self.idle = batch, idle
        self.attacher = CaptureAttacher(self.store, image_reader)
        self.read_image = image_reader
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.sent = 0
        self.batches = 0
        self.last_ok: str | None = None
        self.last_error: str | None = None
        self._rate: list[tuple[float, int]] = []
        self._saved_at = 0.0
        self._started = False
        self._probed = 0.0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"fed-forward-{self.link.node_id}")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        with contextlib.suppress(Exception):
            await self.transport.close()

    # -- the loop -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.25
        while not self._stopping.is_set():
            try:
                if not self._started:
                    await self.transport.start()
                    self._started = True
                n = await self.drain_once()
                backoff = 0.25
                if n == 0 and hasattr(self.transport, "probe") and time.monotonic() - self._probed > 5:
                    self._probed = time.monotonic()
                    await self.transport.probe()
                if n == 0:  # nothing pending: look again shortly (a full or partial batch goes on at once)
                    await self._pause(self.idle)
            except SchemaMismatch as exc:
                self.last_error = exc.message
                log.error("fed_schema_refused", parent=self.link.node_id, message=exc.message)
                await self._pause(10)
            except Exception as exc:  # noqa: BLE001 - parent or network down: keep the outbox, retry with backoff
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if isinstance(exc, Rejected):
                    log.error("fed_batch_refused", parent=self.link.node_id, message=str(exc))
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
            await self._save_state()
        await self._save_state(force=True)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def drain_once(self) -> int:
        """Send one batch (if any); returns how many records it held. Its rows are deleted only once the parent
        acknowledged it. (Overlapping the next batch's reading with this one's sending was tried: no gain on two
        cores, where both are CPU work under one interpreter lock.)"""
        rows = await asyncio.to_thread(self._fetch)
        if not rows:
            return 0
        body, used = await asyncio.to_thread(self._build, rows)
        rows = rows[:used]
        await self.transport.send(body, batch_id(self.service.node_id, rows))
        await asyncio.to_thread(self._delete, [r[0] for r in rows])
        self.sent += len(rows)
        self.batches += 1
        self.last_ok, self.last_error = datetime.now(UTC).isoformat(), None
        self._rate.append((time.monotonic(), len(rows)))
        return len(rows)

    def _fetch(self, after: int | None = None) -> list[tuple[int, str, str]]:
        stmt = select(FedOutbox.id, FedOutbox.envelope, FedOutbox.gid).where(FedOutbox.parent == self.link.node_id)
        if after is not None:
            stmt = stmt.where(FedOutbox.id > after)
        with self.store.session() as s:
            return [tuple(r) for r in s.execute(stmt.order_by(FedOutbox.id).limit(self.batch))]

    def _delete(self, ids: list[int]) -> None:
        with self.store.session() as s:
            s.execute(delete(FedOutbox).where(FedOutbox.id.in_(ids)))

    def _build(self, rows: list[tuple[int, str, str]]) -> tuple[bytes, int]:
        """The batch body and how many of ``rows`` it holds (fewer when their photos would pass ``max_bytes``).
        Envelopes are already JSON and are spliced in as they are; only those that carry photos (a capture at its
        origin, or one received with its blobs) or sealed personal data are parsed."""
        parts: list[bytes] = []
        parsed: dict[int, dict[str, Any]] = {}
        captures: list[dict[str, Any]] = []
        for i, (_, text, _gid) in enumerate(rows):
            is_capture = '"object_pk"' in text and '"protocol":"viid"' in text and '"capture"' not in text
            if is_capture or '"blobs":[]' not in text or '"sealed":[]' not in text:
                env = orjson.loads(text)
                parsed[i] = env
                if is_capture:
                    captures.append(env)
                if env.get("sealed"):  # personal data leaves this node's key only inside the channel
                    unseal_fields(env["data"], env["sealed"])
                parts.append(b"")
            else:
                parts.append(text.encode())
        blobs: dict[str, str] = {}
        if parsed:
            if captures:
                self.attacher.attach(captures)
            self._read_blobs(list(parsed.values()), blobs)
            for i, env in parsed.items():
                env.pop("_locations", None)
                parts[i] = orjson.dumps(env)
        # keep the request / message under the size limit (photos, large 一标三实 records); at least one record
        limit = min(self.max_bytes, getattr(self.transport, "max_bytes", self.max_bytes)) - 4096
        used, total = len(rows), 0
        for i, part in enumerate(parts):
            size = len(part) + (sum(len(blobs.get(h, "")) for h in parsed[i].get("blobs", [])) if i in parsed else 0)
            if total + size > limit and i > 0:
                used = i
                break
            total += size
        if used < len(rows) and blobs:
            keep = {h for i, env in parsed.items() if i < used for h in env.get("blobs", [])}
            blobs = {h: v for h, v in blobs.items() if h in keep}
        head = orjson.dumps({"schema": SCHEMA, "sender": self.service.node_id, "role": self.service.role,
                             "uplink": self._uplink(rows), "blobs": blobs})
        return head[:-1] + b',"items":[' + b",".join(parts[:used]) + b"]}", used

    def _uplink(self, rows: list[tuple[int, str, str]]) -> dict[str, Any]:
        """This node's own uplink figures, shown by the parent (cheap: counted at most every 2 s)."""
        now = time.monotonic()
        if now - getattr(self, "_uplink_at", 0.0) > 2.0:
            n, oldest = self.service.backlog(self.link.node_id)
            self._uplink_at = now
            self._uplink_cache = {"backlog": n, "oldest_pending_s": round(
                (datetime.now(UTC) - oldest).total_seconds(), 1) if oldest else None}
        return self._uplink_cache

    def _read_blobs(self, envs: list[dict[str, Any]], out: dict[str, str]) -> None:
        wanted = {h for e in envs for h in e.get("blobs", [])}
        if not wanted:
            return
        with self.store.session() as s:
            for sha, data in s.execute(select(FedBlob.sha256, FedBlob.data).where(FedBlob.sha256.in_(wanted))):
                out[sha] = base64.b64encode(data).decode()
        for e in envs:
            for sha, loc in (e.get("_locations") or {}).items():
                if sha not in out and self.read_image is not None:
                    data = self.read_image(loc)
                    if data is not None:
                        out[sha] = base64.b64encode(data).decode()

    # -- state --------------------------------------------------------------------------------------------------
    def rate(self) -> float:
        now = time.monotonic()
        self._rate = [(t, n) for t, n in self._rate if now - t < 10]
        return round(sum(n for _, n in self._rate) / 10, 1)

    def state(self) -> dict[str, Any]:
        return {"connected": bool(self.transport.connected) and self.last_error is None, "sent": self.sent,
                "batches": self.batches, "last_ok": self.last_ok, "last_error": self.last_error, "rate": self.rate()}

    async def _save_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._saved_at > 1.0:
            self._saved_at = now
            with contextlib.suppress(Exception):  # never let bookkeeping stop the forwarding
                await asyncio.to_thread(self.service.save_link_state, self.link.node_id, self.state())
