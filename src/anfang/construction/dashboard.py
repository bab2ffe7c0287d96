"""The city dashboard (大屏): one screen with Sanming's counties on a map, progress against the plan, online rates,
today's captures and warnings.

The county boundaries are bundled data (``sanming_counties.json``: decoded once from the MIT-licensed PyPI package
echarts-china-cities-pypkg 0.0.9, with the 2021 division changes mapped to today's codes) and are drawn as
server-side SVG: nothing is fetched at run time and the page needs no script.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from sqlalchemy import func, select

from anfang.construction import operations, rollout, supervision
from anfang.core.errors import Forbidden
from anfang.registry.models import Region
from anfang.rollups.models import CaptureRollup, WarningDayRollup, WarningRollup, rollup_day
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.warnings.service import OPEN_STATES

HERE = Path(__file__).parent
MAP_FILE = HERE / "sanming_counties.json"


@cache
def county_shapes() -> dict[str, Any]:
    """``{"features": [{code (today's), name, old_code, centre, rings}], "source": ...}``."""
    d = json.loads(MAP_FILE.read_text(encoding="utf-8"))
    remap = d.get("remap", {})
    feats = [{"code": remap.get(f["code"], f["code"]), "old_code": f["code"], "name": f["name"],
              "centre": f["centre"], "rings": f["rings"]} for f in d["features"]]
    return {"features": feats, "source": d["source"], "note": d.get("note", "")}


def _colour(share: float | None) -> str:
    """Red (0) → amber → green (1) for a completion share; grey when unknown."""
    if share is None:
        return "#3a4657"
    s = max(0.0, min(share, 1.0))
    if s < 0.5:
        r, g = 200, int(60 + 2 * s * 140)
    else:
        r, g = int(200 - (s - 0.5) * 2 * 160), 200
    return f"#{r:02x}{g:02x}50"


def map_svg(values: dict[str, float | None], labels: dict[str, str], width: int = 640,
            highlight: str | None = None) -> str:
    """Sanming's counties as an inline SVG: each county filled by ``values[code]`` (a 0..1 share), labelled with
    its name and ``labels[code]``. Equirectangular projection scaled by cos(latitude)."""
    shapes = county_shapes()["features"]
    pts = [pt for f in shapes for ring in f["rings"] for pt in ring]
    lon0, lon1 = min(p[0] for p in pts), max(p[0] for p in pts)
    lat0, lat1 = min(p[1] for p in pts), max(p[1] for p in pts)
    k = math.cos(math.radians((lat0 + lat1) / 2))
    pad = 12
    scale = (width - 2 * pad) / ((lon1 - lon0) * k)
    height = int((lat1 - lat0) * scale + 2 * pad)

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return pad + (lon - lon0) * k * scale, pad + (lat1 - lat) * scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="city-map" role="img" '
           f'aria-label="三明市各县（市、区）建设进度地图" data-testid="city-map">']
    done: set[str] = set()
    for f in shapes:
        d = "".join("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in (xy(*p) for p in ring)) + "Z" for ring in f["rings"])
        v = values.get(f["code"])
        stroke = "#ffd24d" if highlight and f["code"] == highlight else "#0b1420"
        out.append(f'<path d="{d}" fill="{_colour(v)}" stroke="{stroke}" stroke-width="1.2" '
                   f'data-county="{f["code"]}"><title>{escape(f["name"])} {escape(labels.get(f["code"], ""))}'
                   f'</title></path>')
    for f in shapes:
        if f["code"] in done:
            continue
        done.add(f["code"])
        same = [g for g in shapes if g["code"] == f["code"]]
        lon = sum(g["centre"][0] for g in same) / len(same)
        lat = sum(g["centre"][1] for g in same) / len(same)
        x, y = xy(lon, lat)
        name = {"350404": "三元区", "350405": "沙县区"}.get(f["code"], f["name"])
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" class="map-name">{escape(name)}</text>')
        if labels.get(f["code"]):
            out.append(f'<text x="{x:.1f}" y="{y + 15:.1f}" text-anchor="middle" class="map-value">'
                       f'{escape(labels[f["code"]])}</text>')
    out.append("</svg>")
    return "".join(out)


def _county_filter(p: Principal) -> str | None:
    if p.role == Role.city_admin:
        return None
    if p.role == Role.county_admin and p.county_code:
        return p.county_code
    raise Forbidden("大屏仅供市、县级管理员 / city and county admins only")


def figures(store: Store, p: Principal, plan: list[supervision.PlanRow], now: datetime | None = None) \
        -> dict[str, Any]:
    """All figures of the dashboard; a county admin gets his county's (the map still draws every outline)."""
    county = _county_filter(p)
    now = now or utcnow()
    if county:
        plan = [r for r in plan if r.county_code == county]
    from anfang.construction.service import device_scope

    scope = device_scope(p)
    online_today = {r.code: r for r in operations.daily_online_rates(store, now, "county", scope)}
    day = rollup_day(now)  # today in Beijing time: the rollups' day, the day the console shows
    # a county admin's plan rows are his county's, whose rate is the same with or without his scope: one read
    progress = supervision.measure_progress(store, now, {c: r.rate for c, r in online_today.items()})
    standings = supervision.rank_counties(plan, progress, now.month)
    with store.session() as s:
        names = dict(s.execute(select(Region.code, Region.name).where(Region.level == "county")).all())
        # counted from the rollups kept by the writes' triggers, never from the captures or warnings themselves
        captures: dict[str, int] = defaultdict(int)
        for code, n in s.execute(select(CaptureRollup.community_code, func.sum(CaptureRollup.n))
                                 .where(CaptureRollup.day == day).group_by(CaptureRollup.community_code)):
            if code and (county is None or code.startswith(county)):
                captures[code[:6]] += int(n or 0)
        warn_today: dict[str, int] = defaultdict(int)
        warn_open: dict[str, int] = defaultdict(int)
        today_q = select(WarningDayRollup.county_code, func.sum(WarningDayRollup.n)).where(
            WarningDayRollup.day == day).group_by(WarningDayRollup.county_code)
        open_q = select(WarningRollup.county_code, func.sum(WarningRollup.n)).where(
            WarningRollup.state.in_(OPEN_STATES)).group_by(WarningRollup.county_code)
        if county:
            today_q = today_q.where(WarningDayRollup.county_code == county)
            open_q = open_q.where(WarningRollup.county_code == county)
        for code, n in s.execute(today_q):
            warn_today[code or "—"] += int(n or 0)
        for code, n in s.execute(open_q):
            warn_open[code or "—"] += int(n or 0)
    dev_scope = scope
    early = rollout.early_target(store, dev_scope)
    # the village tallies are computed once a minute for the whole city (rollout.cached_village_tallies)
    tallies, tallies_at = rollout.cached_village_tallies(store, (lambda c: c.startswith(county)) if county else None)
    county_tallies = {t.code: t for t in rollout.roll_up(tallies, "county")}
    target = rollout.house_share_target(now.year)
    rows = []
    for st in sorted(standings, key=lambda s: (s.rank, s.plan.county_code)):
        c = st.plan.county_code
        o = online_today.get(c)
        t = county_tallies.get(c)
        rows.append({"rank": st.rank, "code": c, "name": st.plan.county or names.get(c, c), "score": st.score,
                     "lagging": st.lagging, "plan_communities": st.plan.communities,
                     "built": st.progress.communities_built, "accepted": st.progress.communities_accepted,
                     "community_share": st.community_share, "plan_channels": st.plan.channels,
                     "channels": st.progress.channels_built, "channel_share": st.channel_share,
                     "online_today": o.rate if o else None, "devices": o.devices if o else 0,
                     "captures_today": captures.get(c, 0), "warnings_today": warn_today.get(c, 0),
                     "warnings_open": warn_open.get(c, 0),
                     "house_share": t.house_share if t else None})
    share = {r["code"]: (r["community_share"] + r["channel_share"]) / 2 for r in rows}
    labels = {r["code"]: f"{share[r['code']]:.0%}" for r in rows}
    devices = sum(r["devices"] for r in rows)
    online = [(r["online_today"], r["devices"]) for r in rows if r["online_today"] is not None]
    totals = {"plan_communities": sum(r["plan_communities"] for r in rows),
              "built": sum(r["built"] for r in rows), "accepted": sum(r["accepted"] for r in rows),
              "plan_channels": sum(r["plan_channels"] for r in rows), "channels": sum(r["channels"] for r in rows),
              "online_today": (sum(a * n for a, n in online) / sum(n for _, n in online)) if online and devices
              else None,
              "captures_today": sum(captures.values()), "warnings_today": sum(warn_today.values()),
              "warnings_open": sum(warn_open.values()), "house_target": target,
              "house_share": (sum(t.with_camera for t in county_tallies.values())
                              / max(1, sum(t.buildings for t in county_tallies.values())))
              if any(t.buildings for t in county_tallies.values()) else None}
    return {"now": now.isoformat(), "day": day, "month": now.month, "year": now.year,
            "village_tallies_at": tallies_at.isoformat(),
            "counties": rows, "totals": totals, "early": early,
            "map_svg": map_svg(share, labels, highlight=county), "map_source": county_shapes()["source"],
            "pro_rata": now.month / 12}
