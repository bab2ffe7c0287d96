"""Ju'an camera siting (居安工程 点位规划, issue 9): choose camera sites along village roads to maximise coverage.

network.py  road networks from OSM XML / PBF / GeoJSON, projected to local metres
problem.py  demand (POIs, road length), candidate sites, the sparse coverage matrix, row merging
heuristic.py lazy greedy, swap local search, Lagrangian bound          exact.py  HiGHS MIP (highspy)
plan.py     solve(): models (MCLP with mandatory points, LSCP), the plan, GeoJSON / XLSX export
cli.py / views.py / svgmap.py   the `anfang siting` command and the console page (edges; the rest is pure Python)
"""

from anfang.siting.heuristic import BudgetTooSmall
from anfang.siting.network import RoadNetwork, SitingInputError, read_network
from anfang.siting.plan import Plan, solve, to_geojson, write_geojson, write_xlsx
from anfang.siting.problem import SitingParams, build_problem

__all__ = ["BudgetTooSmall", "Plan", "RoadNetwork", "SitingInputError", "SitingParams", "build_problem",
           "read_network", "solve", "to_geojson", "write_geojson", "write_xlsx"]
