"""Routes under ``/VIID`` (GA/T 1400.4), a Starlette sub-application mounted by ``install``.

Every reply is ``application/VIID+JSON;charset=UTF-8`` in the standard's shapes; errors are ResponseStatusObjects
(never the app's ``{"error": ...}`` shape), produced here so the app's exception handlers never see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from anfang.config import Settings
from anfang.core.ids import ascii_digits
from anfang.devices.models import Device
from anfang.devices.service import ONLINE, DeviceService
from anfang.store.engine import Store
from anfang.viid import dispositions, ids, service, subscriptions
from anfang.viid.auth import Digest
from anfang.viid.images import SegmentImageStore, open_image_store
from anfang.viid.schemas import (
    INVALID_JSON_CONTENT,
    INVALID_JSON_FORMAT,
    INVALID_OPERATION,
    MEDIA_TYPE,
    OK,
    OTHER_ERROR,
    status_list_reply,
    status_object,
    status_reply,
)

log = structlog.get_logger(__name__)


class ViidError(Exception):
    def __init__(self, http: int, code: int, text: str, id_: str = "", headers: dict[str, str] | None = None):
        super().__init__(text)
        self.http, self.code, self.text, self.id, self.headers = http, code, text, id_, headers


def reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


class ViidNode:
    """Everything the /VIID routes and the GA/T 1400 background services share."""

    def __init__(self, settings: Settings, store: Store, bus: Any) -> None:
        self.settings, self.store, self.bus = settings, store, bus
        self.devices = DeviceService(store, node_id=settings.node_id)
        self.sessions = service.Sessions(self.devices, settings.viid_keepalive_timeout)
        if settings.viid_upper_id:
            self.sessions.trusted.add(settings.viid_upper_id)
        self.watchlist = service.Watchlist()
        from anfang.devices.clock import ClockWatch

        self.clocks = ClockWatch(store)  # camera clocks: shot time against receive time
        self._http: Any = None  # httpx client for sub-images sent by URL (viid/fetch.py), made on first use
        self._images: SegmentImageStore | None = None
        self._writer: service.IngestWriter | None = None
        key = hashlib.sha256(f"{settings.viid_server_id}:{settings.viid_password}:{settings.data_dir}".encode())
        self.digest = Digest(key.digest())
        self._tasks: list[asyncio.Task] = []
        self.reregister_upper = False  # set when the upper 视图库 answered 401 (it forgot us: register again)

    @property
    def images(self) -> SegmentImageStore:
        if self._images is None:  # lazily: no segment directory for nodes that never ingest
            self._images = open_image_store(self.settings)
        return self._images

    @property
    def http(self) -> Any:
        if self._http is None:
            from anfang.viid.fetch import new_client

            self._http = new_client()
        return self._http

    @property
    def writer(self) -> service.IngestWriter:
        if self._writer is None:
            self._writer = service.IngestWriter(self.store, self.images, watchlist=self.watchlist)
            self._writer.place_of = self.sessions.place
            self._writer.node_id = self.settings.node_id
        return self._writer

    async def start(self) -> None:
        await run_in_threadpool(self.sessions.load)
        await run_in_threadpool(self.watchlist.load, self.store)
        self.writer.start()
        self._tasks.append(asyncio.create_task(self._watchdog(), name="viid-watchdog"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._writer is not None:
            await run_in_threadpool(self._writer.stop)
        if self._images is not None:
            self._images.close()
            self._images = None
        self._writer = None

    async def _watchdog(self) -> None:
        """Marks devices whose keepalive went stale offline (status history + device_status event)."""
        interval = max(min(self.settings.viid_keepalive_timeout / 4, 15.0), 0.2)
        while True:
            await asyncio.sleep(interval)
            for device_id in self.sessions.stale():
                event = await run_in_threadpool(service.mark_offline, self.devices, self.sessions, device_id,
                                                "keepalive_timeout")
                if event is not None:
                    await self.bus.publish(event)

    async def publish(self, events: list) -> None:
        for ev in events:
            await self.bus.publish(ev)


def node_of(request: Request) -> ViidNode:
    return request.app.state.viid


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and ascii_digits(declared) and int(declared) > limit:
        raise ViidError(413, OTHER_ERROR, f"请求体超过 {limit} 字节 / body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ViidError(413, OTHER_ERROR, f"请求体超过 {limit} 字节 / body larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        with contextlib.suppress(UnicodeDecodeError, ValueError):
            return orjson.loads(raw.decode("gb18030").encode("utf-8"))  # vendor oddity: GBK bodies
        raise ViidError(400, INVALID_JSON_FORMAT, "JSON 格式错误 / malformed JSON") from None


def require_identity(request: Request) -> str:
    """The caller's ``User-Identify``: a registered device with a fresh keepalive (or our upper), else 401."""
    who = (request.headers.get("user-identify") or "").strip()
    if not who or not node_of(request).sessions.is_fresh(who):
        raise ViidError(401, INVALID_OPERATION, "未注册或保活超时 / not registered or keepalive expired", who)
    return who


