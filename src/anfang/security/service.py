"""Users, login and sessions (framework-free; the web and API layers call these)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from anfang.core.errors import Conflict, Unauthorized, ValidationError
from anfang.security.models import LoginSession, User
from anfang.security.passwords import hash_password, needs_rehash, verify_password
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

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
    """End a session (logout). This process forgets it at once, and again once the delete is committed, so that no
    request resolving it concurrently can put it back into the session cache."""
    th = _token_hash(token)
    session.execute(delete(LoginSession).where(LoginSession.token_hash == th))
    session_cache.forget(th)
    event.listen(session, "after_commit", lambda _s: session_cache.forget(th), once=True)


@dataclass(frozen=True, slots=True)
class _Live:
    principal: Principal  # client left empty: it is the request's
    expires_at: datetime  # the session's absolute end
    seen: datetime  # last_seen_at (or created_at) as read: idle expiry is still checked on every hit
    fresh_until: float  # time.monotonic() after which the database is asked again


class SessionCache:
    """Validated sessions, kept ``ttl_s`` seconds (``settings.session_cache_seconds``; 0 turns it off), so that a
    request with a bearer token or cookie costs no database read for its session most of the time.

    Correctness: a hit is still checked against the session's absolute expiry and idle limit at every request; a
    logout on this process (``close_session``) removes the entry at once, and a resolution that raced with it
    (read before the delete committed) is not stored (a generation counter). Another process's logout, or a user
    disabled in the database, takes effect here within ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, _Live] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> _Live | None:
        hit = self._entries.get(token_hash)
        if hit is None or hit.fresh_until < time.monotonic():
            return None
        return hit

    @property
    def generation(self) -> int:
        return self._generation

    def put(self, token_hash: str, live: _Live, generation: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # a session was closed while this one was being read: it may have been this one
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[token_hash] = live

    def forget(self, token_hash: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(token_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


session_cache = SessionCache()


def cached_principal(token: str, *, idle_minutes: float | None = None, client: str | None = None) -> Principal | None:
    """The principal of a session the cache holds fresh and still live (absolute and idle limits), else None.
    No database access: safe on the event loop."""
    hit = session_cache.get(_token_hash(token))
    if hit is None:
        return None
    now = utcnow()
    if hit.expires_at <= now or (idle_minutes and now - hit.seen > timedelta(minutes=idle_minutes)):
        return None
    return replace(hit.principal, client=client)


def resolve_principal(store: Store, token: str, *, idle_minutes: float | None = None,
                      client: str | None = None) -> Principal:
    """The principal of a live session: from the session cache when it holds a fresh entry, else as
    ``resolve_session`` decides (which also refreshes last_seen_at and ends idle sessions)."""
    hit = cached_principal(token, idle_minutes=idle_minutes, client=client)
    if hit is not None:
        return hit
    th = _token_hash(token)
    generation = session_cache.generation
    with store.session() as s:
        user = resolve_session(s, token, idle_minutes=idle_minutes)
        row = s.get(LoginSession, th)
        p = principal_of(user)
        live = _Live(p, row.expires_at, row.last_seen_at or row.created_at,
                     time.monotonic() + session_cache.ttl_s) if row is not None else None
    if live is not None:
        session_cache.put(th, live, generation)
    return replace(p, client=client)
