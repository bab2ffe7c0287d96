"""Camera siting (issue 9) on hand-checkable networks: a cross of two 400 m roads and a 3 × 3 village grid.

Distances are chosen so every expected number can be checked with a ruler: radius 110 m, candidates every 50 m,
road demand sampled every 20 m (so each 200 m arm is ten 20 m pieces with midpoints at 10, 30, …, 190 m).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from anfang.cli import app as cli_app
from anfang.siting import BudgetTooSmall, SitingInputError, SitingParams, build_problem, read_network, solve
from anfang.siting.exact import solve_mclp
from anfang.siting.heuristic import covered_weight, lagrangian_bound, lazy_greedy, local_search
from anfang.siting.network import read_geojson
from anfang.siting.plan import write_geojson, write_xlsx
from anfang.siting.problem import Candidates, Demand, Problem, coverage_matrix, reduce_instance

LON0, LAT0 = 117.64, 26.26  # Sanming
M_LAT = 1 / 111_195.08
M_LON = M_LAT / math.cos(math.radians(LAT0))


def osm(nodes: dict[int, tuple[float, float]], ways: list[tuple[int, list[int], str]],
        tags: dict[int, dict[str, str]] | None = None) -> str:
    """OSM XML from node positions in metres east/north of (LON0, LAT0)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    for nid, (x, y) in nodes.items():
        t = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in (tags or {}).get(nid, {}).items())
        out.append(f'<node id="{nid}" lat="{LAT0 + y * M_LAT:.8f}" lon="{LON0 + x * M_LON:.8f}">{t}</node>')
    for wid, refs, highway in ways:
        nd = "".join(f'<nd ref="{r}"/>' for r in refs)
        out.append(f'<way id="{wid}">{nd}<tag k="highway" v="{highway}"/><tag k="name" v="路{wid}"/></way>')
    out.append("</osm>")
    return "\n".join(out)


# A cross: W(-200,0) – C(0,0) – E(200,0) and S(0,-200) – C – N(0,200); gates at W and E.
CROSS = osm({1: (0, 0), 2: (-200, 0), 3: (200, 0), 4: (0, -200), 5: (0, 200)},
            [(10, [2, 1, 3], "residential"), (11, [4, 1, 5], "residential")])
CROSS_GATES = osm({1: (0, 0), 2: (-200, 0), 3: (200, 0), 4: (0, -200), 5: (0, 200)},
                  [(10, [2, 1, 3], "residential"), (11, [4, 1, 5], "residential")],
                  {2: {"barrier": "gate", "name": "西村口"}, 3: {"barrier": "gate", "name": "东村口"}})
# A 3 × 3 village grid, 200 m blocks: three east-west and three north-south streets of 400 m.
GRID_NODES = {100 + 3 * r + c: (200.0 * c, 200.0 * r) for r in range(3) for c in range(3)}
GRID = osm(GRID_NODES, [(20 + r, [100 + 3 * r + c for c in range(3)], "residential") for r in range(3)]
           + [(30 + c, [100 + 3 * r + c for r in range(3)], "residential") for c in range(3)])
PARAMS = SitingParams(radius=110, candidate_spacing=50, sample_step=20)


def net_of(xml: str, tmp_path, name: str = "net.osm"):  # noqa: ANN201
    path = tmp_path / name
    path.write_text(xml, encoding="utf-8")
    return read_network(path)


def test_cross_reads_roads_intersection_and_metres(tmp_path) -> None:
    net = net_of(CROSS, tmp_path)
    assert len(net.roads) == 2
    assert net.intersections() == ["1"]
    assert net.total_length() == pytest.approx(800, abs=0.5)  # projection error well under 0.1 %
    problem = build_problem(net, PARAMS)
    assert problem.demand.road_m.sum() == pytest.approx(800, abs=0.5)
    assert problem.candidates.ids.count("N1") == 1  # the intersection is a candidate once, not once per road
    assert len(problem.candidates) == 1 + 4 * 4  # centre + 4 arms × (50, 100, 150, 200 m)