def _unwrap(data: Any, wrapper: str) -> dict[str, Any]:
    inner = data.get(wrapper, data) if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        raise ViidError(400, INVALID_JSON_CONTENT, f"缺少 {wrapper} / {wrapper} expected")
    return inner


def _items(data: Any, list_key: str, item_key: str) -> list[Any]:
    """Objects of a batch: ``{list_key: {item_key: [...]}}``, ``{item_key: [...]}``, a bare list or one object."""
    if isinstance(data, dict) and list_key in data:
        data = data[list_key]
    if isinstance(data, dict) and item_key in data:
        data = data[item_key]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ViidError(400, INVALID_JSON_CONTENT, f"缺少 {list_key}.{item_key} / expected")
    return data


# -- system ---------------------------------------------------------------------------------------------------

async def register(request: Request) -> Response:
    node = node_of(request)
    url = request.url.path
    data = await read_json(request, 64 * 1024)
    obj = _unwrap(data, "RegisterObject")
    device_id = str(obj.get("DeviceID") or "").strip()
    if ids.check_device_id(device_id):
        raise ViidError(400, INVALID_JSON_CONTENT, "DeviceID 应为20位数字 / DeviceID must be 20 digits", device_id)
    params = node.digest.parse(request.headers.get("authorization"))
    if params is None:
        raise ViidError(401, INVALID_OPERATION, "需要摘要认证 / digest authentication required", device_id,
                        {"WWW-Authenticate": node.digest.challenge()})
    dev = await run_in_threadpool(node.devices.get, "viid", device_id)
    password = (dev.password if dev is not None and dev.password else None) or node.settings.viid_password
    allowed = dev is not None or node.settings.viid_auto_register
    if not allowed or (dev is not None and dev.review == "rejected") or \
            not node.digest.verify(params, request.method, password):
        raise ViidError(401, INVALID_OPERATION, "认证失败 / authentication failed", device_id,
                        {"WWW-Authenticate": node.digest.challenge()})
    client = request.client

    def _save() -> Any:
        fields: dict[str, Any] = {"transport": "HTTP", "registered_at": datetime.now(UTC)}
        if client is not None:
            fields.update(host=client.host)
        if dev is None:
            fields.update(name=str(obj.get("Name") or device_id), attributes={"registered": dict(obj)})
        node.devices.upsert("viid", device_id, **fields)
        return node.devices.set_status("viid", device_id, ONLINE, "register").event

    event = await run_in_threadpool(_save)
    node.sessions.touch(device_id)
    node.sessions.places.pop(device_id, None)
    if event is not None:
        await node.bus.publish(event)
    return reply(status_reply(url, OK, "注册成功 / registered", device_id))


async def unregister(request: Request) -> Response:
    node = node_of(request)
    who = require_identity(request)  # only a registered device (fresh session) unregisters, and only itself:
    obj = _unwrap(await read_json(request, 64 * 1024), "UnRegisterObject")  # else anyone could knock APEs offline
    device_id = str(obj.get("DeviceID") or who)
    if device_id != who:
        raise ViidError(403, INVALID_OPERATION, "只能注销本设备 / a device unregisters only itself", device_id)
    event = await run_in_threadpool(service.mark_offline, node.devices, node.sessions, device_id, "unregister")
    if event is not None:
        await node.bus.publish(event)
    return reply(status_reply(request.url.path, OK, "注销成功 / unregistered", device_id))


