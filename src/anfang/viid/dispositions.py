"""Dispositions (布控, ``/VIID/Dispositions``): an upper platform asks us to watch for a vehicle plate (category 2)
or a person's ID number (category 1). Entries live in ``viid_dispositions`` (the warnings engine will take them
over); the ingest writer matches every capture against the open ones in the same transaction (a hit row), and
``DispositionNotifier`` posts ``DispositionNotificationListObject`` to the disposition's ReceiveAddr, retrying
until acknowledged."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool

from anfang.store.engine import Store
from anfang.viid import ids, service
from anfang.viid.models import ViidDisposition, ViidDispositionHit, ViidObject
from anfang.viid.poller import HttpPoller
from anfang.viid.schemas import (
    INVALID_JSON_CONTENT,
    INVALID_OPERATION,
    MEDIA_TYPE,
    OK,
    DispositionObject,
    status_object,
)

log = structlog.get_logger(__name__)
PERSON, VEHICLE = "1", "2"


def _targets(obj: DispositionObject) -> tuple[str | None, str | None]:
    """(plate, ID number) watched: explicit PlateNo / IDNumber fields, ``key=value`` pairs in TargetFeature, or
    TargetFeature itself (a plate for category 2, an ID number for category 1)."""
    extra = obj.model_extra or {}
    plate, id_number = extra.get("PlateNo"), extra.get("IDNumber")
    feature = obj.TargetFeature.strip()
    if "=" in feature:
        pairs = dict(part.split("=", 1) for part in feature.replace(";", ",").split(",") if "=" in part)
        plate = plate or pairs.get("PlateNo")
        id_number = id_number or pairs.get("IDNumber")
    elif feature:
        if obj.DispositionCategory == VEHICLE:
            plate = plate or feature
        else:
            id_number = id_number or feature
    return (ids.normalize_plate(plate) or None, str(id_number).strip() if id_number else None)


def apply(store: Store, watchlist: service.Watchlist, raw: Any, subscriber: str, url: str) -> dict[str, Any]:
    try:
        obj = DispositionObject.model_validate(raw)
    except ValidationError as exc:
        did = str(raw.get("DispositionID", "")) if isinstance(raw, dict) else ""
        return status_object(url, INVALID_JSON_CONTENT, f"DispositionObject 无效 / invalid: {exc.errors()[0]['msg']}",
                             did)
    if obj.OperateType == 1:
        ok = cancel(store, watchlist, obj.DispositionID)
        return status_object(url, OK if ok else INVALID_OPERATION, "OK" if ok else "不存在 / not found",
                             obj.DispositionID)
    plate, id_number = _targets(obj)
    if not plate and not id_number:
        return status_object(url, INVALID_JSON_CONTENT, "缺少布控目标（号牌或身份证号）/ no target", obj.DispositionID)
    body = obj.model_dump(exclude_none=True)
    body["DispositionStatus"] = 0
    with store.session() as s:
        d = s.get(ViidDisposition, obj.DispositionID) or ViidDisposition(disposition_id=obj.DispositionID)
        d.title, d.category, d.plate_no, d.id_number = obj.Title, obj.DispositionCategory, plate, id_number
        d.receive_addr = obj.ReceiveAddr or None
        d.begin_at, d.end_at = ids.parse_time(obj.BeginTime), ids.parse_time(obj.EndTime)
        d.status, d.subscriber, d.body = 0, subscriber, orjson.dumps(body).decode()
        s.add(d)
        s.flush()
        watchlist.remove(d.disposition_id)
        watchlist.add(d)
    return status_object(url, OK, "OK", obj.DispositionID)


def cancel(store: Store, watchlist: service.Watchlist, disposition_id: str) -> bool:
    with store.session() as s:
        d = s.get(ViidDisposition, disposition_id)
        if d is None:
            return False
        body = orjson.loads(d.body)
        body.update(DispositionStatus=1, OperateType=1, DispositionRemoveTime=ids.format_time())
        d.status, d.body = 1, orjson.dumps(body).decode()
    watchlist.remove(disposition_id)
    return True


def list_bodies(store: Store) -> list[dict[str, Any]]:
    with store.session() as s:
        return [orjson.loads(b) for b in s.scalars(select(ViidDisposition.body)
                                                  .order_by(ViidDisposition.created_at))]


def due_hits(store: Store, limit: int = 100) -> list[tuple[ViidDispositionHit, ViidDisposition, ViidObject]]:
    with store.session() as s:
        return [tuple(r) for r in s.execute(
            select(ViidDispositionHit, ViidDisposition, ViidObject)
            .join(ViidDisposition, ViidDisposition.disposition_id == ViidDispositionHit.disposition_id)
            .join(ViidObject, ViidObject.id == ViidDispositionHit.object_pk)
            .where(ViidDispositionHit.notified_at.is_(None), ViidDisposition.receive_addr.is_not(None))
            .order_by(ViidDispositionHit.id).limit(limit))]


def _mark(store: Store, hit_id: int, ok: bool) -> None:
    with store.session() as s:
        values: dict[str, Any] = {"attempts": ViidDispositionHit.attempts + 1}
        if ok:
            values["notified_at"] = datetime.now(UTC)
        s.execute(update(ViidDispositionHit).where(ViidDispositionHit.id == hit_id).values(**values))


def notification(hit: ViidDispositionHit, d: ViidDisposition, obj: ViidObject) -> dict[str, Any]:
    key = {"motor": "MotorVehicleObject", "nonmotor": "NonMotorVehicleObject", "face": "FaceObject"}.get(
        obj.kind, "PersonObject")
    return {"DispositionNotificationListObject": {"DispositionNotificationObject": [{
        "NotificationID": f"{d.disposition_id[:30]}{hit.id:018d}"[-48:], "DispositionID": d.disposition_id,
        "Title": d.title, "TriggerTime": ids.format_time(hit.at), "CntObjectID": obj.object_id,
        key: orjson.loads(obj.body)}]}}


class DispositionNotifier(HttpPoller):
    """Posts every unnotified hit to its disposition's ReceiveAddr; retries with backoff until acknowledged."""

    task_name = "viid-dispositions"
    http_timeout = 10.0

    def __init__(self, node: Any, *, poll: float = 0.5) -> None:
        super().__init__(node, poll=poll)
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}

    async def once(self) -> Any:
        return await self.notify_once()

    async def notify_once(self) -> int:
        sent = 0
        assert self._client is not None
        for hit, d, obj in await run_in_threadpool(due_hits, self.node.store):
            addr = d.receive_addr or ""
            if self._retry_at.get(addr, 0.0) > time.monotonic():
                continue
            try:
                resp = await self._client.post(addr, content=orjson.dumps(notification(hit, d, obj)), headers={
                    "Content-Type": MEDIA_TYPE, "User-Identify": self.node.settings.viid_server_id})
                ok = resp.status_code // 100 == 2
            except httpx.HTTPError:
                ok = False
            await run_in_threadpool(_mark, self.node.store, hit.id, ok)
            if ok:
                sent += 1
                self._backoff.pop(addr, None)
            else:
                self._backoff[addr] = min(self._backoff.get(addr, 0.5) * 2, 60.0)
                self._retry_at[addr] = time.monotonic() + self._backoff[addr]
        return sent
