"""The declared authorisation policy of every route, read by tests/test_authz_matrix.py.

Each entry: which roles may call the route (``anonymous`` = public) and how jurisdiction applies:
``object`` (one record: in-jurisdiction allowed, out-of-jurisdiction only for the city admin), ``both`` (a record
probed in and out, both answered — public plate pages show each viewer his own fields; the leak check guards them),
``none`` (lists, pages, figures: scoped by themselves; the leak check guards them). Device-facing routes allow no
logged-in role: devices authenticate with their own credentials (tests/test_injection.py probes those).

``ok`` lists statuses that count as "allowed" besides 2xx/3xx, where a state machine may refuse a repeated action
(409) or a form the probe does not fill (422) — never 401/403/404 for an allowed in-jurisdiction call, except where
stated for rooms whose records this world does not create (construction projects and work orders, approvals,
alerts): there the allowed roles are only checked not to be refused (404 = no such record).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from abuse import IOT_DEVICE, AbuseApp, RouteInfo
from anfang.core.ids import make_credit_code, make_id_number
from anfang.security.scope import Principal
from anfang.web.views import csrf_token_for

ROLES = ("city_admin", "county_admin", "police", "grid_worker", "property_staff", "resident")
ALL = frozenset(ROLES)
PUBLIC = ALL | {"anonymous"}
ADMINS = frozenset({"city_admin", "county_admin"})
STAFF = ALL - {"resident"}
WRITERS = frozenset({"city_admin", "county_admin", "police", "grid_worker"})
VERIFIERS = WRITERS
OFFICERS = frozenset({"city_admin", "county_admin", "police"})
HANDLERS = STAFF
INSTALLERS = STAFF  # door plates: property staff install and report plate state too
NOBODY: frozenset[str] = frozenset()
PRELOGIN = "prelogin-seed-for-tests"

_serial = itertools.count(100)
Body = Callable[["Ctx", str, str], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    allow: frozenset[str]
    scope: str = "none"  # object | both | none
    body: Body | None = None
    ok: frozenset[int] = frozenset()
    params: Callable[[Ctx, str, str], dict[str, Any]] | None = None  # per-probe records (e.g. a fresh victim)
    fresh_session: bool = False  # the probe spends the role's session (logout): use a fresh one
    stream: bool = False  # an endless response (SSE): only its status and first chunk are read
    query: dict[str, str] = field(default_factory=dict)  # required query parameters
    # shallow: the probe sends no valid body (rooms still being built: construction forms, approvals, TOTP codes),
    # so only "anonymous is refused, nobody gets a 5xx or out-of-jurisdiction data" is checked
    shallow: bool = False
    public_place: bool = False  # the page shows its own address to anyone (a door plate: printed on the door)


@dataclass
class Ctx:
    app: AbuseApp
    target: dict[str, dict[str, Any]] = field(default_factory=dict)  # place -> path parameter -> value


def build_ctx(a: AbuseApp) -> Ctx:
    """The records the probes name: for each path parameter, one in 列东 1栋101 ("in") and one in 府西 ("out")."""
    from anfang.doorplates.models import TipOff
    from anfang.warnings.service import Candidate

    w, st = a.world, a.app.state
    dp = st.doorplates
    city = Principal.system("authz-setup", "test")
    anon = Principal.anonymous("authz-setup", "test")
    tokens = {k: dp.plate_for(w.addr[addr]).token for k, addr in (("in", "ld-101"), ("out", "fx-101"))}
    tickets = {k: dp.report(anon, tokens[k], kind="tip", text="楼道堆放杂物") for k in tokens}
    with a.store.session() as s:
        tipoffs = {k: s.scalar(select(TipOff.id).where(TipOff.ticket == tickets[k])) for k in tickets}
    decl = {k: dp.declare(anon, tokens[k], name="申报人", id_number=make_id_number("350404", date(1991, 1, 1), n),
                          phone=None, relation="family", move_in=None) for n, k in ((701, "in"), (702, "out"))}
    warn = {}
    for k, addr in (("in", "ld-101"), ("out", "fx-101")):
        v = st.warnings.raise_warning(Candidate(
            rule="smoke.alarm", category="sensor", title="烟感报警", source=f"smoke-{k}", dedup_key=f"smoke:{k}",
            severity=1, address_id=w.addr[addr],
            notify_roles=frozenset({"police", "grid_worker", "property_staff"})))
        warn[k] = v["id"]
    watchlist = st.warnings.create_plate_watchlist(city, "盗抢车辆")
    devices = {k: st.devices.upsert("gb28181", f"35040{n}00011320000001", name="摄像机", address_id=w.addr[addr],
                                    community_code=comm, review="approved").id
               for k, n, addr, comm in (("in", 4, "ld-1", "350404001001"), ("out", 5, "fx-1", "350405001001"))}
    common: dict[str, Any] = {"kind": "door", "device_id": IOT_DEVICE, "fmt": "svg", "watchlist_id": watchlist,
                              "oid": "35040000001190000001", "iid": "1", "order_id": 1, "project_id": 1,
                              "action": "submit", "approval_id": 1, "alert_id": 1, "username": "grid",
                              "channel_id": "35040400001310000001", "job_id": "0123456789abcdef",
                              "key": "pb-35040400001310000001-1400000001", "warning_id": 1}
    place = {
        "in": dict(person_id=w.person["li"], entity="persons", record_id=w.person["li"], address_id=w.addr["ld-101"],
                   house_id=w.house["h-ld-101"], unit_id=w.unit["ld-shop"], warning_id=warn["in"], pk=devices["in"],
                   token=tokens["in"], ticket=tickets["in"], tipoff_id=tipoffs["in"], declaration_id=decl["in"],
                   community_code="350404001001"),
        "out": dict(person_id=w.person["huang"], entity="persons", record_id=w.person["huang"],
                    address_id=w.addr["fx-101"], house_id=w.house["h-fx-101"], unit_id=w.unit["fx-prop"],
                    warning_id=warn["out"], pk=devices["out"], token=tokens["out"], ticket=tickets["out"],
                    tipoff_id=tipoffs["out"], declaration_id=decl["out"], community_code="350405001001"),
    }
    return Ctx(a, {k: {**common, **v} for k, v in place.items()})


def leak_markers(ctx: Ctx, role: str, addresses: bool = True) -> list[str]:
    """Strings only a record outside role's jurisdiction carries (names, numbers, plates, full addresses)."""
    w = ctx.app.world
    out = ["黄磊", w.id_number["huang"], w.phone["huang"], "府西物业公司", "闽GD23456"]
    if addresses:
        out += ["凤岗街道府西社区1栋"]
    if role in ("police", "grid_worker", "property_staff", "resident"):
        out += ["林秀英", w.id_number["lin"], w.phone["lin"]] + (["下洋村下洋村1号"] if addresses else [])
    if role in ("grid_worker", "resident"):
        out += ["陈强", w.id_number["chen"], w.phone["chen"]]
    if role == "resident":
        out += ["王芳", w.id_number["wang"], w.phone["wang"]]
    return out