async def keepalive(request: Request) -> Response:
    node = node_of(request)
    obj = _unwrap(await read_json(request, 64 * 1024), "KeepaliveObject")
    device_id = str(obj.get("DeviceID") or request.headers.get("user-identify") or "")
    if not node.sessions.is_fresh(device_id):
        raise ViidError(401, INVALID_OPERATION, "未注册或保活超时，请重新注册 / register again", device_id)
    node.sessions.touch(device_id)
    with contextlib.suppress(LookupError):
        res = await run_in_threadpool(node.devices.set_status, "viid", device_id, ONLINE, "keepalive")
        if res.event is not None:
            await node.bus.publish(res.event)
    return reply(status_reply(request.url.path, OK, "保活成功 / alive", device_id))


async def system_time(request: Request) -> Response:
    node = node_of(request)
    return reply({"SystemTimeObject": {"VIIDServerID": node.settings.viid_server_id, "TimeMode": "1",
                                       "LocalTime": ids.format_time(), "TimeZone": "Asia/Shanghai"}})


# -- captured objects -----------------------------------------------------------------------------------------

async def ingest(request: Request, node: ViidNode, who: str, kind: str, items: list[Any],
                 url: str) -> list[dict[str, Any]]:
    """Check, store (durably) and publish a batch; one ResponseStatusObject per object, in order."""
    limit = node.settings.viid_max_image
    statuses: list[dict[str, Any] | None] = [None] * len(items)
    extra: list[dict[str, Any]] = []  # per refused sub-image of a stored object
    good: list[tuple[int, service.Prepared]] = []
    for i, obj in enumerate(items):
        try:
            p = (service.prepare_image_object(obj, max_image=limit) if kind == "image"
                 else service.prepare(kind, obj, max_image=limit))
        except service.BadObject as exc:
            statuses[i] = status_object(url, INVALID_JSON_CONTENT, str(exc), exc.object_id)
        else:
            good.append((i, p))
    if good:
        from anfang.viid.fetch import fetch_missing

        # sub-images sent by URL only: fetched from the sender's own address (SSRF-safe) before storing, so the
        # record is stored and matched with its image; an image that cannot be fetched is refused alone
        client_ip = request.client.host if request.client is not None else ""
        await fetch_missing([p for _, p in good], client_ip, limit, node.http)
        try:
            stored = await node.writer.submit([p for _, p in good], who)
        except Exception:  # noqa: BLE001 - a storage failure is reported per object, not as a crash
            log.exception("viid_ingest_failed", kind=kind, objects=len(good))
            for i, p in good:
                statuses[i] = status_object(url, OTHER_ERROR, "存储失败 / storage failure", p.object_id)
        else:
            for (i, p), st in zip(good, stored, strict=True):
                statuses[i] = status_object(url, OK, "OK" if st.pk is not None or p.standalone_image
                                            else "OK (已存在 / duplicate)", p.object_id)
                if p.refused:  # kept without the refused sub-images: said per image, by its ImageID
                    statuses[i]["StatusString"] = (f"OK，{len(p.refused)} 张图片未接收 / stored without "
                                                   f"{len(p.refused)} refused image(s)")
                    extra.extend(status_object(url, INVALID_JSON_CONTENT, f"图片未接收（对象已保存）/ image refused, "
                                               f"object kept: {reason}"[:256], image_id)
                                 for image_id, reason in p.refused)
            await node.publish(service.capture_events(stored))
            for st in stored:  # a camera whose clock is off is flagged (devices/clock.py); rare database writes
                reading = node.clocks.observe("viid", st.prepared.device_id, st.prepared.shot_at) \
                    if st.prepared is not None and st.pk is not None else None
                if reading is not None:
                    await run_in_threadpool(node.clocks.record, reading)
    out = [s for s in statuses if s is not None] + extra
    tally = getattr(getattr(request.app.state, "metrics", None), "viid", None)  # /metrics (anfang.metrics)
    if tally is not None:
        for st in out:
            tally[f"{kind}_accepted" if st["StatusCode"] == OK else f"{kind}_refused"] += 1
    return out


