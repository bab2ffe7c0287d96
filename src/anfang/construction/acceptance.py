"""Acceptance (验收): the one-month stability gate and the facts of the acceptance report.

Seed 六、(二): 待系统稳定运行一个月以上方可申请竣工验收. A day counts as *stable* when the community's daily online rate
(from ``device_status_history``, as in operations) reaches ``min_daily_online_rate`` and at least
``min_capturing_share`` of its capture cameras delivered ``min_captures_per_camera_day`` captures to the 视图库 that
day. A community may apply once the last ``min_stable_days`` complete days (UTC) were all stable, counted back from
yesterday. Thresholds: ``acceptance_<version>.json``.

``acceptance_facts`` gathers everything the report shows (tier check, specification check, uptime evidence, the
一标三实 rates); ``report_pdf.acceptance_pdf`` draws it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from anfang.construction import operations
from anfang.devices.models import Device
from anfang.store.base import utcnow
from anfang.store.engine import Store
from anfang.viid import days as viid_days
from anfang.viid.models import ViidObject

HERE = Path(__file__).parent


@dataclass(frozen=True)
class AcceptanceRules:
    source: str
    min_stable_days: int
    window_days: int
    min_daily_online_rate: float
    min_capturing_share: float
    min_captures_per_camera_day: int


@cache
def load_acceptance_rules(version: str = "2021") -> AcceptanceRules:
    d = json.loads((HERE / f"acceptance_{version}.json").read_text(encoding="utf-8"))
    need = int(d["min_stable_days"])
    return AcceptanceRules(d["source"], need, max(int(d["window_days"]), need),
                           float(d["min_daily_online_rate"]), float(d["min_capturing_share"]),
                           int(d["min_captures_per_camera_day"]))


@dataclass(frozen=True, slots=True)
class DayEvidence:
    day: date
    devices: int
    online_rate: float | None
    capture_cameras: int
    capturing: int  # capture cameras that delivered enough captures that day
    captures: int
    stable: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stability:
    community_code: str
    days: tuple[DayEvidence, ...]  # oldest first, ending yesterday
    stable_days: int  # consecutive stable days ending yesterday
    required_days: int
    eligible: bool
    rules: AcceptanceRules

    def to_dict(self) -> dict[str, Any]:
        return {"community_code": self.community_code, "stable_days": self.stable_days,
                "required_days": self.required_days, "eligible": self.eligible,
                "thresholds": {"min_daily_online_rate": self.rules.min_daily_online_rate,
                               "min_capturing_share": self.rules.min_capturing_share,
                               "min_captures_per_camera_day": self.rules.min_captures_per_camera_day},
                "days": [{"day": d.day.isoformat(), "devices": d.devices, "online_rate": d.online_rate,
                          "capture_cameras": d.capture_cameras, "capturing": d.capturing, "captures": d.captures,
                          "stable": d.stable, "reasons": list(d.reasons)} for d in self.days]}


def judge_day(online_rate: float | None, devices: int, capture_cameras: int, capturing: int,
              rules: AcceptanceRules) -> tuple[bool, tuple[str, ...]]:
    """Whether one day's figures count as stable, and if not why (pure)."""
    reasons = []
    if devices == 0 or online_rate is None:
        reasons.append("无设备运行记录")
    elif online_rate < rules.min_daily_online_rate:
        reasons.append(f"在线率 {online_rate:.1%} 低于 {rules.min_daily_online_rate:.0%}")
    if capture_cameras and capturing / capture_cameras < rules.min_capturing_share:
        reasons.append(f"抓拍到达 {capturing}/{capture_cameras} 台，低于 {rules.min_capturing_share:.0%}")
    return not reasons, tuple(reasons)


def stability(store: Store, community_code: str, now: datetime | None = None,
              rules: AcceptanceRules | None = None) -> Stability:
    """The evidence of the last ``window_days`` complete days and whether the community may apply."""
    rules = rules or load_acceptance_rules()
    now = now or utcnow()
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scope = Device.community_code == community_code
    with store.session() as s:
        devices = list(s.scalars(select(Device).where(scope, Device.review != "rejected")))
    cams = {operations.viid_id(d): d for d in devices if operations.expects_captures(d)}
    days: list[DayEvidence] = []
    for back in range(rules.window_days, 0, -1):
        start = today - timedelta(days=back)
        end = start + timedelta(days=1)
        rates = operations.daily_online_rates(store, start, "community", scope)
        rate = rates[0] if rates else None
        counts: dict[str, int] = {}
        if cams:
            with store.session() as s:
                on_days = viid_days.day_filter(s.get_bind().dialect.name, start, end)  # SQLite: day-led index
                counts = dict(s.execute(select(ViidObject.device_id, func.count())
                                        .where(ViidObject.device_id.in_(list(cams)), ViidObject.shot_at >= start,
                                               ViidObject.shot_at < end, *([] if on_days is None else [on_days]))
                                        .group_by(ViidObject.device_id)).all())
        present = [c for c, d in cams.items() if (d.registered_at or d.created_at) is None
                   or (d.registered_at or d.created_at) < end]
        capturing = sum(1 for c in present if counts.get(c, 0) >= rules.min_captures_per_camera_day)
        n = rate.devices if rate else 0
        ok, reasons = judge_day(rate.rate if rate else None, n, len(present), capturing, rules)
        days.append(DayEvidence(start.date(), n, rate.rate if rate else None, len(present), capturing,
                                sum(counts.values()), ok, reasons))
    streak = 0
    for d in reversed(days):
        if not d.stable:
            break
        streak += 1
    return Stability(community_code, tuple(days), streak, rules.min_stable_days, streak >= rules.min_stable_days,
                     rules)
