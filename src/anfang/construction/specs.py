"""Camera specification check (seed 五、(二) 监控最低配置要求): ≥ 400万像素, 人脸/人体/车辆抓拍, 白天及夜晚彩色,
≥ IP65, GB/T 28181-2016, 接入三明市公共安全视频监控共享平台, 抓拍进入市级视频图像信息数据库, 存储 ≥ 30 天.

Thresholds are data (``specs_2021.json``). The camera's declared properties come from ``Device.attributes``:

=================  ==========================================================  =====================
key                meaning                                                     example
=================  ==========================================================  =====================
megapixels         sensor resolution in MP                                     4
capture            capture kinds supported: face, body, vehicle                ["face", "body", "vehicle"]
colour_day_night   colour image by day and by night                             true
ip_rating          ingress protection, number or "IP66"                         66
gb28181            GB/T 28181 version supported                                 "2016"
retention_days     recording retention configured on the NVR / platform        30
city_platform      connected to the city video sharing platform                 true
viid_device_id     GA/T 1400 device id its captures carry (default: device_id)  "35040...
=================  ==========================================================  =====================

"Captures arriving" is measured, not declared: the newest capture of the camera in the 视图库 must be younger than
``captures_within_hours``. A property not recorded is a non-compliance too (未登记): acceptance needs evidence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CAPTURE_ZH = {"face": "人脸", "body": "人体", "vehicle": "车辆"}


@dataclass(frozen=True)
class SpecRules:
    version: str
    source: str
    min_megapixels: float
    capture_kinds: tuple[str, ...]
    colour_day_and_night: bool
    min_ip_rating: int
    gb28181_version: str
    min_retention_days: int
    city_platform: bool
    captures_within_hours: float


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed specification item of one camera."""

    item: str  # megapixels | capture | colour | ip_rating | gb28181 | retention | city_platform | captures
    message: str  # zh-CN first, English after " / "


@cache
def load_spec_rules(version: str = "2021") -> SpecRules:
    path = HERE / f"specs_{version}.json"
    if not path.is_file():
        raise LookupError(f"no specification rules for version {version!r}")
    d = json.loads(path.read_text(encoding="utf-8"))
    return SpecRules(str(d["version"]), d.get("source", ""), float(d["min_megapixels"]), tuple(d["capture_kinds"]),
                     bool(d["colour_day_and_night"]), int(d["min_ip_rating"]), str(d["gb28181_version"]),
                     int(d["min_retention_days"]), bool(d["city_platform"]), float(d["captures_within_hours"]))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    m = re.search(r"\d+(?:\.\d+)?", str(value))
    return float(m.group()) if m else None


def check_camera(attributes: Mapping[str, Any] | None, last_capture_at: datetime | None, now: datetime,
                 rules: SpecRules | None = None) -> list[Finding]:
    """Every specification item the camera fails (empty: compliant)."""
    r = rules or load_spec_rules()
    a = attributes or {}
    out: list[Finding] = []
    mp = _number(a.get("megapixels"))
    if mp is None:
        out.append(Finding("megapixels", "像素未登记 / resolution not recorded"))
    elif mp < r.min_megapixels:
        out.append(Finding("megapixels", f"像素 {mp:g}MP 低于 {r.min_megapixels:g}MP / resolution below minimum"))
    kinds = a.get("capture")
    have = {str(k) for k in kinds} if isinstance(kinds, list | tuple | set) else set()
    lacking = [k for k in r.capture_kinds if k not in have]
    if lacking:
        names = "、".join(CAPTURE_ZH.get(k, k) for k in lacking)
        out.append(Finding("capture", f"不支持{names}抓拍 / no {', '.join(lacking)} capture"))
    if r.colour_day_and_night and a.get("colour_day_night") is not True:
        what = "未登记" if "colour_day_night" not in a else "不支持"
        out.append(Finding("colour", f"白天及夜晚彩色画面{what} / colour day and night not confirmed"))
    ip = _number(a.get("ip_rating"))
    if ip is None:
        out.append(Finding("ip_rating", "防护等级未登记 / IP rating not recorded"))
    elif ip < r.min_ip_rating:
        out.append(Finding("ip_rating", f"防护等级 IP{ip:g} 低于 IP{r.min_ip_rating} / IP rating below minimum"))
    gb = str(a.get("gb28181") or "")
    if r.gb28181_version not in gb:
        out.append(Finding("gb28181", f"不支持 GB/T 28181-{r.gb28181_version} / GB/T 28181-{r.gb28181_version} "
                                      "not supported"))
    days = _number(a.get("retention_days"))
    if days is None:
        out.append(Finding("retention", "录像存储天数未登记 / retention not recorded"))
    elif days < r.min_retention_days:
        out.append(Finding("retention", f"录像存储 {days:g} 天，少于 {r.min_retention_days} 天 / retention "
                                        "below minimum"))
    if r.city_platform and a.get("city_platform") is not True:
        out.append(Finding("city_platform", "未接入市公共安全视频监控共享平台 / not connected to the city platform"))
    if last_capture_at is None:
        out.append(Finding("captures", "抓拍未进入视频图像信息数据库 / no capture received"))
    elif now - last_capture_at > timedelta(hours=r.captures_within_hours):
        out.append(Finding("captures", f"{r.captures_within_hours:g} 小时内无抓拍进入视频图像信息数据库 / no capture "
                                       "received recently"))
    return out
