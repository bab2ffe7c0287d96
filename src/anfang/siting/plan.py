"""Plans: solve a siting problem with the chosen model and solver, and describe the result (sites, what each
covers, blind spots, the proven gap); export to GeoJSON and XLSX. No web framework, no database."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anfang.siting.heuristic import (
    BudgetTooSmall,
    covered_weight,
    drop_redundant,
    lagrangian_bound,
    lazy_greedy,
    local_search,
    perturb_search,
)
from anfang.siting.network import POI_KINDS, SitingInputError
from anfang.siting.problem import Instance, Problem, check_weights, problem_instance

Progress = Callable[[str], None]
METHODS = ("greedy", "heuristic", "exact")
MODELS = ("mclp", "lscp")
ILS_SECONDS = 3.0  # at most this long in the iterated swap search of the heuristic


@dataclass
class PlanSite:
    id: str
    kind: str
    x: float
    y: float
    lon: float
    lat: float
    heading: float | None
    pinned: bool
    covered_weight: float  # weight of demand this camera sees (shared or not)
    sole_weight: float  # weight seen by no other camera of the plan (what removing it would lose)
    road_m: float  # metres of road it sees
    pois: list[str]  # POI ids it sees


@dataclass
class PlanPoi:
    id: str
    kind: str
    name: str
    x: float
    y: float
    weight: float
    mandatory: bool
    covered: bool
    by_existing: bool


@dataclass
class Plan:
    model: str
    solver: str  # which solver produced the sites, e.g. "greedy+swap", "highs"
    budget: int | None
    radius: float
    fov: float
    sites: list[PlanSite]
    objective: float  # covered demand weight the solver optimised (excludes what existing cameras see)
    bound: float | None  # proven upper bound (MCLP) / lower bound (LSCP) on that objective
    gap: float | None  # proven relative gap, 0 = optimal
    optimal: bool
    seconds: float
    total_weight: float
    covered_weight: float  # including existing cameras
    road_total_m: float
    road_covered_m: float
    pois: list[PlanPoi]
    blind_segments: np.ndarray  # (k, 4) x0 y0 x1 y1 of uncovered road pieces
    notes: list[str] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def coverage(self) -> float:
        return self.covered_weight / self.total_weight if self.total_weight else 1.0

    @property
    def road_coverage(self) -> float:
        return self.road_covered_m / self.road_total_m if self.road_total_m else 1.0

    @property
    def proof(self) -> Proof:
        return proof(self.objective, self.bound, maximise=self.model == "mclp")

    @property
    def mandatory_total(self) -> int:
        return sum(p.mandatory for p in self.pois)

    @property
    def mandatory_covered(self) -> int:
        return sum(p.mandatory and p.covered for p in self.pois)

    @property
    def blind_pois(self) -> list[PlanPoi]:
        return [p for p in self.pois if not p.covered]

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "solver": self.solver, "budget": self.budget, "cameras": len(self.sites),
                "radius_m": self.radius, "fov_deg": self.fov, "objective": round(self.objective, 3),
                "bound": None if self.bound is None else round(self.bound, 3),
                "gap": None if self.gap is None else round(self.gap, 6), "optimal": self.optimal,
                "proof": self.proof.text(),
                "coverage": round(self.coverage, 6), "road_total_m": round(self.road_total_m, 1),
                "road_covered_m": round(self.road_covered_m, 1), "mandatory_total": self.mandatory_total,
                "mandatory_covered": self.mandatory_covered, "blind_pois": len(self.blind_pois),
                "seconds": round(self.seconds, 3), "notes": self.notes}


SOLVER_TOLERANCE = 1e-4  # HiGHS's relative MIP gap (exact.py, mip_rel_gap): "optimal" within 0.01 %


@dataclass(frozen=True)
class Proof:
    """What the bound proves about a plan's objective: the relative gap (None when there is no valid bound),
    whether the plan is optimal (gap within the solver's tolerance) and whether that is exact (bound = objective)."""

    gap: float | None
    optimal: bool
    exact: bool

    def text(self, lang: str | None = None) -> str:
        """zh-CN / English (lang None), or one language ("zh", "en")."""
        if self.gap is None:
            return "—"
        if self.optimal and self.exact:
            return {"zh": "0（最优）", "en": "0 (optimal)"}.get(lang or "", "0（最优 / optimal）")
        if self.optimal:
            return {"zh": "≤ 0.01 %（容差内最优）", "en": "≤ 0.01 % (optimal within solver tolerance)"}.get(
                lang or "", "≤ 0.01 %（容差内最优 / optimal within solver tolerance）")
        return f"{self.gap * 100:.2f}%"


def proof(objective: float, bound: float | None, *, maximise: bool) -> Proof:
    """The gap a bound proves: for a maximisation the bound must be ≥ the objective (for a minimisation ≤); a
    "bound" on the wrong side, infinite or NaN proves nothing, and then no optimality is claimed."""
    if bound is None or not (math.isfinite(bound) and math.isfinite(objective)):
        return Proof(None, False, False)
    slack = bound - objective if maximise else objective - bound
    eps = 1e-9 * max(1.0, abs(objective), abs(bound))
    if slack < -eps:
        return Proof(None, False, False)
    if slack <= eps:
        return Proof(0.0, True, True)
    scale = abs(bound) if maximise else abs(objective)
    gap = slack / scale if scale > 0 else math.inf
    return Proof(gap, gap <= SOLVER_TOLERANCE, False)


def _best_heuristic(inst: Instance, p: int, pinned: list[int], excluded: list[int], time_limit: float,
                    progress: Progress) -> tuple[list[int], float, float, str]:
    """Lazy greedy → swap search → Lagrangian bound (its best plan seeds a second swap search) → iterated swap
    search with random kicks while the proven gap is open. Returns the best plan, its value, the Lagrangian bound
    and the name of what produced it."""
    t0 = time.perf_counter()
    progress("贪心 / greedy")
    g = lazy_greedy(inst, p, pinned=pinned, excluded=excluded)
    progress("交换搜索 / swap search")
    best = local_search(inst, g, locked=pinned, excluded=excluded, time_limit=max(1.0, time_limit * 0.2))
    best_v = covered_weight(inst, best)
    name = "greedy+swap" if best_v > covered_weight(inst, g) + 1e-9 else "greedy"
    progress("拉格朗日界 / Lagrangian bound")
    lag = lagrangian_bound(inst, p, pinned=pinned, excluded=excluded, lower=best_v,
                           time_limit=max(0.5, time_limit * 0.3 - (time.perf_counter() - t0)))
    if lag.best_selected and lag.best_value > best_v + 1e-9:
        cand = local_search(inst, lag.best_selected, locked=pinned, excluded=excluded,
                            time_limit=max(1.0, time_limit * 0.1))
        v = covered_weight(inst, cand)
        if v > best_v + 1e-9:
            best, best_v, name = cand, v, "lagrangian+swap"
    if best_v < lag.bound * (1 - 1e-6):
        progress("迭代局部搜索 / iterated swap search")
        budget_s = min(ILS_SECONDS, max(0.2, time_limit * 0.5 - (time.perf_counter() - t0)))
        cand = perturb_search(inst, best, p, locked=pinned, excluded=excluded, time_limit=budget_s,
                              stop_at=lag.bound)
        v = covered_weight(inst, cand)
        if v > best_v + 1e-9:
            best, best_v, name = cand, v, name + "+ils"
    return best, best_v, lag.bound, name


def solve(problem: Problem, *, budget: int | None = None, model: str = "mclp", method: str = "heuristic",
          target: float | None = None, time_limit: float = 60.0, pin: list[str] | None = None,
          exclude: list[str] | None = None, progress: Progress | None = None) -> Plan:
    """Choose camera sites.

    model "mclp": at most `budget` new cameras, every mandatory point covered, covered weight maximal.
    model "lscp": fewest cameras covering every mandatory point (and, with `target` in (0, 1], that share of all
    demand weight). method: "greedy" (lazy greedy only), "heuristic" (greedy + swap search + Lagrangian bound),
    "exact" (HiGHS MIP warm-started from the heuristic, within `time_limit` seconds).
    """
    say = progress or (lambda _s: None)
    if model not in MODELS:
        raise SitingInputError(f"未知模型 / unknown model {model!r} (mclp, lscp)")
    if method not in METHODS:
        raise SitingInputError(f"未知求解方法 / unknown method {method!r} (greedy, heuristic, exact)")
    if model == "mclp" and (budget is None or budget < 0):
        raise SitingInputError("最大覆盖模型需要预算 / the MCLP model needs a budget (--budget N)")
    t0 = time.perf_counter()
    pinned = [problem.index_of(s) for s in dict.fromkeys(pin or [])]
    excluded = [problem.index_of(s) for s in dict.fromkeys(exclude or [])]
    both = set(pinned) & set(excluded)
    if both:
        raise SitingInputError("同一点位不能既固定又排除 / a site cannot be both pinned and excluded: "
                               + ", ".join(problem.candidates.ids[j] for j in sorted(both)))
    if budget is not None and len(pinned) > budget:
        raise SitingInputError(f"固定点位 {len(pinned)} 个多于预算 {budget} / {len(pinned)} pinned sites exceed "
                               f"the budget {budget}")
    say("建模 / building model")
    check_weights(problem.demand)
    inst = problem_instance(problem)
    notes: list[str] = [f"需求 {inst.n_original} 行合并为 {inst.r} 行 / {inst.n_original} demand rows merged to "
                        f"{inst.r}"]
    # mandatory rows that only excluded candidates could cover cannot be required
    if excluded and inst.mandatory.any():
        allowed = np.ones(inst.m)
        allowed[excluded] = 0
        lost = inst.mandatory & ((inst.A @ allowed) == 0)
        if lost.any():
            inst.mandatory = inst.mandatory & ~lost
            notes.append(f"{int(lost.sum())} 处必须覆盖点只能由被排除点位覆盖，列为盲区 / {int(lost.sum())} mandatory "
                         "points only excluded sites could see: left as blind spots")
    bound: float | None = None
    gap: float | None = None
    optimal = False
    if model == "mclp":
        assert budget is not None
        if method == "greedy":
            chosen = lazy_greedy(inst, budget, pinned=pinned, excluded=excluded)
            solver = "greedy"
            value = covered_weight(inst, chosen)
        else:
            chosen, value, lag_bound, solver = _best_heuristic(inst, budget, pinned, excluded,
                                                               time_limit if method == "heuristic" else
                                                               min(20.0, time_limit / 4), say)
            bound = lag_bound
            if method == "exact" and proof(value, bound, maximise=True).exact:  # the Lagrangian bound proves it
                notes.append("拉格朗日界已证明最优 / optimal by the Lagrangian bound; HiGHS not needed")
            elif method == "exact":
                from anfang.siting.exact import solve_mclp

                say("HiGHS 精确求解 / HiGHS MIP")
                remaining = max(1.0, time_limit - (time.perf_counter() - t0))
                res = solve_mclp(inst, budget, pinned=pinned, excluded=excluded, warm=chosen, time_limit=remaining)
                if res.selected and res.objective > value + 1e-9:
                    chosen, value, solver = res.selected, covered_weight(inst, res.selected), "highs"
                elif res.selected:
                    solver = "highs" if res.optimal else solver + " (highs: no better plan)"
                if np.isfinite(res.bound):
                    bound = min(bound, res.bound) if bound is not None else res.bound
                notes.append(f"HiGHS: {res.status}, {res.seconds:.1f} s")
            pr = proof(value, bound, maximise=True)
            gap, optimal = pr.gap, pr.optimal
    else:
        chosen = lazy_greedy(inst, None, pinned=pinned, excluded=excluded, target=None if target is None else
                             target * float(inst.w.sum()))
        if target is None:
            chosen = drop_redundant(inst, chosen, locked=set(pinned))
        solver = "greedy"
        value = float(len(chosen))
        if method == "exact":
            from anfang.siting.exact import solve_cover

            say("HiGHS 精确求解 / HiGHS MIP")
            res = solve_cover(inst, pinned=pinned, excluded=excluded, warm=chosen,
                              target=None if target is None else target * float(inst.w.sum()),
                              time_limit=max(1.0, time_limit - (time.perf_counter() - t0)))
            if res.selected and len(res.selected) <= len(chosen):
                chosen, solver = res.selected, "highs"
            bound = float(np.ceil(res.bound - 1e-6)) if np.isfinite(res.bound) else None
            notes.append(f"HiGHS: {res.status}, {res.seconds:.1f} s")
        value = float(len(chosen))
        pr = proof(value, bound, maximise=False)
        gap, optimal = pr.gap, pr.optimal
    plan = describe(problem, chosen, model=model, solver=solver, budget=budget, objective=value, bound=bound,
                    gap=gap, optimal=optimal, pinned=pinned, seconds=time.perf_counter() - t0, notes=notes)
    say("完成 / done")
    return plan


def describe(problem: Problem, chosen: list[int], *, model: str, solver: str, budget: int | None,
             objective: float, bound: float | None, gap: float | None, optimal: bool, pinned: list[int],
             seconds: float, notes: list[str]) -> Plan:
    d, c = problem.demand, problem.candidates
    x = np.zeros(len(c), np.int64)
    x[chosen] = 1
    cnt = np.asarray(problem.A @ x).ravel()
    covered = (cnt > 0) | problem.pre_covered
    sole = (cnt == 1) & ~problem.pre_covered
    proj = problem.network.projection if problem.network else None
    sites: list[PlanSite] = []
    At = problem.A.T.tocsr()
    is_poi = np.array([k != "road" for k in d.kind], bool)
    for j in chosen:
        rows = At.indices[At.indptr[j]:At.indptr[j + 1]]
        lon, lat = (proj.inverse(np.array(c.xy[j, 0]), np.array(c.xy[j, 1])) if proj else (c.xy[j, 0], c.xy[j, 1]))
        h = c.heading[j]
        sites.append(PlanSite(c.ids[j], c.kind[j], float(c.xy[j, 0]), float(c.xy[j, 1]), float(lon), float(lat),
                              None if np.isnan(h) else float(h), j in pinned, float(d.weight[rows].sum()),
                              float(d.weight[rows[sole[rows]]].sum()), float(d.road_m[rows].sum()),
                              [d.ids[i] for i in rows if is_poi[i]]))
    pois = [PlanPoi(d.ids[i], d.kind[i], d.names[i], float(d.xy[i, 0]), float(d.xy[i, 1]), float(d.weight[i]),
                    bool(d.mandatory[i]), bool(covered[i]), bool(problem.pre_covered[i]))
            for i in np.flatnonzero(is_poi)]
    road = ~is_poi
    missing = [p for p in pois if p.mandatory and not p.covered]
    if missing:
        notes.append(f"{len(missing)} 处必须覆盖点未覆盖（超出所有候选点位的范围）/ {len(missing)} mandatory points "
                     "are not covered (out of reach of every candidate site)")
    return Plan(model, solver, budget, problem.params.radius, problem.params.fov, sites, objective, bound, gap,
                optimal, seconds, float(d.weight.sum()), float(d.weight[covered].sum()), float(d.road_m[road].sum()),
                float(d.road_m[road & covered].sum()), pois, d.seg[road & ~covered], notes, problem)


# ---- exports ---------------------------------------------------------------------------------------------------
def _lonlat(plan: Plan, x: float | np.ndarray, y: float | np.ndarray) -> tuple[Any, Any]:
    if plan.problem is None or plan.problem.network is None:
        return x, y
    return plan.problem.network.projection.inverse(np.asarray(x), np.asarray(y))


def to_geojson(plan: Plan) -> dict[str, Any]:
    """FeatureCollection (WGS 84 lon/lat): chosen sites (`role: "site"`), points of interest (`role: "poi"`, with
    `covered`), uncovered road pieces (`role: "blind_road"`), existing cameras (`role: "existing"`); the plan's
    summary in the collection's `properties`."""
    feats: list[dict[str, Any]] = []
    for s in plan.sites:
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(s.lon, 7),
                                                                                      round(s.lat, 7)]},
                      "properties": {"role": "site", "id": s.id, "kind": s.kind, "heading": s.heading,
                                     "pinned": s.pinned, "radius_m": plan.radius, "fov_deg": plan.fov,
                                     "covered_weight": round(s.covered_weight, 3),
                                     "sole_weight": round(s.sole_weight, 3), "road_m": round(s.road_m, 1),
                                     "pois": s.pois}})
    for p in plan.pois:
        lon, lat = _lonlat(plan, p.x, p.y)
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(float(lon), 7),
                                                                                      round(float(lat), 7)]},
                      "properties": {"role": "poi", "id": p.id, "kind": p.kind, "name": p.name, "weight": p.weight,
                                     "mandatory": p.mandatory, "covered": p.covered,
                                     "by_existing": p.by_existing}})
    for seg in plan.blind_segments:
        (lon0, lon1), (lat0, lat1) = _lonlat(plan, seg[[0, 2]], seg[[1, 3]])
        feats.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
            [round(float(lon0), 7), round(float(lat0), 7)], [round(float(lon1), 7), round(float(lat1), 7)]]},
            "properties": {"role": "blind_road",
                           "length_m": round(float(np.hypot(seg[2] - seg[0], seg[3] - seg[1])), 1)}})
    if plan.problem is not None:
        for cam in plan.problem.existing:
            lon, lat = _lonlat(plan, cam.x, cam.y)
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [round(float(lon), 7),
                                                                                          round(float(lat), 7)]},
                          "properties": {"role": "existing", "id": cam.id, "fov_deg": cam.fov,
                                         "heading": cam.heading}})
    return {"type": "FeatureCollection", "properties": plan.summary(), "features": feats}