# bounds of the numbers a query may carry: past them the database cannot hold the value (SQLite: 64 bits) or the
# answer would be unbounded; the service still caps a page at 1,000 objects
QUERY_NUMBERS = {"RecordStartNo": (0, 1_000_000_000), "PageRecordNum": (1, 10_000)}


def _query(request: Request) -> service.Query:
    q = service.Query()
    for raw_key, value in request.query_params.multi_items():
        key = raw_key.rsplit(".", 1)[-1]
        if key == "DeviceID":
            q.device_id = value
        elif key in ("BeginTime", "StartTime"):
            q.begin = ids.parse_time(value)
        elif key == "EndTime":
            q.end = ids.parse_time(value)
        elif key == "PlateNo":
            q.plate_no = value
        elif key == "GenderCode":
            q.gender = value
        elif key in ("IDList", "FaceID", "MotorVehicleID", "PersonID", "NonMotorVehicleID"):
            q.object_ids = [x for x in value.split(",") if x]
        elif key in QUERY_NUMBERS:
            low, high = QUERY_NUMBERS[key]
            if not ascii_digits(value, 10) or not low <= int(value) <= high:
                raise ViidError(400, INVALID_OPERATION, f"查询参数 {key} 应为 {low}–{high} 的整数 / {key} must be an "
                                                        f"integer from {low} to {high}: {value[:24]!r}")
            if key == "RecordStartNo":
                q.start_no = int(value)
            else:
                q.page = int(value)
    return q


def objects_endpoint(spec: service.KindSpec):  # noqa: ANN201
    async def collection(request: Request) -> Response:
        node = node_of(request)
        who = require_identity(request)
        url = request.url.path
        if request.method == "POST":
            data = await read_json(request, node.settings.viid_max_body)
            statuses = await ingest(request, node, who, spec.kind, _items(data, spec.list_key, spec.item_key), url)
            return reply(status_list_reply(statuses))
        if request.method == "DELETE":
            wanted = _query(request).object_ids or []
            found = await run_in_threadpool(service.delete_objects, node.store, spec.kind, wanted)
            return reply(status_list_reply([status_object(url, OK if oid in found else INVALID_OPERATION,
                                                          "OK" if oid in found else "不存在 / not found", oid)
                                            for oid in wanted]))
        q = _query(request)
        total, rows = await run_in_threadpool(service.list_objects, node.store, spec.kind, q)
        body = (b'{"' + spec.list_key.encode() + b'":{"' + spec.item_key.encode() + b'":['
                + b",".join(r[1].encode() for r in rows) + b"]}}")
        return reply(body, headers={"X-Total-Count": str(total)})

    async def one(request: Request) -> Response:
        node = node_of(request)
        require_identity(request)
        oid = request.path_params["oid"]
        if request.method == "DELETE":
            found = await run_in_threadpool(service.delete_objects, node.store, spec.kind, [oid])
            if not found:
                raise ViidError(404, INVALID_OPERATION, "不存在 / not found", oid)
            return reply(status_reply(request.url.path, OK, "OK", oid))
        body = await run_in_threadpool(service.get_object, node.store, spec.kind, oid)
        if body is None:
            raise ViidError(404, INVALID_OPERATION, "不存在 / not found", oid)
        return reply(b'{"' + spec.item_key.encode() + b'":' + body.encode() + b"}")

    return collection, one


# -- images ---------------------------------------------------------------------------------------------------

async def images_collection(request: Request) -> Response:
    node = node_of(request)
    who = require_identity(request)
    url = request.url.path
    if request.method == "POST":
        data = await read_json(request, node.settings.viid_max_body)
        statuses = await ingest(request, node, who, "image", _items(data, "ImageListObject", "ImageObject"), url)
        return reply(status_list_reply(statuses))
    q = _query(request)
    rows = await run_in_threadpool(service.list_images, node.store, q)
    return reply({"ImageListObject": {"ImageObject": [{"ImageInfo": r} for r in rows]}})


