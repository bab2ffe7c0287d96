"""The web console: server-rendered pages (Jinja2 + inline SVG) over RegistryService and the seed's metrics.

Every page asks the services with the logged-in Principal, so scoping, masking and auditing happen exactly as for
the JSON API; this module only renders what comes back (no unmasking, no re-masking). No asset leaves the wheel:
CSS, JS and charts are served by this process (police network, no internet). See docs/console.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from anfang import __version__
from anfang.core import timefmt
from anfang.core.errors import AnfangError, Forbidden, Unauthorized, ValidationError
from anfang.registry import metrics, vocab
from anfang.registry.models import Grid, PoliceArea, Region
from anfang.registry.schemas import Page, PlatePatch
from anfang.registry.service import RegistryService
from anfang.security import audit, service
from anfang.security.models import User
from anfang.security.roles import VERIFIERS, WRITERS, Role, role_label
from anfang.security.scope import Principal
from anfang.security.views import COOKIE, CurrentPrincipal, current_principal, do_login, token_of
from anfang.store.engine import Store
from anfang.web import i18n
from anfang.web.svg import Bar, bar_chart, pct

HERE = Path(__file__).parent
LANG_COOKIE = "anfang_lang"
CSRF_COOKIE = "anfang_csrf"  # pre-login seed of the CSRF token; after login the session token is the seed
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 20
CHART_MAX_BARS = 30
PLATE_EDITORS = WRITERS | {Role.property_staff}
# Content-Security-Policy: nothing but this origin, no inline script or style — the offline guarantee, enforced.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)

_VOCABS = {"gender": vocab.GENDERS, "population_type": vocab.POPULATION_TYPES, "label": vocab.PERSON_LABELS,
           "verification": vocab.VERIFICATION, "use": vocab.HOUSE_USES, "residence": vocab.RESIDENCE_ROLES,
           "plate_color": vocab.PLATE_COLORS, "level": vocab.ADDRESS_LEVELS}


# ---- request plumbing ------------------------------------------------------------------------------------------
class ConsoleRoute(APIRoute):
    """Turns domain and validation errors into friendly HTML pages, and a missing login into /login."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AnfangError as exc:
                if exc.status == 401:
                    return _to_login(request)
                return await run_in_threadpool(error_page, request, exc.status, exc.message)
            except RequestValidationError as exc:
                detail = "；".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                                  for e in exc.errors())
                message = i18n.translate("invalid_request", lang_of(request), detail=detail)
                return await run_in_threadpool(error_page, request, 422, message)

        return route


router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def store_of(request: Request) -> Store:
    return request.app.state.store


def svc(request: Request) -> RegistryService:
    return request.app.state.registry


def lang_of(request: Request) -> str:
    return (i18n.normalize(request.query_params.get("lang")) or i18n.normalize(request.cookies.get(LANG_COOKIE))
            or i18n.normalize(request.app.state.settings.language) or i18n.DEFAULT_LANGUAGE)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: no scheme, no host, no protocol-relative //host (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or target.startswith("/\\"):
        return "/"
    return target


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


