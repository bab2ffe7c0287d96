"""Console page for camera siting: GET /siting shows the last plan (the demo village until one is computed),
POST /siting plans an uploaded OSM / GeoJSON road file (or the demo village) with a budget, optionally with the
planner's demand points and own candidate sites (CSV or GeoJSON) and coverage along the roads; the last plan
downloads as GeoJSON or XLSX. The map is inline SVG. The limits are the CLI's (SitingParams.validate)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from anfang.core.errors import Forbidden, ValidationError, pick
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal
from anfang.siting.heuristic import BudgetTooSmall
from anfang.siting.network import POI_KINDS, SitingInputError, read_network, read_points, read_sites
from anfang.siting.plan import Plan, solve, to_geojson, write_xlsx
from anfang.siting.problem import MAX_RADIUS, SitingParams, build_problem
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


SOLVERS = {"greedy": ("贪心", "greedy"), "greedy+swap": ("贪心 + 交换", "greedy + swap"),
           "lagrangian+swap": ("贪心 + 交换（拉格朗日界）", "greedy + swap (Lagrangian bound)"),
           "highs": ("精确（HiGHS）", "exact (HiGHS)"), "heuristic": ("启发式", "heuristic")}


def solver_label(solver: str, zh: bool) -> str:
    """The solver's name in the page's language (a fallback remark in parentheses is kept as it is in English)."""
    head, _, rest = solver.partition(" (")
    label = SOLVERS.get(head, (head, head))[0 if zh else 1]
    if rest:
        label += "（未找到更优方案）" if zh else f" ({rest}"
    return label


def _page(request: Request, p: Principal, plan: Plan, source: str, status: int = 200) -> HTMLResponse:
    lang = lang_of(request)
    zh = lang.startswith("zh")
    kinds = {k: (v[0] if zh else v[1]) for k, v in POI_KINDS.items()}
    return render(request, "siting.html", p, nav="siting", status=status, plan=plan, svg=plan_svg(plan, lang),
                  solver=solver_label(plan.solver, zh),
                  source=pick(source, lang), notes=[pick(n, lang) for n in plan.notes], kinds=kinds, zh=zh,
                  gap_text=plan.proof.text("zh" if zh else "en"),
                  max_radius=int(MAX_RADIUS))


@pages.get("/siting")
def siting_page(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    _check_role(p)
    plans = _plans(request)
    if p.user_id not in plans:
        plans[p.user_id] = (_demo_plan(), "演示村 / demo village")
    plan, source = plans[p.user_id]
    return _page(request, p, plan, source)


def _upload_path(tmp: str, name: str, data: bytes, default: str) -> Path:
    suffix = Path(name or default).suffix.lower() or Path(default).suffix
    path = Path(tmp) / f"{Path(default).stem}{suffix}"
    path.write_bytes(data)
    return path


def _plan_upload(data: bytes | None, filename: str, budget: int, radius: float, method: str,
                 points: tuple[str, bytes] | None = None, sites: tuple[str, bytes] | None = None,
                 along_roads: bool = False) -> Plan:
    with tempfile.TemporaryDirectory() as tmp:
        if data:
            net = read_network(_upload_path(tmp, filename, data, "upload.osm"))
        else:
            from anfang.siting.demo import demo_network

            net = demo_network()
        extra, cams = read_points(_upload_path(tmp, *points, "points.csv"), net.projection) if points else ([], [])
        own = read_sites(_upload_path(tmp, *sites, "sites.csv"), net.projection) if sites else None
    params = SitingParams(radius=radius, along_roads=along_roads)
    return solve(build_problem(net, params, extra_pois=extra, existing=cams, sites=own), budget=budget,
                 method=method, time_limit=TIME_LIMIT)


async def _read(upload: UploadFile | None) -> tuple[str, bytes] | None:
    if upload is None or not upload.filename:
        return None
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise ValidationError("文件过大 / file too large (50 MB max)")
    return upload.filename, data


@pages.post("/siting")
async def siting_submit(request: Request, p: CurrentPrincipal, budget: int = Form(...), radius: float = Form(150.0),
                        method: str = Form("heuristic"), csrf_token: str = Form(""),
                        along_roads: str = Form(""), osm: UploadFile | None = File(None),
                        points: UploadFile | None = File(None), sites: UploadFile | None = File(None)
                        ) -> HTMLResponse:
    check_csrf(request, csrf_token)
    _check_role(p)
    if not 0 <= budget <= 5000:
        raise ValidationError("预算须在 0–5000 / budget 0–5000")
    if method not in ("greedy", "heuristic", "exact"):
        method = "heuristic"
    road, pts, own = await _read(osm), await _read(points), await _read(sites)
    try:
        SitingParams(radius=radius).validate()  # the CLI's limits, before any file is read
        plan = await run_in_threadpool(_plan_upload, road[1] if road else None, road[0] if road else "", budget,
                                       radius, method, pts, own, along_roads in ("1", "on", "true", "yes"))
    except (SitingInputError, BudgetTooSmall) as exc:
        raise ValidationError(str(exc)) from None
    source = road[0] if road else "演示村 / demo village"
    if own:
        source += (" · 自有点位：" if lang_of(request).startswith("zh") else " · own sites: ") + own[0]
    _plans(request)[p.user_id] = (plan, source)
    return _page(request, p, plan, source)


def _last_plan(request: Request, p: Principal) -> Plan:
    _check_role(p)
    plans = _plans(request)
    if p.user_id not in plans:
        plans[p.user_id] = (_demo_plan(), "演示村 / demo village")
    return plans[p.user_id][0]


@pages.get("/siting/plan.geojson")
def siting_geojson(request: Request, p: CurrentPrincipal) -> Response:
    """The last plan as GeoJSON (the CLI's --out): sites, points, blind road pieces, existing cameras."""
    import json

    body = json.dumps(to_geojson(_last_plan(request, p)), ensure_ascii=False).encode("utf-8")
    return Response(body, media_type="application/geo+json",
                    headers={"Content-Disposition": 'attachment; filename="siting-plan.geojson"'})


@pages.get("/siting/plan.xlsx")
def siting_xlsx(request: Request, p: CurrentPrincipal) -> Response:
    """The last plan as XLSX (the CLI's --xlsx): summary, one row per site, blind spots."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.xlsx"
        write_xlsx(_last_plan(request, p), path)
        body = path.read_bytes()
    return Response(body, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="siting-plan.xlsx"'})
