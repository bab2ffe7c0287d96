"""HTTP edge of the door-plate room: the phone scan page ``/p/{token}`` and its forms, the reporter's ticket page,
the staff pages under ``/doorplates`` and the door access-control API.

Pages are rendered by the console's ``render`` (same CSP, CSRF, language switch); public pages are rate-limited
per client. Nothing here decides who sees what: that is DoorplateService.scan.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from anfang.core.errors import AnfangError, Forbidden, Unauthorized, ValidationError
from anfang.doorplates import i18n as _strings  # noqa: F401 - registers the pages' strings
from anfang.doorplates import sheets
from anfang.doorplates.ratelimit import RateLimiter
from anfang.doorplates.service import (
    DECLARATION_VERIFIERS,
    INSTALLERS,
    NOTICE_AUTHORS,
    NOTICE_CATEGORIES,
    TIPOFF_HANDLERS,
    TIPOFF_KINDS,
    DoorplateService,
    PlateRejected,
    current_month,
)
from anfang.doorplates.tokens import load_keyring
from anfang.registry import vocab
from anfang.security.scope import Principal
from anfang.security.views import CurrentPrincipal, client_of, current_principal
from anfang.web import i18n
from anfang.web.views import ConsoleRoute, check_csrf, lang_of, render

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
api = APIRouter(prefix="/api/doorplates", tags=["doorplates 门牌"])


class TooManyRequests(AnfangError):
    status = 429
    code = "rate_limited"


def dp(request: Request) -> DoorplateService:
    return request.app.state.doorplates


def base_url(request: Request) -> str:
    configured = request.app.state.settings.public_url
    return configured.rstrip("/") if configured else str(request.base_url).rstrip("/")


def limit(request: Request, rule: str) -> None:
    if not request.app.state.ratelimiter.allow(rule, client_of(request)):
        raise TooManyRequests(i18n.translate("dp_too_many", lang_of(request)))


def viewer(request: Request) -> Principal:
    """The logged-in principal, or an anonymous one (public plate pages work without login)."""
    try:
        return current_principal(request)
    except AnfangError:
        return Principal.anonymous(client=client_of(request))


def _labels(request: Request) -> dict[str, Any]:
    lang = lang_of(request)

    def pick(pair: tuple[str, str]) -> str:
        return pair[0] if lang.startswith("zh") else pair[1]

    return {"categories": {k: pick(v) for k, v in NOTICE_CATEGORIES.items()},
            "tip_kinds": {k: pick(v) for k, v in TIPOFF_KINDS.items()},
            "relations": {k: pick(v) for k, v in vocab.RESIDENCE_ROLES.items()}}


def _scan_page(request: Request, p: Principal, token: str, *, flash: str | None = None, status: int = 200,
               **extra: Any) -> HTMLResponse:
    try:
        view = dp(request).scan(p, token)
    except PlateRejected as exc:
        return render(request, "doorplates/rejected.html", p, status=404, message=exc.message)
    return render(request, "doorplates/scan.html", p, status=status, v=view, flash=flash,
                  accuracy_m=dp(request).accuracy_m, today=date.today().isoformat(),
                  login_href="/login?next=" + quote(f"/p/{token}", safe=""), **_labels(request), **extra)


def _float(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"坐标无效：{value} / invalid coordinate") from None


async def _photo(upload: UploadFile | None) -> bytes | None:
    if upload is None or not upload.filename:
        return None
    data = await upload.read()
    return data or None


# ---- the phone pages -------------------------------------------------------------------------------------------
@router.get("/p/{token}")
def scan(request: Request, token: str) -> HTMLResponse:
    limit(request, "scan")
    msg = request.query_params.get("msg")
    flash = i18n.translate(msg, lang_of(request)) if msg in _FLASH else None
    return _scan_page(request, viewer(request), token, flash=flash)


_FLASH = frozenset({"dp_declared", "dp_confirmed", "dp_checked_in", "dp_reviewed", "dp_install_done"})


def _back(token: str, msg: str) -> RedirectResponse:
    return RedirectResponse(f"/p/{token}?msg={msg}", status_code=303)


@router.post("/p/{token}/declare")
def declare(request: Request, token: str, csrf_token: str = Form(""), name: str = Form(""),
            id_number: str = Form(""), phone: str = Form(""), relation: str = Form("family"),
            move_in: str = Form("")) -> Response:
    limit(request, "write")
    check_csrf(request, csrf_token)
    try:
        moved = date.fromisoformat(move_in) if move_in.strip() else None
    except ValueError:
        raise ValidationError(f"日期无效：{move_in} / invalid date") from None
    dp(request).declare(viewer(request), token, name=name, id_number=id_number, phone=phone or None,
                        relation=relation, move_in=moved)
    return _back(token, "dp_declared")


@router.post("/p/{token}/confirm")
def confirm_household(request: Request, token: str, p: CurrentPrincipal, csrf_token: str = Form("")) -> Response:
    check_csrf(request, csrf_token)
    dp(request).confirm_household(p, token)
    return _back(token, "dp_confirmed")


@router.post("/p/{token}/install")
def install(request: Request, token: str, p: CurrentPrincipal, csrf_token: str = Form(""), lon: str = Form(""),
            lat: str = Form("")) -> HTMLResponse:
    check_csrf(request, csrf_token)
    result = dp(request).confirm_installation(p, token, _float(lon), _float(lat))
    lang = lang_of(request)
    d = "—" if result["distance_m"] is None else f"{result['distance_m']:.0f} m"
    acc = i18n.translate("dp_accurate", lang) + (" ✔" if result["accurate"] else " ✘")
    return _scan_page(request, p, token, flash=i18n.translate("dp_install_result", lang, d=d, acc=acc),
                      install_result=result)


@router.post("/p/{token}/patrol")
async def patrol(request: Request, token: str, csrf_token: str = Form(""), lon: str = Form(""),
                 lat: str = Form(""), note: str = Form(""), photo: UploadFile | None = File(None)) -> Response:
    p = current_principal(request)
    check_csrf(request, csrf_token)
    data = await _photo(photo)
    from fastapi.concurrency import run_in_threadpool

    await run_in_threadpool(dp(request).check_in, p, token, lon=_float(lon), lat=_float(lat), note=note, photo=data)
    return _back(token, "dp_checked_in")


@router.post("/p/{token}/pass")
def visitor_pass(request: Request, token: str, p: CurrentPrincipal, csrf_token: str = Form(""),
                 visitor_name: str = Form(""), hours: float = Form(4)) -> HTMLResponse:
    limit(request, "write")
    check_csrf(request, csrf_token)
    pass_token = dp(request).issue_pass(p, token, visitor_name, hours)
    return _scan_page(request, p, token, flash=i18n.translate("dp_pass_done", lang_of(request)),
                      new_pass=pass_token, new_pass_qr=sheets.qr_svg(pass_token, 200))


@router.post("/p/{token}/report")
async def report(request: Request, token: str, csrf_token: str = Form(""), kind: str = Form("tip"),
                 text: str = Form(""), place: str = Form(""), contact: str = Form(""),
                 photo: UploadFile | None = File(None)) -> Response:
    limit(request, "write")
    check_csrf(request, csrf_token)
    data = await _photo(photo)
    from fastapi.concurrency import run_in_threadpool

    ticket = await run_in_threadpool(dp(request).report, viewer(request), token, kind=kind, text=text, place=place,
                                     contact=contact, photo=data)
    return RedirectResponse(f"/t/{ticket}?new=1", status_code=303)


@router.get("/t/{ticket}")
def ticket(request: Request, ticket: str) -> HTMLResponse:
    limit(request, "scan")
    t = dp(request).ticket(ticket)
    flash = i18n.translate("dp_reported", lang_of(request), ticket=ticket) if request.query_params.get("new") \
        else None
    return render(request, "doorplates/ticket.html", None, x=t, ticket=ticket, flash=flash, **_labels(request))


# ---- staff pages -----------------------------------------------------------------------------------------------
@router.post("/doorplates/declarations/{declaration_id}/review")
def review(request: Request, declaration_id: int, p: CurrentPrincipal, csrf_token: str = Form(""),
           decision: str = Form(""), note: str = Form(""), next: str = Form("/doorplates")) -> Response:
    check_csrf(request, csrf_token)
    if decision not in ("accept", "reject"):
        raise ValidationError(f"无效的处理：{decision}")
    dp(request).review(p, declaration_id, decision == "accept", note)
    target = next if next.startswith("/") and not next.startswith("//") else "/doorplates"
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}msg=dp_reviewed", status_code=303)


@router.get("/doorplates")
def hub(request: Request, p: CurrentPrincipal, month: str = "") -> HTMLResponse:
    if p.role not in INSTALLERS:
        raise Forbidden(i18n.translate("error_403", lang_of(request)))
    svc = dp(request)
    month = month.strip() or current_month()
    msg = request.query_params.get("msg")
    flash = i18n.translate(msg, lang_of(request)) if msg in _FLASH | {"dp_replied", "dp_notice_done"} else None
    return render(request, "doorplates/hub.html", p, nav="doorplates", flash=flash, month=month,
                  coverage=svc.coverage(p, month),
                  pending=svc.pending_declarations(p) if p.role in DECLARATION_VERIFIERS else None,
                  tipoffs=svc.tipoffs(p) if p.role in TIPOFF_HANDLERS else None,
                  can_notice=p.role in NOTICE_AUTHORS, **_labels(request))


@router.post("/doorplates/tipoffs/{tipoff_id}/reply")
def tipoff_reply(request: Request, tipoff_id: int, p: CurrentPrincipal, csrf_token: str = Form(""),
                 text: str = Form("")) -> Response:
    check_csrf(request, csrf_token)
    dp(request).reply(p, tipoff_id, text)
    return RedirectResponse("/doorplates?msg=dp_replied", status_code=303)


@router.post("/doorplates/notices")
def notice(request: Request, p: CurrentPrincipal, csrf_token: str = Form(""), address_id: int = Form(...),
           category: str = Form("safety"), title: str = Form(""), body: str = Form(""),
           days: int = Form(30)) -> Response:
    check_csrf(request, csrf_token)
    dp(request).post_notice(p, address_id, category, title, body, days)
    return RedirectResponse("/doorplates?msg=dp_notice_done", status_code=303)


@router.get("/doorplates/addresses/{address_id}")
def plate_page(request: Request, address_id: int, p: CurrentPrincipal) -> HTMLResponse:
    if p.role not in INSTALLERS:
        raise Forbidden(i18n.translate("error_403", lang_of(request)))
    a = request.app.state.registry.get_address(p, address_id)  # scoped and audited by the registry
    plate = dp(request).plate_for(address_id)
    url = sheets.plate_url(base_url(request), plate.token)
    flash = i18n.translate("dp_revoked", lang_of(request)) if request.query_params.get("msg") == "dp_revoked" \
        else None
    return render(request, "doorplates/plate.html", p, nav="addresses", a=a, plate=plate, url=url,
                  path=f"/p/{plate.token}", qr=sheets.qr_svg(url, 240), flash=flash)


@router.post("/doorplates/addresses/{address_id}/revoke")
def revoke(request: Request, address_id: int, p: CurrentPrincipal, csrf_token: str = Form(""),
           reason: str = Form("")) -> Response:
    check_csrf(request, csrf_token)
    dp(request).revoke(p, address_id, reason)
    return RedirectResponse(f"/doorplates/addresses/{address_id}?msg=dp_revoked", status_code=303)


@router.get("/doorplates/sheet/{address_id}.{fmt}")
def sheet(request: Request, address_id: int, fmt: str, p: CurrentPrincipal) -> Response:
    if p.role not in INSTALLERS:
        raise Forbidden(i18n.translate("error_403", lang_of(request)))
    if fmt not in ("svg", "pdf"):
        raise ValidationError("格式应为 svg 或 pdf / format must be svg or pdf")
    a = request.app.state.registry.get_address(p, address_id)
    cards = sheets.cards_for(dp(request).plates_under(a["code"]), base_url(request))
    heading = f"{a['full_name']} 门牌二维码 / door plates"
    # Traceable export: visible line and hidden fingerprint, logged with the plates' serials (docs/security.md).
    from anfang.security.watermark import log_export, new_mark

    store = request.app.state.store
    mark = new_mark(store, p, "doorplate-sheet", fmt, f"plates-{a['code']}.{fmt}",
                    filters={"address_code": a["code"]})
    if fmt == "svg":
        body: str | bytes = sheets.svg_sheet(cards, heading, mark)
        media, headers = "image/svg+xml", {}
    else:
        body = sheets.pdf_sheet(cards, heading, mark)
        media, headers = "application/pdf", {"Content-Disposition": f'attachment; filename="plates-{a["code"]}.pdf"'}
    log_export(store, mark, len(cards), [c.serial for c in cards])
    return Response(body, media_type=media, headers=headers)


# ---- the door's access control -------------------------------------------------------------------------------
class PassCheck(BaseModel):
    pass_token: str
    door_plate: str  # the token on the door's own plate (gate / building / unit door)


@api.post("/access/check", summary="门禁核验访客通行码 / door access control checks a visitor pass")
def access_check(body: PassCheck, request: Request, x_door_id: str = Header(""),
                 x_door_key: str = Header("")) -> dict:
    limit(request, "door")
    svc = dp(request)
    if not svc.door_authentic(x_door_id, x_door_key):
        raise Unauthorized("门禁设备认证失败 / door device not authenticated")
    return svc.check_pass(body.pass_token, body.door_plate, x_door_id)


# ---- wiring ----------------------------------------------------------------------------------------------------
def mount(app: FastAPI) -> None:
    """Add the door-plate service, its pages and API to the application."""
    settings = app.state.settings
    app.state.doorplates = DoorplateService(app.state.store, load_keyring(settings.data_dir),
                                            data_dir=settings.data_dir, accuracy_m=settings.plate_accuracy_m)
    app.state.ratelimiter = RateLimiter()
    app.include_router(router)
    app.include_router(api)