async def image_data(request: Request) -> Response:
    node = node_of(request)
    require_identity(request)
    image_id = request.path_params["iid"]
    found = await run_in_threadpool(service.image_location, node.store, image_id)
    if found is None:
        raise ViidError(404, INVALID_OPERATION, "图片不存在 / no such image", image_id)
    try:
        data = await run_in_threadpool(node.images.get, found[0])
    except KeyError:  # indexed, but its file is gone (its volume is missing, the day expired meanwhile)
        log.warning("viid_image_missing", image_id=image_id, location=found[0])
        raise ViidError(404, INVALID_OPERATION, "图片文件不存在 / image file missing", image_id) from None
    return Response(data, media_type="image/png" if found[1] == "Png" else "image/jpeg")


# -- APEs -----------------------------------------------------------------------------------------------------

def ape_object(dev: Device) -> dict[str, Any]:
    extra = (dev.attributes or {}).get("ape") or {}
    return {"ApeID": dev.device_id, "Name": dev.name, "Model": dev.model or "", "IPAddr": dev.host or "",
            "IPV6Addr": extra.get("IPV6Addr", ""), "Port": dev.port or 0, "Longitude": dev.longitude or 0,
            "Latitude": dev.latitude or 0, "PlaceCode": extra.get("PlaceCode", dev.community_code or ""),
            "Place": extra.get("Place", ""), "OrgCode": extra.get("OrgCode", ""),
            "CapDirection": extra.get("CapDirection", 0), "MonitorDirection": extra.get("MonitorDirection", ""),
            "MonitorAreaDesc": extra.get("MonitorAreaDesc", ""), "IsOnline": "1" if dev.status == ONLINE else "2",
            "OwnerApsID": extra.get("OwnerApsID", ""), "UserId": "", "Password": ""}


def _list_apes(store: Store, ape_id: str | None = None) -> list[Device]:
    from sqlalchemy import select

    with store.session() as s:
        stmt = select(Device).where(Device.protocol == "viid")
        if ape_id:
            stmt = stmt.where(Device.device_id == ape_id)
        return list(s.scalars(stmt.order_by(Device.device_id)))


def _save_ape(devices: DeviceService, obj: dict[str, Any]) -> None:
    def num(v: Any) -> float | None:
        try:
            return float(v) if v not in (None, "") else None
        except (TypeError, ValueError):
            return None

    port = obj.get("Port")
    devices.upsert("viid", str(obj["ApeID"]), name=str(obj.get("Name") or obj["ApeID"]),
                   model=str(obj.get("Model") or "") or None, host=str(obj.get("IPAddr") or "") or None,
                   port=int(port) if ascii_digits(str(port or ""), 5) else None, longitude=num(obj.get("Longitude")),
                   latitude=num(obj.get("Latitude")), type_code="APE",
                   attributes={"ape": {k: v for k, v in obj.items() if k not in ("Password", "UserId")}})
    from anfang.devices.placement import propose

    # an APE not placed yet: its PlaceCode (community code), Place (address) or position proposes a place
    propose(devices.store, "viid", str(obj["ApeID"]), place_code=str(obj.get("PlaceCode") or ""),
            address_text=str(obj.get("Place") or ""), longitude=obj.get("Longitude"), latitude=obj.get("Latitude"))


async def apes_collection(request: Request) -> Response:
    node = node_of(request)
    require_identity(request)
    url = request.url.path
    if request.method in ("POST", "PUT"):
        items = _items(await read_json(request, node.settings.viid_max_body), "APEListObject", "APEObject")
        out = []
        for obj in items:
            ape_id = str(obj.get("ApeID") or "") if isinstance(obj, dict) else ""
            if ids.check_device_id(ape_id):
                out.append(status_object(url, INVALID_JSON_CONTENT, "ApeID 应为20位数字 / must be 20 digits", ape_id))
                continue
            await run_in_threadpool(_save_ape, node.devices, obj)
            node.sessions.places.pop(ape_id, None)
            out.append(status_object(url, OK, "OK", ape_id))
        return reply(status_list_reply(out))
    devs = await run_in_threadpool(_list_apes, node.store, request.query_params.get("ApeID"))
    return reply({"APEListObject": {"APEObject": [ape_object(d) for d in devs]}})


