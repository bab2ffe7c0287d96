"""Device registry: status transitions with history and events, channels, uptime — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anfang.core.events import Event, EventKind
from anfang.devices.service import DeviceService, online_share

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_status_change_is_recorded_once_and_emits_an_event(store) -> None:
    svc = DeviceService(store, node_id="350402")
    svc.upsert("gb28181", "35040200001320000001", name="列东街道东门", community_code="350402001001")
    first = svc.set_status("gb28181", "35040200001320000001", "online", "register", at=T0)
    again = svc.set_status("gb28181", "35040200001320000001", "online", "keepalive", at=T0 + timedelta(minutes=1))
    off = svc.set_status("gb28181", "35040200001320000001", "offline", "timeout", at=T0 + timedelta(hours=6))
    assert first.changed and not again.changed and off.changed
    assert first.event is not None and first.event.kind is EventKind.device_status
    assert first.event.data["status"] == "online" and first.event.community_code == "350402001001"
    assert off.event is not None and off.event.data["previous"] == "online"
    dev = svc.get("gb28181", "35040200001320000001")
    assert dev is not None and dev.status == "offline" and dev.last_seen == T0 + timedelta(minutes=1)
    assert [h.status for h in svc.history(dev.id)] == ["online", "offline"]
    # online from 00:00 to 06:00 on 1 November, offline after: a quarter of that day
    assert svc.daily_uptime(dev.id, T0, 2) == [pytest.approx(0.25), 0.0]


def test_unknown_device_and_bad_status_are_errors(store) -> None:
    svc = DeviceService(store)
    with pytest.raises(LookupError):
        svc.set_status("gb28181", "35040200001320000009", "online")
    svc.upsert("viid", "35040200001190000001")
    with pytest.raises(ValueError):
        svc.set_status("viid", "35040200001190000001", "sleeping")
    with pytest.raises(TypeError):
        svc.upsert("viid", "35040200001190000001", colour="red")


def test_channels_keep_chinese_names_and_update_in_place(store) -> None:
    svc = DeviceService(store)
    svc.upsert("gb28181", "35040200001180000001", name="NVR")
    svc.upsert_channels("gb28181", "35040200001180000001", [
        {"channel_id": "35040200001310000001", "name": "三元区列东街道1号楼单元门", "status": "online"},
        {"channel_id": "35040200001310000002", "name": "停车场入口", "status": "offline"},
    ])
    svc.upsert_channels("gb28181", "35040200001180000001",
                        [{"channel_id": "35040200001310000002", "name": "停车场入口", "status": "online"}])
    chans = svc.channels("gb28181", "35040200001180000001")
    assert [(c.name, c.status) for c in chans] == [("三元区列东街道1号楼单元门", "online"), ("停车场入口", "online")]


def test_online_share_pure() -> None:
    day = (T0, T0 + timedelta(days=1))
    assert online_share(None, [], *day) == 0.0
    assert online_share("online", [], *day) == 1.0
    flaps = [(T0 + timedelta(hours=h), s) for h, s in ((2, "offline"), (3, "online"), (30, "offline"))]
    assert online_share("online", flaps, *day) == pytest.approx(23 / 24)


def test_event_round_trips_through_json() -> None:
    e = Event(kind=EventKind.alarm, source="35040200001340000001", data={"类型": "周界入侵", "priority": 1},
              community_code="350402001001", longitude=117.6, latitude=26.27)
    back = Event.from_json(e.to_json())
    assert back == e and back.subject == "anfang.events.alarm"
    later = Event(kind=EventKind.alarm, source="x")
    assert later.id > e.id  # ids sort by time
