"""Done means, on the demo data: a community lacking only the unit-entrance access control is 基本型 with exactly
that item missing for 提高型, and the camera whose captures stopped gets a work order."""

from __future__ import annotations

from anfang.construction.demo import seed_demo
from anfang.construction.service import scan_faults, spec_report, tier_report
from anfang.demo.generator import generate
from anfang.security.scope import Principal


def test_demo_tiers_and_stalled_camera_work_order(store) -> None:
    generate(store, scale=0.02, seed=2021)
    demo = seed_demo(store, seed=2021, limit=8)
    assert demo.communities == 8 and demo.stalled_device_id
    city = Principal.system()
    rows = tier_report(store, city)
    assert [r["tier"] for r in rows] == ["basic", "improved", "advanced", None] * 2
    first = rows[0]
    assert first["tier_label"] == "基本型" and first["next_label"] == "提高型"
    assert [m["label"] for m in first["missing"]] == ["楼栋（楼道）单元出入口 · 智能门禁"]
    assert first["name"].startswith("福建省三明市")
    assert [m["label"] for m in rows[3]["missing"]] == ["电梯 · 视频监控"]
    specs = spec_report(store, city)
    assert sum(r["cameras"] for r in specs) > sum(r["compliant"] for r in specs) > 0

    orders = scan_faults(store, city)
    assert [(o["device_id"], o["cause"]) for o in orders if o["cause"] == "no_captures"] == [
        (demo.stalled_device_id, "no_captures")]