def test_one_camera_goes_to_the_intersection_and_sees_half_the_road(tmp_path) -> None:
    plan = solve(build_problem(net_of(CROSS, tmp_path), PARAMS), budget=1, method="exact")
    assert [s.id for s in plan.sites] == ["N1"]
    # sample midpoints at 10, 30, …, 110 m lie within 110 m: 6 pieces of 20 m on each of 4 arms
    assert plan.road_covered_m == pytest.approx(480, abs=0.5)
    assert plan.mandatory_covered == plan.mandatory_total == 1
    assert plan.optimal and plan.gap == 0


def test_four_cameras_cover_the_whole_cross(tmp_path) -> None:
    problem = build_problem(net_of(CROSS, tmp_path), PARAMS)
    plan = solve(problem, budget=4, method="exact")
    assert plan.optimal
    assert plan.road_covered_m == pytest.approx(800, abs=0.5)
    assert plan.coverage == pytest.approx(1.0)
    assert len(plan.blind_segments) == 0 and not plan.blind_pois
    # each arm's far end (piece 180–200 m) needs its own camera 100 m or further out on that arm, and the
    # intersection needs one within 110 m: one camera per arm, 100–150 m out
    assert all(100 <= round(math.hypot(s.x, s.y)) <= 150 for s in plan.sites)
    assert sorted(round(math.degrees(math.atan2(s.x, s.y))) % 360 for s in plan.sites) == [0, 90, 180, 270]
    assert solve(problem, budget=4).objective >= 0.95 * plan.objective  # the heuristic is close


def test_gates_are_mandatory_and_lscp_is_minimal(tmp_path) -> None:
    problem = build_problem(net_of(CROSS_GATES, tmp_path), PARAMS)
    kinds = {p.id: p.kind for p in solve(problem, budget=2).pois}
    assert kinds == {"n1": "intersection", "n2": "entrance", "n3": "entrance"}
    # W and E are 400 m apart > 2 × 110 m: no camera sees both, so at least two; two at ±100 m see all three
    for method in ("greedy", "exact"):
        plan = solve(problem, model="lscp", method=method)
        assert len(plan.sites) == 2
        assert plan.mandatory_covered == 3
    assert solve(problem, model="lscp", method="exact").bound == 2
    with pytest.raises(BudgetTooSmall, match="至少需要约 2 台"):
        solve(problem, budget=1)


def test_village_grid_mandatory_intersections(tmp_path) -> None:
    net = net_of(GRID, tmp_path)
    assert net.intersections() == ["101", "103", "104", "105", "107"]  # centre + four T-junctions; corners are bends
    problem = build_problem(net, PARAMS)
    # the four T-junctions are pairwise ≥ 283 m apart (> 2 × 110 m): one camera each, and the one 100 m from
    # the centre towards a T sees the centre too → exactly 4
    lscp = solve(problem, model="lscp", method="exact")
    assert len(lscp.sites) == 4 and lscp.optimal
    for method in ("greedy", "heuristic", "exact"):
        plan = solve(problem, budget=4, method=method)
        assert plan.mandatory_covered == 5, method
        assert len(plan.sites) == 4
    with pytest.raises(BudgetTooSmall):
        solve(problem, budget=3, method="exact")
    exact = solve(problem, budget=6, method="exact")
    heur = solve(problem, budget=6)
    assert exact.optimal
    assert heur.objective <= exact.objective + 1e-6
    assert heur.objective >= 0.97 * exact.objective
    assert exact.road_covered_m <= 2400 + 0.5 and exact.road_total_m == pytest.approx(2400, abs=1)


