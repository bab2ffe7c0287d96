"""Projects in the store: create, revise the design, take lifecycle steps, record funding and spend (no HTTP).

Scope (who sees which project, by its community): the city admin all; a county admin his county; property staff
their community; police / grid workers the communities that hold addresses of their 警务区 / grid. Residents and
anonymous users nothing. What each role may *do* is the lifecycle rule file's ``roles``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from anfang.construction.acceptance import stability
from anfang.construction.lifecycle import (
    check_funding,
    design_check,
    funding_summary,
    load_lifecycle,
    transition,
)
from anfang.construction.models import Funding, Project, ProjectStep
from anfang.construction.tiers import Item, load_rules
from anfang.core.errors import Forbidden, NotFound, ValidationError
from anfang.registry.models import Address, Region
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store


def community_condition(p: Principal, column: Any) -> ColumnElement[bool]:
    """The communities ``p`` may see, as a condition on a community-code column."""
    if p.role == Role.city_admin:
        return true()
    if p.role == Role.county_admin and p.county_code:
        return column.like(f"{p.county_code}%")
    if p.role == Role.property_staff and p.community_code:
        return column == p.community_code
    if p.role == Role.police and p.police_area_id is not None:
        return column.in_(select(Address.community_code).where(Address.police_area_id == p.police_area_id))
    if p.role == Role.grid_worker and p.grid_id is not None:
        return column.in_(select(Address.community_code).where(Address.grid_id == p.grid_id))
    raise Forbidden("无权查看建设项目 / not allowed")


def _items(raw: Any) -> list[list[str]]:
    out: set[tuple[str, str]] = set()
    for it in raw or []:
        pair = (it.get("subsystem"), it.get("place")) if isinstance(it, dict) else tuple(it)[:2]
        if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
            raise ValidationError("建设项须为（子系统, 点位） / an item is (subsystem, place)")
        out.add((pair[0], pair[1]))
    return [list(x) for x in sorted(out)]


def _check(pr: Project, lang: str = "zh") -> dict[str, Any]:
    rules = load_rules(pr.rules_version)
    return design_check(pr.design_items, pr.target_tier, pr.not_applicable, rules).to_dict(rules, lang)


def project_dict(s: Session, pr: Project, p: Principal | None = None, lang: str = "zh",
                 detail: bool = False) -> dict[str, Any]:
    lc = load_lifecycle()
    zh = lang.startswith("zh")
    tiers = {t.code: t for t in load_rules(pr.rules_version).tiers}
    t = tiers.get(pr.target_tier)
    labels = {a.code: a.zh if zh else a.en for a in lc.actions.values()} | {"create": "创建项目" if zh else "created",
                                                                           "revise": "修改方案" if zh else "revised"}
    out: dict[str, Any] = {
        "id": pr.id, "community_code": pr.community_code, "name": pr.name, "kind": pr.kind,
        "kind_label": lc.kinds.get(pr.kind, {}).get("zh" if lang.startswith("zh") else "en", pr.kind),
        "target_tier": pr.target_tier, "target_label": (t.zh if zh else t.en) if t else pr.target_tier,
        "state": pr.state, "state_label": lc.state_label(pr.state, lang), "design_round": pr.design_round,
        "budget": str(pr.budget) if pr.budget is not None else None,
        "created_by": pr.created_by, "created_at": pr.created_at.isoformat(), "updated_at": pr.updated_at.isoformat(),
        "running_since": pr.running_since.isoformat() if pr.running_since else None,
        "accepted_at": pr.accepted_at.isoformat() if pr.accepted_at else None,
    }
    money = funding_summary(s.execute(select(Funding.kind, Funding.source, Funding.amount)
                                      .where(Funding.project_id == pr.id)).all())
    out["funding"] = money.to_dict(lc, lang)
    if p is not None:
        out["actions"] = [{"code": a.code, "label": a.zh if lang.startswith("zh") else a.en,
                           "comment_required": a.comment_required} for a in lc.available(pr.state, p.role.value)]
    if detail:
        rules = load_rules(pr.rules_version)
        order = {code: n for n, code in enumerate(rules.places)}
        out["design_items"] = [{"subsystem": sb, "place": pl, "label": rules.label(_item(sb, pl), lang)}
                               for sb, pl in sorted(pr.design_items, key=lambda x: (order.get(x[1], 99), x[0]))]
        out["not_applicable"] = list(pr.not_applicable)
        out["design_check"] = _check(pr, lang)
        out["steps"] = [{"at": st.at.isoformat(), "actor": st.actor, "role": st.role, "action": st.action,
                         "action_label": labels.get(st.action, st.action),
                         "from_state": st.from_state, "to_state": st.to_state,
                         "to_label": lc.state_label(st.to_state, lang), "comment": st.comment, "data": st.data}
                        for st in s.scalars(select(ProjectStep).where(ProjectStep.project_id == pr.id)
                                            .order_by(ProjectStep.id))]
        out["funding_records"] = [{"id": f.id, "kind": f.kind, "source": f.source,
                                   "source_label": lc.source_label(f.source, lang), "amount": str(f.amount),
                                   "on": f.on.isoformat(), "note": f.note, "created_by": f.created_by}
                                  for f in s.scalars(select(Funding).where(Funding.project_id == pr.id)
                                                     .order_by(Funding.on, Funding.id))]
    return out


def _item(sub: str, place: str) -> Item:
    return Item(sub, place)


def _money(v: Any) -> Decimal:
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError) as exc:
        raise ValidationError("金额格式错误 / bad amount") from exc
    if not d.is_finite() or abs(d) >= Decimal(10) ** 12:
        raise ValidationError("金额格式错误 / bad amount")
    return d.quantize(Decimal("0.01"))


def create_project(store: Store, p: Principal, community_code: str, name: str, kind: str = "new",
                   target_tier: str = "basic", design_items: Any = (), not_applicable: Any = (),
                   budget: Any = None, lang: str = "zh", now: datetime | None = None) -> dict[str, Any]:
    """A new project in state ``design``; the community must be in ``p``'s scope."""
    now = now or utcnow()
    lc = load_lifecycle()
    if p.role not in (Role.city_admin, Role.county_admin, Role.property_staff):
        raise Forbidden("无权创建建设项目 / not allowed to create projects")
    if kind not in lc.kinds:
        raise ValidationError(f"未知项目类型 {kind!r} / unknown kind", detail=sorted(lc.kinds))
    if not name.strip():
        raise ValidationError("请填写项目名称 / a name is required")
    items = _items(design_items)
    design_check(items, target_tier, not_applicable)  # validates the tier code
    with store.session() as s:
        region = s.execute(select(Region.code).where(Region.code == community_code, Region.level == "community",
                                                     community_condition(p, Region.code))).first()
        if region is None:
            raise NotFound("小区（社区）不存在或不在辖区内 / community not found in your jurisdiction")
        pr = Project(community_code=community_code, name=name.strip()[:128], kind=kind, target_tier=target_tier,
                     state="design", design_items=items, not_applicable=sorted(set(not_applicable)),
                     budget=_money(budget) if budget not in (None, "") else None, created_by=p.username,
                     created_at=now, updated_at=now)
        s.add(pr)
        s.flush()
        s.add(ProjectStep(project_id=pr.id, at=now, actor=p.username, role=p.role.value, action="create", from_state="",
                          to_state="design", comment="", data={}))
        s.flush()
        return project_dict(s, pr, p, lang, detail=True)


