"""Traceable exports (导出水印) and `anfang trace`: a leaked file, or rows copied out of it, names its exporter —
on SQLite and PostgreSQL (docs/security.md)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from anfang.app import create_app
from anfang.cli import app as cli
from anfang.config import Settings
from anfang.registry.exporter import export_csv, export_xlsx
from anfang.registry.importer import import_file
from anfang.security.records import ExportRecord
from anfang.security.trace import trace_bytes, trace_file
from anfang.security.watermark import (
    ZW0,
    ZW1,
    export_image,
    new_mark,
    strip_zero_width,
    watermark_image,
    zw_decode_all,
    zw_encode,
)
from world import PASSWORD, build


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


def cli_trace(store, path: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.setenv("ANFANG_DATABASE_URL", store.url)
    result = CliRunner().invoke(cli, ["trace", str(path)], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_rows_copied_from_an_export_trace_to_its_exporter_not_another(store, tmp_path, monkeypatch) -> None:
    w = build(store)
    # the county admin and the city admin both export the same persons of 三元区
    export_csv(store, "persons", tmp_path / "county.csv", w.users["county"], county_code="350404")
    export_csv(store, "persons", tmp_path / "city.csv", w.users["city"], county_code="350404")
    rows = read_csv(tmp_path / "county.csv")
    # the visible watermark names him on the file's last line
    assert rows[-1][0].startswith("【导出水印】county") and re.search(r"EX\d{8}-[0-9A-F]{6}", rows[-1][0])
    # a leaker copies two rows (no header, no watermark line) into a new CSV
    leak = tmp_path / "leak.csv"
    with leak.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows[2:4])
    code, out = cli_trace(store, leak, monkeypatch)
    assert code == 0, out
    first = out.splitlines()[0]
    assert "county" in first and "city" not in first
    assert "(city" not in out  # the city admin's export of the same rows is not named
    # the same from a text file of rows pasted tab-separated (as from Excel)
    pasted = tmp_path / "pasted.txt"
    pasted.write_text("\n".join("\t".join(r) for r in rows[1:3]), encoding="utf-8")
    result = trace_file(store, pasted)
    assert [f.username for f in result.findings] == ["county"] and result.best.strength == "strong"
    assert any(e.method == "zero_width" and "2 行" in e.detail for e in result.best.evidence)


def test_xlsx_carries_visible_and_invisible_marks_and_still_reimports(store, tmp_path) -> None:
    w = build(store)
    n = export_xlsx(store, "persons", tmp_path / "p.xlsx", w.users["county"], community_code="350404001001")
    with store.session() as s:
        rec = s.scalar(select(ExportRecord).where(ExportRecord.username == "county"))
    assert rec is not None and rec.rows == n == 4 and rec.kind == "persons" and rec.file_format == "xlsx"
    assert sorted(rec.row_keys) == sorted(str(w.person[k]) for k in ("zhang", "li", "wang", "chen"))
    wb = load_workbook(tmp_path / "p.xlsx")
    ws = wb.worksheets[0]
    assert "county" in ws.oddHeader.center.text and rec.request_id in ws.oddHeader.center.text
    assert rec.request_id in ws.oddFooter.center.text
    assert wb.sheetnames[1] == "导出水印" and "county" in wb["导出水印"]["A1"].value
    assert rec.fingerprint in wb.properties.keywords
    # what the user sees is unchanged; every data row hides the fingerprint
    data = list(ws.iter_rows(values_only=True))[1:]
    assert {strip_zero_width(r[1]) for r in data} == {"张伟", "李娜", "王芳", "陈强"}
    assert all(zw_decode_all("".join(str(v) for v in r if v)) == [rec.fingerprint] for r in data)
    # names and identity numbers (search keys) carry nothing: pasted into a search they still find the record
    assert all(r[1] == strip_zero_width(r[1]) and r[0] == strip_zero_width(r[0]) for r in data)
    r = import_file(store, "persons", tmp_path / "p.xlsx", w.users["city"])
    assert (r.inserted, r.updated, r.unchanged, len(r.errors)) == (0, 0, 4, 0)
    traced = trace_file(store, tmp_path / "p.xlsx")
    assert traced.best.username == "county" and {e.method for e in traced.best.evidence} >= {"zero_width",
                                                                                            "metadata"}


def test_rows_without_their_zero_width_marks_are_a_weak_lead_only(store, tmp_path) -> None:
    w = build(store)
    export_csv(store, "persons", tmp_path / "grid.csv", w.users["city"], community_code="350404001001")
    rows = read_csv(tmp_path / "grid.csv")
    cleaned = "\n".join(",".join(strip_zero_width(c) for c in r) for r in rows[1:4])
    result = trace_bytes(store, cleaned.encode(), "cleaned.csv")
    assert result.best is not None and result.best.username == "city" and result.best.strength == "weak"
    assert trace_bytes(store, "无关的文本\n一行\n".encode(), "x.txt").findings == []


def test_zero_width_code_checks_itself() -> None:
    code = zw_encode("00ff10a0b0c0")
    assert zw_decode_all("张" + code + "伟") == ["00ff10a0b0c0"]
    damaged = code[:5] + (ZW1 if code[5] == ZW0 else ZW0) + code[6:]
    assert zw_decode_all(damaged) == []  # a damaged code is not a match
    assert strip_zero_width("张" + code + "伟") == "张伟"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_images_carry_a_corner_stamp_and_a_mark(store, tmp_path, fmt) -> None:
    w = build(store)
    src = Image.new("RGB", (320, 240), (40, 120, 60))
    buf = io.BytesIO()
    src.save(buf, fmt)
    out, media = export_image(store, w.users["police"], buf.getvalue(), "viid-image", "cap-1", ["cap-1"])
    assert media == f"image/{fmt.lower()}"
    stamped = Image.open(io.BytesIO(out)).convert("RGB")
    corner = stamped.crop((200, 200, 320, 240))
    assert corner.getextrema() != src.crop((200, 200, 320, 240)).getextrema()  # the stamp is visible
    assert stamped.getpixel((5, 5))[:2] == (40, 120)  # the picture itself is untouched elsewhere
    assert trace_bytes(store, out, f"x.{fmt.lower()}").best.username == "police"
    if fmt == "PNG":  # metadata stripped by re-saving: the pixel mark still names him
        bare = io.BytesIO()
        Image.open(io.BytesIO(out)).save(bare, "PNG")
        found = trace_bytes(store, bare.getvalue(), "bare.png")
        assert found.best.username == "police" and found.best.evidence[0].method == "lsb"


def test_pdf_sheet_and_console_pages(store, tmp_path) -> None:
    w = build(store)
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=store.url), store)) as c:
        r = c.post("/api/auth/login", json={"username": "police", "password": PASSWORD})
        police = {"Authorization": f"Bearer {r.json()['token']}"}
        pdf = c.get(f"/doorplates/sheet/{w.addr['ld-1']}.pdf", headers=police)
        if pdf.status_code == 200:  # (no Chinese font installed: the door plate tests cover the message)
            traced = trace_bytes(store, pdf.content, "plates.pdf")
            assert traced.best.username == "police" and traced.best.kind == "doorplate-sheet"
        svg = c.get(f"/doorplates/sheet/{w.addr['ld-1']}.svg", headers=police)
        assert "【导出水印】police" in svg.text and trace_bytes(store, svg.content, "s.svg").best.username == "police"

        r = c.post("/api/auth/login", json={"username": "grid", "password": PASSWORD})
        grid = {"Authorization": f"Bearer {r.json()['token']}"}
        page = c.get("/security/exports/download", headers=grid,
                     params={"kind": "persons", "town_code": "350404001000", "reason": "走访名单核对"})
        assert page.status_code == 202 and "已提交审批" in page.text and "/security/approvals#a" in page.text
        assert c.get("/security/trace", headers=grid).status_code == 403

        mark = new_mark(store, w.users["grid"], "viid-image", "image")
        from anfang.security.watermark import log_export

        log_export(store, mark, 1, ["x"])
        img = io.BytesIO()
        Image.new("RGB", (200, 100), (255, 255, 255)).save(img, "PNG")
        stamped, _ = watermark_image(img.getvalue(), mark)
        r = c.post("/api/auth/login", json={"username": "city", "password": PASSWORD})
        city = {"Authorization": f"Bearer {r.json()['token']}"}
        got = c.post("/api/security/trace", headers=city, files={"file": ("leak.png", stamped)}).json()
        assert got["findings"][0]["username"] == "grid" and got["findings"][0]["request_id"] == mark.request_id
        # the console's trace page, in Chinese: the export's category, evidence and notes in Chinese, the time in
        # labelled Beijing time (issue 19 items 3, 5, 6)
        from test_console_truth import english_words

        c.cookies.set("anfang_lang", "zh-CN")  # the session cookie of the city login above
        page = c.get("/security/trace")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
        page = c.post("/security/trace", files={"file": ("leak.png", stamped)}, data={"csrf_token": token})
        assert page.status_code == 200 and 'data-exporter="grid"' in page.text, page.text[-3000:]
        result = page.text[page.text.index('data-testid="trace-result"'):]
        text = re.sub(r"<[^>]+>", " ", result[:result.index("</section>")])
        assert "抓拍图片" in text and "viid-image" not in text, text
        assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} 北京时间", text) and "UTC" not in text, text
        words = [x for x in english_words(text) if x not in ("grid", "leak", "png", "PNG")]  # user name, file name
        assert not words, (words, text)
        for kind, label in (("video-download", "录像下载"), ("video-snapshot", "视频抓图")):  # every kind named
            log_export(store, new_mark(store, w.users["city"], kind, "mp4" if kind == "video-download" else "image",
                                       "x"), 1, ["x"])
            page = c.get("/security/exports").text
            assert label in page and kind not in page, kind


def test_trace_report_reads_at_80_columns(store, tmp_path, monkeypatch) -> None:
    from test_import_walkthrough import assert_fits

    w = build(store)
    export_csv(store, "persons", tmp_path / "county.csv", w.users["county"], county_code="350404")
    rec_id = re.search(r"EX\d{8}-[0-9A-F]{6}", read_csv(tmp_path / "county.csv")[-1][0]).group(0)
    monkeypatch.setenv("ANFANG_DATABASE_URL", store.url)
    result = CliRunner().invoke(cli, ["trace", str(tmp_path / "county.csv")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    assert rec_id in result.output and "county" in result.output and "persons" in result.output
    assert "北京时间" in result.output and "北京时间 北京时间" not in result.output  # labelled once (issue 19 item 3)