def write_geojson(plan: Plan, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_geojson(plan), ensure_ascii=False, indent=1), encoding="utf-8")


def write_xlsx(plan: Plan, path: str | Path) -> None:
    """Three sheets: 方案 summary, 点位 sites (one row per camera with what it covers), 盲区 blind spots."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "方案 plan"
    for k, v in plan.summary().items():
        ws.append([k, "; ".join(v) if isinstance(v, list) else v])
    ws2 = wb.create_sheet("点位 sites")
    ws2.append(["编号 id", "类型 kind", "经度 lon", "纬度 lat", "朝向 heading", "固定 pinned",
                "覆盖权重 covered weight", "独占权重 sole weight", "覆盖道路米 road m", "覆盖关注点 POIs"])
    for s in plan.sites:
        ws2.append([s.id, s.kind, round(s.lon, 7), round(s.lat, 7), s.heading, "是 yes" if s.pinned else "",
                    round(s.covered_weight, 2), round(s.sole_weight, 2), round(s.road_m, 1), " ".join(s.pois)])
    ws3 = wb.create_sheet("盲区 blind spots")
    ws3.append(["编号 id", "类型 kind", "名称 name", "经度 lon", "纬度 lat", "权重 weight", "必须覆盖 mandatory"])
    for p in plan.blind_pois:
        lon, lat = _lonlat(plan, p.x, p.y)
        ws3.append([p.id, POI_KINDS.get(p.kind, (p.kind, p.kind))[0] + " " + p.kind, p.name, round(float(lon), 7),
                    round(float(lat), 7), p.weight, "是 yes" if p.mandatory else ""])
    ws3.append([])
    ws3.append(["未覆盖道路 uncovered road m", round(plan.road_total_m - plan.road_covered_m, 1)])
    wb.save(str(path))


__all__ = ["BudgetTooSmall", "Plan", "PlanPoi", "PlanSite", "Proof", "describe", "proof", "solve", "to_geojson",
           "write_geojson", "write_xlsx"]
