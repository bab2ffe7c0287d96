"""The per-device per-day uptime rollup (issue 20) gives the same online rates as the full computation from the raw
status history, on both databases: after random status changes (single and batched, some out of time order), an
online interval across Beijing midnight (16:00 UTC) and across UTC midnight, and a device added mid-month."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from anfang.construction import operations as ops
from anfang.devices import uptime
from anfang.devices.models import DeviceUptimeDay, DeviceUptimeOpen
from anfang.devices.service import DeviceService
from anfang.store.engine import Store

T0 = datetime(2021, 6, 1, tzinfo=UTC)
DEVICES = {"35040200001320000001": "350402001001", "35040200001320000002": "350402001001",
           "35040200001320000003": "350402002001", "35040300001320000004": "350403001001",
           "35040300001320000005": "350403001001"}
LATE = "35040200001320000009"  # added on the 14th


def rates(store: Store, fn, day: datetime) -> dict[str, dict[str, tuple[int, float | None]]]:
    return {lvl: {r.code: (r.devices, r.rate) for r in fn(store, day, lvl)} for lvl in ops.LEVELS}


def assert_same(store: Store, days: int = 20) -> None:
    for i in range(days):
        day = T0 + timedelta(days=i)
        got, want = rates(store, ops.daily_online_rates, day), rates(store, ops.daily_online_rates_full, day)
        for lvl in ops.LEVELS:
            assert got[lvl].keys() == want[lvl].keys(), (day, lvl)
            for code, (n, rate) in want[lvl].items():
                assert got[lvl][code][0] == n, (day, lvl, code)
                assert got[lvl][code][1] == pytest.approx(rate, abs=1e-9), (day, lvl, code)


def snapshot(store: Store) -> tuple[list, list]:
    with store.session() as s:
        return (sorted((pk, d, round(v, 6)) for pk, d, v in s.execute(
                    select(DeviceUptimeDay.device_pk, DeviceUptimeDay.day, DeviceUptimeDay.online_s))),
                sorted(s.execute(select(DeviceUptimeOpen.device_pk, DeviceUptimeOpen.status,
                                        DeviceUptimeOpen.since)).all()))


def test_rollup_online_rates_equal_the_full_computation_after_random_changes(store: Store) -> None:
    svc = DeviceService(store)
    for did, comm in DEVICES.items():
        svc.upsert("gb28181", did, type_code="132", community_code=comm, registered_at=T0 - timedelta(days=1))
    # an interval across Beijing midnight (2021-06-02 16:00 UTC) and one across UTC midnight (06-03 → 06-04)
    svc.set_status("gb28181", "35040200001320000001", "online", "register", at=T0 + timedelta(days=1, hours=15))
    svc.set_status("gb28181", "35040200001320000001", "offline", "timeout", at=T0 + timedelta(days=1, hours=17))
    svc.set_status("gb28181", "35040200001320000001", "online", "register", at=T0 + timedelta(days=2, hours=22))
    svc.set_status("gb28181", "35040200001320000001", "offline", "timeout", at=T0 + timedelta(days=3, hours=3))
    rng = random.Random(20)
    t = T0
    for step in range(40):
        t += timedelta(minutes=rng.randrange(60, 900))
        if step % 7 == 3:  # a registration storm: several devices in one transaction
            batch = [(d, rng.choice(("online", "offline", "unknown")), "storm", t + timedelta(seconds=k))
                     for k, d in enumerate(rng.sample(sorted(DEVICES), 3))]
            svc.set_status_many("gb28181", batch)
        else:
            did = rng.choice(sorted(DEVICES)[1:])
            svc.set_status("gb28181", did, rng.choice(("online", "offline")), "keepalive", at=t)
        if step == 20:  # the device added mid-month: registered and online from the 14th
            svc.upsert("gb28181", LATE, type_code="132", community_code="350402002001",
                       registered_at=T0 + timedelta(days=13, hours=9))
            svc.set_status("gb28181", LATE, "online", "register", at=T0 + timedelta(days=13, hours=9))
    # a late report: a transition older than the newest one of its device (out of time order)
    last = svc.history(svc.get("gb28181", "35040300001320000005").id)
    if last:
        svc.set_status("gb28181", "35040300001320000005",
                       "offline" if svc.get("gb28181", "35040300001320000005").status == "online" else "online",
                       "late", at=last[-1].at - timedelta(hours=5))
    assert_same(store)
    # day 2 (UTC): device 1 online 15:00–17:00 → 2 h of 24 on that day, nothing on the next from that interval
    day2 = {r.code: r.rate for r in ops.daily_online_rates(store, T0 + timedelta(days=1), "community")}
    want = {r.code: r.rate for r in ops.daily_online_rates_full(store, T0 + timedelta(days=1), "community")}
    assert day2 == pytest.approx(want)
    # the incremental rollup is exactly what a rebuild from the history gives
    before = snapshot(store)
    with store.session() as s:
        uptime.rebuild(s)
    assert snapshot(store) == before


def test_today_so_far_and_a_device_online_now(store: Store) -> None:
    svc = DeviceService(store)
    now = datetime.now(UTC)
    svc.upsert("gb28181", "35040200001320000001", type_code="132", community_code="350402001001",
               registered_at=now - timedelta(days=3))
    svc.set_status("gb28181", "35040200001320000001", "online", "register", at=now - timedelta(days=2))
    svc.set_status("gb28181", "35040200001320000001", "offline", "timeout", at=now - timedelta(days=1, hours=1))
    svc.set_status("gb28181", "35040200001320000001", "online", "register", at=now - timedelta(minutes=30))
    for back in (0, 1, 2):
        day = now - timedelta(days=back)
        got = {r.code: r.rate for r in ops.daily_online_rates(store, day, "county")}
        want = {r.code: r.rate for r in ops.daily_online_rates_full(store, day, "county")}
        assert got == pytest.approx(want, abs=1e-3)
    assert ops.daily_online_rates(store, now, "county")[0].rate > 0
