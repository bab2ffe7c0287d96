"""Optional TOTP second factor (RFC 6238, 30 s, 6 digits) for police and administrator accounts.

Enrolment: ``begin`` makes a secret (stored encrypted, not yet active) and returns the otpauth:// URI and its QR
code (SVG, segno) for an authenticator app; ``confirm`` activates it once the user enters a valid code. Login:
an account with TOTP active must give a valid code with its password; each code is accepted once (the time step
is remembered). Policy: ``totp_required_roles`` lists roles that must enrol — such an account may log in with its
password but reaches nothing but the enrolment page until it has.
"""

from __future__ import annotations

import io
import time

import pyotp
import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from anfang.core.errors import Forbidden, Unauthorized, ValidationError
from anfang.security.models import User, UserSecurity
from anfang.security.roles import Role
from anfang.store.engine import Store

ELIGIBLE = frozenset({Role.city_admin, Role.county_admin, Role.police})
STEP = 30
ENROL_PATHS = ("/account/totp", "/api/auth/totp", "/api/auth/logout", "/api/auth/me", "/logout", "/static/",
               "/login")


class OtpRequired(Unauthorized):
    code = "otp_required"


def _state(s: Session, user_id: int) -> UserSecurity:
    sec = s.get(UserSecurity, user_id)
    if sec is None:
        sec = UserSecurity(user_id=user_id, failed_count=0, totp_enabled=False)
        s.add(sec)
        s.flush()
    return sec


def enabled(s: Session, user_id: int) -> bool:
    return bool(s.scalar(select(UserSecurity.totp_enabled).where(UserSecurity.user_id == user_id)))


def _check_code(sec: UserSecurity, code: str, now: float | None = None) -> bool:
    """A valid code for the current or an adjacent step, not used before."""
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    if len(code) != 6 or not sec.totp_secret:
        return False
    now = time.time() if now is None else now
    otp = pyotp.TOTP(sec.totp_secret, interval=STEP)
    for offset in (0, -1, 1):
        step = int(now // STEP) + offset
        if (sec.totp_last_step is None or step > sec.totp_last_step) and otp.at(step * STEP) == code:
            sec.totp_last_step = step
            return True
    return False


def begin(store: Store, user_id: int, issuer: str) -> dict[str, str]:
    """A new (inactive) secret for the account; returns secret, otpauth URI and the QR code as SVG."""
    with store.session() as s:
        user = s.get(User, user_id)
        if user is None:
            raise ValidationError("用户不存在 / no such user")
        if Role(user.role) not in ELIGIBLE:
            raise Forbidden("双因素认证仅适用于民警和管理员账号 / TOTP is for police and administrator accounts")
        sec = _state(s, user_id)
        if sec.totp_enabled:
            raise ValidationError("已启用双因素认证；如需更换请先停用 / TOTP already active: disable it first")
        secret = pyotp.random_base32()
        sec.totp_secret, sec.totp_last_step = secret, None
        uri = pyotp.TOTP(secret, interval=STEP).provisioning_uri(name=user.username, issuer_name=issuer)
    return {"secret": secret, "uri": uri, "svg": qr_svg(uri)}


def qr_svg(uri: str) -> str:
    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", scale=5, border=2, xmldecl=False, svgns=True)
    return buf.getvalue().decode("utf-8")


def pending_uri(store: Store, user_id: int, issuer: str) -> str | None:
    """The otpauth URI of a started, not yet confirmed enrolment."""
    with store.session() as s:
        sec = s.get(UserSecurity, user_id)
        user = s.get(User, user_id)
        if sec is None or user is None or not sec.totp_secret or sec.totp_enabled:
            return None
        return pyotp.TOTP(sec.totp_secret, interval=STEP).provisioning_uri(name=user.username, issuer_name=issuer)


def confirm(store: Store, user_id: int, code: str) -> None:
    with store.session() as s:
        sec = _state(s, user_id)
        if not sec.totp_secret:
            raise ValidationError("请先生成二维码 / start the enrolment first")
        if not _check_code(sec, code):
            raise ValidationError("动态口令不正确 / wrong code")
        sec.totp_enabled = True


def disable(store: Store, user_id: int, code: str) -> None:
    with store.session() as s:
        sec = _state(s, user_id)
        if not sec.totp_enabled:
            return
        if not _check_code(sec, code):
            raise ValidationError("动态口令不正确 / wrong code")
        sec.totp_enabled, sec.totp_secret, sec.totp_last_step = False, None, None


def check_login(s: Session, user: User, otp: str | None) -> None:
    """Raise OtpRequired unless the account has no active TOTP or otp is a fresh valid code."""
    sec = s.get(UserSecurity, user.id)
    if sec is None or not sec.totp_enabled:
        return
    if not otp:
        raise OtpRequired("该账号已启用双因素认证，请输入动态口令 / enter the code from your authenticator app")
    if not _check_code(sec, otp):
        raise OtpRequired("动态口令不正确或已使用 / wrong or already used code")


def must_enrol(s: Session, user: User, required_roles: list[str]) -> bool:
    return bool(required_roles) and user.role in required_roles and not enabled(s, user.id)
