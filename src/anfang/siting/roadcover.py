"""Coverage along the road network (``--along-roads``): in a village street lined with houses a camera sees along
the road, not through the buildings, so a demand point counts as covered only when the distance *along the roads*
from the camera to it is within the range — the straight-line disc is an upper bound that this filters.

The roads become a graph (scipy sparse) of their vertices plus points every ``spacing`` metres, joined at shared
OSM nodes; camera sites and demand points snap to the nearest graph point (cKDTree), the snap distance counted as
walked. Shortest paths: scipy.sparse.csgraph.dijkstra from every site, cut off at the range, in chunks so memory
stays bounded (chunk rows × graph points ≤ 2·10⁷ floats). Work ∝ sites × graph points within the range.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from anfang.siting.network import RoadNetwork

CHUNK_CELLS = 20_000_000


def road_graph(net: RoadNetwork, spacing: float) -> tuple[np.ndarray, sparse.csr_matrix]:
    """(points (V, 2), symmetric graph of edge lengths) of the densified road network."""
    index: dict[str, int] = {}
    pts: list[tuple[float, float]] = []
    src: list[int] = []
    dst: list[int] = []
    length: list[float] = []

    def vertex(node: str) -> int:
        if node not in index:
            index[node] = len(pts)
            pts.append(net.node_xy[node])
        return index[node]

    for road in net.roads:
        prev = vertex(road.nodes[0])
        for k in range(1, len(road.nodes)):
            end = vertex(road.nodes[k])
            a, b = np.asarray(pts[prev]), np.asarray(pts[end])
            seg = float(np.hypot(*(b - a)))
            pieces = max(1, int(np.ceil(seg / spacing)))
            for q in range(1, pieces + 1):
                if q == pieces:
                    nxt = end
                else:
                    pts.append(tuple(a + (b - a) * q / pieces))  # type: ignore[arg-type]
                    nxt = len(pts) - 1
                src.append(prev)
                dst.append(nxt)
                length.append(seg / pieces)
                prev = nxt
    n = len(pts)
    # zero-length edges would vanish from a sparse matrix: give them a negligible length
    w = np.maximum(np.asarray(length, float), 1e-6)
    g = sparse.coo_matrix((np.concatenate([w, w]), (np.array(src + dst), np.array(dst + src))), shape=(n, n))
    return np.asarray(pts, float).reshape(-1, 2), g.tocsr()


def along_roads(A: sparse.csr_matrix, demand_xy: np.ndarray, site_xy: np.ndarray, radius: float | np.ndarray,
                net: RoadNetwork, spacing: float = 10.0) -> sparse.csr_matrix:
    """The pairs of ``A`` (demand × sites, from the straight-line test) whose distance along the roads is within
    the site's radius (one number or one per site)."""
    n, m = A.shape
    if A.nnz == 0 or not net.roads:
        return A
    pts, g = road_graph(net, spacing)
    tree = cKDTree(pts)
    d_snap, d_vert = tree.query(demand_xy)
    s_snap, s_vert = tree.query(site_xy)
    radii = np.broadcast_to(np.asarray(radius, float), (m,))
    coo = A.tocoo()
    rows, cols = coo.row, coo.col
    uniq, pos = np.unique(s_vert[cols], return_inverse=True)
    chunk = max(1, CHUNK_CELLS // max(1, len(pts)))
    keep = np.zeros(len(rows), bool)
    tol = spacing / 2  # snapping moves a point along its road by at most half the spacing
    limit = float(radii.max()) + tol
    for start in range(0, len(uniq), chunk):
        sel = (pos >= start) & (pos < start + chunk)
        if not sel.any():
            continue
        dist = dijkstra(g, directed=False, indices=uniq[start:start + chunk], limit=limit)
        r, c = rows[sel], cols[sel]
        along = dist[pos[sel] - start, d_vert[r]] + s_snap[c] + d_snap[r]
        keep[sel] = along <= radii[c] + tol
    out = sparse.csr_matrix((np.ones(int(keep.sum()), bool), (rows[keep], cols[keep])), shape=(n, m))
    out.sort_indices()
    return out


__all__ = ["along_roads", "road_graph"]
