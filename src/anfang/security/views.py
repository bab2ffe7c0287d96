"""HTTP edge of security: login / logout / me, and the dependency that turns a request into a Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from anfang.core.errors import Forbidden, Unauthorized
from anfang.security import audit, service, totp
from anfang.security.roles import role_label
from anfang.security.scope import Principal
from anfang.store.engine import Store

COOKIE = "anfang_session"
router = APIRouter(prefix="/api/auth", tags=["auth 认证"])


def store_of(request: Request) -> Store:
    return request.app.state.store


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def current_principal(request: Request) -> Principal:
    token = token_of(request)
    if not token:
        raise Unauthorized("请先登录 / please log in")
    settings = request.app.state.settings
    # validated sessions are cached a few seconds (service.SessionCache): most requests read no session row
    p = service.resolve_principal(store_of(request), token, idle_minutes=settings.session_idle_minutes,
                                  client=client_of(request))
    if settings.totp_required_roles and p.role.value in settings.totp_required_roles \
            and not request.url.path.startswith(totp.ENROL_PATHS):
        with store_of(request).session() as s:
            enrolled = totp.enabled(s, p.user_id)
        if not enrolled:
            request.state.no_access_alert = True  # policy, not an attempt outside the account's rights
            raise Forbidden("您的账号须先启用双因素认证：请打开 /account/totp / enrol a second factor first at "
                            "/account/totp")
    return p


async def principal_dependency(request: Request) -> Principal:
    """``current_principal`` for routes: a session held in the session cache is answered on the event loop (no
    thread hop, no database); anything else — a miss, TOTP policy to check, an error to raise — in the thread pool."""
    token = token_of(request)
    settings = request.app.state.settings
    if token and not settings.totp_required_roles:
        p = service.cached_principal(token, idle_minutes=settings.session_idle_minutes, client=client_of(request))
        if p is not None:
            return p
    return await run_in_threadpool(current_principal, request)


CurrentPrincipal = Annotated[Principal, Depends(principal_dependency)]


class LoginIn(BaseModel):
    username: str
    password: str
    otp: str | None = None  # TOTP code, for accounts with the second factor active


def user_view(user) -> dict:  # noqa: ANN001
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "role_label": role_label(user.role), "county_code": user.county_code,
            "community_code": user.community_code, "police_area_id": user.police_area_id, "grid_id": user.grid_id,
            "person_id": user.person_id}


def do_login(request: Request, username: str, password: str, otp: str | None = None) -> tuple[str, dict]:
    """Authenticate (lockout, password, TOTP when active) and open a session; failures and successes are audited,
    failures counted by the access monitor (lockout after settings.login_lockout_failures)."""
    store = store_of(request)
    hours = request.app.state.settings.session_hours
    monitor = getattr(request.app.state, "access_monitor", None)
    try:
        with store.session() as s:
            if monitor is not None:
                monitor.ensure_not_locked(s, username)
            user = service.authenticate(s, username, password)
            totp.check_login(s, user, otp)
            if monitor is not None:
                monitor.login_succeeded(s, user)
            token = service.open_session(s, user, hours=hours, client=client_of(request))
            view = user_view(user)
            p = service.principal_of(user, client_of(request))
    except Unauthorized as exc:
        audit.record(store, Principal.anonymous(username, client_of(request)), "login_failed", "user", [],
                     detail=exc.code)
        if monitor is not None and exc.code != "account_locked":
            monitor.login_failed(username, client_of(request))
        raise
    audit.record(store, p, "login", "user", [view["id"]])
    return token, view


@router.post("/login", summary="登录 / log in")
def login(body: LoginIn, request: Request, response: Response) -> dict:
    token, view = do_login(request, body.username, body.password, body.otp)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        max_age=int(request.app.state.settings.session_hours * 3600))
    return {"token": token, "user": view}


@router.post("/logout", summary="退出 / log out")
def logout(request: Request, response: Response) -> dict:
    token = token_of(request)
    if token:
        with store_of(request).session() as s:
            service.close_session(s, token)
    response.delete_cookie(COOKIE)
    return {"ok": True}


@router.get("/me", summary="当前用户 / current user")
def me(request: Request, p: CurrentPrincipal) -> dict:
    with store_of(request).session() as s:
        from anfang.security.models import User

        return user_view(s.get(User, p.user_id))
