"""Printable plate sheets for the installers: one card per plated address node (QR code + address text), as SVG
or PDF (A4, 3 × 4 cards a page).

QR codes are made with segno and drawn as vector paths (crisp at any print size). The PDF uses fpdf2 with a
Chinese TrueType font found on the machine at run time (Debian: ``fonts-wqy-microhei``); without one the sheet
cannot show the address and a clear error says what to install. ``ANFANG_CJK_FONT`` names a font file explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import segno

from anfang.core.fonts import FONT_ENV, FontMissing, find_cjk_font
from anfang.registry import vocab

COLS, ROWS = 3, 4
CARD_W, CARD_H = 62.0, 68.0  # mm
MARGIN_X, MARGIN_Y = 12.0, 12.5
QR_MM = 40.0


@dataclass
class Card:
    url: str
    title: str  # the address node's own name, large
    address: str  # full standard address
    level: str  # community | building | unit | room
    serial: str


def qr_runs(url: str) -> tuple[int, list[tuple[int, int, int]]]:
    """QR symbol size (modules, no border) and its dark modules as horizontal runs (row, column, length)."""
    qr = segno.make(url, error="m")
    runs: list[tuple[int, int, int]] = []
    size = 0
    for y, row in enumerate(qr.matrix_iter(border=0)):
        bits = list(row)
        size = len(bits)
        x = 0
        while x < size:
            if bits[x]:
                start = x
                while x < size and bits[x]:
                    x += 1
                runs.append((y, start, x - start))
            else:
                x += 1
    return size, runs


def qr_svg_path(url: str, x0: float, y0: float, width: float) -> str:
    size, runs = qr_runs(url)
    m = width / size
    d = "".join(f"M{x0 + x * m:.3f} {y0 + y * m:.3f}h{n * m:.3f}v{m:.3f}h{-n * m:.3f}z" for y, x, n in runs)
    return f'<path d="{d}" fill="#000"/>'


def qr_svg(url: str, px: int = 220) -> str:
    """A standalone inline SVG of the QR code (for the console's plate page), with a 4-module quiet zone."""
    size, _ = qr_runs(url)
    total = size + 8
    m = px / total
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" viewBox="0 0 {px} {px}" '
            f'role="img" class="qr"><rect width="{px}" height="{px}" fill="#fff"/>'
            f'{qr_svg_path(url, 4 * m, 4 * m, size * m)}</svg>')


def _level(level: str) -> str:
    return vocab.label(vocab.ADDRESS_LEVELS, level)


