"""Console page for camera siting: GET /siting shows the last plan (the demo village until one is computed),
POST /siting plans an uploaded OSM / GeoJSON file (or the demo village) with a budget. The map is inline SVG."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from anfang.core.errors import Forbidden, ValidationError
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.siting.heuristic import BudgetTooSmall
from anfang.siting.network import POI_KINDS, SitingInputError, read_network
from anfang.siting.plan import Plan, solve
from anfang.siting.problem import SitingParams, build_problem
from anfang.siting.svgmap import plan_svg
from anfang.web.views import ConsoleRoute, check_csrf, lang_of, render

pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
MAX_UPLOAD = 50 * 1024 * 1024  # an OSM XML extract of a town is a few MB
TIME_LIMIT = 20.0  # seconds a console request may spend solving
DEMO_BUDGET = 12


def _check_role(p: Principal) -> None:
    if p.role == Role.resident:
        raise Forbidden("无权访问点位规划 / siting is for officers and administrators")


def _plans(request: Request) -> dict[Any, Plan]:
    """The last plan per user, kept in memory (a planning scratchpad; nothing here is personal data)."""
    state = request.app.state
    if not hasattr(state, "siting_plans"):
        state.siting_plans = {}
    return state.siting_plans


def _demo_plan() -> Plan:
    from anfang.siting.demo import demo_network

    return solve(build_problem(demo_network(), SitingParams(radius=120)), budget=DEMO_BUDGET, method="heuristic",
                 time_limit=5.0)


def _page(request: Request, p: Principal, plan: Plan, source: str, status: int = 200) -> HTMLResponse:
    zh = lang_of(request).startswith("zh")
    kinds = {k: (v[0] if zh else v[1]) for k, v in POI_KINDS.items()}
    return render(request, "siting.html", p, nav="siting", status=status, plan=plan, svg=plan_svg(plan),
                  source=source, kinds=kinds, zh=zh, gap_text=plan.proof.text("zh" if zh else "en"))


@pages.get("/siting")
def siting_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    _check_role(p)
    plans = _plans(request)
    if p.user_id not in plans:
        plans[p.user_id] = (_demo_plan(), "演示村 demo village")
    plan, source = plans[p.user_id]
    return _page(request, p, plan, source)


def _plan_upload(data: bytes | None, filename: str, budget: int, radius: float, method: str) -> Plan:
    if data:
        suffix = Path(filename or "upload.osm").suffix.lower() or ".osm"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            net = read_network(path)
    else:
        from anfang.siting.demo import demo_network

        net = demo_network()
    return solve(build_problem(net, SitingParams(radius=radius)), budget=budget, method=method,
                 time_limit=TIME_LIMIT)


@pages.post("/siting")
async def siting_submit(request: Request, p: CurrentPrincipal, budget: int = Form(...), radius: float = Form(150.0),
                        method: str = Form("heuristic"), csrf_token: str = Form(""),
                        osm: UploadFile | None = File(None)) -> HTMLResponse:
    check_csrf(request, csrf_token)
    _check_role(p)
    if not 0 <= budget <= 5000 or not 10 <= radius <= 2000:
        raise ValidationError("预算须在 0–5000，半径须在 10–2000 米 / budget 0–5000, radius 10–2000 m")
    if method not in ("greedy", "heuristic", "exact"):
        method = "heuristic"
    data = await osm.read(MAX_UPLOAD + 1) if osm is not None and osm.filename else None
    if data is not None and len(data) > MAX_UPLOAD:
        raise ValidationError("文件过大 / file too large (50 MB max)")
    try:
        plan = await run_in_threadpool(_plan_upload, data, osm.filename if osm else "", budget, radius, method)
    except (SitingInputError, BudgetTooSmall) as exc:
        raise ValidationError(str(exc)) from None
    source = osm.filename if data and osm is not None else "演示村 demo village"
    _plans(request)[p.user_id] = (plan, source)
    return _page(request, p, plan, source or "upload")