def _get(s: Session, p: Principal, project_id: int, lock: bool = False) -> Project:
    stmt = select(Project).where(Project.id == project_id, community_condition(p, Project.community_code))
    if lock:
        stmt = stmt.with_for_update()
    pr = s.scalars(stmt).first()
    if pr is None:
        raise NotFound("建设项目不存在 / project not found")
    return pr


def list_projects(store: Store, p: Principal, state: str | None = None, lang: str = "zh") -> list[dict[str, Any]]:
    with store.session() as s:
        stmt = select(Project).where(community_condition(p, Project.community_code))
        if state:
            stmt = stmt.where(Project.state == state)
        return [project_dict(s, pr, p, lang) for pr in s.scalars(stmt.order_by(Project.id))]


def get_project(store: Store, p: Principal, project_id: int, lang: str = "zh") -> dict[str, Any]:
    with store.session() as s:
        return project_dict(s, _get(s, p, project_id), p, lang, detail=True)


def revise_design(store: Store, p: Principal, project_id: int, design_items: Any, not_applicable: Any = None,
                  target_tier: str | None = None, lang: str = "zh") -> dict[str, Any]:
    """Change the planned items (only while the design is being written or was returned)."""
    if p.role not in (Role.city_admin, Role.county_admin, Role.property_staff):
        raise Forbidden("无权修改设计方案 / not allowed to revise the design")
    with store.session() as s:
        pr = _get(s, p, project_id, lock=True)
        if pr.state not in ("design", "returned"):
            raise ValidationError("方案已报审或已通过，不能修改 / the design can only change before review or after "
                                  "being returned")
        items = _items(design_items)
        tier = target_tier or pr.target_tier
        na = sorted(set(not_applicable)) if not_applicable is not None else pr.not_applicable
        design_check(items, tier, na)
        pr.design_items, pr.target_tier, pr.not_applicable = items, tier, na
        s.add(ProjectStep(project_id=pr.id, actor=p.username, role=p.role.value, action="revise",
                          from_state=pr.state, to_state=pr.state, comment="", data={"items": len(items)}))
        s.flush()
        return project_dict(s, pr, p, lang, detail=True)