async def ape_one(request: Request) -> Response:
    node = node_of(request)
    require_identity(request)
    ape_id = request.path_params["oid"]
    devs = await run_in_threadpool(_list_apes, node.store, ape_id)
    if not devs:
        raise ViidError(404, INVALID_OPERATION, "不存在 / not found", ape_id)
    if request.method == "DELETE":
        await run_in_threadpool(node.devices.upsert, "viid", ape_id, review="rejected")
        await run_in_threadpool(service.mark_offline, node.devices, node.sessions, ape_id, "deleted")
        return reply(status_reply(request.url.path, OK, "OK", ape_id))
    return reply({"APEObject": ape_object(devs[0])})


# -- subscriptions, notifications, dispositions ---------------------------------------------------------------

async def subscribes(request: Request) -> Response:
    node = node_of(request)
    who = require_identity(request)
    url = request.url.path
    if request.method in ("POST", "PUT"):
        items = _items(await read_json(request, node.settings.viid_max_body), "SubscribeListObject",
                       "SubscribeObject")
        out = [await run_in_threadpool(subscriptions.apply, node.store, obj, who, url) for obj in items]
        return reply(status_list_reply(out))
    rows = await run_in_threadpool(subscriptions.list_bodies, node.store)
    return reply({"SubscribeListObject": {"SubscribeObject": rows}})


async def subscribe_one(request: Request) -> Response:
    node = node_of(request)
    require_identity(request)
    sid = request.path_params["oid"]
    if request.method == "DELETE":
        ok = await run_in_threadpool(subscriptions.cancel, node.store, sid, "DELETE")
        if not ok:
            raise ViidError(404, INVALID_OPERATION, "不存在 / not found", sid)
        return reply(status_reply(request.url.path, OK, "OK", sid))
    rows = [r for r in await run_in_threadpool(subscriptions.list_bodies, node.store) if r.get("SubscribeID") == sid]
    if not rows:
        raise ViidError(404, INVALID_OPERATION, "不存在 / not found", sid)
    return reply({"SubscribeObject": rows[0]})


async def subscribe_notifications(request: Request) -> Response:
    """What a lower 视图库 pushes under our subscription: its objects are ingested like an APE's."""
    node = node_of(request)
    who = require_identity(request)
    url = request.url.path
    data = await read_json(request, node.settings.viid_max_body)
    notes = _items(data, "SubscribeNotificationListObject", "SubscribeNotificationObject")
    out: list[dict[str, Any]] = []
    for note in notes:
        if not isinstance(note, dict):
            out.append(status_object(url, INVALID_JSON_CONTENT, "SubscribeNotificationObject 应为对象"))
            continue
        for spec in service.KINDS.values():
            block = note.get(spec.notif_key)
            if block:
                out += await ingest(request, node, who, spec.kind, _items(block, spec.notif_key, spec.item_key), url)
        if not any(note.get(spec.notif_key) for spec in service.KINDS.values()):
            out.append(status_object(url, OK, "OK", str(note.get("NotificationID") or "")))
    return reply(status_list_reply(out))


async def dispositions_collection(request: Request) -> Response:
    node = node_of(request)
    who = require_identity(request)
    url = request.url.path
    if request.method in ("POST", "PUT"):
        items = _items(await read_json(request, node.settings.viid_max_body), "DispositionListObject",
                       "DispositionObject")
        out = [await run_in_threadpool(dispositions.apply, node.store, node.watchlist, obj, who, url)
               for obj in items]
        return reply(status_list_reply(out))
    rows = await run_in_threadpool(dispositions.list_bodies, node.store)
    return reply({"DispositionListObject": {"DispositionObject": rows}})


async def disposition_one(request: Request) -> Response:
    node = node_of(request)
    require_identity(request)
    did = request.path_params["oid"]
    ok = await run_in_threadpool(dispositions.cancel, node.store, node.watchlist, did)
    if not ok:
        raise ViidError(404, INVALID_OPERATION, "不存在 / not found", did)
    return reply(status_reply(request.url.path, OK, "OK", did))