# ---- CSRF: a token bound to the session (HMAC of the session token), or to a random pre-login cookie ---------
def _csrf_seed(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or request.cookies.get(CSRF_COOKIE)


def csrf_token_for(seed: str) -> str:
    return hmac.new(seed.encode(), b"anfang-console-csrf-v1", hashlib.sha256).hexdigest()


def check_csrf(request: Request, token: str | None) -> None:
    seed = _csrf_seed(request)
    if not seed or not token or not hmac.compare_digest(csrf_token_for(seed), token):
        raise Forbidden(i18n.translate("csrf_failed", lang_of(request)))


# ---- rendering -------------------------------------------------------------------------------------------------
def _region_names(store: Store, codes: list[str]) -> dict[str, tuple[str, str]]:
    """code -> (name, full_name) of administrative divisions (public reference data, not personal data)."""
    if not codes:
        return {}
    with store.session() as s:
        return {c: (n, f) for c, n, f in s.execute(select(Region.code, Region.name, Region.full_name)
                                                      .where(Region.code.in_(codes)))}


def whoami(store: Store, p: Principal, lang: str) -> dict[str, Any]:
    """Display name, role label and a readable jurisdiction for the top bar."""
    with store.session() as s:
        user = s.get(User, p.user_id) if p.user_id is not None else None
        name = user.display_name if user else p.username
        match p.role:
            case Role.city_admin:
                where = i18n.translate("whole_city", lang)
            case Role.county_admin:
                where = s.scalar(select(Region.full_name).where(Region.code == p.county_code)) or p.county_code
            case Role.police:
                area = s.get(PoliceArea, p.police_area_id) if p.police_area_id else None
                where = f"{area.station.name} {area.name}" if area else "—"
            case Role.grid_worker:
                grid = s.get(Grid, p.grid_id) if p.grid_id else None
                community = s.scalar(select(Region.full_name).where(Region.code == grid.community_code)) \
                    if grid else None
                where = f"{community or ''} {grid.name}" if grid else "—"
            case Role.property_staff:
                where = s.scalar(select(Region.full_name).where(Region.code == p.community_code)) or "—"
            case _:
                where = i18n.translate("self_only", lang)
    return {"display_name": name, "role_label": role_label(p.role.value, lang), "jurisdiction": where or "—",
            "role": p.role.value, "person_id": p.person_id}


def _url_with(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = str(v)
    return request.url.path + ("?" + urlencode(params) if params else "")


def pager(request: Request, page: Page) -> dict[str, Any]:
    return {"page": page.page,
            "prev": _url_with(request, page=page.page - 1) if page.page > 1 else None,
            "next": _url_with(request, page=page.page + 1) if page.has_more else None}


def render(request: Request, template: str, p: Principal | None = None, *, status: int = 200,
           nav: str = "", **context: Any) -> HTMLResponse:
    lang = lang_of(request)

    def t(key: str, **kwargs: Any) -> str:
        return i18n.translate(key, lang, **kwargs)

    def lab(kind: str, key: str | None) -> str:
        return vocab.label(_VOCABS[kind], key, lang)

    seed = _csrf_seed(request)
    new_seed = None
    if seed is None:
        seed = new_seed = secrets.token_urlsafe(32)
    flash = request.query_params.get("msg")
    ctx = {
        "request": request, "lang": lang, "t": t, "lab": lab, "pct": pct, "nav": nav, "version": __version__,
        "when": lambda v, seconds=True: timefmt.fmt(v, lang, seconds=seconds),  # the one time format (core.timefmt)
        "me": whoami(store_of(request), p, lang) if p is not None and p.user_id is not None else None,
        "csrf_field": CSRF_FIELD, "csrf_token": csrf_token_for(seed),
        "lang_links": {code: _url_with(request, lang=code) for code in i18n.LANGUAGES},
        "flash": t(flash) if flash in i18n.FLASH_KEYS else None,
        "can_verify": p is not None and p.role in VERIFIERS,
        "is_resident": p is not None and p.role is Role.resident,
        **context,
    }
    for key in ("message", "wide_notice", "error"):  # a domain message "中文 / English": the page's language only
        if isinstance(ctx.get(key), str):
            ctx[key] = i18n.pick(ctx[key], lang)
    response = HTMLResponse(_env.get_template(template).render(ctx), status_code=status)
    extra = getattr(request.app.state, "csp_connect", None)  # e.g. media nodes in other processes (ws://…)
    origins = extra() if extra is not None else []
    response.headers["Content-Security-Policy"] = (
        CSP.replace("connect-src 'self'", "connect-src 'self' " + " ".join(origins)) if origins else CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # same-origin (not no-referrer): browsers then send a real Origin on the console's own POSTs, which the CSRF
    # origin check (anfang.security.headers) relies on; nothing leaks to other sites either way
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    if new_seed is not None:
        response.set_cookie(CSRF_COOKIE, new_seed, httponly=True, samesite="strict")
    if i18n.normalize(request.query_params.get("lang")):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def held_page(request: Request, p: Principal, exc: Any, params: dict[str, Any]) -> HTMLResponse:
    """The console's answer to a held query (security.approvals.ReasonRequired / ApprovalPending): the request it
    made (and where to follow it), or a form asking for the reason and re-submitting the same query with it.
    Here, with the other page helpers, so that the approval pages import the console and not the reverse."""
    from anfang.security import approvals

    held = exc.detail if isinstance(exc, approvals.ApprovalPending) else None
    return render(request, "security_held.html", p, status=exc.status, nav="security", message=exc.message,
                  held=held, action=request.url.path, params={k: v for k, v in params.items() if v not in (None, "")})


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    try:
        p: Principal | None = current_principal(request)
    except AnfangError:
        p = None
    lang = lang_of(request)
    heading = i18n.translate(f"error_{status}", lang) if f"error_{status}" in i18n.STRINGS \
        else i18n.translate("error_title", lang)
    return render(request, "error.html", p, status=status, heading=heading, message=message, status_code=status)


# ---- login / logout --------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=_safe_next(next), error=None, username="")


@router.post("/login")
def login_submit(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/"),
                 csrf_token: str = Form(""), otp: str = Form("")) -> Response:
    check_csrf(request, csrf_token)
    try:
        token, _view = do_login(request, username.strip(), password, otp.strip() or None)
    except Unauthorized as exc:
        # lockout and second-factor messages are specific (bilingual); a wrong password stays generic
        specific = exc.code in ("account_locked", "otp_required")
        return render(request, "login.html", status=401, next=_safe_next(next), username=username,
                      error=exc.message if specific else i18n.translate("login_failed", lang_of(request)),
                      otp_needed=exc.code == "otp_required")
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        max_age=int(request.app.state.settings.session_hours * 3600))
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> RedirectResponse:
    check_csrf(request, csrf_token)
    token = token_of(request)
    if token:
        with store_of(request).session() as s:
            service.close_session(s, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


# ---- dashboard and metrics -------------------------------------------------------------------------------------
def _denominator(key: str) -> str:
    return "addresses" if key.startswith("plate_") else key.split("_", 1)[0]  # persons_verified -> persons


def _below_href(key: str, code: str) -> str:
    return "/metrics/below?" + urlencode({"metric": key, "region_code": code})


def metrics_context(rows: list[metrics.MetricRow], totals: list[metrics.MetricRow], lang: str) -> dict[str, Any]:
    """Table cells and one SVG chart per metric; every below-target cell links to its records."""
    t = i18n.translate
    columns = [{"key": k, "label": zh if lang.startswith("zh") else en[:1].upper() + en[1:], "target": target}
               for k, (target, zh, en) in metrics.TARGETS.items()]
    table = []
    for r in rows:
        cells = []
        for c in columns:
            k = c["key"]
            cells.append({"key": k, "rate": r.rates[k], "below": k in r.below, "href": _below_href(k, r.code),
                          "num": getattr(r.counts, k), "den": getattr(r.counts, _denominator(k))})
        table.append({"code": r.code, "name": r.name, "cells": cells})
    charts = []
    for c in columns:
        k = c["key"]
        bars = [Bar(r.name, r.rates[k], _below_href(k, r.code),
                    f"{getattr(r.counts, k)}/{getattr(r.counts, _denominator(k))}") for r in rows]
        note = None
        if len(bars) > CHART_MAX_BARS:
            note = t("chart_lowest", lang, n=CHART_MAX_BARS, total=len(bars))
            bars = sorted(bars, key=lambda b: (b.rate is None, b.rate if b.rate is not None else 0))[:CHART_MAX_BARS]
        charts.append({**c, "note": note,
                       "svg": bar_chart(bars, c["target"], title=c["label"], target_label=t("target", lang),
                                        no_data=t("no_data", lang))})
    total = totals[0] if totals else None
    summary = None
    if total is not None:
        summary = {
            "counts": {"addresses": total.counts.addresses, "persons": total.counts.persons,
                       "houses": total.counts.houses, "units": total.counts.units},
            "rates": [{**c, "rate": total.rates[c["key"]], "below": c["key"] in total.below,
                       "href": _below_href(c["key"], total.code)} for c in columns],
        }
    return {"columns": columns, "table": table, "charts": charts, "summary": summary}


def _default_level(p: Principal) -> str:
    return "county" if p.sees_everything else "community"


@router.get("/")
def dashboard(request: Request, p: CurrentPrincipal) -> HTMLResponse:
    if p.role is Role.resident:
        mine = svc(request).search_persons(p, size=5)
        return render(request, "resident.html", p, nav="dashboard", persons=mine.items)
    level = _default_level(p)
    store = store_of(request)
    rows = metrics.compute(store, p, level)
    totals = metrics.compute(store, p, "city")
    return render(request, "dashboard.html", p, nav="dashboard", level=level,
                  **metrics_context(rows, totals, lang_of(request)))


@router.get("/metrics")
def metrics_page(request: Request, p: CurrentPrincipal, level: str | None = None) -> HTMLResponse:
    level = level or _default_level(p)
    store = store_of(request)
    rows = metrics.compute(store, p, level)
    totals = metrics.compute(store, p, "city")
    return render(request, "metrics.html", p, nav="metrics", level=level, levels=metrics.LEVELS,
                  **metrics_context(rows, totals, lang_of(request)))


@router.get("/metrics/below")
def metrics_below(request: Request, p: CurrentPrincipal, metric: str,
                  region_code: str | None = None) -> HTMLResponse:
    limit = 200
    rows = metrics.below_target(store_of(request), p, metric, region_code or None, limit)
    if rows and rows[0]["entity"] == "person":
        audit.record(store_of(request), p, "read", "person", [r["id"] for r in rows], detail=f"below:{metric}")
    lang = lang_of(request)
    target, zh, en = metrics.TARGETS[metric]
    region = _region_names(store_of(request), [region_code]).get(region_code or "", (region_code or "", ""))
    return render(request, "below.html", p, nav="metrics", rows=rows, metric=metric, limit=limit,
                  metric_label=zh if lang.startswith("zh") else en[:1].upper() + en[1:], target=target,
                  region_code=region_code, region_name=region[1] or region[0])


# ---- addresses -------------------------------------------------------------------------------------------------
def _region_level(code: str) -> str:
    if len(code) == 6:
        return "city" if code.endswith("00") else "county"
    return "town" if code.endswith("000") else "community"


def _region_chain(code: str | None) -> list[str]:
    if not code:
        return []
    level = _region_level(code)
    chain = {"city": [code], "county": [code[:4] + "00", code], "town": [code[:4] + "00", code[:6], code],
             "community": [code[:4] + "00", code[:6], code[:9] + "000", code]}[level]
    return list(dict.fromkeys(chain))


def region_crumbs(store: Store, code: str | None) -> list[dict[str, str]]:
    chain = _region_chain(code)
    names = _region_names(store, chain)
    return [{"code": c, "name": names.get(c, (c, ""))[0], "href": "/addresses?" + urlencode({"region": c})}
            for c in chain]


@router.get("/addresses")
def addresses(request: Request, p: CurrentPrincipal, q: str = "", region: str = "",
              page: int = Query(1, ge=1)) -> HTMLResponse:
    registry = svc(request)
    if q.strip():
        found = registry.search_addresses(p, prefix=q, page=page, size=PAGE_SIZE)
        return render(request, "addresses.html", p, nav="addresses", q=q, results=found.items,
                      pager=pager(request, found), regions=[], roots=[], crumbs=[])
    current: str | None = region.strip() or None
    children = registry.regions(p, current)
    # Walk down while the jurisdiction leaves exactly one way to go (a grid worker lands on his community).
    while len(children) == 1:
        current = children[0]["code"]
        if children[0]["level"] == "community":
            children = []
            break
        children = registry.regions(p, current)
    roots = registry.address_roots(p, current) if current and _region_level(current) == "community" else []
    return render(request, "addresses.html", p, nav="addresses", q="", results=None, pager=None, regions=children,
                  roots=roots, crumbs=region_crumbs(store_of(request), current))


@router.get("/addresses/{address_id}")
def address_detail(request: Request, p: CurrentPrincipal, address_id: int) -> HTMLResponse:
    a = svc(request).get_address(p, address_id)
    crumbs = region_crumbs(store_of(request), a["community_code"])
    return render(request, "address.html", p, nav="addresses", a=a, crumbs=crumbs,
                  can_edit_plate=p.role in PLATE_EDITORS and a["level"] in metrics.PLATED_LEVELS)


@router.post("/addresses/{address_id}/plate")
def address_plate(request: Request, p: CurrentPrincipal, address_id: int, csrf_token: str = Form(""),
                  plate_installed: str | None = Form(None), plate_accurate: str | None = Form(None),
                  plate_labelled: str | None = Form(None)) -> RedirectResponse:
    check_csrf(request, csrf_token)
    patch = PlatePatch(plate_installed=plate_installed is not None, plate_accurate=plate_accurate is not None,
                       plate_labelled=plate_labelled is not None)
    svc(request).set_plate_state(p, address_id, patch)
    return RedirectResponse(f"/addresses/{address_id}?msg=plate_done", status_code=303)


# ---- persons ---------------------------------------------------------------------------------------------------
@router.get("/persons")
def persons(request: Request, p: CurrentPrincipal, id_number: str = "", name: str = "", phone: str = "",
            address_prefix: str = "", plate: str = "", page: int = Query(1, ge=1), reason: str = "",
            approval_id: int | None = None) -> HTMLResponse:
    if not (id_number or name or phone or plate):  # a list over a town or wider: 数据查询授权 (docs/security.md)
        from anfang.security import approvals

        try:
            approvals.authorise_wide_search(store_of(request), p, "persons", {"address_prefix": address_prefix},
                                            reason or None, approval_id)
        except approvals.ApprovalPending as exc:
            return held_page(request, p, exc, {"address_prefix": address_prefix})
        except approvals.ReasonRequired as exc:  # the search form, asking for the reason; no one listed yet
            form = {"id_number": "", "name": "", "phone": "", "address_prefix": address_prefix, "plate": ""}
            return render(request, "persons.html", p, status=428 if request.query_params else 200, nav="persons",
                          form=form, results=[], pager=None, wide_notice=exc.message)
    found = svc(request).search_persons(p, id_number=id_number or None, name=name or None, phone=phone or None,
                                        address_prefix=address_prefix or None, plate=plate or None, page=page,
                                        size=PAGE_SIZE)
    form = {"id_number": id_number, "name": name, "phone": phone, "address_prefix": address_prefix, "plate": plate}
    return render(request, "persons.html", p, nav="persons", form=form, results=found.items,
                  pager=pager(request, found))


@router.get("/persons/{person_id}")
def person_detail(request: Request, p: CurrentPrincipal, person_id: int) -> HTMLResponse:
    person = svc(request).get_person(p, person_id)
    nav = "me" if p.role is Role.resident else "persons"
    return render(request, "person.html", p, nav=nav, x=person, entity="persons")


def _verify(request: Request, p: Principal, entity: str, record_id: int, state: str, csrf_token: str) -> None:
    check_csrf(request, csrf_token)
    if state not in vocab.VERIFICATION:
        raise ValidationError(i18n.translate("bad_state", lang_of(request), state=state))
    svc(request).set_verification(p, entity, record_id, state)


@router.post("/persons/{person_id}/verify")
def person_verify(request: Request, p: CurrentPrincipal, person_id: int, state: str = Form(""),
                  csrf_token: str = Form("")) -> RedirectResponse:
    _verify(request, p, "person", person_id, state, csrf_token)
    return RedirectResponse(f"/persons/{person_id}?msg=verify_done", status_code=303)


# ---- houses ----------------------------------------------------------------------------------------------------
@router.get("/houses")
def houses(request: Request, p: CurrentPrincipal, address_prefix: str = "", use: str = "", verification: str = "",
           page: int = Query(1, ge=1)) -> HTMLResponse:
    found = svc(request).search_houses(p, address_prefix=address_prefix or None, use=use or None,
                                       verification=verification or None, page=page, size=PAGE_SIZE)
    form = {"address_prefix": address_prefix, "use": use, "verification": verification}
    return render(request, "houses.html", p, nav="houses", form=form, results=found.items,
                  pager=pager(request, found), uses=vocab.HOUSE_USES, states=vocab.VERIFICATION)


@router.get("/houses/{house_id}")
def house_detail(request: Request, p: CurrentPrincipal, house_id: int) -> HTMLResponse:
    house = svc(request).get_house(p, house_id)
    return render(request, "house.html", p, nav="houses", x=house, entity="houses")


@router.post("/houses/{house_id}/verify")
def house_verify(request: Request, p: CurrentPrincipal, house_id: int, state: str = Form(""),
                 csrf_token: str = Form("")) -> RedirectResponse:
    _verify(request, p, "house", house_id, state, csrf_token)
    return RedirectResponse(f"/houses/{house_id}?msg=verify_done", status_code=303)


# ---- work units ------------------------------------------------------------------------------------------------
@router.get("/units")
def units(request: Request, p: CurrentPrincipal, name: str = "", credit_code: str = "", address_prefix: str = "",
          page: int = Query(1, ge=1)) -> HTMLResponse:
    found = svc(request).search_units(p, name=name or None, credit_code=credit_code or None,
                                      address_prefix=address_prefix or None, page=page, size=PAGE_SIZE)
    form = {"name": name, "credit_code": credit_code, "address_prefix": address_prefix}
    return render(request, "units.html", p, nav="units", form=form, results=found.items,
                  pager=pager(request, found))


@router.get("/units/{unit_id}")
def unit_detail(request: Request, p: CurrentPrincipal, unit_id: int) -> HTMLResponse:
    unit = svc(request).get_unit(p, unit_id)
    return render(request, "unit.html", p, nav="units", x=unit, entity="units")


@router.post("/units/{unit_id}/verify")
def unit_verify(request: Request, p: CurrentPrincipal, unit_id: int, state: str = Form(""),
                csrf_token: str = Form("")) -> RedirectResponse:
    _verify(request, p, "unit", unit_id, state, csrf_token)
    return RedirectResponse(f"/units/{unit_id}?msg=verify_done", status_code=303)


# ---- vehicles --------------------------------------------------------------------------------------------------
@router.get("/vehicles")
def vehicles(request: Request, p: CurrentPrincipal, plate: str = "", page: int = Query(1, ge=1)) -> HTMLResponse:
    found = svc(request).search_vehicles(p, plate=plate or None, page=page, size=PAGE_SIZE)
    return render(request, "vehicles.html", p, nav="vehicles", form={"plate": plate}, results=found.items,
                  pager=pager(request, found))


# ---- wiring ----------------------------------------------------------------------------------------------------
def mount(app: FastAPI) -> None:
    """Add the console's pages and its static assets (CSS, JS) to the application."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

