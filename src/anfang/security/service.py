"""Users, login and sessions (framework-free; the web and API layers call these)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from anfang.core.errors import Conflict, Unauthorized, ValidationError
from anfang.security.models import LoginSession, User
from anfang.security.passwords import hash_password, needs_rehash, verify_password
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow

_REQUIRED_SCOPE = {
    Role.county_admin: "county_code",
    Role.police: "police_area_id",
    Role.grid_worker: "grid_id",
    Role.property_staff: "community_code",
    Role.resident: "person_id",
}


def create_user(session: Session, *, username: str, password: str, role: Role | str, display_name: str | None = None,
                county_code: str | None = None, community_code: str | None = None,
                police_area_id: int | None = None, grid_id: int | None = None,
                person_id: int | None = None) -> User:
    role = Role(role)
    if role is Role.anonymous:
        raise ValidationError("不能创建访客账号 / the anonymous role is not a user role")
    if len(password) < 8:
        raise ValidationError("密码至少8位 / password must have at least 8 characters")
    scope_field = _REQUIRED_SCOPE.get(role)
    values = {"county_code": county_code, "community_code": community_code, "police_area_id": police_area_id,
              "grid_id": grid_id, "person_id": person_id}
    if scope_field and values[scope_field] is None:
        raise ValidationError(f"角色{role.value}必须指定辖区字段 {scope_field}")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"用户名已存在：{username}")
    user = User(username=username, display_name=display_name or username, password_hash=hash_password(password),
                role=role.value, **values)
    session.add(user)
    session.flush()
    return user


def principal_of(user: User, client: str | None = None) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=Role(user.role), county_code=user.county_code,
                     community_code=user.community_code, police_area_id=user.police_area_id, grid_id=user.grid_id,
                     person_id=user.person_id, client=client)


def authenticate(session: Session, username: str, password: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        raise Unauthorized("用户名或密码错误 / wrong username or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, *, hours: float, client: str | None = None) -> str:
    """Create a login session; returns the bearer token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(LoginSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                             expires_at=now + timedelta(hours=hours), client=client))
    return token


def resolve_session(session: Session, token: str, idle_minutes: float | None = None) -> User:
    """The user of a live session. Sessions end at expires_at (absolute) and, with idle_minutes, after that long
    without a request (last_seen_at is refreshed at most once a minute)."""
    row = session.get(LoginSession, _token_hash(token))
    now = utcnow()
    if row is None or row.expires_at <= now:
        raise Unauthorized("登录已过期，请重新登录 / session expired, please log in again")
    if idle_minutes:
        seen = row.last_seen_at or row.created_at
        if now - seen > timedelta(minutes=idle_minutes):
            session.delete(row)
            session.commit()
            raise Unauthorized("长时间未操作，登录已失效，请重新登录 / session idle for too long, please log in again")
        if row.last_seen_at is None or now - row.last_seen_at > timedelta(seconds=60):
            row.last_seen_at = now
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise Unauthorized("账号已停用 / account disabled")
    return user


def close_session(session: Session, token: str) -> None:
    session.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))
