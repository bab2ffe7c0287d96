"""The HTTP twin of the MQTT topics: POST /api/iot/<kind>/<device_id> with the same JSON payload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from anfang.core.errors import Forbidden
from anfang.iot.schemas import TOPIC_PREFIX
from anfang.iot.service import IotIngest, Rejected
from anfang.security.roles import Role
from anfang.security.views import CurrentPrincipal

router = APIRouter(prefix="/api/iot", tags=["iot 物联感知"])


def _ingest(request: Request) -> IotIngest:
    return request.app.state.iot


@router.post("/{kind}/{device_id}", status_code=202,
             summary="上报门禁/传感器消息（与 MQTT 同格式） / post a door or sensor message (same as MQTT)")
async def post_message(request: Request, kind: str, device_id: str,
                       payload: dict[str, Any] = Body(...)) -> JSONResponse:
    try:
        event = await _ingest(request).handle(f"{TOPIC_PREFIX}/{kind}/{device_id}", payload,
                                              key=request.headers.get("x-device-key"), check_key=True)
    except Rejected as exc:
        status = {"unknown_device": 404, "bad_topic": 404, "bad_key": 401}.get(exc.reason, 422)
        return JSONResponse({"error": {"code": exc.reason, "message": exc.message, "detail": None}}, status)
    return JSONResponse({"accepted": True, "event_id": event.id, "kind": event.kind.value}, status_code=202)


@router.get("/report", summary="接入统计：已接收、格式错误、未登记设备 / ingest counts and recent problems")
def report(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    if p.role not in (Role.city_admin, Role.county_admin):
        raise Forbidden("仅管理员可查看 / admins only")
    return _ingest(request).report()
