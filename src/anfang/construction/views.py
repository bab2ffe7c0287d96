"""HTTP API under ``/api/construction`` and the console page ``/construction`` (zh-CN first)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, Field

from anfang.construction import operations, projects, service
from anfang.core import timefmt
from anfang.core.errors import Forbidden, NotFound, ValidationError
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


def _plan_and_day(request: Request, year: int | None, month: int | None) \
        -> tuple[int, int, list[Any], list[str], datetime]:
    from anfang.construction import supervision

    today = utcnow()
    year, month = year or today.year, month or today.month
    plan, notes = supervision.plan_for(request.app.state.settings.data_dir, year)
    day = min(today, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC) - timedelta(seconds=1))
    return year, month, plan, notes, day


def _progress(store: Store, year: int, month: int, day: datetime) -> dict[str, Any]:
    """The counties' progress for the circular of ``year``-``month`` (the same for every admin: the circular ranks
    every county), computed once a minute (``minutely.py``)."""
    from anfang.construction import minutely, supervision

    value, _ = minutely.cached(store, ("circular_progress", year, month), lambda: supervision.measure_progress(
        store, day))
    return value


def _circular_admin(p: Principal) -> None:
    if p.role not in (Role.city_admin, Role.county_admin):
        raise Forbidden("仅市、县级管理员可导出通报 / city and county admins only")


@api.get("/circular.xlsx", summary="月度督导通报（XLSX） / monthly supervision circular")
def api_circular(request: Request, p: CurrentPrincipal, year: int | None = Query(None, ge=2021, le=2100),
                 month: int | None = Query(None, ge=1, le=12)) -> Response:
    _circular_admin(p)
    from anfang.construction import supervision

    year, month, plan, notes, day = _plan_and_day(request, year, month)
    progress = _progress(_store(request), year, month, day)
    data = supervision.circular_xlsx(supervision.rank_counties(plan, progress, month), year, month, notes)
    from anfang.security.watermark import export_xlsx_bytes

    data = export_xlsx_bytes(_store(request), p, data, "circular", f"{year}-{month}-circular.xlsx")  # 导出水印
    name = quote(f"{year}年{month}月建设进展通报.xlsx")
    return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


@api.get("/circular.pdf", summary="月度督导通报（PDF，含图表） / monthly circular as PDF with charts")
def api_circular_pdf(request: Request, p: CurrentPrincipal, year: int | None = Query(None, ge=2021, le=2100),
                     month: int | None = Query(None, ge=1, le=12)) -> Response:
    _circular_admin(p)
    from anfang.construction import report_pdf, rollout, supervision

    year, month, plan, notes, day = _plan_and_day(request, year, month)
    progress = _progress(_store(request), year, month, day)
    early = rollout.early_target(_store(request)) if year == rollout.load_rollout_rules().early_by.year else None
    data = report_pdf.circular_pdf(supervision.rank_counties(plan, progress, month), year, month, notes,
                                   supervision.load_supervision_rules().lagging_share_of_pro_rata, early)
    name = quote(f"{year}年{month}月建设进展通报.pdf")
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


# ---- projects (同步设计、同步施工、同步验收) ----------------------------------------------------------------------
class ProjectIn(BaseModel):
    community_code: str = Field(min_length=12, max_length=12)
    name: str = Field(min_length=1, max_length=128)
    kind: str = "new"
    target_tier: str = "basic"
    design_items: list[tuple[str, str]] = Field(default_factory=list, max_length=200,
                                                description="[(subsystem, place), ...]")
    not_applicable: list[str] = Field(default_factory=list, max_length=50)
    budget: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)


class DesignIn(BaseModel):
    design_items: list[tuple[str, str]] = Field(max_length=200)
    not_applicable: list[str] | None = Field(None, max_length=50)
    target_tier: str | None = None


class ActionIn(BaseModel):
    comment: str = Field("", max_length=2000)


class FundingIn(BaseModel):
    kind: str = Field(pattern="^(fund|spend)$")
    source: str | None = None
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    on: date | None = None
    note: str = Field("", max_length=256)


@api.get("/projects", summary="建设项目 / projects")
def api_projects(request: Request, p: CurrentPrincipal, state: str | None = None) -> dict[str, Any]:
    return {"items": projects.list_projects(_store(request), p, state, _lang(request))}


@api.post("/projects", status_code=201, summary="新建项目 / create a project")
def api_project_create(request: Request, p: CurrentPrincipal, body: ProjectIn) -> dict[str, Any]:
    return projects.create_project(_store(request), p, body.community_code, body.name, body.kind, body.target_tier,
                                   body.design_items, body.not_applicable, body.budget, _lang(request))


@api.get("/projects/{project_id}", summary="项目详情（方案核查、审核记录、资金） / project detail")
def api_project(request: Request, p: CurrentPrincipal, project_id: int) -> dict[str, Any]:
    return projects.get_project(_store(request), p, project_id, _lang(request))


@api.put("/projects/{project_id}/design", summary="修改设计方案 / revise the design")
def api_project_design(request: Request, p: CurrentPrincipal, project_id: int, body: DesignIn) -> dict[str, Any]:
    return projects.revise_design(_store(request), p, project_id, body.design_items, body.not_applicable,
                                  body.target_tier, _lang(request))


@api.post("/projects/{project_id}/actions/{action}", summary="流转：报审、退回、通过、开工、完工、申请验收、验收")
def api_project_action(request: Request, p: CurrentPrincipal, project_id: int, action: str,
                       body: ActionIn | None = None) -> dict[str, Any]:
    return projects.act(_store(request), p, project_id, action, body.comment if body else "", lang=_lang(request))


@api.post("/projects/{project_id}/funding", status_code=201, summary="登记资金来源或支出 / record funding or spend")
def api_project_funding(request: Request, p: CurrentPrincipal, project_id: int, body: FundingIn) -> dict[str, Any]:
    return projects.add_funding(_store(request), p, project_id, body.kind, body.source, body.amount, body.on,
                                body.note, _lang(request))


# ---- acceptance (验收) ---------------------------------------------------------------------------------------
@api.get("/acceptance/{community_code}", summary="稳定运行证明（一个月） / stability evidence for acceptance")
def api_acceptance(request: Request, p: CurrentPrincipal, community_code: str) -> dict[str, Any]:
    from anfang.construction.acceptance import stability

    if not service.tier_report(_store(request), p, community_code):
        raise NotFound("小区不存在或无设备 / community not found or without devices")
    return stability(_store(request), community_code).to_dict()


@api.get("/acceptance/{community_code}/report.pdf", summary="验收报告（PDF） / acceptance report")
def api_acceptance_pdf(request: Request, p: CurrentPrincipal, community_code: str) -> Response:
    from anfang.construction.report_pdf import acceptance_pdf

    facts = service.acceptance_facts(_store(request), p, community_code, lang="zh")
    name = quote(f"{facts['name'].split('市')[-1]}验收报告.pdf")
    return Response(acceptance_pdf(facts), media_type="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


# ---- 居安工程 rollout ----------------------------------------------------------------------------------------
def rollout_data(store: Store, p: Principal, level: str, year: int) -> dict[str, Any]:
    from sqlalchemy import select

    from anfang.construction import rollout
    from anfang.devices.models import Device
    from anfang.registry.models import Region

    if p.role in (Role.resident, Role.anonymous):
        raise Forbidden("无权查看 / not allowed")
    dscope = projects.community_condition(p, Device.community_code)
    allowed = None
    with store.session() as s:
        names = dict(s.execute(select(Region.code, Region.name)).all())
        if p.role != Role.city_admin:
            allowed = set(s.scalars(select(Region.code).where(Region.kind == "village",
                                                              projects.community_condition(p, Region.code))))
    # the city's village tallies, computed once a minute; a scope here is a set of villages (communities)
    tallies, tallies_at = rollout.cached_village_tallies(store, allowed.__contains__ if allowed is not None else None)
    target = rollout.house_share_target(year)
    rows = rollout.roll_up(tallies, level, names)
    rules = rollout.load_rollout_rules()
    return {"level": level, "year": year, "house_target": target,
            "places": [{"code": k, "label": v["zh"], "en": v["en"]} for k, v in rules.places.items()],
            "items": [t.to_dict(target) for t in rows], "early": rollout.early_target(store, dscope),
            "year_target": rules.year_targets.get(year), "source": rules.source,
            "tallies_at": tallies_at.isoformat()}


@api.get("/rollout", summary="居安工程进度（县/乡镇/村） / Ju'an rollout by county, town or village")
def api_rollout(request: Request, p: CurrentPrincipal,
                level: str = Query("county", pattern="^(county|town|village)$"),
                year: int | None = Query(None, ge=2021, le=2100)) -> dict[str, Any]:
    return rollout_data(_store(request), p, level, year or utcnow().year)


# ---- 六无 ----------------------------------------------------------------------------------------------------
LIUWU_VIEWERS = frozenset({Role.city_admin, Role.county_admin, Role.police, Role.grid_worker})
LIUWU_WRITERS = frozenset({Role.city_admin, Role.county_admin, Role.police})


def liuwu_data(store: Store, p: Principal, community: str | None = None) -> dict[str, Any]:
    from anfang.construction import liuwu
    from anfang.registry.models import Region

    if p.role not in LIUWU_VIEWERS:
        raise Forbidden("无权查看六无小区 / not allowed")
    scope = projects.community_condition(p, Region.code)
    if community:
        scope = scope & (Region.code == community)
    return liuwu.report(store, scope, utcnow().date())


COLOURS = ("#c0392b", "#d35400", "#8e44ad", "#2c3e50", "#7f8c8d", "#2471a3")


def trend_svg(data: dict[str, Any], lang: str = "zh") -> Markup:
    """Stacked monthly bars of the 六无 incidents per category (inline SVG, no script)."""
    from xml.sax.saxutils import escape

    cats = data["categories"]
    months = data["trend"]
    top = max([sum(m["counts"].values()) for m in months] + [1])
    w, h, left, bottom = 640, 180, 30, 34
    bw = (w - left - 10) / max(len(months), 1)
    out = [f'<svg class="chart" viewBox="0 0 {w} {h + 16}" width="100%" role="img" data-testid="liuwu-trend">']
    for i, m in enumerate(months):
        x = left + i * bw
        y = h - bottom
        for j, c in enumerate(cats):
            n = m["counts"].get(c["code"], 0)
            if n:
                bh = n / top * (h - bottom - 10)
                y -= bh
                out.append(f'<rect x="{x + 3:.1f}" y="{y:.1f}" width="{bw - 6:.1f}" height="{bh:.1f}" '
                           f'fill="{COLOURS[j % len(COLOURS)]}"><title>{escape(m["month"])} {escape(c["zh"])} {n}'
                           f'</title></rect>')
        total = sum(m["counts"].values())
        out.append(f'<text x="{x + bw / 2:.1f}" y="{h - bottom + 13}" text-anchor="middle" font-size="10">'
                   f'{escape(m["month"][2:])}</text>')
        if total:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{y - 2:.1f}" text-anchor="middle" font-size="10">{total}</text>')
    for j, c in enumerate(cats):
        x = left + j * 100
        name = escape(c["zh"] if lang.startswith("zh") else c["en"])
        out.append(f'<rect x="{x}" y="{h - 8}" width="10" height="10" fill="{COLOURS[j % len(COLOURS)]}"/>'
                   f'<text x="{x + 14}" y="{h + 1}" font-size="11">{name}</text>')
    out.append("</svg>")
    return Markup("".join(out))


class IncidentIn(BaseModel):
    community_code: str = Field(min_length=12, max_length=12)
    category: str
    occurred_on: date
    count: int = Field(1, ge=1, le=10000)
    note: str = Field("", max_length=256)


def _liuwu_write(store: Store, p: Principal, body: IncidentIn) -> int:
    from sqlalchemy import select

    from anfang.construction import liuwu
    from anfang.registry.models import Region

    if p.role not in LIUWU_WRITERS:
        raise Forbidden("无权登记 / not allowed to record incidents")
    with store.session() as s:
        if s.scalar(select(Region.code).where(Region.code == body.community_code,
                                              projects.community_condition(p, Region.code))) is None:
            raise NotFound("小区不在辖区内 / community not in your jurisdiction")
    return liuwu.record(store, body.community_code, body.category, body.occurred_on, body.count, body.note,
                        p.username)


@api.get("/liuwu", summary="六无小区评定及趋势 / 六无 standing and monthly trend")
def api_liuwu(request: Request, p: CurrentPrincipal, community: str | None = None) -> dict[str, Any]:
    return liuwu_data(_store(request), p, community)


@api.post("/liuwu", status_code=201, summary="登记案事件 / record an incident")
def api_liuwu_add(request: Request, p: CurrentPrincipal, body: IncidentIn) -> dict[str, Any]:
    return {"id": _liuwu_write(_store(request), p, body)}


MAX_IMPORT = 10 * 1024 * 1024


async def _liuwu_import(request: Request, p: Principal, data: bytes, filename: str) -> int:
    from anfang.construction import liuwu
    from anfang.registry.models import Region

    if p.role not in LIUWU_WRITERS:
        raise Forbidden("无权导入 / not allowed to import incidents")
    if len(data) > MAX_IMPORT:
        raise ValidationError("文件超过 10 MB / file larger than 10 MB")
    return await run_in_threadpool(liuwu.import_table, _store(request), data, filename, p.username,
                                   projects.community_condition(p, Region.code))


@api.post("/liuwu/import", summary="导入案事件表（CSV/XLSX：小区代码, 类别, 日期, 起数, 说明）",
          openapi_extra={"requestBody": {"required": True, "content": {
              "text/csv": {"schema": {"type": "string"}},
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                  "schema": {"type": "string", "format": "binary"}}}}})
async def api_liuwu_import(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    """The table is the request body: ``Content-Type: text/csv`` (UTF-8 or GB18030) or the XLSX media type."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_IMPORT:
            raise ValidationError("文件超过 10 MB / file larger than 10 MB")
    xlsx = "spreadsheetml" in request.headers.get("content-type", "")
    return {"imported": await _liuwu_import(request, p, bytes(data), "upload.xlsx" if xlsx else "upload.csv")}


