"""Early warning: sensor rules, plate watchlists, behaviour models, lifecycle and routing to the right officer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from anfang.app import create_app
from anfang.bus import InProcessBus
from anfang.config import Settings
from anfang.core.errors import Conflict, NotFound, ValidationError
from anfang.core.events import Event, EventKind
from anfang.devices.service import DeviceService
from anfang.security.service import create_user, principal_of
from anfang.warnings import behaviour as bm
from anfang.warnings.engine import WarningEngine
from anfang.warnings.plates import PlateIndex, match_plate
from anfang.warnings.rules import SensorEvaluator
from anfang.warnings.service import Candidate, WarningService
from world import PASSWORD, build

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Sanming


# ---- pure rules -----------------------------------------------------------------------------------------------
def test_sensor_debounce_and_recovery() -> None:
    ev = SensorEvaluator()
    temps = [65, 72, 75, 80, 60]  # cable temperature, debounce 2, limit 70 °C
    actions = [[o.action for o in ev.evaluate("e1", "electrical", {"cable_temperature_c": t})] for t in temps]
    assert actions == [[], [], ["raise"], [], ["recover"]]
    # hydrant: both limits, debounce 3
    ev2 = SensorEvaluator()
    seq = [0.05, 0.05, 0.05, 0.3, 1.2, 1.2, 1.2]
    got = [[o.action for o in ev2.evaluate("h1", "hydrant", {"pressure_mpa": v})] for v in seq]
    assert got == [[], [], ["raise"], ["recover"], [], [], ["raise"]]


def test_sensor_override_per_device() -> None:
    ev = SensorEvaluator(overrides={"e2": {"electrical.residual_current": {"high": 100, "debounce": 1}}})
    assert [o.action for o in ev.evaluate("e2", "electrical", {"residual_current_ma": 150})] == ["raise"]
    assert ev.evaluate("e3", "electrical", {"residual_current_ma": 150}) == []  # default limit 300 mA


def test_plate_matching_tolerances() -> None:
    assert match_plate("闽G12345", "闽G12345").kind == "exact"
    assert match_plate("G12345", "闽G12345").kind == "province"  # province character dropped by the camera
    assert match_plate("赣G12345", "闽G12345").kind == "province"  # misread province
    one = match_plate("闽G1234S", "闽G12345")
    assert one is not None and one.kind == "one_char" and one.score == 0.9  # S/5 confusable
    assert match_plate("闽G12399", "闽G12345") is None  # two characters off
    assert match_plate("闽G12345", "闽G1234", tolerant=True) is None
    assert match_plate("闽G1234S", "闽G12345", tolerant=False) is None
    idx = PlateIndex()
    for p in ("闽G12345", "闽GD23456", "闽A88888"):
        idx.add(p)
    assert [m.listed for m in idx.lookup("闽G1234S")] == ["闽G12345"]
    assert [m.listed for m in idx.lookup("闽GO23456")] == ["闽GD23456"]
    assert idx.lookup("闽B77777") == []
    idx.discard("闽G12345")
    assert idx.lookup("闽G12345") == []


def test_behaviour_models_on_hand_made_histories() -> None:
    cfg = bm.BehaviourConfig(elderly_unseen_hours=48, rental_uses_per_day=10, rental_consecutive_days=3,
                             stranger_times=3, stranger_days=7, night_entries_per_week=2, occupant_days=3)
    now = T0
    assert bm.elderly_unseen({1: now - timedelta(hours=50), 2: now - timedelta(hours=3), 3: None}, now, cfg) == [1, 3]
    # card A: 11 uses on each of 3 consecutive days → flagged; card B: 11 uses on days 1, 2 and 4 → not
    uses = [("A", T0 - timedelta(days=d, minutes=m)) for d in (0, 1, 2) for m in range(11)]
    uses += [("B", T0 - timedelta(days=d, minutes=m)) for d in (0, 1, 3) for m in range(11)]
    uses += [("C", T0 - timedelta(days=d, minutes=m)) for d in (0, 1, 2) for m in range(10)]  # exactly 10: fine
    assert bm.heavy_credentials(uses, cfg) == ["A"]
    visits = [(7, f"p{i}", now - timedelta(days=1)) for i in range(9)] + [(8, "q", now - timedelta(days=1))]
    visits += [(9, f"r{i}", now - timedelta(days=10)) for i in range(20)]  # too old
    assert bm.crowded_houses(visits, now, cfg) == {7: 9}
    sightings = [("f1", now - timedelta(days=d)) for d in (1, 2, 3)] + [("f2", now - timedelta(days=d))
                                                                          for d in (1, 9, 10)]
    assert bm.repeated_strangers(sightings, now, cfg) == {"f1": 3}
    night = datetime(2026, 11, 1, 15, 30, tzinfo=UTC)  # 23:30 local
    entries = [("闽G11111", night), ("闽G11111", night - timedelta(days=1)), ("闽G22222", night),
               ("闽G22222", datetime(2026, 11, 1, 4, 0, tzinfo=UTC))]  # 12:00 local: not night
    assert bm.night_vehicles(entries, now, cfg) == {"闽G11111": 2}
    regular = [(5, "x", now - timedelta(days=d)) for d in (1, 2, 3)] + [(6, "y", now - timedelta(days=d))
                                                                          for d in (1, 2, 3)]
    assert bm.unregistered_occupancy(regular, {5: 0, 6: 2}, now, cfg) == [5]
    assert bm.silent_devices({"d1": now - timedelta(hours=30), "d2": now, "d3": None}, now, cfg) == ["d1", "d3"]


# ---- lifecycle on both databases -------------------------------------------------------------------------------
def test_lifecycle_dedup_routing_escalation(store) -> None:
    w = build(store)
    svc = WarningService(store, dedup_minutes=10, escalate_minutes=15)
    with store.session() as s:
        fx = create_user(s, username="police_fx", password=PASSWORD, role="police",
                         police_area_id=w.police_area["FX-1"])
        fx_p = principal_of(fx, "test")
    ev = Event(kind=EventKind.sensor_reading, source="smoke-1", at=T0, address_id=w.addr["ld-101"])
    c = Candidate(rule="smoke.alarm", category="sensor", title="烟感报警", source="smoke-1",
                  dedup_key="smoke.alarm:smoke-1", severity=1, event=ev, at=T0,  # received at T0
                  notify_roles=frozenset({"police", "grid_worker", "property_staff"}))
    v = svc.raise_warning(c)
    assert v is not None and v["state"] == "dispatched" and v["police_area_id"] == w.police_area["LD-1"]
    assert v["place"].endswith("列东社区1栋1单元1层101室")
    # the same smoke detector again within the window folds into the open warning
    again = Event(kind=EventKind.sensor_reading, source="smoke-1", at=T0 + timedelta(minutes=5),
                  address_id=w.addr["ld-101"])  # a second reading (its own event id)
    assert svc.raise_warning(Candidate(**{**c.__dict__, "at": again.at, "event": again})) is None
    assert svc.recipients(v) == ["grid", "police", "property"]
    police, grid, city = w.users["police"], w.users["grid"], w.users["city"]
    assert [x["id"] for x in svc.list(police)["items"]] == [v["id"]]
    assert svc.list(police)["items"][0]["hits"] == 2
    assert svc.list(fx_p)["items"] == []  # another 警务区 sees nothing
    assert svc.list(grid)["items"][0]["id"] == v["id"]
    with pytest.raises(NotFound):
        svc.acknowledge(fx_p, v["id"])
    # escalation after 15 minutes without acknowledgement: the whole station (FX-1 is another station) —
    assert [e["id"] for e in svc.escalate_overdue(T0 + timedelta(minutes=16))] == [v["id"]]
    assert svc.escalate_overdue(T0 + timedelta(minutes=30)) == []  # once only
    assert svc.acknowledge(police, v["id"])["state"] == "acknowledged"
    with pytest.raises(ValidationError):
        svc.handle(police, v["id"], "maybe")
    with pytest.raises(Conflict):
        svc.close(police, v["id"])
    assert svc.handle(police, v["id"], "true", "已处置：误触发后复位")["state"] == "handled"
    assert svc.close(police, v["id"])["state"] == "closed"
    steps = [s["action"] for s in svc.get(city, v["id"])["steps"]]
    assert steps == ["raised", "dispatched", "escalated", "acknowledged", "handled", "closed"]
    # closed: a new alarm from the same detector is a new warning
    later = Event(kind=EventKind.sensor_reading, source="smoke-1", at=T0 + timedelta(hours=1),
                  address_id=w.addr["ld-101"])
    assert svc.raise_warning(Candidate(**{**c.__dict__, "at": later.at, "event": later})) is not None
    assert svc.stats(police)["by_state"] == {"closed": 1, "dispatched": 1}


def test_plate_watchlist_service(store) -> None:
    w = build(store)
    svc = WarningService(store)
    police = w.users["police"]
    wid = svc.create_plate_watchlist(police, "盗抢车辆")
    assert svc.add_plates(police, wid, [("闽G12345", "被盗"), ("闽g 12345", "dup")]) == 1
    with pytest.raises(ValidationError):
        svc.add_plates(police, wid, [("闽G1", "")])
    hits = svc.match_plate("G1234S")  # province dropped AND 5 read as S: still one character off in the body
    assert [(h["listed"], h["match"]) for h in hits] == [("闽G12345", "one_char")]
    strict = svc.create_plate_watchlist(police, "精确名单", tolerant=False)
    svc.add_plates(police, strict, [("闽G99999", "")])
    assert svc.match_plate("闽G99998") == []
    assert svc.match_plate("闽G99999")[0]["watchlist"] == "精确名单"


def test_engine_turns_events_into_warnings_and_publishes(store) -> None:
    w = build(store)

    async def scenario() -> tuple[list[dict], list[dict]]:
        bus = InProcessBus()
        svc = WarningService(store)
        engine = WarningEngine(store, bus, svc, escalate_every_s=3600)
        seen: list[dict] = []

        async def collect(e: Event) -> None:
            seen.append(e.data)

        await bus.subscribe(collect, kinds=[EventKind.warning])
        await engine.start()
        wid = svc.create_plate_watchlist(w.users["city"], "在逃人员车辆")
        svc.add_plates(w.users["city"], wid, [("闽G12345", "")])
        at = T0
        for value in (0, 1, 1, 0):  # smoke: alarm then recovery
            await bus.publish(Event(kind=EventKind.sensor_reading, source="smoke-9", at=at,
                                    address_id=w.addr["ld-102"],
                                    data={"sensor_type": "smoke", "readings": {"alarm": value}}))
            at += timedelta(seconds=30)
        await bus.publish(Event(kind=EventKind.vehicle_passage, source="cam-1", community_code="350405001001",
                                data={"plate": "闽G12345"}))
        await bus.publish(Event(kind=EventKind.vehicle_passage, source="cam-1", community_code="350405001001",
                                data={"plate": "闽G55555"}))
        await bus.publish(Event(kind=EventKind.device_status, source="cam-2", community_code="350404001001",
                                data={"status": "offline", "name": "东门"}))
        await bus.drain()
        await bus.drain()
        await engine.stop()
        await bus.close()
        return seen, svc.list(w.users["city"])["items"]

    seen, listed = asyncio.run(scenario())
    assert [(d["step"], d["warning"]["rule"]) for d in seen] == [
        ("raised", "smoke.alarm"), ("recovered", "smoke.alarm"), ("raised", "plate.watchlist"),
        ("raised", "device.offline")]
    plate = next(x for x in listed if x["rule"] == "plate.watchlist")
    assert plate["police_area_id"] == w.police_area["FX-1"] and plate["community_code"] == "350405001001"


# ---- over HTTP (the same payloads as MQTT) ---------------------------------------------------------------------
@pytest.fixture
def app_world(store, tmp_path):
    w = build(store)
    with store.session() as s:
        create_user(s, username="police_fx", password=PASSWORD, role="police", police_area_id=w.police_area["FX-1"])
    devices = DeviceService(store)
    devices.upsert("mqtt", "smoke-ld-101", name="列东1栋101烟感", address_id=w.addr["ld-101"],
                   community_code="350404001001")
    devices.upsert("mqtt", "gas-fx", name="府西燃气", address_id=w.addr["fx-101"], community_code="350405001001",
                   password="k3y")
    settings = Settings(data_dir=tmp_path, database_url=store.url)
    with TestClient(create_app(settings, store)) as c:
        yield c, w


def _login(c: TestClient, user: str) -> dict:
    r = c.post("/api/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _wait_for(c: TestClient, headers: dict, n: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while True:
        items = c.get("/api/warnings", headers=headers).json()["items"]
        if len(items) >= n or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def test_smoke_over_http_reaches_the_right_officer_only(app_world) -> None:
    c, w = app_world
    r = c.post("/api/iot/smoke/smoke-ld-101", json={"alarm": True, "battery_percent": 80})
    assert r.status_code == 202, r.text
    police, fx = _login(c, "police"), _login(c, "police_fx")
    items = _wait_for(c, police, 1)
    assert [i["title"] for i in items] == ["烟感报警（列东1栋101烟感）"]
    assert c.get("/api/warnings", headers=fx).json()["items"] == []
    wid = items[0]["id"]
    assert c.post(f"/api/warnings/{wid}/ack", headers=fx).status_code == 404
    assert c.post(f"/api/warnings/{wid}/ack", headers=police).json()["state"] == "acknowledged"
    r = c.post(f"/api/warnings/{wid}/handle", headers=police, json={"feedback": "resolved", "note": "已到场"})
    assert r.json()["state"] == "handled"


def test_bad_iot_messages_are_counted_not_crashing(app_world) -> None:
    c, _ = app_world
    assert c.post("/api/iot/smoke/nobody", json={"alarm": True}).status_code == 404
    r = c.post("/api/iot/hydrant/smoke-ld-101", json={"pressure_mpa": "high"})
    assert r.status_code == 422 and "pressure_mpa" in r.json()["error"]["message"]
    assert c.post("/api/iot/toaster/smoke-ld-101", json={}).status_code == 404
    assert c.post("/api/iot/gas/gas-fx", json={"lel_percent": 40}).status_code == 401  # key required
    assert c.post("/api/iot/gas/gas-fx", json={"lel_percent": 40}, headers={"X-Device-Key": "k3y"}).status_code == 202
    report = c.get("/api/iot/report", headers=_login(c, "city")).json()
    assert report["counts"] == {"unknown_device": 1, "invalid": 1, "bad_topic": 1, "bad_key": 1, "accepted": 1}
    assert c.get("/api/iot/report", headers=_login(c, "police")).status_code == 403
    # the gas warning went to 府西's officer
    items = _wait_for(c, _login(c, "police_fx"), 1)
    assert items[0]["rule"] == "gas.concentration"


def test_behaviour_job_over_the_event_log(store) -> None:
    from sqlalchemy import update

    from anfang.registry.models import Person
    from anfang.store.eventlog import append_events
    from anfang.warnings.jobs import BehaviourJob

    w = build(store)
    with store.session() as s:
        s.execute(update(Person).where(Person.id == w.person["li"]).values(labels=["elderly_alone"]))
    now = T0
    events = [Event(kind=EventKind.person_passage, source="door-1", address_id=w.addr["ld-101"],
                    at=now - timedelta(days=d, minutes=m), data={"credential": "card-77", "method": "card"})
              for d in (0, 1, 2) for m in range(11)]
    night = datetime(2026, 11, 1, 15, 0, tzinfo=UTC)  # 23:00 local
    events += [Event(kind=EventKind.vehicle_passage, source="gate-1", community_code="350404001001",
                     at=night - timedelta(days=d), data={"plate": "闽G77777"}) for d in range(4)]
    with store.session() as s:
        append_events(s, events)
    DeviceService(store).upsert("gb28181", "35040400001320000001", name="东门", address_id=w.addr["ld"],
                                last_seen=now - timedelta(days=2))
    job = BehaviourJob(store, WarningService(store))
    rules = sorted(v["rule"] for v in job.run_once(now))
    assert rules == ["behaviour.device_silent", "behaviour.elderly_unseen", "behaviour.group_rental",
                     "behaviour.night_vehicle"]
    assert job.run_once(now + timedelta(minutes=5)) == []  # the open warnings absorb a second run


def test_door_forced_or_held_open_is_a_warning_for_the_officer_and_property(app_world) -> None:
    """Access-control rule (issue 19 item 8): a door forced open or held open raises a warning; ordinary openings
    and refused credentials do not; a second forced event on the same door folds into the open warning."""
    c, w = app_world
    DeviceService(c.app.state.store).upsert("mqtt", "door-ld-1", name="列东1栋单元门", address_id=w.addr["ld-101"],
                                            community_code="350404001001")
    police = _login(c, "police")
    for payload in ({"event": "open", "method": "card"}, {"event": "denied", "method": "card"}):
        assert c.post("/api/iot/door/door-ld-1", json=payload).status_code == 202
    assert c.post("/api/iot/door/door-ld-1", json={"event": "forced", "method": "exit_button"}).status_code == 202
    assert c.post("/api/iot/door/door-ld-1", json={"event": "forced", "method": "exit_button"}).status_code == 202
    assert c.post("/api/iot/door/door-ld-1", json={"event": "held_open", "method": "card"}).status_code == 202
    deadline = time.monotonic() + 5
    while True:  # the three alarms are handled in order; wait until the last one is in
        items = c.get("/api/warnings", headers=police).json()["items"]
        by_rule = {i["rule"]: i for i in items}
        if "access.held_open" in by_rule or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert set(by_rule) == {"access.forced", "access.held_open"}, items
    assert by_rule["access.forced"]["title"] == "门禁被强行打开（列东1栋单元门）"
    assert by_rule["access.forced"]["severity"] == 1 and by_rule["access.held_open"]["severity"] == 2
    assert by_rule["access.forced"]["hits"] == 2
