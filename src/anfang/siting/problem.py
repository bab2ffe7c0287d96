"""From a road network to a coverage problem: demand points, candidate sites and the sparse coverage matrix.

Demand ("what must be seen"): points of interest with weights (intersections, entrances, construction sites,
crowded and high-risk places) and the road network itself, sampled every `sample_step` metres — each sample
stands for the road length around it, so covered weight on roads is covered metres (times a road-class factor).
Candidates ("where a camera may go"): every intersection, points along every road every `candidate_spacing`
metres, or a given list. A candidate with a field of view below 360° is offered once per heading (along each road
direction at the site), since where it looks decides what it covers.

Coverage is a scipy CSR matrix A (demand × candidates), built with a k-d tree: only pairs within range are ever
touched, never the dense demand × candidate product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from anfang.siting.network import (
    DEFAULT_MANDATORY,
    DEFAULT_POI_WEIGHTS,
    ROAD_CLASSES,
    Camera,
    Poi,
    RoadNetwork,
    Site,
    SitingInputError,
)

MAX_RADIUS = 5000.0  # metres: beyond any camera's useful range; the one limit of the CLI and the console


@dataclass
class SitingParams:
    radius: float = 150.0  # metres a camera watches usefully (identification range of the camera model)
    fov: float = 360.0  # degrees; 360 = dome / PTZ; below 360 the candidate is offered once per road heading
    candidate_spacing: float = 50.0  # metres between candidate sites along roads
    sample_step: float = 20.0  # metres between road-length demand samples
    road_weight: float = 1.0  # weight per metre of an ordinary road (main roads x ROAD_CLASSES factor)
    poi_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_POI_WEIGHTS))
    mandatory_kinds: frozenset[str] = DEFAULT_MANDATORY
    intersections: bool = True  # intersections as demand points (and candidates)
    along_roads: bool = False  # coverage measured along the road network (buildings block the view), roadcover.py

    def validate(self) -> None:
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise SitingInputError(f"覆盖半径必须大于 0 / radius must be > 0 (got {self.radius})")
        if not 0 < self.fov <= 360:
            raise SitingInputError(f"视场角须在 (0, 360] / field of view must be in (0, 360] (got {self.fov})")
        if self.radius > MAX_RADIUS:
            raise SitingInputError(f"覆盖半径不超过 {MAX_RADIUS:.0f} 米 / radius must be ≤ {MAX_RADIUS:.0f} m "
                                   f"(got {self.radius})")
        if self.candidate_spacing <= 0 or self.sample_step <= 0:
            raise SitingInputError("间距必须大于 0 / spacings must be > 0")
        bad = [k for k, w in {"road_weight": self.road_weight, **self.poi_weights}.items()
               if not (math.isfinite(w) and w >= 0)]
        if bad:
            raise SitingInputError("权重须为有限且不小于 0 的数 / weights must be finite and ≥ 0: " + ", ".join(bad))


@dataclass
class Demand:
    xy: np.ndarray  # (n, 2) metres
    weight: np.ndarray  # (n,)
    mandatory: np.ndarray  # (n,) bool
    kind: list[str]  # "road" or a POI kind
    ids: list[str]  # POI id, or road id + "#k" for road samples
    names: list[str]
    road_m: np.ndarray  # metres of road the sample stands for (0 for POIs)
    seg: np.ndarray  # (n, 4) x0, y0, x1, y1 of the road piece a sample stands for (nan for POIs)

    def __len__(self) -> int:
        return len(self.weight)


@dataclass
class Candidates:
    xy: np.ndarray  # (m, 2)
    heading: np.ndarray  # (m,) degrees clockwise from north; nan = all round
    ids: list[str]
    kind: list[str]  # "intersection", "road", "given"

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Problem:
    demand: Demand
    candidates: Candidates
    A: sparse.csr_matrix  # (n, m) bool: candidate j covers demand i
    pre_covered: np.ndarray  # (n,) bool: already covered by an existing camera
    params: SitingParams
    network: RoadNetwork | None = None
    existing: list[Camera] = field(default_factory=list)

    def index_of(self, site_id: str) -> int:
        try:
            return self.candidates.ids.index(site_id)
        except ValueError:
            raise SitingInputError(f"没有这个候选点位 / no candidate site {site_id!r}") from None


# ---- coverage ------------------------------------------------------------------------------------------------------
def coverage_matrix(demand_xy: np.ndarray, cand_xy: np.ndarray, radius: float | np.ndarray,
                    heading: np.ndarray | None = None, fov: float = 360.0) -> sparse.csr_matrix:
    """A[i, j] = True when demand i lies within `radius` of candidate j (and inside its field of view).

    `radius` may be one number or one per candidate. Pairs are found with a k-d tree (scipy cKDTree), so the work
    is proportional to the number of covering pairs, not to demand × candidates.
    """
    n, m = len(demand_xy), len(cand_xy)
    if n == 0 or m == 0:
        return sparse.csr_matrix((n, m), dtype=bool)
    radii = np.broadcast_to(np.asarray(radius, float), (m,))
    rmax = float(radii.max())
    dtree, ctree = cKDTree(demand_xy), cKDTree(cand_xy)
    pairs = ctree.sparse_distance_matrix(dtree, rmax, output_type="ndarray")  # zero distances kept
    rows, cols, dist = pairs["j"], pairs["i"], pairs["v"]
    keep = dist <= radii[cols] + 1e-9
    if heading is not None and fov < 360:
        dx = demand_xy[rows, 0] - cand_xy[cols, 0]
        dy = demand_xy[rows, 1] - cand_xy[cols, 1]
        bearing = np.degrees(np.arctan2(dx, dy)) % 360.0
        h = heading[cols]
        off = np.abs((bearing - h + 180.0) % 360.0 - 180.0)
        keep &= np.isnan(h) | (off <= fov / 2 + 1e-9) | (dist < 1e-6)
    rows, cols = rows[keep], cols[keep]
    A = sparse.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(n, m))
    A.sum_duplicates()
    A.sort_indices()
    return A


# ---- demand and candidates from a network ---------------------------------------------------------------------------
def _sample_polyline(xy: np.ndarray, step: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every `step` metres along a polyline starting at `offset`, and their cumulative distance."""
    seg = np.hypot(*np.diff(xy, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total <= 0:
        return np.empty((0, 2)), np.empty(0)
    s = np.arange(offset, total + 1e-9, step)
    return _at(xy, cum, s), s


def _at(xy: np.ndarray, cum: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.column_stack([np.interp(s, cum, xy[:, 0]), np.interp(s, cum, xy[:, 1])])


def road_demand(net: RoadNetwork, params: SitingParams) -> Demand:
    """Road-length demand: one sample per `sample_step` metres of road; weight = metres × road-class factor."""
    xys, weights, ids, names, lens, segs = [], [], [], [], [], []
    for road in net.roads:
        seg = np.hypot(*np.diff(road.xy, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        total = cum[-1]
        if total <= 0:
            continue
        k = max(1, math.ceil(total / params.sample_step))
        edges = np.linspace(0.0, total, k + 1)
        mids = (edges[:-1] + edges[1:]) / 2
        length = np.diff(edges)
        xys.append(_at(road.xy, cum, mids))
        a, b = _at(road.xy, cum, edges[:-1]), _at(road.xy, cum, edges[1:])
        segs.append(np.hstack([a, b]))
        lens.append(length)
        weights.append(length * params.road_weight * ROAD_CLASSES.get(road.highway, 1.0))
        ids += [f"{road.id}#{q}" for q in range(k)]
        names += [road.name] * k
    if not xys:
        return _empty_demand()
    n = len(ids)
    return Demand(np.vstack(xys), np.concatenate(weights), np.zeros(n, bool), ["road"] * n, ids, names,
                  np.concatenate(lens), np.vstack(segs))


def _empty_demand() -> Demand:
    return Demand(np.empty((0, 2)), np.empty(0), np.empty(0, bool), [], [], [], np.empty(0), np.empty((0, 4)))


def poi_demand(pois: list[Poi], params: SitingParams) -> Demand:
    if not pois:
        return _empty_demand()
    n = len(pois)
    w = np.array([p.weight if p.weight is not None else params.poi_weights.get(p.kind, 1.0) for p in pois])
    mand = np.array([p.mandatory if p.mandatory is not None else p.kind in params.mandatory_kinds for p in pois])
    return Demand(np.array([[p.x, p.y] for p in pois], float), w, mand, [p.kind for p in pois],
                  [p.id for p in pois], [p.name for p in pois], np.zeros(n), np.full((n, 4), np.nan))


def concat_demand(*parts: Demand) -> Demand:
    parts = tuple(p for p in parts if len(p))
    if not parts:
        return _empty_demand()
    return Demand(np.vstack([p.xy for p in parts]), np.concatenate([p.weight for p in parts]),
                  np.concatenate([p.mandatory for p in parts]), sum((p.kind for p in parts), []),
                  sum((p.ids for p in parts), []), sum((p.names for p in parts), []),
                  np.concatenate([p.road_m for p in parts]), np.vstack([p.seg for p in parts]))


def intersection_pois(net: RoadNetwork) -> list[Poi]:
    names: dict[str, set[str]] = {}
    for road in net.roads:
        for node in road.nodes:
            if road.name:
                names.setdefault(node, set()).add(road.name)
    return [Poi(f"n{node}", "intersection", " / ".join(sorted(names.get(node, ()))), *net.node_xy[node])
            for node in net.intersections()]


def _headings_at(net: RoadNetwork) -> dict[tuple[int, int], list[float]]:
    """Directions (degrees from north) of the road segments leaving every vertex, keyed by rounded position."""
    out: dict[tuple[int, int], list[float]] = {}
    for road in net.roads:
        for k in range(len(road.xy)):
            for nb in (k - 1, k + 1):
                if 0 <= nb < len(road.xy):
                    d = road.xy[nb] - road.xy[k]
                    key = (round(road.xy[k][0]), round(road.xy[k][1]))
                    out.setdefault(key, []).append(math.degrees(math.atan2(d[0], d[1])) % 360)
    return out


def road_candidates(net: RoadNetwork, params: SitingParams) -> Candidates:
    """Intersections plus points every `candidate_spacing` m along each road (merged when within 5 m)."""
    xy: list[tuple[float, float]] = []
    ids: list[str] = []
    kind: list[str] = []
    dirs: list[list[float]] = []
    seen: dict[tuple[int, int], int] = {}
    headings = _headings_at(net)

    def add(x: float, y: float, sid: str, k: str, hs: list[float]) -> None:
        key = (round(x / 5), round(y / 5))
        if key in seen:
            return
        seen[key] = len(ids)
        xy.append((x, y))
        ids.append(sid)
        kind.append(k)
        dirs.append(hs)

    if params.intersections:
        for node in net.intersections():
            x, y = net.node_xy[node]
            add(x, y, f"N{node}", "intersection", headings.get((round(x), round(y)), [0.0]))
    for road in net.roads:
        seg = np.hypot(*np.diff(road.xy, axis=0).T)
        total = float(seg.sum())
        if total <= 0:
            continue
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        k = max(1, round(total / params.candidate_spacing))
        s = np.linspace(0.0, total, k + 1)
        pts = _at(road.xy, cum, s)
        for q, (x, y) in enumerate(pts):
            # the road direction at this point, both ways
            pos = min(int(np.searchsorted(cum, s[q], side="right")) - 1, len(seg) - 1)
            d = road.xy[pos + 1] - road.xy[pos]
            h = math.degrees(math.atan2(d[0], d[1])) % 360
            add(float(x), float(y), f"{road.id.upper()}-{q}", "road", [h, (h + 180) % 360])
    return expand_headings(np.array(xy, float).reshape(-1, 2), ids, kind, dirs, params.fov)


def expand_headings(xy: np.ndarray, ids: list[str], kind: list[str], dirs: list[list[float]],
                    fov: float) -> Candidates:
    """One candidate per site when the camera sees all round; otherwise one per distinct heading, id `SITE@deg`."""
    if fov >= 360:
        return Candidates(xy, np.full(len(ids), np.nan), ids, kind)
    out_xy, out_h, out_ids, out_kind = [], [], [], []
    for k, sid in enumerate(ids):
        hs = sorted({round(h) % 360 for h in dirs[k]}) or [0]
        for h in hs:
            out_xy.append(xy[k])
            out_h.append(float(h))
            out_ids.append(f"{sid}@{h}")
            out_kind.append(kind[k])
    return Candidates(np.array(out_xy, float).reshape(-1, 2), np.array(out_h, float), out_ids, out_kind)


def check_weights(demand: Demand) -> None:
    """Every demand weight finite and ≥ 0, else SitingInputError naming the demand points (the readers check each
    file row; this guards problems built in code)."""
    bad = np.flatnonzero(~np.isfinite(demand.weight) | (demand.weight < 0))
    if len(bad):
        names = ", ".join(f"{demand.ids[i]}={demand.weight[i]:g}" for i in bad[:10])
        raise SitingInputError(f"{len(bad)} 个需求点权重无效（须为有限且不小于 0）/ {len(bad)} demand points with an "
                               f"invalid weight (must be finite and ≥ 0): {names}")


def given_candidates(sites: list[Site], fov: float) -> Candidates:
    """The planner's own sites as candidates: all round (fov 360), at the given heading, or — for a narrower camera
    with no heading given — once per 45° (`SITE@deg`), the solver choosing the direction."""
    dirs = [[s.heading] if s.heading is not None else [float(a) for a in range(0, 360, 45)] for s in sites]
    return expand_headings(np.array([[s.x, s.y] for s in sites], float).reshape(-1, 2), [s.id for s in sites],
                           [s.kind for s in sites], dirs, fov)


def build_problem(net: RoadNetwork, params: SitingParams | None = None, *, extra_pois: list[Poi] | None = None,
                  existing: list[Camera] | None = None, candidates: Candidates | None = None,
                  sites: list[Site] | None = None) -> Problem:
    """The siting problem: demand (POIs + road length), candidates (generated along the roads, or the planner's
    own `sites`, or `candidates` as given), coverage within the radius (straight line, or along the roads)."""
    params = params or SitingParams()
    params.validate()
    pois = (intersection_pois(net) if params.intersections else []) + list(net.pois) + list(extra_pois or [])
    demand = concat_demand(poi_demand(pois, params), road_demand(net, params))
    check_weights(demand)
    if candidates is not None:
        cands = candidates
    elif sites:
        cands = given_candidates(sites, params.fov)
    else:
        cands = road_candidates(net, params)
    if len(cands) == 0:
        raise SitingInputError("没有候选点位 / no candidate sites")
    A = coverage_matrix(demand.xy, cands.xy, params.radius, cands.heading, params.fov)
    if params.along_roads:
        from anfang.siting.roadcover import along_roads

        A = along_roads(A, demand.xy, cands.xy, params.radius, net, spacing=min(10.0, params.sample_step / 2))
    cams = list(net.cameras) + list(existing or [])
    pre = np.zeros(len(demand), bool)
    if cams:
        cxy = np.array([[c.x, c.y] for c in cams], float)
        # each existing camera is its own column: its own range, field of view and heading
        radii = np.array([c.radius or params.radius for c in cams], float)
        cover = sparse.hstack([coverage_matrix(demand.xy, cxy[k:k + 1], radii[k],
                                               None if cam.fov >= 360 else np.array([cam.heading]), cam.fov)
                               for k, cam in enumerate(cams)]).tocsr()
        if params.along_roads:
            from anfang.siting.roadcover import along_roads

            cover = along_roads(cover, demand.xy, cxy, radii, net, spacing=min(10.0, params.sample_step / 2))
        pre = np.asarray(cover.sum(axis=1)).ravel() > 0
    return Problem(demand, cands, A, pre, params, net, cams)


# ---- the reduced instance the solvers see -------------------------------------------------------------------------
@dataclass
class Instance:
    """What the solvers optimise: rows are merged demand (identical coverage sets summed), columns candidates.

    `row_of[i]` is the merged row of original demand i, or -1 when i needs no decision (already covered by an
    existing camera, or not coverable by any candidate).
    """

    A: sparse.csr_matrix  # (r, m) bool
    At: sparse.csr_matrix  # (m, r) bool
    w: np.ndarray  # (r,) summed weights
    mandatory: np.ndarray  # (r,) bool
    row_of: np.ndarray  # (n,) int
    n_original: int

    @property
    def m(self) -> int:
        return self.A.shape[1]

    @property
    def r(self) -> int:
        return self.A.shape[0]


def reduce_instance(A: sparse.csr_matrix, w: np.ndarray, mandatory: np.ndarray | None = None,
                    skip: np.ndarray | None = None, seed: int = 0x5171) -> Instance:
    """Drop rows that need no decision and merge rows with identical coverage sets (weights summed, mandatory if
    any is). Identical sets are found by hashing each row's column set with random 64-bit keys (sum and xor of
    keys, plus the row length), all vectorised; a collision needs equal length, sum and xor of random keys."""
    A = sparse.csr_matrix(A, dtype=bool)
    A.sort_indices()
    n, m = A.shape
    mandatory = np.zeros(n, bool) if mandatory is None else np.asarray(mandatory, bool)
    nnz = np.diff(A.indptr)
    live = nnz > 0
    if skip is not None:
        live &= ~np.asarray(skip, bool)
    rng = np.random.default_rng(seed)
    keys = rng.integers(1, 2**63 - 1, size=m, dtype=np.int64).astype(np.uint64)
    vals = keys[A.indices]
    starts = A.indptr[:-1]
    h_sum = np.zeros(n, np.uint64)
    h_xor = np.zeros(n, np.uint64)
    has = nnz > 0
    if vals.size:
        with np.errstate(over="ignore"):
            h_sum[has] = np.add.reduceat(vals, starts[has])
        h_xor[has] = np.bitwise_xor.reduceat(vals, starts[has])
    idx = np.flatnonzero(live)
    sig = np.column_stack([nnz[idx].astype(np.uint64), h_sum[idx], h_xor[idx]])
    uniq, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    r = len(uniq)
    merged_w = np.bincount(inverse, weights=w[idx], minlength=r)
    merged_mand = np.bincount(inverse, weights=mandatory[idx].astype(float), minlength=r) > 0
    rows = idx[first]
    Ar = A[rows]
    row_of = np.full(n, -1, np.int64)
    row_of[idx] = inverse
    return Instance(Ar.tocsr(), Ar.T.tocsr(), merged_w, merged_mand, row_of, n)


def problem_instance(problem: Problem) -> Instance:
    return reduce_instance(problem.A, problem.demand.weight, problem.demand.mandatory, skip=problem.pre_covered)
