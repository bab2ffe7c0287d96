"""Data access monitoring (数据访问监测) and login protection.

Alerts (table ``access_alerts``, page ``/security/alerts``, API ``/api/security/alerts``; each new alert is also
appended to the audit chain as action ``alert``):

- ``bulk_read``   one account read more persons today than max(monitor_min_reads, monitor_factor × its mean daily
                  reads over the previous monitor_baseline_days days); today's count is kept in the database
                  (``access_daily_reads``, added to in each audit batch's transaction), so the primary server and
                  its reader processes count into one figure; the baseline is counted from the audit chain;
- ``off_hours``   personal data read or written between monitor_quiet_hours (local time, default 00:00–06:00),
                  unless the account worked in that hour on USUAL_DAYS days of its baseline window (night shifts);
- ``out_of_scope`` an attempt to reach a record outside the account's jurisdiction (the record exists but the
                  scoped query did not find it), or any 403 answer to a logged-in account (wrong role / place);
- ``failed_logins`` an account reached login_lockout_failures failed logins in a row and is locked for
                  login_lockout_minutes (time-limited lockout; an administrator can unlock sooner);
- ``login_spray`` one client failed monitor_failed_logins_client logins within 15 minutes (many usernames).

Repeated occurrences of one kind for one account fold into its open alert (count, last time) instead of flooding
the page: a day for bulk_read / off_hours, an hour for the others.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from anfang.core import timefmt
from anfang.core.errors import Forbidden, NotFound, Unauthorized, pick
from anfang.security import audit
from anfang.security.models import AccessAlert, AuditEntry, DailyReads, User, UserSecurity
from anfang.security.roles import ROLE_LABELS, Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

log = structlog.get_logger(__name__)

KINDS = {
    "bulk_read": ("批量读取异常", "Unusually many persons read"),
    "off_hours": ("非工作时间访问", "Access at unusual hours"),
    "out_of_scope": ("越权访问尝试", "Access outside jurisdiction attempted"),
    "failed_logins": ("多次登录失败，账号已锁定", "Many failed logins, account locked"),
    "login_spray": ("同一来源多次登录失败", "Many failed logins from one client"),
    "sip_lockout": ("国标设备多次密码错误，已锁定", "GB/T 28181 device locked out after wrong passwords"),
    "sip_garbage": ("同一地址大量无效注册，已锁定该地址", "GB/T 28181: address locked out after invalid registers"),
}
_ACTIONS = {"read": "读取", "create": "新增", "update": "修改", "delete": "删除", "export": "导出", "import": "导入",
            "login": "登录", "viid_image": "查看"}
_ENTITIES = {"person": "人员", "house": "房屋", "address": "地址", "unit": "单位", "vehicle": "车辆",
             "doorplate": "门牌", "viid_images": "抓拍图片", "warning": "预警"}
SEVERITY = {"bulk_read": "high", "off_hours": "medium", "out_of_scope": "high", "failed_logins": "medium",
            "login_spray": "high", "sip_lockout": "medium", "sip_garbage": "high"}
_FOLD = {"bulk_read": timedelta(hours=24), "off_hours": timedelta(hours=24)}
_FOLD_DEFAULT = timedelta(hours=1)
PERSONAL_ACTIONS = frozenset({"read", "export", "import", "create", "update", "delete"})
SPRAY_WINDOW = 15 * 60.0
USUAL_DAYS = 3  # an hour the account worked in on this many days of its baseline window is usual for it


class AccountLocked(Unauthorized):
    code = "account_locked"


def kind_label(kind: str, lang: str = "zh-CN") -> str:
    zh, en = KINDS.get(kind, (kind, kind))
    return zh if lang.startswith("zh") else en


def _count_rows(entity_ids: list | None, detail: str, action: str) -> int:
    if action == "export":  # one entry per export: the rows are in the detail
        try:
            data = json.loads(detail)
            return int(data.get("rows") or data.get("total") or 0)
        except (ValueError, TypeError, AttributeError):
            return 0
    return len(entity_ids or [])


class AccessMonitor:
    """Watches audit entries (store.audit_hook) and login attempts of one node; writes alerts."""

    def __init__(self, store: Store, settings: Any) -> None:
        self.store = store
        self.settings = settings
        self.tz = ZoneInfo(settings.monitor_timezone)
        self._lock = threading.Lock()
        self._baseline: dict[tuple[int, str], float] = {}
        self._client_failures: dict[str, deque[float]] = defaultdict(deque)
        self._folded: dict[tuple[str, int | None], float] = {}
        self._hours: dict[tuple[int, str], set[int]] = {}
        self._local = threading.local()

    def attach(self) -> AccessMonitor:
        self.store.audit_hook = self.on_audit  # type: ignore[attr-defined]
        self.store.audit_counter = self.count_reads  # type: ignore[attr-defined]
        return self

    def count_reads(self, conn: Connection, at: datetime,
                    entries: list[tuple[Principal, str, str, list[str], str]]) -> list[int | None]:
        """Inside the audit batch's transaction (audit._write_batch): add the persons each entry read to its
        account's count for the local day of ``at``; return, per entry, the account's count with that entry
        included (None: not a person read). One upsert per account in the batch."""
        day = self._day(at)
        reads: list[tuple[int, int] | None] = []
        sums: dict[int, int] = {}
        for p, action, entity, ids, detail in entries:
            if p.user_id is None or entity not in ("person", "persons") or action not in ("read", "export"):
                reads.append(None)
                continue
            n = _count_rows(ids, detail, action)
            reads.append((p.user_id, n))
            sums[p.user_id] = sums.get(p.user_id, 0) + n
        if not sums:
            return [None] * len(entries)
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        table = DailyReads.__table__
        running: dict[int, int] = {}
        for user_id, n in sorted(sums.items()):
            stmt = insert(table).values(user_id=user_id, day=day, reads=n)
            stmt = stmt.on_conflict_do_update(index_elements=["user_id", "day"],
                                              set_={"reads": table.c.reads + stmt.excluded.reads})
            total = conn.execute(stmt.returning(table.c.reads)).scalar_one()
            running[user_id] = total - n  # the count before this batch
        out: list[int | None] = []
        for r in reads:
            if r is None:
                out.append(None)
            else:
                running[r[0]] += r[1]
                out.append(running[r[0]])
        return out

    # ---- audit observer ----------------------------------------------------------------------------------------
    def on_audit(self, p: Principal, action: str, entity: str, ids: list[str], detail: str,
                 day_total: int | None = None) -> None:
        if p.user_id is None or action not in PERSONAL_ACTIONS or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            now = utcnow()
            if detail == "denied_or_missing" and ids:
                self._check_out_of_scope(p, entity, ids)
            self._check_hours(p, action, entity, now)
            if entity in ("person", "persons") and action in ("read", "export"):
                self._check_volume(p, now, day_total)
        except Exception:  # noqa: BLE001 - monitoring must never break the request it watches
            log.exception("access_monitor_failed")
        finally:
            self._local.busy = False

    def _day(self, when: datetime) -> str:
        return when.astimezone(self.tz).date().isoformat()

    def _day_start(self, when: datetime) -> datetime:
        local = when.astimezone(self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(ZoneInfo("UTC"))

    def _reads(self, user_id: int, since: datetime, until: datetime) -> int:
        with self.store.session() as s:
            rows = s.execute(select(AuditEntry.action, AuditEntry.entity_ids, AuditEntry.detail)
                             .where(AuditEntry.user_id == user_id, AuditEntry.at >= since, AuditEntry.at < until,
                                    AuditEntry.action.in_(("read", "export")),
                                    AuditEntry.entity.in_(("person", "persons"))))
            return sum(_count_rows(ids, detail, action) for action, ids, detail in rows)

    def baseline(self, user_id: int, now: datetime) -> float:
        """Mean persons read per day over the previous monitor_baseline_days days (days without reads count 0)."""
        day = self._day(now)
        key = (user_id, day)
        if key not in self._baseline:
            start = self._day_start(now)
            days = max(1, int(self.settings.monitor_baseline_days))
            self._baseline[key] = self._reads(user_id, start - timedelta(days=days), start) / days
        return self._baseline[key]

    def threshold(self, user_id: int, now: datetime) -> float:
        return max(float(self.settings.monitor_min_reads), self.settings.monitor_factor * self.baseline(user_id, now))

    def _check_volume(self, p: Principal, now: datetime, total: int | None) -> None:
        """``total``: the account's persons read today, this entry included, from access_daily_reads (shared by
        every server process); without it (no counter attached), what the chain holds for today."""
        assert p.user_id is not None
        if total is None:
            total = self._reads(p.user_id, self._day_start(now), now + timedelta(seconds=1))
        limit = self.threshold(p.user_id, now)
        if total > limit:
            base = self.baseline(p.user_id, now)
            self.raise_alert("bulk_read", p, f"今日已读取{total}人（基线日均{base:.0f}人，阈值{limit:.0f}） / "
                                             f"{total} persons read today (baseline {base:.0f}/day, limit "
                                             f"{limit:.0f})", once_per_day=True)

    def usual_hours(self, user_id: int, now: datetime) -> set[int]:
        """Local hours in which the account worked on at least USUAL_DAYS different days of its baseline window
        (night shifts): access then is not unusual for it."""
        key = (user_id, self._day(now))
        if key not in self._hours:
            start = self._day_start(now)
            since = start - timedelta(days=max(1, int(self.settings.monitor_baseline_days)))
            with self.store.session() as s:
                ats = s.scalars(select(AuditEntry.at).where(AuditEntry.user_id == user_id, AuditEntry.at >= since,
                                                            AuditEntry.at < start,
                                                            AuditEntry.action.in_(tuple(PERSONAL_ACTIONS))))
                days: dict[int, set[str]] = defaultdict(set)
                for at in ats:
                    local = at.astimezone(self.tz)
                    days[local.hour].add(local.date().isoformat())
            self._hours[key] = {h for h, d in days.items() if len(d) >= USUAL_DAYS}
        return self._hours[key]

    def _check_hours(self, p: Principal, action: str, entity: str, now: datetime) -> None:
        start, end = self.settings.monitor_quiet_hours
        hour = now.astimezone(self.tz).hour
        quiet = start <= hour < end if start <= end else (hour >= start or hour < end)
        if quiet and p.user_id is not None and hour in self.usual_hours(p.user_id, now):
            return
        if quiet:
            zh = f"{_ACTIONS.get(action, action)}{_ENTITIES.get(entity, entity)}"
            self.raise_alert("off_hours", p, f"{timefmt.fmt(now, seconds=False)} {zh}（非工作时间 {start:02d}:00–"
                                             f"{end:02d}:00） / {timefmt.fmt(now, 'en', seconds=False)} {action} "
                                             f"{entity} (off hours {start:02d}:00-{end:02d}:00)", once_per_day=True)

    def _check_out_of_scope(self, p: Principal, entity: str, ids: list[str]) -> None:
        from anfang.registry.models import Address, House, Person, Vehicle, WorkUnit

        model = {"person": Person, "house": House, "unit": WorkUnit, "vehicle": Vehicle, "address": Address}.get(entity)
        if model is None:
            return
        wanted = [int(i) for i in ids if str(i).isdigit()]
        with self.store.session() as s:
            found = list(s.scalars(select(model.id).where(model.id.in_(wanted))))
        if found:
            self.raise_alert("out_of_scope", p, f"{entity} {','.join(map(str, found))}：记录存在但不在辖区内 / "
                                                f"exists outside the account's jurisdiction")

    def forbidden(self, p: Principal, method: str, path: str) -> None:
        """A logged-in account got 403 (called by the security middleware)."""
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            self.raise_alert("out_of_scope", p, f"403 {method} {path}")
        except Exception:  # noqa: BLE001
            log.exception("access_monitor_failed")
        finally:
            self._local.busy = False

    # ---- alerts --------------------------------------------------------------------------------------------------
    def raise_alert(self, kind: str, p: Principal, detail: str, *, once_per_day: bool = False,
                    user: User | None = None) -> int | None:
        now = utcnow()
        if once_per_day:  # a busy account over its limit: fold into the open alert at most once a minute
            key = (kind, p.user_id)
            t = time.monotonic()
            with self._lock:
                if t - self._folded.get(key, -1e9) < 60:
                    return None
                self._folded[key] = t
        county = p.county_code
        with self.store.session() as s:
            _serialise_alerts(s)
            if user is None and p.user_id is not None:
                user = s.get(User, p.user_id)
            if user is not None and county is None:
                county = user.county_code or _county_of(s, user)
            fold = _FOLD.get(kind, _FOLD_DEFAULT)
            q = (select(AccessAlert).where(AccessAlert.kind == kind, AccessAlert.acknowledged_at.is_(None),
                                           AccessAlert.last_at >= now - fold)
                 .order_by(AccessAlert.id.desc()).limit(1))
            q = q.where(AccessAlert.user_id == p.user_id) if p.user_id is not None else \
                q.where(AccessAlert.user_id.is_(None), AccessAlert.client == p.client)
            open_alert = s.scalar(q)
            if open_alert is not None:
                open_alert.count += 1
                open_alert.last_at = now
                if once_per_day:
                    open_alert.detail = detail[:2000]  # the latest figure
                return None
            alert = AccessAlert(at=now, last_at=now, kind=kind, severity=SEVERITY.get(kind, "medium"),
                                user_id=p.user_id, username=p.username, role=str(p.role), county_code=county,
                                client=p.client, count=1, detail=detail[:2000])
            s.add(alert)
            s.flush()
            alert_id = alert.id
        log.warning("access_alert", kind=kind, user=p.username, detail=detail)
        audit.record(self.store, p, "alert", "access_alert", [alert_id], detail=f"{kind}: {detail}"[:1000])
        return alert_id

    # ---- logins --------------------------------------------------------------------------------------------------
    def ensure_not_locked(self, s: Session, username: str) -> None:
        row = s.execute(select(UserSecurity.locked_until).join(User, User.id == UserSecurity.user_id)
                        .where(User.username == username)).first()
        if row is not None and row[0] is not None and row[0] > utcnow():
            zh, en = timefmt.fmt(row[0], seconds=False), timefmt.fmt(row[0], "en", seconds=False)
            raise AccountLocked(f"登录失败次数过多，账号已锁定至{zh}，请稍后再试或联系管理员解锁 / too many failed "
                                f"logins: account locked until {en}")

    def login_succeeded(self, s: Session, user: User) -> None:
        s.execute(update(UserSecurity).where(UserSecurity.user_id == user.id)
                  .values(failed_count=0, locked_until=None))

    def login_failed(self, username: str, client: str | None) -> None:
        """Count a failed login: lock the account at login_lockout_failures, alert on lockouts and on sprays."""
        now = utcnow()
        limit = max(1, int(self.settings.login_lockout_failures))
        locked = None
        with self.store.session() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is not None:
                sec = s.get(UserSecurity, user.id)
                if sec is None:
                    sec = UserSecurity(user_id=user.id, failed_count=0, totp_enabled=False)
                    s.add(sec)
                if sec.locked_until is not None and sec.locked_until <= now:
                    sec.failed_count, sec.locked_until = 0, None  # the lock ran out: a fresh count
                sec.failed_count = (sec.failed_count or 0) + 1
                sec.last_failed_at = now
                if sec.failed_count >= limit and (sec.locked_until is None or sec.locked_until <= now):
                    sec.locked_until = now + timedelta(minutes=self.settings.login_lockout_minutes)
                    locked = (user, sec.failed_count)
                s.flush()
        if locked is not None:
            user, count = locked
            p = Principal(user_id=user.id, username=user.username, role=Role(user.role), county_code=user.county_code,
                          client=client)
            minutes = self.settings.login_lockout_minutes
            self.raise_alert("failed_logins", p, f"连续{count}次登录失败，锁定{minutes:g}分钟 / {count} failed logins, "
                                                 f"locked for {minutes:g} minutes", user=user)
        if client:
            with self._lock:
                q = self._client_failures[client]
                t = time.monotonic()
                q.append(t)
                while q and q[0] < t - SPRAY_WINDOW:
                    q.popleft()
                n = len(q)
            if n >= self.settings.monitor_failed_logins_client:
                self.raise_alert("login_spray", Principal.anonymous(username, client),
                                 f"来源{client}在15分钟内登录失败{n}次（最近：{username}） / {n} failed logins from "
                                 f"{client} in 15 minutes")

    def unlock(self, s: Session, user_id: int) -> None:
        s.execute(update(UserSecurity).where(UserSecurity.user_id == user_id).values(failed_count=0,
                                                                                       locked_until=None))


_ALERT_LOCK = 0x616E66616C72  # "anfalr"


def _serialise_alerts(s: Session) -> None:
    """Raising an alert is check-then-insert (fold into the open alert, else a new one); the primary and its reader
    processes raise alerts too, so one at a time across processes, or two would open two alerts for one account:
    PostgreSQL's transaction-level advisory lock; on SQLite a write statement first, which takes the database's
    write lock for the rest of the transaction (the check included)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ALERT_LOCK})
    else:
        s.execute(update(AccessAlert).where(AccessAlert.id == -1).values(count=AccessAlert.count))


