"""Subscriptions (``/VIID/Subscribes``) and their delivery.

A subscription's ``cursor`` is the last ``viid_objects.id`` its receiver acknowledged. Delivery reads what follows
the cursor (kinds from SubscribeDetail: 11 persons, 12 faces, 13 vehicles, 14 non-motor vehicles; received between
BeginTime and EndTime), posts ``SubscribeNotificationListObject`` batches to ReceiveAddr, honours ReportInterval,
and advances the cursor only once the receiver replied 2xx. A receiver that is down gets retries with exponential
backoff (1 s … 60 s); as captures and cursor are both in the database, nothing acknowledged to a device is lost,
even across restarts. Objects are committed by one writer per process, so ids become visible in increasing order
and a cursor never skips a row.
"""

from __future__ import annotations

import contextlib
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
from anfang.viid.models import ViidObject, ViidSubscription
from anfang.viid.poller import HttpPoller
from anfang.viid.schemas import (
    INVALID_JSON_CONTENT,
    INVALID_OPERATION,
    MEDIA_TYPE,
    OK,
    SubscribeObject,
    status_object,
    statuses_of,
)

log = structlog.get_logger(__name__)
BATCH = 100
MAX_BACKOFF = 60.0


def apply(store: Store, raw: Any, subscriber: str, url: str) -> dict[str, Any]:
    """Create (OperateType 0) or cancel (1) one subscription; returns its ResponseStatusObject."""
    try:
        obj = SubscribeObject.model_validate(raw)
    except ValidationError as exc:
        sid = str(raw.get("SubscribeID", "")) if isinstance(raw, dict) else ""
        return status_object(url, INVALID_JSON_CONTENT, f"SubscribeObject 无效 / invalid: {exc.errors()[0]['msg']}",
                             sid)
    if obj.OperateType == 1:
        ok = cancel(store, obj.SubscribeID, subscriber)
        return status_object(url, OK if ok else INVALID_OPERATION, "OK" if ok else "不存在 / not found",
                             obj.SubscribeID)
    codes = [c.strip() for c in obj.SubscribeDetail.split(",") if c.strip()]
    bad = [c for c in codes if c not in ids.SUBSCRIBE_DETAILS]
    if not codes or bad:
        return status_object(url, INVALID_JSON_CONTENT, f"SubscribeDetail 无效 / bad codes {bad or codes}",
                             obj.SubscribeID)
    if not obj.ReceiveAddr.startswith(("http://", "https://")):
        return status_object(url, INVALID_JSON_CONTENT, "ReceiveAddr 应为 http(s) 地址 / must be an http(s) URL",
                             obj.SubscribeID)
    body = obj.model_dump(exclude_none=True)
    body["SubscribeStatus"] = 0
    with store.session() as s:
        sub = s.get(ViidSubscription, obj.SubscribeID)
        if sub is None:
            sub = ViidSubscription(subscribe_id=obj.SubscribeID, cursor=0, delivered=0)
            s.add(sub)
        sub.title, sub.detail, sub.receive_addr = obj.Title, ",".join(codes), obj.ReceiveAddr
        sub.report_interval = max(obj.ReportInterval, 0)
        sub.begin_at, sub.end_at = ids.parse_time(obj.BeginTime), ids.parse_time(obj.EndTime)
        sub.status, sub.subscriber = 0, subscriber
        sub.with_images = obj.ResultImageDeclare not in ("-1", "0")
        sub.body = orjson.dumps(body).decode()
    return status_object(url, OK, "OK", obj.SubscribeID)


def cancel(store: Store, subscribe_id: str, by: str = "") -> bool:
    with store.session() as s:
        sub = s.get(ViidSubscription, subscribe_id)
        if sub is None:
            return False
        body = orjson.loads(sub.body)
        body.update(SubscribeStatus=1, OperateType=1, CancelTime=ids.format_time(), SubscribeCancelPerson=by)
        sub.status, sub.body = 1, orjson.dumps(body).decode()
    return True


def list_bodies(store: Store) -> list[dict[str, Any]]:
    with store.session() as s:
        return [orjson.loads(b) for b in s.scalars(select(ViidSubscription.body)
                                                  .order_by(ViidSubscription.created_at))]


def pending(store: Store, sub: ViidSubscription, limit: int = BATCH) -> list[tuple[int, str, str, str]]:
    """(pk, kind, object_id, body) after the cursor that this subscription wants."""
    kinds = [ids.DETAIL_KIND[c] for c in sub.detail.split(",") if c in ids.DETAIL_KIND]
    if not kinds:
        return []
    conds = [ViidObject.id > sub.cursor, ViidObject.kind.in_(kinds)]
    if sub.begin_at is not None:
        conds.append(ViidObject.received_at >= sub.begin_at)
    if sub.end_at is not None:
        conds.append(ViidObject.received_at <= sub.end_at)
    with store.session() as s:
        return [tuple(r) for r in s.execute(select(ViidObject.id, ViidObject.kind, ViidObject.object_id,
                                                   ViidObject.body).where(*conds).order_by(ViidObject.id)
                                            .limit(limit))]


