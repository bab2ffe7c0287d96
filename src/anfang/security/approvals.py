"""Query authorisation (数据查询授权): sensitive or bulk queries need a stated reason and, by policy, a supervisor's
approval before they run.

The policy is data (``query_policy.json`` next to this file, or the file named by ``ANFANG_QUERY_POLICY``): which
query kinds exist, per role whether each is free, needs a reason, needs approval or is forbidden, the export row
threshold, how long requests and approvals live, and who supervises whom. The code only interprets it.

Life of a request: ``pending`` → ``approved`` | ``rejected`` (by a supervisor) → ``used`` (the query has run; it
may run again, e.g. its next page, until the approval's time is up) | ``expired`` (not decided, or not used, in
time; or withdrawn). An approval never widens the requester's jurisdiction: the held
query runs exactly as asked, through the same scope and masking as any other. Every step is an audit-chain entry.

Framework-free: views call :func:`authorise` before running a held endpoint's work.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from anfang.core.errors import AnfangError, Forbidden, NotFound, ValidationError
from anfang.registry.models import Address, Grid, PoliceArea, Region
from anfang.security import audit
from anfang.security.records import QueryApproval
from anfang.security.roles import Role, role_label
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

POLICY_FILE = Path(__file__).with_name("query_policy.json")
POLICY_ENV = "ANFANG_QUERY_POLICY"
LEVELS = ("free", "reason", "approval", "forbidden")
STATES = ("pending", "approved", "rejected", "used", "expired")
STATE_LABELS: dict[str, tuple[str, str]] = {
    "pending": ("待审批", "pending"), "approved": ("已批准", "approved"), "rejected": ("已驳回", "rejected"),
    "used": ("已使用", "used"), "expired": ("已过期", "expired"),
}
# Breadth of an area, widest first; a query over a "wide" level (policy: town or wider) is a wide query.
AREA_LEVELS = ("city", "county", "town", "community", "police_area", "grid", "self")
AREA_LABELS = {"city": ("全市", "whole city"), "county": ("县（市、区）", "county"), "town": ("乡镇（街道）", "town"),
               "community": ("社区（村）", "community"), "police_area": ("警务区", "police area"),
               "grid": ("网格", "grid"), "self": ("本人", "own record")}


# ---- errors the HTTP edge turns into answers ---------------------------------------------------------------------
class ReasonRequired(AnfangError):
    """428: the query needs a stated reason (``reason=``) before it runs or is submitted for approval."""

    status = 428
    code = "reason_required"


class ApprovalPending(AnfangError):
    """202: the query is held; ``detail`` is the approval request (id, state, approver). Ask again once approved."""

    status = 202
    code = "approval_pending"


# OpenAPI description of the answers of a held endpoint (``responses=`` of its route).
HELD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "已提交审批，待上级批准（error.detail 为审批申请） / held for a supervisor's approval"},
    428: {"description": "须说明查询事由（reason） / a stated reason is required"},
}


# ---- policy ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    queries: dict[str, tuple[str, str]]
    roles: dict[str, dict[str, str]]
    supervisors: dict[str, list[str]]
    pending_hours: float
    approved_hours: float
    min_reason_chars: int
    bulk_export_rows: int
    wide_levels: frozenset[str]
    track_free_hours: float = 24.0  # one plate / person within a window this short is a check, not a track
    video_download_minutes: float = 10.0  # a longer recording download is ``video_download_long``
    source: str = ""

    def level(self, role: Role | str, query_kind: str) -> str:
        if query_kind not in self.queries:
            raise ValueError(f"unknown query kind {query_kind!r}")
        return self.roles.get(str(role), {}).get(query_kind, "forbidden")

    def label(self, query_kind: str, lang: str = "zh-CN") -> str:
        zh, en = self.queries[query_kind]
        return zh if lang.startswith("zh") else en


def parse_policy(raw: dict[str, Any]) -> Policy:
    queries = {k: (v["zh"], v["en"]) for k, v in raw["queries"].items()}
    roles = {r: dict(v) for r, v in raw["roles"].items()}
    for r, levels in roles.items():
        Role(r)
        for q, lvl in levels.items():
            if q not in queries or lvl not in LEVELS:
                raise ValueError(f"query policy: role {r}: {q}={lvl} is not a known query / level")
    supervisors = {r: list(v) for r, v in raw.get("supervisors", {}).items() if not r.startswith("_")}
    return Policy(queries=queries, roles=roles, supervisors=supervisors,
                  pending_hours=float(raw.get("pending_hours", 72)),
                  approved_hours=float(raw.get("approved_hours", 24)),
                  min_reason_chars=int(raw.get("min_reason_chars", 4)),
                  bulk_export_rows=int(raw.get("bulk_export_rows", 200)),
                  wide_levels=frozenset(raw.get("wide_levels", ("city", "county", "town"))),
                  track_free_hours=float(raw.get("track_free_hours", 24)),
                  video_download_minutes=float(raw.get("video_download_minutes", 10)),
                  source=str(raw.get("_source", "")))


@lru_cache(maxsize=4)
def _load(path: str) -> Policy:
    return parse_policy(json.loads(Path(path).read_text(encoding="utf-8")))


def load_policy(path: Path | str | None = None) -> Policy:
    """The query policy: the given file, else ANFANG_QUERY_POLICY, else the packaged query_policy.json."""
    return _load(str(path or os.environ.get(POLICY_ENV) or POLICY_FILE))


# ---- how wide a query is -----------------------------------------------------------------------------------------
def jurisdiction_level(p: Principal) -> str:
    return {Role.city_admin: "city", Role.county_admin: "county", Role.police: "police_area",
            Role.grid_worker: "grid", Role.property_staff: "community"}.get(p.role, "self")


def _code_level(code: str) -> str:
    """Level named by a region code or an address-code prefix (GB/T 2260 + town + community digits)."""
    n = len(code)
    if n <= 4:
        return "city"
    if n <= 6:
        return "county"
    if n < 12 or (n == 12 and code.endswith("000")):
        return "town"
    return "community"


def requested_level(store: Store, p: Principal, filters: dict[str, Any]) -> str:
    """The breadth of the area a query names: its narrowest area filter, else the asker's whole jurisdiction.

    It is the area *asked for*, not what scope leaves of it: a grid worker asking for a whole town asks a wide
    question even though scope will only ever show him his grid.
    """
    f = {k: str(v).strip() for k, v in filters.items() if v not in (None, "")}
    levels: list[str] = []
    if "community_code" in f:
        levels.append("community")
    if "town_code" in f:
        levels.append("town")
    if "county_code" in f:
        levels.append("county")
    prefix = f.get("address_prefix") or f.get("prefix")
    if prefix:
        if prefix.isdigit():
            levels.append(_code_level(prefix))
        else:
            levels.append(_name_level(store, prefix))
    if not levels:
        return jurisdiction_level(p)
    return max(levels, key=AREA_LEVELS.index)  # the narrowest of the filters bounds the area


def _name_level(store: Store, prefix: str) -> str:
    """Level of an address full-name prefix: the deepest region whose full name the prefix contains."""
    from anfang.core.regions import PROVINCE_NAME

    if not prefix.startswith(PROVINCE_NAME):
        prefix = PROVINCE_NAME + prefix
    candidates = {prefix[:i] for i in range(len(PROVINCE_NAME) + 1, len(prefix) + 1)}
    with store.session() as s:
        found = list(s.execute(select(Region.level, Region.full_name).where(Region.full_name.in_(candidates))))
    if not found:
        return "city"
    level, full = max(found, key=lambda r: len(r[1]))
    if level == "community" and len(prefix) > len(full):
        return "police_area"  # below a community: a building or narrower
    return level if level in AREA_LEVELS else "city"


def is_wide(level: str, policy: Policy | None = None) -> bool:
    return level in (policy or load_policy()).wide_levels


# ---- who supervises whom -----------------------------------------------------------------------------------------
def _police_areas_where(s: Session, cond: Any) -> list[int]:
    return sorted(x for x in s.scalars(select(Address.police_area_id).where(cond).distinct()) if x is not None)


def _county_of(s: Session, p: Principal) -> str | None:
    if p.county_code:
        return p.county_code
    if p.grid_id is not None:
        g = s.get(Grid, p.grid_id)
        return g.community_code[:6] if g else None
    if p.police_area_id is not None:
        a = s.get(PoliceArea, p.police_area_id)
        return a.station.county_code if a else None
    if p.community_code:
        return p.community_code[:6]
    return None


def approver_rule(s: Session, p: Principal, policy: Policy) -> tuple[str, str]:
    """(rule, label): the supervisors of p as a compact rule ("police_area:1,2;county:350404;city") and a readable
    zh-CN description, from the policy's supervisor chain and p's place in the jurisdiction hierarchy."""
    clauses: list[str] = []
    labels: list[str] = []
    for kind in policy.supervisors.get(p.role.value, ["city_admin"]):
        if kind == "police_of_grid" and p.grid_id is not None:
            areas = _police_areas_where(s, Address.grid_id == p.grid_id)
        elif kind == "police_of_community" and p.community_code:
            areas = _police_areas_where(s, Address.community_code == p.community_code)
        else:
            areas = []
        if areas:
            clauses.append("police_area:" + ",".join(map(str, areas)))
            names = [a.name for a in s.scalars(select(PoliceArea).where(PoliceArea.id.in_(areas)))]
            labels.append(f"{'、'.join(names)}社区民警")
        elif kind == "county_admin" and (county := _county_of(s, p)):
            clauses.append(f"county:{county}")
            name = s.scalar(select(Region.name).where(Region.code == county)) or county
            labels.append(f"{name}县级管理员")
        elif kind == "city_admin":
            clauses.append("city")
            labels.append("市级管理员")
    if not clauses:
        clauses, labels = ["city"], ["市级管理员"]
    return ";".join(dict.fromkeys(clauses)), " 或 ".join(dict.fromkeys(labels))


def may_decide(approver: Principal, req: QueryApproval) -> bool:
    """Whether approver supervises the request's requester (and is not the requester himself)."""
    if approver.user_id is None or approver.user_id == req.requester_id:
        return False
    for clause in req.approver_rule.split(";"):
        kind, _, value = clause.partition(":")
        if kind == "police_area" and approver.role is Role.police and approver.police_area_id is not None \
                and str(approver.police_area_id) in value.split(","):
            return True
        if kind == "county" and approver.role is Role.county_admin and approver.county_code == value:
            return True
        if kind == "city" and approver.role is Role.city_admin:
            return True
    return False


