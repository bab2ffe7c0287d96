"""Console pages and API of data access monitoring and the TOTP second factor (docs/security.md).

- /security/alerts (页面) and /api/security/alerts: abnormal-access alerts for the city administrator (all) and
  county administrators (accounts of their county); acknowledging one is audited, and so is every listing.
- /account/totp and /api/auth/totp/*: enrol (QR code via segno), confirm and disable the second factor.
- /api/security/users/{username}/unlock: the city administrator lifts a lockout before it runs out.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from pydantic import BaseModel

from anfang.core.errors import Forbidden, ValidationError
from anfang.security import monitoring, totp
from anfang.security.views import CurrentPrincipal
from anfang.web.views import ConsoleRoute, check_csrf, lang_of, render

api = APIRouter(tags=["security 数据安全"])
pages = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


def _monitor(request: Request) -> monitoring.AccessMonitor:
    return request.app.state.access_monitor


# ---- API ---------------------------------------------------------------------------------------------------------
@api.get("/api/security/alerts", summary="访问告警 / access alerts")
def alerts_api(request: Request, p: CurrentPrincipal, open_only: bool = False, kind: str | None = None,
               limit: int = 100) -> dict:
    items = monitoring.list_alerts(request.app.state.store, p, open_only=open_only, kind=kind,
                                   limit=max(1, min(limit, 500)), lang=lang_of(request))
    return {"items": items}


@api.post("/api/security/alerts/{alert_id}/ack", summary="确认告警 / acknowledge an alert")
def alert_ack_api(request: Request, p: CurrentPrincipal, alert_id: int) -> dict:
    return monitoring.acknowledge(request.app.state.store, p, alert_id)


@api.post("/api/security/users/{username}/unlock", summary="解除账号锁定 / unlock an account")
def unlock_api(request: Request, p: CurrentPrincipal, username: str) -> dict:
    monitoring.unlock_user(request.app.state.store, p, username)
    return {"ok": True}


class TotpCode(BaseModel):
    code: str


@api.post("/api/auth/totp/enrol", summary="开始启用双因素认证 / start TOTP enrolment")
def totp_enrol_api(request: Request, p: CurrentPrincipal) -> dict:
    assert p.user_id is not None
    out = totp.begin(request.app.state.store, p.user_id, request.app.state.settings.totp_issuer)
    return {"secret": out["secret"], "uri": out["uri"], "qr_svg": out["svg"]}


@api.post("/api/auth/totp/confirm", summary="确认启用双因素认证 / confirm TOTP with a code")
def totp_confirm_api(request: Request, p: CurrentPrincipal, body: TotpCode) -> dict:
    assert p.user_id is not None
    totp.confirm(request.app.state.store, p.user_id, body.code)
    _audit(request, p, "totp_enabled")
    return {"ok": True, "enabled": True}


@api.post("/api/auth/totp/disable", summary="停用双因素认证 / disable TOTP")
def totp_disable_api(request: Request, p: CurrentPrincipal, body: TotpCode) -> dict:
    assert p.user_id is not None
    totp.disable(request.app.state.store, p.user_id, body.code)
    _audit(request, p, "totp_disabled")
    return {"ok": True, "enabled": False}


def _audit(request: Request, p, what: str) -> None:  # noqa: ANN001
    from anfang.security import audit

    audit.record(request.app.state.store, p, "update", "user", [p.user_id], detail=what)


# ---- pages -------------------------------------------------------------------------------------------------------
@pages.get("/security/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, p: CurrentPrincipal, show: str = "open", kind: str = "") -> HTMLResponse:
    if p.role not in monitoring.ALERT_READERS:
        raise Forbidden("仅管理员可查看访问告警 / only administrators see access alerts")
    lang = lang_of(request)
    items = monitoring.list_alerts(request.app.state.store, p, open_only=show != "all", kind=kind or None,
                                   limit=200, lang=lang)
    kinds = [(k, monitoring.kind_label(k, lang)) for k in monitoring.KINDS]
    return render(request, "security_alerts.html", p, nav="security_alerts", alerts=items, show=show, kind=kind,
                  kinds=kinds)


@pages.post("/security/alerts/{alert_id}/ack")
def alerts_ack(request: Request, p: CurrentPrincipal, alert_id: int, csrf_token: str = Form("")) -> RedirectResponse:
    check_csrf(request, csrf_token)
    monitoring.acknowledge(request.app.state.store, p, alert_id)
    return RedirectResponse("/security/alerts", status_code=303)


@pages.get("/account/totp", response_class=HTMLResponse)
def totp_page(request: Request, p: CurrentPrincipal, error: str = "") -> HTMLResponse:
    assert p.user_id is not None
    store, settings = request.app.state.store, request.app.state.settings
    with store.session() as s:
        active = totp.enabled(s, p.user_id)
    uri = None if active else totp.pending_uri(store, p.user_id, settings.totp_issuer)
    qr = Markup(totp.qr_svg(uri)) if uri else None  # noqa: S704 - segno's own SVG, no user input
    secret = uri.split("secret=", 1)[1].split("&", 1)[0] if uri else None
    required = p.role.value in settings.totp_required_roles
    return render(request, "account_totp.html", p, nav="account_totp", active=active, qr=qr, secret=secret,
                  eligible=p.role in totp.ELIGIBLE, required=required, error=error or None)


@pages.post("/account/totp")
def totp_submit(request: Request, p: CurrentPrincipal, action: str = Form(""), code: str = Form(""),
                csrf_token: str = Form("")) -> Response:
    check_csrf(request, csrf_token)
    assert p.user_id is not None
    store, settings = request.app.state.store, request.app.state.settings
    try:
        if action == "begin":
            totp.begin(store, p.user_id, settings.totp_issuer)
        elif action == "confirm":
            totp.confirm(store, p.user_id, code)
            _audit(request, p, "totp_enabled")
        elif action == "disable":
            totp.disable(store, p.user_id, code)
            _audit(request, p, "totp_disabled")
        else:
            raise ValidationError("未知操作 / unknown action")
    except ValidationError as exc:
        return totp_page(request, p, error=exc.message)
    return RedirectResponse("/account/totp", status_code=303)


def mount(app: FastAPI) -> None:
    app.include_router(api)
    app.include_router(pages)

