"""One time format (issue 19 item 3): stored UTC, shown in the configured zone with its label, alike on every
surface (console pages via core.timefmt, the terminal's warning payload, XLSX, export watermarks)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import openpyxl
import pytest

from anfang.config import load_settings
from anfang.construction.supervision import circular_xlsx
from anfang.core import timefmt
from anfang.security.watermark import Mark
from anfang.warnings.models import Warning
from anfang.warnings.service import view

AT = datetime(2026, 12, 5, 17, 30, 5, tzinfo=UTC)  # 01:30:05 on 12-06 in Beijing


@pytest.fixture(autouse=True)
def _beijing() -> None:
    timefmt.configure("Asia/Shanghai")
    yield
    timefmt.configure("Asia/Shanghai")


def test_utc_is_shown_as_labelled_beijing_time() -> None:
    assert timefmt.fmt(AT) == "2026-12-06 01:30:05 北京时间"
    assert timefmt.fmt(AT.isoformat()) == "2026-12-06 01:30:05 北京时间"  # the API's ISO strings
    assert timefmt.fmt("2026-12-05T17:30:05") == "2026-12-06 01:30:05 北京时间"  # naive is stored UTC
    assert timefmt.fmt(AT, "en", seconds=False) == "2026-12-06 01:30 Beijing time"
    assert timefmt.fmt(None) == "—" and timefmt.fmt(date(2026, 1, 2)) == "2026-01-02"


def test_the_configured_zone_is_used_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANFANG_TIMEZONE", "Asia/Urumqi")
    load_settings()
    assert timefmt.fmt(AT) == "2026-12-05 23:30:05 Asia/Urumqi"


def test_terminal_payload_xlsx_and_watermark_carry_the_same_text() -> None:
    w = Warning(id=1, uid="u", rule="r", category="access", title="t", severity=1, state="new", source="s",
                hits=1, created_at=AT, last_hit_at=AT)
    assert view(w)["created_at_text"] == "2026-12-06 01:30:05 北京时间"
    mark = Mark(request_id="EX1", fingerprint="0" * 12, username="police", display_name="民警", role="police",
                at=AT, kind="persons", file_format="xlsx")
    assert "2026-12-06 01:30:05 北京时间" in mark.visible_line()
    assert "2026-12-06 01:30:05 Beijing time" in mark.visible_line()
    ws = openpyxl.load_workbook(io.BytesIO(circular_xlsx([], 2026, 12))).active
    cells = [str(c.value) for row in ws.iter_rows() for c in row if c.value]
    stamp = [c for c in cells if c.startswith("生成时间")]
    assert stamp and "北京时间" in stamp[0] and "UTC" not in stamp[0], stamp


def test_the_circular_pdf_is_stamped_in_beijing_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from anfang.construction import report_pdf
    from anfang.core.fonts import FontMissing, find_cjk_font

    try:
        find_cjk_font()
    except FontMissing as exc:
        pytest.skip(str(exc))
    titles: list[str] = []
    original = report_pdf.Doc.title

    def title(self, text: str, sub: str = "") -> None:  # noqa: ANN001
        titles.append(sub)
        original(self, text, sub)

    monkeypatch.setattr(report_pdf.Doc, "title", title)
    assert report_pdf.circular_pdf([], 2026, 12).startswith(b"%PDF")
    stamp = titles[0][titles[0].index("生成时间"):]
    assert stamp.endswith("北京时间") and "UTC" not in stamp, stamp


def test_a_warning_pushed_to_an_english_terminal_is_in_english() -> None:
    from anfang.warnings.views import in_language

    w = Warning(id=1, uid="u", rule="r", category="access", title="t", severity=1, state="dispatched", source="s",
                hits=1, created_at=AT, last_hit_at=AT, data={"shot_at": "2026-12-05T17:00:00+00:00"})
    item = {"step": "raised", "warning": view(w)}
    en = in_language(item, "en")["warning"]
    assert en["created_at_text"] == "2026-12-06 01:30:05 Beijing time"
    assert en["shot_at_text"] == "2026-12-06 01:00:00 Beijing time" and en["state_label"] == "dispatched"
    zh = in_language(item, "zh-CN")["warning"]
    assert zh["created_at_text"] == "2026-12-06 01:30:05 北京时间" and zh["shot_at_text"].endswith("北京时间")
