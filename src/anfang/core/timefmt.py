"""The one way a time is shown to a person: stored UTC, shown in the configured zone (default Asia/Shanghai,
北京时间), labelled. Used by the console pages, the officer's terminal (via the page's data-tz attributes), PDFs,
XLSX/CSV and the command line, so every surface prints the same instant the same way.

No framework imports: this is core.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Asia/Shanghai"
_LABELS = {"Asia/Shanghai": ("北京时间", "Beijing time"), "UTC": ("UTC", "UTC")}
_zone_name = DEFAULT_ZONE
_zone = ZoneInfo(DEFAULT_ZONE)


def configure(zone: str) -> None:
    """Set the display zone (settings.timezone, once at start-up). Raises ZoneInfoNotFoundError when unknown."""
    global _zone_name, _zone
    _zone = ZoneInfo(zone)
    _zone_name = zone


def zone() -> ZoneInfo:
    return _zone


def zone_name() -> str:
    return _zone_name


def zone_label(lang: str = "zh-CN") -> str:
    """北京时间 / Beijing time for Asia/Shanghai; otherwise the IANA name (a code, the same in every language)."""
    zh, en = _LABELS.get(_zone_name, (_zone_name, _zone_name))
    return en if lang.startswith("en") else zh


def _parse(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # stored UTC (anfang.store.base); a naive value is UTC
        value = value.replace(tzinfo=UTC)
    return value


def local(value: datetime | str) -> datetime:
    """The instant in the display zone."""
    return _parse(value).astimezone(_zone)


def fmt(value: datetime | str | None, lang: str = "zh-CN", *, seconds: bool = True, label: bool = True,
        empty: str = "—") -> str:
    """``2026-12-06 21:30:05 北京时间``; ``seconds=False`` drops the seconds; ``label=False`` for a cell under a
    column header that already names the zone (see header()). None or "" gives ``empty``. A date (no time of
    day) is shown as it is: it has no zone."""
    if value is None or value == "":
        return empty
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    text = local(value).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {zone_label(lang)}" if label else text


def header(title: str, lang: str = "zh-CN") -> str:
    """A column header naming the zone of its unlabelled cells: ``时间（北京时间）``."""
    return f"{title}（{zone_label(lang)}）" if not lang.startswith("en") else f"{title} ({zone_label(lang)})"


def now_text(lang: str = "zh-CN", *, seconds: bool = True) -> str:
    return fmt(datetime.now(UTC), lang, seconds=seconds)