def _county_of(s: Session, user: User) -> str | None:
    from anfang.registry.models import Grid, PoliceArea, PoliceStation

    if user.community_code:
        return user.community_code[:6]
    if user.police_area_id:
        return s.scalar(select(PoliceStation.county_code).join(PoliceArea, PoliceArea.station_id == PoliceStation.id)
                        .where(PoliceArea.id == user.police_area_id))
    if user.grid_id:
        code = s.scalar(select(Grid.community_code).where(Grid.id == user.grid_id))
        return code[:6] if code else None
    return None


# ---- reading and acknowledging alerts ------------------------------------------------------------------------------
ALERT_READERS = frozenset({Role.city_admin, Role.county_admin})


def _alert_scope(p: Principal) -> Any:
    if p.role is Role.city_admin:
        return AccessAlert.id.is_not(None)
    if p.role is Role.county_admin:
        return AccessAlert.county_code == p.county_code
    raise Forbidden("仅管理员可查看访问告警 / only administrators see access alerts")


SEVERITY_LABELS = {"high": ("高", "high"), "medium": ("中", "medium"), "low": ("低", "low")}


def alert_dict(a: AccessAlert, lang: str = "zh-CN") -> dict[str, Any]:
    i = 1 if lang.startswith("en") else 0
    role_label = ROLE_LABELS[Role(a.role)][i] if a.role in Role.__members__ else a.role
    return {"id": a.id, "at": a.at.isoformat(), "last_at": a.last_at.isoformat(), "kind": a.kind,
            "kind_label": kind_label(a.kind, lang), "severity": a.severity, "user_id": a.user_id,
            "severity_label": SEVERITY_LABELS.get(a.severity, (a.severity, a.severity))[i],
            "role_label": role_label,
            "username": a.username, "role": a.role, "county_code": a.county_code, "client": a.client,
            "count": a.count, "detail": pick(a.detail, lang), "acknowledged_by": a.acknowledged_by,
            "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None}


def list_alerts(store: Store, p: Principal, *, open_only: bool = False, kind: str | None = None, limit: int = 100,
                lang: str = "zh-CN") -> list[dict[str, Any]]:
    cond = _alert_scope(p)
    q = select(AccessAlert).where(cond).order_by(AccessAlert.last_at.desc(), AccessAlert.id.desc()).limit(limit)
    if open_only:
        q = q.where(AccessAlert.acknowledged_at.is_(None))
    if kind:
        q = q.where(AccessAlert.kind == kind)
    with store.session() as s:
        out = [alert_dict(a, lang) for a in s.scalars(q)]
    audit.record(store, p, "read", "access_alert", [a["id"] for a in out], detail=f"open={open_only};kind={kind}")
    return out


def acknowledge(store: Store, p: Principal, alert_id: int) -> dict[str, Any]:
    cond = _alert_scope(p)
    with store.session() as s:
        a = s.scalar(select(AccessAlert).where(AccessAlert.id == alert_id, cond)) if 0 < alert_id < 2**31 else None
        if a is None:
            raise NotFound(f"告警不存在：{alert_id}")
        if a.acknowledged_at is None:
            a.acknowledged_at, a.acknowledged_by = utcnow(), p.username
        out = alert_dict(a)
    audit.record(store, p, "update", "access_alert", [alert_id], detail="acknowledged")
    return out


def unlock_user(store: Store, p: Principal | None, username: str) -> None:
    """Lift a lockout (CLI: p None; API: a city administrator)."""
    if p is not None and p.role is not Role.city_admin:
        raise Forbidden("仅市级管理员可解锁账号 / only the city administrator may unlock accounts")
    with store.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"用户不存在：{username}")
        s.execute(update(UserSecurity).where(UserSecurity.user_id == user.id).values(failed_count=0,
                                                                                       locked_until=None))
        uid = user.id
    audit.record(store, p or Principal.system("cli"), "update", "user", [uid], detail="unlocked")