def _line_problem() -> Problem:
    """Six points on a line, radius 10: c0 at 12 sees {4, 6, 18, 20}; c1 at 0 sees {-8, 4, 6}; c2 at 24 sees
    {18, 20, 32}. Greedy takes c0 first (4 points) and ends with 5 for p=2; {c1, c2} sees all 6."""
    xs = np.array([-8.0, 4, 6, 18, 20, 32])
    dxy = np.column_stack([xs, np.zeros(6)])
    cxy = np.array([[12.0, 0], [0, 0], [24, 0]])
    n = len(xs)
    demand = Demand(dxy, np.ones(n), np.zeros(n, bool), ["poi"] * n, [f"d{k}" for k in range(n)], [""] * n,
                    np.zeros(n), np.full((n, 4), np.nan))
    cands = Candidates(cxy, np.full(3, np.nan), ["c0", "c1", "c2"], ["given"] * 3)
    A = coverage_matrix(dxy, cxy, 10.0)
    return Problem(demand, cands, A, np.zeros(n, bool), SitingParams(radius=10))


def test_exact_beats_greedy_where_greedy_is_suboptimal() -> None:
    problem = _line_problem()
    greedy = solve(problem, budget=2, method="greedy")
    exact = solve(problem, budget=2, method="exact")
    assert {s.id for s in greedy.sites} == {"c0", "c1"} and greedy.objective == 5
    assert {s.id for s in exact.sites} == {"c1", "c2"} and exact.objective == 6
    assert exact.optimal and exact.solver != "greedy" and exact.gap == 0
    assert greedy.solver == "greedy"
    # the swap search repairs the greedy choice, and the Lagrangian bound proves it
    heur = solve(problem, budget=2)
    assert heur.objective == 6 and heur.gap == pytest.approx(0, abs=1e-6)


def test_pin_and_exclude_are_respected(tmp_path) -> None:
    problem = build_problem(net_of(CROSS, tmp_path), PARAMS)
    free = solve(problem, budget=1)
    assert [s.id for s in free.sites] == ["N1"]
    # without the centre, the best single site is 50 m out on an arm (still sees the intersection): 160 m of
    # its own arm, 60 m of the opposite one, 100 m of each side arm = 420 m, against 300 m from 100 m out
    no_centre = solve(problem, budget=1, exclude=["N1"], method="exact")
    assert no_centre.sites[0].id != "N1" and round(math.hypot(no_centre.sites[0].x, no_centre.sites[0].y)) == 50
    assert no_centre.mandatory_covered == 1
    tip = "W10-0"  # the west end of road 10
    pinned = solve(problem, budget=2, pin=[tip], method="exact")
    assert tip in {s.id for s in pinned.sites} and next(s for s in pinned.sites if s.id == tip).pinned
    with pytest.raises(SitingInputError, match="no candidate site"):
        solve(problem, budget=1, pin=["nope"])
    with pytest.raises(SitingInputError, match="both pinned and excluded"):
        solve(problem, budget=2, pin=[tip], exclude=[tip])


def test_existing_camera_reduces_what_is_needed(tmp_path) -> None:
    from anfang.siting.network import Camera

    net = net_of(CROSS, tmp_path)
    problem = build_problem(net, PARAMS, existing=[Camera("old", 0.0, 0.0, radius=110)])
    plan = solve(problem, budget=0)
    assert not plan.sites and plan.road_covered_m == pytest.approx(480, abs=0.5)
    assert plan.mandatory_covered == 1 and plan.pois[0].by_existing


def test_narrow_field_of_view_offers_headings(tmp_path) -> None:
    params = SitingParams(radius=110, fov=90, candidate_spacing=50, sample_step=20)
    problem = build_problem(net_of(CROSS, tmp_path), params)
    centre = [i for i in problem.candidates.ids if i.startswith("N1@")]
    assert sorted(centre) == ["N1@0", "N1@180", "N1@270", "N1@90"]
    east = solve(problem, budget=1, pin=["N1@90"])
    assert east.road_covered_m == pytest.approx(120, abs=0.5)  # looking east: one arm, 6 pieces of 20 m
    best = solve(problem, budget=1, method="exact")
    assert "@" in best.sites[0].id and 120 <= best.road_covered_m < 480  # less than an all-round camera sees


