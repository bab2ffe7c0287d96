"""Authorisation matrix: every role × every endpoint of the app's route table × in / out of jurisdiction.

The world (tests/world.py) has 列东社区 and 下洋村 in 三元区 and 府西社区 in 沙县区; every login but the city admin's
sits in 三元区 / 列东社区 (the resident lives in 列东 1栋101). For each route the policy table (tests/authz_policy.py)
declares which roles may call it and how jurisdiction applies:

* ``object``: the route names one record. The "in" probe targets a record in 列东 1栋101 (inside every role's
  jurisdiction), the "out" probe the matching record in 府西社区. Allowed roles must succeed on "in"; on "out" only
  the city admin may; everyone else must be denied.
* ``none`` (lists, pages, figures): they filter by jurisdiction themselves. Each role asks once plainly and once
  with every search filter a list might take pointed at 府西 (``OUT_FILTERS``): answered (empty) or refused, never
  with 府西's records.

A denial is 401, 403 or 404 carrying the JSON error object (console pages: their HTML error page, or the redirect
to /login for anonymous visitors) — and never data: no response to any role other than the city admin may contain a
marker of a record outside that role's jurisdiction (names, ID numbers, phones, plates, addresses of 府西 and, for
the roles below county level, of 下洋村 and of the neighbour households).

The table must classify every route: a route added to the app without an entry fails
``test_every_route_is_classified``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from abuse import AbuseApp, RouteInfo, abuse_app, is_error_object, module_db, routes, scratch_app
from anfang.doorplates.ratelimit import RateLimiter
from authz_policy import POLICY, ROLES, Ctx, Rule, build_ctx, leak_markers, request_for

with scratch_app() as _app:
    ROUTES: list[RouteInfo] = routes(_app)
# Reads first, destructive methods last: one world serves the whole module.
_ORDER = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}
ROUTES.sort(key=lambda r: (_ORDER.get(r.method, 1), r.path))
OBSERVE = os.environ.get("ANFANG_AUTHZ_OBSERVE")  # a file: record what happens instead of asserting


# Every search filter a list might take, pointed at 府西社区 (沙县区): a scoped list answers these empty (or refuses).
OUT_FILTERS = {"address_prefix": "350405001001", "prefix": "福建省三明市沙县区", "community_code": "350405001001",
               "county_code": "350405", "town_code": "350405001000", "name": "黄磊", "plate": "闽GD23456",
               "credit_code": "91350405MA2Y00002", "q": "府西", "device": "door-fx-1"}


def test_every_route_is_classified() -> None:
    keys = {r.key for r in ROUTES}
    missing = sorted(keys - set(POLICY))
    stale = sorted(set(POLICY) - keys)
    assert not missing, "routes without an authorisation policy (add them to tests/authz_policy.py):\n" + \
        "\n".join(missing)
    assert not stale, "policy entries for routes that no longer exist:\n" + "\n".join(stale)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    tmp: Path = tmp_path_factory.mktemp("authz")
    with module_db(request.param, tmp) as url, abuse_app(url, tmp) as a:
        yield build_ctx(a)


def _denied(route: RouteInfo, status: int, body: Any, location: str) -> bool:
    if status in (401, 403, 404):
        return route.in_schema is False or route.path.startswith("/VIID") or is_error_object(body)
    # console pages send anonymous visitors to the login page
    return status in (302, 303, 307) and location.startswith("/login")


def _body(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


@pytest.mark.parametrize("route", ROUTES, ids=[r.key for r in ROUTES])
def test_route(route: RouteInfo, ctx: Ctx) -> None:
    rule: Rule | None = POLICY.get(route.key)
    if rule is None and OBSERVE:
        rule = Rule(frozenset(ROLES))
    if rule is None:
        pytest.fail(f"{route.key} is not classified in tests/authz_policy.py")
    a: AbuseApp = ctx.app
    problems: list[str] = []
    seen: list[dict[str, Any]] = []
    if rule.scope in ("object", "both"):
        places: tuple[str, ...] = ("in", "out")
    else:  # lists and pages: also asked for the other county's records by every filter they might take
        places = ("in", "filter-out") if route.method == "GET" else ("in",)
    for role in (*ROLES, "anonymous"):
        for place in places:
            a.app.state.ratelimiter = RateLimiter()  # the plate pages' per-client limits would answer 429
            req = request_for(ctx, route, rule, role, "in" if place == "filter-out" else place)
            if place == "filter-out":
                out = {**OUT_FILTERS, "owner_person_id": a.world.person["huang"]}
                req["url"] += ("&" if "?" in req["url"] else "?") + urlencode(out)
            if rule.stream:
                status, hdrs, raw = a.first_chunk(req["method"], req["url"], req["headers"])
                resp = httpx.Response(status, headers=hdrs, content=raw)
            else:
                resp = a.client.request(**req)
            status, body = resp.status_code, _body(resp)
            location = resp.headers.get("location", "")
            allowed = role in rule.allow and (place != "out" or role == "city_admin" or rule.scope == "both")
            if place == "filter-out" and allowed and status in (403, 404) and is_error_object(body):
                allowed = False  # refusing a filter outside the jurisdiction is as good as answering it empty
            seen.append({"role": role, "place": place, "status": status})
            what = f"{role}/{place}: {status} {resp.text[:160]!r}"
            if status >= 500:
                problems.append(f"server error {what}")
            elif rule.shallow and role != "anonymous":
                pass
            elif allowed and not (status < 400 or status in rule.ok):
                problems.append(f"expected allowed, got {what}")
            elif not allowed and not _denied(route, status, body, location):
                problems.append(f"expected denied (401/403/404 + error object), got {what}")
            if role != "city_admin" and status < 500:
                markers = leak_markers(ctx, role, addresses=not rule.public_place)
                if place == "filter-out":  # search forms echo the terms: those prove nothing, the rest still count
                    markers = [m for m in markers if m not in OUT_FILTERS.values()]
                leaked = [m for m in markers if m in resp.text]
                if leaked:
                    problems.append(f"{role}/{place} response carries data outside the jurisdiction: {leaked}")
    if OBSERVE:
        with open(OBSERVE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"route": route.key, "seen": seen, "problems": problems}, ensure_ascii=False) + "\n")
        return
    assert not problems, f"{route.key}:\n" + "\n".join(problems)


def test_leak_markers_are_live(ctx: Ctx) -> None:
    """The leak check means something only if the markers appear where the data is shown: the city admin, who
    sees everything, finds them in the API and on the console pages."""
    a, w = ctx.app, ctx.app.world
    h = a.headers("city_admin")
    person = a.client.get(f"/api/persons/{w.person['huang']}", headers=h).text
    page = a.client.get(f"/persons/{w.person['huang']}", headers={"Cookie": f"anfang_session={a.tokens['city_admin']}"})
    units = a.client.get("/api/units", headers=h, params={"name": "府西"}).text
    vehicles = a.client.get("/api/vehicles", headers=h, params={"plate": "闽GD23456"}).text
    address = a.client.get(f"/api/addresses/{w.addr['fx-1']}", headers=h).text
    assert "黄磊" in person and "黄磊" in page.text and "府西物业公司" in units and "闽GD23456" in vehicles
    assert "凤岗街道府西社区1栋" in address
    police = a.client.get(f"/api/persons/{w.person['huang']}", headers=a.headers("police"))
    assert police.status_code == 404 and "黄磊" not in police.text
