"""Operations on both databases: online rates, stalled captures, automatic work orders, storage need."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from anfang.construction import operations as ops
from anfang.construction.service import scan_faults, spec_counts, spec_report, tier_report
from anfang.core.errors import Forbidden, ValidationError
from anfang.devices.service import DeviceService
from anfang.security.roles import Role
from anfang.security.scope import Principal
from anfang.store.engine import Store
from anfang.viid.models import ViidObject

T0 = datetime(2021, 6, 1, tzinfo=UTC)
COMMUNITY = "350402001001"  # 三元区 ... 社区
OTHER_COUNTY = "350403001001"
CAPTURE_CAM = {"subsystem": "video", "capture": ["face", "body", "vehicle"], "megapixels": 4,
               "colour_day_night": True, "ip_rating": 66, "gb28181": "2016", "retention_days": 30,
               "city_platform": True, "maintainer": "维保张工"}


def camera(store: Store, device_id: str, community: str = COMMUNITY, *, place: str = "community_entrance",
           **attrs: object) -> int:
    dev = DeviceService(store).upsert("gb28181", device_id, name=f"摄像机{device_id[-2:]}", type_code="132",
                                      community_code=community, place=place,
                                      registered_at=T0 - timedelta(days=2),
                                      attributes={**CAPTURE_CAM, **attrs})
    return dev.id


def capture(store: Store, device_id: str, at: datetime, n: int = 0) -> None:
    with store.session() as s:
        s.add(ViidObject(kind="face", object_id=f"{device_id}{at:%H%M}{n}", device_id=device_id, shot_at=at,
                         received_at=at, body="{}"))


def test_a_camera_that_stops_sending_captures_gets_one_work_order(store: Store) -> None:
    svc = DeviceService(store)
    camera(store, "35040200001320000001")
    camera(store, "35040200001320000002")
    for did in ("35040200001320000001", "35040200001320000002"):
        svc.set_status("gb28181", did, "online", "register", at=T0)
        capture(store, did, T0 + timedelta(hours=1))
    capture(store, "35040200001320000002", T0 + timedelta(hours=30))  # keeps sending
    now = T0 + timedelta(hours=31)  # camera 1: online, last capture 30 h ago

    stalled = ops.stalled_cameras(store, now)
    assert [s.device_id for s in stalled] == ["35040200001320000001"]

    city = Principal.system()
    orders = scan_faults(store, city, now)
    assert [(o["device_id"], o["cause"], o["assignee"]) for o in orders] == [
        ("35040200001320000001", "no_captures", "维保张工")]
    assert orders[0]["cause_label"].startswith("抓拍中断") and not orders[0]["overdue"]
    # the next scan raises nothing new for the same fault
    assert scan_faults(store, city, now + timedelta(hours=1)) == []
    listed = ops.list_work_orders(store, None, "open", now + timedelta(hours=49))
    assert len(listed) == 1 and listed[0]["overdue"]  # 48 h deadline passed

    closed = ops.close_work_order(store, listed[0]["id"], "county", "交换机端口故障，已更换",
                                  now=now + timedelta(hours=50))
    assert closed["state"] == "closed" and closed["close_cause"] == "交换机端口故障，已更换" and not closed["overdue"]
    with pytest.raises(ValidationError):
        ops.close_work_order(store, listed[0]["id"], "county", "again")
    # still stalled after closing: a fresh order is raised (camera 2 keeps sending)
    capture(store, "35040200001320000002", now + timedelta(hours=50))
    again = scan_faults(store, city, now + timedelta(hours=51))
    assert [(o["device_id"], o["cause"]) for o in again] == [("35040200001320000001", "no_captures")]


def test_offline_and_short_retention_raise_orders_and_dedup_holds(store: Store) -> None:
    svc = DeviceService(store)
    camera(store, "35040200001320000003", retention_days=7)
    svc.set_status("gb28181", "35040200001320000003", "online", at=T0)
    capture(store, "35040200001320000003", T0)
    svc.set_status("gb28181", "35040200001320000003", "offline", "timeout", at=T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=4)
    signals = ops.fault_signals(store, now)
    assert sorted(s.cause for s in signals) == ["offline", "retention"]
    assert len(ops.raise_work_orders(store, signals, now)) == 2
    assert ops.raise_work_orders(store, signals + signals, now) == []
    assert len(ops.list_work_orders(store, None, "open")) == 2


def test_offline_for_less_than_the_threshold_is_not_a_fault(store: Store) -> None:
    svc = DeviceService(store)
    camera(store, "35040200001320000004", capture=[])
    svc.set_status("gb28181", "35040200001320000004", "offline", at=T0)
    assert ops.fault_signals(store, T0 + timedelta(hours=1)) == []


def test_daily_online_rate_per_community_town_county(store: Store) -> None:
    svc = DeviceService(store)
    camera(store, "35040200001320000005")
    camera(store, "35040200001320000006", community="350402001002")
    camera(store, "35040300001320000007", community=OTHER_COUNTY)
    svc.set_status("gb28181", "35040200001320000005", "online", at=T0 - timedelta(hours=1))  # whole day
    svc.set_status("gb28181", "35040200001320000006", "online", at=T0 + timedelta(hours=12))  # half day
    day = T0 + timedelta(hours=5)
    by_c = {r.code: r.rate for r in ops.daily_online_rates(store, day, "community")}
    assert by_c == {COMMUNITY: 1.0, "350402001002": 0.5, OTHER_COUNTY: 0.0}
    by_town = {r.code: (r.devices, r.rate) for r in ops.daily_online_rates(store, day, "town")}
    assert by_town["350402001000"] == (2, 0.75)
    assert {r.code: r.rate for r in ops.daily_online_rates(store, day, "county")} == {"350402": 0.75, "350403": 0.0}


def test_county_admin_sees_and_scans_only_his_county(store: Store) -> None:
    camera(store, "35040200001320000008")
    camera(store, "35040300001320000009", community=OTHER_COUNTY)
    county = Principal(user_id=2, username="county", role=Role.county_admin, county_code="350402")
    assert [r["community_code"] for r in tier_report(store, county)] == [COMMUNITY]
    assert [r["community_code"] for r in spec_report(store, county, now=T0)] == [COMMUNITY]
    with pytest.raises(Forbidden):
        tier_report(store, Principal(user_id=3, username="r", role=Role.resident, person_id=1))


def test_reports_from_stored_devices(store: Store) -> None:
    """The Done-means community: every 基本型 item, no unit-entrance access control."""
    svc = DeviceService(store)
    places = ["community_entrance", "parking_entrance", "perimeter", "elevator", "monitoring_centre",
              "public_area", "main_passage", "parking_area"]
    for i, place in enumerate(places):
        camera(store, f"350402000013200001{i:02d}", place=place)
    svc.upsert("mqtt", "gate-1", community_code=COMMUNITY, place="community_entrance",
               attributes={"subsystem": "access_control"})
    svc.upsert("gb28181", "35040200001320000199", type_code="132", community_code=COMMUNITY,
               place="vehicle_entrance", attributes={"subsystem": "vehicle_recognition"})
    [row] = tier_report(store, Principal.system())
    assert row["tier_label"] == "基本型" and row["next_label"] == "提高型"
    assert [m["label"] for m in row["missing"]] == ["楼栋（楼道）单元出入口 · 智能门禁"]
    capture(store, "35040200001320000100", T0)
    [spec] = spec_report(store, Principal.system(), now=T0 + timedelta(hours=1))
    assert spec["cameras"] == 8 and spec["compliant"] == 1
    assert {f["item"] for f in spec["non_compliant"][0]["findings"]} == {"captures"}


def test_construction_page_counts_compliant_cameras_as_the_per_camera_check_does(store: Store) -> None:
    """The /construction page's per-community camera and compliant counts, aggregated by the database, equal the
    per-camera specification check (spec_report) for cameras failing each item, a captures id of their own, stale
    and fresh captures, a rejected camera and devices that are no cameras."""
    camera(store, "35040200001320000101")  # compliant once it captures
    camera(store, "35040200001320000102", megapixels="2MP")
    camera(store, "35040200001320000103", megapixels="4MP", ip_rating="IP66")  # strings that pass
    camera(store, "35040200001320000104", capture=["face"])
    camera(store, "35040200001320000105", colour_day_night=False)
    camera(store, "35040200001320000106", gb28181="2011", retention_days=7)
    camera(store, "35040200001320000107", city_platform=None, viid_device_id="35040200001190000107")
    camera(store, "35040200001320000108", viid_device_id="35040200001190000108")
    camera(store, "35040300001320000109", OTHER_COUNTY)
    camera(store, "35040300001320000110", OTHER_COUNTY)
    svc = DeviceService(store)
    bare = svc.upsert("gb28181", "35040200001320000111", type_code="132", community_code=COMMUNITY)
    svc.upsert("mqtt", "gate-2", community_code=OTHER_COUNTY, attributes={"subsystem": "access_control"})
    svc.upsert("gb28181", "35040200001320000112", type_code="132", community_code=COMMUNITY,
               attributes={**CAPTURE_CAM, "subsystem": "vehicle_recognition"})
    now = T0 + timedelta(hours=30)
    for dev, at in [("35040200001320000101", now - timedelta(hours=1)), ("35040200001320000103", now),
                    ("35040200001190000108", now - timedelta(hours=2)),
                    ("35040200001320000108", now - timedelta(hours=2, minutes=1)),  # not its captures id
                    ("35040300001320000109", now - timedelta(hours=25)), ("35040300001320000110", T0),
                    (str(bare.device_id), now)]:
        capture(store, dev, at)
    city = Principal.system()
    want = {r["community_code"]: (r["cameras"], r["compliant"]) for r in spec_report(store, city, now=now)}
    assert spec_counts(store, city, now=now) == want
    assert want == {COMMUNITY: (9, 3), OTHER_COUNTY: (2, 0)}
    assert spec_counts(store, city, OTHER_COUNTY, now=now) == {OTHER_COUNTY: (2, 0)}
    county = Principal(user_id=2, username="county", role=Role.county_admin, county_code="350402")
    assert spec_counts(store, county, now=now) == {COMMUNITY: (9, 3)}


def test_storage_need_is_bitrate_times_channels_times_30_days(store: Store) -> None:
    need = ops.storage_need([(4096, 10)], days=30)
    assert need.channels == 10 and round(need.bandwidth_mbps, 2) == 40.96
    assert round(need.storage_tb, 2) == 13.27  # 40.96 Mbit/s × 30 days
    camera(store, "35040200001320000010", bitrate_kbps=2048, channels=4)
    assert ops.community_storage_need(store, COMMUNITY).channels == 4