def test_geojson_and_xlsx_exports(tmp_path) -> None:
    plan = solve(build_problem(net_of(CROSS_GATES, tmp_path), PARAMS), budget=2)
    write_geojson(plan, tmp_path / "plan.geojson")
    doc = json.loads((tmp_path / "plan.geojson").read_text(encoding="utf-8"))
    sites = [f for f in doc["features"] if f["properties"]["role"] == "site"]
    assert len(sites) == 2 and doc["properties"]["mandatory_covered"] == 3
    lon, lat = sites[0]["geometry"]["coordinates"]
    assert abs(lon - LON0) < 0.01 and abs(lat - LAT0) < 0.01
    blind = [f for f in doc["features"] if f["properties"]["role"] == "blind_road"]
    assert sum(f["properties"]["length_m"] for f in blind) == pytest.approx(plan.road_total_m - plan.road_covered_m,
                                                                            abs=1)
    write_xlsx(plan, tmp_path / "plan.xlsx")
    wb = load_workbook(tmp_path / "plan.xlsx")
    assert wb.sheetnames == ["方案 plan", "点位 sites", "盲区 blind spots"]
    assert wb["点位 sites"].max_row == 1 + 2
    # the round trip: the plan's GeoJSON reads back as a network is not expected; sites keep their ids
    assert {f["properties"]["id"] for f in sites} == {s.id for s in plan.sites}


def test_geojson_network_input(tmp_path) -> None:
    def ll(x: float, y: float) -> list[float]:
        return [LON0 + x * M_LON, LAT0 + y * M_LAT]

    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"highway": "primary"},
         "geometry": {"type": "LineString", "coordinates": [ll(-200, 0), ll(0, 0), ll(200, 0)]}},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "LineString", "coordinates": [ll(0, 0), ll(0, 200)]}},
        {"type": "Feature", "properties": {"kind": "construction", "weight": 500, "name": "工地"},
         "geometry": {"type": "Point", "coordinates": ll(150, 60)}},
    ]}
    net = read_geojson(json.dumps(doc))
    assert len(net.intersections()) == 1 and net.pois[0].kind == "construction"
    plan = solve(build_problem(net, PARAMS), budget=1, method="exact")
    # the site must still see the T-junction (mandatory) and should reach the heavy construction site
    assert plan.mandatory_covered == 1
    assert {p.id: p.covered for p in plan.pois}["p2"]


@pytest.mark.parametrize("content, message", [
    ("<osm><node id='1' lat='26' lon='117'><tag k='x'", "malformed OSM XML"),
    ("<html><body>not osm</body></html>", "not an OSM XML file"),
    ('<osm><node id="1" lat="26" lon="117"/></osm>', "no roads"),
    ("<osm><node id='1' lat='north' lon='117'/></osm>", "bad coordinates"),
])
def test_bad_osm_files_give_clear_errors(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "bad.osm"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SitingInputError, match=message):
        read_network(path)


