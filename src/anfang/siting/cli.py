"""`anfang siting plan OSMFILE --budget N`: a camera siting plan from an OSM extract, printed and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from anfang.clibase import console, fixed, number, pairs, table

siting_app = typer.Typer(help="居安工程 摄像机点位规划 / Ju'an camera siting", no_args_is_help=True)


def _pct(v: float) -> str:
    return f"{v * 100:.2f}%"


@siting_app.command("plan")
def plan_cmd(
    osmfile: Annotated[Path, typer.Argument(help="路网文件 .osm / .pbf / .geojson / road network file")],
    budget: Annotated[int | None, typer.Option("--budget", "-p", help="新增摄像机数量 / number of new cameras")] = None,
    radius: Annotated[float, typer.Option(help="有效覆盖半径（米）/ camera range in metres")] = 150.0,
    fov: Annotated[float, typer.Option(help="视场角（度，360=球机）/ field of view in degrees (360 = dome)")] = 360.0,
    spacing: Annotated[float, typer.Option(help="沿路候选点间距（米）/ candidate spacing along roads, m")] = 50.0,
    step: Annotated[float, typer.Option(help="道路需求采样间距（米）/ road sampling step, m")] = 20.0,
    points: Annotated[Path | None, typer.Option(
        help="需求点与现有摄像机（GeoJSON 或 CSV）/ demand points and existing cameras (GeoJSON or CSV)")] = None,
    sites: Annotated[Path | None, typer.Option(
        "--sites", help="自有候选点位（杆件、墙面；GeoJSON 或 CSV）/ your own candidate sites (poles, walls)")] = None,
    along_roads: Annotated[bool, typer.Option(
        "--along-roads", help="沿路网计算覆盖（建筑遮挡视线）/ coverage measured along the roads")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="方案 GeoJSON 输出 / write the plan as GeoJSON")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="方案 XLSX 输出 / write the plan as XLSX")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="HiGHS 精确求解 / exact MIP with HiGHS")] = False,
    greedy: Annotated[bool, typer.Option("--greedy", help="仅贪心（最快）/ lazy greedy only")] = False,
    lscp: Annotated[bool, typer.Option("--lscp", help="最少摄像机覆盖全部必须点 / fewest cameras (set cover)")] = False,
    target: Annotated[float | None, typer.Option(help="与 --lscp 同用：覆盖率目标 0–1 / with --lscp: coverage "
                                                      "target")] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="求解时限（秒）/ time limit, s")] = 60.0,
    pin: Annotated[list[str] | None, typer.Option("--pin", help="固定点位编号（可重复）/ pin a site id")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="排除点位编号（可重复）/ exclude a site id")
                       ] = None,
) -> None:
    """由路网生成点位方案 / plan camera sites for a road network."""
    from anfang.siting import BudgetTooSmall, SitingInputError, SitingParams, build_problem, read_network
    from anfang.siting.network import read_points, read_sites
    from anfang.siting.plan import solve, write_geojson, write_xlsx

    if not lscp and budget is None:
        console.print("[red]需要 --budget N（或 --lscp）/ give --budget N (or --lscp)[/]")
        raise typer.Exit(2)
    method = "exact" if exact else "greedy" if greedy else "heuristic"
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("读取路网 / reading network", total=None)
            net = read_network(osmfile)
            extra, cams = ([], [])
            if points is not None:
                extra, cams = read_points(points, net.projection)
            own = read_sites(sites, net.projection) if sites is not None else None
            bar.update(task, description="生成候选点与需求 / candidates and demand")
            params = SitingParams(radius=radius, fov=fov, candidate_spacing=spacing, sample_step=step,
                                  along_roads=along_roads)
            problem = build_problem(net, params, extra_pois=extra, existing=cams, sites=own)
            plan = solve(problem, budget=budget, model="lscp" if lscp else "mclp", method=method, target=target,
                         time_limit=time_limit, pin=pin or [], exclude=exclude or [],
                         progress=lambda s: bar.update(task, description=s))
    except (SitingInputError, BudgetTooSmall) as exc:
        console.print(f"[red]错误 / error:[/] {exc}")
        raise typer.Exit(2) from None

    rows = [
        ("道路 / roads", f"{len(net.roads)} 条, {plan.road_total_m / 1000:.2f} km"),
        ("候选点位 / candidate sites", f"{len(problem.candidates)}" + (f"（自有 / own: {sites.name}）"
                                                                     if sites else "")),
        ("覆盖计算 / coverage", "沿路网 / along roads" if along_roads else "直线距离 / straight line"),
        ("模型 / model", "LSCP 最少覆盖" if plan.model == "lscp" else f"MCLP 最大覆盖, 预算 budget {plan.budget}"),
        ("求解器 / solver", plan.solver),
        ("新增摄像机 / new cameras", str(len(plan.sites))),
        ("现有摄像机 / existing cameras", str(len(problem.existing))),
        ("覆盖率（加权）/ weighted coverage", _pct(plan.coverage)),
        ("道路覆盖 / road covered", f"{plan.road_covered_m / 1000:.2f} / {plan.road_total_m / 1000:.2f} km "
                                   f"({_pct(plan.road_coverage)})"),
        ("必须覆盖点 / mandatory points", f"{plan.mandatory_covered} / {plan.mandatory_total}"),
        ("盲区关注点 / blind POIs", str(len(plan.blind_pois))),
        ("目标值 / objective", f"{plan.objective:,.1f}"),
        ("证明的界 / proven bound", "—" if plan.bound is None else f"{plan.bound:,.1f}"),
        ("证明的差距 / proven gap", plan.proof.text()),
        ("用时 / time", f"{plan.seconds:.2f} s"),
    ]
    console.print(pairs(rows, title=f"点位方案 / siting plan — {osmfile.name}"))
    sites = table("编号 id", "类型 kind", fixed("经度 lon"), fixed("纬度 lat"), number("覆盖权重 weight"),
                  number("道路米 road_m"), number("关注点 POIs"), title="点位 / sites")
    for s in sorted(plan.sites, key=lambda s: -s.covered_weight)[:30]:
        sites.add_row(s.id + (" 📌" if s.pinned else ""), s.kind, f"{s.lon:.6f}", f"{s.lat:.6f}",
                      f"{s.covered_weight:.0f}", f"{s.road_m:.0f}", str(len(s.pois)))
    if len(plan.sites) > 30:
        sites.caption = f"前 30 个，共 {len(plan.sites)} 个 / first 30 of {len(plan.sites)} (see --out / --xlsx)"
    console.print(sites)
    for note in plan.notes:
        console.print(f"[dim]· {note}[/]")
    if out:
        write_geojson(plan, out)
        console.print(f"GeoJSON → {out}")
    if xlsx:
        write_xlsx(plan, xlsx)
        console.print(f"XLSX → {xlsx}")