def fill(path: str, values: dict[str, Any]) -> str:
    out = path
    for name, value in values.items():
        out = out.replace("{" + name + "}", str(value))
    if "{" in out:
        raise AssertionError(f"no probe value for a path parameter of {path} (add it to build_ctx)")
    return out


def request_for(ctx: Ctx, route: RouteInfo, rule: Rule, role: str, place: str) -> dict[str, Any]:
    """The request of one probe: the role's credentials as a browser (console pages: session cookie and the form's
    CSRF token) or an API client (bearer token) would send them, the route's body, no redirect following."""
    values = ctx.target[place]
    if rule.params:
        values = {**values, **rule.params(ctx, role, place)}
    url = fill(route.path, values)
    query = dict(rule.query)
    if route.method == "GET":
        query.setdefault("reason", "权限矩阵测试")  # wide queries need a stated reason (query authorisation)
    if query:
        url += "?" + urlencode(query)
    kw: dict[str, Any] = rule.body(ctx, role, place) if rule.body else {}
    headers: dict[str, str] = {}
    token = ctx.app.tokens.get(role)
    if token and rule.fresh_session:
        token = ctx.app.login(role)
    console = not route.in_schema and not route.path.startswith("/VIID")
    if token and console:
        headers["Cookie"] = f"anfang_session={token}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    if console and route.method != "GET":
        seed = token or PRELOGIN
        if not token:
            headers["Cookie"] = f"anfang_csrf={PRELOGIN}"
        kw.setdefault("data", {})["csrf_token"] = csrf_token_for(seed)
        headers["Origin"] = "http://testserver"
    return {"method": route.method, "url": url, "headers": headers, "follow_redirects": False, **kw}


