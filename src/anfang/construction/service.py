"""Construction reports over the stored devices, scoped to the asking user's jurisdiction (no HTTP here).

Jurisdiction: the device scoping of the video console (``gb28181.views.device_condition``): a county admin sees
his county's communities, property staff their community, police / grid workers the devices at addresses in their
警务区 / grid, the city admin everything. Residents and anonymous users see nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, case, cast, func, select

from anfang.construction import operations
from anfang.construction.specs import check_camera, load_spec_rules
from anfang.construction.tiers import evaluate, load_rules, subsystem_of
from anfang.core.errors import Forbidden
from anfang.devices.models import Device
from anfang.registry.models import Region
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.base import utcnow
from anfang.store.engine import Store

MANAGERS = frozenset({Role.city_admin, Role.county_admin, Role.police})


def device_scope(p: Principal) -> ColumnElement[bool]:
    """The devices ``p`` may see; residents and anonymous users are refused."""
    if p.role in (Role.resident, Role.anonymous):
        raise Forbidden("无权查看建设运维信息 / not allowed")
    from anfang.gb28181.views import device_condition

    return device_condition(p)


def _devices_by_community(store: Store, p: Principal, community_code: str | None) -> dict[str, list[Any]]:
    """The devices in ``p``'s jurisdiction per community, as rows of the columns the reports read (``id``,
    ``device_id``, ``name``, ``community_code``, ``type_code``, ``place``, ``attributes``): no ORM objects, which
    at 25,000 devices cost a second."""
    cond = [device_scope(p), Device.community_code.is_not(None), Device.review != "rejected"]
    if community_code:
        cond.append(Device.community_code == community_code)
    out: dict[str, list[Any]] = defaultdict(list)
    cols = (Device.id, Device.device_id, Device.name, Device.community_code, Device.type_code, Device.place,
            Device.attributes)
    with store.session() as s:
        for d in s.execute(select(*cols).where(*cond).order_by(Device.community_code, Device.id)):
            out[d.community_code or ""].append(d)
    return dict(sorted(out.items()))


def _names(store: Store, codes: list[str]) -> dict[str, str]:
    with store.session() as s:
        return dict(s.execute(select(Region.code, Region.full_name).where(Region.code.in_(codes))).all()) if codes \
            else {}


def _declared_not_applicable(store: Store, codes: list[str]) -> dict[str, list[str]]:
    """Per community: the places its newest project declares it does not have (no elevator, no gas station)."""
    from anfang.construction.models import Project

    out: dict[str, list[str]] = {}
    if not codes:
        return out
    with store.session() as s:
        for code, na in s.execute(select(Project.community_code, Project.not_applicable)
                                  .where(Project.community_code.in_(codes)).order_by(Project.id)):
            out[code] = list(na or [])  # the newest project wins
    return out


def installed_by_community(store: Store, cond: list[ColumnElement[bool]]) \
        -> dict[str, tuple[int, list[tuple[str | None, str | None]]]]:
    """Per community: its device count and the distinct ``(subsystem, place)`` pairs installed, aggregated by the
    database (one GROUP BY over the devices in ``cond``; no device row reaches Python)."""
    sub = Device.attributes["subsystem"].as_string()
    out: dict[str, tuple[int, list[tuple[str | None, str | None]]]] = {}
    with store.session() as s:
        for code, sub_v, type_code, place, n in s.execute(
                select(Device.community_code, sub, Device.type_code, Device.place, func.count())
                .where(*cond).group_by(Device.community_code, sub, Device.type_code, Device.place)):
            count, pairs = out.get(code, (0, []))
            pairs.append((subsystem_of({"subsystem": sub_v} if sub_v else None, type_code), place))
            out[code] = (count + int(n), pairs)
    return dict(sorted(out.items()))


def tier_report(store: Store, p: Principal, community_code: str | None = None, lang: str = "zh",
                version: str = "2021") -> list[dict[str, Any]]:
    """Per community: the tier met and the items missing for the next tier (seed 三、(三)). Places the community's
    newest project declares absent (``not_applicable``) are not required. Evaluated on per-community aggregates
    (:func:`installed_by_community`)."""
    rules = load_rules(version)
    cond = [device_scope(p), Device.community_code.is_not(None), Device.review != "rejected"]
    if community_code:
        cond.append(Device.community_code == community_code)
    # tiers are for 小区 (urban communities); villages are the 居安工程's (rollout.py)
    cond.append(Device.community_code.not_in(select(Region.code).where(Region.kind == "village")))
    groups = installed_by_community(store, cond)
    names = _names(store, list(groups))
    lacks = _declared_not_applicable(store, list(groups))
    out = []
    for code, (n, pairs) in groups.items():
        r = evaluate(pairs, rules, lacks.get(code, ()))
        out.append(_tier_row(code, names.get(code, code), n, r, rules, lang))
    return out


def _tier_row(code: str, name: str, devices: int, r: Any, rules: Any, lang: str) -> dict[str, Any]:  # noqa: ANN401
    """One community's row of the tier report: the tier met, the next one and what it still lacks."""
    return {"community_code": code, "name": name, "devices": devices,
            "tier": r.met_code, "tier_label": r.met.zh if r.met else "未达标",
            "next_tier": r.next.code if r.next else None, "next_label": r.next.zh if r.next else None,
            "missing": [{"subsystem": i.subsystem, "place": i.place, "label": rules.label(i, lang)}
                        for i in r.missing],
            "rules_version": rules.version}