def test_cli_end_to_end(tmp_path) -> None:
    (tmp_path / "village.osm").write_text(GRID, encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(cli_app, ["siting", "plan", str(tmp_path / "village.osm"), "--budget", "4", "--radius", "110",
                                "--out", str(tmp_path / "p.geojson"), "--xlsx", str(tmp_path / "p.xlsx"), "--exact",
                                "--time-limit", "30", "--exclude", "N104"])
    assert r.exit_code == 0, r.output
    assert "必须覆盖点 / mandatory points" in r.output and "5 / 5" in r.output
    assert re.search(r"证明的差距 / proven gap\s+0", r.output)
    doc = json.loads((tmp_path / "p.geojson").read_text(encoding="utf-8"))
    ids = {f["properties"]["id"] for f in doc["features"] if f["properties"]["role"] == "site"}
    assert len(ids) == 4 and "N104" not in ids
    assert (tmp_path / "p.xlsx").stat().st_size > 0
    # errors: a broken file and a too-small budget end with a message and exit code 2, not a traceback
    (tmp_path / "bad.osm").write_text("<osm><way", encoding="utf-8")
    bad = runner.invoke(cli_app, ["siting", "plan", str(tmp_path / "bad.osm"), "--budget", "3"])
    assert bad.exit_code == 2 and "OSM XML" in bad.output and "Traceback" not in bad.output
    small = runner.invoke(cli_app, ["siting", "plan", str(tmp_path / "village.osm"), "--budget", "1",
                                    "--radius", "110"])
    assert small.exit_code == 2 and "至少需要" in small.output


def test_reduce_merges_identical_rows_and_solvers_agree_on_random_instance() -> None:
    rng = np.random.default_rng(7)
    dxy, cxy = rng.uniform(0, 3000, (3000, 2)), rng.uniform(0, 3000, (300, 2))
    w = rng.integers(1, 12, 3000).astype(float)
    A = coverage_matrix(dxy, cxy, 200.0)
    # the sparse matrix equals the brute-force distance test
    dense = np.hypot(dxy[:, None, 0] - cxy[None, :, 0], dxy[:, None, 1] - cxy[None, :, 1]) <= 200
    assert (A.toarray() == dense).all()
    inst = reduce_instance(A, w)
    assert inst.r < (np.diff(A.indptr) > 0).sum()  # identical coverage sets merged
    assert inst.w.sum() == pytest.approx(w[np.diff(A.indptr) > 0].sum())
    g = lazy_greedy(inst, 20)
    ls = local_search(inst, g)
    ex = solve_mclp(inst, 20, warm=ls, time_limit=60)
    lag = lagrangian_bound(inst, 20, lower=covered_weight(inst, ls))
    assert covered_weight(inst, g) <= covered_weight(inst, ls) <= ex.objective + 1e-6
    assert ex.objective <= lag.bound + 1e-6  # a valid bound
    # merged and unmerged models have the same optimum
    raw = reduce_instance(A, w, seed=1)
    assert covered_weight(raw, ex.selected) == pytest.approx(ex.objective)


def test_console_page_renders_plan(tmp_path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from anfang.app import create_app
    from anfang.config import Settings
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade
    from world import PASSWORD, build

    url = f"sqlite:///{(tmp_path / 'a.db').as_posix()}"
    upgrade(url)
    store = Store(url)
    build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url), store)) as c:
        assert c.get("/siting", follow_redirects=False).status_code == 303  # login first
        page = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        c.post("/login", data={"username": "county", "password": PASSWORD, "next": "/", "csrf_token": token})
        first = c.get("/siting")
        assert first.status_code == 200 and "<svg" in first.text  # the demo village
        token = re.search(r'name="csrf_token" value="([^"]+)"', first.text).group(1)
        r = c.post("/siting", data={"budget": "4", "radius": "110", "csrf_token": token},
                   files={"osm": ("village.osm", GRID.encode(), "application/xml")})
        assert r.status_code == 200, r.text
        assert r.text.count('class="site"') == 4 and "5 / 5" in r.text
        assert "http://" not in r.text.split("<svg", 1)[1].split("</svg>", 1)[0].replace(
            'xmlns="http://www.w3.org/2000/svg"', "")
        again = c.get("/siting")
        assert again.text.count('class="site"') == 4  # the last plan is shown
        bad = c.post("/siting", data={"budget": "4", "csrf_token": token},
                     files={"osm": ("bad.osm", b"<osm><way", "application/xml")})
        assert bad.status_code == 422 and "OSM XML" in bad.text


# ---- issue 17 item 8: weights are finite and ≥ 0; optimality only when the bound proves it ----------------------
def _points_file(tmp_path, weights: list[object]) -> str:
    feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [LON0 + 10 * k * M_LON, LAT0]},
              "properties": {"id": f"school{k}", "kind": "crowded", "weight": w}} for k, w in enumerate(weights)]
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("weight", ["heavy", "NaN", "-1000000", "inf", -1, None])
def test_cli_refuses_bad_point_weights_naming_the_feature(tmp_path, weight: object) -> None:
    (tmp_path / "village.osm").write_text(GRID, encoding="utf-8")
    points = _points_file(tmp_path, [5, weight])
    r = CliRunner().invoke(cli_app, ["siting", "plan", str(tmp_path / "village.osm"), "--budget", "4",
                                     "--radius", "110", "--points", points, "--exact"])
    if weight is None:  # no weight given: the kind's default
        assert r.exit_code == 0, r.output
        return
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "nan%" not in r.output and "optimal" not in r.output
    assert "school1" in r.output and "weight" in r.output and "school0" not in r.output