# ---- GB/T 28181 lock-outs (gb28181/server.py): shown as security alerts; acknowledging one lifts the lock-out -------
def gb_lockout_alert(store: Store, kind: str, device_id: str, address: str, failures: int, minutes: float) -> int:
    """A new alert for one lock-out (``sip_lockout``: a device id; ``sip_garbage``: an address); returns its id.
    The SIP server lifts the lock-out as soon as the alert is acknowledged (console, API or ``unlock_device``)."""
    if kind == "sip_lockout":
        detail = (f"设备 {device_id}（来自 {address}）{failures} 次密码错误，锁定 {minutes:g} 分钟；确认此告警即解锁 / "
                  f"device {device_id} from {address}: {failures} wrong passwords, locked for {minutes:g} min; "
                  "acknowledging this alert lifts it")
    else:
        detail = (f"地址 {address} 发送 {failures} 次无效注册（无效编码或摘要），锁定 {minutes:g} 分钟；"
                  "确认此告警即解锁 / "
                  f"address {address}: {failures} invalid REGISTERs (bad ids or digests), locked for {minutes:g} min; "
                  "acknowledging this alert lifts it")
    username = f"gb28181:{device_id}" if kind == "sip_lockout" else "gb28181"
    with store.session() as s:
        alert = AccessAlert(kind=kind, severity=SEVERITY[kind], user_id=None, username=username[:64],
                            role="device", client=address[:64], count=failures, detail=detail)
        s.add(alert)
        s.flush()
        alert_id = alert.id
    audit.record(store, Principal.system("gb28181"), "alert", "access_alert", [alert_id], detail=f"{kind}: {detail}")
    return alert_id