def tier_report_full(store: Store, p: Principal, community_code: str | None = None, lang: str = "zh",
                version: str = "2021") -> list[dict[str, Any]]:
    """The reference computation of :func:`tier_report` from every device row (kept for the aggregate test)."""
    rules = load_rules(version)
    groups = _devices_by_community(store, p, community_code)
    names = _names(store, list(groups))
    with store.session() as s:  # tiers are for 小区 (urban communities); villages are the 居安工程's (rollout.py)
        villages = set(s.scalars(select(Region.code).where(Region.code.in_(list(groups)), Region.kind == "village"))) \
            if groups else set()
    lacks = _declared_not_applicable(store, list(groups))
    out = []
    for code, devices in groups.items():
        if code in villages:
            continue
        r = evaluate(((subsystem_of(d.attributes, d.type_code), d.place) for d in devices), rules,
                     lacks.get(code, ()))
        out.append(_tier_row(code, names.get(code, code), len(devices), r, rules, lang))
    return out


def spec_report(store: Store, p: Principal, community_code: str | None = None,
                now: datetime | None = None) -> list[dict[str, Any]]:
    """Per community: its video cameras and the non-compliant ones with what each fails (seed 五、(二))."""
    now = now or utcnow()
    rules = load_spec_rules()
    groups = _devices_by_community(store, p, community_code)
    names = _names(store, list(groups))
    cams = {code: [d for d in devs if subsystem_of(d.attributes, d.type_code) == "video"]
            for code, devs in groups.items()}
    last = operations.last_captures(store, (operations.viid_id(d) for ds in cams.values() for d in ds))
    out = []
    for code, ds in cams.items():
        bad = []
        for d in ds:
            findings = check_camera(d.attributes, last.get(operations.viid_id(d)), now, rules)
            if findings:
                bad.append({"device_pk": d.id, "device_id": d.device_id, "name": d.name, "place": d.place,
                            "findings": [{"item": f.item, "message": f.message} for f in findings]})
        out.append({"community_code": code, "name": names.get(code, code), "cameras": len(ds),
                    "compliant": len(ds) - len(bad), "non_compliant": bad})
    return out


SPEC_KEYS = ("megapixels", "capture", "colour_day_night", "ip_rating", "gb28181", "retention_days", "city_platform")


def _json_text(dialect: str, key: str) -> ColumnElement[Any]:
    """``Device.attributes[key]`` as its JSON text (``null`` or NULL when absent): PostgreSQL's json has no equality
    to group by; SQLite's json_extract gives 1 / 0 for true / false, so their JSON type is asked for."""
    if dialect != "sqlite":
        return cast(Device.attributes[key], Text)
    path = f"$.{key}"
    kind = func.json_type(Device.attributes, path)
    return case((kind.in_(("true", "false")), kind),
                else_=func.json_quote(func.json_extract(Device.attributes, path)))