def svg_sheet(cards: Iterable[Card], heading: str, mark: Any = None) -> str:
    """All cards on one tall SVG page (mm units), three to a row. With a watermark (anfang.security.watermark.Mark),
    its visible line is printed under the heading and its fingerprint kept in the SVG's metadata."""
    cards = list(cards)
    rows = max(1, (len(cards) + COLS - 1) // COLS)
    width = MARGIN_X * 2 + COLS * CARD_W
    height = MARGIN_Y * 2 + 10 + rows * CARD_H
    font = "WenQuanYi Micro Hei, Noto Sans CJK SC, Microsoft YaHei, PingFang SC, sans-serif"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" '
           f'viewBox="0 0 {width} {height}" font-family="{font}">',
           f'<text x="{MARGIN_X}" y="{MARGIN_Y + 4}" font-size="5">{escape(heading)}</text>']
    if mark is not None:
        out.append(f'<metadata>{escape(mark.meta_keywords())}</metadata>')
        out.append(f'<text x="{MARGIN_X}" y="{MARGIN_Y + 8.5}" font-size="2.2" fill="#8a8a8a">'
                   f'{escape(mark.visible_line())}</text>')
    for i, c in enumerate(cards):
        x = MARGIN_X + (i % COLS) * CARD_W
        y = MARGIN_Y + 10 + (i // COLS) * CARD_H
        out.append(f'<g class="plate" data-serial="{c.serial}">')
        out.append(f'<rect x="{x + 1}" y="{y + 1}" width="{CARD_W - 2}" height="{CARD_H - 2}" rx="2" fill="#fff" '
                   f'stroke="#1d4f91" stroke-width="0.4"/>')
        out.append(qr_svg_path(c.url, x + (CARD_W - QR_MM) / 2, y + 4, QR_MM))
        out.append(f'<text x="{x + CARD_W / 2}" y="{y + QR_MM + 10}" font-size="5" text-anchor="middle" '
                   f'font-weight="bold">{escape(c.title)}</text>')
        for j, line in enumerate(_wrap(c.address, 22)[:2]):
            out.append(f'<text x="{x + CARD_W / 2}" y="{y + QR_MM + 15.5 + j * 3.6}" font-size="2.8" '
                       f'text-anchor="middle">{escape(line)}</text>')
        out.append(f'<text x="{x + CARD_W / 2}" y="{y + CARD_H - 3.5}" font-size="2.3" text-anchor="middle" '
                   f'fill="#5f6b7a">{escape(_level(c.level))} · 扫码登记 / scan to register</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _wrap(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)] or [""]


def pdf_sheet(cards: Iterable[Card], heading: str, mark: Any = None) -> bytes:
    """A4 pages of 3 × 4 cards; raises FontMissing when no Chinese font is installed. With a watermark
    (anfang.security.watermark.Mark) every page carries its visible line and the document its metadata."""
    from fpdf import FPDF

    font_path, index = find_cjk_font()
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title(heading)
    pdf.set_creator("anfang")
    pdf.add_font("cjk", fname=str(font_path), collection_font_number=index)
    cards = list(cards)
    per_page = COLS * ROWS
    for i, c in enumerate(cards):
        if i % per_page == 0:
            pdf.add_page()
            pdf.set_font("cjk", size=10)
            pdf.set_xy(MARGIN_X, 5)
            pdf.cell(0, 6, f"{heading}  （第 {i // per_page + 1} 页 / page {i // per_page + 1}）")
            if mark is not None:
                from anfang.security.watermark import pdf_stamp_page

                pdf_stamp_page(pdf, mark, "cjk")
        k = i % per_page
        x = MARGIN_X + (k % COLS) * CARD_W
        y = MARGIN_Y + (k // COLS) * CARD_H
        pdf.set_draw_color(29, 79, 145)
        pdf.set_line_width(0.3)
        pdf.rect(x + 1, y + 1, CARD_W - 2, CARD_H - 2, round_corners=True, corner_radius=2)
        size, runs = qr_runs(c.url)
        m = QR_MM / size
        qx, qy = x + (CARD_W - QR_MM) / 2, y + 4
        pdf.set_fill_color(0, 0, 0)
        for ry, rx, n in runs:
            pdf.rect(qx + rx * m, qy + ry * m, n * m + 0.01, m + 0.01, style="F")
        pdf.set_text_color(0, 0, 0)
        pdf.set_font("cjk", size=13)
        pdf.set_xy(x + 2, y + QR_MM + 6)
        pdf.cell(CARD_W - 4, 6, c.title, align="C")
        pdf.set_font("cjk", size=7.5)
        for j, line in enumerate(_wrap(c.address, 22)[:2]):
            pdf.set_xy(x + 2, y + QR_MM + 12.5 + j * 3.6)
            pdf.cell(CARD_W - 4, 3.6, line, align="C")
        pdf.set_text_color(95, 107, 122)
        pdf.set_font("cjk", size=6)
        pdf.set_xy(x + 2, y + CARD_H - 7)
        pdf.cell(CARD_W - 4, 3, f"{_level(c.level)} · 扫码登记 / scan to register", align="C")
    if not cards:
        pdf.add_page()
    if mark is not None:
        from anfang.security.watermark import pdf_metadata

        pdf_metadata(pdf, mark)
    return bytes(pdf.output())


def plate_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/p/{token}"


def cards_for(rows: Iterable[tuple[dict, object]], base_url: str) -> list[Card]:
    """Cards from DoorplateService.plates_under rows: (address dict, Plate)."""
    return [Card(url=plate_url(base_url, plate.token), title=a["name"], address=a["full_name"],  # type: ignore[attr-defined]
                 level=a["level"], serial=plate.serial) for a, plate in rows]  # type: ignore[attr-defined]


__all__ = ["FONT_ENV", "Card", "FontMissing", "cards_for", "find_cjk_font", "pdf_sheet", "plate_url", "qr_runs",
           "qr_svg", "qr_svg_path", "svg_sheet"]