def notification(sub: ViidSubscription, rows: list[tuple[int, str, str, str]], store: Store,
                 images: Any | None) -> dict[str, Any]:
    """One SubscribeNotificationListObject carrying ``rows`` (with image data when the subscriber wants it)."""
    locations = service.object_images(store, [r[0] for r in rows]) if images is not None else {}
    lists: dict[str, list[dict[str, Any]]] = {}
    for pk, kind, _oid, body in rows:
        obj = orjson.loads(body)
        if images is not None and pk in locations:
            obj = service.with_image_data(obj, locations[pk], images)
        lists.setdefault(kind, []).append(obj)
    note: dict[str, Any] = {"NotificationID": f"{sub.subscribe_id[:30]}{rows[-1][0]:018d}"[-48:],
                            "SubscribeID": sub.subscribe_id, "Title": sub.title,
                            "TriggerTime": ids.format_time(), "InfoIDs": ",".join(r[2] for r in rows)}
    for kind, objs in lists.items():
        spec = service.KINDS[kind]
        note[spec.notif_key] = {spec.item_key: objs}
    return {"SubscribeNotificationListObject": {"SubscribeNotificationObject": [note]}}


def _advance(store: Store, subscribe_id: str, cursor: int, count: int) -> None:
    with store.session() as s:
        s.execute(update(ViidSubscription).where(ViidSubscription.subscribe_id == subscribe_id).values(
            cursor=cursor, delivered=ViidSubscription.delivered + count, last_sent_at=datetime.now(UTC),
            last_error=None))


def _note_error(store: Store, subscribe_id: str, error: str) -> None:
    with store.session() as s:
        s.execute(update(ViidSubscription).where(ViidSubscription.subscribe_id == subscribe_id).values(
            last_error=error[:256]))


def _active(store: Store) -> list[ViidSubscription]:
    now = datetime.now(UTC)
    with store.session() as s:
        subs = list(s.scalars(select(ViidSubscription).where(ViidSubscription.status == 0)))
        for sub in subs:  # past EndTime and fully delivered → expired (SubscribeStatus 2)
            if sub.end_at is not None and sub.end_at < now and not pending(store, sub, 1):
                sub.status = 2
    return [s for s in subs if s.status == 0 and (s.begin_at is None or s.begin_at <= now)]


class SubscriptionService(HttpPoller):
    """Background delivery of every active subscription (a Service in ``app.state.services``)."""

    task_name = "viid-subscriptions"
    http_timeout = 15.0

    def __init__(self, node: Any, *, poll: float = 0.5) -> None:
        super().__init__(node, poll=poll)
        self._next_try: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._last_sent: dict[str, float] = {}

    async def once(self) -> Any:
        return await self.deliver_once()

    async def deliver_once(self) -> int:
        """One pass over the active subscriptions; returns how many objects were acknowledged."""
        store = self.node.store
        total = 0
        for sub in await run_in_threadpool(_active, store):
            now = time.monotonic()
            if self._next_try.get(sub.subscribe_id, 0.0) > now:
                continue
            if sub.report_interval and now - self._last_sent.get(sub.subscribe_id, -1e9) < sub.report_interval:
                continue
            while True:
                rows = await run_in_threadpool(pending, store, sub)
                if not rows:
                    break
                ok = await self._send(sub, rows)
                if not ok:
                    break
                sub.cursor = rows[-1][0]
                total += len(rows)
                self._last_sent[sub.subscribe_id] = time.monotonic()
                if sub.report_interval:
                    break
        return total

    async def _send(self, sub: ViidSubscription, rows: list[tuple[int, str, str, str]]) -> bool:
        store = self.node.store
        payload = await run_in_threadpool(notification, sub, rows, store,
                                          self.node.images if sub.with_images else None)
        assert self._client is not None
        error = None
        try:
            resp = await self._client.post(sub.receive_addr, content=orjson.dumps(payload), headers={
                "Content-Type": MEDIA_TYPE, "User-Identify": self.node.settings.viid_server_id})
            if resp.status_code // 100 != 2:
                error = f"HTTP {resp.status_code}"
                if resp.status_code == 401:
                    self.node.reregister_upper = True
            else:
                with contextlib.suppress(ValueError):
                    bad = [s for s in statuses_of(resp.json()) if s.StatusCode not in (0,)]
                    if bad:  # refused per object (bad content): not retried forever, logged
                        log.warning("viid_notification_partly_refused", subscribe_id=sub.subscribe_id,
                                    refused=len(bad), first=bad[0].StatusString)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            backoff = min(self._backoff.get(sub.subscribe_id, 0.5) * 2, MAX_BACKOFF)
            self._backoff[sub.subscribe_id] = backoff
            self._next_try[sub.subscribe_id] = time.monotonic() + backoff
            log.info("viid_notification_failed", subscribe_id=sub.subscribe_id, error=error, retry_in=backoff)
            await run_in_threadpool(_note_error, store, sub.subscribe_id, error)
            return False
        self._backoff.pop(sub.subscribe_id, None)
        self._next_try.pop(sub.subscribe_id, None)
        await run_in_threadpool(_advance, store, sub.subscribe_id, rows[-1][0], len(rows))
        return True
