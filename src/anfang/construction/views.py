"""HTTP API under ``/api/construction`` and the console page ``/construction`` (zh-CN first)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from anfang.construction import operations, service
from anfang.core.errors import Forbidden, NotFound
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.store.base import utcnow
from anfang.store.engine import Store

CLOSERS = service.MANAGERS | {Role.property_staff}

api = APIRouter(prefix="/api/construction", tags=["construction 建设运维"])


def _store(request: Request) -> Store:
    return request.app.state.store


def _lang(request: Request) -> str:
    from anfang.web.views import lang_of

    return lang_of(request)


@api.get("/tiers", summary="小区建设类型（基本型/提高型/先进型）及缺项 / community tiers and missing items")
def api_tiers(request: Request, p: CurrentPrincipal, community: str | None = None) -> dict[str, Any]:
    return {"items": service.tier_report(_store(request), p, community, _lang(request))}


@api.get("/specs", summary="前端设备规格核查 / camera specification check")
def api_specs(request: Request, p: CurrentPrincipal, community: str | None = None) -> dict[str, Any]:
    return {"items": service.spec_report(_store(request), p, community)}


@api.get("/online-rates", summary="日在线率 / daily online rate per community, town or county")
def api_online_rates(request: Request, p: CurrentPrincipal, day: date | None = None,
                     level: str = Query("community", pattern="^(community|town|county)$")) -> dict[str, Any]:
    d = datetime.combine(day or (utcnow() - timedelta(days=1)).date(), time(), UTC)
    return {"day": d.date().isoformat(), "level": level,
            "items": service.online_rates(_store(request), p, d, level)}


@api.get("/storage/{community_code}", summary="带宽与存储需求 / bandwidth and storage need")
def api_storage(request: Request, p: CurrentPrincipal, community_code: str) -> dict[str, Any]:
    if not service.tier_report(_store(request), p, community_code):  # not in p's jurisdiction, or no devices
        raise NotFound("小区不存在或无设备 / community not found or without devices")
    need = operations.community_storage_need(_store(request), community_code)
    return {"community_code": community_code, "channels": need.channels,
            "bandwidth_mbps": round(need.bandwidth_mbps, 2), "storage_tb": round(need.storage_tb, 2),
            "days": operations.load_ops_rules().storage_days}


@api.get("/work-orders", summary="运维工单 / work orders")
def api_work_orders(request: Request, p: CurrentPrincipal,
                    state: str | None = Query(None, pattern="^(open|closed)$")) -> dict[str, Any]:
    return {"items": operations.list_work_orders(_store(request), service.device_scope(p), state)}


@api.post("/work-orders/scan", summary="按故障信号派发工单 / raise work orders from fault signals")
def api_scan(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    return {"created": service.scan_faults(_store(request), p)}


class CloseIn(BaseModel):
    cause: str = Field(min_length=1, max_length=256, description="故障原因及处理 / cause of the fault")


class AssignIn(BaseModel):
    assignee: str = Field(min_length=1, max_length=64)
    deadline: datetime | None = None


def _can_close(p: Principal) -> None:
    if p.role not in CLOSERS:
        raise Forbidden("无权处理工单 / not allowed to handle work orders")


@api.post("/work-orders/{order_id}/close", summary="关闭工单（填写原因） / close with cause")
def api_close(request: Request, p: CurrentPrincipal, order_id: int, body: CloseIn) -> dict[str, Any]:
    _can_close(p)
    return operations.close_work_order(_store(request), order_id, p.username, body.cause, service.device_scope(p))


@api.post("/work-orders/{order_id}/assign", summary="指派工单 / assign")
def api_assign(request: Request, p: CurrentPrincipal, order_id: int, body: AssignIn) -> dict[str, Any]:
    if p.role not in service.MANAGERS:
        raise Forbidden("无权指派工单 / not allowed to assign work orders")
    return operations.assign_work_order(_store(request), order_id, body.assignee, service.device_scope(p),
                                        body.deadline)


@api.get("/circular.xlsx", summary="月度督导通报（XLSX） / monthly supervision circular")
def api_circular(request: Request, p: CurrentPrincipal, year: int | None = Query(None, ge=2021, le=2100),
                 month: int | None = Query(None, ge=1, le=12)) -> Response:
    if p.role not in (Role.city_admin, Role.county_admin):
        raise Forbidden("仅市、县级管理员可导出通报 / city and county admins only")
    from anfang.construction import supervision

    today = utcnow()
    year, month = year or today.year, month or today.month
    custom = Path(request.app.state.settings.data_dir) / "construction" / f"plan_{year}.csv"
    plan = supervision.load_plan(custom if custom.is_file() else supervision.EXAMPLE_PLAN)
    notes = supervision.plan_warnings(plan)
    if not custom.is_file():
        notes.insert(0, f"未找到计划表 {custom}，使用示例任务分配（非正式附件）")
    day = min(today, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) - timedelta(seconds=1))
    progress = supervision.measure_progress(_store(request), day)
    data = supervision.circular_xlsx(supervision.rank_counties(plan, progress, month), year, month, notes)
    name = quote(f"{year}年{month}月建设进展通报.xlsx")
    return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


def _page_data(store: Store, p: Principal, lang: str) -> dict[str, Any]:
    tiers = service.tier_report(store, p, lang=lang)
    specs = {r["community_code"]: r for r in service.spec_report(store, p)}
    yesterday = datetime.combine((utcnow() - timedelta(days=1)).date(), time(), UTC)
    rates = {r["code"]: r["rate"] for r in service.online_rates(store, p, yesterday)}
    for row in tiers:
        spec = specs.get(row["community_code"], {})
        row["cameras"], row["compliant"] = spec.get("cameras", 0), spec.get("compliant", 0)
        row["online_rate"] = rates.get(row["community_code"])
    orders = operations.list_work_orders(store, service.device_scope(p), None, limit=200)
    return {"tiers": tiers, "orders": orders, "day": yesterday.date().isoformat(),
            "open_orders": sum(1 for o in orders if o["state"] == "open"),
            "overdue": sum(1 for o in orders if o["overdue"])}


def mount(app: FastAPI) -> None:
    """Register the API and the console page."""
    from anfang.web.views import ConsoleRoute, check_csrf, render

    pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    @pages.get("/construction")
    async def construction_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
        data = await run_in_threadpool(_page_data, request.app.state.store, p, _lang(request))
        return await run_in_threadpool(render, request, "construction.html", p, nav="construction",
                                       can_scan=p.role in service.MANAGERS, can_close=p.role in CLOSERS, **data)

    @pages.post("/construction/scan")
    def scan_page(request: Request, p: CurrentPrincipal, csrf_token: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        service.scan_faults(request.app.state.store, p)
        return RedirectResponse("/construction#orders", 303)

    @pages.post("/construction/work-orders/{order_id}/close")
    def close_page(request: Request, p: CurrentPrincipal, order_id: int, csrf_token: str = Form(""),
                   cause: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        _can_close(p)
        operations.close_work_order(request.app.state.store, order_id, p.username, cause, service.device_scope(p))
        return RedirectResponse("/construction#orders", 303)

    from anfang.construction.jobs import WorkOrderJob

    app.state.services.append(WorkOrderJob(app.state.store))  # hourly fault scan → work orders
    app.include_router(api)
    app.include_router(pages)