# ---- bodies ----------------------------------------------------------------------------------------------------
def _addr(ctx: Ctx, place: str, key: str = "ld-101") -> int:
    return ctx.app.world.addr[key if place == "in" else "fx" + key[2:] if key.startswith("ld") else key]


def person_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"json": {"id_number": make_id_number("350404", date(1988, 8, 8), next(_serial) % 1000),
                     "name": "新登记", "address_id": _addr(ctx, place)}}


def address_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"json": {"parent_id": _addr(ctx, place, "ld-1-1-1"), "name": f"{next(_serial)}室"}}


def house_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"json": {"address_id": _addr(ctx, place, "ld-1"), "use": "rental", "owner_name": "某人"}}


def unit_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"json": {"credit_code": make_credit_code("350404", f"MA2Y{next(_serial):05d}"), "name": "新单位",
                     "address_id": _addr(ctx, place, "ld-1")}}


def vehicle_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    owner = ctx.app.world.person["li" if place == "in" else "huang"]
    return {"json": {"plate": f"闽G{next(_serial):05d}", "owner_person_id": owner}}


def fresh_person(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    """A person made for one probe (in 列东 1栋101 or 府西 1栋101), so deleting it harms no other probe."""
    from anfang.registry.schemas import PersonIn

    city = Principal.system("authz-setup", "test")
    body = PersonIn(id_number=make_id_number("350404", date(1977, 7, 7), next(_serial) % 1000), name="待删除",
                    address_id=_addr(ctx, place))
    return {"person_id": ctx.app.app.state.registry.create_person(city, body)["id"]}


def building(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    """A building's plate (1栋 of 列东 / 府西), so revoking it leaves the room plates other probes scan."""
    return {"address_id": _addr(ctx, place, "ld-1")}


def json_body(payload: dict[str, Any]) -> Body:
    return lambda ctx, role, place: {"json": dict(payload)}


def form_body(payload: dict[str, Any]) -> Body:
    return lambda ctx, role, place: {"data": dict(payload)}


def notice_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"data": {"address_id": str(_addr(ctx, place, "ld-1")), "title": "停水通知", "body": "明日停水"}}


def device_body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
    return {"json": {"device_id": f"3504040001132{next(_serial):07d}", "name": "摄像机", "password": "cam-pass-1",
                     "community_code": "350404001001"}}


def placement_body(form: bool) -> Body:
    """Place the probed device at its own building (列东 1栋 / 府西 1栋): allowed probes change nothing."""
    def body(ctx: Ctx, role: str, place: str) -> dict[str, Any]:
        from anfang.registry.models import Address

        with ctx.app.store.session() as s:
            code = s.scalar(select(Address.code).where(Address.id == _addr(ctx, place, "ld-1")))
        return {"data": {"address_code": code}} if form else {"json": {"address_code": code}}
    return body


# ---- the table -------------------------------------------------------------------------------------------------
_R = Rule
CONFLICT = frozenset({409})
POLICY: dict[str, Rule] = {
    # public and session endpoints
    "GET /openapi.json": _R(PUBLIC),
    "GET /healthz": _R(PUBLIC),
    "GET /docs": _R(PUBLIC),
    "POST /api/auth/login": _R(NOBODY, body=json_body({"username": "nobody", "password": "wrong-password"})),
    "POST /api/auth/logout": _R(PUBLIC, fresh_session=True),  # closes only the caller's own session
    "GET /api/auth/me": _R(ALL),
    "GET /login": _R(PUBLIC),
    "POST /login": _R(NOBODY, body=form_body({"username": "nobody", "password": "wrong-password", "next": "/"})),
    "POST /logout": _R(PUBLIC, fresh_session=True),
    # 一标三实 registry API
    "GET /api/persons": _R(ALL),
    "POST /api/persons": _R(WRITERS, "object", person_body),
    "GET /api/persons/{person_id}": _R(ALL, "object"),
    "PATCH /api/persons/{person_id}": _R(WRITERS, "object", json_body({"hukou_address": "福建省三明市三元区"})),
    "DELETE /api/persons/{person_id}": _R(OFFICERS, "object", params=fresh_person),
    "POST /api/{entity}/{record_id}/verification": _R(VERIFIERS, "object", json_body({"state": "verified"})),
    "GET /api/addresses": _R(ALL),
    "GET /api/addresses/roots": _R(ALL),
    "POST /api/addresses": _R(WRITERS, "object", address_body),
    "GET /api/addresses/{address_id}": _R(ALL, "object"),
    "PATCH /api/addresses/{address_id}/plate": _R(INSTALLERS, "object", json_body({"plate_installed": True})),
    "GET /api/houses": _R(ALL),
    "POST /api/houses": _R(WRITERS, "object", house_body, CONFLICT),
    "GET /api/houses/{house_id}": _R(ALL, "object"),
    "PATCH /api/houses/{house_id}": _R(WRITERS, "object", json_body({"area_m2": 88.5})),
    "GET /api/units": _R(ALL),  # a resident's list holds the units at his own address
    "POST /api/units": _R(WRITERS, "object", unit_body),
    "GET /api/units/{unit_id}": _R(STAFF, "object"),
    "PATCH /api/units/{unit_id}": _R(WRITERS, "object", json_body({"staff_count": 4})),
    "GET /api/vehicles": _R(ALL),
    "POST /api/vehicles": _R(WRITERS, "object", vehicle_body),
    "GET /api/regions": _R(ALL),
    "GET /api/metrics": _R(ALL),
    "GET /api/metrics/below": _R(ALL, query={"metric": "plate_installed"}),
    "GET /api/export/{kind}": _R(WRITERS,  # below county level: held for approval (202, no data)
                                  params=lambda c, r, p: {"kind": "persons"}, query={"format": "csv"}),
    # devices: keys and digest, never a user's session
    "POST /api/iot/{kind}/{device_id}": _R(NOBODY, body=json_body({"event": "open", "method": "card"})),
    "GET /api/iot/report": _R(ADMINS),
    "POST /api/doorplates/access/check": _R(NOBODY, body=json_body({"pass_token": "x", "door_plate": "y"})),
    "GET /api/devices": _R(STAFF),
    "GET /api/devices/{pk}": _R(STAFF, "object"),
    "POST /api/devices": _R(ADMINS, body=device_body),
    "GET /api/devices/unplaced": _R(ADMINS),
    "POST /api/devices/{pk}/placement": _R(ADMINS, "object", body=placement_body(False)),
    "POST /api/devices/placement/import": _R(ADMINS, ok=frozenset({422})),  # the probe sends no file
    "GET /api/devices/{pk}/trace": _R(ADMINS, "object"),
    "POST /api/devices/{pk}/trace": _R(ADMINS, "object", body=json_body({"minutes": 5})),
    # early warning
    "GET /api/warnings": _R(ALL),
    "GET /api/warnings/stats": _R(ALL),
    "GET /api/warnings/stream": _R(ALL, stream=True),
    "GET /api/warnings/{warning_id}": _R(HANDLERS, "object"),
    "GET /api/warnings/{warning_id}/enrolled-photo": _R(HANDLERS, "object", ok=frozenset({404})),
    "POST /api/warnings/{warning_id}/ack": _R(HANDLERS, "object", ok=CONFLICT),
    "POST /api/warnings/{warning_id}/handle": _R(HANDLERS, "object", json_body({"feedback": "resolved"}), CONFLICT),
    "POST /api/warnings/{warning_id}/close": _R(OFFICERS, "object", ok=CONFLICT),
    "POST /api/watchlists/plates": _R(OFFICERS, body=lambda c, r, p: {"json": {"name": f"名单{next(_serial)}"}}),
    "POST /api/watchlists/plates/{watchlist_id}/entries": _R(OFFICERS, body=json_body({"plates": ["闽G88888"]})),
    "GET /warnings": _R(ALL),
    "GET /m/warnings": _R(OFFICERS),  # the officer's terminal (issue 19 item 7)
    "POST /m/warnings/{warning_id}/ack": _R(HANDLERS, "object", ok=CONFLICT),
    "POST /m/warnings/{warning_id}/handle": _R(HANDLERS, "object", form_body({"feedback": "resolved"}), CONFLICT),
}
POLICY.update({
    # door plates: the plate token is the capability; each viewer sees his own fields (the leak check guards them)
    "GET /p/{token}": _R(PUBLIC, "both", public_place=True),
    "POST /p/{token}/declare": _R(PUBLIC, "both", lambda c, r, p: {"data": {
        "name": "申报人", "id_number": make_id_number("350404", date(1992, 2, 2), next(_serial) % 1000),
        "relation": "family"}}, CONFLICT),
    "POST /p/{token}/confirm": _R(frozenset({"resident"}), "object", ok=CONFLICT),
    "POST /p/{token}/install": _R(frozenset({"city_admin", "county_admin", "police", "grid_worker",
                                             "property_staff"}), "object", form_body({"lon": "117.6", "lat": "26.26"})),
    "POST /p/{token}/patrol": _R(frozenset({"police", "grid_worker"}), "object", form_body({"note": "巡查"})),
    "POST /p/{token}/pass": _R(frozenset({"resident"}), "object", form_body({"visitor_name": "访客", "hours": "2"})),
    "POST /p/{token}/report": _R(PUBLIC, "both", form_body({"kind": "tip", "text": "楼道堆放杂物"})),
    "GET /t/{ticket}": _R(PUBLIC, "both"),
    "POST /doorplates/declarations/{declaration_id}/review": _R(frozenset({"police", "grid_worker"}), "object",
                                                               form_body({"decision": "reject", "note": "测试"}),
                                                               CONFLICT),
    "GET /doorplates": _R(STAFF),
    "POST /doorplates/tipoffs/{tipoff_id}/reply": _R(WRITERS, "object", form_body({"text": "已处理"})),
    "POST /doorplates/notices": _R(STAFF, "object", notice_body),
    "GET /doorplates/addresses/{address_id}": _R(STAFF, "object"),
    "POST /doorplates/addresses/{address_id}/revoke": _R(INSTALLERS - {"resident"}, "object",
                                                         form_body({"reason": "损坏"}), params=building),
    "GET /doorplates/sheet/{address_id}.{fmt}": _R(STAFF, "object"),
    # console (HTML) pages of the registry
    "GET /": _R(ALL),
    "GET /metrics": _R(ALL),
    "GET /metrics/below": _R(ALL, query={"metric": "plate_installed"}),
    "GET /addresses": _R(ALL),
    "GET /addresses/{address_id}": _R(ALL, "object"),
    "POST /addresses/{address_id}/plate": _R(INSTALLERS, "object", form_body({"plate_installed": "1"})),
    "GET /persons": _R(ALL),
    "GET /persons/{person_id}": _R(ALL, "object"),
    "POST /persons/{person_id}/verify": _R(VERIFIERS, "object", form_body({"state": "verified"})),
    "GET /houses": _R(ALL),
    "GET /houses/{house_id}": _R(ALL, "object"),
    "POST /houses/{house_id}/verify": _R(VERIFIERS, "object", form_body({"state": "verified"})),
    "GET /units": _R(ALL),
    "GET /units/{unit_id}": _R(STAFF, "object"),
    "POST /units/{unit_id}/verify": _R(VERIFIERS, "object", form_body({"state": "verified"})),
    "GET /vehicles": _R(ALL),
    # video devices, GA/T 1400 capture pages, siting
    "GET /devices": _R(STAFF),
    "GET /devices/{pk}": _R(STAFF, "object"),
    "GET /devices/unplaced": _R(ADMINS),
    "POST /devices/{pk}/placement": _R(ADMINS, "object", body=placement_body(True)),
    "POST /devices/placement/import": _R(ADMINS, body=form_body({})),  # no file: the page says so
    "POST /devices/{pk}/trace": _R(ADMINS, "object", body=form_body({"minutes": "5"})),
    "GET /viid/captures": _R(OFFICERS),
    "GET /viid/images/{pk}": _R(OFFICERS, ok=frozenset({404})),  # no capture in this world: 404 for officers
    "GET /viid/apes": _R(OFFICERS),
    "GET /siting": _R(STAFF),
    "POST /siting": _R(STAFF, body=form_body({"budget": "1"}), ok=frozenset({422})),  # no OSM file: 422
    "GET /siting/plan.geojson": _R(STAFF),
    "GET /siting/plan.xlsx": _R(STAFF),
    # federation: peers sign their batches (HMAC), users never push
    "POST /api/federation/ingest": _R(NOBODY, body=json_body({"node_id": "350405", "records": []})),
    "GET /api/federation/status": _R(ADMINS),
    "GET /api/federation/overview": _R(ADMINS),
    "GET /federation": _R(ADMINS),
})

# GA/T 1400 视图库: every route needs the device's digest session; a user's bearer token or cookie is no credential.
VIID_ROUTES = [
    "POST /VIID/System/Register", "POST /VIID/System/UnRegister", "POST /VIID/System/Keepalive",
    "GET /VIID/System/Time", "GET /VIID/APEs", "POST /VIID/APEs", "PUT /VIID/APEs", "GET /VIID/APEs/{oid}",
    "DELETE /VIID/APEs/{oid}", "GET /VIID/Images", "POST /VIID/Images", "GET /VIID/Images/{iid}/Data",
    "GET /VIID/Subscribes", "POST /VIID/Subscribes", "PUT /VIID/Subscribes", "GET /VIID/Subscribes/{oid}",
    "DELETE /VIID/Subscribes/{oid}", "POST /VIID/SubscribeNotifications", "GET /VIID/Dispositions",
    "POST /VIID/Dispositions", "PUT /VIID/Dispositions", "DELETE /VIID/Dispositions/{oid}",
    "POST /VIID/DispositionNotifications",
    *(f"{m} /VIID/{c}" for c in ("Faces", "MotorVehicles", "Persons", "NonMotorVehicles") for m in ("GET", "POST",
                                                                                                   "DELETE")),
    *(f"{m} /VIID/{c}/{{oid}}" for c in ("Faces", "MotorVehicles", "Persons", "NonMotorVehicles")
      for m in ("GET", "DELETE")),
]
POLICY.update({k: _R(NOBODY, body=json_body({})) for k in VIID_ROUTES})

# ---- rooms whose records this world does not make: role gates checked where the probe reaches them ------------
CONSTRUCTION_VIEW = STAFF
LIUWU_VIEWERS = frozenset({"city_admin", "county_admin", "police", "grid_worker"})
PROJECT_AUTHORS = frozenset({"city_admin", "county_admin", "property_staff"})
NOT_FOUND = frozenset({404})
SHALLOW = Rule(ALL, shallow=True)
POLICY.update({
    "GET /api/construction/tiers": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/specs": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/online-rates": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/storage/{community_code}": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/work-orders": _R(CONSTRUCTION_VIEW),
    "POST /api/construction/work-orders/scan": _R(OFFICERS),
    "POST /api/construction/work-orders/{order_id}/close": SHALLOW,
    "POST /api/construction/work-orders/{order_id}/assign": SHALLOW,
    "GET /api/construction/circular.xlsx": _R(ADMINS),
    "GET /api/construction/circular.pdf": _R(ADMINS),
    "GET /api/construction/projects": _R(CONSTRUCTION_VIEW),
    "POST /api/construction/projects": SHALLOW,
    "GET /api/construction/projects/{project_id}": _R(CONSTRUCTION_VIEW, ok=NOT_FOUND),
    "PUT /api/construction/projects/{project_id}/design": SHALLOW,
    "POST /api/construction/projects/{project_id}/actions/{action}": _R(CONSTRUCTION_VIEW, ok=NOT_FOUND),
    "POST /api/construction/projects/{project_id}/funding": SHALLOW,
    "GET /api/construction/acceptance/{community_code}": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/acceptance/{community_code}/report.pdf": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/rollout": _R(CONSTRUCTION_VIEW),
    "GET /api/construction/liuwu": _R(LIUWU_VIEWERS),
    "POST /api/construction/liuwu": SHALLOW,
    "POST /api/construction/liuwu/import": SHALLOW,
    "GET /api/construction/dashboard": _R(ADMINS),
    "GET /construction": _R(CONSTRUCTION_VIEW),
    "POST /construction/scan": _R(OFFICERS),
    "POST /construction/work-orders/{order_id}/close": SHALLOW,
    "GET /construction/projects": _R(CONSTRUCTION_VIEW),
    "POST /construction/projects": SHALLOW,
    "GET /construction/projects/{project_id}": _R(CONSTRUCTION_VIEW, ok=NOT_FOUND),
    "POST /construction/projects/{project_id}/design": SHALLOW,
    "POST /construction/projects/{project_id}/act": _R(CONSTRUCTION_VIEW, ok=NOT_FOUND),
    "POST /construction/projects/{project_id}/funding": SHALLOW,
    "GET /construction/rollout": _R(CONSTRUCTION_VIEW),
    "GET /construction/liuwu": _R(LIUWU_VIEWERS),
    "POST /construction/liuwu": SHALLOW,
    "POST /construction/liuwu/import": SHALLOW,
    "GET /construction/dashboard": _R(ADMINS),
    # data security (issue 10): approvals, exports, leak tracing, access alerts, TOTP
    "GET /api/security/approvals": _R(ALL),
    "POST /api/security/approvals/{approval_id}/approve": SHALLOW,
    "POST /api/security/approvals/{approval_id}/reject": SHALLOW,
    "POST /api/security/approvals/{approval_id}/withdraw": _R(ALL, ok=NOT_FOUND),
    "GET /api/security/policy": _R(ALL),
    "GET /api/security/exports": _R(ALL),
    "POST /api/security/trace": SHALLOW,
    "GET /security/approvals": _R(ALL),
    "POST /security/approvals/{approval_id}/decide": SHALLOW,
    "POST /security/approvals/{approval_id}/withdraw": _R(ALL, ok=NOT_FOUND),
    "GET /security/exports": _R(ALL),
    "GET /security/exports/download": _R(WRITERS, ok=frozenset({428})),  # no kind chosen: 428
    "GET /security/trace": _R(ADMINS),
    "POST /security/trace": SHALLOW,
    "GET /api/security/alerts": _R(ADMINS),
    "POST /api/security/alerts/{alert_id}/ack": _R(ADMINS, ok=NOT_FOUND),
    "POST /api/security/users/{username}/unlock": _R(frozenset({"city_admin"})),
    "POST /api/auth/totp/enrol": _R(OFFICERS),
    "POST /api/auth/totp/confirm": SHALLOW,
    "POST /api/auth/totp/disable": SHALLOW,
    "GET /security/alerts": _R(ADMINS),
    "POST /security/alerts/{alert_id}/ack": _R(ADMINS, ok=NOT_FOUND),
    "GET /account/totp": _R(ALL),
    "POST /account/totp": _R(ALL),
})
# live video and recordings (issue 15/16): this world has no camera channels, so allowed roles get 404 (no such
# channel / session / download job); the scope rule itself is tested in tests/test_video*.py
NOT_HERE = frozenset({404})
VIDEO_CH = {"channel_id": "35040400001310000001"}
VIDEO_RANGE = {**VIDEO_CH, "start": "2026-12-01T02:00:00+00:00", "end": "2026-12-01T02:05:00+00:00"}
POLICY.update({
    "POST /api/video/live": _R(STAFF, body=json_body(VIDEO_CH), ok=NOT_HERE),
    "GET /api/video/snapshot/{channel_id}": _R(STAFF, ok=NOT_HERE),
    "GET /api/video/tree": _R(STAFF),
    "GET /api/video/clips/{warning_id}": _R(HANDLERS, "object", ok=NOT_HERE),  # no warning clips in this world
    "GET /api/video/links": _R(STAFF, query={"warning_id": "1"}, ok=NOT_HERE),
    "PUT /api/video/links/{device_id}": _R(ADMINS | {"property_staff"}, body=json_body({"channels": []}),
                                           ok=NOT_HERE),
    "GET /api/video/nodes": _R(ADMINS),
    "POST /api/video/playback": _R(STAFF, body=json_body(VIDEO_RANGE), ok=NOT_HERE),
    "POST /api/video/playback/{key}/control": _R(STAFF, body=json_body({"action": "pause"}), ok=NOT_HERE),
    "POST /api/video/download": _R(STAFF - {"grid_worker"}, body=json_body({**VIDEO_RANGE, "reason": "核查"}),
                                   ok=NOT_HERE),
    "GET /api/video/download/{job_id}": _R(STAFF, ok=NOT_HERE),
    "GET /api/video/download/{job_id}/file": _R(STAFF, ok=NOT_HERE),
    "GET /api/video/records": _R(STAFF, query={**VIDEO_CH, "date": "2026-12-01"}, ok=NOT_HERE),
    "POST /api/video/ptz": _R(OFFICERS, body=json_body({**VIDEO_CH, "action": "stop"}), ok=NOT_HERE),
    "GET /video/wall": _R(STAFF),
    "GET /video/channel/{channel_id}": _R(STAFF, ok=NOT_HERE),
    "GET /video/playback": _R(STAFF, query={"channel": VIDEO_CH["channel_id"]}, ok=NOT_HERE),
})
POLICY["GET /VIID/System/Time"] = _R(PUBLIC)  # GA/T 1400 校时: the server's id and clock, no data
POLICY["POST /VIID/System/Register"] = _R(NOBODY, body=json_body({"RegisterObject": {
    "DeviceID": "35040400001190000001"}}))  # digest challenge (401) for anyone without the device's password
