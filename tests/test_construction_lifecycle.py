"""Project lifecycle (同步设计、同步施工、同步验收): the pure state machine, the design review against the tier rules,
funding by source against spend, and the stored flow with its scoping (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from anfang.construction import projects
from anfang.construction.lifecycle import (
    check_funding,
    design_check,
    funding_summary,
    load_lifecycle,
    transition,
)
from anfang.construction.tiers import load_rules
from anfang.core.errors import Forbidden, NotFound, ValidationError
from anfang.devices.service import DeviceService
from anfang.store.base import utcnow
from anfang.viid.models import ViidObject
from world import build

LIEDONG = "350404001001"
BASIC = sorted((i.subsystem, i.place) for i in load_rules().tiers[0].items)


# ---- pure --------------------------------------------------------------------------------------------------
def test_rule_file_names_only_known_states_and_every_state_is_reachable() -> None:
    lc = load_lifecycle()
    reached = {"design"} | {a.target for a in lc.actions.values()}
    assert reached == set(lc.states)
    assert {"county_budget", "maintenance_fund", "xueliang", "developer", "market", "subsidy"} <= set(
        lc.funding_sources)


def test_the_happy_path_and_who_may_take_each_step() -> None:
    state = "design"
    for action, role in (("submit", "property_staff"), ("return", "police"), ("submit", "property_staff"),
                         ("approve", "police"), ("start_build", "property_staff"),
                         ("finish_build", "county_admin"), ("apply", "property_staff"), ("accept", "police")):
        step = transition(state, action, role, "意见" if action == "return" else "", design_ok=True, stable_run=True)
        state = step.to_state
    assert state == "accepted"
    with pytest.raises(Forbidden):
        transition("submitted", "approve", "property_staff", design_ok=True)  # the builder cannot approve himself
    with pytest.raises(Forbidden):
        transition("design", "submit", "resident")


def test_gates_state_comment_design_and_stable_run() -> None:
    with pytest.raises(ValidationError, match="不能"):
        transition("design", "approve", "police", design_ok=True)  # not submitted yet
    with pytest.raises(ValidationError, match="意见"):
        transition("submitted", "return", "police", "  ")
    with pytest.raises(ValidationError, match="目标建设类型"):
        transition("submitted", "approve", "police", design_ok=False)
    with pytest.raises(ValidationError, match="一个月"):
        transition("running", "apply", "county_admin", stable_run=False)
    assert transition("applied", "reject", "police", "在线率不足").to_state == "running"
    with pytest.raises(ValidationError, match="未知操作"):
        transition("design", "fly", "police")


def test_design_check_against_the_target_tier() -> None:
    full = design_check(BASIC, "basic")
    assert full.ok and full.meets == "basic" and full.missing == ()
    # a 提高型 design lacking the unit-entrance access control: exactly that item is missing
    improved = design_check(BASIC, "improved")
    assert not improved.ok and [(i.subsystem, i.place) for i in improved.missing] == [
        ("access_control", "unit_entrance")]
    # a community without elevators is not asked for the elevator camera
    no_lift = [x for x in BASIC if x[1] != "elevator"]
    assert not design_check(no_lift, "basic").ok
    assert design_check(no_lift, "basic", not_applicable=["elevator"]).ok
    typo = design_check([*BASIC, ("video", "roof")], "basic")
    assert not typo.ok and typo.unknown == (("video", "roof"),)
    with pytest.raises(ValidationError):
        design_check(BASIC, "luxury")


def test_funding_by_source_against_spend() -> None:
    s = funding_summary([("fund", "county_budget", Decimal("100000")), ("fund", "subsidy", Decimal("20000.50")),
                         ("fund", "county_budget", Decimal("5000")), ("spend", "county_budget", Decimal("90000")),
                         ("spend", None, Decimal("1000"))])
    assert s.by_source == {"county_budget": Decimal("105000"), "subsidy": Decimal("20000.50")}
    assert (s.funded, s.spent, s.subsidy, s.balance) == (Decimal("125000.50"), Decimal("91000"),
                                                         Decimal("20000.50"), Decimal("34000.50"))
    assert s.spent_by_source == {"county_budget": Decimal("90000")}
    with pytest.raises(ValidationError):
        check_funding("fund", None, Decimal(1))  # a fund names its source
    with pytest.raises(ValidationError):
        check_funding("fund", "lottery", Decimal(1))
    with pytest.raises(ValidationError):
        check_funding("spend", None, Decimal(0))
    with pytest.raises(ValidationError, match="以奖代补"):  # the award comes after acceptance
        check_funding("fund", "subsidy", Decimal(1), state="running")
    check_funding("fund", "subsidy", Decimal(1), state="accepted")
    check_funding("spend", "subsidy", Decimal(1), state="running")


# ---- stored ------------------------------------------------------------------------------------------------
def _stable_month(store, community: str, days: int = 40) -> None:
    """Every 基本型 item installed, online for ``days`` days, each camera with a capture every day."""
    svc = DeviceService(store)
    since = utcnow() - timedelta(days=days)
    with store.session() as s:
        for n, (sub, place) in enumerate(BASIC):
            did = f"{community[:6]}0000132{n:07d}"
            cam = sub in ("video", "vehicle_recognition")
            svc.upsert("gb28181" if cam else "mqtt", did, type_code="132" if cam else None,
                       community_code=community, place=place, registered_at=since,
                       attributes={"subsystem": sub, **({"capture": ["face"]} if cam else {})})
            svc.set_status("gb28181" if cam else "mqtt", did, "online", at=since)
            if cam:
                for d in range(days + 1):
                    at = since + timedelta(days=d, minutes=5)
                    if at < utcnow():
                        s.add(ViidObject(kind="face", object_id=f"{did}{d:05d}", device_id=did, shot_at=at,
                                         received_at=at, community_code=community, body="{}"))


def test_project_flow_with_review_resubmission_acceptance_and_funding(store) -> None:
    w = build(store)
    prop, police, county = w.users["property"], w.users["police"], w.users["county"]
    no_unit = [x for x in BASIC]  # 提高型 target, unit-entrance access control not planned
    pr = projects.create_project(store, prop, LIEDONG, "列东社区智慧安防改造", "retrofit", "improved", no_unit,
                                 budget="300000")
    assert pr["state"] == "design" and not pr["design_check"]["ok"]
    assert [m["label"] for m in pr["design_check"]["missing"]] == ["楼栋（楼道）单元出入口 · 智能门禁"]
    pid = pr["id"]
    projects.act(store, prop, pid, "submit")
    with pytest.raises(ValidationError):  # the police cannot approve a design below its target tier
        projects.act(store, police, pid, "approve")
    with pytest.raises(ValidationError):  # nor can the design change while under review
        projects.revise_design(store, prop, pid, [*no_unit, ("access_control", "unit_entrance")])
    projects.act(store, police, pid, "return", "缺楼道单元出入口智能门禁")
    pr = projects.revise_design(store, prop, pid, [*no_unit, ("access_control", "unit_entrance")])
    assert pr["design_check"]["ok"]
    projects.act(store, prop, pid, "submit")
    pr = projects.act(store, police, pid, "approve", "同意")
    assert pr["state"] == "approved" and pr["design_round"] == 2
    projects.act(store, prop, pid, "start_build")
    pr = projects.act(store, prop, pid, "finish_build")
    assert pr["state"] == "running" and pr["running_since"]
    with pytest.raises(ValidationError, match="一个月"):  # no device has run yet
        projects.act(store, prop, pid, "apply")
    _stable_month(store, LIEDONG)
    pr = projects.act(store, prop, pid, "apply")
    assert pr["state"] == "applied" and pr["steps"][-1]["data"]["stable_days"] >= 30
    pr = projects.act(store, police, pid, "accept", "验收合格")
    assert pr["state"] == "accepted" and pr["accepted_at"]
    assert [s["action"] for s in pr["steps"]] == ["create", "submit", "return", "revise", "submit", "approve",
                                                  "start_build", "finish_build", "apply", "accept"]
    assert pr["steps"][2]["comment"] == "缺楼道单元出入口智能门禁"

    projects.add_funding(store, county, pid, "fund", "county_budget", "200000")
    projects.add_funding(store, prop, pid, "fund", "maintenance_fund", Decimal("60000"))
    projects.add_funding(store, county, pid, "fund", "subsidy", "40000", note="以奖代补")
    pr = projects.add_funding(store, prop, pid, "spend", "county_budget", "180000.5")
    assert (pr["funding"]["funded"], pr["funding"]["spent"], pr["funding"]["subsidy"]) == (
        "300000.00", "180000.50", "40000.00")
    assert pr["funding"]["balance"] == "119999.50"
    with pytest.raises(Forbidden):
        projects.add_funding(store, police, pid, "fund", "xueliang", "1")
    assert projects.accepted_communities(store) == {"350404": 1}


def test_projects_are_scoped_by_community(store) -> None:
    w = build(store)
    pr = projects.create_project(store, w.users["county"], LIEDONG, "列东", "new", "basic", BASIC)
    other = projects.create_project(store, w.users["city"], "350405001001", "府西", "new", "basic", BASIC)
    assert [p["id"] for p in projects.list_projects(store, w.users["county"])] == [pr["id"]]
    assert [p["id"] for p in projects.list_projects(store, w.users["police"])] == [pr["id"]]
    assert len(projects.list_projects(store, w.users["city"])) == 2
    with pytest.raises(NotFound):
        projects.get_project(store, w.users["county"], other["id"])
    with pytest.raises(NotFound):  # property staff of 列东 cannot open a project in 府西
        projects.create_project(store, w.users["property"], "350405001001", "x", "new", "basic", BASIC)
    with pytest.raises(Forbidden):
        projects.list_projects(store, w.users["resident"])
    with pytest.raises(Forbidden):
        projects.create_project(store, w.users["police"], LIEDONG, "x")
    # the police see the available review actions once submitted
    projects.act(store, w.users["county"], pr["id"], "submit")
    acts = [a["code"] for a in projects.get_project(store, w.users["police"], pr["id"])["actions"]]
    assert acts == ["return", "approve"]


def test_places_a_project_declares_absent_are_not_required_by_the_tier_report(store) -> None:
    from anfang.construction.service import tier_report

    w = build(store)
    svc = DeviceService(store)
    for n, (sub, place) in enumerate(BASIC):
        if place != "elevator":  # a low-rise community: no elevator camera
            svc.upsert("mqtt", f"ld-{n}", community_code=LIEDONG, place=place, attributes={"subsystem": sub})
    city = w.users["city"]
    assert tier_report(store, city)[0]["tier"] is None
    projects.create_project(store, city, LIEDONG, "列东", "retrofit", "basic", BASIC, not_applicable=["elevator"])
    row = tier_report(store, city)[0]
    assert row["tier"] == "basic" and [m["place"] for m in row["missing"]] == ["unit_entrance"]