def test_bad_weights_in_network_files_name_the_feature(tmp_path) -> None:
    tagged = osm({1: (0, 0), 2: (-200, 0), 3: (200, 0), 4: (0, -200), 5: (0, 200)},
                 [(10, [2, 1, 3], "residential"), (11, [4, 1, 5], "residential")],
                 {2: {"barrier": "gate", "anfang:weight": "lots"}, 3: {"barrier": "gate", "anfang:weight": "-3"}})
    with pytest.raises(SitingInputError, match=r"(?s)n2.*n3"):
        net_of(tagged, tmp_path)
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[117.64, 26.26], [117.65, 26.26]]},
         "properties": {"highway": "residential"}},
        {"type": "Feature", "id": "gate-w", "geometry": {"type": "Point", "coordinates": [117.64, 26.26]},
         "properties": {"kind": "entrance", "weight": "NaN"}}]}
    with pytest.raises(SitingInputError, match="gate-w"):
        read_geojson(json.dumps(doc))


def test_solver_refuses_demand_with_invalid_weight() -> None:
    problem = _line_problem()
    problem.demand.weight[2] = -1_000_000.0
    with pytest.raises(SitingInputError, match="weight"):
        solve(problem, budget=1, method="exact")


@pytest.mark.parametrize(("objective", "bound", "optimal", "text"), [
    (100.0, 100.0, True, "0（最优 / optimal）"),
    (100.0, 100.005, True, "≤ 0.01 %"),  # within HiGHS's relative tolerance: not an exact proof
    (100.0, 110.0, False, "9.09%"),
    (100.0, 90.0, False, "—"),  # a "bound" below the objective proves nothing
    (100.0, None, False, "—"),
])
def test_optimality_is_claimed_only_when_the_bound_proves_it(objective, bound, optimal, text) -> None:
    from anfang.siting.plan import proof

    p = proof(objective, bound, maximise=True)
    assert p.optimal is optimal
    assert p.text().startswith(text)


def test_cli_gap_wording_for_solver_tolerance(tmp_path) -> None:
    (tmp_path / "village.osm").write_text(GRID, encoding="utf-8")
    r = CliRunner().invoke(cli_app, ["siting", "plan", str(tmp_path / "village.osm"), "--budget", "4",
                                     "--radius", "110", "--exact"])
    assert r.exit_code == 0, r.output
    gap_line = next(line for line in r.output.splitlines() if "proven gap" in line)
    assert "0（最优 / optimal）" in gap_line or "≤ 0.01 %" in gap_line


# ---- issue 19 item 11: siting for planners -----------------------------------------------------------------------
def _lonlat(x: float, y: float) -> tuple[float, float]:
    return LON0 + x * M_LON, LAT0 + y * M_LAT


def _write_sites(tmp_path, sites: list[tuple[str, float, float, str]]) -> tuple[str, str]:
    """The same poles as CSV (Chinese headers) and as GeoJSON."""
    csv_path, gj_path = tmp_path / "poles.csv", tmp_path / "poles.geojson"
    lines = ["编号,经度,纬度,类型"] + [f"{sid},{_lonlat(x, y)[0]:.8f},{_lonlat(x, y)[1]:.8f},{kind}"
                                 for sid, x, y, kind in sites]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    gj_path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(_lonlat(x, y))},
         "properties": {"id": sid, "kind": kind}} for sid, x, y, kind in sites]}), encoding="utf-8")
    return str(csv_path), str(gj_path)