def spec_counts(store: Store, p: Principal, community_code: str | None = None,
                now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Per community: ``(cameras, compliant)`` of :func:`spec_report`, aggregated by the database: the devices are
    grouped by the attribute values the check reads and by whether a capture arrived within the window (an EXISTS
    probe on ``viid_objects (device_id, shot_at)``), and :func:`check_camera` runs once per distinct group, not per
    camera (18,000 cameras at the city: a handful of groups)."""
    from anfang.viid import days as viid_days
    from anfang.viid.models import ViidObject

    now = now or utcnow()
    rules = load_spec_rules()
    cond = [device_scope(p), Device.community_code.is_not(None), Device.review != "rejected"]
    if community_code:
        cond.append(Device.community_code == community_code)
    viid = func.coalesce(func.nullif(Device.attributes["viid_device_id"].as_string(), ""), Device.device_id)
    since = now - timedelta(hours=rules.captures_within_hours)
    on_days = viid_days.day_filter(store.engine.dialect.name, since)  # SQLite: the day-led camera index
    fresh = select(ViidObject.id).where(ViidObject.device_id == viid, ViidObject.shot_at >= since,
                                        *([] if on_days is None else [on_days])).exists()
    out: dict[str, tuple[int, int]] = {}
    with store.session() as s:
        keys = [_json_text(s.get_bind().dialect.name, k).label(f"a_{k}") for k in ("subsystem", *SPEC_KEYS)]
        per_device = select(Device.community_code.label("code"), Device.type_code.label("type_code"),
                            fresh.label("fresh"), *keys).where(*cond).subquery()
        cols = list(per_device.c)
        rows = s.execute(select(*cols, func.count()).group_by(*cols)).all()
    for code, type_code, recent, *texts, n in rows:
        sub, *values = (json.loads(t) if t is not None else None for t in texts)
        cameras, compliant = out.get(code, (0, 0))
        if subsystem_of({"subsystem": sub} if sub is not None else None, type_code) != "video":
            out.setdefault(code, (cameras, compliant))
            continue
        attrs = {k: v for k, v in zip(SPEC_KEYS, values, strict=True) if v is not None}
        # a fresh camera's last capture is within the window: ``now`` stands for it; else none counts as stale
        ok = not check_camera(attrs, now if recent else None, now, rules)
        out[code] = (cameras + int(n), compliant + (int(n) if ok else 0))
    return dict(sorted(out.items()))


def scan_faults(store: Store, p: Principal, now: datetime | None = None) -> list[dict[str, Any]]:
    """Raise work orders for the current faults of the devices in ``p``'s jurisdiction; returns the new ones."""
    if p.role not in MANAGERS:
        raise Forbidden("无权派发工单 / not allowed to raise work orders")
    scope = device_scope(p)
    now = now or utcnow()
    created = operations.raise_work_orders(store, operations.fault_signals(store, now, scope), now)
    ids = {o.id for o in created}
    return [w for w in operations.list_work_orders(store, scope, "open", now) if w["id"] in ids]


def online_rates(store: Store, p: Principal, day: datetime, level: str = "community") -> list[dict[str, Any]]:
    if level not in operations.LEVELS:
        raise ValueError(f"bad level {level!r}")
    rates = operations.daily_online_rates(store, day, level, device_scope(p))
    names = _names(store, [r.code for r in rates])
    return [{"code": r.code, "name": names.get(r.code, r.code), "devices": r.devices, "rate": r.rate}
            for r in rates]


def acceptance_facts(store: Store, p: Principal, community_code: str, now: datetime | None = None,
                     lang: str = "zh") -> dict[str, Any]:
    """Everything the acceptance report shows for one community in ``p``'s jurisdiction: the tier check, the
    specification check, the stability evidence (seed 六、(二)), the 一标三实 rates, and its newest project."""
    from anfang.construction import projects
    from anfang.construction.acceptance import stability
    from anfang.construction.models import Project
    from anfang.core.errors import NotFound
    from anfang.registry.metrics import TARGETS, compute

    now = now or utcnow()
    tiers = tier_report(store, p, community_code, lang)
    if not tiers:
        raise NotFound("小区不存在、不在辖区内或没有登记设备 / community not found or without devices")
    specs = spec_report(store, p, community_code, now)
    with store.session() as s:
        newest = s.scalars(select(Project.id).where(Project.community_code == community_code)
                           .order_by(Project.id.desc())).first()
    project = projects.get_project(store, p, newest, lang) if newest is not None else None
    metrics = None
    if p.role not in (Role.property_staff,):  # 一标三实 figures follow the registry's own scoping
        row = next((r for r in compute(store, p, "community") if r.code == community_code), None)
        if row is not None:
            metrics = [{"key": k, "label": zh if lang.startswith("zh") else en, "rate": row.rates.get(k),
                        "target": target} for k, (target, zh, en) in TARGETS.items()]
    return {"community_code": community_code, "name": tiers[0]["name"], "generated_at": now.isoformat(),
            "tier": tiers[0], "specs": specs[0] if specs else {"cameras": 0, "compliant": 0, "non_compliant": []},
            "stability": stability(store, community_code, now).to_dict(), "project": project, "metrics": metrics}