async def disposition_notifications(request: Request) -> Response:
    """Receiving end (as an upper platform) of a lower one's DispositionNotifications: acknowledged and logged."""
    node = node_of(request)
    require_identity(request)
    data = await read_json(request, node.settings.viid_max_body)
    notes = _items(data, "DispositionNotificationListObject", "DispositionNotificationObject")
    log.info("viid_disposition_notifications", count=len(notes))
    return reply(status_list_reply([status_object(request.url.path, OK, "OK",
                                                  str(n.get("NotificationID", "")) if isinstance(n, dict) else "")
                                    for n in notes]))


# -- the sub-application --------------------------------------------------------------------------------------

def _viid_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ViidError)
    return reply(status_reply(request.url.path, exc.code, exc.text, exc.id), exc.http, exc.headers)


def _crash(request: Request, exc: Exception) -> Response:
    log.error("viid_request_failed", path=request.url.path, error=repr(exc))
    return reply(status_reply(request.url.path, OTHER_ERROR, "内部错误 / internal error"), 500)


def _not_found(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 404)
    return reply(status_reply(request.url.path, INVALID_OPERATION,
                              "不支持的请求 / unsupported request" if code == 405 else "不存在 / not found"), code)


def build(node: ViidNode) -> Starlette:
    routes = [
        Route("/System/Register", register, methods=["POST"]),
        Route("/System/UnRegister", unregister, methods=["POST"]),
        Route("/System/Keepalive", keepalive, methods=["POST"]),
        Route("/System/Time", system_time, methods=["GET"]),
        Route("/APEs", apes_collection, methods=["GET", "POST", "PUT"]),
        Route("/APEs/{oid}", ape_one, methods=["GET", "DELETE"]),
        Route("/Images", images_collection, methods=["GET", "POST"]),
        Route("/Images/{iid}/Data", image_data, methods=["GET"]),
        Route("/Subscribes", subscribes, methods=["GET", "POST", "PUT"]),
        Route("/Subscribes/{oid}", subscribe_one, methods=["GET", "DELETE"]),
        Route("/SubscribeNotifications", subscribe_notifications, methods=["POST"]),
        Route("/Dispositions", dispositions_collection, methods=["GET", "POST", "PUT"]),
        Route("/Dispositions/{oid}", disposition_one, methods=["DELETE"]),
        Route("/DispositionNotifications", disposition_notifications, methods=["POST"]),
    ]
    for spec in service.KINDS.values():
        collection, one = objects_endpoint(spec)
        routes += [Route(f"/{spec.path}", collection, methods=["GET", "POST", "DELETE"]),
                   Route(f"/{spec.path}/{{oid}}", one, methods=["GET", "DELETE"])]
    sub = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found, ViidError: _viid_error,
                                                       Exception: _crash})
    sub.state.viid = node
    return sub


def install(app: FastAPI) -> ViidNode:
    """Mount /VIID on ``app`` and register the GA/T 1400 background services (writer, watchdog, subscription
    delivery, disposition notifications, cascade, retention) in ``app.state.services``."""
    from anfang.viid.cascade import CascadeClient
    from anfang.viid.retention import RetentionService

    node = ViidNode(app.state.settings, app.state.store, app.state.bus)
    app.state.viid = node
    # First in the routing table: /VIID is the hot path (hundreds of posts a second), so it must not be matched
    # against every console and API route before it.
    app.router.routes.insert(0, Mount("/VIID", app=build(node)))
    app.state.services.append(node)
    app.state.services.append(subscriptions.SubscriptionService(node))
    app.state.services.append(dispositions.DispositionNotifier(node))
    if node.settings.viid_upper_url:
        app.state.services.append(CascadeClient(node))
    app.state.services.append(RetentionService(node))
    if node.settings.viid_simulate > 0:
        from anfang.viid.simulator import DemoApes

        app.state.services.append(DemoApes(node, node.settings.viid_simulate))
    from anfang.viid.console import router as console_router

    app.include_router(console_router)
    return node
