"""A demo village for the console's siting page: a main road (tertiary) with gates at both ends, a grid of lanes,
a school, a market and a construction site, near Sanming (117.64° E, 26.26° N). Deterministic."""

from __future__ import annotations

import io
import math

from anfang.siting.network import RoadNetwork, read_osm_xml

LON0, LAT0 = 117.64, 26.26


def demo_osm() -> str:
    m_lat = 1 / 111_195.08
    m_lon = m_lat / math.cos(math.radians(LAT0))
    nodes: dict[int, tuple[float, float, dict[str, str]]] = {}
    ways: list[tuple[int, list[int], str, str]] = []

    def node(nid: int, x: float, y: float, **tags: str) -> int:
        nodes[nid] = (x, y, tags)
        return nid

    # main road west–east with gates, gently bending
    main = [node(1 + k, -900 + 150 * k, 40 * math.sin(k / 2), **({"barrier": "gate", "name": "村口"}
                                                                 if k in (0, 12) else {})) for k in range(13)]
    ways.append((100, main, "tertiary", "居安路"))
    # lanes north and south off the main road at every other node
    nid = 100
    for k in range(2, 11, 2):
        x0, y0, _ = nodes[main[k]]
        north = [main[k]] + [node(nid := nid + 1, x0 + 5 * j, y0 + 120 * j) for j in range(1, 4)]
        south = [main[k]] + [node(nid := nid + 1, x0 - 5 * j, y0 - 110 * j) for j in range(1, 3)]
        ways.append((200 + k, north, "residential", f"北巷{k // 2}"))
        ways.append((300 + k, south, "residential", f"南巷{k // 2}"))
    # a back street joining the lanes' northern ends
    tops = [w[1][-1] for w in ways if 200 <= w[0] < 300]
    ways.append((400, tops, "residential", "后街"))
    node(900, -150, 200, amenity="school", name="村小学")
    node(901, 300, -60, amenity="marketplace", name="集市")
    node(902, 520, 260, landuse="construction", name="安置房工地")
    node(903, -620, -150, amenity="fuel", name="加油站")
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="anfang-demo">']
    for i, (x, y, tags) in nodes.items():
        t = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        out.append(f'<node id="{i}" lat="{LAT0 + y * m_lat:.7f}" lon="{LON0 + x * m_lon:.7f}">{t}</node>')
    for wid, refs, highway, name in ways:
        nd = "".join(f'<nd ref="{r}"/>' for r in refs)
        out.append(f'<way id="{wid}">{nd}<tag k="highway" v="{highway}"/><tag k="name" v="{name}"/></way>')
    out.append("</osm>")
    return "\n".join(out)


def demo_network() -> RoadNetwork:
    return read_osm_xml(io.BytesIO(demo_osm().encode()), source="演示村 / demo village")
