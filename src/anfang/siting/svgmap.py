"""The plan as an inline SVG map: roads, blind road pieces, coverage circles (or sectors), sites, points of
interest. Pure string building (no tiles, no CDN, no JavaScript): the console works on a network with no internet.
"""

from __future__ import annotations

import math

import numpy as np
from markupsafe import Markup, escape

from anfang.siting.network import POI_KINDS
from anfang.siting.plan import Plan

WIDTH = 860


def _sector(x: float, y: float, r: float, heading: float, fov: float) -> str:
    a0, a1 = math.radians(heading - fov / 2), math.radians(heading + fov / 2)
    # screen y grows downwards: a bearing θ (clockwise from north) is (sin θ, −cos θ)
    p0 = (x + r * math.sin(a0), y - r * math.cos(a0))
    p1 = (x + r * math.sin(a1), y - r * math.cos(a1))
    large = 1 if fov > 180 else 0
    return f"M{x:.1f},{y:.1f} L{p0[0]:.1f},{p0[1]:.1f} A{r:.1f},{r:.1f} 0 {large} 1 {p1[0]:.1f},{p1[1]:.1f} Z"


HIGHWAYS = {"motorway": "高速公路", "trunk": "快速路", "primary": "主干道", "secondary": "次干道", "tertiary": "支路",
            "unclassified": "乡村道路", "residential": "居住区道路", "living_street": "生活街道", "service": "服务道路",
            "track": "机耕路", "path": "小路", "footway": "人行道", "pedestrian": "步行街"}


def plan_svg(plan: Plan, lang: str = "zh-CN") -> Markup:
    problem = plan.problem
    if problem is None or problem.network is None:
        return Markup("")
    zh = lang.startswith("zh")

    def way(highway: str) -> str:
        return HIGHWAYS.get(highway, "道路") if zh else highway
    net = problem.network
    x0, y0, x1, y1 = net.bounds()
    pad = max(plan.radius * 0.3, 30.0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    span = max(x1 - x0, y1 - y0, 1.0)
    k = WIDTH / span
    height = max(200, int((y1 - y0) * k))

    def sx(x: float) -> float:
        return (x - x0) * k

    def sy(y: float) -> float:
        return (y1 - y) * k

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="siting-map" viewBox="0 0 {WIDTH} {height}" '
           f'width="{WIDTH}" height="{height}" role="img" aria-label="点位方案 siting plan">',
           f'<rect class="bg" x="0" y="0" width="{WIDTH}" height="{height}" fill="#f7f9fb"/>']
    out.append('<g class="coverage">')
    for s in plan.sites:
        cx, cy, r = sx(s.x), sy(s.y), plan.radius * k
        if s.heading is None or plan.fov >= 360:
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="#2e7d32" fill-opacity="0.12" '
                       'stroke="#2e7d32" stroke-opacity="0.5"/>')
        else:
            out.append(f'<path d="{_sector(cx, cy, r, s.heading, plan.fov)}" fill="#2e7d32" fill-opacity="0.12" '
                       'stroke="#2e7d32" stroke-opacity="0.5"/>')
    out.append('</g><g class="roads">')
    for road in net.roads:
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in road.xy)
        wide = 4 if road.highway in {"motorway", "trunk", "primary", "secondary", "tertiary"} else 2.5
        out.append(f'<polyline class="road" points="{pts}" fill="none" stroke="#8a97a8" stroke-width="{wide}" '
                   f'stroke-linecap="round"><title>{escape(road.name or road.id)} ({escape(way(road.highway))})</title>'
                   '</polyline>')
    out.append('</g><g class="blind-roads">')
    for seg in np.asarray(plan.blind_segments).reshape(-1, 4):
        out.append(f'<line class="blind" x1="{sx(seg[0]):.1f}" y1="{sy(seg[1]):.1f}" x2="{sx(seg[2]):.1f}" '
                   f'y2="{sy(seg[3]):.1f}" stroke="#c0392b" stroke-width="3"/>')
    out.append('</g><g class="pois">')
    for p in plan.pois:
        cls = "poi-ok" if p.covered else "poi-blind"
        color = "#1f5fa8" if p.covered else "#c0392b"
        size = 5 if p.mandatory else 4
        tag = "circle" if p.kind == "intersection" else "rect"
        shape = (f'<rect x="{sx(p.x) - size:.1f}" y="{sy(p.y) - size:.1f}" width="{2 * size}" height="{2 * size}"'
                 if p.kind != "intersection" else f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{size - 1}"')
        kind = POI_KINDS.get(p.kind, (p.kind, p.kind))[0 if zh else 1]
        out.append(f'{shape} class="{cls}" fill="{color}" stroke="#fff"><title>{escape(p.name or p.id)} · '
                   f'{escape(kind)}{(" · 必须覆盖" if zh else " · mandatory") if p.mandatory else ""} · '
                   f'{("已覆盖" if zh else "covered") if p.covered else ("盲区" if zh else "blind")}</title></{tag}>')
    for cam in problem.existing:
        out.append(f'<circle class="existing" cx="{sx(cam.x):.1f}" cy="{sy(cam.y):.1f}" r="6" fill="#7f8c8d" '
                   f'stroke="#fff"><title>{"现有" if zh else "existing"} {escape(cam.id)}</title></circle>')
    out.append('</g><g class="sites">')
    for s in plan.sites:
        cx, cy = sx(s.x), sy(s.y)
        fill = "#e67e22" if s.pinned else "#2e7d32"
        out.append(f'<g class="site"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" fill="{fill}" '
                   f'stroke="#fff" stroke-width="2"/><title>{escape(s.id)} · {s.covered_weight:.0f} · '
                   f'{s.road_m:.0f} m{(" · 固定" if zh else " · pinned") if s.pinned else ""}</title></g>')
    # scale bar: 100 m (or 500 m on large maps)
    bar = 500 if span > 3000 else 100
    out.append(f'</g><g class="scale"><line x1="12" y1="{height - 14}" x2="{12 + bar * k:.1f}" y2="{height - 14}" '
               f'stroke="#333" stroke-width="2"/><text x="12" y="{height - 20}" font-size="11" fill="#333">{bar} m'
               '</text></g></svg>')
    return Markup("".join(out))