def test_own_candidate_sites_from_csv_or_geojson(tmp_path) -> None:
    from anfang.siting.network import read_sites

    net = net_of(GRID, tmp_path)
    poles = [("P-centre", 200, 200, "pole"), ("P-west", 0, 200, "wall"), ("P-east", 400, 200, "pole"),
             ("P-far", 200, 0, "pole")]
    csv_path, gj_path = _write_sites(tmp_path, poles)
    plans = []
    for path in (csv_path, gj_path):
        sites = read_sites(path, net.projection)
        problem = build_problem(net, PARAMS, sites=sites)
        assert problem.candidates.ids == [p[0] for p in poles]  # only his sites, none generated along roads
        plan = solve(problem, model="lscp", method="exact")
        plans.append(sorted(s.id for s in plan.sites))
        assert {s.kind for s in plan.sites} <= {"pole", "wall"}
    assert plans[0] == plans[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("编号,经度,纬度\nP1,117.64,26.26\nP2,east,26.26\nP1,117.641,26.26\n", encoding="utf-8")
    with pytest.raises(SitingInputError, match=r"(?s)row 3.*P2.*row 4.*duplicate"):
        read_sites(bad, net.projection)


def test_demand_points_from_csv(tmp_path) -> None:
    from anfang.siting.network import read_points

    net = net_of(GRID, tmp_path)
    lon, lat = _lonlat(400, 330)
    path = tmp_path / "pois.csv"
    path.write_text(f"id,lon,lat,kind,name,weight,mandatory\nschool,{lon},{lat},crowded,村小学,500,yes\n"
                    f"cam1,{_lonlat(0, 0)[0]},{_lonlat(0, 0)[1]},,,,\n", encoding="utf-8")
    pois, cams = read_points(path, net.projection)
    assert [(p.id, p.kind, p.weight, p.mandatory) for p in pois] == [("pschool", "crowded", 500.0, True),
                                                                    ("pcam1", "poi", None, None)]
    cams_csv = tmp_path / "cams.csv"
    cams_csv.write_text(f"编号,经度,纬度,现有摄像机,半径\ncam1,{_lonlat(0, 0)[0]},{_lonlat(0, 0)[1]},是,80\n",
                        encoding="utf-8")
    pois, cams = read_points(cams_csv, net.projection)
    assert pois == [] and [(c.id, c.radius) for c in cams] == [("cam1", 80.0)]
    plan = solve(build_problem(net, PARAMS, extra_pois=read_points(tmp_path / "pois.csv", net.projection)[0]),
                 budget=6, method="exact")
    school = next(p for p in plan.pois if p.id == "pschool")
    assert school.mandatory and school.covered and school.weight == 500


def test_coverage_along_roads_does_not_see_through_houses(tmp_path) -> None:
    """Two parallel lanes 60 m apart, joined only at their west ends 400 m away: a camera on the north lane sees
    the south lane across the block in a straight line, not along the roads."""
    lanes = osm({1: (0, 0), 2: (400, 0), 3: (0, 60), 4: (400, 60)},
                [(10, [2, 1], "residential"), (11, [1, 3], "residential"), (12, [3, 4], "residential")])
    net = net_of(lanes, tmp_path)
    site = [("pole", 400, 60, "pole")]
    sites = __import__("anfang.siting.network", fromlist=["read_sites"]).read_sites(
        _write_sites(tmp_path, site)[0], net.projection)
    disc = solve(build_problem(net, PARAMS, sites=sites), budget=1, method="greedy")
    roads = solve(build_problem(net, SitingParams(radius=110, candidate_spacing=50, sample_step=20, along_roads=True),
                                sites=sites), budget=1, method="greedy")
    assert disc.road_covered_m == pytest.approx(220, abs=21)  # 110 m of each lane
    assert roads.road_covered_m == pytest.approx(110, abs=21)  # only its own lane
    covered = roads.problem.A[:, 0].toarray().ravel()
    ys = roads.problem.demand.xy[covered.astype(bool), 1]
    assert len(ys) and (ys > 0).all()  # nothing on the south lane (y is relative to the network's centre)


def test_cli_planner_files_and_the_readme_village(tmp_path) -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    village = root / "docs" / "examples" / "village.osm"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "docs/examples/village.osm" in readme
    runner = CliRunner()
    r = runner.invoke(cli_app, ["siting", "plan", str(village), "--budget", "12", "--radius", "120",
                                "--out", str(tmp_path / "v.geojson")])
    assert r.exit_code == 0, r.output
    assert "12" in r.output and json.loads((tmp_path / "v.geojson").read_text(encoding="utf-8"))["features"]
    net = read_network(village)
    poles = [(f"G{k}", float(x), float(y), "pole") for k, (x, y) in enumerate(net.node_xy.values()) if k % 3 == 0]
    csv_path, _ = _write_sites(tmp_path, poles)
    r = runner.invoke(cli_app, ["siting", "plan", str(village), "--budget", "12", "--radius", "120", "--sites",
                                csv_path, "--along-roads", "--out", str(tmp_path / "own.geojson")])
    assert r.exit_code == 0, r.output
    ids = {f["properties"]["id"] for f in json.loads((tmp_path / "own.geojson").read_text(encoding="utf-8"))[
        "features"] if f["properties"]["role"] == "site"}
    assert ids and ids <= {p[0] for p in poles}
    big = runner.invoke(cli_app, ["siting", "plan", str(village), "--budget", "3", "--radius", "3000"])
    assert big.exit_code == 0, big.output  # no console-only cap below what the CLI accepts
    huge = runner.invoke(cli_app, ["siting", "plan", str(village), "--budget", "3", "--radius", "50000"])
    assert huge.exit_code == 2 and "radius" in huge.output


def test_console_uploads_points_and_sites_and_downloads_the_plan(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from anfang.app import create_app
    from anfang.config import Settings
    from anfang.store.engine import Store
    from anfang.store.migrate import upgrade
    from world import PASSWORD, build

    url = f"sqlite:///{(tmp_path / 'a.db').as_posix()}"
    upgrade(url)
    store = Store(url)
    build(store)
    poles = [("P-centre", 200, 200, "pole"), ("P-w", 0, 200, "pole"), ("P-e", 400, 200, "pole"),
             ("P-s", 200, 0, "pole"), ("P-n", 200, 400, "pole")]
    csv_path, _ = _write_sites(tmp_path, poles)
    lon, lat = _lonlat(400, 330)
    pois = f"id,lon,lat,kind,name,weight\nschool,{lon},{lat},crowded,村小学,500\n".encode()
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url), store)) as c:
        page = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        c.post("/login", data={"username": "county", "password": PASSWORD, "next": "/", "csrf_token": token})
        first = c.get("/siting")
        token = re.search(r'name="csrf_token" value="([^"]+)"', first.text).group(1)
        assert 'max="2000"' not in first.text  # the radius the CLI accepts
        r = c.post("/siting", data={"budget": "3", "radius": "2500", "csrf_token": token, "along_roads": "1"},
                   files={"osm": ("village.osm", GRID.encode(), "application/xml"),
                          "points": ("pois.csv", pois, "text/csv"),
                          "sites": ("poles.csv", Path(csv_path).read_bytes(), "text/csv")})
        assert r.status_code == 200, r.text
        assert r.text.count('class="site"') >= 1 and "poles.csv" in r.text
        gj = c.get("/siting/plan.geojson")
        assert gj.status_code == 200 and "attachment" in gj.headers["content-disposition"]
        doc = gj.json()
        sites = {f["properties"]["id"] for f in doc["features"] if f["properties"]["role"] == "site"}
        assert sites and sites <= {p[0] for p in poles}
        assert doc["properties"]["radius_m"] == 2500
        assert any(f["properties"].get("id") == "pschool" for f in doc["features"])
        xlsx = c.get("/siting/plan.xlsx")
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
        (tmp_path / "plan.xlsx").write_bytes(xlsx.content)
        assert load_workbook(tmp_path / "plan.xlsx")["点位 sites"].max_row == len(sites) + 1
        bad = c.post("/siting", data={"budget": "3", "csrf_token": token},
                     files={"points": ("pois.csv", b"id,lon,lat,weight\nx,117.64,26.26,NaN\n", "text/csv")})
        assert bad.status_code == 422 and "row 2" in bad.text
        huge = c.post("/siting", data={"budget": "3", "radius": "50000", "csrf_token": token})
        assert huge.status_code == 422