def act(store: Store, p: Principal, project_id: int, action: str, comment: str = "", now: datetime | None = None,
        lang: str = "zh") -> dict[str, Any]:
    """Take one lifecycle step. Approval re-runs the design check; an acceptance application runs the stability
    gate on the community's devices. Every step is kept with its comment and the check it relied on."""
    now = now or utcnow()
    with store.session() as s:
        pr = _get(s, p, project_id, lock=True)
        check = _check(pr, lang)
        data: dict[str, Any] = {}
        stable = None
        if action == "approve" or action == "submit":
            data["design_check"] = check
        if action == "apply":
            st = stability(store, pr.community_code, now)
            stable = st.eligible
            data["stable_days"] = st.stable_days
            data["required_days"] = st.required_days
        step = transition(pr.state, action, p.role.value, comment, design_ok=check["ok"], stable_run=stable)
        if action == "submit":
            if not pr.design_items:
                raise ValidationError("设计方案没有任何建设项 / the design lists no items")
            pr.design_round += 1
            data["round"] = pr.design_round
        if action == "finish_build":
            pr.running_since = now
        if action == "accept":
            pr.accepted_at = now
        pr.state = step.to_state
        pr.updated_at = now
        s.add(ProjectStep(project_id=pr.id, at=now, actor=p.username, role=p.role.value, action=action,
                          from_state=step.from_state, to_state=step.to_state, comment=step.comment[:2000], data=data))
        s.flush()
        return project_dict(s, pr, p, lang, detail=True)


def add_funding(store: Store, p: Principal, project_id: int, kind: str, source: str | None, amount: Any,
                on: date | None = None, note: str = "", lang: str = "zh") -> dict[str, Any]:
    """Record money committed by a source (``fund``) or paid out (``spend``)."""
    if p.role not in (Role.city_admin, Role.county_admin, Role.property_staff):
        raise Forbidden("无权登记资金 / not allowed to record funding")
    value = _money(amount)
    check_funding(kind, source or None, value)
    with store.session() as s:
        pr = _get(s, p, project_id)
        check_funding(kind, source or None, value, state=pr.state)
        s.add(Funding(project_id=pr.id, kind=kind, source=source or None, amount=value, on=on or utcnow().date(),
                      note=note[:256], created_by=p.username))
        s.flush()
        return project_dict(s, pr, p, lang, detail=True)


def accepted_communities(store: Store) -> dict[str, int]:
    """Per county: communities with an accepted project (the circular's 已验收 column)."""
    out: dict[str, int] = {}
    with store.session() as s:
        for code in set(s.scalars(select(Project.community_code).where(Project.state == "accepted"))):
            out[code[:6]] = out.get(code[:6], 0) + 1
    return out