def lifted(store: Store, alert_ids: list[int]) -> list[int]:
    """Which of these lock-out alerts an administrator has acknowledged."""
    if not alert_ids:
        return []
    with store.session() as s:
        return list(s.scalars(select(AccessAlert.id).where(AccessAlert.id.in_(alert_ids),
                                                           AccessAlert.acknowledged_at.is_not(None))))


def unlock_device(store: Store, p: Principal | None, device_id: str | None = None, address: str | None = None) -> int:
    """Lift GB/T 28181 lock-outs of a device id (or of an address): acknowledges their open alerts, which the SIP
    server picks up within a second; returns how many. CLI: ``anfang gb28181 unlock``; API: the alert's ack."""
    if p is not None and p.role not in (Role.city_admin, Role.county_admin):
        raise Forbidden("仅管理员可解锁设备 / only administrators may unlock devices")
    cond = [AccessAlert.acknowledged_at.is_(None)]
    if device_id:
        cond += [AccessAlert.kind == "sip_lockout", AccessAlert.username == f"gb28181:{device_id}"[:64]]
    elif address:
        cond += [AccessAlert.kind == "sip_garbage", AccessAlert.client == address[:64]]
    else:
        raise NotFound("请指定设备编码或地址 / give a device id or an address")
    who = (p or Principal.system("cli")).username
    with store.session() as s:
        ids = list(s.scalars(select(AccessAlert.id).where(*cond)))
        if ids:
            s.execute(update(AccessAlert).where(AccessAlert.id.in_(ids)).values(acknowledged_at=utcnow(),
                                                                                acknowledged_by=who))
    if ids:
        audit.record(store, p or Principal.system("cli"), "update", "access_alert", ids,
                     detail=f"gb28181 unlock {device_id or address}")
    return len(ids)
