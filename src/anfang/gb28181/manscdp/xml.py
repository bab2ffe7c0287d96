"""MANSCDP XML: ``<Query|Response|Notify|Control><CmdType/><SN/><DeviceID/>...``.

Bodies are decoded by their XML declaration (GB2312 read as GB18030, its superset), falling back to UTF-8 and
GB18030 when the declaration lies; bare ``&`` (common in device names) is escaped and retried. Outgoing bodies are
GB2312-declared and GB18030-encoded, like most devices and platforms expect.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from anfang.core.ids import ascii_digits
from anfang.gb28181.sip.message import decode_body

_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_BARE_AMP_RE = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)", re.ASCII)
_DOCTYPE_RE = re.compile(r"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
CHINA_TZ = timezone(timedelta(hours=8))
CONTENT_TYPE = "Application/MANSCDP+xml"


class ManscdpError(ValueError):
    pass


@dataclass
class Manscdp:
    root: str  # Query | Response | Notify | Control
    cmd_type: str
    sn: str
    device_id: str
    element: ET.Element

    def get(self, name: str, default: str | None = None) -> str | None:
        return text_of(self.element, name, default)


def text_of(el: ET.Element | None, name: str, default: str | None = None) -> str | None:
    """Text of the first child named ``name`` (case-insensitive: devices write DeviceId, deviceID ...)."""
    if el is None:
        return default
    low = name.lower()
    for child in el:
        if child.tag.lower() == low:
            return (child.text or "").strip()
    return default


def child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    low = name.lower()
    for c in el:
        if c.tag.lower() == low:
            return c
    return None


def parse_manscdp(body: bytes, content_type: str | None = None) -> Manscdp:
    text = decode_body(body, content_type)
    if _DOCTYPE_RE.search(text):
        raise ManscdpError("DTD / entities are not accepted")
    text = _DECL_RE.sub("", text, count=1).strip()
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        try:
            root = ET.fromstring(_BARE_AMP_RE.sub("&amp;", text))
        except ET.ParseError as exc:
            raise ManscdpError(f"bad MANSCDP XML: {exc}") from None
    return Manscdp(root=root.tag, cmd_type=text_of(root, "CmdType", "") or "", sn=text_of(root, "SN", "") or "",
                   device_id=text_of(root, "DeviceID", "") or "", element=root)


def _float(v: str | None) -> float | None:
    if v is not None and not v.isascii():
        return None  # float() would read '١٢' or '１２' as a number
    try:
        f = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return f if f is not None and f == f and abs(f) <= 180 and f != 0.0 else None


def parse_time(v: str | None) -> datetime | None:
    """GB/T 28181 times are local (China) without offset: 2026-11-29T10:00:00[.mmm]."""
    if not v:
        return None
    try:
        t = datetime.fromisoformat(v.strip().replace(" ", "T"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=CHINA_TZ)).astimezone(UTC)


def format_time(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).astimezone(CHINA_TZ).strftime("%Y-%m-%dT%H:%M:%S")


def catalog_items(doc: Manscdp) -> tuple[int | None, list[dict[str, Any]]]:
    """(SumNum, channel dicts for ``DeviceService.upsert_channels``) from a Catalog Response or NOTIFY."""
    raw_sum = doc.get("SumNum")
    total = int(raw_sum) if ascii_digits(raw_sum, 9) else None
    items: list[dict[str, Any]] = []
    for item in child(doc.element, "DeviceList") or []:
        cid = text_of(item, "DeviceID")
        if not cid:
            continue
        status = (text_of(item, "Status") or "").upper()
        event = (text_of(item, "Event") or "").upper()
        if event in ("OFF", "VLOST", "DEFECT", "DEL"):
            status = "OFF"
        elif event == "ON":
            status = "ON"
        extras = {k: text_of(item, k) for k in ("Owner", "Parental", "SafetyWay", "RegisterWay", "Secrecy",
                                                "IPAddress", "Port", "BusinessGroupID", "PTZType")
                  if text_of(item, k) not in (None, "")}
        if event:
            extras["Event"] = event
        items.append({
            "channel_id": cid,
            "name": text_of(item, "Name") or "",
            "type_code": cid[10:13] if len(cid) == 20 and ascii_digits(cid) else None,
            "manufacturer": (text_of(item, "Manufacturer") or None),
            "model": (text_of(item, "Model") or None),
            "civil_code": (text_of(item, "CivilCode") or None),
            "parent_id": (text_of(item, "ParentID") or None),
            "address_text": (text_of(item, "Address") or None),
            "status": "online" if status in ("ON", "ONLINE", "OK") else "offline" if status else "unknown",
            "longitude": _float(text_of(item, "Longitude")),
            "latitude": _float(text_of(item, "Latitude")),
            "attributes": extras,
        })
    return total, items


def alarm_fields(doc: Manscdp) -> dict[str, Any]:
    info = child(doc.element, "Info")
    alarm_type = text_of(info, "AlarmType") or doc.get("AlarmType")
    at = parse_time(doc.get("AlarmTime"))
    return {
        "device_id": doc.device_id,
        "priority": doc.get("AlarmPriority"),  # 1 一级警情 … 4 四级警情
        "method": doc.get("AlarmMethod"),  # 1 电话 2 设备 3 短信 4 GPS 5 视频 6 设备故障 7 其他
        "alarm_type": alarm_type,
        "description": doc.get("AlarmDescription") or "",
        "alarm_time": at.isoformat() if at else None,
        "longitude": _float(doc.get("Longitude")),
        "latitude": _float(doc.get("Latitude")),
    }


def _xml(name: str, value: Any) -> str:
    if isinstance(value, list):
        inner = "".join(_xml(k, v) for k, v in value)
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], dict):  # (attributes, children)
        attrs = "".join(f' {k}="{escape(str(v))}"' for k, v in value[0].items())
        inner = "".join(_xml(k, v) for k, v in value[1])
        return f"<{name}{attrs}>{inner}</{name}>"
    return f"<{name}>{'' if value is None else escape(str(value))}</{name}>"


def build(root: str, cmd_type: str, sn: int | str, device_id: str, fields: list[tuple[str, Any]] | None = None,
          *, encoding: str = "GB2312") -> bytes:
    """A MANSCDP body; nested lists become child elements, ``(attrs, children)`` an element with attributes."""
    parts = [("CmdType", cmd_type), ("SN", sn), ("DeviceID", device_id), *(fields or [])]
    text = f'<?xml version="1.0" encoding="{encoding}"?>\r\n' + _xml(root, parts) + "\r\n"
    codec = "gb18030" if encoding.upper() in ("GB2312", "GBK", "GB18030") else encoding
    return text.encode(codec)


def catalog_item_xml(ch: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    """One ``<Item>`` of a Catalog response from a channel dict (simulator, cascade)."""
    return ("Item", [
        ("DeviceID", ch["channel_id"]), ("Name", ch.get("name", "")),
        ("Manufacturer", ch.get("manufacturer") or "anfang"), ("Model", ch.get("model") or "IPC"),
        ("Owner", "0"), ("CivilCode", ch.get("civil_code") or ch["channel_id"][:6]),
        ("Address", ch.get("address_text") or ""), ("Parental", ch.get("parental", 0)),
        ("ParentID", ch.get("parent_id") or ""), ("SafetyWay", 0), ("RegisterWay", 1), ("Secrecy", 0),
        ("Status", "ON" if ch.get("status", "online") == "online" else "OFF"),
        ("Longitude", ch.get("longitude") or ""), ("Latitude", ch.get("latitude") or ""),
    ])