# ---- requests ----------------------------------------------------------------------------------------------------
def params_hash(target: str, params: dict[str, Any]) -> str:
    canon = {k: str(v) for k, v in sorted(params.items()) if v not in (None, "")}
    return hashlib.sha256(json.dumps([target, canon], ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def approval_dict(r: QueryApproval, lang: str = "zh-CN", policy: Policy | None = None) -> dict[str, Any]:
    policy = policy or load_policy()
    zh = lang.startswith("zh")
    state_label = STATE_LABELS.get(r.state, (r.state, r.state))[0 if zh else 1]
    return {
        "id": r.id, "query_kind": r.query_kind,
        "query_label": policy.label(r.query_kind, lang) if r.query_kind in policy.queries else r.query_kind,
        "target": r.target, "params": dict(r.params or {}), "summary": r.summary, "reason": r.reason,
        "requester": r.requester, "requester_role": r.requester_role,
        "requester_role_label": role_label(r.requester_role, lang), "approver": r.approver_label,
        "state": r.state, "state_label": state_label, "created_at": r.created_at.isoformat(),
        "expires_at": r.expires_at.isoformat(), "decided_at": r.decided_at.isoformat() if r.decided_at else None,
        "decided_by": r.decided_by, "decision_note": r.decision_note,
        "used_at": r.used_at.isoformat() if r.used_at else None, "url": f"/security/approvals#a{r.id}",
        "created_local": _local(r.created_at), "expires_local": _local(r.expires_at),
    }


def _local(at: Any) -> str:
    """Beijing time for the console (the API keeps ISO 8601 UTC)."""
    from anfang.core import timefmt

    return timefmt.fmt(at, seconds=False)


def _audit(store: Store, p: Principal, action: str, r: QueryApproval, **extra: Any) -> None:
    detail = {"kind": r.query_kind, "target": r.target, "requester": r.requester, **extra}
    audit.record(store, p, action, "query_approval", [r.id],
                 json.dumps(detail, ensure_ascii=False, separators=(",", ":")))


def expire_due(store: Store) -> int:
    """Move pending and approved requests past their time to ``expired`` (audited); returns how many."""
    now = utcnow()
    with store.session() as s:
        due = list(s.scalars(select(QueryApproval).where(QueryApproval.state.in_(("pending", "approved")),
                                                         QueryApproval.expires_at <= now).limit(1000)))
        changed = []
        for r in due:
            n = s.execute(update(QueryApproval).where(QueryApproval.id == r.id, QueryApproval.state == r.state)
                          .values(state="expired")).rowcount
            if n:
                changed.append((r, r.state))
        s.expunge_all()
    for r, was in changed:
        _audit(store, Principal.system("system", "approvals"), "approval_expire", r, was=was)
    return len(changed)


@dataclass
class Grant:
    """Permission to run a query now: how it was obtained, the reason and (when approved) the request's id."""

    query_kind: str
    level: str
    reason: str | None = None
    approval_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _clean_reason(reason: str | None) -> str:
    return " ".join((reason or "").split())[:500]


def authorise(store: Store, p: Principal, *, query_kind: str, target: str, params: dict[str, Any], summary: str,
              reason: str | None = None, approval_id: int | None = None, policy: Policy | None = None) -> Grant:
    """May p run this query now? Returns a Grant, or raises Forbidden / ReasonRequired / ApprovalPending.

    With approval: an approved, unexpired request of p for the same target and parameters (the given
    ``approval_id``, or found by the parameters' hash) is consumed (→ ``used``) and the query runs; a pending one
    is answered with ApprovalPending again; otherwise a reason makes a new pending request.
    """
    policy = policy or load_policy()
    level = policy.level(p.role, query_kind)
    label = policy.label(query_kind)
    if level == "forbidden":
        audit.record(store, p, "query_denied", "query_approval", [], f"{query_kind}:{target}")
        raise Forbidden(f"当前角色不得进行“{label}” / role {p.role.value} may not run this query "
                        f"({policy.label(query_kind, 'en')})")
    text = _clean_reason(reason)
    if level == "free":
        return Grant(query_kind, level, text or None)
    if level == "reason":
        if len(text) < policy.min_reason_chars:
            raise ReasonRequired(f"“{label}”须说明查询事由（至少{policy.min_reason_chars}个字） / "
                                 f"this query needs a stated reason (parameter reason, at least "
                                 f"{policy.min_reason_chars} characters)", detail={"query_kind": query_kind})
        audit.record(store, p, "query_reason", "query_approval", [],
                     json.dumps({"kind": query_kind, "target": target, "reason": text}, ensure_ascii=False,
                                separators=(",", ":")))
        return Grant(query_kind, level, text)
    # level == "approval"
    expire_due(store)
    digest = params_hash(target, params)
    with store.session() as s:
        stmt = select(QueryApproval).where(QueryApproval.requester_id == p.user_id,
                                           QueryApproval.requester == p.username)
        if approval_id is not None:
            req = s.scalar(stmt.where(QueryApproval.id == approval_id))
            if req is None:
                raise NotFound(f"审批申请不存在：{approval_id} / no such approval request")
            if req.params_hash != digest:
                raise Forbidden(f"审批申请 #{req.id} 批准的是另一查询，不适用于本次查询 / approval #{req.id} is for "
                                "a different query")
        else:
            now = utcnow()
            req = s.scalar(stmt.where(QueryApproval.params_hash == digest,
                                      or_(QueryApproval.state == "pending",
                                          and_(QueryApproval.state.in_(("approved", "used")),
                                               QueryApproval.expires_at > now)))
                           .order_by(QueryApproval.id.desc()).limit(1))
        if req is not None and req.state in ("approved", "used") and req.expires_at > utcnow():
            # The first run moves it to "used"; until it expires the same query may run again (next pages,
            # a second download), each run audited and, for exports, logged with the approval's number.
            if req.state == "approved":
                s.execute(update(QueryApproval).where(QueryApproval.id == req.id, QueryApproval.state == "approved")
                          .values(state="used", used_at=utcnow()))
            s.commit()
            s.refresh(req)
            s.expunge(req)
            _audit(store, p, "approval_use", req)
            return Grant(query_kind, level, req.reason, req.id)
        if req is not None and req.state == "pending":
            s.expunge(req)
            raise ApprovalPending(_pending_message(req), detail=approval_dict(req, policy=policy))
        if req is not None and approval_id is not None:
            lapsed = req.state in ("approved", "used") and req.expires_at <= utcnow()
            state = STATE_LABELS["expired" if lapsed else req.state] if (lapsed or req.state in STATE_LABELS) \
                else (req.state, req.state)
            raise Forbidden(f"审批申请 #{req.id} {state[0]}，不能再用于查询 / approval #{req.id} is {state[1]}")
        if len(text) < policy.min_reason_chars:
            raise ReasonRequired(f"“{label}”须说明查询事由（至少{policy.min_reason_chars}个字）并经上级审批 / "
                                 f"this query needs a stated reason (parameter reason, at least "
                                 f"{policy.min_reason_chars} characters) and a supervisor's approval",
                                 detail={"query_kind": query_kind})
        rule, approver = approver_rule(s, p, policy)
        now = utcnow()
        req = QueryApproval(query_kind=query_kind, target=target[:48],
                            params={k: str(v) for k, v in params.items() if v not in (None, "")},
                            params_hash=digest, summary=summary[:300], reason=text, requester_id=p.user_id,
                            requester=p.username, requester_role=p.role.value, approver_rule=rule[:200],
                            approver_label=approver[:200], state="pending", created_at=now,
                            expires_at=now + timedelta(hours=policy.pending_hours))
        s.add(req)
        s.commit()
        s.refresh(req)
        s.expunge(req)
    _audit(store, p, "approval_request", req, reason=text, summary=req.summary)
    raise ApprovalPending(_pending_message(req), detail=approval_dict(req, policy=policy))


def authorise_wide_search(store: Store, p: Principal, entity: str, filters: dict[str, Any], reason: str | None,
                          approval_id: int | None) -> Grant | None:
    """Gate of a list query over an area: a town or wider is a wide search (policy ``wide_search``); narrower
    lists run as before (returns None)."""
    policy = load_policy()
    level = requested_level(store, p, filters)
    if not is_wide(level, policy):
        return None
    shown = {k: str(v) for k, v in filters.items() if v not in (None, "")}
    where = "，".join(f"{k}={v}" for k, v in shown.items()) or "全部辖区"
    return authorise(store, p, query_kind="wide_search", target=f"search:{entity}", params=shown,
                     summary=f"查询{entity}，范围：{AREA_LABELS[level][0]}（{where}）", reason=reason,
                     approval_id=approval_id, policy=policy)


def _pending_message(r: QueryApproval) -> str:
    return (f"查询已提交审批：申请 #{r.id}（{r.summary}），待{r.approver_label}审批；批准后重新发起同一查询即可执行 / "
            f"held for approval: request #{r.id}, awaiting {r.approver_label}; repeat the query once approved")


def decide(store: Store, approver: Principal, approval_id: int, approve: bool, note: str = "",
           policy: Policy | None = None) -> dict[str, Any]:
    """A supervisor approves or rejects a pending request (audited); returns the request."""
    policy = policy or load_policy()
    expire_due(store)
    with store.session() as s:
        req = s.get(QueryApproval, approval_id)
        if req is None:
            raise NotFound(f"审批申请不存在：{approval_id} / no such approval request")
        if not may_decide(approver, req):
            audit.record(store, approver, "approval_denied", "query_approval", [approval_id], "not a supervisor")
            raise Forbidden("您不是该申请人的审批人 / you do not supervise this requester")
        if req.state != "pending":
            label = STATE_LABELS.get(req.state, (req.state, req.state))
            raise ValidationError(f"申请 #{req.id} {label[0]}，不能再审批 / request is {label[1]}")
        if not approve and len(_clean_reason(note)) < 2:
            raise ValidationError("驳回须填写理由 / a rejection needs a note")
        now = utcnow()
        values: dict[str, Any] = {"state": "approved" if approve else "rejected", "decided_at": now,
                                  "decided_by": approver.username, "decided_by_id": approver.user_id,
                                  "decision_note": _clean_reason(note)[:300] or None}
        if approve:
            values["expires_at"] = now + timedelta(hours=policy.approved_hours)
        n = s.execute(update(QueryApproval).where(QueryApproval.id == req.id, QueryApproval.state == "pending")
                      .values(**values)).rowcount
        if not n:
            raise ValidationError(f"申请 #{req.id} 已被处理 / request was decided meanwhile")
        s.commit()
        s.refresh(req)
        s.expunge(req)
    _audit(store, approver, "approval_approve" if approve else "approval_reject", req, note=req.decision_note or "")
    return approval_dict(req, policy=policy)


def withdraw(store: Store, p: Principal, approval_id: int) -> dict[str, Any]:
    """The requester withdraws his own pending request (it becomes ``expired``)."""
    with store.session() as s:
        req = s.get(QueryApproval, approval_id)
        if req is None or req.requester_id != p.user_id:
            raise NotFound(f"审批申请不存在：{approval_id} / no such approval request")
        n = s.execute(update(QueryApproval).where(QueryApproval.id == req.id, QueryApproval.state == "pending")
                      .values(state="expired", decision_note="申请人撤回 / withdrawn")).rowcount
        s.commit()
        s.refresh(req)
        s.expunge(req)
    if n:
        _audit(store, p, "approval_cancel", req)  # audit_log.action holds 16 characters
    return approval_dict(req)


def my_requests(store: Store, p: Principal, limit: int = 100) -> list[QueryApproval]:
    expire_due(store)
    with store.session() as s:
        rows = list(s.scalars(select(QueryApproval).where(QueryApproval.requester_id == p.user_id,
                                                          QueryApproval.requester == p.username)
                              .order_by(QueryApproval.id.desc()).limit(limit)))
        s.expunge_all()
    return rows


def to_decide(store: Store, approver: Principal, limit: int = 500) -> list[QueryApproval]:
    """Pending requests this approver supervises, oldest first."""
    expire_due(store)
    if approver.role not in (Role.police, Role.county_admin, Role.city_admin):
        return []
    with store.session() as s:
        rows = list(s.scalars(select(QueryApproval).where(QueryApproval.state == "pending")
                              .order_by(QueryApproval.id).limit(limit)))
        s.expunge_all()
    return [r for r in rows if may_decide(approver, r)]


def decided_by(store: Store, approver: Principal, limit: int = 50) -> list[QueryApproval]:
    with store.session() as s:
        rows = list(s.scalars(select(QueryApproval).where(QueryApproval.decided_by_id == approver.user_id)
                              .order_by(QueryApproval.decided_at.desc()).limit(limit)))
        s.expunge_all()
    return rows


def pending_count(store: Store, approver: Principal) -> int:
    with store.session() as s:
        if not s.scalar(select(func.count()).select_from(QueryApproval).where(QueryApproval.state == "pending")):
            return 0
    return len(to_decide(store, approver))