# ---- the city dashboard (大屏) -------------------------------------------------------------------------------
def dashboard_data(request: Request, p: Principal) -> dict[str, Any]:
    from anfang.construction import dashboard

    _, _, plan, notes, _ = _plan_and_day(request, None, None)
    data = dashboard.figures(_store(request), p, plan)
    data["notes"] = notes
    return data


@api.get("/dashboard", summary="大屏数据 / city dashboard figures")
def api_dashboard(request: Request, p: CurrentPrincipal) -> dict[str, Any]:
    data = dashboard_data(request, p)
    data.pop("map_svg")
    return data


def _overview(store: Store, p: Principal, lang: str, yesterday: datetime) -> list[dict[str, Any]]:
    """Per community in ``p``'s jurisdiction: its tier, cameras and compliant ones, and yesterday's online rate."""
    tiers = service.tier_report(store, p, lang=lang)
    specs = service.spec_counts(store, p)  # the counts only, aggregated by the database
    rates = {r["code"]: r["rate"] for r in service.online_rates(store, p, yesterday)}
    for row in tiers:
        row["cameras"], row["compliant"] = specs.get(row["community_code"], (0, 0))
        row["online_rate"] = rates.get(row["community_code"])
    return tiers


def _page_data(store: Store, p: Principal, lang: str) -> dict[str, Any]:
    from anfang.construction import minutely

    yesterday = datetime.combine((utcnow() - timedelta(days=1)).date(), time(), UTC)
    # the overview (358 communities at the city) is computed once a minute per scope; the work orders are live
    tiers, at = minutely.cached(store, ("construction_overview", minutely.scope_key(p), lang, yesterday),
                                lambda: _overview(store, p, lang, yesterday))
    orders = operations.list_work_orders(store, service.device_scope(p), None, limit=200)
    return {"tiers": tiers, "overview_at": timefmt.fmt(at), "orders": orders, "day": yesterday.date().isoformat(),
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

    @pages.get("/construction/projects")
    async def projects_page(request: Request, p: CurrentPrincipal, state: str | None = None) -> HTMLResponse:
        from anfang.construction.lifecycle import load_lifecycle
        from anfang.construction.tiers import load_rules

        items = await run_in_threadpool(projects.list_projects, request.app.state.store, p, state, _lang(request))
        return await run_in_threadpool(render, request, "construction_projects.html", p, nav="construction",
                                       items=items, lc=load_lifecycle(), tiers=load_rules().tiers, state=state,
                                       can_create=p.role in (Role.city_admin, Role.county_admin, Role.property_staff))

    @pages.post("/construction/projects")
    def project_create_page(request: Request, p: CurrentPrincipal, csrf_token: str = Form(""),
                            community_code: str = Form(""), name: str = Form(""), kind: str = Form("new"),
                            target_tier: str = Form("basic"), budget: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        pr = projects.create_project(request.app.state.store, p, community_code.strip(), name, kind, target_tier,
                                     (), (), budget.strip() or None)
        return RedirectResponse(f"/construction/projects/{pr['id']}", 303)

    @pages.get("/construction/projects/{project_id}")
    async def project_page(request: Request, p: CurrentPrincipal, project_id: int) -> HTMLResponse:
        from anfang.construction.lifecycle import load_lifecycle
        from anfang.construction.tiers import load_rules

        pr = await run_in_threadpool(projects.get_project, request.app.state.store, p, project_id, _lang(request))
        rules = load_rules()
        order = {code: n for n, code in enumerate(rules.places)}
        choices = sorted({i for t in rules.tiers for i in t.items}, key=lambda i: (order.get(i.place, 99), i.subsystem))
        chosen = {f"{d['subsystem']}|{d['place']}" for d in pr["design_items"]}
        return await run_in_threadpool(
            render, request, "construction_project.html", p, nav="construction", pr=pr, lc=load_lifecycle(),
            rules=rules, tiers=rules.tiers, choices=[{"value": f"{i.subsystem}|{i.place}", "label": rules.label(
                i, _lang(request)), "on": f"{i.subsystem}|{i.place}" in chosen} for i in choices],
            can_edit=pr["state"] in ("design", "returned")
            and p.role in (Role.city_admin, Role.county_admin, Role.property_staff),
            can_fund=p.role in (Role.city_admin, Role.county_admin, Role.property_staff))

    @pages.post("/construction/projects/{project_id}/design")
    async def project_design_page(request: Request, p: CurrentPrincipal, project_id: int) -> RedirectResponse:
        form = await request.form()
        check_csrf(request, str(form.get("csrf_token", "")))
        items = [str(v).split("|", 1) for v in form.getlist("item") if "|" in str(v)]
        na = [str(v) for v in form.getlist("not_applicable")]
        await run_in_threadpool(projects.revise_design, request.app.state.store, p, project_id, items, na,
                                str(form.get("target_tier") or "") or None)
        return RedirectResponse(f"/construction/projects/{project_id}#design", 303)

    @pages.post("/construction/projects/{project_id}/act")
    def project_act_page(request: Request, p: CurrentPrincipal, project_id: int, csrf_token: str = Form(""),
                         action: str = Form(""), comment: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        projects.act(request.app.state.store, p, project_id, action, comment)
        return RedirectResponse(f"/construction/projects/{project_id}#steps", 303)

    @pages.post("/construction/projects/{project_id}/funding")
    def project_funding_page(request: Request, p: CurrentPrincipal, project_id: int, csrf_token: str = Form(""),
                             kind: str = Form("fund"), source: str = Form(""), amount: str = Form(""),
                             on: str = Form(""), note: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        try:
            day = date.fromisoformat(on) if on else None
        except ValueError as exc:
            raise ValidationError("日期格式应为 YYYY-MM-DD / bad date") from exc
        projects.add_funding(request.app.state.store, p, project_id, kind, source or None, amount, day, note)
        return RedirectResponse(f"/construction/projects/{project_id}#funding", 303)

    @pages.get("/construction/rollout")
    async def rollout_page(request: Request, p: CurrentPrincipal,
                           level: str = Query("county", pattern="^(county|town|village)$")) -> HTMLResponse:
        data = await run_in_threadpool(rollout_data, request.app.state.store, p, level, utcnow().year)
        return await run_in_threadpool(render, request, "construction_rollout.html", p, nav="construction", **data)

    @pages.get("/construction/liuwu")
    async def liuwu_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
        data = await run_in_threadpool(liuwu_data, request.app.state.store, p)
        return await run_in_threadpool(render, request, "construction_liuwu.html", p, nav="construction",
                                       can_write=p.role in LIUWU_WRITERS, today=utcnow().date().isoformat(),
                                       trend_svg=trend_svg(data, _lang(request)), **data)

    @pages.post("/construction/liuwu")
    def liuwu_add_page(request: Request, p: CurrentPrincipal, csrf_token: str = Form(""),
                       community_code: str = Form(""), category: str = Form(""), occurred_on: date = Form(...),
                       count: int = Form(1), note: str = Form("")) -> RedirectResponse:
        check_csrf(request, csrf_token)
        _liuwu_write(request.app.state.store, p, IncidentIn(community_code=community_code.strip(),
                                                            category=category, occurred_on=occurred_on,
                                                            count=count, note=note))
        return RedirectResponse("/construction/liuwu", 303)

    @pages.post("/construction/liuwu/import")
    async def liuwu_import_page(request: Request, p: CurrentPrincipal, csrf_token: str = Form(""),
                                file: UploadFile = File(...)) -> RedirectResponse:
        check_csrf(request, csrf_token)
        data = await file.read(MAX_IMPORT + 1)
        await _liuwu_import(request, p, data, file.filename or "upload.csv")
        return RedirectResponse("/construction/liuwu", 303)

    @pages.get("/construction/dashboard")
    async def dashboard_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
        data = await run_in_threadpool(dashboard_data, request, p)
        return await run_in_threadpool(render, request, "construction_dashboard.html", p, nav="construction",
                                       d=data, map_svg=Markup(data["map_svg"]))

    from anfang.construction.jobs import WorkOrderJob

    app.state.services.append(WorkOrderJob(app.state.store))  # hourly fault scan → work orders
    app.include_router(api)
    app.include_router(pages)
